//! Imports run one way between the files of a crate: no file depends, through any chain of
//! imports, on a file that depends on it. A parent module that re-exports its children is a
//! facade, so a child that needs something shared imports it from the sibling that defines it,
//! never from the parent (which would close a circle through the re-export's owner).
//!
//! The check reads the sources (no compiler): every `use` and every `crate::`/`super::`/
//! `self::`/child-module path outside comments, strings and `#[cfg(test)]` modules is an edge
//! from its file to the file that defines the item, following `pub use` re-exports to their
//! source. A circle is printed with the path that made each edge.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The crates whose files are checked.
const CRATES: &[&str] = &[
    "core",
    "driver",
    "runtime-tokio",
    "runtime-smol",
    "sim",
    "cli",
];

type ModPath = Vec<String>;

#[test]
fn imports_run_one_way_in_every_crate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut report = String::new();
    for krate in CRATES {
        let graph = Graph::read(&root.join(krate).join("src"));
        assert!(
            !graph.files.is_empty(),
            "{krate}: no sources found under {}",
            root.join(krate).join("src").display()
        );
        for circle in graph.circles() {
            report.push_str(&format!("{krate}: a circle of {} files\n", circle.len()));
            let members: BTreeSet<&ModPath> = circle.iter().collect();
            for from in &circle {
                for (to, why) in &graph.edges[from] {
                    if members.contains(to) {
                        report.push_str(&format!("  {} -> {}   ({why})\n", name(from), name(to)));
                    }
                }
            }
        }
    }
    assert!(report.is_empty(), "imports run in circles:\n{report}");
}

#[test]
fn the_check_finds_a_circle_through_a_facade() {
    // A parent defining what its child uses, while re-exporting the child: a circle.
    let files = BTreeMap::from([
        (
            vec![],
            "mod child;\npub use child::Thing;\npub const K: usize = 1;\n".to_string(),
        ),
        (
            vec!["child".to_string()],
            "use super::K;\npub struct Thing([u8; K]);\n".to_string(),
        ),
    ]);
    let graph = Graph::from_sources(files);
    assert_eq!(graph.circles().len(), 1);

    // The same through the facade's re-export of a sibling: no circle.
    let files = BTreeMap::from([
        (
            vec![],
            "mod a;\nmod b;\npub use a::K;\npub use b::Thing;\n".to_string(),
        ),
        (
            vec!["a".to_string()],
            "pub const K: usize = 1;\n".to_string(),
        ),
        (
            vec!["b".to_string()],
            "use super::K; // from a\n#[cfg(test)]\nmod tests { use crate::b::Thing; }\n\
             pub struct Thing([u8; K]);\nconst S: &str = \"super::Thing\";\n"
                .to_string(),
        ),
    ]);
    assert!(Graph::from_sources(files).circles().is_empty());
}

fn name(m: &ModPath) -> String {
    if m.is_empty() {
        "lib".to_string()
    } else {
        m.join("::")
    }
}

/// Files as module paths, with their dependencies.
struct Graph {
    files: BTreeMap<ModPath, String>,
    /// `from` → (`to`, the path that made the edge).
    edges: BTreeMap<ModPath, BTreeMap<ModPath, String>>,
}

impl Graph {
    fn read(src: &Path) -> Graph {
        let mut files = BTreeMap::new();
        let mut stack = vec![src.to_path_buf()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path: PathBuf = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let rel = path.strip_prefix(src).expect("under src");
                    let mut parts: ModPath = rel
                        .with_extension("")
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect();
                    if parts
                        .last()
                        .is_some_and(|l| l == "mod" || l == "lib" || l == "main")
                    {
                        parts.pop();
                    }
                    let text = fs::read_to_string(&path).expect("readable source");
                    files.insert(parts, text);
                }
            }
        }
        Graph::from_sources(files)
    }

    fn from_sources(raw: BTreeMap<ModPath, String>) -> Graph {
        let code: BTreeMap<ModPath, String> = raw
            .iter()
            .map(|(m, text)| (m.clone(), without_tests(&strip(text))))
            .collect();
        let known: BTreeSet<ModPath> = code.keys().cloned().collect();
        let mut reexports: BTreeMap<ModPath, BTreeMap<String, ModPath>> = BTreeMap::new();
        let mut children: BTreeMap<ModPath, Vec<String>> = BTreeMap::new();
        for (m, src) in &code {
            let toks = tokens(src);
            children.insert(m.clone(), declared_children(&toks));
            for (public, tree) in use_trees(&toks) {
                if !public {
                    continue;
                }
                for (path, alias) in expand(&tree) {
                    if let Some(abs) = absolute(m, &path, &known) {
                        reexports.entry(m.clone()).or_default().insert(alias, abs);
                    }
                }
            }
        }
        let resolver = Resolver {
            known: &known,
            reexports: &reexports,
        };
        let mut edges: BTreeMap<ModPath, BTreeMap<ModPath, String>> = BTreeMap::new();
        for (m, src) in &code {
            let toks = tokens(src);
            let out = edges.entry(m.clone()).or_default();
            let mut add = |path: &[String]| {
                if let Some(abs) = absolute(m, path, &known) {
                    let to = resolver.resolve(&abs, 0);
                    if &to != m {
                        out.entry(to).or_insert_with(|| path.join("::"));
                    }
                }
            };
            for (_, tree) in use_trees(&toks) {
                for (mut path, _) in expand(&tree) {
                    if path.last().is_some_and(|s| s == "*") {
                        path.pop();
                    }
                    add(&path);
                }
            }
            let kids = &children[m];
            for path in inline_paths(&toks) {
                if ["crate", "super", "self"].contains(&path[0].as_str()) || kids.contains(&path[0])
                {
                    add(&path);
                }
            }
        }
        Graph { files: raw, edges }
    }

    /// Strongly connected components of more than one file (Tarjan).
    fn circles(&self) -> Vec<Vec<ModPath>> {
        struct State<'a> {
            g: &'a Graph,
            index: BTreeMap<&'a ModPath, usize>,
            low: BTreeMap<&'a ModPath, usize>,
            stack: Vec<&'a ModPath>,
            on: BTreeSet<&'a ModPath>,
            out: Vec<Vec<ModPath>>,
        }
        fn visit<'a>(s: &mut State<'a>, v: &'a ModPath) {
            let i = s.index.len();
            s.index.insert(v, i);
            s.low.insert(v, i);
            s.stack.push(v);
            s.on.insert(v);
            let g = s.g;
            for w in g.edges.get(v).into_iter().flat_map(|e| e.keys()) {
                if !s.index.contains_key(w) {
                    visit(s, w);
                    let lw = s.low[w];
                    let lv = s.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(lw);
                } else if s.on.contains(w) {
                    let iw = s.index[w];
                    let lv = s.low.get_mut(v).expect("visited");
                    *lv = (*lv).min(iw);
                }
            }
            if s.low[v] == s.index[v] {
                let mut comp = Vec::new();
                while let Some(w) = s.stack.pop() {
                    s.on.remove(w);
                    comp.push(w.clone());
                    if w == v {
                        break;
                    }
                }
                if comp.len() > 1 {
                    comp.sort();
                    s.out.push(comp);
                }
            }
        }
        let mut s = State {
            g: self,
            index: BTreeMap::new(),
            low: BTreeMap::new(),
            stack: Vec::new(),
            on: BTreeSet::new(),
            out: Vec::new(),
        };
        for v in self.edges.keys() {
            if !s.index.contains_key(v) {
                visit(&mut s, v);
            }
        }
        s.out
    }
}

/// Follows paths to the file that defines their item.
struct Resolver<'a> {
    known: &'a BTreeSet<ModPath>,
    reexports: &'a BTreeMap<ModPath, BTreeMap<String, ModPath>>,
}

impl Resolver<'_> {
    fn resolve(&self, path: &[String], depth: usize) -> ModPath {
        for i in (0..=path.len()).rev() {
            let m = &path[..i];
            if self.known.contains(m) {
                if let (Some(next), true) = (path.get(i), depth < 20) {
                    if let Some(target) = self.reexports.get(m).and_then(|r| r.get(next)) {
                        let mut p = target.clone();
                        p.extend_from_slice(&path[i + 1..]);
                        return self.resolve(&p, depth + 1);
                    }
                }
                return m.to_vec();
            }
        }
        Vec::new()
    }
}

/// A path as written in module `m`, made absolute (`None`: another crate's).
fn absolute(m: &ModPath, path: &[String], known: &BTreeSet<ModPath>) -> Option<ModPath> {
    let (first, rest) = path.split_first()?;
    match first.as_str() {
        "crate" => Some(rest.to_vec()),
        "self" => Some(m.iter().chain(rest).cloned().collect()),
        "super" => {
            let mut base = m.clone();
            base.pop();
            let mut rest = rest;
            while rest.first().is_some_and(|s| s == "super") {
                base.pop();
                rest = &rest[1..];
            }
            base.extend_from_slice(rest);
            Some(base)
        }
        _ => {
            let mut child = m.clone();
            child.push(first.clone());
            known
                .contains(&child)
                .then(|| m.iter().chain(path).cloned().collect())
        }
    }
}

/// The source without comments and with string and char literals emptied.
fn strip(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                out.push(' ');
            }
            b'r' if (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#'))
                && (i == 0 || !is_ident(b[i - 1])) =>
            {
                let mut j = i + 1;
                let mut hashes = 0;
                while b.get(j) == Some(&b'#') {
                    hashes += 1;
                    j += 1;
                }
                if b.get(j) != Some(&b'"') {
                    out.push('r');
                    i += 1;
                    continue;
                }
                j += 1;
                loop {
                    if j >= b.len() {
                        break;
                    }
                    if b[j] == b'"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&b'#')) {
                        j += 1 + hashes;
                        break;
                    }
                    j += 1;
                }
                out.push_str("\"\"");
                i = j;
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
                out.push_str("\"\"");
            }
            b'\'' if b.get(i + 1) == Some(&b'\\') => {
                i += 2;
                while i < b.len() && b[i] != b'\'' {
                    i += 1;
                }
                i += 1;
                out.push_str("' '");
            }
            b'\'' if b.get(i + 2) == Some(&b'\'') => {
                i += 3;
                out.push_str("' '");
            }
            c => {
                // Multi-byte UTF-8 outside literals and comments does not occur in paths.
                out.push(if c.is_ascii() { c as char } else { ' ' });
                i += 1;
            }
        }
    }
    out
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The source without its `#[cfg(test)]` modules (tests may import anything).
fn without_tests(src: &str) -> String {
    let mut out = src.to_string();
    while let Some(at) = out.find("#[cfg(test)]") {
        let rest = &out[at + "#[cfg(test)]".len()..];
        let trimmed = skip_attributes(rest);
        let Some(after_mod) = trimmed.strip_prefix("mod ") else {
            // Not a module: keep the item, drop only the attribute.
            out.replace_range(at..at + "#[cfg(test)]".len(), "");
            continue;
        };
        let start_of_body = out.len() - after_mod.len();
        let Some(open) = out[start_of_body..].find(['{', ';']) else {
            break;
        };
        let open = start_of_body + open;
        if out.as_bytes()[open] == b';' {
            out.replace_range(at..=open, "");
            continue;
        }
        let mut depth = 0;
        let mut end = out.len();
        for (k, c) in out[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + k + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.replace_range(at..end, "");
    }
    out
}

fn skip_attributes(mut s: &str) -> &str {
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix("#[") {
            match rest.find(']') {
                Some(end) => s = &rest[end + 1..],
                None => return s,
            }
        } else {
            return s;
        }
    }
}

/// Identifiers, `::` and single punctuation characters.
fn tokens(src: &str) -> Vec<String> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if is_ident(c) {
            let start = i;
            while i < b.len() && is_ident(b[i]) {
                i += 1;
            }
            out.push(src[start..i].to_string());
        } else if c == b':' && b.get(i + 1) == Some(&b':') {
            out.push("::".to_string());
            i += 2;
        } else if c.is_ascii_whitespace() {
            i += 1;
        } else {
            out.push((c as char).to_string());
            i += 1;
        }
    }
    out
}

/// `mod name;` declarations.
fn declared_children(toks: &[String]) -> Vec<String> {
    toks.windows(3)
        .filter(|w| w[0] == "mod" && w[2] == ";")
        .map(|w| w[1].clone())
        .collect()
}

/// Every `use` tree, with whether it is a re-export (`pub use`, `pub(...) use`).
fn use_trees(toks: &[String]) -> Vec<(bool, Vec<String>)> {
    let mut out = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        if t != "use" {
            continue;
        }
        let public = (i >= 1 && toks[i - 1] == "pub")
            || (i >= 4 && toks[i - 1] == ")" && toks[i - 4] == "pub")
            || (i >= 5 && toks[i - 1] == ")" && toks[i - 5] == "pub");
        let end = toks[i..]
            .iter()
            .position(|t| t == ";")
            .map_or(toks.len(), |p| i + p);
        out.push((public, toks[i + 1..end].to_vec()));
    }
    out
}

/// A use tree's leaves: (path, the name it is known by).
fn expand(tree: &[String]) -> Vec<(Vec<String>, String)> {
    let mut out = Vec::new();
    expand_into(tree, &[], &mut out);
    out
}

fn expand_into(tree: &[String], prefix: &[String], out: &mut Vec<(Vec<String>, String)>) {
    let mut path = prefix.to_vec();
    let mut i = 0;
    while i < tree.len() {
        match tree[i].as_str() {
            "::" => i += 1,
            "{" => {
                // Split the group at top-level commas.
                let mut depth = 0;
                let mut start = i + 1;
                for j in i..tree.len() {
                    match tree[j].as_str() {
                        "{" => depth += 1,
                        "}" => {
                            depth -= 1;
                            if depth == 0 {
                                if start < j {
                                    expand_into(&tree[start..j], &path, out);
                                }
                                return;
                            }
                        }
                        "," if depth == 1 => {
                            if start < j {
                                expand_into(&tree[start..j], &path, out);
                            }
                            start = j + 1;
                        }
                        _ => {}
                    }
                }
                return;
            }
            "as" => {
                if let Some(alias) = tree.get(i + 1) {
                    out.push((path.clone(), alias.clone()));
                }
                return;
            }
            "self" if !path.is_empty() => i += 1,
            seg => {
                path.push(seg.to_string());
                i += 1;
            }
        }
    }
    if let Some(last) = path.last().cloned() {
        out.push((path, last));
    }
}

/// Paths of two or more segments written inline (`a::b::c`), not in `use` trees.
fn inline_paths(toks: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut i = 0;
    let mut in_use = false;
    while i < toks.len() {
        if toks[i] == "use" {
            in_use = true;
        } else if toks[i] == ";" {
            in_use = false;
        }
        let starts = !in_use
            && is_ident(toks[i].as_bytes()[0])
            && toks.get(i + 1).is_some_and(|t| t == "::")
            && (i == 0 || toks[i - 1] != "::");
        if starts {
            let mut path = vec![toks[i].clone()];
            let mut j = i + 1;
            while toks.get(j).is_some_and(|t| t == "::")
                && toks.get(j + 1).is_some_and(|t| is_ident(t.as_bytes()[0]))
            {
                path.push(toks[j + 1].clone());
                j += 2;
            }
            out.push(path);
            i = j;
        } else {
            i += 1;
        }
    }
    out
}
