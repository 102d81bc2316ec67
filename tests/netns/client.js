'use strict'

// A reference hyperdht client: connects to a public key, sends a message and waits for the echo.
//   node client.js --bootstrap ip:port[,...] --public-key HEX [--port P] [--timeout MS]
//                  [--relay-through HEX]   (hyperdht's connect option relayThrough)
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
  const t1 = Date.now()
  const connectOpts = {}
  if (a['relay-through']) connectOpts.relayThrough = b4a.from(a['relay-through'], 'hex')
  const sock = dht.connect(b4a.from(a['public-key'], 'hex'), connectOpts)
  const msg = b4a.from('hello through the kernel NATs\n')
  let connectMs = null
  let got = b4a.alloc(0)
  sock.on('open', () => {
    connectMs = Date.now() - t1
    sock.write(msg)
  })
  sock.on('data', (d) => {
    got = b4a.concat([got, d])
    if (got.length >= msg.length) {
      const remote = sock.rawStream ? `${sock.rawStream.remoteHost}:${sock.rawStream.remotePort}` : null
      const ok = b4a.equals(got.subarray(0, msg.length), msg)
      finish(
        ok
          ? { event: 'connected', connectMs, echoMs: Date.now() - t1, bootstrapMs, remoteAddress: remote, punches: dht.stats.punches, errorsCreated }
          : { event: 'error', code: 'BAD_ECHO', message: 'echo differs', ms: Date.now() - t1 },
        ok ? 0 : 1
      )
    }
  })
  sock.on('error', (err) => finish({ event: 'error', code: err.code || null, message: err.message, ms: Date.now() - t1, bootstrapMs, errorsCreated }, 1))
  sock.on('close', () => finish({ event: 'error', code: 'CLOSED', message: 'closed before the echo', ms: Date.now() - t1 }, 1))
}

main().catch((err) => {
  log('fatal:', err.stack || err)
  emit({ event: 'error', code: err.code || null, message: err.message })
  process.exit(1)
})
