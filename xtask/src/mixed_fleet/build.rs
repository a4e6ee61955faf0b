//! Building the two fleets' `simulate`: the previous build from `git archive`, and this one.

use super::OLD_COMMIT;
use crate::run::root;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The first 7 digits of a commit.
pub(super) fn short(commit: &str) -> &str {
    &commit[..7]
}

/// The previous build's `simulate`: the cached binary, or the commit's source exported and
/// built.
pub(super) fn build_old(dir: &Path) -> Result<PathBuf, String> {
    let binary = dir.join(format!("bin/simulate-{}", short(OLD_COMMIT)));
    if binary.exists() {
        println!(
            "the previous build's simulate ({}): {} (cached)",
            short(OLD_COMMIT),
            binary.display()
        );
        return Ok(binary);
    }
    let source = dir.join(format!("src-{}", short(OLD_COMMIT)));
    if !source.join("Cargo.toml").exists() {
        export(&source)?;
    }
    let target = dir.join("target-old");
    let manifest = source.join("Cargo.toml");
    cargo_build(&source, &manifest, &target)?;
    let built = target.join("debug/examples/simulate");
    // Copied under another name, then renamed: an interrupted copy is never taken as built.
    let bin = binary.parent().expect("bin/ holds the binary");
    std::fs::create_dir_all(bin).map_err(|error| format!("could not create {bin:?}: {error}"))?;
    let partial = binary.with_extension("partial");
    std::fs::copy(&built, &partial)
        .and_then(|_| std::fs::rename(&partial, &binary))
        .map_err(|error| format!("could not copy {}: {error}", built.display()))?;
    // The binary is all that is used from now on: its build (about 650 MB) goes.
    if let Err(error) = std::fs::remove_dir_all(&target) {
        println!("warning: could not remove {}: {error}", target.display());
    }
    Ok(binary)
}

/// `git archive OLD_COMMIT | tar -x -C source`, through a folder renamed at the end.
pub(super) fn export(source: &Path) -> Result<(), String> {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(root())
            .output()
            .map_err(|error| format!("could not run git: {error}"))
    };
    let found = git(&["cat-file", "-e", &format!("{OLD_COMMIT}^{{commit}}")])?;
    if !found.status.success() {
        let shallow = git(&["rev-parse", "--is-shallow-repository"])?;
        let why = if String::from_utf8_lossy(&shallow.stdout).trim() == "true" {
            "this clone is shallow"
        } else {
            "this clone does not have it"
        };
        return Err(format!(
            "the previous build, commit {OLD_COMMIT}, is missing ({why}): fetch it with \
             `git fetch --unshallow` or `git fetch origin {OLD_COMMIT}`, then rerun"
        ));
    }
    let partial = source.with_extension("partial");
    if partial.exists() {
        std::fs::remove_dir_all(&partial)
            .map_err(|error| format!("could not remove {}: {error}", partial.display()))?;
    }
    std::fs::create_dir_all(&partial)
        .map_err(|error| format!("could not create {}: {error}", partial.display()))?;
    println!(
        "$ git archive {} | tar -x -C {}",
        short(OLD_COMMIT),
        source.display()
    );
    let mut archive = Command::new("git")
        .args(["archive", "--format=tar", OLD_COMMIT])
        .current_dir(root())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|error| format!("could not run git archive: {error}"))?;
    let tar = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(&partial)
        .stdin(archive.stdout.take().expect("piped"))
        .status()
        .map_err(|error| format!("could not run tar: {error}"))?;
    let archived = archive.wait().map_err(|error| error.to_string())?;
    if !archived.success() || !tar.success() {
        return Err(format!(
            "git archive {OLD_COMMIT} | tar -x failed ({archived}, {tar})"
        ));
    }
    std::fs::rename(&partial, source)
        .map_err(|error| format!("could not rename {}: {error}", partial.display()))
}

/// This build's `simulate`, built (or found up to date) in a target directory of its own.
pub(super) fn build_new(dir: &Path) -> Result<PathBuf, String> {
    let target = dir.join("target-new");
    cargo_build(&root(), &root().join("Cargo.toml"), &target)?;
    Ok(target.join("debug/examples/simulate"))
}

/// `cargo build --example simulate --features sim,redis` of the workspace at `manifest`, run
/// in `cwd` (so that the workspace's own `.cargo/config.toml` applies), with its lock file.
pub(super) fn cargo_build(cwd: &Path, manifest: &Path, target: &Path) -> Result<(), String> {
    let manifest = manifest.to_string_lossy();
    let target = target.to_string_lossy();
    let args = [
        "build",
        "--locked",
        "--manifest-path",
        &manifest,
        "-p",
        "quota-core",
        "--features",
        "sim,redis",
        "--example",
        "simulate",
        "--target-dir",
        &target,
    ];
    println!("$ cargo {}", args.join(" "));
    let mut cargo = Command::new("cargo");
    if std::env::var_os("CI").is_some() && std::env::var_os("CARGO_INCREMENTAL").is_none() {
        // As `run::command`: a CI run builds once.
        cargo.env("CARGO_INCREMENTAL", "0");
    }
    let status = cargo
        .args(args)
        .current_dir(cwd)
        .status()
        .map_err(|error| format!("could not run cargo: {error}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`cargo {}` failed ({status})", args.join(" ")))
    }
}
