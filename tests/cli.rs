//! The `taskmesh` binary as separate processes joining by multiaddr.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

mod common;

use common::procs::{json_lines, pids_with_cmdline, run_bounded, taskmesh, text, wait_until, Proc};
use common::LIMIT;

/// Starts `taskmesh ARGS…` as a long-running child.
fn start(args: &[&str]) -> Proc {
    Proc::spawn(taskmesh(args))
}

/// Runs `taskmesh ARGS…` to completion, bounded.
fn run(args: &[&str]) -> Output {
    run_bounded(taskmesh(args))
}

/// An admin process with `extra` options; returns it and its address.
fn admin(seed: u64, extra: &[&str]) -> (Proc, String) {
    let seed = seed.to_string();
    let mut args = vec![
        "node",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--no-mdns",
        "--seed",
        &seed,
        "--admin-priority",
        "200",
    ];
    args.extend(extra);
    let admin = start(&args);
    let addr = admin.expect_line("listening on ", "");
    (admin, addr)
}

/// A worker-only process joining `addr` with a command worker `spec`
/// running `command`, plus `extra` options.
fn exec_worker(addr: &str, spec: &str, command: &[&str], extra: &[&str]) -> Proc {
    let mut args = vec![
        "node",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--no-mdns",
        "--join",
        addr,
        "--no-admin",
        "--exec",
        spec,
    ];
    args.extend(extra);
    args.push("--");
    args.extend(command);
    start(&args)
}

/// An admin process plus worker processes; returns them and the admin address.
fn mesh(seed: u64, workers: &[&str], work_ms: &str) -> (Vec<Proc>, String) {
    let (admin, addr) = admin(seed, &["--no-worker-timeout", "2"]);
    let mut procs = vec![admin];
    for (i, w) in workers.iter().enumerate() {
        procs.push(echo_worker(&addr, seed + 1 + i as u64, w, work_ms));
    }
    (procs, addr)
}

/// A worker-only process joining `addr` with a built-in echo worker.
fn echo_worker(addr: &str, seed: u64, spec: &str, work_ms: &str) -> Proc {
    let seed = seed.to_string();
    start(&[
        "node",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--no-mdns",
        "--seed",
        &seed,
        "--join",
        addr,
        "--worker",
        spec,
        "--work-ms",
        work_ms,
        "--no-admin",
    ])
}

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
fn a_task_whose_worker_process_is_killed_completes_on_another_worker() {
    let (mut procs, addr) = mesh(31, &["First:worker:9", "Second:worker:9"], "1000");
    let peers: Vec<String> = procs[1..]
        .iter()
        .map(|p| p.expect_line("peer id: ", ""))
        .collect();
    // Difficulty 3 × 1000 ms: longer than the test waits before the kill.
    let id = submit_no_wait(
        &addr,
        "[[task]]\nname = \"long\"\nrole = \"worker\"\ndifficulty = 3\n",
    );
    let running = wait_status(&addr, &id, "running");
    let holder = peers
        .iter()
        .position(|p| running["node"] == p.as_str())
        .expect("a worker node holds it");
    drop(procs.remove(1 + holder)); // kill -9 the worker process
    let s = wait_status(&addr, &id, "completed");
    assert_eq!(s["attempts"], 2, "{s}");
    assert_eq!(s["node"], peers[1 - holder].as_str(), "{s}");
}

/// Submits a task file with `--json` once `workers` workers are registered.
fn submit_json(addr: &str, file: &str, workers: u32) -> Output {
    let workers = workers.to_string();
    run(&[
        "submit",
        file,
        "--join",
        addr,
        "--no-mdns",
        "--wait-workers",
        &workers,
        "--json",
    ])
}

/// Submits a one-file task list without waiting; returns the first task id.
fn submit_no_wait(addr: &str, toml: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tasks.toml");
    std::fs::write(&file, toml).unwrap();
    let path = file.to_str().unwrap();
    let out = run(&[
        "submit",
        path,
        "--join",
        addr,
        "--no-mdns",
        "--wait-workers",
        "1",
        "--no-wait",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).split_whitespace().next().unwrap().to_string()
}

/// The task's JSON status line as the admin reports it now.
fn status_of(addr: &str, id: &str) -> serde_json::Value {
    let out = run(&["status", id, "--join", addr, "--no-mdns", "--json"]);
    json_lines(&out).pop().unwrap_or_default()
}

/// Polls the task's status (the CLI has no event stream) until it is `want`.
fn wait_status(addr: &str, id: &str, want: &str) -> serde_json::Value {
    let deadline = Instant::now() + LIMIT;
    loop {
        let s = status_of(addr, id);
        if s["status"] == want {
            return s;
        }
        assert!(Instant::now() < deadline, "task still {s}, never {want}");
        std::thread::sleep(Duration::from_millis(20));
    }
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

/// Writes a task file into `dir`; returns its path.
fn task_file(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let file = dir.path().join(name);
    std::fs::write(&file, text).unwrap();
    file.to_str().unwrap().to_string()
}

/// A submission's JSON lines by task name.
fn by_name(out: &Output) -> HashMap<String, serde_json::Value> {
    let lines = json_lines(out).into_iter();
    lines
        .map(|l| (l["name"].as_str().unwrap().to_string(), l))
        .collect()
}

/// `taskmesh cancel ARGS… --join addr --no-mdns`.
fn cancel(addr: &str, args: &[&str]) -> Output {
    let mut all = vec!["cancel"];
    all.extend(args);
    all.extend(["--join", addr, "--no-mdns"]);
    run(&all)
}

#[test]
fn a_task_file_with_every_new_field_reaches_the_admin() {
    let (_admin, addr) = admin(71, &["--no-worker-timeout", "30"]);
    let _echo = echo_worker(&addr, 72, "Echo:worker:9", "1");
    let dir = tempfile::tempdir().unwrap();
    let ok = r#"
[[task]]
name = "first"
role = "worker"
input = "hi"
timeout_ms = 5000
queue_timeout_ms = 10000
deadline_ms = 20000
retries = 1
max_attempts = 2
priority = 5
trigger = "all_success"

[[task]]
name = "fallback"
role = "worker"
depends_on = ["first"]
trigger = "one_failed"
"#;
    let out = submit_json(&addr, &task_file(&dir, "ok.toml", ok), 1);
    assert!(
        out.status.success(),
        "skipped is a success: {}",
        text(&out.stderr)
    );
    let t = by_name(&out);
    assert_eq!(
        (&t["first"]["status"], &t["first"]["output"]),
        (&"completed".into(), &"hi".into())
    );
    assert_eq!(t["fallback"]["status"], "skipped", "{}", t["fallback"]);
    let h = &t["first"]["history"][0];
    assert_eq!(
        (&h["number"], &h["worker"], &h["outcome"]),
        (&1.into(), &"Echo".into(), &"completed".into())
    );
    assert!(
        h["started_ms"].as_u64().unwrap() > 0 && h["duration_ms"].is_u64(),
        "{h}"
    );

    // Limits reach the admin: each failure names its own value.
    let limits = r#"
[[task]]
name = "stranded"
role = "nobody"
queue_timeout_ms = 300

[[task]]
name = "late"
role = "nobody"
queue_timeout_ms = 0
deadline_ms = 400

[[task]]
name = "cleanup"
role = "worker"
depends_on = ["stranded"]
trigger = "all_done"
priority = -3
"#;
    let out = submit_json(&addr, &task_file(&dir, "limits.toml", limits), 1);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let t = by_name(&out);
    let error = |name: &str| t[name]["error"].as_str().unwrap_or_default().to_string();
    assert!(
        error("stranded").contains("queue timeout of 300 ms"),
        "{}",
        t["stranded"]
    );
    assert!(error("late").contains("deadline of 400 ms"), "{}", t["late"]);
    assert_eq!(t["cleanup"]["status"], "completed", "{}", t["cleanup"]);

    // A pending task with every field set can be cancelled, once.
    let parked = "[[task]]\nname='parked'\nrole='nobody'\ntimeout_ms=0\nqueue_timeout_ms=0\n\
                  deadline_ms=0\nretries=3\nmax_attempts=5\npriority=-7\ntrigger='all_done'\n";
    let id = submit_no_wait(&addr, parked);
    assert_eq!(status_of(&addr, &id)["status"], "pending");
    let out = cancel(&addr, &[&id]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{id}\tcancelled\n"));
    assert_eq!(status_of(&addr, &id)["status"], "cancelled");
    let again = cancel(&addr, &[&id, "--json"]);
    assert_eq!(again.status.code(), Some(0));
    let line = json_lines(&again).pop().unwrap();
    assert_eq!(
        (&line["outcome"], &line["status"]),
        (&"already_finished".into(), &"cancelled".into())
    );
    let unknown = cancel(&addr, &[&id, "6f1c8a5e-0000-4000-8000-000000000000"]);
    assert_eq!(unknown.status.code(), Some(2), "an unknown id fails the command");
    assert!(
        text(&unknown.stdout).ends_with("000000000000\tunknown\n"),
        "{}",
        text(&unknown.stdout)
    );
}

#[test]
fn out_of_range_or_mistyped_task_fields_are_refused_naming_the_task() {
    let dir = tempfile::tempdir().unwrap();
    let head = "[[task]]\nname = 'fine'\nrole = 'w'\n\n[[task]]\nname = 'wrong'\nrole = 'w'\n";
    let cases = [
        ("retries = 101", "retries = 101 is out of range 0..=100"),
        ("max_attempts = 0", "max_attempts = 0 is out of range 1..=100"),
        (
            "timeout_ms = 2592000001",
            "timeout_ms = 2592000001 is out of range",
        ),
        ("queue_timeout_ms = -5", "queue_timeout_ms = -5 is out of range"),
        (
            "priority = 1000001",
            "priority = 1000001 is out of range -1000000..=1000000",
        ),
        ("priority = 'high'", "invalid type: string \"high\""),
        ("trigger = 'sometimes'", "unknown trigger rule \"sometimes\""),
        ("deadline_ms = 1.5", "invalid type: floating point"),
    ];
    for (i, (line, want)) in cases.iter().enumerate() {
        let file = task_file(&dir, &format!("bad{i}.toml"), &format!("{head}{line}\n"));
        let out = run(&["submit", &file, "--no-mdns"]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{line}: {err}");
        let at = format!("bad{i}.toml:8:");
        assert!(
            err.contains(&at) && err.contains("task \"wrong\"") && err.contains(want),
            "{line}: {err}"
        );
    }
    let json = r#"{"task": [{"name": "j", "role": "w", "trigger": "never"}]}"#;
    let out = run(&["submit", &task_file(&dir, "bad.json", json), "--no-mdns"]);
    let err = text(&out.stderr);
    assert!(
        err.contains("bad.json:1:") && err.contains("task \"j\": unknown trigger rule"),
        "{err}"
    );
}

#[test]
fn cancel_stops_a_running_command_and_its_process() {
    let (_admin, addr) = admin(81, &[]);
    let script = "sleep 41.2345";
    let worker = exec_worker(&addr, "sleeper:sleep:1", &["sh", "-c", script], &[]);
    let node = worker.child.id();
    let id = submit_no_wait(&addr, "[[task]]\nname = \"nap\"\nrole = \"sleep\"\n");
    wait_status(&addr, &id, "running");
    // The worker node's own command line holds the script too: skip it.
    wait_until("the command runs", || {
        !pids_with_cmdline("41.2345", &[node]).is_empty()
    });
    let out = cancel(&addr, &[&id]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{id}\tcancelled\n"));
    let s = wait_status(&addr, &id, "cancelled");
    let outcome = s["history"][0]["outcome"].as_str().unwrap();
    assert!(outcome.starts_with("aborted"), "{s}");
    wait_until("the command is gone", || {
        pids_with_cmdline("41.2345", &[node]).is_empty()
    });
}

#[test]
fn a_command_exiting_75_is_retried_then_fails_with_every_attempt() {
    let (_admin, addr) = admin(91, &[]);
    let _worker = exec_worker(
        &addr,
        "flaky:flaky:1",
        &["sh", "-c", "echo busy >&2; exit 75"],
        &[],
    );
    let dir = tempfile::tempdir().unwrap();
    let file = task_file(
        &dir,
        "t.toml",
        "[[task]]\nname = 'again'\nrole = 'flaky'\nretries = 2\n",
    );
    let out = submit_json(&addr, &file, 1);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let t = json_lines(&out).pop().unwrap();
    assert_eq!(
        (&t["status"], &t["attempts"]),
        (&"failed".into(), &3.into()),
        "{t}"
    );
    let history = t["history"].as_array().unwrap();
    assert_eq!(history.len(), 3, "{t}");
    for a in history {
        let outcome = a["outcome"].as_str().unwrap();
        assert!(
            outcome.starts_with("failed (retryable)") && outcome.contains("busy"),
            "{a}"
        );
    }
}

#[test]
fn the_admins_task_timeout_stops_a_hanging_command() {
    let (_admin, addr) = admin(101, &["--task-timeout", "1"]);
    let worker = exec_worker(&addr, "hang:hang:1", &["sleep", "100000"], &[]);
    let node = worker.child.id();
    let dir = tempfile::tempdir().unwrap();
    let file = task_file(&dir, "t.toml", "[[task]]\nname = 'stuck'\nrole = 'hang'\n");
    let started = Instant::now();
    let out = submit_json(&addr, &file, 1);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let t = json_lines(&out).pop().unwrap();
    let error = t["error"].as_str().unwrap();
    assert!(error.contains("did not finish within 1000 ms"), "{t}");
    wait_until("sleep is gone", || {
        pids_with_cmdline("sleep 100000", &[node]).is_empty()
    });
}

#[test]
fn a_command_writing_20_mb_fails_promptly_and_its_status_still_works() {
    let (_admin, addr) = admin(111, &[]);
    let _worker = exec_worker(&addr, "big:big:1", &["head", "-c", "20000000", "/dev/zero"], &[]);
    let dir = tempfile::tempdir().unwrap();
    let file = task_file(&dir, "t.toml", "[[task]]\nname = 'flood'\nrole = 'big'\n");
    let started = Instant::now();
    let out = submit_json(&addr, &file, 1);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let t = json_lines(&out).pop().unwrap();
    let error = t["error"].as_str().unwrap();
    assert!(
        error.contains("wrote 20000000 bytes, over the limit of 8388608"),
        "{t}"
    );
    let id = t["id"].as_str().unwrap();
    let s = run(&["status", id, "--join", &addr, "--no-mdns", "--json"]);
    assert!(s.status.success(), "{}", text(&s.stderr));
    assert_eq!(json_lines(&s)[0]["status"], "failed");
}

#[test]
fn an_evicted_task_is_reported_as_evicted_not_unknown() {
    let (_admin, addr) = admin(121, &["--retention-age", "0"]);
    let _echo = echo_worker(&addr, 122, "Echo:worker:9", "1");
    let id = submit_no_wait(&addr, "[[task]]\nname = \"brief\"\nrole = \"worker\"\n");
    let mut last = None;
    wait_until("the task is evicted", || {
        let out = run(&["status", &id, "--join", &addr, "--no-mdns"]);
        let evicted = text(&out.stdout).contains("finished, and was evicted");
        last = Some(out);
        evicted
    });
    let out = last.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains("unknown"), "{}", text(&out.stderr));
    let json = run(&["status", &id, "--join", &addr, "--no-mdns", "--json"]);
    assert_eq!(json_lines(&json)[0]["status"], "evicted");
    let out = cancel(&addr, &[&id]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stdout), format!("{id}\tevicted\n"));
}
