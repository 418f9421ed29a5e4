//! Workers that ship with taskmesh, for the command line and demos: the
//! [`EchoWorker`], and the [`CommandWorker`], which runs a configured program
//! per task in a process group that nothing outlives.
//!
//! A command's exit code decides its task's fate: 0 is success (stdout is
//! the output); [`RETRYABLE_EXIT_CODE`] (75, `EX_TEMPFAIL` in sysexits.h) is
//! a retryable failure; any other code is a permanent failure; death by a
//! signal is retryable; a program that cannot start is a permanent failure.

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

// After the macro, which they use.
mod command;
mod group;

pub use command::{CommandWorker, RETRYABLE_EXIT_CODE};

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

#[cfg(test)]
mod tests {
    use super::*;

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
