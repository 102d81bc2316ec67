'use strict'

// udx-secret-stream.json (udx-native 1.21.3, @hyperswarm/secret-stream 6.9.2).
//
// Live (--live): `udx_scenarios`, real UDX traffic between two udx-native peers on 127.0.0.1.
// Every datagram passes a small UDP relay (the tap, node:dgram) that logs it and can drop or
// delay it. The last scenario runs two NoiseSecretStreams over UDX and decodes what went over.
// Deterministic: `secret_stream_deterministic`, secret-stream frames and unordered messages
// from fixed keys and fixed secretstream headers, checked by feeding them to the real
// NoiseSecretStream.

const { ref, b4a, sodium, hex, utf8, sleep, printable, pattern, version, keptLive, generatorName } = require('./ref.js')

const FILE = 'udx-secret-stream.json'

const NoiseSecretStream = ref('@hyperswarm/secret-stream')
const hypercoreCrypto = ref('hypercore-crypto')

const A_ID = 0x12345678 // A's local stream id
const B_ID = 0x9abcdef0 // B's local stream id (above 2^31 on purpose)
const TYPE_FLAGS = [[0x01, 'DATA'], [0x02, 'END'], [0x04, 'SACK'], [0x08, 'MESSAGE'], [0x10, 'DESTROY'], [0x20, 'HEARTBEAT']]

/** The 20-byte UDX header and what follows it (SACK blocks, or padding + payload), or null. */
function decodeUdx(buf) {
  if (buf.length < 20 || buf[0] !== 0xff || buf[1] !== 0x01) return null
  const type = buf[2]
  const dataOffset = buf[3]
  const flags = TYPE_FLAGS.filter(([bit]) => type & bit).map(([, name]) => name)
  const out = {
    magic: buf[0],
    version: buf[1],
    type,
    flags: flags.length ? flags : ['ACK(no flags)'],
    data_offset: dataOffset,
    remote_id: buf.readUInt32LE(4),
    rwnd: buf.readUInt32LE(8),
    seq: buf.readUInt32LE(12),
    ack: buf.readUInt32LE(16)
  }
  const body = buf.subarray(20)
  if (type & 0x04) {
    const blocksLen = dataOffset > 0 && dataOffset < body.length ? dataOffset : body.length
    out.sacks = []
    for (let i = 0; i + 8 <= blocksLen; i += 8) out.sacks.push([body.readUInt32LE(i), body.readUInt32LE(i + 4)])
    return out
  }
  const payload = body.subarray(Math.min(dataOffset, body.length))
  out.payload_len = payload.length
  if (dataOffset) out.padding_len = dataOffset
  if (payload.length) {
    const text = printable(payload)
    if (text !== null) out.payload_text = text
  }
  return out
}

/** Resolves with the arguments of the next `name` event, or rejects after `ms`. */
function nextEvent(emitter, name, ms = 3000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no ' + name + ' event within ' + ms + ' ms')), ms)
    emitter.once(name, (...args) => {
      clearTimeout(timer)
      resolve(args)
    })
  })
}

const now = () => {
  const [s, ns] = process.hrtime()
  return s * 1e3 + ns / 1e6
}

/** The relay both streams talk through: forwards by source port, logs, may drop or delay. */
class Tap {
  constructor() {
    this.socket = require('dgram').createSocket('udp4')
    this.entries = []
    this.rule = null // entry -> { action: 'drop' | 'delay', ms?, note? } or null
    this.compact = null // entry -> true to keep only the header bytes
    this.t0 = 0
    this.aPort = 0
    this.bPort = 0
    this.timers = new Set()
  }

  async bind() {
    await new Promise((resolve) => this.socket.bind(0, '127.0.0.1', resolve))
    this.port = this.socket.address().port
    this.socket.on('message', (msg, rinfo) => this.relay(msg, rinfo))
  }

  elapsed() {
    return Math.round((now() - this.t0) * 100) / 100
  }

  relay(msg, rinfo) {
    const dir = rinfo.port === this.aPort ? 'A->B' : rinfo.port === this.bPort ? 'B->A' : 'unknown'
    const to = dir === 'A->B' ? this.bPort : this.aPort
    const entry = { i: this.entries.length, t_ms: this.elapsed(), dir, len: msg.length, hex: msg.toString('hex'), udx: decodeUdx(msg) }
    if (entry.udx === null) entry.note = 'not a UDX packet (no 0xff 0x01 prefix or shorter than 20 bytes)'
    if (this.compact && this.compact(entry)) {
      entry.header_hex = entry.hex.slice(0, 40)
      delete entry.hex
      if (entry.udx) delete entry.udx.payload_text
    }
    if (this.entries.length >= 600) return // a bound no scenario comes near
    this.entries.push(entry)
    const verdict = (this.rule && this.rule(entry)) || { action: 'forward' }
    entry.action = verdict.action
    if (verdict.note) entry.action_note = verdict.note
    if (verdict.action === 'drop') return
    if (verdict.action !== 'delay') return this.socket.send(msg, to, '127.0.0.1')
    entry.delay_ms = verdict.ms
    const timer = setTimeout(() => {
      this.timers.delete(timer)
      entry.forwarded_at_ms = this.elapsed()
      this.socket.send(msg, to, '127.0.0.1')
    }, verdict.ms)
    this.timers.add(timer)
  }

  close() {
    for (const t of this.timers) clearTimeout(t)
    this.socket.close()
  }
}

/** Runs `body` with two UDX peers A and B joined through a tap; returns what the tap saw. */
async function scenario(name, description, body) {
  const UDX = ref('udx-native')
  const tap = new Tap()
  await tap.bind()
  const udxA = new UDX()
  const udxB = new UDX()
  const sa = udxA.createSocket()
  const sb = udxB.createSocket()
  sa.bind(0, '127.0.0.1')
  sb.bind(0, '127.0.0.1')
  tap.aPort = sa.address().port
  tap.bPort = sb.address().port

  const events = []
  const streams = []
  const ctx = {
    tap,
    sa,
    sb,
    quietData: false,
    event(actor, event, detail) {
      const e = { t_ms: tap.elapsed(), actor, event }
      if (detail !== undefined) e.detail = detail
      events.push(e)
    },
    watch(actor, stream) {
      streams.push(stream)
      stream.on('data', (d) => {
        if (ctx.quietData) return
        const detail = { len: d.length }
        const text = printable(d)
        if (text !== null && d.length <= 64) detail.text = text
        else if (d.length <= 64) detail.hex = d.toString('hex')
        ctx.event(actor, 'data', detail)
      })
      stream.on('message', (msg) => {
        const text = printable(msg)
        ctx.event(actor, 'message', text !== null ? { len: msg.length, text } : { len: msg.length, hex: msg.toString('hex') })
      })
      for (const ev of ['end', 'finish', 'close']) stream.on(ev, () => ctx.event(actor, ev))
      stream.on('error', (err) => ctx.event(actor, 'error', err.code || err.message))
      return stream
    },
    /** A's and B's streams, each connected to the other through the tap unless told not to. */
    pair({ a: aOpts = {}, b: bOpts = {}, connectA = true, connectB = true } = {}) {
      const a = ctx.watch('A', udxA.createStream(A_ID, aOpts))
      const b = ctx.watch('B', udxB.createStream(B_ID, bOpts))
      if (connectA) {
        a.connect(sa, B_ID, tap.port, '127.0.0.1')
        ctx.event('A', 'connect', { local_id: A_ID, remote_id: B_ID })
      }
      if (connectB) {
        b.connect(sb, A_ID, tap.port, '127.0.0.1')
        ctx.event('B', 'connect', { local_id: B_ID, remote_id: A_ID })
      }
      return { a, b }
    }
  }

  tap.t0 = now()
  await body(ctx)

  // whatever is still open is destroyed after the part of interest
  await sleep(30)
  tap.rule = null
  const closed = []
  for (const s of streams) {
    if (s.destroyed) continue
    closed.push(nextEvent(s, 'close', 2000).catch(() => {}))
    s.destroy()
  }
  await Promise.all(closed)
  await sa.close()
  await sb.close()
  tap.close()
  return { name, description, stream_ids: { A: A_ID, B: B_ID }, events, packets: tap.entries }
}

/** Resolves once `stream` has emitted `total` bytes of data. */
function received(stream, total) {
  let got = 0
  return new Promise((resolve) => {
    stream.on('data', (d) => {
      got += d.length
      if (got >= total) resolve()
    })
  })
}

/** A rule that applies `verdict` to the first A->B DATA packet with sequence number `seq`. */
function firstDataWithSeq(seq, verdict) {
  let done = false
  return (e) => {
    if (done || e.dir !== 'A->B' || !e.udx || !(e.udx.type & 1) || e.udx.seq !== seq) return null
    done = true
    return verdict
  }
}

const UDX_SCENARIOS = [
  [
    'basic_exchange',
    'Connect both ends, A writes "hello", B writes "world", A ends, B ends. Both streams close without a DESTROY packet. Every DATA/END packet is acked immediately by a standalone 20-byte ACK (type 0).',
    async (ctx) => {
      const { a, b } = ctx.pair()
      a.write('hello')
      ctx.event('A', 'write', 'hello')
      await nextEvent(b, 'data')
      await sleep(20)
      b.write('world')
      ctx.event('B', 'write', 'world')
      await nextEvent(a, 'data')
      await sleep(20)
      const bEnded = nextEvent(b, 'end')
      a.end()
      ctx.event('A', 'end()')
      await bEnded
      await sleep(20)
      const closed = [nextEvent(a, 'close'), nextEvent(b, 'close')]
      b.end()
      ctx.event('B', 'end()')
      await Promise.all(closed)
    }
  ],
  [
    'coalescing_and_segmentation',
    'Two writes in the same event-loop tick ("hello" + "again") are coalesced into ONE DATA packet (libudx defers a partially filled packet to the libuv prepare phase). Then a single 3000-byte write is segmented into DATA packets of at most 1152 payload bytes (MTU 1200 - 20 IPv4 - 8 UDP - 20 UDX header).',
    async (ctx) => {
      const { a, b } = ctx.pair()
      a.write('hello')
      a.write('again')
      ctx.event('A', 'write', 'hello')
      ctx.event('A', 'write', 'again (same tick)')
      await nextEvent(b, 'data')
      await sleep(20)
      const done = received(b, 3000)
      a.write(pattern(3000, 1))
      ctx.event('A', 'write', { len: 3000, pattern: 'byte i = i & 0xff' })
      await done
      await sleep(20)
    }
  ],
  [
    'destroy',
    'A writes "bye", then A.destroy(): A sends one header-only DESTROY packet (type 0x10) carrying its current seq (and increments seq locally) and closes at once without waiting for an ack. B closes with ECONNRESET. Nothing acks a DESTROY.',
    async (ctx) => {
      const { a, b } = ctx.pair()
      a.write('bye')
      ctx.event('A', 'write', 'bye')
      await nextEvent(b, 'data')
      await sleep(20)
      const bClosed = nextEvent(b, 'close')
      a.destroy()
      ctx.event('A', 'destroy()')
      await bClosed
    }
  ],
  [
    'unordered_message',
    'stream.send()/trySend() produce MESSAGE packets (type 0x08): header + payload, carrying the current seq/ack but consuming no sequence number, never retransmitted and never acked.',
    async (ctx) => {
      const { a, b } = ctx.pair()
      const atB = nextEvent(b, 'message')
      a.send(utf8('unordered-from-A'))
      ctx.event('A', 'send', 'unordered-from-A')
      await atB
      const atA = nextEvent(a, 'message')
      b.trySend(utf8('unordered-from-B'))
      ctx.event('B', 'trySend', 'unordered-from-B')
      await atA
      await sleep(20)
      a.write('reliable-after-message')
      ctx.event('A', 'write', 'reliable-after-message')
      await nextEvent(b, 'data')
      await sleep(20)
    }
  ],
  [
    'sack_reorder',
    'A writes 4608 bytes -> DATA seq 0..4 (1132 + 3 x 1152 + 20 bytes: the first packet of a stream holds only 1132). The tap holds back the first transmission of seq 0 for 40 ms. B acks each out-of-order packet with a SACK packet (type 0x04) listing [start, end) ranges (end exclusive). A treats seq 0 as lost (RACK, reordering window 0 before any reordering was seen) and retransmits it; the late original then arrives as a duplicate and is acked again.',
    async (ctx) => {
      const { a, b } = ctx.pair()
      ctx.tap.rule = firstDataWithSeq(0, { action: 'delay', ms: 40, note: 'first transmission of seq 0 held back 40 ms' })
      const done = received(b, 4608)
      a.write(pattern(4608, 7))
      ctx.event('A', 'write', { len: 4608, pattern: 'byte i = (i * 7) & 0xff' })
      await done
      await sleep(80)
    }
  ],
  [
    'loss_fast_retransmit',
    'A writes 3456 bytes -> DATA seq 0..3 (1132 + 1152 + 1152 + 20 bytes). The tap drops the first transmission of seq 1. B acks seq 0 (ack=1), then SACKs [2,3) and [2,4). A (RACK) marks seq 1 lost and retransmits it immediately: same seq, same payload, but the rwnd and ack fields are refreshed at retransmit time.',
    async (ctx) => {
      const { a, b } = ctx.pair()
      ctx.tap.rule = firstDataWithSeq(1, { action: 'drop', note: 'first transmission of seq 1 dropped' })
      const done = received(b, 3456)
      a.write(pattern(3456, 13))
      ctx.event('A', 'write', { len: 3456, pattern: 'byte i = (i * 13) & 0xff' })
      await done
      await sleep(30)
    }
  ],
  [
    'tail_loss_probe',
    'After a warm-up exchange (so an RTT sample exists and TLP is permitted), A writes one small packet whose first transmission the tap drops. No later packet can trigger RACK, so the tail loss probe fires: timeout = 2*srtt + 2 ms (one packet outstanding), or 1000 ms while srtt is 0. With no new data to send, the TLP retransmits the last sent packet (same seq, refreshed ack/rwnd). On loopback srtt is 0 or 1 ms, so this shows up after roughly 4 ms or 1 s.',
    async (ctx) => {
      const { a, b } = ctx.pair()
      a.write('warm-up')
      ctx.event('A', 'write', 'warm-up')
      await nextEvent(b, 'data')
      await sleep(20)
      ctx.tap.rule = firstDataWithSeq(1, { action: 'drop', note: 'first transmission of seq 1 dropped' })
      a.write('probe-me')
      ctx.event('A', 'write', 'probe-me')
      await nextEvent(b, 'data', 5000)
      await sleep(20)
    }
  ],
  [
    'mtu_probe',
    'Path MTU probing during a 150000-byte bulk transfer. The first stream packet can carry only 1132 bytes (its capacity is computed before connect, as if the peer were IPv6: 1200 - 68); later packets carry 1152 (1200 - 48). After the first ack the sender starts probing: a probe is an ordinary DATA packet whose data_offset byte (header[3]) says how many zero bytes of padding follow the 20-byte header, so that the IP packet reaches the probe size (1232, 1264, ... in 32-byte steps, at most 1500 or the interface MTU). When a probe is acked the MTU grows to the probe size and later packets get bigger payloads. To keep this file small, DATA packets that are not probes are stored with header_hex (first 20 bytes) only.',
    async (ctx) => {
      const { a, b } = ctx.pair()
      ctx.tap.compact = (e) => e.dir === 'A->B' && e.udx && e.udx.type & 1 && !e.udx.data_offset
      const done = received(b, 150000)
      ctx.quietData = true
      for (let k = 0; k < 50; k++) a.write(pattern(3000, k + 1))
      ctx.event('A', 'write', { count: 50, len_each: 3000, pattern: 'write k (0-based): byte i = (i * (k + 1)) & 0xff' })
      await done
      ctx.event('A', 'mtu after transfer', a.mtu)
      ctx.event('B', 'mtu after transfer', b.mtu)
      await sleep(20)
    }
  ],
  [
    'keepalive_heartbeat',
    'A.setKeepalive(40) (libudx udx_stream_set_keepalive; NOT used by hyperdht, which keeps alive at the secret-stream layer). While A has nothing in flight it sends a header-only HEARTBEAT packet (type 0x20) every 40 ms; B answers each with a plain ACK. The same packet type is used as zero-window probe.',
    async (ctx) => {
      const { a, b } = ctx.pair()
      a.write('x')
      await nextEvent(b, 'data')
      await sleep(10)
      a.setKeepalive(40)
      ctx.event('A', 'setKeepalive', 40)
      await sleep(135)
      // setKeepalive(0) does not stop an armed keep-alive timer in this libudx (it re-arms with
      // 0 ms and spins), so the scenario ends by destroying the streams
      const bClosed = nextEvent(b, 'close')
      a.destroy()
      ctx.event('A', 'destroy()')
      await bClosed
    }
  ],
  [
    'socket_demux',
    'How one UDP socket is shared between streams and other traffic: after the streams are connected, A\'s socket sends raw datagrams (socket.send, not a stream) through the tap to B\'s socket. Only datagrams that are >= 20 bytes, start with 0xff 0x01 and name a live local stream id are consumed by libudx; everything else is delivered to the socket "message" event (this is where dht-rpc reads its 0x03/0x13 packets and where holepunch probes land).',
    async (ctx) => {
      const { a, b } = ctx.pair()
      const delivered = []
      ctx.sb.on('message', (buf) => {
        delivered.push(buf.toString('hex'))
        ctx.event('B.socket', 'message', { len: buf.length, hex: buf.toString('hex') })
      })
      const raw = [
        ['dht-rpc-like request (first byte 0x03)', '03' + '00'.repeat(10)],
        ['dht-rpc-like response (first byte 0x13)', '13' + '00'.repeat(10)],
        ['holepunch probe (1 byte 0x00)', '00'],
        ['UDX-shaped header, unknown stream id 0xdeadbeef', 'ff010000' + 'efbeadde' + '00004000' + '00000000' + '00000000'],
        ['magic 0xff but version 2', 'ff020000' + 'f0debc9a' + '00004000' + '00000000' + '00000000'],
        ['19 bytes (shorter than a UDX header)', 'ff010000' + 'f0debc9a' + '00'.repeat(11)],
        ['valid 20-byte ACK for live stream 0x9abcdef0 (consumed, not delivered)', 'ff010000' + 'f0debc9a' + '00004000' + '00000000' + '00000000']
      ]
      for (const [label, h] of raw) {
        ctx.event('A.socket', 'send', { label, hex: h })
        await ctx.sa.send(b4a.from(h, 'hex'), ctx.tap.port, '127.0.0.1')
        await sleep(10)
      }
      await sleep(20)
      a.write('stream data still flows')
      await nextEvent(b, 'data')
      await sleep(20)
      ctx.event('B.socket', 'summary', { delivered_to_message_event: delivered })
    }
  ],
  [
    'firewall_preconnect',
    'B creates its stream (id 0x9abcdef0) but does not connect it. A connects and writes first. The packet reaches B\'s socket; libudx finds the stream by id, sees it is not connected to that socket and calls the firewall hook with the sender address. Like hyperdht (connect.js / server.js onsocket), the hook connects the stream to the sender (remote id = A\'s id, address = packet source) and returns false = accept. The packet is then processed normally and acked.',
    async (ctx) => {
      let b = null
      const firewall = (socket, port, host) => {
        ctx.event('B', 'firewall', { port_is_tap: port === ctx.tap.port, host })
        b.connect(socket, A_ID, port, host)
        ctx.event('B', 'connect (inside firewall hook)', { local_id: B_ID, remote_id: A_ID })
        return false
      }
      const pair = ctx.pair({ connectB: false, b: { firewall } })
      b = pair.b
      pair.a.write('first-from-A')
      ctx.event('A', 'write', 'first-from-A')
      await sleep(40)
      b.write('reply-from-B')
      ctx.event('B', 'write', 'reply-from-B')
      await nextEvent(pair.a, 'data')
      await sleep(20)
    }
  ]
]

// ---------------------------------------------------------------------------------------------
// secret-stream

const [NS_INITIATOR, NS_RESPONDER, NS_SEND] = hypercoreCrypto.namespace('hyperswarm/secret-stream', 3)

/** The first `len` bytes of unkeyed BLAKE2b (output max(len, 16)) of a labelled string. */
function fixed(label, len) {
  const out = b4a.alloc(Math.max(len, 16))
  sodium.crypto_generichash(out, utf8('hyperdht-rs test vector: ' + label))
  return out.subarray(0, len)
}

function streamId(handshakeHash, initiator) {
  const out = b4a.alloc(32)
  sodium.crypto_generichash(out, initiator ? NS_INITIATOR : NS_RESPONDER, handshakeHash)
  return out
}

function unorderedKey(handshakeHash, initiator) {
  const out = b4a.alloc(32)
  sodium.crypto_generichash_batch(out, [initiator ? NS_INITIATOR : NS_RESPONDER, NS_SEND], handshakeHash)
  return out
}

const uint24le = (n) => b4a.from([n & 255, (n >>> 8) & 255, (n >>> 16) & 255])
const secretstream = {
  STATE: sodium.crypto_secretstream_xchacha20poly1305_STATEBYTES,
  /** A push state with a chosen header: libsodium's init_pull(header, key) builds the same state. */
  push(key, header) {
    const state = b4a.alloc(this.STATE)
    sodium.crypto_secretstream_xchacha20poly1305_init_pull(state, header, key)
    return state
  },
  frame(state, plain) {
    const cipher = b4a.alloc(plain.length + 17)
    sodium.crypto_secretstream_xchacha20poly1305_push(state, cipher, plain, null, sodium.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE)
    return b4a.concat([uint24le(cipher.length), cipher])
  },
  pull(key, header) {
    const state = b4a.alloc(this.STATE)
    sodium.crypto_secretstream_xchacha20poly1305_init_pull(state, header, key)
    return state
  }
}

/** counter (8) || secretbox(plain) with nonce = counter || 16 zero bytes. */
function unorderedEnvelope(key, counter, plain) {
  const nonce = b4a.alloc(24)
  counter.copy(nonce, 0)
  const sealed = b4a.alloc(16 + plain.length)
  sodium.crypto_secretbox_easy(sealed, plain, nonce, key)
  return b4a.concat([counter, sealed])
}

function incremented(counter) {
  const out = b4a.from(counter)
  sodium.sodium_increment(out)
  return out
}

async function deterministicSecretStream() {
  const hash = fixed('handshake hash', 64)
  const initiatorTx = fixed('initiator tx', 32) // = responder rx
  const initiatorRx = fixed('initiator rx', 32) // = responder tx
  const plains = {
    initiator: [utf8('hello'), b4a.alloc(0), utf8('second message from the initiator'), pattern(1000, 3)],
    responder: [utf8('world'), pattern(300, 5)]
  }
  const unorderedPlains = { initiator: [utf8('unordered-1'), b4a.alloc(0)], responder: [utf8('unordered-reply')] }

  const side = (initiator) => {
    const role = initiator ? 'initiator' : 'responder'
    const key = initiator ? initiatorTx : initiatorRx
    const header = fixed(role + ' secretstream header', 24)
    const initialCounter = fixed(role + ' udp send counter', 8)
    const id = streamId(hash, initiator)
    const state = secretstream.push(key, header)
    const sendKey = unorderedKey(hash, initiator)
    let counter = initialCounter
    return {
      secretstream_key_hex: hex(key),
      secretstream_header_hex: hex(header),
      stream_id_hex: hex(id),
      header_frame_hex: hex(b4a.concat([uint24le(56), id, header])),
      frames: plains[role].map((p) => ({ plaintext_hex: hex(p), plaintext_len: p.length, frame_hex: hex(secretstream.frame(state, p)) })),
      unordered_send_key_hex: hex(sendKey),
      unordered_initial_counter_hex: hex(initialCounter),
      unordered_messages: unorderedPlains[role].map((p) => {
        counter = incremented(counter)
        return { plaintext_hex: hex(p), nonce_prefix_hex: hex(counter), envelope_hex: hex(unorderedEnvelope(sendKey, counter, p)) }
      })
    }
  }
  const initiator = side(true)
  const responder = side(false)

  // Feeds one side's bytes to a reference stream in the other role and records what it emits.
  const check = async (bytes, expected, asInitiator) => {
    const handshake = asInitiator
      ? { tx: initiatorTx, rx: initiatorRx, hash, publicKey: b4a.alloc(32, 1), remotePublicKey: b4a.alloc(32, 2) }
      : { tx: initiatorRx, rx: initiatorTx, hash, publicKey: b4a.alloc(32, 2), remotePublicKey: b4a.alloc(32, 1) }
    const s = new NoiseSecretStream(asInitiator, null, { handshake })
    const data = []
    const messages = []
    let error = null
    s.on('data', (d) => data.push(hex(b4a.from(d))))
    s.on('message', (msg) => messages.push(hex(b4a.from(msg))))
    s.on('error', (err) => {
      error = err.message
    })
    await s.opened
    s.rawStream.write(b4a.from(bytes.header_frame_hex, 'hex'))
    for (const f of bytes.frames) s.rawStream.write(b4a.from(f.frame_hex, 'hex'))
    for (const u of bytes.unordered_messages) s._onmessage(b4a.from(u.envelope_hex, 'hex'))
    await sleep(20)
    s.destroy()
    const wantData = expected.map(hex)
    const wantMessages = bytes.unordered_messages.map((u) => u.plaintext_hex)
    return {
      reference_role: asInitiator ? 'initiator' : 'responder',
      error,
      data_events: data.map((h) => (h.length <= 128 ? { len: h.length / 2, hex: h } : { len: h.length / 2 })),
      unordered_message_events: messages,
      ok: error === null && JSON.stringify(data) === JSON.stringify(wantData) && JSON.stringify(messages) === JSON.stringify(wantMessages),
      note: 'reference stream created with keepAlive 0, so the zero-length frame is delivered as an empty data event; with keepAlive > 0 (hyperdht uses 5000 ms) zero-length frames are silently dropped by the receiver'
    }
  }
  const verified = [await check(initiator, plains.initiator, false), await check(responder, plains.responder, true)]
  if (!verified.every((v) => v.ok)) throw new Error('the reference NoiseSecretStream does not accept the deterministic secret-stream bytes')

  return {
    description:
      'Deterministic @hyperswarm/secret-stream vector. Inputs are fixed (BLAKE2b of labels) instead of coming from a Noise handshake; the secretstream headers are fixed too (libsodium init_push normally draws them at random). A Rust implementation that is given the same tx/rx/hash and the same 24-byte headers must produce exactly these bytes. verified_by_reference shows the bytes were accepted by the real NoiseSecretStream 6.9.2.',
    namespace: {
      NS_INITIATOR_hex: hex(NS_INITIATOR),
      NS_RESPONDER_hex: hex(NS_RESPONDER),
      NS_SEND_hex: hex(NS_SEND),
      derivation: 'h = BLAKE2b-256("hyperswarm/secret-stream"); NS_i = BLAKE2b-256(h || byte(i)) for i = 0 (INITIATOR), 1 (RESPONDER), 2 (SEND)'
    },
    inputs: {
      handshake_hash_hex: hex(hash),
      initiator_tx_hex: hex(initiatorTx),
      initiator_rx_hex: hex(initiatorRx),
      note: 'responder tx = initiator rx, responder rx = initiator tx. Only the first 32 bytes of tx/rx are used as the secretstream key.',
      fixed_input_derivation:
        'every fixed input (hash, tx, rx, both 24-byte secretstream headers, both 8-byte initial counters) = first n bytes of unkeyed BLAKE2b with output length max(n, 16) over the UTF-8 string "hyperdht-rs test vector: " + label; labels: "handshake hash", "initiator tx", "initiator rx", "initiator secretstream header", "responder secretstream header", "initiator udp send counter", "responder udp send counter"'
    },
    unordered_note:
      'nonce_prefix_hex = counter after sodium_increment (little-endian +1) of the previous value; the first message uses initial + 1. envelope = nonce_prefix (8) || MAC (16) || XSalsa20 ciphertext; secretbox nonce = nonce_prefix || 16 zero bytes.',
    frame_note:
      'header_frame_hex = 38 00 00 || stream id (32) || secretstream header (24). frame_hex = uint24le(len(plain) + 17) || push(plain, TAG_MESSAGE). Frames of one side are produced in order from one push state.',
    initiator,
    responder,
    verified_by_reference: verified
  }
}

/** The reliable bytes of one direction: each DATA packet's payload once, in seq order. */
function reliableBytes(packets, dir) {
  const bySeq = new Map()
  for (const p of packets) {
    if (p.dir !== dir || !p.udx || !(p.udx.type & 1) || p.action === 'drop' || bySeq.has(p.udx.seq)) continue
    bySeq.set(p.udx.seq, b4a.from(p.hex, 'hex').subarray(20 + p.udx.data_offset))
  }
  return b4a.concat([...bySeq.keys()].sort((x, y) => x - y).map((s) => bySeq.get(s)))
}

function splitFrames(bytes) {
  const frames = []
  let off = 0
  while (off + 3 <= bytes.length) {
    const len = bytes[off] | (bytes[off + 1] << 8) | (bytes[off + 2] << 16)
    if (off + 3 + len > bytes.length) break
    frames.push(bytes.subarray(off + 3, off + 3 + len))
    off += 3 + len
  }
  return { frames, trailing: bytes.length - off }
}

async function secretStreamOverUdx() {
  const hash = fixed('udx capture handshake hash', 64)
  const itx = fixed('udx capture initiator tx', 32)
  const irx = fixed('udx capture initiator rx', 32)

  const result = await scenario(
    'secret_stream_over_udx',
    'Two NoiseSecretStreams (hyperdht style: framed UDX streams, handshake result passed in, so no Noise messages travel on the stream) over real UDX streams. Sequence: both sides write their 59-byte id+header frame as the very first stream bytes; initiator writes "hello", responder writes "world", initiator writes 2000 bytes (spans two UDX packets), initiator sends one unordered message (UDX MESSAGE packet, secretbox), responder sends an empty keep-alive frame, then both end.',
    async (ctx) => {
      const { a, b } = ctx.pair({ a: { framed: true }, b: { framed: true } })
      const si = new NoiseSecretStream(true, null, { autoStart: false })
      const sr = new NoiseSecretStream(false, null, { autoStart: false })
      const I = 'A.secret(initiator)'
      const R = 'B.secret(responder)'
      const watch = (name, s) => {
        s.on('data', (d) => {
          const text = printable(d)
          ctx.event(name, 'data', text !== null ? { len: d.length, text } : { len: d.length })
        })
        s.on('message', (msg) => ctx.event(name, 'message', { text: printable(msg) }))
        s.on('end', () => ctx.event(name, 'end'))
        s.on('close', () => ctx.event(name, 'close'))
        s.on('error', (err) => ctx.event(name, 'error', err.message))
      }
      watch(I, si)
      watch(R, sr)
      si.start(a, { handshake: { tx: itx, rx: irx, hash, publicKey: b4a.alloc(32, 1), remotePublicKey: b4a.alloc(32, 2) } })
      ctx.event(I, 'start(rawStream, {handshake})')
      sr.start(b, { handshake: { tx: irx, rx: itx, hash, publicKey: b4a.alloc(32, 2), remotePublicKey: b4a.alloc(32, 1) } })
      ctx.event(R, 'start(rawStream, {handshake})')
      await si.opened
      await sr.opened
      await sleep(30)
      si.write(utf8('hello'))
      ctx.event(I, 'write', 'hello')
      await nextEvent(sr, 'data')
      await sleep(20)
      sr.write(utf8('world'))
      ctx.event(R, 'write', 'world')
      await nextEvent(si, 'data')
      await sleep(20)
      const done = received(sr, 2000)
      si.write(pattern(2000, 11))
      ctx.event(I, 'write', { len: 2000, pattern: 'byte i = (i * 11) & 0xff' })
      await done
      await sleep(20)
      const gotMessage = nextEvent(sr, 'message')
      si.send(utf8('unordered-secret'))
      ctx.event(I, 'send', 'unordered-secret')
      await gotMessage
      await sleep(20)
      sr.sendKeepAlive()
      ctx.event(R, 'sendKeepAlive() (empty frame)')
      await sleep(30)
      const closed = [nextEvent(si, 'close'), nextEvent(sr, 'close')]
      si.end()
      ctx.event(I, 'end()')
      await sleep(30)
      sr.end()
      ctx.event(R, 'end()')
      await Promise.all(closed)
    }
  )

  // what went over the wire, decoded with the keys alone
  const decodeDirection = (dir, key) => {
    const bytes = reliableBytes(result.packets, dir)
    const { frames, trailing } = splitFrames(bytes)
    const out = { reliable_bytes_len: bytes.length, trailing_bytes: trailing, frames: [] }
    let state = null
    for (const f of frames) {
      if (state === null) {
        out.frames.push({ kind: 'id+header', len: f.length, stream_id_hex: hex(f.subarray(0, 32)), secretstream_header_hex: hex(f.subarray(32)) })
        state = secretstream.pull(key, f.subarray(32))
        continue
      }
      const plain = b4a.alloc(f.length - 17)
      const tag = b4a.alloc(1)
      let ok = true
      try {
        sodium.crypto_secretstream_xchacha20poly1305_pull(state, plain, tag, f, null)
      } catch {
        ok = false
      }
      const frame = { kind: 'message', len: f.length, decrypt_ok: ok, tag: tag[0], plaintext_len: plain.length }
      const text = printable(plain)
      if (text !== null) frame.plaintext_text = text
      else if (plain.length <= 64) frame.plaintext_hex = hex(plain)
      out.frames.push(frame)
    }
    return out
  }
  const unordered = result.packets
    .filter((p) => p.udx && p.udx.type & 0x08)
    .map((p) => {
      const body = b4a.from(p.hex, 'hex').subarray(20)
      const nonce = b4a.alloc(24)
      body.subarray(0, 8).copy(nonce)
      const plain = b4a.alloc(body.length - 24)
      const ok = sodium.crypto_secretbox_open_easy(plain, body.subarray(8), nonce, unorderedKey(hash, p.dir === 'A->B'))
      return { packet: p.i, dir: p.dir, nonce_prefix_hex: hex(body.subarray(0, 8)), open_ok: ok, plaintext_text: printable(plain) }
    })

  result.secret_stream = {
    handshake_hash_hex: hex(hash),
    initiator_tx_hex: hex(itx),
    initiator_rx_hex: hex(irx),
    initiator_is: 'A',
    expected_stream_id_initiator_hex: hex(streamId(hash, true)),
    expected_stream_id_responder_hex: hex(streamId(hash, false)),
    unordered_send_key_initiator_hex: hex(unorderedKey(hash, true)),
    unordered_send_key_responder_hex: hex(unorderedKey(hash, false)),
    decoded: {
      'A->B (initiator -> responder)': decodeDirection('A->B', itx),
      'B->A (responder -> initiator)': decodeDirection('B->A', irx)
    },
    unordered_messages: unordered,
    note: 'secretstream headers and the unordered-message counters are random per run (libsodium randombytes); everything is decodable from the keys above.'
  }
  return result
}

async function liveScenarios() {
  const list = []
  for (const [name, description, body] of UDX_SCENARIOS) list.push(await scenario(name, description, body))
  list.push(await secretStreamOverUdx())
  return list
}

async function generate({ live }) {
  const scenarios = live ? await liveScenarios() : keptLive(FILE, ['udx_scenarios']).udx_scenarios
  return {
    generator: generatorName(__filename) + ' (node ' + process.version + ')',
    spec: 'spec/04-udx-secret-stream.md',
    versions: {
      'udx-native': version('udx-native'),
      libudx: 'holepunchto/libudx#ae8bff7 (commit pinned by udx-native 1.21.3 CMakeLists.txt)',
      '@hyperswarm/secret-stream': version('@hyperswarm/secret-stream'),
      'sodium-secretstream': version('sodium-secretstream'),
      'sodium-universal': version('sodium-universal'),
      'sodium-native': version('sodium-native')
    },
    conventions: {
      udx_header:
        '20 bytes: [0]=0xff magic, [1]=0x01 version, [2]=type flags, [3]=data offset, [4..8)=remote (receiver) stream id u32 LE, [8..12)=rwnd u32 LE, [12..16)=seq u32 LE, [16..20)=ack u32 LE',
      type_flags: Object.fromEntries(TYPE_FLAGS.map(([bit, name]) => [name, bit])),
      sack_blocks: 'after the header, pairs (start u32 LE, end u32 LE), end exclusive',
      packets_fields:
        'i = capture index, t_ms = ms since scenario start (monotonic clock), dir = A->B or B->A, action = forward | drop | delay (delay_ms, forwarded_at_ms), hex = the exact UDP payload (or header_hex = its first 20 bytes where the payload was left out), udx = decoded header (null if not UDX)',
      topology:
        'A socket 127.0.0.1:pa <-> tap 127.0.0.1:pt <-> B socket 127.0.0.1:pb. Both streams connect to the tap port. A stream id 0x12345678 (305419896), B stream id 0x9abcdef0 (2596069104). Each peer has its own UDX instance. Sequence numbers start at 0 (hyperdht never sets an initial seq).',
      timing_note:
        'Captured from a real run; timestamps, acks of coalesced writes and random parts (secretstream headers, unordered-message counters) differ between runs. Byte layouts and the order of protocol steps are what to test against.'
    },
    udx_scenarios: scenarios,
    secret_stream_deterministic: await deterministicSecretStream()
  }
}

module.exports = { file: FILE, generate }
