//! Protomux's local API errors and its limits: duplicate and stale channels, unknown message
//! types, the channel caps, nested batches, the 8 MiB batch flush.

use hdht_core::protomux::frame::{encode_close, encode_open, encode_reject};
use hdht_core::protomux::mux::{
    MAX_BATCH, MAX_BATCH_DEPTH, MAX_LOCAL_CHANNELS, MAX_REMOTE_CHANNELS,
};
use hdht_core::protomux::{ChannelError, ChannelOptions, Frame, Mux, MuxEvent, ProtomuxError};

#[test]
fn local_calls_are_refused_with_typed_errors() {
    let mut mux = Mux::new();
    let a = mux
        .open_channel(ChannelOptions::new("p", Some(b"id"), 2))
        .unwrap();
    assert_eq!(
        mux.open_channel(ChannelOptions::new("p", Some(b"id"), 2)),
        Err(ChannelError::Duplicate)
    );
    // Not unique: a second channel of the key is allowed.
    let mut opts = ChannelOptions::new("p", Some(b"id"), 2);
    opts.unique = false;
    let b = mux.open_channel(opts).unwrap();
    assert_ne!(a, b);
    assert_eq!(
        mux.send(a, 2, b"x"),
        Err(ChannelError::UnknownMessageType(2))
    );
    mux.send(a, 1, b"x").unwrap();
    mux.close(a);
    assert_eq!(mux.send(a, 0, b"x"), Err(ChannelError::Closed));
    assert!(!mux.is_live(a));
    assert_eq!(
        mux.poll_event(),
        Some(MuxEvent::Closed {
            channel: a,
            remote: false
        })
    );
    // Closing again or a stale handle does nothing.
    mux.close(a);
    assert_eq!(mux.poll_event(), None);
    mux.shutdown();
    assert_eq!(mux.send(b, 0, b"x"), Err(ChannelError::Destroyed));
    assert_eq!(
        mux.open_channel(ChannelOptions::new("q", None, 1)),
        Err(ChannelError::Destroyed)
    );
    assert_eq!(mux.handle_frame(&[0, 3, 1]), Err(ProtomuxError::Destroyed));
}

#[test]
fn a_stale_handle_never_reaches_a_reused_id() {
    let mut mux = Mux::new();
    let a = mux.open_channel(ChannelOptions::new("p", None, 1)).unwrap();
    let mut open = Vec::new();
    encode_open(&mut open, 1, "p", None, &[]);
    mux.handle_frame(&open).unwrap(); // the peer opens: ids can be reused once closed
    mux.close(a);
    let b = mux.open_channel(ChannelOptions::new("p", None, 1)).unwrap();
    assert_eq!(a.local_id(), b.local_id(), "the id is reused");
    assert_eq!(mux.send(a, 0, b"x"), Err(ChannelError::Closed));
    assert!(mux.send(b, 0, b"x").is_ok());
}

#[test]
fn local_channels_are_capped() {
    let mut mux = Mux::new();
    for i in 0..MAX_LOCAL_CHANNELS {
        mux.open_channel(ChannelOptions::new(&i.to_string(), None, 1))
            .unwrap();
    }
    assert_eq!(
        mux.open_channel(ChannelOptions::new("one more", None, 1)),
        Err(ChannelError::TooManyChannels)
    );
}

#[test]
fn remote_channel_ids_are_capped() {
    let mut mux = Mux::new();
    // A peer that opens a fresh id each time (never reusing the rejected ones) grows our
    // table by one per open, up to the cap; each open is rejected on the wire.
    for id in 1..=MAX_REMOTE_CHANNELS as u64 {
        let mut open = Vec::new();
        encode_open(&mut open, id, "nobody", None, &[]);
        mux.handle_frame(&open).unwrap();
        let mut reject = Vec::new();
        encode_reject(&mut reject, id);
        assert_eq!(mux.poll_frame(), Some(reject));
    }
    let mut open = Vec::new();
    encode_open(
        &mut open,
        MAX_REMOTE_CHANNELS as u64 + 1,
        "nobody",
        None,
        &[],
    );
    assert_eq!(
        mux.handle_frame(&open),
        Err(ProtomuxError::TooManyRemoteChannels)
    );
    assert!(mux.is_destroyed());
    assert_eq!(
        mux.poll_frame(),
        None,
        "a destroyed session sends nothing more"
    );
}

#[test]
fn reused_remote_ids_are_fine() {
    let mut mux = Mux::new();
    for _ in 0..10 * MAX_REMOTE_CHANNELS {
        let mut open = Vec::new();
        encode_open(&mut open, 1, "nobody", None, &[]);
        mux.handle_frame(&open).unwrap();
        let mut reject = Vec::new();
        encode_reject(&mut reject, 1);
        assert_eq!(mux.poll_frame(), Some(reject));
    }
}

#[test]
fn nested_batches_are_limited() {
    // A batch on channel 0 whose single entry is itself a batch, `depth` times, around a close.
    let mut inner = Vec::new();
    encode_close(&mut inner, 0);
    let mut entry = inner[1..].to_vec(); // `uint type ‖ body` of the close
    for _ in 0..MAX_BATCH_DEPTH {
        let mut b = vec![0u8, 0]; // type 0 (batch), first channel 0
        b.push(entry.len() as u8);
        b.extend_from_slice(&entry);
        entry = b;
    }
    // `entry` is now `type ‖ body` of a batch nested MAX_BATCH_DEPTH deep; as a frame on channel 0:
    let mut frame = vec![0u8];
    frame.extend_from_slice(&entry);
    assert!(matches!(Frame::decode(&frame), Ok(Frame::Batch(_))));
    let mut mux = Mux::new();
    assert_eq!(mux.handle_frame(&frame), Ok(()));
    let mut deeper = vec![0u8, 0, 0, entry.len() as u8];
    deeper.extend_from_slice(&entry);
    let mut mux = Mux::new();
    assert_eq!(mux.handle_frame(&deeper), Err(ProtomuxError::BatchTooDeep));
}

#[test]
fn a_corked_batch_is_flushed_at_8_mib() {
    let mut mux = Mux::new();
    let ch = mux
        .open_channel(ChannelOptions::new("big", None, 1))
        .unwrap();
    let _open = mux.poll_frame().unwrap();
    mux.cork();
    let body = vec![7u8; 64 * 1024];
    let n = MAX_BATCH / body.len() + 2;
    for _ in 0..n {
        mux.send(ch, 0, &body).unwrap();
    }
    // The batch reached 8 MiB before the last push, so it went out then.
    let first = mux.poll_frame().expect("flushed early");
    assert!(first.len() >= MAX_BATCH);
    assert_eq!(mux.poll_frame(), None);
    mux.uncork();
    let second = mux.poll_frame().unwrap();
    let count = |f: &[u8]| {
        let Ok(Frame::Batch(mut e)) = Frame::decode(f) else {
            panic!("not a batch")
        };
        std::iter::from_fn(|| e.next_entry().unwrap()).count()
    };
    assert_eq!(count(&first) + count(&second), n);
}
