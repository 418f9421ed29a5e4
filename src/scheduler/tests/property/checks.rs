//! What the simulator asserts: at every award, after every step, and for
//! every task once the run is over.

use super::*;

/// Whether a trigger rule lets a task run, given its dependencies' statuses.
pub(super) fn fired(rule: Trigger, deps: &[TaskStatus]) -> bool {
    let done = deps.iter().all(TaskStatus::is_final);
    match rule {
        Trigger::AllSuccess => deps.iter().all(|s| *s == TaskStatus::Completed),
        Trigger::OneFailed => done && deps.contains(&TaskStatus::Failed),
        Trigger::AllDone => done,
    }
}

impl Sim {
    /// An award goes to a registered, capable worker of the task's role,
    /// when its trigger rule allows, with its dependencies' outcomes in
    /// dependency order.
    pub(super) fn check_award(&mut self, node: &NodeId, a: &Assignment) {
        let t = self.tasks[&a.task].clone();
        let w = self
            .s
            .workers()
            .into_iter()
            .find(|w| &w.node == node && w.name == a.worker);
        let w = w.unwrap_or_else(|| panic!("{a:?} went to an unregistered worker"));
        assert!(
            w.role == t.role && w.skill >= t.difficulty,
            "{a:?} to incapable {w:?}"
        );
        let earlier = self.awards.get(&a.task).map_or(0, Vec::len);
        assert_eq!(a.attempt as usize, earlier + 1, "attempts count awards");
        let deps: Vec<TaskId> = a.deps.iter().map(|d| d.id).collect();
        assert_eq!(deps, t.dependencies, "dependency outcomes in dependency order");
        // Read from the keeper: the task may have ended in the step that
        // awarded it (at its deadline, say) and been evicted with its
        // dependencies.
        let statuses = self.dep_statuses(&t);
        for d in &a.deps {
            let dep = self.keeper.report_of(&d.id, self.now).unwrap();
            let want = match (&dep.output, &dep.error) {
                (Some(o), _) => Ok(o.clone()),
                (None, Some(e)) => Err(e.to_string()),
                (None, None) => panic!("{} awarded before {} ended", t.name, dep.name),
            };
            assert_eq!((&d.outcome, &d.name), (&want, &dep.name));
        }
        let all_completed = statuses.iter().all(|s| *s == TaskStatus::Completed);
        match t.trigger {
            Trigger::OneFailed => self.count("fallback ran"),
            Trigger::AllDone if !all_completed => self.count("cleanup ran after a failure"),
            _ => {}
        }
    }

    /// Just before an award enters the ledger: the task's trigger rule
    /// fires on its dependencies' statuses.
    pub(super) fn check_rule_at_award(&self, id: &TaskId) {
        let t = &self.tasks[id];
        let statuses = self.dep_statuses(t);
        assert!(
            fired(t.trigger, &statuses),
            "{} awarded under {} with dependencies {statuses:?}",
            t.name,
            t.trigger
        );
    }

    pub(super) fn dep_statuses(&self, t: &Task) -> Vec<TaskStatus> {
        let status = |d| self.keeper.status(d).expect("dependencies are kept");
        t.dependencies.iter().map(status).collect()
    }

    /// After every step: loads within capacity, evictions only of finished
    /// tasks nothing unfinished needs, and retention limits kept.
    pub(super) fn check_step(&mut self, events: &[Event], out: &[Output]) {
        for w in self.s.workers() {
            // Its slots, and its queue for awards from its standing bid.
            let specs = self.nodes.get(&w.node).map_or(&[][..], Vec::as_slice);
            let queue = specs.iter().find(|s| s.name == w.name).map_or(0, |s| s.queue);
            assert!(
                w.load <= w.capacity + queue,
                "{w:?} over capacity and queue {queue}"
            );
        }
        // The last change a step announced is the status a client reads.
        let mut last = BTreeMap::new();
        for o in out {
            if let Output::Changed { id, status } = o {
                last.insert(*id, status);
            }
        }
        for (id, status) in last {
            if let Some(now) = self.s.status(&id) {
                assert_eq!(&now, status, "{id:?} announced {status:?}, reads {now:?}");
            }
        }
        for e in events {
            let Event::TasksEvicted { ids } = e else { continue };
            for id in ids {
                assert!(self.submitted.contains(id), "evicted unknown {id:?}");
                assert!(self.is_final(id), "evicted unfinished {id:?}");
                let needs = self.dependents(id).find(|d| !self.is_final(d));
                assert_eq!(needs, None, "{id:?} evicted while a dependent needs it");
                assert!(self.evicted.insert(*id), "{id:?} evicted twice: {ids:?}");
                assert_eq!(self.s.lookup(id, self.now), Lookup::Evicted);
                self.count("evicted");
            }
        }
        if self.p.retention {
            self.check_retention();
        }
    }

    /// Finished tasks beyond the count or byte limit are kept only while
    /// every one of them is still needed by an unfinished dependent, or is
    /// younger than `min_age`.
    fn check_retention(&self) {
        let kept = self.submitted.iter().filter(|id| !self.evicted.contains(id));
        let finished: Vec<&TaskId> = kept.filter(|id| self.is_final(id)).collect();
        assert_eq!(finished.len(), self.s.index.len() - self.s.unfinished);
        let bytes: usize = finished
            .iter()
            .map(|id| self.s.tasks[self.s.index[id]].bytes())
            .sum();
        assert_eq!(bytes, self.s.finished_bytes, "finished bytes");
        let r = &self.s.cfg.retention;
        // A task joins the eviction line when it finished and its last
        // dependent finished; it is evicted in line order, each at least
        // `min_age` after it finished, so one that joined the line `min_age`
        // ago is due.
        let finished_at = |id: &TaskId| {
            let slot = self.s.index.get(id)?;
            self.s.tasks[*slot].finished_at
        };
        let old_enough = |id: &TaskId| {
            let joined = self
                .dependents(id)
                .map(&finished_at)
                .chain([finished_at(id)])
                .max();
            joined.flatten().is_some_and(|t| t + r.min_age <= self.now)
        };
        let evictable = finished
            .iter()
            .find(|id| old_enough(id) && self.dependents(id).all(|d| self.is_final(d)));
        if let Some(id) = evictable {
            assert!(
                finished.len() <= r.max_tasks && bytes <= r.max_bytes,
                "{} finished tasks ({bytes} bytes) kept over the limits {r:?}, {id:?} needed by none",
                finished.len()
            );
        }
    }

    pub(super) fn is_final(&self, id: &TaskId) -> bool {
        self.last_status(id).is_some_and(TaskStatus::is_final)
    }

    /// Submitted tasks that depend on `id`.
    pub(super) fn dependents<'a>(&'a self, id: &'a TaskId) -> impl Iterator<Item = &'a TaskId> + 'a {
        let on = move |d: &&TaskId| self.tasks[d].dependencies.contains(id);
        self.submitted.iter().filter(on)
    }
}
