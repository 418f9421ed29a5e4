//! Replays the committed fuzz corpora on stable Rust.
//!
//! Every decoder that reads data from outside has a cargo-fuzz target in
//! `fuzz/` (`frame`, `gossip`, `message`, `taskfile`, `config`); the bodies
//! of the targets are the functions of `fuzz/entries.rs`, which this test
//! includes too. Here each file of `fuzz/corpus/<target>/` (real messages,
//! hostile cases from the security review, and what the fuzzers kept) is
//! fed to its target's function: none may panic. A missing or empty corpus
//! directory fails the test, so it cannot pass by finding nothing.
//!
//! Run it with `cargo test --test fuzz_corpus`. To fuzz (nightly Rust and
//! `cargo install cargo-fuzz`), from the repository's root:
//!
//! ```text
//! cargo +nightly fuzz run <target> -- -max_total_time=240 -rss_limit_mb=2048 -timeout=10
//! cargo +nightly fuzz cmin <target>
//! cargo test --test fuzz_corpus -- --ignored write_seeds   # puts the seeds back
//! ```
//!
//! The fuzzer adds what it finds to `fuzz/corpus/<target>/`; `cmin` keeps
//! only the files that add coverage, and `write_seeds` (ignored by default)
//! writes the hand-made `seed-*` files again, since `cmin` may drop some of
//! the hostile cases. Keep each corpus to about 300 files (all corpora under
//! 3 MB): when `cmin` keeps more, merge edge coverage only, seeds first, e.g.
//! `fuzz/target/x86_64-unknown-linux-gnu/release/<target> -merge=1
//! -set_cover_merge=1 -use_counters=0 SEEDS_ONLY_DIR CMIN_DIR`, and drop the
//! files that add least. A crash is saved in `fuzz/artifacts/<target>/`:
//! `cargo +nightly fuzz run <target> <file>` replays it; once fixed, it
//! belongs among the seeds.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

#[path = "../fuzz/entries.rs"]
mod entries;

/// The corpus directory of `target`.
fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

/// Feeds every file of `target`'s corpus to `entry`; fails naming every
/// file that panicked.
fn replay(target: &str, entry: fn(&[u8])) {
    let dir = corpus(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the corpus {}: {e}", dir.display()))
        .map(|f| f.expect("a corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "the corpus {} is empty", dir.display());
    let mut failed = Vec::new();
    for file in &files {
        let data = std::fs::read(file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        if catch_unwind(AssertUnwindSafe(|| entry(&data))).is_err() {
            failed.push(file.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} {target} inputs panicked:\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
}

#[test]
fn frame_corpus() {
    replay("frame", entries::frame);
}

#[test]
fn gossip_corpus() {
    replay("gossip", entries::gossip);
}

#[test]
fn message_corpus() {
    replay("message", entries::message);
}

#[test]
fn taskfile_corpus() {
    replay("taskfile", entries::taskfile);
}

#[test]
fn config_corpus() {
    replay("config", entries::config);
}

/// Writes the hand-made seeds (`seed-*`) into `fuzz/corpus/<target>/`:
/// `cargo test --test fuzz_corpus -- --ignored write_seeds`. Deterministic,
/// so writing them again changes nothing.
#[test]
#[ignore = "writes the seed files into fuzz/corpus"]
fn write_seeds() {
    for (target, seeds) in [
        ("frame", seeds::frames()),
        ("gossip", seeds::gossip()),
        ("message", seeds::messages()),
        ("taskfile", seeds::taskfiles()),
        ("config", seeds::configs()),
    ] {
        let dir = corpus(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, data) in seeds {
            std::fs::write(dir.join(format!("seed-{name}")), data).unwrap();
        }
    }
}

/// The hand-made seeds: valid encodings of real messages and files, and
/// hostile cases.
mod seeds {
    use taskmesh::protocol::{
        encode, AdminNotice, AssignAnswer, Gossip, PeerInfo, RaftPart, Request, Response, WIRE_VERSION,
    };
    use taskmesh::scheduler::{
        Announcement, Assignment, Bid, CancelOutcome, DepOutput, Failure, Lookup, Report, SubmitError,
    };
    use taskmesh::task::{AuctionRecord, BidRecord, BidVerdict, WorkerSpec};
    use taskmesh::{
        AttemptOutcome, AttemptRecord, NodeId, Payload, Task, TaskError, TaskId, TaskReport, TaskStatus,
        Trigger, WorkerInfo,
    };

    type Seeds = Vec<(String, Vec<u8>)>;

    fn id(n: u128) -> TaskId {
        TaskId(uuid::Uuid::from_u128(
            0x5eed_0000_0000_4000_8000_0000_0000_0000 | n,
        ))
    }

    const PEER: &str = "12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA";

    /// Bincode's variable-length integer (the wire's integer encoding).
    fn varint(n: u64) -> Vec<u8> {
        match n {
            0..=250 => vec![n as u8],
            251..=0xffff => [&[251u8][..], &(n as u16).to_le_bytes()].concat(),
            0x1_0000..=0xffff_ffff => [&[252u8][..], &(n as u32).to_le_bytes()].concat(),
            _ => [&[253u8][..], &n.to_le_bytes()].concat(),
        }
    }

    /// A length-prefixed frame around `body`.
    fn framed(body: &[u8]) -> Vec<u8> {
        [&(body.len() as u32).to_le_bytes()[..], body].concat()
    }

    /// Deterministic junk.
    fn junk(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (x >> 33) as u8
            })
            .collect()
    }

    /// The body of `msg` up to the length of its last field, which must be
    /// empty (encoded as one 0 byte), followed by `tail`: a small body
    /// whose last vector or string claims what `tail` says.
    fn ending_with<T: serde::Serialize>(msg: &T, tail: &[u8]) -> Vec<u8> {
        let mut body = encode(msg).unwrap();
        assert_eq!(body.pop(), Some(0), "the last field is not empty");
        body.extend_from_slice(tail);
        body
    }

    /// The body of `msg` cut where the bytes `marker` start, followed by
    /// `tail`.
    fn cut_at<T: serde::Serialize>(msg: &T, marker: &[u8], tail: &[u8]) -> Vec<u8> {
        let body = encode(msg).unwrap();
        let at = body
            .windows(marker.len())
            .position(|w| w == marker)
            .expect("the marker is in the body");
        [&body[..at], tail].concat()
    }

    /// A body of another wire version.
    fn versioned<T: serde::Serialize>(version: u16, msg: &T) -> Vec<u8> {
        bincode::serde::encode_to_vec((version, msg), bincode::config::standard()).unwrap()
    }

    fn task(n: u128, name: &str) -> Task {
        Task::with_id(id(n), name, "worker", 3)
            .with_payload(Payload::from_bytes(format!("input of {name}").into_bytes()))
    }

    fn full_task() -> Task {
        let mut t = task(10, "process")
            .depends_on(id(1))
            .depends_on(id(2))
            .with_timeout(std::time::Duration::from_secs(10))
            .with_queue_timeout(std::time::Duration::from_secs(60))
            .with_deadline(std::time::Duration::from_secs(3600))
            .with_retries(2)
            .with_max_attempts(5)
            .with_priority(-1000)
            .with_trigger(Trigger::OneFailed);
        t.difficulty = u32::MAX;
        t
    }

    fn report() -> TaskReport {
        let attempt = AttemptRecord {
            number: 1,
            worker: "Junior".into(),
            node: NodeId::new(PEER),
            started_ms: 1_700_000_000_000,
            duration_ms: Some(1200),
            outcome: AttemptOutcome::Lost {
                reason: "lease expired".into(),
            },
        };
        TaskReport {
            id: id(10),
            name: "process".into(),
            role: "worker".into(),
            difficulty: 5,
            status: TaskStatus::Failed,
            worker: Some("Junior".into()),
            node: Some(NodeId::new(PEER)),
            attempts: 2,
            history: vec![
                attempt.clone(),
                AttemptRecord {
                    number: 2,
                    duration_ms: None,
                    outcome: AttemptOutcome::Failed {
                        message: "exit 1".into(),
                        retryable: false,
                    },
                    ..attempt.clone()
                },
            ],
            auction: Some(AuctionRecord {
                bids: vec![BidRecord {
                    worker: "Junior".into(),
                    node: NodeId::new(PEER),
                    skill: 5,
                    load: 1,
                    capacity: 2,
                    verdict: BidVerdict::Won,
                }],
                reason: "best fit".into(),
                rounds: 2,
                queued: false,
            }),
            output: Some(Payload::from_bytes(vec![1, 2, 3])),
            error: Some(TaskError::Poison {
                max_attempts: 2,
                attempts: vec![attempt],
            }),
            elapsed_ms: 5000,
            run_ms: Some(1100),
            dependencies: vec![id(4)],
        }
    }

    fn requests() -> Vec<(&'static str, Request)> {
        let assignment = Assignment {
            task: id(10),
            attempt: 1,
            worker: "Junior".into(),
            name: "process".into(),
            role: "worker".into(),
            difficulty: 3,
            input: Payload::from_bytes(b"some input".to_vec()),
            deps: vec![
                DepOutput {
                    id: id(1),
                    name: "prep".into(),
                    outcome: Ok(Payload::from_bytes(b"out".to_vec())),
                },
                DepOutput {
                    id: id(2),
                    name: "other".into(),
                    outcome: Err("failed".into()),
                },
            ],
            timeout_ms: Some(10_000),
        };
        vec![
            (
                "raft",
                Request::Raft {
                    cluster: 0x18c_0000_1234,
                    messages: vec![vec![8, 3, 16, 1, 24, 2, 32, 7].into(), vec![].into()],
                },
            ),
            (
                "raft-part",
                Request::RaftPart {
                    cluster: 7,
                    part: RaftPart {
                        seq: 3,
                        offset: 4 << 20,
                        total: 9 << 20,
                        bytes: vec![0xaa; 100],
                    },
                },
            ),
            (
                "join",
                Request::Join {
                    cluster: 7,
                    raft_id: 42,
                    addrs: vec!["/ip4/192.168.1.7/tcp/7411".into()],
                    priority: 255,
                },
            ),
            (
                "register",
                Request::Register {
                    workers: vec![
                        WorkerSpec {
                            name: "Junior".into(),
                            role: "worker".into(),
                            skill: 3,
                            capacity: 1,
                            standing: Some(3),
                            queue: 0,
                        },
                        WorkerSpec {
                            name: "hasher".into(),
                            role: "hash".into(),
                            skill: 9,
                            capacity: 4,
                            standing: Some(3),
                            queue: 0,
                        },
                    ],
                },
            ),
            (
                "bids",
                Request::Bids {
                    term: 3,
                    bids: vec![Bid {
                        task: id(10),
                        round: 2,
                        worker: "Junior".into(),
                        skill: 3,
                        load: 0,
                        capacity: 1,
                        willing: true,
                    }],
                },
            ),
            (
                "assign",
                Request::Assign {
                    term: 3,
                    assignments: vec![assignment],
                },
            ),
            (
                "reports",
                Request::Reports {
                    term: 3,
                    reports: vec![
                        Report {
                            task: id(10),
                            attempt: 1,
                            worker: "Junior".into(),
                            outcome: Ok(Payload::from_bytes(b"done".to_vec())),
                            run_ms: 1200,
                        },
                        Report {
                            task: id(11),
                            attempt: 4,
                            worker: "Junior".into(),
                            outcome: Err(Failure {
                                message: "timed out".into(),
                                retryable: true,
                                timeout_ms: Some(10_000),
                            }),
                            run_ms: 10_000,
                        },
                    ],
                },
            ),
            (
                "renew",
                Request::Renew {
                    term: u64::MAX,
                    held: vec![(id(10), 1), (id(11), u32::MAX)],
                    waiting: vec![(id(11), u32::MAX)],
                },
            ),
            (
                "abort",
                Request::Abort {
                    term: 3,
                    attempts: vec![(id(10), 1)],
                },
            ),
            (
                "submit",
                Request::Submit {
                    tasks: vec![task(1, "prep"), task(2, "other"), full_task()],
                },
            ),
            (
                "submit-part",
                Request::SubmitPart {
                    upload: 99,
                    tasks: vec![task(1, "prep")],
                    last: false,
                },
            ),
            (
                "cancel",
                Request::Cancel {
                    ids: vec![id(1), id(2)],
                },
            ),
            ("status", Request::Status { ids: vec![id(10)] }),
            ("status-recent", Request::Status { ids: vec![] }),
            (
                "await",
                Request::Await {
                    ids: vec![id(1), id(10)],
                    max_wait_ms: 30_000,
                    any: true,
                },
            ),
            ("workers", Request::Workers),
            ("peers", Request::Peers),
        ]
    }

    fn responses() -> Vec<(&'static str, Response)> {
        vec![
            ("ok", Response::Ok),
            (
                "not-admin",
                Response::NotAdmin {
                    admin: Some(PEER.into()),
                    term: 4,
                },
            ),
            ("not-admin-none", Response::NotAdmin { admin: None, term: 0 }),
            (
                "assigned",
                Response::Assigned(vec![
                    AssignAnswer {
                        task: id(10),
                        attempt: 1,
                        accepted: true,
                        reason: None,
                    },
                    AssignAnswer {
                        task: id(11),
                        attempt: 2,
                        accepted: false,
                        reason: Some("no free slot".into()),
                    },
                ]),
            ),
            ("submitted", Response::Submitted(Ok(vec![id(1), id(2), id(10)]))),
            (
                "submitted-cycle",
                Response::Submitted(Err(SubmitError::Cycle {
                    tasks: vec!["a".into(), "b".into(), "a".into()],
                })),
            ),
            (
                "submitted-invalid",
                Response::Submitted(Err(SubmitError::Invalid {
                    task: "a".into(),
                    reason: "retries = 101 is over the limit of 100".into(),
                })),
            ),
            ("reports", Response::Reports(vec![Some(report()), None])),
            (
                "lookups",
                Response::Lookups(vec![
                    Lookup::Found(Box::new(report())),
                    Lookup::Evicted,
                    Lookup::Unknown,
                ]),
            ),
            (
                "cancelled",
                Response::Cancelled(vec![
                    CancelOutcome::Cancelled,
                    CancelOutcome::AlreadyFinished(TaskStatus::Completed),
                    CancelOutcome::Evicted,
                    CancelOutcome::Unknown,
                ]),
            ),
            (
                "workers",
                Response::Workers(vec![WorkerInfo {
                    name: "Junior".into(),
                    role: "worker".into(),
                    skill: 3,
                    capacity: 2,
                    load: 1,
                    node: NodeId::new(PEER),
                }]),
            ),
            (
                "peers",
                Response::Peers(vec![PeerInfo {
                    peer: PEER.into(),
                    is_admin: true,
                    workers: vec!["Junior".into()],
                    addrs: vec![format!("/ip4/10.0.0.1/tcp/7411/p2p/{PEER}")],
                    agent: Some("taskmesh/0.1.0".into()),
                    is_voter: true,
                }]),
            ),
            ("refused", Response::Refused("stale term 2 (now 3)".into())),
        ]
    }

    fn notice() -> AdminNotice {
        AdminNotice {
            cluster: 0x18c_0000_1234,
            term: 3,
            has_tasks: true,
            addrs: vec!["/ip4/10.0.0.1/tcp/7411".into(), "/ip6/::1/tcp/7411".into()],
            supersedes: vec![5, 6],
            voters: vec![PEER.into()],
        }
    }

    fn gossips() -> Vec<(&'static str, Gossip)> {
        vec![
            ("admin", Gossip::Admin(notice())),
            (
                "no-quorum",
                Gossip::NoQuorum {
                    cluster: 7,
                    reached: 1,
                    voters: 3,
                },
            ),
            (
                "announce",
                Gossip::Announce {
                    term: 3,
                    tasks: vec![
                        Announcement {
                            task: id(10),
                            round: 1,
                            name: "process".into(),
                            role: "worker".into(),
                            difficulty: 5,
                            input_len: 1 << 20,
                        },
                        Announcement {
                            task: id(11),
                            round: 7,
                            name: "ünïcödé".into(),
                            role: "hash".into(),
                            difficulty: 0,
                            input_len: 0,
                        },
                    ],
                },
            ),
        ]
    }

    /// Admin notices with term u64::MAX whose small bodies claim huge
    /// vectors and strings.
    fn hostile_notices() -> Seeds {
        let empty = Gossip::Admin(AdminNotice {
            term: u64::MAX,
            addrs: vec![],
            supersedes: vec![],
            voters: vec![],
            ..notice()
        });
        // Everything up to `addrs`: the body less its three empty vectors.
        let mut head = encode(&empty).unwrap();
        assert!(head.ends_with(&[0, 0, 0]));
        head.truncate(head.len() - 3);
        let huge = varint(u64::MAX);
        vec![
            ("admin-addrs-u64max", [&head[..], &huge].concat()),
            ("admin-addrs-1e6", [&head[..], &varint(1_000_000)].concat()),
            (
                "admin-addr-63mib-string",
                [&head[..], &varint(1), &varint((63 << 20) as u64), b"/ip4"].concat(),
            ),
            (
                "admin-addr-u64max-string",
                [&head[..], &varint(1), &huge].concat(),
            ),
            ("admin-supersedes-u64max", [&head[..], &[0], &huge].concat()),
            (
                "admin-voters-u64max",
                [&head[..], &[0, 0], &huge, &[3], b"abc"].concat(),
            ),
            ("admin-term-max", encode(&empty).unwrap()),
        ]
        .into_iter()
        .map(|(n, b)| (n.to_string(), b))
        .collect()
    }

    /// Request and response bodies that lie: huge claimed lengths, bad
    /// tags, other versions, trailing bytes.
    fn hostile_bodies() -> Seeds {
        let huge = varint(u64::MAX);
        let marker = Payload::from_bytes(vec![0xab; 7]);
        let submit = Request::Submit {
            tasks: vec![task(1, "prep").with_payload(marker.clone())],
        };
        let mut reported = report();
        reported.output = Some(marker);
        let mut trailing = encode(&Request::Workers).unwrap();
        trailing.extend_from_slice(&[0, 1, 2]);
        let mut bad_utf8 = encode(&Response::Refused("abcd".into())).unwrap();
        let n = bad_utf8.len();
        bad_utf8[n - 2] = 0xff;
        vec![
            (
                "status-ids-u64max",
                ending_with(&Request::Status { ids: vec![] }, &huge),
            ),
            (
                "raft-messages-u64max",
                ending_with(
                    &Request::Raft {
                        cluster: 1,
                        messages: vec![],
                    },
                    &huge,
                ),
            ),
            (
                "raft-message-60mib",
                ending_with(
                    &Request::Raft {
                        cluster: 1,
                        messages: vec![],
                    },
                    &[&varint(1)[..], &varint(60 << 20)].concat(),
                ),
            ),
            (
                "raft-part-bytes-u64max",
                ending_with(
                    &Request::RaftPart {
                        cluster: 1,
                        part: RaftPart {
                            seq: u64::MAX,
                            offset: u64::MAX,
                            total: u64::MAX,
                            bytes: vec![],
                        },
                    },
                    &huge,
                ),
            ),
            (
                "submit-input-63mib",
                cut_at(&submit, &[7, 0xab, 0xab], &varint(63 << 20)),
            ),
            ("submit-input-u64max", cut_at(&submit, &[7, 0xab, 0xab], &huge)),
            (
                "submit-input-over-limit",
                cut_at(&submit, &[7, 0xab, 0xab], &varint(65 << 20)),
            ),
            (
                "reports-output-63mib",
                cut_at(
                    &Response::Reports(vec![Some(reported)]),
                    &[7, 0xab, 0xab],
                    &varint(63 << 20),
                ),
            ),
            (
                "submitted-cycle-u64max",
                ending_with(
                    &Response::Submitted(Err(SubmitError::Cycle { tasks: vec![] })),
                    &huge,
                ),
            ),
            ("version-4", versioned(WIRE_VERSION - 1, &Request::Workers)),
            ("version-6", versioned(WIRE_VERSION + 1, &Response::Ok)),
            ("version-u16max", versioned(u16::MAX, &Request::Peers)),
            ("trailing", trailing),
            ("variant-200", vec![WIRE_VERSION as u8, 200]),
            (
                "variant-u32max",
                [&[WIRE_VERSION as u8][..], &varint(u32::MAX as u64)].concat(),
            ),
            (
                "bool-2",
                [
                    &encode(&Request::SubmitPart {
                        upload: 1,
                        tasks: vec![],
                        last: false,
                    })
                    .unwrap()[..3],
                    &[0, 2],
                ]
                .concat(),
            ),
            ("bad-utf8", bad_utf8),
            ("empty", vec![]),
            ("one-byte", vec![WIRE_VERSION as u8]),
            ("junk", junk(512, 1)),
        ]
        .into_iter()
        .map(|(n, b)| (n.to_string(), b))
        .collect()
    }

    pub fn messages() -> Seeds {
        let mut out: Seeds = requests()
            .into_iter()
            .map(|(n, r)| (format!("request-{n}"), encode(&r).unwrap()))
            .collect();
        out.extend(
            responses()
                .into_iter()
                .map(|(n, r)| (format!("response-{n}"), encode(&r).unwrap())),
        );
        out.extend(hostile_bodies());
        out
    }

    pub fn frames() -> Seeds {
        let mut out: Seeds = messages()
            .into_iter()
            .filter(|(n, _)| n.starts_with("request-") || n.starts_with("response-") || n.contains("mib"))
            .map(|(n, b)| (n, framed(&b)))
            .collect();
        let workers = encode(&Request::Workers).unwrap();
        let mib16 = (16u32 << 20).to_le_bytes();
        out.extend(
            [
                ("len-16mib-no-body", mib16.to_vec()),
                ("len-u32max", u32::MAX.to_le_bytes().to_vec()),
                ("len-16mib-few-bytes", [&mib16[..], &[7; 10]].concat()),
                ("len-16mib-plus-1", ((16u32 << 20) + 1).to_le_bytes().to_vec()),
                ("len-zero", vec![0; 4]),
                ("len-truncated", vec![9, 0, 0]),
                ("empty", vec![]),
                ("junk", junk(1024, 2)),
                (
                    "body-short",
                    [&(workers.len() as u32 + 5).to_le_bytes()[..], &workers].concat(),
                ),
                (
                    "version-4",
                    framed(&versioned(WIRE_VERSION - 1, &Request::Workers)),
                ),
                ("version-6", framed(&versioned(WIRE_VERSION + 1, &Response::Ok))),
                ("trailing-in-frame", framed(&[&workers[..], &[1, 2, 3]].concat())),
                (
                    "trailing-after-frame",
                    [&framed(&workers)[..], &[1, 2, 3, 4, 5]].concat(),
                ),
                (
                    "two-frames",
                    [framed(&workers), framed(&encode(&Response::Ok).unwrap())].concat(),
                ),
            ]
            .into_iter()
            .map(|(n, b)| (n.to_string(), b)),
        );
        out
    }

    pub fn gossip() -> Seeds {
        let mut out: Seeds = gossips()
            .into_iter()
            .map(|(n, g)| (n.to_string(), encode(&g).unwrap()))
            .collect();
        out.extend(hostile_notices());
        let announce = Gossip::Announce {
            term: 1,
            tasks: vec![],
        };
        let mut trailing = encode(&gossips()[1].1).unwrap();
        trailing.push(0);
        out.extend(
            [
                ("junk-60kb", junk(60 << 10, 3)),
                ("announce-u64max", ending_with(&announce, &varint(u64::MAX))),
                ("version-4", versioned(WIRE_VERSION - 1, &gossips()[0].1)),
                ("trailing", trailing),
                ("variant-3", vec![WIRE_VERSION as u8, 3]),
                ("empty", vec![]),
                ("junk", junk(256, 4)),
            ]
            .into_iter()
            .map(|(n, b)| (n.to_string(), b)),
        );
        out
    }

    fn text(seeds: Vec<(&str, String)>) -> Seeds {
        seeds
            .into_iter()
            .map(|(n, t)| (n.to_string(), t.into_bytes()))
            .collect()
    }

    pub fn taskfiles() -> Seeds {
        let chain: String = (0..300)
            .map(|i| {
                let dep = if i > 0 {
                    format!("depends_on = [\"t{}\"]\n", i - 1)
                } else {
                    String::new()
                };
                format!("[[task]]\nname = \"t{i}\"\nrole = \"worker\"\n{dep}\n")
            })
            .collect();
        let deep = 5000;
        let mut out = text(vec![
            ("lan-dag.toml", include_str!("data/lan-dag.toml").to_string()),
            (
                "full.toml",
                r#"
[[task]]
name = "prep"
role = "worker"
difficulty = 2
input = "some text"

[[task]]
name = "process"
role = "worker"
difficulty = 5
depends_on = ["prep"]
timeout_ms = 10000
queue_timeout_ms = 0
deadline_ms = 2592000000
retries = 2
max_attempts = 100
priority = 10
input_json = { a = 1, b = [true, 2.5, "x"], c = { d = 1979-05-27T07:32:00Z } }

[[task]]
name = "fallback"
role = "worker"
depends_on = ["process"]
trigger = "one_failed"

[[task]]
name = "cleanup"
role = "worker"
depends_on = ["process", "fallback"]
trigger = "all_done"
priority = -1000000
"#
                .into(),
            ),
            (
                "full.json",
                r#"{"tasks": [
  {"name": "prep", "role": "worker", "difficulty": 2, "input": "hi"},
  {"name": "process", "role": "worker", "depends_on": ["prep"], "input_json": {"x": [1, 2.5, null, "y"]},
   "timeout_ms": 1000, "queue_timeout_ms": 0, "deadline_ms": 2592000000, "retries": 100,
   "max_attempts": 1, "priority": -1000000, "trigger": "all_done"}
]}"#
                .into(),
            ),
            ("chain-300.toml", chain),
            (
                "cycle.toml",
                "[[task]]\nname='a'\nrole='w'\ndepends_on=['c']\n[[task]]\nname='b'\nrole='w'\ndepends_on=['a']\n[[task]]\nname='c'\nrole='w'\ndepends_on=['b']\n".into(),
            ),
            (
                "self-cycle.json",
                r#"{"task":[{"name":"a","role":"w","depends_on":["a"]}]}"#.into(),
            ),
            (
                "unknown-dependency.toml",
                "[[task]]\nname='a'\nrole='w'\ndepends_on=['nope']\n".into(),
            ),
            (
                "dependency-twice.toml",
                "[[task]]\nname='a'\nrole='w'\n[[task]]\nname='b'\nrole='w'\ndepends_on=['a','a']\n".into(),
            ),
            (
                "duplicate-names.toml",
                "[[task]]\nname='a'\nrole='w'\n[[task]]\nname='a'\nrole='x'\n".into(),
            ),
            (
                "duplicate-names.json",
                r#"{"task":[{"name":"a","role":"w"},{"name":"a","role":"w","depends_on":["a"]}]}"#.into(),
            ),
            (
                "huge-numbers.toml",
                "[[task]]\nname='a'\nrole='w'\ndifficulty=99999999999999999999\n".into(),
            ),
            (
                "huge-numbers-2.toml",
                "[[task]]\nname='a'\nrole='w'\ndifficulty=4294967296\ntimeout_ms=9223372036854775807\npriority=-9223372036854775808\nretries=-1\n".into(),
            ),
            (
                "huge-numbers.json",
                r#"{"task":[{"name":"a","role":"w","difficulty":1e400,"timeout_ms":18446744073709551616,"priority":-1e308}]}"#.into(),
            ),
            (
                "out-of-range.json",
                r#"{"task":[{"name":"a","role":"w","max_attempts":0,"deadline_ms":2592000001,"priority":1000001}]}"#.into(),
            ),
            (
                "deep-array.toml",
                format!("[[task]]\nname='a'\nrole='w'\ninput_json={}1{}\n", "[".repeat(deep), "]".repeat(deep)),
            ),
            (
                "deep-table.toml",
                format!("[[task]]\nname='a'\nrole='w'\ninput_json={}1{}\n", "{a=".repeat(deep), "}".repeat(deep)),
            ),
            (
                "deep-array.json",
                format!(
                    r#"{{"task":[{{"name":"a","role":"w","input_json":{}1{}}}]}}"#,
                    "[".repeat(deep),
                    "]".repeat(deep)
                ),
            ),
            (
                "deep-object.json",
                format!(r#"{{"task":[{{"name":"a","role":"w","input_json":{}1{}}}]}}"#, r#"{"a":"#.repeat(deep), "}".repeat(deep)),
            ),
            (
                "deep-dotted-keys.toml",
                format!("{}=1\n", vec!["a"; deep].join(".")),
            ),
            (
                "unknown-field.toml",
                "[[task]]\nname='a'\nrole='w'\ncolour='red'\n".into(),
            ),
            (
                "unknown-top.json",
                r#"{"task":[{"name":"a","role":"w"}],"extra":1}"#.into(),
            ),
            (
                "two-inputs.toml",
                "[[task]]\nname='a'\nrole='w'\ninput='x'\ninput_json=[1]\n".into(),
            ),
            (
                "input-file-missing.toml",
                "[[task]]\nname='a'\nrole='w'\ninput_file='missing.bin'\n".into(),
            ),
            (
                "bad-trigger.toml",
                "[[task]]\nname='a'\nrole='w'\ntrigger='sometimes'\n".into(),
            ),
            ("no-tasks.toml", "task = []\n".into()),
            ("no-tasks.json", r#"{"tasks":[]}"#.into()),
            ("no-task-key.toml", "title = 'x'\n".into()),
            (
                "empty-names.toml",
                "[[task]]\nname=''\nrole=''\n".into(),
            ),
            (
                "long-name.toml",
                format!("[[task]]\nname='{}'\nrole='w'\n", "n".repeat(2000)),
            ),
            (
                "wrong-types.toml",
                "[[task]]\nname=1\nrole=['w']\ndifficulty='hard'\n".into(),
            ),
            ("unterminated.toml", "[[task]]\nname='a\nrole='w'\n".into()),
            ("unterminated.json", r#"{"task":[{"name":"a","role":"#.into()),
            ("empty.toml", String::new()),
        ]);
        out.push((
            "non-utf8.toml".into(),
            b"[[task]]\nname='\xff\xfe'\nrole='w'\n".to_vec(),
        ));
        out.push(("junk".into(), junk(300, 5)));
        out
    }

    pub fn configs() -> Seeds {
        let mut out = text(vec![
            (
                "full.toml",
                format!(
                    r#"
listen = ["/ip4/0.0.0.0/tcp/7411", "/ip6/::/tcp/7411"]
join = ["/ip4/192.168.1.7/tcp/7411/p2p/{PEER}"]
mdns = false
mesh = "lab"
key = "node.key"
psk = "mesh.psk"
allow_admins = "admins.txt"
allow_workers = "workers.txt"
allow_clients = "clients.txt"
seed = 7
data_dir = "/var/lib/taskmesh"
admin = true
admin_priority = 255
admin_wait = 2.5
workers = ["Junior:worker:3", "Senior:worker:9:4"]
work_ms = 100
no_worker_timeout = 30
grace = 0.5
task_timeout = 60
queue_timeout = 0
deadline = 2592000
retries = 2
max_attempts = 3
lease = 10
kill_grace = 5
retention_tasks = 100000
retention_age = 3600
retention_min_age = 60.0
retention_mib = 256

[limits]
max_connections = 512
max_connections_per_peer = 4
max_pending_connections = 64
max_streams_per_connection = 256
read_timeout = 20
inbound_budget_mib = 256
max_unfinished_per_client = 1000000
max_queued_mib_per_client = 1024
max_gossip_kib = 64
max_strikes = 20
cut_off_for = 600.5

[[exec]]
name = "hasher"
role = "hash"
skill = 5
command = ["sha256sum"]

[[exec]]
name = "upper"
role = "text"
skill = 1
slots = 8
command = ["tr", "a-z", "A-Z"]
"#
                ),
            ),
            ("unknown-key.toml", "lisen = []\n".into()),
            ("unknown-limit.toml", "[limits]\nmax_everything = 1\n".into()),
            (
                "unknown-exec-key.toml",
                "[[exec]]\nname='a'\nrole='b'\nskill=1\ncommand=['x']\nshell=true\n".into(),
            ),
            (
                "negative-seconds.toml",
                "grace = -1\nlease = -0.5\ntask_timeout = -9223372036854775808\n[limits]\nread_timeout = -3\ncut_off_for = -0.0\n".into(),
            ),
            (
                "nan-seconds.toml",
                "lease = nan\ndeadline = inf\nkill_grace = -nan\nretention_min_age = nan\n[limits]\ncut_off_for = nan\n".into(),
            ),
            (
                "inf-seconds.toml",
                "admin_wait = +inf\n[limits]\nread_timeout = -inf\n".into(),
            ),
            (
                "huge-seconds.toml",
                "grace = 1e308\n[limits]\nread_timeout = 18446744073709551616.0\ncut_off_for = 9223372036854775807\n".into(),
            ),
            ("zero-max-connections.toml", "[limits]\nmax_connections = 0\n".into()),
            ("zero-budget.toml", "[limits]\ninbound_budget_mib = 0\n".into()),
            ("zero-gossip.toml", "[limits]\nmax_gossip_kib = 0\nmax_strikes = 0\n".into()),
            ("zero-seconds.toml", "[limits]\nread_timeout = 0\ncut_off_for = 0.0\n".into()),
            (
                "large-limits.toml",
                "[limits]\nmax_connections = 4294967295\nmax_streams_per_connection = 9223372036854775807\ninbound_budget_mib = 17592186044415\nmax_queued_mib_per_client = 17592186044415\nmax_gossip_kib = 18014398509481983\n".into(),
            ),
            // Bytes that overflow: 2^44 MiB once wrapped to a budget of 0.
            ("overflow-budget.toml", "[limits]\ninbound_budget_mib = 17592186044416\n".into()),
            ("overflow-queued.toml", "[limits]\nmax_queued_mib_per_client = 17592186044416\n".into()),
            ("overflow-gossip.toml", "[limits]\nmax_gossip_kib = 18014398509481984\n".into()),
            (
                "overflow-gossip-found.toml",
                "[limits]\nmax_connections = 4294967295\nmax_streams_per_connection = 9223372036854775807\ninbound_budget_mib = 17592186044415\nmax_queued_mib_per_client = 17592186044415\nmax_gossip_kib = 18014398509483983\n".into(),
            ),
            ("u32-overflow.toml", "[limits]\nmax_connections = 4294967296\n".into()),
            ("i64-overflow.toml", "[limits]\ninbound_budget_mib = 18446744073709551616\n".into()),
            ("negative-count.toml", "retention_mib = -1\nadmin_priority = 256\nseed = -1\n".into()),
            (
                "bad-workers.toml",
                "workers = ['a:b', 'a:b:c', 'a:b:1:0', '::1', ':x:1:1:1', 'a:b:4294967296', 'é:ü:1']\n".into(),
            ),
            ("bad-workers-type.toml", "workers = 'Junior:worker:3'\n".into()),
            (
                "exec-empty-command.toml",
                "[[exec]]\nname='a'\nrole='b'\nskill=1\ncommand=[]\n".into(),
            ),
            (
                "exec-colon-name.toml",
                "[[exec]]\nname='a:b'\nrole='c'\nskill=1\nslots=0\ncommand=['x']\n".into(),
            ),
            (
                "exec-slots-zero.toml",
                "[[exec]]\nname='a'\nrole='c'\nskill=4294967295\nslots=0\ncommand=['x']\n".into(),
            ),
            ("exec-missing.toml", "[[exec]]\nname='a'\n".into()),
            (
                "bad-multiaddr.toml",
                "listen = ['/ip4/1.2.3.4/tcp/99999', '/ip4/999.1.1.1/tcp/1', 'not an address']\n".into(),
            ),
            (
                "odd-multiaddr.toml",
                "join = ['/dns4/example.invalid/udp/1/quic-v1', '/ip6/::1/tcp/1/p2p/QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N', '/unix/tmp%2Fsock']\n".into(),
            ),
            (
                "deep.toml",
                format!("mesh = 'x'\nextra = {}1{}\n", "[".repeat(5000), "]".repeat(5000)),
            ),
            ("duplicate-key.toml", "mesh = 'a'\nmesh = 'b'\n".into()),
            ("limits-not-table.toml", "limits = 5\n".into()),
            ("empty.toml", String::new()),
        ]);
        out.push(("non-utf8.toml".into(), b"mesh = '\xff\xfe'\n".to_vec()));
        out.push(("junk".into(), junk(300, 6)));
        out
    }
}
