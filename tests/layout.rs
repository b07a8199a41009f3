//! The server's house rule (issue 13.8): no two files of `src/server` import
//! each other, directly or round a loop. A file's imports are the
//! `super::…` and `crate::server::…` paths outside its test module,
//! resolved to the file that defines the module they name; a child naming
//! its own parent (`mod.rs`) is not an import of a sibling and is left out.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Every `.rs` file under `dir`, as a path relative to `root`.
fn rust_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .expect("read src/server")
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        let path = entry.path();
        if path.is_dir() {
            rust_files(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(root).expect("under root");
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
}

/// The module path of a file: `primary/term.rs` is `[primary, term]`,
/// `election/mod.rs` is `[election]`, `mod.rs` is `[]`.
fn module_of(file: &str) -> Vec<String> {
    let stem = file.trim_end_matches(".rs");
    let mut parts: Vec<String> = stem.split('/').map(str::to_string).collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The source without its `#[cfg(test)] mod tests` and without comments.
fn code_of(source: &str) -> String {
    let body = match source.find("#[cfg(test)]\nmod tests") {
        Some(at) => &source[..at],
        None => source,
    };
    body.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The module paths a file names, with how many `super`s they start
/// from: `super::a::b` gives `(1, [a, b])`, `super::super::a` gives
/// `(2, [a])`, `crate::server::a::{b, c::d}` gives `(0, [a, b])` and
/// `(0, [a, c, d])`.
fn named_paths(code: &str) -> Vec<(usize, Vec<String>)> {
    let is_path_char = |c: char| c.is_alphanumeric() || c == '_' || c == ':';
    let mut found = Vec::new();
    let mut at = 0;
    while at < code.len() {
        let rest = &code[at..];
        let starts_here = (rest.starts_with("super::") || rest.starts_with("crate::server::"))
            && !code[..at].chars().next_back().is_some_and(is_path_char);
        if !starts_here {
            at += rest.chars().next().map_or(1, char::len_utf8);
            continue;
        }
        let mut rest = rest;
        let mut supers = 0;
        if let Some(after) = rest.strip_prefix("crate::server::") {
            rest = after;
        }
        while let Some(after) = rest.strip_prefix("super::") {
            supers += 1;
            rest = after;
        }
        let path: String = rest.chars().take_while(|&c| is_path_char(c)).collect();
        let base: Vec<String> = split_path(&path);
        let after_path = &rest[path.len()..];
        if let Some(group) = after_path.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for item in group.split(',') {
                let item = item.split(" as ").next().unwrap_or("").trim();
                let mut full = base.clone();
                full.extend(split_path(item));
                found.push((supers, full));
            }
        } else if !base.is_empty() {
            found.push((supers, base));
        }
        at = code.len() - after_path.len();
    }
    found
}

/// `a::b::` as `[a, b]`.
fn split_path(path: &str) -> Vec<String> {
    path.split("::")
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn graph(root: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(root, root, &mut files);
    let modules: BTreeMap<Vec<String>, String> =
        files.iter().map(|f| (module_of(f), f.clone())).collect();
    let mut graph = Graph::new();
    for file in &files {
        let me = module_of(file);
        let code = code_of(&fs::read_to_string(root.join(file)).expect("read a server file"));
        let mut deps = BTreeSet::new();
        for (supers, path) in named_paths(&code) {
            // `super` of `primary/term.rs` (and of `primary/mod.rs`) is one
            // module up from its own.
            let mut full = me[..me.len().saturating_sub(supers)].to_vec();
            full.extend(path);
            let (module, target) = (0..=full.len())
                .rev()
                .find_map(|k| modules.get(&full[..k]).map(|t| (&full[..k], t)))
                .expect("the server's mod.rs matches every path");
            let is_ancestor = me.starts_with(module);
            if !is_ancestor {
                deps.insert(target.clone());
            }
        }
        graph.insert(file.clone(), deps);
    }
    graph
}

/// A loop of imports through `from`, if there is one.
fn cycle_through(graph: &Graph, from: &str) -> Option<Vec<String>> {
    let mut stack = vec![(from.to_string(), vec![from.to_string()])];
    let mut seen = BTreeSet::new();
    while let Some((file, trail)) = stack.pop() {
        for next in graph.get(&file).into_iter().flatten() {
            if next == from {
                return Some(trail.clone());
            }
            if seen.insert(next.clone()) {
                let mut longer = trail.clone();
                longer.push(next.clone());
                stack.push((next.clone(), longer));
            }
        }
    }
    None
}

#[test]
fn no_file_of_the_server_imports_round_a_loop() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/server");
    let graph = graph(&root);
    assert!(graph.len() > 20, "read the server's files: {graph:?}");
    assert!(
        graph["primary/term.rs"].contains("primary/live.rs"),
        "the reader sees the imports: {:?}",
        graph["primary/term.rs"]
    );
    for file in graph.keys() {
        if let Some(cycle) = cycle_through(&graph, file) {
            panic!("import cycle: {} -> {file}", cycle.join(" -> "));
        }
    }
}

#[test]
fn paths_are_read_with_their_supers_and_groups() {
    let code = "use super::super::a;\nuse crate::server::b::{c, d::e as f};\nx::super::g;";
    assert_eq!(
        named_paths(code),
        vec![
            (2, vec!["a".to_string()]),
            (0, vec!["b".to_string(), "c".to_string()]),
            (0, vec!["b".to_string(), "d".to_string(), "e".to_string()]),
        ]
    );
}

#[test]
fn a_loop_of_imports_is_found() {
    let mut graph = Graph::new();
    graph.insert("a.rs".into(), ["b.rs".to_string()].into());
    graph.insert("b.rs".into(), ["c.rs".to_string()].into());
    graph.insert("c.rs".into(), ["a.rs".to_string()].into());
    graph.insert("d.rs".into(), ["a.rs".to_string()].into());
    assert_eq!(
        cycle_through(&graph, "a.rs"),
        Some(vec!["a.rs".into(), "b.rs".into(), "c.rs".into()])
    );
    assert_eq!(cycle_through(&graph, "d.rs"), None);
}
