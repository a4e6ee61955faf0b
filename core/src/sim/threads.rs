//! The native driver: one OS thread per worker, all calling one shared store.

use super::{Counter, Mode, ServiceCounts, Workload, WorkloadError};
use crate::clock::{Clock, SystemClock};
use crate::config::TrackerConfig;
use crate::error::QuotaError;
use crate::usage::{Recorded, Transition};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What [`run`] measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// How the calls were counted.
    pub mode: Mode,
    /// Threads that issued the calls.
    pub workers: usize,
    /// Per service, in config order.
    pub services: Vec<ServiceReport>,
    /// Wall time from the first call to the last.
    pub elapsed: Duration,
}

/// One service's line of a [`Report`].
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceReport {
    /// Units issued, recorded (read from the store) and lost.
    pub counts: ServiceCounts,
    /// Calls made to the service (each of one or more units).
    pub calls: u64,
    /// Level changes the store reported for the service.
    pub transitions: u64,
}

impl Report {
    /// Calls per second to `service`'s line over the whole run.
    pub fn calls_per_second(&self, service: &ServiceReport) -> f64 {
        service.calls as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    /// All services' calls per second.
    pub fn total_calls_per_second(&self) -> f64 {
        let calls: u64 = self.services.iter().map(|service| service.calls).sum();
        calls as f64 / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

/// Why [`run`] could not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// The workload is invalid or does not fit the config.
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    /// The config is invalid, or a call was refused.
    #[error(transparent)]
    Quota(#[from] QuotaError),
}

/// Runs `calls` calls of `workload`, split over `workload.workers` OS threads (scoped), against
/// one store for `config` on the system clock, as fast as the threads go (the workload's rate is
/// for paced drivers). Locked mode calls [`QuotaTracker::record_call`](crate::QuotaTracker::record_call): every unit is recorded.
/// Racy mode uses [`RacyCounts`](super::RacyCounts) with a thread yield between copy and write-back: threads that
/// interleave there lose each other's units.
///
/// ```
/// use quota_core::sim::{threads, Mode, Workload};
/// use quota_core::TrackerConfig;
///
/// let config = TrackerConfig::defaults();
/// let mut workload = Workload::even(&config);
/// workload.workers = 4;
/// let report = threads::run(&config, &workload, Mode::Locked, 10_000)?;
/// assert!(report.services.iter().all(|s| s.counts.lost() == 0));
/// assert_eq!(report.services.iter().map(|s| s.calls).sum::<u64>(), 10_000);
/// # Ok::<(), threads::SimError>(())
/// ```
pub fn run(
    config: &TrackerConfig,
    workload: &Workload,
    mode: Mode,
    calls: u64,
) -> Result<Report, SimError> {
    workload.validate()?;
    let streams = (0..workload.workers)
        .map(|worker| workload.stream(config, worker))
        .collect::<Result<Vec<_>, _>>()?;
    let names: Vec<&str> = config.services.iter().map(|s| s.name.as_str()).collect();
    let counter = Counter::new(config.clone(), mode, SystemClock.now_ms())?;
    let transitions = count_transitions(&counter, &names);
    let workers = workload.workers as u64;
    let started = Instant::now();
    let tallies = std::thread::scope(|scope| {
        let handles: Vec<_> = streams
            .into_iter()
            .enumerate()
            .map(|(worker, stream)| {
                let share = calls / workers + u64::from((worker as u64) < calls % workers);
                let (counter, names) = (&counter, &names);
                scope.spawn(move || {
                    let mut tally = Tally::new(names.len());
                    for op in stream.take(share as usize) {
                        let now = match counter {
                            Counter::Locked(_) => 0, // the tracker reads its own clock
                            Counter::Racy(_) => SystemClock.now_ms(),
                        };
                        let recorded = counter.record(
                            names[op.service],
                            op.count,
                            now,
                            std::thread::yield_now,
                        )?;
                        tally.add(op.service, op.count, &recorded);
                    }
                    Ok::<Tally, QuotaError>(tally)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p))
            })
            .collect::<Result<Vec<_>, _>>()
    })?;
    let elapsed = started.elapsed();
    let total = tallies
        .into_iter()
        .fold(Tally::new(names.len()), |sum, tally| sum.merge(tally));
    let snapshot = counter.snapshot(SystemClock.now_ms());
    let transitions = match &transitions {
        // Counted by an observer, resets from reads included.
        Some(seen) => seen.iter().map(|c| c.load(Ordering::Relaxed)).collect(),
        // The racy copies report their transitions to the workers only.
        None => total.racy_transitions.clone(),
    };
    let services = ServiceCounts::tally(&snapshot, &total.issued)
        .into_iter()
        .zip(total.calls)
        .zip(transitions)
        .map(|((counts, calls), transitions)| ServiceReport {
            counts,
            calls,
            transitions,
        })
        .collect();
    Ok(Report {
        mode,
        workers: workload.workers,
        services,
        elapsed,
    })
}

/// A worker's own counts: what it issued, and the transitions it saw in racy mode.
struct Tally {
    issued: Vec<u64>,
    calls: Vec<u64>,
    racy_transitions: Vec<u64>,
}

impl Tally {
    fn new(services: usize) -> Self {
        Tally {
            issued: vec![0; services],
            calls: vec![0; services],
            racy_transitions: vec![0; services],
        }
    }

    fn add(&mut self, service: usize, count: u64, recorded: &Recorded<'_>) {
        self.issued[service] += count;
        self.calls[service] += 1;
        self.racy_transitions[service] += recorded.transitions().count() as u64;
    }

    fn merge(mut self, other: Tally) -> Tally {
        for (sum, part) in [
            (&mut self.issued, other.issued),
            (&mut self.calls, other.calls),
            (&mut self.racy_transitions, other.racy_transitions),
        ] {
            sum.iter_mut().zip(part).for_each(|(s, p)| *s += p);
        }
        self
    }
}

/// In locked mode, per service (config order) the transitions the tracker's observers got.
fn count_transitions(counter: &Counter, names: &[&str]) -> Option<Arc<Vec<AtomicU64>>> {
    let tracker = counter.tracker()?;
    let seen: Arc<Vec<AtomicU64>> = Arc::new(names.iter().map(|_| AtomicU64::new(0)).collect());
    let sink = Arc::clone(&seen);
    let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
    tracker.on_transition(move |t: &Transition| {
        if let Some(position) = names.iter().position(|name| **name == *t.service) {
            sink[position].fetch_add(1, Ordering::Relaxed);
        }
    });
    Some(seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locked_counts_every_unit_across_threads() {
        let config = TrackerConfig::defaults();
        let mut workload = Workload::even(&config);
        workload.workers = 6;
        workload.size = super::super::CallSize { min: 1, max: 4 };
        let report = run(&config, &workload, Mode::Locked, 20_001).unwrap();
        assert_eq!(report.services.iter().map(|s| s.calls).sum::<u64>(), 20_001);
        for service in &report.services {
            assert!(service.counts.issued > 0);
            assert_eq!(service.counts.recorded, service.counts.issued);
            // Every service passes its limit: normal -> warning -> critical -> exhausted.
            assert!(service.transitions >= 3, "{service:?}");
        }
    }

    #[test]
    fn invalid_workloads_are_refused() {
        let config = TrackerConfig::defaults();
        let mut workload = Workload::even(&config);
        workload.workers = 0;
        assert!(matches!(
            run(&config, &workload, Mode::Locked, 10),
            Err(SimError::Workload(_))
        ));
    }
}
