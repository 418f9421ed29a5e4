//! The admin side of the loop: feeding the replicated scheduler and
//! carrying out its outputs, and holding callers that wait for tasks to
//! finish. Answers that tell of the ledger (a report acknowledged, final
//! reports) wait until what they tell of is committed.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use libp2p::PeerId;
use tokio::time::Instant;
use tracing::{debug, info};

use super::link::Responder;
use super::uploads::{PartOutcome, Uploads};
use super::{EventLoop, Pending, Reply};
use crate::protocol::{Gossip, Request, Response};
use crate::scheduler::{Assignment, CancelOutcome, Input, Lookup, Output, Scheduler};
use crate::task::{NodeId, Task, TaskId, TaskReport};
use crate::Error;

/// Who gets an answer once it is ready.
pub(crate) enum Answer<T> {
    Local(Reply<T>),
    Remote(Responder),
}

/// A caller waiting for a set of tasks to finish.
struct Waiter {
    ids: Vec<TaskId>,
    remaining: usize,
    answer: Answer<Vec<TaskReport>>,
    /// The ids kept from eviction for this waiter (`Scheduler::watch`).
    watched: Vec<TaskId>,
}

/// How many tasks a status call without ids lists: the most recent ones.
pub(crate) const RECENT_TASKS: usize = 1000;

/// An answer held until the log reaches an index.
pub(crate) enum Deferred {
    /// `Ok` to a node's reports or registration.
    Ack(Responder),
    /// A wait whose tasks were all final, maybe only in decisions not yet
    /// committed: asked again once they are.
    Await {
        ids: Vec<TaskId>,
        any: bool,
        answer: Answer<Vec<TaskReport>>,
        max_wait: Option<Duration>,
    },
}

/// State that exists only while this node is admin (the scheduler itself
/// lives in the replicated ledger).
pub(crate) struct AdminState {
    term: u64,
    next_token: u64,
    submits: HashMap<u64, Answer<Vec<TaskId>>>,
    waiters: HashMap<u64, Waiter>,
    /// Waiter ids per unfinished task.
    by_task: HashMap<TaskId, Vec<u64>>,
    /// Remote waiters answer with partial results at these times.
    wait_deadlines: BTreeSet<(Instant, u64)>,
    /// Cancellations waiting for the scheduler's answer.
    cancels: HashMap<u64, Answer<Vec<CancelOutcome>>>,
    /// Batches arriving in parts, by sender.
    uploads: Uploads<PeerId>,
    /// Unfinished tasks and bytes per submitting peer, and the tasks of
    /// each batch still to be accepted (released if it is refused).
    quotas: super::quota::Quotas<PeerId>,
    charged: HashMap<u64, Vec<TaskId>>,
    /// Answers waiting for the log to commit an index, in index order.
    deferred: VecDeque<(u64, Deferred)>,
    /// Answers waiting for decisions of this loop turn that are not
    /// proposed yet: they get the index of the turn's entry.
    unindexed: Vec<Deferred>,
}

impl EventLoop {
    /// The admin's scheduler (the replicated ledger's), while admin.
    fn sched_ref(&self) -> Option<&Scheduler> {
        self.sched.as_ref()?;
        Some(self.raft.ledger.as_ref()?.scheduler())
    }

    /// The admin's census, for metrics (`None` unless admin).
    pub(super) fn sched_census(&self) -> Option<crate::scheduler::Census> {
        self.sched_ref().map(Scheduler::census)
    }

    fn sched_mut(&mut self) -> Option<&mut Scheduler> {
        self.sched.as_ref()?;
        Some(self.raft.ledger.as_mut()?.scheduler_mut())
    }

    /// When the loop must next wake for this admin, given the wall clock now.
    pub(super) fn admin_deadline(&self, wall: Duration) -> Option<Instant> {
        let state = self.sched.as_ref()?;
        let s = self.raft.ledger.as_ref().and_then(|l| l.next_deadline());
        let s = s.map(|d| Instant::now() + d.saturating_sub(wall));
        let w = state.wait_deadlines.first().map(|d| d.0);
        s.into_iter().chain(w).min()
    }

    /// Holds an answer until everything the scheduler reflects now is
    /// committed.
    fn defer(&mut self, d: Deferred) {
        let Some(ledger) = self.raft.ledger.as_ref() else {
            return;
        };
        let (index, unflushed) = (ledger.applied(), ledger.unflushed());
        let Some(state) = self.sched.as_mut() else { return };
        if unflushed {
            state.unindexed.push(d);
        } else {
            state.deferred.push_back((index, d));
            self.resolve_deferred();
        }
    }

    /// Ends a loop turn on the admin: what the turn decided is proposed as
    /// one ledger entry, and what that releases is carried out (answers of
    /// this node's own workers are decided and proposed in turn).
    pub(super) fn flush_admin(&mut self) {
        while self.sched.is_some() {
            let now = self.wall_now();
            let Some(ledger) = self.raft.ledger.as_mut().filter(|l| l.unflushed()) else {
                break;
            };
            let step = ledger.flush(now);
            let index = ledger.applied();
            let observed = ledger.take_observations();
            self.count(&observed);
            if let Some(state) = self.sched.as_mut() {
                for d in state.unindexed.drain(..) {
                    state.deferred.push_back((index, d));
                }
            }
            self.ledger_step(step);
        }
    }

    /// Counts the admin's decisions for the metrics.
    fn count(&self, observed: &[crate::scheduler::Observation]) {
        if let Some(m) = &self.metrics {
            for o in observed {
                m.record(o);
            }
        }
    }

    /// Gives the held answers whose index is committed.
    pub(super) fn resolve_deferred(&mut self) {
        loop {
            let Some(ledger) = self.raft.ledger.as_ref() else {
                return;
            };
            let Some(state) = self.sched.as_mut() else { return };
            let Some((index, _)) = state.deferred.front() else {
                return;
            };
            if !ledger.committed(*index) {
                return;
            }
            let (_, d) = state.deferred.pop_front().expect("checked");
            match d {
                Deferred::Ack(ch) => {
                    self.respond(ch, Response::Ok);
                }
                Deferred::Await {
                    ids,
                    any,
                    answer,
                    max_wait,
                } => self.admin_await(ids, any, answer, max_wait),
            }
        }
    }

    /// Acknowledges a node's request once what it changed is committed.
    pub(super) fn ack_when_committed(&mut self, ch: Responder) {
        self.defer(Deferred::Ack(ch));
    }

    pub(super) fn become_admin(&mut self, term: u64) {
        info!(term, "this node is now the admin");
        self.sched = Some(AdminState {
            term,
            next_token: 0,
            submits: HashMap::new(),
            waiters: HashMap::new(),
            by_task: HashMap::new(),
            wait_deadlines: BTreeSet::new(),
            cancels: HashMap::new(),
            uploads: Uploads::default(),
            quotas: Default::default(),
            charged: HashMap::new(),
            deferred: VecDeque::new(),
            unindexed: Vec::new(),
        });
        if !self.workers.is_empty() {
            let workers = self.workers.specs();
            self.admin_input(Input::Register {
                node: self.me_node.clone(),
                workers,
            });
        }
    }

    /// Leaving office: everyone waiting on this admin is told so.
    pub(super) fn step_down(&mut self) {
        let Some(state) = self.sched.take() else { return };
        info!(term = state.term, "no longer the admin");
        let not_admin = Response::NotAdmin {
            admin: self.admin.map(|a| a.0.to_string()),
            term: self.admin.map_or(0, |a| a.1),
        };
        let lost = || Error::AdminLost("this node stepped down as admin".into());
        for (_, a) in state.submits {
            self.answer_err(a, lost(), not_admin.clone());
        }
        for (_, w) in state.waiters {
            self.answer_err(w.answer, lost(), not_admin.clone());
        }
        for (_, c) in state.cancels {
            self.answer_err(c, lost(), not_admin.clone());
        }
        let unindexed = state.unindexed.into_iter().map(|d| (0, d));
        for (_, d) in state.deferred.into_iter().chain(unindexed) {
            match d {
                Deferred::Ack(ch) => {
                    self.respond(ch, not_admin.clone());
                }
                Deferred::Await { answer, .. } => self.answer_err(answer, lost(), not_admin.clone()),
            }
        }
    }

    /// Sends a result locally, or over the wire as `wire(value)`.
    fn answer<T>(&mut self, a: Answer<T>, value: T, wire: impl FnOnce(T) -> Response) {
        match a {
            Answer::Local(tx) => {
                let _ = tx.send(Ok(value));
            }
            Answer::Remote(ch) => {
                self.respond(ch, wire(value));
            }
        }
    }

    /// Sends an error locally, or `remote` over the wire.
    fn answer_err<T>(&mut self, a: Answer<T>, e: Error, remote: Response) {
        match a {
            Answer::Local(tx) => {
                let _ = tx.send(Err(e));
            }
            Answer::Remote(ch) => {
                self.respond(ch, remote);
            }
        }
    }

    /// Submits a batch from `from` (a remote peer, charged against its
    /// [quotas](crate::access::Limits::max_unfinished_per_client), or this
    /// node with `None`).
    pub(super) fn admin_submit(
        &mut self,
        from: Option<PeerId>,
        tasks: Vec<crate::task::Task>,
        answer: Answer<Vec<TaskId>>,
    ) {
        let limits = &self.cfg.limits;
        let (max_tasks, max_bytes) = (
            limits.max_unfinished_per_client,
            limits.max_queued_bytes_per_client,
        );
        let Some(state) = self.sched.as_mut() else { return };
        let token = state.next_token;
        if let Some(peer) = from {
            let batch: Vec<(TaskId, u64)> = tasks.iter().map(|t| (t.id, t.input.len() as u64)).collect();
            if let Err(why) = state.quotas.charge(&peer, &batch, max_tasks, max_bytes) {
                debug!(%peer, why, "batch over the submitter's limits refused");
                return self.answer_err(answer, Error::Refused(why.clone()), Response::Refused(why));
            }
            state
                .charged
                .insert(token, batch.into_iter().map(|b| b.0).collect());
        }
        state.next_token += 1;
        state.submits.insert(token, answer);
        self.admin_input(Input::Submit { token, tasks });
    }

    /// What the admin knows of `ids`, or of the most recent tasks when
    /// `ids` is empty. The answer stops early (covering a prefix of the ids)
    /// once it holds `budget` bytes; the caller asks again for the rest.
    pub(super) fn admin_status(&self, ids: &[TaskId], budget: usize) -> Vec<Lookup> {
        let Some(sched) = self.sched_ref() else {
            return vec![Lookup::Unknown; ids.len()];
        };
        let now = self.wall_now();
        let mut size = 0;
        let mut fits = |l: &Lookup, any: bool| {
            size += match l {
                Lookup::Found(r) => report_size(r),
                _ => 32,
            };
            size <= budget || !any
        };
        if ids.is_empty() {
            // The most recent tasks: newest first until the answer is full,
            // so a long listing drops the oldest, never the newest.
            let mut out = Vec::new();
            for id in sched.recent(RECENT_TASKS).iter().rev() {
                let l = sched.lookup(id, now);
                if !fits(&l, !out.is_empty()) {
                    break;
                }
                out.push(l);
            }
            out.reverse();
            return out;
        }
        let mut out = Vec::new();
        for id in ids {
            let l = sched.lookup(id, now);
            if !fits(&l, !out.is_empty()) {
                break;
            }
            out.push(l);
        }
        out
    }

    /// Cancels tasks; the answer comes with the scheduler's output.
    pub(super) fn admin_cancel(&mut self, ids: Vec<TaskId>, answer: Answer<Vec<CancelOutcome>>) {
        let Some(state) = self.sched.as_mut() else { return };
        let token = state.next_token;
        state.next_token += 1;
        state.cancels.insert(token, answer);
        self.admin_input(Input::Cancel { token, ids });
    }

    /// One part of a batch in parts; the last submits the whole batch.
    pub(super) fn admin_submit_part(
        &mut self,
        peer: PeerId,
        upload: u64,
        tasks: Vec<Task>,
        last: bool,
        channel: Responder,
    ) {
        let now = self.now();
        let Some(state) = self.sched.as_mut() else { return };
        let answer = match state.uploads.part(peer, upload, tasks, last, now) {
            PartOutcome::Complete(whole) => {
                return self.admin_submit(Some(peer), whole, Answer::Remote(channel))
            }
            PartOutcome::Staged => Response::Ok,
            PartOutcome::Refused(why) => Response::Refused(why),
        };
        self.respond(channel, answer);
    }

    /// This node and every connected peer, with the workers each hosts.
    pub(super) fn admin_peers(&self) -> Vec<crate::protocol::PeerInfo> {
        let workers = self.admin_workers();
        let hosted = |p: &libp2p::PeerId| -> Vec<String> {
            let node = super::node_id(p);
            workers
                .iter()
                .filter(|w| w.node == node)
                .map(|w| w.name.clone())
                .collect()
        };
        let voters = self.voter_peers();
        let me = crate::protocol::PeerInfo {
            peer: self.me.to_string(),
            is_admin: true,
            workers: hosted(&self.me),
            addrs: self.listen_addrs().iter().map(|a| a.to_string()).collect(),
            agent: Some(format!("taskmesh/{}", env!("CARGO_PKG_VERSION"))),
            is_voter: voters.contains(&self.me),
        };
        let others = self.swarm.connected_peers().map(|p| {
            let meta = self.peer_meta.get(p).cloned().unwrap_or_default();
            crate::protocol::PeerInfo {
                peer: p.to_string(),
                is_admin: false,
                workers: hosted(p),
                addrs: meta.addrs.iter().map(|a| a.to_string()).collect(),
                agent: (!meta.agent.is_empty()).then_some(meta.agent),
                is_voter: voters.contains(p),
            }
        });
        std::iter::once(me).chain(others).collect()
    }

    /// Reports of the tasks among `ids` that are final, in `ids` order, up
    /// to about `budget` bytes (the caller asks again for the rest).
    fn final_reports(&self, ids: &[TaskId], budget: usize) -> Vec<TaskReport> {
        let Some(sched) = self.sched_ref() else {
            return Vec::new();
        };
        let now = self.wall_now();
        let mut size = 0;
        let mut out = Vec::new();
        for id in ids {
            let Some(r) = sched.report_of(id, now).filter(|r| r.status.is_final()) else {
                continue;
            };
            size += report_size(&r);
            if size > budget && !out.is_empty() {
                break;
            }
            out.push(r);
        }
        out
    }

    /// How much an answer may hold: one frame for a peer (it asks again
    /// for the rest), everything for a caller on this node.
    fn budget_for<T>(&self, answer: &Answer<T>) -> usize {
        match answer {
            Answer::Local(_) => usize::MAX,
            Answer::Remote(_) => self.frame_budget(),
        }
    }

    /// The answer budget for one frame.
    pub(super) fn frame_budget(&self) -> usize {
        self.cfg.max_frame / 2
    }

    pub(super) fn admin_workers(&self) -> Vec<crate::task::WorkerInfo> {
        self.sched_ref().map(|s| s.workers()).unwrap_or_default()
    }

    /// Registers a waiter; answers at once if every task is already final or
    /// some id is unknown.
    pub(super) fn admin_await(
        &mut self,
        ids: Vec<TaskId>,
        any: bool,
        answer: Answer<Vec<TaskReport>>,
        max_wait: Option<Duration>,
    ) {
        let Some(sched) = self.sched_ref() else { return };
        let mut remaining = 0;
        for id in &ids {
            match sched.status(id) {
                None if sched.was_evicted(id) => {
                    let remote = Response::Refused(format!("task {id} finished and was evicted"));
                    self.answer_err(answer, Error::Evicted(*id), remote);
                    return;
                }
                None => {
                    let remote = Response::Refused(format!("unknown task id {id}"));
                    self.answer_err(answer, Error::UnknownTask(*id), remote);
                    return;
                }
                Some(s) if !s.is_final() => remaining += 1,
                Some(_) => {}
            }
        }
        if remaining == 0 || (any && remaining < ids.len()) {
            let ledger = self.raft.ledger.as_ref().expect("admin");
            if ledger.unflushed() || !ledger.committed(ledger.applied()) {
                // Final maybe only in decisions not yet committed.
                return self.defer(Deferred::Await {
                    ids,
                    any,
                    answer,
                    max_wait,
                });
            }
            let reports = self.final_reports(&ids, self.budget_for(&answer));
            return self.answer(answer, reports, wire_reports);
        }
        let unfinished: Vec<TaskId> = ids
            .iter()
            .copied()
            .filter(|id| sched.status(id).is_some_and(|s| !s.is_final()))
            .collect();
        if let Some(sched) = self.sched_mut() {
            for id in &unfinished {
                sched.watch(*id);
            }
        }
        let Some(state) = self.sched.as_mut() else { return };
        let token = state.next_token;
        state.next_token += 1;
        let mut watched = Vec::new();
        for id in unfinished {
            state.by_task.entry(id).or_default().push(token);
            watched.push(id);
        }
        if let Some(d) = max_wait {
            state.wait_deadlines.insert((Instant::now() + d, token));
        }
        // Waiting for any one: the first final task answers.
        let remaining = if any { 1 } else { remaining };
        state.waiters.insert(
            token,
            Waiter {
                ids,
                remaining,
                answer,
                watched,
            },
        );
    }

    /// Answers a waiter with the reports of its final tasks, and lets them
    /// be evicted again.
    fn answer_waiter(&mut self, w: Waiter) {
        let reports = self.final_reports(&w.ids, self.budget_for(&w.answer));
        if let Some(sched) = self.sched_mut() {
            for id in &w.watched {
                sched.unwatch(id);
            }
        }
        self.answer(w.answer, reports, wire_reports);
    }

    /// Feeds the scheduler one input. What it decides is proposed, and its
    /// outputs carried out, at the end of the loop turn
    /// ([`EventLoop::flush_admin`]), so that one turn's inputs make one
    /// ledger entry.
    pub(super) fn admin_input(&mut self, input: Input) {
        let now = self.wall_now();
        if self.sched.is_none() {
            return;
        }
        if let Some(ledger) = self.raft.ledger.as_mut() {
            ledger.observe(self.metrics.is_some());
            // Not the leader any more: the office change is on its way.
            let _ = ledger.handle(input, now);
        }
    }

    pub(super) fn admin_tick(&mut self) {
        self.admin_input(Input::Tick);
        let now = Instant::now();
        while let Some(state) = self.sched.as_mut() {
            let Some(&(at, token)) = state.wait_deadlines.first() else {
                break;
            };
            if at > now {
                break;
            }
            state.wait_deadlines.pop_first();
            if let Some(w) = state.waiters.remove(&token) {
                self.answer_waiter(w);
            }
        }
    }

    pub(super) fn admin_output(&mut self, o: Output, inbox: &mut VecDeque<Input>) {
        let Some(state) = self.sched.as_mut() else { return };
        let term = state.term;
        match o {
            Output::Submitted { token, result } => {
                if let Some(ids) = state.charged.remove(&token).filter(|_| result.is_err()) {
                    for id in &ids {
                        state.quotas.release(id);
                    }
                }
                if let Some(a) = state.submits.remove(&token) {
                    match (a, result) {
                        (Answer::Local(tx), r) => {
                            let _ = tx.send(r.map_err(Error::Submit));
                        }
                        (Answer::Remote(ch), r) => {
                            self.respond(ch, Response::Submitted(r));
                        }
                    }
                }
            }
            Output::Announce(tasks) => {
                let bids = self.workers.bids_for(&tasks);
                if !bids.is_empty() {
                    inbox.push_back(Input::Bids {
                        node: self.me_node.clone(),
                        bids,
                    });
                }
                debug!(count = tasks.len(), term, "announcing");
                if let Some(m) = &self.metrics {
                    m.announced(tasks.len() as u64);
                }
                // Cut to fit the gossip size limit (names are at most 1 KiB).
                let budget = self.cfg.limits.max_gossip / 2;
                let size = |a: &crate::scheduler::Announcement| a.name.len() + a.role.len() + 64;
                for tasks in crate::protocol::chunk_by_size(tasks, budget, size) {
                    self.publish(false, &Gossip::Announce { term, tasks });
                }
            }
            Output::Assign { node, assignments } => {
                if node == self.me_node {
                    for a in assignments {
                        let ans = self.workers.accept(a);
                        inbox.push_back(Input::AssignAnswer {
                            node: node.clone(),
                            task: ans.task,
                            attempt: ans.attempt,
                            accepted: ans.accepted,
                        });
                    }
                } else if let Some(peer) = self.names.peer(node.as_str()) {
                    for assignments in split_assignments(assignments, self.frame_budget()) {
                        let items = assignments.iter().map(|a| (a.task, a.attempt)).collect();
                        let what = Pending::Assign {
                            node: node.clone(),
                            items,
                        };
                        self.send(peer, Request::Assign { term, assignments }, what);
                    }
                }
            }
            Output::Changed { id, status } => {
                if status.is_final() {
                    self.task_final(id);
                }
            }
            Output::Abort { node, attempts } => self.send_abort(node, attempts),
            Output::Cancelled { token, outcomes } => {
                if let Some(a) = state.cancels.remove(&token) {
                    self.answer(a, outcomes, Response::Cancelled);
                }
            }
        }
    }

    fn task_final(&mut self, id: TaskId) {
        let Some(state) = self.sched.as_mut() else { return };
        state.quotas.release(&id);
        let Some(tokens) = state.by_task.remove(&id) else {
            return;
        };
        let mut done = Vec::new();
        for token in tokens {
            let Some(w) = state.waiters.get_mut(&token) else {
                continue;
            };
            w.remaining -= 1;
            if w.remaining == 0 {
                done.push(state.waiters.remove(&token).expect("present"));
                state.wait_deadlines.retain(|d| d.1 != token);
            }
        }
        for w in done {
            self.answer_waiter(w);
        }
    }
}

impl EventLoop {
    /// Tells a node to stop attempts: this node's own workers directly.
    fn send_abort(&mut self, node: NodeId, attempts: Vec<(TaskId, u32)>) {
        if node == self.me_node {
            for (task, attempt) in attempts {
                self.workers.cancel(task, attempt);
            }
            return;
        }
        let Some(term) = self.sched.as_ref().map(|s| s.term) else {
            return;
        };
        if let Some(peer) = self.names.peer(node.as_str()) {
            debug!(%peer, count = attempts.len(), "aborting attempts");
            self.send(peer, Request::Abort { term, attempts }, Pending::Abort);
        }
    }
}

/// Cuts a node's awards into requests of about `budget` bytes each.
fn split_assignments(all: Vec<Assignment>, budget: usize) -> Vec<Vec<Assignment>> {
    let dep = |d: &crate::scheduler::DepOutput| d.outcome.as_ref().map_or_else(|e| e.len(), |p| p.len());
    let size = |a: &Assignment| a.input.len() + a.deps.iter().map(dep).sum::<usize>() + 256;
    crate::protocol::chunk_by_size(all, budget, size)
}

/// Roughly how many bytes a report takes on the wire.
pub(super) fn report_size(r: &TaskReport) -> usize {
    let output = r.output.as_ref().map_or(0, |o| o.len());
    let error = r.error.as_ref().map_or(0, |e| e.to_string().len());
    let bids = r
        .auction
        .as_ref()
        .map_or(0, |a| a.bids.len() * 96 + a.reason.len());
    output + error + bids + r.history.len() * 160 + 512
}

fn wire_reports(reports: Vec<TaskReport>) -> Response {
    Response::Reports(reports.into_iter().map(Some).collect())
}
