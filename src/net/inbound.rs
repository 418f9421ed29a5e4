//! Request-response traffic: requests from peers, and answers to ours.

use std::time::Duration;

use libp2p::gossipsub::MessageAcceptance;
use libp2p::request_response::{self, Message};
use libp2p::PeerId;
use tracing::{debug, warn};

use super::admin::Answer;
use super::guard::strike;
use super::link::{LinkEvent, Responder};
use super::{EventLoop, Pending};
use crate::access::Right;
use crate::protocol::{AssignAnswer, LinkFrame, Request, Response, Unreadable};
use crate::scheduler::Input;

/// The longest a remote caller may ask the admin to hold an await.
const MAX_AWAIT: Duration = Duration::from_secs(30);

impl EventLoop {
    pub(super) fn on_rr(&mut self, ev: request_response::Event<Request, Response>) {
        match ev {
            request_response::Event::Message { peer, message, .. } => match message {
                Message::Request { request, channel, .. } => {
                    self.on_request(peer, request, Responder::Rr(channel))
                }
                Message::Response { request_id, response } => {
                    if let Some(what) = self.pending.remove(&request_id) {
                        self.on_response(peer, what, response);
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some(what) = self.pending.remove(&request_id) {
                    self.request_failed(peer, what, error.to_string());
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                // Frames that cannot be read arrive as `Request::Unreadable`
                // (request-response reports no read failure); what ends
                // here is a stream lost after its request was read.
                debug!(%peer, %error, "inbound request failed");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    /// A link's frame, failure or end.
    pub(super) fn on_link(&mut self, event: LinkEvent) {
        match event {
            LinkEvent::Opened { peer, link, queue } => self.links.opened(peer, link, queue),
            LinkEvent::Frame {
                peer,
                link,
                frame: LinkFrame::Request { id, request },
            } => {
                let max = self.cfg.limits.max_streams_per_connection;
                if self.links.admit(link, max) {
                    self.on_request(peer, request, Responder::Link { link, id });
                } else {
                    // Answered at once, outside the count it is over.
                    let why = format!("over {max} requests wait for answers on this link; ask again later");
                    let response = Response::Refused(why);
                    self.links.refuse(link, LinkFrame::Response { id, response });
                }
            }
            LinkEvent::Frame {
                peer,
                frame: LinkFrame::Response { id, response },
                ..
            } => {
                // An answer to nothing this node asked that peer is dropped.
                if let Some(what) = self.link_waits.answer(id, peer) {
                    self.on_response(peer, what, response);
                }
            }
            LinkEvent::Unreadable(peer, why) => {
                self.count_unreadable(peer, why);
            }
            LinkEvent::Down {
                peer,
                link,
                unsupported,
            } => {
                self.links.down(peer, link, unsupported);
                self.links_lost(peer, Some(link));
            }
        }
    }

    /// Requests that waited on a link to `peer` that is gone fail, as over
    /// a closed connection (every link to it with `None`).
    pub(super) fn links_lost(&mut self, peer: PeerId, link: Option<u64>) {
        for what in self.link_waits.lost(peer, link) {
            self.request_failed(peer, what, "the link to the peer closed".into());
        }
    }

    /// Answers a request by the way it came.
    pub(super) fn respond(&mut self, channel: Responder, resp: Response) {
        match channel {
            Responder::Rr(channel) => {
                let _ = self.swarm.behaviour_mut().rr.send_response(channel, resp);
            }
            Responder::Link { link, id } => {
                self.links
                    .answer(link, LinkFrame::Response { id, response: resp });
            }
        }
    }

    /// The answer for a node that asked this one as if it were the admin.
    pub(super) fn not_admin(&self) -> Response {
        Response::NotAdmin {
            admin: self.admin.map(|a| a.0.to_string()),
            term: self.admin.map_or(0, |a| a.1),
        }
    }

    /// True when `(peer, term)` may command this node's workers: the admin
    /// it follows, or a newer one the ledger vouches for (see
    /// [`EventLoop::vouch`]) whose notice has not arrived yet. An older
    /// admin, woken from a pause, and a peer that is no admin are refused.
    fn obeys(&mut self, peer: PeerId, term: u64) -> bool {
        match self.admin {
            Some(a) if a == (peer, term) => true,
            Some((_, known)) if term <= known => false,
            _ => {
                let Some(cluster) = self.raft.cluster.map(|c| c.0) else {
                    return false;
                };
                if !matches!(self.vouch(peer, cluster, term), MessageAcceptance::Accept) {
                    return false;
                }
                self.admin_changed(Some(peer), term);
                true
            }
        }
    }

    pub(super) fn on_request(&mut self, peer: PeerId, req: Request, channel: Responder) {
        if let Request::Unreadable(why) = req {
            return self.unreadable(peer, why, channel);
        }
        let right = match &req {
            Request::Join { .. } => Some(Right::Admin),
            Request::Register { .. }
            | Request::Bids { .. }
            | Request::Reports { .. }
            | Request::Renew { .. } => Some(Right::HostWorkers),
            Request::Submit { .. }
            | Request::SubmitPart { .. }
            | Request::Cancel { .. }
            | Request::Status { .. }
            | Request::Await { .. }
            | Request::Workers
            | Request::Peers => Some(Right::Client),
            // Checked against the configuration and the admin followed.
            Request::Raft { .. }
            | Request::RaftPart { .. }
            | Request::Assign { .. }
            | Request::Abort { .. }
            | Request::Unreadable(_) => None,
        };
        if let Some(right) = right {
            if let Err(why) = self.may(right, peer) {
                return self.respond(channel, Response::Refused(why));
            }
        }
        if let Some(p) = self.presence.get_mut(&peer) {
            p.last_asked = Some(std::time::Instant::now());
        }
        let req = match req {
            Request::Raft { cluster, messages } => {
                self.respond(channel, Response::Ok);
                return self.on_raft(peer, cluster, messages);
            }
            Request::RaftPart { cluster, part } => {
                let answer = self.on_raft_part(peer, cluster, part);
                return self.respond(channel, answer);
            }
            Request::Join {
                cluster,
                raft_id,
                addrs,
                priority,
            } => {
                let answer = self.on_join(peer, cluster, raft_id, addrs, priority);
                return self.respond(channel, answer);
            }
            Request::Assign { term, assignments } => {
                // Awards are taken only from the admin this node follows.
                if !self.obeys(peer, term) {
                    let why = format!("{peer} at term {term} is not the admin this node follows");
                    return self.respond(channel, Response::Refused(why));
                }
                let answers: Vec<AssignAnswer> =
                    assignments.into_iter().map(|a| self.workers.accept(a)).collect();
                return self.respond(channel, Response::Assigned(answers));
            }
            Request::Abort { term, attempts } => {
                if !self.obeys(peer, term) {
                    let why = format!("{peer} at term {term} is not the admin this node follows");
                    return self.respond(channel, Response::Refused(why));
                }
                debug!(count = attempts.len(), "attempts aborted by the admin");
                for (task, attempt) in attempts {
                    self.workers.cancel(task, attempt);
                }
                return self.respond(channel, Response::Ok);
            }
            other => other,
        };
        let Some(term) = self.sched.as_ref().map(|_| self.admin.map_or(0, |a| a.1)) else {
            let resp = self.not_admin();
            return self.respond(channel, resp);
        };
        let node = self.names.node(&peer);
        match req {
            Request::Register { workers } => {
                self.admin_input(Input::Register { node, workers });
                self.ack_when_committed(channel);
            }
            Request::Bids { term: t, bids } => {
                debug!(%peer, count = bids.len(), term = t, "bids");
                self.respond(channel, Response::Ok);
                if t == term {
                    self.admin_input(Input::Bids { node, bids });
                }
            }
            Request::Reports { reports, .. } => {
                // Acknowledged whatever they hold (a stale attempt's result
                // is ignored by the scheduler), once what they changed is
                // committed: then the node may forget them.
                self.admin_input(Input::Reports { node, reports });
                self.ack_when_committed(channel);
            }
            Request::Renew {
                term: t,
                held,
                waiting,
            } => {
                // `Ok` says the leases were extended: a renewal under an
                // older term was not.
                if t == term {
                    self.respond(channel, Response::Ok);
                    self.admin_input(Input::Renew { node, held, waiting });
                } else {
                    self.respond(
                        channel,
                        Response::Refused(format!("renewal under term {t}; the term is {term}")),
                    );
                }
            }
            Request::Submit { tasks } => self.admin_submit(Some(peer), tasks, Answer::Remote(channel)),
            Request::SubmitPart { upload, tasks, last } => {
                self.admin_submit_part(peer, upload, tasks, last, channel)
            }
            Request::Cancel { ids } => self.admin_cancel(ids, Answer::Remote(channel)),
            Request::Status { ids } => {
                let lookups = self.admin_status(&ids, self.frame_budget());
                self.respond(channel, Response::Lookups(lookups));
            }
            Request::Await {
                ids,
                max_wait_ms,
                any,
            } => {
                let wait = Duration::from_millis(max_wait_ms).min(MAX_AWAIT);
                self.admin_await(ids, any, Answer::Remote(channel), Some(wait));
            }
            Request::Peers => {
                let peers = self.admin_peers();
                self.respond(channel, Response::Peers(peers));
            }
            Request::Workers => {
                let workers = self.admin_workers();
                self.respond(channel, Response::Workers(workers));
            }
            // Answered before the admin check above.
            Request::Assign { .. }
            | Request::Abort { .. }
            | Request::Raft { .. }
            | Request::RaftPart { .. }
            | Request::Join { .. }
            | Request::Unreadable(_) => {}
        }
    }

    /// A frame the codec could not read: what no honest node sends counts
    /// strikes against the peer; the peer is told why.
    fn unreadable(&mut self, peer: PeerId, why: Unreadable, channel: Responder) {
        let text = self.count_unreadable(peer, why);
        self.respond(channel, Response::Refused(text));
    }

    /// Counts strikes for a frame that could not be read; what to tell the
    /// peer.
    pub(super) fn count_unreadable(&mut self, peer: PeerId, why: Unreadable) -> String {
        let (strikes, text) = match why {
            Unreadable::Malformed(t) => (strike::MALFORMED, t),
            Unreadable::Slow(t) => (strike::SLOW, t),
            Unreadable::Busy(t) => (0, t),
        };
        debug!(%peer, why = text, "unreadable request");
        if strikes > 0 {
            self.strike(peer, strikes, "malformed, oversize or unfinished requests");
        }
        text
    }

    pub(super) fn on_response(&mut self, peer: PeerId, what: Pending, resp: Response) {
        self.admin_points_on(peer, &resp);
        match what {
            Pending::Client(call) => self.client_answer(peer, call, resp),
            Pending::Register => {
                if let Response::Refused(why) = &resp {
                    // Refused by an allow-list: said once, asked again slowly
                    // (the operator may add this node to the list).
                    self.told_once(format!("the admin refused this node's workers: {why}"));
                    self.register_retry = Some(tokio::time::Instant::now() + Duration::from_secs(5));
                } else if !matches!(resp, Response::Ok) {
                    debug!(%peer, answer = resp.summary(), "registration not taken; will retry");
                    self.register_retry = Some(tokio::time::Instant::now() + Duration::from_millis(500));
                }
            }
            // Taken while the leases held (answered `Ok` only then): the
            // queued awards it named may start for longer.
            Pending::Renew(sent) => {
                if matches!(resp, Response::Ok) {
                    debug!("leases renewed");
                    self.workers.renewed(sent);
                }
            }
            Pending::Bids | Pending::Abort | Pending::Raft => {}
            Pending::RaftPart(to) => self.raft_part_answered(to, matches!(resp, Response::Ok)),
            Pending::Join => {
                if let Response::Refused(why) = &resp {
                    self.told_once(format!("the admin refused this node's replica: {why}"));
                } else if !matches!(resp, Response::Ok) {
                    debug!(%peer, answer = resp.summary(), "join not taken yet; will ask again");
                }
            }
            Pending::Assign { node, items } => {
                let answers = match resp {
                    Response::Assigned(a) => a,
                    other => {
                        warn!(%peer, answer = other.summary(), "assignment not taken");
                        items
                            .iter()
                            .map(|&(task, attempt)| AssignAnswer {
                                task,
                                attempt,
                                accepted: false,
                                reason: None,
                            })
                            .collect()
                    }
                };
                for a in answers {
                    if !items.contains(&(a.task, a.attempt)) {
                        continue; // answers only count for what was sent
                    }
                    if let Some(why) = &a.reason {
                        debug!(%peer, task = %a.task, why, "assignment refused");
                    }
                    let input = Input::AssignAnswer {
                        node: node.clone(),
                        task: a.task,
                        attempt: a.attempt,
                        accepted: a.accepted,
                    };
                    self.admin_input(input);
                }
            }
            Pending::Reports(batch) => {
                if matches!(resp, Response::Ok) {
                    self.outbox.acked(batch);
                } else {
                    warn!(%peer, answer = resp.summary(), "results not taken; will send them again");
                    let now = self.now();
                    self.outbox.failed(batch, now);
                }
            }
        }
    }
}
