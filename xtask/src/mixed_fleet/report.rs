//! Running and reading the fleet's reports: a process's output, the table each build prints,
//! and the judgement of the totals against what was admitted.

use super::*;
use std::io::Read;
use std::process::Child;
use std::time::{Duration, Instant};

/// Waits for `child` until `deadline` (killed then) and returns what it printed; an error if it
/// failed.
pub(super) fn finish(mut child: Child, who: &str, deadline: Instant) -> Result<String, String> {
    let pipe = |mut from: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = from.read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = pipe(Box::new(child.stdout.take().expect("piped")));
    let stderr = pipe(Box::new(child.stderr.take().expect("piped")));
    let status = loop {
        match child.try_wait().map_err(|error| error.to_string())? {
            Some(status) => break status,
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{who}'s simulate still ran after {RUN_SECONDS} s"));
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    if status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "{who}'s simulate failed ({status}):\n{stdout}{stderr}"
        ))
    }
}

/// Prints a report's first line and table.
pub(super) fn show(who: &str, report: &str) {
    for line in report.lines() {
        println!("  {who:<8} | {line}");
        if line.starts_with("total ") {
            break;
        }
    }
}

/// One row of a shared run's table.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Row {
    pub(super) service: String,
    pub(super) admitted: i128,
    pub(super) before: i128,
    pub(super) added: i128,
    pub(super) lost: i128,
}

/// A shared run's report, as read by [`table`].
pub(super) struct Report {
    pub(super) rows: Vec<Row>,
    /// Per service, where normal calls stop.
    pub(super) stops: Vec<(String, i128)>,
}

/// The rows of a shared run's report (`service issued admitted denied before added after
/// lost`), by the columns its header names, and per service where normal calls stop (`NAME:
/// normal calls stop at ... = N a PERIOD`).
pub(super) fn table(report: &str) -> Result<Report, String> {
    let mut lines = report.lines();
    let header: Vec<&str> = lines
        .by_ref()
        .find(|line| line.starts_with("service ") && line.contains(" admitted "))
        .ok_or_else(|| format!("no table in the report:\n{report}"))?
        .split_whitespace()
        .collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|&c| c == name)
            .ok_or_else(|| format!("no column {name:?} in the report:\n{report}"))
    };
    let [admitted, before, added, lost] = [
        column("admitted")?,
        column("before")?,
        column("added")?,
        column("lost")?,
    ];
    let mut rows = Vec::new();
    for line in lines.by_ref() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() != header.len() {
            return Err(format!("a row unlike the header {line:?} in:\n{report}"));
        }
        if fields[0] == "total" {
            break;
        }
        let number = |i: usize| {
            fields[i]
                .parse::<i128>()
                .map_err(|_| format!("not a number in {line:?}"))
        };
        rows.push(Row {
            service: fields[0].to_owned(),
            admitted: number(admitted)?,
            before: number(before)?,
            added: number(added)?,
            lost: number(lost)?,
        });
    }
    let mut stops = Vec::new();
    for line in lines {
        let Some((service, rule)) = line.split_once(": normal calls stop at ") else {
            continue;
        };
        let stop = rule
            .split_once(" = ")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("no stop in {line:?}"))?;
        stops.push((service.to_owned(), stop));
    }
    if rows.is_empty() {
        return Err(format!("no services in the report:\n{report}"));
    }
    Ok(Report { rows, stops })
}

/// The checks of one case, from the two runs' reports and the two reads of the totals; one
/// line of figures per service.
pub(super) fn judge(
    what: &str,
    case: &Case,
    runs: [&str; 2],
    reads: [&str; 2],
) -> Result<Vec<String>, String> {
    let builds = ["the previous build", "this build"];
    let Report { rows: old, stops } = table(runs[0])?;
    let new = table(runs[1])?.rows;
    let old_read = table(reads[0])?.rows;
    let new_read = table(reads[1])?.rows;
    let services: Vec<&str> = old.iter().map(|row| row.service.as_str()).collect();
    for (build, rows) in builds.iter().zip([&new, &old_read, &new_read]) {
        let names: Vec<&str> = rows.iter().map(|row| row.service.as_str()).collect();
        if names != services {
            return Err(format!(
                "{build} reported the services {names:?}, the previous build {services:?}"
            ));
        }
    }
    let mut figures = Vec::new();
    for (k, service) in services.iter().enumerate() {
        for (build, row) in builds.iter().zip([&old[k], &new[k]]) {
            if row.lost > 0 {
                return Err(format!(
                    "{service}: {build}'s run printed lost {} (it admitted {}, the store \
                     gained {} during the run)",
                    row.lost, row.admitted, row.added
                ));
            }
        }
        // What the store holds, read after both runs (`before` of a run that calls nothing).
        let (stored, stored_by_new) = (old_read[k].before, new_read[k].before);
        if stored != stored_by_new {
            return Err(format!(
                "{service}: the previous build reads a total of {stored}, this build \
                 {stored_by_new}"
            ));
        }
        let admitted = old[k].admitted + new[k].admitted;
        if stored != admitted {
            let (gap, verb) = if stored < admitted {
                (admitted - stored, "lost")
            } else {
                (stored - admitted, "counted twice")
            };
            return Err(format!(
                "{service}: the store holds {stored}, but the previous build admitted {} and \
                 this build {} ({admitted} in all): {gap} {verb}",
                old[k].admitted, new[k].admitted
            ));
        }
        if admitted == 0 {
            return Err(format!("{service}: neither build admitted a call"));
        }
        let mut line = format!(
            "{what}, {service}: stored {stored} (read alike by both) = admitted {} (previous) + \
             {} (this)",
            old[k].admitted, new[k].admitted
        );
        if case.admission != "local" {
            let stop = stops
                .iter()
                .find(|(name, _)| name == service)
                .map(|&(_, stop)| stop)
                .ok_or_else(|| format!("{service}: the report gives no normal stop"))?;
            if admitted > stop {
                return Err(format!(
                    "{service}: the two builds admitted {admitted} together, over the normal \
                     stop {stop} (limit {})",
                    case.limit
                ));
            }
            line += &format!(", within the stop {stop}");
        }
        // What each run saw the other add while it ran (its `added` beyond its own calls).
        line += &format!(
            "; each saw the other add {} / {} during its run",
            old[k].added - old[k].admitted,
            new[k].added - new[k].admitted
        );
        figures.push(line);
    }
    Ok(figures)
}
