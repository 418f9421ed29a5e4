//! Where a node's calls to the admin go: the client side of the mesh, as a
//! pure unit (no clock, no network; time is a `Duration` since the node
//! started, peers are any `P`).
//!
//! A call (a submission, a status query, a wait, a cancellation, a list of
//! workers or peers) goes to the admin this node follows, or is run
//! locally when this node is the admin. Without an admin it waits
//! (*parked*) until one is known or its deadline passes
//! ([`CallFailure::NoAdmin`]); a submission fails at once instead when this
//! side of the mesh is known to have no quorum ([`CallFailure::NoQuorum`]).
//! A call whose admin was lost, or that was answered by a node that is not
//! the admin or by an admin older than the one known, goes again to the
//! next admin: the ledger has what the old one committed, so nothing is
//! lost and a batch sent again with the same ids is recognised.
//!
//! The driver (the event loop) keeps each call's payload under its id and
//! carries out the [`Route`]s returned; it tells the unit who the admin is
//! ([`Calls::follow`]) and what became of each call.

use std::collections::BTreeMap;
use std::time::Duration;

/// How the unit is set up.
#[derive(Clone, Debug)]
pub struct CallsConfig {
    /// How long a call waits for an admin before it fails (default 15 s).
    pub admin_wait: Duration,
    /// How soon a call goes again after a node said it is not the admin
    /// (default 100 ms).
    pub retry: Duration,
    /// How long word that this side has no quorum stays true without being
    /// repeated (default 3 s; voters repeat it every second).
    pub no_quorum_fresh: Duration,
}

impl Default for CallsConfig {
    fn default() -> Self {
        CallsConfig {
            admin_wait: Duration::from_secs(15),
            retry: Duration::from_millis(100),
            no_quorum_fresh: Duration::from_secs(3),
        }
    }
}

/// Why a call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallFailure {
    /// No admin was known within the call's wait.
    NoAdmin,
    /// This side of the mesh reaches too few voters to have an admin.
    NoQuorum {
        /// Voters reached.
        reached: usize,
        /// Voters of the ledger.
        voters: usize,
    },
}

/// The admin a node knows of, with its term (`None`: none known).
pub type KnownAdmin<P> = Option<(P, u64)>;

/// What the driver does with a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route<P> {
    /// Send it to the admin `to`, of `term`.
    Send {
        /// The call.
        call: u64,
        /// The admin.
        to: P,
        /// Its term.
        term: u64,
    },
    /// Run it here: this node is the admin.
    Local {
        /// The call.
        call: u64,
    },
    /// Fail it (it is forgotten).
    Fail {
        /// The call.
        call: u64,
        /// Why.
        why: CallFailure,
    },
}

/// What an answer to a call is worth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// From the admin this node follows (or a newer one): use it.
    Take,
    /// From an admin older than the one this node follows: ignored; the
    /// call was parked and goes again to the known admin.
    Stale,
}

#[derive(Clone, Debug)]
struct Call<P> {
    submit: bool,
    deadline: Duration,
    /// The admin it was sent to and that admin's term; `None` while parked.
    sent: Option<(P, u64)>,
}

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct Calls<P> {
    cfg: CallsConfig,
    /// The admin this node follows, and its term.
    admin: Option<(P, u64)>,
    /// This node is the admin.
    local: bool,
    /// The latest word that this side has no quorum: voters reached,
    /// voters, and when it was heard.
    no_quorum: Option<(usize, usize, Duration)>,
    calls: BTreeMap<u64, Call<P>>,
    /// When parked calls go again after a "not the admin" answer.
    retry_at: Option<Duration>,
}

impl<P: Copy + Eq + std::fmt::Debug> Calls<P> {
    /// No admin known, no calls.
    pub fn new(cfg: CallsConfig) -> Self {
        Calls {
            cfg,
            admin: None,
            local: false,
            no_quorum: None,
            calls: BTreeMap::new(),
            retry_at: None,
        }
    }

    /// The admin this node follows, and its term.
    pub fn admin(&self) -> Option<(P, u64)> {
        self.admin
    }

    /// Calls not yet answered or failed.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// True when no call is under way.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// A new call, `submit` for a submission, or the next step of one that
    /// goes on (the next part of a batch, the rest of a long answer,
    /// another slice of a wait) after [`Calls::done`]; its deadline for
    /// finding an admin is `admin_wait` from `now`.
    pub fn start(&mut self, call: u64, submit: bool, now: Duration) -> Vec<Route<P>> {
        let deadline = now + self.cfg.admin_wait;
        self.calls.insert(
            call,
            Call {
                submit,
                deadline,
                sent: None,
            },
        );
        self.route(call, now).into_iter().collect()
    }

    /// The call ended (answered, or failed by the driver): forgotten.
    pub fn done(&mut self, call: u64) {
        self.calls.remove(&call);
    }

    /// The admin changed (`None`: none known), or this node became it
    /// (`local`). Parked calls go to the new admin.
    pub fn follow(&mut self, admin: Option<(P, u64)>, local: bool, now: Duration) -> Vec<Route<P>> {
        self.admin = admin;
        self.local = local;
        if admin.is_some() || local {
            self.no_quorum = None;
            self.retry_at = None;
            return self.route_parked(now);
        }
        Vec::new()
    }

    /// A node answered a call saying it is not the admin, with its own view
    /// (`hint`: the admin it knows, and its term). Returns the admin to
    /// follow, when the hint is news (a newer admin, or none where this
    /// node knew the one it asked), and what to do with the call: parked,
    /// to go again shortly — or failed at once, for a submission on a side
    /// without quorum.
    pub fn not_admin(
        &mut self,
        call: u64,
        asked: P,
        hint: Option<(P, u64)>,
        now: Duration,
    ) -> (Option<KnownAdmin<P>>, Vec<Route<P>>) {
        let known = self.admin.map_or(0, |a| a.1);
        let follow = match hint {
            Some((peer, term)) if term > known => Some(Some((peer, term))),
            None if self.admin.is_some_and(|a| a.0 == asked) => Some(None),
            _ => None,
        };
        (follow, self.park(call, now, false))
    }

    /// A call's request failed in transport (`peer` gone or silent).
    /// Returns true when `peer` was the admin this node followed (the
    /// driver follows no admin until the next is heard of). The call is
    /// parked, to go again to the next admin, waiting for one afresh.
    pub fn lost(&mut self, call: u64, peer: P, now: Duration) -> (bool, Vec<Route<P>>) {
        let was_admin = self.admin.is_some_and(|a| a.0 == peer);
        (was_admin, self.park(call, now, true))
    }

    /// An answer to a call, from the admin it was sent to: taken, or stale
    /// when this node has since followed a newer admin (the answer may
    /// tell of decisions the newer admin does not have; the call is parked
    /// and goes again shortly). An answer to a call not sent is stale.
    pub fn answered(&mut self, call: u64, now: Duration) -> (Verdict, Vec<Route<P>>) {
        let known = self.admin.map_or(0, |a| a.1);
        match self.calls.get(&call).and_then(|c| c.sent) {
            Some((_, term)) if term >= known => (Verdict::Take, Vec::new()),
            _ => (Verdict::Stale, self.park(call, now, true)),
        }
    }

    /// A voter says this side has no quorum: parked submissions fail at
    /// once (other calls keep waiting for an admin).
    pub fn no_quorum(&mut self, reached: usize, voters: usize, now: Duration) -> Vec<Route<P>> {
        if self.admin.is_some() || self.local || voters == 0 || reached > voters {
            return Vec::new();
        }
        self.no_quorum = Some((reached, voters, now));
        let why = CallFailure::NoQuorum { reached, voters };
        let failed: Vec<u64> = self
            .calls
            .iter()
            .filter(|(_, c)| c.submit && c.sent.is_none())
            .map(|(id, _)| *id)
            .collect();
        failed
            .into_iter()
            .map(|call| {
                self.calls.remove(&call);
                Route::Fail { call, why }
            })
            .collect()
    }

    /// Why new work is refused at once, if it is: no admin, and word that
    /// this side has no quorum heard within `no_quorum_fresh`.
    pub fn quorum_lost(&self, now: Duration) -> Option<CallFailure> {
        let (reached, voters, at) = self.no_quorum?;
        let fresh = now.saturating_sub(at) < self.cfg.no_quorum_fresh;
        (self.admin.is_none() && !self.local && fresh).then_some(CallFailure::NoQuorum { reached, voters })
    }

    /// Time passes: parked calls past their deadline fail, and parked calls
    /// go again when a retry is due.
    pub fn tick(&mut self, now: Duration) -> Vec<Route<P>> {
        let expired: Vec<u64> = self
            .calls
            .iter()
            .filter(|(_, c)| c.sent.is_none() && c.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        let mut out: Vec<Route<P>> = expired
            .into_iter()
            .map(|call| {
                self.calls.remove(&call);
                Route::Fail {
                    call,
                    why: CallFailure::NoAdmin,
                }
            })
            .collect();
        if self.retry_at.is_some_and(|t| t <= now) {
            self.retry_at = None;
            out.extend(self.route_parked(now));
        }
        out
    }

    /// When [`Calls::tick`] is next due.
    pub fn next_deadline(&self) -> Option<Duration> {
        let parked = self
            .calls
            .values()
            .filter(|c| c.sent.is_none())
            .map(|c| c.deadline)
            .min();
        [parked, self.retry_at].into_iter().flatten().min()
    }

    /// Parks a call that was sent, to go again shortly. With `fresh` (its
    /// admin was lost or replaced) its wait for the next admin starts
    /// now; without (a node said it is not the admin), the call keeps its
    /// deadline, so that nodes pointing at each other cannot keep it alive.
    fn park(&mut self, call: u64, now: Duration, fresh: bool) -> Vec<Route<P>> {
        let Some(c) = self.calls.get_mut(&call) else {
            return Vec::new();
        };
        c.sent = None;
        if fresh {
            c.deadline = now + self.cfg.admin_wait;
        }
        if c.submit {
            if let Some(why) = self.quorum_lost(now) {
                self.calls.remove(&call);
                return vec![Route::Fail { call, why }];
            }
        }
        let soon = now + self.cfg.retry;
        self.retry_at = Some(self.retry_at.map_or(soon, |t| t.min(soon)));
        Vec::new()
    }

    fn route_parked(&mut self, now: Duration) -> Vec<Route<P>> {
        let parked: Vec<u64> = self
            .calls
            .iter()
            .filter(|(_, c)| c.sent.is_none())
            .map(|(id, _)| *id)
            .collect();
        parked
            .into_iter()
            .filter_map(|call| self.route(call, now))
            .collect()
    }

    fn route(&mut self, call: u64, now: Duration) -> Option<Route<P>> {
        let c = self.calls.get_mut(&call)?;
        if self.local {
            self.calls.remove(&call);
            return Some(Route::Local { call });
        }
        if let Some((to, term)) = self.admin {
            c.sent = Some((to, term));
            return Some(Route::Send { call, to, term });
        }
        if c.deadline <= now {
            self.calls.remove(&call);
            let why = CallFailure::NoAdmin;
            return Some(Route::Fail { call, why });
        }
        if c.submit {
            if let Some(why) = self.quorum_lost(now) {
                self.calls.remove(&call);
                return Some(Route::Fail { call, why });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn calls() -> Calls<u8> {
        Calls::new(CallsConfig::default())
    }

    #[test]
    fn a_call_waits_for_an_admin_then_goes_to_it() {
        let mut c = calls();
        assert!(c.start(1, false, ms(0)).is_empty(), "parked");
        assert_eq!(c.next_deadline(), Some(ms(15_000)));
        let routes = c.follow(Some((7, 2)), false, ms(10));
        assert_eq!(
            routes,
            [Route::Send {
                call: 1,
                to: 7,
                term: 2
            }]
        );
        assert_eq!(c.next_deadline(), None, "sent calls have no deadline here");
    }

    #[test]
    fn a_call_without_an_admin_fails_at_its_deadline() {
        let mut c = calls();
        c.start(1, false, ms(0));
        assert!(c.tick(ms(14_999)).is_empty());
        let failed = c.tick(ms(15_000));
        assert_eq!(
            failed,
            [Route::Fail {
                call: 1,
                why: CallFailure::NoAdmin
            }]
        );
        assert!(c.is_empty());
    }

    #[test]
    fn the_admin_runs_its_own_calls_locally() {
        let mut c = calls();
        c.follow(Some((1, 3)), true, ms(0));
        assert_eq!(c.start(5, true, ms(0)), [Route::Local { call: 5 }]);
        assert!(c.is_empty(), "a local call is the driver's from then on");
    }

    #[test]
    fn a_lost_admin_parks_the_call_and_the_next_admin_gets_it() {
        let mut c = calls();
        c.follow(Some((1, 2)), false, ms(0));
        c.start(9, true, ms(0));
        let (was_admin, routes) = c.lost(9, 1, ms(50));
        assert!(was_admin && routes.is_empty());
        c.follow(None, false, ms(50));
        // The retry finds no admin: still parked.
        assert!(c.tick(ms(200)).is_empty());
        let routes = c.follow(Some((2, 3)), false, ms(300));
        assert_eq!(
            routes,
            [Route::Send {
                call: 9,
                to: 2,
                term: 3
            }]
        );
    }

    #[test]
    fn a_not_admin_answer_with_a_newer_admin_is_followed_and_an_older_one_is_not() {
        let mut c = calls();
        c.follow(Some((1, 4)), false, ms(0));
        c.start(1, false, ms(0));
        let (follow, routes) = c.not_admin(1, 1, Some((2, 5)), ms(10));
        assert_eq!(follow, Some(Some((2, 5))));
        assert!(routes.is_empty(), "parked, to go again shortly");
        c.follow(Some((2, 5)), false, ms(10));
        // The retry is due: it was already sent to the new admin.
        assert!(c.tick(ms(110)).is_empty());
        c.start(2, false, ms(120));
        let (follow, _) = c.not_admin(2, 2, Some((1, 4)), ms(130));
        assert_eq!(follow, None, "an older admin is not followed");
        let again = c.tick(ms(230));
        assert_eq!(
            again,
            [Route::Send {
                call: 2,
                to: 2,
                term: 5
            }]
        );
        // The node asked says it knows no admin, and it was ours.
        let (follow, _) = c.not_admin(2, 2, None, ms(240));
        assert_eq!(follow, Some(None));
    }

    #[test]
    fn an_answer_from_an_older_admin_is_stale_and_the_call_goes_again() {
        let mut c = calls();
        c.follow(Some((1, 2)), false, ms(0));
        c.start(1, false, ms(0));
        c.follow(Some((2, 3)), false, ms(5));
        let (verdict, _) = c.answered(1, ms(10));
        assert_eq!(verdict, Verdict::Stale);
        assert_eq!(
            c.tick(ms(110)),
            [Route::Send {
                call: 1,
                to: 2,
                term: 3
            }]
        );
        assert_eq!(c.answered(1, ms(120)).0, Verdict::Take);
    }

    #[test]
    fn without_quorum_submissions_fail_at_once_and_other_calls_wait() {
        let mut c = calls();
        c.start(1, true, ms(0));
        c.start(2, false, ms(0));
        let failed = c.no_quorum(1, 3, ms(100));
        let why = CallFailure::NoQuorum {
            reached: 1,
            voters: 3,
        };
        assert_eq!(failed, [Route::Fail { call: 1, why }]);
        assert_eq!(
            c.start(3, true, ms(200)),
            [Route::Fail { call: 3, why }],
            "a new one at once"
        );
        assert_eq!(c.len(), 1, "the status call still waits");
        // Word of no quorum fades unless repeated.
        assert!(c.quorum_lost(ms(3_099)).is_some());
        assert!(c.quorum_lost(ms(3_100)).is_none());
        assert!(c.start(4, true, ms(3_200)).is_empty(), "parked again");
        // An admin clears it.
        c.no_quorum(1, 3, ms(3_300));
        let routes = c.follow(Some((1, 9)), false, ms(3_400));
        assert_eq!(routes.len(), 1, "the status call goes (the submission failed)");
        assert!(c.quorum_lost(ms(3_400)).is_none());
        // A bogus count is ignored.
        c.follow(None, false, ms(3_500));
        assert!(c.no_quorum(4, 3, ms(3_500)).is_empty());
        assert!(c.quorum_lost(ms(3_500)).is_none());
    }

    #[test]
    fn nodes_that_point_at_each_other_cannot_keep_a_call_alive() {
        let mut c = calls();
        c.follow(Some((1, 2)), false, ms(0));
        c.start(1, false, ms(0));
        let mut now = ms(0);
        loop {
            // The node asked says the other is the admin, at the same term.
            let (follow, _) = c.not_admin(1, 1, Some((2, 2)), now);
            assert_eq!(follow, None, "not news: same term");
            now += ms(100);
            let routes = c.tick(now);
            if routes.contains(&Route::Fail {
                call: 1,
                why: CallFailure::NoAdmin,
            }) {
                break;
            }
            assert_eq!(
                routes,
                [Route::Send {
                    call: 1,
                    to: 1,
                    term: 2
                }]
            );
            assert!(now < ms(16_000), "still alive at {now:?}");
        }
        assert!(now >= ms(15_000), "failed early, at {now:?}");
    }

    #[test]
    fn a_submission_answered_not_admin_on_a_side_without_quorum_fails() {
        let mut c = calls();
        c.follow(Some((1, 2)), false, ms(0));
        c.start(1, true, ms(0));
        c.follow(None, false, ms(10));
        c.no_quorum(1, 3, ms(20));
        let (_, routes) = c.not_admin(1, 1, None, ms(30));
        let why = CallFailure::NoQuorum {
            reached: 1,
            voters: 3,
        };
        assert_eq!(routes, [Route::Fail { call: 1, why }]);
    }

    #[test]
    fn each_step_of_a_call_that_goes_on_waits_afresh_for_an_admin() {
        let mut c = calls();
        c.start(1, false, ms(0));
        c.follow(Some((1, 2)), false, ms(14_000));
        // A wait answered slice by slice, long past the first deadline.
        assert_eq!(c.answered(1, ms(60_000)).0, Verdict::Take);
        c.done(1);
        c.follow(None, false, ms(60_000));
        assert!(c.start(1, false, ms(60_000)).is_empty(), "parked: no admin now");
        assert!(c.tick(ms(74_999)).is_empty());
        assert_eq!(
            c.tick(ms(75_000)),
            [Route::Fail {
                call: 1,
                why: CallFailure::NoAdmin
            }]
        );
    }

    /// Whatever happens, every call ends exactly once (sent calls end when
    /// the driver says so), and a call is never sent while parked nor
    /// failed twice.
    #[test]
    fn every_call_ends_once_over_random_histories() {
        for seed in 0..500u64 {
            let mut rng = seed;
            let mut next = |n: u64| {
                rng = crate::task::mix64(rng.wrapping_add(0x9e37_79b9_7f4a_7c15));
                rng % n
            };
            let mut c = calls();
            let mut now = ms(0);
            let mut ended = std::collections::BTreeSet::new();
            let mut sent: BTreeMap<u64, u8> = BTreeMap::new();
            let mut started = 0u64;
            let apply = |routes: Vec<Route<u8>>,
                         ended: &mut std::collections::BTreeSet<u64>,
                         sent: &mut BTreeMap<u64, u8>| {
                for r in routes {
                    match r {
                        Route::Send { call, to, .. } => {
                            assert!(!ended.contains(&call), "seed {seed}: {call} sent after it ended");
                            sent.insert(call, to);
                        }
                        Route::Local { call } | Route::Fail { call, .. } => {
                            assert!(ended.insert(call), "seed {seed}: {call} ended twice");
                            sent.remove(&call);
                        }
                    }
                }
            };
            for _ in 0..200 {
                now += ms(next(400));
                let routes = match next(8) {
                    0 => {
                        started += 1;
                        c.start(started, next(2) == 0, now)
                    }
                    1 => {
                        let admin = (next(3) > 0).then(|| (next(3) as u8, next(5)));
                        c.follow(admin, next(6) == 0, now)
                    }
                    2 => c.no_quorum(next(3) as usize, 3, now),
                    3 => match sent.keys().next().copied() {
                        Some(call) => {
                            let to = sent[&call];
                            c.lost(call, to, now).1
                        }
                        None => Vec::new(),
                    },
                    4 => match sent.keys().last().copied() {
                        Some(call) => {
                            let hint = (next(2) == 0).then(|| (next(3) as u8, next(5)));
                            c.not_admin(call, sent[&call], hint, now).1
                        }
                        None => Vec::new(),
                    },
                    5 => match sent.keys().next().copied() {
                        Some(call) => {
                            let (verdict, routes) = c.answered(call, now);
                            if verdict == Verdict::Take {
                                c.done(call);
                                ended.insert(call);
                                sent.remove(&call);
                            }
                            routes
                        }
                        None => Vec::new(),
                    },
                    _ => c.tick(now),
                };
                apply(routes, &mut ended, &mut sent);
            }
            // The mesh heals: an admin, and time enough for every call.
            let routes = c.follow(Some((0, 99)), false, now);
            apply(routes, &mut ended, &mut sent);
            for call in sent.keys().copied().collect::<Vec<_>>() {
                if c.answered(call, now).0 == Verdict::Stale {
                    let routes = c.tick(now + ms(100));
                    assert_eq!(
                        routes,
                        [Route::Send {
                            call,
                            to: 0,
                            term: 99
                        }],
                        "seed {seed}"
                    );
                    assert_eq!(c.answered(call, now).0, Verdict::Take);
                }
                c.done(call);
                ended.insert(call);
            }
            let routes = c.tick(now + ms(20_000));
            apply(routes, &mut ended, &mut sent);
            assert!(c.is_empty(), "seed {seed}: calls left: {}", c.len());
            assert_eq!(ended.len() as u64, started, "seed {seed}");
        }
    }
}
