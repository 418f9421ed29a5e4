//! Tables for people, JSON lines for scripts.

use std::io::Write;

use serde::Serialize;
use taskmesh::task::AttemptRecord;
use taskmesh::{TaskId, TaskReport, TaskStatus, WorkerInfo};

/// Text of a payload: UTF-8 if it is, else a byte count.
fn payload_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.replace('\n', "\\n"),
        Err(_) => format!("<{} bytes>", bytes.len()),
    }
}

fn result_text(r: &TaskReport) -> String {
    match (&r.output, &r.error) {
        // "cancelled: …" and "skipped: …" say what they are.
        (_, Some(e)) if r.status != TaskStatus::Failed => e.to_string(),
        (_, Some(e)) => format!("error: {e}"),
        (Some(o), None) => payload_text(o.as_bytes()),
        (None, None) => String::new(),
    }
}

fn bids_text(r: &TaskReport) -> String {
    r.auction.as_ref().map_or_else(
        || "-".to_string(),
        |a| {
            a.bids
                .iter()
                .map(|b| format!("{}({})", b.worker, b.skill))
                .collect::<Vec<_>>()
                .join(",")
        },
    )
}

/// Widest TASK column; longer names are cut with an ellipsis (the JSON
/// output has them whole).
const NAME_COLUMN: usize = 48;

/// `name` cut to `width` characters.
fn clip(name: &str, width: usize) -> String {
    match name.char_indices().nth(width) {
        Some((cut, _)) => {
            let keep = name[..cut].char_indices().nth(width - 1).map_or(cut, |(i, _)| i);
            format!("{}…", &name[..keep])
        }
        None => name.to_string(),
    }
}

/// One row per task.
pub fn task_table(reports: &[TaskReport]) {
    let chars = |r: &TaskReport| r.name.chars().count();
    let width = reports.iter().map(chars).max().unwrap_or(4).clamp(4, NAME_COLUMN);
    println!(
        "{:width$}  {:>4}  {:9}  {:14}  {:>8}  {:36}  {:>7}  RESULT",
        "TASK", "DIFF", "STATUS", "WORKER", "ATTEMPTS", "BIDS", "TIME"
    );
    for r in reports {
        println!(
            "{:width$}  {:>4}  {:9}  {:14}  {:>8}  {:36}  {:>5}ms  {}",
            clip(&r.name, width),
            r.difficulty,
            r.status.to_string(),
            r.worker.as_deref().unwrap_or("-"),
            r.attempts,
            bids_text(r),
            r.elapsed_ms,
            result_text(r),
        );
        if let Some(a) = &r.auction {
            println!("{:width$}  why: {}", "", a.reason);
        }
    }
}

/// One row per peer.
pub fn peer_table(peers: &[taskmesh::protocol::PeerInfo]) {
    println!("{:52}  {:6}  {:24}  ADDRESS", "PEER", "ROLE", "WORKERS");
    for p in peers {
        let role = match (p.is_admin, p.workers.is_empty()) {
            (true, _) => "admin",
            (false, true) => "peer",
            (false, false) => "worker",
        };
        let workers = if p.workers.is_empty() {
            "-".to_string()
        } else {
            p.workers.join(",")
        };
        let addr = p.addrs.first().map_or("-", |a| a.as_str());
        println!("{:52}  {:6}  {:24}  {addr}", p.peer, role, workers);
    }
}

/// One row per worker.
pub fn worker_table(workers: &[WorkerInfo]) {
    println!(
        "{:16}  {:12}  {:>5}  {:>9}  NODE",
        "WORKER", "ROLE", "SKILL", "LOAD"
    );
    for w in workers {
        println!(
            "{:16}  {:12}  {:>5}  {:>4}/{:<4}  {}",
            w.name, w.role, w.skill, w.load, w.capacity, w.node
        );
    }
}

#[derive(Serialize)]
struct TaskLine<'a> {
    name: &'a str,
    id: String,
    status: String,
    role: &'a str,
    difficulty: u32,
    worker: Option<&'a str>,
    node: Option<String>,
    attempts: u32,
    history: Vec<AttemptLine<'a>>,
    elapsed_ms: u64,
    bids: Vec<&'a str>,
    reason: Option<&'a str>,
    output: Option<String>,
    error: Option<String>,
}

/// One attempt in a task's JSON `history`.
#[derive(Serialize)]
struct AttemptLine<'a> {
    number: u32,
    worker: &'a str,
    node: &'a str,
    /// Wall-clock milliseconds since the Unix epoch when it was awarded.
    started_ms: u64,
    /// `null` while it runs.
    duration_ms: Option<u64>,
    /// How it ended, as text ("completed", "failed (retryable): …", …).
    outcome: String,
}

impl<'a> From<&'a AttemptRecord> for AttemptLine<'a> {
    fn from(a: &'a AttemptRecord) -> Self {
        AttemptLine {
            number: a.number,
            worker: &a.worker,
            node: a.node.as_str(),
            started_ms: a.started_ms,
            duration_ms: a.duration_ms,
            outcome: a.outcome.to_string(),
        }
    }
}

/// Tasks whose reports the admin no longer keeps, as JSON lines
/// `{"id": …, "status": "evicted"}`.
pub fn evicted_lines(ids: &[TaskId]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    for id in ids {
        let line = serde_json::json!({ "id": id.to_string(), "status": "evicted" });
        serde_json::to_writer(&mut out, &line)?;
        writeln!(out)?;
    }
    Ok(())
}

/// Serialises items as one JSON object per line.
pub fn json_lines<T: JsonLine>(items: &[T]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    for item in items {
        item.write_json(&mut out)?;
        writeln!(out)?;
    }
    Ok(())
}

/// Something printable as one JSON line.
pub trait JsonLine {
    /// Writes the JSON object, without the newline.
    fn write_json(&self, out: &mut dyn Write) -> anyhow::Result<()>;
}

impl JsonLine for TaskReport {
    fn write_json(&self, out: &mut dyn Write) -> anyhow::Result<()> {
        let line = TaskLine {
            name: &self.name,
            id: self.id.to_string(),
            status: self.status.to_string(),
            role: &self.role,
            difficulty: self.difficulty,
            worker: self.worker.as_deref(),
            node: self.node.as_ref().map(|n| n.to_string()),
            attempts: self.attempts,
            history: self.history.iter().map(AttemptLine::from).collect(),
            elapsed_ms: self.elapsed_ms,
            bids: self
                .auction
                .as_ref()
                .map(|a| a.bids.iter().map(|b| b.worker.as_str()).collect())
                .unwrap_or_default(),
            reason: self.auction.as_ref().map(|a| a.reason.as_str()),
            output: self
                .output
                .as_ref()
                .map(|o| String::from_utf8_lossy(o.as_bytes()).into_owned()),
            error: self.error.as_ref().map(|e| e.to_string()),
        };
        serde_json::to_writer(out, &line)?;
        Ok(())
    }
}

impl JsonLine for taskmesh::protocol::PeerInfo {
    fn write_json(&self, out: &mut dyn Write) -> anyhow::Result<()> {
        serde_json::to_writer(out, self)?;
        Ok(())
    }
}

impl JsonLine for WorkerInfo {
    fn write_json(&self, out: &mut dyn Write) -> anyhow::Result<()> {
        serde_json::to_writer(out, self)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::clip;

    #[test]
    fn long_names_are_cut_to_the_column() {
        assert_eq!(clip("short", 48), "short");
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("ééééé", 3), "éé…");
        assert_eq!(clip(&"n".repeat(70_000), 48).chars().count(), 48);
    }
}
