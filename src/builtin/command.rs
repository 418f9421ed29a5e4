//! The command worker: one configured program run per task, in a process
//! group that nothing outlives (see `group`).
//!
//! Exit-code convention: exit 0 is success (stdout is the output); exit
//! [`RETRYABLE_EXIT_CODE`] (75, `EX_TEMPFAIL` in sysexits.h) is a retryable
//! failure; any other non-zero exit is a permanent failure; death by a
//! signal is retryable; a program that cannot be started is a permanent
//! failure.

use std::io;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use super::group::ProcessGroup;
use super::WorkerArg;
use crate::task::Payload;
use crate::worker::{ProcessError, RuntimeConfig, TaskRequest, Worker};

/// The exit code that asks for a retry: `EX_TEMPFAIL` from sysexits.h.
pub const RETRYABLE_EXIT_CODE: i32 = 75;

/// How much of stderr a failed command's error keeps, in bytes.
const STDERR_TAIL: usize = 2048;

/// Output past the limit is counted (for the error) up to this many bytes
/// or for [`OVERFLOW_WAIT`]; a program still writing then is killed.
const OVERFLOW_COUNTED: u64 = 256 << 20;
/// See [`OVERFLOW_COUNTED`].
const OVERFLOW_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// A command worker: runs a program the operator configured for every task
/// it wins. The program gets the task input on stdin, followed by the
/// outputs of the dependencies that completed, in dependency order; its
/// stdout is the task's output.
///
/// Exit codes: 0 is success; [`RETRYABLE_EXIT_CODE`] (75) is a retryable
/// failure; any other code is a permanent failure; death by a signal is
/// retryable; a program that cannot start is a permanent failure. Failures
/// carry the exit status and the tail of stderr.
///
/// Nothing the program starts survives the task: it runs in its own process
/// group, which is killed (SIGKILL) when the program exits, when the task's
/// future is dropped (timeout, node shutdown), and, through a watcher
/// process, when the node itself dies. When the task is cancelled the group
/// first gets SIGTERM and [`CommandWorker::term_grace`] to exit.
///
/// Nothing a peer sends chooses the program or its arguments: they are fixed
/// when the node starts. The environment holds `TASKMESH_TASK_ID`,
/// `TASKMESH_TASK_NAME`, `TASKMESH_DIFFICULTY`, `TASKMESH_ATTEMPT`, and
/// `TASKMESH_FAILED_DEPS`: the comma-separated names of the dependencies
/// that did not complete (empty when none; only fallback and cleanup tasks
/// run with failed dependencies).
#[derive(Clone, Debug)]
pub struct CommandWorker {
    /// Name, role, skill and slots.
    pub spec: WorkerArg,
    /// The program to run.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Largest output kept, in bytes (default: the runtime's default limit,
    /// 8 MiB); a program that writes more fails the task permanently.
    pub max_output: usize,
    /// After SIGTERM on cancellation, how long the program may take to exit
    /// before the group gets SIGKILL (default 5 s). The runtime's
    /// `kill_grace` caps it: when that runs out first, the task's future is
    /// dropped and the group gets SIGKILL at once.
    pub term_grace: Duration,
}

impl CommandWorker {
    /// A command worker for `spec` running `program` with `args`.
    pub fn new(spec: WorkerArg, program: impl Into<String>, args: Vec<String>) -> Self {
        CommandWorker {
            spec,
            program: program.into(),
            args,
            max_output: RuntimeConfig::default().max_output,
            term_grace: Duration::from_secs(5),
        }
    }

    async fn run(&self, req: &TaskRequest) -> Result<Vec<u8>, ProcessError> {
        let program = &self.program;
        let group = ProcessGroup::start().await.map_err(|e| {
            ProcessError::retryable(format!("cannot start the process watcher for {program}: {e}"))
        })?;
        let mut child = self
            .command(req, group.id())
            .spawn()
            .map_err(|e| ProcessError::permanent(format!("cannot start {program}: {e}")))?;
        let result = tokio::select! {
            biased;
            done = self.exchange(&mut child, stdin_bytes(req), &group) => Ok(done),
            () = req.cancel.cancelled() => Err(self.stop(&mut child, &group).await),
        };
        group.finish().await;
        // Dead by now (exited, or killed with its group): reaps it at once.
        let _ = child.wait().await;
        let (status, out, err) = result?;
        self.judge(status, out, &err)
    }

    /// The program's command line, environment and pipes.
    fn command(&self, req: &TaskRequest, group: i32) -> Command {
        let failed: Vec<&str> = req
            .deps
            .iter()
            .filter(|d| d.outcome.is_err())
            .map(|d| d.name.as_str())
            .collect();
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .env("TASKMESH_TASK_ID", req.id.to_string())
            .env("TASKMESH_TASK_NAME", &req.name)
            .env("TASKMESH_DIFFICULTY", req.difficulty.to_string())
            .env("TASKMESH_ATTEMPT", req.attempt.to_string())
            .env("TASKMESH_FAILED_DEPS", failed.join(","))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(group)
            .kill_on_drop(true);
        cmd
    }

    /// Feeds stdin while reading stdout (keeping up to `max_output + 1`
    /// bytes, counting the rest so an error can name the size) and
    /// stderr (its tail), so no pipe fills up. As soon as the program exits,
    /// the rest of its group is killed: background children holding the
    /// pipes would otherwise keep the task open.
    async fn exchange(
        &self,
        child: &mut Child,
        input: Vec<u8>,
        group: &ProcessGroup,
    ) -> (io::Result<ExitStatus>, io::Result<(Vec<u8>, u64)>, Vec<u8>) {
        let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let feed = async move {
            if let Some(mut stdin) = stdin {
                // A program may exit without reading its input: not an error.
                let _ = stdin.write_all(&input).await;
            }
        };
        let limit = self.max_output as u64 + 1;
        let read_out = async move {
            let mut buf = Vec::new();
            let mut total = 0;
            if let Some(mut stdout) = stdout {
                total = (&mut stdout).take(limit).read_to_end(&mut buf).await? as u64;
                if total == limit {
                    // Over the limit: count the rest (storing none) for the
                    // error, but stop a program that goes on writing.
                    let mut sink = tokio::io::sink();
                    let mut rest = (&mut stdout).take(OVERFLOW_COUNTED);
                    let counted =
                        tokio::time::timeout(OVERFLOW_WAIT, tokio::io::copy(&mut rest, &mut sink)).await;
                    match counted {
                        Ok(n) if n.as_ref().is_ok_and(|&n| n < OVERFLOW_COUNTED) => total += n?,
                        // Still writing: stopped, and reported as "more than".
                        _ => {
                            group.signal(Signal::SIGKILL);
                            let _ = tokio::io::copy(&mut stdout, &mut sink).await;
                            total = u64::MAX;
                        }
                    }
                }
            }
            Ok((buf, total))
        };
        let read_err = async move {
            match stderr {
                Some(stderr) => read_tail(stderr, STDERR_TAIL).await,
                None => Vec::new(),
            }
        };
        let exit = async {
            let status = child.wait().await;
            group.signal(Signal::SIGKILL);
            status
        };
        let ((), out, err, status) = tokio::join!(feed, read_out, read_err, exit);
        (status, out, err)
    }

    /// On cancellation: SIGTERM to the group, up to `term_grace` for the
    /// program to exit; the caller then kills the group.
    async fn stop(&self, child: &mut Child, group: &ProcessGroup) -> ProcessError {
        group.signal(Signal::SIGTERM);
        let _ = tokio::time::timeout(self.term_grace, child.wait()).await;
        ProcessError::retryable(format!("{} was cancelled", self.program))
    }

    /// The task's result from the program's exit and output, following the
    /// exit-code convention.
    fn judge(
        &self,
        status: io::Result<ExitStatus>,
        out: io::Result<(Vec<u8>, u64)>,
        err: &[u8],
    ) -> Result<Vec<u8>, ProcessError> {
        let program = &self.program;
        let status = status.map_err(|e| ProcessError::retryable(format!("waiting for {program}: {e}")))?;
        let (out, total) =
            out.map_err(|e| ProcessError::retryable(format!("reading output of {program}: {e}")))?;
        // Before the status: a program whose output was over the limit fails
        // permanently whatever its exit.
        if out.len() > self.max_output {
            let max = self.max_output;
            let message = if total == u64::MAX {
                format!("{program} kept writing past the limit of {max} bytes and was stopped")
            } else {
                format!("{program} wrote {total} bytes, over the limit of {max}")
            };
            return Err(ProcessError::permanent(message));
        }
        if status.success() {
            return Ok(out);
        }
        let tail = String::from_utf8_lossy(err);
        let message = format!("{program} exited with {status}; stderr: {}", tail.trim_end());
        match status.code() {
            Some(RETRYABLE_EXIT_CODE) => Err(ProcessError::retryable(message)),
            Some(_) => Err(ProcessError::permanent(message)),
            // No code: killed by a signal.
            None => Err(ProcessError::retryable(message)),
        }
    }
}

/// The program's stdin: the task input, then the outputs of the
/// dependencies that completed, in order.
fn stdin_bytes(req: &TaskRequest) -> Vec<u8> {
    let mut input = req.input.as_bytes().to_vec();
    for output in req.deps.iter().filter_map(|d| d.outcome.as_ref().ok()) {
        input.extend_from_slice(output.as_bytes());
    }
    input
}

/// Reads `r` to its end (or first error), keeping only the last `keep`
/// bytes, so a chatty program never blocks on a full stderr pipe.
async fn read_tail(mut r: impl AsyncRead + Unpin, keep: usize) -> Vec<u8> {
    let mut tail = Vec::with_capacity(2 * keep);
    let mut buf = [0u8; 4096];
    while let Ok(n @ 1..) = r.read(&mut buf).await {
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > 2 * keep {
            tail.drain(..tail.len() - keep);
        }
    }
    tail.split_off(tail.len().saturating_sub(keep))
}

#[async_trait::async_trait]
impl Worker for CommandWorker {
    worker_spec_accessors!();
    async fn process(&self, req: TaskRequest) -> Result<Payload, ProcessError> {
        self.run(&req).await.map(Payload::from_bytes)
    }
}

#[cfg(test)]
mod tests;
