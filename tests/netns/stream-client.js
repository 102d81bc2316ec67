'use strict'

// A reference hyperdht client that streams through a connection while its path may change
// (a blind relay first, a punched direct path later):
//   node stream-client.js --bootstrap ip:port[,...] --public-key HEX [--port P] [--timeout MS]
//     [--relay-through HEX] [--defer-random-punch] [--random-punch-interval MS]
//     [--upgrade-wait MS]
// After `open` it writes a 1000-byte line every 50 ms; when the raw stream's remote address
// changes (the relay → direct upgrade: hyperdht moves the same stream with changeRemote) it
// writes 40 more lines and ends, or ends after --upgrade-wait ms (default 35000) without one.
// Prints {"event":"connected","connectMs","remoteAddress"}, {"event":"path","remoteAddress","ms"}
// on every change, then {"event":"done","bytes","sentSha256","echoSha256","paths"} (exit 0) or
// {"event":"error","code","message"} (exit 1).

const { load, args, parseAddrs, emit, log } = require('./common')
const crypto = require('crypto')
const HyperDHT = load('hyperdht')
const b4a = load('b4a')

async function main() {
  const a = args()
  const bootstrap = parseAddrs(a.bootstrap)
  if (!bootstrap.length) throw new Error('--bootstrap is required')
  if (!a['public-key']) throw new Error('--public-key is required')
  const timeout = Number(a.timeout || 60000)
  const upgradeWait = Number(a['upgrade-wait'] || 35000)
  const opts = { bootstrap }
  if (a.port) opts.port = Number(a.port)
  if (a['defer-random-punch']) opts.deferRandomPunch = true
  if (a['random-punch-interval']) opts.randomPunchInterval = Number(a['random-punch-interval'])
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
  setTimeout(() => finish({ event: 'error', code: 'TIMEOUT', message: `not done within ${timeout} ms` }, 1), timeout).unref()

  await dht.fullyBootstrapped()
  const connectOpts = {}
  if (a['relay-through']) connectOpts.relayThrough = b4a.from(a['relay-through'], 'hex')
  const t1 = Date.now()
  const sock = dht.connect(b4a.from(a['public-key'], 'hex'), connectOpts)
  const sent = crypto.createHash('sha256')
  const echo = crypto.createHash('sha256')
  let bytes = 0
  let echoed = 0
  const paths = []
  const remote = () => (sock.rawStream && sock.rawStream.remoteHost ? `${sock.rawStream.remoteHost}:${sock.rawStream.remotePort}` : null)
  let line = 0
  const writeLine = () => {
    const body = crypto.createHash('sha256').update(String(line++)).digest('hex')
    const buf = b4a.from((body.repeat(16).slice(0, 999)) + '\n')
    sent.update(buf)
    bytes += buf.length
    sock.write(buf)
  }
  sock.on('open', () => {
    const first = remote()
    paths.push(first)
    emit({ event: 'connected', connectMs: Date.now() - t1, remoteAddress: first })
    let extra = -1
    const timer = setInterval(() => {
      const r = remote()
      if (r !== paths[paths.length - 1]) {
        paths.push(r)
        emit({ event: 'path', remoteAddress: r, ms: Date.now() - t1 })
        if (extra < 0) extra = 40
      }
      writeLine()
      if (extra > 0) extra--
      if (extra === 0 || Date.now() - t1 > upgradeWait) {
        clearInterval(timer)
        sock.end()
      }
    }, 50)
  })
  sock.on('data', (d) => {
    echo.update(d)
    echoed += d.length
  })
  sock.on('end', () => {
    finish({ event: 'done', bytes, echoed, sentSha256: sent.digest('hex'), echoSha256: echo.digest('hex'), paths }, 0)
  })
  sock.on('error', (err) => finish({ event: 'error', code: err.code || null, message: err.message, ms: Date.now() - t1 }, 1))
  sock.on('close', () => finish({ event: 'error', code: 'CLOSED', message: 'closed before the echo ended', ms: Date.now() - t1 }, 1))
}

main().catch((err) => {
  log('fatal:', err.stack || err)
  emit({ event: 'error', code: err.code || null, message: err.message })
  process.exit(1)
})
