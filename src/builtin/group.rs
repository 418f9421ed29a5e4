//! A process group that dies with its task, and with its node.
//!
//! Every command runs in a fresh process group led by a tiny watcher shell
//! ([`WATCHER`]). The node holds the only write end of the watcher's stdin
//! and never writes to it, so the watcher's `read` returns only when the
//! node is gone (even by SIGKILL, which no `Drop` survives): it then sends
//! SIGTERM to the group, waits 2 s, and sends SIGKILL to it (itself
//! included). The watcher ignores SIGTERM, so the node's own graceful stop
//! (SIGTERM to the group) leaves it armed; it dies only with the SIGKILL
//! that ends every task, when it is no longer needed.
//!
//! Why the watcher leads the group rather than sitting in its own: it knows
//! the group from birth (`kill 0`), so no process id has to be handed to it
//! after the program starts; and the group id is the id of the node's own
//! unreaped child, so it cannot be recycled for an unrelated group while
//! the node may still signal it.
//!
//! Remaining gaps: a program that leaves the group (`setsid`, `setpgid`)
//! escapes it; and if the node dies between forking the program and the
//! child joining the group (a few microseconds inside `spawn`), the program
//! stays in the node's own group and is not killed.

use std::io;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The watcher's script: says it is armed, then waits for end of input.
const WATCHER: &str = "trap '' TERM; echo armed; read _; kill -s TERM 0; sleep 2; kill -s KILL 0";

/// How long the watcher may take to start and arm itself.
const ARMING: Duration = Duration::from_secs(5);

/// A process group with its watcher. Dropping it sends SIGKILL to the group
/// at once; [`ProcessGroup::finish`] does the same and also reaps the
/// watcher.
pub(super) struct ProcessGroup {
    /// The group's id: the watcher's pid.
    id: Pid,
    /// The watcher; `None` once reaped, after which the id may be recycled
    /// and must not be signalled again.
    watcher: Option<Child>,
}

impl ProcessGroup {
    /// Starts the watcher in a new group and waits until it is armed.
    ///
    /// Errors: `sh` cannot be started, or does not arm within 5 s.
    pub(super) async fn start() -> io::Result<Self> {
        let mut watcher = Command::new("sh")
            .args(["-c", WATCHER])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()?;
        let stdout = watcher.stdout.take();
        let pid = watcher.id().and_then(|pid| i32::try_from(pid).ok());
        let pid = pid.ok_or_else(|| io::Error::other("the watcher has no pid"))?;
        // From here on, an early return kills the watcher.
        let group = ProcessGroup {
            id: Pid::from_raw(pid),
            watcher: Some(watcher),
        };
        let stdout = stdout.ok_or_else(|| io::Error::other("the watcher has no stdout"))?;
        let (mut stdout, mut line) = (BufReader::new(stdout), String::new());
        match tokio::time::timeout(ARMING, stdout.read_line(&mut line)).await {
            Ok(Ok(_)) if line == "armed\n" => Ok(group),
            Ok(Err(e)) => Err(e),
            _ => Err(io::Error::other(format!(
                "the watcher did not arm within {ARMING:?}"
            ))),
        }
    }

    /// The group's id, for `Command::process_group`.
    pub(super) fn id(&self) -> i32 {
        self.id.as_raw()
    }

    /// Sends `signal` to every process in the group (errors ignored: the
    /// group may be empty but for the watcher, or gone).
    pub(super) fn signal(&self, signal: Signal) {
        if self.watcher.is_some() {
            let _ = killpg(self.id, signal);
        }
    }

    /// Kills whatever is left in the group, the watcher included, and reaps
    /// the watcher.
    pub(super) async fn finish(mut self) {
        self.signal(Signal::SIGKILL);
        if let Some(mut watcher) = self.watcher.take() {
            let _ = watcher.wait().await;
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // Synchronous, so it happens even when a task's future is dropped
        // mid-run. A watcher not reaped here is reaped by tokio.
        self.signal(Signal::SIGKILL);
    }
}
