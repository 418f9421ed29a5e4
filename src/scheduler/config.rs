//! The scheduler's tunables: timings, task defaults, limits, retention.

use std::time::Duration;

/// How long finished tasks are kept. A finished task is evicted when any
/// limit is passed (oldest first), but never while an unfinished dependent
/// may still need its output.
#[derive(Clone, Debug)]
pub struct Retention {
    /// Most finished tasks kept. Default 100,000.
    pub max_tasks: usize,
    /// Longest a finished task is kept. Default one hour.
    pub max_age: Duration,
    /// Most bytes of inputs and outputs of finished tasks kept. Default
    /// 256 MiB.
    pub max_bytes: usize,
    /// Least time a finished task is kept whatever the other limits say, so
    /// that clients waiting on it read its report. Default 10 s.
    pub min_age: Duration,
    /// How many evicted ids are remembered, so that asking for one says
    /// "evicted" rather than "unknown". Default 100,000 (about 3 MiB).
    pub remember_evicted: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_tasks: 100_000,
            max_age: Duration::from_secs(3600),
            max_bytes: 256 << 20,
            min_age: Duration::from_secs(10),
            remember_evicted: 100_000,
        }
    }
}

/// Tunables of the scheduler. The `default_*` values fill task fields left
/// unset at submission (see [`Task`](crate::task::Task) for their meaning and ranges).
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// How long an auction stays open when not every worker of the role has
    /// answered (it closes at once when all have). Default 50 ms.
    pub bid_window: Duration,
    /// How long a ready task may wait without a capable worker before
    /// failing. Default 5 s.
    pub no_worker_timeout: Duration,
    /// Execution timeout of an attempt for tasks that set none; `None`: no
    /// limit (the default).
    pub default_timeout: Option<Duration>,
    /// Queue timeout for tasks that set none; `None`: no limit (default).
    pub default_queue_timeout: Option<Duration>,
    /// Total deadline for tasks that set none; `None`: none (default).
    pub default_deadline: Option<Duration>,
    /// Retries of retryable failures for tasks that set none. Default 0.
    pub default_retries: u32,
    /// Lost attempts allowed for tasks that set none. Default 3.
    pub default_max_attempts: u32,
    /// Delay before the first retry of a failed attempt; doubles with each
    /// retry up to `max_retry_delay`, with up to ±25 % jitter. Default 200 ms.
    pub retry_delay: Duration,
    /// Longest delay between retries. Default 30 s.
    pub max_retry_delay: Duration,
    /// How long an attempt's lease lasts from its award or last renewal.
    /// Nodes renew every quarter of it by default
    /// (`NodeConfig::renew_interval`), so a dead or paused worker is found
    /// within this time. Default 2 s.
    pub lease: Duration,
    /// Waiting this long raises a ready task's effective priority by one.
    /// Default 1 s.
    pub priority_ageing: Duration,
    /// Largest task input accepted, in bytes. Default 8 MiB.
    pub max_payload: usize,
    /// Largest input plus dependency outputs one award may carry, in bytes;
    /// a task over it fails with `InputsTooLarge`. Default 15 MiB (under the
    /// 16 MiB frame).
    pub max_award: usize,
    /// Most tasks in one submitted batch.
    pub max_batch: usize,
    /// Most unfinished tasks held at once; submissions beyond are refused.
    pub max_unfinished: usize,
    /// First delay after an auction that drew no usable bid or an award the
    /// worker refused; doubles each round up to `max_auction_backoff`.
    pub auction_backoff: Duration,
    /// Longest such delay.
    pub max_auction_backoff: Duration,
    /// How many queued tasks one pump looks at, bounding work per step.
    pub max_scan: usize,
    /// How long finished tasks are kept.
    pub retention: Retention,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            bid_window: Duration::from_millis(50),
            no_worker_timeout: Duration::from_secs(5),
            default_timeout: None,
            default_queue_timeout: None,
            default_deadline: None,
            default_retries: 0,
            default_max_attempts: 3,
            retry_delay: Duration::from_millis(200),
            max_retry_delay: Duration::from_secs(30),
            lease: Duration::from_secs(2),
            priority_ageing: Duration::from_secs(1),
            max_payload: 8 << 20,
            max_award: 15 << 20,
            max_batch: 100_000,
            max_unfinished: 1_000_000,
            auction_backoff: Duration::from_millis(10),
            max_auction_backoff: Duration::from_millis(500),
            max_scan: 4096,
            retention: Retention::default(),
        }
    }
}
