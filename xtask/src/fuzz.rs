//! The cargo-fuzz targets in `fuzz/` (a workspace of its own, excluded from the root one):
//! short runs in `cargo xtask test`, long ones with `cargo xtask fuzz [seconds]`.
//!
//! Each target runs as `cargo +nightly fuzz run --fuzz-dir fuzz <target> fuzz/corpus/<target>
//! [fuzz/seeds/<target>] -- [-dict=fuzz/<target>.dict] -max_total_time=<seconds>`: new inputs
//! go to `fuzz/corpus/<target>` (kept between runs, git-ignored), the committed seeds and
//! dictionary only steer it, and a crash leaves its input in `fuzz/artifacts/<target>/`.

use crate::run::{command, output, root};

/// Seconds per target in `cargo xtask test`.
pub const SHORT_SECONDS: u64 = 20;
/// Seconds per target in `cargo xtask fuzz` without an argument.
pub const LONG_SECONDS: u64 = 600;

/// The fuzz targets: the names of `fuzz/fuzz_targets/*.rs`, sorted.
pub fn targets() -> Result<Vec<String>, String> {
    let dir = root().join("fuzz/fuzz_targets");
    let mut targets: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|error| format!("could not list {}: {error}", dir.display()))?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter_map(|name| name.strip_suffix(".rs").map(str::to_owned))
        .collect();
    if targets.is_empty() {
        return Err(format!("no fuzz targets in {}", dir.display()));
    }
    targets.sort();
    Ok(targets)
}

/// Runs every target for `seconds` each (all of them, even after a failure); an error names
/// those that failed.
pub fn run_all(seconds: u64) -> Result<(), String> {
    let mut failed = Vec::new();
    for target in targets()? {
        if let Err(message) = run(&target, seconds) {
            eprintln!("xtask: {message}");
            failed.push(target);
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "fuzz target(s) {} failed; the inputs are in fuzz/artifacts/<target>/",
            failed.join(", ")
        ))
    }
}

/// Runs one target for `seconds` (not counting the build).
pub fn run(target: &str, seconds: u64) -> Result<(), String> {
    let corpus = format!("fuzz/corpus/{target}");
    let seeds = format!("fuzz/seeds/{target}");
    let dict = format!("fuzz/{target}.dict");
    std::fs::create_dir_all(root().join(&corpus))
        .map_err(|error| format!("could not create {corpus}: {error}"))?;
    let (toolchain, env) = toolchain();
    let mut args: Vec<String> = toolchain.into_iter().map(str::to_owned).collect();
    args.extend(["fuzz", "run", "--fuzz-dir", "fuzz", target, &corpus].map(str::to_owned));
    if root().join(&seeds).is_dir() {
        args.push(seeds);
    }
    args.push("--".into());
    if root().join(&dict).is_file() {
        args.push(format!("-dict={dict}"));
    }
    args.push(format!("-max_total_time={seconds}"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    command("cargo", &args, env)
}

/// cargo-fuzz needs a nightly compiler (for `-Zsanitizer` and its other unstable flags):
/// `+nightly` where rustup has one; otherwise the default toolchain with `RUSTC_BOOTSTRAP=1`,
/// which cargo-fuzz takes as nightly (stable's rust-std ships the AddressSanitizer runtime
/// too), for machines where no nightly can be installed.
fn toolchain() -> (
    Option<&'static str>,
    &'static [(&'static str, &'static str)],
) {
    let toolchains = output("rustup", &["toolchain", "list"]).unwrap_or_default();
    if toolchains
        .lines()
        .any(|line| line.trim_start().starts_with("nightly"))
    {
        (Some("+nightly"), &[])
    } else {
        println!("no nightly toolchain: using the default one with RUSTC_BOOTSTRAP=1");
        (None, &[("RUSTC_BOOTSTRAP", "1")])
    }
}
