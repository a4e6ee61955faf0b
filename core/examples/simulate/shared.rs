//! The shared runs: N processes of this program on one store, each with its own tracker, and
//! the report of what the run added to the store's totals.

use super::*;

/// How far apart two clocks on this machine may read (the trackers' and this one): windows
/// this close to the run are read too.
const CLOCK_SLACK_MS: u64 = 2_000;

/// Every window of `spec` that holds an instant of `from_ms..=to_ms`.
fn windows_between(service: &str, spec: &WindowSpec, from_ms: u64, to_ms: u64) -> Vec<WindowKey> {
    let mut keys = Vec::new();
    let mut window = spec.window_at(from_ms);
    loop {
        keys.push(WindowKey {
            service: service.to_owned(),
            spec: spec.clone(),
            start_ms: window.start_ms,
            end_ms: window.reset_at_ms,
        });
        if window.reset_at_ms > to_ms || window.reset_at_ms == u64::MAX {
            return keys;
        }
        window = spec.window_at(window.reset_at_ms);
    }
}

/// The stored totals of `windows`, read without adding anything.
fn read_totals(
    store: &dyn Store,
    url: &StoreUrl,
    windows: &[WindowKey],
) -> Result<Vec<u64>, String> {
    let batch = SyncBatch {
        done_below: 0,
        instance: InstanceId::random(),
        seq: 0,
        at_ms: SystemClock.now_ms(),
        deltas: Vec::new(),
        read: windows.to_vec(),
        raises: Vec::new(),
    };
    store
        .sync(&batch)
        .map_err(|error| format!("could not read the store {url}: {error}"))
}

/// `--processes N` with a store: the parent starts N children (each through `launch`) and
/// reports what they did and what the store gained in the windows the run touched (its
/// totals before and after, so earlier runs on the same store do not count).
pub(super) fn shared(
    args: &[String],
    options: &Options,
    setup: &Setup,
    store: &StoreUrl,
    out: &mut impl Write,
    launch: &Launch,
) -> Result<(), String> {
    if let Some(child) = options.child {
        return shared_child(options, setup, store, child, out);
    }
    match store {
        StoreUrl::Memory => {
            return Err(
                "store memory: keeps counts inside one process: the processes need file:PATH or \
                 redis://HOST:PORT"
                    .into(),
            )
        }
        StoreUrl::Redis(_) if !cfg!(feature = "redis") => {
            return Err(format!(
                "store {store}: this simulate was built without Redis: build it with \
                 `--features sim,redis` (cargo run -p quota-core --release --features sim,redis \
                 --example simulate -- ...)"
            ))
        }
        _ => {}
    }
    if options.mode == Mode::Racy {
        return Err(
            "--mode racy runs on threads only: the processes of a shared run count \
                    through the store"
                .into(),
        );
    }
    let config = &setup.config;
    config.validate().map_err(|error| error.to_string())?;
    // Opened and read before any process starts: a store this build cannot open, or one that
    // is down, fails here.
    let reader = store.open().map_err(|error| error.to_string())?;
    let started_ms = SystemClock.now_ms();
    let near_start = |service: &ServiceConfig| {
        windows_between(
            &service.name,
            &service.window,
            started_ms.saturating_sub(CLOCK_SLACK_MS),
            started_ms + CLOCK_SLACK_MS,
        )
    };
    let first: Vec<WindowKey> = config.services.iter().flat_map(near_start).collect();
    let before_totals = read_totals(&*reader, store, &first)?;
    let started = Instant::now();
    let children: Vec<_> = (0..options.processes)
        .map(|child| {
            let mut child_args = args.to_vec();
            child_args.extend(["--child".to_owned(), child.to_string()]);
            launch(&child_args)?
                .stdout(Stdio::piped())
                .spawn()
                .map_err(|e| format!("could not start a process: {e}"))
        })
        .collect::<Result<_, _>>()?;
    let mut done = vec![Done::default(); config.services.len()];
    let mut held = vec![holds::Held::default(); config.services.len()];
    let mut failed = Vec::new();
    for (child, process) in children.into_iter().enumerate() {
        let output = process.wait_with_output().map_err(|e| e.to_string())?;
        if !output.status.success() {
            failed.push(format!("process {child} failed ({})", output.status));
            continue;
        }
        let mut seen = vec![false; config.services.len()];
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            if options.hold.is_some() && line.starts_with("hold ") {
                match holds::Held::read(line, held.len(), &mut held) {
                    Some(k) => seen[k] = true,
                    None => return Err(format!("process {child} reported {line:?}")),
                }
                continue;
            }
            let Some(rest) = line.strip_prefix("service ") else {
                continue;
            };
            let numbers: Vec<u64> = rest.split(' ').filter_map(|f| f.parse().ok()).collect();
            match numbers[..] {
                [k, issued, admitted, a, b, c, d, e, f] if (k as usize) < done.len() => {
                    let k = k as usize;
                    let total = &mut done[k];
                    total.issued += issued;
                    total.admitted += admitted;
                    for (sum, n) in total.denied.iter_mut().zip([a, b, c, d, e, f]) {
                        *sum += n;
                    }
                    seen[k] = true;
                }
                _ => return Err(format!("process {child} reported {line:?}")),
            }
        }
        if seen.contains(&false) {
            return Err(format!("process {child} did not report every service"));
        }
    }
    if !failed.is_empty() {
        return Err(failed.join("; "));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let ended_ms = SystemClock.now_ms().max(started_ms);
    // Every window from the first read to now: those that began after the first read held
    // nothing before this run.
    let windows: Vec<WindowKey> = config
        .services
        .iter()
        .flat_map(|service| {
            windows_between(
                &service.name,
                &service.window,
                started_ms.saturating_sub(CLOCK_SLACK_MS),
                ended_ms + CLOCK_SLACK_MS,
            )
        })
        .collect();
    let after_totals = read_totals(&*reader, store, &windows)?;
    let mut before = vec![0u64; config.services.len()];
    let mut after = vec![0u64; config.services.len()];
    for (window, total) in windows.iter().zip(after_totals) {
        let k = config
            .services
            .iter()
            .position(|s| s.name == window.service);
        let k = k.expect("a window of a configured service");
        after[k] += total;
        if let Some(i) = first.iter().position(|w| w == window) {
            before[k] += before_totals[i];
        }
    }
    if let Some(max) = options.hold {
        let added: Vec<u64> = after
            .iter()
            .zip(&before)
            .map(|(after, before)| after.saturating_sub(*before))
            .collect();
        let write = |out: &mut dyn Write| -> std::io::Result<()> {
            writeln!(
                out,
                "holds of 1 to {max} units, {} processes, store {store}, admission {}: \
                 {elapsed:.3} s",
                options.processes,
                admissions(config)
            )?;
            holds::table(out, config, &held, &added, "stored")?;
            writeln!(
                out,
                "stored: what the store gained in the windows this run touched; lost = settled \
                 - stored"
            )
        };
        return write(out).map_err(|e| e.to_string());
    }
    report_shared(out, options, setup, store, elapsed, &done, &before, &after)
        .map_err(|e| e.to_string())
}

/// The shared run's report: a table and, per service, why admission stopped where it did.
#[allow(clippy::too_many_arguments)]
fn report_shared(
    out: &mut impl Write,
    options: &Options,
    setup: &Setup,
    store: &StoreUrl,
    elapsed: f64,
    done: &[Done],
    before: &[u64],
    after: &[u64],
) -> std::io::Result<()> {
    let config = &setup.config;
    let issued: u64 = done.iter().map(|d| d.issued).sum();
    writeln!(
        out,
        "{} processes, store {store}, admission {}: {elapsed:.3} s, {:.0} calls/s",
        options.processes,
        admissions(config),
        issued as f64 / elapsed
    )?;
    let row = |out: &mut dyn Write, name: &str, numbers: [i128; 7]| {
        write!(out, "{name:<10}")?;
        for n in numbers {
            write!(out, " {n:>10}")?;
        }
        writeln!(out)
    };
    writeln!(
        out,
        "{:<10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "service", "issued", "admitted", "denied", "before", "added", "after", "lost"
    )?;
    let mut sums = [0i128; 7];
    for (k, service) in config.services.iter().enumerate() {
        let d = &done[k];
        let added = i128::from(after[k]) - i128::from(before[k]);
        let numbers = [
            d.issued.into(),
            d.admitted.into(),
            d.denied().into(),
            before[k].into(),
            added,
            after[k].into(),
            i128::from(d.admitted) - added,
        ];
        for (sum, n) in sums.iter_mut().zip(numbers) {
            *sum += n;
        }
        row(out, &service.name, numbers)?;
    }
    row(out, "total", sums)?;
    writeln!(
        out,
        "before, after: the store's totals in the windows this run touched; added = after - \
         before; lost = admitted - added"
    )?;
    for (k, service) in config.services.iter().enumerate() {
        let (stop, reason) = service.normal_stop();
        let rule = match reason {
            DenyReason::Reserve => format!(
                "the reserve: {} - {} % held back = {stop}",
                service.limit,
                service.reserve_fraction * 100.0
            ),
            _ => format!(
                "the Critical level: {} % of {} = {stop}",
                service.critical_threshold * 100.0,
                service.limit
            ),
        };
        write!(
            out,
            "{}: normal calls stop at {rule} a {}",
            service.name, service.window
        )?;
        if before[k] >= stop {
            write!(out, " (reached before this run)")?;
        }
        let reasons: Vec<String> = REASONS
            .iter()
            .zip(done[k].denied)
            .filter(|(_, n)| *n > 0)
            .map(|(reason, n)| format!("{reason} {n}"))
            .collect();
        if reasons.is_empty() {
            writeln!(out, "; none denied")?;
        } else {
            writeln!(out, "; denied: {}", reasons.join(", "))?;
        }
    }
    if sums[6] < 0 {
        writeln!(
            out,
            "note: the store gained {} calls more than this run admitted: another process \
             counted in these windows during the run",
            -sums[6]
        )?;
    }
    Ok(())
}

/// One child: its share of the calls through `try_record`; prints per service `service K
/// issued admitted` and its denials by [`REASONS`] (K: the service's index in the config, which
/// parent and children read alike; a name may hold spaces).
pub(super) fn shared_child(
    options: &Options,
    setup: &Setup,
    store: &StoreUrl,
    child: u64,
    out: &mut impl Write,
) -> Result<(), String> {
    let config = &setup.config;
    let tracker = QuotaTracker::builder(config.clone())
        .boxed_store(store.open().map_err(|error| error.to_string())?)
        .sync_policy(setup.sync.clone())
        .build()
        .map_err(|e| e.to_string())?;
    let tracker = std::sync::Arc::new(tracker);
    if options.background {
        tracker
            .sync_in_background()
            .map_err(|error| error.to_string())?;
    }
    let mut workload = Workload::even(config);
    workload.seed = options.seed.wrapping_add(child);
    let stream = workload
        .stream(config, 0)
        .map_err(|error| error.to_string())?;
    // The calls split as evenly as they go: the first `calls % processes` take one more.
    let processes = options.processes as u64;
    let share = options.calls / processes + u64::from(child < options.calls % processes);
    if let Some(max) = options.hold {
        let seed = options.seed.wrapping_add(child);
        let held = holds::hold_ops(&tracker, config, stream.take(share as usize), max, seed)?;
        tracker.flush().map_err(|error| error.to_string())?;
        for (k, held) in held.iter().enumerate() {
            writeln!(out, "{}", held.line(k)).map_err(|e| e.to_string())?;
        }
        return Ok(());
    }
    let mut done = vec![Done::default(); config.services.len()];
    for op in stream.take(share as usize) {
        let counts = &mut done[op.service];
        counts.issued += 1;
        match tracker.try_record(&config.services[op.service].name, 1) {
            Ok(_) => counts.admitted += 1,
            Err(QuotaError::Denied { reason, .. }) => {
                let slot = REASONS.iter().position(|r| *r == reason);
                counts.denied[slot.expect("every reason is in REASONS")] += 1;
            }
            Err(error) => return Err(error.to_string()),
        }
    }
    tracker.flush().map_err(|error| error.to_string())?;
    for (k, d) in done.iter().enumerate() {
        let [a, b, c, e, f, g] = d.denied;
        writeln!(
            out,
            "service {k} {} {} {a} {b} {c} {e} {f} {g}",
            d.issued, d.admitted
        )
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}
