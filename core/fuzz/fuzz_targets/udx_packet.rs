//! UDX packet decoder: never panics; whatever decodes re-encodes to the same bytes; the
//! demultiplexer and a live stream swallow arbitrary datagrams without panicking.
#![no_main]

use hdht_core::udx::{Demux, Packet, SocketId, StreamConfig, UdxStream};
use hdht_core::Instant;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Packet::decode(data) {
        let _ = p.sack_blocks().count();
        let mut out = vec![0u8; p.encoded_len()];
        assert_eq!(p.encode(&mut out), Ok(data.len()));
        assert_eq!(out, data);
    }
    let now = Instant::from_millis(1);
    let from = "127.0.0.1:9".parse().unwrap();
    let mut demux = Demux::new();
    let mut s = UdxStream::new(u32::from_le_bytes([
        *data.get(4).unwrap_or(&0),
        *data.get(5).unwrap_or(&0),
        *data.get(6).unwrap_or(&0),
        *data.get(7).unwrap_or(&0),
    ]), now, StreamConfig::default());
    s.connect(now, 7, from).unwrap();
    let _ = s.write(b"some queued bytes");
    demux.insert(s);
    let _ = demux.handle_datagram(now, SocketId(0), from, data);
    let mut buf = [0u8; 2048];
    while demux.poll_transmit(now, &mut buf).is_some() {}
    while demux.poll_event().is_some() {}
});
