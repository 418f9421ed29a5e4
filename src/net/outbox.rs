//! Results on their way to the admin, kept until the admin acknowledges
//! them. A pure unit: the loop tells it what happened and when, and it says
//! what to send.
//!
//! A batch that fails (admin unreachable, not the admin, refused) goes back
//! to waiting and is sent again after a backoff that doubles per failure
//! (200 ms up to 5 s), or at once when a new admin appears (with what was in
//! flight to the old one). Everything held
//! here still counts as held for lease renewals, so the admin does not run
//! a finished task again while its result is on the way.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::scheduler::Report;
use crate::task::TaskId;

const FIRST_RETRY: Duration = Duration::from_millis(200);
const MAX_RETRY: Duration = Duration::from_secs(5);
/// Batches in flight at once. Results that finish meanwhile wait for an
/// answer and go together in the next batch: under load a batch carries
/// every result of a round trip, and a lone result still goes at once.
pub(crate) const WINDOW: usize = 2;

/// Results not yet acknowledged by an admin.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    /// Waiting to be sent.
    waiting: Vec<Report>,
    /// Sent, by batch number, awaiting the admin's answer.
    in_flight: BTreeMap<u64, Vec<Report>>,
    next_batch: u64,
    failures: u32,
    /// When waiting results may be sent again after a failure.
    retry_at: Option<Duration>,
}

impl Outbox {
    /// New results to deliver.
    pub(crate) fn push(&mut self, reports: Vec<Report>) {
        self.waiting.extend(reports);
    }

    /// Batches to send now, each at most `budget` bytes of outputs (a
    /// single larger result goes alone), with their batch numbers: as many
    /// as the [`WINDOW`] has room for.
    pub(crate) fn due(&mut self, now: Duration, budget: usize) -> Vec<(u64, Vec<Report>)> {
        if self.next_deadline().is_none_or(|t| t > now) {
            return Vec::new();
        }
        self.retry_at = None;
        let room = WINDOW - self.in_flight.len();
        let waiting = std::mem::take(&mut self.waiting);
        let mut batches = crate::protocol::chunk_by_size(waiting, budget, report_size);
        for later in batches.drain(room.min(batches.len())..) {
            self.waiting.extend(later);
        }
        batches
            .into_iter()
            .map(|b| {
                self.next_batch += 1;
                self.in_flight.insert(self.next_batch, b.clone());
                (self.next_batch, b)
            })
            .collect()
    }

    /// The admin took batch `n`.
    pub(crate) fn acked(&mut self, n: u64) {
        if self.in_flight.remove(&n).is_some() {
            self.failures = 0;
        }
    }

    /// Batch `n` did not reach an admin: it waits for the next try.
    pub(crate) fn failed(&mut self, n: u64, now: Duration) {
        let Some(b) = self.in_flight.remove(&n) else {
            return;
        };
        self.waiting.extend(b);
        self.failures += 1;
        let delay = FIRST_RETRY.saturating_mul(1 << self.failures.saturating_sub(1).min(8));
        self.retry_at = Some(now + delay.min(MAX_RETRY));
    }

    /// A new admin is known: everything not yet acknowledged goes to it at
    /// once, batches in flight to the old admin included (it may be paused
    /// or cut off, and answer only when the request times out; a result
    /// both take is recorded once).
    pub(crate) fn admin_changed(&mut self) {
        self.retry_at = None;
        self.failures = 0;
        for (_, b) in std::mem::take(&mut self.in_flight) {
            self.waiting.extend(b);
        }
    }

    /// When waiting results are due, if any are; none while the window is
    /// full (an answer or a failure makes room).
    pub(crate) fn next_deadline(&self) -> Option<Duration> {
        if self.waiting.is_empty() || self.in_flight.len() >= WINDOW {
            return None;
        }
        Some(self.retry_at.unwrap_or_default())
    }

    /// Every attempt whose result is held here.
    pub(crate) fn held(&self) -> impl Iterator<Item = (TaskId, u32)> + '_ {
        let flying = self.in_flight.values().flatten();
        self.waiting.iter().chain(flying).map(|r| (r.task, r.attempt))
    }

    /// Results not yet acknowledged.
    pub(crate) fn len(&self) -> usize {
        self.waiting.len() + self.in_flight.values().map(Vec::len).sum::<usize>()
    }
}

/// Roughly how many bytes a result takes on the wire.
pub(crate) fn report_size(r: &Report) -> usize {
    let body = match &r.outcome {
        Ok(p) => p.len(),
        Err(f) => f.message.len(),
    };
    body + r.worker.len() + 64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::Payload;

    fn report(n: u8, bytes: usize) -> Report {
        Report {
            task: TaskId(uuid::Uuid::from_u128(n as u128)),
            attempt: 1,
            worker: "w".into(),
            outcome: Ok(Payload::from_bytes(vec![0; bytes])),
            run_ms: 1,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn failed_batches_come_back_after_a_growing_backoff_until_acked() {
        let mut o = Outbox::default();
        o.push(vec![report(1, 10)]);
        let sent = o.due(ms(0), 1000);
        assert_eq!(sent.len(), 1);
        assert_eq!(o.held().count(), 1, "in flight still counts as held");
        o.failed(sent[0].0, ms(0));
        assert!(o.due(ms(100), 1000).is_empty(), "backing off");
        let again = o.due(ms(200), 1000);
        assert_eq!(again.len(), 1);
        o.failed(again[0].0, ms(200));
        assert!(o.due(ms(500), 1000).is_empty(), "second backoff is 400 ms");
        o.admin_changed();
        let third = o.due(ms(500), 1000);
        o.acked(third[0].0);
        assert_eq!(o.len(), 0);
        assert_eq!(o.next_deadline(), None);
    }

    #[test]
    fn batches_are_cut_to_the_budget() {
        let mut o = Outbox::default();
        o.push(vec![
            report(1, 600),
            report(2, 600),
            report(3, 10),
            report(4, 5000),
        ]);
        let first = o.due(ms(0), 1000);
        let sizes: Vec<usize> = first.iter().map(|b| b.1.len()).collect();
        assert_eq!(sizes, [1, 2], "as many batches as the window holds");
        o.acked(first[0].0);
        let rest = o.due(ms(0), 1000);
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].1[0].task, report(4, 0).task, "in order");
    }

    #[test]
    fn results_that_finish_while_the_window_is_full_go_together() {
        let mut o = Outbox::default();
        let mut sent = Vec::new();
        for n in 0..WINDOW as u8 {
            o.push(vec![report(n, 10)]);
            sent.extend(o.due(ms(0), 1 << 20));
        }
        assert_eq!(sent.len(), WINDOW, "lone results go at once");
        for n in 10..20 {
            o.push(vec![report(n, 10)]);
            assert!(o.due(ms(0), 1 << 20).is_empty(), "the window is full");
        }
        assert_eq!(o.next_deadline(), None, "nothing to wake up for");
        assert_eq!(o.held().count(), WINDOW + 10, "waiting still counts as held");
        o.acked(sent[0].0);
        assert_eq!(o.next_deadline(), Some(ms(0)));
        let next = o.due(ms(0), 1 << 20);
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].1.len(), 10, "one batch for all of them");
    }

    #[test]
    fn a_new_admin_gets_what_was_in_flight_to_the_old_one_at_once() {
        let mut o = Outbox::default();
        o.push(vec![report(1, 10), report(2, 10)]);
        let sent = o.due(ms(0), 1 << 20);
        assert_eq!(sent.len(), 1);
        o.admin_changed();
        let again = o.due(ms(1), 1 << 20);
        assert_eq!(again.len(), 1, "sent again at once");
        assert_eq!(again[0].1.len(), 2);
        // The old admin's late answers change nothing.
        o.acked(sent[0].0);
        o.failed(sent[0].0, ms(2));
        assert_eq!(o.held().count(), 2, "held until the new admin answers");
        o.acked(again[0].0);
        assert_eq!(o.held().count(), 0);
    }
}
