//! The ledger replicated with Raft (the failover work, in progress).
//!
//! The scheduler's events become entries of a Raft log kept by tikv's
//! raft-rs: its `RawNode` is a pure tick/step/ready state machine, so it
//! runs inside our event loop and our seeded simulator alike, with no
//! threads or timers of its own. The Raft leader is the admin.
//!
//! This module holds the log store so far ([`LogStore`]); the driver that
//! sits between the scheduler and the network comes next.

mod store;

pub use store::LogStore;

#[cfg(test)]
mod tests {
    //! The store under real Raft: three in-memory replicas exchange
    //! messages directly, elect a leader with pre-vote and check-quorum on,
    //! and agree on the same committed entries.

    use std::collections::VecDeque;

    use raft::eraftpb::{Entry, EntryType, Message};
    use raft::{Config, RawNode, StateRole};
    use slog::{o, Discard, Logger};

    use super::LogStore;

    struct Replica {
        node: RawNode<LogStore>,
        applied: Vec<Vec<u8>>,
    }

    fn replica(id: u64) -> Replica {
        let cfg = Config {
            id,
            election_tick: 10,
            heartbeat_tick: 2,
            pre_vote: true,
            check_quorum: true,
            ..Config::default()
        };
        let store = LogStore::with_voters(vec![1, 2, 3]);
        let node = RawNode::new(&cfg, store, &Logger::root(Discard, o!())).expect("valid config");
        Replica {
            node,
            applied: Vec::new(),
        }
    }

    /// Handles one `Ready` in the order raft-rs requires: send, persist,
    /// then send what depended on persistence, apply committed entries.
    fn handle_ready(r: &mut Replica, outbox: &mut VecDeque<Message>) {
        if !r.node.has_ready() {
            return;
        }
        let mut rd = r.node.ready();
        outbox.extend(rd.take_messages());
        let committed = rd.take_committed_entries();
        apply(r, committed);
        r.node.mut_store().append(rd.entries());
        if let Some(hs) = rd.hs() {
            r.node.mut_store().set_hard_state(hs.clone());
        }
        outbox.extend(rd.take_persisted_messages());
        let mut light = r.node.advance(rd);
        if let Some(commit) = light.commit_index() {
            r.node.mut_store().set_commit(commit);
        }
        outbox.extend(light.take_messages());
        apply(r, light.take_committed_entries());
        r.node.advance_apply();
    }

    fn apply(r: &mut Replica, entries: Vec<Entry>) {
        for e in entries {
            if e.get_entry_type() == EntryType::EntryNormal && !e.data.is_empty() {
                r.applied.push(e.data.to_vec());
            }
        }
    }

    /// Runs the replicas for `ticks` ticks, delivering every message at
    /// once, except to and from `down`.
    fn run(replicas: &mut [Replica], ticks: usize, down: Option<u64>) {
        for _ in 0..ticks {
            for r in replicas.iter_mut() {
                if Some(r.node.raft.id) != down {
                    r.node.tick();
                }
            }
            let mut outbox = VecDeque::new();
            loop {
                for r in replicas.iter_mut() {
                    if Some(r.node.raft.id) != down {
                        handle_ready(r, &mut outbox);
                    }
                }
                let Some(m) = outbox.pop_front() else { break };
                if Some(m.to) == down || Some(m.from) == down {
                    continue;
                }
                let to = replicas
                    .iter_mut()
                    .find(|r| r.node.raft.id == m.to)
                    .expect("known id");
                let _ = to.node.step(m);
            }
        }
    }

    fn leader(replicas: &[Replica]) -> Option<u64> {
        let leaders: Vec<u64> = replicas
            .iter()
            .filter(|r| r.node.raft.state == StateRole::Leader)
            .map(|r| r.node.raft.id)
            .collect();
        assert!(leaders.len() <= 1, "two leaders: {leaders:?}");
        leaders.first().copied()
    }

    #[test]
    fn three_replicas_elect_one_leader_and_agree_on_entries_across_a_failover() {
        let mut rs: Vec<Replica> = (1..=3).map(replica).collect();
        run(&mut rs, 50, None);
        let first = leader(&rs).expect("a leader within 50 ticks");
        let i = rs.iter().position(|r| r.node.raft.id == first).unwrap();
        rs[i]
            .node
            .propose(vec![], b"one".to_vec())
            .expect("the leader proposes");
        run(&mut rs, 5, None);
        for r in &rs {
            assert_eq!(r.applied, [b"one".to_vec()], "replica {}", r.node.raft.id);
        }
        // The leader goes silent: the others elect a new one, which commits.
        run(&mut rs, 60, Some(first));
        let second = rs
            .iter()
            .filter(|r| r.node.raft.id != first)
            .find(|r| r.node.raft.state == StateRole::Leader)
            .map(|r| r.node.raft.id)
            .expect("a new leader among the two left");
        let j = rs.iter().position(|r| r.node.raft.id == second).unwrap();
        rs[j]
            .node
            .propose(vec![], b"two".to_vec())
            .expect("the new leader proposes");
        run(&mut rs, 5, Some(first));
        for r in rs.iter().filter(|r| r.node.raft.id != first) {
            assert_eq!(r.applied, [b"one".to_vec(), b"two".to_vec()]);
        }
        // The old leader comes back, steps down, and catches up.
        run(&mut rs, 30, None);
        assert_eq!(
            leader(&rs),
            Some(second),
            "a returning node does not depose the leader"
        );
        for r in &rs {
            assert_eq!(
                r.applied,
                [b"one".to_vec(), b"two".to_vec()],
                "replica {}",
                r.node.raft.id
            );
        }
    }
}
