'use strict'

// A reference hyperdht server (createServer().listen(keyPair)) that echoes every connection.
//   node server.js --bootstrap ip:port[,...] --seed HEX [--port P] [--host IP] [--relay-through HEX]
//     [--defer-random-punch] [--random-punch-interval MS]
// (--relay-through: a blind relay to pair clients through; the other two: hyperdht's options.)
// Prints {"event":"listening","publicKey",...} once announced, then per connection
// {"event":"connection","remotePublicKey","remoteAddress"} and {"event":"end"|"error",...}.
// Runs until stdin closes or SIGTERM.

const { load, args, parseAddrs, emit, log, exitWith, FIREWALL_NAMES } = require('./common')
const HyperDHT = load('hyperdht')
const b4a = load('b4a')

async function main() {
  const a = args()
  const bootstrap = parseAddrs(a.bootstrap)
  if (!bootstrap.length) throw new Error('--bootstrap is required')
  if (!a.seed) throw new Error('--seed is required')
  const opts = { bootstrap }
  if (a.port) opts.port = Number(a.port)
  if (a.host) opts.host = a.host
  if (a['defer-random-punch']) opts.deferRandomPunch = true
  if (a['random-punch-interval']) opts.randomPunchInterval = Number(a['random-punch-interval'])
  const dht = new HyperDHT(opts)
  const keyPair = HyperDHT.keyPair(b4a.from(a.seed, 'hex'))

  const serverOpts = {}
  if (a['relay-through']) serverOpts.relayThrough = b4a.from(a['relay-through'], 'hex')
  const server = dht.createServer(serverOpts, (sock) => {
    const remote = sock.rawStream ? `${sock.rawStream.remoteHost}:${sock.rawStream.remotePort}` : null
    emit({ event: 'connection', remotePublicKey: b4a.toString(sock.remotePublicKey, 'hex'), remoteAddress: remote })
    // The raw stream moves (changeRemote) when a punch wins over a blind relay: report it.
    let last = remote
    const watch = setInterval(() => {
      const now = sock.rawStream && sock.rawStream.remoteHost ? `${sock.rawStream.remoteHost}:${sock.rawStream.remotePort}` : null
      if (now && now !== last) {
        last = now
        emit({ event: 'remoteChanged', remoteAddress: now })
      }
    }, 20)
    sock.on('close', () => clearInterval(watch))
    sock.on('data', (d) => sock.write(d))
    sock.on('end', () => {
      sock.end()
      emit({ event: 'end', remoteAddress: remote })
    })
    sock.on('error', (err) => emit({ event: 'error', code: err.code || null, message: err.message }))
  })
  exitWith(async () => {
    await server.close()
    await dht.destroy()
  })

  const t0 = Date.now()
  await dht.fullyBootstrapped()
  const bootstrapMs = Date.now() - t0
  await server.listen(keyPair)
  emit({
    event: 'listening',
    publicKey: b4a.toString(keyPair.publicKey, 'hex'),
    bootstrapMs,
    listenMs: Date.now() - t0,
    firewalled: dht.firewalled,
    host: dht.host,
    port: dht.port
  })
}

main().catch((err) => {
  log('fatal:', err.stack || err)
  emit({ event: 'error', code: err.code || null, message: err.message })
  process.exit(1)
})
