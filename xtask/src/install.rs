//! Installs the tools the checks need when they are missing, and skips them when present.

use crate::run::{command, output};

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
