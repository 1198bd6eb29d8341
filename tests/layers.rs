//! The data path flows one way: no module of `src/` may reach, through
//! `crate::` paths, a module that reaches it back. This test reads the
//! sources (every `src/*` folder or top-level file is one module; its
//! `#[cfg(test)]` blocks and comments are left out) and fails on any cycle,
//! naming the files that close it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module -> (module it names -> the first file that names it).
type Graph = BTreeMap<String, BTreeMap<String, PathBuf>>;

#[test]
fn the_modules_of_src_form_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = graph_of(&src);
    assert!(
        graph.len() > 10,
        "read too few modules from {}: {:?}",
        src.display(),
        graph.keys()
    );
    let cycles = cycles(&graph);
    assert!(
        cycles.is_empty(),
        "module cycles (each line: a module, what it names, in which file):\n{}",
        cycles.join("\n")
    );
}

#[test]
fn the_check_sees_a_cycle_when_there_is_one() {
    let mut g = Graph::new();
    let mut edge = |a: &str, b: &str| {
        g.entry(a.into())
            .or_default()
            .insert(b.into(), PathBuf::from(format!("src/{a}.rs")));
    };
    edge("client", "pool");
    edge("pool", "server");
    edge("server", "client");
    edge("admin", "client");
    let found = cycles(&g);
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(found.iter().all(|l| !l.starts_with("admin")), "{found:?}");
    let names = |text: &str| crate_names(text);
    assert_eq!(
        names("use crate::{pool::Pool, server};\n// crate::admin\nfn f() { crate::wire::x(); }"),
        BTreeSet::from(["pool".into(), "server".into(), "wire".into()])
    );
    assert_eq!(
        names("use crate::a::B;\n#[cfg(test)]\nmod tests {\n    use crate::b::C;\n}\n"),
        BTreeSet::from(["a".into()])
    );
}

fn graph_of(src: &Path) -> Graph {
    let mut graph = Graph::new();
    for file in rust_files(src) {
        let rel = file.strip_prefix(src).unwrap_or(&file);
        let mut parts = rel.iter().map(|p| p.to_string_lossy().into_owned());
        let first = parts.next().unwrap_or_default();
        let module = first.strip_suffix(".rs").unwrap_or(&first).to_owned();
        if module == "main" || module == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let entry = graph.entry(module.clone()).or_default();
        for name in crate_names(&text) {
            if name != module {
                entry.entry(name).or_insert_with(|| rel.to_path_buf());
            }
        }
    }
    graph
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The top-level modules a file names as `crate::name` or in a
/// `use crate::{...}` group, outside comments and `#[cfg(test)]` items.
fn crate_names(text: &str) -> BTreeSet<String> {
    let mut code = String::new();
    let mut skip_depth: Option<i32> = None;
    let mut depth = 0i32;
    let mut test_next = false;
    for line in text.lines() {
        let line = line.split("//").next().unwrap_or("");
        let trimmed = line.trim();
        if trimmed.starts_with("#[cfg(test)]") {
            test_next = true;
            continue;
        }
        let opens = line.matches('{').count() as i32;
        let closes = line.matches('}').count() as i32;
        if test_next && !trimmed.is_empty() {
            test_next = false;
            if opens > closes {
                skip_depth = Some(depth);
            } else {
                // A one-line test-only item.
                continue;
            }
        }
        depth += opens - closes;
        if let Some(d) = skip_depth {
            if depth <= d {
                skip_depth = None;
            }
            continue;
        }
        code.push_str(line);
        code.push('\n');
    }
    let mut names = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let before = code[..i].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find(';').unwrap_or(group.len())];
            // Only the group's first level: `a::b, c::{d, e}` names a and c.
            let mut level = 0;
            let mut items = vec![String::new()];
            for c in group.chars() {
                match c {
                    '{' => level += 1,
                    '}' if level == 0 => break,
                    '}' => level -= 1,
                    ',' if level == 0 => items.push(String::new()),
                    _ => {}
                }
                if let Some(last) = items.last_mut() {
                    last.push(c);
                }
            }
            for item in items {
                let name: String = item
                    .trim_start_matches([',', ' ', '\n'])
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    names.insert(name);
                }
            }
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() && name != "self" {
            names.insert(name);
        }
    }
    names.remove("self");
    names
}

/// Every edge that lies on a cycle, as "a -> b (file)": the edges inside
/// each strongly connected component of more than one module.
fn cycles(g: &Graph) -> Vec<String> {
    let nodes: BTreeSet<&String> = g
        .keys()
        .chain(g.values().flat_map(BTreeMap::keys))
        .collect();
    let reach = |from: &String| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from];
        while let Some(n) = todo.pop() {
            for next in g.get(n).into_iter().flat_map(BTreeMap::keys) {
                if seen.insert(next) {
                    todo.push(next);
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<&String>> =
        nodes.iter().map(|n| (*n, reach(n))).collect();
    let mut out = Vec::new();
    for (a, edges) in g {
        for (b, file) in edges {
            if reaches.get(b).is_some_and(|r| r.contains(a)) {
                out.push(format!("{a} -> {b} ({})", file.display()));
            }
        }
    }
    out
}
