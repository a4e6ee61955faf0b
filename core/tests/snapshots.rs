//! Readers during writers: every snapshot is consistent.

use quota_core::{ManualClock, Period, QuotaTracker, ServiceConfig, TrackerConfig};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;

#[test]
fn snapshots_taken_during_writes_are_never_partial() {
    let config = TrackerConfig::new(
        ["lead", "follow", "x", "y"].map(|name| ServiceConfig::new(name, u64::MAX, Period::Day)),
    );
    let tracker =
        QuotaTracker::new_with_clock(config, ManualClock::new(1_718_000_000_000)).unwrap();
    let issued: [AtomicU64; 2] = Default::default(); // x, y
    let done = AtomicBool::new(false);
    let writers_left = AtomicU64::new(3);
    const STEPS: u64 = 20_000;

    thread::scope(|scope| {
        // One writer keeps lead = follow or lead = follow + 1: a snapshot that read the
        // services at different moments would show follow > lead, or lead > follow + 1.
        scope.spawn(|| {
            for _ in 0..STEPS {
                tracker.record_call("lead", 1).unwrap();
                tracker.record_call("follow", 1).unwrap();
            }
            writers_left.fetch_sub(1, Ordering::SeqCst);
        });
        for (index, name) in ["x", "y"].into_iter().enumerate() {
            let (tracker, issued, writers_left) = (&tracker, &issued, &writers_left);
            scope.spawn(move || {
                for call in 0..STEPS {
                    let count = call % 3 + 1;
                    issued[index].fetch_add(count, Ordering::SeqCst);
                    tracker.record_call(name, count).unwrap();
                }
                writers_left.fetch_sub(1, Ordering::SeqCst);
            });
        }
        for _ in 0..2 {
            let (tracker, issued, done) = (&tracker, &issued, &done);
            scope.spawn(move || {
                let mut last = [0u64; 4];
                let mut snapshots = 0u64;
                while !done.load(Ordering::SeqCst) || snapshots < 10 {
                    let snapshot = tracker.snapshot();
                    let issued_after = issued.each_ref().map(|i| i.load(Ordering::SeqCst));
                    let used: Vec<u64> = snapshot.services().iter().map(|u| u.used).collect();
                    assert_eq!(snapshot.total_used(), used.iter().sum::<u64>());
                    let (lead, follow) = (used[0], used[1]);
                    assert!(lead == follow || lead == follow + 1, "{lead} vs {follow}");
                    assert!(used[2] <= issued_after[0] && used[3] <= issued_after[1]);
                    for (before, now) in last.iter().zip(&used) {
                        assert!(now >= before, "went backwards: {last:?} -> {used:?}");
                    }
                    last.copy_from_slice(&used);
                    snapshots += 1;
                }
            });
        }
        // Readers stop once every writer has finished.
        scope.spawn(|| {
            while writers_left.load(Ordering::SeqCst) > 0 {
                thread::yield_now();
            }
            done.store(true, Ordering::SeqCst);
        });
    });
    let snapshot = tracker.snapshot();
    assert_eq!(snapshot.service("lead").unwrap().used, STEPS);
    assert_eq!(snapshot.service("follow").unwrap().used, STEPS);
    let expected: u64 = (0..STEPS).map(|call| call % 3 + 1).sum();
    assert_eq!(snapshot.service("x").unwrap().used, expected);
    assert_eq!(snapshot.service("y").unwrap().used, expected);
}
