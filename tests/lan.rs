//! A small LAN on this one machine: network namespaces joined by veth pairs
//! to a bridge (itself in a namespace of its own, so nothing touches the
//! host's network), one `taskmesh node` process per namespace.
//!
//! Needs root and iproute2 (`ip`). Where they are missing the tests say so
//! and pass, unless `TASKMESH_REQUIRE_LAN=1` (set by `.ci/run`), which makes
//! a missing capability a failure. Namespaces and processes are removed at
//! the end, also on failure.

use std::path::Path;
use std::process::{Command, Output};

mod common;

use common::procs::{json_lines, run_bounded, Proc, BIN};

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Namespaces `<prefix>sw` (the bridge) and `<prefix>n1..nN` (the hosts,
/// 10.77.0.i/24 on eth0), plus the node processes started in them.
struct Lan {
    prefix: String,
    hosts: usize,
    procs: Vec<Proc>,
}

impl Lan {
    /// Builds the LAN, or explains why it cannot be built here.
    fn build(tag: &str, hosts: usize) -> Result<Lan, String> {
        let prefix = format!("tm{}{tag}", std::process::id() % 100_000);
        let lan = Lan {
            prefix,
            hosts,
            procs: Vec::new(),
        };
        let sw = lan.switch();
        ip(&["netns", "add", &sw])?;
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &sw, "link", "set", "br0", "up"])?;
        for i in 1..=hosts {
            let ns = lan.host(i);
            let port = format!("p{i}");
            let addr = format!("10.77.0.{i}/24");
            ip(&["netns", "add", &ns])?;
            ip(&[
                "-n", &sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ])?;
            ip(&["-n", &sw, "link", "set", &port, "master", "br0"])?;
            ip(&["-n", &sw, "link", "set", &port, "up"])?;
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(lan)
    }

    fn switch(&self) -> String {
        format!("{}sw", self.prefix)
    }

    fn host(&self, i: usize) -> String {
        format!("{}n{i}", self.prefix)
    }

    /// `taskmesh ARGS…` inside host `i`'s namespace.
    fn in_host(&self, i: usize, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.host(i), BIN]).args(args);
        c
    }

    /// Starts a node in host `i`; the LAN stops it when dropped.
    fn node(&mut self, i: usize, args: &[&str]) -> usize {
        let node = Proc::spawn(self.in_host(i, &[&["node"], args].concat()));
        self.procs.push(node);
        self.procs.len() - 1
    }

    /// Waits for a line of node `n`'s output; returns the rest of it.
    fn line(&self, n: usize, prefix: &str, containing: &str) -> String {
        self.procs[n].expect_line(prefix, containing)
    }

    /// Runs a client command in host `i` to completion, bounded.
    fn run(&self, i: usize, args: &[&str]) -> Output {
        run_bounded(self.in_host(i, args))
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        self.procs.clear(); // kills and reaps every node
        for i in 1..=self.hosts {
            let _ = ip(&["netns", "del", &self.host(i)]);
        }
        let _ = ip(&["netns", "del", &self.switch()]);
    }
}

/// The LAN, or `None` (with a note) where this machine cannot build one.
fn lan(tag: &str, hosts: usize) -> Option<Lan> {
    match Lan::build(tag, hosts) {
        Ok(l) => Some(l),
        Err(why) if std::env::var("TASKMESH_REQUIRE_LAN").as_deref() != Ok("1") => {
            eprintln!("skipping the LAN test: cannot build network namespaces here ({why})");
            None
        }
        Err(why) => panic!("cannot build the test LAN: {why}"),
    }
}

fn pipeline() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/lan-dag.toml")
        .display()
        .to_string()
}

/// Runs the DAG from host `client` and checks every task landed on a worker
/// in another namespace, with outputs flowing down the DAG.
fn check_dag_runs(lan: &Lan, client: usize, mesh_args: &[&str], worker_peers: &[String]) {
    let file = pipeline();
    let mut args = vec!["submit", file.as_str(), "--json", "--wait-workers", "2"];
    args.extend_from_slice(mesh_args);
    let out = lan.run(client, &args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "submit failed: {err}");
    let tasks = json_lines(&out);
    assert_eq!(tasks.len(), 4, "{err}");
    for t in &tasks {
        assert_eq!(t["status"], "completed", "{t}");
        let node = t["node"].as_str().unwrap().to_string();
        assert!(
            worker_peers.contains(&node),
            "task ran on {node}, not a worker namespace"
        );
    }
    let agg = tasks.iter().find(|t| t["name"] == "aggregate").unwrap();
    assert_eq!(agg["output"], "lan", "outputs flow down the DAG");
}

/// The admin among the peers that the `peers` command lists from host `i`.
fn admin_seen_from(lan: &Lan, i: usize, mesh_args: &[&str]) -> String {
    let mut args = vec!["peers", "--json"];
    args.extend_from_slice(mesh_args);
    let out = lan.run(i, &args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let admins: Vec<String> = json_lines(&out)
        .iter()
        .filter(|p| p["is_admin"] == true)
        .map(|p| p["peer"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(admins.len(), 1, "exactly one admin");
    admins[0].clone()
}

#[test]
fn peers_find_each_other_by_mdns_elect_one_admin_and_run_a_dag() {
    let Some(mut lan) = lan("m", 4) else { return };
    let common = ["--listen", "/ip4/0.0.0.0/tcp/7411", "--work-ms", "1"];
    let admin = lan.node(1, &[&common[..], &["--seed", "1"]].concat());
    let w2 = lan.node(
        2,
        &[&common[..], &["--seed", "2", "--worker", "Junior:worker:3"]].concat(),
    );
    let w3 = lan.node(
        3,
        &[&common[..], &["--seed", "3", "--worker", "Senior:worker:9"]].concat(),
    );
    lan.line(admin, "listening on ", "10.77.0.1");
    let p2 = lan.line(w2, "peer id: ", "");
    let p3 = lan.line(w3, "peer id: ", "");
    // No --join anywhere: mDNS does the finding.
    check_dag_runs(&lan, 4, &[], &[p2, p3]);
    assert_eq!(
        admin_seen_from(&lan, 4, &[]),
        admin_seen_from(&lan, 4, &["--admin-wait", "5"])
    );
}

#[test]
fn peers_join_by_multiaddr_across_namespaces_with_mdns_off() {
    let Some(mut lan) = lan("j", 4) else { return };
    let common = ["--listen", "/ip4/0.0.0.0/tcp/7411", "--no-mdns", "--work-ms", "1"];
    let admin = lan.node(
        1,
        &[&common[..], &["--seed", "11", "--admin-priority", "9"]].concat(),
    );
    let addr = lan.line(admin, "listening on ", "/ip4/10.77.0.1/");
    let join = ["--join", addr.as_str()];
    let w2 = lan.node(
        2,
        &[
            &common[..],
            &join,
            &["--seed", "12", "--worker", "Junior:worker:3", "--no-admin"],
        ]
        .concat(),
    );
    let w3 = lan.node(
        3,
        &[
            &common[..],
            &join,
            &["--seed", "13", "--worker", "Senior:worker:9", "--no-admin"],
        ]
        .concat(),
    );
    let p2 = lan.line(w2, "peer id: ", "");
    let p3 = lan.line(w3, "peer id: ", "");
    let client_args = ["--no-mdns", "--join", addr.as_str()];
    check_dag_runs(&lan, 4, &client_args, &[p2, p3]);
    let admin_id = addr.rsplit('/').next().unwrap().to_string();
    assert_eq!(admin_seen_from(&lan, 4, &client_args), admin_id);
}
