//! Validation of a submitted batch: the batch is accepted whole or refused
//! whole, and the refusal says exactly what is wrong.

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use serde::{Deserialize, Serialize};

use crate::task::{quoted, Task, TaskId, MAX_PRIORITY, MAX_RETRIES, MAX_TIMEOUT_MS};

/// Why a batch of tasks was refused. Nothing of a refused batch is kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum SubmitError {
    /// Two tasks share an id, or a task reuses the id of a known task.
    #[error("duplicate task id {id} (task {})", quoted(.name))]
    DuplicateId {
        /// The repeated id.
        id: TaskId,
        /// The name of the task that repeats it.
        name: String,
    },
    /// A task depends on an id that is neither in the batch nor known.
    #[error("task {} depends on unknown task id {dependency}", quoted(.task))]
    UnknownDependency {
        /// The dependent task's name.
        task: String,
        /// The unknown id.
        dependency: TaskId,
    },
    /// The dependencies form a cycle; the tasks in it, in order.
    #[error("dependency cycle: {}", .tasks.join(" -> "))]
    Cycle {
        /// Names along the cycle, the first repeated at the end.
        tasks: Vec<String>,
    },
    /// A task's input is larger than the admin accepts.
    #[error("task {} input is {size} bytes, over the limit of {max}", quoted(.task))]
    Oversize {
        /// The task's name.
        task: String,
        /// Its input size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The batch holds more tasks than one submission may.
    #[error("batch of {count} tasks is over the limit of {max}")]
    TooMany {
        /// Tasks in the batch.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The admin holds as many unfinished tasks as it may.
    #[error("admin is full: {held} unfinished tasks held, limit {max}")]
    Full {
        /// Unfinished tasks held.
        held: usize,
        /// The limit.
        max: usize,
    },
    /// A task depends on a task that finished and was evicted after its
    /// retention, so its output is gone.
    #[error(
        "task {} depends on task {dependency}, which finished and was evicted from the admin's memory", quoted(.task)
    )]
    EvictedDependency {
        /// The dependent task's name.
        task: String,
        /// The evicted id.
        dependency: TaskId,
    },
    /// A task is malformed in some other way (a number out of range, an
    /// empty role, a dependency listed twice).
    #[error("task {} is invalid: {reason}", quoted(.task))]
    Invalid {
        /// The task's name.
        task: String,
        /// What is wrong.
        reason: String,
    },
}

/// Limits applied to every batch.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest task input in bytes.
    pub max_payload: usize,
    /// Most tasks in one batch.
    pub max_batch: usize,
}

/// Checks a batch against itself and against the tasks already known
/// (`known`), and returns the batch's indices in dependency order (every task
/// after the batch tasks it depends on).
pub fn validate(
    batch: &[Task],
    known: impl Fn(&TaskId) -> bool,
    limits: Limits,
) -> Result<Vec<usize>, SubmitError> {
    plan(batch, known, limits).map(|p| p.order)
}

/// Marks, in [`Plan`], a dependency on a task known before the batch.
pub(super) const KNOWN: usize = usize::MAX;

/// A batch that passed [`validate`], with its dependencies resolved.
pub(super) struct Plan {
    /// Batch indices in dependency order.
    pub(super) order: Vec<usize>,
    /// Every task's dependencies, task after task, in the task's order: the
    /// batch index of the dependency, or [`KNOWN`].
    deps: Vec<usize>,
    /// Task `i`'s dependencies are `deps[starts[i]..starts[i + 1]]`.
    starts: Vec<usize>,
}

impl Plan {
    /// Where the dependencies of batch task `i` are (see `deps`).
    pub(super) fn deps_of(&self, i: usize) -> &[usize] {
        &self.deps[self.starts[i]..self.starts[i + 1]]
    }
}

/// [`validate`], keeping what it learnt about the dependencies.
pub(super) fn plan(
    batch: &[Task],
    known: impl Fn(&TaskId) -> bool,
    limits: Limits,
) -> Result<Plan, SubmitError> {
    if batch.len() > limits.max_batch {
        return Err(SubmitError::TooMany {
            count: batch.len(),
            max: limits.max_batch,
        });
    }
    let mut index: HashMap<TaskId, usize> = HashMap::with_capacity(batch.len());
    for (i, t) in batch.iter().enumerate() {
        if let Err(reason) = check_names(t) {
            return Err(SubmitError::Invalid {
                task: clip(&t.name),
                reason,
            });
        }
        if let Err(reason) = check_numbers(t) {
            return Err(SubmitError::Invalid {
                task: t.name.clone(),
                reason,
            });
        }
        if t.input.len() > limits.max_payload {
            return Err(SubmitError::Oversize {
                task: t.name.clone(),
                size: t.input.len(),
                max: limits.max_payload,
            });
        }
        if known(&t.id) || index.insert(t.id, i).is_some() {
            return Err(SubmitError::DuplicateId {
                id: t.id,
                name: t.name.clone(),
            });
        }
    }
    let mut deps = Vec::new();
    let mut starts = Vec::with_capacity(batch.len() + 1);
    starts.push(0);
    for t in batch {
        // Short lists are searched; long ones get a set, so that a task with
        // many dependencies cannot make this quadratic.
        let mut seen = (t.dependencies.len() > 16).then(|| HashSet::with_capacity(t.dependencies.len()));
        for (j, d) in t.dependencies.iter().enumerate() {
            let repeated = match &mut seen {
                Some(seen) => !seen.insert(d),
                None => t.dependencies[..j].contains(d),
            };
            if repeated {
                // Named when it is in this batch (as a task file names it).
                let which = match index.get(d) {
                    Some(&k) => format!("{} ({d})", quoted(&batch[k].name)),
                    None => d.to_string(),
                };
                return Err(SubmitError::Invalid {
                    task: t.name.clone(),
                    reason: format!("dependency {which} listed twice"),
                });
            }
            match index.get(d) {
                Some(&k) => deps.push(k),
                None if known(d) => deps.push(KNOWN),
                None => {
                    return Err(SubmitError::UnknownDependency {
                        task: t.name.clone(),
                        dependency: *d,
                    })
                }
            }
        }
        starts.push(deps.len());
    }
    let mut plan = Plan {
        order: Vec::new(),
        deps,
        starts,
    };
    plan.order = topo_order(batch, &plan, &index)?;
    Ok(plan)
}

/// Checks every numeric field of a task against its documented range.
fn check_numbers(t: &Task) -> Result<(), String> {
    let timeouts = [
        ("timeout_ms", t.timeout_ms),
        ("queue_timeout_ms", t.queue_timeout_ms),
        ("deadline_ms", t.deadline_ms),
    ];
    for (field, v) in timeouts {
        if let Some(v) = v.filter(|&v| v > MAX_TIMEOUT_MS) {
            return Err(format!(
                "{field} = {v} is over the limit of {MAX_TIMEOUT_MS} (30 days); use 0 for no limit"
            ));
        }
    }
    if let Some(r) = t.retries.filter(|&r| r > MAX_RETRIES) {
        return Err(format!("retries = {r} is over the limit of {MAX_RETRIES}"));
    }
    if let Some(a) = t.max_attempts.filter(|&a| a == 0 || a > MAX_RETRIES) {
        return Err(format!("max_attempts = {a} is out of range 1..={MAX_RETRIES}"));
    }
    if t.priority.unsigned_abs() > MAX_PRIORITY as u32 {
        return Err(format!(
            "priority = {} is out of range -{MAX_PRIORITY}..={MAX_PRIORITY}",
            t.priority
        ));
    }
    Ok(())
}

/// Kahn's algorithm over the edges inside the batch (known tasks cannot
/// depend on new ones, so no cycle passes through them).
fn topo_order(
    batch: &[Task],
    plan: &Plan,
    index: &HashMap<TaskId, usize>,
) -> Result<Vec<usize>, SubmitError> {
    let n = batch.len();
    let inside = |i| plan.deps_of(i).iter().copied().filter(|&j| j != KNOWN);
    // Each task's dependents in one flat list, in batch order: those of task
    // `j` are `dependents[first[j]..first[j + 1]]`.
    let mut indegree: Vec<u32> = (0..n).map(|i| inside(i).count() as u32).collect();
    let mut first = vec![0usize; n + 1];
    for j in (0..n).flat_map(inside) {
        first[j + 1] += 1;
    }
    for j in 0..n {
        first[j + 1] += first[j];
    }
    let mut dependents = vec![0usize; first[n]];
    let mut fill = first.clone();
    for i in 0..n {
        for j in inside(i) {
            dependents[fill[j]] = i;
            fill[j] += 1;
        }
    }
    let mut order: Vec<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
    let mut head = 0;
    while head < order.len() {
        let j = order[head];
        head += 1;
        for &i in &dependents[first[j]..first[j + 1]] {
            indegree[i] -= 1;
            if indegree[i] == 0 {
                order.push(i);
            }
        }
    }
    if order.len() == n {
        return Ok(order);
    }
    Err(SubmitError::Cycle {
        tasks: find_cycle(batch, index, &indegree),
    })
}

/// Walks back along unresolved dependencies from a task left in a cycle
/// until a task repeats; the walk from that task on is the cycle.
fn find_cycle(batch: &[Task], index: &HashMap<TaskId, usize>, indegree: &[u32]) -> Vec<String> {
    let Some(start) = indegree.iter().position(|&d| d > 0) else {
        return Vec::new();
    };
    let mut path = vec![start];
    let mut pos: HashMap<usize, usize> = [(start, 0)].into_iter().collect();
    let mut cur = start;
    loop {
        // Every task left with indegree > 0 has a dependency also left over.
        let next = batch[cur]
            .dependencies
            .iter()
            .filter_map(|d| index.get(d).copied())
            .find(|&j| indegree[j] > 0);
        let Some(next) = next else {
            return path.iter().map(|&i| batch[i].name.clone()).collect();
        };
        if let Some(&p) = pos.get(&next) {
            // path[p..] is the cycle walked against the dependency direction;
            // reverse it so it reads "a -> b" as "a runs before b".
            let mut names: Vec<String> = path[p..].iter().rev().map(|&i| batch[i].name.clone()).collect();
            names.push(names[0].clone());
            return names;
        }
        pos.insert(next, path.len());
        path.push(next);
        cur = next;
    }
}

/// A task's name and role pass [`check_name`](crate::task::check_name).
fn check_names(t: &Task) -> Result<(), String> {
    for (what, value) in [("name", &t.name), ("role", &t.role)] {
        crate::task::check_name(value).map_err(|e| format!("{what} {e}"))?;
    }
    Ok(())
}

/// A name as an error shows it: at most 64 characters, then an ellipsis.
fn clip(name: &str) -> String {
    match name.char_indices().nth(64) {
        Some((cut, _)) => format!("{}…", &name[..cut]),
        None => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::Payload;

    const LIMITS: Limits = Limits {
        max_payload: 16,
        max_batch: 10,
    };

    fn none(_: &TaskId) -> bool {
        false
    }

    #[test]
    fn orders_any_listing_of_a_dag() {
        let a = Task::new("a", "w", 1);
        let b = Task::new("b", "w", 1).after(&a);
        let c = Task::new("c", "w", 1).after(&a).after(&b);
        let batch = vec![c.clone(), b.clone(), a.clone()];
        let order = validate(&batch, none, LIMITS).unwrap();
        let names: Vec<_> = order.iter().map(|&i| batch[i].name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
    }

    #[test]
    fn refuses_cycles_naming_the_tasks() {
        let mut a = Task::new("a", "w", 1);
        let b = Task::new("b", "w", 1).after(&a);
        let c = Task::new("c", "w", 1).after(&b);
        a = a.after(&c);
        let free = Task::new("free", "w", 1);
        let err = validate(&[free, a, b, c], none, LIMITS).unwrap_err();
        let SubmitError::Cycle { tasks } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(tasks.len(), 4);
        assert_eq!(tasks.first(), tasks.last());
        for n in ["a", "b", "c"] {
            assert!(tasks.iter().any(|t| t == n), "{tasks:?}");
        }
        assert!(err.to_string().contains(" -> "));
    }

    #[test]
    fn refuses_self_dependency_as_cycle() {
        let mut a = Task::new("a", "w", 1);
        a.dependencies.push(a.id);
        assert_eq!(
            validate(&[a], none, LIMITS).unwrap_err(),
            SubmitError::Cycle {
                tasks: vec!["a".into(), "a".into()]
            }
        );
    }

    #[test]
    fn refusals_table() {
        let a = Task::new("a", "w", 1);
        let ghost = TaskId::random();
        let cases: Vec<(Vec<Task>, &str)> = vec![
            (vec![a.clone(), a.clone()], "duplicate"),
            (vec![Task::new("b", "w", 1).depends_on(ghost)], "unknown"),
            (
                vec![Task::new("big", "w", 1).with_payload(Payload(vec![0; 17]))],
                "over the limit",
            ),
            (vec![Task::new("r", "", 1)], "role is empty"),
            (vec![Task::new("", "w", 1)], "name is empty"),
            (
                vec![Task::new("n".repeat(1025), "w", 1)],
                "name is 1025 bytes, over the limit of 1024",
            ),
            (vec![Task::new("n", "w".repeat(1025), 1)], "role is 1025 bytes"),
            (
                vec![Task::new("a\nb", "w", 1)],
                r#"task "a\nb" is invalid: name holds the control character U+000A"#,
            ),
            (
                vec![Task::new("a", "w\t", 1)],
                "role holds the control character U+0009",
            ),
            (
                (0..11).map(|i| Task::new(format!("t{i}"), "w", 1)).collect(),
                "batch of 11",
            ),
        ];
        for (batch, want) in cases {
            let err = validate(&batch, none, LIMITS).unwrap_err().to_string();
            assert!(err.contains(want), "{err} should contain {want}");
        }
    }

    #[test]
    fn a_dependency_listed_twice_is_named_when_in_the_batch() {
        let a = Task::new("a", "w", 1);
        let mut b = Task::new("b", "w", 1);
        b.dependencies = vec![a.id, a.id];
        let err = validate(&[a, b], none, LIMITS).unwrap_err().to_string();
        assert!(err.contains(r#"dependency "a" ("#), "{err}");
    }

    #[test]
    fn repeated_dependencies_are_found_in_short_and_long_lists() {
        let old: Vec<TaskId> = (0..40).map(|_| TaskId::random()).collect();
        let known = |id: &TaskId| old.contains(id);
        for len in [3, 16, 17, 40] {
            let mut t = Task::new("t", "w", 1);
            t.dependencies = old[..len].to_vec();
            assert!(validate(&[t.clone()], known, LIMITS).is_ok(), "{len}");
            t.dependencies.push(old[len / 2]);
            let err = validate(&[t], known, LIMITS).unwrap_err().to_string();
            assert!(err.contains("listed twice"), "{len}: {err}");
        }
    }

    #[test]
    fn known_tasks_count_as_dependencies_and_as_duplicates() {
        let old = TaskId::random();
        let known = |id: &TaskId| *id == old;
        assert!(validate(&[Task::new("n", "w", 1).depends_on(old)], known, LIMITS).is_ok());
        let mut dup = Task::new("d", "w", 1);
        dup.id = old;
        assert!(matches!(
            validate(&[dup], known, LIMITS),
            Err(SubmitError::DuplicateId { .. })
        ));
    }
}
