//! Module structure: no import circle among the top-level modules of
//! `mm/src` or `iter/src`.
//!
//! The graph is built from the source text the way a reader follows it: an
//! edge `a -> b` for every `crate::b` that a file of module `a` names (in a
//! path or inside `use crate::{...}`), outside its `#[cfg(test)] mod tests`.
//! The crate root (`lib.rs`) holds the shared types (`Machine`, `Sys`) and is
//! not a node.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read source dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The identifier starting at byte `i` of `s`.
fn ident_at(s: &str, i: usize) -> &str {
    let rest = &s[i..];
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    &rest[..end]
}

/// The modules a source text names through `crate::`.
fn crate_refs(src: &str) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    for (i, _) in src.match_indices("crate::") {
        let after = i + "crate::".len();
        if src[after..].starts_with('{') {
            // `use crate::{a::X, b, c::{..}}`: the first segment of each item.
            let body = &src[after + 1..];
            let mut depth = 0;
            let mut start = true;
            for (j, c) in body.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && (c.is_ascii_alphabetic() || c == '_') => {
                        refs.insert(ident_at(body, j).to_string());
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            refs.insert(ident_at(src, after).to_string());
        }
    }
    refs
}

/// The top-level module graph of the crate whose sources are in `src`.
fn module_graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut graph = Graph::new();
    for file in &files {
        let rel = file.strip_prefix(src).expect("under src");
        let first = rel.components().next().expect("non-empty path");
        let top = first.as_os_str().to_string_lossy();
        let top = top.strip_suffix(".rs").unwrap_or(&top).to_string();
        if top == "lib" || top == "main" {
            continue;
        }
        let text = fs::read_to_string(file).expect("read source");
        // Unit tests may reach anywhere; they are not part of the structure.
        let text = match text.find("#[cfg(test)]\nmod tests") {
            Some(i) => &text[..i],
            None => &text[..],
        };
        let refs = crate_refs(text);
        graph.entry(top).or_default().extend(refs);
    }
    // Keep only edges to other modules of this crate.
    let mods: BTreeSet<String> = graph.keys().cloned().collect();
    for (module, refs) in graph.iter_mut() {
        refs.retain(|r| r != module && mods.contains(r));
    }
    graph
}

/// One circle of `graph`, as `a -> b -> a`, if there is any.
fn find_circle(graph: &Graph) -> Option<String> {
    fn visit<'g>(
        graph: &'g Graph,
        node: &'g str,
        path: &mut Vec<&'g str>,
        done: &mut BTreeSet<&'g str>,
    ) -> Option<String> {
        if let Some(at) = path.iter().position(|n| *n == node) {
            let mut circle = path[at..].to_vec();
            circle.push(node);
            return Some(circle.join(" -> "));
        }
        if done.contains(node) {
            return None;
        }
        path.push(node);
        for next in &graph[node] {
            if let Some(c) = visit(graph, next, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node);
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(graph, node, &mut Vec::new(), &mut done))
}

fn crate_src(krate: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(krate)
        .join("src")
}

#[test]
fn mm_modules_have_no_import_circle() {
    let graph = module_graph(&crate_src("mm"));
    assert!(graph.contains_key("gup") && graph["gup"].contains("fault"));
    assert_eq!(find_circle(&graph), None, "import circle in mm/src");
}

#[test]
fn iter_modules_have_no_import_circle() {
    let graph = module_graph(&crate_src("iter"));
    assert!(graph.contains_key("splice") && graph["splice"].contains("pipe"));
    assert_eq!(find_circle(&graph), None, "import circle in iter/src");
}

#[test]
fn the_checker_finds_a_circle() {
    let mut graph = Graph::new();
    graph.insert("a".into(), ["b".to_string()].into());
    graph.insert("b".into(), ["c".to_string()].into());
    graph.insert("c".into(), ["a".to_string()].into());
    assert_eq!(find_circle(&graph).as_deref(), Some("a -> b -> c -> a"));
    graph.get_mut("c").unwrap().clear();
    assert_eq!(find_circle(&graph), None);
    let refs = crate_refs("use crate::{a::X, b, c::{d, e}};\nfn f() { crate::g::h(); }");
    assert_eq!(refs, ["a", "b", "c", "g"].map(String::from).into());
}
