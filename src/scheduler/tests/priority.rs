//! Priorities: among ready tasks of a role, higher goes first, and waiting
//! `priority_ageing` gains one level, so no task starves.

use super::*;

/// The tasks assigned so far, by name, in order.
fn order(h: &Harness) -> Vec<String> {
    h.assign_log.iter().map(|(_, a)| a.name.clone()).collect()
}

#[test]
fn higher_priority_goes_first_then_arrival_order() {
    let mut h = Harness::new();
    h.register("n1", &[("w", "worker", 5, 1)]);
    let [busy] = h.submit(vec![task(1, 1)])[..] else {
        unreachable!()
    };
    h.bid_all();
    h.accept(busy);
    // All ready at once while the only slot is taken.
    h.submit(vec![
        named(2, "p0", "worker", 1).with_priority(0),
        named(3, "p5-first", "worker", 1).with_priority(5),
        named(4, "minus2", "worker", 1).with_priority(-2),
        named(5, "p5-second", "worker", 1).with_priority(5),
        named(6, "p10", "worker", 1).with_priority(10),
    ]);
    h.report_ok(busy, b"");
    h.run_ready();
    assert_eq!(order(&h)[1..], ["p10", "p5-first", "p5-second", "p0", "minus2"]);
}

/// One single-slot worker and a steady stream of priority-10 tasks, one
/// every `RUN` ms, each running `RUN` ms: the worker is never idle and a
/// priority-10 task is always waiting. A priority-0 task submitted at `T0`
/// still runs, once the priority-10 tasks that became ready within ten
/// ageing steps of it are done: its rank is `T0`, a priority-10 task's
/// rank is its ready time minus ten steps. So it waits about
/// `10 * AGEING`, and at most one more run.
#[test]
fn ageing_lets_a_low_priority_task_through_a_stream_of_high_priority_ones() {
    const AGEING: u64 = 100;
    const RUN: u64 = 10;
    const T0: u64 = 55;
    let mut h = Harness::with(SchedulerConfig {
        priority_ageing: ms(AGEING),
        ..cfg()
    });
    h.register("n1", &[("w", "worker", 5, 1)]);
    let low = named(1_000_000, "low", "worker", 1).with_priority(0);
    let mut running: Option<(TaskId, u64)> = None;
    let mut awarded_low = None;
    let mut n = 0;
    for now in 0..4 * 10 * AGEING {
        h.advance_to(now);
        if now % RUN == 0 {
            n += 1;
            h.submit(vec![task(n, 1).with_priority(10)]);
        }
        if now == T0 {
            h.submit(vec![low.clone()]);
        }
        if let Some((id, end)) = running {
            if end == now {
                h.report_ok(id, b"");
                running = None;
            }
        }
        let before = h.assign_log.len();
        h.bid_all();
        if let Some((_, a)) = h.assign_log[before..].first().cloned() {
            h.accept(a.task);
            running = Some((a.task, now + RUN));
            if a.task == low.id {
                awarded_low = Some(now);
                break;
            }
        }
    }
    let waited = awarded_low.expect("the low-priority task ran") - T0;
    assert!(
        (10 * AGEING - RUN..=10 * AGEING + RUN).contains(&waited),
        "waited {waited} ms"
    );
    // Meanwhile the stream kept the worker busy with priority-10 work.
    let before_low = order(&h).iter().take_while(|n| *n != "low").count();
    assert!(before_low as u64 >= 10 * AGEING / RUN, "{before_low}");
}
