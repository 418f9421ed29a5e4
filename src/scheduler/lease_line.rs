//! The line of first lease checks. Every award starts a lease of the same
//! length, so checks pushed in award order come due in that order: a queue
//! does what a sorted set would, at a fraction of the cost on the award
//! path. An attempt that ends voids its entry in place (entries are found by
//! sequence number), and voided entries leave from the front without the
//! scheduler looking at their tasks. A renewed lease is checked again
//! through the timer set, not here.

use std::collections::VecDeque;
use std::time::Duration;

use super::state::Slot;

/// A slot no task has: marks a voided entry.
const VOID: Slot = Slot(u32::MAX);

/// One pending check: 16 bytes.
#[derive(Clone, Copy, Debug)]
struct Check {
    /// Due time in nanoseconds.
    due_ns: u64,
    slot: Slot,
    attempt: u32,
}

/// A check that came due: the attempt `attempt` of the task in `slot`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Due {
    pub(super) seq: u64,
    pub(super) slot: Slot,
    pub(super) attempt: u32,
}

/// The line. See the module documentation.
#[derive(Debug, Default)]
pub(super) struct LeaseLine {
    checks: VecDeque<Check>,
    /// Sequence number of the front entry.
    head: u64,
}

impl LeaseLine {
    /// Adds a check due at `due` (or, when the clock stepped back, at the
    /// latest due time already in line, to keep the order); returns its
    /// sequence number for [`LeaseLine::void`].
    pub(super) fn push(&mut self, due: Duration, slot: Slot, attempt: u32) -> u64 {
        // The front is never a voided entry (`void` and `pop` see to it).
        let last = self.checks.back().map_or(0, |c| c.due_ns);
        let due_ns = u64::try_from(due.as_nanos()).unwrap_or(u64::MAX).max(last);
        self.checks.push_back(Check {
            due_ns,
            slot,
            attempt,
        });
        self.head + self.checks.len() as u64 - 1
    }

    /// Voids the check `seq` (its attempt ended); a no-op for a check that
    /// already left.
    pub(super) fn void(&mut self, seq: u64) {
        let Some(i) = seq.checked_sub(self.head) else {
            return;
        };
        if let Some(c) = usize::try_from(i).ok().and_then(|i| self.checks.get_mut(i)) {
            c.slot = VOID;
        }
        self.skip_voided();
    }

    /// When the front check is due.
    pub(super) fn next_due(&self) -> Option<Duration> {
        self.checks.front().map(|c| Duration::from_nanos(c.due_ns))
    }

    /// Takes the front check if it is due by `now` (voided ones never show).
    pub(super) fn pop_due(&mut self, now: Duration) -> Option<Due> {
        let c = *self.checks.front()?;
        if Duration::from_nanos(c.due_ns) > now {
            return None;
        }
        let seq = self.head;
        self.pop();
        Some(Due {
            seq,
            slot: c.slot,
            attempt: c.attempt,
        })
    }

    fn pop(&mut self) {
        if self.checks.pop_front().is_some() {
            self.head += 1;
        }
        self.skip_voided();
    }

    /// Drops voided entries from the front.
    fn skip_voided(&mut self) {
        while self.checks.front().is_some_and(|c| c.slot == VOID) {
            self.checks.pop_front();
            self.head += 1;
        }
    }

    /// Entries in line, voided ones behind a live one included.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.checks.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn checks_come_due_in_order_and_voided_ones_never_show() {
        let mut line = LeaseLine::default();
        let a = line.push(ms(10), Slot(1), 1);
        let b = line.push(ms(20), Slot(2), 1);
        let c = line.push(ms(30), Slot(3), 2);
        assert_eq!((a, b, c), (0, 1, 2));
        line.void(b);
        assert_eq!(line.pop_due(ms(9)), None);
        assert_eq!(line.next_due(), Some(ms(10)));
        let due = line.pop_due(ms(40)).expect("a is due");
        assert_eq!(
            due,
            Due {
                seq: 0,
                slot: Slot(1),
                attempt: 1
            }
        );
        // b was voided: c comes next.
        assert_eq!(line.pop_due(ms(40)).map(|d| d.slot), Some(Slot(3)));
        assert_eq!(line.pop_due(ms(40)), None);
        assert_eq!(line.len(), 0);
    }

    #[test]
    fn voiding_the_front_empties_the_line_without_looking_at_tasks() {
        let mut line = LeaseLine::default();
        let seqs: Vec<u64> = (0..1000).map(|i| line.push(ms(i), Slot(i as u32), 1)).collect();
        for s in seqs {
            line.void(s);
        }
        assert_eq!(line.len(), 0);
        assert_eq!(line.next_due(), None);
        // Sequence numbers go on from where they were.
        assert_eq!(line.push(ms(5), Slot(7), 1), 1000);
        line.void(999); // already gone: nothing happens
        line.void(5000); // never pushed: nothing happens
        assert_eq!(line.len(), 1);
    }

    #[test]
    fn a_clock_that_steps_back_keeps_the_line_sorted() {
        let mut line = LeaseLine::default();
        line.push(ms(100), Slot(1), 1);
        line.push(ms(50), Slot(2), 1);
        assert_eq!(line.pop_due(ms(60)), None, "the later check waits for the front");
        assert_eq!(line.pop_due(ms(100)).map(|d| d.slot), Some(Slot(1)));
        assert_eq!(line.pop_due(ms(100)).map(|d| d.slot), Some(Slot(2)));
    }

    #[test]
    fn voids_behind_a_live_check_stay_until_it_leaves() {
        let mut line = LeaseLine::default();
        line.push(ms(10), Slot(1), 1);
        let later: Vec<u64> = (0..10)
            .map(|i| line.push(ms(20 + i), Slot(2 + i as u32), 1))
            .collect();
        for s in later {
            line.void(s);
        }
        assert_eq!(line.len(), 11);
        assert!(line.pop_due(ms(10)).is_some());
        assert_eq!(line.len(), 0, "the voided ones left with it");
    }
}
