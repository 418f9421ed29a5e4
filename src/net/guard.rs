//! What the loop believes of a peer: who speaks for the admin (authority
//! comes from the ledger, never from a message anyone can sign), who may do
//! what (the allow-lists), and strikes against peers that send what no
//! honest node sends, which cut them off.

use std::collections::BTreeSet;
use std::time::Duration;

use libp2p::gossipsub::MessageAcceptance;
use libp2p::PeerId;
use tracing::{debug, info, warn};

use super::ledger::decode_member;
use super::EventLoop;
use crate::access::{judge_admin_claim, Claim, ClaimContext, MemberView, Right};

/// When a connected peer came, and when it last asked something.
#[derive(Debug)]
pub(crate) struct Presence {
    pub(crate) since: std::time::Instant,
    pub(crate) last_asked: Option<std::time::Instant>,
}

/// Strikes for each kind of offence (see [`crate::access::Limits`]).
pub(super) mod strike {
    /// A frame that is not a message of ours, or over the limit.
    pub const MALFORMED: u32 = 5;
    /// A frame not sent whole within the read timeout, or cut short.
    pub const SLOW: u32 = 2;
    /// Gossip the loop rejects.
    pub const GOSSIP: u32 = 5;
    /// A Raft message under another replica's name.
    pub const FORGED: u32 = 10;
    /// A request for a right the peer does not have.
    pub const REFUSED: u32 = 1;
}

/// The voters an admin's notice named, as the node outside the ledger last
/// heard them from an admin it followed.
#[derive(Debug, Default)]
pub(crate) struct Vouched {
    /// The ledger, and the voters' peers.
    pub(crate) voters: Option<(u64, BTreeSet<PeerId>)>,
    /// True when those voters were named by an admin that trusted voters
    /// named in turn (or that this node took on its first contact): only
    /// then may one of them lead this node to another ledger at once.
    pub(crate) trusted: bool,
    /// The voters named before this node followed an admin nobody named,
    /// and until when they may take the office back.
    pub(crate) fallback: Option<(BTreeSet<PeerId>, std::time::Instant)>,
}

impl Vouched {
    /// The fallback voters while they may still take the office back.
    pub(crate) fn fallback(&self) -> Option<&BTreeSet<PeerId>> {
        self.fallback
            .as_ref()
            .filter(|f| std::time::Instant::now() < f.1)
            .map(|f| &f.0)
    }
}

impl EventLoop {
    /// The peer that replica `id` joined the ledger as, from the
    /// configuration in the log (never from what a message claims).
    pub(super) fn member_peer(&self, id: u64) -> Option<PeerId> {
        let ledger = self.raft.ledger.as_ref()?;
        self.names.peer(&decode_member(ledger.members().get(&id)?)?.peer)
    }

    /// True when `peer` is a replica in this node's ledger configuration.
    pub(super) fn is_member_peer(&self, peer: &PeerId) -> bool {
        self.raft.ledger.as_ref().is_some_and(|l| {
            let text = self.names.node(peer);
            l.members()
                .values()
                .filter_map(|c| decode_member(c))
                .any(|m| m.peer == text.as_str())
        })
    }

    /// The voters' peers, as this node's replica knows them.
    pub(super) fn voter_peers(&self) -> Vec<PeerId> {
        let Some(l) = self.raft.ledger.as_ref() else {
            return Vec::new();
        };
        l.replica()
            .voters()
            .into_iter()
            .filter_map(|v| self.member_peer(v))
            .collect()
    }

    /// May `source` speak as the admin of ledger `cluster` in `term` (a
    /// notice, an award)? Gathers what this node knows for
    /// [`crate::access::judge_admin_claim`], which decides; the verdict in
    /// gossipsub's terms.
    pub(super) fn vouch(&self, source: PeerId, cluster: u64, term: u64) -> MessageAcceptance {
        let same_ledger = self.raft.cluster.map(|c| c.0) == Some(cluster);
        let member = self
            .raft
            .ledger
            .as_ref()
            .filter(|_| same_ledger && self.raft.member())
            .map(|l| {
                let r = l.replica();
                MemberView {
                    leader: (r.leader() != 0).then(|| self.member_peer(r.leader())).flatten(),
                    term: r.term(),
                    claimant_is_member: self.is_member_peer(&source),
                }
            });
        let cx = ClaimContext {
            allowed: source == self.me || self.cfg.allow.allows(Right::Admin, &source),
            same_ledger,
            in_configuration: self.raft.member(),
            member,
            followed: self.admin,
            named_voters: self
                .vouched
                .voters
                .as_ref()
                .filter(|(c, _)| *c == cluster)
                .map(|(_, v)| v),
            fallback: self.vouched.fallback(),
            leaderless_for: match self.admin {
                Some(_) => None,
                None => Some(self.raft.leaderless_since.map_or(Duration::MAX, |t| t.elapsed())),
            },
        };
        match judge_admin_claim(source, term, &cx) {
            Claim::Follow => MessageAcceptance::Accept,
            Claim::Ignore => MessageAcceptance::Ignore,
            Claim::Reject => MessageAcceptance::Reject,
        }
    }

    /// May `source` speak as a voter of ledger `cluster` (say it has no
    /// quorum)? A member checks the configuration; a node outside it, the
    /// voters its admin named, or, before it heard of any, the peers it
    /// was told to join.
    pub(super) fn speaks_as_voter(&self, source: PeerId, cluster: u64) -> bool {
        if self.raft.cluster.is_some_and(|c| c.0 != cluster) {
            return false;
        }
        if self.raft.member() {
            return self.voter_peers().contains(&source);
        }
        match &self.vouched.voters {
            Some((c, voters)) if *c == cluster => voters.contains(&source),
            _ => self.cfg.join.iter().any(|a| {
                a.iter()
                    .any(|p| matches!(p, libp2p::multiaddr::Protocol::P2p(id) if id == source))
            }),
        }
    }

    /// Checks `peer`'s `right` against the allow-lists; a refusal is
    /// logged (once per peer and right) and counts a strike.
    pub(super) fn may(&mut self, right: Right, peer: PeerId) -> Result<(), String> {
        if peer == self.me {
            return Ok(());
        }
        let result = self.cfg.allow.check(right, &peer);
        if let Err(why) = &result {
            self.refused(right, peer, why);
        }
        result
    }

    /// Logs and counts a refused right (see [`EventLoop::may`]).
    pub(super) fn refused(&mut self, right: Right, peer: PeerId, why: &str) {
        if self.refusals_logged.len() < 4096 && self.refusals_logged.insert((peer, right as u8)) {
            warn!(%peer, flag = right.flag(), "refused: {why}");
        }
        self.strike(peer, strike::REFUSED, "a right it does not have");
    }

    /// Counts `n` strikes against `peer`; past the limit the peer is
    /// disconnected and refused for [`crate::access::Limits::cut_off_for`].
    pub(super) fn strike(&mut self, peer: PeerId, n: u32, why: &str) {
        if peer == self.me {
            return;
        }
        let now = self.now();
        if self.strikes.add(peer, n, now, &self.cfg.limits) {
            warn!(
                %peer,
                why,
                cut_off_for = ?self.cfg.limits.cut_off_for,
                "peer cut off: it kept sending what no honest node sends"
            );
            self.swarm.behaviour_mut().blocked.block_peer(peer);
            self.swarm.behaviour_mut().gossipsub.blacklist_peer(&peer);
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    /// True when `peer` has a part in this node's mesh, so that losing it
    /// is worth dialling it again: the admin followed, a replica of the
    /// ledger, a voter the admin named, or (at the admin) a node hosting
    /// registered workers. Join addresses are dialled again regardless.
    pub(super) fn worth_redialing(&self, peer: &PeerId) -> bool {
        self.admin.is_some_and(|a| a.0 == *peer)
            || self.is_member_peer(peer)
            || self
                .vouched
                .voters
                .as_ref()
                .is_some_and(|(_, v)| v.contains(peer))
            || self.sched.is_some() && {
                let node = super::node_id(peer);
                self.admin_workers().iter().any(|w| w.node == node)
            }
    }

    /// Near the connection limit (nine tenths of it), closes the
    /// connections of up to 8 peers that have no part in the mesh and have
    /// asked nothing for [`crate::access::Limits::idle_peer`], oldest
    /// first, so that idle
    /// strangers cannot keep newcomers out.
    pub(super) fn evict_idle(&mut self) {
        let established = self.swarm.network_info().connection_counters().num_established();
        let max = self.cfg.limits.max_connections;
        if established < max.saturating_mul(9) / 10 {
            return;
        }
        let now = std::time::Instant::now();
        let listed = |p: &PeerId| {
            [Right::Admin, Right::HostWorkers, Right::Client]
                .iter()
                .any(|r| self.cfg.allow.list(*r).is_some_and(|l| l.contains(p)))
        };
        let mut idle: Vec<(std::time::Instant, PeerId)> = self
            .presence
            .iter()
            .filter(|(p, pr)| {
                now.saturating_duration_since(pr.last_asked.unwrap_or(pr.since)) >= self.cfg.limits.idle_peer
                    && !listed(p)
                    && !self.worth_redialing(p)
            })
            .map(|(p, pr)| (pr.since, *p))
            .collect();
        idle.sort();
        for (_, peer) in idle.into_iter().take(8) {
            debug!(%peer, "connection table nearly full; closing an idle stranger's connection");
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    /// Logs a warning about this node's own standing once per distinct
    /// text (a refusal repeated every retry is said once).
    pub(super) fn told_once(&mut self, text: String) {
        if self.told.as_deref() != Some(text.as_str()) {
            warn!("{text}");
            self.told = Some(text);
        }
    }

    /// Lets in again the peers whose cut-off ended.
    pub(super) fn expire_strikes(&mut self) {
        let now = self.now();
        for peer in self.strikes.expire(now) {
            info!(%peer, "cut-off ended; the peer may connect again");
            self.swarm.behaviour_mut().blocked.unblock_peer(peer);
            self.swarm
                .behaviour_mut()
                .gossipsub
                .remove_blacklisted_peer(&peer);
        }
    }
}
