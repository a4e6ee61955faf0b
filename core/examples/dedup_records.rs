//! What exactly-once records cost with many instances in one window (serverless functions start
//! a new instance per cold start): a `FileStore` sync on a document holding N records, and the
//! Redis memory N instances' records take. BENCHMARKS.md, "Exactly-once records at scale".
//!
//! `cargo run -p quota-core --release --features redis --example dedup_records -- N [REDIS_URL]`
//! (N defaults to 100,000; without a URL only the file store is measured).

use quota_core::{Delta, FileStore, InstanceId, Period, Store, StoredState, SyncBatch, WindowKey};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let instances: u128 = args.next().map_or(Ok(100_000), |n| n.parse())?;
    let redis = args.next();
    let now = 1_718_000_000_000;
    let day = Period::Day.window_at(now);
    let window = WindowKey {
        service: "api".into(),
        spec: Period::Day.into(),
        start_ms: day.start_ms,
        end_ms: day.reset_at_ms,
    };
    // One sync of one call from each instance (seq 1, every earlier operation answered).
    let batch = |instance: u128, seq: u64| SyncBatch {
        instance: InstanceId::from_u128(instance),
        seq,
        done_below: seq,
        at_ms: now,
        deltas: vec![Delta {
            window: window.clone(),
            calls: 1,
        }],
        read: vec![window.clone()],
        raises: Vec::new(),
    };

    // The document, built in memory, then written as the file store writes it.
    let mut state = StoredState::new();
    for instance in 1..=instances {
        state.apply(&batch(instance, 1));
    }
    let dir = std::env::temp_dir().join(format!("quota-dedup-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("quota.json");
    std::fs::write(&path, state.to_json())?;
    let bytes = std::fs::metadata(&path)?.len();
    let store = FileStore::new(&path);
    let runs = 5;
    let mut times = Vec::new();
    for run in 0..runs {
        let started = Instant::now();
        let totals = store.sync(&batch(instances + 1 + run as u128, 1))?;
        times.push(started.elapsed());
        assert_eq!(totals[0], instances as u64 + 1 + run as u64);
    }
    times.sort();
    println!(
        "file store: {instances} records, {:.1} MB document ({:.0} B per record); one sync \
         (lock, read, parse, apply, write, fsync, rename): min {:.0} ms, median {:.0} ms of {runs}",
        bytes as f64 / 1e6,
        bytes as f64 / instances as f64,
        times[0].as_secs_f64() * 1e3,
        times[runs / 2].as_secs_f64() * 1e3,
    );
    std::fs::remove_dir_all(&dir)?;

    #[cfg(feature = "redis")]
    if let Some(url) = redis {
        let store =
            quota_core::RedisStore::new(&url)?.prefix(format!("dedup{}", std::process::id()));
        let client = redis::Client::open(url.as_str())?;
        let mut connection = client.get_connection()?;
        let used = |connection: &mut redis::Connection| -> Result<u64, redis::RedisError> {
            let info: String = redis::cmd("INFO").arg("memory").query(connection)?;
            Ok(info
                .lines()
                .find_map(|line| line.strip_prefix("used_memory:"))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0))
        };
        store.sync(&batch(0, 1))?; // scripts loaded, window key made
        let before = used(&mut connection)?;
        let started = Instant::now();
        for instance in 1..=instances {
            store.sync(&batch(instance, 1))?;
        }
        let elapsed = started.elapsed();
        let after = used(&mut connection)?;
        let key = format!(
            "dedup{}:{{api}}:ops:{}",
            std::process::id(),
            InstanceId::from_u128(1)
        );
        let one: Option<u64> = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(&key)
            .query(&mut connection)?;
        println!(
            "redis: {instances} records, used_memory +{:.1} MB ({:.0} B per instance; MEMORY \
             USAGE of one record key {} B); {instances} syncs in {:.1} s ({:.0} per s)",
            after.saturating_sub(before) as f64 / 1e6,
            after.saturating_sub(before) as f64 / instances as f64,
            one.unwrap_or(0),
            elapsed.as_secs_f64(),
            instances as f64 / elapsed.as_secs_f64(),
        );
    }
    #[cfg(not(feature = "redis"))]
    if redis.is_some() {
        eprintln!("build with --features redis to measure Redis");
    }
    Ok(())
}
