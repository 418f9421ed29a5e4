//! Every message that crosses the network, and the codec that carries them.
//!
//! Three channels:
//! - **gossipsub** ([`Gossip`]): the admin's notice on `taskmesh/<mesh>/admin`
//!   and batched task announcements on `taskmesh/<mesh>/tasks`;
//! - **links** on [`LINK_PROTOCOL`]: a long-lived stream per peer pair and
//!   direction carrying [`Request`]s and their [`Response`]s as
//!   [`LinkFrame`]s — Raft messages between the ledger's replicas, joins,
//!   registration, bids, awards, reports, and client calls;
//! - **request-response** on [`PROTOCOL_NAME`]: the same requests on a
//!   stream each, for bulk (batches, snapshot parts) and for any request
//!   whose link is full.
//!
//! Each frame is a little-endian `u32` length and then the bincode encoding
//! of `(WIRE_VERSION, message)`. The length is checked against the limit
//! *before* any byte of the body is read or allocated, so an oversize or
//! lying frame costs nothing. Messages that carry admin decisions carry the
//! admin's term, so later admins can fence earlier ones.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::scheduler::{Announcement, Assignment, Bid, CancelOutcome, Lookup, Report, SubmitError};
use crate::task::{bincode_config, Task, TaskId, TaskReport, WorkerInfo, WorkerSpec};

/// The request-response protocol name.
pub const PROTOCOL_NAME: &str = "/taskmesh/6";

/// Version stamped into every frame; a frame of another version is refused.
pub const WIRE_VERSION: u16 = 6;

/// Default largest frame, requests and responses alike.
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;

/// Gossiped messages.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Gossip {
    /// "I am the admin": the Raft leader of ledger `cluster` in `term`,
    /// published every heartbeat and when a peer subscribes, so that every
    /// node (workers and clients too) knows where to send its calls. The
    /// sender is the (signed) gossip source.
    Admin(AdminNotice),
    /// "No admin here": a voter that knows of no admin and reaches fewer
    /// than a majority of the voters of ledger `cluster` says so every
    /// second, so that clients on its side refuse new work at once.
    NoQuorum {
        /// The ledger's id.
        cluster: u64,
        /// Voters it reaches, itself included.
        reached: u32,
        /// Voters of the ledger.
        voters: u32,
    },
    /// Tasks open for bidding, announced by the admin of `term`.
    Announce {
        /// The admin's term.
        term: u64,
        /// The announced tasks.
        tasks: Vec<Announcement>,
    },
}

/// What an admin says of itself on the admin topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminNotice {
    /// The ledger's id: its founding time in milliseconds since the Unix
    /// epoch, shifted left 16 bits, and 16 random bits. Two meshes that meet
    /// keep the older one's ledger (see `net::ledger`).
    pub cluster: u64,
    /// The admin's Raft term.
    pub term: u64,
    /// True once the ledger has accepted a task: such a ledger never
    /// dissolves into another.
    pub has_tasks: bool,
    /// The admin's listen addresses (multiaddr text), so that nodes not
    /// directly connected to it can dial it.
    pub addrs: Vec<String>,
    /// Ledgers this one superseded when an operator recovered it (`taskmesh
    /// node --recover`): their replicas follow this admin instead of
    /// leading their own.
    pub supersedes: Vec<u64>,
    /// The ledger's voters (peer ids, base58): a node outside the ledger
    /// follows a later admin only when it is one of them.
    pub voters: Vec<String>,
}

/// A node's answer to one award.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignAnswer {
    /// The task.
    pub task: TaskId,
    /// The attempt answered.
    pub attempt: u32,
    /// True when the worker took it.
    pub accepted: bool,
    /// Why not, when refused.
    pub reason: Option<String>,
}

/// A peer as the admin sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// The peer id (base58).
    pub peer: String,
    /// True for the admin itself.
    pub is_admin: bool,
    /// Names of the workers it hosts (registered with the admin).
    pub workers: Vec<String>,
    /// Addresses it listens on, as it told the admin (with `/p2p/`).
    pub addrs: Vec<String>,
    /// Its software, as it announced itself (e.g. `taskmesh/0.1.0`).
    pub agent: Option<String>,
    /// True for a voter of the ledger (the admin included).
    #[serde(default)]
    pub is_voter: bool,
}

/// Requests.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Replica → replica: Raft messages (protobuf, as raft-rs encodes
    /// them) for the ledger `cluster`. Answered `Ok` at once.
    Raft {
        /// The ledger's id.
        cluster: u64,
        /// The messages, in order, each one byte string (one length and
        /// its bytes on the wire, decoded whole rather than byte by byte).
        messages: Vec<serde_bytes::ByteBuf>,
    },
    /// Replica → replica: one part of a Raft message too large for a frame
    /// (a snapshot of a large ledger), sent after the previous part was
    /// answered. Answered `Ok`, or `Refused` when the part is not the next
    /// one (the message is dropped; Raft sends it again).
    RaftPart {
        /// The ledger's id.
        cluster: u64,
        /// The part.
        part: RaftPart,
    },
    /// Admin-eligible node → admin: let replica `raft_id` follow the ledger
    /// `cluster` (as a learner, promoted to voter while voters are few).
    /// Answered `Ok` when admitted or already a member; asked again until
    /// the node sees itself in the configuration.
    Join {
        /// The ledger's id.
        cluster: u64,
        /// The joining replica's Raft id.
        raft_id: u64,
        /// Its listen addresses (multiaddr text).
        addrs: Vec<String>,
        /// Its preference to be admin (`--admin-priority`).
        priority: u8,
    },
    /// Worker node → admin: the workers this node hosts (replaces any
    /// earlier list).
    Register {
        /// The workers.
        workers: Vec<WorkerSpec>,
    },
    /// Worker node → admin: answers to announcements.
    Bids {
        /// The term of the admin the bids are for.
        term: u64,
        /// The bids.
        bids: Vec<Bid>,
    },
    /// Admin → worker node: awards.
    Assign {
        /// The admin's term.
        term: u64,
        /// The awards.
        assignments: Vec<Assignment>,
    },
    /// Worker node → admin: results. Answered `Ok` once received (also for
    /// stale attempts), so the node can forget them.
    Reports {
        /// The term of the admin that assigned the work.
        term: u64,
        /// The results.
        reports: Vec<Report>,
    },
    /// Worker node → admin, every renewal interval while it holds work: the
    /// leases of every attempt it holds (running, or finished with the
    /// result not yet acknowledged).
    Renew {
        /// The term of the admin the leases are held from.
        term: u64,
        /// `(task, attempt)` pairs.
        held: Vec<(TaskId, u32)>,
        /// Those of `held` waiting in a worker's queue, not started.
        waiting: Vec<(TaskId, u32)>,
    },
    /// Admin → worker node: stop these attempts (cancelled, past their
    /// deadline, timed out, or no longer the node's).
    Abort {
        /// The admin's term.
        term: u64,
        /// `(task, attempt)` pairs.
        attempts: Vec<(TaskId, u32)>,
    },
    /// Client → admin: a batch of tasks, accepted or refused whole.
    Submit {
        /// The batch.
        tasks: Vec<Task>,
    },
    /// Client → admin: one part of a batch too large for one frame. Parts
    /// of one `upload` are kept until the `last` one arrives; then the
    /// whole batch is validated as one. A non-last part is answered `Ok`.
    SubmitPart {
        /// Chosen by the client; distinct per batch.
        upload: u64,
        /// This part's tasks.
        tasks: Vec<Task>,
        /// True for the final part.
        last: bool,
    },
    /// Client → admin: cancel these tasks.
    Cancel {
        /// The tasks.
        ids: Vec<TaskId>,
    },
    /// Client → admin: the current reports of some tasks.
    Status {
        /// The tasks asked about; none asks for the most recent tasks
        /// (up to a thousand), oldest first.
        ids: Vec<TaskId>,
    },
    /// Client → admin: answer once all these tasks are final (or, with
    /// `any`, once at least one is), or after `max_wait_ms` with whatever is
    /// known then. The answer carries the reports of the final tasks.
    Await {
        /// The tasks waited on.
        ids: Vec<TaskId>,
        /// The longest the admin may hold the request.
        max_wait_ms: u64,
        /// Answer as soon as any one of the tasks is final.
        any: bool,
    },
    /// Client → admin: the connected workers.
    Workers,
    /// Client → admin: the peers connected to the admin.
    Peers,
    /// Not a message: what the codec hands the node instead of a request
    /// whose frame could not be read, so that the node can count it
    /// against the peer and answer why. Never sent nor decoded.
    #[serde(skip)]
    Unreadable(Unreadable),
}

/// Why a request's frame could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unreadable {
    /// Not a message of this wire version, or over the frame limit.
    Malformed(String),
    /// Not sent whole within the read timeout, or cut short.
    Slow(String),
    /// The node is reading too many bytes of other frames at once.
    Busy(String),
}

impl Unreadable {
    /// Why a frame could not be read, from the error its read ended with;
    /// other I/O errors (the stream was reset or closed) stay errors.
    pub(crate) fn of(e: io::Error) -> io::Result<Unreadable> {
        let why = e.to_string();
        Ok(match e.kind() {
            io::ErrorKind::InvalidData => Unreadable::Malformed(why),
            io::ErrorKind::TimedOut | io::ErrorKind::UnexpectedEof => Unreadable::Slow(why),
            io::ErrorKind::OutOfMemory => Unreadable::Busy(why),
            _ => return Err(e),
        })
    }
}

/// The protocol of long-lived links: one stream each way between two
/// peers, carrying [`LinkFrame`]s in the same framing as request-response.
pub const LINK_PROTOCOL: &str = "/taskmesh/link/6";

/// One message on a link. A request's answer comes back on the same
/// link (stream), with the request's id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum LinkFrame {
    /// A request, numbered by its sender.
    Request {
        /// Distinct per request of the sending node.
        id: u64,
        /// The request.
        request: Request,
    },
    /// The answer to the request `id` that the receiver sent.
    Response {
        /// The request's id.
        id: u64,
        /// The answer.
        response: Response,
    },
}

/// Responses.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// Done.
    Ok,
    /// The receiver is not the admin; here is who it believes is.
    NotAdmin {
        /// The admin's peer id, if known.
        admin: Option<String>,
        /// Its term.
        term: u64,
    },
    /// Answers to an [`Request::Assign`], one per assignment.
    Assigned(Vec<AssignAnswer>),
    /// The answer to a submission.
    Submitted(Result<Vec<TaskId>, SubmitError>),
    /// Reports of final tasks (an await's answer). A long answer is cut to
    /// fit one frame; the caller asks again for the rest.
    Reports(Vec<Option<TaskReport>>),
    /// What the admin knows of each asked id, in order (a status answer).
    /// A long answer covers only the first ids, to fit one frame; the
    /// caller asks again for the rest.
    Lookups(Vec<Lookup>),
    /// Outcomes of a cancellation, one per id, in order.
    Cancelled(Vec<CancelOutcome>),
    /// The connected workers.
    Workers(Vec<WorkerInfo>),
    /// The admin and the peers connected to it.
    Peers(Vec<PeerInfo>),
    /// The request was understood but refused (stale term, bad input).
    Refused(String),
}

impl Response {
    /// A short description for logs: the refusal's reason, the admin a
    /// node follows, or the kind of answer (never its whole contents).
    pub fn summary(&self) -> String {
        match self {
            Response::NotAdmin { admin: Some(a), term } => {
                format!("not the admin (it follows {a}, term {term})")
            }
            Response::NotAdmin { admin: None, .. } => "not the admin (it knows of none)".into(),
            Response::Refused(why) => format!("refused: {why}"),
            Response::Ok => "ok".into(),
            Response::Assigned(a) => format!("{} assignment answers", a.len()),
            Response::Submitted(Ok(ids)) => format!("{} tasks submitted", ids.len()),
            Response::Submitted(Err(e)) => format!("submission refused: {e}"),
            Response::Reports(r) => format!("{} reports", r.len()),
            Response::Lookups(l) => format!("{} lookups", l.len()),
            Response::Cancelled(c) => format!("{} cancellations", c.len()),
            Response::Workers(w) => format!("{} workers", w.len()),
            Response::Peers(p) => format!("{} peers", p.len()),
        }
    }
}

/// One part of a Raft message too large for a frame
/// ([`Request::RaftPart`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftPart {
    /// The message's number, from its sender.
    pub seq: u64,
    /// Where this part starts in the message, in bytes.
    pub offset: u64,
    /// The whole message's length in bytes (at most 1 GiB + 16 MiB).
    pub total: u64,
    /// The part: 1 byte to 4 MiB.
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

/// Cuts `items` into runs of about `budget` bytes each, as `size` counts
/// them, keeping their order; an item larger than the budget goes alone.
/// Batches of tasks, awards and results are cut this way to fit frames.
pub fn chunk_by_size<T>(items: Vec<T>, budget: usize, size: impl Fn(&T) -> usize) -> Vec<Vec<T>> {
    let mut chunks = Vec::new();
    let mut current = Vec::new();
    let mut used = 0;
    for item in items {
        let n = size(&item);
        if !current.is_empty() && used + n > budget {
            chunks.push(std::mem::take(&mut current));
            used = 0;
        }
        used += n;
        current.push(item);
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// Encodes a message into one frame body (no length prefix).
pub fn encode<T: Serialize>(msg: &T) -> io::Result<Vec<u8>> {
    bincode::serde::encode_to_vec((WIRE_VERSION, msg), bincode_config())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Decodes one frame body, refusing other versions and trailing bytes.
///
/// Bincode allocates a claimed string, byte or list length up front once
/// the claims so far are under its limit, so the limit grows with the
/// input: at least 32 times its size (64 KiB for bodies up to 2 KiB, 1 MiB
/// up to 32 KiB, 16 MiB up to 512 KiB, 64 MiB beyond), enough for any
/// honest message and little for a short lying one.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    let n = bytes.len();
    let decoded = if n <= 2 << 10 {
        decode_limited::<T, { 64 << 10 }>(bytes)
    } else if n <= 32 << 10 {
        decode_limited::<T, { 1 << 20 }>(bytes)
    } else if n <= 512 << 10 {
        decode_limited::<T, { 16 << 20 }>(bytes)
    } else {
        decode_limited::<T, { 64 << 20 }>(bytes)
    };
    let ((version, msg), used) = decoded.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    if version != WIRE_VERSION {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("wire version {version}, expected {WIRE_VERSION}"),
        ));
    }
    if used != bytes.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "trailing bytes in frame",
        ));
    }
    Ok(msg)
}

/// Bytes of request and response bodies being read at once, over every
/// stream of a node: frames grow into this shared budget as their bytes
/// arrive, and give it back when read (or dropped). A frame that would go
/// over it is refused, so peers that open many streams and send large
/// bodies slowly cannot grow a node's memory past the budget.
#[derive(Clone, Debug)]
pub struct InboundBudget {
    used: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    limit: usize,
}

impl InboundBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        InboundBudget {
            used: Default::default(),
            limit,
        }
    }

    /// Bytes held now by frames being read.
    pub fn used(&self) -> usize {
        self.used.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Takes `n` bytes, or none when that would go over the limit.
    fn take(&self, n: usize) -> bool {
        use std::sync::atomic::Ordering;
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|&t| t <= self.limit)
            })
            .is_ok()
    }

    fn give(&self, n: usize) {
        self.used.fetch_sub(n, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Bytes a frame being read holds of its [`InboundBudget`]; given back on
/// drop, also when the read is cut short.
struct Held<'a> {
    budget: &'a InboundBudget,
    bytes: usize,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.budget.give(self.bytes);
    }
}

/// Most bytes of a frame read at once (and taken from the budget when they
/// arrive).
const READ_CHUNK: usize = 8 << 10;

fn decode_limited<T: DeserializeOwned, const LIMIT: usize>(
    bytes: &[u8],
) -> Result<((u16, T), usize), bincode::error::DecodeError> {
    bincode::serde::decode_from_slice(bytes, bincode_config().with_limit::<LIMIT>())
}

/// The request-response codec: length-prefixed bincode with a size limit.
#[derive(Clone, Debug)]
pub struct Codec {
    /// Largest frame accepted or sent.
    pub max_frame: usize,
    /// Longest a peer may take to send one whole frame once its stream is
    /// open; a slower frame is refused.
    pub read_timeout: std::time::Duration,
    /// Longest a frame may go without a byte arriving; a stalled frame is
    /// refused (and gives its bytes back to the budget).
    pub stall_timeout: std::time::Duration,
    /// Bytes being read at once over every stream sharing this codec's
    /// budget (the whole node).
    pub budget: InboundBudget,
}

/// Default [`Codec::read_timeout`].
pub const DEFAULT_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);
/// Default [`Codec::stall_timeout`].
pub const DEFAULT_STALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Default [`InboundBudget`] of a node: 128 MiB.
pub const DEFAULT_INBOUND_BUDGET: usize = 128 << 20;

impl Default for Codec {
    fn default() -> Self {
        Codec {
            max_frame: DEFAULT_MAX_FRAME,
            read_timeout: DEFAULT_READ_TIMEOUT,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            budget: InboundBudget::new(DEFAULT_INBOUND_BUDGET),
        }
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl Codec {
    /// Reads one frame: its length, checked against [`Codec::max_frame`],
    /// then its body, which grows only as its bytes arrive and only within
    /// the budget, all within [`Codec::read_timeout`].
    async fn read_frame<T: AsyncRead + Unpin + Send, M: DeserializeOwned>(
        &self,
        io: &mut T,
    ) -> io::Result<M> {
        self.within_read_timeout(self.read_body(io)).await
    }

    /// Decodes the body `read` gives, if it comes within the read timeout.
    async fn within_read_timeout<M: DeserializeOwned>(
        &self,
        read: impl std::future::Future<Output = io::Result<Vec<u8>>>,
    ) -> io::Result<M> {
        match tokio::time::timeout(self.read_timeout, read).await {
            Ok(body) => decode(&body?),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("frame not received within {:?}", self.read_timeout),
            )),
        }
    }

    /// Reads the next frame of a long-lived stream: it may wait any time
    /// for the frame's first byte, then the frame is read as by a
    /// request's stream (within the read timeout, the stall timeout and
    /// the budget). `None` when the stream ends cleanly between frames.
    pub(crate) async fn read_next<T: AsyncRead + Unpin + Send, M: DeserializeOwned>(
        &self,
        io: &mut T,
    ) -> io::Result<Option<M>> {
        let mut first = [0u8; 1];
        if io.read(&mut first).await? == 0 {
            return Ok(None);
        }
        let rest = async {
            let mut len = [first[0], 0, 0, 0];
            io.read_exact(&mut len[1..]).await?;
            self.read_body_of(io, u32::from_le_bytes(len) as usize).await
        };
        self.within_read_timeout(rest).await.map(Some)
    }

    /// Writes one frame and flushes it, leaving the stream open. The frame
    /// goes out in one write (one Yamux frame, one Noise message when it
    /// fits), not its length and body apart.
    pub(crate) async fn write_next<T: AsyncWrite + Unpin + Send, M: Serialize>(
        &self,
        io: &mut T,
        msg: &M,
    ) -> io::Result<()> {
        let mut frame = Vec::new();
        self.frame_into(&mut frame, msg)?;
        io.write_all(&frame).await?;
        io.flush().await
    }

    /// Appends a message's whole frame (4-byte little-endian length, then
    /// the body) to `buf`, so that several frames can go out in one write.
    /// A message over [`Codec::max_frame`] is refused and leaves `buf` as
    /// it was.
    pub(crate) fn frame_into<M: Serialize>(&self, buf: &mut Vec<u8>, msg: &M) -> io::Result<()> {
        let start = buf.len();
        buf.extend_from_slice(&[0; 4]);
        let written = bincode::serde::encode_into_std_write((WIRE_VERSION, msg), buf, bincode_config());
        let len = buf.len() - start - 4;
        let refusal = match written {
            Err(e) => Some(io::Error::new(io::ErrorKind::InvalidData, e)),
            Ok(_) if len > self.max_frame => Some(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("message of {len} bytes is over the limit of {}", self.max_frame),
            )),
            Ok(_) => None,
        };
        if let Some(e) = refusal {
            buf.truncate(start);
            return Err(e);
        }
        buf[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
        Ok(())
    }

    async fn read_body<T: AsyncRead + Unpin + Send>(&self, io: &mut T) -> io::Result<Vec<u8>> {
        let mut len = [0u8; 4];
        io.read_exact(&mut len).await?;
        self.read_body_of(io, u32::from_le_bytes(len) as usize).await
    }

    async fn read_body_of<T: AsyncRead + Unpin + Send>(&self, io: &mut T, len: usize) -> io::Result<Vec<u8>> {
        if len > self.max_frame {
            return Err(invalid(format!(
                "frame of {len} bytes is over the limit of {}",
                self.max_frame
            )));
        }
        let mut held = Held {
            budget: &self.budget,
            bytes: 0,
        };
        // The body grows with the bytes that arrive, each taken from the
        // budget first; a frame whose bytes stop coming for the stall
        // timeout is given up.
        let mut buf = Vec::new();
        let mut chunk = [0u8; READ_CHUNK];
        while buf.len() < len {
            let want = (len - buf.len()).min(READ_CHUNK);
            let n = match tokio::time::timeout(self.stall_timeout, io.read(&mut chunk[..want])).await {
                Ok(n) => n?,
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "no byte of the frame for {:?} ({} of {len} bytes came)",
                            self.stall_timeout,
                            buf.len()
                        ),
                    ))
                }
            };
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the frame ended after {} of {len} bytes", buf.len()),
                ));
            }
            if !self.budget.take(n) {
                return Err(io::Error::new(
                    io::ErrorKind::OutOfMemory,
                    format!(
                        "the node is reading {} bytes of other frames already (limit {}); frame refused",
                        self.budget.used(),
                        self.budget.limit
                    ),
                ));
            }
            held.bytes += n;
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok(buf)
    }

    /// Writes a request's or response's frame, then closes its stream.
    async fn write_frame<T: AsyncWrite + Unpin + Send, M: Serialize>(
        &self,
        io: &mut T,
        msg: &M,
    ) -> io::Result<()> {
        self.write_next(io, msg).await?;
        io.close().await
    }
}

impl libp2p::request_response::Codec for Codec {
    type Protocol = libp2p::StreamProtocol;
    type Request = Request;
    type Response = Response;

    /// Reads a request; a frame that cannot be read becomes
    /// [`Request::Unreadable`] (request-response does not report read
    /// failures, and the node must know who sent it), other I/O errors
    /// stay errors.
    async fn read_request<T>(&mut self, _: &Self::Protocol, io: &mut T) -> io::Result<Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        match self.read_frame(io).await {
            Ok(req) => Ok(req),
            Err(e) => Unreadable::of(e).map(Request::Unreadable),
        }
    }

    async fn read_response<T>(&mut self, _: &Self::Protocol, io: &mut T) -> io::Result<Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        self.read_frame(io).await
    }

    async fn write_request<T>(&mut self, _: &Self::Protocol, io: &mut T, req: Request) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        self.write_frame(io, &req).await
    }

    async fn write_response<T>(&mut self, _: &Self::Protocol, io: &mut T, res: Response) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        self.write_frame(io, &res).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::Payload;
    use futures::io::Cursor;
    use libp2p::request_response::Codec as _;

    fn proto() -> libp2p::StreamProtocol {
        libp2p::StreamProtocol::new(PROTOCOL_NAME)
    }

    #[tokio::test]
    async fn frames_round_trip() {
        let task = Task::new("t", "worker", 3).with_payload(Payload::from_bytes(vec![1, 2, 3]));
        let req = Request::Submit { tasks: vec![task] };
        let mut c = Codec::default();
        let mut buf = Cursor::new(Vec::new());
        c.write_request(&proto(), &mut buf, req.clone()).await.unwrap();
        buf.set_position(0);
        assert_eq!(c.read_request(&proto(), &mut buf).await.unwrap(), req);
    }

    #[tokio::test]
    async fn oversize_frame_is_refused_before_reading_the_body() {
        let mut c = Codec {
            max_frame: 8,
            ..Codec::default()
        };
        // Claims 4 GiB but carries nothing: must fail on the length alone,
        // and reach the node as unreadable (to count against the peer).
        let mut buf = Cursor::new(u32::MAX.to_le_bytes().to_vec());
        let Request::Unreadable(Unreadable::Malformed(why)) =
            c.read_request(&proto(), &mut buf).await.unwrap()
        else {
            panic!("an oversize frame is malformed")
        };
        assert!(why.contains("over the limit"), "{why}");
        // Cut short: slow; a response still fails as an error.
        let mut buf = Cursor::new(vec![1, 0]);
        let req = c.read_request(&proto(), &mut buf).await.unwrap();
        assert!(matches!(req, Request::Unreadable(Unreadable::Slow(_))), "{req:?}");
        let mut buf = Cursor::new(u32::MAX.to_le_bytes().to_vec());
        assert!(c.read_response(&proto(), &mut buf).await.is_err());
        let mut out = Cursor::new(Vec::new());
        let big = Request::Submit {
            tasks: vec![Task::new("t", "w", 1)],
        };
        assert!(c.write_request(&proto(), &mut out, big).await.is_err());
    }

    #[tokio::test]
    async fn frames_gathered_in_one_buffer_read_back_one_by_one() {
        let c = Codec {
            max_frame: 64,
            ..Codec::default()
        };
        let mut buf = Vec::new();
        let small = [
            Request::Workers,
            Request::Peers,
            Request::Status {
                ids: vec![TaskId::random()],
            },
        ];
        for m in &small {
            c.frame_into(&mut buf, m).unwrap();
        }
        let before = buf.clone();
        let big = Request::Submit {
            tasks: vec![Task::new(
                "a name long enough to pass 64 bytes of frame",
                "worker",
                1,
            )],
        };
        assert!(c.frame_into(&mut buf, &big).is_err(), "over the limit");
        assert_eq!(buf, before, "a refused frame leaves the buffer as it was");
        let mut io = Cursor::new(buf);
        for m in &small {
            assert_eq!(
                c.read_next::<_, Request>(&mut io).await.unwrap().as_ref(),
                Some(m)
            );
        }
        assert_eq!(c.read_next::<_, Request>(&mut io).await.unwrap(), None);
    }

    #[test]
    fn garbage_and_wrong_versions_are_errors_not_panics() {
        for bytes in [
            vec![],
            vec![0xff; 3],
            vec![1, 0, 200, 200, 200, 200, 200],
            vec![9, 0, 0],
        ] {
            assert!(decode::<Request>(&bytes).is_err());
            assert!(decode::<Gossip>(&bytes).is_err());
        }
        let other =
            bincode::serde::encode_to_vec((WIRE_VERSION + 1, Request::Workers), bincode_config()).unwrap();
        assert!(decode::<Request>(&other)
            .unwrap_err()
            .to_string()
            .contains("wire version"));
        let mut ok = encode(&Request::Workers).unwrap();
        ok.push(0);
        assert!(decode::<Request>(&ok).is_err());
    }

    #[test]
    fn a_short_message_cannot_claim_a_large_allocation() {
        // A gossip message of a few bytes claiming a 60 MiB string: refused
        // by the limit (64 KiB for so short an input), not allocated.
        let mut body = bincode::serde::encode_to_vec(WIRE_VERSION, bincode_config()).unwrap();
        body.push(0); // Gossip::Admin
        body.extend_from_slice(&[1, 1, 0]); // cluster, term, has_tasks
        body.push(1); // addrs: one string…
        body.push(252); // …whose length is a u32 varint
        body.extend_from_slice(&(60u32 << 20).to_le_bytes());
        let err = decode::<Gossip>(&body).unwrap_err().to_string();
        assert!(err.contains("limit") || err.contains("Limit"), "{err}");
        // An honest message far above the small tiers still decodes.
        let tasks = (0..20_000).map(|i| Task::new(format!("t{i}"), "w", 1)).collect();
        let big = Request::Submit { tasks };
        assert_eq!(decode::<Request>(&encode(&big).unwrap()).unwrap(), big);
    }

    #[test]
    fn hostile_length_prefixes_inside_bodies_do_not_allocate_wildly() {
        // A vec length of u64::MAX inside a small body must fail cleanly.
        let mut body = encode(&Request::Status { ids: vec![] }).unwrap();
        let n = body.len();
        body.truncate(n - 1);
        body.extend_from_slice(&[253, 255, 255, 255, 255, 255, 255, 255, 255]);
        assert!(decode::<Request>(&body).is_err());
    }

    /// A reader that yields `data` and then never anything more.
    struct Stalls(Cursor<Vec<u8>>);

    impl futures::AsyncRead for Stalls {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut [u8],
        ) -> std::task::Poll<io::Result<usize>> {
            match std::pin::Pin::new(&mut self.0).poll_read(cx, buf) {
                std::task::Poll::Ready(Ok(0)) => std::task::Poll::Pending,
                other => other,
            }
        }
    }

    #[tokio::test]
    async fn a_claimed_length_takes_only_the_bytes_that_arrived() {
        // Claims 16 MiB, sends 10 bytes, then stalls: the frame holds 10
        // bytes of the budget, not 16 MiB, and is given up.
        let c = Codec {
            stall_timeout: std::time::Duration::from_millis(50),
            ..Codec::default()
        };
        let mut data = (16u32 << 20).to_le_bytes().to_vec();
        data.extend_from_slice(&[7; 10]);
        let mut io = Stalls(Cursor::new(data));
        let budget = c.budget.clone();
        let read = {
            let c = c.clone();
            tokio::spawn(async move { c.read_frame::<_, Request>(&mut io).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        assert_eq!(budget.used(), 10, "only the bytes that came are held");
        let err = read.await.unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        assert!(err.to_string().contains("no byte of the frame"), "{err}");
        assert_eq!(budget.used(), 0, "the budget is given back");
        // A frame that trickles in too slowly overall is given up too.
        let c = Codec {
            read_timeout: std::time::Duration::from_millis(50),
            ..Codec::default()
        };
        let mut io = Stalls(Cursor::new((16u32 << 20).to_le_bytes().to_vec()));
        let err = c.read_frame::<_, Request>(&mut io).await.unwrap_err();
        assert!(err.to_string().contains("frame not received within"), "{err}");
    }

    #[tokio::test]
    async fn frames_over_the_shared_budget_are_refused() {
        let c = Codec {
            budget: InboundBudget::new(100 << 10),
            ..Codec::default()
        };
        assert!(c.budget.take(90 << 10)); // another stream's frame
        let body = encode(&Request::Submit {
            tasks: vec![Task::new("t", "w", 1).with_payload(Payload::from_bytes(vec![0; 30 << 10]))],
        })
        .unwrap();
        let mut data = (body.len() as u32).to_le_bytes().to_vec();
        data.extend_from_slice(&body);
        let err = c
            .read_frame::<_, Request>(&mut Cursor::new(data.clone()))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("frame refused"), "{err}");
        assert_eq!(c.budget.used(), 90 << 10);
        c.budget.give(90 << 10);
        assert!(c.read_frame::<_, Request>(&mut Cursor::new(data)).await.is_ok());
        assert_eq!(c.budget.used(), 0);
    }
}
