//! A new user's first program, as the crate docs give it: for each runtime crate, a package
//! that depends on it by path, whose `Cargo.toml` dependencies and `main.rs` are the
//! quickstart's two code blocks extracted from the crate's `lib.rs` docs (nothing hand-written
//! here), in a fresh cargo workspace; each builds and runs an echo connection and a mutable
//! put/get on a private network on 127.0.0.1.
//!
//! Fast in a warm tree: the workspace gets the main workspace's `Cargo.lock` and profiles and
//! builds into its target directory, so most dependencies are cache hits.

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

/// One runtime crate's quickstart as a package of the fresh workspace: its directory name,
/// and the binary it builds.
struct App {
    crate_name: &'static str,
    package: String,
}

/// Writes the quickstart of `crate_name` (crate directory `dir`) as the package `dir` of the
/// fresh workspace at `root`.
fn write_app(root: &Path, crate_name: &'static str, dir: &str) -> App {
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
    let package = format!("fresh-{crate_name}-app");
    let app = root.join(dir);
    std::fs::create_dir_all(app.join("src")).expect("project dir");
    std::fs::write(
        app.join("Cargo.toml"),
        format!(
            "[package]\nname = \"{package}\"\nversion = \"0.0.0\"\n\
             edition = \"2021\"\npublish = false\n\n{toml}\n"
        ),
    )
    .expect("Cargo.toml");
    std::fs::write(app.join("src/main.rs"), main_rs).expect("main.rs");
    App {
        crate_name,
        package,
    }
}

/// Both runtime crates' quickstarts, each a package of one fresh workspace (its own, not the
/// one whose target directory it builds into), built once and run one after the other.
///
/// One workspace, not one project per crate: the two share a single build of `hdht-core`
/// and `hdht-driver` (with two projects each built its own — their dependencies' features
/// differ, `tokio`'s macros turning on `syn/full` — which made this the slowest test of the
/// suite). Features unify across the workspace; that each runtime crate builds alone is
/// checked where it matters: CI's `cargo package` builds each from its `.crate`, and its
/// dependency-tree check keeps tokio out of `hdht-smol`.
#[test]
fn quickstarts_build_and_run_as_fresh_projects() {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fresh-quickstarts");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("workspace dir");
    let apps = [
        write_app(&root, "hdht-tokio", "runtime-tokio"),
        write_app(&root, "hdht-smol", "runtime-smol"),
    ];
    std::fs::write(
        root.join("Cargo.toml"),
        format!(
            "[workspace]\nresolver = \"2\"\nmembers = [\"runtime-tokio\", \"runtime-smol\"]\n\n{}",
            workspace_profiles()
        ),
    )
    .expect("Cargo.toml");
    std::fs::copy(workspace_root().join("Cargo.lock"), root.join("Cargo.lock"))
        .expect("Cargo.lock");

    let (target, profile) = target_dir_and_profile();
    let started = std::time::Instant::now();
    run_ok(
        cargo()
            .args(["build", "--quiet", "--workspace", "--manifest-path"])
            .arg(root.join("Cargo.toml"))
            .env("CARGO_TARGET_DIR", &target)
            .current_dir(&root),
        "the quickstarts as a fresh workspace",
    );
    eprintln!("fresh workspace built in {:?}", started.elapsed());
    // The binaries as built (`cargo run -p` would resolve one package's features, not the
    // workspace's, and build again).
    for app in &apps {
        let started = std::time::Instant::now();
        let stdout = run_ok(
            &mut std::process::Command::new(target.join(&profile).join(&app.package)),
            &format!("the {} quickstart", app.crate_name),
        );
        eprintln!("{}: ran in {:?}", app.crate_name, started.elapsed());
        assert!(
            stdout.contains("echoed hello"),
            "{}: {stdout}",
            app.crate_name
        );
        assert!(
            stdout.contains("mutable record: v1"),
            "{}: {stdout}",
            app.crate_name
        );
    }
}
