//! Malformed datagrams sent over real UDP to a running node get no reply and do not disturb it.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::Duration;

use hdht_core::wire::{Message, Request};
use hdht_driver::DhtOptions;
use hdht_tests::runtime::{Runtime, Smol, Tokio};

fn hostile() -> Vec<Vec<u8>> {
    let ping = Request {
        tid: 1,
        to: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1),
        id: None,
        token: None,
        internal: true,
        command: 0,
        target: None,
        value: None,
    }
    .to_bytes();
    let mut v = vec![
        vec![],
        vec![0x03],
        vec![0x13],
        vec![0x04, 0x00, 0x00],
        vec![0xff; 1500],
        b"garbage garbage".to_vec(),
    ];
    v.extend((1..ping.len()).map(|n| ping[..n].to_vec()));
    let mut bad_version = ping.clone();
    bad_version[0] = 0x23;
    v.push(bad_version);
    // A value claiming 4 GiB.
    let mut huge = ping.clone();
    huge[1] |= 16;
    huge.extend([0xfe, 0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
    v.push(huge);
    v
}

async fn malformed_datagrams_get_no_reply<R: Runtime>() {
    let dht = R::dht(DhtOptions::bootstrapper(0, Ipv4Addr::LOCALHOST))
        .await
        .expect("node");
    R::timeout(Duration::from_secs(10), dht.ready())
        .await
        .expect("bootstrap in time")
        .expect("bootstrapped");
    let target = dht.server_address();
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    probe
        .set_read_timeout(Some(Duration::from_millis(400)))
        .unwrap();
    for d in hostile() {
        probe.send_to(&d, target).unwrap();
    }
    let mut buf = [0u8; 2048];
    let got = R::blocking(|| probe.recv_from(&mut buf));
    assert!(got.is_err(), "a malformed datagram got a reply: {got:?}");
    // Still alive: a valid PING is answered.
    let to = target;
    let ping = Request {
        tid: 9,
        to,
        id: None,
        token: None,
        internal: true,
        command: 0,
        target: None,
        value: None,
    }
    .to_bytes();
    probe.send_to(&ping, target).unwrap();
    probe
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let (n, _) = R::blocking(|| probe.recv_from(&mut buf)).expect("ping reply");
    assert!(matches!(Message::decode(&buf[..n]), Ok(Message::Response(r)) if r.tid == 9));
    R::destroy(dht).await;
}

#[test]
fn tokio_malformed_datagrams_get_no_reply() {
    Tokio::run(malformed_datagrams_get_no_reply::<Tokio>());
}

#[test]
fn smol_malformed_datagrams_get_no_reply() {
    Smol::run(malformed_datagrams_get_no_reply::<Smol>());
}
