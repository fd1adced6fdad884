//! Architecture rules that the compiler does not check, read off the
//! sources (as rust-analyzer's tidy tests do), so a change that breaks one
//! fails here with the file to look at.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn crates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())).flatten() {
            let p = entry.path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The code of a file without comments and without its unit tests.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines().map(|l| l.split("//").next().unwrap_or_default()).collect::<Vec<_>>().join("\n")
}

/// The sibling modules a file of `atoll-server/src/clusters` names, through
/// `super::x` or `crate::clusters::x`, including inside `use` groups.
fn siblings(code: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for prefix in ["super::", "crate::clusters::"] {
        for (i, _) in code.match_indices(prefix) {
            let rest = &code[i + prefix.len()..];
            let names: Vec<&str> = match rest.strip_prefix('{') {
                Some(group) => group.split('}').next().unwrap_or_default().split(',').collect(),
                None => vec![rest],
            };
            for n in names {
                let n: String = n.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                if modules.contains(&n) {
                    found.insert(n);
                }
            }
        }
    }
    found
}

/// A path of modules that leads back to where it started, if any.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == n) {
            let mut cycle = path[at..].to_vec();
            cycle.push(n.to_string());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for next in graph.get(n).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn cluster_modules_depend_downwards_only() {
    let dir = crates_dir().join("atoll-server/src/clusters");
    let files = rust_files(&dir);
    let name = |p: &Path| p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let modules: BTreeSet<String> = files.iter().map(|p| name(p)).filter(|n| n != "mod").collect();
    assert!(modules.len() >= 5, "expected the cluster modules in {}", dir.display());
    let graph: BTreeMap<String, BTreeSet<String>> = files
        .iter()
        .filter(|p| name(p) != "mod")
        .map(|p| {
            let mut deps = siblings(&code(p), &modules);
            deps.remove(&name(p));
            (name(p), deps)
        })
        .collect();
    // mod.rs only declares the modules: any item there would be a place
    // for circles to come back through.
    let root = code(&dir.join("mod.rs"));
    let items: Vec<&str> = root.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with("pub mod ")).collect();
    assert!(items.is_empty(), "clusters/mod.rs should only declare modules, found: {items:?}");
    if let Some(cycle) = find_cycle(&graph) {
        panic!("files in atoll-server/src/clusters import each other in a circle: {}", cycle.join(" → "));
    }
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let g = |edges: &[(&str, &str)]| {
        let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            m.entry(a.to_string()).or_default().insert(b.to_string());
            m.entry(b.to_string()).or_default();
        }
        m
    };
    assert_eq!(find_cycle(&g(&[("a", "b"), ("b", "c")])), None);
    assert_eq!(find_cycle(&g(&[("a", "b"), ("b", "c"), ("c", "a")])), Some(vec!["a".into(), "b".into(), "c".into(), "a".into()]));
    let modules: BTreeSet<String> = ["steps", "writer", "status"].iter().map(|s| s.to_string()).collect();
    let found = siblings("use super::steps::{self, target};\nuse super::{status, writer};\nlet x = crate::clusters::steps::y;", &modules);
    assert_eq!(found, modules);
}

/// Engine knowledge lives in `atoll-engine`: the SQL and `mariadbd`
/// options only a Galera cluster understands appear nowhere else.
#[test]
fn engine_knowledge_stays_in_the_engine_crate() {
    let markers = [
        "wsrep_provider_options",
        "wsrep_sync_wait",
        "SHOW GLOBAL STATUS",
        "SET GLOBAL",
        "CREATE USER",
        "--wsrep-new-cluster",
        "--wsrep-start-position",
        "wsrep_local_state",
    ];
    let mut found = Vec::new();
    for krate in std::fs::read_dir(crates_dir()).expect("crates").flatten() {
        let name = krate.file_name().to_string_lossy().into_owned();
        if name == "atoll-engine" || !krate.path().join("src").is_dir() {
            continue;
        }
        for file in rust_files(&krate.path().join("src")) {
            let code = code(&file);
            for m in markers.iter().filter(|m| code.contains(**m)) {
                found.push(format!("{} mentions {m:?}", file.display()));
            }
        }
    }
    assert!(found.is_empty(), "engine knowledge outside atoll-engine (move it there):\n{}", found.join("\n"));
}
