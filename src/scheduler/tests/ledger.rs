//! The ledger as text: everything `apply` maintains, rendered in a stable
//! order, so that two schedulers fed the same events can be compared, and
//! the replay check built on it.
//!
//! Left out on purpose: the auction layer (`Soft`, queues, parked tasks,
//! open auctions, reservations, leases and their timers), the table's slot
//! layout, and the eviction line (its stale entries are dropped by the
//! handlers, not by `apply`).

use std::fmt::Write;

use super::*;
use crate::scheduler::state::{Entry, TimerKind};

/// The durable state of `s` as text. Ledger timers due after `now` are
/// included (those due earlier may already have fired in one scheduler and
/// not in the other).
pub(super) fn render_ledger(s: &Scheduler, now: Duration) -> String {
    let mut out = String::new();
    let mut ids: Vec<&TaskId> = s.index.keys().collect();
    ids.sort();
    for id in ids {
        render_task(s, &s.tasks[s.index[id]], &mut out);
    }
    for (i, w) in s.workers.iter().enumerate() {
        let role = role_name(s, w.role);
        let _ = writeln!(
            out,
            "worker {i}: {} {:?} role {role} load {} present {}",
            w.node, w.spec, w.load, w.present
        );
    }
    let mut holding: Vec<_> = s.holding.iter().collect();
    holding.sort_by_key(|(w, _)| **w);
    for (w, slots) in holding {
        let mut held: Vec<TaskId> = slots.iter().map(|&slot| s.tasks[slot].task.id).collect();
        held.sort();
        let _ = writeln!(out, "holding {w:?}: {held:?}");
    }
    let _ = writeln!(out, "by node: {:?}", s.by_node);
    for (name, &role) in sorted(&s.role_ids) {
        let _ = writeln!(out, "role {name}: {:?}", s.roles[role].workers);
    }
    let mut evicted: Vec<_> = s.evicted.iter().collect();
    evicted.sort();
    let _ = writeln!(
        out,
        "unfinished {} finished bytes {}",
        s.unfinished, s.finished_bytes
    );
    let _ = writeln!(out, "evicted {evicted:?} in order {:?}", s.evicted_order);
    let _ = writeln!(out, "recent {:?}", s.recent);
    let ledger_timer = |k: &TimerKind| {
        matches!(
            k,
            TimerKind::Retry | TimerKind::QueueTimeout | TimerKind::Deadline | TimerKind::RunTimeout { .. }
        )
    };
    let timers = s.timers.iter().filter(|t| t.at > now && ledger_timer(&t.kind));
    let timers = timers.map(|t| (t.at, t.kind, t.id));
    let _ = writeln!(out, "timers {:?}", timers.collect::<Vec<_>>());
    out
}

fn render_task(s: &Scheduler, e: &Entry, out: &mut String) {
    let name = |slot: &state::Slot| s.tasks[*slot].task.id;
    let deps: Vec<TaskId> = e.deps.iter().map(name).collect();
    let dependents: Vec<TaskId> = e.dependents.iter().map(name).collect();
    let _ = writeln!(out, "task {:?}", e.task);
    let _ = writeln!(
        out,
        "  role {} deps {deps:?} dependents {dependents:?} holders {}",
        role_name(s, e.role),
        e.holders
    );
    let _ = writeln!(
        out,
        "  phase {:?} awards {} run_ms {:?}",
        e.phase, e.awards, e.run_ms
    );
    let _ = writeln!(
        out,
        "  submitted {:?} ready {:?} finished {:?}",
        e.submitted_at, e.ready_at, e.finished_at
    );
    for a in &e.history {
        let _ = writeln!(out, "  attempt {a:?}");
    }
    let _ = writeln!(out, "  award {:?}", e.award);
}

fn role_name(s: &Scheduler, role: state::RoleId) -> &str {
    let named = s.role_ids.iter().find(|(_, &r)| r == role);
    named.map_or("?", |(name, _)| name.as_str())
}

fn sorted<K: Ord, V, S>(map: &std::collections::HashMap<K, V, S>) -> Vec<(&K, &V)> {
    let mut v: Vec<_> = map.iter().collect();
    v.sort_by(|a, b| a.0.cmp(b.0));
    v
}

/// A fresh scheduler with `s`'s configuration that has applied `events`.
pub(super) fn replay(s: &Scheduler, events: &[Event]) -> Scheduler {
    let mut fresh = Scheduler::new(s.cfg.clone());
    for e in events {
        fresh.apply(e);
    }
    fresh
}

/// Rebuilding from `events` gives `s`'s ledger, and every event survives
/// its encoding. Events are applied both borrowed (as a replica reads its
/// log) and owned (as the admin applies its own decisions), which must
/// change the same things.
pub(super) fn assert_replays(s: &Scheduler, events: &[Event], now: Duration) {
    for e in events {
        let bytes = e.encode().expect("events encode");
        assert_eq!(Event::decode(&bytes).as_ref(), Some(e), "round trip of {e:?}");
    }
    let expected = render_ledger(s, now);
    let fresh = replay(s, events);
    assert_same_text(&render_ledger(&fresh, now), &expected, "replayed ledger");
    let mut owned = Scheduler::new(s.cfg.clone());
    for e in events {
        owned.apply_event(std::borrow::Cow::Owned(e.clone()));
    }
    assert_same_text(
        &render_ledger(&owned, now),
        &expected,
        "ledger replayed from owned events",
    );
    assert_restores(s, events, now, &expected);
}

/// A snapshot taken after any prefix of `events`, restored, then fed the
/// rest, gives the same ledger as the whole log; so does a follower that
/// forgets each step's leftovers as it goes.
fn assert_restores(s: &Scheduler, events: &[Event], now: Duration, expected: &str) {
    for cut in [events.len() / 3, events.len() * 2 / 3] {
        let mut before = Scheduler::new(s.cfg.clone());
        for e in &events[..cut] {
            before.apply(e);
            before.forget_step();
        }
        let bytes = before.snapshot().expect("snapshot encodes");
        let mut after = Scheduler::new(s.cfg.clone());
        after.restore(&bytes).expect("snapshot restores");
        assert_eq!(
            after.snapshot().expect("encodes"),
            bytes,
            "restored snapshot differs"
        );
        for e in &events[cut..] {
            after.apply(e);
        }
        let what = format!("ledger restored after {cut} of {} events", events.len());
        assert_same_text(&render_ledger(&after, now), expected, &what);
    }
}

/// Asserts two renderings are equal, showing the first line that differs.
pub(super) fn assert_same_text(a: &str, b: &str, what: &str) {
    let (la, lb): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    assert_same_log(&la, &lb, what);
}
