//! Task files: a DAG of tasks described in TOML or JSON, with dependencies
//! by name.
//!
//! ```toml
//! [[task]]
//! name = "prep"
//! role = "worker"
//! difficulty = 2
//! input = "some text"          # or input_file = "data.bin", or input_json = { a = 1 }
//!
//! [[task]]
//! name = "process"
//! role = "worker"
//! difficulty = 5
//! depends_on = ["prep"]
//! timeout_ms = 10000
//! retries = 2
//! priority = 10
//!
//! [[task]]
//! name = "cleanup"
//! role = "worker"
//! depends_on = ["process"]
//! trigger = "all_done"
//! ```
//!
//! JSON files have the same shape: `{"task": [{"name": "prep", ...}]}`.
//! Inputs are bytes: `input` is the text's UTF-8, `input_file` the file's
//! bytes (relative to the task file), `input_json` the value as JSON text,
//! exactly as written: integers of any size keep every digit, object keys
//! their order, and TOML dates and times become RFC 3339 strings, so a JSON
//! and a TOML file with the same content give the same bytes (the rules are
//! in `exact.rs`).
//!
//! # Fields
//!
//! | field | meaning | unit, range | absent | 0 |
//! |---|---|---|---|---|
//! | `name` | unique in the file; dependents name it | text | required | |
//! | `role` | only workers of this role bid | text, not empty | required | |
//! | `difficulty` | a worker needs skill ≥ difficulty | 0..=2³²−1 | 0 | anyone may take it |
//! | `depends_on` | tasks that must finish first (by name) | names in this file | none | |
//! | `timeout_ms` | execution timeout of one attempt | ms, 0..=30 days | the admin's `--task-timeout` | no limit |
//! | `queue_timeout_ms` | how long the task may wait ready without an award before it fails | ms, 0..=30 days | the admin's `--queue-timeout` | no limit |
//! | `deadline_ms` | total deadline from submission: past it the task fails whatever it is doing | ms, 0..=30 days | the admin's `--deadline` | no deadline |
//! | `retries` | how often a retryable failure (a command's exit 75, a signal, a timeout) is retried | 0..=100 | the admin's `--retries` (0) | never retried |
//! | `max_attempts` | how many attempts may be *lost* (worker gone, lease expired) before the task fails | 1..=100 | the admin's `--max-attempts` (3) | refused |
//! | `priority` | higher runs first among ready tasks of a role (waiting raises it) | −1,000,000..=1,000,000 | 0 | the default |
//! | `trigger` | when the task runs, given how its dependencies ended: `"all_success"` (all completed), `"one_failed"` (a fallback: at least one failed; skipped otherwise), `"all_done"` (a cleanup: always) | one of the three | `"all_success"` | |
//!
//! Everything is checked before anything is sent. A value of the wrong type
//! or out of range is refused with the file, the line and column, and the
//! task's name (see [`TaskFileError::Value`]); unknown fields are refused.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

mod exact;

use crate::scheduler::dag::{self, Limits};
use crate::task::{quoted, Payload, Task, Trigger, MAX_PRIORITY, MAX_RETRIES, MAX_TIMEOUT_MS};

/// What is wrong with a task file. Every variant says where.
#[derive(Debug, thiserror::Error)]
pub enum TaskFileError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML/JSON of the task-file shape.
    #[error("{path}:{line}:{column}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// A task has a field of the wrong type, out of range, or unknown.
    #[error("{path}:{line}:{column}: task {task}: {message}")]
    Value {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The task's name, quoted, or its position (`#2`) when it has none.
        task: String,
        /// What is wrong.
        message: String,
    },
    /// A task is wrong in a way the parser cannot see.
    #[error("{path}: task {}: {message}", quoted(.task))]
    Task {
        /// The file.
        path: PathBuf,
        /// The task's name.
        task: String,
        /// What is wrong.
        message: String,
    },
    /// The file as a whole is wrong (no tasks, a cycle).
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileShape {
    #[serde(alias = "tasks")]
    task: Vec<TaskShape>,
}

/// One task as written; the table in the module documentation says what
/// each field means.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskShape {
    name: String,
    role: String,
    #[serde(default)]
    difficulty: u32,
    input: Option<String>,
    input_file: Option<PathBuf>,
    input_json: Option<exact::ExactJson>,
    #[serde(default)]
    depends_on: Vec<String>,
    #[serde(default, deserialize_with = "timeout_ms")]
    timeout_ms: Option<u64>,
    #[serde(default, deserialize_with = "queue_timeout_ms")]
    queue_timeout_ms: Option<u64>,
    #[serde(default, deserialize_with = "deadline_ms")]
    deadline_ms: Option<u64>,
    #[serde(default, deserialize_with = "retries")]
    retries: Option<u32>,
    #[serde(default, deserialize_with = "max_attempts")]
    max_attempts: Option<u32>,
    #[serde(default, deserialize_with = "priority")]
    priority: i32,
    #[serde(default, deserialize_with = "trigger")]
    trigger: Trigger,
}

// Range checks run inside the parser, so that a refusal carries the line
// and column of the value. Integers are read as i64 (TOML's integer), so a
// negative number is "out of range" rather than a type error.

/// An integer field within `lo..=hi`.
fn ranged<'de, D: Deserializer<'de>>(
    d: D,
    field: &str,
    lo: i64,
    hi: i64,
    unit: &str,
) -> Result<i64, D::Error> {
    let v = i64::deserialize(d)?;
    if (lo..=hi).contains(&v) {
        return Ok(v);
    }
    Err(serde::de::Error::custom(format!(
        "{field} = {v} is out of range {lo}..={hi}{unit}"
    )))
}

/// A timeout in milliseconds: 0 (no limit) up to 30 days.
fn timeout<'de, D: Deserializer<'de>>(d: D, field: &str) -> Result<Option<u64>, D::Error> {
    let max = MAX_TIMEOUT_MS as i64;
    let v = ranged(d, field, 0, max, " ms (30 days; 0 for no limit)")?;
    Ok(Some(v as u64))
}

fn timeout_ms<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    timeout(d, "timeout_ms")
}

fn queue_timeout_ms<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    timeout(d, "queue_timeout_ms")
}

fn deadline_ms<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    timeout(d, "deadline_ms")
}

fn retries<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let v = ranged(d, "retries", 0, MAX_RETRIES.into(), "")?;
    Ok(Some(v as u32))
}

fn max_attempts<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let v = ranged(d, "max_attempts", 1, MAX_RETRIES.into(), "")?;
    Ok(Some(v as u32))
}

fn priority<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    let max = i64::from(MAX_PRIORITY);
    Ok(ranged(d, "priority", -max, max, "")? as i32)
}

fn trigger<'de, D: Deserializer<'de>>(d: D) -> Result<Trigger, D::Error> {
    String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
}

/// Reads a task file (TOML, or JSON when the name ends in `.json` or the
/// text starts with `{`) into tasks with fresh ids, dependencies resolved.
pub fn load(path: &Path) -> Result<Vec<Task>, TaskFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| TaskFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// Parses task-file text; `path` names the file in errors and anchors
/// relative `input_file`s.
pub fn parse(text: &str, path: &Path) -> Result<Vec<Task>, TaskFileError> {
    // A byte-order mark some editors write is not part of the text.
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let json = path.extension().is_some_and(|e| e == "json") || text.trim_start().starts_with('{');
    let shape: FileShape = if json {
        from_json(text, path)?
    } else {
        from_toml(text, path)?
    };
    build(shape, path)
}

fn from_json(text: &str, path: &Path) -> Result<FileShape, TaskFileError> {
    serde_json::from_str(text).map_err(|e| {
        let message = e.to_string();
        let message = message.split(" at line").next().unwrap_or_default().to_string();
        // A well-formed file whose tasks do not fit: name the task. Each
        // task is read again from its own text, so that what only the full
        // reading sees (a key written twice in an `input_json`, which a
        // `serde_json::Value` would quietly take the last of) is found too.
        #[derive(Deserialize)]
        struct Raw<'a> {
            #[serde(borrow, default)]
            task: Vec<&'a serde_json::value::RawValue>,
            #[serde(borrow, default)]
            tasks: Vec<&'a serde_json::value::RawValue>,
        }
        let raw = serde_json::from_str::<Raw>(text).ok();
        let each = raw.iter().flat_map(|r| r.task.iter().chain(&r.tasks));
        let culprit = each
            .enumerate()
            .find(|(_, t)| serde_json::from_str::<TaskShape>(t.get()).is_err());
        let culprit = culprit.map(|(i, t)| {
            let task = serde_json::from_str::<serde_json::Value>(t.get()).ok();
            let name = task
                .as_ref()
                .and_then(|v| v.get("name")?.as_str().map(str::to_string));
            (i, name)
        });
        located(path, e.line(), e.column(), message, culprit)
    })
}

fn from_toml(text: &str, path: &Path) -> Result<FileShape, TaskFileError> {
    toml::from_str(text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        let (line, column) = line_col(text, offset);
        let tasks = toml::from_str::<toml::Table>(text)
            .ok()
            .and_then(|mut t| t.remove("task").or_else(|| t.remove("tasks")))
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default();
        let culprit = tasks
            .into_iter()
            .enumerate()
            .find(|(_, t)| TaskShape::deserialize(t.clone()).is_err())
            .map(|(i, t)| (i, t.get("name").and_then(|n| n.as_str()).map(str::to_string)));
        located(path, line, column, e.message().to_string(), culprit)
    })
}

/// The error for a parse failure at `line:column`. When the file itself is
/// well formed, `culprit` is the first task that does not fit the task shape
/// (its position from 0, and its name if it has one): the one the parser
/// stopped in, since tasks are read in order. The error names it.
fn located(
    path: &Path,
    line: usize,
    column: usize,
    message: String,
    culprit: Option<(usize, Option<String>)>,
) -> TaskFileError {
    let path = path.to_path_buf();
    match culprit {
        Some((i, name)) => TaskFileError::Value {
            path,
            line,
            column,
            task: name.map_or_else(|| format!("#{}", i + 1), |n| quoted(&n).to_string()),
            message,
        },
        None => TaskFileError::Syntax {
            path,
            line,
            column,
            message,
        },
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn build(shape: FileShape, path: &Path) -> Result<Vec<Task>, TaskFileError> {
    let file_err = |message: String| TaskFileError::File {
        path: path.to_path_buf(),
        message,
    };
    if shape.task.is_empty() {
        return Err(file_err("no tasks in file".into()));
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let mut tasks = Vec::with_capacity(shape.task.len());
    let mut ids = HashMap::new();
    for t in &shape.task {
        let task_err = |message: String| TaskFileError::Task {
            path: path.to_path_buf(),
            task: t.name.clone(),
            message,
        };
        let input = input_of(t, base).map_err(task_err)?;
        let task = task_of(t, input);
        if ids.insert(t.name.clone(), task.id).is_some() {
            return Err(task_err("two tasks have this name".into()));
        }
        tasks.push(task);
    }
    for (task, t) in tasks.iter_mut().zip(&shape.task) {
        for dep in &t.depends_on {
            let id = ids.get(dep).ok_or_else(|| TaskFileError::Task {
                path: path.to_path_buf(),
                task: t.name.clone(),
                message: format!("depends on unknown task {}", quoted(dep)),
            })?;
            task.dependencies.push(*id);
        }
    }
    let limits = Limits {
        max_payload: usize::MAX,
        max_batch: usize::MAX,
    };
    dag::validate(&tasks, |_| false, limits).map_err(|e| file_err(e.to_string()))?;
    Ok(tasks)
}

/// The task a shape describes, with a fresh id and no dependencies yet.
fn task_of(t: &TaskShape, input: Payload) -> Task {
    let mut task = Task::new(&t.name, &t.role, t.difficulty).with_payload(input);
    task.timeout_ms = t.timeout_ms;
    task.queue_timeout_ms = t.queue_timeout_ms;
    task.deadline_ms = t.deadline_ms;
    task.retries = t.retries;
    task.max_attempts = t.max_attempts;
    task.priority = t.priority;
    task.trigger = t.trigger;
    task
}

/// Most bytes an `input_file` may hold: the largest frame (16 MiB), which
/// no task's input can pass on its way to the admin (the admin's own limit,
/// `max_payload`, is 8 MiB by default and reported by name).
pub const MAX_INPUT_FILE: u64 = crate::protocol::DEFAULT_MAX_FRAME as u64;

/// Reads an `input_file`: a regular file of at most [`MAX_INPUT_FILE`]
/// bytes (never a device, a pipe or a directory, which could block or
/// never end).
fn read_input_file(p: &Path) -> Result<Payload, String> {
    use std::io::Read;
    let what = || format!("input_file {}", p.display());
    let meta = std::fs::metadata(p).map_err(|e| format!("cannot read {}: {e}", what()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a regular file", what()));
    }
    let file = std::fs::File::open(p).map_err(|e| format!("cannot read {}: {e}", what()))?;
    let mut bytes = Vec::new();
    file.take(MAX_INPUT_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", what()))?;
    if bytes.len() as u64 > MAX_INPUT_FILE {
        return Err(format!("{} is over {MAX_INPUT_FILE} bytes", what()));
    }
    Ok(Payload::from_bytes(bytes))
}

fn input_of(t: &TaskShape, base: &Path) -> Result<Payload, String> {
    match (&t.input, &t.input_file, &t.input_json) {
        (None, None, None) => Ok(Payload::default()),
        (Some(s), None, None) => Ok(Payload::from_bytes(s.as_bytes())),
        (None, Some(f), None) => read_input_file(&base.join(f)),
        (None, None, Some(v)) => Ok(Payload::from_bytes(v.0.as_bytes())),
        _ => Err("give at most one of input, input_file, input_json".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str) -> PathBuf {
        PathBuf::from(name)
    }

    #[test]
    fn toml_and_json_give_the_same_dag() {
        let toml = "[[task]]\nname='a'\nrole='w'\ndifficulty=2\ninput='hi'\n\n[[task]]\nname='b'\nrole='w'\ndepends_on=['a']\ninput_json={x=1}\n";
        let json = r#"{"task":[{"name":"a","role":"w","difficulty":2,"input":"hi"},{"name":"b","role":"w","depends_on":["a"],"input_json":{"x":1}}]}"#;
        for (text, file) in [(toml, "f.toml"), (json, "f.json")] {
            let tasks = parse(text, &p(file)).unwrap();
            assert_eq!(tasks[0].input.as_bytes(), b"hi");
            assert_eq!(tasks[1].dependencies, vec![tasks[0].id]);
            assert_eq!(tasks[1].input.as_bytes(), br#"{"x":1}"#);
        }
    }

    #[test]
    fn inputs_reach_the_task_as_written_whatever_the_file_format() {
        let toml = "[[task]]\nname='big'\nrole='w'\ninput_json={big=1234567890123456789, dt=1979-05-27T07:32:00Z, f=0.5}\n";
        let json = r#"{"task":[{"name":"big","role":"w","input_json":{"big":1234567890123456789,"dt":"1979-05-27T07:32:00Z","f":0.5}}]}"#;
        let want = br#"{"big":1234567890123456789,"dt":"1979-05-27T07:32:00Z","f":0.5}"#;
        for (text, file) in [(toml, "f.toml"), (json, "f.json")] {
            let tasks = parse(text, &p(file)).unwrap();
            assert_eq!(tasks[0].input.as_bytes(), want, "{file}");
        }
        let json =
            r#"{"task":[{"name":"big","role":"w","input_json":{"big":123456789012345678901234567890}}]}"#;
        let tasks = parse(json, &p("f.json")).unwrap();
        assert_eq!(
            tasks[0].input.as_bytes(),
            br#"{"big":123456789012345678901234567890}"#
        );
        let e = parse("[[task]]\nname='n'\nrole='w'\ninput_json={x=nan}\n", &p("f.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("f.toml:4:") && e.contains("task \"n\"") && e.contains("JSON cannot write"),
            "{e}"
        );
        let bom = "\u{FEFF}{\"task\": [{\"name\": \"a\", \"role\": \"w\"}]}";
        assert_eq!(
            parse(bom, &p("f.json")).unwrap().len(),
            1,
            "a byte-order mark is skipped"
        );
        let json = r#"{"task": [{"name": "ok", "role": "w"},
            {"name": "dup", "role": "w", "input_json": {"a": 1, "a": 2}}]}"#;
        let e = parse(json, &p("f.json")).unwrap_err().to_string();
        assert!(
            e.starts_with("f.json:2:") && e.contains("task \"dup\": input_json has the key \"a\" twice"),
            "{e}"
        );
    }

    #[test]
    fn every_scheduling_field_reaches_the_task() {
        let toml = "[[task]]\nname='a'\nrole='w'\ntimeout_ms=1000\nqueue_timeout_ms=0\ndeadline_ms=2592000000\nretries=100\nmax_attempts=1\npriority=-1000000\ntrigger='one_failed'\n";
        let json = r#"{"task":[{"name":"a","role":"w","timeout_ms":1000,"queue_timeout_ms":0,"deadline_ms":2592000000,"retries":100,"max_attempts":1,"priority":-1000000,"trigger":"one_failed"}]}"#;
        for (text, file) in [(toml, "f.toml"), (json, "f.json")] {
            let t = &parse(text, &p(file)).unwrap()[0];
            assert_eq!(
                (t.timeout_ms, t.queue_timeout_ms, t.deadline_ms),
                (Some(1000), Some(0), Some(MAX_TIMEOUT_MS))
            );
            assert_eq!((t.retries, t.max_attempts), (Some(100), Some(1)));
            assert_eq!((t.priority, t.trigger), (-1_000_000, Trigger::OneFailed));
        }
        // Absent fields stay with the admin's defaults.
        let t = &parse("[[task]]\nname='a'\nrole='w'\n", &p("f.toml")).unwrap()[0];
        assert_eq!((t.timeout_ms, t.retries, t.max_attempts), (None, None, None));
        assert_eq!((t.priority, t.trigger), (0, Trigger::AllSuccess));
    }

    #[test]
    fn bad_values_name_the_file_the_place_and_the_task() {
        let head = "[[task]]\nname='ok'\nrole='w'\n[[task]]\nname='bad'\nrole='w'\n";
        let cases = [
            (
                "timeout_ms=2592000001",
                "timeout_ms = 2592000001 is out of range 0..=2592000000",
            ),
            ("queue_timeout_ms=-1", "queue_timeout_ms = -1 is out of range"),
            ("deadline_ms='soon'", "invalid type: string \"soon\""),
            ("retries=101", "retries = 101 is out of range 0..=100"),
            ("max_attempts=0", "max_attempts = 0 is out of range 1..=100"),
            ("max_attempts=101", "max_attempts = 101 is out of range"),
            (
                "priority=1000001",
                "priority = 1000001 is out of range -1000000..=1000000",
            ),
            ("priority=1.5", "invalid type: floating point"),
            ("trigger='sometimes'", "unknown trigger rule \"sometimes\""),
            ("trigger=1", "invalid type: integer"),
            ("bogus=1", "unknown field `bogus`"),
        ];
        for (line, want) in cases {
            let e = parse(&format!("{head}{line}\n"), &p("f.toml"))
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("f.toml:7:"), "{line}: {e}");
            assert!(e.contains("task \"bad\"") && e.contains(want), "{line}: {e}");
        }
        let json = r#"{"task": [{"name": "a", "role": "w"},
            {"name": "b", "role": "w", "retries": 500}]}"#;
        let e = parse(json, &p("f.json")).unwrap_err().to_string();
        assert!(
            e.starts_with("f.json:2:") && e.contains("task \"b\": retries = 500"),
            "{e}"
        );
        let e = parse(r#"{"task": [{"role": "w", "trigger": "x"}]}"#, &p("f.json"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("task #1: unknown trigger rule"), "{e}");
    }

    #[test]
    fn errors_say_where() {
        let cases = [
            ("[[task]]\nname='a'\nrole=3\n", "f.toml", "f.toml:3:"),
            ("[[task]]\nname='a'\nrole=\n", "f.toml", "f.toml:3:"),
            ("{\"task\": [ {\"name\": 1} ]}", "f.json", "f.json:1:"),
            ("{\"task\": [ {\"name\": ", "f.json", "f.json:1:"),
            ("[[task]]\nname='a'\nrole='w'\nbogus=1\n", "f.toml", "unknown field"),
            ("[[task]]\nname='a'\nrole='w'\ndepends_on=['zz']\n", "f.toml", "unknown task \"zz\""),
            ("[[task]]\nname='a'\nrole='w'\n[[task]]\nname='a'\nrole='w'\n", "f.toml", "two tasks have this name"),
            ("[[task]]\nname='a'\nrole='w'\ninput='x'\ninput_json=1\n", "f.toml", "at most one"),
            ("task = []\n", "f.toml", "no tasks"),
            ("tsk = []\n", "f.toml", "unknown field `tsk`"),
            (
                "[[task]]\nname='a'\nrole='w'\ndepends_on=['b']\n[[task]]\nname='b'\nrole='w'\ndepends_on=['a']\n",
                "f.toml",
                "cycle",
            ),
        ];
        for (text, file, want) in cases {
            let e = parse(text, &p(file)).unwrap_err().to_string();
            assert!(e.contains(want), "{e:?} should contain {want:?}");
        }
    }

    #[test]
    fn missing_file_is_a_read_error() {
        let e = load(Path::new("/nonexistent/tasks.toml")).unwrap_err();
        assert!(matches!(e, TaskFileError::Read { .. }));
    }

    #[test]
    fn input_files_must_be_regular_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let text = |f: &str| format!("[[task]]\nname='a'\nrole='w'\ninput_file='{f}'\n");
        for (f, want) in [("/dev/zero", "not a regular file"), (".", "not a regular file")] {
            let err = parse(&text(f), &dir.path().join("t.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{f}: {err}");
        }
        let big = dir.path().join("big");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(MAX_INPUT_FILE + 1)
            .unwrap();
        let err = parse(&text("big"), &dir.path().join("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("is over"), "{err}");
        std::fs::write(dir.path().join("ok"), b"hello").unwrap();
        let tasks = parse(&text("ok"), &dir.path().join("t.toml")).unwrap();
        assert_eq!(tasks[0].input.as_bytes(), b"hello");
    }
}
