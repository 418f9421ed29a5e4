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
//! ```
//!
//! JSON files have the same shape: `{"task": [{"name": "prep", ...}]}`.
//! Inputs are bytes: `input` is the text's UTF-8, `input_file` the file's
//! bytes (relative to the task file), `input_json` the value as JSON text.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::scheduler::dag::{self, Limits};
use crate::task::{Payload, Task};

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
    /// A task is wrong in a way the parser cannot see.
    #[error("{path}: task {task:?}: {message}")]
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskShape {
    name: String,
    role: String,
    #[serde(default)]
    difficulty: u32,
    input: Option<String>,
    input_file: Option<PathBuf>,
    input_json: Option<serde_json::Value>,
    #[serde(default)]
    depends_on: Vec<String>,
    timeout_ms: Option<u64>,
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
    let json = path.extension().is_some_and(|e| e == "json") || text.trim_start().starts_with('{');
    let shape: FileShape = if json {
        from_json(text, path)?
    } else {
        from_toml(text, path)?
    };
    build(shape, path)
}

fn from_json(text: &str, path: &Path) -> Result<FileShape, TaskFileError> {
    serde_json::from_str(text).map_err(|e| TaskFileError::Syntax {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: e
            .to_string()
            .split(" at line")
            .next()
            .unwrap_or_default()
            .to_string(),
    })
}

fn from_toml(text: &str, path: &Path) -> Result<FileShape, TaskFileError> {
    toml::from_str(text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        let (line, column) = line_col(text, offset);
        TaskFileError::Syntax {
            path: path.to_path_buf(),
            line,
            column,
            message: e.message().to_string(),
        }
    })
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
        let mut task = Task::new(&t.name, &t.role, t.difficulty).with_payload(input);
        task.timeout_ms = t.timeout_ms;
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
                message: format!("depends on unknown task {dep:?}"),
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

fn input_of(t: &TaskShape, base: &Path) -> Result<Payload, String> {
    match (&t.input, &t.input_file, &t.input_json) {
        (None, None, None) => Ok(Payload::default()),
        (Some(s), None, None) => Ok(Payload::from_bytes(s.as_bytes())),
        (None, Some(f), None) => {
            let p = base.join(f);
            std::fs::read(&p)
                .map(Payload::from_bytes)
                .map_err(|e| format!("cannot read input_file {}: {e}", p.display()))
        }
        (None, None, Some(v)) => Ok(Payload::from_bytes(v.to_string().into_bytes())),
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
    fn errors_say_where() {
        let cases = [
            ("[[task]]\nname='a'\nrole=3\n", "f.toml", "f.toml:3:"),
            ("{\"task\": [ {\"name\": 1} ]}", "f.json", "f.json:1:"),
            ("[[task]]\nname='a'\nrole='w'\nbogus=1\n", "f.toml", "unknown field"),
            ("[[task]]\nname='a'\nrole='w'\ndepends_on=['zz']\n", "f.toml", "unknown task \"zz\""),
            ("[[task]]\nname='a'\nrole='w'\n[[task]]\nname='a'\nrole='w'\n", "f.toml", "two tasks have this name"),
            ("[[task]]\nname='a'\nrole='w'\ninput='x'\ninput_json=1\n", "f.toml", "at most one"),
            ("task = []\n", "f.toml", "no tasks"),
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
}
