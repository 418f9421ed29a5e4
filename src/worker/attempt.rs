//! One attempt: [`Worker::process`] under its cancel signal, its execution
//! timeout and the kill grace, with its output checked against the limit and
//! whatever happened turned into a [`Report`].
//!
//! Stopping is two-step. First the attempt's [`Cancel`] fires (the runtime
//! cancelled it, or its timeout expired); `process` then has up to
//! `kill_grace` to return. After that its future is dropped, which for a
//! command worker kills the program's process group.

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;

use super::{Cancel, ProcessError, RuntimeConfig, TaskRequest, Worker, MAX_ERROR_BYTES};
use crate::scheduler::{Assignment, Failure, Report};
use crate::task::Payload;

/// What `process` returned, or a caught panic.
type Returned = std::thread::Result<Result<Payload, ProcessError>>;

/// How an attempt ended.
enum End {
    /// `process` returned (or panicked) before anyone asked it to stop.
    Returned(Returned),
    /// The execution timeout (milliseconds) expired first.
    TimedOut(u64),
    /// The runtime cancelled the attempt first; its report is discarded.
    Cancelled,
}

/// Runs one attempt to its end and reports it. Never panics; returns after
/// at most `timeout_ms + kill_grace` once cancelled or timed out.
pub(super) async fn run(
    worker: Arc<dyn Worker>,
    a: Assignment,
    cancel: Cancel,
    cfg: RuntimeConfig,
) -> Report {
    let (task, attempt, timeout_ms) = (a.task, a.attempt, a.timeout_ms);
    let request = TaskRequest {
        id: a.task,
        name: a.name,
        role: a.role,
        difficulty: a.difficulty,
        attempt: a.attempt,
        input: a.input,
        deps: a.deps,
        cancel: cancel.clone(),
    };
    let started = Instant::now();
    let work = AssertUnwindSafe(worker.process(request)).catch_unwind();
    let end = supervise(work, &cancel, timeout_ms, cfg.kill_grace).await;
    Report {
        task,
        attempt,
        worker: worker.name().to_string(),
        outcome: outcome(end, cfg.max_output),
        run_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
}

/// Polls `work` until it returns, or until `cancel` fires or `timeout_ms`
/// expires; in the last two cases `work` gets `grace` to return and is then
/// dropped (before this returns).
async fn supervise(
    work: impl Future<Output = Returned>,
    cancel: &Cancel,
    timeout_ms: Option<u64>,
    grace: Duration,
) -> End {
    let mut work = std::pin::pin!(work);
    let expiry = async {
        match timeout_ms {
            Some(ms) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                ms
            }
            None => std::future::pending().await,
        }
    };
    let end = tokio::select! {
        biased;
        returned = &mut work => return End::Returned(returned),
        () = cancel.cancelled() => End::Cancelled,
        ms = expiry => End::TimedOut(ms),
    };
    cancel.cancel();
    // Whatever `process` returns now is moot: the attempt is timed out or
    // cancelled. It only decides how soon the future is dropped.
    let _ = tokio::time::timeout(grace, &mut work).await;
    end
}

/// The report's outcome for an ended attempt.
fn outcome(end: End, max_output: usize) -> Result<Payload, Failure> {
    match end {
        End::Returned(Ok(Ok(output))) if output.len() > max_output => Err(Failure::permanent(format!(
            "output of {} bytes is over the limit of {max_output}",
            output.len()
        ))),
        End::Returned(Ok(Ok(output))) => Ok(output),
        End::Returned(Ok(Err(e))) => {
            let mut failure = Failure::from(e);
            failure.message = bounded(failure.message);
            Err(failure)
        }
        End::Returned(Err(panic)) => Err(Failure::permanent(bounded(format!(
            "worker panicked: {}",
            panic_text(panic.as_ref())
        )))),
        End::TimedOut(ms) => Err(Failure {
            message: format!("timed out after {ms} ms"),
            retryable: true,
            timeout_ms: Some(ms),
        }),
        End::Cancelled => Err(Failure::retryable("cancelled")),
    }
}

/// `message` cut to [`MAX_ERROR_BYTES`] on a character boundary, saying how
/// many bytes were cut.
fn bounded(mut message: String) -> String {
    let total = message.len();
    if total <= MAX_ERROR_BYTES {
        return message;
    }
    let mut end = MAX_ERROR_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    message.truncate(end);
    message.push_str(&format!("… ({} of {total} bytes cut)", total - end));
    message
}

fn panic_text(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}
