//! Admin election: which node is the mesh's admin, as a pure state machine.
//!
//! Nothing here does I/O or reads a clock. The driver feeds [`ElectionInput`]s
//! with the current time (`now`, a [`Duration`] since any fixed origin),
//! gossips every [`ElectionOutput::Publish`] on the admin topic, and calls
//! [`ElectionInput::Tick`] once [`Election::next_deadline`] has passed.
//!
//! # Algorithm
//!
//! Each node is a *follower*, a *candidate* or the *admin*.
//!
//! - **Ranking.** Every claim and heartbeat carries a rank: the sender's
//!   `(term, ledger_pos, priority)`, higher is better, then the *lowest* node
//!   id. Ranks are totally ordered, so every tie has one deterministic winner.
//! - **Follower.** Follows the best-ranked sender it has heard for the
//!   highest term seen: a heartbeat or claim of at least its term that
//!   outranks the node it follows replaces it; repeats from the node it
//!   follows restart its timer; anything older or worse is ignored. When the
//!   timer runs out (`election_timeout` plus this node's fixed share of
//!   `jitter`, or `first_timeout` the very first time) the admin is lost.
//! - **Candidate.** An eligible follower whose timer ran out takes the next
//!   term (highest seen + 1), publishes a claim and waits `claim_window`. A
//!   better-ranked claim or heartbeat in that window makes it yield and follow
//!   the sender; otherwise it takes office.
//! - **Admin.** Publishes a heartbeat at once and then every
//!   `heartbeat_interval`. It steps down to any sender that outranks it, and
//!   answers a worse claim or heartbeat with an immediate heartbeat, so a
//!   stale rival yields within one message delay instead of a full interval.
//! - **Failover.** A follower whose admin resigns or disconnects forgets it
//!   at once (ignoring its messages still in flight) and claims after a
//!   quarter of its jitter share, well before the full timeout. A silent
//!   crash is noticed by the timeout alone.
//! - **Reporting.** [`Election::admin`] and [`ElectionOutput::AdminChanged`]
//!   name only a *confirmed* admin: this node once it takes office, or the
//!   node it follows once that node's heartbeat for its term arrives. A
//!   follower of a mere claimer (which may still lose) names no admin, so a
//!   driver never routes calls to a node that is not in office yet. An input
//!   yields at most one `AdminChanged`, after its `Publish` outputs.
//!
//! This is not a consensus protocol: during a partition each side elects its
//! own admin, and lost messages can briefly leave two admins of one term.
//! Both resolve as soon as heartbeats cross, by the same ranking, and a
//! higher term always wins. The ledger (a later layer) reconciles their work.
//!
//! The jitter share is a hash of the node id and `jitter_seed`, so a run is
//! reproducible from its inputs alone.

use std::cmp::Ordering;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::task::{mix64, NodeId};

/// How one node takes part in elections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElectionConfig {
    /// May this node become admin at all? Ineligible nodes only follow.
    pub eligible: bool,
    /// Preference among claims of equal term and ledger position; higher
    /// wins. A node with priority `p` also waits only `1/(1+p)` of its jitter
    /// share before claiming, so preferred nodes usually claim first. The
    /// playground node uses 255 so that it wins; default 0.
    pub priority: u8,
    /// How often the admin publishes a heartbeat (default 300 ms).
    pub heartbeat_interval: Duration,
    /// How long a follower waits without a heartbeat before it claims
    /// (default 1500 ms). Must be several heartbeat intervals.
    pub election_timeout: Duration,
    /// Upper bound of the extra, per-node timeout that spreads claims apart
    /// (default 750 ms). Each node's share lies in `[0, jitter)`.
    pub jitter: Duration,
    /// Mixed with the node id to derive the jitter share (default 0).
    pub jitter_seed: u64,
    /// How long a candidate waits for better claims before it takes office
    /// (default 250 ms). Must exceed the gossip delay.
    pub claim_window: Duration,
    /// If set, the very first claim happens this long after start instead of
    /// after the full timeout (the playground uses `Some(Duration::ZERO)`).
    pub first_timeout: Option<Duration>,
}

impl Default for ElectionConfig {
    fn default() -> Self {
        ElectionConfig {
            eligible: true,
            priority: 0,
            heartbeat_interval: Duration::from_millis(300),
            election_timeout: Duration::from_millis(1500),
            jitter: Duration::from_millis(750),
            jitter_seed: 0,
            claim_window: Duration::from_millis(250),
            first_timeout: None,
        }
    }
}

/// A message gossiped on the admin topic. The sender is the (signed) gossip
/// source, so it is not repeated inside the message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElectionMsg {
    /// "I am admin of `term`", sent every heartbeat interval.
    Heartbeat {
        /// The admin's term.
        term: u64,
        /// The admin's priority.
        priority: u8,
        /// The admin's ledger position.
        ledger_pos: u64,
    },
    /// "I want to be admin of `term`", sent once by a new candidate.
    Claim {
        /// The term the candidate claims.
        term: u64,
        /// The candidate's priority.
        priority: u8,
        /// The candidate's ledger position.
        ledger_pos: u64,
    },
    /// "I, admin of `term`, am leaving": followers claim at once.
    Resign {
        /// The term the admin held.
        term: u64,
    },
}

/// Something that happened to this node, fed to [`Election::handle`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ElectionInput {
    /// Time passed: the driver sends this at or after
    /// [`Election::next_deadline`]. Early ticks do nothing.
    Tick,
    /// A gossip message from another node.
    Message {
        /// The gossip source.
        from: NodeId,
        /// What it said.
        msg: ElectionMsg,
    },
    /// The connection to this node closed. If it was the admin, a claim
    /// follows after a short jitter instead of the full timeout.
    PeerLeft(NodeId),
    /// A node started listening to election traffic: an admin heartbeats at
    /// once, so the newcomer learns who leads without waiting an interval.
    PeerJoined(NodeId),
    /// This node is leaving: an admin publishes [`ElectionMsg::Resign`].
    /// Every later input is ignored.
    Shutdown,
}

/// What the driver must do, produced by [`Election::handle`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ElectionOutput {
    /// Gossip this on the admin topic.
    Publish(ElectionMsg),
    /// The confirmed admin ([`Election::admin`]) changed: this node, which
    /// just took office; another node, whose heartbeat for its term just
    /// arrived; or `None` while there is none (the admin was lost, or this
    /// node follows a claimer that has not sent a heartbeat yet). Also
    /// emitted when the same admin is confirmed at a new term. Comes after
    /// any `Publish` of the same input.
    AdminChanged {
        /// The new admin, if any.
        admin: Option<NodeId>,
        /// Its term (this node's current term, [`Election::term`], when
        /// `admin` is `None`).
        term: u64,
    },
}

/// A sender's standing in an election; greater is better.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rank {
    term: u64,
    ledger_pos: u64,
    priority: u8,
    id: NodeId,
}

impl Ord for Rank {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.term, self.ledger_pos, self.priority)
            .cmp(&(other.term, other.ledger_pos, other.priority))
            // The lowest id wins, so it must compare as the greatest.
            .then_with(|| other.id.cmp(&self.id))
    }
}

impl PartialOrd for Rank {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Follower,
    Candidate,
    Admin,
    Stopped,
}

/// One node's view of the admin election. See the module docs.
#[derive(Clone, Debug)]
pub struct Election {
    me: NodeId,
    cfg: ElectionConfig,
    role: Role,
    /// Highest term seen or held.
    term: u64,
    ledger_pos: u64,
    /// The node a follower follows, with its last known rank: a claimer, or
    /// the admin once `confirmed`. `None` for a candidate, an admin, or a
    /// follower that lost its admin.
    leader: Option<Rank>,
    /// The last admin that resigned or disconnected, and its term: its
    /// messages still in flight must not revive it.
    departed: Option<(NodeId, u64)>,
    /// When the next `Tick` has work: the follower timeout, the end of the
    /// claim window, or the next heartbeat.
    deadline: Option<Duration>,
    /// This node's fixed share of `cfg.jitter`.
    jitter: Duration,
    /// True once the followed node has sent a heartbeat for its term: only
    /// then is it the admin (a claimer may still lose).
    confirmed: bool,
    /// The admin and term last reported to the driver.
    announced: Option<(NodeId, u64)>,
}

impl Election {
    /// A follower that knows no admin yet; its first claim is due after
    /// `first_timeout`, or after the full timeout if that is `None`.
    pub fn new(me: NodeId, cfg: ElectionConfig, now: Duration) -> Self {
        let jitter = jitter_share(&me, cfg.jitter_seed, cfg.jitter) / (1 + u32::from(cfg.priority));
        let mut e = Election {
            me,
            cfg,
            role: Role::Follower,
            term: 0,
            ledger_pos: 0,
            leader: None,
            departed: None,
            deadline: None,
            jitter,
            confirmed: false,
            announced: None,
        };
        e.deadline = match e.cfg.first_timeout {
            Some(first) if e.cfg.eligible => Some(now.saturating_add(first)),
            _ => e.follower_deadline(now),
        };
        e
    }

    /// Applies one input; what the driver must do is appended to `out`, any
    /// [`ElectionOutput::AdminChanged`] last.
    pub fn handle(&mut self, input: ElectionInput, now: Duration, out: &mut Vec<ElectionOutput>) {
        if self.role == Role::Stopped {
            return;
        }
        match input {
            ElectionInput::Tick => self.on_tick(now, out),
            ElectionInput::Message { from, .. } if from == self.me => {}
            ElectionInput::Message { from, msg } => self.on_message(from, msg, now, out),
            ElectionInput::PeerLeft(peer) => {
                if self.leader.as_ref().is_some_and(|l| l.id == peer) {
                    self.lose_leader_quickly(now);
                }
            }
            ElectionInput::PeerJoined(peer) => {
                // A departed admin that joins again is a new incarnation (a
                // restart): its heartbeats are no longer stale ones in flight.
                if self.departed.as_ref().is_some_and(|(id, _)| *id == peer) {
                    self.departed = None;
                }
                if self.role == Role::Admin {
                    self.heartbeat(now, out);
                }
            }
            ElectionInput::Shutdown => self.on_shutdown(out),
        }
        self.report_admin(out);
    }

    /// Tells the driver when the confirmed admin (or its term) changed.
    fn report_admin(&mut self, out: &mut Vec<ElectionOutput>) {
        let current = match self.role {
            Role::Admin => Some((self.me.clone(), self.term)),
            _ if self.confirmed => self.leader.as_ref().map(|l| (l.id.clone(), l.term)),
            _ => None,
        };
        if current != self.announced {
            let term = current.as_ref().map_or(self.term, |c| c.1);
            out.push(ElectionOutput::AdminChanged {
                admin: current.as_ref().map(|c| c.0.clone()),
                term,
            });
            self.announced = current;
        }
    }

    /// When the driver must send the next [`ElectionInput::Tick`]; `None`
    /// while there is nothing to wait for (stopped, or an ineligible node
    /// without an admin).
    pub fn next_deadline(&self) -> Option<Duration> {
        self.deadline
    }

    /// The confirmed admin: this node while it holds office, or the node it
    /// follows once that node has sent a heartbeat for its term. `None` while
    /// the admin is lost or the followed node has only claimed (a claimer
    /// may still lose). Always the admin named by the last
    /// [`ElectionOutput::AdminChanged`].
    pub fn admin(&self) -> Option<&NodeId> {
        match self.role {
            Role::Admin => Some(&self.me),
            _ if self.confirmed => self.leader.as_ref().map(|l| &l.id),
            _ => None,
        }
    }

    /// Whether this node is the admin now.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// The highest term seen or held.
    pub fn term(&self) -> u64 {
        self.term
    }

    /// Sets how much of the admin ledger this node holds. It goes into this
    /// node's claims and heartbeats, and ranks above priority, so that the
    /// node with the freshest replica wins a failover.
    pub fn set_ledger_pos(&mut self, pos: u64) {
        self.ledger_pos = pos;
    }

    fn my_rank(&self) -> Rank {
        Rank {
            term: self.term,
            ledger_pos: self.ledger_pos,
            priority: self.cfg.priority,
            id: self.me.clone(),
        }
    }

    fn on_tick(&mut self, now: Duration, out: &mut Vec<ElectionOutput>) {
        if self.deadline.is_none_or(|d| now < d) {
            return;
        }
        match self.role {
            Role::Follower => {
                self.leader = None;
                self.confirmed = false;
                if self.cfg.eligible {
                    self.claim(now, out);
                } else {
                    self.deadline = None;
                }
            }
            Role::Candidate => {
                self.role = Role::Admin;
                self.heartbeat(now, out);
            }
            Role::Admin => self.heartbeat(now, out),
            Role::Stopped => {}
        }
    }

    fn on_message(&mut self, from: NodeId, msg: ElectionMsg, now: Duration, out: &mut Vec<ElectionOutput>) {
        let heartbeat = matches!(msg, ElectionMsg::Heartbeat { .. });
        let (term, priority, ledger_pos) = match msg {
            ElectionMsg::Heartbeat {
                term,
                priority,
                ledger_pos,
            }
            | ElectionMsg::Claim {
                term,
                priority,
                ledger_pos,
            } => (term, priority, ledger_pos),
            ElectionMsg::Resign { term } => {
                let resigns = |l: &Rank| l.id == from && term >= l.term;
                if self.leader.as_ref().is_some_and(resigns) {
                    self.lose_leader_quickly(now);
                }
                return;
            }
        };
        let rank = Rank {
            term,
            ledger_pos,
            priority,
            id: from,
        };
        self.on_rank(rank, heartbeat, now, out);
    }

    /// A claim or heartbeat: both mean "rank me as a possible admin".
    fn on_rank(&mut self, rank: Rank, heartbeat: bool, now: Duration, out: &mut Vec<ElectionOutput>) {
        let gone = |(id, term): &(NodeId, u64)| *id == rank.id && rank.term <= *term;
        if self.departed.as_ref().is_some_and(gone) {
            return;
        }
        if rank.term < self.term {
            // A stale sender: an admin reminds it who leads now.
            if self.role == Role::Admin {
                self.heartbeat(now, out);
            }
            return;
        }
        let from_leader = self.leader.as_ref().is_some_and(|l| l.id == rank.id);
        let best = match self.role {
            Role::Follower => self.leader.clone(),
            _ => Some(self.my_rank()),
        };
        if from_leader || best.is_none_or(|b| rank > b) {
            self.follow(rank, heartbeat, now);
        } else if self.role == Role::Admin {
            self.heartbeat(now, out);
        }
    }

    /// Follows `rank.id` (yielding or stepping down if need be) and restarts
    /// the follower timer. The followed node counts as admin once it has
    /// sent a heartbeat for its term.
    fn follow(&mut self, rank: Rank, heartbeat: bool, now: Duration) {
        let same = self.role == Role::Follower
            && self
                .leader
                .as_ref()
                .is_some_and(|l| l.id == rank.id && l.term == rank.term);
        self.confirmed = heartbeat || (same && self.confirmed);
        self.term = self.term.max(rank.term);
        self.role = Role::Follower;
        self.leader = Some(rank);
        self.deadline = self.follower_deadline(now);
    }

    /// The admin resigned or disconnected: forget it and claim soon.
    fn lose_leader_quickly(&mut self, now: Duration) {
        self.departed = self.leader.take().map(|l| (l.id, l.term));
        self.confirmed = false;
        self.deadline = self.cfg.eligible.then(|| now.saturating_add(self.jitter / 4));
    }

    fn on_shutdown(&mut self, out: &mut Vec<ElectionOutput>) {
        if self.role == Role::Admin {
            let resign = ElectionMsg::Resign { term: self.term };
            out.push(ElectionOutput::Publish(resign));
        }
        self.role = Role::Stopped;
        self.leader = None;
        self.deadline = None;
    }

    fn claim(&mut self, now: Duration, out: &mut Vec<ElectionOutput>) {
        self.term = self.term.saturating_add(1);
        self.role = Role::Candidate;
        self.deadline = Some(now.saturating_add(self.cfg.claim_window));
        out.push(ElectionOutput::Publish(ElectionMsg::Claim {
            term: self.term,
            priority: self.cfg.priority,
            ledger_pos: self.ledger_pos,
        }));
    }

    /// Publishes a heartbeat now and schedules the next one.
    fn heartbeat(&mut self, now: Duration, out: &mut Vec<ElectionOutput>) {
        // At least 1 ms apart, so a zero interval cannot spin the driver.
        let every = self.cfg.heartbeat_interval.max(Duration::from_millis(1));
        self.deadline = Some(now.saturating_add(every));
        out.push(ElectionOutput::Publish(ElectionMsg::Heartbeat {
            term: self.term,
            priority: self.cfg.priority,
            ledger_pos: self.ledger_pos,
        }));
    }

    fn follower_deadline(&self, now: Duration) -> Option<Duration> {
        let timeout = self.cfg.election_timeout.saturating_add(self.jitter);
        Some(now.saturating_add(timeout))
    }
}

/// This node's share of `jitter`, in `[0, jitter)`: a hash of the node id and
/// the seed (FNV-1a, then a splitmix64 finaliser) scaled to the bound.
fn jitter_share(me: &NodeId, seed: u64, jitter: Duration) -> Duration {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in me.as_str().bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    // A fraction in [0, 2^32); at most 2^64 s in nanoseconds (< 2^94) times
    // 2^32 still fits in u128.
    let fraction = u128::from(mix64(h ^ mix64(seed)) >> 32);
    let nanos = (jitter.as_nanos() * fraction) >> 32;
    let secs = u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX);
    Duration::new(secs, (nanos % 1_000_000_000) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn id(s: &str) -> NodeId {
        NodeId::new(s)
    }

    fn hb(term: u64, priority: u8, ledger_pos: u64) -> ElectionMsg {
        ElectionMsg::Heartbeat {
            term,
            priority,
            ledger_pos,
        }
    }

    fn claim(term: u64, priority: u8, ledger_pos: u64) -> ElectionMsg {
        ElectionMsg::Claim {
            term,
            priority,
            ledger_pos,
        }
    }

    /// The heartbeat a claimer sends once it takes office; `None` if `m`
    /// is no claim.
    fn took_office(m: &ElectionMsg) -> Option<ElectionMsg> {
        match *m {
            ElectionMsg::Claim {
                term,
                priority,
                ledger_pos,
            } => Some(hb(term, priority, ledger_pos)),
            _ => None,
        }
    }

    fn msg(from: &str, msg: ElectionMsg) -> ElectionInput {
        ElectionInput::Message { from: id(from), msg }
    }

    fn changed(admin: Option<&str>, term: u64) -> ElectionOutput {
        ElectionOutput::AdminChanged {
            admin: admin.map(id),
            term,
        }
    }

    fn step(e: &mut Election, input: ElectionInput, now: Duration) -> Vec<ElectionOutput> {
        let mut out = Vec::new();
        e.handle(input, now, &mut out);
        out
    }

    /// Ticks at every deadline up to `until`, collecting the outputs.
    fn run(e: &mut Election, until: Duration) -> Vec<ElectionOutput> {
        let mut out = Vec::new();
        while let Some(at) = e.next_deadline().filter(|d| *d <= until) {
            e.handle(ElectionInput::Tick, at, &mut out);
        }
        out
    }

    fn quick(first: u64) -> ElectionConfig {
        ElectionConfig {
            first_timeout: Some(ms(first)),
            ..ElectionConfig::default()
        }
    }

    /// Node "m" (priority 0, ledger 0) as a candidate for term 1 at 0 ms.
    fn candidate() -> Election {
        let mut e = Election::new(id("m"), quick(0), ms(0));
        assert_eq!(
            step(&mut e, ElectionInput::Tick, ms(0)),
            [ElectionOutput::Publish(claim(1, 0, 0))]
        );
        e
    }

    /// Node "m" as admin of term 1 at 250 ms.
    fn admin() -> Election {
        let mut e = candidate();
        run(&mut e, ms(250));
        assert!(e.is_admin());
        e
    }

    #[test]
    fn single_node_takes_office_after_first_timeout_and_claim_window() {
        let mut e = Election::new(id("solo"), quick(100), ms(0));
        assert_eq!(e.next_deadline(), Some(ms(100)));
        assert!(step(&mut e, ElectionInput::Tick, ms(99)).is_empty(), "early tick");
        assert_eq!(
            step(&mut e, ElectionInput::Tick, ms(100)),
            [ElectionOutput::Publish(claim(1, 0, 0))]
        );
        assert_eq!(e.next_deadline(), Some(ms(350)));
        assert!(!e.is_admin() && e.admin().is_none());
        assert_eq!(
            step(&mut e, ElectionInput::Tick, ms(350)),
            [ElectionOutput::Publish(hb(1, 0, 0)), changed(Some("solo"), 1)]
        );
        assert!(e.is_admin());
        assert_eq!(e.admin(), Some(&id("solo")));
        assert_eq!(e.next_deadline(), Some(ms(650)));
        assert_eq!(
            step(&mut e, ElectionInput::Tick, ms(650)),
            [ElectionOutput::Publish(hb(1, 0, 0))]
        );
    }

    #[test]
    fn first_claim_defaults_to_timeout_plus_jitter_share() {
        let cfg = ElectionConfig::default();
        for name in ["a", "b", "12D3KooWabc", ""] {
            let e = Election::new(id(name), cfg.clone(), ms(1000));
            let d = e.next_deadline().unwrap();
            assert!(d >= ms(2500) && d < ms(3250), "{name}: {d:?}");
        }
    }

    #[test]
    fn jitter_share_is_deterministic_and_bounded() {
        let j = ms(750);
        let a = jitter_share(&id("a"), 7, j);
        assert_eq!(a, jitter_share(&id("a"), 7, j));
        let spread: std::collections::BTreeSet<_> =
            (0..50).map(|seed| jitter_share(&id("a"), seed, j)).collect();
        assert!(spread.len() > 45, "seeds must spread the share");
        assert!(spread.iter().all(|d| *d < j));
        assert_eq!(jitter_share(&id("a"), 7, Duration::ZERO), Duration::ZERO);
        assert!(jitter_share(&id("a"), 7, Duration::MAX) < Duration::MAX);
    }

    #[test]
    fn heartbeats_suppress_claims() {
        let mut e = Election::new(id("f"), quick(0), ms(0));
        let first = step(&mut e, msg("boss", hb(3, 0, 0)), ms(0));
        assert_eq!(first, [changed(Some("boss"), 3)]);
        let mut out = Vec::new();
        for t in (300..10_000).step_by(300) {
            out.extend(run(&mut e, ms(t)));
            out.extend(step(&mut e, msg("boss", hb(3, 0, 0)), ms(t)));
        }
        assert!(out.is_empty(), "{out:?}");
        assert_eq!((e.admin(), e.term()), (Some(&id("boss")), 3));
        // Once the heartbeats stop, the follower claims the next term and
        // reports the admin lost (at the term it now claims).
        let out = run(&mut e, ms(9_900 + 2_250));
        assert_eq!(out, [ElectionOutput::Publish(claim(4, 0, 0)), changed(None, 4)]);
        assert_eq!(e.admin(), None);
    }

    #[test]
    fn candidate_yields_only_to_better_ranks() {
        // (sender, message, yields?) against candidate "m" of term 1 with
        // priority 0 and ledger position 0.
        let cases = [
            ("a", claim(1, 0, 0), true),    // same rank, lower id
            ("z", claim(1, 0, 0), false),   // same rank, higher id
            ("z", claim(1, 1, 0), true),    // priority beats id
            ("a", hb(1, 0, 0), true),       // a better same-term admin
            ("z", hb(1, 0, 0), false),      // a worse same-term admin
            ("z", claim(2, 0, 0), true),    // higher term beats all
            ("a", claim(0, 255, 9), false), // lower term never wins
            ("z", claim(1, 0, 1), true),    // ledger beats priority...
            ("a", claim(1, 255, 0), true),  // ...which beats id
            ("z", hb(1, 255, 0), true),     // priority in a heartbeat
            ("m", claim(9, 9, 9), false),   // our own echo is ignored
        ];
        for (i, (from, m, yields)) in cases.into_iter().enumerate() {
            let mut e = candidate();
            let term = match m {
                ElectionMsg::Claim { term, .. } | ElectionMsg::Heartbeat { term, .. } => term,
                ElectionMsg::Resign { .. } => unreachable!(),
            };
            let beat = took_office(&m);
            let out = step(&mut e, msg(from, m), ms(10));
            if yields {
                // A claimer is followed at once but named only once it
                // heartbeats.
                let out = match beat {
                    Some(beat) => {
                        assert!(out.is_empty(), "case {i}: {out:?}");
                        assert_eq!((e.is_admin(), e.admin()), (false, None), "case {i}");
                        step(&mut e, msg(from, beat), ms(20))
                    }
                    None => out,
                };
                assert_eq!(out, [changed(Some(from), term)], "case {i}");
                assert_eq!(e.admin(), Some(&id(from)), "case {i}");
                assert!(run(&mut e, ms(1000)).is_empty(), "case {i}: follows");
            } else {
                assert!(out.is_empty(), "case {i}: {out:?}");
                let out = run(&mut e, ms(250));
                let office = [ElectionOutput::Publish(hb(1, 0, 0)), changed(Some("m"), 1)];
                assert_eq!(out, office, "case {i}: takes office");
            }
        }
    }

    #[test]
    fn admin_steps_down_only_when_outranked() {
        // (sender, message, steps down?) against admin "m" of term 1. An
        // admin that keeps office answers with a heartbeat at once.
        let cases = [
            ("z", hb(2, 0, 0), true),
            ("z", claim(2, 0, 0), true),
            ("a", hb(1, 0, 0), true),
            ("a", claim(1, 0, 0), true),
            ("z", hb(1, 0, 0), false),
            ("z", claim(1, 0, 0), false),
            ("a", claim(0, 255, 0), false),
            ("z", hb(1, 1, 0), true),
            ("z", claim(1, 0, 3), true),
        ];
        for (i, (from, m, down)) in cases.into_iter().enumerate() {
            let mut e = admin();
            let beat = took_office(&m);
            let out = step(&mut e, msg(from, m), ms(260));
            if down {
                // It steps down at once, but names a claimer only once the
                // claimer heartbeats.
                assert!(!e.is_admin(), "case {i}");
                let out = match beat {
                    Some(beat) => {
                        assert_eq!(out, [changed(None, e.term())], "case {i}");
                        assert_eq!(e.admin(), None, "case {i}");
                        step(&mut e, msg(from, beat), ms(270))
                    }
                    None => out,
                };
                assert_eq!(out, [changed(Some(from), e.term())], "case {i}");
                assert_eq!(e.admin(), Some(&id(from)), "case {i}");
            } else {
                assert!(e.is_admin(), "case {i}");
                assert_eq!(out, [ElectionOutput::Publish(hb(1, 0, 0))], "case {i}");
                assert_eq!(e.next_deadline(), Some(ms(560)), "case {i}");
            }
        }
    }

    #[test]
    fn followers_ignore_stale_and_worse_admins() {
        let mut e = Election::new(id("f"), quick(5000), ms(0));
        step(&mut e, msg("b", hb(5, 0, 0)), ms(0));
        // A lower-term admin and a worse same-term rival change nothing.
        assert!(step(&mut e, msg("a", hb(4, 255, 99)), ms(10)).is_empty());
        assert!(step(&mut e, msg("c", hb(5, 0, 0)), ms(10)).is_empty());
        assert_eq!(e.next_deadline(), Some(ms(0) + ms(1500) + e.jitter));
        // A better one of the same term wins; a higher-term claim raises the
        // term and unseats the admin, but the claimer is named only once it
        // heartbeats.
        assert_eq!(
            step(&mut e, msg("a", hb(5, 0, 0)), ms(20)),
            [changed(Some("a"), 5)]
        );
        assert_eq!(step(&mut e, msg("c", claim(6, 0, 0)), ms(30)), [changed(None, 6)]);
        assert_eq!((e.admin(), e.term()), (None, 6));
        // The old admin's heartbeats are now stale.
        assert!(step(&mut e, msg("a", hb(5, 0, 0)), ms(31)).is_empty());
        assert_eq!(
            step(&mut e, msg("c", hb(6, 0, 0)), ms(35)),
            [changed(Some("c"), 6)]
        );
        // The same admin re-elected at a higher term is announced again.
        assert_eq!(
            step(&mut e, msg("c", hb(8, 0, 0)), ms(40)),
            [changed(Some("c"), 8)]
        );
        assert!(step(&mut e, msg("c", hb(8, 0, 0)), ms(50)).is_empty());
    }

    #[test]
    fn follower_names_a_claimer_only_after_its_heartbeat() {
        let mut e = Election::new(id("f"), ElectionConfig::default(), ms(0));
        // A claim is followed (term and timer) but names no admin.
        assert!(step(&mut e, msg("b", claim(1, 0, 0)), ms(10)).is_empty());
        assert_eq!((e.admin(), e.term()), (None, 1));
        assert_eq!(e.next_deadline(), Some(ms(10) + ms(1500) + e.jitter));
        // A repeat of the claim, or a heartbeat from someone it outranks,
        // confirms nothing.
        assert!(step(&mut e, msg("b", claim(1, 0, 0)), ms(20)).is_empty());
        assert!(step(&mut e, msg("c", hb(1, 0, 0)), ms(30)).is_empty());
        assert_eq!(e.admin(), None);
        // A better claim of the same term takes over, still unnamed.
        assert!(step(&mut e, msg("a", claim(1, 0, 0)), ms(40)).is_empty());
        assert_eq!(e.admin(), None);
        // The claimer's heartbeat names it, once.
        assert_eq!(
            step(&mut e, msg("a", hb(1, 0, 0)), ms(50)),
            [changed(Some("a"), 1)]
        );
        assert_eq!(e.admin(), Some(&id("a")));
        assert!(step(&mut e, msg("a", hb(1, 0, 0)), ms(60)).is_empty());
        // A late copy of its claim does not unname it.
        assert!(step(&mut e, msg("a", claim(1, 0, 0)), ms(70)).is_empty());
        assert_eq!(e.admin(), Some(&id("a")));
        // A claimer that outranks the admin unseats it: no admin until the
        // claimer heartbeats, even if the old admin keeps beating.
        assert_eq!(step(&mut e, msg("z", claim(2, 0, 0)), ms(80)), [changed(None, 2)]);
        assert!(step(&mut e, msg("a", hb(1, 0, 0)), ms(90)).is_empty());
        assert_eq!(e.admin(), None);
        assert_eq!(
            step(&mut e, msg("z", hb(2, 0, 0)), ms(100)),
            [changed(Some("z"), 2)]
        );
        // The confirmed admin claiming a new term is unnamed until it
        // heartbeats again.
        assert_eq!(
            step(&mut e, msg("z", claim(3, 0, 0)), ms(110)),
            [changed(None, 3)]
        );
        assert_eq!(
            step(&mut e, msg("z", hb(3, 0, 0)), ms(120)),
            [changed(Some("z"), 3)]
        );
        // A heartbeat that overtakes its claim names the sender at once;
        // the late claim changes nothing.
        assert_eq!(
            step(&mut e, msg("y", hb(4, 0, 0)), ms(130)),
            [changed(Some("y"), 4)]
        );
        assert!(step(&mut e, msg("y", claim(4, 0, 0)), ms(140)).is_empty());
        assert_eq!((e.admin(), e.term()), (Some(&id("y")), 4));
    }

    #[test]
    fn claimer_that_never_takes_office_is_never_named() {
        // The claimer vanishes before its first heartbeat: the follower
        // reports nothing, and claims itself after a quarter of its jitter.
        let mut e = Election::new(id("f"), ElectionConfig::default(), ms(0));
        step(&mut e, msg("boss", hb(2, 0, 0)), ms(0));
        assert_eq!(step(&mut e, msg("c", claim(3, 0, 0)), ms(10)), [changed(None, 3)]);
        assert!(step(&mut e, ElectionInput::PeerLeft(id("c")), ms(20)).is_empty());
        let due = e.next_deadline().unwrap();
        assert!(due < ms(20) + ms(750) / 4, "{due:?}");
        assert_eq!(
            run(&mut e, due + ms(250)),
            [
                ElectionOutput::Publish(claim(4, 0, 0)),
                ElectionOutput::Publish(hb(4, 0, 0)),
                changed(Some("f"), 4),
            ]
        );
        // Silence after a claim runs the full timeout, again naming nobody.
        let mut e = Election::new(id("f"), ElectionConfig::default(), ms(0));
        step(&mut e, msg("c", claim(1, 0, 0)), ms(10));
        let due = e.next_deadline().unwrap();
        assert_eq!(due, ms(10) + ms(1500) + e.jitter);
        let out = run(&mut e, due);
        assert_eq!(out, [ElectionOutput::Publish(claim(2, 0, 0))]);
        assert_eq!(e.admin(), None);
    }

    #[test]
    fn resign_or_disconnect_of_the_admin_triggers_a_quick_claim() {
        let inputs = [
            ElectionInput::Message {
                from: id("boss"),
                msg: ElectionMsg::Resign { term: 2 },
            },
            ElectionInput::PeerLeft(id("boss")),
        ];
        for input in inputs {
            let mut e = Election::new(id("f"), ElectionConfig::default(), ms(0));
            step(&mut e, msg("boss", hb(2, 0, 0)), ms(100));
            assert_eq!(step(&mut e, input.clone(), ms(200)), [changed(None, 2)]);
            let due = e.next_deadline().unwrap();
            assert!(due < ms(200) + ms(750) / 4, "{input:?}: {due:?}");
            // Heartbeats still in flight from the departed admin are ignored.
            assert!(step(&mut e, msg("boss", hb(2, 0, 0)), ms(201)).is_empty());
            assert_eq!(run(&mut e, due), [ElectionOutput::Publish(claim(3, 0, 0))]);
        }
    }

    #[test]
    fn a_departed_admin_that_joins_again_is_followed_again() {
        let mut e = Election::new(id("f"), ElectionConfig::default(), ms(0));
        step(&mut e, msg("boss", hb(2, 0, 0)), ms(100));
        step(&mut e, ElectionInput::PeerLeft(id("boss")), ms(200));
        assert!(step(&mut e, msg("boss", hb(2, 0, 0)), ms(201)).is_empty());
        // It restarted and subscribed again: its heartbeats count.
        step(&mut e, ElectionInput::PeerJoined(id("boss")), ms(300));
        assert_eq!(
            step(&mut e, msg("boss", hb(2, 0, 0)), ms(301)),
            [changed(Some("boss"), 2)]
        );
    }

    #[test]
    fn resign_or_disconnect_of_others_is_ignored() {
        let inputs = [
            msg("other", ElectionMsg::Resign { term: 2 }),
            msg("boss", ElectionMsg::Resign { term: 1 }), // an older term
            ElectionInput::PeerLeft(id("other")),
        ];
        for input in inputs {
            let mut e = Election::new(id("f"), ElectionConfig::default(), ms(0));
            step(&mut e, msg("boss", hb(2, 0, 0)), ms(100));
            let due = e.next_deadline();
            assert!(step(&mut e, input.clone(), ms(200)).is_empty(), "{input:?}");
            assert_eq!((e.admin(), e.next_deadline()), (Some(&id("boss")), due));
        }
    }

    #[test]
    fn ineligible_node_never_claims_but_follows() {
        let cfg = ElectionConfig {
            eligible: false,
            ..quick(0)
        };
        let mut e = Election::new(id("w"), cfg, ms(0));
        assert!(run(&mut e, ms(60_000)).is_empty());
        assert_eq!(e.next_deadline(), None);
        assert_eq!(
            step(&mut e, msg("boss", hb(1, 0, 0)), ms(60_000)),
            [changed(Some("boss"), 1)]
        );
        // Losing the admin is reported, but no claim follows.
        assert_eq!(run(&mut e, ms(70_000)), [changed(None, 1)]);
        step(&mut e, msg("boss", hb(1, 0, 0)), ms(70_000));
        assert_eq!(
            step(&mut e, ElectionInput::PeerLeft(id("boss")), ms(70_001)),
            [changed(None, 1)]
        );
        assert_eq!(e.next_deadline(), None);
    }

    #[test]
    fn follower_ignores_a_restarted_nodes_stale_claim() {
        let mut e = admin();
        step(&mut e, msg("z", claim(7, 0, 0)), ms(300)); // "z" wins term 7
        step(&mut e, msg("z", hb(7, 0, 0)), ms(350));
        assert!(run(&mut e, ms(400)).is_empty());
        assert_eq!(e.admin(), Some(&id("z")));
        // A restarted node claims term 1: followers ignore it.
        assert!(step(&mut e, msg("a", claim(1, 255, 0)), ms(500)).is_empty());
        assert_eq!((e.admin(), e.term()), (Some(&id("z")), 7));
    }

    #[test]
    fn shutdown_resigns_and_goes_quiet() {
        let mut e = admin();
        assert_eq!(
            step(&mut e, ElectionInput::Shutdown, ms(300)),
            [
                ElectionOutput::Publish(ElectionMsg::Resign { term: 1 }),
                changed(None, 1),
            ]
        );
        assert_eq!((e.next_deadline(), e.admin()), (None, None));
        assert!(step(&mut e, msg("a", claim(9, 0, 0)), ms(400)).is_empty());
        assert!(step(&mut e, ElectionInput::Tick, ms(9_000)).is_empty());
        // A follower leaves silently, unless it had named an admin.
        let mut f = Election::new(id("f"), ElectionConfig::default(), ms(0));
        assert!(step(&mut f, ElectionInput::Shutdown, ms(1)).is_empty());
        let mut f = Election::new(id("f"), ElectionConfig::default(), ms(0));
        step(&mut f, msg("c", claim(1, 0, 0)), ms(1));
        assert!(step(&mut f, ElectionInput::Shutdown, ms(2)).is_empty());
        let mut f = Election::new(id("f"), ElectionConfig::default(), ms(0));
        step(&mut f, msg("boss", hb(1, 0, 0)), ms(1));
        assert_eq!(step(&mut f, ElectionInput::Shutdown, ms(2)), [changed(None, 1)]);
        assert_eq!(f.admin(), None);
    }

    #[test]
    fn ledger_position_goes_into_claims_and_heartbeats() {
        let mut e = Election::new(id("m"), quick(0), ms(0));
        e.set_ledger_pos(42);
        assert_eq!(
            step(&mut e, ElectionInput::Tick, ms(0)),
            [ElectionOutput::Publish(claim(1, 0, 42))]
        );
        // A higher-priority rival with an older ledger does not win.
        assert!(step(&mut e, msg("a", claim(1, 255, 41)), ms(1)).is_empty());
        e.set_ledger_pos(43);
        let out = run(&mut e, ms(250));
        assert_eq!(
            out,
            [ElectionOutput::Publish(hb(1, 0, 43)), changed(Some("m"), 1)]
        );
    }

    #[test]
    fn hostile_inputs_do_not_panic() {
        let mut e = Election::new(id("m"), quick(0), Duration::MAX - ms(1));
        let msgs = [
            claim(u64::MAX, 255, u64::MAX),
            hb(u64::MAX, 0, 0),
            ElectionMsg::Resign { term: u64::MAX },
            hb(0, 255, u64::MAX),
            claim(u64::MAX - 1, 0, 0),
        ];
        let senders = ["", "a", "m", "\u{1F600}", "zzzzzzzzzzzzzzzzzzzzzzzz"];
        let mut out = Vec::new();
        let mut now = ms(0);
        for round in 0..200usize {
            let m = msgs[round % msgs.len()].clone();
            let from = senders[(round / 3) % senders.len()];
            e.handle(msg(from, m), now, &mut out);
            e.handle(ElectionInput::PeerLeft(id(from)), now, &mut out);
            if let Some(d) = e.next_deadline() {
                now = d;
                e.handle(ElectionInput::Tick, now, &mut out);
            }
        }
        assert_eq!(e.term(), u64::MAX);
        e.handle(ElectionInput::Tick, Duration::MAX, &mut out);
        e.handle(ElectionInput::Tick, Duration::ZERO, &mut out);
        // A claim at the top term saturates instead of overflowing.
        let mut m = Election::new(id("m"), quick(0), ms(0));
        step(&mut m, msg("x", hb(u64::MAX, 0, 0)), ms(0));
        m.handle(ElectionInput::PeerLeft(id("x")), ms(1), &mut out);
        let out = run(&mut m, ms(2_000));
        assert!(out.contains(&ElectionOutput::Publish(claim(u64::MAX, 0, 0))));
        assert_eq!(m.term(), u64::MAX);
    }

    #[test]
    fn an_admin_greets_a_newcomer_with_a_heartbeat_and_others_do_not() {
        let mut e = Election::new(
            NodeId::new("a"),
            ElectionConfig {
                first_timeout: Some(Duration::ZERO),
                ..Default::default()
            },
            Duration::ZERO,
        );
        let mut out = Vec::new();
        e.handle(
            ElectionInput::PeerJoined(NodeId::new("b")),
            Duration::ZERO,
            &mut out,
        );
        assert!(out.is_empty(), "a follower stays quiet: {out:?}");
        let window = ElectionConfig::default().claim_window;
        e.handle(ElectionInput::Tick, Duration::ZERO, &mut out);
        e.handle(ElectionInput::Tick, window, &mut out);
        assert!(e.is_admin());
        out.clear();
        let t = window + Duration::from_millis(1);
        e.handle(ElectionInput::PeerJoined(NodeId::new("b")), t, &mut out);
        assert!(
            matches!(
                out.as_slice(),
                [ElectionOutput::Publish(ElectionMsg::Heartbeat { .. })]
            ),
            "{out:?}"
        );
        assert_eq!(
            e.next_deadline(),
            Some(t + ElectionConfig::default().heartbeat_interval)
        );
    }
}
