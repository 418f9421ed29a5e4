//! The task limits, leases and retention of `taskmesh node`: flags and
//! config-file keys (the same names with underscores), checked against
//! their ranges and applied to a [`NodeConfig`].
//!
//! The task defaults fill what a task leaves unset (see the task-file
//! fields in `taskmesh::taskfile`); they and the retention apply while the
//! node is admin. The lease applies to attempts the node awards as admin
//! and paces the renewals of attempts its own workers hold, so every node
//! of a mesh should use the same lease.

use std::path::Path;
use std::time::Duration;

use clap::Args;
use taskmesh::task::{MAX_RETRIES, MAX_TIMEOUT_MS};
use taskmesh::NodeConfig;

use taskmesh::config::NodeFile;

/// Longest timeout or deadline, in seconds: 30 days, as for task files.
const MAX_TIMEOUT_SECS: f64 = (MAX_TIMEOUT_MS / 1000) as f64;
/// Longest lease and kill grace, in seconds.
const MAX_GRACE_SECS: f64 = 3600.0;
/// Shortest lease, in seconds: renewals every 25 ms at most.
const MIN_LEASE_SECS: f64 = 0.1;
/// Most finished tasks kept, and most MiB.
const MAX_RETENTION_TASKS: usize = 100_000_000;
const MAX_RETENTION_MIB: usize = 1 << 20;

/// Options of `taskmesh node` for task limits, leases and retention.
#[derive(Args, Debug, Default)]
pub struct TuningArgs {
    /// Default execution timeout of one attempt, in seconds, for tasks
    /// without timeout_ms; 0: no timeout; at most 30 days [default: none].
    #[arg(long, value_name = "SECS")]
    pub task_timeout: Option<f64>,
    /// Default queue timeout, in seconds: how long a ready task may wait for
    /// an award before it fails, for tasks without queue_timeout_ms; 0: no
    /// limit; at most 30 days [default: none].
    #[arg(long, value_name = "SECS")]
    pub queue_timeout: Option<f64>,
    /// Default deadline, in seconds from submission, past which a task fails
    /// whatever it is doing, for tasks without deadline_ms; 0: no deadline;
    /// at most 30 days [default: none].
    #[arg(long, value_name = "SECS")]
    pub deadline: Option<f64>,
    /// Default retries of a retryable failure (a command's exit 75, a
    /// signal, a timeout), for tasks without retries; 0: no retry; 0-100
    /// [default: 0].
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,
    /// Default number of attempts that may be lost (worker gone, lease
    /// expired) before a task fails, for tasks without max_attempts; 1-100
    /// [default: 3].
    #[arg(long, value_name = "N")]
    pub max_attempts: Option<u32>,
    /// Lease of a running attempt, in seconds: an attempt whose node stops
    /// renewing it for this long is lost. This node renews every quarter of
    /// it; use the same value on every node. 0.1-3600 [default: 2].
    #[arg(long, value_name = "SECS")]
    pub lease: Option<f64>,
    /// Seconds a cancelled or timed-out attempt gets to stop: a command
    /// gets SIGTERM, then SIGKILL after this; 0: SIGKILL at once; at most
    /// 3600 [default: 5].
    #[arg(long, value_name = "SECS")]
    pub kill_grace: Option<f64>,
    /// Awards each of this node's workers may hold waiting beyond its
    /// slots, started as slots free without a round trip to the admin
    /// (pipelining); 0: none; at most 4096 [default: 8].
    #[arg(long, value_name = "N")]
    pub worker_queue: Option<u32>,
    /// Most finished tasks kept for status (the oldest are evicted); 0:
    /// none, a finished task is evicted as soon as no dependent needs it
    /// [default: 100000].
    #[arg(long, value_name = "N")]
    pub retention_tasks: Option<usize>,
    /// Seconds a finished task is kept for status; 0: evicted as soon as
    /// no dependent needs it; at most 30 days [default: 3600].
    #[arg(long, value_name = "SECS")]
    pub retention_age: Option<f64>,
    /// MiB of inputs and outputs of finished tasks kept (the oldest tasks
    /// are evicted); 0: none [default: 256].
    #[arg(long, value_name = "MIB")]
    pub retention_mib: Option<usize>,
    /// Seconds a finished task is kept at least, whatever the limits above
    /// say, so that waiting clients read its report; 0: none; at most
    /// 3600 [default: 10].
    #[arg(long, value_name = "SECS")]
    pub retention_min_age: Option<f64>,
}

/// Where a setting comes from, for error messages: the flag, else the
/// config file's key.
struct Source<'a> {
    file: Option<&'a Path>,
}

impl Source<'_> {
    /// The flag's value over the file's, with a name for errors.
    fn pick<T>(&self, flag: Option<T>, key: Option<T>, name: &str) -> Option<(T, String)> {
        match (flag, key, self.file) {
            (Some(v), _, _) => Some((v, format!("--{}", name.replace('_', "-")))),
            (None, Some(v), Some(path)) => Some((v, format!("{name} in {}", path.display()))),
            (None, Some(v), None) => Some((v, name.to_string())),
            (None, None, _) => None,
        }
    }
}

/// Seconds within `lo..=hi` as a duration; `what` says what 0 means.
fn seconds(value: f64, name: &str, lo: f64, hi: f64, what: &str) -> anyhow::Result<Duration> {
    if !(lo..=hi).contains(&value) {
        anyhow::bail!("{name}: {value} is out of range {lo} to {hi} seconds{what}");
    }
    Ok(Duration::from_secs_f64(value))
}

/// A timeout in seconds, where 0 means none.
fn limit(value: f64, name: &str) -> anyhow::Result<Option<Duration>> {
    let d = seconds(value, name, 0.0, MAX_TIMEOUT_SECS, " (30 days; 0 for none)")?;
    Ok((!d.is_zero()).then_some(d))
}

/// A count within `lo..=hi`.
fn count<T: PartialOrd + std::fmt::Display>(value: T, name: &str, lo: T, hi: T) -> anyhow::Result<T> {
    if value < lo || value > hi {
        anyhow::bail!("{name}: {value} is out of range {lo} to {hi}");
    }
    Ok(value)
}

impl TuningArgs {
    /// Applies these settings (flags over the file's keys over defaults) to
    /// `cfg`; a value out of range is an error naming its flag or key.
    pub fn apply(&self, file: &NodeFile, path: Option<&Path>, cfg: &mut NodeConfig) -> anyhow::Result<()> {
        let src = Source { file: path };
        let s = &mut cfg.scheduler;
        if let Some((v, name)) = src.pick(self.task_timeout, file.task_timeout, "task_timeout") {
            s.default_timeout = limit(v, &name)?;
        }
        if let Some((v, name)) = src.pick(self.queue_timeout, file.queue_timeout, "queue_timeout") {
            s.default_queue_timeout = limit(v, &name)?;
        }
        if let Some((v, name)) = src.pick(self.deadline, file.deadline, "deadline") {
            s.default_deadline = limit(v, &name)?;
        }
        if let Some((v, name)) = src.pick(self.retries, file.retries, "retries") {
            s.default_retries = count(v, &name, 0, MAX_RETRIES)?;
        }
        if let Some((v, name)) = src.pick(self.max_attempts, file.max_attempts, "max_attempts") {
            s.default_max_attempts = count(v, &name, 1, MAX_RETRIES)?;
        }
        if let Some((v, name)) = src.pick(self.lease, file.lease, "lease") {
            s.lease = seconds(v, &name, MIN_LEASE_SECS, MAX_GRACE_SECS, "")?;
        }
        cfg.renew_interval = s.lease / 4;
        self.apply_retention(file, &src, cfg)?;
        if let Some((v, name)) = src.pick(self.kill_grace, file.kill_grace, "kill_grace") {
            cfg.runtime.kill_grace = seconds(v, &name, 0.0, MAX_GRACE_SECS, " (0 to kill at once)")?;
        }
        if let Some((v, name)) = src.pick(self.worker_queue, file.worker_queue, "worker_queue") {
            cfg.runtime.queue = count(v, &name, 0, taskmesh::MAX_WORKER_QUEUE)?;
        }
        Ok(())
    }

    fn apply_retention(&self, file: &NodeFile, src: &Source, cfg: &mut NodeConfig) -> anyhow::Result<()> {
        let r = &mut cfg.scheduler.retention;
        if let Some((v, name)) = src.pick(self.retention_tasks, file.retention_tasks, "retention_tasks") {
            r.max_tasks = count(v, &name, 0, MAX_RETENTION_TASKS)?;
        }
        if let Some((v, name)) = src.pick(self.retention_age, file.retention_age, "retention_age") {
            r.max_age = seconds(v, &name, 0.0, MAX_TIMEOUT_SECS, " (30 days)")?;
        }
        if let Some((v, name)) = src.pick(self.retention_mib, file.retention_mib, "retention_mib") {
            r.max_bytes = count(v, &name, 0, MAX_RETENTION_MIB)? << 20;
        }
        let min_age = src.pick(
            self.retention_min_age,
            file.retention_min_age,
            "retention_min_age",
        );
        if let Some((v, name)) = min_age {
            r.min_age = seconds(v, &name, 0.0, 3600.0, "")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(args: TuningArgs, file: &str) -> anyhow::Result<NodeConfig> {
        let file: NodeFile = toml::from_str(file).unwrap();
        let mut cfg = NodeConfig::default();
        args.apply(&file, Some(Path::new("node.toml")), &mut cfg)?;
        Ok(cfg)
    }

    #[test]
    fn defaults_flags_and_file_keys() {
        let cfg = applied(TuningArgs::default(), "").unwrap();
        let s = &cfg.scheduler;
        assert_eq!(
            (s.default_timeout, s.default_retries, s.default_max_attempts),
            (None, 0, 3)
        );
        assert_eq!(
            (s.lease, cfg.renew_interval),
            (Duration::from_secs(2), Duration::from_millis(500))
        );
        assert_eq!(cfg.runtime.kill_grace, Duration::from_secs(5));
        assert_eq!(s.retention.max_bytes, 256 << 20);
        let args = TuningArgs {
            task_timeout: Some(0.0),
            lease: Some(8.0),
            retention_mib: Some(1),
            ..Default::default()
        };
        let file = "task_timeout = 9.0\nqueue_timeout = 1.5\nretries = 4\nkill_grace = 0.0\nlease = 1.0\n";
        let cfg = applied(args, file).unwrap();
        let s = &cfg.scheduler;
        assert_eq!(s.default_timeout, None, "the flag's 0 (none) wins over the file");
        assert_eq!(s.default_queue_timeout, Some(Duration::from_millis(1500)));
        assert_eq!((s.default_retries, s.retention.max_bytes), (4, 1 << 20));
        assert_eq!(
            (s.lease, cfg.renew_interval),
            (Duration::from_secs(8), Duration::from_secs(2))
        );
        assert_eq!(cfg.runtime.kill_grace, Duration::ZERO);
    }

    #[test]
    fn out_of_range_values_name_their_flag_or_key() {
        let cases = [
            (
                TuningArgs {
                    task_timeout: Some(-1.0),
                    ..Default::default()
                },
                "",
                "--task-timeout: -1 is out of range 0 to 2592000 seconds (30 days; 0 for none)",
            ),
            (
                TuningArgs {
                    deadline: Some(3e6),
                    ..Default::default()
                },
                "",
                "--deadline: 3000000 is out of range",
            ),
            (
                TuningArgs {
                    retries: Some(101),
                    ..Default::default()
                },
                "",
                "--retries: 101 is out of range 0 to 100",
            ),
            (
                TuningArgs {
                    max_attempts: Some(0),
                    ..Default::default()
                },
                "",
                "--max-attempts: 0 is out of range 1 to 100",
            ),
            (
                TuningArgs {
                    lease: Some(0.0),
                    ..Default::default()
                },
                "",
                "--lease: 0 is out of range 0.1 to 3600",
            ),
            (
                TuningArgs::default(),
                "kill_grace = 4000.0",
                "kill_grace in node.toml: 4000 is out of range",
            ),
            (
                TuningArgs::default(),
                "retention_age = -2.0",
                "retention_age in node.toml: -2 is out",
            ),
            (
                TuningArgs::default(),
                "queue_timeout = nan",
                "queue_timeout in node.toml: NaN is out",
            ),
        ];
        for (args, file, want) in cases {
            let e = applied(args, file).unwrap_err().to_string();
            assert!(e.contains(want), "{e:?} lacks {want:?}");
        }
    }
}
