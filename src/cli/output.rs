//! Tables for people, JSON lines for scripts.

use std::io::Write;

use serde::Serialize;
use taskmesh::task::{AttemptRecord, BidLine};
use taskmesh::{TaskId, TaskReport, TaskStatus, WorkerInfo};

/// Text of a payload for a table cell: UTF-8 if it is, else a byte count.
fn payload_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => format!("<{} bytes>", bytes.len()),
    }
}

/// A table cell's text with control characters (`taskmesh::task::is_control`)
/// escaped as Rust writes them (`\n`, `\t`, `\u{1b}`), so that a row stays
/// one line whatever a worker printed or a peer sent. Names entered through
/// taskmesh hold none (`taskmesh::check_name` refuses them where they enter);
/// outputs, errors and anything from a peer may.
fn escaped(text: &str) -> String {
    if !text.chars().any(taskmesh::task::is_control) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if taskmesh::task::is_control(c) => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
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

/// Widest TASK column, in terminal columns; longer names are cut with an
/// ellipsis (the JSON output has them whole).
const NAME_COLUMN: usize = 48;

/// Widest RESULT column, in terminal columns: a longer output or error is
/// cut with an ellipsis (`--json` has it whole).
const RESULT_COLUMN: usize = 160;

/// How many terminal columns `text` takes (CJK and most emoji take two;
/// Unicode's East Asian Width, through unicode-width).
fn width(text: &str) -> usize {
    unicode_width::UnicodeWidthStr::width(text)
}

/// `name` cut to at most `columns` terminal columns, the cut marked by `…`.
fn clip(name: &str, columns: usize) -> String {
    if width(name) <= columns {
        return name.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in name.chars() {
        let w = unicode_width::UnicodeWidthChar::width(c).unwrap_or(0);
        if used + w > columns.saturating_sub(1) {
            break;
        }
        used += w;
        out.push(c);
    }
    out.push('…');
    out
}

/// How a column's cells line up.
#[derive(Clone, Copy)]
enum Align {
    Left,
    Right,
}

/// A table printed with two spaces between columns, each as wide as its
/// widest cell in terminal columns; the last column is not padded.
struct Table {
    columns: Vec<(&'static str, Align)>,
    rows: Vec<Row>,
}

/// A row of cells, or a note printed under the row before it, starting in
/// the second column.
enum Row {
    Cells(Vec<String>),
    Note(String),
}

impl Table {
    fn new(columns: &[(&'static str, Align)]) -> Self {
        Table {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; each cell is [`escaped`].
    fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.columns.len());
        self.rows
            .push(Row::Cells(cells.iter().map(|c| escaped(c)).collect()));
    }

    /// Adds a note under the last row, [`escaped`].
    fn note(&mut self, text: &str) {
        self.rows.push(Row::Note(escaped(text)));
    }

    /// The table's lines, without newlines.
    fn lines(&self) -> Vec<String> {
        let mut widths: Vec<usize> = self.columns.iter().map(|(h, _)| width(h)).collect();
        for row in &self.rows {
            if let Row::Cells(cells) = row {
                for (w, cell) in widths.iter_mut().zip(cells) {
                    *w = (*w).max(width(cell));
                }
            }
        }
        let line = |cells: &mut dyn Iterator<Item = &str>| {
            let mut out = String::new();
            let last = self.columns.len() - 1;
            for (i, cell) in cells.enumerate() {
                let pad = " ".repeat(widths[i].saturating_sub(width(cell)));
                match (self.columns[i].1, i == last) {
                    (Align::Left, true) => out.push_str(cell),
                    (Align::Left, false) => {
                        out.push_str(cell);
                        out.push_str(&pad);
                    }
                    (Align::Right, _) => {
                        out.push_str(&pad);
                        out.push_str(cell);
                    }
                }
                if i < last {
                    out.push_str("  ");
                }
            }
            out
        };
        let mut lines = vec![line(&mut self.columns.iter().map(|(h, _)| *h))];
        for row in &self.rows {
            lines.push(match row {
                Row::Cells(cells) => line(&mut cells.iter().map(String::as_str)),
                Row::Note(text) => format!("{}  {text}", " ".repeat(widths[0])),
            });
        }
        lines
    }

    /// Prints the lines (a reader that leaves early ends the command as
    /// `main` says).
    fn print(&self) {
        for line in self.lines() {
            println!("{line}");
        }
    }
}

/// One row per task, and under it the reason of its award.
pub fn task_table(reports: &[TaskReport]) {
    use Align::{Left, Right};
    let mut table = Table::new(&[
        ("TASK", Left),
        ("DIFF", Right),
        ("STATUS", Left),
        ("WORKER", Left),
        ("ATTEMPTS", Right),
        ("BIDS", Left),
        ("TIME", Right),
        ("RESULT", Left),
    ]);
    for r in reports {
        table.row(vec![
            clip(&escaped(&r.name), NAME_COLUMN),
            r.difficulty.to_string(),
            r.status.to_string(),
            r.worker.as_deref().unwrap_or("-").to_string(),
            r.attempts.to_string(),
            bids_text(r),
            format!("{}ms", r.elapsed_ms),
            clip(&escaped(&result_text(r)), RESULT_COLUMN),
        ]);
        if let Some(a) = &r.auction {
            table.note(&format!("why: {}", a.reason));
        }
    }
    table.print();
}

/// One row per peer.
pub fn peer_table(peers: &[taskmesh::protocol::PeerInfo]) {
    use Align::Left;
    let mut table = Table::new(&[
        ("PEER", Left),
        ("ROLE", Left),
        ("WORKERS", Left),
        ("ADDRESS", Left),
    ]);
    for p in peers {
        let role = match (p.is_admin, p.is_voter, p.workers.is_empty()) {
            (true, _, _) => "admin",
            (false, true, _) => "voter",
            (false, false, true) => "peer",
            (false, false, false) => "worker",
        };
        let workers = if p.workers.is_empty() {
            "-".to_string()
        } else {
            p.workers.join(",")
        };
        let addr = p.addrs.first().map_or("-", |a| a.as_str());
        table.row(vec![p.peer.to_string(), role.into(), workers, addr.into()]);
    }
    table.print();
}

/// One row per worker.
pub fn worker_table(workers: &[WorkerInfo]) {
    use Align::{Left, Right};
    let mut table = Table::new(&[
        ("WORKER", Left),
        ("ROLE", Left),
        ("SKILL", Right),
        ("LOAD", Right),
        ("NODE", Left),
    ]);
    for w in workers {
        table.row(vec![
            w.name.clone(),
            w.role.clone(),
            w.skill.to_string(),
            format!("{}/{}", w.load, w.capacity),
            w.node.to_string(),
        ]);
    }
    table.print();
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
    bids: Vec<BidLine>,
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
                .map(|a| {
                    a.bids
                        .iter()
                        .map(|b| BidLine::new(b, self.difficulty, a.queued))
                        .collect()
                })
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
    use super::*;

    #[test]
    fn long_names_are_cut_to_the_column() {
        assert_eq!(clip("short", 48), "short");
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("ééééé", 3), "éé…");
        assert_eq!(clip("要約要約", 5), "要約…");
        assert_eq!(clip("要約要約", 4), "要…");
        assert_eq!(width(&clip(&"n".repeat(70_000), 48)), 48);
    }

    #[test]
    fn columns_line_up_by_display_width() {
        use Align::{Left, Right};
        let mut t = Table::new(&[("TASK", Left), ("N", Right), ("RESULT", Left)]);
        for name in ["ascii", "要約する", "🚀 launch", "café", "cafe\u{301}"] {
            t.row(vec![name.into(), "7".into(), "done".into()]);
        }
        t.note("why: x\n");
        let lines = t.lines();
        // Every row's second column ends at the same terminal column.
        let ends: Vec<usize> = lines[..lines.len() - 1]
            .iter()
            .map(|l| width(&l[..l.rfind("  ").unwrap()]))
            .collect();
        assert!(ends.windows(2).all(|w| w[0] == w[1]), "{lines:#?}");
        assert_eq!(lines.last().unwrap(), &format!("{}  why: x\\n", " ".repeat(9)));
        let mut t = Table::new(&[("A", Left), ("B", Left)]);
        t.row(vec!["a\tb".into(), "line\nbreak\r".into()]);
        assert_eq!(t.lines(), ["A     B", "a\\tb  line\\nbreak\\r"]);
    }

    #[test]
    fn free_text_stays_on_one_line() {
        assert_eq!(escaped("plain 要約"), "plain 要約");
        assert_eq!(escaped("a\nb\tc\u{1b}[0m"), "a\\nb\\tc\\u{1b}[0m");
        assert_eq!(escaped("x\u{202E}y\u{2028}"), "x\\u{202e}y\\u{2028}");
        for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
            let e = escaped(&c.to_string());
            assert!(!e.chars().any(taskmesh::task::is_control), "{c:?} -> {e:?}");
        }
    }
}
