//! Plain data shared by every layer: task ids, tasks, payloads, statuses and
//! results. Nothing here does I/O; everything here crosses the wire.

use std::fmt;
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
        let s = &*self.0;
        let tail = &s[s.len().saturating_sub(6)..];
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
    #[error("task has no dependency named {0:?}")]
    NoSuchDependency(String),
}

/// Opaque bytes: a task input or output. On the wire it is the bincode
/// encoding of the user's type; [`Payload::encode`] and [`Payload::decode`]
/// are the typed helpers for both ends.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload(#[serde(with = "serde_bytes_compat")] pub Vec<u8>);

/// Serialises a `Vec<u8>` as one byte string instead of a sequence of
/// numbers (same bincode bytes, much faster with self-describing formats).
mod serde_bytes_compat {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::with_capacity(a.size_hint().unwrap_or(0).min(1 << 16));
                while let Some(b) = a.next_element()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_byte_buf(V)
    }
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
    /// Tasks that must succeed first; their outputs reach this task's worker.
    pub dependencies: Vec<TaskId>,
    /// How long one attempt may run once a worker holds it (milliseconds);
    /// `None` uses the admin's default.
    pub timeout_ms: Option<u64>,
}

impl Task {
    /// A task with a fresh id and an empty input.
    pub fn new(name: impl Into<String>, role: impl Into<String>, difficulty: u32) -> Self {
        Task {
            id: TaskId::random(),
            name: name.into(),
            role: role.into(),
            difficulty,
            input: Payload::default(),
            dependencies: Vec::new(),
            timeout_ms: None,
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

    /// Sets the per-attempt timeout.
    pub fn with_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.timeout_ms = Some(timeout.as_millis().min(u64::MAX as u128) as u64);
        self
    }

    /// Decodes the input as `T`.
    pub fn input<T: DeserializeOwned>(&self) -> Result<T, PayloadError> {
        self.input.decode()
    }
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
    /// The worker accepted and is processing it.
    Running,
    /// Finished with an output.
    Completed,
    /// Finished with an error.
    Failed,
}

impl TaskStatus {
    /// Completed or failed: nothing more will happen to the task.
    pub fn is_final(&self) -> bool {
        matches!(self, TaskStatus::Completed | TaskStatus::Failed)
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Announced => "announced",
            TaskStatus::Assigned => "assigned",
            TaskStatus::Running => "running",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
        };
        f.write_str(s)
    }
}

/// Why a task failed. Every variant names what a user needs to act on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum TaskError {
    /// The worker's `process` returned an error (or panicked).
    #[error("worker {worker} failed: {message}")]
    Processing {
        /// The worker that ran the task.
        worker: String,
        /// The worker's error text.
        message: String,
    },
    /// No registered worker could take the task before its deadline.
    #[error("no capable worker for role {role:?} at difficulty {difficulty} within {waited_ms} ms ({})", describe_best(*.best_skill))]
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
    #[error("no bids for role {role:?} at difficulty {difficulty} within {waited_ms} ms although capable workers had free slots")]
    NoBids {
        /// The task's role.
        role: String,
        /// The task's difficulty.
        difficulty: u32,
        /// How long the task waited.
        waited_ms: u64,
    },
    /// A dependency failed, so this task never ran.
    #[error("dependency {name:?} ({id}) failed")]
    DependencyFailed {
        /// The failed dependency's id.
        id: TaskId,
        /// The failed dependency's name.
        name: String,
    },
    /// The worker holding the task disconnected or left.
    #[error("worker {worker} on node {node} was lost while holding the task")]
    WorkerLost {
        /// The worker's name.
        worker: String,
        /// The node that hosted it.
        node: String,
    },
    /// The attempt ran past its timeout.
    #[error("worker {worker} did not finish within {timeout_ms} ms")]
    Timeout {
        /// The worker's name.
        worker: String,
        /// The timeout that passed.
        timeout_ms: u64,
    },
    /// The admin that held the task went away before it finished.
    #[error("the admin holding the task was lost: {0}")]
    AdminLost(String),
}

fn describe_best(best: Option<u32>) -> String {
    match best {
        Some(s) => format!("best skill on offer: {s}"),
        None => "no worker of that role is connected".to_string(),
    }
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
}

/// The award decision for one task: every bid and why the winner won.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuctionRecord {
    /// Bids received in the auction that led to the award.
    pub bids: Vec<BidRecord>,
    /// Why the winner won (the policy's words).
    pub reason: String,
    /// How many auction rounds the task went through.
    pub rounds: u32,
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
    /// Attempts made so far.
    pub attempts: u32,
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
