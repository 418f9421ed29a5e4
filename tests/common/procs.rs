//! Child processes for the CLI and LAN tests: every one is killed and
//! reaped when its handle drops, and every wait on one is bounded.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::LIMIT;

/// The `taskmesh` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_taskmesh");

/// `taskmesh ARGS…` as a command.
pub fn taskmesh(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args);
    c
}

/// A long-running child whose stdout lines are collected as they come.
pub struct Proc {
    /// The child, for signals and exit status.
    pub child: Child,
    /// Lines of stdout, with when each was read.
    lines: mpsc::Receiver<(Instant, String)>,
}

impl Proc {
    /// Starts `cmd` with stdout piped and stderr discarded.
    pub fn spawn(cmd: Command) -> Proc {
        Proc::spawn_with(cmd, Stdio::null())
    }

    /// Starts `cmd` with stdout piped and stderr written to the file `log`.
    pub fn spawn_logged(cmd: Command, log: &std::path::Path) -> Proc {
        let file = std::fs::File::create(log).expect("create a log file");
        Proc::spawn_with(cmd, Stdio::from(file))
    }

    fn spawn_with(mut cmd: Command, stderr: Stdio) -> Proc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("spawn a child process");
        let out = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send((Instant::now(), line));
            }
        });
        Proc { child, lines }
    }

    /// Waits for a stdout line starting with `prefix` and containing
    /// `containing`; returns the rest of the line after the prefix.
    pub fn expect_line(&self, prefix: &str, containing: &str) -> String {
        match self.line_within(prefix, containing, LIMIT) {
            Some((_, rest)) => rest,
            None => panic!("no line {prefix:?} containing {containing:?} within {LIMIT:?}"),
        }
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("signal a child");
    }

    /// Waits until the process exits (bounded by `LIMIT`); its status.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "the process did not exit within {LIMIT:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits up to `wait` for a stdout line starting with `prefix` and
    /// containing `containing`; returns when it was read and the rest of
    /// the line after the prefix. Lines before it are consumed.
    pub fn line_within(&self, prefix: &str, containing: &str, wait: Duration) -> Option<(Instant, String)> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((at, l)) if l.starts_with(prefix) && l.contains(containing) => {
                    return Some((at, l[prefix.len()..].trim().to_string()))
                }
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `cmd` to completion, killing it and failing the test after `LIMIT`.
pub fn run_bounded(mut cmd: Command) -> Output {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn a child process");
    // Read both pipes while the child runs: a child that writes more than a
    // pipe holds would otherwise wait for us forever.
    let drain = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("child status") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let err = stderr.join().unwrap_or_default();
            panic!(
                "{what} did not finish within {LIMIT:?}; its stderr:\n{}",
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// Bytes as text, for messages.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Stdout as JSON lines.
pub fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// Processes whose command line contains `needle` (arguments joined by
/// spaces), except `except`: a way to see whether a program a worker
/// started is still alive. Zombies have an empty command line and so never
/// match.
pub fn pids_with_cmdline(needle: &str, except: &[u32]) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let pids = dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok());
    pids.filter(|pid| !except.contains(pid) && *pid != std::process::id())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            text(&cmdline).replace('\0', " ").contains(needle)
        })
        .collect()
}

/// Polls `done` every 20 ms until it holds; fails the test after `LIMIT`.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !done() {
        assert!(Instant::now() < deadline, "not within {LIMIT:?}: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A loopback listen address on a port that was free a moment ago, for a
/// node that must come back where it was.
pub fn fixed_listen() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("its address")
        .port();
    format!("/ip4/127.0.0.1/tcp/{port}")
}
