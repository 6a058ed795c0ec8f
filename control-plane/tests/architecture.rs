//! Architecture checks on the crate's internal module import graph.
//!
//! The tests read `src/` as plain text (standard library only, nothing from the crate) and build
//! a graph with one node per source file, named by module path, and an edge A -> B whenever A
//! refers to a path in B: `use crate::b::X`, `use super::x`, `crate::b::f()` or `child::f()` in
//! code, and re-exports such as `pub use child::X`. Declaring a child (`mod x;`) is not an edge.
//! Comments, strings and `#[cfg(test)] mod` blocks are ignored. Paths through re-exports
//! (`crate::Error`, `crate::http::ApiError`) are followed to the module defining the item.
//! So a parent that re-exports or calls a child which uses the parent back (`super::X`) is a
//! cycle too. Such a cycle inside one module below the web layer (a facade: the parent
//! re-exports its children, the children add `impl` blocks to the parent's type) is that
//! module's own business and tolerated; any other cycle, between top-level modules or through
//! the web layer, fails `no_import_cycles`: shared items then belong in a leaf module.
//!
//! See the graph: `cargo test -p control-plane --test architecture -- --nocapture`.
//! `ARCH_SRC=/some/src` checks another tree; it also lets this file run without the crate:
//! `rustc --edition 2024 --test tests/architecture.rs -o /tmp/arch && ARCH_SRC=src /tmp/arch`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// What `provisioning` offers to the rest of the crate: other modules may only name these
/// (a path is allowed when any segment after `provisioning` is listed).
const PROVISIONING_OFFERS: &[&str] = &[
    "Provisioner",
    "CreateTenant",
    "FirstAdmin",
    "ReconcileReport",
    "Faults",
    "FaultPoint",
    "Cluster",
    "TENANT_MIGRATION_LOCK",
    "names",
    "TenantNames",
    "DEFAULT_PLAN",
    "MAX_NAME_CHARS",
    "Created",
    "Servers",
    "AddServer",
    "ClusterSettings",
    "ServerReport",
    "maintenance",
    "Sessions",
];

/// Top-level modules that, with everything under them, form the web layer on top of the crate.
const WEB_LAYER: &[&str] = &["http", "dashboard", "app", "cli"];

/// How many re-exports one path may go through, so a loop of them cannot hang the test.
const MAX_REEXPORT_HOPS: usize = 8;

/// A module path such as `["http", "error"]`; empty for the crate root (`lib.rs`).
type Module = Vec<String>;
/// A token and its 1-based line.
type Token = (usize, String);

struct SourceFile {
    module: Module,
    /// Path for messages, e.g. `src/http/mod.rs`.
    shown: String,
    lines: Vec<String>,
    /// Crate paths the file refers to, made absolute (from the crate root), with their lines.
    refs: Vec<(usize, Vec<String>)>,
    /// Names bound by `use`, so that `crate::x::Name` can be followed to where `Name` lives.
    imports: HashMap<String, Vec<String>>,
}

struct Graph {
    src: PathBuf,
    files: BTreeMap<Module, SourceFile>,
    /// For each module, the modules it uses and on which lines.
    edges: BTreeMap<Module, BTreeMap<Module, BTreeSet<usize>>>,
}

fn src_dir() -> PathBuf {
    // `option_env!`, not `env!`: built by plain rustc there is no manifest, only ARCH_SRC.
    let manifest = option_env!("CARGO_MANIFEST_DIR");
    match (std::env::var_os("ARCH_SRC"), manifest) {
        (Some(dir), _) => dir.into(),
        (None, Some(manifest)) => Path::new(manifest).join("src"),
        (None, None) => panic!("built outside cargo: set ARCH_SRC to the crate's src directory"),
    }
}

fn name(module: &Module) -> String {
    if module.is_empty() {
        "crate".into()
    } else {
        module.join("::")
    }
}

fn top(module: &Module) -> &str {
    module.first().map_or("", String::as_str)
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Collects the `.rs` files below `dir` by module path: `lib.rs` is the root, `http/mod.rs` is
/// `http`, `http/error.rs` is `http::error`. `main.rs` and `bin/` are other crates (they say
/// `control_plane::`, not `crate::`), so they are skipped.
fn rust_files(dir: &Path, module: &Module, out: &mut BTreeMap<Module, PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for path in entries.map(|entry| entry.expect("readable directory").path()) {
        let stem = path.file_stem().unwrap_or_default().to_string_lossy();
        let root = module.is_empty();
        let child = [module.clone(), vec![stem.to_string()]].concat();
        if path.is_dir() && !(root && stem == "bin") {
            rust_files(&path, &child, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") && !(root && stem == "main") {
            // `mod.rs` and `lib.rs` are the module of their directory itself.
            let dir_itself = stem == "mod" || (root && stem == "lib");
            let key = if dir_itself { module.clone() } else { child };
            out.insert(key, path);
        }
    }
}

/// If a comment or a string/char literal starts at `i`, the index just past it.
fn skip_literal(c: &[char], i: usize) -> Option<usize> {
    let at = |k: usize| c.get(k).copied().unwrap_or(' ');
    let past = |k: usize, end: &str| {
        let end: Vec<char> = end.chars().collect();
        let found = (k..c.len()).find(|&j| c[j..].starts_with(&end));
        found.map_or(c.len(), |j| j + end.len())
    };
    // r"..", r#".."#, br"..": `k` is just past the `r`; `r#ident` is no string.
    let raw = |k: usize| {
        let hashes = c[k..].iter().take_while(|&&h| h == '#').count();
        let end = format!("\"{}", "#".repeat(hashes));
        (at(k + hashes) == '"').then(|| past(k + hashes + 1, &end))
    };
    // `b"` and `r"` start literals only where no identifier ends (not in `for"`).
    let starts_token = i == 0 || !is_ident_char(c[i - 1]);
    match (c[i], at(i + 1)) {
        ('/', '/') => Some(past(i, "\n")),
        ('/', '*') => Some(past(i + 2, "*/")),
        ('"', _) => Some(string_end(c, i + 1)),
        ('b', '"') if starts_token => Some(string_end(c, i + 2)),
        ('r', '"' | '#') if starts_token => raw(i + 1),
        ('b', 'r') if starts_token => raw(i + 2),
        ('\'', '\\') => Some(past(i + 3, "'")),
        // `'x'` is a char; `'a` with no closing quote is a lifetime, left alone.
        ('\'', _) if at(i + 2) == '\'' => Some(i + 3),
        _ => None,
    }
}

fn string_end(c: &[char], mut i: usize) -> usize {
    while i < c.len() && c[i] != '"' {
        i += if c[i] == '\\' { 2 } else { 1 };
    }
    (i + 1).min(c.len())
}

/// Identifiers, `::` and single punctuation characters. Comments (doc comments too) and
/// literals make no tokens, so their text can never look like a path or a brace.
fn tokenize(src: &str) -> Vec<Token> {
    let c: Vec<char> = src.chars().collect();
    let (mut tokens, mut line, mut i) = (Vec::new(), 1, 0);
    while i < c.len() {
        let end = skip_literal(&c, i).unwrap_or_else(|| {
            let len = if is_ident_char(c[i]) {
                c[i..].iter().take_while(|&&ch| is_ident_char(ch)).count()
            } else {
                1 + usize::from(c[i..].starts_with(&[':', ':']))
            };
            if !c[i].is_whitespace() {
                tokens.push((line, c[i..i + len].iter().collect()));
            }
            i + len
        });
        line += c[i..end].iter().filter(|&&ch| ch == '\n').count();
        i = end;
    }
    tokens
}

/// A path as written, the line of its last segment, and the name it binds if it comes from a
/// `use` (`use a::b` binds `b`, `use a::b as c` binds `c`, a path in code binds nothing).
struct Written(usize, Vec<String>, Option<String>);

/// Parses the use tree at token `i` (`a::b::{c, d::e as f, self}`, `x::*`) below `path`;
/// returns the index just past it.
fn use_tree(t: &[Token], mut i: usize, mut path: Vec<String>, out: &mut Vec<Written>) -> usize {
    let text = |k: usize| t.get(k).map_or("", |tok| tok.1.as_str());
    while let Some((line, tok)) = t.get(i) {
        i += 1;
        match tok.as_str() {
            "::" => continue,
            "{" => {
                while !["}", ""].contains(&text(i)) {
                    i = use_tree(t, i, path.clone(), out);
                    i += usize::from(text(i) == ",");
                }
                return i + 1;
            }
            "self" if !path.is_empty() => {}
            _ => path.push(tok.clone()),
        }
        if text(i) == "::" {
            continue;
        }
        let mut binds = path.last().filter(|last| *last != "*").cloned();
        if text(i) == "as" {
            binds = Some(text(i + 1).to_string()).filter(|alias| alias != "_");
            i += 2;
        }
        out.push(Written(*line, path, binds));
        return i;
    }
    i
}

/// Every `use` tree, then every `a::b::c` path in code, skipping `#[cfg(test)] mod` blocks.
fn written_paths(t: &[Token]) -> Vec<Written> {
    let text = |k: usize| t.get(k).map_or("", |tok| tok.1.as_str());
    let (mut uses, mut in_code, mut i) = (Vec::new(), Vec::new(), 0);
    while i < t.len() {
        let test_mod = i + 7 + usize::from(text(i + 7) == "pub");
        if (i..i + 7).map(text).collect::<String>() == "#[cfg(test)]" && text(test_mod) == "mod" {
            let mut depth = 0;
            let close = (test_mod..t.len()).find(|&k| {
                depth += i32::from(text(k) == "{") - i32::from(text(k) == "}");
                depth == 0 && ["}", ";"].contains(&text(k))
            });
            i = close.unwrap_or(t.len());
        } else if text(i) == "use" {
            let end = (i..t.len()).find(|&k| text(k) == ";").unwrap_or(t.len());
            use_tree(&t[..end], i + 1, Vec::new(), &mut uses);
            i = end;
        } else if text(i + 1) == "::"
            && text(i).starts_with(|ch: char| ch.is_alphabetic() || ch == '_')
            && !["::", "$", "in"].contains(&text(i.wrapping_sub(1)))
        {
            // `$crate::` is a macro's, `pub(in crate::x)` is visibility: neither is a use.
            let mut path = vec![text(i).to_string()];
            while text(i + 1) == "::" && text(i + 2).starts_with(is_ident_char) {
                path.push(text(i + 2).to_string());
                i += 2;
            }
            in_code.push(Written(t[i].0, path, None));
        }
        i += 1;
    }
    uses.extend(in_code);
    uses
}

impl SourceFile {
    fn parse(module: Module, path: &Path, shown: String, all: &BTreeSet<Module>) -> Self {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{shown}: {e}"));
        let lines = text.lines().map(str::to_string).collect();
        let (refs, imports) = (Vec::new(), HashMap::new());
        let mut file = Self {
            module,
            shown,
            lines,
            refs,
            imports,
        };
        for Written(line, written, binds) in written_paths(&tokenize(&text)) {
            if let Some(path) = file.absolute(&written, all) {
                if let Some(binds) = binds {
                    file.imports.insert(binds, path.clone());
                }
                file.refs.push((line, path));
            }
        }
        file
    }

    /// Makes a written path absolute, or `None` when it does not lead into this crate (std,
    /// other crates, local types). Besides `crate`, `self` and `super`, a path may start with a
    /// child module or with a name that a `use` bound to a module.
    fn absolute(&self, path: &[String], all: &BTreeSet<Module>) -> Option<Module> {
        let (first, rest) = path.split_first()?;
        let mut base = self.module.clone();
        let rest = match first.as_str() {
            "crate" => {
                base.clear();
                rest
            }
            "self" => rest,
            "super" => {
                let ups = 1 + rest.iter().take_while(|s| *s == "super").count();
                base.truncate(base.len().checked_sub(ups)?);
                &path[ups..]
            }
            _ => {
                let import = self.imports.get(first).filter(|t| all.contains(*t));
                match import {
                    Some(target) => base.clone_from(target),
                    None => base.push(first.clone()),
                }
                all.contains(&base).then_some(rest)?
            }
        };
        Some([base, rest.to_vec()].concat())
    }
}

impl Graph {
    fn load() -> Self {
        let (src, mut paths) = (src_dir(), BTreeMap::new());
        rust_files(&src, &Module::new(), &mut paths);
        let all: BTreeSet<Module> = paths.keys().cloned().collect();
        let files: BTreeMap<Module, SourceFile> = paths
            .into_iter()
            .map(|(m, path)| {
                let shown = format!("src/{}", path.strip_prefix(&src).unwrap_or(&path).display());
                (m.clone(), SourceFile::parse(m, &path, shown, &all))
            })
            .collect();
        let mut edges = BTreeMap::<Module, BTreeMap<_, BTreeSet<_>>>::new();
        for file in files.values() {
            for (line, path) in &file.refs {
                if let Some(to) = resolve(&files, path).filter(|to| *to != file.module) {
                    let targets = edges.entry(file.module.clone()).or_default();
                    targets.entry(to).or_default().insert(*line);
                }
            }
        }
        Self { src, files, edges }
    }

    fn uses(&self, module: &Module) -> impl Iterator<Item = &Module> {
        self.edges.get(module).into_iter().flat_map(BTreeMap::keys)
    }

    fn reachable<'g>(&'g self, from: &'g Module) -> BTreeSet<&'g Module> {
        let (mut seen, mut todo) = (BTreeSet::new(), vec![from]);
        while let Some(module) = todo.pop() {
            todo.extend(self.uses(module).filter(|next| seen.insert(*next)));
        }
        seen
    }

    /// Strongly connected components of two or more modules: groups in which every module
    /// reaches every other. With tens of modules, plain reachability is fast enough and easier
    /// to check than Tarjan's algorithm.
    fn cycles(&self) -> Vec<Vec<Module>> {
        let reach: BTreeMap<&Module, BTreeSet<&Module>> =
            self.files.keys().map(|m| (m, self.reachable(m))).collect();
        let mut groups = BTreeSet::new();
        for (module, reached) in &reach {
            let mutual = reached
                .iter()
                .filter(|other| reach[*other].contains(module));
            let group: Vec<Module> = mutual.map(|m| (*m).clone()).collect();
            if group.len() > 1 {
                groups.insert(group);
            }
        }
        groups.into_iter().collect()
    }

    /// `src/gateway/mod.rs:40: use crate::app::AppState;`
    fn cite(&self, module: &Module, line: usize) -> String {
        let file = &self.files[module];
        let code = file.lines.get(line - 1).map_or("", |l| l.trim());
        format!("{}:{line}: {code}", file.shown)
    }

    fn cite_edge(&self, out: &mut String, from: &Module, to: &Module) {
        let _ = writeln!(out, "    {} -> {}", name(from), name(to));
        for &line in &self.edges[from][to] {
            let _ = writeln!(out, "        {}", self.cite(from, line));
        }
    }

    fn listing(&self) -> String {
        let mut out = format!("Module import graph of {}\n", self.src.display());
        out += "Each module, then the modules it uses (`->`) and the lines that use them.\n\n";
        for (module, file) in &self.files {
            let _ = writeln!(out, "{}  ({})", name(module), file.shown);
            for (to, lines) in self.edges.get(module).into_iter().flatten() {
                let lines: Vec<String> = lines.iter().map(usize::to_string).collect();
                let _ = writeln!(out, "    -> {:<28} line {}", name(to), lines.join(", "));
            }
        }
        out += "\nImport cycles (groups of modules that all depend on each other):\n";
        for (n, cycle) in self.cycles().iter().enumerate() {
            let verdict = if tolerated(cycle) {
                "tolerated: inside one module"
            } else {
                "NOT ALLOWED"
            };
            let _ = writeln!(out, "  {}. {} ({verdict})", n + 1, names(cycle));
        }
        out
    }
}

/// The module defining what `path` names: the deepest module on the path, after following
/// names `use`d there (re-exports) to where they come from. Items of the crate root that are
/// not re-exports tell nothing about modules, so they give `None`.
fn resolve(files: &BTreeMap<Module, SourceFile>, path: &[String]) -> Option<Module> {
    let mut path = path.to_vec();
    for _ in 0..MAX_REEXPORT_HOPS {
        let depth = (0..=path.len()).rfind(|&n| files.contains_key(&path[..n]))?;
        let module = path[..depth].to_vec();
        let Some(item) = path.get(depth) else {
            return Some(module);
        };
        let Some(origin) = files[&module].imports.get(item) else {
            return Some(module).filter(|m| !m.is_empty());
        };
        path = [origin.clone(), path[depth + 1..].to_vec()].concat();
    }
    None
}

/// A cycle among the files of one top-level module below the web layer: a facade, the
/// module's own business. Every other cycle crosses modules or runs through the web layer.
fn tolerated(cycle: &[Module]) -> bool {
    let tops: BTreeSet<&str> = cycle.iter().map(top).collect();
    tops.len() == 1 && tops.iter().all(|t| !WEB_LAYER.contains(t))
}

fn names(modules: &[Module]) -> String {
    modules.iter().map(name).collect::<Vec<_>>().join(", ")
}

/// A path from outside into `provisioning` that names nothing it offers.
fn takes_unoffered(path: &[String]) -> bool {
    let offered = |n: &String| PROVISIONING_OFFERS.contains(&n.as_str());
    path.len() > 1 && path[0] == "provisioning" && !path[1..].iter().any(offered)
}

fn verdict(report: &str, problem: &str) {
    assert!(report.is_empty(), "{problem}:\n{report}");
}

#[test]
fn print_module_graph() {
    println!("{}", Graph::load().listing());
}

#[test]
fn no_import_cycles() {
    let graph = Graph::load();
    let mut report = String::new();
    let cycles = graph.cycles();
    for (n, cycle) in cycles.iter().filter(|c| !tolerated(c)).enumerate() {
        let _ = writeln!(report, "cycle {}: {}", n + 1, names(cycle));
        for from in cycle {
            for to in graph.uses(from).filter(|to| cycle.contains(to)) {
                graph.cite_edge(&mut report, from, to);
            }
        }
    }
    verdict(
        &report,
        "modules depend on each other in cycles across modules or through the web layer",
    );
}

#[test]
fn web_layer_is_on_top() {
    let graph = Graph::load();
    let mut report = String::new();
    let in_web = |m: &Module| WEB_LAYER.contains(&top(m));
    // The root only declares modules and re-exports; uses of its re-exports are followed to
    // the defining module and judged where they are written, so the root itself is exempt.
    for from in graph.files.keys().filter(|m| !m.is_empty() && !in_web(m)) {
        for to in graph.uses(from).filter(|to| in_web(to)) {
            graph.cite_edge(&mut report, from, to);
        }
    }
    let problem = format!("modules below the web layer {WEB_LAYER:?} use it");
    verdict(&report, &problem);
}

#[test]
fn provisioning_is_imported_only_to_provision() {
    let graph = Graph::load();
    let mut report = String::new();
    // The root is checked too: a re-export there would be a back door into provisioning.
    let outside = |file: &&SourceFile| top(&file.module) != "provisioning";
    for file in graph.files.values().filter(outside) {
        for (line, path) in file.refs.iter().filter(|(_, path)| takes_unoffered(path)) {
            let (module, path) = (name(&file.module), path.join("::"));
            let cited = graph.cite(&file.module, *line);
            let _ = writeln!(report, "    {module} uses crate::{path}\n        {cited}");
        }
    }
    let problem = format!("provisioning offers only {PROVISIONING_OFFERS:?}, but");
    verdict(&report, &problem);
}
