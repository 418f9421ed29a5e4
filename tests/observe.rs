//! Observing a mesh from outside: `/metrics` scraped and parsed as
//! Prometheus would, compared with what happened.

use std::path::Path;
use std::time::Duration;

mod common;

use common::cli::*;
use common::procs::{json_lines, text};

/// The samples of a scrape, parsed by a Prometheus text-format parser.
fn scrape(addr: &str) -> prometheus_parse::Scrape {
    let answer = common::http::get(addr, "/metrics");
    let body = answer.text();
    assert_eq!(answer.status, 200, "{body}");
    let kind = answer.header("content-type").unwrap_or_default();
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    assert!(
        body.ends_with("# EOF\n"),
        "an OpenMetrics exposition ends with # EOF"
    );
    let lines = body.lines().map(|l| Ok(l.to_string()));
    prometheus_parse::Scrape::parse(lines).expect("parsable")
}

/// The value of the sample `name` whose labels include `labels`.
fn value(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let sample = s
        .samples
        .iter()
        .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))?;
    match sample.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => Some(v),
        _ => None,
    }
}

fn sum(s: &prometheus_parse::Scrape, name: &str) -> f64 {
    let each = s.samples.iter().filter(|x| x.metric == name);
    each.map(|x| match x.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => v,
        _ => 0.0,
    })
    .sum()
}

#[test]
fn metrics_tell_what_the_mesh_did() {
    let (admin, addr) = admin(51, &["--metrics", "0"]);
    let metrics = admin.expect_line("metrics: http://", "/metrics");
    let metrics = metrics.trim_end_matches("/metrics").to_string();
    let _junior = echo_worker(&addr, 52, "Junior:worker:3", "1");
    let worker = start(&[
        "node",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--no-mdns",
        "--seed",
        "53",
        "--join",
        &addr,
        "--worker",
        "Senior:worker:9",
        "--work-ms",
        "1",
        "--no-admin",
        "--metrics",
        "127.0.0.1:0",
    ]);
    let worker_metrics = worker.expect_line("metrics: http://", "/metrics");
    let worker_metrics = worker_metrics.trim_end_matches("/metrics").to_string();
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/tutorial.toml");
    let out = submit_json(&addr, file.to_str().unwrap(), 2);
    let tasks = json_lines(&out);
    assert_eq!(tasks.len(), 7, "{}", text(&out.stderr));
    let completed = tasks.iter().filter(|t| t["status"] == "completed").count() as f64;
    let failed = tasks.iter().filter(|t| t["status"] == "failed").count() as f64;

    let s = scrape(&metrics);
    let worker = [("role", "worker")];
    assert_eq!(value(&s, "taskmesh_tasks_submitted_total", &worker), Some(7.0));
    let done = [("role", "worker"), ("status", "completed")];
    assert_eq!(value(&s, "taskmesh_tasks_finished_total", &done), Some(completed));
    let fail = [("role", "worker"), ("status", "failed")];
    assert_eq!(value(&s, "taskmesh_tasks_finished_total", &fail), Some(failed));
    assert_eq!(
        sum(&s, "taskmesh_awards_total"),
        completed,
        "one award per completed task"
    );
    assert_eq!(sum(&s, "taskmesh_tasks"), 7.0, "the census holds every task");
    assert_eq!(value(&s, "taskmesh_tasks", &done), Some(completed));
    assert_eq!(value(&s, "taskmesh_workers", &[]), Some(2.0));
    assert_eq!(
        value(&s, "taskmesh_worker_slots", &[("state", "used")]),
        Some(0.0)
    );
    assert_eq!(value(&s, "taskmesh_is_admin", &[]), Some(1.0));
    assert_eq!(value(&s, "taskmesh_raft_voters", &[]), Some(1.0));
    assert!(value(&s, "taskmesh_raft_commit_index", &[]) > Some(0.0));
    assert!(value(&s, "taskmesh_connected_peers", &[]) >= Some(2.0));
    let histogram = s
        .samples
        .iter()
        .find(|x| x.metric == "taskmesh_award_to_end_seconds");
    match histogram.map(|h| &h.value) {
        Some(prometheus_parse::Value::Histogram(buckets)) => {
            let all = buckets.last().expect("buckets").count;
            assert_eq!(all, completed, "every ended attempt is in the histogram");
        }
        other => panic!("taskmesh_award_to_end_seconds is not a histogram: {other:?}"),
    }
    // libp2p's own metrics: bytes by protocol stack and direction.
    let bytes = s
        .samples
        .iter()
        .filter(|x| x.metric == "libp2p_bandwidth_bytes_total");
    assert!(bytes.count() >= 2, "inbound and outbound bytes are counted");
    assert!(sum(&s, "libp2p_swarm_connections_established_total") >= 2.0);

    // A worker node that is not the admin: its own slots and its admin.
    let w = scrape(&worker_metrics);
    assert_eq!(value(&w, "taskmesh_is_admin", &[]), Some(0.0));
    assert_eq!(sum(&w, "taskmesh_tasks"), 0.0, "task gauges come from the admin");
    assert_eq!(
        value(&w, "taskmesh_local_worker_slots", &[("state", "free")]),
        Some(1.0)
    );
    let admin_peer = addr.rsplit('/').next().unwrap();
    assert_eq!(value(&w, "taskmesh_admin", &[("peer", admin_peer)]), Some(1.0));

    // Anything but /metrics is not found; the node stays up.
    assert_eq!(common::http::get(&metrics, "/nothing").status, 404);
    let foreign = common::http::get_as(&metrics, "evil.example", "/metrics");
    assert_eq!(
        foreign.status,
        421,
        "a foreign Host is refused: {}",
        foreign.text()
    );
    std::thread::sleep(Duration::from_millis(10));
    assert_eq!(value(&scrape(&metrics), "taskmesh_is_admin", &[]), Some(1.0));
}

#[test]
fn a_metrics_address_that_cannot_be_bound_fails_the_start() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = run(&[
        "node",
        "--no-mdns",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--metrics",
        &port,
    ]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("cannot serve metrics on 127.0.0.1:"), "{err}");
    let out = run(&["node", "--no-mdns", "--metrics", "somewhere"]);
    assert!(text(&out.stderr).contains("--metrics: \"somewhere\" is not a port or HOST:PORT"));
}
