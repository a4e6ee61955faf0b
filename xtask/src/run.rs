//! Running stages and commands, with a summary at the end.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The workspace root (the parent of `xtask/`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Runs `program args` in the workspace root with extra `env`; an error says what failed.
pub fn command(program: &str, args: &[&str], env: &[(&str, &str)]) -> Result<(), String> {
    println!("$ {} {}", program, args.join(" "));
    let mut child = Command::new(program);
    if std::env::var_os("CI").is_some() && std::env::var_os("CARGO_INCREMENTAL").is_none() {
        // A CI run builds once: incremental caches would only take disk (gigabytes).
        child.env("CARGO_INCREMENTAL", "0");
    }
    let status = child
        .args(args)
        .envs(env.iter().copied())
        .current_dir(root())
        .status()
        .map_err(|error| format!("could not run {program}: {error}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{program} {}` failed ({status})", args.join(" ")))
    }
}

/// Warns when the disk under the workspace has less free space than a full `cargo xtask test`
/// needs, so a later "No space left on device" has its cause printed at the top.
pub fn warn_if_disk_low() {
    const NEEDED_KB: u64 = 6 * 1024 * 1024;
    let Some(df) = output("df", &["-Pk", "."]) else {
        return;
    };
    // `df -P`: one header line, then `filesystem blocks used available capacity mount`.
    let available_kb = df
        .lines()
        .nth(1)
        .and_then(|line| line.split_whitespace().nth(3))
        .and_then(|field| field.parse::<u64>().ok());
    if let Some(kb) = available_kb.filter(|&kb| kb < NEEDED_KB) {
        println!(
            "warning: {:.1} GiB free under {}; a full run from a clean target/ needs about {} GiB",
            kb as f64 / 1024.0 / 1024.0,
            root().display(),
            NEEDED_KB / 1024 / 1024
        );
    }
}

/// The standard output of `program args`, if it ran and succeeded.
pub fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .current_dir(root())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

enum Outcome {
    Passed(f64),
    Failed(f64, String),
    Skipped,
}

/// A sequence of named stages that stops at the first failure and prints a summary.
pub struct Stages {
    title: &'static str,
    results: Vec<(String, Outcome)>,
    failed: bool,
}

impl Stages {
    pub fn new(title: &'static str) -> Self {
        Stages {
            title,
            results: Vec::new(),
            failed: false,
        }
    }

    /// Runs `stage` unless an earlier one failed.
    pub fn run(&mut self, name: &str, stage: impl FnOnce() -> Result<(), String>) {
        if self.failed {
            self.results.push((name.to_owned(), Outcome::Skipped));
            return;
        }
        println!("\n==> {name}");
        let started = Instant::now();
        let outcome = match stage() {
            Ok(()) => Outcome::Passed(started.elapsed().as_secs_f64()),
            Err(message) => {
                self.failed = true;
                Outcome::Failed(started.elapsed().as_secs_f64(), message)
            }
        };
        self.results.push((name.to_owned(), outcome));
    }

    /// Runs `cargo args` as a stage.
    pub fn cargo(&mut self, name: &str, args: &[&str], env: &[(&str, &str)]) {
        self.run(name, || command("cargo", args, env));
    }

    /// Prints the summary; an error if any stage failed.
    pub fn finish(self) -> Result<(), String> {
        println!("\n{} summary:", self.title);
        let (mut passed, mut failed) = (0, 0);
        for (name, outcome) in &self.results {
            match outcome {
                Outcome::Passed(secs) => {
                    passed += 1;
                    println!("  ok       {name} ({secs:.0} s)");
                }
                Outcome::Failed(secs, message) => {
                    failed += 1;
                    println!("  FAILED   {name} ({secs:.0} s): {message}");
                }
                Outcome::Skipped => println!("  skipped  {name}"),
            }
        }
        println!("stages: {passed} passed, {failed} failed");
        if self.failed {
            Err(format!("{} failed", self.title))
        } else {
            Ok(())
        }
    }
}

/// The size of `path` compressed by `gzip -9`.
pub fn gzipped_size(path: &Path) -> Result<u64, String> {
    let out = Command::new("gzip")
        .args(["-9", "-c"])
        .arg(path)
        .output()
        .map_err(|error| format!("could not run gzip: {error}"))?;
    if !out.status.success() {
        return Err(format!(
            "gzip -9 {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(out.stdout.len() as u64)
}
