'use strict'

// Protomux / blind-relay reference endpoints over in-memory message pipes, driven by the Rust
// tests over JSON lines (tests/tests/relay_protomux_live.rs). One write on a pipe = one frame.
//
// In:  {"op":"client","pipe":N,"id":hex}                      a blind-relay Client on pipe N
//      {"op":"relay","pipe":N}                                 pipe N is a session of the one relay Server
//      {"op":"pair","pipe":N,"isInitiator":bool,"token":hex,"stream":u32}
//      {"op":"unpair","pipe":N,"token":hex}
//      {"op":"push","pipe":N,"frame":hex}                      a frame from the Rust side
//      {"op":"take"}                                           everything that happened since
// Out: one line per op: {"ok":true, ...}; `take` answers {frames:[{pipe,frame}], paired:[{pipe,id}],
//      errors:[{pipe,code}], stats}

const readline = require('readline')
const Protomux = require('protomux')
const relay = require('blind-relay')
const { Duplex } = require('streamx')
const b4a = require('b4a')
const EventEmitter = require('events')

const pipes = new Map()
const clients = new Map()
const out = { frames: [], paired: [], errors: [] }
let nextStream = 1000
const server = new relay.Server({
  createStream() {
    const s = new EventEmitter()
    s.id = nextStream++
    s.relayTo = () => {}
    s.destroy = () => {}
    return s
  }
})

function pipe(n) {
  if (pipes.has(n)) return pipes.get(n)
  const d = new Duplex({
    write(data, cb) {
      out.frames.push({ pipe: n, frame: b4a.toString(data, 'hex') })
      cb(null)
    }
  })
  d.userData = null
  d.on('error', () => {})
  pipes.set(n, d)
  return d
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 2))

const ops = {
  client(m) {
    clients.set(m.pipe, relay.Client.from(pipe(m.pipe), { id: b4a.from(m.id, 'hex') }))
  },
  relay(m) {
    const p = pipe(m.pipe)
    const mux = new Protomux(p)
    mux.pair({ protocol: 'blind-relay' }, (id) => server.accept(p, { id }))
  },
  pair(m) {
    const req = clients.get(m.pipe).pair(m.isInitiator, b4a.from(m.token, 'hex'), { id: m.stream })
    req.on('data', (id) => out.paired.push({ pipe: m.pipe, id }))
    req.on('error', (err) => out.errors.push({ pipe: m.pipe, code: err.code }))
  },
  unpair(m) {
    clients.get(m.pipe).unpair(b4a.from(m.token, 'hex'))
  },
  push(m) {
    pipe(m.pipe).push(b4a.from(m.frame, 'hex'))
  },
  async take() {
    await tick()
    await tick()
    const r = { frames: out.frames, paired: out.paired, errors: out.errors, stats: server.stats }
    out.frames = []
    out.paired = []
    out.errors = []
    return JSON.parse(JSON.stringify(r))
  }
}

const rl = readline.createInterface({ input: process.stdin })
let chain = Promise.resolve()
rl.on('line', (line) => {
  chain = chain.then(async () => {
    let reply
    try {
      const m = JSON.parse(line)
      const r = await ops[m.op](m)
      reply = { ok: true, ...(r || {}) }
    } catch (err) {
      reply = { ok: false, error: String(err && err.stack) }
    }
    process.stdout.write(JSON.stringify(reply) + '\n')
  })
})
rl.on('close', () => process.exit(0))
process.stdout.write(JSON.stringify({ ready: true }) + '\n')
