//! A deterministic simulator for the pure state machines (test-only).
//!
//! Many nodes share one virtual clock and one seeded network that delays,
//! drops and partitions messages, and kills and restarts nodes. Any
//! [`Machine`] can be driven; [`ElectionNode`] adapts [`Election`], and the
//! scheduler can get its own adapter later. Every order is stable (events by
//! time then sequence number, nodes by id, in `BTreeMap`s) and every random
//! choice comes from one seeded [`Rng`], so a seed replays a run exactly.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::election::{Election, ElectionConfig, ElectionInput, ElectionMsg, ElectionOutput};
use crate::task::NodeId;

/// Steps a single `run_until` may take before it declares a livelock.
const MAX_STEPS: u64 = 5_000_000;

/// A small seeded generator (splitmix64): plenty for picking delays and drops.
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator whose whole output follows from `seed`.
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64) / ((1u64 << 53) as f64) < p
    }

    /// A duration in `[lo, hi]`, in whole microseconds.
    pub(crate) fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let (lo, hi) = (lo.as_micros() as u64, hi.as_micros().max(lo.as_micros()) as u64);
        Duration::from_micros(lo + self.next_u64() % (hi - lo + 1))
    }
}

/// Where an outgoing message goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Send<M> {
    /// To every other live node (gossip).
    All(M),
    /// To one node (request-response).
    To(NodeId, M),
}

/// A pure state machine the simulator can drive: inputs in, sends out.
pub(crate) trait Machine {
    /// What nodes send each other.
    type Msg: Clone;
    /// A message from `from` arrived.
    fn on_message(&mut self, from: &NodeId, msg: Self::Msg, now: Duration, out: &mut Vec<Send<Self::Msg>>);
    /// `next_deadline` has passed.
    fn on_tick(&mut self, now: Duration, out: &mut Vec<Send<Self::Msg>>);
    /// The connection to `peer` closed.
    fn on_peer_left(&mut self, peer: &NodeId, now: Duration, out: &mut Vec<Send<Self::Msg>>);
    /// This node is leaving cleanly; its last sends still go out.
    fn on_shutdown(&mut self, now: Duration, out: &mut Vec<Send<Self::Msg>>);
    /// When this node next wants `on_tick`.
    fn next_deadline(&self) -> Option<Duration>;
}

/// How the simulated network behaves.
#[derive(Clone, Debug)]
pub(crate) struct Net {
    /// Smallest delivery delay.
    pub(crate) min_delay: Duration,
    /// Largest delivery delay (inclusive).
    pub(crate) max_delay: Duration,
    /// Probability that any one delivery is lost.
    pub(crate) drop: f64,
}

impl Default for Net {
    fn default() -> Self {
        Net {
            min_delay: Duration::ZERO,
            max_delay: Duration::from_millis(5),
            drop: 0.0,
        }
    }
}

struct Slot<M> {
    machine: M,
    alive: bool,
    /// Bumped on restart so that deliveries meant for the old life are lost.
    incarnation: u64,
}

enum Event<M> {
    Deliver { from: NodeId, msg: M },
    PeerLeft(NodeId),
}

struct Envelope<M> {
    to: NodeId,
    incarnation: u64,
    event: Event<M>,
}

/// The simulated mesh: nodes, clock, in-flight events and cut links.
pub(crate) struct Sim<M: Machine> {
    now: Duration,
    rng: Rng,
    net: Net,
    nodes: BTreeMap<NodeId, Slot<M>>,
    queue: BTreeMap<(Duration, u64), Envelope<M::Msg>>,
    seq: u64,
    /// Unordered pairs (stored low id first) that cannot reach each other.
    cuts: BTreeSet<(NodeId, NodeId)>,
}

impl<M: Machine> Sim<M> {
    /// An empty mesh at virtual time zero.
    pub(crate) fn new(seed: u64, net: Net) -> Self {
        Sim {
            now: Duration::ZERO,
            rng: Rng::new(seed),
            net,
            nodes: BTreeMap::new(),
            queue: BTreeMap::new(),
            seq: 0,
            cuts: BTreeSet::new(),
        }
    }

    /// The virtual time.
    pub(crate) fn now(&self) -> Duration {
        self.now
    }

    /// Adds a live node, or brings a dead one back with a fresh machine.
    pub(crate) fn add(&mut self, id: &NodeId, machine: M) {
        let incarnation = self.nodes.get(id).map_or(0, |s| s.incarnation + 1);
        let slot = Slot {
            machine,
            alive: true,
            incarnation,
        };
        self.nodes.insert(id.clone(), slot);
    }

    /// The node's machine, dead or alive.
    pub(crate) fn node(&self, id: &NodeId) -> &M {
        &self.nodes[id].machine
    }

    /// Live nodes in id order.
    pub(crate) fn live(&self) -> impl Iterator<Item = (&NodeId, &M)> {
        self.nodes
            .iter()
            .filter(|(_, s)| s.alive)
            .map(|(id, s)| (id, &s.machine))
    }

    /// The node crashes; its peers see the connection close.
    pub(crate) fn kill(&mut self, id: &NodeId) {
        self.kill_silently(id);
        let peers: Vec<NodeId> = self.live().map(|(p, _)| p.clone()).collect();
        for peer in peers {
            self.enqueue(peer, Event::PeerLeft(id.clone()));
        }
    }

    /// The node hangs: nobody is told, its peers only notice the silence.
    pub(crate) fn kill_silently(&mut self, id: &NodeId) {
        if let Some(slot) = self.nodes.get_mut(id) {
            slot.alive = false;
        }
    }

    /// The node leaves cleanly: its goodbye goes out, then its connections close.
    pub(crate) fn shutdown(&mut self, id: &NodeId) {
        let mut out = Vec::new();
        if let Some(slot) = self.nodes.get_mut(id).filter(|s| s.alive) {
            slot.machine.on_shutdown(self.now, &mut out);
        }
        self.dispatch(id, out);
        self.kill(id);
    }

    /// Cuts every link between nodes of different groups.
    pub(crate) fn partition(&mut self, groups: &[&[NodeId]]) {
        for (i, left) in groups.iter().enumerate() {
            for right in &groups[i + 1..] {
                for a in left.iter() {
                    for b in right.iter() {
                        self.cuts.insert(pair(a, b));
                    }
                }
            }
        }
    }

    /// Restores every link.
    pub(crate) fn heal(&mut self) {
        self.cuts.clear();
    }

    /// Runs until `done` holds (checked after every event) or `limit` of
    /// virtual time has passed; returns whether `done` held.
    pub(crate) fn run_until(&mut self, mut done: impl FnMut(&Self) -> bool, limit: Duration) -> bool {
        let end = self.now.saturating_add(limit);
        for _ in 0..MAX_STEPS {
            if done(self) {
                return true;
            }
            match self.next_event() {
                Some((at, tick)) if at <= end => self.step(at, tick),
                _ => {
                    self.now = end;
                    return done(self);
                }
            }
        }
        panic!("no progress after {MAX_STEPS} steps at {:?}: livelock?", self.now);
    }

    /// Runs for `d` of virtual time.
    pub(crate) fn run_for(&mut self, d: Duration) {
        self.run_until(|_| false, d);
    }

    /// The earliest event: a node's tick (`Some(id)`) or the queue head.
    /// Ticks go first on ties, lowest id first.
    fn next_event(&self) -> Option<(Duration, Option<NodeId>)> {
        let tick = self
            .live()
            .filter_map(|(id, m)| Some((m.next_deadline()?.max(self.now), Some(id.clone()))))
            .min();
        let msg = self.queue.keys().next().map(|(at, _)| (*at, None));
        match (tick, msg) {
            (Some(t), Some(m)) => Some(if t.0 <= m.0 { t } else { m }),
            (t, m) => t.or(m),
        }
    }

    fn step(&mut self, at: Duration, tick: Option<NodeId>) {
        self.now = at;
        let mut out = Vec::new();
        let from = match tick {
            Some(id) => {
                self.nodes
                    .get_mut(&id)
                    .expect("ticked node exists")
                    .machine
                    .on_tick(at, &mut out);
                id
            }
            None => {
                let (_, env) = self.queue.pop_first().expect("queue head exists");
                let Some(slot) = self.nodes.get_mut(&env.to) else {
                    return;
                };
                if !slot.alive || slot.incarnation != env.incarnation {
                    return;
                }
                match env.event {
                    Event::Deliver { from, msg } => {
                        if self.cuts.contains(&pair(&from, &env.to)) {
                            return;
                        }
                        slot.machine.on_message(&from, msg, at, &mut out);
                    }
                    Event::PeerLeft(peer) => slot.machine.on_peer_left(&peer, at, &mut out),
                }
                env.to
            }
        };
        self.dispatch(&from, out);
    }

    /// Puts each send on the wire: per delivery, maybe lost, else delayed.
    fn dispatch(&mut self, from: &NodeId, out: Vec<Send<M::Msg>>) {
        for send in out {
            let (targets, msg): (Vec<NodeId>, _) = match send {
                Send::All(msg) => (
                    self.live()
                        .map(|(id, _)| id.clone())
                        .filter(|id| id != from)
                        .collect(),
                    msg,
                ),
                Send::To(to, msg) => (vec![to], msg),
            };
            for to in targets {
                if to == *from || self.rng.chance(self.net.drop) {
                    continue;
                }
                let msg = msg.clone();
                self.enqueue(
                    to,
                    Event::Deliver {
                        from: from.clone(),
                        msg,
                    },
                );
            }
        }
    }

    fn enqueue(&mut self, to: NodeId, event: Event<M::Msg>) {
        let Some(slot) = self.nodes.get(&to).filter(|s| s.alive) else {
            return;
        };
        let incarnation = slot.incarnation;
        let at = self.now + self.rng.between(self.net.min_delay, self.net.max_delay);
        self.seq += 1;
        self.queue.insert(
            (at, self.seq),
            Envelope {
                to,
                incarnation,
                event,
            },
        );
    }
}

fn pair(a: &NodeId, b: &NodeId) -> (NodeId, NodeId) {
    if a <= b {
        (a.clone(), b.clone())
    } else {
        (b.clone(), a.clone())
    }
}

/// An [`Election`] under simulation, with every admin change it reported.
pub(crate) struct ElectionNode {
    pub(crate) election: Election,
    /// `(when, admin, term)` for each `AdminChanged`.
    pub(crate) changes: Vec<(Duration, Option<NodeId>, u64)>,
}

impl ElectionNode {
    /// A fresh election for `id` starting at `now`.
    pub(crate) fn new(id: &NodeId, cfg: ElectionConfig, now: Duration) -> Self {
        ElectionNode {
            election: Election::new(id.clone(), cfg, now),
            changes: Vec::new(),
        }
    }

    fn apply(&mut self, input: ElectionInput, now: Duration, out: &mut Vec<Send<ElectionMsg>>) {
        let mut outputs = Vec::new();
        self.election.handle(input, now, &mut outputs);
        for output in outputs {
            match output {
                ElectionOutput::Publish(msg) => out.push(Send::All(msg)),
                ElectionOutput::AdminChanged { admin, term } => self.changes.push((now, admin, term)),
            }
        }
    }
}

impl Machine for ElectionNode {
    type Msg = ElectionMsg;

    fn on_message(
        &mut self,
        from: &NodeId,
        msg: ElectionMsg,
        now: Duration,
        out: &mut Vec<Send<ElectionMsg>>,
    ) {
        let from = from.clone();
        self.apply(ElectionInput::Message { from, msg }, now, out);
    }

    fn on_tick(&mut self, now: Duration, out: &mut Vec<Send<ElectionMsg>>) {
        self.apply(ElectionInput::Tick, now, out);
    }

    fn on_peer_left(&mut self, peer: &NodeId, now: Duration, out: &mut Vec<Send<ElectionMsg>>) {
        self.apply(ElectionInput::PeerLeft(peer.clone()), now, out);
    }

    fn on_shutdown(&mut self, now: Duration, out: &mut Vec<Send<ElectionMsg>>) {
        self.apply(ElectionInput::Shutdown, now, out);
    }

    fn next_deadline(&self) -> Option<Duration> {
        self.election.next_deadline()
    }
}

impl Sim<ElectionNode> {
    /// `n` default nodes named `n0`, `n1`, …, all starting now, with the
    /// seed as their jitter seed too.
    pub(crate) fn elections(seed: u64, n: usize, net: Net) -> Self {
        let mut sim = Sim::new(seed, net);
        for i in 0..n {
            sim.add_election(&NodeId::new(format!("n{i}")), config(seed));
        }
        sim
    }

    /// Adds (or restarts) a node with a fresh election starting now.
    pub(crate) fn add_election(&mut self, id: &NodeId, cfg: ElectionConfig) {
        let node = ElectionNode::new(id, cfg, self.now);
        self.add(id, node);
    }

    /// Live nodes that hold office now.
    pub(crate) fn admins(&self) -> Vec<NodeId> {
        self.live()
            .filter(|(_, n)| n.election.is_admin())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The admin and term that the live members of `group` agree on: exactly
    /// one of them holds office, and every one names it at its term.
    pub(crate) fn agreement(&self, group: &[NodeId]) -> Option<(NodeId, u64)> {
        let members: Vec<&Election> = self
            .live()
            .filter(|(id, _)| group.contains(id))
            .map(|(_, n)| &n.election)
            .collect();
        let mut admins = members.iter().filter(|e| e.is_admin());
        let (admin, extra) = (admins.next()?, admins.next());
        let (id, term) = (admin.admin()?.clone(), admin.term());
        let agree = members.iter().all(|e| e.admin() == Some(&id) && e.term() == term);
        (extra.is_none() && agree).then_some((id, term))
    }

    /// The admin and term that all live nodes agree on.
    pub(crate) fn agreed(&self) -> Option<(NodeId, u64)> {
        let all: Vec<NodeId> = self.live().map(|(id, _)| id.clone()).collect();
        self.agreement(&all)
    }
}

/// The default election config with this jitter seed.
pub(crate) fn config(seed: u64) -> ElectionConfig {
    ElectionConfig {
        jitter_seed: seed,
        ..ElectionConfig::default()
    }
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

    /// Every admin a live node named had taken office for that term by then
    /// (its own report came first): nobody names a mere claimer. A restart
    /// forgets the node's reports, so check before any restart.
    fn assert_named_only_office_holders(sim: &Sim<ElectionNode>, seed: u64) {
        for (who, node) in sim.live() {
            for (at, admin, term) in &node.changes {
                let Some(admin) = admin else { continue };
                let took_office = sim
                    .node(admin)
                    .changes
                    .iter()
                    .any(|(when, a, t)| when <= at && a.as_ref() == Some(admin) && t == term);
                assert!(
                    took_office,
                    "seed {seed}: {who} named {admin} of term {term} at {at:?} before it took office"
                );
            }
        }
    }

    /// `n` default nodes that have agreed on an admin.
    fn converged(seed: u64, n: usize, net: Net) -> Sim<ElectionNode> {
        let mut sim = Sim::elections(seed, n, net);
        assert!(
            sim.run_until(|s| s.agreed().is_some(), ms(3_000)),
            "seed {seed}: {:?}",
            sim.admins()
        );
        sim
    }

    #[test]
    fn simultaneous_start_elects_one_admin_of_term_one() {
        for seed in 0..200 {
            let mut sim = converged(seed, 4, Net::default());
            let (admin, term) = sim.agreed().unwrap();
            assert_eq!(term, 1, "seed {seed}");
            sim.run_for(ms(10_000));
            assert_eq!(sim.agreed(), Some((admin, 1)), "seed {seed}: not stable");
            assert_named_only_office_holders(&sim, seed);
        }
    }

    #[test]
    fn same_seed_replays_the_same_run() {
        let changes = |seed| {
            let mut sim = Sim::elections(
                seed,
                5,
                Net {
                    drop: 0.1,
                    ..Net::default()
                },
            );
            sim.run_for(ms(5_000));
            sim.live().map(|(_, n)| n.changes.clone()).collect::<Vec<_>>()
        };
        assert_eq!(changes(7), changes(7));
        assert_ne!(changes(7), changes(8));
    }

    #[test]
    fn killed_admin_is_replaced_quickly_and_rejoins_as_follower() {
        for seed in 0..100 {
            let mut sim = converged(seed, 4, Net::default());
            let (old, term) = sim.agreed().unwrap();
            sim.kill(&old);
            // Well under the 1.5 s election timeout: a quarter jitter + the window.
            assert!(sim.run_until(|s| s.agreed().is_some(), ms(500)), "seed {seed}");
            let (new, new_term) = sim.agreed().unwrap();
            assert!(new != old && new_term == term + 1, "seed {seed}");
            assert_named_only_office_holders(&sim, seed);
            sim.add_election(&old, config(seed));
            let back = (new.clone(), new_term);
            assert!(
                sim.run_until(|s| s.agreed() == Some(back.clone()), ms(500)),
                "seed {seed}"
            );
            sim.run_for(ms(5_000));
            assert_eq!(sim.agreed(), Some(back), "seed {seed}: restart disrupted");
        }
    }

    #[test]
    fn resigning_admin_is_replaced_quickly() {
        for seed in 0..50 {
            let mut sim = converged(seed, 4, Net::default());
            let (old, term) = sim.agreed().unwrap();
            sim.shutdown(&old);
            assert!(sim.run_until(|s| s.agreed().is_some(), ms(500)), "seed {seed}");
            assert_eq!(sim.agreed().unwrap().1, term + 1, "seed {seed}");
            assert_named_only_office_holders(&sim, seed);
        }
    }

    #[test]
    fn silently_hung_admin_is_replaced_after_the_timeout() {
        for seed in 0..50 {
            let mut sim = converged(seed, 4, Net::default());
            let (old, _) = sim.agreed().unwrap();
            sim.kill_silently(&old);
            let start = sim.now();
            assert!(sim.run_until(|s| s.agreed().is_some(), ms(3_000)), "seed {seed}");
            assert!(sim.now() - start >= ms(1_200), "seed {seed}: too early");
            assert_named_only_office_holders(&sim, seed);
        }
    }

    #[test]
    fn partition_elects_an_admin_per_side_and_healing_leaves_one() {
        for seed in 0..50 {
            let mut sim = converged(seed, 4, Net::default());
            let (a, term) = sim.agreed().unwrap();
            let others: Vec<NodeId> = sim
                .live()
                .map(|(id, _)| id.clone())
                .filter(|id| *id != a)
                .collect();
            let (left, right) = (vec![a.clone(), others[0].clone()], others[1..].to_vec());
            sim.partition(&[&left, &right]);
            let both = |s: &Sim<ElectionNode>| s.agreement(&left).is_some() && s.agreement(&right).is_some();
            assert!(sim.run_until(both, ms(3_000)), "seed {seed}");
            assert_eq!(sim.agreement(&left), Some((a.clone(), term)), "seed {seed}");
            let (b, b_term) = sim.agreement(&right).unwrap();
            assert_eq!((sim.admins().len(), b_term), (2, term + 1), "seed {seed}");
            sim.heal();
            // The higher term wins as soon as heartbeats cross.
            assert!(sim.run_until(|s| s.agreed().is_some(), ms(1_000)), "seed {seed}");
            assert_eq!(sim.agreed(), Some((b, b_term)), "seed {seed}");
            assert_named_only_office_holders(&sim, seed);
        }
    }

    #[test]
    fn top_priority_node_with_no_first_timeout_wins() {
        let play = ElectionConfig {
            priority: 255,
            first_timeout: Some(Duration::ZERO),
            ..ElectionConfig::default()
        };
        for seed in 0..100 {
            let mut sim = Sim::new(seed, Net::default());
            for name in ["a", "b", "c"] {
                sim.add_election(&id(name), config(seed));
            }
            sim.add_election(&id("zz-play"), play.clone());
            assert!(sim.run_until(|s| s.agreed().is_some(), ms(300)), "seed {seed}");
            sim.run_for(ms(10_000));
            assert_eq!(sim.agreed(), Some((id("zz-play"), 1)), "seed {seed}");
            assert_named_only_office_holders(&sim, seed);
        }
        // Claiming at the same instant as a default-priority node, priority
        // still beats the lower id.
        let mut sim = Sim::new(1, Net::default());
        let eager = ElectionConfig {
            priority: 0,
            ..play.clone()
        };
        sim.add_election(&id("a"), eager);
        sim.add_election(&id("zz-play"), play);
        assert!(sim.run_until(|s| s.agreed().is_some(), ms(300)));
        assert_eq!(sim.agreed(), Some((id("zz-play"), 1)));
    }

    #[test]
    fn ten_percent_message_loss_still_converges() {
        let lossy = Net {
            drop: 0.1,
            ..Net::default()
        };
        for seed in 0..200 {
            let mut sim = Sim::elections(seed, 4, lossy.clone());
            assert!(sim.run_until(|s| s.agreed().is_some(), ms(5_000)), "seed {seed}");
            sim.run_for(ms(5_000));
            assert!(sim.agreed().is_some(), "seed {seed}: {:?}", sim.admins());
            assert_named_only_office_holders(&sim, seed);
        }
    }

    /// A minimal non-election machine: proves the core is generic and checks
    /// directed sends, cuts, peer-left notices and restarts.
    #[derive(Default)]
    struct Pinger {
        target: Option<NodeId>,
        due: Option<Duration>,
        got: Vec<(NodeId, u32)>,
        left: Vec<NodeId>,
    }

    impl Machine for Pinger {
        type Msg = u32;
        fn on_message(&mut self, from: &NodeId, msg: u32, _: Duration, out: &mut Vec<Send<u32>>) {
            self.got.push((from.clone(), msg));
            if msg < 3 {
                out.push(Send::To(from.clone(), msg + 1));
            }
        }
        fn on_tick(&mut self, _: Duration, out: &mut Vec<Send<u32>>) {
            self.due = None;
            if let Some(t) = &self.target {
                out.push(Send::To(t.clone(), 0));
            }
        }
        fn on_peer_left(&mut self, peer: &NodeId, _: Duration, _: &mut Vec<Send<u32>>) {
            self.left.push(peer.clone());
        }
        fn on_shutdown(&mut self, _: Duration, out: &mut Vec<Send<u32>>) {
            out.push(Send::All(99));
        }
        fn next_deadline(&self) -> Option<Duration> {
            self.due
        }
    }

    #[test]
    fn generic_core_routes_cuts_and_restarts() {
        let (a, b, c) = (id("a"), id("b"), id("c"));
        let mut sim = Sim::new(3, Net::default());
        let ping = |to: &NodeId, at| Pinger {
            target: Some(to.clone()),
            due: Some(at),
            ..Pinger::default()
        };
        sim.add(&a, ping(&b, ms(1)));
        sim.add(&b, Pinger::default());
        sim.add(&c, Pinger::default());
        sim.run_for(ms(100));
        assert_eq!(sim.node(&a).got, [(b.clone(), 1), (b.clone(), 3)]);
        assert_eq!(sim.node(&b).got, [(a.clone(), 0), (a.clone(), 2)]);
        assert!(sim.node(&c).got.is_empty(), "directed sends reach one node");

        sim.partition(&[std::slice::from_ref(&a), &[b.clone(), c.clone()]]);
        sim.add(&a, ping(&b, sim.now()));
        sim.run_for(ms(100));
        assert_eq!(sim.node(&b).got.len(), 2, "the cut drops the ping");

        sim.heal();
        sim.shutdown(&b);
        sim.run_for(ms(100));
        assert_eq!(sim.node(&c).got, [(b.clone(), 99)]);
        assert_eq!(
            (&sim.node(&a).left, &sim.node(&c).left),
            (&vec![b.clone()], &vec![b])
        );
    }
}
