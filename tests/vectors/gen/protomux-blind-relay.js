'use strict'

// protomux-blind-relay.json: Protomux 3.12.1 sessions and the blind-relay 1.6.1 protocol, run
// with the real packages over in-memory message pipes (one write = one frame, as over a secret
// stream). Deterministic: fixed ids, tokens and fake relay stream ids; no network.
//
// `messages`: pair / unpair encodings and what the reference decodes from tolerated variants.
// `scenarios`: two Protomux sessions driven step by step; per step the operation, the frames
//   each side wrote, the frames each side received (in delivery order) and each side's channel
//   events. A replay plays one side and must write the same frames and see the same events.
// `hostile`: single frames given to a fresh session (with an open handler): whether the
//   reference destroyed the stream, and what it wrote back.
// `relay`: a blind-relay Server pairing two Clients (the captures of spec 05 §6.5 in small),
//   then an unpair and the client's end.

const { ref, b4a, c, hex, unhex, utf8, version, generatorName } = require('./ref.js')

const FILE = 'protomux-blind-relay.json'
const Protomux = ref('protomux')
const relay = ref('blind-relay')
const { Duplex } = ref('streamx')

const tick = () => new Promise((resolve) => setTimeout(resolve, 2))

/** Two framed duplexes joined back to back; every write and every delivery is logged. */
function pipe(onwrite, ondeliver) {
  const a = new Duplex({
    write(data, cb) {
      onwrite('a', data)
      ondeliver('b', data)
      b.push(data)
      cb(null)
    }
  })
  const b = new Duplex({
    write(data, cb) {
      onwrite('b', data)
      ondeliver('a', data)
      a.push(data)
      cb(null)
    }
  })
  a.userData = null
  b.userData = null
  return { a, b }
}

// ---------------------------------------------------------------------------------------------
// messages
// ---------------------------------------------------------------------------------------------

function messages() {
  const token = unhex('11'.repeat(32))
  const token2 = b4a.alloc(32)
  for (let i = 0; i < 32; i++) token2[i] = i
  const pairs = []
  for (const [isInitiator, id, tok] of [
    [true, 0x12345678, token],
    [false, 100, token],
    [false, 0, token2],
    [true, 0xfc, token2],
    [true, 0xfd, token],
    [false, 0xffff, token2],
    [true, 0x10000, token],
    [false, 0xffffffff, token2]
  ]) {
    const value = { isInitiator, token: tok, id, seq: 0 }
    pairs.push({ is_initiator: isInitiator, token: hex(tok), id, seq: 0, encoded: hex(c.encode(relay.messages.pair, value)) })
  }
  const unpairs = [token, token2].map((t) => ({ token: hex(t), encoded: hex(c.encode(relay.messages.unpair, { token: t })) }))
  // Variants the reference decodes: width-prefixed flags, other flag bits, trailing bytes.
  const variants = [
    '03' + '11'.repeat(32) + '0500',
    '02' + '11'.repeat(32) + '0500',
    'fd0100' + '11'.repeat(32) + '0700',
    'fe01000000' + '11'.repeat(32) + '0700',
    'ff0000000000000000' + '11'.repeat(32) + '0900',
    '01' + '11'.repeat(32) + 'fe785634120000ffee',
    '01' + '11'.repeat(32) + 'fd0001' + '09'
  ]
  const pairDecode = variants.map((v) => {
    const d = relay.messages.pair.decode({ buffer: unhex(v), start: 0, end: unhex(v).length })
    return { encoded: v, is_initiator: d.isInitiator, token: hex(d.token), id: d.id, seq: d.seq }
  })
  return { pair: pairs, unpair: unpairs, pair_decode: pairDecode }
}

// ---------------------------------------------------------------------------------------------
// scenarios
// ---------------------------------------------------------------------------------------------

const ID = hex(utf8('channel-id'))
const SCENARIOS = {
  // The peer's open arrives first: a handler accepts it; a message sent before the accept is
  // buffered and delivered after the open.
  open_request_and_early_message: [
    { side: 'b', op: 'pair', protocol: 'demo', id: null, types: 2 },
    { side: 'a', op: 'open', protocol: 'demo', id: ID, types: 2, settle: false },
    { side: 'a', op: 'send', ch: 0, type: 1, data: hex(utf8('early')) },
    { side: 'b', op: 'send', ch: 0, type: 0, data: hex(utf8('back')) },
    { side: 'a', op: 'send', ch: 0, type: 0, data: '' }
  ],
  // Both open before either open arrives: each pairs with the other's.
  simultaneous_open: [
    { side: 'a', op: 'open', protocol: 'sim', id: null, types: 1, settle: false },
    { side: 'b', op: 'open', protocol: 'sim', id: null, types: 1 },
    { side: 'a', op: 'send', ch: 0, type: 0, data: '01020304' },
    { side: 'b', op: 'send', ch: 0, type: 0, data: '05' }
  ],
  // Ids: two channels, the first closed by its opener, a third takes id 1 again; the peer's
  // close is one-way; a message for the closed channel is ignored.
  close_and_id_reuse: [
    { side: 'b', op: 'pair', protocol: 'p1', id: null, types: 1 },
    { side: 'b', op: 'pair', protocol: 'p2', id: null, types: 1 },
    { side: 'b', op: 'pair', protocol: 'p3', id: null, types: 1 },
    { side: 'a', op: 'open', protocol: 'p1', id: null, types: 1 },
    { side: 'a', op: 'open', protocol: 'p2', id: null, types: 1 },
    { side: 'a', op: 'close', ch: 0 },
    { side: 'a', op: 'open', protocol: 'p3', id: null, types: 1 },
    { side: 'b', op: 'close', ch: 1 },
    { side: 'a', op: 'send', ch: 2, type: 0, data: 'aa' }
  ],
  // Closed before the peer's open arrived: the id stays taken until the peer opens, then frees.
  // (Corked, so that the peer gets open and close in one frame: delivered as two frames, whether
  // the peer's accepted channel fires `onopen` before the close depends on Node's tick timing.)
  close_before_remote_open: [
    { side: 'b', op: 'pair', protocol: 'q', id: null, types: 1 },
    { side: 'a', op: 'cork' },
    { side: 'a', op: 'open', protocol: 'q', id: null, types: 1 },
    { side: 'a', op: 'close', ch: 0 },
    { side: 'a', op: 'uncork' },
    { side: 'a', op: 'open', protocol: 'q2', id: null, types: 1 }
  ],
  // Nobody takes the open: rejected, the opener's channel closes (remote).
  reject: [{ side: 'a', op: 'open', protocol: 'nobody-listens', id: null, types: 1 }],
  // A handler for another id does not take it; one for any id does.
  pair_by_id: [
    { side: 'b', op: 'pair', protocol: 'k', id: hex(utf8('x')), types: 1 },
    { side: 'a', op: 'open', protocol: 'k', id: hex(utf8('y')), types: 1 },
    { side: 'b', op: 'pair', protocol: 'k', id: null, types: 1 },
    { side: 'a', op: 'open', protocol: 'k', id: hex(utf8('z')), types: 1 }
  ],
  // Corked: open and two messages in one batch; the peer answers with a batch.
  batch: [
    { side: 'b', op: 'pair', protocol: 'demo', id: null, types: 1 },
    { side: 'a', op: 'cork' },
    { side: 'a', op: 'open', protocol: 'demo', id: null, types: 1 },
    { side: 'a', op: 'send', ch: 0, type: 0, data: hex(utf8('hi')) },
    { side: 'a', op: 'send', ch: 0, type: 0, data: hex(utf8('yo')) },
    { side: 'a', op: 'uncork' }
  ],
  // A batch over two channels and control messages (channel switches, a close inside).
  batch_channels: [
    { side: 'b', op: 'pair', protocol: 'm', id: null, types: 2 },
    { side: 'b', op: 'pair', protocol: 'n', id: null, types: 2 },
    { side: 'a', op: 'open', protocol: 'm', id: null, types: 2 },
    { side: 'a', op: 'cork' },
    { side: 'a', op: 'open', protocol: 'n', id: null, types: 2 },
    { side: 'a', op: 'send', ch: 0, type: 1, data: '00' },
    { side: 'a', op: 'send', ch: 1, type: 0, data: 'ff'.repeat(300) },
    { side: 'a', op: 'send', ch: 1, type: 1, data: '' },
    { side: 'a', op: 'send', ch: 0, type: 0, data: '0102' },
    { side: 'a', op: 'close', ch: 0 },
    { side: 'a', op: 'uncork' }
  ],
  // Handshake bytes after the id; message types the receiver does not have are ignored.
  handshake_and_unknown_type: [
    { side: 'b', op: 'pair', protocol: 'hs', id: null, types: 1, handshake: '' },
    { side: 'a', op: 'open', protocol: 'hs', id: null, types: 3, handshake: hex(utf8('hello')) },
    { side: 'a', op: 'send', ch: 0, type: 2, data: '77' },
    { side: 'a', op: 'send', ch: 0, type: 0, data: '88' }
  ]
}

async function scenario(steps) {
  let step = 0
  const records = steps.map((s) => ({ op: s, wrote: { a: [], b: [] }, received: { a: [], b: [] }, events: { a: [], b: [] } }))
  const { a, b } = pipe(
    (side, data) => records[step] && records[step].wrote[side].push(hex(data)),
    (side, data) => records[step] && records[step].received[side].push(hex(data))
  )
  const streams = { a, b }
  const muxes = { a: new Protomux(a), b: new Protomux(b) }
  const channels = { a: [], b: [] }
  const destroyed = { a: false, b: false }
  a.on('close', () => (destroyed.a = true))
  b.on('close', () => (destroyed.b = true))

  function create(side, { protocol, id, types, handshake }) {
    const index = channels[side].length
    const ev = (e) => records[step] && records[step].events[side].push({ ch: index, ...e })
    const messages = []
    for (let t = 0; t < types; t++) {
      messages.push({ encoding: c.raw, onmessage: (m) => ev({ event: 'message', type: t, data: hex(m) }) })
    }
    const ch = muxes[side].createChannel({
      protocol,
      id: id === null ? null : unhex(id),
      handshake: handshake !== undefined ? c.raw : null,
      messages,
      onopen: (hs) => ev({ event: 'open', handshake: hs ? hex(hs) : '' }),
      onclose: (isRemote) => ev({ event: 'close', remote: isRemote })
    })
    if (ch === null) throw new Error('createChannel refused')
    channels[side].push(ch)
    ch.open(handshake !== undefined ? unhex(handshake) : undefined)
  }

  for (step = 0; step < steps.length; step++) {
    const s = steps[step]
    const mux = muxes[s.side]
    if (s.op === 'open') create(s.side, s)
    else if (s.op === 'pair') mux.pair({ protocol: s.protocol, id: s.id === null ? null : unhex(s.id) }, (id) => create(s.side, { ...s, id: id ? hex(id) : null }))
    else if (s.op === 'send') channels[s.side][s.ch].messages[s.type].send(unhex(s.data))
    else if (s.op === 'close') channels[s.side][s.ch].close()
    else if (s.op === 'cork') mux.cork()
    else if (s.op === 'uncork') mux.uncork()
    else throw new Error('unknown op ' + s.op)
    if (s.settle !== false) {
      await tick()
      await tick()
    }
  }
  if (destroyed.a || destroyed.b) throw new Error('a scenario destroyed a stream')
  for (const s of Object.values(streams)) s.destroy()
  return records
}

// ---------------------------------------------------------------------------------------------
// hostile frames
// ---------------------------------------------------------------------------------------------

const HOSTILE = [
  ['empty frame', ''],
  ['truncated channel id', 'fd01'],
  ['truncated type', '01'],
  ['message for an unknown channel', '0700aabb'],
  ['unknown control type', '0009ffff'],
  ['open of the control channel', '0001000464656d6f00'],
  ['open skipping an id', '00010204' + hex(utf8('demo')) + '00'],
  ['open with a truncated protocol', '0001010964656d6f'],
  ['open with a truncated id', '0001010464656d6f2011'],
  ['open of an unhandled protocol', '000101036e6f7000'],
  ['open of the handled protocol', '000101036f6b7900'],
  ['open twice with one id', '000101036f6b7900'],
  ['reject of nothing', '000201'],
  ['reject of id 0', '000200'],
  ['close of id 0', '000300'],
  ['close of an unknown id', '000305'],
  ['batch with a length past its end', '0000000901010364656d6f00'],
  ['batch with a truncated length', '000000fd'],
  ['batch switching to a truncated channel', '00000000'],
  ['batch of two opens', '000000070101036f6b7900070102036f6b7900'],
  ['batch switching channels, then an open', '00000500000007' + '0101036f6b7900'],
  ['batch with a message for a pending channel', '000000070101036f6b79000001030001aa'],
  ['nested batch', '0000000a0000000701010' + '36f6b7900'],
  ['huge uint channel', 'ff0000000000002000' + '00'],
  ['channel id above 2^53', 'ffffffffffffffffff00']
]

async function hostile() {
  const out = []
  for (const [name, frame] of HOSTILE) {
    let step = 0
    const wrote = [[]]
    const { a, b } = pipe(
      (side, data) => side === 'b' && step === 0 && wrote[0].push(hex(data)),
      () => {}
    )
    const mux = new Protomux(b)
    mux.pair({ protocol: 'oky' }, (id) => {
      const ch = mux.createChannel({ protocol: 'oky', id })
      if (ch) ch.open()
    })
    let destroyed = false
    b.on('close', () => (destroyed = true))
    b.on('error', () => {})
    // 'open twice with one id' sends the open two times.
    const frames = name === 'open twice with one id' ? [frame, frame] : [frame]
    for (const f of frames) {
      if (f === '') b.push(b4a.alloc(0))
      else b.push(unhex(f))
      await tick()
      await tick()
    }
    step = 1
    out.push({ name, frames, destroyed, wrote: wrote[0] })
    a.destroy()
    b.destroy()
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// blind-relay
// ---------------------------------------------------------------------------------------------

async function relayExchange() {
  const token = unhex('11'.repeat(32))
  const log = { pipe1: [], pipe2: [] }
  const p1 = pipe((side, data) => log.pipe1.push({ from: side === 'a' ? 'client' : 'relay', frame: hex(data) }), () => {})
  const p2 = pipe((side, data) => log.pipe2.push({ from: side === 'a' ? 'client' : 'relay', frame: hex(data) }), () => {})
  let nextId = 0xdeadbeef
  const streamIds = []
  const server = new relay.Server({
    createStream() {
      const EventEmitter = require('events')
      const s = new EventEmitter()
      s.id = nextId++
      streamIds.push(s.id)
      s.relayTo = () => {}
      s.destroy = () => {}
      return s
    }
  })
  for (const p of [p1, p2]) {
    const mux = new Protomux(p.b)
    mux.pair({ protocol: 'blind-relay' }, (id) => server.accept(p.b, { id }))
  }
  const idA = unhex('aa'.repeat(32))
  const idC = unhex('cc'.repeat(32))
  const clientA = relay.Client.from(p1.a, { id: idA })
  const clientC = relay.Client.from(p2.a, { id: idC })
  const paired = []
  clientA.pair(true, token, { id: 0x12345678 }).on('data', (id) => paired.push({ client: 'initiator', relay_stream_id: id }))
  await tick()
  await tick()
  clientC.pair(false, token, { id: 100 }).on('data', (id) => paired.push({ client: 'follower', relay_stream_id: id }))
  await tick()
  await tick()
  const pairedLog = { pipe1: log.pipe1.slice(), pipe2: log.pipe2.slice() }
  log.pipe1.length = 0
  clientA.unpair(token)
  await clientA.end()
  await tick()
  const stats = JSON.parse(JSON.stringify(server.stats))
  p1.a.destroy()
  p1.b.destroy()
  p2.a.destroy()
  p2.b.destroy()
  return {
    token: hex(token),
    initiator: { channel_id: hex(idA), stream_id: 0x12345678 },
    follower: { channel_id: hex(idC), stream_id: 100 },
    relay_stream_ids: streamIds,
    initiator_pipe: pairedLog.pipe1,
    follower_pipe: pairedLog.pipe2,
    paired,
    after_unpair_and_end: log.pipe1,
    relay_stats: stats
  }
}

async function generate() {
  return {
    about: {
      description:
        'Protomux and blind-relay frames from the reference packages over in-memory message pipes (one write = one frame). Byte strings are lowercase hex. Scenario steps: op = the operation of `side` (open / pair handler / send / close / cork / uncork; `ch` indexes that side\'s channels in creation order, a pair handler creating the next one); wrote / received: frames per side during the step, in order; events: per side, the channel callbacks (open with the handshake, message with type and data, close with remote).',
      generator: generatorName(__filename),
      spec: '05-blind-relay.md §5, §6',
      versions: { protomux: version('protomux'), 'blind-relay': version('blind-relay'), 'compact-encoding': version('compact-encoding'), 'compact-encoding-bitfield': version('compact-encoding-bitfield'), 'bits-to-bytes': version('bits-to-bytes') }
    },
    messages: messages(),
    scenarios: await (async () => {
      const out = {}
      for (const [name, steps] of Object.entries(SCENARIOS)) out[name] = await scenario(steps)
      return out
    })(),
    hostile: await hostile(),
    relay: await relayExchange()
  }
}

module.exports = { file: FILE, generate }
