//! Calls that go to the admin: client operations, registration, bids and
//! reports. Local when this node is admin, over request-response otherwise.

use std::collections::HashMap;
use std::time::Duration;

use libp2p::PeerId;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::admin::Answer;
use super::{ClientOp, EventLoop, Pending};
use crate::protocol::{Request, Response};
use crate::scheduler::{Input, Report};
use crate::task::{TaskId, TaskReport};
use crate::Error;

/// How long the admin may hold one remote await before answering.
const AWAIT_SLICE: Duration = Duration::from_secs(5);

/// How soon to ask again after a peer said it is not the admin.
const NOT_ADMIN_RETRY: Duration = Duration::from_millis(100);

impl ClientOp {
    /// Fails the call with `e`.
    pub(super) fn fail(self, e: Error) {
        match self {
            ClientOp::Submit(_, r) => drop(r.send(Err(e))),
            ClientOp::Status(_, r) => drop(r.send(Err(e))),
            ClientOp::Await { reply, .. } => drop(reply.send(Err(e))),
            ClientOp::Workers(r) => drop(r.send(Err(e))),
            ClientOp::Peers(r) => drop(r.send(Err(e))),
        }
    }
}

impl EventLoop {
    /// Sends a request, remembering what it was for.
    pub(super) fn send(&mut self, peer: PeerId, req: Request, what: Pending) {
        let id = self.swarm.behaviour_mut().rr.send_request(&peer, req);
        self.pending.insert(id, what);
    }

    /// Runs a client call at the admin, wherever it is, giving up on
    /// finding one after `admin_wait`.
    pub(super) fn route(&mut self, op: ClientOp) {
        self.route_by(op, Instant::now() + self.cfg.admin_wait);
    }

    /// Runs a client call at the admin, giving up on finding one at `deadline`.
    fn route_by(&mut self, op: ClientOp, deadline: Instant) {
        if self.sched.is_some() {
            return self.run_locally(op);
        }
        let Some((admin, _)) = self.admin else {
            self.parked.push((deadline, op));
            return;
        };
        let req = match &op {
            ClientOp::Submit(tasks, _) => Request::Submit { tasks: tasks.clone() },
            ClientOp::Status(ids, _) => Request::Status { ids: ids.clone() },
            ClientOp::Await { ids, any, done, .. } => Request::Await {
                ids: ids.iter().filter(|id| !done.contains_key(id)).copied().collect(),
                max_wait_ms: AWAIT_SLICE.as_millis() as u64,
                any: *any,
            },
            ClientOp::Workers(_) => Request::Workers,
            ClientOp::Peers(_) => Request::Peers,
        };
        self.send(admin, req, Pending::Client(op, deadline));
    }

    fn run_locally(&mut self, op: ClientOp) {
        match op {
            ClientOp::Submit(tasks, reply) => self.admin_submit(tasks, Answer::Local(reply)),
            ClientOp::Status(ids, reply) => {
                let _ = reply.send(Ok(self.admin_status(&ids)));
            }
            ClientOp::Await {
                ids,
                any,
                done,
                reply,
            } if done.is_empty() => self.admin_await(ids, any, Answer::Local(reply), None),
            // Became admin midway through a remote wait: the old admin's
            // tasks are not known here.
            ClientOp::Await { reply, .. } => {
                let _ = reply.send(Err(Error::AdminLost("the admin changed while waiting".into())));
            }
            ClientOp::Workers(reply) => {
                let _ = reply.send(Ok(self.admin_workers()));
            }
            ClientOp::Peers(reply) => {
                let _ = reply.send(Ok(self.admin_peers()));
            }
        }
    }

    /// Sends what waited for an admin (those still without one stay), and
    /// fails what waited too long.
    pub(super) fn flush_parked(&mut self) {
        let now = Instant::now();
        for (deadline, op) in std::mem::take(&mut self.parked) {
            if deadline <= now {
                op.fail(Error::NoAdmin(self.cfg.admin_wait));
            } else {
                self.route_by(op, deadline);
            }
        }
    }

    /// The admin's answer to a client call.
    pub(super) fn client_answer(&mut self, op: ClientOp, deadline: Instant, resp: Response) {
        match (op, resp) {
            (op, Response::NotAdmin { .. }) => {
                // Our view of the admin is ahead of or behind the mesh's: ask
                // again shortly, until the deadline.
                self.parked.push((deadline, op));
                let soon = Instant::now() + NOT_ADMIN_RETRY;
                self.parked_retry = Some(self.parked_retry.map_or(soon, |t| t.min(soon)));
            }
            (op, Response::Refused(why)) => op.fail(Error::Refused(why)),
            (ClientOp::Submit(_, r), Response::Submitted(res)) => drop(r.send(res.map_err(Error::Submit))),
            (ClientOp::Status(_, r), Response::Reports(rs)) => drop(r.send(Ok(rs))),
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
                    self.route(ClientOp::Await {
                        ids,
                        any,
                        done,
                        reply,
                    });
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

    /// Results of this node's workers go to the admin, batched.
    pub(super) fn deliver_reports(&mut self, reports: Vec<Report>) {
        if self.sched.is_some() {
            let node = self.me_node.clone();
            return self.admin_input(Input::Reports { node, reports });
        }
        match self.admin {
            Some((admin, term)) => self.send(
                admin,
                Request::Reports {
                    term,
                    reports: reports.clone(),
                },
                Pending::Reports(reports),
            ),
            None => self.unsent.extend(reports),
        }
    }

    /// Sends results held back while no admin was known.
    pub(super) fn flush_unsent(&mut self) {
        if !self.unsent.is_empty() {
            let reports = std::mem::take(&mut self.unsent);
            self.deliver_reports(reports);
        }
    }

    /// An outbound request failed at the transport level.
    pub(super) fn request_failed(&mut self, peer: PeerId, what: Pending, error: String) {
        debug!(%peer, %error, "request failed");
        match what {
            // The admin holding the call is gone (or never answered): what it
            // held is not known elsewhere until failover lands.
            Pending::Client(op, _) => op.fail(Error::AdminLost(format!("admin {peer} unreachable: {error}"))),
            Pending::Register => self.register_retry = Some(Instant::now() + Duration::from_millis(500)),
            Pending::Bids => {}
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
            Pending::Reports(reports) => {
                warn!(count = reports.len(), %error, "results could not reach the admin; keeping them");
                self.unsent.extend(reports);
            }
        }
    }
}

fn collect(ids: &[TaskId], done: &mut HashMap<TaskId, TaskReport>) -> Vec<TaskReport> {
    ids.iter().filter_map(|id| done.remove(id)).collect()
}
