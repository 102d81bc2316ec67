//! `DhtOptions` as the reference's `new DHT(opts)`: the default joins the public network (checked
//! without contacting it), `seed` / `key_pair` fix the node's default key pair exactly as
//! hyperdht's `defaultKeyPair` (vectors `default_key_pairs` and `error_codes` of
//! `tests/vectors/hyperdht-records.json`), servers and connects use that key pair when given
//! none, the reference's operation options work, `KeyPair::random()` gives valid distinct pairs,
//! and failures carry the reference's codes through `DhtError`. Live parts run on
//! 127.0.0.1 with ephemeral ports, on tokio and smol.

use std::future::IntoFuture;
use std::net::Ipv4Addr;
use std::sync::OnceLock;
use std::time::Duration;

use hdht_core::connect::ConnectError;
use hdht_core::crypto::{hash, verify, KeyPair};
use hdht_core::rpc::Persistence;
use hdht_driver::RandomKeyPair;
use hdht_driver::{
    build_node, parse_bootstrap, AnnounceOptions, Clock, DhtError, DhtOptions, MutableGetOptions,
    MutablePutOptions, QueryOptions, DEFAULT_BOOTSTRAP,
};
use hdht_tests::runtime::{Runtime, Smol, Tokio};
use serde_json::Value;

const STEP: Duration = Duration::from_secs(30);

fn vectors() -> &'static Value {
    static V: OnceLock<Value> = OnceLock::new();
    V.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/vectors/hyperdht-records.json");
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("cannot read {path}: {e} (never skipped)"));
        serde_json::from_str(&text).expect("valid JSON")
    })
}

fn h32(v: &Value, key: &str) -> [u8; 32] {
    let bytes = hex::decode(v[key].as_str().unwrap_or_else(|| panic!("{key}"))).expect("hex");
    bytes.try_into().expect("32 bytes")
}

/// The node `DhtOptions` build, with no sockets and no bootstrap: its default key pair.
fn default_key_pair_of(opts: &DhtOptions) -> KeyPair {
    build_node(opts, 49737, Vec::new(), &Clock::default()).default_key_pair()
}

#[test]
fn default_options_carry_the_public_bootstrap_list() {
    let reference = vectors()["constants"]["bootstrap_nodes"]
        .as_array()
        .expect("bootstrap_nodes")
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect::<Vec<_>>();
    assert_eq!(reference.len(), 3);
    let opts = DhtOptions::default();
    assert_eq!(opts.bootstrap, reference);
    assert_eq!(opts.bootstrap, DEFAULT_BOOTSTRAP);
    for entry in &opts.bootstrap {
        let parsed = parse_bootstrap(entry).expect("parses");
        assert!(parsed.literal().is_some(), "{entry}: a suggested address");
        assert_eq!(parsed.port, 49737);
    }
    // An isolated network is the explicit choice; a bootstrapper is isolated.
    assert!(DhtOptions::isolated().bootstrap.is_empty());
    assert!(DhtOptions::bootstrapper(0, Ipv4Addr::LOCALHOST)
        .bootstrap
        .is_empty());
    assert_eq!(
        DhtOptions::with_bootstrap(["127.0.0.1:1"]).bootstrap,
        ["127.0.0.1:1"]
    );
}

/// No test, benchmark, example or CLI code path may reach the public network by accident: every
/// `DhtOptions { .. }` literal in the repository's Rust sources either names its `bootstrap` or
/// spreads an isolated base (`isolated()`, `bootstrapper(..)`, `with_bootstrap(..)`, or a
/// helper that does), and only this file and the options' own module call
/// `DhtOptions::default()`.
#[test]
fn no_test_uses_the_public_network_by_default() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace");
    let mut files = Vec::new();
    for dir in [
        "core",
        "driver",
        "runtime-tokio",
        "runtime-smol",
        "sim",
        "cli",
        "tests",
    ] {
        collect_rs(&root.join(dir), &mut files);
    }
    assert!(files.len() > 50, "found the sources: {}", files.len());
    let exempt = ["driver/src/options.rs", "tests/tests/options.rs"];
    let mut bad = Vec::new();
    for path in &files {
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        // The examples are programs for any network: without `--bootstrap` they join the
        // public one, as an app would; `tests/tests/examples.rs` always passes `--bootstrap`.
        if exempt.contains(&rel.as_str()) || rel.contains("/examples/") {
            continue;
        }
        let text = std::fs::read_to_string(path).expect("readable source");
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if line.contains("DhtOptions::default()") {
                bad.push(format!("{rel}:{}: DhtOptions::default()", i + 1));
            }
            if !line.contains("DhtOptions {") || line.contains("struct DhtOptions") {
                continue;
            }
            // The literal runs to its `..base` (or its closing brace).
            let body: Vec<&str> = lines[i..]
                .iter()
                .take(30)
                .take_while(|l| !l.trim_start().starts_with('}'))
                .copied()
                .collect();
            let names_bootstrap = body.iter().any(|l| l.contains("bootstrap:"));
            let spread = body.iter().find(|l| l.trim_start().starts_with(".."));
            let spreads_default = spread.is_some_and(|l| l.contains("Default::default()"));
            if spreads_default && !names_bootstrap {
                bad.push(format!(
                    "{rel}:{}: ..Default::default() without bootstrap",
                    i + 1
                ));
            }
        }
    }
    assert!(bad.is_empty(), "public-network defaults: {bad:#?}");
}

fn collect_rs(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() {
            if name != "target" && name != "node_modules" {
                collect_rs(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn seed_and_key_pair_give_the_references_default_key_pair() {
    let cases = vectors()["default_key_pairs"].as_array().expect("section");
    assert_eq!(cases.len(), 3);
    for v in cases {
        let name = v["name"].as_str().unwrap();
        let mut opts = DhtOptions::isolated();
        opts.seed = v["seed"].as_str().map(|_| h32(v, "seed"));
        opts.key_pair = v["keyPairSeed"]
            .as_str()
            .map(|_| KeyPair::from_seed(&h32(v, "keyPairSeed")));
        // The RNG seed does not enter into it.
        for rng_seed in [None, Some([1; 32]), Some([2; 32])] {
            opts.rng_seed = rng_seed;
            let kp = default_key_pair_of(&opts);
            assert_eq!(kp.public_key(), h32(v, "publicKey"), "{name}");
            let secret = hex::decode(v["secretKey"].as_str().unwrap()).unwrap();
            assert_eq!(kp.secret_key().to_vec(), secret, "{name}");
        }
    }
}

#[test]
fn without_seed_the_key_pair_follows_the_rng_seed() {
    let with = |rng_seed: [u8; 32]| {
        default_key_pair_of(&DhtOptions {
            rng_seed: Some(rng_seed),
            ..DhtOptions::isolated()
        })
        .public_key()
    };
    assert_eq!(with([3; 32]), with([3; 32]), "reproducible from rng_seed");
    assert_ne!(with([3; 32]), with([4; 32]));
    let os = |_| default_key_pair_of(&DhtOptions::isolated()).public_key();
    assert_ne!(os(0), os(1), "fresh from the OS without any seed");
}

/// `KeyPair::random()` (the driver's `RandomKeyPair`): distinct pairs, each
/// a valid Ed25519 key pair — its public key is its seed's, and it signs verifiably.
#[test]
fn random_key_pairs_are_distinct_and_valid() {
    let pairs: Vec<KeyPair> = (0..8).map(|_| KeyPair::random()).collect();
    let mut keys: Vec<[u8; 32]> = pairs.iter().map(KeyPair::public_key).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), pairs.len(), "distinct");
    for kp in &pairs {
        assert_ne!(kp.seed(), [0; 32]);
        assert_eq!(KeyPair::from_seed(&kp.seed()).public_key(), kp.public_key());
        assert_eq!(kp.secret_key()[32..], kp.public_key());
        let signature = kp.sign(b"random");
        assert!(verify(&kp.public_key(), b"random", &signature));
        assert!(!verify(&kp.public_key(), b"other", &signature));
    }
}

/// `DhtError::code()` of every connect failure is the reference's `err.code`.
#[test]
fn error_codes_are_the_references() {
    let list = vectors()["error_codes"]["hyperdht"]
        .as_array()
        .expect("hyperdht codes");
    for v in list {
        let code = v["code"].as_str().unwrap();
        let err = ConnectError::from_code(code).unwrap_or_else(|| panic!("{code} is known"));
        assert_eq!(DhtError::from(err).code(), Some(code));
    }
}

fn opts(bootstrap: &[String], seed: Option<&[u8]>) -> DhtOptions {
    DhtOptions {
        bootstrap: bootstrap.to_vec(),
        host: Ipv4Addr::LOCALHOST,
        persistence: Persistence::Adaptive,
        seed: seed.map(hash),
        ..DhtOptions::isolated()
    }
}

async fn ready<R: Runtime>(d: &R::Dht) {
    R::timeout(STEP, d.ready())
        .await
        .expect("bootstrap in time")
        .expect("bootstrapped");
}

/// A bootstrapper and `n` persistent nodes on 127.0.0.1.
async fn network<R: Runtime>(n: usize) -> (R::Dht, Vec<R::Dht>, Vec<String>) {
    let boot = R::dht(DhtOptions::bootstrapper(0, Ipv4Addr::LOCALHOST))
        .await
        .expect("bootstrapper");
    ready::<R>(&boot).await;
    let bootstrap = vec![boot.server_address().to_string()];
    let mut nodes = Vec::new();
    for _ in 0..n {
        let d = R::dht(DhtOptions {
            persistence: Persistence::Persistent,
            ..opts(&bootstrap, None)
        })
        .await
        .expect("node");
        ready::<R>(&d).await;
        nodes.push(d);
    }
    (boot, nodes, bootstrap)
}

/// `listen(None)` listens on the node's default key pair (from `seed`), `connect` without a key
/// pair authenticates with the client node's; an unknown key fails with `PEER_NOT_FOUND`.
async fn servers_and_connects_use_the_default_key_pair<R: Runtime>() {
    let (boot, nodes, bootstrap) = network::<R>(4).await;
    let server_dht = R::dht(opts(&bootstrap, Some(b"options server")))
        .await
        .expect("server node");
    let client_dht = R::dht(opts(&bootstrap, Some(b"options client")))
        .await
        .expect("client node");
    ready::<R>(&server_dht).await;
    ready::<R>(&client_dht).await;
    let server_pk = KeyPair::from_seed(&hash(b"options server")).public_key();
    let client_pk = KeyPair::from_seed(&hash(b"options client")).public_key();
    assert_eq!(server_dht.default_key_pair().public_key(), server_pk);

    let mut server = server_dht.create_server();
    R::timeout(STEP, server.listen(None))
        .await
        .expect("listen timed out")
        .expect("listen");
    assert_eq!(server.public_key(), Some(server_pk));
    // The default key pair is taken: a second server cannot listen on it.
    let mut second = server_dht.create_server();
    let taken = R::timeout(STEP, second.listen(None))
        .await
        .expect("listen timed out")
        .expect_err("the key pair is in use");
    assert_eq!(taken.code(), Some("KEYPAIR_ALREADY_USED"));

    let connect = client_dht.connect(server_pk);
    let (client, accepted) = futures_lite::future::zip(
        async {
            R::timeout(STEP, connect)
                .await
                .expect("connect timed out")
                .expect("connect")
        },
        async {
            R::timeout(STEP, server.accept())
                .await
                .expect("accept timed out")
                .expect("a connection")
        },
    )
    .await;
    assert_eq!(client.public_key(), client_pk);
    assert_eq!(client.remote_public_key(), server_pk);
    assert_eq!(accepted.remote_public_key(), client_pk);

    // Nobody listens on this key: the reference's PEER_NOT_FOUND, through `DhtError`.
    let nobody = KeyPair::from_seed(&hash(b"options nobody")).public_key();
    let err = R::timeout(STEP, client_dht.connect(nobody))
        .await
        .expect("connect timed out")
        .expect_err("no such server");
    assert_eq!(err.code(), Some("PEER_NOT_FOUND"), "{err}");
    assert_eq!(err.as_connect(), Some(&ConnectError::PeerNotFound));

    drop((client, accepted, server, second));
    for d in [client_dht, server_dht]
        .into_iter()
        .chain(nodes)
        .chain([boot])
    {
        R::destroy(d).await;
    }
}

#[test]
fn servers_and_connects_use_the_default_key_pair_tokio() {
    Tokio::run(servers_and_connects_use_the_default_key_pair::<Tokio>());
}

#[test]
fn servers_and_connects_use_the_default_key_pair_smol() {
    Smol::run(servers_and_connects_use_the_default_key_pair::<Smol>());
}

fn unix_ms() -> u64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970");
    u64::try_from(since.as_millis()).expect("fits")
}

/// The reference's operation options: an announce awaited to its end with a `bump`, then a
/// lookup of only one of the nodes that stored it (`nodes` + `onlyClosestNodes`), which
/// returns the record and the bump; `mutableGet`'s `seq` and `latest` (default true).
async fn operation_options<R: Runtime>() {
    let (boot, nodes, bootstrap) = network::<R>(5).await;
    let client = R::dht(opts(&bootstrap, None)).await.expect("client");
    ready::<R>(&client).await;

    let topic = hash(b"options topic");
    let kp = KeyPair::from_seed(&hash(b"options announcer"));
    let bump = unix_ms();
    let announce = AnnounceOptions {
        bump,
        ..AnnounceOptions::default()
    };
    // Awaiting the stream runs the announce to its end: the commits are done.
    let stored = R::timeout(
        STEP,
        client.announce_with(topic, &kp, announce).into_future(),
    )
    .await
    .expect("announce timed out")
    .expect("announce");
    assert!(!stored.is_empty(), "stored somewhere");
    let one = stored[0];
    let only_one = QueryOptions {
        nodes: vec![one],
        only_closest_nodes: true,
        ..QueryOptions::default()
    };
    let mut replies = client.lookup_with(topic, only_one);
    let mut seen = Vec::new();
    while let Some(reply) = R::timeout(STEP, futures_lite::StreamExt::next(&mut replies))
        .await
        .expect("lookup timed out")
    {
        seen.push(reply);
    }
    assert_eq!(seen.len(), 1, "only the one node was asked: {seen:?}");
    assert_eq!(seen[0].from, one);
    assert_eq!(seen[0].bump, bump, "the announce's bump is the topic's");
    assert!(seen[0]
        .peers
        .iter()
        .any(|p| p.public_key == kp.public_key()));

    let signer = KeyPair::from_seed(&hash(b"options mutable"));
    for seq in [1, 2] {
        let put = MutablePutOptions {
            seq,
            ..MutablePutOptions::default()
        };
        let value = format!("value {seq}");
        R::timeout(
            STEP,
            client.mutable_put_with(&signer, value.as_bytes(), put),
        )
        .await
        .expect("put timed out")
        .expect("put");
    }
    assert!(
        MutableGetOptions::default().latest,
        "the reference's default"
    );
    let got = R::timeout(
        STEP,
        client.mutable_get_with(signer.public_key(), MutableGetOptions::default()),
    )
    .await
    .expect("get timed out")
    .expect("get")
    .expect("a record");
    assert_eq!((got.seq, got.value.as_slice()), (2, &b"value 2"[..]));
    let newer = MutableGetOptions {
        seq: 3,
        ..MutableGetOptions::default()
    };
    let none = R::timeout(STEP, client.mutable_get_with(signer.public_key(), newer))
        .await
        .expect("get timed out")
        .expect("get");
    assert_eq!(none, None, "nothing at seq 3 or above");

    for d in [client].into_iter().chain(nodes).chain([boot]) {
        R::destroy(d).await;
    }
}

#[test]
fn operation_options_tokio() {
    Tokio::run(operation_options::<Tokio>());
}

#[test]
fn operation_options_smol() {
    Smol::run(operation_options::<Smol>());
}
