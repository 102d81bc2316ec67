'use strict'

// A reference hyperdht client: connects to a public key, sends a message and waits for the echo.
//   node client.js --bootstrap ip:port[,...] --public-key HEX [--port P] [--timeout MS]
//                  [--relay-through HEX]   (hyperdht's connect option relayThrough)
//                  [--second-probe TEXT]   (after the first echo: end that connection, connect
//                                           again with the same options on the same node, write
//                                           TEXT, wait for its echo; adds secondConnectMs and
//                                           secondEchoMs to the line)
// Prints one line and exits: {"event":"connected","connectMs","echoMs","bootstrapMs",
// "remoteAddress","punches","errorsCreated"} with code 0, or {"event":"error","code","message","ms",
// "errorsCreated"} with code 1 (errorsCreated: every hyperdht error code created on the way).

const { load, args, parseAddrs, emit, log } = require('./common')

// Record every hyperdht error the connect path creates, in order: the error a socket finally
// reports can hide the real reason (hyperdht 6.34.0 aborts a double-randomized punch with
// HOLEPUNCH_DOUBLE_RANDOMIZED_NATS, but destroying the puncher first surfaces HOLEPUNCH_ABORTED).
// Must run before hyperdht is loaded: lib/connect.js destructures these factories at load time.
const DHTError = load('hyperdht/lib/errors')
const errorsCreated = []
for (const name of Object.getOwnPropertyNames(DHTError)) {
  const fn = DHTError[name]
  if (typeof fn !== 'function' || !/^[A-Z_]+$/.test(name)) continue
  DHTError[name] = function (...a) {
    errorsCreated.push(name)
    return fn.apply(this, a)
  }
}

const HyperDHT = load('hyperdht')
const b4a = load('b4a')

async function main() {
  const a = args()
  const bootstrap = parseAddrs(a.bootstrap)
  if (!bootstrap.length) throw new Error('--bootstrap is required')
  if (!a['public-key']) throw new Error('--public-key is required')
  const timeout = Number(a.timeout || 30000)
  const opts = { bootstrap }
  if (a.port) opts.port = Number(a.port)
  if (a.host) opts.host = a.host
  const dht = new HyperDHT(opts)

  let done = false
  const finish = async (obj, code) => {
    if (done) return
    done = true
    emit(obj)
    setTimeout(() => process.exit(code), 2000).unref()
    await dht.destroy({ force: true }).catch(() => {})
    process.exit(code)
  }
  const t0 = Date.now()
  setTimeout(() => finish({ event: 'error', code: 'TIMEOUT', message: `no echo within ${timeout} ms`, ms: Date.now() - t0 }, 1), timeout).unref()

  await dht.fullyBootstrapped()
  const bootstrapMs = Date.now() - t0
  const connectOpts = {}
  if (a['relay-through']) connectOpts.relayThrough = b4a.from(a['relay-through'], 'hex')
  const publicKey = b4a.from(a['public-key'], 'hex')
  const msg = b4a.from('hello through the kernel NATs\n')

  // One connect: resolves { connectMs, echoMs, remote } once `payload` came back, rejects on
  // an error or a close before that.
  const once = (payload) => new Promise((resolve, reject) => {
    const t = Date.now()
    const sock = dht.connect(publicKey, connectOpts)
    let connectMs = null
    let got = b4a.alloc(0)
    let settled = false
    sock.on('open', () => {
      connectMs = Date.now() - t
      sock.write(payload)
    })
    sock.on('data', (d) => {
      got = b4a.concat([got, d])
      if (!settled && got.length >= payload.length) {
        settled = true
        const remote = sock.rawStream ? `${sock.rawStream.remoteHost}:${sock.rawStream.remotePort}` : null
        const ok = b4a.equals(got.subarray(0, payload.length), payload)
        const echoMs = Date.now() - t
        if (!ok) return reject(Object.assign(new Error('echo differs'), { code: 'BAD_ECHO', ms: echoMs }))
        resolve({ connectMs, echoMs, remote, sock })
      }
    })
    sock.on('error', (err) => { if (!settled) { settled = true; err.ms = Date.now() - t; reject(err) } })
    sock.on('close', () => { if (!settled) { settled = true; reject(Object.assign(new Error('closed before the echo'), { code: 'CLOSED', ms: Date.now() - t })) } })
  })

  try {
    const first = await once(msg)
    const line = { event: 'connected', connectMs: first.connectMs, echoMs: first.echoMs, bootstrapMs, remoteAddress: first.remote, punches: dht.stats.punches, errorsCreated }
    if (a['second-probe']) {
      // The first connection ends as the Rust client's does (both sides end), then the second.
      await new Promise((resolve) => {
        first.sock.on('close', resolve)
        first.sock.on('error', () => {})
        first.sock.end()
      })
      const second = await once(b4a.from(a['second-probe']))
      second.sock.on('error', () => {})
      second.sock.end()
      line.secondConnectMs = second.connectMs
      line.secondEchoMs = second.echoMs
    }
    finish(line, 0)
  } catch (err) {
    finish({ event: 'error', code: err.code || null, message: err.message, ms: err.ms, bootstrapMs, errorsCreated }, 1)
  }
}

main().catch((err) => {
  log('fatal:', err.stack || err)
  emit({ event: 'error', code: err.code || null, message: err.message })
  process.exit(1)
})
