//! Installs the tools the checks need when they are missing, and skips them when present.

use crate::browser_proxy;
use crate::run::{command, output, root};
use std::path::{Path, PathBuf};

/// `rustup target add wasm32-unknown-unknown` unless it is installed.
pub fn wasm32_target() -> Result<(), String> {
    let installed = output("rustup", &["target", "list", "--installed"]).unwrap_or_default();
    if installed
        .lines()
        .any(|line| line.trim() == "wasm32-unknown-unknown")
    {
        println!("wasm32-unknown-unknown: present");
        return Ok(());
    }
    command("rustup", &["target", "add", "wasm32-unknown-unknown"], &[])
}

/// The version of `package` in Cargo.lock (the first one listed).
pub fn locked_version(package: &str) -> Result<String, String> {
    let path = root().join("Cargo.lock");
    let lock = std::fs::read_to_string(&path)
        .map_err(|error| format!("could not read {}: {error}", path.display()))?;
    let name = format!("name = \"{package}\"");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == name {
            let version = lines
                .next()
                .and_then(|line| line.trim().strip_prefix("version = \""))
                .and_then(|rest| rest.strip_suffix('"'));
            if let Some(version) = version {
                return Ok(version.to_owned());
            }
        }
    }
    Err(format!("{package} is not in Cargo.lock"))
}

/// wasm-bindgen-cli (`wasm-bindgen`, `wasm-bindgen-test-runner`) at exactly the version of the
/// `wasm-bindgen` crate in Cargo.lock, unless that version is installed.
pub fn wasm_bindgen_cli() -> Result<(), String> {
    let version = locked_version("wasm-bindgen")?;
    let matches = |program: &str| {
        output(program, &["--version"])
            .is_some_and(|text| text.split_whitespace().nth(1) == Some(version.as_str()))
    };
    if matches("wasm-bindgen") && matches("wasm-bindgen-test-runner") {
        println!("wasm-bindgen-cli {version}: present");
        return Ok(());
    }
    // Not `--locked`: its lock file pins a crate version the registry here does not serve.
    command(
        "cargo",
        &["install", "wasm-bindgen-cli", "--version", &version],
        &[],
    )
}

/// Chromium and its WebDriver (for the browser tests), from apt, unless both are installed.
pub fn chromium() -> Result<(), String> {
    if Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists() {
        println!("chromium, chromedriver: present");
        return Ok(());
    }
    let apt = [("DEBIAN_FRONTEND", "noninteractive")];
    command("apt-get", &["update"], &apt)?;
    command(
        "apt-get",
        &["install", "-y", "chromium", "chromium-driver"],
        &apt,
    )
}

/// redis-server and redis-cli (for `RedisStore`'s tests, which start their own servers and
/// clusters), from apt, unless `redis-server --version` and `redis-cli --version` work.
pub fn redis_server() -> Result<(), String> {
    // redis-cli too: the cluster tests create their clusters with it.
    if let (Some(version), Some(_)) = (
        output("redis-server", &["--version"]),
        output("redis-cli", &["--version"]),
    ) {
        println!("{}: present", version.trim());
        return Ok(());
    }
    let apt = [("DEBIAN_FRONTEND", "noninteractive")];
    command("apt-get", &["update"], &apt)?;
    command("apt-get", &["install", "-y", "redis-server"], &apt)
}

/// Where apt installs Chromium.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Where apt installs chromedriver.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Runs `cargo test` with `args` for wasm32 through wasm-bindgen-test-runner: in Node, or in
/// headless Chromium via chromedriver, whose loopback requests go through [`browser_proxy`].
pub fn cargo_test_wasm(args: &[&str]) -> Result<(), String> {
    let webdriver_json = browser_proxy::webdriver_json()?;
    let webdriver_json = webdriver_json.to_string_lossy();
    let env = [
        (
            "CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER",
            "wasm-bindgen-test-runner",
        ),
        ("CHROMEDRIVER", CHROMEDRIVER),
        ("WASM_BINDGEN_TEST_WEBDRIVER_JSON", &webdriver_json),
    ];
    command("cargo", args, &env)
}

/// The binaryen release whose `wasm-opt` the builds use. Debian's binaryen 108 breaks
/// wasm-bindgen output (see ../shared/TOOLCHAIN.md), so it comes from npm into `.tools/`.
const BINARYEN_VERSION: &str = "132";

/// The folder with binaryen's `wasm-opt` (put it first on `PATH` for tools that look there).
pub fn binaryen_bin() -> PathBuf {
    root().join(".tools/binaryen/node_modules/.bin")
}

/// `binaryen@132` from npm into `.tools/binaryen`, unless it is there.
pub fn binaryen() -> Result<(), String> {
    let wasm_opt = binaryen_bin().join("wasm-opt");
    let wanted = format!("version {BINARYEN_VERSION}");
    if output(&wasm_opt.to_string_lossy(), &["--version"]).is_some_and(|v| v.contains(&wanted)) {
        println!("binaryen {BINARYEN_VERSION}: present");
        return Ok(());
    }
    command(
        "npm",
        &[
            "install",
            "--prefix",
            ".tools/binaryen",
            "--no-audit",
            "--no-fund",
            &format!("binaryen@{BINARYEN_VERSION}"),
        ],
        &[],
    )
}

/// cargo-fuzz (`cargo fuzz`, for the fuzz targets in `fuzz/`), unless `cargo fuzz --version`
/// works.
pub fn cargo_fuzz() -> Result<(), String> {
    if let Some(version) = output("cargo", &["fuzz", "--version"]) {
        println!("{}: present", version.trim());
        return Ok(());
    }
    command("cargo", &["install", "cargo-fuzz", "--locked"], &[])
}
