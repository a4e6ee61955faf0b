//! The README's Rust blocks, run the way a user would run them: each in a new cargo project
//! (`cargo new`, then `cargo add quota-core --path .../core` with the features the block's
//! "Needs" line names), its text pasted byte for byte as `src/main.rs`, built without a
//! warning, and run to exit 0 within [`RUN_SECONDS`]. A block that needs a Redis server runs
//! against one started here on a loopback port, the documented address substituted.
//!
//! The line above a block says what it needs:
//! - nothing special: the block needs the default features only;
//! - `Needs `--features redis`, the file above as `quota.toml`, and a Redis server at
//!   `redis.internal:6379` (password `secret`):` (any of the three parts);
//! - `<!-- path/to/file.rs -->`: the block is that file of this repository, byte for byte (its
//!   own tests run it), so it is compared, not run here.

use crate::run::{command, root};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long one block may run once built.
const RUN_SECONDS: u64 = 60;
/// The Redis address the README's blocks name; replaced by the test server's.
const DOCUMENTED_REDIS: &str = "redis.internal:6379";
/// The password the README's Redis URLs carry (`redis://:secret@…` and `redis://app:secret@…`).
pub(crate) const REDIS_PASSWORD: &str = "secret";

/// One fenced block of README.md.
struct Block {
    /// The line of its opening fence (from 1).
    line: usize,
    /// The fence's info string: `rust`, `rust,ignore`, `toml`, ...
    info: String,
    /// The line above the fence.
    above: String,
    /// Its text, each line ending in `\n`.
    body: String,
}

/// What a block's "Needs" line asks for.
#[derive(Default, Debug, PartialEq)]
struct Needs {
    features: Vec<String>,
    quota_toml: bool,
    redis: bool,
}

fn blocks(readme: &str) -> Result<Vec<Block>, String> {
    let lines: Vec<&str> = readme.lines().collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if let Some(info) = lines[i].strip_prefix("```") {
            let end = (i + 1..lines.len())
                .find(|&j| lines[j] == "```")
                .ok_or_else(|| format!("README.md: the block at line {} is not closed", i + 1))?;
            let body: String = lines[i + 1..end].iter().map(|l| format!("{l}\n")).collect();
            blocks.push(Block {
                line: i + 1,
                info: info.to_owned(),
                above: if i > 0 {
                    lines[i - 1].to_owned()
                } else {
                    String::new()
                },
                body,
            });
            i = end;
        }
        i += 1;
    }
    Ok(blocks)
}

/// Reads a "Needs ..." line; `None` if the line says nothing of the kind.
fn needs(above: &str) -> Result<Option<Needs>, String> {
    let Some(rest) = above.strip_prefix("Needs ") else {
        return Ok(None);
    };
    let mut needs = Needs::default();
    if let Some((_, after)) = rest.split_once("`--features ") {
        let list = after
            .split_once('`')
            .map(|(list, _)| list)
            .ok_or_else(|| format!("unclosed `--features` in {above:?}"))?;
        needs.features = list.split(',').map(|f| f.trim().to_owned()).collect();
    }
    let quota_toml = "the file above as `quota.toml`";
    let redis = format!("a Redis server at `{DOCUMENTED_REDIS}` (password `{REDIS_PASSWORD}`)");
    needs.quota_toml = rest.contains(quota_toml);
    needs.redis = rest.contains(&redis);
    // Every part of the line must be one this check acts on: a typo must fail, not run the
    // block without what it needs.
    let mut left = rest.replace(quota_toml, "").replace(&redis, "");
    if !needs.features.is_empty() {
        left = left.replace(&format!("`--features {}`", needs.features.join(",")), "");
    }
    let left = left.replace(" and ", " ");
    if left.contains(|c: char| !(c == ',' || c == ':' || c.is_whitespace())) {
        return Err(format!(
            "a \"Needs\" line with a part this check does not know ({left:?} is left): {above:?}"
        ));
    }
    if needs == Needs::default() {
        return Err(format!(
            "a \"Needs\" line that names nothing this check knows: {above:?}"
        ));
    }
    Ok(Some(needs))
}

/// The `cargo xtask test` stage.
pub fn run_blocks() -> Result<(), String> {
    let root = root();
    let readme = std::fs::read_to_string(root.join("README.md"))
        .map_err(|error| format!("could not read README.md: {error}"))?;
    let blocks = blocks(&readme)?;
    let scratch = root.join("target/readme");
    // Outside this workspace, as a user's project is (cargo new inside it would join it).
    let projects = std::env::temp_dir().join(format!("quota-readme-{}", std::process::id()));
    let _remove = RemoveOnDrop(projects.clone());
    // One target directory for every block: the dependencies build once.
    let target = scratch.join("target");
    let mut redis: Option<Redis> = None;
    let (mut ran, mut compared) = (0, 0);
    for (index, block) in blocks.iter().enumerate() {
        if !block.info.starts_with("rust") {
            continue;
        }
        if let Some(file) = block
            .above
            .strip_prefix("<!-- ")
            .and_then(|rest| rest.strip_suffix(" -->"))
        {
            let text = std::fs::read_to_string(root.join(file))
                .map_err(|error| format!("README.md line {}: {file}: {error}", block.line))?;
            if text != block.body {
                return Err(format!(
                    "README.md line {}: the block differs from {file}",
                    block.line
                ));
            }
            println!(
                "README.md line {}: {file}, byte for byte (its own tests run it)",
                block.line
            );
            compared += 1;
            continue;
        }
        let needs = needs(&block.above)
            .map_err(|error| format!("README.md line {}: {error}", block.line))?
            .unwrap_or_default();
        if !needs.features.is_empty() && !block.info.contains("ignore") {
            return Err(format!(
                "README.md line {}: a block that needs features must be `rust,ignore` (the README \
                 is also a doc test, built without them)",
                block.line
            ));
        }
        let mut main = block.body.clone();
        let mut quota_toml = None;
        if needs.quota_toml {
            let toml = blocks[..index]
                .iter()
                .rev()
                .find(|b| b.info == "toml")
                .ok_or_else(|| format!("README.md line {}: no toml block above", block.line))?;
            quota_toml = Some(toml.body.clone());
        }
        if needs.redis {
            let server = match &mut redis {
                Some(server) => server,
                None => redis.insert(Redis::start(&scratch)?),
            };
            let address = format!("127.0.0.1:{}", server.port);
            main = main.replace(DOCUMENTED_REDIS, &address);
            quota_toml = quota_toml.map(|text| text.replace(DOCUMENTED_REDIS, &address));
        }
        let dir = projects.join(format!("line-{}", block.line));
        new_project(&dir, &needs.features)?;
        std::fs::write(dir.join("src/main.rs"), &main)
            .map_err(|error| format!("could not write {}: {error}", dir.display()))?;
        if let Some(text) = quota_toml {
            std::fs::write(dir.join("quota.toml"), text)
                .map_err(|error| format!("could not write quota.toml: {error}"))?;
        }
        println!(
            "README.md line {}: a new project{}{}",
            block.line,
            if needs.features.is_empty() {
                String::new()
            } else {
                format!(" with --features {}", needs.features.join(","))
            },
            if needs.redis {
                ", against redis-server"
            } else {
                ""
            }
        );
        build_and_run(&dir, &target)
            .map_err(|error| format!("README.md line {}: {error}", block.line))?;
        ran += 1;
    }
    // Every Rust fence, however written, must have been run or compared above (an indented
    // or `~~~` fence would be skipped by the parser silently).
    let fences = readme
        .lines()
        .filter(|line| {
            let line = line.trim_start();
            line.starts_with("```rust") || line.starts_with("~~~")
        })
        .count();
    if fences != ran + compared {
        return Err(format!(
            "README.md has {fences} Rust fences, but {ran} blocks ran and {compared} were \
             compared: write each as a plain ```rust fence at the start of a line"
        ));
    }
    if ran < 4 {
        return Err(format!("only {ran} Rust blocks ran: the README shows more"));
    }
    println!("{ran} README Rust blocks built without warnings and ran");
    Ok(())
}

/// `cargo new` and `cargo add quota-core --path <root>/core [--features ...]`, as the README's
/// "Use from Rust" says; the lock file is the workspace's, so the versions are the tested ones.
fn new_project(dir: &Path, features: &[String]) -> Result<(), String> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)
            .map_err(|error| format!("could not remove {}: {error}", dir.display()))?;
    }
    let parent = dir.parent().expect("a project dir has a parent");
    std::fs::create_dir_all(parent)
        .map_err(|error| format!("could not create {}: {error}", parent.display()))?;
    let dir_text = dir.to_string_lossy();
    command(
        "cargo",
        &[
            "new", "--quiet", "--vcs", "none", "--name", "my-app", &dir_text,
        ],
        &[],
    )?;
    let manifest = dir.join("Cargo.toml");
    std::fs::copy(root().join("Cargo.lock"), dir.join("Cargo.lock"))
        .map_err(|error| format!("could not copy Cargo.lock: {error}"))?;
    let core = root().join("core").to_string_lossy().into_owned();
    let manifest = manifest.to_string_lossy().into_owned();
    let list = features.join(",");
    let mut args = vec![
        "add",
        "--quiet",
        "--manifest-path",
        &manifest,
        "quota-core",
        "--path",
        &core,
    ];
    if !features.is_empty() {
        args.extend(["--features", &list]);
    }
    command("cargo", &args, &[])
}

/// Builds the project (failing on any warning, as a user would see it), then runs it with a
/// time limit in its own directory.
fn build_and_run(dir: &Path, target: &Path) -> Result<(), String> {
    let manifest = dir.join("Cargo.toml");
    let build = Command::new("cargo")
        .args(["build", "--quiet", "--manifest-path"])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", target)
        .env_remove("RUSTFLAGS")
        .output()
        .map_err(|error| format!("could not run cargo build: {error}"))?;
    let stderr = String::from_utf8_lossy(&build.stderr);
    if !build.status.success() {
        return Err(format!("does not build:\n{stderr}"));
    }
    if stderr.contains("warning") {
        return Err(format!("builds with warnings:\n{stderr}"));
    }
    let binary: PathBuf = target.join("debug/my-app");
    let mut child = Command::new(&binary)
        .current_dir(dir)
        .stdin(Stdio::null())
        .spawn()
        .map_err(|error| format!("could not run {}: {error}", binary.display()))?;
    let deadline = Instant::now() + Duration::from_secs(RUN_SECONDS);
    loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(status) if status.success() => return Ok(()),
            Some(status) => return Err(format!("exited with {status}")),
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("still running after {RUN_SECONDS} s"));
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Removes a folder when dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `redis-server` on a free loopback port, with the README's password for the default user
/// and for the user `app`; killed on drop. The mixed-fleet stage runs its stores on one too.
pub(crate) struct Redis {
    child: Child,
    pub(crate) port: u16,
}

impl Redis {
    /// Starts one, its files in `scratch/redis`, and waits until it answers.
    pub(crate) fn start(scratch: &Path) -> Result<Redis, String> {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .map_err(|error| format!("no free port: {error}"))?
            .port();
        let dir = scratch.join("redis");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let port_text = port.to_string();
        let password = format!(">{REDIS_PASSWORD}");
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port_text,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--requirepass", REDIS_PASSWORD])
            .args(["--user", "app", "on", &password, "~*", "&*", "+@all"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .spawn()
            .map_err(|error| format!("could not start redis-server: {error}"))?;
        let server = Redis { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !server.answers() {
            if Instant::now() > deadline {
                return Err(format!(
                    "redis-server on port {port} did not answer within 10 s"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        println!("redis-server on 127.0.0.1:{port} (password {REDIS_PASSWORD:?})");
        Ok(server)
    }

    /// Whether the server answers an authenticated `PING` with `PONG`.
    fn answers(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let auth = format!(
            "*2\r\n$4\r\nAUTH\r\n${}\r\n{REDIS_PASSWORD}\r\n*1\r\n$4\r\nPING\r\n",
            REDIS_PASSWORD.len()
        );
        if stream.write_all(auth.as_bytes()).is_err() {
            return false;
        }
        let mut reply = Vec::new();
        let mut buffer = [0; 64];
        while !reply.ends_with(b"+PONG\r\n") {
            match stream.read(&mut buffer) {
                Ok(n) if n > 0 => reply.extend_from_slice(&buffer[..n]),
                _ => return false,
            }
        }
        true
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_needs_lines() {
        assert_eq!(needs("Some text:").unwrap(), None);
        let all = "Needs `--features redis,metrics`, the file above as `quota.toml`, and a Redis \
                   server at `redis.internal:6379` (password `secret`):";
        assert_eq!(
            needs(all).unwrap(),
            Some(Needs {
                features: vec!["redis".into(), "metrics".into()],
                quota_toml: true,
                redis: true
            })
        );
        assert!(needs("Needs nothing known").is_err());
        // A typo in one part fails instead of dropping that part.
        let typo = "Needs `--features redis` and a Redis server at `redis.internal:6380` \
                    (password `secret`):";
        assert!(needs(typo).is_err());
        let typo = "Needs `--features redis` and the file above as `quota.tom`:";
        assert!(needs(typo).is_err());
        assert_eq!(
            needs("Needs `--features redis`:").unwrap(),
            Some(Needs {
                features: vec!["redis".into()],
                ..Needs::default()
            })
        );
    }

    #[test]
    fn finds_blocks_and_the_lines_above() {
        let text = "a\n```rust\nfn main() {}\n```\nb\n```toml\nx = 1\n```\n";
        let found = blocks(text).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!((found[0].line, found[0].above.as_str()), (2, "a"));
        assert_eq!(found[0].body, "fn main() {}\n");
        assert_eq!(
            (found[1].info.as_str(), found[1].body.as_str()),
            ("toml", "x = 1\n")
        );
        assert!(blocks("```rust\nnot closed\n").is_err());
    }
}
