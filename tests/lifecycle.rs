//! A task's life through the `taskmesh` binary, with faults injected from
//! outside: killed and paused worker processes, retries, timeouts,
//! cancellation, oversize results, eviction. Real processes on 127.0.0.1.

use std::time::{Duration, Instant};

mod common;

use common::cli::*;
use common::procs::{json_lines, pids_with_cmdline, text, wait_until, Proc};

/// An admin and two worker processes (built-in workers "First" and
/// "Second") running one 3-second task: returns the processes (admin
/// first), the admin's address, the workers' peer ids, the task id and the
/// index (0 or 1) of the worker that holds it.
fn a_long_task_on_one_of_two_workers(seed: u64) -> (Vec<Proc>, String, Vec<String>, String, usize) {
    let (procs, addr) = mesh(seed, &["First:worker:9", "Second:worker:9"], "1000");
    let peers: Vec<String> = procs[1..]
        .iter()
        .map(|p| p.expect_line("peer id: ", ""))
        .collect();
    // Difficulty 3 × 1000 ms: still running when the test strikes.
    let id = submit_no_wait(
        &addr,
        "[[task]]\nname = \"long\"\nrole = \"worker\"\ndifficulty = 3\n",
    );
    let running = wait_status(&addr, &id, "running");
    let holder = peers
        .iter()
        .position(|p| running["node"] == p.as_str())
        .expect("a worker node holds it");
    (procs, addr, peers, id, holder)
}

#[test]
fn a_task_whose_worker_process_is_killed_completes_on_another_worker() {
    let (mut procs, addr, peers, id, holder) = a_long_task_on_one_of_two_workers(31);
    drop(procs.remove(1 + holder)); // kill -9 the worker process
    let s = wait_status(&addr, &id, "completed");
    assert_eq!(s["attempts"], 2, "{s}");
    assert_eq!(s["node"], peers[1 - holder].as_str(), "{s}");
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

/// Submits one task `name` of `role`; asserts that it failed within 10 s
/// and returns its JSON report.
fn one_task_fails_promptly(addr: &str, name: &str, role: &str) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let text_ = format!("[[task]]\nname = '{name}'\nrole = '{role}'\n");
    let file = task_file(&dir, "t.toml", &text_);
    let started = Instant::now();
    let out = submit_json(addr, &file, 1);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "took {took:?}");
    json_lines(&out).pop().unwrap()
}

#[test]
fn the_admins_task_timeout_stops_a_hanging_command() {
    let (_admin, addr) = admin(101, &["--task-timeout", "1"]);
    let worker = exec_worker(&addr, "hang:hang:1", &["sleep", "100000"], &[]);
    let node = worker.child.id();
    let t = one_task_fails_promptly(&addr, "stuck", "hang");
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
    let t = one_task_fails_promptly(&addr, "flood", "big");
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
    let (_admin, addr) = admin(121, &["--retention-age", "0", "--retention-min-age", "0"]);
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

/// The admin's view of every worker's load, by node.
fn loads(addr: &str) -> Vec<(String, u64)> {
    let out = run(&["workers", "--join", addr, "--no-mdns", "--json"]);
    let workers = json_lines(&out).into_iter();
    workers
        .map(|w| {
            (
                w["node"].as_str().unwrap_or("").to_string(),
                w["load"].as_u64().unwrap_or(99),
            )
        })
        .collect()
}

#[test]
fn a_paused_workers_task_runs_again_elsewhere_and_its_late_result_is_ignored() {
    use nix::sys::signal::Signal;
    let (procs, addr, peers, id, holder) = a_long_task_on_one_of_two_workers(131);
    let paused = &procs[1 + holder];
    paused.signal(Signal::SIGSTOP);
    // The lease (2 s) runs out: the task goes to the other worker.
    wait_until("the task is awarded again", || {
        status_of(&addr, &id)["attempts"] == 2
    });
    paused.signal(Signal::SIGCONT);
    let done = wait_status(&addr, &id, "completed");
    assert_eq!(done["node"], peers[1 - holder].as_str(), "{done}");
    let history = done["history"].as_array().expect("a history");
    assert_eq!(history.len(), 2, "{done}");
    assert!(
        history[0]["outcome"].as_str().unwrap().contains("lease expired"),
        "{done}"
    );
    assert_eq!(history[1]["outcome"], "completed", "{done}");
    // The resumed worker is told to stop; its slot heals, and the one
    // recorded result stays the other worker's.
    wait_until("every worker's load back to 0", || {
        let l = loads(&addr);
        l.len() == 2 && l.iter().all(|(_, load)| *load == 0)
    });
    let after = status_of(&addr, &id);
    assert_eq!(
        (&after["node"], &after["attempts"], &after["output"]),
        (&done["node"], &done["attempts"], &done["output"])
    );
}

/// Tasks `t1`…`tn` of role `job` (difficulty 1, each with the TOML
/// lines `extra`), submitted without waiting; their ids in order.
fn submit_jobs(addr: &str, n: usize, extra: &str) -> Vec<String> {
    let tasks: String = (1..=n)
        .map(|i| format!("[[task]]\nname = \"t{i}\"\nrole = \"job\"\ndifficulty = 1\n{extra}"))
        .collect();
    submit_no_wait_all(addr, &tasks)
}

/// A command for `job` workers: each run leaves a line with its task's
/// name in the returned file, then takes a second.
fn job_script(dir: &std::path::Path) -> (std::path::PathBuf, String) {
    let runs = dir.join("runs");
    let script = format!("echo \"$TASKMESH_TASK_NAME\" >> {}; sleep 1", runs.display());
    (runs, script)
}

/// A worker-only node running `script` as worker `spec`, logging at debug
/// level to `log`.
fn logged_job_worker(addr: &str, spec: &str, script: &str, log: &std::path::Path) -> Proc {
    let mut cmd = exec_worker_command(addr, spec, &["sh", "-c", script], &[]);
    cmd.env("RUST_LOG", "taskmesh=debug");
    Proc::spawn_logged(cmd, log)
}

#[test]
fn a_paused_node_does_not_start_queued_awards_that_went_elsewhere() {
    use nix::sys::signal::Signal;
    let (_admin, addr) = admin(151, &[]);
    let dir = tempfile::tempdir().unwrap();
    let (runs, script) = job_script(dir.path());
    let log = dir.path().join("paused.log");
    let paused = logged_job_worker(&addr, "Paused:job:9", &script, &log);
    let paused_peer = paused.expect_line("peer id: ", "");
    // Three tasks on the one single-slot worker: one runs, two wait in its
    // queue.
    let ids = submit_jobs(&addr, 3, "");
    assert_eq!(ids.len(), 3);
    wait_status(&addr, &ids[0], "running");
    wait_until("every task awarded to the paused node", || {
        ids.iter()
            .all(|id| status_of(&addr, id)["node"] == paused_peer.as_str())
    });
    // Paused past the lease: the three go to another node and complete
    // there.
    paused.signal(Signal::SIGSTOP);
    let steady = exec_worker(&addr, "Steady:job:9", &["sh", "-c", &script], &[]);
    let steady_peer = steady.expect_line("peer id: ", "");
    for id in &ids {
        let done = wait_status(&addr, id, "completed");
        assert_eq!(done["node"], steady_peer.as_str(), "{done}");
    }
    // Woken up, the paused node drops the awards still in its queue, as
    // expired or as the admin aborts them, whichever it reads first,
    // instead of running them a second time.
    paused.signal(Signal::SIGCONT);
    wait_until("the paused node drops its expired awards", || {
        std::fs::read_to_string(&log)
            .is_ok_and(|l| l.contains("expired unstarted") || l.contains("attempts aborted by the admin"))
    });
    let mut lines: Vec<String> = std::fs::read_to_string(&runs)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        ["t1", "t1", "t2", "t3"],
        "t1 started on both nodes, the others once"
    );
}

#[test]
fn an_award_that_left_a_queue_to_run_counts_when_its_node_is_then_lost() {
    use nix::sys::signal::Signal;
    let (_admin, addr) = admin(161, &[]);
    let dir = tempfile::tempdir().unwrap();
    let (runs, script) = job_script(dir.path());
    let log = dir.path().join("worker.log");
    let worker = logged_job_worker(&addr, "Only:job:9", &script, &log);
    let ids = submit_jobs(&addr, 2, "max_attempts = 1\n");
    // t2 waits in the queue behind t1 (a direct start, which renews
    // nothing early). Once t2 started, the node renews early, and is paused
    // right after, before its next periodic renewal.
    wait_until("an early renewal for t2's start, answered", || {
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        log.split_once("renewing early: a queued award started")
            .is_some_and(|(_, after)| after.contains("leases renewed"))
    });
    worker.signal(Signal::SIGSTOP);
    // The admin knew t2 had started: its lost attempt counts, and with
    // max_attempts = 1 the task fails instead of running a second time.
    let failed = wait_status(&addr, &ids[1], "failed");
    assert_eq!(failed["attempts"], 1, "{failed}");
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("1 attempt lost, the most allowed"), "{failed}");
    let outcome = failed["history"][0]["outcome"].as_str().unwrap_or_default();
    assert!(!outcome.contains("before it started"), "{failed}");
    worker.signal(Signal::SIGCONT);
    let lines: Vec<String> = std::fs::read_to_string(&runs)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(lines, ["t1", "t2"], "each ran once");
}

#[test]
fn two_thousand_tasks_complete_although_a_worker_is_killed_halfway() {
    let (mut procs, addr) = mesh(141, &["A:worker:1", "B:worker:1", "C:worker:1"], "1");
    let dir = tempfile::tempdir().unwrap();
    let tasks: String = (0..2000)
        .map(|i| format!("[[task]]\nname = \"t{i}\"\nrole = \"worker\"\ndifficulty = 1\n"))
        .collect();
    let file = task_file(&dir, "many.toml", &tasks);
    // Kill -9 worker A's process once 1,000 tasks finished.
    let (reports, ok, errors) = submit_and(&addr, &file, 3, 1000, || drop(procs.remove(1)));
    assert_eq!(reports.len(), 2000);
    let not_done: Vec<_> = reports.iter().filter(|r| r["status"] != "completed").collect();
    assert!(
        not_done.is_empty(),
        "{} not completed, e.g. {}",
        not_done.len(),
        not_done[0]
    );
    assert!(ok, "{errors}");
}
