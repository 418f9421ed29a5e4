//! Command worker tests. Each test that starts a long `sleep` gives it a
//! unique duration, its needle, so tests running in parallel never see each
//! other's processes; every wait polls `/proc` with a bounded deadline, and a
//! [`Reap`] guard kills any leftover if the test fails.

use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::super::group::ProcessGroup;
use super::*;
use crate::scheduler::{Assignment, DepOutput, Failure};
use crate::worker::WorkerRuntime;
use crate::TaskId;

/// The longest any wait in these tests may take.
const WITHIN: Duration = Duration::from_secs(10);

fn spec() -> WorkerArg {
    "c:r:1".parse().unwrap()
}

fn sh(script: &str) -> CommandWorker {
    CommandWorker::new(spec(), "sh", vec!["-c".into(), script.into()])
}

fn dep(name: &str, outcome: Result<&[u8], &str>) -> DepOutput {
    DepOutput {
        id: TaskId::random(),
        name: name.into(),
        outcome: outcome
            .map(|b| Payload::from_bytes(b.to_vec()))
            .map_err(String::from),
    }
}

fn request(input: &[u8], deps: Vec<DepOutput>) -> TaskRequest {
    TaskRequest {
        id: TaskId::random(),
        name: "t".into(),
        role: "r".into(),
        difficulty: 1,
        attempt: 1,
        input: Payload::from_bytes(input.to_vec()),
        deps,
        cancel: Default::default(),
    }
}

/// Pids of live processes whose command line contains `needle` (zombies
/// have an empty command line, so they never match).
fn processes(needle: &str) -> Vec<Pid> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            cmdline.windows(needle.len()).any(|w| w == needle.as_bytes())
        })
        .map(Pid::from_raw)
        .collect()
}

/// Polls until `cond` holds; false if it still does not after [`WITHIN`].
async fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + WITHIN;
    while !cond() {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

async fn started(needle: &str) {
    assert!(
        eventually(|| !processes(needle).is_empty()).await,
        "{needle} never started"
    );
}

async fn gone(needle: &str) {
    let left = eventually(|| processes(needle).is_empty()).await;
    assert!(left, "{needle} survived: {:?}", processes(needle));
}

/// The process group and state letter of a live or zombie process, or
/// `None` once it is reaped.
fn group_and_state(pid: Pid) -> Option<(i32, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid pgrp ...": comm may hold spaces, so skip past it.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?.chars().next()?;
    let group = fields.nth(1)?.parse().ok()?;
    Some((group, state))
}

/// True once `pid` is reaped or a zombie: it runs nothing any more.
fn dead(pid: Pid) -> bool {
    group_and_state(pid).is_none_or(|(_, state)| state == 'Z')
}

/// Kills whatever still matches its needle when the test ends, pass or fail.
struct Reap(&'static str);

impl Drop for Reap {
    fn drop(&mut self) {
        for pid in processes(self.0) {
            let _ = kill(pid, Signal::SIGKILL);
        }
    }
}

/// A runtime with one command worker and a short kill grace.
fn runtime(worker: CommandWorker) -> WorkerRuntime {
    let cfg = RuntimeConfig {
        kill_grace: Duration::from_secs(2),
        ..RuntimeConfig::default()
    };
    WorkerRuntime::with_config(vec![Arc::new(worker)], cfg).unwrap()
}

fn assignment(timeout_ms: Option<u64>) -> Assignment {
    Assignment {
        task: TaskId::random(),
        attempt: 1,
        worker: "c".into(),
        name: "t".into(),
        role: "r".into(),
        difficulty: 1,
        input: Payload::from_bytes(vec![]),
        deps: vec![],
        timeout_ms,
    }
}

#[tokio::test]
async fn pipes_input_and_completed_dependencies_and_names_failed_ones() {
    let w = sh("tr a-z A-Z; printf '|%s|%s' \"$TASKMESH_FAILED_DEPS\" \"$TASKMESH_TASK_NAME\"");
    let deps = vec![
        dep("a", Ok(b" and more")),
        dep("b", Err("boom")),
        dep("c", Err("x")),
    ];
    let out = w.process(request(b"hello", deps)).await.unwrap();
    assert_eq!(out.as_bytes(), b"HELLO AND MORE|b,c|t");
    let out = w.process(request(b"hi", vec![dep("a", Ok(b"!"))])).await.unwrap();
    assert_eq!(out.as_bytes(), b"HI!||t");
}

#[tokio::test]
async fn exit_codes_follow_the_convention() {
    // (script, retryable, expected in the message)
    let cases = [
        ("echo doomed >&2; exit 75", true, "exit status: 75"),
        ("echo doomed >&2; echo partial; exit 3", false, "exit status: 3"),
        ("echo doomed >&2; kill -s KILL $$", true, "signal: 9"),
    ];
    for (script, retryable, status) in cases {
        let err = sh(script).process(request(b"", vec![])).await.unwrap_err();
        let text = err.to_string();
        assert_eq!(err.is_retryable(), retryable, "{script}: {text}");
        assert!(
            text.contains(status) && text.contains("doomed"),
            "{script}: {text}"
        );
    }
    assert_eq!(RETRYABLE_EXIT_CODE, 75);
    let missing = CommandWorker::new(spec(), "/nonexistent/program", vec![]);
    let err = missing.process(request(b"", vec![])).await.unwrap_err();
    assert!(
        !err.is_retryable() && err.to_string().contains("cannot start"),
        "{err}"
    );
}

#[tokio::test]
async fn oversize_output_is_permanent_and_names_both_sizes() {
    for (script, size) in [("printf 12345", 5), ("head -c 1000000 /dev/zero", 1_000_000)] {
        let mut w = sh(script);
        w.max_output = 4;
        let err = w.process(request(b"", vec![])).await.unwrap_err();
        assert!(!err.is_retryable(), "{script}: {err}");
        let want = format!("wrote {size} bytes, over the limit of 4");
        assert!(err.to_string().ends_with(&want), "{script}: {err}");
    }
}

#[tokio::test]
async fn a_chatty_stderr_keeps_only_its_tail() {
    let w = sh("head -c 3000000 /dev/zero | tr '\\0' x >&2; echo END >&2; exit 3");
    let err = w.process(request(b"", vec![])).await.unwrap_err().to_string();
    assert!(
        err.ends_with("xxxEND"),
        "{}",
        &err[err.len().saturating_sub(80)..]
    );
    assert!(err.len() < STDERR_TAIL + 100, "{} bytes", err.len());
}

#[tokio::test]
async fn background_children_die_when_the_program_exits() {
    let _reap = Reap("38.1234");
    let w = sh("sleep 38.1234 & echo hi");
    let out = tokio::time::timeout(WITHIN, w.process(request(b"", vec![]))).await;
    assert_eq!(out.expect("held open by its child").unwrap().as_bytes(), b"hi\n");
    gone("38.1234").await;
}

#[tokio::test]
async fn a_timeout_kills_the_whole_group() {
    let _reap = Reap("37.4321");
    let mut rt = runtime(sh("sleep 37.4321; echo done"));
    assert!(rt.accept(assignment(Some(300))).accepted);
    started("37.4321").await;
    let report = tokio::time::timeout(WITHIN, rt.next_finished()).await.unwrap();
    let failure = report.outcome.unwrap_err();
    assert_eq!(failure.message, "timed out after 300 ms");
    assert!(failure.retryable);
    assert_eq!(failure.timeout_ms, Some(300));
    gone("37.4321").await;
}

#[tokio::test]
async fn cancelling_kills_the_whole_group_and_frees_the_slot() {
    let _reap = Reap("37.4322");
    let mut rt = runtime(sh("sleep 37.4322; echo done"));
    let a = assignment(None);
    assert!(rt.accept(a.clone()).accepted);
    started("37.4322").await;
    assert!(rt.cancel(a.task, a.attempt));
    gone("37.4322").await;
    let mut reports = Vec::new();
    let ended = eventually(|| {
        reports.extend(rt.try_finished());
        rt.running() == 0
    });
    assert!(ended.await, "the attempt never ended");
    // One report, once stopped: the admin ignores it but frees the slot.
    let [stopped] = &reports[..] else {
        panic!("{reports:?}")
    };
    assert_eq!(stopped.outcome, Err(Failure::retryable("cancelled")));
    assert!(rt.accept(assignment(None)).accepted, "slot freed");
}

#[tokio::test]
async fn dropping_the_runtime_kills_the_whole_group() {
    let _reap = Reap("37.4323");
    let mut rt = runtime(sh("sleep 37.4323; echo done"));
    assert!(rt.accept(assignment(None)).accepted);
    started("37.4323").await;
    drop(rt);
    gone("37.4323").await;
}

/// Set in the environment of the node process that
/// [`a_killed_node_takes_its_commands_with_it`] starts and kills.
const NODE_ENV: &str = "TASKMESH_TEST_DOOMED_NODE";

/// Not a test of its own: the body of the doomed node, run in a child
/// process by [`a_killed_node_takes_its_commands_with_it`]; passes at once
/// anywhere else.
#[tokio::test]
async fn doomed_node() {
    if std::env::var_os(NODE_ENV).is_none() {
        return;
    }
    let w = CommandWorker::new(spec(), "sleep", vec!["39.8765".into()]);
    let _ = w.process(request(b"", vec![])).await;
}

#[tokio::test]
async fn a_killed_node_takes_its_commands_with_it() {
    let _reap = Reap("39.8765");
    let exe = std::env::current_exe().unwrap();
    let mut node = tokio::process::Command::new(exe)
        .args(["--exact", "builtin::command::tests::doomed_node", "--nocapture"])
        .env(NODE_ENV, "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    started("39.8765").await;
    let sleep = processes("39.8765")[0];
    let (group, _) = group_and_state(sleep).expect("sleep has a group");
    let watcher = Pid::from_raw(group);
    node.start_kill().unwrap();
    tokio::time::timeout(WITHIN, node.wait()).await.unwrap().unwrap();
    gone("39.8765").await;
    assert!(
        eventually(|| dead(watcher)).await,
        "the watcher outlived its group"
    );
}

#[tokio::test]
async fn the_watcher_leads_the_group_and_dies_with_it() {
    let group = ProcessGroup::start().await.unwrap();
    let watcher = Pid::from_raw(group.id());
    assert_eq!(group_and_state(watcher).map(|(g, _)| g), Some(group.id()));
    // Armed means it ignores SIGTERM, so the graceful stop leaves it alone.
    let status = std::fs::read_to_string(format!("/proc/{watcher}/status")).unwrap();
    let ignored = status.lines().find_map(|l| l.strip_prefix("SigIgn:")).unwrap();
    let ignored = u64::from_str_radix(ignored.trim(), 16).unwrap();
    assert_ne!(
        ignored & 1 << (Signal::SIGTERM as i32 - 1),
        0,
        "SigIgn {ignored:x}"
    );
    group.finish().await;
    assert_eq!(group_and_state(watcher), None, "finish reaps the watcher");
    let dropped = ProcessGroup::start().await.unwrap();
    let watcher = Pid::from_raw(dropped.id());
    drop(dropped);
    assert!(eventually(|| dead(watcher)).await, "dropping kills the watcher");
}

#[tokio::test]
async fn a_program_that_never_stops_writing_is_stopped_past_the_limit() {
    let mut w = sh("yes");
    w.max_output = 4096;
    let started = std::time::Instant::now();
    let err = w.process(request(b"", vec![])).await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert!(
        err.to_string()
            .contains("kept writing past the limit of 4096 bytes"),
        "{err}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}
