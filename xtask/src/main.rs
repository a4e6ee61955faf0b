//! Project commands, run as `cargo xtask <command>` (the alias lives in `.cargo/config.toml`).
//!
//! - `cargo xtask test`: installs what is missing, then runs every check CI runs.
//! - `cargo xtask serve`: builds and serves the dashboard at http://127.0.0.1:8080.
//! - `cargo xtask screenshot`: refreshes the README's `docs/dashboard.png`.
//! - `cargo xtask soak [minutes]`: leaves the dashboard running at the cap and checks that it
//!   keeps its memory and frame rate (30 minutes by default).
//! - `cargo xtask js-tests`: runs the JS module's wasm32 tests in Node and headless Chromium.
//! - `cargo xtask web-tests`: runs the dashboard's component tests in headless Chromium.
//! - `cargo xtask pkg`: builds the JS module into `pkg/`.
//! - `cargo xtask readme`: runs the README's Rust blocks, each in a new project.
//! - `cargo xtask mixed-fleet`: runs the previous build and this one on one file and one Redis.
//! - `cargo xtask modules`: each crate's module graph; fails on a cycle or a file over 500 lines.
//! - `cargo xtask fuzz [seconds]`: runs every fuzz target in `fuzz/` for that long (600 s each).

mod browser_proxy;
mod fuzz;
mod install;
mod mixed_fleet;
mod modules;
mod pkg;
mod readme;
mod run;
mod web;

use run::Stages;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = args.first().map(String::as_str).unwrap_or("help");
    let result = match command {
        "test" => test(),
        "serve" => web::serve(),
        "screenshot" => web::screenshot(),
        "soak" => web::soak(args.get(1).map(String::as_str)),
        "pkg" => pkg::pkg(),
        "readme" => readme::run_blocks(),
        "mixed-fleet" => mixed_fleet_alone(),
        "modules" => modules::check(),
        "js-tests" => wasm_tests("quota-tests"),
        "web-tests" => wasm_tests("quota-web"),
        "fuzz" => fuzz_long(args.get(1).map(String::as_str)),
        "help" | "--help" | "-h" => {
            print_help();
            Ok(())
        }
        other => Err(format!("unknown command {other:?}; try `cargo xtask help`")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn print_help() {
    println!(
        "cargo xtask <command>\n\n\
         test    install what is missing, then fmt, clippy (native + wasm32), native tests,\n\
         \x20       the README's Rust blocks (each pasted into a new project and run),\n\
         \x20       the mixed fleet (below), loom tests, short fuzz runs (20 s per target),\n\
         \x20       the wasm32 build, the JS module's tests (Node, Chromium, the built\n\
         \x20       package) and the dashboard's (components, end to end, a 2-minute soak);\n\
         \x20       ends with a summary\n\
         fuzz [seconds]\n\
         \x20       install cargo-fuzz if missing, then run every fuzz target in fuzz/\n\
         \x20       (stored_state, stored_state_ops) for [seconds] each (default 600); a\n\
         \x20       crash's input is kept in fuzz/artifacts/<target>/ and reruns with\n\
         \x20       `cargo +nightly fuzz run --fuzz-dir fuzz <target> <input>`\n\
         mixed-fleet\n\
         \x20       build the previous build's `simulate` (commit fa687b9, by `git archive`,\n\
         \x20       cached in target/mixed-fleet/) and this build's, run both at once on one\n\
         \x20       file, then on one redis-server (Local, Exact, Leased; 3 processes each),\n\
         \x20       and check that the store holds exactly what the two admitted\n\
         modules print each crate's import graph between top-level modules; fail on a\n\
         \x20       cycle or on a source file over 500 lines (test files excepted)\n\
         js-tests\n\
         \x20       run the JS module's wasm32 tests in Node and in headless Chromium\n\
         pkg     build the JS module (ES module + TypeScript types) into pkg/\n\
         readme  paste each Rust block of README.md into a new project and run it (starts\n\
         \x20       a redis-server for the blocks that need one)\n\
         screenshot\n\
         \x20       build the release dashboard and refresh the README's docs/dashboard.png\n\
         \x20       (a test run writes its screenshot to target/e2e/ instead)\n\
         serve   install what is missing, then build and serve the dashboard at\n\
         \x20       http://127.0.0.1:8080\n\
         soak [minutes]\n\
         \x20       build the release dashboard and leave it running in headless Chromium\n\
         \x20       at the cap (64 workers x 1,000 calls/s, fastest speed, instances on) for\n\
         \x20       [minutes] (default 30, at least 2) after a frame-rate check of every mode\n\
         \x20       and speed; samples memory, DOM nodes, frames/s and localStorage writes\n\
         \x20       every 30 s; fails if memory grows over 10 % after the first minute or a\n\
         \x20       frame rate is under 30 (figures also in target/soak/soak.json)\n\
         web-tests\n\
         \x20       run the dashboard's component tests (wasm32) in headless Chromium\n"
    );
}

/// `cargo test -p <package>` on wasm32 (Node and headless Chromium, through the browser
/// proxy), its tools installed first: `js-tests` and `web-tests`.
fn wasm_tests(package: &str) -> Result<(), String> {
    install::wasm32_target()?;
    install::wasm_bindgen_cli()?;
    install::chromium()?;
    install::cargo_test_wasm(&["test", "-p", package, "--target", "wasm32-unknown-unknown"])
}

/// Every check, in the order CI runs them. Stops at the first failure.
fn test() -> Result<(), String> {
    run::warn_if_disk_low();
    let mut stages = Stages::new("cargo xtask test");
    stages.run("install: wasm32 target", install::wasm32_target);
    stages.run("install: wasm-bindgen-cli", install::wasm_bindgen_cli);
    stages.run("install: chromium", install::chromium);
    stages.run("install: binaryen", install::binaryen);
    stages.run("install: redis-server", install::redis_server);
    stages.run("install: cargo-fuzz", install::cargo_fuzz);
    stages.cargo("fmt", &["fmt", "--all", "--", "--check"], &[]);
    stages.run(
        "modules: no import cycle, no file over 500 lines",
        modules::check,
    );
    stages.cargo(
        "clippy (native)",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--features",
            "quota-core/sim,quota-core/redis,quota-core/metrics",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    );
    stages.cargo(
        "clippy (wasm32)",
        &[
            "clippy",
            "-p",
            "quota-core",
            "--lib",
            "--features",
            // `metrics` is the facade only: it builds for wasm32 as natively.
            "sim,metrics",
            "--target",
            "wasm32-unknown-unknown",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    );
    // `sim`, `redis` and `metrics` are off by default; the tests of the simulator, the
    // `simulate` example, `RedisStore` (which start their own redis-server) and the metrics
    // (with the `metrics` example) need them.
    stages.cargo(
        "native tests",
        &[
            "test",
            "--workspace",
            "--features",
            "quota-core/sim,quota-core/redis,quota-core/metrics",
        ],
        &[],
    );
    stages.run(
        "README: every Rust block in a new project",
        readme::run_blocks,
    );
    stages.run(mixed_fleet::STAGE, mixed_fleet::run);
    stages.cargo(
        "loom tests",
        &["test", "-p", "quota-core", "--lib", "--release", "loom"],
        &[
            ("RUSTFLAGS", "--cfg loom"),
            ("CARGO_TARGET_DIR", "target/loom"),
            ("LOOM_MAX_PREEMPTIONS", "2"),
        ],
    );
    // The fuzz crate is outside the workspace (nightly, sanitizer flags): the fmt and clippy
    // stages above do not cover it; this stage builds it.
    stages.run("fuzz (short runs)", || fuzz::run_all(fuzz::SHORT_SECONDS));
    stages.cargo(
        "wasm32 build",
        &[
            "build",
            "-p",
            "quota-core",
            "--target",
            "wasm32-unknown-unknown",
        ],
        &[],
    );
    js_module_stages(&mut stages);
    web::stages(&mut stages);
    stages.finish()
}

/// `cargo xtask mixed-fleet`: the mixed-fleet stage alone, with redis-server installed first.
fn mixed_fleet_alone() -> Result<(), String> {
    let mut stages = Stages::new("cargo xtask mixed-fleet");
    stages.run("install: redis-server", install::redis_server);
    stages.run(mixed_fleet::STAGE, mixed_fleet::run);
    stages.finish()
}

/// `cargo xtask fuzz [seconds]`: a long run of every fuzz target, one stage each.
fn fuzz_long(seconds: Option<&str>) -> Result<(), String> {
    let seconds = match seconds {
        None => fuzz::LONG_SECONDS,
        Some(text) => text
            .parse()
            .ok()
            .filter(|&seconds| seconds > 0)
            .ok_or_else(|| format!("seconds must be a whole number above 0 (got {text:?})"))?,
    };
    let mut stages = Stages::new("cargo xtask fuzz");
    stages.run("install: cargo-fuzz", install::cargo_fuzz);
    for target in fuzz::targets()? {
        stages.run(&format!("fuzz {target} for {seconds} s"), || {
            fuzz::run(&target, seconds)
        });
    }
    stages.finish()
}

/// The JS module's checks: clippy with `--features js`, the wasm-bindgen-test suites in Node
/// and headless Chromium, the package, and the Node consumer tests against it.
fn js_module_stages(stages: &mut Stages) {
    let wasm32 = "wasm32-unknown-unknown";
    stages.cargo(
        "clippy (wasm32, js)",
        &[
            "clippy",
            "-p",
            "quota-core",
            "--lib",
            // As `cargo xtask pkg` builds it.
            "--no-default-features",
            "--features",
            "js",
            "--target",
            wasm32,
            "--",
            "-D",
            "warnings",
        ],
        &[],
    );
    stages.cargo(
        "clippy (wasm32, JS tests)",
        &[
            "clippy",
            "-p",
            "quota-tests",
            "--all-targets",
            "--target",
            wasm32,
            "--",
            "-D",
            "warnings",
        ],
        &[],
    );
    stages.run("JS module tests (Node + headless Chromium)", || {
        install::cargo_test_wasm(&["test", "-p", "quota-tests", "--target", wasm32])
    });
    stages.run("pkg", pkg::pkg);
    stages.run("JS consumer tests (node --test)", node_tests);
}

/// `node --test` on every `tests/node/*.test.mjs`: they import the built `pkg/`, install it
/// into a project of their own as the README says, and type-check the declarations with the
/// TypeScript from `tests/node/package-lock.json` (hence `npm ci` first).
fn node_tests() -> Result<(), String> {
    run::command(
        "npm",
        &["ci", "--prefix", "tests/node", "--no-audit", "--no-fund"],
        &[],
    )?;
    let dir = run::root().join("tests/node");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|error| format!("could not list {}: {error}", dir.display()))?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".test.mjs"))
        .map(|name| format!("tests/node/{name}"))
        .collect();
    if files.is_empty() {
        return Err(format!("no *.test.mjs in {}", dir.display()));
    }
    files.sort();
    let mut args = vec!["--test"];
    args.extend(files.iter().map(String::as_str));
    run::command("node", &args, &[])
}
