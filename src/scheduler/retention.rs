//! Eviction of finished tasks after their retention (count, age, bytes),
//! oldest first, never while an unfinished dependent may still need one.

use std::time::Duration;

use super::events::Event;
use super::state::{Slot, Timer, TimerKind};
use super::Scheduler;
use crate::task::TaskId;

/// Most tasks evicted in one step, bounding the work of any one input;
/// a step that inserted or finished more tasks may evict as many (each task
/// is inserted once and finished once, so eviction keeps pace with any
/// rate of submission).
const MAX_EVICT_PER_STEP: usize = 4096;

impl Scheduler {
    /// Sets the retention timer at `at`, unless it is set there already
    /// (`retain` runs every step; one timer is enough).
    fn retention_timer(&mut self, at: Duration) {
        if self.retention_due != Some(at) {
            self.timers.insert(Timer {
                at,
                kind: TimerKind::Retention,
                slot: Slot(u32::MAX),
                id: TaskId(uuid::Uuid::nil()),
            });
            self.retention_due = Some(at);
        }
    }

    /// Evicts finished tasks past their retention and sets a timer for the
    /// next one to age out.
    pub(super) fn retain(&mut self, now: Duration) {
        let r = &self.cfg.retention;
        let (max_tasks, max_bytes, max_age, min_age) = (r.max_tasks, r.max_bytes, r.max_age, r.min_age);
        let mut ids = Vec::new();
        // A task can be in line twice (finished, then needed again by a new
        // dependent that finished too): choose it once.
        let mut chosen = foldhash::HashSet::default();
        let limit = MAX_EVICT_PER_STEP.max(std::mem::take(&mut self.churn));
        let mut finished = self.index.len() - self.unfinished;
        let mut bytes = self.finished_bytes;
        while let Some(&(slot, id)) = self.evictable.front() {
            // Entries that no longer match (evicted, slot reused, needed
            // again by a new dependent) are dropped from the line.
            let e = &self.tasks[slot];
            if e.task.id != id || !e.phase.is_final() || e.holders > 0 || chosen.contains(&id) {
                self.evictable.pop_front();
                continue;
            }
            let finished_at = e.finished_at.unwrap_or(now);
            if self.watched.contains_key(&id) {
                // A client waits on it: kept until it has its answer
                // (`unwatch` puts it back in line).
                self.evictable.pop_front();
                continue;
            }
            if finished_at + min_age > now {
                // Too young: waiting clients may not have read it yet.
                self.retention_timer(finished_at + min_age);
                break;
            }
            let over = finished > max_tasks || bytes > max_bytes;
            let old = finished_at + max_age <= now;
            if !(over || old) {
                self.retention_timer(finished_at + max_age);
                break;
            }
            if ids.len() >= limit {
                // More is due: come back at once, in a step of its own.
                self.retention_timer(now);
                break;
            }
            self.evictable.pop_front();
            finished -= 1;
            bytes = bytes.saturating_sub(e.bytes());
            chosen.insert(id);
            ids.push(id);
        }
        if !ids.is_empty() {
            self.emit(Event::TasksEvicted { ids });
        }
    }
}
