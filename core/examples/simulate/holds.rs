//! `--hold MAX`: every call is a hold of 1 to MAX units (an estimate), settled at 0 to twice
//! its estimate (what it really cost), as an LLM client counts tokens. On threads, against one
//! tracker; across processes (`shared.rs`), through the store.

use super::*;

/// What one thread or process did with its holds, per service.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Held {
    /// Holds asked for, and their estimates.
    pub(super) holds: u64,
    pub(super) estimated: u64,
    /// Estimates refused (units), by [`REASONS`].
    pub(super) denied: [u64; REASONS.len()],
    /// What the admitted holds settled at: the units the store owes.
    pub(super) settled: u64,
    /// Units given back (settled below the estimate) and added past it.
    pub(super) given_back: u64,
    pub(super) added: u64,
}

impl Held {
    pub(super) fn denied(&self) -> u64 {
        self.denied.iter().sum()
    }

    fn add(&mut self, other: &Held) {
        self.holds += other.holds;
        self.estimated += other.estimated;
        for (sum, n) in self.denied.iter_mut().zip(other.denied) {
            *sum += n;
        }
        self.settled += other.settled;
        self.given_back += other.given_back;
        self.added += other.added;
    }

    /// The line a process prints: `hold K holds estimated d1..d6 settled back added`.
    pub(super) fn line(&self, k: usize) -> String {
        let [a, b, c, d, e, f] = self.denied;
        format!(
            "hold {k} {} {} {a} {b} {c} {d} {e} {f} {} {} {}",
            self.holds, self.estimated, self.settled, self.given_back, self.added
        )
    }

    /// Adds a process's line (`None`: not a hold line of a service below `services`).
    pub(super) fn read(line: &str, services: usize, into: &mut [Held]) -> Option<usize> {
        let numbers: Vec<u64> = line
            .strip_prefix("hold ")?
            .split(' ')
            .map(|f| f.parse().ok())
            .collect::<Option<_>>()?;
        let [k, holds, estimated, a, b, c, d, e, f, settled, given_back, added] = numbers[..]
        else {
            return None;
        };
        let k = usize::try_from(k).ok().filter(|&k| k < services)?;
        into[k].add(&Held {
            holds,
            estimated,
            denied: [a, b, c, d, e, f],
            settled,
            given_back,
            added,
        });
        Some(k)
    }
}

/// Holds of `calls` ops of `stream` on `tracker`, estimates of 1 to `max` units (seeded by
/// `seed`), each settled at once at 0 to twice its estimate.
pub(super) fn hold_ops(
    tracker: &QuotaTracker,
    config: &TrackerConfig,
    stream: impl Iterator<Item = quota_core::sim::Op>,
    max: u64,
    seed: u64,
) -> Result<Vec<Held>, String> {
    // xorshift64*: any seed but 0.
    let mut state = seed | 1;
    let mut next = move |below: u64| {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_f491_4f6c_dd1d) % below
    };
    let mut done = vec![Held::default(); config.services.len()];
    for op in stream {
        let counts = &mut done[op.service];
        let estimate = 1 + next(max);
        counts.holds += 1;
        counts.estimated += estimate;
        match tracker.hold(&config.services[op.service].name, estimate) {
            Ok(hold) => {
                let actual = next(2 * estimate + 1);
                let settled = hold.settle(actual).map_err(|e| e.to_string())?;
                counts.settled += actual;
                counts.given_back += settled.given_back;
                counts.added += settled.added;
            }
            Err(QuotaError::Denied { reason, .. }) => {
                let slot = REASONS.iter().position(|r| *r == reason);
                counts.denied[slot.expect("every reason is in REASONS")] += estimate;
            }
            Err(error) => return Err(error.to_string()),
        }
    }
    Ok(done)
}

/// `--hold MAX` on threads: `options.workers` threads share one tracker (no store); the report
/// checks that the tracker's count over every window (`total_recorded`) is what the holds
/// settled at.
pub(super) fn on_threads(
    options: &Options,
    config: &TrackerConfig,
    max: u64,
    out: &mut impl Write,
) -> Result<(), String> {
    let tracker = QuotaTracker::new(config.clone()).map_err(|e| e.to_string())?;
    let mut workload = Workload::even(config);
    workload.workers = options.workers;
    workload.seed = options.seed;
    let workers = options.workers as u64;
    let started = Instant::now();
    let per_worker: Vec<Vec<Held>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..options.workers)
            .map(|worker| {
                let (tracker, workload) = (&tracker, &workload);
                let share =
                    options.calls / workers + u64::from((worker as u64) < options.calls % workers);
                scope.spawn(move || {
                    let stream = workload.stream(config, worker).map_err(|e| e.to_string())?;
                    let seed = options.seed.wrapping_add(worker as u64);
                    hold_ops(tracker, config, stream.take(share as usize), max, seed)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().map_err(|_| "a worker panicked".to_owned())?)
            .collect::<Result<_, String>>()
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    let mut done = vec![Held::default(); config.services.len()];
    for worker in &per_worker {
        for (sum, held) in done.iter_mut().zip(worker) {
            sum.add(held);
        }
    }
    let recorded: Vec<u64> = config
        .services
        .iter()
        .map(|service| tracker.usage(&service.name).map(|u| u.total_recorded))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    writeln!(
        out,
        "holds of 1 to {max} units, {} workers, {} holds, seed {}: {elapsed:.3} s",
        options.workers, options.calls, options.seed
    )
    .map_err(|e| e.to_string())?;
    table(out, config, &done, &recorded, "recorded").map_err(|e| e.to_string())?;
    writeln!(
        out,
        "estimated = admitted + denied; settled = admitted - given back + added; recorded: the \
         tracker's count over every window; lost = settled - recorded"
    )
    .map_err(|e| e.to_string())
}

/// The holds table: per service the estimates issued, admitted and denied, what was given
/// back and added, what the holds settled at, what the counter holds (`stored`, named by
/// `what`) and the difference.
pub(super) fn table(
    out: &mut (impl Write + ?Sized),
    config: &TrackerConfig,
    done: &[Held],
    stored: &[u64],
    what: &str,
) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "service", "estimated", "admitted", "denied", "back", "added", "settled", what, "lost"
    )?;
    let mut sums = [0i128; 8];
    for (k, service) in config.services.iter().enumerate() {
        let d = &done[k];
        let numbers: [i128; 8] = [
            d.estimated.into(),
            (d.estimated - d.denied()).into(),
            d.denied().into(),
            d.given_back.into(),
            d.added.into(),
            d.settled.into(),
            stored[k].into(),
            i128::from(d.settled) - i128::from(stored[k]),
        ];
        for (sum, n) in sums.iter_mut().zip(numbers) {
            *sum += n;
        }
        write!(out, "{:<10}", service.name)?;
        for n in numbers {
            write!(out, " {n:>10}")?;
        }
        writeln!(out)?;
    }
    write!(out, "{:<10}", "total")?;
    for n in sums {
        write!(out, " {n:>10}")?;
    }
    writeln!(out)
}
