//! `cargo xtask pkg`: the JS module (quota-core with feature `js`) as an npm package in `pkg/`.
//!
//! Release wasm (profile `wasm-release`: size first), wasm-bindgen `--target web`, wasm-opt
//! `-Oz --converge`, then `--flatten --rereloop -Oz --converge` (binaryen from `.tools/`),
//! stripping the sections engines do not read, the TypeScript declarations made to stand
//! alone (see [`standalone_types`]), then a `package.json`. Fails if the .wasm is over its size budget ([`WASM_GZIP_BUDGET`]).

use crate::install;
use crate::run::{command, gzipped_size, output, root};
use std::fs;
use std::path::{Path, PathBuf};

/// The package folder, relative to the workspace root.
pub const OUT_DIR: &str = "pkg";
/// The module's file names: wasm-bindgen names them after the crate's library.
const JS: &str = "quota_core.js";
const TYPES: &str = "quota_core.d.ts";
const WASM: &str = "quota_core_bg.wasm";
/// The most the module's .wasm may weigh gzipped (`gzip -9`), in bytes, persistence included:
/// issue 18's 64 KB for issues 16 and 18 together, then 71 KB with issue 19's holds and
/// `tryRecordMany` (BENCHMARKS.md, JS module, says what the bytes bought and where they were
/// won back).
const WASM_GZIP_BUDGET: u64 = 71_000;

/// Builds `pkg/` from scratch.
pub fn pkg() -> Result<(), String> {
    install::wasm32_target()?;
    install::wasm_bindgen_cli()?;
    install::binaryen()?;
    command(
        "cargo",
        &[
            "build",
            "--profile",
            "wasm-release",
            "-p",
            "quota-core",
            "--lib",
            // Without `shared-admission` (Exact and Leased admission), which JS configs cannot
            // select.
            "--no-default-features",
            // `log/max_level_off`: the module has no logger (nothing in it can install one), so
            // the core's `log` calls could never print; without them their formatting is left
            // out. Set here, not in feature `js`: log's levels hold for a whole program.
            "--features",
            "js log/max_level_off",
            "--target",
            "wasm32-unknown-unknown",
        ],
        &[],
    )?;
    let built = target_dir().join("wasm32-unknown-unknown/wasm-release/quota_core.wasm");
    let out = root().join(OUT_DIR);
    if out.exists() {
        fs::remove_dir_all(&out)
            .map_err(|error| format!("could not clear {}: {error}", out.display()))?;
    }
    command(
        "wasm-bindgen",
        &[
            "--target",
            "web",
            "--out-dir",
            OUT_DIR,
            &built.to_string_lossy(),
        ],
        &[],
    )?;
    let wasm = format!("{OUT_DIR}/{WASM}");
    let wasm_opt = install::binaryen_bin().join("wasm-opt");
    command(
        &wasm_opt.to_string_lossy(),
        &[
            "-Oz",
            // Repeats -Oz while it still shrinks the module (about 1% here).
            "--converge",
            // Then the control flow rebuilt from flat code and shrunk again: 122 B gzipped
            // less, about a second more.
            "--flatten",
            "--rereloop",
            "-Oz",
            "--converge",
            "--strip-debug",
            "--strip-producers",
            "--strip-target-features",
            &wasm,
            "-o",
            &wasm,
        ],
        &[],
    )?;
    let types = out.join(TYPES);
    let declarations = fs::read_to_string(&types)
        .map_err(|error| format!("could not read {}: {error}", types.display()))?;
    fs::write(&types, standalone_types(&declarations)?)
        .map_err(|error| format!("could not write {}: {error}", types.display()))?;
    write_package_json(&out)?;
    size_budget(&out.join(WASM))
}

/// What the init functions' declarations name from the DOM and Node libraries, and what stands
/// in for it.
const GLOBAL_TYPES: &str = "
// The init functions take DOM and Node types (Response, URL, WebAssembly.Module, ...). They are
// looked up on `globalThis`, so these declarations type-check with `lib: [\"es2022\"]` alone;
// where a library declares one, it is that library's type, and where none does, it is `never`.
type Global = typeof globalThis;
type GlobalRequest = Global extends { Request: { prototype: infer T } } ? T : never;
type GlobalResponse = Global extends { Response: { prototype: infer T } } ? T : never;
type GlobalUrl = Global extends { URL: { prototype: infer T } } ? T : never;
type WasmModule = Global extends { WebAssembly: { Module: { prototype: infer T } } } ? T : never;
type WasmMemory = Global extends { WebAssembly: { Memory: { prototype: infer T } } } ? T : never;
type WasmTable = Global extends { WebAssembly: { Table: { prototype: infer T } } } ? T : never;
";

/// wasm-bindgen's declarations, rewritten to type-check under `tsc --strict` with
/// `lib: ["es2022"]` and no `@types/node`: the init functions' DOM and Node types come from
/// `globalThis` ([`GLOBAL_TYPES`]), and `[Symbol.dispose]` (esnext) is left out of the class
/// (`free()` is the typed way; the method is still there at run time where `Symbol.dispose`
/// exists). Fails if wasm-bindgen's output no longer has what is replaced.
fn standalone_types(declarations: &str) -> Result<String, String> {
    let replacements: [(&str, &str); 5] = [
        ("    [Symbol.dispose](): void;\n", ""),
        (
            "export type InitInput = RequestInfo | URL | Response | BufferSource | WebAssembly.Module;",
            "export type InitInput = string | GlobalRequest | GlobalUrl | GlobalResponse | ArrayBuffer | ArrayBufferView | WasmModule;",
        ),
        (
            "export type SyncInitInput = BufferSource | WebAssembly.Module;",
            "export type SyncInitInput = ArrayBuffer | ArrayBufferView | WasmModule;",
        ),
        ("WebAssembly.Memory", "WasmMemory"),
        ("WebAssembly.Table", "WasmTable"),
    ];
    let mut text = declarations.to_owned();
    for (from, to) in replacements {
        if !text.contains(from) {
            return Err(format!(
                "{TYPES}: wasm-bindgen's output has no {from:?} to replace"
            ));
        }
        text = text.replace(from, to);
    }
    // Doc comments may name them; declarations must not.
    let code = text.lines().filter(|line| {
        let line = line.trim_start();
        !(line.starts_with('*') || line.starts_with("/*") || line.starts_with("//"))
    });
    for line in code {
        for global in [
            "Symbol.dispose",
            "WebAssembly.",
            "RequestInfo",
            "BufferSource",
        ] {
            if line.contains(global) {
                return Err(format!(
                    "{TYPES}: still names {global} after the rewrite: {line}"
                ));
            }
        }
    }
    Ok(text + GLOBAL_TYPES)
}

/// `CARGO_TARGET_DIR` if set, else `target/`, as cargo resolves it from the workspace root.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root().join(dir),
        None => root().join("target"),
    }
}

/// quota-core's version, as cargo resolves it (it may come from the workspace).
fn version() -> Result<String, String> {
    // `cargo pkgid` prints e.g. `path+file:///repo/core#quota-core@0.1.0`.
    let id = output("cargo", &["pkgid", "-p", "quota-core"])
        .ok_or("`cargo pkgid -p quota-core` failed")?;
    let id = id.trim();
    let version = id.rsplit(['@', '#']).next().unwrap_or_default();
    if version.chars().next().is_some_and(|c| c.is_ascii_digit()) {
        Ok(version.to_owned())
    } else {
        Err(format!("no version in package id {id:?}"))
    }
}

fn write_package_json(out: &Path) -> Result<(), String> {
    let mut files: Vec<String> = fs::read_dir(out)
        .map_err(|error| format!("could not list {}: {error}", out.display()))?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| !name.starts_with('.') && name != "package.json")
        .collect();
    files.sort();
    let files = files
        .iter()
        .map(|name| json_string(name))
        .collect::<Vec<_>>()
        .join(", ");
    let json = format!(
        r#"{{
  "name": "quota-core",
  "version": {version},
  "description": "Thread-safe API quota tracker, compiled to WebAssembly: per-service call counts against calendar windows, levels, transitions.",
  "license": "MIT OR Apache-2.0",
  "type": "module",
  "main": {JS:?},
  "module": {JS:?},
  "types": {TYPES:?},
  "exports": {{
    ".": {{ "types": "./{TYPES}", "default": "./{JS}" }},
    "./{WASM}": "./{WASM}"
  }},
  "files": [{files}],
  "sideEffects": ["./snippets/*"]
}}
"#,
        version = json_string(&version()?),
    );
    let path = out.join("package.json");
    fs::write(&path, json).map_err(|error| format!("could not write {}: {error}", path.display()))
}

/// `text` as a JSON string.
fn json_string(text: &str) -> String {
    let mut json = String::from('"');
    for c in text.chars() {
        match c {
            '"' => json.push_str("\\\""),
            '\\' => json.push_str("\\\\"),
            c if u32::from(c) < 0x20 => json.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => json.push(c),
        }
    }
    json.push('"');
    json
}

/// Prints the .wasm size, raw and gzipped (`gzip -9`, as BENCHMARKS.md measures it), and
/// fails if the gzipped size is over [`WASM_GZIP_BUDGET`], or if it cannot be measured (no
/// .wasm, no gzip): a budget that is not checked must not pass. The package is built either way.
fn size_budget(wasm: &Path) -> Result<(), String> {
    let raw = fs::metadata(wasm)
        .map_err(|error| format!("could not read {}: {error}", wasm.display()))?
        .len();
    let gzipped = gzipped_size(wasm)?;
    println!("{OUT_DIR}/{WASM}: {raw} bytes, {gzipped} bytes gzipped (budget {WASM_GZIP_BUDGET})");
    if gzipped > WASM_GZIP_BUDGET {
        return Err(format!(
            "{OUT_DIR}/{WASM} is {gzipped} bytes gzipped, over the JS module's budget of \
             {WASM_GZIP_BUDGET} (see BENCHMARKS.md, JS module)"
        ));
    }
    Ok(())
}
