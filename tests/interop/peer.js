'use strict'

// peer.js: one long-running Node.js process that hosts any number of *reference* DHT nodes
// (dht-rpc 6.27.0 for kind "rpc", hyperdht 6.34.0 for kind "hyperdht") on 127.0.0.1, for the
// Rust interop tests (driven by tests/src/lib.rs).
//
// Protocol: newline-delimited JSON. Each stdin line is one request {"id":..,"op":"..",...};
// each stdout line is one reply carrying the request's "id": {"id":..,...result} or
// {"id":..,"error":"message"}. Requests run concurrently, so replies may come out of order.
// On startup one line {"id":null,"event":"ready","pid":..,"versions":{..}} is printed.
// Logs go to stderr. The process destroys its nodes and exits when stdin closes.
// Binary values (ids, targets, values, tokens) are lowercase hex strings; addresses are
// {host, port} objects or "host:port" strings. See the op table at the bottom for all ops.

const readline = require('readline')
const dgram = require('dgram')
const b4a = require('b4a')
const RpcDHT = require('dht-rpc')
const HyperDHT = require('hyperdht')

const HOST = '127.0.0.1' // the only address nodes ever bind to
const DEFAULT_TIMEOUT_MS = 20000 // per-op timeout unless the request carries "timeout" (ms)
const DEFAULT_COMMAND = 42 // rpc nodes answer this command with utf8 "node:<port>" by default
const MAX_LOGGED_REQUESTS = 1000

const nodes = new Map() // name -> { name, kind, dht, responders: Map<command, Buffer|null>, requests: [] }

const log = (...args) => console.error('[peer.js]', ...args)

// ---------------------------------------------------------------------------------------------
// helpers

function send(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

const toHex = (buf) => (buf ? b4a.toString(buf, 'hex') : null)

function fromHex(str, what, len) {
  if (str === null || str === undefined) return null
  if (typeof str !== 'string' || !/^([0-9a-fA-F]{2})*$/.test(str)) throw new Error(`${what}: expected hex string`)
  const buf = b4a.from(str, 'hex')
  if (len !== undefined && buf.byteLength !== len) throw new Error(`${what}: expected ${len} bytes, got ${buf.byteLength}`)
  return buf
}

// Only loopback peers are allowed, so a test can never talk to the public network by accident.
function checkHost(host, what) {
  if (typeof host !== 'string' || !/^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)) {
    throw new Error(`${what}: host must be a 127.x.x.x address, got ${JSON.stringify(host)}`)
  }
  return host
}

function checkPort(port, what) {
  if (!Number.isInteger(port) || port <= 0 || port > 65535) throw new Error(`${what}: bad port ${JSON.stringify(port)}`)
  return port
}

// "127.0.0.1:1234" or {host, port} -> {host, port}
function parseAddr(a, what = 'address') {
  if (typeof a === 'string') {
    const i = a.lastIndexOf(':')
    if (i === -1) throw new Error(`${what}: expected "host:port", got ${JSON.stringify(a)}`)
    a = { host: a.slice(0, i), port: Number(a.slice(i + 1)) }
  }
  if (!a || typeof a !== 'object') throw new Error(`${what}: expected address`)
  return { host: checkHost(a.host, what), port: checkPort(a.port, what) }
}

const peerJson = (p) => ({ host: p.host, port: p.port, id: toHex(p.id) })

function replyJson(m) {
  return {
    from: peerJson(m.from),
    to: m.to ? { host: m.to.host, port: m.to.port } : null,
    value: toHex(m.value),
    error: m.error,
    token: toHex(m.token),
    closerNodes: (m.closerNodes || []).map((n) => ({ host: n.host, port: n.port })),
    rtt: m.rtt
  }
}

function getNode(msg) {
  const entry = nodes.get(msg.name)
  if (!entry) throw new Error(`no node named ${JSON.stringify(msg.name)}`)
  return entry
}

function describe(entry) {
  const { dht } = entry
  const server = dht.io.serverSocket
  return {
    name: entry.name,
    kind: entry.kind,
    host: HOST,
    port: server ? server.address().port : null, // the server socket (the node's DHT address)
    clientPort: dht.io.clientSocket ? dht.io.clientSocket.address().port : null,
    nodeId: toHex(dht.id), // null while ephemeral
    firewalled: dht.firewalled,
    ephemeral: dht.ephemeral,
    bootstrapped: dht.bootstrapped,
    destroyed: dht.destroyed,
    natHost: dht.host, // what the network told us our address is
    natPort: dht.port
  }
}

// Finds a currently free UDP port on 127.0.0.1 (DHT.bootstrapper refuses port 0).
function freeUdpPort() {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp4')
    s.on('error', reject)
    s.bind(0, HOST, () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })
}

// Runs a query (Readable stream of replies) to completion, destroying it if the op times out.
async function runQuery(q, ctx) {
  ctx.cleanup.push(() => q.destroy())
  const replies = []
  q.on('data', (m) => replies.push(m))
  await q.finished()
  return {
    replies,
    closest: q.closestReplies.map((m) => peerJson(m.from)),
    successes: q.successes,
    errors: q.errors
  }
}

// ---------------------------------------------------------------------------------------------
// node lifecycle

async function spawn(msg, ctx) {
  const name = msg.name
  if (typeof name !== 'string' || name === '') throw new Error('spawn: "name" (string) is required')
  if (nodes.has(name)) throw new Error(`spawn: node ${JSON.stringify(name)} already exists`)
  if (msg.host !== undefined && msg.host !== HOST) throw new Error(`spawn: nodes only bind to ${HOST}`)
  const kind = msg.kind || 'rpc'
  const DHT = kind === 'rpc' ? RpcDHT : kind === 'hyperdht' ? HyperDHT : null
  if (DHT === null) throw new Error(`spawn: unknown kind ${JSON.stringify(kind)} (use "rpc" or "hyperdht")`)
  const port = msg.port || 0
  if (port !== 0) checkPort(port, 'spawn')

  // "opts" passes extra constructor options through (e.g. concurrency); host and bootstrap
  // are always ours. An empty bootstrap list never falls back to the public hyperdht nodes.
  const opts = {
    ...(msg.opts || {}),
    host: HOST,
    bootstrap: (msg.bootstrap || []).map((a) => parseAddr(a, 'spawn bootstrap'))
  }
  if (typeof msg.ephemeral === 'boolean') opts.ephemeral = msg.ephemeral
  if (typeof msg.firewalled === 'boolean') opts.firewalled = msg.firewalled

  const entry = { name, kind, dht: null, responders: new Map(), requests: [] }
  nodes.set(name, entry) // reserve the name while we bind/bootstrap
  ctx.cleanup.push(() => destroyEntry(entry))

  try {
    for (let attempt = 0; ; attempt++) {
      let dht
      if (msg.bootstrapper) {
        const p = port || (await freeUdpPort())
        dht = DHT.bootstrapper(p, HOST, opts)
      } else {
        // [0, 0] = "any free port"; a plain 0 would make hyperdht try its default 49737 first.
        dht = new DHT({ ...opts, port: port || [0, 0] })
      }
      entry.dht = dht
      hookRequests(entry)
      try {
        await dht.bind()
        break
      } catch (err) {
        await dht.destroy()
        // a port picked by freeUdpPort() may have been grabbed in between: retry a few times
        if (!msg.bootstrapper || port !== 0 || attempt >= 4) throw err
        log(`bootstrapper bind failed (${err.message}), retrying`)
      }
    }
    const serverPort = entry.dht.io.serverSocket.address().port
    if (kind === 'rpc' && msg.defaultResponder !== false) {
      entry.responders.set(DEFAULT_COMMAND, b4a.from(`node:${serverPort}`))
    }
    await entry.dht.fullyBootstrapped()
    if (ctx.timedOut) throw new Error('spawn timed out')
  } catch (err) {
    await destroyEntry(entry)
    throw err
  }
  return describe(entry)
}

// Wraps dht.onrequest (called by dht-rpc for every non-internal request) so that the
// "respond" op can answer chosen commands, and so incoming requests are logged. Everything
// else falls through to the library: hyperdht's own handlers, or for plain dht-rpc the
// 'request' event, which without listeners replies UNKNOWN_COMMAND exactly as upstream does.
function hookRequests(entry) {
  const dht = entry.dht
  const original = dht.onrequest
  dht.onrequest = function (req) {
    entry.requests.push({
      command: req.command,
      from: peerJson(req.from),
      target: toHex(req.target),
      value: toHex(req.value),
      token: toHex(req.token)
    })
    if (entry.requests.length > MAX_LOGGED_REQUESTS) entry.requests.shift()
    if (entry.responders.has(req.command)) {
      req.reply(entry.responders.get(req.command))
      return true
    }
    return original.call(this, req)
  }
}

async function destroyEntry(entry) {
  if (nodes.get(entry.name) === entry) nodes.delete(entry.name)
  if (entry.dht && !entry.dht.destroyed) await entry.dht.destroy()
}

// Spawns a bootstrapper "b" plus size-1 persistent nodes "n1".. bootstrapped to it
// (like @hyperswarm/testnet: ephemeral:false, firewalled:false).
async function testnet(msg, ctx) {
  const size = msg.size === undefined ? 3 : msg.size
  if (!Number.isInteger(size) || size < 1) throw new Error('testnet: "size" must be >= 1')
  const prefix = msg.prefix || ''
  const kind = msg.kind || 'rpc'
  const out = []
  const b = await spawn({ name: prefix + 'b', kind, bootstrapper: true, port: 0, opts: msg.opts }, ctx)
  out.push(b)
  const bootstrap = [{ host: HOST, port: b.port }]
  for (let i = 1; i < size; i++) {
    const n = { name: `${prefix}n${i}`, kind, bootstrap, ephemeral: false, firewalled: false, opts: msg.opts }
    out.push(await spawn(n, ctx))
  }
  const short = (d) => ({ name: d.name, host: d.host, port: d.port, nodeId: d.nodeId, firewalled: d.firewalled, ephemeral: d.ephemeral })
  return { nodes: out.map(short), bootstrap: [`${HOST}:${b.port}`] }
}

// ---------------------------------------------------------------------------------------------
// ops

const ops = {
  spawn,
  testnet,

  async destroy(msg) {
    await destroyEntry(getNode(msg))
    return { destroyed: msg.name }
  },

  async state(msg) {
    return describe(getNode(msg))
  },

  async list() {
    return { nodes: [...nodes.values()].filter((e) => e.dht).map(describe) }
  },

  // The routing table as the library exposes it: toArray() (most recently seen first) with
  // each entry's id, plus the node's own state.
  async table(msg) {
    const entry = getNode(msg)
    const full = entry.dht.nodes.toArray({ reverse: true })
    return {
      ...describe(entry),
      nodes: entry.dht.toArray(),
      table: full.map((n) => peerJson(n)),
      size: entry.dht.table.toArray().length
    }
  },

  async addNode(msg) {
    const entry = getNode(msg)
    entry.dht.addNode(parseAddr(msg, 'addNode'))
    return { size: entry.dht.table.toArray().length }
  },

  async findNode(msg, ctx) {
    const { dht } = getNode(msg)
    const r = await runQuery(dht.findNode(fromHex(msg.target, 'target', 32)), ctx)
    return {
      closest: r.closest,
      replies: r.replies.length,
      repliesFrom: r.replies.map((m) => peerJson(m.from)),
      successes: r.successes,
      errors: r.errors
    }
  },

  // A user query; with "commit":true the closest replies are committed (token + same command,
  // like dht-rpc's auto commit) and the commit responses are reported in "commits".
  async query(msg, ctx) {
    const { dht } = getNode(msg)
    if (!Number.isInteger(msg.command) || msg.command < 0) throw new Error('query: "command" (uint) is required')
    const commits = []
    const opts = {}
    if (msg.commit) {
      opts.commit = async (reply, dht, query) => {
        if (!reply.token) throw new Error('No token received for closest node')
        const res = await dht.request(
          { token: reply.token, target: query.target, command: query.command, value: query.value },
          reply.from
        )
        commits.push({ from: peerJson(res.from), value: toHex(res.value), error: res.error })
        return res
      }
    }
    const q = dht.query(
      { target: fromHex(msg.target, 'target', 32), command: msg.command, value: fromHex(msg.value, 'value') },
      opts
    )
    const r = await runQuery(q, ctx)
    return {
      replies: r.replies.map((m) => ({ from: peerJson(m.from), value: toHex(m.value), error: m.error, token: toHex(m.token) })),
      closest: r.closest,
      commits,
      successes: r.successes,
      errors: r.errors
    }
  },

  async ping(msg) {
    const { dht } = getNode(msg)
    const res = await dht.ping(parseAddr(msg, 'ping'))
    return { from: peerJson(res.from), to: { host: res.to.host, port: res.to.port }, rtt: res.rtt }
  },

  // One direct (non-internal) request: {"op":"request","name","host","port","command",
  // "target":hex|null,"value":hex|null,"token":hex|null}. Error replies resolve too.
  async request(msg) {
    const { dht } = getNode(msg)
    const res = await dht.request(
      {
        command: msg.command,
        target: fromHex(msg.target, 'target', 32),
        value: fromHex(msg.value, 'value'),
        token: fromHex(msg.token, 'token', 32)
      },
      parseAddr(msg, 'request'),
      { retry: msg.retry !== false }
    )
    return { response: replyJson(res) } // nested: a top-level "error" key means op failure
  },

  // Make the node answer external requests for `command` with `value` (hex or null);
  // "remove":true restores the library's default behaviour for that command.
  async respond(msg) {
    const entry = getNode(msg)
    if (!Number.isInteger(msg.command) || msg.command < 0) throw new Error('respond: "command" (uint) is required')
    if (msg.remove) entry.responders.delete(msg.command)
    else entry.responders.set(msg.command, fromHex(msg.value, 'value'))
    return { command: msg.command, responders: [...entry.responders.keys()] }
  },

  // Non-internal requests this node received (oldest first); "clear":true empties the log.
  async requests(msg) {
    const entry = getNode(msg)
    const requests = entry.requests.slice()
    if (msg.clear) entry.requests.length = 0
    return { requests }
  },

  // ----- hyperdht records (spawn with "kind":"hyperdht") -----------------------------------

  async keyPair(msg) {
    const DHT = require('hyperdht')
    const kp = DHT.keyPair(fromHex(msg.seed, 'seed', 32))
    return { publicKey: toHex(kp.publicKey), secretKey: toHex(kp.secretKey) }
  },

  async immutablePut(msg) {
    const { dht } = getNode(msg)
    const r = await dht.immutablePut(fromHex(msg.value, 'value'))
    return { hash: toHex(r.hash), closestNodes: r.closestNodes.map(peerJson) }
  },

  async immutableGet(msg) {
    const { dht } = getNode(msg)
    const r = await dht.immutableGet(fromHex(msg.hash, 'hash', 32))
    return { found: !!r, value: r ? toHex(r.value) : null, from: r ? peerJson(r.from) : null }
  },

  async mutablePut(msg) {
    const DHT = require('hyperdht')
    const { dht } = getNode(msg)
    const kp = DHT.keyPair(fromHex(msg.seed, 'seed', 32))
    const r = await dht.mutablePut(kp, fromHex(msg.value, 'value'), { seq: msg.seq || 0 })
    return { publicKey: toHex(r.publicKey), seq: r.seq, signature: toHex(r.signature), closestNodes: r.closestNodes.map(peerJson) }
  },

  async mutableGet(msg) {
    const { dht } = getNode(msg)
    const opts = {}
    if (msg.seq !== undefined) opts.seq = msg.seq
    if (msg.latest !== undefined) opts.latest = msg.latest
    const r = await dht.mutableGet(fromHex(msg.publicKey, 'publicKey', 32), opts)
    return { found: !!r, value: r ? toHex(r.value) : null, seq: r ? r.seq : null, signature: r ? toHex(r.signature) : null }
  },

  async announce(msg, ctx) {
    const DHT = require('hyperdht')
    const { dht } = getNode(msg)
    const kp = DHT.keyPair(fromHex(msg.seed, 'seed', 32))
    const relays = (msg.relayAddresses || []).map((a) => parseAddr(a, 'relay'))
    const q = dht.announce(fromHex(msg.topic, 'topic', 32), kp, relays)
    const r = await runQuery(q, ctx)
    return { publicKey: toHex(kp.publicKey), closest: r.closest, replies: r.replies.length }
  },

  async lookup(msg, ctx) {
    const { dht } = getNode(msg)
    const r = await runQuery(dht.lookup(fromHex(msg.topic, 'topic', 32)), ctx)
    const peers = new Set()
    for (const reply of r.replies) for (const p of reply.peers) peers.add(toHex(p.publicKey))
    return {
      peers: [...peers],
      replies: r.replies.map((m) => ({
        from: peerJson(m.from),
        peers: m.peers.map((p) => ({ publicKey: toHex(p.publicKey), relayAddresses: p.relayAddresses.map((a) => ({ host: a.host, port: a.port })) }))
      })),
      closest: r.closest
    }
  },

  async unannounce(msg) {
    const DHT = require('hyperdht')
    const { dht } = getNode(msg)
    const kp = DHT.keyPair(fromHex(msg.seed, 'seed', 32))
    await dht.unannounce(fromHex(msg.topic, 'topic', 32), kp)
    return { ok: true }
  },

  // ----- hyperdht connections (kind "hyperdht") ----------------------------------------------

  // An echo server on the key pair from `seed`: every connection echoes what it receives.
  async listen(msg) {
    const DHT = require('hyperdht')
    const entry = getNode(msg)
    const kp = DHT.keyPair(fromHex(msg.seed, 'seed', 32))
    const opts = msg.firewallReject ? { firewall: () => true } : {}
    const server = entry.dht.createServer(opts, (socket) => {
      entry.accepted = (entry.accepted || 0) + 1
      socket.on('error', () => {})
      socket.pipe(socket)
    })
    await server.listen(kp)
    entry.servers = entry.servers || []
    entry.servers.push(server)
    return { publicKey: toHex(kp.publicKey), address: server.address() }
  },

  // Connects to `publicKey`, writes `message` (hex), waits for the same bytes back.
  async connect(msg, ctx) {
    const { dht } = getNode(msg)
    const opts = {}
    if (msg.localConnection !== undefined) opts.localConnection = msg.localConnection
    const socket = dht.connect(fromHex(msg.publicKey, 'publicKey', 32), opts)
    ctx.cleanup.push(() => socket.destroy())
    const started = Date.now()
    await new Promise((resolve, reject) => {
      socket.once('open', resolve)
      socket.once('error', reject)
      socket.once('close', () => reject(new Error('closed before open')))
    })
    const openMs = Date.now() - started
    const message = fromHex(msg.message || '', 'message')
    const echoed = await new Promise((resolve, reject) => {
      const chunks = []
      let got = 0
      socket.on('data', (d) => {
        chunks.push(d)
        got += d.byteLength
        if (got >= message.byteLength) resolve(b4a.concat(chunks))
      })
      socket.once('error', reject)
      socket.write(message)
    })
    const remote = socket.rawStream && socket.rawStream.remoteHost ? { host: socket.rawStream.remoteHost, port: socket.rawStream.remotePort } : null
    socket.destroy()
    return { echoed: toHex(echoed), openMs, remotePublicKey: toHex(socket.remotePublicKey), remote }
  },

  // A server that hashes everything each connection sends (sha256) and ends its side after.
  async sinkListen(msg) {
    const DHT = require('hyperdht')
    const crypto = require('crypto')
    const entry = getNode(msg)
    const kp = DHT.keyPair(fromHex(msg.seed, 'seed', 32))
    entry.sinks = []
    // `relayThrough`: hex public key of a blind relay the server pairs its connections through.
    const opts = msg.relayThrough ? { relayThrough: fromHex(msg.relayThrough, 'relayThrough', 32) } : {}
    // `holepunch: false` vetoes punching on the server's side too (as the reference's relay tests).
    if (msg.holepunch === false) opts.holepunch = () => false
    const server = entry.dht.createServer(opts, (socket) => {
      const h = crypto.createHash('sha256')
      let bytes = 0
      socket.on('error', () => {})
      socket.on('data', (d) => { h.update(d); bytes += d.byteLength })
      socket.on('end', () => { entry.sinks.push({ bytes, sha256: h.digest('hex') }); socket.end() })
    })
    await server.listen(kp)
    entry.servers = entry.servers || []
    entry.servers.push(server)
    return { publicKey: toHex(kp.publicKey) }
  },

  // A blind relay (blind-relay 1.6.1's Server, as hyperdht's relay tests run it) on the key
  // pair from `seed`: relay connections become sessions, paired streams are raw streams.
  async relayServer(msg) {
    const DHT = require('hyperdht')
    const relay = require('blind-relay')
    const entry = getNode(msg)
    const kp = DHT.keyPair(fromHex(msg.seed, 'seed', 32))
    const rs = new relay.Server({
      createStream(opts) {
        return entry.dht.createRawStream({ ...opts, framed: true })
      }
    })
    const server = entry.dht.createServer({ shareLocalAddress: false }, (socket) => {
      socket.on('error', () => {})
      const session = rs.accept(socket, { id: socket.remotePublicKey })
      session.on('error', () => {})
    })
    await server.listen(kp)
    entry.relay = rs
    entry.servers = entry.servers || []
    entry.servers.push(server)
    return { publicKey: toHex(kp.publicKey) }
  },

  async relayStats(msg) {
    const rs = getNode(msg).relay
    if (!rs) throw new Error('relayStats: no relay on this node')
    return { stats: rs.stats }
  },

  async sinkResults(msg) {
    return { sinks: getNode(msg).sinks || [] }
  },

  // Connects and sends `size` random bytes, respecting back-pressure; reports their sha256.
  async sendRandom(msg, ctx) {
    const crypto = require('crypto')
    const { dht } = getNode(msg)
    const opts = {}
    if (msg.localConnection !== undefined) opts.localConnection = msg.localConnection
    // `holepunch: false` vetoes punching (the connection then relies on a relay).
    if (msg.holepunch === false) opts.holepunch = () => false
    if (msg.fastOpen !== undefined) opts.fastOpen = msg.fastOpen
    // `relayThrough`: hex public key of a blind relay to offer the server.
    if (msg.relayThrough) opts.relayThrough = fromHex(msg.relayThrough, 'relayThrough', 32)
    const socket = dht.connect(fromHex(msg.publicKey, 'publicKey', 32), opts)
    ctx.cleanup.push(() => socket.destroy())
    await new Promise((resolve, reject) => { socket.once('open', resolve); socket.once('error', reject) })
    const h = crypto.createHash('sha256')
    const started = Date.now()
    let left = msg.size
    // `reuse`: one random 64 KiB chunk sent over and over (benchmarks: no RNG cost).
    const fixed = msg.reuse ? crypto.randomBytes(65536) : null
    while (left > 0) {
      const chunk = fixed ? fixed.subarray(0, Math.min(65536, left)) : crypto.randomBytes(Math.min(65536, left))
      h.update(chunk)
      left -= chunk.byteLength
      if (!socket.write(chunk)) await new Promise((resolve) => socket.once('drain', resolve))
    }
    socket.end()
    socket.on('data', () => {})
    await new Promise((resolve) => socket.once('close', resolve))
    return { bytes: msg.size, sha256: h.digest('hex'), ms: Date.now() - started }
  },

  // CPU time and peak memory of this Node process (for benchmarks).
  async usage() {
    const u = process.cpuUsage()
    return { userUs: u.user, systemUs: u.system, maxRssKb: process.resourceUsage().maxRSS }
  },

  async shutdown() {
    setImmediate(shutdown)
    return { ok: true }
  }
}

// ---------------------------------------------------------------------------------------------
// main loop

async function handle(line) {
  let msg
  try {
    msg = JSON.parse(line)
  } catch (err) {
    send({ id: null, error: `bad JSON: ${err.message}` })
    return
  }
  const id = msg && msg.id !== undefined ? msg.id : null
  if (!msg || typeof msg !== 'object' || Array.isArray(msg)) return send({ id, error: 'request must be a JSON object' })
  const fn = Object.prototype.hasOwnProperty.call(ops, msg.op) ? ops[msg.op] : null
  if (!fn) return send({ id, error: `unknown op ${JSON.stringify(msg.op)}` })

  const ms = Number.isFinite(msg.timeout) && msg.timeout > 0 ? msg.timeout : DEFAULT_TIMEOUT_MS
  const ctx = { cleanup: [], timedOut: false }
  let timer = null
  const timeout = new Promise((resolve, reject) => {
    timer = setTimeout(() => {
      ctx.timedOut = true
      for (const f of ctx.cleanup) Promise.resolve().then(f).catch((e) => log('cleanup failed:', e.message))
      reject(new Error(`op ${msg.op} timed out after ${ms} ms`))
    }, ms)
  })
  try {
    const result = await Promise.race([fn(msg, ctx), timeout])
    send({ ...result, id })
  } catch (err) {
    send({ id, error: (err && err.message) || String(err) })
  } finally {
    clearTimeout(timer)
  }
}

let shuttingDown = false
async function shutdown() {
  if (shuttingDown) return
  shuttingDown = true
  setTimeout(() => process.exit(0), 3000).unref() // never hang on a stuck destroy
  await Promise.allSettled([...nodes.values()].map(destroyEntry))
  process.exit(0)
}

process.on('uncaughtException', (err) => log('uncaught exception:', err && err.stack))
process.on('unhandledRejection', (err) => log('unhandled rejection:', err && err.stack))
process.on('SIGTERM', shutdown)
process.on('SIGINT', shutdown)
process.stdout.on('error', () => shutdown()) // EPIPE: our parent is gone

readline.createInterface({ input: process.stdin, crlfDelay: Infinity })
  .on('line', (line) => {
    if (line.trim() !== '') handle(line)
  })
  .on('close', shutdown)

send({
  id: null,
  event: 'ready',
  pid: process.pid,
  versions: {
    node: process.versions.node,
    'dht-rpc': require('dht-rpc/package.json').version,
    hyperdht: require('hyperdht/package.json').version
  }
})

// ---------------------------------------------------------------------------------------------
// latency benchmark ops (tests/benches/latency.rs); appended, the ops above are unchanged

// A server that writes one byte (0x2a) to every connection the moment it opens, drains what
// the peer sends and ends its side when the peer ends.
ops.firstByteListen = async function (msg) {
  const DHT = require('hyperdht')
  const entry = getNode(msg)
  const kp = DHT.keyPair(fromHex(msg.seed, 'seed', 32))
  const server = entry.dht.createServer((socket) => {
    entry.accepted = (entry.accepted || 0) + 1
    socket.on('error', () => {})
    socket.on('data', () => {})
    socket.on('end', () => socket.end())
    socket.write(b4a.from([0x2a]))
  })
  await server.listen(kp)
  entry.servers = entry.servers || []
  entry.servers.push(server)
  return { publicKey: toHex(kp.publicKey) }
}

// Connects `count` times in a row to `publicKey`. Per connect: ms from calling dht.connect() to
// 'open' and to the first byte received (process.hrtime), then a graceful end, waiting for the
// close (at most 2 s), and `gapMs` of pause before the next.
ops.firstByte = async function (msg, ctx) {
  const { dht } = getNode(msg)
  const pk = fromHex(msg.publicKey, 'publicKey', 32)
  const count = msg.count || 1
  const gapMs = msg.gapMs || 0
  const samples = []
  for (let i = 0; i < count; i++) {
    const t0 = process.hrtime.bigint()
    const socket = dht.connect(pk)
    ctx.cleanup.push(() => socket.destroy())
    let openNs = null
    socket.once('open', () => { openNs = process.hrtime.bigint() - t0 })
    socket.on('error', () => {})
    await new Promise((resolve, reject) => {
      socket.once('data', resolve)
      socket.once('close', () => reject(new Error('closed before the first byte')))
    })
    const firstNs = process.hrtime.bigint() - t0
    samples.push({ openMs: openNs === null ? null : Number(openNs) / 1e6, firstByteMs: Number(firstNs) / 1e6 })
    socket.on('data', () => {})
    socket.end()
    await new Promise((resolve) => {
      const t = setTimeout(() => { socket.destroy(); resolve() }, 2000)
      socket.once('close', () => { clearTimeout(t); resolve() })
    })
    if (gapMs) await new Promise((resolve) => setTimeout(resolve, gapMs))
  }
  return { samples }
}

// ---------------------------------------------------------------------------------------------
// dead-peer ops (tests/tests/dead_peer_live.rs); appended, the ops above are unchanged

// A server that holds every connection: counts what arrives, writes nothing, never ends its
// side, and records how each connection ended: `ended` (the peer's end), `error` (the error's
// code, else its message), `closed`.
ops.holdListen = async function (msg) {
  const DHT = require('hyperdht')
  const entry = getNode(msg)
  const kp = DHT.keyPair(fromHex(msg.seed, 'seed', 32))
  entry.held = entry.held || []
  const server = entry.dht.createServer((socket) => {
    const rec = { remotePublicKey: toHex(socket.remotePublicKey), bytes: 0, ended: false, error: null, closed: false }
    entry.held.push({ socket, rec })
    socket.on('data', (d) => { rec.bytes += d.byteLength })
    socket.on('end', () => { rec.ended = true })
    socket.on('error', (err) => { rec.error = err.code || err.message })
    socket.on('close', () => { rec.closed = true })
  })
  await server.listen(kp)
  entry.servers = entry.servers || []
  entry.servers.push(server)
  return { publicKey: toHex(kp.publicKey) }
}

// The records of holdListen's connections.
ops.heldConnections = async function (msg) {
  return { connections: (getNode(msg).held || []).map((h) => h.rec) }
}

// Destroys the held connection from `remotePublicKey` (socket.destroy(): a UDX DESTROY).
ops.destroyHeld = async function (msg) {
  const pk = fromHex(msg.remotePublicKey, 'remotePublicKey', 32)
  const held = (getNode(msg).held || []).filter((h) => b4a.equals(h.socket.remotePublicKey, pk))
  for (const h of held) h.socket.destroy()
  return { destroyed: held.length }
}

// ---------------------------------------------------------------------------------------------
// busy-server benchmark ops (tests/benches/busy_server.rs); appended, the ops above are unchanged

// The busy server: on every connection writes one byte (0x2a) at once, hashes (SHA-256) what
// the peer sends and, when the peer ends, writes the 32-byte digest and ends its side.
// Connections whose peer never writes stay open (the idle load).
ops.busyListen = async function (msg) {
  const DHT = require('hyperdht')
  const crypto = require('crypto')
  const entry = getNode(msg)
  const kp = DHT.keyPair(fromHex(msg.seed, 'seed', 32))
  entry.busy = { accepted: 0, open: 0, digests: 0 }
  const st = entry.busy
  const server = entry.dht.createServer((socket) => {
    st.accepted++
    st.open++
    // The hash is made with the first data (an idle connection holds none), like the Rust
    // server's task.
    let h = null
    socket.on('error', () => {})
    socket.on('close', () => { st.open-- })
    socket.on('data', (d) => { (h = h || crypto.createHash('sha256')).update(d) })
    socket.on('end', () => {
      st.digests++
      socket.end((h || crypto.createHash('sha256')).digest())
    })
    socket.write(b4a.from([0x2a]))
  })
  await server.listen(kp)
  entry.servers = entry.servers || []
  entry.servers.push(server)
  return { publicKey: toHex(kp.publicKey) }
}

// busyListen's counters.
ops.busyStats = async function (msg) {
  return { ...(getNode(msg).busy || {}) }
}
