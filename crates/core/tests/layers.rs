//! Core's modules form layers: the `crate::` paths between them make a
//! directed graph with no cycle, and no module is long outside its tests.
//!
//! `cargo test -p salestrack-core --test layers -- --nocapture` prints the
//! graph, lowest layer first.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module of core: its path (`wire::event`) and its source up to its tests.
/// Lines of a module outside its `#[cfg(test)]` part, at most.
const MAX_LINES: usize = 420;

struct Module {
    path: String,
    code: String,
}

fn modules() -> Vec<Module> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    collect(&root, &mut files);
    files
        .into_iter()
        .map(|file| {
            let relative = file.strip_prefix(&root).expect("under src");
            let mut parts: Vec<String> = relative
                .with_extension("")
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
                parts.pop();
            }
            let source = std::fs::read_to_string(&file).expect("readable source");
            let code = source
                .split("#[cfg(test)]")
                .next()
                .unwrap_or_default()
                .lines()
                .filter(|line| !line.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            Module {
                path: parts.join("::"),
                code,
            }
        })
        .collect()
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("readable dir")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// The modules `module` names: `crate::a::b::...` (the longest known
/// prefix), `super::x` and `self::x`, and its own `mod x;` children.
fn edges(module: &Module, known: &BTreeSet<String>) -> BTreeSet<String> {
    let parent = module.path.rsplit_once("::").map_or("", |(p, _)| p);
    let mut out = BTreeSet::new();
    let mut push = |base: &str, rest: &str| {
        let mut path = base.to_owned();
        let mut best = None;
        for segment in rest.split("::") {
            let segment: String = segment
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if segment.is_empty() {
                break;
            }
            path = match path.is_empty() {
                true => segment,
                false => format!("{path}::{segment}"),
            };
            if known.contains(&path) {
                best = Some(path.clone());
            }
        }
        if let Some(target) = best.filter(|t| *t != module.path) {
            out.insert(target);
        }
    };
    for (prefix, base) in [
        ("crate::", ""),
        ("super::", parent),
        ("self::", module.path.as_str()),
    ] {
        for (at, _) in module.code.match_indices(prefix) {
            let before = module.code[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            push(base, &module.code[at + prefix.len()..]);
        }
    }
    for line in module.code.lines() {
        let line = line.trim();
        if let Some(child) = line
            .strip_prefix("pub mod ")
            .or_else(|| line.strip_prefix("mod "))
            .and_then(|rest| rest.strip_suffix(';'))
        {
            push(&module.path, child);
        }
    }
    out
}

#[test]
fn cores_modules_form_an_acyclic_graph() {
    let modules = modules();
    let known: BTreeSet<String> = modules.iter().map(|m| m.path.clone()).collect();
    let graph: BTreeMap<String, BTreeSet<String>> = modules
        .iter()
        .filter(|m| !m.path.is_empty())
        .map(|m| (m.path.clone(), edges(m, &known)))
        .collect();

    // Kahn's algorithm: peel off modules that depend on nothing left.
    let mut left = graph.clone();
    let mut layers: Vec<Vec<String>> = Vec::new();
    while !left.is_empty() {
        let free: Vec<String> = left
            .iter()
            .filter(|(_, deps)| deps.iter().all(|d| !left.contains_key(d)))
            .map(|(m, _)| m.clone())
            .collect();
        assert!(
            !free.is_empty(),
            "core's modules import each other in a cycle among: {:#?}",
            left
        );
        for m in &free {
            left.remove(m);
        }
        layers.push(free);
    }
    for (n, layer) in layers.iter().enumerate() {
        println!("layer {n}");
        for m in layer {
            let deps: Vec<&str> = graph[m].iter().map(String::as_str).collect();
            println!("  {m} -> {}", deps.join(", "));
        }
    }
    assert!(layers.len() > 2, "the graph was read: {layers:?}");
    assert!(
        graph["wire::event"].contains("event"),
        "the edges were read: {graph:#?}"
    );
}
#[test]
fn no_module_of_core_is_long_outside_its_tests() {
    let long: Vec<(String, usize)> = modules()
        .into_iter()
        .map(|m| (m.path, m.code.lines().count()))
        .filter(|(_, lines)| *lines > MAX_LINES)
        .collect();
    assert!(long.is_empty(), "modules over {MAX_LINES} lines: {long:?}");
}
