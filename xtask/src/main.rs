//! Project commands, run as `cargo xtask <command>` (the alias lives in `.cargo/config.toml`).
//!
//! - `cargo xtask test`: installs what is missing, then runs every check CI runs.
//! - `cargo xtask serve`: builds and serves the dashboard at http://127.0.0.1:8080.
//! - `cargo xtask pkg`: builds the JS module into `pkg/`.

mod install;
mod run;

use run::Stages;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = args.first().map(String::as_str).unwrap_or("help");
    let result = match command {
        "test" => test(),
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
         \x20       loom tests and the wasm32 build; ends with a summary\n"
    );
}

/// Every check, in the order CI runs them. Stops at the first failure.
fn test() -> Result<(), String> {
    let mut stages = Stages::new("cargo xtask test");
    stages.run("install: wasm32 target", install::wasm32_target);
    stages.cargo("fmt", &["fmt", "--all", "--", "--check"], &[]);
    stages.cargo(
        "clippy (native)",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
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
            "--target",
            "wasm32-unknown-unknown",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    );
    stages.cargo("native tests", &["test", "--workspace"], &[]);
    stages.cargo(
        "loom tests",
        &["test", "-p", "quota-core", "--lib", "--release", "loom"],
        &[
            ("RUSTFLAGS", "--cfg loom"),
            ("CARGO_TARGET_DIR", "target/loom"),
            ("LOOM_MAX_PREEMPTIONS", "2"),
        ],
    );
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
    stages.finish()
}
