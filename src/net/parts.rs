//! Raft messages too large for one frame (a snapshot of a large ledger, an
//! entry with a large batch), carried in parts: a pure unit on each side.
//!
//! - **Sending** ([`PartsOut`]): one message in transit per peer, its parts
//!   sent one at a time, each after the previous one was answered, so they
//!   arrive in order. At most one more waits behind it (a newer one
//!   replaces it: Raft sends again what is lost).
//! - **Receiving** ([`PartsIn`]): parts are appended in order to one
//!   assembly per peer, at most [`MAX_ASSEMBLIES`] at a time; nothing is
//!   allocated from the claimed total, which is checked against
//!   [`MAX_ASSEMBLED`]; a part out of order drops the assembly.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// Bytes per part: well within a frame.
pub(crate) const PART_BYTES: usize = 4 << 20;
/// Largest message assembled from parts: a snapshot at its limit
/// ([`crate::scheduler::MAX_SNAPSHOT`]) and room for its envelope.
pub(crate) const MAX_ASSEMBLED: u64 = (crate::scheduler::MAX_SNAPSHOT as u64) + (16 << 20);
/// Peers whose messages may be assembled at once.
pub(crate) const MAX_ASSEMBLIES: usize = 4;

/// One part: message `seq`, bytes `offset..offset + bytes.len()` of
/// `total`.
pub(crate) use crate::protocol::RaftPart as Part;

struct Outgoing {
    seq: u64,
    bytes: Vec<u8>,
    /// Bytes sent and answered.
    done: usize,
}

/// The sending side (see the module documentation).
pub(crate) struct PartsOut<P> {
    next_seq: u64,
    /// Per peer: the message in transit (its current part sent), and the
    /// one waiting behind it.
    queues: HashMap<P, VecDeque<Outgoing>>,
}

impl<P: Copy + Eq + Hash> PartsOut<P> {
    pub(crate) fn new() -> Self {
        PartsOut {
            next_seq: 1,
            queues: HashMap::new(),
        }
    }

    /// A message for `peer`; returns its first part when nothing is in
    /// transit to that peer (send it), else `None` (it waits; an older
    /// waiting one is dropped).
    pub(crate) fn push(&mut self, peer: P, bytes: Vec<u8>) -> Option<Part> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let q = self.queues.entry(peer).or_default();
        q.truncate(1);
        q.push_back(Outgoing { seq, bytes, done: 0 });
        (q.len() == 1).then(|| part_of(&q[0]))
    }

    /// The part in transit to `peer` was taken (`ok`) or failed; returns
    /// the next part to send, if any. A failed part drops its message.
    pub(crate) fn answered(&mut self, peer: P, ok: bool) -> Option<Part> {
        let q = self.queues.get_mut(&peer)?;
        let front = q.front_mut()?;
        let sent = PART_BYTES.min(front.bytes.len() - front.done);
        front.done += sent;
        if !ok || front.done >= front.bytes.len() {
            q.pop_front();
        }
        match q.front() {
            Some(next) => Some(part_of(next)),
            None => {
                self.queues.remove(&peer);
                None
            }
        }
    }

    /// Messages in transit or waiting, over all peers.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.queues.values().map(VecDeque::len).sum()
    }
}

fn part_of(o: &Outgoing) -> Part {
    let end = (o.done + PART_BYTES).min(o.bytes.len());
    Part {
        seq: o.seq,
        offset: o.done as u64,
        total: o.bytes.len() as u64,
        bytes: o.bytes[o.done..end].to_vec(),
    }
}

/// Why a part was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PartRefused {
    /// The claimed total is beyond [`MAX_ASSEMBLED`], or a part is larger
    /// than [`PART_BYTES`], empty, or past the total.
    TooLarge,
    /// Not the next part of the message being assembled (it was dropped).
    OutOfOrder,
    /// Too many peers are sending messages in parts.
    Busy,
}

struct Assembly {
    seq: u64,
    total: u64,
    bytes: Vec<u8>,
}

/// The receiving side (see the module documentation).
pub(crate) struct PartsIn<P> {
    assemblies: HashMap<P, Assembly>,
}

impl<P: Copy + Eq + Hash> PartsIn<P> {
    pub(crate) fn new() -> Self {
        PartsIn {
            assemblies: HashMap::new(),
        }
    }

    /// A part from `peer`: the whole message once its last part arrived.
    pub(crate) fn receive(&mut self, peer: P, part: Part) -> Result<Option<Vec<u8>>, PartRefused> {
        let Part {
            seq,
            offset,
            total,
            ref bytes,
        } = part;
        let end = offset.checked_add(bytes.len() as u64);
        if total > MAX_ASSEMBLED
            || bytes.is_empty()
            || bytes.len() > PART_BYTES
            || end.is_none_or(|e| e > total)
        {
            self.assemblies.remove(&peer);
            return Err(PartRefused::TooLarge);
        }
        if offset == 0 {
            if !self.assemblies.contains_key(&peer) && self.assemblies.len() >= MAX_ASSEMBLIES {
                return Err(PartRefused::Busy);
            }
            let a = Assembly {
                seq,
                total,
                bytes: Vec::new(),
            };
            self.assemblies.insert(peer, a);
        }
        let Some(a) = self.assemblies.get_mut(&peer) else {
            return Err(PartRefused::OutOfOrder);
        };
        if a.seq != seq || a.total != total || a.bytes.len() as u64 != offset {
            self.assemblies.remove(&peer);
            return Err(PartRefused::OutOfOrder);
        }
        a.bytes.extend_from_slice(bytes);
        if a.bytes.len() as u64 == a.total {
            return Ok(self.assemblies.remove(&peer).map(|a| a.bytes));
        }
        Ok(None)
    }

    /// A peer went away: its assembly is dropped.
    pub(crate) fn forget(&mut self, peer: &P) {
        self.assemblies.remove(peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(n: usize, fill: u8) -> Vec<u8> {
        (0..n).map(|i| fill.wrapping_add(i as u8)).collect()
    }

    /// Sends everything queued for peer 1 through the receiver, in order.
    fn deliver(out: &mut PartsOut<u8>, inn: &mut PartsIn<u8>, first: Option<Part>) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        let mut next = first;
        while let Some(part) = next {
            if let Some(whole) = inn.receive(1, part).expect("taken") {
                got.push(whole);
            }
            next = out.answered(1, true);
        }
        got
    }

    #[test]
    fn a_large_message_arrives_whole_in_order() {
        let (mut out, mut inn) = (PartsOut::new(), PartsIn::new());
        let big = message(3 * PART_BYTES + 17, 3);
        let first = out.push(1, big.clone());
        assert_eq!(first.as_ref().map(|p| p.bytes.len()), Some(PART_BYTES));
        assert_eq!(deliver(&mut out, &mut inn, first), vec![big]);
        assert_eq!(out.len(), 0);
    }

    #[test]
    fn one_message_waits_behind_the_one_in_transit_and_a_newer_replaces_it() {
        let (mut out, mut inn) = (PartsOut::new(), PartsIn::new());
        let first = out.push(1, message(PART_BYTES + 1, 1));
        assert!(out.push(1, message(10, 2)).is_none(), "waits");
        assert!(out.push(1, message(20, 3)).is_none(), "replaces the waiting one");
        let got = deliver(&mut out, &mut inn, first);
        assert_eq!(got, vec![message(PART_BYTES + 1, 1), message(20, 3)]);
        // Another peer is independent.
        assert!(out.push(2, message(5, 4)).is_some());
    }

    #[test]
    fn a_failed_part_drops_its_message_and_the_next_goes() {
        let (mut out, mut inn) = (PartsOut::new(), PartsIn::new());
        let first = out.push(1, message(2 * PART_BYTES, 1)).unwrap();
        out.push(1, message(10, 2));
        assert_eq!(inn.receive(1, first), Ok(None));
        let next = out.answered(1, false).expect("the waiting message");
        assert_eq!((next.offset, next.total), (0, 10));
        assert_eq!(
            inn.receive(1, next),
            Ok(Some(message(10, 2))),
            "a new message restarts the assembly"
        );
    }

    #[test]
    fn parts_from_a_stranger_cannot_make_the_receiver_allocate_or_mix_messages() {
        let mut inn = PartsIn::<u8>::new();
        let part = |seq, offset, total, n| Part {
            seq,
            offset,
            total,
            bytes: vec![0; n],
        };
        // Claims beyond the limit, oversize or empty parts, past the total.
        assert_eq!(
            inn.receive(1, part(1, 0, u64::MAX, 1)),
            Err(PartRefused::TooLarge)
        );
        assert_eq!(
            inn.receive(1, part(1, 0, 10, PART_BYTES + 1)),
            Err(PartRefused::TooLarge)
        );
        assert_eq!(inn.receive(1, part(1, 0, 10, 0)), Err(PartRefused::TooLarge));
        assert_eq!(inn.receive(1, part(1, 8, 10, 4)), Err(PartRefused::TooLarge));
        assert_eq!(
            inn.receive(1, part(1, u64::MAX, 10, 4)),
            Err(PartRefused::TooLarge)
        );
        // A middle part with no start, a gap, another message's part.
        assert_eq!(inn.receive(1, part(1, 4, 10, 2)), Err(PartRefused::OutOfOrder));
        assert_eq!(inn.receive(1, part(1, 0, 10, 4)), Ok(None));
        assert_eq!(inn.receive(1, part(2, 4, 10, 2)), Err(PartRefused::OutOfOrder));
        assert_eq!(
            inn.receive(1, part(1, 4, 10, 6)),
            Err(PartRefused::OutOfOrder),
            "dropped"
        );
        // The claimed total is never allocated up front.
        assert_eq!(inn.receive(1, part(1, 0, MAX_ASSEMBLED, 1)), Ok(None));
        assert!(inn.assemblies[&1].bytes.capacity() < 1 << 20);
        // A few peers at a time.
        for p in 2..=MAX_ASSEMBLIES as u8 {
            assert_eq!(inn.receive(p, part(1, 0, 10, 1)), Ok(None));
        }
        assert_eq!(inn.receive(99, part(1, 0, 10, 1)), Err(PartRefused::Busy));
        inn.forget(&2);
        assert_eq!(inn.receive(99, part(1, 0, 10, 1)), Ok(None));
    }
}
