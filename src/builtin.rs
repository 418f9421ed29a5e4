//! Workers that ship with taskmesh, for the command line and demos.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::task::Payload;
use crate::worker::{ProcessError, TaskRequest, Worker};

/// A worker description from the command line: `NAME:ROLE:SKILL[:SLOTS]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerArg {
    /// The worker's name.
    pub name: String,
    /// Its role.
    pub role: String,
    /// Its skill.
    pub skill: u32,
    /// Its slots (default 1).
    pub slots: u32,
}

/// Why a `NAME:ROLE:SKILL[:SLOTS]` text is not a worker.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid worker {text:?}: {reason} (expected NAME:ROLE:SKILL[:SLOTS], e.g. Junior:worker:3)")]
pub struct WorkerArgError {
    text: String,
    reason: String,
}

impl FromStr for WorkerArg {
    type Err = WorkerArgError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| WorkerArgError {
            text: s.to_string(),
            reason: reason.to_string(),
        };
        let parts: Vec<&str> = s.split(':').collect();
        if !(3..=4).contains(&parts.len()) {
            return Err(err("wrong number of fields"));
        }
        if parts[0].is_empty() || parts[1].is_empty() {
            return Err(err("name and role must not be empty"));
        }
        let skill = parts[2]
            .parse()
            .map_err(|_| err("SKILL must be a whole number"))?;
        let slots = match parts.get(3) {
            Some(p) => p.parse().map_err(|_| err("SLOTS must be a whole number"))?,
            None => 1,
        };
        if slots == 0 {
            return Err(err("SLOTS must be at least 1"));
        }
        Ok(WorkerArg {
            name: parts[0].into(),
            role: parts[1].into(),
            skill,
            slots,
        })
    }
}

impl fmt::Display for WorkerArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}:{}", self.name, self.role, self.skill, self.slots)
    }
}

/// `name`, `role`, `skill` and `slots` read from a `spec: WorkerArg` field.
macro_rules! worker_spec_accessors {
    () => {
        fn name(&self) -> &str {
            &self.spec.name
        }
        fn role(&self) -> &str {
            &self.spec.role
        }
        fn skill(&self) -> u32 {
            self.spec.skill
        }
        fn slots(&self) -> u32 {
            self.spec.slots
        }
    };
}

/// The built-in worker: works for `difficulty × step` (simulated effort),
/// then echoes its input as its output.
#[derive(Clone, Debug)]
pub struct EchoWorker {
    /// Name, role, skill and slots.
    pub spec: WorkerArg,
    /// Time per point of difficulty.
    pub step: Duration,
}

#[async_trait::async_trait]
impl Worker for EchoWorker {
    worker_spec_accessors!();
    async fn process(&self, req: TaskRequest) -> Result<Payload, ProcessError> {
        if !self.step.is_zero() {
            tokio::time::sleep(self.step * req.difficulty).await;
        }
        Ok(req.input)
    }
}

/// A command worker: runs a program the operator configured for every task
/// it wins. The program gets the task input on stdin, followed by the
/// outputs of the task's dependencies in dependency order; its stdout is the
/// task's output. A non-zero exit is a task error carrying the exit status
/// and the tail of stderr; a task timeout kills the program.
///
/// Nothing a peer sends chooses the program or its arguments: they are fixed
/// when the node starts. The task's id, name, difficulty and attempt are in
/// the environment as `TASKMESH_TASK_ID`, `TASKMESH_TASK_NAME`,
/// `TASKMESH_DIFFICULTY` and `TASKMESH_ATTEMPT`.
#[derive(Clone, Debug)]
pub struct CommandWorker {
    /// Name, role, skill and slots.
    pub spec: WorkerArg,
    /// The program to run.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Largest output kept; a program that writes more fails the task.
    pub max_output: usize,
}

/// How much of stderr a failed command's error keeps.
const STDERR_TAIL: usize = 2048;

impl CommandWorker {
    /// A command worker for `spec` running `program` with `args`.
    pub fn new(spec: WorkerArg, program: impl Into<String>, args: Vec<String>) -> Self {
        CommandWorker {
            spec,
            program: program.into(),
            args,
            max_output: 64 << 20,
        }
    }

    async fn run(&self, req: &TaskRequest) -> Result<Vec<u8>, ProcessError> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut child = tokio::process::Command::new(&self.program)
            .args(&self.args)
            .env("TASKMESH_TASK_ID", req.id.to_string())
            .env("TASKMESH_TASK_NAME", &req.name)
            .env("TASKMESH_DIFFICULTY", req.difficulty.to_string())
            .env("TASKMESH_ATTEMPT", req.attempt.to_string())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| ProcessError::msg(format!("cannot start {}: {e}", self.program)))?;
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(ProcessError::msg("child pipes missing"));
        };
        let mut input = req.input.as_bytes().to_vec();
        for d in &req.deps {
            input.extend_from_slice(d.output.as_bytes());
        }
        // Feed stdin while reading stdout and stderr, so no pipe fills up.
        let feed = async move {
            // A program may exit without reading its input: not an error.
            let _ = stdin.write_all(&input).await;
            drop(stdin);
        };
        let limit = self.max_output as u64 + 1;
        let read_out = async move {
            let mut buf = Vec::new();
            stdout.take(limit).read_to_end(&mut buf).await.map(|_| buf)
        };
        let read_err = async move {
            let mut buf = Vec::new();
            let _ = stderr.take(1 << 20).read_to_end(&mut buf).await;
            buf
        };
        let ((), out, err) = tokio::join!(feed, read_out, read_err);
        let status = child
            .wait()
            .await
            .map_err(|e| ProcessError::msg(format!("waiting for {}: {e}", self.program)))?;
        let out = out.map_err(|e| ProcessError::msg(format!("reading output of {}: {e}", self.program)))?;
        if !status.success() {
            let tail = &err[err.len().saturating_sub(STDERR_TAIL)..];
            let tail = String::from_utf8_lossy(tail);
            return Err(ProcessError::msg(format!(
                "{} exited with {status}; stderr: {}",
                self.program,
                tail.trim_end()
            )));
        }
        if out.len() > self.max_output {
            return Err(ProcessError::msg(format!(
                "{} wrote more than {} bytes",
                self.program, self.max_output
            )));
        }
        Ok(out)
    }
}

#[async_trait::async_trait]
impl Worker for CommandWorker {
    worker_spec_accessors!();
    async fn process(&self, req: TaskRequest) -> Result<Payload, ProcessError> {
        self.run(&req).await.map(Payload::from_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(input: &[u8]) -> TaskRequest {
        TaskRequest {
            id: crate::TaskId::random(),
            name: "t".into(),
            role: "r".into(),
            difficulty: 1,
            attempt: 1,
            input: Payload::from_bytes(input.to_vec()),
            deps: vec![crate::scheduler::DepOutput {
                id: crate::TaskId::random(),
                name: "dep".into(),
                output: Payload::from_bytes(b" and more".to_vec()),
            }],
        }
    }

    fn spec() -> WorkerArg {
        "c:r:1".parse().unwrap()
    }

    #[tokio::test]
    async fn command_worker_pipes_input_and_dependencies_through_the_program() {
        let w = CommandWorker::new(spec(), "tr", vec!["a-z".into(), "A-Z".into()]);
        let out = w.process(request(b"hello")).await.unwrap();
        assert_eq!(out.as_bytes(), b"HELLO AND MORE");
    }

    #[tokio::test]
    async fn command_worker_reports_exit_status_and_stderr_tail() {
        let script = "echo doomed >&2; echo partial; exit 3".to_string();
        let w = CommandWorker::new(spec(), "sh", vec!["-c".into(), script]);
        let err = w.process(request(b"")).await.unwrap_err().to_string();
        assert!(err.contains("exit status: 3") && err.contains("doomed"), "{err}");
        let missing = CommandWorker::new(spec(), "/nonexistent/program", vec![]);
        assert!(missing
            .process(request(b""))
            .await
            .unwrap_err()
            .to_string()
            .contains("cannot start"));
    }

    #[tokio::test]
    async fn command_worker_refuses_oversize_output_and_sees_its_environment() {
        let mut w = CommandWorker::new(
            spec(),
            "sh",
            vec!["-c".into(), "printf %s \"$TASKMESH_TASK_NAME\"".into()],
        );
        assert_eq!(w.process(request(b"")).await.unwrap().as_bytes(), b"t");
        w.max_output = 0;
        assert!(w
            .process(request(b""))
            .await
            .unwrap_err()
            .to_string()
            .contains("more than 0 bytes"));
    }

    #[test]
    fn worker_args_parse_or_explain() {
        let w: WorkerArg = "Junior:worker:3".parse().unwrap();
        assert_eq!(
            (w.name.as_str(), w.role.as_str(), w.skill, w.slots),
            ("Junior", "worker", 3, 1)
        );
        assert_eq!("S:w:9:4".parse::<WorkerArg>().unwrap().slots, 4);
        for bad in [
            "",
            "a:b",
            "a:b:c",
            "a:b:1:0",
            ":b:1",
            "a::1",
            "a:b:1:2:3",
            "a:b:-1",
        ] {
            let e = bad.parse::<WorkerArg>().unwrap_err().to_string();
            assert!(e.contains("expected NAME:ROLE:SKILL"), "{e}");
        }
    }
}
