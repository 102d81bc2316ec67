//! Every example of both runtime crates (`runtime-*/examples/`), built and run as programs
//! against a private network on 127.0.0.1 (a bootstrapper and two persistent nodes in this
//! process), each with a bounded timeout, asserting what it prints.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hdht_tests::programs::{cargo, run_ok, target_dir_and_profile, workspace_root, Program};
use hdht_tokio::{Dht, DhtOptions, Persistence};

const STEP: Duration = Duration::from_secs(60);

/// Builds the workspace's examples (both runtime crates') into this test's target directory;
/// their directory. `--workspace` resolves features as `cargo test --workspace` does, so what
/// that built is reused and only changed examples are rebuilt.
fn build_examples() -> PathBuf {
    let (target, profile) = target_dir_and_profile();
    let mut cmd = cargo();
    cmd.args([
        "build",
        "--quiet",
        "--workspace",
        "--examples",
        "--target-dir",
    ])
    .arg(&target)
    .current_dir(workspace_root());
    match profile.as_str() {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    run_ok(&mut cmd, "cargo build --examples");
    target.join(profile).join("examples")
}

/// An example with the network's bootstrap list and host.
fn example(dir: &Path, name: &str, bootstrap: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(dir.join(name));
    cmd.args(args)
        .args(["--bootstrap", bootstrap, "--host", "127.0.0.1"]);
    cmd
}

/// Runs an example that ends by itself; its stdout (it must succeed).
fn run_to_end(dir: &Path, name: &str, bootstrap: &str, args: &[&str]) -> String {
    let mut p = Program::spawn(name, &mut example(dir, name, bootstrap, args));
    let (status, stdout) = p.wait_exit(STEP);
    assert!(
        status.success(),
        "{name} failed ({status}):\n{stdout}\n--- stderr\n{}",
        p.stderr()
    );
    stdout
}

/// Runs the examples of `crate_name`, whose names start with `prefix` (smol's are `smol_…`, so
/// the two crates' examples do not collide in one target directory).
fn run_examples(crate_name: &str, prefix: &str) {
    let dir = build_examples();
    let name = |n: &str| format!("{prefix}{n}");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    // The network: a bootstrapper and two persistent nodes, alive for the whole test.
    let (_network, bootstrap) = rt.block_on(async {
        let boot = Dht::bootstrapper(0, Ipv4Addr::LOCALHOST)
            .await
            .expect("bootstrapper");
        let bootstrap = boot.server_address().to_string();
        let mut network = vec![boot];
        for _ in 0..2 {
            let node = Dht::new(DhtOptions {
                bootstrap: vec![bootstrap.clone()],
                host: Ipv4Addr::LOCALHOST,
                persistence: Persistence::Persistent,
                ..DhtOptions::isolated()
            })
            .await
            .expect("node");
            tokio::time::timeout(STEP, node.ready())
                .await
                .expect("bootstrap in time")
                .expect("bootstrapped");
            network.push(node);
        }
        (network, bootstrap)
    });

    // Echo: the server prints its key; the client connects by it and gets its message back.
    let mut server = Program::spawn(
        &name("echo_server"),
        &mut example(&dir, &name("echo_server"), &bootstrap, &[]),
    );
    let key = server.wait_for(STEP, |l| l.strip_prefix("listening ").map(str::to_string));
    assert_eq!(key.len(), 64, "a hex public key: {key}");
    let out = run_to_end(
        &dir,
        &name("echo_client"),
        &bootstrap,
        &[&key, "hello from the example"],
    );
    assert!(out.contains(&format!("connected to {key}")), "{out}");
    assert!(out.contains("echo: hello from the example"), "{out}");
    server.wait_for(STEP, |l| l.strip_prefix("connection from ").map(|_| ()));
    drop(server);

    // Records: immutable put/get, then two mutable puts and the latest get.
    let out = run_to_end(&dir, &name("records"), &bootstrap, &["example value"]);
    assert!(out.contains("immutable put "), "{out}");
    assert!(out.contains("immutable get: example value"), "{out}");
    assert!(
        out.contains("mutable put seq 1") && out.contains("mutable put seq 2"),
        "{out}"
    );
    assert!(out.contains("mutable get seq 2: example value v2"), "{out}");

    // Announce and lookup: the lookup finds the key the announce stored.
    let topic = format!("examples of {crate_name}");
    let out = run_to_end(&dir, &name("lookup_announce"), &bootstrap, &[&topic]);
    let announced = out
        .lines()
        .find_map(|l| l.strip_prefix("announced "))
        .and_then(|l| l.split(' ').next())
        .unwrap_or_else(|| panic!("no announce line:\n{out}"));
    assert!(
        out.lines()
            .any(|l| l.starts_with(&format!("found {announced} "))),
        "the lookup found the announced key:\n{out}"
    );
    assert!(out.contains("unannounced"), "{out}");

    rt.block_on(async {
        for node in _network {
            node.destroy().await;
        }
    });
}

#[test]
fn tokio_examples_run_against_a_local_network() {
    run_examples("hdht-tokio", "");
}

#[test]
fn smol_examples_run_against_a_local_network() {
    run_examples("hdht-smol", "smol_");
}
