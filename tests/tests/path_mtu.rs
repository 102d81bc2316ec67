//! UDX MTU probing against a real kernel path that is smaller than 1500 bytes.
//!
//! The test re-runs itself in a child process that moves into a fresh network namespace
//! (`unshare(CLONE_NEWNET)`, needs root, as the kernel-NAT test does) and sets the loopback
//! MTU there to 1400. Our sockets set "don't fragment" as libudx does, so a probe bigger than
//! the path is refused by the kernel instead of arriving in fragments: the search must settle
//! between 1200 and 1400, and the data sent meanwhile arrives intact. (With fragmentation
//! allowed, probes up to 1500 "succeed" and every full-size packet after that is fragmented.)

use std::io::Read as _;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::Duration;

use hdht_core::crypto::KeyPair;
use hdht_core::rpc::Persistence;
use hdht_driver::DhtOptions;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CHILD_ENV: &str = "HDHT_PATH_MTU_CHILD";
const PATH_MTU: u16 = 1400;
const BYTES: usize = 4 << 20;

extern "C" {
    fn unshare(flags: i32) -> i32;
}
const CLONE_NEWNET: i32 = 0x4000_0000;

fn opts(bootstrap: &[String]) -> DhtOptions {
    DhtOptions {
        bootstrap: bootstrap.to_vec(),
        host: Ipv4Addr::LOCALHOST,
        persistence: Persistence::Persistent,
        ..DhtOptions::isolated()
    }
}

/// In the child: a private network with a 1400-byte loopback, three nodes, one transfer.
/// Prints `mtu=<n> probes_ok sha=<hex>` for the parent to check.
fn child() {
    // SAFETY: plain syscall; only this thread (and the threads it starts) move.
    let r = unsafe { unshare(CLONE_NEWNET) };
    assert_eq!(
        r,
        0,
        "unshare(CLONE_NEWNET) failed (needs root): {}",
        std::io::Error::last_os_error()
    );
    let st = Command::new("ip")
        .args(["link", "set", "lo", "mtu", &PATH_MTU.to_string(), "up"])
        .status();
    assert!(
        st.is_ok_and(|s| s.success()),
        "could not configure lo in the new namespace"
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let boot = hdht_tokio::Dht::new(DhtOptions::bootstrapper(0, Ipv4Addr::LOCALHOST))
            .await
            .expect("bootstrapper");
        boot.ready().await.expect("bootstrapped");
        let bootstrap = vec![boot.server_address().to_string()];
        let server_node = hdht_tokio::Dht::new(opts(&bootstrap))
            .await
            .expect("server node");
        server_node.ready().await.expect("bootstrapped");
        let client_node = hdht_tokio::Dht::new(opts(&bootstrap))
            .await
            .expect("client node");
        client_node.ready().await.expect("bootstrapped");

        let kp = KeyPair::from_seed(&[7; 32]);
        let mut server = server_node.create_server();
        server.listen(&kp).await.expect("listen");
        let sink = tokio::spawn(async move {
            let mut conn = server.accept().await.expect("accept");
            let mut h = Sha256::new();
            let mut buf = vec![0u8; 64 * 1024];
            let mut total = 0;
            loop {
                let n = conn.read(&mut buf).await.expect("read");
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
                total += n;
            }
            conn.shutdown().await.ok();
            (total, hex::encode(h.finalize()))
        });

        let mut conn = tokio::time::timeout(
            Duration::from_secs(10),
            client_node.connect(kp.public_key()),
        )
        .await
        .expect("connect in time")
        .expect("connect");
        let data: Vec<u8> = (0..BYTES).map(|i| (i * 31 % 251) as u8).collect();
        tokio::time::timeout(Duration::from_secs(30), async {
            conn.write_all(&data).await.expect("write");
            conn.shutdown().await.expect("end");
        })
        .await
        .expect("transfer in time");
        let transport = conn.transport().expect("transport state");
        let mut rest = Vec::new();
        conn.read_to_end(&mut rest).await.expect("peer end");
        let (total, sha) = tokio::time::timeout(Duration::from_secs(30), sink)
            .await
            .expect("sink in time")
            .expect("sink");
        assert_eq!(total, BYTES, "every byte arrived");
        assert_eq!(sha, hex::encode(Sha256::digest(&data)), "in order, intact");
        println!(
            "mtu={} retransmits={} sha_ok",
            transport.mtu, transport.stats.retransmits
        );
    });
}

#[test]
fn mtu_probing_stops_at_a_smaller_kernel_path() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return child();
    }
    let mut proc = Command::new(std::env::current_exe().expect("exe"))
        .args([
            "--exact",
            "mtu_probing_stops_at_a_smaller_kernel_path",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("child test process");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = proc.try_wait().expect("wait") {
            break st;
        }
        if std::time::Instant::now() > deadline {
            let _ = proc.kill();
            let _ = proc.wait();
            panic!("the child did not finish in 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = String::new();
    proc.stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("child output");
    assert!(
        status.success(),
        "child failed (root is needed for a network namespace):\n{out}"
    );
    let line = out
        .lines()
        .find_map(|l| l.find("mtu=").map(|at| &l[at..]))
        .unwrap_or_else(|| panic!("no result line in:\n{out}"));
    let mtu: u16 = line["mtu=".len()..]
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .expect("mtu value");
    assert!(line.contains("sha_ok"), "{line}");
    assert!(
        mtu <= PATH_MTU,
        "the MTU search went past the {PATH_MTU}-byte path: {line}"
    );
    assert!(mtu > 1200, "the MTU search did not probe at all: {line}");
}
