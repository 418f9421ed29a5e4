//! The `taskmesh` binary as separate processes joining by multiaddr.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;

use common::cli::*;
use common::procs::{json_lines, text, wait_until};
use common::LIMIT;

#[test]
fn processes_join_by_multiaddr_and_run_the_tutorial_file() {
    let (_procs, addr) = mesh(
        21,
        &["Junior:worker:3", "Intermediate:worker:6", "Senior:worker:9"],
        "1",
    );
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/tutorial.toml");
    let out = submit_json(&addr, file.to_str().unwrap(), 3);
    let lines = json_lines(&out);
    assert_eq!(
        lines.len(),
        7,
        "stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let skill = |w: &str| match w {
        "Junior" => 3,
        "Intermediate" => 6,
        "Senior" => 9,
        _ => panic!("{w}"),
    };
    for l in &lines {
        let difficulty = l["difficulty"].as_u64().unwrap();
        if difficulty == 10 {
            assert_eq!(l["status"], "failed");
            assert!(
                l["error"].as_str().unwrap().contains("best skill on offer: 9"),
                "{l}"
            );
        } else {
            assert_eq!(l["status"], "completed", "{l}");
            assert_eq!(l["attempts"], 1);
            assert!(skill(l["worker"].as_str().unwrap()) >= difficulty, "{l}");
            assert!(!l["reason"].as_str().unwrap().is_empty());
        }
    }
    // One task failed, so the exit status says so.
    assert_eq!(out.status.code(), Some(1));
    let all = run(&["status", "--join", &addr, "--no-mdns", "--json"]);
    assert!(all.status.success(), "{}", text(&all.stderr));
    assert_eq!(
        json_lines(&all).len(),
        7,
        "status without ids lists the recent tasks"
    );
    let workers = run(&["workers", "--join", &addr, "--no-mdns", "--json"]);
    assert!(workers.status.success(), "{}", text(&workers.stderr));
    assert_eq!(json_lines(&workers).len(), 3);
}

#[test]
fn a_key_file_keeps_the_peer_id_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("node.key");
    let key_s = key.to_str().unwrap();
    let args = [
        "node",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--no-mdns",
        "--key",
        key_s,
    ];
    let first = start(&args).expect_line("peer id: ", "");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let second = start(&args).expect_line("peer id: ", "");
    assert_eq!(first, second);
}

#[test]
fn bad_input_gets_a_clear_message_and_a_non_zero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let bad_toml = dir.path().join("bad.toml");
    std::fs::write(&bad_toml, "[[task]]\nname = \"a\"\nrole = 7\n").unwrap();
    let cycle = dir.path().join("cycle.toml");
    std::fs::write(
        &cycle,
        "[[task]]\nname='a'\nrole='w'\ndepends_on=['b']\n[[task]]\nname='b'\nrole='w'\ndepends_on=['a']\n",
    )
    .unwrap();
    let unknown_dep = dir.path().join("dep.toml");
    std::fs::write(
        &unknown_dep,
        "[[task]]\nname='a'\nrole='w'\ndepends_on=['ghost']\n",
    )
    .unwrap();
    let newline = dir.path().join("newline.json");
    std::fs::write(&newline, r#"{"task": [{"name": "two\nlines", "role": "w"}]}"#).unwrap();
    let tab = dir.path().join("tab.toml");
    std::fs::write(&tab, "[[task]]\nname='a'\nrole=\"w\\t\"\n").unwrap();
    let (newline, tab) = (newline.to_str().unwrap(), tab.to_str().unwrap());
    let (bad, cyc, dep) = (
        bad_toml.to_str().unwrap(),
        cycle.to_str().unwrap(),
        unknown_dep.to_str().unwrap(),
    );
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["node", "--bogus"], "--bogus"),
        (vec!["node", "--join", "not-a-multiaddr"], "invalid value"),
        (
            vec!["node", "--worker", "Junior:worker"],
            "expected NAME:ROLE:SKILL",
        ),
        (
            vec![
                "submit",
                "/nonexistent/tasks.toml",
                "--no-mdns",
                "--join",
                "/ip4/127.0.0.1/tcp/1",
            ],
            "does not exist",
        ),
        (vec!["submit", bad, "--no-mdns"], "bad.toml:3:"),
        (vec!["submit", cyc, "--no-mdns"], "cycle"),
        (vec!["submit", dep, "--no-mdns"], "unknown task \"ghost\""),
        (
            vec!["submit", newline, "--no-mdns"],
            r#"task "two\nlines" is invalid: name holds the control character U+000A at character 4"#,
        ),
        (
            vec!["submit", tab, "--no-mdns"],
            r#"task "a" is invalid: role holds the control character U+0009"#,
        ),
        (
            vec!["node", "--worker", "Ju\u{1b}[31mnior:worker:3", "--no-mdns"],
            "its name holds the control character U+001B",
        ),
        (vec!["status", "not-a-uuid"], "is not a task id"),
        (vec!["cancel", "not-a-uuid", "--no-mdns"], "is not a task id"),
        (vec!["cancel", "--no-mdns"], "required"),
        (
            vec!["node", "--retries", "101"],
            "--retries: 101 is out of range 0 to 100",
        ),
        (
            vec!["node", "--max-attempts", "0"],
            "--max-attempts: 0 is out of range 1 to 100",
        ),
        (
            vec!["node", "--task-timeout=-1"],
            "--task-timeout: -1 is out of range",
        ),
        (
            vec!["node", "--lease", "0"],
            "--lease: 0 is out of range 0.1 to 3600 seconds",
        ),
        (vec!["workers", "--no-mdns"], "nothing to join"),
        (vec!["node", "--exec", "a:b:1"], "PROGRAM ARGS"),
        (
            vec!["node", "--config", "/nonexistent/node.toml"],
            "cannot read config file",
        ),
    ];
    for (args, want) in cases {
        let out = run(&args);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(want), "{args:?}: stderr {err:?} lacks {want:?}");
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    }
}

#[test]
fn an_unreachable_mesh_is_reported_not_waited_on_forever() {
    let out = run(&[
        "workers",
        "--join",
        "/ip4/127.0.0.1/tcp/1",
        "--no-mdns",
        "--admin-wait",
        "1",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("cannot reach the mesh"),
        "{}",
        text(&out.stderr)
    );
}

fn sha256_of(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().expect("sha256sum");
    text(&out.stdout).split_whitespace().next().unwrap().to_string()
}

/// Names in any script line up in the table and stay one line per record
/// in `--json`; inputs reach a worker (`cat`, whose output is its input)
/// byte for byte as written, from a JSON file and a TOML file alike.
#[test]
fn unusual_names_line_up_and_inputs_arrive_as_written() {
    let (_admin, addr) = mesh(45, &[], "1");
    let _cat = exec_worker(&addr, "cat:w:5", &["cat"], &[]);
    let dir = tempfile::tempdir().unwrap();
    // (name, input_json as written in the file, what the worker gets)
    let cases = [
        (
            "ascii",
            r#"{"big": 123456789012345678901234567890}"#,
            r#"{"big":123456789012345678901234567890}"#,
        ),
        (
            "要約する",
            r#"{"dt": "1979-05-27T07:32:00Z"}"#,
            r#"{"dt":"1979-05-27T07:32:00Z"}"#,
        ),
        (
            "🚀 launch",
            r#"{"z": 1, "a": [0.1, 1e3]}"#,
            r#"{"z":1,"a":[0.1,1000.0]}"#,
        ),
        (
            "cafe\u{301}",
            r#"{"neg": -98765432109876543210}"#,
            r#"{"neg":-98765432109876543210}"#,
        ),
        ("tab-free", r#""plain""#, r#""plain""#),
    ];
    let tasks: Vec<String> = cases
        .iter()
        .map(|(n, i, _)| {
            let n = serde_json::to_string(n).unwrap();
            format!(r#"{{"name": {n}, "role": "w", "input_json": {i}}}"#)
        })
        .collect();
    let json = task_file(&dir, "t.json", &format!(r#"{{"task": [{}]}}"#, tasks.join(",")));
    let out = submit_json(&addr, &json, 1);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines = json_lines(&out);
    assert_eq!(
        lines.len(),
        cases.len(),
        "one line per task: {}",
        text(&out.stdout)
    );
    for (l, (name, _, want)) in lines.iter().zip(cases) {
        assert_eq!(
            (l["name"].as_str(), l["output"].as_str()),
            (Some(name), Some(want))
        );
    }
    // The same content as TOML gives the same bytes (TOML has no integer
    // beyond 64 bits, so those two tasks differ here).
    let toml = task_file(
        &dir,
        "t.toml",
        "[[task]]\nname='d'\nrole='w'\ninput_json={dt=1979-05-27T07:32:00Z}\n\
         [[task]]\nname='z'\nrole='w'\ninput_json={z=1, a=[0.1, 1e3]}\n",
    );
    let lines = json_lines(&submit_json(&addr, &toml, 1));
    let outputs: Vec<_> = lines
        .iter()
        .map(|l| l["output"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(outputs, [cases[1].2, cases[2].2]);
    // The table for people: every row's columns start where the header's do.
    let out = run(&["submit", &json, "--join", &addr, "--no-mdns"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| !l.trim_start().starts_with("why:"))
        .collect();
    assert_eq!(rows.len(), cases.len() + 1, "{table}");
    let column = |line: &str, word: &str| {
        let at = line.find(word).unwrap_or_else(|| panic!("{word:?} in {line:?}"));
        unicode_width::UnicodeWidthStr::width(&line[..at])
    };
    let status_at = column(rows[0], "STATUS");
    for row in &rows[1..] {
        assert_eq!(column(row, "completed"), status_at, "{table}");
    }
}

#[test]
fn command_workers_from_a_config_file_hash_files_across_peers() {
    let (_admin, addr) = mesh(41, &[], "1");
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let config = examples.join("hash-node.toml");
    let _hasher = start(&[
        "node",
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--no-mdns",
        "--join",
        &addr,
        "--no-admin",
    ]);
    let file = examples.join("hash-files.toml");
    let out = submit_json(&addr, file.to_str().unwrap(), 2);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("[4/4] manifest completed"),
        "progress lines on stderr: {err}"
    );
    let tasks = json_lines(&out);
    let manifest = tasks.iter().find(|t| t["name"] == "manifest").unwrap()["output"]
        .as_str()
        .unwrap()
        .to_string();
    let mut want: Vec<String> = ["fox.txt", "lorem.txt", "mesh.txt"]
        .iter()
        .map(|f| format!("{}  {f}", sha256_of(&examples.join("files").join(f))))
        .collect();
    want.sort();
    assert_eq!(manifest, want.join("\n") + "\n");
    let peers = run(&["peers", "--join", &addr, "--no-mdns", "--json"]);
    let peers = json_lines(&peers);
    assert_eq!(peers.iter().filter(|p| p["is_admin"] == true).count(), 1);
    assert!(
        peers
            .iter()
            .any(|p| p["workers"] == serde_json::json!(["collector", "hasher"])
                || p["workers"] == serde_json::json!(["hasher", "collector"])),
        "{peers:?}"
    );
}

#[test]
fn a_failing_command_reports_its_exit_status_and_stderr() {
    let (_admin, addr) = mesh(51, &[], "1");
    let _worker = start(&[
        "node",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--no-mdns",
        "--join",
        &addr,
        "--no-admin",
        "--exec",
        "grumpy:fail:1",
        "--",
        "sh",
        "-c",
        "echo cannot do that >&2; exit 3",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fail.json");
    std::fs::write(
        &file,
        r#"{"task": [{"name": "doomed", "role": "fail", "input": "x"}]}"#,
    )
    .unwrap();
    let out = submit_json(&addr, file.to_str().unwrap(), 1);
    assert_eq!(out.status.code(), Some(1), "a failed task makes submit fail");
    let t = json_lines(&out).pop().unwrap();
    let e = t["error"].as_str().unwrap();
    assert!(
        e.contains("exit status: 3") && e.contains("cannot do that"),
        "{e}"
    );
    let unknown = run(&[
        "status",
        "6f1c8a5e-0000-4000-8000-000000000000",
        "--join",
        &addr,
        "--no-mdns",
    ]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        text(&unknown.stderr).contains("unknown task id"),
        "{}",
        text(&unknown.stderr)
    );
}

#[test]
fn sigterm_lets_a_running_task_finish_and_exits_zero() {
    let (mut procs, addr) = mesh(61, &["Steady:worker:9"], "150");
    // Difficulty 5 × 150 ms: still running when the signal comes.
    let task = "[[task]]\nname = \"steady\"\nrole = \"worker\"\ndifficulty = 5\ninput = \"done\"\n";
    let id = submit_no_wait(&addr, task);
    wait_status(&addr, &id, "running");
    let worker = procs.last_mut().unwrap();
    let pid = worker.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + LIMIT;
    let code = loop {
        if let Some(s) = worker.child.try_wait().unwrap() {
            break s.code();
        }
        assert!(Instant::now() < deadline, "node did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code, Some(0));
    let s = status_of(&addr, &id);
    assert_eq!(
        s["status"], "completed",
        "the running task finished during the grace period: {s}"
    );
    assert_eq!(s["output"], "done");
}

#[test]
fn workers_dial_a_restarted_admin_again_and_register() {
    // A fixed port, so that the restarted admin is where it was.
    let listen = common::procs::fixed_listen();
    let args = [
        "node",
        "--listen",
        &listen,
        "--no-mdns",
        "--seed",
        "4242",
        "--admin-priority",
        "200",
    ];
    let registered = |addr: &str| {
        let out = run(&["workers", "--join", addr, "--no-mdns", "--json"]);
        out.status.success() && json_lines(&out).len() == 2
    };
    let admin = start(&args);
    let addr = admin.expect_line("listening on ", "");
    let _w1 = echo_worker(&addr, 4243, "w1:echo:5", "1");
    let _w2 = echo_worker(&addr, 4244, "w2:echo:5", "1");
    wait_until("both workers registered", || registered(&addr));
    // The admin dies and comes back with the same key at the same address:
    // the workers, which joined only it, dial it again.
    drop(admin);
    let admin = start(&args);
    assert_eq!(admin.expect_line("listening on ", ""), addr);
    wait_until("both workers registered with the restarted admin", || {
        registered(&addr)
    });
    let out = run(&["peers", "--join", &addr, "--no-mdns"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn a_reader_that_leaves_early_ends_the_command_quietly() {
    use std::io::{BufRead, BufReader, Read};
    let (_admin, addr) = common::cli::admin(7700, &[]);
    let dir = tempfile::tempdir().unwrap();
    let tasks: String = (0..1500)
        .map(|i| {
            format!("[[task]]\nname = \"task-with-a-longish-name-{i}\"\nrole = \"nobody\"\ndifficulty = 1\n")
        })
        .collect();
    let file = common::cli::task_file(&dir, "many.toml", &tasks);
    let out = run(&["submit", &file, "--join", &addr, "--no-mdns", "--no-wait"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // `taskmesh status | head -n 1`: a thousand rows, and the reader goes
    // after the first.
    let mut child = common::procs::taskmesh(&["status", "--join", &addr, "--no-mdns"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(!first.is_empty());
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let status = child.wait().unwrap();
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(status.code(), Some(141), "{err}");
}

#[test]
fn a_wait_cut_short_prints_what_finished_and_names_the_rest() {
    // One slot: the quick task runs first, the slow one (9 s) after it.
    let (_procs, addr) = mesh(960, &["w:echo:9:1"], "1000");
    let dir = tempfile::tempdir().unwrap();
    let file = task_file(
        &dir,
        "two.toml",
        "[[task]]\nname = \"quick\"\nrole = \"echo\"\ndifficulty = 0\n\
         [[task]]\nname = \"slow\"\nrole = \"echo\"\ndifficulty = 9\ndepends_on = [\"quick\"]\n",
    );
    let out = run(&[
        "submit",
        &file,
        "--join",
        &addr,
        "--no-mdns",
        "--wait-workers",
        "1",
        "--json",
        "--timeout",
        "3",
    ]);
    assert!(!out.status.success());
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1, "the finished task's report");
    assert_eq!(lines[0]["name"], "quick");
    let err = text(&out.stderr);
    assert!(err.contains("task slow ("), "{err}");
    assert!(err.contains("not finished when the wait ended"), "{err}");
    assert!(err.contains("results not ready within 3 s"), "{err}");
}

#[test]
fn a_wait_whose_admin_is_gone_for_good_gives_up_after_one_admin_wait() {
    let (mut procs, addr) = mesh(970, &["w:echo:9:1"], "300");
    let dir = tempfile::tempdir().unwrap();
    let mut toml = String::new();
    for i in 0..10 {
        toml += &format!("[[task]]\nname = \"t{i}\"\nrole = \"echo\"\ndifficulty = 1\n");
    }
    let file = task_file(&dir, "ten.toml", &toml);
    let cmd = common::procs::taskmesh(&[
        "submit",
        &file,
        "--join",
        &addr,
        "--no-mdns",
        "--wait-workers",
        "1",
        "--json",
        "--admin-wait",
        "5",
    ]);
    let mut killed = None;
    let admin = procs.remove(0);
    let mut admin = Some(admin);
    let (reports, ok, errors) = common::cli::submit_watched(cmd, 1, || {
        drop(admin.take()); // the mesh's only voter: no admin ever again
        killed = Some(Instant::now());
    });
    let took = killed.expect("killed").elapsed();
    assert!(!ok);
    assert!(!reports.is_empty(), "what finished is printed");
    assert!(errors.contains("not finished when the wait ended"), "{errors}");
    assert!(errors.contains("no admin"), "{errors}");
    // One wait for an admin (5 s), not two.
    assert!(
        took < Duration::from_secs(9),
        "gave up {took:?} after the admin was killed"
    );
}
