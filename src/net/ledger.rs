//! The ledger's side of the loop: carrying Raft messages between replicas,
//! founding a ledger or joining one, learning who the admin is, and
//! turning the replicated scheduler's steps into network calls.
//!
//! - **Founding.** An admin-eligible node with no address to join and no
//!   mDNS founds a ledger at once, as its only voter (a playground, the
//!   first node of a mesh). One that joins waits `found_after` to hear of
//!   an admin before it founds its own.
//! - **Joining.** An eligible node that hears of an admin asks to join its
//!   ledger (again every second, until it sees itself in the
//!   configuration); the admin admits it as a learner and promotes it
//!   while voters are fewer than wanted.
//! - **Two ledgers meet** (two islands that founded before they could
//!   hear of each other, or a node restarted without its data): a ledger
//!   that never accepted a task dissolves into the other; of two empty
//!   ones, the older stays (a ledger's id begins with its founding time). Ledgers that both hold tasks
//!   never merge: the nodes log it, and each keeps its own.
//! - **The admin's notice.** The admin gossips an [`AdminNotice`] every
//!   heartbeat and at once when it takes office or a peer subscribes; every
//!   node follows the notice with the highest term of its ledger.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use libp2p::gossipsub::MessageAcceptance;
use libp2p::{Multiaddr, PeerId};
use protobuf::Message as _;
use raft::eraftpb::Message;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::parts::{Part, PartsIn, PartsOut, MAX_ASSEMBLED, PART_BYTES};
use super::{EventLoop, Pending};
use crate::consensus::{Ledger, LedgerConfig, LedgerStep, OfficeChange, ReplicaConfig};
use crate::disk::LedgerDisk;
use crate::protocol::{AdminNotice, Gossip, Request, Response};
use crate::scheduler::Input;

/// How often a node that is not yet a member asks to join.
const JOIN_EVERY: Duration = Duration::from_secs(1);
/// How often the admin gossips its notice.
const NOTICE_EVERY: Duration = Duration::from_secs(1);
/// How often a voter without quorum says so.
const NO_QUORUM_EVERY: Duration = Duration::from_secs(1);
/// How long a node that yielded to another ledger waits to be admitted
/// before it founds its own again.
const ADMIT_WITHIN: Duration = Duration::from_secs(10);
/// How often a node may yield its ledger to another one.
const YIELD_EVERY: Duration = Duration::from_secs(30);
/// Largest Raft message taken from the network (a snapshot included).
const MAX_RAFT_MESSAGE: usize = 15 << 20;

/// What a replica's membership entry carries: how to reach it.
#[derive(Serialize, Deserialize)]
pub(super) struct MemberAddr {
    pub(super) peer: String,
    addrs: Vec<String>,
    /// Its preference to be admin.
    priority: u8,
}

/// A member's preference to be admin, from its membership entry.
fn priority_of(context: &[u8]) -> u8 {
    decode_member(context).map_or(0, |m| m.priority)
}

/// This node's part in the ledger.
pub(crate) struct LedgerPart {
    /// The replica, for an admin-eligible node.
    pub(crate) ledger: Option<Ledger>,
    /// This incarnation's Raft id: random at every start, so that a node
    /// restarted without its log never votes as the replica it was.
    pub(crate) raft_id: u64,
    /// The ledger this node belongs to or follows, and whether it holds
    /// tasks (from the admin's notice).
    pub(crate) cluster: Option<(u64, bool)>,
    /// Raft ids of replicas and their peers.
    pub(crate) peers: HashMap<u64, PeerId>,
    /// When the next Raft tick is due.
    pub(crate) tick_at: Instant,
    /// When to ask to join next.
    pub(crate) join_at: Option<Instant>,
    /// When to found a ledger if none was heard of.
    pub(crate) found_at: Option<Instant>,
    /// When the admin gossips its notice next.
    pub(crate) notice_at: Instant,
    /// True once `ledger_start` ran.
    pub(crate) started: bool,
    /// The voters' Raft ids last published, sorted.
    pub(crate) voters_seen: Vec<u64>,
    /// When this voter says next that it has no quorum.
    pub(crate) no_quorum_at: Instant,
    /// Since when this node has known no admin (after it knew one).
    pub(crate) leaderless_since: Option<Instant>,
    /// Other ledgers with tasks already warned about (once each, at most
    /// 64 remembered).
    pub(crate) warned: std::collections::HashSet<u64>,
    /// The ledger this node yielded to, until it is admitted, and by when.
    pub(crate) yielded: Option<(u64, Instant)>,
    /// The admin the followed admin said it follows now (see
    /// `admin_points_on`).
    pub(crate) pointed_to: Option<PeerId>,
    /// Ledgers that did not admit this node after it yielded (at most 64).
    pub(crate) shunned: VecDeque<u64>,
    /// No yielding to another ledger before this.
    pub(crate) yield_after: Option<Instant>,
    /// How long yielding pauses after a yield; doubles with each ledger
    /// shunned.
    pub(crate) yield_pause: Duration,
    /// Raft messages too large for a frame, in parts, each way.
    pub(crate) parts_out: PartsOut<PeerId>,
    pub(crate) parts_in: PartsIn<PeerId>,
    /// Where the replica is kept, with a data directory.
    pub(crate) disk: Option<LedgerDisk>,
    /// The replica read back from the data directory, until the loop
    /// starts it.
    pub(crate) reopened: Option<Reopened>,
}

/// A replica read back from a data directory and reopened, with the step
/// that reopening produced.
pub(crate) struct Reopened {
    pub(crate) cluster: u64,
    pub(crate) ledger: Ledger,
    pub(crate) step: LedgerStep,
    /// With [`crate::NodeConfig::recover`]: the log read back, from which
    /// the node founds a new ledger once it knows its addresses.
    pub(crate) recover: Option<crate::consensus::LogStore>,
}

/// Reads back the replica kept in a data directory, for
/// [`crate::Node::start`]: `None` when the directory holds none.
pub(crate) fn reopen(
    cfg: &crate::NodeConfig,
    saved: Option<crate::disk::Saved>,
) -> Result<Option<Reopened>, crate::Error> {
    let Some(saved) = saved else {
        return match cfg.recover {
            true => Err(crate::Error::Config(
                "nothing to recover: the data directory holds no ledger".into(),
            )),
            false => Ok(None),
        };
    };
    let recover = cfg.recover.then(|| saved.store.clone());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let (ledger, step) =
        Ledger::reopen(ledger_config(cfg, saved.raft_id, true), saved.store, now).map_err(|e| {
            crate::Error::Config(format!(
                "the ledger kept in the data directory cannot be read back: {e}"
            ))
        })?;
    Ok(Some(Reopened {
        cluster: saved.cluster,
        ledger,
        step,
        recover,
    }))
}

/// The ledger's settings for replica `raft_id` of this node.
fn ledger_config(cfg: &crate::NodeConfig, raft_id: u64, durable: bool) -> LedgerConfig {
    let a = &cfg.admin;
    LedgerConfig {
        replica: ReplicaConfig {
            id: raft_id,
            voters: Vec::new(),
            election_ticks: a.election_ticks,
            heartbeat_ticks: a.heartbeat_ticks,
            durable,
        },
        scheduler: cfg.scheduler.clone(),
        snapshot_every: 1024,
        voters: a.voters,
        voter_timeout: a.voter_timeout,
        priority_of,
    }
}

impl LedgerPart {
    pub(crate) fn new(now: Instant, disk: Option<(LedgerDisk, Option<Reopened>)>) -> Self {
        let (disk, reopened) = disk.unzip();
        let reopened = reopened.flatten();
        LedgerPart {
            ledger: None,
            raft_id: reopened
                .as_ref()
                .map_or_else(fresh_id, |r| r.ledger.replica().id()),
            cluster: None,
            peers: HashMap::new(),
            tick_at: now,
            join_at: None,
            found_at: None,
            notice_at: now,
            started: false,
            voters_seen: Vec::new(),
            no_quorum_at: now,
            leaderless_since: None,
            warned: std::collections::HashSet::new(),
            yielded: None,
            pointed_to: None,
            shunned: VecDeque::new(),
            yield_after: None,
            yield_pause: YIELD_EVERY,
            parts_out: PartsOut::new(),
            parts_in: PartsIn::new(),
            disk,
            reopened,
        }
    }

    /// True when this node's replica is in the configuration.
    pub(super) fn member(&self) -> bool {
        self.ledger.as_ref().is_some_and(|l| {
            let r = l.replica();
            r.voters().contains(&self.raft_id) || r.learners().contains(&self.raft_id)
        })
    }

    /// Voters of the ledger as this replica knows them.
    pub(crate) fn voters(&self) -> usize {
        self.ledger.as_ref().map_or(0, |l| l.replica().voters().len())
    }

    /// The earliest time the loop must wake for the ledger.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let tick = self.ledger.as_ref().map(|_| self.tick_at);
        [tick, self.join_at, self.found_at].into_iter().flatten().min()
    }
}

/// A membership entry's address, if it is one.
pub(super) fn decode_member(bytes: &[u8]) -> Option<MemberAddr> {
    let cfg = crate::task::bincode_config().with_limit::<4096>();
    bincode::serde::decode_from_slice(bytes, cfg).ok().map(|(m, _)| m)
}

/// A random, non-zero Raft id.
fn fresh_id() -> u64 {
    loop {
        let id = rand::random::<u64>();
        if id != 0 {
            return id;
        }
    }
}

impl EventLoop {
    fn ledger_config(&self) -> LedgerConfig {
        ledger_config(&self.cfg, self.raft.raft_id, self.raft.disk.is_some())
    }

    /// How this node is reached, as its membership entry says.
    fn my_address(&self) -> Vec<u8> {
        let addrs = self.listen_addrs().iter().map(|a| a.to_string()).collect();
        let me = MemberAddr {
            peer: self.me.to_string(),
            addrs,
            priority: self.cfg.admin.priority,
        };
        bincode::serde::encode_to_vec(me, crate::task::bincode_config()).unwrap_or_default()
    }

    /// Once listening (its address goes into the membership): an eligible
    /// node founds a ledger at once, or waits to hear of one.
    pub(super) fn ledger_start(&mut self) {
        if !self.cfg.admin.eligible || std::mem::replace(&mut self.raft.started, true) {
            return;
        }
        if let Some(r) = self.raft.reopened.take() {
            return self.resume(r);
        }
        let joins = !self.cfg.join.is_empty() || self.cfg.mdns;
        if joins {
            match Ledger::new(self.ledger_config()) {
                Ok(l) => self.raft.ledger = Some(l),
                Err(e) => return warn!(error = %e, "cannot start a replica"),
            }
            let wait = self.cfg.admin.found_after / (1 + u32::from(self.cfg.admin.priority));
            self.raft.found_at = Some(Instant::now() + wait);
        } else {
            self.found();
        }
    }

    /// Takes part again as the replica kept in the data directory. One that
    /// was removed from the configuration while away joins again under a
    /// new Raft id.
    fn resume(&mut self, r: Reopened) {
        let Reopened {
            cluster,
            ledger,
            step,
            recover,
        } = r;
        if let Some(store) = recover {
            return self.recover(store, ledger.replica().voters().len(), cluster);
        }
        let id = ledger.replica().id();
        info!(
            cluster,
            raft_id = id,
            unfinished = ledger.scheduler().unfinished(),
            "reopened the ledger kept in the data directory"
        );
        self.raft.raft_id = id;
        self.raft.ledger = Some(ledger);
        let has_tasks = self.has_tasks();
        self.raft.cluster = Some((cluster, has_tasks));
        if !self.raft.member() {
            warn!("this node's replica was removed from the ledger while it was away; it joins again as a new one");
            self.raft.raft_id = fresh_id();
            self.raft.ledger = Ledger::new(self.ledger_config()).ok();
            self.raft.join_at = Some(Instant::now());
            return;
        }
        self.ledger_step(step);
    }

    /// Founds a new ledger, with this node as its only voter, from what its
    /// log had committed: the operator's step after a majority of voters
    /// is lost for good (see [`Ledger::recover`]).
    fn recover(&mut self, store: crate::consensus::LogStore, voters: usize, old: u64) {
        let now = self.wall_now();
        self.raft.raft_id = fresh_id();
        match Ledger::recover(self.ledger_config(), store, self.my_address(), old, now) {
            Ok((ledger, step)) => {
                let cluster = (now.as_millis() as u64) << 16 | (rand::random::<u64>() & 0xffff);
                warn!(
                    cluster,
                    unfinished = ledger.scheduler().unfinished(),
                    old_voters = voters,
                    "recovering: this node's replica is the only voter of a new ledger holding what it had \
                     committed; start the other nodes with empty data directories"
                );
                self.raft.ledger = Some(ledger);
                self.raft.cluster = Some((cluster, true));
                self.ledger_step(step);
            }
            Err(e) => tracing::error!(error = %e, "cannot recover the ledger"),
        }
    }

    /// Writes what the replica's log changed to the data directory, if
    /// there is one; false when it could not, and the replica is dropped
    /// (it cannot keep the promise that what it acknowledged is on disk).
    fn persist(&mut self) -> bool {
        let (Some(disk), Some(ledger), Some((cluster, _))) = (
            self.raft.disk.as_mut(),
            self.raft.ledger.as_mut(),
            self.raft.cluster,
        ) else {
            return true;
        };
        let changes = ledger.take_changes();
        match disk.save(self.raft.raft_id, cluster, &changes) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(
                    error = %e,
                    "cannot write the ledger to the data directory; this node stops keeping a replica"
                );
                if self.sched.is_some() {
                    self.left_office();
                }
                self.raft.ledger = None;
                false
            }
        }
    }

    /// Founds a new ledger with this node as its only voter.
    fn found(&mut self) {
        self.raft.found_at = None;
        let now = self.wall_now();
        match Ledger::found(self.ledger_config(), self.my_address(), now) {
            Ok((ledger, step)) => {
                // Founding time first, so that of two ledgers the older has
                // the lower id; random bits apart two founded at once.
                let cluster = (now.as_millis() as u64) << 16 | (rand::random::<u64>() & 0xffff);
                info!(cluster, "founding a new ledger");
                self.raft.ledger = Some(ledger);
                self.raft.cluster = Some((cluster, false));
                self.ledger_step(step);
            }
            Err(e) => warn!(error = %e, "cannot found a ledger"),
        }
    }

    /// Raft's clock, joins and founding, on the loop's timer.
    pub(super) fn ledger_timer(&mut self, now: Instant) {
        self.admitted_or_back(now);
        if self.raft.found_at.is_some_and(|t| t <= now) && self.raft.cluster.is_none() {
            self.found();
        }
        if self.raft.join_at.is_some_and(|t| t <= now) {
            self.ask_to_join();
        }
        if self.raft.ledger.is_some() && self.raft.tick_at <= now {
            self.raft.tick_at = now + self.cfg.admin.tick;
            let wall = self.wall_now();
            let step = self.raft.ledger.as_mut().map(|l| l.tick(wall));
            if let Some(step) = step {
                self.ledger_step(step);
            }
        }
        if self.sched.is_some() && self.raft.notice_at <= now {
            self.publish_notice();
        }
        if self.raft.no_quorum_at <= now {
            self.raft.no_quorum_at = now + NO_QUORUM_EVERY;
            self.say_if_no_quorum();
        }
    }

    /// The ledger's voters this node reaches (itself included) and their
    /// number, for a node whose replica is a member.
    pub(super) fn voters_reached(&self) -> Option<(usize, usize)> {
        let ledger = self.raft.ledger.as_ref().filter(|_| self.raft.member())?;
        let voters = ledger.replica().voters();
        let me = self.raft.raft_id;
        let reached = voters
            .iter()
            .filter(|&&v| {
                v == me
                    || self
                        .raft
                        .peers
                        .get(&v)
                        .is_some_and(|p| self.swarm.is_connected(p))
            })
            .count();
        Some((reached, voters.len()))
    }

    /// A voter that has known no admin for two election timeouts (so
    /// elections are failing, not under way) and reaches too few voters
    /// tells its side.
    fn say_if_no_quorum(&mut self) {
        let patience = self.cfg.admin.tick * 2 * 2 * self.cfg.admin.election_ticks as u32;
        if self.admin.is_some() || self.raft.leaderless_since.is_none_or(|t| t.elapsed() < patience) {
            return;
        }
        // Learn (and dial) every voter's peer, so that "reached" means
        // connected, not merely never talked to (followers talk only to
        // the leader).
        let voters = self
            .raft
            .ledger
            .as_ref()
            .map(|l| l.replica().voters())
            .unwrap_or_default();
        let me = self.raft.raft_id;
        for v in voters.into_iter().filter(|&v| v != me) {
            self.peer_of(v);
        }
        let (Some((reached, voters)), Some((cluster, _))) = (self.voters_reached(), self.raft.cluster) else {
            return;
        };
        if reached > voters / 2 {
            return;
        }
        if self.quorum_lost().is_none() {
            warn!(
                reached,
                voters, "no admin: this node reaches too few voters of the ledger; new work is refused"
            );
        }
        self.heard_no_quorum(reached, voters);
        self.publish_state();
        let (reached, voters) = (reached as u32, voters as u32);
        self.publish(
            true,
            &Gossip::NoQuorum {
                cluster,
                reached,
                voters,
            },
        );
    }

    /// A voter says its side has no quorum: refuse new work at once.
    pub(super) fn on_no_quorum(&mut self, cluster: u64, reached: u32, voters: u32) {
        let ours = self.raft.cluster.is_none_or(|c| c.0 == cluster);
        if !ours || self.admin.is_some() || voters == 0 || reached > voters {
            return;
        }
        self.heard_no_quorum(reached as usize, voters as usize);
        self.publish_state();
    }

    /// Carries out a step of the replicated scheduler: Raft messages out,
    /// committed outputs to workers and callers, and a change of office.
    pub(super) fn ledger_step(&mut self, step: LedgerStep) {
        if !self.persist() {
            return;
        }
        let mut inbox = VecDeque::new();
        self.send_raft(step.messages);
        for o in step.outputs {
            self.admin_output(o, &mut inbox);
        }
        let took_office = matches!(step.office, Some(OfficeChange::Took { .. }));
        match step.office {
            Some(OfficeChange::Took { term }) => self.took_office(term),
            Some(OfficeChange::Left) => self.left_office(),
            None => {}
        }
        self.resolve_deferred();
        let mut voters = self
            .raft
            .ledger
            .as_ref()
            .map(|l| l.replica().voters())
            .unwrap_or_default();
        voters.sort_unstable();
        if voters != self.raft.voters_seen {
            info!(voters = voters.len(), "the ledger's voters changed");
            self.raft.voters_seen = voters;
            self.publish_state();
            // Nodes outside the configuration trust the voters the admin
            // names: they hear of a change at once, not at the next notice
            // (one taking office just named them). Not twice at once: a
            // second notice that reaches a node after it followed another
            // ledger reads as this admin still holding its own.
            if self.sched.is_some() && !took_office {
                self.publish_notice();
            }
        }
        while let Some(input) = inbox.pop_front() {
            self.admin_input(input);
        }
    }

    fn took_office(&mut self, term: u64) {
        self.become_admin(term);
        self.admin_changed(Some(self.me), term);
        self.publish_notice();
    }

    fn left_office(&mut self) {
        let term = self.raft.ledger.as_ref().map_or(0, |l| l.replica().term());
        self.step_down();
        self.admin_changed(None, term);
    }

    /// Sends Raft messages, batched per replica, to the peers the
    /// membership names (or that sent us messages).
    fn send_raft(&mut self, messages: Vec<Message>) {
        let Some((cluster, _)) = self.raft.cluster else {
            return;
        };
        let mut by_peer: HashMap<PeerId, Vec<ByteBuf>> = HashMap::new();
        for m in messages {
            let Some(peer) = self.peer_of(m.to) else {
                debug!(to = m.to, "no address for a replica; message dropped");
                continue;
            };
            match m.write_to_bytes() {
                Ok(bytes) if peer == self.me => drop(bytes),
                // Too large for a frame: in parts, one after the other.
                Ok(bytes) if bytes.len() > PART_BYTES => {
                    if let Some(part) = self.raft.parts_out.push(peer, bytes) {
                        self.send_part(peer, cluster, part);
                    }
                }
                Ok(bytes) => by_peer.entry(peer).or_default().push(ByteBuf::from(bytes)),
                Err(e) => warn!(error = %e, "cannot encode a Raft message"),
            }
        }
        let budget = self.cfg.max_frame / 2;
        for (peer, messages) in by_peer {
            for messages in crate::protocol::chunk_by_size(messages, budget, |m| m.len() + 8) {
                self.send(peer, Request::Raft { cluster, messages }, Pending::Raft);
            }
        }
    }

    fn send_part(&mut self, peer: PeerId, cluster: u64, part: Part) {
        self.send(peer, Request::RaftPart { cluster, part }, Pending::RaftPart(peer));
    }

    /// A part of a large Raft message was answered (`ok`) or failed: the
    /// next goes.
    pub(super) fn raft_part_answered(&mut self, peer: PeerId, ok: bool) {
        let next = self.raft.parts_out.answered(peer, ok);
        if let (Some(part), Some((cluster, _))) = (next, self.raft.cluster) {
            self.send_part(peer, cluster, part);
        }
    }

    /// A part of a large Raft message from a peer.
    pub(super) fn on_raft_part(&mut self, peer: PeerId, cluster: u64, part: Part) -> Response {
        if self.raft.cluster.map(|c| c.0) != Some(cluster) {
            return Response::Refused("another ledger".into());
        }
        if !self.may_send_raft(peer) {
            return Response::Refused(format!("{peer} is not a replica of this ledger"));
        }
        match self.raft.parts_in.receive(peer, part) {
            Ok(None) => Response::Ok,
            Ok(Some(whole)) => {
                self.take_raft(peer, vec![ByteBuf::from(whole)], MAX_ASSEMBLED as usize);
                Response::Ok
            }
            Err(why) => {
                debug!(%peer, ?why, "part of a Raft message refused");
                Response::Refused(format!("{why:?}"))
            }
        }
    }

    /// The peer of replica `id`: learned from its messages, or from the
    /// membership in the log (then dialled if not connected).
    fn peer_of(&mut self, id: u64) -> Option<PeerId> {
        if let Some(p) = self.raft.peers.get(&id) {
            return Some(*p);
        }
        let addr = decode_member(self.raft.ledger.as_ref()?.members().get(&id)?)?;
        let peer: PeerId = addr.peer.parse().ok()?;
        let addrs: Vec<Multiaddr> = addr.addrs.iter().take(8).filter_map(|a| a.parse().ok()).collect();
        self.book.learn(peer, addrs.clone(), std::time::Instant::now());
        for a in addrs {
            self.swarm.add_peer_address(peer, a);
        }
        if !self.swarm.is_connected(&peer) {
            let _ = self.swarm.dial(peer);
        }
        self.raft.peers.insert(id, peer);
        Some(peer)
    }

    /// Raft messages from a peer, for this node's replica.
    pub(super) fn on_raft(&mut self, peer: PeerId, cluster: u64, messages: Vec<ByteBuf>) {
        if self.raft.cluster.map(|c| c.0) != Some(cluster) {
            return; // another ledger's traffic, or not joined yet
        }
        if self.may_send_raft(peer) {
            self.take_raft(peer, messages, MAX_RAFT_MESSAGE);
        }
    }

    /// True when `peer` may send Raft traffic to this node's replica: a
    /// replica of the ledger, or, before this node is in the
    /// configuration, the admin it follows. Others are dropped unparsed
    /// (a replica removed from the configuration sends such traffic
    /// honestly until it hears so; no strike).
    fn may_send_raft(&self, peer: PeerId) -> bool {
        self.is_member_peer(&peer) || !self.raft.member() && self.admin.is_some_and(|a| a.0 == peer)
    }

    /// Raft messages of at most `limit` bytes each, for this node's replica.
    fn take_raft(&mut self, peer: PeerId, messages: Vec<ByteBuf>, limit: usize) {
        let mut steps = Vec::new();
        let mut forged = false;
        for bytes in messages {
            if bytes.len() > limit {
                continue;
            }
            let Ok(m) = Message::parse_from_bytes(&bytes) else {
                debug!(%peer, "malformed Raft message dropped");
                continue;
            };
            if m.from == 0 || m.to != self.raft.raft_id {
                continue;
            }
            // A message speaks for the replica the configuration names,
            // never for whoever claims its id: only that replica's peer
            // may send it. A node not yet in the configuration hears
            // only from the admin it follows (its first append or
            // snapshot).
            match self.member_peer(m.from) {
                Some(p) if p == peer => {}
                Some(_) => {
                    forged = true;
                    continue;
                }
                // A replica no longer (or not yet) in the configuration:
                // dropped, as Raft would drop it.
                None if self.raft.member() || self.admin.is_none_or(|a| a.0 != peer) => continue,
                None => {}
            }
            self.raft.peers.insert(m.from, peer);
            let wall = self.wall_now();
            if let Some(l) = self.raft.ledger.as_mut() {
                steps.push(l.receive(m, wall));
            }
        }
        if forged {
            debug!(%peer, "Raft message under another replica's id dropped");
            self.strike(
                peer,
                super::guard::strike::FORGED,
                "Raft messages under another replica's id",
            );
        }
        for step in steps {
            self.ledger_step(step);
        }
    }

    /// A node asks its replica to follow this admin's ledger.
    pub(super) fn on_join(
        &mut self,
        peer: PeerId,
        cluster: u64,
        raft_id: u64,
        addrs: Vec<String>,
        priority: u8,
    ) -> Response {
        if self.admin_term().is_none() {
            return self.not_admin();
        }
        if self.raft.cluster.map(|c| c.0) != Some(cluster) {
            return Response::Refused(format!("this admin keeps another ledger than {cluster:x}"));
        }
        let addr = MemberAddr {
            peer: peer.to_string(),
            addrs: addrs
                .into_iter()
                .take(8)
                .map(|a| a.chars().take(256).collect())
                .collect(),
            priority,
        };
        let context = bincode::serde::encode_to_vec(addr, crate::task::bincode_config()).unwrap_or_default();
        let wall = self.wall_now();
        // The same node under another Raft id: it restarted without its
        // log, and its old replica will never answer again.
        let old: Vec<u64> = self
            .raft
            .ledger
            .iter()
            .flat_map(|l| l.members().iter())
            .filter(|(id, c)| **id != raft_id && decode_member(c).is_some_and(|m| m.peer == peer.to_string()))
            .map(|(id, _)| *id)
            .collect();
        let Some(ledger) = self.raft.ledger.as_mut() else {
            return self.not_admin();
        };
        for id in old {
            info!(%peer, old = id, "a member came back without its log; its old replica is replaced");
            ledger.supersede(id);
        }
        let joined = ledger.join(raft_id, context, wall);
        debug!(%peer, raft_id, ok = joined.is_ok(), "join asked");
        match joined {
            Ok(step) => {
                self.raft.peers.insert(raft_id, peer);
                self.ledger_step(step);
                Response::Ok
            }
            Err(e) => Response::Refused(format!("not now: {e}")),
        }
    }

    /// Asks the admin to let this node's replica follow its ledger, until
    /// it is a member.
    fn ask_to_join(&mut self) {
        self.raft.join_at = None;
        if self.raft.member() || self.raft.ledger.is_none() {
            return;
        }
        let (Some((cluster, _)), Some((admin, _))) = (self.raft.cluster, self.admin) else {
            return;
        };
        let addrs = self.listen_addrs().iter().map(|a| a.to_string()).collect();
        let raft_id = self.raft.raft_id;
        debug!(%admin, raft_id, "asking to join the ledger");
        self.send(
            admin,
            Request::Join {
                cluster,
                raft_id,
                addrs,
                priority: self.cfg.admin.priority,
            },
            Pending::Join,
        );
        self.raft.join_at = Some(Instant::now() + JOIN_EVERY);
    }

    /// Gossips this admin's notice.
    pub(super) fn publish_notice(&mut self) {
        self.raft.notice_at = Instant::now() + NOTICE_EVERY;
        let (Some((cluster, _)), Some(term)) = (self.raft.cluster, self.admin_term()) else {
            return;
        };
        let has_tasks = self.has_tasks();
        let addrs = self
            .listen_addrs()
            .iter()
            .take(8)
            .map(|a| a.to_string())
            .collect();
        let supersedes = self
            .raft
            .ledger
            .as_ref()
            .map(|l| l.superseded().to_vec())
            .unwrap_or_default();
        let voters = self.voter_peers().iter().map(|p| p.to_base58()).collect();
        let notice = AdminNotice {
            cluster,
            term,
            has_tasks,
            addrs,
            supersedes,
            voters,
        };
        self.publish(true, &Gossip::Admin(notice));
    }

    /// The term this node is admin for.
    fn admin_term(&self) -> Option<u64> {
        self.raft.ledger.as_ref()?.admin()
    }

    /// True once this node's ledger accepted a task.
    fn has_tasks(&self) -> bool {
        self.raft
            .ledger
            .as_ref()
            .is_some_and(|l| !l.scheduler().recent(1).is_empty())
    }

    /// An admin's notice: follow it if it is this node's ledger (at a term
    /// at least the known one), or a ledger this one yields to.
    pub(super) fn on_notice(&mut self, source: PeerId, n: AdminNotice) -> MessageAcceptance {
        debug!(%source, cluster = n.cluster, term = n.term, "admin notice");
        // A node that knows nothing yet takes its first admin on trust.
        let mut fresh = self.raft.cluster.is_none() && self.vouched.voters.is_none();
        match self.raft.cluster {
            Some((mine, _)) if mine == n.cluster => {}
            // An operator recovered the mesh from another replica of this
            // ledger: that one is the ledger now.
            Some((mine, _))
                if n.supersedes.iter().take(64).any(|&s| s == mine)
                    && (self.is_member_peer(&source) || self.speaks_as_voter(source, mine)) =>
            {
                warn!(
                    mine,
                    by = n.cluster,
                    "this node's ledger was superseded by one an operator recovered; following it"
                );
                self.dissolve();
            }
            // The notice of a ledger this one superseded: its replicas
            // follow this one when they hear our notice.
            Some(_)
                if self
                    .raft
                    .ledger
                    .as_ref()
                    .is_some_and(|l| l.superseded().contains(&n.cluster)) =>
            {
                return MessageAcceptance::Ignore;
            }
            // A voter named before this node followed another ledger's
            // admin takes it back (the other was a claim nobody backed).
            Some((mine, _))
                if !self.raft.member() && self.vouched.fallback().is_some_and(|f| f.contains(&source)) =>
            {
                warn!(
                    left = mine,
                    back_to = n.cluster,
                    "the admin this node followed before is back; leaving the ledger it had followed since"
                );
                self.shun(mine);
                self.vouched.fallback = None;
                self.vouched.voters = None;
                fresh = true; // as trusted as the voters that named it
                self.dissolve();
            }
            Some((mine, mine_has)) => {
                if !self.yields_to(source, mine, mine_has, &n) {
                    return MessageAcceptance::Ignore;
                }
                info!(from = mine, to = n.cluster, "following another ledger");
                self.dissolve();
                if self.raft.ledger.is_some() {
                    // Until its replica is admitted, this node has only the
                    // notice's word that the other ledger exists.
                    self.raft.yielded = Some((n.cluster, Instant::now() + ADMIT_WITHIN));
                }
            }
            None => {}
        }
        for a in n.addrs.iter().take(8).filter_map(|a| a.parse::<Multiaddr>().ok()) {
            self.swarm.add_peer_address(source, a.clone());
            self.book.learn(source, [a], std::time::Instant::now());
        }
        self.raft.cluster = Some((n.cluster, n.has_tasks));
        self.raft.found_at = None;
        // Following an admin nobody named (another ledger's, or one taken
        // on patience): the voters named before may take it back for a
        // while.
        // The voters it names are trusted to name the next admin only when
        // this one was named by trusted voters itself (or taken on a first
        // contact).
        let outside = !self.raft.member();
        let was_trusted = self.vouched.trusted;
        let named = self.vouched.voters.take().map(|(_, v)| v);
        self.vouched.trusted = fresh || was_trusted && named.as_ref().is_some_and(|v| v.contains(&source));
        if let Some(named) = named.filter(|v| was_trusted && !v.contains(&source)) {
            if outside && !named.is_empty() && self.vouched.fallback().is_none() {
                let until = std::time::Instant::now() + crate::access::CLAIM_PATIENCE;
                self.vouched.fallback = Some((named, until));
            }
        }
        let voters = n.voters.iter().take(64).filter_map(|v| v.parse().ok()).collect();
        self.vouched.voters = Some((n.cluster, voters));
        // The claim was judged (`vouch`). An admin hears of a newer one
        // before its own replica steps down: it follows once its replica
        // says so.
        if self.admin != Some((source, n.term)) && self.sched.is_none() {
            self.admin_changed(Some(source), n.term);
        }
        if !self.swarm.is_connected(&source) {
            let _ = self.swarm.dial(source);
        }
        if self.raft.ledger.is_some() && !self.raft.member() && self.raft.join_at.is_none() {
            self.raft.join_at = Some(Instant::now());
        }
        MessageAcceptance::Accept
    }

    /// `peer` answered `resp` to this node. When it is the admin this node
    /// follows, outside its configuration, and it says that it follows
    /// another now (it yielded to another ledger after this node followed
    /// it, as two nodes that found ledgers at once do), that other's notice
    /// is followed at once if its ledger would win anyway (see `yields_to`):
    /// not after this node's pause between yields, nor refused as a ledger
    /// this node left.
    pub(super) fn admin_points_on(&mut self, peer: PeerId, resp: &Response) {
        let Response::NotAdmin {
            admin: Some(next), ..
        } = resp
        else {
            return;
        };
        if self.raft.member() || self.sched.is_some() || self.admin.map(|a| a.0) != Some(peer) {
            return;
        }
        let Ok(next) = next.parse::<PeerId>() else {
            return;
        };
        if next != peer && next != self.me && self.raft.pointed_to != Some(next) {
            debug!(%peer, %next, "the followed admin says it follows another now");
            self.raft.pointed_to = Some(next);
        }
    }

    /// Should this node leave its ledger `mine` for the one `n` speaks for?
    /// Two ledgers that founded apart meet: one that never took a task
    /// yields to one that has, or to an older one. A notice is only a
    /// claim, so a node yields at most once per [`YIELD_EVERY`], never to
    /// a ledger that did not admit it before, and founds its own again if
    /// it is not admitted within [`ADMIT_WITHIN`] (see `ledger_timer`). A
    /// node outside the configuration follows a voter its admin named to
    /// another ledger at once, and, with its admin gone, anyone else's
    /// only after [`crate::access::CLAIM_PATIENCE`].
    fn yields_to(&mut self, source: PeerId, mine: u64, mine_has: bool, n: &AdminNotice) -> bool {
        // A voter the followed admin named (the admin itself, restarted
        // without its log, say) is followed to its new ledger at once.
        let named = !self.raft.member()
            && self.vouched.trusted
            && self
                .vouched
                .voters
                .as_ref()
                .is_some_and(|(c, v)| *c == mine && v.contains(&source));
        if named {
            return true;
        }
        let mine_has = mine_has || self.has_tasks();
        // The admin this node followed follows `source` now, and its ledger
        // wins by the rule below: no pause. (Each such step leaves a ledger
        // without tasks for an older one or one with tasks, so it cannot
        // flap.)
        if self.raft.pointed_to == Some(source) && !mine_has && (n.has_tasks || n.cluster < mine) {
            self.raft.pointed_to = None;
            return true;
        }
        let now = Instant::now();
        if self.raft.shunned.contains(&n.cluster) || self.raft.yield_after.is_some_and(|t| now < t) {
            return false;
        }
        let lost_for = self
            .raft
            .leaderless_since
            .map(|t| t.elapsed())
            .filter(|_| self.admin.is_none() && !self.raft.member());
        let lost = lost_for.is_some_and(|t| t >= crate::access::CLAIM_PATIENCE);
        let yields = lost || !mine_has && (n.has_tasks || n.cluster < mine);
        if !yields && n.has_tasks && mine_has && !self.raft.warned.contains(&n.cluster) {
            if self.raft.warned.len() >= 64 {
                self.raft.warned.clear();
            }
            self.raft.warned.insert(n.cluster);
            warn!(
                mine,
                theirs = n.cluster,
                "two ledgers with tasks met; each keeps its own"
            );
        }
        if yields {
            self.raft.yield_after = Some(now + self.raft.yield_pause.max(YIELD_EVERY));
        }
        yields
    }

    /// Never yields to `cluster` again (the last 64 remembered), and yields
    /// to no other ledger for twice as long as last time (from
    /// [`YIELD_EVERY`], at most an hour).
    fn shun(&mut self, cluster: u64) {
        if self.raft.shunned.len() >= 64 {
            self.raft.shunned.pop_front();
        }
        self.raft.shunned.push_back(cluster);
        self.raft.yield_pause = (self.raft.yield_pause * 2).clamp(YIELD_EVERY, Duration::from_secs(3600));
        self.raft.yield_after = Some(Instant::now() + self.raft.yield_pause);
    }

    /// A node that yielded to another ledger and was not admitted within
    /// [`ADMIT_WITHIN`] stops following it and founds its own again.
    fn admitted_or_back(&mut self, now: Instant) {
        let Some((cluster, by)) = self.raft.yielded else {
            return;
        };
        if self.raft.member() || self.raft.cluster.is_some_and(|c| c.0 != cluster) {
            self.raft.yielded = None;
            return;
        }
        if now < by {
            return;
        }
        warn!(
            cluster,
            "the ledger this node yielded to did not admit it within {ADMIT_WITHIN:?}; founding its own again"
        );
        self.raft.yielded = None;
        self.shun(cluster);
        self.dissolve();
        self.raft.found_at = Some(now);
        self.publish_state();
    }

    /// Leaves a ledger that held no task, to join another: a fresh replica
    /// under a fresh Raft id.
    fn dissolve(&mut self) {
        if self.sched.is_some() {
            self.left_office();
        }
        self.raft.raft_id = fresh_id();
        self.raft.peers.clear();
        self.raft.cluster = None;
        if self.raft.ledger.is_some() {
            self.raft.ledger = Ledger::new(self.ledger_config()).ok();
        }
        self.admin = None;
    }

    /// Hands leadership to another voter that holds the whole log, before a
    /// graceful stop; true when a handover started.
    pub(super) fn hand_over(&mut self) -> bool {
        let wall = self.wall_now();
        let Some(ledger) = self.raft.ledger.as_mut().filter(|l| l.admin().is_some()) else {
            return false;
        };
        let Some(step) = ledger.hand_over(wall) else {
            return false;
        };
        info!("handing the admin's office to another voter");
        self.ledger_step(step);
        true
    }

    /// A peer disconnected: its node left (the admin's view of workers).
    pub(super) fn ledger_peer_left(&mut self, peer: PeerId) {
        self.raft.parts_in.forget(&peer);
        if self.sched.is_some() {
            self.admin_input(Input::NodeLeft(super::node_id(&peer)));
        }
        if self.admin.is_some_and(|a| a.0 == peer) && self.sched.is_none() {
            // The admin is gone: calls wait for the next notice.
            let term = self.admin.map_or(0, |a| a.1);
            self.admin_changed(None, term);
        }
    }
}
