//! What a stranger on the network can do to a mesh: nothing that takes it
//! over, forges its results or exhausts its nodes. Real `taskmesh`
//! processes on 127.0.0.1 and a rogue libp2p peer built here
//! (`common::rogue`) that sends garbage, frames that never end, forged
//! notices, awards and registrations, and floods, while an honest DAG runs
//! beside it.

mod common;

use std::path::Path;
use std::time::Duration;

use common::cli::{all_completed_once, chains, echo_worker};
use common::procs::{taskmesh, text, wait_until, Proc};
use common::rogue::{
    answer, frame, framed, link_frame, read_link_frame, rss_kib, Raw, Rogue, RogueBehaviourEvent,
};
use libp2p::swarm::SwarmEvent;
use libp2p::{gossipsub, request_response, PeerId};
use taskmesh::protocol::{AdminNotice, Gossip, Request, Response};
use taskmesh::scheduler::Announcement;
use taskmesh::task::WorkerSpec;
use taskmesh::{keypair_from_seed, Task, TaskId};

fn peer_of_seed(seed: u64) -> PeerId {
    keypair_from_seed(seed).public().to_peer_id()
}

fn write_list(dir: &Path, name: &str, peers: &[PeerId]) -> String {
    let path = dir.join(name);
    let text: String = peers.iter().map(|p| format!("{p}\n")).collect();
    std::fs::write(&path, format!("# {name}\n{text}")).unwrap();
    path.to_str().unwrap().to_string()
}

/// `taskmesh node` on a free loopback port, stderr to `log`.
fn node_logged(args: &[&str], log: &Path) -> Proc {
    let mut all = vec!["node", "--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"];
    all.extend(args);
    Proc::spawn_logged(taskmesh(&all), log)
}

/// An admin with a built-in echo worker `w`, seeded `seed`, whose config
/// file holds `limits` (the lines of its `[limits]` table); returns it and
/// its address. Its log goes to `dir/admin.log`.
fn admin_with_limits(dir: &Path, seed: &str, limits: &str) -> (Proc, String) {
    let config = dir.join("node.toml");
    std::fs::write(&config, format!("[limits]\n{limits}")).unwrap();
    let config = config.to_str().unwrap();
    let admin = node_logged(
        &["--seed", seed, "--worker", "w:echo:5", "--config", config],
        &dir.join("admin.log"),
    );
    let addr = admin.expect_line("listening on ", "");
    (admin, addr)
}

fn log_has(log: &Path, needle: &str) -> bool {
    std::fs::read_to_string(log).unwrap_or_default().contains(needle)
}

/// True when a line of `log` holds every one of `needles`.
fn log_line_has(log: &Path, needles: &[&str]) -> bool {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines().any(|l| needles.iter().all(|n| l.contains(n)))
}

/// What the rogue saw of its own requests and connections.
#[derive(Default)]
struct Seen {
    answers: Vec<Response>,
    closed: u32,
    established: u32,
    /// Connections open at once, now and at most.
    open: i32,
    max_open: i32,
    notices: Vec<(PeerId, AdminNotice, Vec<u8>)>,
}

fn note(seen: &mut Seen, ev: SwarmEvent<RogueBehaviourEvent>) {
    match ev {
        SwarmEvent::Behaviour(RogueBehaviourEvent::Rr(request_response::Event::Message {
            message: request_response::Message::Response { response, .. },
            ..
        })) => {
            if let Some(a) = answer(&response) {
                seen.answers.push(a);
            }
        }
        SwarmEvent::Behaviour(RogueBehaviourEvent::Gossipsub(gossipsub::Event::Message {
            message, ..
        })) => {
            if let (Some(src), Ok(Gossip::Admin(n))) =
                (message.source, taskmesh::protocol::decode(&message.data))
            {
                seen.notices.push((src, n, message.data));
            }
        }
        SwarmEvent::ConnectionEstablished { .. } => {
            seen.established += 1;
            seen.open += 1;
            seen.max_open = seen.max_open.max(seen.open);
        }
        SwarmEvent::ConnectionClosed { .. } => {
            seen.closed += 1;
            seen.open -= 1;
        }
        _ => {}
    }
}

fn refusals(seen: &Seen) -> Vec<String> {
    seen.answers
        .iter()
        .filter_map(|a| match a {
            Response::Refused(why) => Some(why.clone()),
            _ => None,
        })
        .collect()
}

/// Submits `file` with the client identity `key`, waiting for `workers`.
fn submit(addr: &str, file: &str, key: &str, workers: u32) -> std::process::Output {
    let workers = workers.to_string();
    common::cli::run(&[
        "submit",
        file,
        "--join",
        addr,
        "--no-mdns",
        "--key",
        key,
        "--wait-workers",
        &workers,
        "--json",
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rogue_peer_cannot_depose_steal_forge_or_exhaust_a_closed_mesh() {
    let dir = tempfile::tempdir().unwrap();
    let (admin_id, w1, w2) = (peer_of_seed(8101), peer_of_seed(8102), peer_of_seed(8103));
    let client_key = dir.path().join("client.key");
    let client = taskmesh::load_or_create_key(&client_key)
        .unwrap()
        .public()
        .to_peer_id();
    let client_key = client_key.to_str().unwrap().to_string();
    let admins = write_list(dir.path(), "admins", &[admin_id]);
    let workers = write_list(dir.path(), "workers", &[admin_id, w1, w2]);
    let clients = write_list(dir.path(), "clients", &[client]);
    let config = dir.path().join("node.toml");
    std::fs::write(&config, "[limits]\nread_timeout = 3\ninbound_budget_mib = 32\n").unwrap();
    let admin_log = dir.path().join("admin.log");
    let admin = node_logged(
        &[
            "--seed",
            "8101",
            "--admin-priority",
            "200",
            "--allow-admins",
            &admins,
            "--allow-workers",
            &workers,
            "--allow-clients",
            &clients,
            "--config",
            config.to_str().unwrap(),
        ],
        &admin_log,
    );
    let addr = admin.expect_line("listening on ", "");
    let _workers = [
        echo_worker(&addr, 8102, "w1:echo:5:2", "1"),
        echo_worker(&addr, 8103, "w2:echo:5:2", "1"),
    ];
    // A stranger's worker node: skill 1000, 100 slots, not on the list.
    let stranger_log = dir.path().join("stranger.log");
    let _stranger = node_logged(
        &[
            "--seed",
            "8109",
            "--join",
            &addr,
            "--no-admin",
            "--worker",
            "thief:echo:1000:100",
            "--work-ms",
            "1",
        ],
        &stranger_log,
    );
    let file = chains(&dir, 60);
    let dag = {
        let (addr, file, key) = (addr.clone(), file.clone(), client_key.clone());
        tokio::task::spawn_blocking(move || submit(&addr, &file, &key, 2))
    };

    let mut rogue = Rogue::new("default");
    rogue.dial(&addr);
    let mut seen = Seen::default();
    rogue
        .run_for(Duration::from_secs(2), |e| note(&mut seen, e))
        .await;
    assert!(
        seen.established >= 1,
        "the rogue reaches the admin (no mesh key here)"
    );
    let pid = admin.child.id();
    let rss_before = rss_kib(pid);

    // Rights it does not have: each refused, naming the list.
    let spec = WorkerSpec {
        name: "thief".into(),
        role: "echo".into(),
        skill: 1000,
        capacity: 100,
        standing: Some(1000),
        queue: 0,
    };
    for req in [
        Request::Register { workers: vec![spec] },
        Request::Submit {
            tasks: vec![Task::new("stolen", "echo", 1)],
        },
        Request::Status { ids: vec![] },
        Request::Join {
            cluster: 1,
            raft_id: 77,
            addrs: vec![],
            priority: 255,
        },
        Request::Reports {
            term: 1000,
            reports: vec![],
        },
    ] {
        rogue.send(admin_id, Raw::Frame(frame(&req)));
    }
    let mut waited = 0;
    while seen.answers.len() < 5 && waited < 50 {
        rogue
            .run_for(Duration::from_millis(100), |e| note(&mut seen, e))
            .await;
        waited += 1;
    }
    // Gossip: garbage, empty, 60 KB and 1 MB, a forged notice and a forged
    // announcement with high terms.
    let notice = AdminNotice {
        cluster: 1,
        term: u64::MAX,
        has_tasks: true,
        addrs: vec![],
        supersedes: vec![],
        voters: vec![rogue.id.to_string()],
    };
    let announce = Gossip::Announce {
        term: u64::MAX,
        tasks: vec![Announcement {
            task: TaskId::random(),
            round: 1,
            name: "bait".into(),
            role: "echo".into(),
            difficulty: 1,
            input_len: 0,
        }],
    };
    rogue.publish(true, b"garbage".to_vec());
    rogue.publish(false, Vec::new());
    rogue.publish(false, vec![7; 60_000]);
    rogue.publish(true, vec![9; 1 << 20]);
    rogue.gossip(true, &Gossip::Admin(notice));
    rogue.gossip(false, &announce);
    // Frames that claim 16 MiB and never end, on 300 streams: 100 with the
    // length alone, 200 with 1 MiB of body (200 MiB in all, where the
    // admin reads at most 32 MiB of frames at once here); garbage frames;
    // then a flood of connections from the same peer.
    for i in 0..300 {
        let mut claim = (16u32 << 20).to_le_bytes().to_vec();
        if i >= 100 {
            claim.resize(4 + (1 << 20), 0xab);
        }
        rogue.send(admin_id, Raw::Hold(claim));
    }
    // Until the read timeout (3 s) ends them: the admin holds at most its
    // budget of them.
    let mut peak = 0;
    for _ in 0..25 {
        rogue
            .run_for(Duration::from_millis(100), |e| note(&mut seen, e))
            .await;
        peak = peak.max(rss_kib(pid));
    }
    for i in 0..20u8 {
        rogue.send(admin_id, Raw::Frame(framed(&[i; 100])));
        rogue.dial(&addr);
        rogue
            .run_for(Duration::from_millis(250), |e| note(&mut seen, e))
            .await;
        peak = peak.max(rss_kib(pid));
    }
    // The slow frames time out (3 s here) and the strikes add up.
    let rogue_id = rogue.id.to_string();
    let cut_off = [rogue_id.as_str(), "peer cut off"];
    let mut waited = 0;
    while !log_line_has(&admin_log, &cut_off) && waited < 100 {
        rogue
            .run_for(Duration::from_millis(200), |e| note(&mut seen, e))
            .await;
        peak = peak.max(rss_kib(pid));
        waited += 1;
    }
    let log = std::fs::read_to_string(&admin_log).unwrap();
    assert!(log_line_has(&admin_log, &cut_off), "the rogue is cut off:\n{log}");
    let refused = refusals(&seen);
    for flag in ["--allow-workers", "--allow-clients", "--allow-admins"] {
        assert!(
            refused.iter().any(|r| r.contains(flag)),
            "{flag} refusal in {refused:?}"
        );
    }
    assert!(
        !seen
            .answers
            .iter()
            .any(|a| matches!(a, Response::Lookups(_) | Response::Submitted(_))),
        "the stranger read or submitted nothing: {:?}",
        seen.answers
    );
    // Four per peer; the rogue sees a fifth open for the moment before the
    // admin closes it after its handshake (21 stay open without the limit).
    assert!(
        seen.max_open <= 5,
        "connections per peer are limited: {} at once",
        seen.max_open
    );
    // Cut off: its connections are closed and new ones refused.
    rogue.dial(&addr);
    rogue
        .run_for(Duration::from_secs(1), |e| note(&mut seen, e))
        .await;
    // (The block list closes a new connection as soon as its handshake ends.)
    assert!(
        seen.closed >= 1 && seen.open == 0,
        "closed {}, open {}",
        seen.closed,
        seen.open
    );
    // Bounded by the 32 MiB budget (and buffers, and the DAG): about 55 MiB
    // more here; without the budget, 190 MiB more.
    assert!(
        peak < rss_before + 112 * 1024,
        "admin memory stays bounded: {rss_before} KiB before, {peak} KiB at peak"
    );

    // The DAG completed with honest results from the listed workers only.
    let out = dag.await.unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let reports = common::procs::json_lines(&out);
    all_completed_once(&reports, 60);
    for r in &reports {
        assert!(["w1", "w2"].contains(&r["worker"].as_str().unwrap()), "{r}");
    }
    assert!(log_has(&stranger_log, "the admin refused this node's workers"));
    assert!(log_has(&admin_log, "--allow-workers"));
    // Honest peers stayed connected; a client not on the list is told why.
    let peers = common::cli::run(&[
        "peers",
        "--join",
        &addr,
        "--no-mdns",
        "--key",
        &client_key,
        "--json",
    ]);
    let listed = text(&peers.stdout);
    assert!(
        listed.contains(&w1.to_string()) && listed.contains(&w2.to_string()),
        "{listed}"
    );
    let other = common::cli::run(&["status", "--join", &addr, "--no-mdns"]);
    assert!(!other.status.success());
    let err = text(&other.stderr);
    assert!(
        err.contains("refused") && err.contains("--allow-clients"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_notices_awards_and_replays_do_not_move_an_open_mesh() {
    let dir = tempfile::tempdir().unwrap();
    let admin_log = dir.path().join("admin.log");
    let admin = node_logged(&["--seed", "8201", "--admin-priority", "200"], &admin_log);
    let addr = admin.expect_line("listening on ", "");
    let worker = echo_worker(&addr, 8202, "w1:echo:5:2", "1");
    let worker_addr = worker.expect_line("listening on ", "");
    worker.expect_line("admin: ", &peer_of_seed(8201).to_string());
    let file = chains(&dir, 60);
    let mut rogue = Rogue::new("default");
    rogue.dial(&addr);
    rogue.dial(&worker_addr);
    let mut seen = Seen::default();
    let mut waited = 0;
    while seen.notices.is_empty() && waited < 50 {
        rogue
            .run_for(Duration::from_millis(200), |e| note(&mut seen, e))
            .await;
        waited += 1;
    }
    let (_, real, real_bytes) = seen
        .notices
        .first()
        .cloned()
        .expect("the rogue hears the admin's notice");
    let dag = {
        let (addr, file) = (addr.clone(), file.clone());
        tokio::task::spawn_blocking(move || common::cli::submit_json(&addr, &file, 1))
    };
    // For the DAG's whole run: notices of the same ledger with ever higher
    // terms, claiming to supersede it, replays of the admin's own notice
    // under the rogue's name, and awards with a term past the admin's.
    let worker_id = peer_of_seed(8202);
    for i in 0..40u64 {
        let forged = AdminNotice {
            term: if i % 2 == 0 {
                u64::MAX
            } else {
                real.term + 1000 + i
            },
            supersedes: vec![real.cluster],
            voters: vec![rogue.id.to_string()],
            addrs: vec![],
            ..real.clone()
        };
        rogue.gossip(true, &Gossip::Admin(forged));
        rogue.publish(true, real_bytes.clone());
        let award = Request::Assign {
            term: u64::MAX,
            assignments: vec![],
        };
        rogue.send(worker_id, Raw::Frame(frame(&award)));
        rogue
            .run_for(Duration::from_millis(150), |e| note(&mut seen, e))
            .await;
        if dag.is_finished() {
            break;
        }
    }
    let out = dag.await.unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    all_completed_once(&common::procs::json_lines(&out), 60);
    let refused = refusals(&seen);
    assert!(
        refused
            .iter()
            .any(|r| r.contains("not the admin this node follows")),
        "the worker refuses the forged award: {refused:?}"
    );
    // Nobody followed the rogue: the worker never named another admin, and
    // the admin never left office.
    let rogue_id = rogue.id.to_string();
    assert!(worker
        .line_within("admin: ", "", Duration::from_millis(300))
        .is_none());
    let log = std::fs::read_to_string(&admin_log).unwrap();
    assert!(
        !log.contains(&format!("admin changed admin=Some(\"{rogue_id}\")")),
        "{log}"
    );
    assert!(!log.contains("superseded"), "{log}");
    wait_until("the admin still answers", || {
        let o = common::cli::run(&["workers", "--join", &addr, "--no-mdns", "--json"]);
        o.status.success() && text(&o.stdout).contains("w1")
    });
}

#[test]
fn a_private_mesh_refuses_peers_without_its_key_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let (k1, k2) = (dir.path().join("mesh.key"), dir.path().join("other.key"));
    for k in [&k1, &k2] {
        let out = common::cli::run(&["keygen", k.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert!(text(&out.stdout).contains("--psk"));
    }
    let again = common::cli::run(&["keygen", k1.to_str().unwrap()]);
    assert!(!again.status.success(), "keygen never overwrites a key");
    // Key files may go in a directory that does not exist yet; `id` tells
    // the peer id of an identity file, as a node started with it says.
    let nested = dir.path().join("new/dir/mesh.key");
    assert!(common::cli::run(&["keygen", nested.to_str().unwrap()])
        .status
        .success());
    let id_file = dir.path().join("ids/client.key");
    let id = text(&common::cli::run(&["id", id_file.to_str().unwrap()]).stdout);
    let node = common::cli::start(&[
        "node",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--no-mdns",
        "--key",
        id_file.to_str().unwrap(),
    ]);
    assert_eq!(node.expect_line("peer id: ", ""), id.trim());
    drop(node);
    let (k1, k2) = (k1.to_str().unwrap(), k2.to_str().unwrap());
    let admin_log = dir.path().join("admin.log");
    let admin = node_logged(
        &["--seed", "8301", "--psk", k1, "--worker", "w:echo:5"],
        &admin_log,
    );
    let addr = admin.expect_line("listening on ", "");
    let file = chains(&dir, 10);
    let base = [
        "submit",
        file.as_str(),
        "--join",
        addr.as_str(),
        "--no-mdns",
        "--json",
    ];
    for key in [None, Some(k2)] {
        let mut args = base.to_vec();
        if let Some(k) = key {
            args.extend(["--psk", k]);
        }
        let out = common::cli::run(&args);
        assert!(!out.status.success());
        let err = text(&out.stderr);
        assert!(
            err.contains("handshake") && err.contains("--psk"),
            "{key:?}: {err}"
        );
    }
    wait_until("the refusing side logs it", || {
        log_has(&admin_log, "incoming connection refused") && log_has(&admin_log, "mesh key")
    });
    let mut args = base.to_vec();
    args.extend(["--psk", k1]);
    let out = common::cli::run(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    all_completed_once(&common::procs::json_lines(&out), 10);
    // A join address whose /p2p/ id is not the peer there.
    let wrong = format!(
        "{}/p2p/{}",
        addr.rsplit_once("/p2p/").unwrap().0,
        peer_of_seed(9999)
    );
    let out = common::cli::run(&["status", "--join", &wrong, "--no-mdns", "--psk", k1]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("not the one its /p2p/ part names"), "{err}");
}

#[test]
fn a_submitter_past_its_limits_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (_admin, addr) = admin_with_limits(
        dir.path(),
        "8401",
        "max_unfinished_per_client = 12
",
    );
    let big = chains(&dir, 20);
    let out = common::cli::run(&["submit", &big, "--join", &addr, "--no-mdns"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("refused") && err.contains("limit of 12"), "{err}");
    // Within the limit it runs, and finished tasks free the peer's share.
    let small = common::cli::task_file(
        &dir,
        "small.toml",
        &(0..10)
            .map(|i| format!("[[task]]\nname = \"s{i}\"\nrole = \"echo\"\ndifficulty = 1\n"))
            .collect::<String>(),
    );
    let key = dir.path().join("client.key");
    let key = key.to_str().unwrap();
    for _ in 0..2 {
        let args = [
            "submit",
            &small,
            "--join",
            &addr,
            "--no-mdns",
            "--key",
            key,
            "--json",
        ];
        let out = common::cli::run(&args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        all_completed_once(&common::procs::json_lines(&out), 10);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_made_up_ledger_takes_a_fresh_mesh_for_seconds_at_most() {
    let dir = tempfile::tempdir().unwrap();
    let admin_log = dir.path().join("admin.log");
    let admin = node_logged(&["--seed", "8501", "--admin-priority", "200"], &admin_log);
    let addr = admin.expect_line("listening on ", "");
    let worker = echo_worker(&addr, 8502, "w1:echo:5:2", "1");
    let worker_addr = worker.expect_line("listening on ", "");
    let admin_id = peer_of_seed(8501).to_string();
    worker.expect_line("admin: ", &admin_id);
    let mut rogue = Rogue::new("default");
    rogue.dial(&addr);
    rogue.dial(&worker_addr);
    let mut seen = Seen::default();
    rogue
        .run_for(Duration::from_secs(1), |e| note(&mut seen, e))
        .await;
    // A ledger that does not exist, "with tasks" and older than any: the
    // fresh mesh's ledger (no task yet) may yield to it once, is not
    // admitted, and founds its own again; a new made-up ledger every few
    // seconds changes nothing after that.
    let started = std::time::Instant::now();
    let mut dag = None;
    for i in 0..120u64 {
        let forged = AdminNotice {
            cluster: 1 + i / 25,
            term: 1,
            has_tasks: true,
            addrs: vec![],
            supersedes: vec![],
            voters: vec![rogue.id.to_string()],
        };
        rogue.gossip(true, &Gossip::Admin(forged));
        rogue
            .run_for(Duration::from_millis(200), |e| note(&mut seen, e))
            .await;
        if dag.is_none() && started.elapsed() > Duration::from_secs(12) {
            let file = chains(&dir, 20);
            let addr = addr.clone();
            dag = Some(tokio::task::spawn_blocking(move || {
                common::cli::submit_json(&addr, &file, 1)
            }));
        }
    }
    let out = dag.expect("submitted").await.unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stderr),
        std::fs::read_to_string(&admin_log).unwrap()
    );
    all_completed_once(&common::procs::json_lines(&out), 20);
    // The worker follows the real admin at the end.
    let mut last = None;
    while let Some((_, l)) = worker.line_within("admin: ", "", Duration::from_millis(200)) {
        last = Some(l);
    }
    if let Some(l) = last {
        assert!(l.contains(&admin_id), "{l}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_strangers_cannot_keep_newcomers_out() {
    let dir = tempfile::tempdir().unwrap();
    let (_admin, addr) = admin_with_limits(
        dir.path(),
        "8601",
        "max_connections = 12
idle_peer = 1
",
    );
    // Twelve strangers, one connection each, that never ask anything:
    // the table is full.
    let mut rogues: Vec<Rogue> = (0..12).map(|_| Rogue::new("default")).collect();
    let mut seen = Seen::default();
    for r in &mut rogues {
        r.dial(&addr);
        r.run_for(Duration::from_millis(100), |e| note(&mut seen, e))
            .await;
    }
    assert!(
        seen.established >= 10,
        "the strangers got in: {}",
        seen.established
    );
    // Once they have been idle a while, a newcomer gets in (room is made
    // by closing idle strangers) and is served.
    let mut served = false;
    for _ in 0..20 {
        for r in &mut rogues {
            r.run_for(Duration::from_millis(20), |e| note(&mut seen, e)).await;
        }
        let addr = addr.clone();
        let out = tokio::task::spawn_blocking(move || {
            common::cli::run(&[
                "workers",
                "--join",
                &addr,
                "--no-mdns",
                "--admin-wait",
                "3",
                "--json",
            ])
        })
        .await
        .unwrap();
        if out.status.success() && text(&out.stdout).contains("\"w\"") {
            served = true;
            break;
        }
    }
    assert!(served, "a newcomer was never served");
    assert!(seen.closed >= 1, "idle strangers were closed");
}

/// Opens a link from the rogue to `peer`, driving the rogue's swarm while
/// `talk` runs on the link; what `talk` returns.
async fn over_a_link<T: Send + 'static, F>(rogue: &mut Rogue, seen: &mut Seen, peer: PeerId, talk: F) -> T
where
    F: FnOnce(libp2p::Stream) -> futures::future::BoxFuture<'static, T> + Send + 'static,
{
    let mut control = rogue.links();
    let task = tokio::spawn(async move {
        let proto = libp2p::StreamProtocol::new(taskmesh::protocol::LINK_PROTOCOL);
        let stream = control.open_stream(peer, proto).await.expect("a link opens");
        talk(stream).await
    });
    for _ in 0..300 {
        if task.is_finished() {
            break;
        }
        rogue.run_for(Duration::from_millis(50), |e| note(seen, e)).await;
    }
    assert!(task.is_finished(), "the link talk did not end within 15 s");
    task.await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_refuse_strangers_and_close_on_garbage_as_streams_do() {
    use futures::{AsyncWriteExt, FutureExt};
    use taskmesh::protocol::LinkFrame;
    let dir = tempfile::tempdir().unwrap();
    let clients = write_list(dir.path(), "clients", &[peer_of_seed(8302)]);
    let log = dir.path().join("admin.log");
    let admin = node_logged(
        &[
            "--seed",
            "8301",
            "--worker",
            "w:echo:5",
            "--allow-clients",
            &clients,
        ],
        &log,
    );
    let addr = admin.expect_line("listening on ", "");
    let admin_id = peer_of_seed(8301);
    let mut rogue = Rogue::new("default");
    rogue.dial(&addr);
    let mut seen = Seen::default();
    rogue
        .run_for(Duration::from_secs(1), |e| note(&mut seen, e))
        .await;
    assert!(seen.established >= 1, "the rogue reaches the admin");

    // A request over a link is judged as over its own stream, and its
    // answer comes back on the link; an answer to nothing asked is dropped
    // and the link stays up.
    let status = |id| {
        link_frame(&LinkFrame::Request {
            id,
            request: Request::Status { ids: vec![] },
        })
    };
    let unasked = link_frame(&LinkFrame::Response {
        id: 999,
        response: Response::Ok,
    });
    let answers = over_a_link(&mut rogue, &mut seen, admin_id, move |mut link| {
        async move {
            let mut got = Vec::new();
            for bytes in [status(7), unasked, status(8)] {
                link.write_all(&bytes).await.unwrap();
                link.flush().await.unwrap();
            }
            for _ in 0..2 {
                got.push(read_link_frame(&mut link, Duration::from_secs(5)).await);
            }
            got
        }
        .boxed()
    })
    .await;
    for (want, got) in [7u64, 8].into_iter().zip(&answers) {
        match got {
            Ok(Some(LinkFrame::Response {
                id,
                response: Response::Refused(why),
            })) => {
                assert_eq!(*id, want);
                assert!(why.contains("--allow-clients"), "{why}");
            }
            other => panic!("request {want}: {other:?}"),
        }
    }

    // A frame claiming 4 GiB closes the link at once, and costs no memory.
    let pid = admin.child.id();
    let before = rss_kib(pid);
    let closed = over_a_link(&mut rogue, &mut seen, admin_id, |mut link| {
        async move {
            link.write_all(&u32::MAX.to_le_bytes()).await.unwrap();
            link.write_all(&[0u8; 1024]).await.unwrap();
            link.flush().await.unwrap();
            read_link_frame(&mut link, Duration::from_secs(5)).await
        }
        .boxed()
    })
    .await;
    assert!(matches!(closed, Ok(None)), "{closed:?}");
    let grown = rss_kib(pid).saturating_sub(before);
    assert!(grown < 8 << 10, "the node grew by {grown} KiB");

    // Garbage on link after link counts strikes until the peer is cut off.
    for _ in 0..40 {
        if log_has(&log, "peer cut off") {
            break;
        }
        let garbage = framed(b"\x06\x00\xffnot a message of any kind");
        let mut control = rogue.links();
        let talk = tokio::spawn(async move {
            let proto = libp2p::StreamProtocol::new(taskmesh::protocol::LINK_PROTOCOL);
            if let Ok(mut link) = control.open_stream(admin_id, proto).await {
                let _ = link.write_all(&garbage).await;
                let _ = link.flush().await;
                let _ = read_link_frame(&mut link, Duration::from_secs(2)).await;
            }
        });
        while !talk.is_finished() {
            rogue
                .run_for(Duration::from_millis(20), |e| note(&mut seen, e))
                .await;
        }
    }
    assert!(
        log_has(&log, "peer cut off"),
        "garbage on links never cut the rogue off"
    );
}
