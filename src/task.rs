//! Plain data shared by every layer: task ids, tasks, payloads, statuses and
//! results. Nothing here does I/O; everything here crosses the wire.

use std::fmt::{self, Write as _};
use std::str::FromStr;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A task's identity: a random v4 uuid chosen by whoever builds the task.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TaskId(pub Uuid);

impl TaskId {
    /// A fresh random id.
    pub fn random() -> Self {
        TaskId(Uuid::new_v4())
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Eight hex digits are plenty to tell tasks apart in logs.
        write!(f, "TaskId({})", &self.0.simple().to_string()[..8])
    }
}

impl FromStr for TaskId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(TaskId)
    }
}

/// A node's identity as the pure core sees it: the base58 text of a libp2p
/// peer id. The core never parses it; it only compares and stores it.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(Arc<str>);

impl NodeId {
    /// Wraps any text as a node id (tests use short names).
    pub fn new(s: impl AsRef<str>) -> Self {
        NodeId(Arc::from(s.as_ref()))
    }
    /// The text of the id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The tail of a peer id is its distinctive part.
        // By characters: ids come from peers and need not be ASCII.
        let s = &*self.0;
        let skip = s.chars().count().saturating_sub(6);
        let tail: String = s.chars().skip(skip).collect();
        write!(f, "NodeId(..{tail})")
    }
}

/// An error while encoding or decoding a typed payload.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// The value could not be encoded (bincode cannot carry self-describing
    /// values such as `serde_json::Value`).
    #[error("cannot encode payload: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    /// The bytes are not a value of the requested type.
    #[error("cannot decode payload: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    /// The bytes decoded, but bytes were left over: the type does not match.
    #[error("cannot decode payload: {0} trailing bytes (wrong type?)")]
    Trailing(usize),
    /// A dependency output was asked for by a name the task does not depend on.
    #[error("task has no dependency named {}", quoted(.0))]
    NoSuchDependency(String),
    /// The dependency asked for did not complete (a fallback or cleanup
    /// task sees its failed dependencies this way).
    #[error("dependency {} did not complete: {error}", quoted(.name))]
    DependencyFailed {
        /// The dependency's name.
        name: String,
        /// How it ended.
        error: String,
    },
}

/// Opaque bytes: a task input or output. On the wire it is the bincode
/// encoding of the user's type; [`Payload::encode`] and [`Payload::decode`]
/// are the typed helpers for both ends.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload(#[serde(with = "serde_bytes")] pub Vec<u8>);

/// The splitmix64 finaliser: a well-mixed hash of one word, for
/// deterministic jitter in the pure core.
pub(crate) fn mix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The bincode configuration used for payloads and for the wire.
pub(crate) fn bincode_config() -> bincode::config::Configuration {
    bincode::config::standard()
}

impl Payload {
    /// Encodes any serde value.
    pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Self, PayloadError> {
        Ok(Payload(bincode::serde::encode_to_vec(value, bincode_config())?))
    }

    /// Decodes the payload as `T`; fails if the bytes are not exactly one `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, PayloadError> {
        let (v, used) = bincode::serde::decode_from_slice(&self.0, bincode_config())?;
        if used != self.0.len() {
            return Err(PayloadError::Trailing(self.0.len() - used));
        }
        Ok(v)
    }

    /// Raw bytes, as given (for command workers and other byte-level users).
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Self {
        Payload(bytes.into())
    }

    /// The bytes as UTF-8 text: how task files and command workers carry
    /// inputs and outputs (the typed helpers use bincode instead).
    pub fn as_text(&self) -> Result<&str, std::str::Utf8Error> {
        std::str::from_utf8(&self.0)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when the payload carries no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Payload({} bytes)", self.0.len())
    }
}

/// A unit of work: what to run, on which kind of worker, after what.
///
/// Every optional number follows one rule: absent (`None`) takes the admin
/// node's default, and `Some(0)` means "no limit" for the timeouts. Ranges
/// are checked when the batch is submitted; a refusal names the task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// Unique id; chosen by the submitter.
    pub id: TaskId,
    /// Human-readable name, shown in results and used by dependents to find
    /// this task's output.
    pub name: String,
    /// The processor role: only workers of this role bid for the task.
    pub role: String,
    /// How hard the task is; a worker needs `skill >= difficulty` to win it.
    pub difficulty: u32,
    /// The input handed to the worker.
    pub input: Payload,
    /// Tasks that must finish first; their outcomes reach this task's worker.
    pub dependencies: Vec<TaskId>,
    /// Execution timeout of one attempt, in milliseconds, enforced by the
    /// worker and backed by the admin. `None`: the admin's default; `0`: no
    /// limit; at most [`MAX_TIMEOUT_MS`].
    pub timeout_ms: Option<u64>,
    /// Queue timeout in milliseconds: how long the task may stay ready
    /// without being awarded before it fails. `None`: the admin's default;
    /// `0`: no limit; at most [`MAX_TIMEOUT_MS`].
    pub queue_timeout_ms: Option<u64>,
    /// Total deadline in milliseconds from submission: past it the task
    /// fails whatever it is doing. `None`: the admin's default; `0`: no
    /// deadline; at most [`MAX_TIMEOUT_MS`].
    pub deadline_ms: Option<u64>,
    /// How many times a retryable failure of the worker is retried (an
    /// application error, as opposed to a lost attempt). `None`: the
    /// admin's default (0); at most [`MAX_RETRIES`].
    pub retries: Option<u32>,
    /// How many attempts may be lost (worker gone, lease expired) before
    /// the task fails as a poison task. `None`: the admin's default (3);
    /// `1..=`[`MAX_RETRIES`].
    pub max_attempts: Option<u32>,
    /// Higher runs first among ready tasks of a role; waiting raises a
    /// task's effective priority (ageing), so low priorities never starve.
    /// Default 0; `-`[`MAX_PRIORITY`]`..=`[`MAX_PRIORITY`].
    pub priority: i32,
    /// When the task runs, given how its dependencies ended.
    pub trigger: Trigger,
}

/// Longest timeout or deadline a task may set: 30 days, in milliseconds.
pub const MAX_TIMEOUT_MS: u64 = 30 * 24 * 3600 * 1000;
/// Most retries, and most lost attempts, a task may allow.
pub const MAX_RETRIES: u32 = 100;
/// Largest priority magnitude.
pub const MAX_PRIORITY: i32 = 1_000_000;
/// Longest task name and role, and worker name and role, in bytes (UTF-8).
pub const MAX_NAME_BYTES: usize = 1024;

/// Why a name (a task's or a worker's name, or a role) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty, or shows as blank: only white space (and the
    /// braille blank U+2800).
    #[error("is empty or blank")]
    Empty,
    /// The name is over [`MAX_NAME_BYTES`].
    #[error("is {bytes} bytes, over the limit of {max}")]
    TooLong {
        /// Its length in bytes (UTF-8).
        bytes: usize,
        /// The limit, [`MAX_NAME_BYTES`].
        max: usize,
    },
    /// The name holds a character that would break a table row or a line of
    /// output, or reorder the text around it (see [`check_name`]).
    #[error("holds the {} character U+{:04X} at character {at}; names may not hold control or invisible characters", kind_of(*found), u32::from(*found))]
    Control {
        /// The character.
        found: char,
        /// Its position among the name's characters, from 1.
        at: usize,
    },
    /// A joiner (U+200C, U+200D) or variation selector that joins or varies
    /// nothing visible: it may only follow a character beyond ASCII (and a
    /// joiner precede one), as in emoji sequences and the scripts that need
    /// them; between ASCII letters it only makes two names look alike.
    #[error("holds U+{:04X} at character {at}, where it joins nothing: a joiner or variation selector may only follow (and a joiner precede) a character beyond ASCII", u32::from(*found))]
    Joiner {
        /// The character.
        found: char,
        /// Its position among the name's characters, from 1.
        at: usize,
    },
}

/// "control" or "invisible", for a refused character's message.
fn kind_of(c: char) -> &'static str {
    let bidi_or_separator = matches!(c, '\u{2028}' | '\u{2029}' | '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
    if c.is_control() || bidi_or_separator {
        "control"
    } else {
        "invisible"
    }
}

/// Checks a task's or a worker's name or role: not empty, at most
/// [`MAX_NAME_BYTES`], and free of control characters, which are refused
/// wherever a name enters (a submission, a task file, a worker's
/// registration, a node's own workers) so that every table and every line of
/// output can print names as they are. Control characters are Unicode's
/// category Cc (C0, DEL, C1: newline, tab, escape, …), the line and paragraph
/// separators U+2028 and U+2029, the bidirectional formatting characters
/// (U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069), which reorder the
/// text shown around them (CVE-2021-42574, "Trojan Source"), and the
/// invisible ones that make two names look alike (soft hyphen U+00AD,
/// zero-width space U+200B, U+2060–U+2064, the byte-order mark U+FEFF,
/// the interlinear annotations U+FFF9–U+FFFB, the language tag U+E0001,
/// and blank look-alikes: U+034F, the Hangul fillers U+115F, U+1160,
/// U+3164, U+FFA0, U+17B4, U+17B5, U+180B–U+180F). The joiners U+200C and
/// U+200D and the variation selectors stay allowed where scripts and emoji
/// sequences use them, next to characters beyond ASCII
/// ([`NameError::Joiner`]).
pub fn check_name(name: &str) -> Result<(), NameError> {
    if name.chars().all(|c| c.is_whitespace() || c == '\u{2800}') {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong {
            bytes: name.len(),
            max: MAX_NAME_BYTES,
        });
    }
    // One pass, no allocation: every submitted task's name comes here.
    let beyond_ascii = |c: Option<char>| c.is_some_and(|c| !c.is_ascii());
    let mut before = None;
    let mut chars = name.chars().enumerate().peekable();
    while let Some((i, found)) = chars.next() {
        let at = i + 1;
        if is_control(found) {
            return Err(NameError::Control { found, at });
        }
        let joiner = matches!(found, '\u{200C}' | '\u{200D}');
        // Variation selectors, and the tag characters of flag sequences.
        let selector =
            matches!(found, '\u{FE00}'..='\u{FE0F}' | '\u{E0100}'..='\u{E01EF}' | '\u{E0020}'..='\u{E007F}');
        let after = chars.peek().map(|&(_, c)| c);
        let joins = beyond_ascii(before) && beyond_ascii(after);
        if (joiner && !joins) || (selector && !beyond_ascii(before)) {
            return Err(NameError::Joiner { found, at });
        }
        before = Some(found);
    }
    Ok(())
}

/// A name in double quotes as errors show it: as written, with only `"`,
/// `\` and control characters ([`is_control`]) escaped (`\"`, `\\`, `\n`,
/// `\u{1b}`), where Rust's `{:?}` would also escape combining marks and other
/// characters a user typed (`"cafe\u{301}"` for `"café"`).
pub struct Quoted<'a>(pub &'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('"')?;
        for c in self.0.chars() {
            match c {
                '"' | '\\' => write!(f, "\\{c}")?,
                c if is_control(c) => write!(f, "{}", c.escape_default())?,
                c => f.write_char(c)?,
            }
        }
        f.write_char('"')
    }
}

/// [`Quoted`] as a function.
pub fn quoted(name: &str) -> Quoted<'_> {
    Quoted(name)
}

/// A control or invisible character in the sense of [`check_name`]: never
/// in a name, and escaped wherever taskmesh prints other text.
pub fn is_control(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}'
                | '\u{2029}'
                | '\u{061C}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{00AD}'
                | '\u{200B}'
                | '\u{2060}'..='\u{2064}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
                | '\u{E0001}'
                // Blank look-alikes: the combining grapheme joiner, Hangul
                // and Khmer fillers, Mongolian selectors and separator.
                | '\u{034F}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{3164}'
                | '\u{FFA0}'
                // Invisible musical formatting marks.
                | '\u{1D173}'..='\u{1D17A}'
        )
}

/// When a dependent runs, in the manner of Airflow's trigger rules. Every
/// rule but [`Trigger::AllSuccess`] waits until all dependencies finished.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Trigger {
    /// Only if every dependency completed (the default). A dependency that
    /// fails fails this task at once; one cancelled cancels it.
    #[default]
    AllSuccess,
    /// A fallback: runs only if at least one dependency failed; skipped when
    /// all completed.
    OneFailed,
    /// A cleanup: runs whatever the dependencies' outcomes.
    AllDone,
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Trigger::AllSuccess => "all_success",
            Trigger::OneFailed => "one_failed",
            Trigger::AllDone => "all_done",
        })
    }
}

impl FromStr for Trigger {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "all_success" => Ok(Trigger::AllSuccess),
            "one_failed" => Ok(Trigger::OneFailed),
            "all_done" => Ok(Trigger::AllDone),
            other => Err(format!(
                "unknown trigger rule {other:?} (expected all_success, one_failed or all_done)"
            )),
        }
    }
}

impl Task {
    /// A task with a fresh id and an empty input.
    pub fn new(name: impl Into<String>, role: impl Into<String>, difficulty: u32) -> Self {
        Self::with_id(TaskId::random(), name, role, difficulty)
    }

    /// A task with the given id and an empty input.
    pub fn with_id(id: TaskId, name: impl Into<String>, role: impl Into<String>, difficulty: u32) -> Self {
        Task {
            id,
            name: name.into(),
            role: role.into(),
            difficulty,
            input: Payload::default(),
            dependencies: Vec::new(),
            timeout_ms: None,
            queue_timeout_ms: None,
            deadline_ms: None,
            retries: None,
            max_attempts: None,
            priority: 0,
            trigger: Trigger::AllSuccess,
        }
    }

    /// Sets the input from any serde value.
    pub fn with_input<T: Serialize + ?Sized>(mut self, input: &T) -> Result<Self, PayloadError> {
        self.input = Payload::encode(input)?;
        Ok(self)
    }

    /// Sets the input from raw bytes.
    pub fn with_payload(mut self, input: Payload) -> Self {
        self.input = input;
        self
    }

    /// Adds a dependency on the task with this id.
    pub fn depends_on(mut self, id: TaskId) -> Self {
        if !self.dependencies.contains(&id) {
            self.dependencies.push(id);
        }
        self
    }

    /// Adds a dependency on `other`.
    pub fn after(self, other: &Task) -> Self {
        self.depends_on(other.id)
    }

    /// Sets the execution timeout of each attempt.
    pub fn with_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.timeout_ms = Some(millis(timeout));
        self
    }

    /// Sets the queue timeout: how long the task may wait ready, unawarded.
    pub fn with_queue_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.queue_timeout_ms = Some(millis(timeout));
        self
    }

    /// Sets the total deadline, counted from submission.
    pub fn with_deadline(mut self, deadline: std::time::Duration) -> Self {
        self.deadline_ms = Some(millis(deadline));
        self
    }

    /// Sets how many retryable failures are retried.
    pub fn with_retries(mut self, retries: u32) -> Self {
        self.retries = Some(retries);
        self
    }

    /// Sets how many attempts may be lost before the task fails as poison.
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// Sets the priority (higher first).
    pub fn with_priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Sets the trigger rule.
    pub fn with_trigger(mut self, trigger: Trigger) -> Self {
        self.trigger = trigger;
        self
    }

    /// Decodes the input as `T`.
    pub fn input<T: DeserializeOwned>(&self) -> Result<T, PayloadError> {
        self.input.decode()
    }
}

fn millis(d: std::time::Duration) -> u64 {
    d.as_millis().min(u64::MAX as u128) as u64
}

/// Where a task is in its life. Every status can be read at any moment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskStatus {
    /// Accepted; waiting for dependencies (or for a free capable worker).
    Pending,
    /// Ready and offered to workers; the auction is open.
    Announced,
    /// Awarded to a worker; waiting for it to accept.
    Assigned,
    /// Awarded when no capable worker had a free slot: the worker holds it
    /// in its queue, and starts it the moment one of its slots frees (its
    /// node's renewals say when it has started).
    Queued,
    /// The worker accepted and is processing it.
    Running,
    /// Finished with an output.
    Completed,
    /// Finished with an error.
    Failed,
    /// Cancelled by a client, or because a dependency was.
    Cancelled,
    /// Never ran: its trigger rule did not fire (a fallback whose
    /// dependencies all completed, or a dependent of a skipped task).
    Skipped,
}

impl TaskStatus {
    /// Completed, failed, cancelled or skipped: nothing more will happen.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Cancelled | TaskStatus::Skipped
        )
    }

    /// Final without a failure: completed, or skipped because its trigger
    /// rule did not fire.
    pub fn is_success(&self) -> bool {
        matches!(self, TaskStatus::Completed | TaskStatus::Skipped)
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Announced => "announced",
            TaskStatus::Assigned => "assigned",
            TaskStatus::Queued => "queued",
            TaskStatus::Running => "running",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
            TaskStatus::Skipped => "skipped",
        };
        f.write_str(s)
    }
}

/// Why a task failed. Every variant names what a user needs to act on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// The worker's `process` returned an error (or panicked), and no retry
    /// was left or the error was permanent.
    #[error("worker {worker} failed: {message}")]
    Processing {
        /// The worker that ran the task.
        worker: String,
        /// The worker's error text.
        message: String,
    },
    /// No registered worker could take the task before its deadline.
    #[error("no capable worker for role {} at difficulty {difficulty} within {waited_ms} ms ({})", quoted(.role), describe_best(*.best_skill))]
    NoCapableWorker {
        /// The task's role.
        role: String,
        /// The task's difficulty.
        difficulty: u32,
        /// The highest skill among workers of that role, if any.
        best_skill: Option<u32>,
        /// How long the task waited.
        waited_ms: u64,
    },
    /// Capable workers exist and had room, but none bid before the deadline.
    #[error("no bids for role {} at difficulty {difficulty} within {waited_ms} ms although capable workers had free slots", quoted(.role))]
    NoBids {
        /// The task's role.
        role: String,
        /// The task's difficulty.
        difficulty: u32,
        /// How long the task waited.
        waited_ms: u64,
    },
    /// A dependency failed, so this task (trigger rule `all_success`)
    /// never ran.
    #[error("dependency {} ({id}) failed", quoted(.name))]
    DependencyFailed {
        /// The failed dependency's id.
        id: TaskId,
        /// The failed dependency's name.
        name: String,
    },
    /// The worker holding the task was lost (node gone, lease expired) more
    /// often than the task allows: a poison task. Every attempt is listed.
    #[error("{} lost, the most allowed (max_attempts {max_attempts}): {}", count_of(.attempts.len(), "attempt"), describe_attempts(.attempts))]
    Poison {
        /// The task's limit on lost attempts.
        max_attempts: u32,
        /// Every attempt, oldest first.
        attempts: Vec<AttemptRecord>,
    },
    /// The attempt ran past its execution timeout.
    #[error("worker {worker} did not finish within {timeout_ms} ms")]
    Timeout {
        /// The worker's name.
        worker: String,
        /// The timeout that passed.
        timeout_ms: u64,
    },
    /// The task stayed ready without an award past its queue timeout.
    #[error("not awarded within its queue timeout of {timeout_ms} ms")]
    QueueTimeout {
        /// The queue timeout.
        timeout_ms: u64,
    },
    /// The task did not finish within its total deadline from submission.
    #[error("did not finish within its deadline of {deadline_ms} ms from submission")]
    DeadlineExceeded {
        /// The deadline.
        deadline_ms: u64,
    },
    /// A client cancelled the task, or a dependency it needed.
    #[error("cancelled: {reason}")]
    Cancelled {
        /// Who or what cancelled it.
        reason: String,
    },
    /// The trigger rule did not fire, so the task was skipped.
    #[error("skipped: trigger rule {rule} did not fire ({reason})")]
    NotTriggered {
        /// The task's rule.
        rule: Trigger,
        /// What the dependencies did instead.
        reason: String,
    },
    /// The task's input and its dependencies' outputs together are larger
    /// than one award may carry.
    #[error("input and dependency outputs total {size} bytes, over the limit of {max} for one award")]
    InputsTooLarge {
        /// Their total size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The admin that held the task went away before it finished.
    #[error("the admin holding the task was lost: {0}")]
    AdminLost(String),
}

/// "1 attempt", "3 attempts".
fn count_of(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn describe_attempts(attempts: &[AttemptRecord]) -> String {
    let each = attempts.iter().map(|a| {
        format!(
            "attempt {} on {} at node {}: {}",
            a.number, a.worker, a.node, a.outcome
        )
    });
    each.collect::<Vec<_>>().join("; ")
}

/// How one attempt ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttemptOutcome {
    /// Still running (or its result not yet in).
    Running,
    /// Completed with an output.
    Completed,
    /// The worker reported an error.
    Failed {
        /// The error text.
        message: String,
        /// Whether the worker said a retry might succeed.
        retryable: bool,
    },
    /// Ran past the execution timeout.
    TimedOut {
        /// The timeout.
        timeout_ms: u64,
    },
    /// The worker was lost: its node left, or its lease expired.
    Lost {
        /// What was seen.
        reason: String,
    },
    /// Stopped because the task was cancelled or passed its deadline.
    Aborted {
        /// Why.
        reason: String,
    },
}

impl fmt::Display for AttemptOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttemptOutcome::Running => f.write_str("running"),
            AttemptOutcome::Completed => f.write_str("completed"),
            AttemptOutcome::Failed { message, retryable } => {
                let kind = if *retryable { "retryable" } else { "permanent" };
                write!(f, "failed ({kind}): {message}")
            }
            AttemptOutcome::TimedOut { timeout_ms } => write!(f, "timed out after {timeout_ms} ms"),
            AttemptOutcome::Lost { reason } => write!(f, "lost: {reason}"),
            AttemptOutcome::Aborted { reason } => write!(f, "aborted: {reason}"),
        }
    }
}

/// One attempt at a task, as the task's report lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// The attempt number (1 for the first award; every award takes the next
    /// number, so awards the worker refused leave gaps).
    pub number: u32,
    /// The worker that held it.
    pub worker: String,
    /// The node hosting that worker.
    pub node: NodeId,
    /// When it was awarded: wall-clock milliseconds since the Unix epoch.
    pub started_ms: u64,
    /// How long it lasted until its outcome, in milliseconds.
    pub duration_ms: Option<u64>,
    /// How it ended.
    pub outcome: AttemptOutcome,
}

fn describe_best(best: Option<u32>) -> String {
    match best {
        Some(s) => format!("best skill on offer: {s}"),
        None => "no worker of that role is connected".to_string(),
    }
}

/// How one bid fared in the award it was part of: the winner, a rival the
/// award policy ranked lower, or why the bidder could not be picked at all.
/// The admin decides it when it awards, from its own view of each worker
/// (registration, slots, reservations), and the award event records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BidVerdict {
    /// This bid won.
    Won,
    /// Capable and with room, but the award policy preferred the winner.
    Outbid(Ranked),
    /// The worker answered that it does not want the task.
    Declined,
    /// Its skill is below the task's difficulty.
    Unqualified,
    /// Every slot it has runs or stops a task (for an award from standing
    /// bids: and its queue is full, or another bidder had a free slot).
    Busy,
    /// Its free slot is held for another open auction: for `task`.
    Held {
        /// The task whose auction holds the slot.
        task: TaskId,
    },
    /// It refused this task, or this task's last attempt failed or was lost
    /// on it, and another capable bidder had room.
    SetAside,
    /// Its standing bid is not used until its node is heard from again (an
    /// award it got that way was lost or refused, or a new admin has not
    /// heard from its node yet).
    Unheard,
    /// It left, or changed role, after it bid.
    Gone,
}

/// Why the default award policy ([`crate::scheduler::BestFit`]) ranked a
/// rival below the winner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ranked {
    /// It held more tasks than the winner.
    MoreLoaded,
    /// As loaded, but more skilled: kept free for harder tasks.
    MoreSkilled,
    /// Equal in load and skill: the winner came first by node id, then name.
    TieBreak,
    /// Another policy chose (its reason says why).
    ByPolicy,
}

/// One bid as the admin saw it, kept in the task's auction record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BidRecord {
    /// The bidding worker's name.
    pub worker: String,
    /// The node hosting it.
    pub node: NodeId,
    /// The worker's skill.
    pub skill: u32,
    /// Tasks the worker held when the admin weighed the bid.
    pub load: u32,
    /// How many tasks the worker may hold at once.
    pub capacity: u32,
    /// How the bid fared.
    pub verdict: BidVerdict,
}

/// One bid as `taskmesh submit --json` and the mesh page's `/api/tasks`
/// print it: the bidder, how the bid fared in words, and whether the bidder
/// was capable and free.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BidLine {
    /// The bidding worker's name.
    pub worker: String,
    /// The node hosting it (its peer id).
    pub node: String,
    /// The worker's skill.
    pub skill: u32,
    /// Tasks it held when the admin weighed the bid.
    pub load: u32,
    /// How many it may hold at once.
    pub capacity: u32,
    /// `won`, `outbid`, `declined`, `unqualified`, `busy`, `held`,
    /// `set_aside`, `unheard` or `left` ([`BidVerdict`]).
    pub verdict: &'static str,
    /// For `outbid`: `more_loaded`, `more_skilled`, `tie_break` or
    /// `by_policy`; for `held`: the id of the task the slot was held for.
    pub detail: Option<String>,
    /// Skill ≥ the task's difficulty.
    pub capable: bool,
    /// Whether it had a free slot for the task when the admin awarded it
    /// (`false` for an award into a queue); `None` when the admin did not
    /// get that far (the bid declined, was unqualified, or its bidder left
    /// or was set aside until heard from).
    pub free: Option<bool>,
}

impl BidLine {
    /// The line for bid `b` on a task of `difficulty`, in an award that went
    /// into the winner's queue when `queued` ([`AuctionRecord::queued`]).
    pub fn new(b: &BidRecord, difficulty: u32, queued: bool) -> Self {
        let (verdict, detail, free) = match b.verdict {
            BidVerdict::Won => ("won", None, Some(!queued)),
            BidVerdict::Outbid(r) => {
                let how = match r {
                    Ranked::MoreLoaded => "more_loaded",
                    Ranked::MoreSkilled => "more_skilled",
                    Ranked::TieBreak => "tie_break",
                    Ranked::ByPolicy => "by_policy",
                };
                ("outbid", Some(how.to_string()), Some(!queued))
            }
            BidVerdict::Declined => ("declined", None, None),
            BidVerdict::Unqualified => ("unqualified", None, None),
            BidVerdict::Busy => ("busy", None, Some(false)),
            BidVerdict::Held { task } => ("held", Some(task.to_string()), Some(false)),
            BidVerdict::SetAside => ("set_aside", None, Some(true)),
            BidVerdict::Unheard => ("unheard", None, None),
            BidVerdict::Gone => ("left", None, None),
        };
        BidLine {
            worker: b.worker.clone(),
            node: b.node.to_string(),
            skill: b.skill,
            load: b.load,
            capacity: b.capacity,
            verdict,
            detail,
            capable: b.skill >= difficulty,
            free,
        }
    }
}

/// The award decision for one task: every bid and why the winner won.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuctionRecord {
    /// Bids of the auction that led to the award (for an award from standing
    /// bids: the standing bids that reached the task), each with its verdict.
    pub bids: Vec<BidRecord>,
    /// Why the winner won over each other bidder, in words: how its bid
    /// came, the policy's choice, then the other bids grouped by verdict
    /// ("standing bid: only capable bidder with a free slot (skill 3 >=
    /// difficulty 2); Intermediate and Senior were busy").
    pub reason: String,
    /// How many auction rounds the task went through.
    pub rounds: u32,
    /// No capable worker had a free slot: the award went into the winner's
    /// queue.
    #[serde(default)]
    pub queued: bool,
}

/// Everything known about one task: its status, who ran it and how it ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskReport {
    /// The task id.
    pub id: TaskId,
    /// The task name.
    pub name: String,
    /// The processor role.
    pub role: String,
    /// The difficulty.
    pub difficulty: u32,
    /// Where the task is now.
    pub status: TaskStatus,
    /// The worker that won it, once awarded.
    pub worker: Option<String>,
    /// The node hosting that worker.
    pub node: Option<NodeId>,
    /// Attempts made so far (awards the worker took).
    pub attempts: u32,
    /// Every attempt, oldest first.
    pub history: Vec<AttemptRecord>,
    /// The auction that decided the award.
    pub auction: Option<AuctionRecord>,
    /// The output, once completed.
    pub output: Option<Payload>,
    /// The error, once failed.
    pub error: Option<TaskError>,
    /// Milliseconds from submission to now (or to the end).
    pub elapsed_ms: u64,
    /// Milliseconds the worker spent processing, as it reported.
    pub run_ms: Option<u64>,
    /// The tasks it depends on that the admin still holds (a dependency
    /// evicted after this task finished is left out).
    #[serde(default)]
    pub dependencies: Vec<TaskId>,
}

impl TaskReport {
    /// The output decoded as `T`, or the task's error.
    pub fn output<T: DeserializeOwned>(&self) -> Result<T, crate::Error> {
        if let Some(e) = &self.error {
            return Err(crate::Error::Task(e.clone()));
        }
        match &self.output {
            Some(p) => Ok(p.decode()?),
            None => Err(crate::Error::NotFinished(self.id, self.status.clone())),
        }
    }

    /// True once the task completed successfully.
    pub fn succeeded(&self) -> bool {
        self.status == TaskStatus::Completed
    }
}

/// A worker as the admin lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// The worker's name (unique on its node).
    pub name: String,
    /// The role it serves.
    pub role: String,
    /// Its skill level.
    pub skill: u32,
    /// How many tasks it may hold at once.
    pub capacity: u32,
    /// Tasks it holds now.
    pub load: u32,
    /// The node hosting it.
    pub node: NodeId,
}

/// Most slots the admin counts for one worker, whatever it registers
/// (65,536): a registration cannot make the admin hand one worker
/// unbounded work.
pub const MAX_WORKER_SLOTS: u32 = 65_536;

/// Most awards the admin queues for one worker beyond its slots, whatever
/// it registers (4,096; also the limit of `--worker-queue`).
pub const MAX_WORKER_QUEUE: u32 = 4096;

/// What a worker node tells the admin about one of its workers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerSpec {
    /// The worker's name (unique on its node).
    pub name: String,
    /// The role it serves.
    pub role: String,
    /// Its skill level.
    pub skill: u32,
    /// How many tasks it may hold at once (at least 1).
    pub capacity: u32,
    /// Its standing bid: the hardest task of its role it takes without an
    /// auction (at most its skill), or `None` to bid on each task's
    /// announcement. See [`crate::worker::Worker::standing_bid`].
    pub standing: Option<u32>,
    /// Awarded tasks it may hold waiting beyond `capacity` (its queue; see
    /// [`crate::worker::RuntimeConfig::queue`]): filled only from its
    /// standing bid.
    pub queue: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_refused_when_empty_long_or_holding_control_characters() {
        assert_eq!(check_name("summarise 要約 🚀"), Ok(()));
        assert_eq!(
            check_name("family 👨\u{200D}👩\u{200D}👧"),
            Ok(()),
            "emoji joiners stay"
        );
        for blank in ["", " ", "\u{3000}", "\u{2800}", " \t"] {
            assert!(
                matches!(
                    check_name(blank),
                    Err(NameError::Empty | NameError::Control { .. })
                ),
                "{blank:?}"
            );
        }
        assert_eq!(check_name("\u{3000} "), Err(NameError::Empty));
        let long = "é".repeat(MAX_NAME_BYTES / 2 + 1);
        assert_eq!(
            check_name(&long),
            Err(NameError::TooLong {
                bytes: MAX_NAME_BYTES + 2,
                max: MAX_NAME_BYTES
            })
        );
        for (name, found, at) in [
            ("a\nb", '\n', 2),
            ("\tx", '\t', 1),
            ("x\u{1b}[31m", '\u{1b}', 2),
            ("ab\u{7f}", '\u{7f}', 3),
            ("é\u{85}", '\u{85}', 2),
            ("a\u{2028}", '\u{2028}', 2),
            ("abc\u{202E}fed", '\u{202E}', 4),
            ("\u{2066}", '\u{2066}', 1),
            ("soft\u{AD}hyphen", '\u{AD}', 5),
            ("\u{FEFF}bom", '\u{FEFF}', 1),
            ("a\u{200B}b", '\u{200B}', 2),
            ("x\u{E0001}", '\u{E0001}', 2),
            ("\u{115F}\u{34F}", '\u{115F}', 1),
            ("a\u{180E}", '\u{180E}', 2),
        ] {
            assert_eq!(
                check_name(name),
                Err(NameError::Control { found, at }),
                "{name:?}"
            );
        }
        let e = check_name("a\nb").unwrap_err().to_string();
        assert_eq!(
            e,
            "holds the control character U+000A at character 2; names may not hold control or invisible characters"
        );
        let e = check_name("\u{3164}").unwrap_err().to_string();
        assert!(
            e.starts_with("holds the invisible character U+3164 at character 1"),
            "{e}"
        );
        for (name, found, at) in [
            ("ab\u{200D}cd", '\u{200D}', 3),
            ("\u{200C}x", '\u{200C}', 1),
            ("要\u{200D}", '\u{200D}', 2),
            ("a\u{FE0F}", '\u{FE0F}', 2),
            ("tag\u{E0041}", '\u{E0041}', 4),
        ] {
            assert_eq!(check_name(name), Err(NameError::Joiner { found, at }), "{name:?}");
        }
        assert!(matches!(
            check_name("music\u{1D173}"),
            Err(NameError::Control { .. })
        ));
        for ok in [
            "❤\u{FE0F}",
            "می\u{200C}خواهم",
            "क्\u{200D}ष",
            "\u{1F3F4}\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}",
            "a b",
        ] {
            assert_eq!(check_name(ok), Ok(()), "{ok:?}");
        }
    }

    #[test]
    fn errors_quote_names_as_written() {
        assert_eq!(
            quoted("cafe\u{301} 要約 🚀").to_string(),
            "\"cafe\u{301} 要約 🚀\""
        );
        assert_eq!(quoted("a\"b\\c\nd\u{1b}").to_string(), r#""a\"b\\c\nd\u{1b}""#);
        let e = TaskError::DependencyFailed {
            name: "étape\u{301}".into(),
            id: TaskId::random(),
        };
        assert!(e.to_string().starts_with("dependency \"étape\u{301}\" ("), "{e}");
    }

    #[test]
    fn payload_round_trips_typed_values() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct In {
            id: u32,
            text: String,
        }
        let v = In {
            id: 7,
            text: "hi".into(),
        };
        let p = Payload::encode(&v).unwrap();
        assert_eq!(p.decode::<In>().unwrap(), v);
    }

    #[test]
    fn payload_decode_rejects_wrong_type() {
        let p = Payload::encode(&(1u8, 2u8, 3u8)).unwrap();
        assert!(matches!(p.decode::<u8>(), Err(PayloadError::Trailing(2))));
        assert!(Payload::from_bytes(vec![0xff]).decode::<String>().is_err());
    }

    #[test]
    fn task_builder_dedups_dependencies() {
        let a = Task::new("a", "w", 1);
        let b = Task::new("b", "w", 1).after(&a).after(&a);
        assert_eq!(b.dependencies, vec![a.id]);
    }

    #[test]
    fn task_id_parses_its_display() {
        let id = TaskId::random();
        assert_eq!(id.to_string().parse::<TaskId>().unwrap(), id);
        assert!("nope".parse::<TaskId>().is_err());
    }

    #[test]
    fn no_capable_worker_error_names_role_difficulty_and_best_skill() {
        let e = TaskError::NoCapableWorker {
            role: "worker".into(),
            difficulty: 10,
            best_skill: Some(9),
            waited_ms: 500,
        };
        let s = e.to_string();
        assert!(
            s.contains("\"worker\"") && s.contains("10") && s.contains("best skill on offer: 9"),
            "{s}"
        );
    }

    #[test]
    fn node_ids_from_peers_print_whatever_their_characters() {
        for id in ["€aaaaa", "aa€", "", "日本語のピアID", "12D3KooWabcdef"] {
            let shown = format!("{:?}", NodeId::new(id));
            assert!(shown.starts_with("NodeId(.."), "{shown}");
        }
        assert_eq!(format!("{:?}", NodeId::new("12D3KooWabcdef")), "NodeId(..abcdef)");
    }
}
