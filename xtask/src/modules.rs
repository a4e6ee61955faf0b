//! `cargo xtask modules`: the import graph between each crate's top-level modules, and a
//! failure if it has a cycle or a source file over the line limit.
//!
//! An edge `a -> b` is a `crate::b` path in code under module `a` (a `use` or a qualified
//! path; comments and doc links do not count). Top-level modules are the files and folders
//! directly under `src/` (`src/window.rs`, `src/tracker/`); `lib.rs` and `main.rs` are the
//! facades that declare and re-export them, so they are not nodes. Within one module, children
//! use their parent freely: that is nesting, not a cycle between concepts.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The crates whose module graphs are checked.
const CRATES: &[&str] = &["core/src", "web/src", "quota-reqwest/src", "xtask/src"];

/// Source folders outside the crates' `src/` whose files count against the line limit too.
const EXAMPLES: &[&str] = &["core/examples", "quota-reqwest/examples"];

/// The most physical lines a source file may have (unit tests live in their own files).
pub const MAX_LINES: usize = 500;

/// Prints each crate's graph; fails on a cycle or on a file over [`MAX_LINES`].
pub fn check() -> Result<(), String> {
    let mut problems = Vec::new();
    for root in CRATES {
        let graph = graph(Path::new(root))?;
        println!("{root}:");
        for (module, uses) in &graph {
            let uses: Vec<&str> = uses.iter().map(String::as_str).collect();
            println!("  {module} -> {}", uses.join(", "));
        }
        if let Some(cycle) = find_cycle(&graph) {
            problems.push(format!("{root}: import cycle {}", cycle.join(" -> ")));
        }
    }
    for root in CRATES.iter().chain(EXAMPLES) {
        for (file, lines) in long_files(Path::new(root))? {
            problems.push(format!(
                "{}: {lines} lines (at most {MAX_LINES}; tests go in their own file)",
                file.display()
            ));
        }
    }
    if problems.is_empty() {
        println!("no import cycle; no source file over {MAX_LINES} lines");
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// Top-level module -> the other top-level modules its code names.
fn graph(root: &Path) -> Result<BTreeMap<String, BTreeSet<String>>, String> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(root)? {
        let relative = file.strip_prefix(root).map_err(|e| e.to_string())?;
        let first = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .unwrap_or_default();
        let module = first.trim_end_matches(".rs").to_owned();
        if module == "lib" || module == "main" {
            continue;
        }
        let text = fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        let uses = graph.entry(module.clone()).or_default();
        for target in crate_paths(&text) {
            if target != module {
                uses.insert(target);
            }
        }
    }
    // Only edges between modules that exist (a `crate::Name` re-export through the facade is
    // an item of lib.rs, not a module).
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for uses in graph.values_mut() {
        uses.retain(|target| modules.contains(target));
    }
    Ok(graph)
}

/// The first segment after each `crate::` in `text`'s code (not in comments), including the
/// names inside `use crate::{a::X, b::Y}`.
fn crate_paths(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            // `quota_core::` or `my_crate::` are other crates: only a bare `crate::`.
            let before = rest[..at].chars().next_back();
            rest = &rest[at + "crate::".len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    found.extend(segment(item.trim()));
                }
            } else {
                found.extend(segment(rest));
            }
        }
    }
    found
}

/// The leading identifier of `path`, if it is followed by `::` (a module, not an item).
fn segment(path: &str) -> Option<String> {
    let name: String = path
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty() && path[name.len()..].starts_with("::")).then_some(name)
}

/// A cycle in `graph`, as the modules along it (the first repeated at the end), if any.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let start = path.iter().position(|n| n == node).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(node.to_owned());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(node.to_owned(), Mark::Open);
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, marks, path) {
                return Some(cycle);
            }
        }
        path.pop();
        marks.insert(node.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut marks, &mut Vec::new()))
}

/// Source files over [`MAX_LINES`], except test files (`tests.rs`, anything under a `tests/`
/// folder, and the loom model checks).
fn long_files(root: &Path) -> Result<Vec<(PathBuf, usize)>, String> {
    let mut long = Vec::new();
    for file in rust_files(root)? {
        let is_test = file.components().any(|c| c.as_os_str() == "tests")
            || file
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n == "tests.rs" || n.ends_with("_tests.rs"));
        if is_test {
            continue;
        }
        let text = fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        let lines = text.lines().count();
        if lines > MAX_LINES {
            long.push((file, lines));
        }
    }
    Ok(long)
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        for entry in entries {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_in_code_count_and_comments_do_not() {
        let text = "use crate::store::{Store, StoreError};\n\
                    use crate::{text::Quoted, window::Window, Level};\n\
                    /// [`x`](crate::docs::X)\n\
                    let a = crate::clock::now(); // crate::ignored::x\n\
                    quota_core::other::x();";
        assert_eq!(
            crate_paths(text),
            ["store", "text", "window", "clock"].map(String::from)
        );
    }

    #[test]
    fn a_cycle_is_found_and_a_tree_is_not() {
        let edges = |pairs: &[(&str, &str)]| {
            let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for (a, b) in pairs {
                graph
                    .entry(a.to_string())
                    .or_default()
                    .insert(b.to_string());
                graph.entry(b.to_string()).or_default();
            }
            graph
        };
        let tree = edges(&[
            ("tracker", "rules"),
            ("tracker", "store"),
            ("store", "text"),
        ]);
        assert_eq!(find_cycle(&tree), None);
        let cycle = edges(&[("error", "store"), ("store", "window"), ("window", "error")]);
        assert_eq!(
            find_cycle(&cycle).unwrap(),
            ["error", "store", "window", "error"].map(String::from)
        );
    }
}
