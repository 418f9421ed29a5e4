//! Runtime tests. Workers here only wait on tokio timers and signals, so
//! most tests run on paused time: every wait is virtual, bounded and exact.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::*;
use crate::scheduler::{Announcement, Assignment, Failure};

/// What a probe's `process` went through.
#[derive(Debug, PartialEq, Eq)]
enum Event {
    Started(String),
    /// `process` returned by itself.
    Returned(String),
    /// `process` was dropped before returning.
    Dropped(String),
}

/// A worker whose behaviour is chosen by the task name: `echo` returns the
/// input, `fail` a retryable error, `panic` panics, `coop` waits for
/// cancellation, `stubborn` never returns. It tells `events` what happened.
struct Probe {
    name: &'static str,
    slots: u32,
    events: mpsc::Sender<Event>,
}

/// Sends `Returned` or `Dropped` when `process` ends either way.
struct Ending {
    task: String,
    returned: bool,
    events: mpsc::Sender<Event>,
}

impl Drop for Ending {
    fn drop(&mut self) {
        let task = std::mem::take(&mut self.task);
        let event = if self.returned {
            Event::Returned(task)
        } else {
            Event::Dropped(task)
        };
        let _ = self.events.try_send(event);
    }
}

#[async_trait::async_trait]
impl Worker for Probe {
    fn name(&self) -> &str {
        self.name
    }
    fn role(&self) -> &str {
        "w"
    }
    fn skill(&self) -> u32 {
        5
    }
    fn slots(&self) -> u32 {
        self.slots
    }
    async fn process(&self, req: TaskRequest) -> Result<Payload, ProcessError> {
        let _ = self.events.try_send(Event::Started(req.name.clone()));
        let mut ending = Ending {
            task: req.name.clone(),
            returned: false,
            events: self.events.clone(),
        };
        let result = match req.name.as_str() {
            "panic" => panic!("boom"),
            "fail" => Err(ProcessError::msg("nope")),
            // An error text of one 3-byte character per input byte.
            "long error" => Err(ProcessError::permanent("€".repeat(req.input.len()))),
            "coop" => {
                req.cancel.cancelled().await;
                Err(ProcessError::msg("stopped"))
            }
            "stubborn" => std::future::pending().await,
            _ => Ok(req.input),
        };
        ending.returned = true;
        result
    }
}

fn probe(name: &'static str, slots: u32) -> (Arc<dyn Worker>, mpsc::Receiver<Event>) {
    let (events, rx) = mpsc::channel(16);
    let worker = Probe { name, slots, events };
    (Arc::new(worker), rx)
}

fn assignment(name: &str, worker: &str) -> Assignment {
    Assignment {
        task: TaskId::random(),
        attempt: 1,
        worker: worker.into(),
        name: name.into(),
        role: "w".into(),
        difficulty: 1,
        input: Payload::from_bytes(vec![7, 8]),
        deps: vec![],
        timeout_ms: None,
    }
}

const GRACE: Duration = Duration::from_millis(500);

/// A runtime without queues: awards beyond the slots are refused.
fn runtime(worker: Arc<dyn Worker>) -> WorkerRuntime {
    queued_runtime(worker, 0)
}

fn queued_runtime(worker: Arc<dyn Worker>, queue: u32) -> WorkerRuntime {
    let cfg = RuntimeConfig {
        max_output: 1 << 10,
        kill_grace: GRACE,
        queue,
    };
    WorkerRuntime::with_config(vec![worker], cfg).unwrap()
}

/// The next event, within a (virtual) minute.
async fn next(rx: &mut mpsc::Receiver<Event>) -> Event {
    let event = tokio::time::timeout(Duration::from_secs(60), rx.recv()).await;
    event.expect("no event within a minute").expect("probe gone")
}

/// Waits a virtual minute and checks no report comes.
async fn no_report(rt: &mut WorkerRuntime) {
    let report = tokio::time::timeout(Duration::from_secs(60), rt.next_finished()).await;
    assert!(report.is_err(), "unexpected report {report:?}");
}

/// The report of a cancelled attempt, once it stopped: the admin ignores
/// its outcome and frees the slot.
async fn cancelled_report(rt: &mut WorkerRuntime, task: TaskId) {
    let report = tokio::time::timeout(Duration::from_secs(60), rt.next_finished()).await;
    let report = report.expect("a report once stopped");
    assert_eq!(report.task, task);
    assert!(report.outcome.is_err(), "{report:?}");
}

#[tokio::test]
async fn runs_refuses_and_reports() {
    let (w, _events) = probe("a", 1);
    let mut rt = runtime(w);
    assert!(rt.accept(assignment("echo", "a")).accepted);
    let full = rt.accept(assignment("echo", "a"));
    assert_eq!(full.reason.as_deref(), Some("worker is full"));
    assert!(!rt.accept(assignment("echo", "ghost")).accepted);
    let r = rt.next_finished().await;
    assert_eq!(r.outcome, Ok(Payload::from_bytes(vec![7, 8])));
    assert!(rt.accept(assignment("panic", "a")).accepted);
    let r = rt.next_finished().await;
    assert!(r.outcome.unwrap_err().message.contains("panicked: boom"));
    assert!(rt.accept(assignment("fail", "a")).accepted);
    assert_eq!(rt.next_finished().await.outcome, Err(Failure::retryable("nope")));
    rt.drain();
    assert!(!rt.accept(assignment("echo", "a")).accepted);
}

#[tokio::test(start_paused = true)]
async fn a_task_already_running_is_refused_under_any_attempt() {
    let (w, _events) = probe("a", 3);
    let mut rt = runtime(w);
    let first = assignment("stubborn", "a");
    assert!(rt.accept(first.clone()).accepted);
    let again = rt.accept(first.clone());
    assert_eq!(again.reason.as_deref(), Some("already running attempt 1"));
    let second = rt.accept(Assignment { attempt: 2, ..first });
    assert!(!second.accepted);
    assert_eq!(second.reason.as_deref(), Some("already running attempt 1"));
}

#[tokio::test(start_paused = true)]
async fn cancel_stops_a_cooperative_worker_which_reports_once_stopped_and_frees_its_slot() {
    let (w, mut events) = probe("a", 1);
    let mut rt = runtime(w);
    let a = assignment("coop", "a");
    assert!(rt.accept(a.clone()).accepted);
    assert_eq!(next(&mut events).await, Event::Started("coop".into()));
    assert!(!rt.cancel(a.task, 2), "wrong attempt");
    assert!(rt.cancel(a.task, 1));
    assert!(!rt.cancel(a.task, 1), "already cancelled");
    assert_eq!(next(&mut events).await, Event::Returned("coop".into()));
    cancelled_report(&mut rt, a.task).await;
    no_report(&mut rt).await;
    assert_eq!(rt.running(), 0);
    assert!(rt.accept(assignment("echo", "a")).accepted, "slot freed");
    assert_eq!(
        rt.next_finished().await.outcome,
        Ok(Payload::from_bytes(vec![7, 8]))
    );
}

#[tokio::test(start_paused = true)]
async fn a_worker_ignoring_cancellation_is_dropped_after_the_kill_grace() {
    let (w, mut events) = probe("a", 1);
    let mut rt = runtime(w);
    let a = assignment("stubborn", "a");
    assert!(rt.accept(a.clone()).accepted);
    assert_eq!(next(&mut events).await, Event::Started("stubborn".into()));
    let cancelled_at = Instant::now();
    assert!(rt.cancel(a.task, 1));
    let busy = rt.accept(assignment("echo", "a"));
    assert_eq!(
        busy.reason.as_deref(),
        Some("worker is full"),
        "slot held while winding down"
    );
    assert_eq!(next(&mut events).await, Event::Dropped("stubborn".into()));
    assert_eq!(cancelled_at.elapsed(), GRACE);
    cancelled_report(&mut rt, a.task).await;
    no_report(&mut rt).await;
    assert!(rt.accept(assignment("echo", "a")).accepted, "slot freed");
}

#[tokio::test(start_paused = true)]
async fn a_timeout_is_a_retryable_failure_that_names_the_limit() {
    let (w, mut events) = probe("a", 2);
    let mut rt = runtime(w);
    for name in ["coop", "stubborn"] {
        let started = Instant::now();
        assert!(
            rt.accept(Assignment {
                timeout_ms: Some(300),
                ..assignment(name, "a")
            })
            .accepted
        );
        let report = rt.next_finished().await;
        let expected = Failure {
            message: "timed out after 300 ms".into(),
            retryable: true,
            timeout_ms: Some(300),
        };
        assert_eq!(report.outcome, Err(expected), "{name}");
        let grace = if name == "coop" { Duration::ZERO } else { GRACE };
        assert_eq!(started.elapsed(), Duration::from_millis(300) + grace, "{name}");
        assert_eq!(next(&mut events).await, Event::Started(name.into()));
        let ending = next(&mut events).await;
        assert!(
            matches!(ending, Event::Returned(_) | Event::Dropped(_)),
            "{ending:?}"
        );
    }
}

/// However long a worker's error text, the report carries at most
/// MAX_ERROR_BYTES of it (cut on a character boundary) and says how much
/// was cut: a report too large for a frame would be lost, leaving the task
/// running for good.
#[tokio::test(start_paused = true)]
async fn a_long_error_text_is_cut_to_the_limit_and_says_so() {
    let (w, _events) = probe("a", 1);
    let mut rt = runtime(w);
    let chars = MAX_ERROR_BYTES; // 3 bytes each: three times the limit
    let long = Assignment {
        input: Payload::from_bytes(vec![0; chars]),
        ..assignment("long error", "a")
    };
    assert!(rt.accept(long).accepted);
    let failure = rt.next_finished().await.outcome.unwrap_err();
    // The cut falls on the last character boundary at or below the limit.
    let kept = MAX_ERROR_BYTES / 3;
    let total = 3 * chars;
    let expected = format!(
        "{}… ({} of {total} bytes cut)",
        "€".repeat(kept),
        total - 3 * kept
    );
    assert_eq!(failure.message, expected);
    assert!(!failure.retryable);
    // A short text is kept whole.
    let mut rt = runtime(probe("b", 1).0);
    assert!(rt.accept(assignment("fail", "b")).accepted);
    assert_eq!(rt.next_finished().await.outcome, Err(Failure::retryable("nope")));
}

#[tokio::test(start_paused = true)]
async fn an_oversize_output_is_a_permanent_failure_naming_both_sizes() {
    let (w, _events) = probe("a", 1);
    let mut rt = runtime(w);
    let big = Assignment {
        input: Payload::from_bytes(vec![0; 1025]),
        ..assignment("echo", "a")
    };
    assert!(rt.accept(big).accepted);
    let failure = rt.next_finished().await.outcome.unwrap_err();
    assert_eq!(
        failure,
        Failure::permanent("output of 1025 bytes is over the limit of 1024")
    );
}

#[tokio::test(start_paused = true)]
async fn held_lists_running_attempts_until_they_end_or_are_cancelled() {
    let (w, mut events) = probe("a", 3);
    let mut rt = runtime(w);
    let (coop, stubborn) = (assignment("coop", "a"), assignment("stubborn", "a"));
    assert!(rt.accept(coop.clone()).accepted);
    assert!(rt.accept(stubborn.clone()).accepted);
    let mut held = rt.held();
    held.sort();
    let mut expected = vec![(coop.task, 1), (stubborn.task, 1)];
    expected.sort();
    assert_eq!(held, expected);
    assert!(rt.cancel(stubborn.task, 1));
    assert_eq!(rt.held(), [(coop.task, 1)]);
    assert_eq!(next(&mut events).await, Event::Started("coop".into()));
    assert!(rt.cancel(coop.task, 1));
    assert!(rt.held().is_empty());
    let mut stopped = vec![];
    for _ in 0..2 {
        stopped.push(rt.next_finished().await.task);
    }
    stopped.sort();
    let mut both = vec![coop.task, stubborn.task];
    both.sort();
    assert_eq!(stopped, both, "each reports once stopped");
    no_report(&mut rt).await;
    assert_eq!(rt.running(), 0);
}

#[test]
fn bids_follow_role_skill_and_load() {
    let (a, _) = probe("a", 1);
    let (b, _) = probe("b", 0);
    let rt = WorkerRuntime::new(vec![a, b]).unwrap();
    let ann = |difficulty, role: &str| Announcement {
        task: TaskId::random(),
        round: 1,
        name: "t".into(),
        role: role.into(),
        difficulty,
        input_len: 0,
    };
    let bids = rt.bids_for(&[ann(4, "w"), ann(9, "w"), ann(1, "other")]);
    let willing: Vec<_> = bids.iter().map(|b| (b.worker.as_str(), b.willing)).collect();
    assert_eq!(willing, [("a", true), ("b", false), ("a", false), ("b", false)]);
    let (a1, _) = probe("a", 1);
    let (a2, _) = probe("a", 1);
    assert!(WorkerRuntime::new(vec![a1, a2]).is_err());
    let (bad, _) = probe("a\tb", 1);
    let e = WorkerRuntime::new(vec![bad]).err().expect("refused").to_string();
    assert!(
        e.contains(r#"worker "a\tb": its name holds the control character U+0009"#),
        "{e}"
    );
}

#[tokio::test(start_paused = true)]
async fn awards_beyond_the_slots_wait_in_the_queue_and_start_as_slots_free() {
    let (w, mut events) = probe("p", 1);
    let mut rt = queued_runtime(w, 1);
    let (running, queued, third) = (
        assignment("coop", "p"),
        assignment("echo", "p"),
        assignment("echo", "p"),
    );
    assert!(rt.accept(running.clone()).accepted);
    assert_eq!(next(&mut events).await, Event::Started("coop".into()));
    // Every slot is busy: the next award waits, unstarted, and says so in
    // renewals; one more is refused.
    assert!(rt.accept(queued.clone()).accepted);
    assert_eq!(rt.waiting(), vec![(queued.task, 1)]);
    assert_eq!(rt.held().len(), 2);
    assert_eq!(rt.running(), 2, "a queued attempt keeps the node from stopping");
    let refused = rt.accept(third);
    assert_eq!(refused.reason.as_deref(), Some("worker is full"));
    // Cancelled while waiting: it never starts, and reports at once.
    assert!(rt.cancel(queued.task, 1));
    let r = rt.next_finished().await;
    assert_eq!(r.task, queued.task);
    assert_eq!(r.outcome, Err(Failure::retryable("cancelled before it started")));
    assert!(rt.waiting().is_empty());
    // Queued again; the running attempt ends, and it starts at once.
    let queued = assignment("echo", "p");
    assert!(rt.accept(queued.clone()).accepted);
    assert!(rt.cancel(running.task, 1));
    assert_eq!(rt.next_finished().await.task, running.task);
    assert_eq!(next(&mut events).await, Event::Returned("coop".into()));
    assert_eq!(next(&mut events).await, Event::Started("echo".into()));
    assert!(rt.waiting().is_empty());
    let r = rt.next_finished().await;
    assert_eq!(
        (r.task, r.outcome),
        (queued.task, Ok(Payload::from_bytes(vec![7, 8])))
    );
    assert_eq!(rt.running(), 0);
}

#[tokio::test(start_paused = true)]
async fn draining_returns_queued_awards_unstarted_and_lets_running_ones_finish() {
    let (w, mut events) = probe("p", 1);
    let mut rt = queued_runtime(w, 2);
    let running = assignment("echo", "p");
    let queued = [assignment("echo", "p"), assignment("echo", "p")];
    assert!(rt.accept(running.clone()).accepted);
    for a in &queued {
        assert!(rt.accept(a.clone()).accepted);
    }
    let mut returned = rt.drain();
    returned.sort();
    let mut want: Vec<_> = queued.iter().map(|a| (a.task, a.attempt)).collect();
    want.sort();
    assert_eq!(returned, want);
    assert!(rt.waiting().is_empty());
    assert_eq!(rt.held(), vec![(running.task, 1)], "renewals no longer hold them");
    assert_eq!(rt.running(), 1, "only the running attempt keeps the node");
    // The running attempt finishes; nothing starts after it.
    assert_eq!(next(&mut events).await, Event::Started("echo".into()));
    assert_eq!(rt.next_finished().await.task, running.task);
    assert_eq!(rt.running(), 0);
    assert!(rt.try_finished().is_empty());
}

/// Waits a virtual minute for the probe's next event, which must not be a
/// start.
async fn nothing_starts(events: &mut mpsc::Receiver<Event>) {
    let event = tokio::time::timeout(Duration::from_secs(60), events.recv()).await;
    assert!(
        !matches!(event, Ok(Some(Event::Started(_)))),
        "an expired award started: {event:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_queued_award_starts_only_while_renewals_answered_in_time_keep_its_lease() {
    let (w, mut events) = probe("p", 1);
    let mut rt = queued_runtime(w, 2);
    rt.set_lease(Duration::from_secs(2)); // queued awards valid 1.5 s
    let (running, a, b) = (
        assignment("coop", "p"),
        assignment("coop", "p"),
        assignment("echo", "p"),
    );
    for x in [&running, &a, &b] {
        assert!(rt.accept(x.clone()).accepted);
    }
    assert_eq!(next(&mut events).await, Event::Started("coop".into()));
    // A renewal sent at 1 s and answered at once: valid until 2.5 s.
    tokio::time::advance(Duration::from_secs(1)).await;
    rt.renewed(tokio::time::Instant::now());
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(rt.cancel(running.task, 1));
    assert_eq!(rt.next_finished().await.task, running.task);
    assert_eq!(next(&mut events).await, Event::Returned("coop".into()));
    assert_eq!(
        next(&mut events).await,
        Event::Started("coop".into()),
        "a starts within its validity"
    );
    assert!(rt.take_started_from_queue(), "the node renews at once");
    assert!(!rt.take_started_from_queue());
    // No renewal since: at 3 s b is past its validity and is dropped
    // unstarted; renewals no longer name it.
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(rt.expire_queued(), vec![(b.task, 1)]);
    assert!(rt.waiting().is_empty());
    assert_eq!(rt.held(), vec![(a.task, 1)]);
    assert!(rt.cancel(a.task, 1));
    assert_eq!(rt.next_finished().await.task, a.task);
    assert_eq!(next(&mut events).await, Event::Returned("coop".into()));
    nothing_starts(&mut events).await;

    // A renewal answered after an award's validity ran out does not
    // extend it (its lease may have ended before the admin took it), and
    // the award is dropped when its slot frees.
    let (c, d) = (assignment("coop", "p"), assignment("echo", "p"));
    assert!(rt.accept(c.clone()).accepted);
    assert_eq!(next(&mut events).await, Event::Started("coop".into()));
    assert!(rt.accept(d.clone()).accepted);
    tokio::time::advance(Duration::from_millis(100)).await;
    let sent = tokio::time::Instant::now();
    tokio::time::advance(Duration::from_millis(1500)).await;
    rt.renewed(sent);
    assert!(rt.cancel(c.task, 1));
    assert_eq!(rt.next_finished().await.task, c.task);
    assert_eq!(next(&mut events).await, Event::Returned("coop".into()));
    nothing_starts(&mut events).await;
    assert!(rt.held().is_empty(), "the expired award is no longer held");
    assert!(!rt.take_started_from_queue(), "nothing left a queue to run");
    assert_eq!(rt.running(), 0);
}
