//! A new user's first program, as the crate docs give it: a fresh cargo project that depends on
//! one runtime crate by path, whose `Cargo.toml` dependencies and `main.rs` are the quickstart's
//! two code blocks extracted from the crate's `lib.rs` docs (nothing hand-written here), builds
//! and runs: an echo connection and a mutable put/get on a private network on 127.0.0.1.
//!
//! Fast in a warm tree: the project gets the workspace's `Cargo.lock` and profiles and builds
//! into the workspace's target directory, so its dependencies are cache hits.

use std::path::Path;

use hdht_tests::programs::{cargo, run_ok, target_dir_and_profile, workspace_root};

/// The quickstart's `toml` and Rust code blocks from a crate's `//!` docs.
fn quickstart(lib_rs: &Path) -> (String, String) {
    let src = std::fs::read_to_string(lib_rs).expect("lib.rs");
    let docs: Vec<&str> = src
        .lines()
        .take_while(|l| l.starts_with("//!"))
        .map(|l| {
            l.strip_prefix("//! ")
                .unwrap_or(l.trim_start_matches("//!"))
        })
        .collect();
    let start = docs
        .iter()
        .position(|l| *l == "# Quickstart")
        .expect("a `# Quickstart` section in the crate docs");
    let mut blocks = Vec::new();
    let mut current: Option<(String, Vec<&str>)> = None;
    for line in &docs[start..] {
        match current.take() {
            None => {
                if let Some(lang) = line.strip_prefix("```") {
                    current = Some((lang.to_string(), Vec::new()));
                }
            }
            Some((lang, lines)) if *line == "```" => blocks.push((lang, lines)),
            Some((lang, mut lines)) => {
                lines.push(line);
                current = Some((lang, lines));
            }
        }
    }
    let toml = blocks
        .iter()
        .find(|(lang, _)| lang == "toml")
        .map(|(_, l)| l.join("\n"))
        .expect("a toml block in the quickstart");
    // A Rust block is untagged or tagged `rust`; rustdoc's hidden lines (`# …`) are code too.
    let rust = blocks
        .iter()
        .find(|(lang, _)| lang.is_empty() || lang == "rust")
        .map(|(_, lines)| {
            let code: Vec<&str> = lines
                .iter()
                .map(|l| match *l {
                    "#" => "",
                    l => l.strip_prefix("# ").unwrap_or(l),
                })
                .collect();
            code.join("\n")
        })
        .expect("a Rust block in the quickstart");
    (toml, rust)
}

/// The workspace's `[profile.*]` sections (with them the project's dependencies are built as
/// the workspace builds them: cache hits).
fn workspace_profiles() -> String {
    let manifest = std::fs::read_to_string(workspace_root().join("Cargo.toml")).expect("manifest");
    let mut out = String::new();
    let mut in_profile = false;
    for line in manifest.lines() {
        if line.starts_with('[') {
            in_profile = line.starts_with("[profile.");
        }
        if in_profile {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn fresh_project_runs_the_quickstart(crate_name: &str, dir: &str) {
    let crate_dir = workspace_root().join(dir);
    let (toml, main_rs) = quickstart(&crate_dir.join("src/lib.rs"));
    // The docs depend on the published crate; this project on the working tree's.
    let published = format!("{crate_name} = \"0.1\"");
    assert!(
        toml.contains(&published),
        "the quickstart depends on {published}:\n{toml}"
    );
    let toml = toml.replace(
        &published,
        &format!(
            "{crate_name} = {{ path = {:?} }}",
            crate_dir.display().to_string()
        ),
    );

    let project = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("fresh-{crate_name}"));
    let _ = std::fs::remove_dir_all(&project);
    std::fs::create_dir_all(project.join("src")).expect("project dir");
    std::fs::write(
        project.join("Cargo.toml"),
        format!(
            "[package]\nname = \"fresh-{crate_name}-app\"\nversion = \"0.0.0\"\n\
             edition = \"2021\"\npublish = false\n\n\
             # Its own workspace, not the one whose target directory it sits in.\n[workspace]\n\n\
             {toml}\n\n{}",
            workspace_profiles()
        ),
    )
    .expect("Cargo.toml");
    std::fs::write(project.join("src/main.rs"), main_rs).expect("main.rs");
    std::fs::copy(
        workspace_root().join("Cargo.lock"),
        project.join("Cargo.lock"),
    )
    .expect("Cargo.lock");

    let (target, _) = target_dir_and_profile();
    let started = std::time::Instant::now();
    let stdout = run_ok(
        cargo()
            .args(["run", "--quiet", "--manifest-path"])
            .arg(project.join("Cargo.toml"))
            .env("CARGO_TARGET_DIR", &target)
            .current_dir(&project),
        &format!("the {crate_name} quickstart as a fresh project"),
    );
    eprintln!(
        "{crate_name}: fresh project built and ran in {:?}",
        started.elapsed()
    );
    assert!(stdout.contains("echoed hello"), "{stdout}");
    assert!(stdout.contains("mutable record: v1"), "{stdout}");
}

#[test]
fn tokio_quickstart_builds_and_runs_as_a_fresh_project() {
    fresh_project_runs_the_quickstart("hdht-tokio", "runtime-tokio");
}

#[test]
fn smol_quickstart_builds_and_runs_as_a_fresh_project() {
    fresh_project_runs_the_quickstart("hdht-smol", "runtime-smol");
}
