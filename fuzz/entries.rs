//! The bodies of the fuzz targets, one function per target, shared by the
//! fuzzers (`fuzz/fuzz_targets/<target>.rs`) and by the corpus replay
//! (`tests/fuzz_corpus.rs`), so that both run exactly the same code.
//!
//! Every function takes bytes from outside, feeds them to one decoder and,
//! when the decoder accepts them, checks what it made cheaply. Errors are
//! fine; a panic, a hang or a wild allocation is a finding.

#![allow(dead_code)] // each fuzz target uses one of these functions

use std::collections::HashSet;
use std::fmt::Debug;
use std::path::Path;
use std::sync::OnceLock;

use futures::io::Cursor;
use libp2p::request_response::Codec as _;
use serde::de::DeserializeOwned;
use serde::Serialize;
use taskmesh::access::Limits;
use taskmesh::protocol::{self, Codec, Gossip, Request, Response};
use taskmesh::scheduler::dag;
use taskmesh::Task;

/// One current-thread runtime for the whole process: the codec's reads run
/// under `tokio::time::timeout`, which needs a time driver.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a tokio runtime")
    })
}

/// Formats `msg` for a log (`{:?}`), encodes it as a frame body and
/// decodes it again: what a decoder accepted must print, and survive the
/// trip unchanged.
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(msg: &T) {
    let _ = format!("{msg:?}");
    let body = protocol::encode(msg).expect("a decoded message encodes");
    let back: T = protocol::decode(&body).expect("an encoded message decodes");
    assert_eq!(&back, msg, "the message changed on a round trip");
}

/// `frame`: the bytes of a request-response stream, read by the node's
/// [`Codec`] as a request and (separately) as a response. A frame that
/// reads is written back and read again; every read gives its bytes back
/// to the codec's budget.
pub fn frame(data: &[u8]) {
    let proto = libp2p::StreamProtocol::new(protocol::PROTOCOL_NAME);
    let mut codec = Codec::default();
    runtime().block_on(async {
        // A frame that cannot be read comes back as `Request::Unreadable`
        // (not a message: it is never encoded), other failures as errors.
        match codec.read_request(&proto, &mut Cursor::new(data)).await {
            Ok(Request::Unreadable(why)) => {
                let _ = format!("{why:?}");
            }
            Ok(req) => {
                let _ = format!("{req:?}");
                let mut out = Cursor::new(Vec::new());
                codec
                    .write_request(&proto, &mut out, req.clone())
                    .await
                    .expect("a request read from a frame fits a frame");
                out.set_position(0);
                let back = codec
                    .read_request(&proto, &mut out)
                    .await
                    .expect("a written request reads");
                assert_eq!(back, req, "the request changed on a round trip");
            }
            Err(_) => {}
        }
        assert_eq!(codec.budget.used(), 0, "a request read kept part of the budget");
        if let Ok(res) = codec.read_response(&proto, &mut Cursor::new(data)).await {
            let _ = (res.summary(), format!("{res:?}"));
            let mut out = Cursor::new(Vec::new());
            codec
                .write_response(&proto, &mut out, res.clone())
                .await
                .expect("a response read from a frame fits a frame");
            out.set_position(0);
            let back = codec
                .read_response(&proto, &mut out)
                .await
                .expect("a written response reads");
            assert_eq!(back, res, "the response changed on a round trip");
        }
        assert_eq!(codec.budget.used(), 0, "a response read kept part of the budget");
    });
}

/// `gossip`: a gossipsub message's data, as the node decodes it.
pub fn gossip(data: &[u8]) {
    if let Ok(msg) = protocol::decode::<Gossip>(data) {
        round_trip(&msg);
    }
}

/// `message`: one frame body (no length prefix), decoded as a request and
/// as a response.
pub fn message(data: &[u8]) {
    if let Ok(req) = protocol::decode::<Request>(data) {
        assert!(
            !matches!(req, Request::Unreadable(_)),
            "a body decoded as Request::Unreadable"
        );
        round_trip(&req);
    }
    if let Ok(res) = protocol::decode::<Response>(data) {
        let _ = res.summary();
        round_trip(&res);
    }
}

/// `taskfile`: a task file's text (invalid UTF-8 replaced), parsed as TOML
/// and as JSON. The directory does not exist, so a relative `input_file`
/// fails the same way wherever the fuzzer or the test runs.
pub fn taskfile(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for name in ["tasks.toml", "tasks.json"] {
        let path = Path::new("/nonexistent-taskmesh-fuzz").join(name);
        match taskmesh::taskfile::parse(&text, &path) {
            Ok(tasks) => check_tasks(&tasks),
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
}

/// What a parsed task file promises: tasks, dependencies inside the file,
/// a dependency order, and a batch that crosses the wire.
fn check_tasks(tasks: &[Task]) {
    assert!(!tasks.is_empty(), "a task file parsed into no tasks");
    let ids: HashSet<_> = tasks.iter().map(|t| t.id).collect();
    assert_eq!(ids.len(), tasks.len(), "two tasks of a file share an id");
    for t in tasks {
        for d in &t.dependencies {
            assert!(
                ids.contains(d),
                "task {:?} depends on an id outside the file",
                t.name
            );
        }
    }
    let limits = dag::Limits {
        max_payload: usize::MAX,
        max_batch: usize::MAX,
    };
    let order = dag::validate(tasks, |_| false, limits).expect("a parsed task file validates");
    assert_eq!(
        order.len(),
        tasks.len(),
        "the dependency order is not a permutation"
    );
    let mut placed = vec![false; tasks.len()];
    let index: std::collections::HashMap<_, _> = tasks.iter().enumerate().map(|(i, t)| (t.id, i)).collect();
    for &i in &order {
        assert!(!placed[i], "task {i} twice in the dependency order");
        for d in &tasks[i].dependencies {
            assert!(placed[index[d]], "task {i} ordered before its dependency");
        }
        placed[i] = true;
    }
    round_trip(&Request::Submit {
        tasks: tasks.to_vec(),
    });
}

/// `config`: a node's config file (invalid UTF-8 replaced); when it parses,
/// everything the node does with it next: the built-in workers, the
/// command workers, the `[limits]` table over the defaults, and every
/// number of seconds as a duration.
pub fn config(data: &[u8]) {
    use taskmesh::config::{exec_entry, parse, seconds_to_duration};
    let text = String::from_utf8_lossy(data);
    let file = match parse(&text) {
        Ok(file) => file,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let _ = format!("{file:?}");
    let _ = file.worker_args();
    for e in &file.exec {
        let _ = exec_entry(e);
    }
    if let Some(table) = &file.limits {
        let mut limits = Limits::default();
        if table.apply(&mut limits).is_ok() {
            check_limits(table, &limits);
        }
    }
    let seconds = [
        file.admin_wait,
        file.no_worker_timeout,
        file.grace,
        file.task_timeout,
        file.queue_timeout,
        file.deadline,
        file.lease,
        file.kill_grace,
        file.retention_age,
        file.retention_min_age,
    ];
    for s in seconds.into_iter().flatten() {
        let _ = seconds_to_duration(s, "fuzz");
    }
}

/// A `[limits]` table that applied gives exactly what it says, in its
/// units, and no limit of 0 (`LimitsFile::apply` refuses zeros).
fn check_limits(table: &taskmesh::config::LimitsFile, l: &Limits) {
    if let Some(mib) = table.inbound_budget_mib {
        assert_eq!(
            mib.checked_mul(1 << 20),
            Some(l.inbound_budget),
            "inbound_budget_mib = {mib}"
        );
    }
    if let Some(mib) = table.max_queued_mib_per_client {
        assert_eq!(
            mib.checked_mul(1 << 20),
            Some(l.max_queued_bytes_per_client),
            "max_queued_mib_per_client = {mib}"
        );
    }
    if let Some(kib) = table.max_gossip_kib {
        assert_eq!(
            kib.checked_mul(1 << 10),
            Some(l.max_gossip),
            "max_gossip_kib = {kib}"
        );
    }
    assert!(
        l.max_connections > 0
            && l.max_connections_per_peer > 0
            && l.max_pending_connections > 0
            && l.max_streams_per_connection > 0
            && l.inbound_budget > 0
            && l.max_unfinished_per_client > 0
            && l.max_queued_bytes_per_client > 0
            && l.max_gossip > 0
            && l.max_strikes > 0,
        "a limit of 0 was applied: {l:?}"
    );
}
