//! Helpers for tests that run the `taskmesh` binary: nodes, submissions,
//! status polls. Every process is killed and reaped when its handle drops,
//! and every wait is bounded.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::procs::{json_lines, run_bounded, taskmesh, text, Proc};
use super::LIMIT;

/// Starts `taskmesh ARGS…` as a long-running child.
pub fn start(args: &[&str]) -> Proc {
    Proc::spawn(taskmesh(args))
}

/// Runs `taskmesh ARGS…` to completion, bounded.
pub fn run(args: &[&str]) -> Output {
    run_bounded(taskmesh(args))
}

/// `taskmesh node` on a free port of 127.0.0.1 without mDNS, with `args`.
fn node(args: &[&str]) -> Proc {
    let mut all = vec!["node", "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"];
    all.extend(args);
    start(&all)
}

/// An admin process with `extra` options; returns it and its address.
pub fn admin(seed: u64, extra: &[&str]) -> (Proc, String) {
    let seed = seed.to_string();
    let mut args = vec!["--seed", &seed, "--admin-priority", "200"];
    args.extend(extra);
    let admin = node(&args);
    let addr = admin.expect_line("listening on ", "");
    (admin, addr)
}

/// A worker-only process joining `addr` with a command worker `spec`
/// running `command`, plus `extra` options.
pub fn exec_worker(addr: &str, spec: &str, command: &[&str], extra: &[&str]) -> Proc {
    Proc::spawn(exec_worker_command(addr, spec, command, extra))
}

/// The command line of [`exec_worker`], to start with other settings
/// (environment, a log file).
pub fn exec_worker_command(addr: &str, spec: &str, command: &[&str], extra: &[&str]) -> Command {
    let mut args = vec!["node", "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"];
    args.extend(["--join", addr, "--no-admin", "--exec", spec]);
    args.extend(extra);
    args.push("--");
    args.extend(command);
    taskmesh(&args)
}

/// An admin process plus worker processes; returns them and the admin address.
pub fn mesh(seed: u64, workers: &[&str], work_ms: &str) -> (Vec<Proc>, String) {
    let (admin, addr) = admin(seed, &["--no-worker-timeout", "2"]);
    let mut procs = vec![admin];
    for (i, w) in workers.iter().enumerate() {
        procs.push(echo_worker(&addr, seed + 1 + i as u64, w, work_ms));
    }
    (procs, addr)
}

/// A worker-only process joining `addr` with a built-in echo worker.
pub fn echo_worker(addr: &str, seed: u64, spec: &str, work_ms: &str) -> Proc {
    let seed = seed.to_string();
    node(&[
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

/// Submits a task file with `--json` once `workers` workers are registered.
pub fn submit_json(addr: &str, file: &str, workers: u32) -> Output {
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
pub fn submit_no_wait(addr: &str, toml: &str) -> String {
    submit_no_wait_all(addr, toml).swap_remove(0)
}

/// Submits a one-file task list without waiting, once a worker is
/// registered; returns every task's id, in the file's order.
pub fn submit_no_wait_all(addr: &str, toml: &str) -> Vec<String> {
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
    let ids: Vec<String> = text(&out.stdout)
        .lines()
        .map(|l| l.split('\t').next().unwrap_or_default().to_string())
        .collect();
    assert!(!ids.is_empty(), "no task ids printed");
    ids
}

/// The task's JSON status line as the admin reports it now.
pub fn status_of(addr: &str, id: &str) -> serde_json::Value {
    let out = run(&["status", id, "--join", addr, "--no-mdns", "--json"]);
    json_lines(&out).pop().unwrap_or_default()
}

/// Polls the task's status (the CLI has no event stream) until it is `want`.
pub fn wait_status(addr: &str, id: &str, want: &str) -> serde_json::Value {
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

/// Writes a task file into `dir`; returns its path.
pub fn task_file(dir: &tempfile::TempDir, name: &str, text: &str) -> String {
    let file = dir.path().join(name);
    std::fs::write(&file, text).unwrap();
    file.to_str().unwrap().to_string()
}

/// `n` echo tasks in chains of 10 (each task but a chain's first depends
/// on the one before), written into `dir`; returns the file's path.
pub fn chains(dir: &tempfile::TempDir, n: usize) -> String {
    let mut text = String::new();
    for i in 0..n {
        text += &format!("[[task]]\nname = \"t{i}\"\nrole = \"echo\"\ndifficulty = 1\n");
        if i % 10 != 0 {
            text += &format!("depends_on = [\"t{}\"]\n", i - 1);
        }
    }
    task_file(dir, "chains.toml", &text)
}

/// All `n` tasks completed, each with exactly one completed attempt.
pub fn all_completed_once(reports: &[serde_json::Value], n: usize) {
    assert_eq!(reports.len(), n);
    for r in reports {
        assert_eq!(r["status"], "completed", "{r}");
        let history = r["history"].as_array().expect("a history");
        let completed = history.iter().filter(|h| h["outcome"] == "completed").count();
        assert_eq!(completed, 1, "{r}");
    }
}

/// A submission's JSON lines by task name.
pub fn by_name(out: &Output) -> HashMap<String, serde_json::Value> {
    let lines = json_lines(out).into_iter();
    lines
        .map(|l| (l["name"].as_str().unwrap().to_string(), l))
        .collect()
}

/// `taskmesh cancel ARGS… --join addr --no-mdns`.
pub fn cancel(addr: &str, args: &[&str]) -> Output {
    let mut all = vec!["cancel"];
    all.extend(args);
    all.extend(["--join", addr, "--no-mdns"]);
    run(&all)
}

/// Runs `submit FILE --json` through `via` once `workers` are registered,
/// calls `midway` once `at` tasks finished (from the progress lines), and
/// returns the reports (one JSON line per task), whether the submitter
/// succeeded, and what else it wrote on stderr.
pub fn submit_and(
    via: &str,
    file: &str,
    workers: u32,
    at: u32,
    midway: impl FnOnce(),
) -> (Vec<serde_json::Value>, bool, String) {
    let workers = workers.to_string();
    let cmd = taskmesh(&[
        "submit",
        file,
        "--join",
        via,
        "--no-mdns",
        "--wait-workers",
        &workers,
        "--json",
    ]);
    submit_watched(cmd, at, midway)
}

/// [`submit_and`] for any `submit … --json` command (in a network
/// namespace, say).
pub fn submit_watched(
    mut cmd: std::process::Command,
    at: u32,
    midway: impl FnOnce(),
) -> (Vec<serde_json::Value>, bool, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn submit");
    let stdout = child.stdout.take().expect("piped");
    let lines = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let stderr = BufReader::new(child.stderr.take().expect("piped"));
    let mut midway = Some(midway);
    let mut errors = String::new();
    for line in stderr.lines().map_while(Result::ok) {
        let done: u32 = line
            .strip_prefix('[')
            .and_then(|l| l.split('/').next())
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        if done >= at {
            if let Some(f) = midway.take() {
                f();
            }
        }
        if !line.starts_with('[') {
            errors += &line;
            errors.push('\n');
        }
    }
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("submit did not finish: {errors}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        midway.is_none(),
        "the run ended before {at} tasks finished: {errors}"
    );
    let reports = lines
        .join()
        .expect("reader")
        .iter()
        .map(|l| serde_json::from_str(l).expect("a JSON report"))
        .collect();
    (reports, status.success(), errors)
}
