//! The address book: every mesh peer this node has known, where to reach
//! it, and when to dial it again after losing it. Losing any one node (the
//! one everyone joined included) must not split the mesh into islands, so a
//! node re-dials the peers it lost, with backoff, until they are back or
//! have been unreachable long enough to be forgotten. Join addresses are
//! never forgotten.
//!
//! Pure: the event loop tells it what happened and when, and dials what
//! [`AddressBook::due`] returns.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId};

/// Most peers kept; beyond it, the longest-unreachable one is forgotten.
pub(super) const MAX_PEERS: usize = 256;
/// Most addresses kept per peer (the newest).
pub(super) const MAX_ADDRS: usize = 8;
/// First wait before re-dialing a lost peer; doubles per failed dial.
pub(super) const FIRST_RETRY: Duration = Duration::from_millis(250);
/// Longest wait between dials.
pub(super) const MAX_RETRY: Duration = Duration::from_secs(30);
/// Failed dials in a row after which a lost peer (not a join address) is
/// forgotten: about five minutes of trying.
pub(super) const FORGET_AFTER: u32 = 16;

#[derive(Debug)]
struct Entry {
    addrs: VecDeque<Multiaddr>,
    connected: bool,
    /// Failed dials since it was last connected.
    failures: u32,
    /// When to dial it next (`None`: connected, or a dial in flight).
    retry_at: Option<Instant>,
    /// Reached through a join address: never forgotten.
    seed: bool,
    /// Last time it was connected or learned about.
    seen: Instant,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub(super) struct AddressBook {
    peers: HashMap<PeerId, Entry>,
}

impl AddressBook {
    /// Notes addresses where `peer` listens (identify, mDNS, gossip, a
    /// join). Loopback-free or not, they are kept as given, newest first.
    pub(super) fn learn(&mut self, peer: PeerId, addrs: impl IntoIterator<Item = Multiaddr>, now: Instant) {
        let e = self.entry(peer, now);
        for a in addrs {
            let a = strip_p2p(a);
            e.addrs.retain(|x| *x != a);
            e.addrs.push_front(a);
            e.addrs.truncate(MAX_ADDRS);
        }
        e.seen = now;
    }

    /// `peer` was reached through a join address: it is never forgotten.
    pub(super) fn seed(&mut self, peer: PeerId, addr: Multiaddr, now: Instant) {
        self.learn(peer, [addr], now);
        if let Some(e) = self.peers.get_mut(&peer) {
            e.seed = true;
        }
    }

    /// A first connection to `peer` is up.
    pub(super) fn connected(&mut self, peer: PeerId, now: Instant) {
        let e = self.entry(peer, now);
        e.connected = true;
        e.failures = 0;
        e.retry_at = None;
        e.seen = now;
    }

    /// The last connection to `peer` closed: dial it again soon, if there
    /// is an address to dial.
    pub(super) fn disconnected(&mut self, peer: PeerId, now: Instant) {
        if let Some(e) = self.peers.get_mut(&peer) {
            e.connected = false;
            e.seen = now;
            if !e.addrs.is_empty() {
                e.retry_at = Some(now + FIRST_RETRY);
            }
        }
    }

    /// Forgets `peer` (unless it is a seed): a peer with no part in the
    /// mesh is not dialled again after it leaves, so that a stranger's
    /// announced addresses cannot make this node dial them.
    pub(super) fn forget(&mut self, peer: PeerId) {
        if self.peers.get(&peer).is_some_and(|e| !e.seed) {
            self.peers.remove(&peer);
        }
    }

    /// A dial of `peer` failed: try again later, or forget it after
    /// [`FORGET_AFTER`] failures (never a seed).
    pub(super) fn dial_failed(&mut self, peer: PeerId, now: Instant) {
        let Some(e) = self.peers.get_mut(&peer) else {
            return;
        };
        if e.connected {
            return; // another connection is up
        }
        e.failures = e.failures.saturating_add(1);
        if e.failures >= FORGET_AFTER && !e.seed {
            self.peers.remove(&peer);
            return;
        }
        e.retry_at = Some(now + backoff(e.failures));
    }

    /// Peers to dial now, with their addresses; each is dialed once until
    /// [`AddressBook::connected`] or [`AddressBook::dial_failed`] says how
    /// it went.
    pub(super) fn due(&mut self, now: Instant) -> Vec<(PeerId, Vec<Multiaddr>)> {
        let mut out = Vec::new();
        for (peer, e) in &mut self.peers {
            if !e.connected && e.retry_at.is_some_and(|t| t <= now) {
                e.retry_at = None;
                out.push((*peer, e.addrs.iter().cloned().collect()));
            }
        }
        out.sort_by_key(|(p, _)| *p);
        out
    }

    /// When [`AddressBook::due`] next has something.
    pub(super) fn next_due(&self) -> Option<Instant> {
        self.peers
            .values()
            .filter(|e| !e.connected)
            .filter_map(|e| e.retry_at)
            .min()
    }

    /// How many peers are known.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.peers.len()
    }

    fn entry(&mut self, peer: PeerId, now: Instant) -> &mut Entry {
        if !self.peers.contains_key(&peer) && self.peers.len() >= MAX_PEERS {
            self.forget_one();
        }
        self.peers.entry(peer).or_insert_with(|| Entry {
            addrs: VecDeque::new(),
            connected: false,
            failures: 0,
            retry_at: None,
            seed: false,
            seen: now,
        })
    }

    /// Forgets the unconnected, non-seed peer seen longest ago.
    fn forget_one(&mut self) {
        let oldest = self
            .peers
            .iter()
            .filter(|(_, e)| !e.connected && !e.seed)
            .min_by_key(|(p, e)| (e.seen, **p))
            .map(|(p, _)| *p);
        if let Some(p) = oldest {
            self.peers.remove(&p);
        }
    }
}

/// The wait after `failures` failed dials in a row.
fn backoff(failures: u32) -> Duration {
    FIRST_RETRY.saturating_mul(1 << failures.min(16)).min(MAX_RETRY)
}

/// An address without its `/p2p/…` suffix (the peer id is kept apart).
fn strip_p2p(mut a: Multiaddr) -> Multiaddr {
    if matches!(a.iter().last(), Some(libp2p::multiaddr::Protocol::P2p(_))) {
        a.pop();
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u8) -> PeerId {
        crate::keypair_from_seed(u64::from(n)).public().to_peer_id()
    }

    fn addr(port: u16) -> Multiaddr {
        format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap()
    }

    #[test]
    fn a_lost_peer_is_dialed_again_soon_then_with_backoff_until_back() {
        let t0 = Instant::now();
        let mut book = AddressBook::default();
        let p = peer(1);
        book.learn(p, [addr(4001)], t0);
        book.connected(p, t0);
        assert_eq!(book.next_due(), None, "connected: nothing to dial");
        book.disconnected(p, t0);
        assert_eq!(book.next_due(), Some(t0 + FIRST_RETRY));
        assert!(book.due(t0).is_empty());
        let due = book.due(t0 + FIRST_RETRY);
        assert_eq!(due, [(p, vec![addr(4001)])]);
        assert!(
            book.due(t0 + MAX_RETRY).is_empty(),
            "one dial in flight at a time"
        );
        let mut now = t0 + FIRST_RETRY;
        let mut waits = vec![];
        for _ in 0..8 {
            book.dial_failed(p, now);
            let next = book.next_due().expect("retried");
            waits.push(next - now);
            now = next;
            assert_eq!(book.due(now).len(), 1);
        }
        assert_eq!(waits[0], FIRST_RETRY * 2);
        assert!(waits.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(*waits.last().unwrap(), MAX_RETRY);
        book.connected(p, now);
        assert_eq!(book.next_due(), None);
    }

    #[test]
    fn an_unreachable_peer_is_forgotten_but_a_seed_never() {
        let t0 = Instant::now();
        let mut book = AddressBook::default();
        let (lost, seed) = (peer(1), peer(2));
        book.learn(lost, [addr(4001)], t0);
        book.seed(seed, addr(4002), t0);
        for p in [lost, seed] {
            book.connected(p, t0);
            book.disconnected(p, t0);
        }
        for _ in 0..FORGET_AFTER {
            for p in [lost, seed] {
                book.dial_failed(p, t0);
            }
        }
        assert_eq!(book.len(), 1);
        let later = t0 + MAX_RETRY;
        assert_eq!(book.due(later), [(seed, vec![addr(4002)])]);
    }

    #[test]
    fn addresses_are_bounded_newest_first_and_without_the_peer_id() {
        let t0 = Instant::now();
        let mut book = AddressBook::default();
        let p = peer(1);
        let with_id = addr(4000).with_p2p(p).unwrap();
        book.learn(p, [with_id], t0);
        book.learn(p, (4001..4020).map(addr), t0);
        book.learn(p, [addr(4000)], t0);
        book.connected(p, t0);
        book.disconnected(p, t0);
        let (_, addrs) = &book.due(t0 + FIRST_RETRY)[0];
        assert_eq!(addrs.len(), MAX_ADDRS);
        assert_eq!(addrs[0], addr(4000), "newest first, stripped of /p2p");
        assert_eq!(addrs[1], addr(4019));
    }

    #[test]
    fn the_book_is_bounded_and_forgets_the_longest_unreachable_first() {
        let t0 = Instant::now();
        let mut book = AddressBook::default();
        for i in 0..MAX_PEERS as u64 {
            let p = crate::keypair_from_seed(1000 + i).public().to_peer_id();
            book.learn(p, [addr(5000)], t0 + Duration::from_millis(i));
        }
        let first = crate::keypair_from_seed(1000).public().to_peer_id();
        let newcomer = peer(9);
        book.learn(newcomer, [addr(6000)], t0 + Duration::from_secs(1));
        assert_eq!(book.len(), MAX_PEERS);
        assert!(!book.peers.contains_key(&first), "the one seen longest ago went");
        assert!(book.peers.contains_key(&newcomer));
    }

    #[test]
    fn a_peer_without_addresses_is_not_dialed() {
        let t0 = Instant::now();
        let mut book = AddressBook::default();
        let p = peer(1);
        book.connected(p, t0); // an inbound connection: no listen address known
        book.disconnected(p, t0);
        assert_eq!(book.next_due(), None);
    }
}
