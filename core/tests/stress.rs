//! A million calls from several threads over every service: exact totals, and each entry
//! into Critical reported exactly once, the same way to callers and to observers.

use quota_core::{
    Level, ManualClock, Period, QuotaTracker, ServiceConfig, TrackerConfig, Transition,
};
use std::collections::HashMap;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;

const THREADS: usize = 8;
const CALLS_PER_THREAD: u64 = 125_000;
/// (name, limit): every service passes Critical; two are exhausted.
const SERVICES: [(&str, u64); 4] = [
    ("market", 200_000),
    ("mail", 250_000),
    ("llm", 300_000),
    ("search", 310_000),
];

#[test]
fn a_million_calls_are_all_counted_and_critical_is_entered_once() {
    let config = TrackerConfig::new(
        SERVICES
            .iter()
            .map(|&(name, limit)| ServiceConfig::new(name, limit, Period::Month)),
    );
    let tracker =
        QuotaTracker::new_with_clock(config, ManualClock::new(1_718_000_000_000)).unwrap();
    let observed = Arc::new(Mutex::new(Vec::<Transition>::new()));
    let sink = Arc::clone(&observed);
    tracker.on_transition(move |t| sink.lock().unwrap().push(t.clone()));

    let barrier = Barrier::new(THREADS);
    let reported: Vec<Transition> = thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|worker| {
                let (tracker, barrier) = (&tracker, &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    let mut reported = Vec::new();
                    for call in 0..CALLS_PER_THREAD {
                        // Every thread touches every service, interleaved.
                        let (name, _) = SERVICES[(worker + call as usize) % SERVICES.len()];
                        let recorded = tracker.record_call(name, 1).unwrap();
                        reported.extend(recorded.transitions().cloned());
                    }
                    reported
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });

    let snapshot = tracker.snapshot();
    assert_eq!(snapshot.total_used(), THREADS as u64 * CALLS_PER_THREAD);
    for usage in snapshot.services() {
        assert_eq!(usage.used, 250_000, "{}", usage.name);
    }

    let observed = observed.lock().unwrap().clone();
    let count = |list: &[Transition], name: &str, to: Level| {
        list.iter()
            .filter(|t| &*t.service == name && t.to == to)
            .count()
    };
    for (name, limit) in SERVICES {
        assert_eq!(count(&observed, name, Level::Critical), 1, "{name}");
        assert_eq!(count(&reported, name, Level::Critical), 1, "{name}");
        let exhausted = usize::from(limit <= 250_000);
        assert_eq!(
            count(&observed, name, Level::Exhausted),
            exhausted,
            "{name}"
        );
        // Per service, observers saw the levels climb in order.
        let climb: Vec<Level> = observed
            .iter()
            .filter(|t| &*t.service == name)
            .map(|t| t.to)
            .collect();
        assert!(climb.windows(2).all(|w| w[0] < w[1]), "{name}: {climb:?}");
    }
    // What callers were told is exactly what observers received.
    let tally = |list: &[Transition]| {
        let mut map: HashMap<(String, Level, Level, u64), usize> = HashMap::new();
        for t in list {
            *map.entry((t.service.to_string(), t.from, t.to, t.used))
                .or_default() += 1;
        }
        map
    };
    assert_eq!(tally(&reported), tally(&observed));
}
