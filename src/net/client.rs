//! Calls that go to the admin: client operations, registration, bids and
//! reports. Local when this node is admin, over request-response otherwise.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use libp2p::PeerId;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::admin::Answer;
use super::{ClientOp, EventLoop, Pending};
use crate::calls::{CallFailure, Route, Verdict};
use crate::protocol::{Request, Response};
use crate::scheduler::{Input, Report};
use crate::task::{Task, TaskId, TaskReport};
use crate::Error;

/// How long the admin may hold one remote await before answering.
const AWAIT_SLICE: Duration = Duration::from_secs(5);

impl ClientOp {
    /// The call as it goes again to a new admin, or `None` when it cannot:
    /// a batch in parts whose earlier parts were staged at the lost admin
    /// (the call fails, and says so).
    pub(super) fn resent(self) -> Option<ClientOp> {
        Some(match self {
            ClientOp::Submit {
                upload: Some(_),
                reply,
                ..
            } => {
                let why = "the admin was lost while a batch in parts was uploading; submit it again";
                let _ = reply.send(Err(Error::AdminLost(why.into())));
                return None;
            }
            ClientOp::Submit {
                parts,
                upload,
                reply,
                ids,
                ..
            } => ClientOp::Submit {
                parts,
                upload,
                reply,
                resent: true,
                ids,
            },
            other => other,
        })
    }

    /// Fails the call with `e`.
    pub(super) fn fail(self, e: Error) {
        match self {
            ClientOp::Submit { reply, .. } => drop(reply.send(Err(e))),
            ClientOp::Status { reply, .. } => drop(reply.send(Err(e))),
            ClientOp::Cancel(_, r) => drop(r.send(Err(e))),
            ClientOp::Await { reply, .. } => drop(reply.send(Err(e))),
            ClientOp::Workers(r) => drop(r.send(Err(e))),
            ClientOp::Peers(r) => drop(r.send(Err(e))),
        }
    }
}

impl EventLoop {
    /// Sends a request, remembering what it was for.
    ///
    /// Bulk requests (batches and snapshot parts) take a request-response
    /// stream of their own; the rest go over the peer's link, or by
    /// request-response when the link cannot take them.
    pub(super) fn send(&mut self, peer: PeerId, req: Request, what: Pending) {
        let bulk = matches!(
            req,
            Request::Submit { .. } | Request::SubmitPart { .. } | Request::RaftPart { .. }
        );
        let req = if bulk {
            req
        } else {
            let id = self.link_waits.next_id();
            match self.links.request(peer, id, req) {
                Ok(link) => {
                    let due = Instant::now() + self.cfg.request_timeout;
                    return self.link_waits.insert(id, peer, link, due, what);
                }
                Err(req) => req,
            }
        };
        let id = self.swarm.behaviour_mut().rr.send_request(&peer, req);
        self.pending.insert(id, what);
    }

    /// Runs a client call at the admin, wherever it is (see
    /// [`crate::calls`]: it waits up to `admin_wait` for one).
    pub(super) fn route(&mut self, op: ClientOp) {
        self.next_call += 1;
        let call = self.next_call;
        self.route_as(call, op);
    }

    /// Routes a call under `call`: a new one, or the next step of one.
    fn route_as(&mut self, call: u64, op: ClientOp) {
        let submit = matches!(op, ClientOp::Submit { .. });
        self.ops.insert(call, op);
        let routes = self.calls.start(call, submit, self.now());
        self.carry_calls(routes);
    }

    /// Carries out where the calls unit sends calls.
    pub(super) fn carry_calls(&mut self, routes: Vec<Route<PeerId>>) {
        for route in routes {
            match route {
                Route::Send { call, to, .. } => {
                    if let Some(op) = self.ops.get(&call) {
                        let req = request_for(op);
                        self.send(to, req, Pending::Client(call));
                    }
                }
                Route::Local { call } => {
                    if let Some(op) = self.ops.remove(&call) {
                        self.run_locally(op);
                    }
                }
                Route::Fail { call, why } => {
                    if let Some(op) = self.ops.remove(&call) {
                        op.fail(self.call_error(why));
                    }
                }
            }
        }
    }

    /// The error a failed call gets.
    fn call_error(&self, why: CallFailure) -> Error {
        match why {
            CallFailure::NoAdmin => Error::NoAdmin(self.cfg.admin_wait),
            CallFailure::NoQuorum { reached, voters } => Error::NoQuorum { reached, voters },
        }
    }

    /// Why new work is refused at once: this side has no quorum, as heard
    /// within the last few seconds.
    pub(super) fn quorum_lost(&self) -> Option<Error> {
        self.calls.quorum_lost(self.now()).map(|why| self.call_error(why))
    }

    /// A voter says this side of the mesh has no quorum: waiting
    /// submissions fail at once.
    pub(super) fn heard_no_quorum(&mut self, reached: usize, voters: usize) {
        let routes = self.calls.no_quorum(reached, voters, self.now());
        self.carry_calls(routes);
    }

    /// Follows the admin a call's answer named (or none).
    fn follow(&mut self, admin: Option<(PeerId, u64)>) {
        match admin {
            Some((peer, term)) => self.admin_changed(Some(peer), term),
            None => {
                let known = self.admin.map_or(0, |a| a.1);
                self.admin_changed(None, known);
            }
        }
    }

    /// A call goes again to the next admin: a batch marked as sent before
    /// (its ids, if known there, mean it was taken), or failed when it
    /// cannot go again (see [`ClientOp::resent`]).
    fn resend(&mut self, call: u64) {
        let Some(op) = self.ops.remove(&call) else { return };
        match op.resent() {
            Some(op) => drop(self.ops.insert(call, op)),
            None => self.calls.done(call),
        }
    }

    fn run_locally(&mut self, op: ClientOp) {
        match op {
            ClientOp::Submit {
                parts,
                reply,
                resent,
                ids,
                ..
            } => {
                // Sent again to this node, now admin: taken already if the
                // ledger knows its ids.
                let sched = self.raft.ledger.as_ref().map(|l| l.scheduler());
                if resent && sched.is_some_and(|s| ids.iter().all(|id| s.status(id).is_some())) {
                    let _ = reply.send(Ok(ids));
                    return;
                }
                let tasks = parts.into_iter().flatten().collect();
                self.admin_submit(None, tasks, Answer::Local(reply))
            }
            ClientOp::Status { ids, reply, .. } => {
                let _ = reply.send(Ok(self.admin_status(&ids, usize::MAX)));
            }
            ClientOp::Cancel(ids, reply) => self.admin_cancel(ids, Answer::Local(reply)),
            // Became admin midway through a remote wait: this node's ledger
            // has every task the old admin committed; it answers for all.
            ClientOp::Await { ids, any, reply, .. } => self.admin_await(ids, any, Answer::Local(reply), None),
            ClientOp::Workers(reply) => {
                let _ = reply.send(Ok(self.admin_workers()));
            }
            ClientOp::Peers(reply) => {
                let _ = reply.send(Ok(self.admin_peers()));
            }
        }
    }

    /// The answer of `peer` to client call `call`.
    pub(super) fn client_answer(&mut self, peer: PeerId, call: u64, resp: Response) {
        let now = self.now();
        if let Response::NotAdmin { admin, term } = &resp {
            // Our view of the admin is ahead of or behind the mesh's:
            // follow what the node asked knows, and ask again shortly.
            let hint = admin.as_ref().and_then(|a| a.parse().ok()).map(|p| (p, *term));
            let (follow, routes) = self.calls.not_admin(call, peer, hint, now);
            if let Some(admin) = follow {
                self.follow(admin);
            }
            return self.carry_calls(routes);
        }
        let (verdict, routes) = self.calls.answered(call, now);
        if verdict == Verdict::Stale {
            // From an admin older than the one this node follows now: the
            // call goes again to the new one.
            debug!(%peer, call, "a stale admin's answer ignored");
            self.resend(call);
            return self.carry_calls(routes);
        }
        self.calls.done(call);
        let Some(op) = self.ops.remove(&call) else { return };
        match (op, resp) {
            (op, Response::Refused(why)) => op.fail(Error::Refused(why)),
            // Sent again after the admin was lost: its ids already taken
            // mean the first try was committed (a batch is taken whole).
            (
                ClientOp::Submit {
                    reply,
                    resent: true,
                    ids,
                    ..
                },
                Response::Submitted(Err(crate::scheduler::SubmitError::DuplicateId { .. })),
            ) => drop(reply.send(Ok(ids))),
            (ClientOp::Submit { reply, .. }, Response::Submitted(res)) => {
                drop(reply.send(res.map_err(Error::Submit)))
            }
            // One part of a batch in parts taken: send the next.
            (
                ClientOp::Submit {
                    mut parts,
                    upload,
                    reply,
                    resent,
                    ids,
                },
                Response::Ok,
            ) if parts.len() > 1 => {
                parts.pop_front();
                let op = ClientOp::Submit {
                    parts,
                    upload,
                    reply,
                    resent,
                    ids,
                };
                self.route_as(call, op);
            }
            // No ids: the most recent tasks, however many.
            (ClientOp::Status { ids, reply, .. }, Response::Lookups(ls)) if ids.is_empty() => {
                drop(reply.send(Ok(ls)))
            }
            (ClientOp::Status { ids, mut got, reply }, Response::Lookups(ls)) => {
                let asked = ids.len() - got.len();
                if ls.is_empty() && asked > 0 || ls.len() > asked {
                    return drop(
                        reply.send(Err(Error::Protocol("status answer of the wrong length".into()))),
                    );
                }
                got.extend(ls);
                if got.len() < ids.len() {
                    // A long answer comes in pieces: ask for the rest.
                    return self.route_as(call, ClientOp::Status { ids, got, reply });
                }
                drop(reply.send(Ok(got)))
            }
            (ClientOp::Cancel(ids, r), Response::Cancelled(outcomes)) if outcomes.len() == ids.len() => {
                drop(r.send(Ok(outcomes)))
            }
            (ClientOp::Workers(r), Response::Workers(ws)) => drop(r.send(Ok(ws))),
            (ClientOp::Peers(r), Response::Peers(ps)) => drop(r.send(Ok(ps))),
            (
                ClientOp::Await {
                    ids,
                    any,
                    mut done,
                    reply,
                },
                Response::Reports(rs),
            ) => {
                for r in rs.into_iter().flatten() {
                    if r.status.is_final() {
                        done.insert(r.id, r);
                    }
                }
                if ids.iter().all(|id| done.contains_key(id)) || (any && !done.is_empty()) {
                    let reports = collect(&ids, &mut done);
                    let _ = reply.send(Ok(reports));
                } else {
                    let op = ClientOp::Await {
                        ids,
                        any,
                        done,
                        reply,
                    };
                    self.route_as(call, op);
                }
            }
            (op, other) => op.fail(Error::Protocol(format!(
                "unexpected answer from the admin: {other:?}"
            ))),
        }
    }

    /// Tells the admin which workers this node hosts.
    pub(super) fn register(&mut self) {
        if self.workers.is_empty() || self.sched.is_some() {
            return;
        }
        let Some((admin, _)) = self.admin else { return };
        let workers = self.workers.specs();
        self.send(admin, Request::Register { workers }, Pending::Register);
    }

    /// Results of this node's workers go to the admin, batched, and stay in
    /// the outbox until acknowledged.
    pub(super) fn deliver_reports(&mut self, reports: Vec<Report>) {
        if self.sched.is_some() {
            let node = self.me_node.clone();
            return self.admin_input(Input::Reports { node, reports });
        }
        self.outbox.push(reports);
        self.flush_outbox();
    }

    /// Sends what the outbox says is due, to the admin this node follows.
    pub(super) fn flush_outbox(&mut self) {
        if self.sched.is_some() {
            // This node became admin: its own results go straight in.
            let now = self.now();
            for (n, reports) in self.outbox.due(now, usize::MAX) {
                self.outbox.acked(n);
                let node = self.me_node.clone();
                self.admin_input(Input::Reports { node, reports });
            }
            return;
        }
        let Some((admin, term)) = self.admin else { return };
        let now = self.now();
        for (n, reports) in self.outbox.due(now, self.cfg.max_frame / 2) {
            self.send(admin, Request::Reports { term, reports }, Pending::Reports(n));
        }
    }

    /// True while this node holds attempts whose leases need renewing.
    pub(super) fn holds_work(&self) -> bool {
        self.workers.running() > 0 || self.outbox.len() > 0
    }

    /// Renews the leases of every attempt this node holds (nothing to do
    /// when it holds none).
    pub(super) fn renew(&mut self) {
        if self.holds_work() {
            self.renew_holdings();
        }
    }

    /// Tells the admin every attempt this node holds, none included: a new
    /// admin learns from a node's first renewal which attempts the ledger
    /// gives it that it really holds.
    pub(super) fn renew_holdings(&mut self) {
        if self.workers.is_empty() {
            return;
        }
        self.renewed_at = Instant::now();
        self.workers.expire_queued();
        let mut held = self.workers.held();
        held.extend(self.outbox.held());
        let waiting = self.workers.waiting();
        if self.sched.is_some() {
            let node = self.me_node.clone();
            self.admin_input(Input::Renew { node, held, waiting });
            return self.workers.renewed(Instant::now());
        }
        if let Some((admin, term)) = self.admin {
            let renew = Request::Renew { term, held, waiting };
            self.send(admin, renew, Pending::Renew(Instant::now()));
        }
    }

    /// An outbound request failed at the transport level.
    pub(super) fn request_failed(&mut self, peer: PeerId, what: Pending, error: String) {
        debug!(%peer, %error, "request failed");
        match what {
            // The admin holding the call is gone (or never answered): the
            // call waits for the next admin, whose ledger has what the old
            // one committed, and goes again (a batch with the same ids).
            Pending::Client(call) => {
                let (was_admin, routes) = self.calls.lost(call, peer, self.now());
                if was_admin {
                    self.follow(None);
                }
                self.resend(call);
                self.carry_calls(routes);
            }
            Pending::Register => self.register_retry = Some(Instant::now() + Duration::from_millis(500)),
            Pending::Bids | Pending::Renew(_) | Pending::Abort | Pending::Raft | Pending::Join => {}
            Pending::RaftPart(to) => self.raft_part_answered(to, false),
            Pending::Assign { node, items } => {
                for (task, attempt) in items {
                    self.admin_input(Input::AssignAnswer {
                        node: node.clone(),
                        task,
                        attempt,
                        accepted: false,
                    });
                }
            }
            Pending::Reports(batch) => {
                warn!(%error, "results could not reach the admin; will send them again");
                let now = self.now();
                self.outbox.failed(batch, now);
            }
        }
    }
}

/// The request that carries a call's next step to the admin.
fn request_for(op: &ClientOp) -> Request {
    match op {
        ClientOp::Submit { parts, upload, .. } => {
            let tasks = parts.front().cloned().unwrap_or_default();
            match *upload {
                None => Request::Submit { tasks },
                Some(upload) => Request::SubmitPart {
                    upload,
                    tasks,
                    last: parts.len() == 1,
                },
            }
        }
        ClientOp::Status { ids, got, .. } => Request::Status {
            ids: ids[got.len()..].to_vec(),
        },
        ClientOp::Cancel(ids, _) => Request::Cancel { ids: ids.clone() },
        ClientOp::Await { ids, any, done, .. } => Request::Await {
            ids: ids.iter().filter(|id| !done.contains_key(id)).copied().collect(),
            max_wait_ms: AWAIT_SLICE.as_millis() as u64,
            any: *any,
        },
        ClientOp::Workers(_) => Request::Workers,
        ClientOp::Peers(_) => Request::Peers,
    }
}

/// Cuts a batch into parts of about `budget` bytes each (one part when it
/// fits), keeping the batch's order.
pub(super) fn split_batch(tasks: Vec<Task>, budget: usize) -> VecDeque<Vec<Task>> {
    let size = |t: &Task| t.input.len() + t.name.len() + t.role.len() + 16 * t.dependencies.len() + 128;
    let mut parts: VecDeque<Vec<Task>> = crate::protocol::chunk_by_size(tasks, budget, size).into();
    if parts.is_empty() {
        parts.push_back(Vec::new()); // an empty batch is still one submission
    }
    parts
}

fn collect(ids: &[TaskId], done: &mut HashMap<TaskId, TaskReport>) -> Vec<TaskReport> {
    ids.iter().filter_map(|id| done.remove(id)).collect()
}
