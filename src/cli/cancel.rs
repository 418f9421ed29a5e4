//! `taskmesh cancel ID…`: asks the admin to cancel tasks and says what
//! became of each.

use std::io::Write;
use std::process::ExitCode;

use clap::Args;
use serde::Serialize;
use taskmesh::scheduler::CancelOutcome;
use taskmesh::TaskId;

use super::output::JsonLine;
use super::{output, MeshArgs};

/// Exit code when some id was unknown or already evicted.
const NOT_FOUND: u8 = 2;

/// Options of `taskmesh cancel`.
#[derive(Args, Debug)]
pub struct CancelArgs {
    /// Task ids (uuids, as `submit --no-wait` prints them).
    #[arg(required = true, value_parser = super::task_id)]
    pub ids: Vec<TaskId>,
    #[command(flatten)]
    pub mesh: MeshArgs,
    /// Print one JSON object per id ({"id", "outcome", "status"}) instead
    /// of `ID<TAB>OUTCOME` lines.
    #[arg(long)]
    pub json: bool,
}

/// What became of one id.
struct Cancelled {
    id: TaskId,
    outcome: CancelOutcome,
}

impl Cancelled {
    /// The outcome as a word for scripts, and the task's status when known.
    fn parts(&self) -> (&'static str, Option<String>) {
        match &self.outcome {
            CancelOutcome::Cancelled => ("cancelled", Some("cancelled".into())),
            CancelOutcome::AlreadyFinished(s) => ("already_finished", Some(s.to_string())),
            CancelOutcome::Evicted => ("evicted", None),
            CancelOutcome::Unknown => ("unknown", None),
        }
    }

    /// The text after the tab: `cancelled`, `already completed`, …
    fn text(&self) -> String {
        match &self.outcome {
            CancelOutcome::AlreadyFinished(s) => format!("already {s}"),
            _ => self.parts().0.to_string(),
        }
    }

    /// True when the id was cancelled now or had finished anyway.
    fn found(&self) -> bool {
        matches!(
            self.outcome,
            CancelOutcome::Cancelled | CancelOutcome::AlreadyFinished(_)
        )
    }
}

impl JsonLine for Cancelled {
    fn write_json(&self, out: &mut dyn Write) -> anyhow::Result<()> {
        #[derive(Serialize)]
        struct Line {
            id: String,
            outcome: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            status: Option<String>,
        }
        let (outcome, status) = self.parts();
        let line = Line {
            id: self.id.to_string(),
            outcome,
            status,
        };
        serde_json::to_writer(out, &line)?;
        Ok(())
    }
}

/// Exit 0 when every id was cancelled or had already finished; 2 when some
/// id was unknown or evicted.
pub async fn run(a: CancelArgs) -> anyhow::Result<ExitCode> {
    let node = a.mesh.client().await?;
    let outcomes = node.cancel(a.ids.clone()).await;
    node.shutdown().await;
    let outcomes = outcomes?;
    if outcomes.len() != a.ids.len() {
        anyhow::bail!(
            "the admin answered {} outcomes for {} ids",
            outcomes.len(),
            a.ids.len()
        );
    }
    let results: Vec<Cancelled> = a
        .ids
        .iter()
        .zip(outcomes)
        .map(|(&id, outcome)| Cancelled { id, outcome })
        .collect();
    if a.json {
        output::json_lines(&results)?;
    } else {
        let mut out = std::io::stdout().lock();
        for r in &results {
            writeln!(out, "{}\t{}", r.id, r.text())?;
        }
    }
    Ok(if results.iter().all(Cancelled::found) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(NOT_FOUND)
    })
}
