//! The network layer: one libp2p swarm and one event loop per node.
//!
//! The loop owns the swarm, this node's replica of the ledger (the
//! replicated scheduler, see `ledger`), the admin's bookkeeping (while this
//! node is admin) and the worker runtime as plain fields. It only translates: swarm
//! events become state-machine inputs, state-machine outputs become swarm
//! calls. Handles talk to it through a bounded command channel and get their
//! answers on oneshots.

mod admin;
mod behaviour;
mod book;
mod client;
mod guard;
mod inbound;
mod ledger;
mod link;
mod outbox;
mod parts;
mod quota;
mod swarm;
mod uploads;

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use libp2p::request_response::OutboundRequestId;
use libp2p::swarm::ConnectionId;
use libp2p::{gossipsub, Multiaddr, PeerId, Swarm};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::node::NodeConfig;
use crate::protocol::{self, Gossip, PeerInfo};
use crate::scheduler::{CancelOutcome, Lookup};
use crate::task::{NodeId, Task, TaskId, TaskReport, WorkerInfo};
use crate::worker::WorkerRuntime;
use crate::Error;

pub(crate) use behaviour::{build_swarm, Behaviour, BehaviourEvent};
pub(crate) use ledger::reopen;

/// Swarm events taken in one loop turn after the one that woke it, when
/// they are already there: their decisions share the turn's ledger entry.
const DRAIN_PER_TURN: usize = 255;
/// How soon after its last renewal a node renews again once a queued
/// award started: the admin learns of the start within about this, at the
/// cost of at most one more renewal per this interval under load.
const RENEW_AFTER_START: Duration = Duration::from_millis(20);

/// First delay before dialling a failed join address again; doubles.
const JOIN_RETRY: Duration = Duration::from_secs(1);
/// Longest delay between two tries of a join address.
const MAX_JOIN_RETRY: Duration = Duration::from_secs(30);

/// What a node looks like from outside, published by the loop on a watch
/// channel so handles can read it without a round trip.
#[derive(Clone, Debug, Default)]
pub struct NodeState {
    /// The current admin, if one is known.
    pub admin: Option<PeerId>,
    /// The admin's term.
    pub term: u64,
    /// True when this node is the admin.
    pub is_admin: bool,
    /// Voters of the ledger, as this node's replica knows them (0 for a
    /// node that keeps no replica, or has not joined yet).
    pub voters: usize,
    /// Set while this side of the mesh has no admin because it reaches too
    /// few voters (as a voter here says): `(reached, voters)`. New work is
    /// refused at once meanwhile.
    pub no_quorum: Option<(usize, usize)>,
    /// Addresses this node listens on, with `/p2p/<peer id>`.
    pub listen_addrs: Vec<Multiaddr>,
    /// Peers with an open connection.
    pub connected: Vec<PeerId>,
    /// Addresses from `NodeConfig::join` that could not be dialled, and why.
    pub failed_joins: Vec<(Multiaddr, String)>,
}

/// A reply channel.
pub(crate) type Reply<T> = oneshot::Sender<Result<T, Error>>;

/// Calls from handles to the loop.
pub(crate) enum Command {
    /// Submit a batch to the admin.
    Submit(Vec<Task>, Reply<Vec<TaskId>>),
    /// What the admin knows of each task.
    Status(Vec<TaskId>, Reply<Vec<Lookup>>),
    /// Cancel tasks.
    Cancel(Vec<TaskId>, Reply<Vec<CancelOutcome>>),
    /// Wait until every task is final (or, with `any`, at least one);
    /// answers with the reports of the final ones.
    Await(Vec<TaskId>, bool, Reply<Vec<TaskReport>>),
    /// The admin's list of workers.
    Workers(Reply<Vec<WorkerInfo>>),
    /// The admin's list of peers.
    Peers(Reply<Vec<PeerInfo>>),
    /// Dial an address.
    Dial(Multiaddr, Reply<()>),
    /// Stop: resign, finish running work within the grace period, exit.
    Shutdown(Duration, oneshot::Sender<()>),
    /// What the metrics read when scraped.
    Read(oneshot::Sender<crate::metrics::Reading>),
}

/// A client call waiting for an admin, or for the admin's answer.
pub(crate) enum ClientOp {
    /// A batch, cut into parts that each fit a frame; `upload` names it at
    /// the admin when it was cut into more than one part (sent one after
    /// the other as `SubmitPart`s, the last marked).
    Submit {
        parts: std::collections::VecDeque<Vec<Task>>,
        upload: Option<u64>,
        reply: Reply<Vec<TaskId>>,
        /// True once sent again after the admin was lost.
        resent: bool,
        /// The batch's ids, in order.
        ids: Vec<TaskId>,
    },
    /// Status of `ids`; `got` holds the answers so far (a long answer comes
    /// in pieces).
    Status {
        ids: Vec<TaskId>,
        got: Vec<Lookup>,
        reply: Reply<Vec<Lookup>>,
    },
    Cancel(Vec<TaskId>, Reply<Vec<CancelOutcome>>),
    Await {
        ids: Vec<TaskId>,
        any: bool,
        done: HashMap<TaskId, TaskReport>,
        reply: Reply<Vec<TaskReport>>,
    },
    Workers(Reply<Vec<WorkerInfo>>),
    Peers(Reply<Vec<PeerInfo>>),
}

/// What an outbound request was for, so its answer can be routed.
pub(crate) enum Pending {
    /// A client call (its id in [`EventLoop::ops`]).
    Client(u64),
    Register,
    Bids,
    Assign {
        node: NodeId,
        items: Vec<(TaskId, u32)>,
    },
    /// A batch of results from the outbox.
    Reports(u64),
    /// A renewal, sent then.
    Renew(Instant),
    Abort,
    /// Raft messages (answered at once; lost ones Raft sends again).
    Raft,
    /// A part of a large Raft message, to this peer.
    RaftPart(PeerId),
    /// A request to follow the admin's ledger.
    Join,
}

/// The event loop. See the module documentation.
pub(crate) struct EventLoop {
    swarm: Swarm<Behaviour>,
    me: PeerId,
    me_node: NodeId,
    /// Node ids of peers, and back, worked out once.
    names: Names,
    cfg: NodeConfig,
    commands: mpsc::Receiver<Command>,
    state: watch::Sender<NodeState>,
    started: Instant,
    /// This node's part in the ledger.
    raft: ledger::LedgerPart,
    admin_topic: gossipsub::IdentTopic,
    tasks_topic: gossipsub::IdentTopic,
    /// The admin this node follows, with its term (from the admin's notice,
    /// or this node while it is admin).
    admin: Option<(PeerId, u64)>,
    /// Present while this node is admin.
    sched: Option<admin::AdminState>,
    workers: WorkerRuntime,
    /// Outbound requests awaiting their answers: by request-response, and
    /// over links.
    pending: HashMap<OutboundRequestId, Pending>,
    links: link::Links,
    link_waits: link::Waits<Pending>,
    /// Where client calls go (the pure unit), and each call's payload by id.
    calls: crate::calls::Calls<PeerId>,
    ops: HashMap<u64, ClientOp>,
    next_call: u64,
    /// Results not yet acknowledged by an admin.
    outbox: outbox::Outbox,
    /// When to renew the leases of what this node holds next.
    renew_at: Instant,
    /// When this node last renewed its leases.
    renewed_at: Instant,
    /// Set when the next renewal comes early because a queued award
    /// started.
    renew_for_start: bool,
    /// Names the next batch that has to be submitted in parts.
    next_upload: u64,
    /// When to retry registering with the admin, if a try failed.
    register_retry: Option<Instant>,
    /// Set by a shutdown command: when it began, the grace deadline, and
    /// who to tell when done.
    closing: Option<(Instant, Instant, oneshot::Sender<()>)>,
    /// Concrete addresses we listen on (wildcards expanded), with `/p2p/`.
    listening: Vec<Multiaddr>,
    /// Dials to `NodeConfig::join` addresses still under way, with how
    /// many times each address failed before.
    joining: HashMap<ConnectionId, (Multiaddr, u32)>,
    /// Join addresses to dial again, when, and their failure count.
    rejoin: Vec<(Instant, Multiaddr, u32)>,
    /// Join addresses that failed, and why.
    failed_joins: Vec<(Multiaddr, String)>,
    /// What connected peers told us about themselves (identify).
    peer_meta: HashMap<PeerId, PeerMeta>,
    /// Every mesh peer known, and when to dial lost ones again.
    book: book::AddressBook,
    /// When each connection last answered a ping (or opened): one silent
    /// for longer than [`behaviour::SILENT_CONNECTION`] is closed.
    pongs: HashMap<ConnectionId, Instant>,
    /// Strikes against misbehaving peers, and who is cut off.
    strikes: crate::access::Strikes,
    /// Refused rights already logged, by peer (bounded).
    refusals_logged: std::collections::HashSet<(PeerId, u8)>,
    /// The voters the last followed admin named (for nodes outside the
    /// ledger's configuration).
    vouched: guard::Vouched,
    /// The last refusal of this node's own requests logged.
    told: Option<String>,
    /// When a refused incoming connection was last logged.
    incoming_logged: Option<Instant>,
    /// Connected peers: since when, and when each last asked something.
    presence: HashMap<PeerId, guard::Presence>,
    /// This node's metrics, when it serves them.
    metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
}

/// What a peer told us about itself.
#[derive(Clone, Debug, Default)]
struct PeerMeta {
    addrs: Vec<Multiaddr>,
    agent: String,
}

impl EventLoop {
    /// The loop of `swarm`, whose request-response streams read with
    /// `codec` (its links read with the same limits).
    pub(crate) fn new(
        (swarm, codec): (Swarm<Behaviour>, protocol::Codec),
        cfg: NodeConfig,
        workers: WorkerRuntime,
        commands: mpsc::Receiver<Command>,
        state: watch::Sender<NodeState>,
        joining: HashMap<ConnectionId, Multiaddr>,
        disk: Option<(crate::disk::LedgerDisk, Option<ledger::Reopened>)>,
    ) -> Self {
        let joining = joining.into_iter().map(|(id, addr)| (id, (addr, 0))).collect();
        let me = *swarm.local_peer_id();
        let me_node = node_id(&me);
        let started = Instant::now();
        let admin_topic = behaviour::mesh_topic(&cfg.mesh, "admin");
        let tasks_topic = behaviour::mesh_topic(&cfg.mesh, "tasks");
        let calls = crate::calls::Calls::new(crate::calls::CallsConfig {
            admin_wait: cfg.admin_wait,
            ..crate::calls::CallsConfig::default()
        });
        let links = link::Links::new(swarm.behaviour().stream.new_control(), codec);
        EventLoop {
            swarm,
            me,
            me_node,
            names: Names::default(),
            cfg,
            commands,
            state,
            started,
            raft: ledger::LedgerPart::new(started, disk),
            admin_topic,
            tasks_topic,
            admin: None,
            sched: None,
            workers,
            pending: HashMap::new(),
            links,
            link_waits: link::Waits::default(),
            calls,
            ops: HashMap::new(),
            next_call: 0,
            outbox: outbox::Outbox::default(),
            renew_at: started,
            renewed_at: started,
            renew_for_start: false,
            next_upload: 0,
            register_retry: None,
            closing: None,
            listening: Vec::new(),
            joining,
            rejoin: Vec::new(),
            failed_joins: Vec::new(),
            peer_meta: HashMap::new(),
            book: book::AddressBook::default(),
            pongs: HashMap::new(),
            strikes: Default::default(),
            refusals_logged: Default::default(),
            vouched: Default::default(),
            told: None,
            incoming_logged: None,
            presence: HashMap::new(),
            metrics: None,
        }
    }

    /// Counts into `metrics` as things happen (see [`crate::metrics`]).
    pub(crate) fn with_metrics(mut self, metrics: Option<std::sync::Arc<crate::metrics::Metrics>>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Time since the loop started: the clock of the outbox.
    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Wall-clock time since the Unix epoch: the scheduler's clock, so that
    /// the times in its events mean the same on every machine.
    fn wall_now(&self) -> Duration {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
    }

    /// Runs until shut down or until every handle is dropped.
    pub(crate) async fn run(mut self) {
        if self.cfg.allow.admins.is_none() && !self.cfg.allow.is_open() && !self.cfg.listen.is_empty() {
            warn!(
                "allow-lists without --allow-admins: any peer may become a voter and then admin, \
                 and an admin started without these lists does not apply them"
            );
        }
        if self.cfg.psk.is_none() && self.cfg.allow.is_open() && !self.cfg.listen.is_empty() {
            warn!(
                "open mesh: anyone who can reach this node can join, submit, read results and host workers \
                 (give --psk FILE, made by `taskmesh keygen`, and the --allow-* lists to close it)"
            );
        }
        let gs = &mut self.swarm.behaviour_mut().gossipsub;
        for t in [&self.admin_topic, &self.tasks_topic] {
            if let Err(e) = gs.subscribe(t) {
                warn!(error = %e, "cannot subscribe");
            }
        }
        self.links.listen(self.cfg.limits.max_connections as usize);
        let mut timer = Box::pin(tokio::time::sleep_until(self.started));
        loop {
            // One turn's decisions make one ledger entry, and one write per
            // link.
            self.flush_admin();
            self.links.flush();
            let deadline = self.next_deadline();
            if timer.deadline() != deadline {
                timer.as_mut().reset(deadline);
            }
            if self.closing_done() {
                break;
            }
            tokio::select! {
                biased;
                cmd = self.commands.recv(), if self.closing.is_none() => match cmd {
                    Some(cmd) => self.on_command(cmd),
                    None => break,
                },
                report = self.workers.next_finished() => {
                    let mut reports = vec![report];
                    reports.extend(self.workers.try_finished());
                    self.deliver_reports(reports);
                    // An award that left a queue to run is said soon: a node
                    // lost before its next renewal would otherwise leave
                    // the admin thinking it never started, and the task
                    // would run again without counting the attempt.
                    if self.workers.take_started_from_queue() {
                        self.renew_at = self.renew_at.min(self.renewed_at + RENEW_AFTER_START);
                        self.renew_for_start = true;
                    }
                }
                event = self.swarm.select_next_some() => {
                    self.on_swarm(event);
                    // Take what else has arrived before deciding: its
                    // inputs join this turn's entry.
                    for _ in 0..DRAIN_PER_TURN {
                        match self.swarm.next().now_or_never() {
                            Some(Some(event)) => self.on_swarm(event),
                            _ => break,
                        }
                    }
                }
                event = self.links.next() => {
                    self.on_link(event);
                    for _ in 0..DRAIN_PER_TURN {
                        match self.links.try_next() {
                            Some(event) => self.on_link(event),
                            None => break,
                        }
                    }
                }
                _ = &mut timer => self.on_timer(),
            }
        }
        if let Some((_, _, done)) = self.closing.take() {
            let _ = done.send(());
        }
        info!("node stopped");
    }

    fn next_deadline(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        let mut at = far;
        let mut take = |d: Option<Instant>| {
            if let Some(d) = d {
                at = at.min(d);
            }
        };
        take(self.raft.next_deadline());
        if self.sched.is_some() {
            let wall = self.wall_now();
            take(self.admin_deadline(wall));
            take(Some(self.raft.notice_at));
        }
        take(self.outbox.next_deadline().map(|d| self.started + d));
        take(self.link_waits.next_due());
        take(self.holds_work().then_some(self.renew_at));
        take(self.calls.next_deadline().map(|d| self.started + d));
        take(self.register_retry);
        take(self.rejoin.iter().map(|r| r.0).min());
        take(self.book.next_due().map(Instant::from_std));
        take(
            self.pongs
                .values()
                .min()
                .map(|t| *t + behaviour::SILENT_CONNECTION),
        );
        take(
            self.closing
                .as_ref()
                .map(|c| (c.0 + self.cfg.shutdown_linger).min(c.1)),
        );
        at
    }

    fn on_timer(&mut self) {
        let now = Instant::now();
        self.ledger_timer(now);
        if self.sched.is_some() {
            self.admin_tick();
        }
        for (peer, what) in self.link_waits.expired(now) {
            self.request_failed(peer, what, "no answer in time over the link".into());
        }
        let routes = self.calls.tick(self.now());
        self.carry_calls(routes);
        self.redial_due(now);
        self.close_silent(now);
        self.expire_strikes();
        self.evict_idle();
        self.flush_outbox();
        if self.renew_at <= now {
            self.renew_at = now + self.cfg.renew_interval;
            if std::mem::take(&mut self.renew_for_start) {
                debug!("renewing early: a queued award started");
            }
            self.renew();
        }
        if self.register_retry.is_some_and(|t| t <= now) {
            self.register_retry = None;
            self.register();
        }
    }

    fn on_command(&mut self, cmd: Command) {
        let op = match cmd {
            Command::Submit(tasks, reply) => {
                self.next_upload += 1;
                let ids = tasks.iter().map(|t| t.id).collect();
                let parts = client::split_batch(tasks, self.cfg.max_frame / 2);
                ClientOp::Submit {
                    upload: (parts.len() > 1).then_some(self.next_upload),
                    parts,
                    reply,
                    resent: false,
                    ids,
                }
            }
            Command::Status(ids, reply) => ClientOp::Status {
                ids,
                got: Vec::new(),
                reply,
            },
            Command::Cancel(ids, reply) => ClientOp::Cancel(ids, reply),
            Command::Await(ids, any, reply) => ClientOp::Await {
                ids,
                any,
                done: HashMap::new(),
                reply,
            },
            Command::Workers(reply) => ClientOp::Workers(reply),
            Command::Peers(reply) => ClientOp::Peers(reply),
            Command::Dial(addr, reply) => {
                let r = self
                    .swarm
                    .dial(addr.clone())
                    .map_err(|e| Error::Transport(format!("cannot dial {addr}: {e}")));
                let _ = reply.send(r);
                return;
            }
            Command::Shutdown(grace, done) => {
                self.begin_shutdown(grace, done);
                return;
            }
            Command::Read(reply) => {
                let _ = reply.send(self.reading());
                return;
            }
        };
        self.route(op);
    }

    /// What this node's metrics read now (see [`crate::metrics::Reading`]).
    fn reading(&self) -> crate::metrics::Reading {
        let replica = self.raft.ledger.as_ref().map(|l| l.replica());
        let slots: u64 = self.workers.specs().iter().map(|w| u64::from(w.capacity)).sum();
        crate::metrics::Reading {
            census: self.sched_census(),
            admin: self.admin,
            is_admin: self.sched.is_some(),
            raft_term: replica.map_or(0, |r| r.term()),
            commit_index: replica.map_or(0, |r| r.commit_index()),
            voters: replica.map_or(0, |r| r.voters().len() as u64),
            local_used: self.workers.running() as u64,
            local_slots: slots,
            connected: self.swarm.connected_peers().count() as u64,
        }
    }

    fn begin_shutdown(&mut self, grace: Duration, done: oneshot::Sender<()>) {
        let returned = self.workers.drain();
        info!(
            running = self.workers.running(),
            returned = returned.len(),
            "shutting down (queued awards are returned unstarted)"
        );
        let now = Instant::now();
        self.closing = Some((now, now + grace.max(self.cfg.shutdown_linger), done));
        self.hand_over();
    }

    /// Closing ends at the grace deadline, or once running work is reported
    /// and the last messages had `shutdown_linger` to leave.
    fn closing_done(&self) -> bool {
        let Some((began, deadline, _)) = &self.closing else {
            return false;
        };
        let now = Instant::now();
        // An admin that handed its office over waits for the new admin to
        // take it (until the grace deadline); with no other voter there is
        // no one to wait for.
        let handing = self.sched.is_some()
            && self
                .raft
                .ledger
                .as_ref()
                .is_some_and(|l| l.replica().voters().len() > 1);
        let idle = self.workers.running() == 0 && self.outbox.len() == 0 && !handing;
        now >= *deadline || (idle && now >= *began + self.cfg.shutdown_linger)
    }

    /// The admin this node follows changed (or is lost, with `None`): the
    /// node's workers register with the new one and report what they hold
    /// at once, and calls waiting for an admin go out.
    fn admin_changed(&mut self, admin: Option<PeerId>, term: u64) {
        if self.closing.is_some() && admin.is_none() && self.sched.is_none() {
            // Leaving: keep reporting to the admin we know until we are gone.
            return;
        }
        info!(admin = ?admin.map(|p| p.to_string()), term, "admin changed");
        self.admin = admin.map(|a| (a, term));
        self.raft.leaderless_since = match admin {
            Some(_) => None,
            None => Some(self.raft.leaderless_since.unwrap_or_else(Instant::now)),
        };
        let routes = self.calls.follow(self.admin, self.sched.is_some(), self.now());
        if self.admin.is_some() {
            self.register();
            self.renew_holdings();
            self.outbox.admin_changed();
            self.flush_outbox();
        }
        self.carry_calls(routes);
        self.publish_state();
    }

    /// Publishes gossip; a message nobody hears yet is not an error here:
    /// the auction retries, and heartbeats repeat.
    fn publish(&mut self, admin_topic: bool, msg: &Gossip) {
        let topic = if admin_topic {
            self.admin_topic.clone()
        } else {
            self.tasks_topic.clone()
        };
        let bytes = match protocol::encode(msg) {
            Ok(b) => b,
            Err(e) => return warn!(error = %e, "cannot encode gossip"),
        };
        match self.swarm.behaviour_mut().gossipsub.publish(topic, bytes) {
            Ok(_) | Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {}
            Err(e) => warn!(error = %e, "gossip publish failed"),
        }
    }

    fn listen_addrs(&self) -> Vec<Multiaddr> {
        self.swarm
            .listeners()
            .map(|a| a.clone().with_p2p(self.me).unwrap_or_else(|a| a))
            .collect()
    }

    fn publish_state(&mut self) {
        let state = NodeState {
            admin: self.admin.map(|a| a.0),
            term: self.admin.map_or(0, |a| a.1),
            // Taking office sets up the admin's state before it follows
            // itself; it is the admin once both are done.
            is_admin: self.sched.is_some() && self.admin.is_some_and(|a| a.0 == self.me),
            voters: self.raft.voters(),
            no_quorum: match self.quorum_lost() {
                Some(Error::NoQuorum { reached, voters }) => Some((reached, voters)),
                _ => None,
            },
            listen_addrs: self.listen_addrs(),
            connected: self.swarm.connected_peers().copied().collect(),
            failed_joins: self.failed_joins.clone(),
        };
        self.state.send_replace(state);
    }
}

/// The pure core's name for a peer.
pub(crate) fn node_id(peer: &PeerId) -> NodeId {
    NodeId::new(peer.to_base58())
}

/// Node ids of peers and peers of node ids, each worked out once: base58
/// both ways costs microseconds, and the admin's hot path names a peer on
/// every request and award. At most [`Names::MAX`] of each are kept; past
/// that the cache starts over, so strangers cannot grow it.
#[derive(Default)]
pub(crate) struct Names {
    nodes: RefCell<HashMap<PeerId, NodeId>>,
    peers: RefCell<HashMap<String, Option<PeerId>>>,
}

impl Names {
    /// Entries kept in each direction: 4,096.
    const MAX: usize = 4096;

    /// The node id of `peer` ([`node_id`]).
    pub(crate) fn node(&self, peer: &PeerId) -> NodeId {
        cached(&self.nodes, peer, || node_id(peer))
    }

    /// The peer a node id's text names; `None` when it names no peer (a
    /// test's or a garbled id).
    pub(crate) fn peer(&self, node: &str) -> Option<PeerId> {
        let parsed = || node.parse::<PeerId>().ok();
        cached(&self.peers, node, parsed)
    }
}

/// `map`'s value for `key`, worked out by `make` and kept when missing;
/// the map starts over once it holds [`Names::MAX`] entries.
fn cached<K, Q, V>(map: &RefCell<HashMap<K, V>>, key: &Q, make: impl FnOnce() -> V) -> V
where
    K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
    Q: ToOwned<Owned = K> + std::hash::Hash + Eq + ?Sized,
    V: Clone,
{
    let mut map = map.borrow_mut();
    if let Some(v) = map.get(key) {
        return v.clone();
    }
    if map.len() >= Names::MAX {
        map.clear();
    }
    let v = make();
    map.insert(key.to_owned(), v.clone());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_go_both_ways_and_stay_bounded() {
        let names = Names::default();
        let peer = PeerId::random();
        let node = names.node(&peer);
        assert_eq!(node, node_id(&peer));
        assert_eq!(names.peer(node.as_str()), Some(peer));
        assert_eq!(names.peer("not a peer id"), None);
        for _ in 0..Names::MAX + 10 {
            names.node(&PeerId::random());
            names.peer(&PeerId::random().to_base58());
        }
        assert!(names.nodes.borrow().len() <= Names::MAX && names.peers.borrow().len() <= Names::MAX);
        assert_eq!(names.node(&peer), node, "worked out again after a clear");
    }
}
