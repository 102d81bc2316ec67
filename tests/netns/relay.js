'use strict'

// A reference blind relay (blind-relay's Server on a hyperdht server, as hyperdht's own tests).
//   node relay.js --bootstrap ip:port[,...] --seed HEX [--port P] [--host IP]
// Prints {"event":"listening","publicKey"} once announced; runs until stdin closes or SIGTERM,
// then prints {"event":"stats", ...} (blind-relay's counters).

const { load, args, parseAddrs, emit, log, exitWith } = require('./common')
const HyperDHT = load('hyperdht')
const relay = load('blind-relay')
const b4a = load('b4a')

async function main() {
  const a = args()
  const bootstrap = parseAddrs(a.bootstrap)
  if (!bootstrap.length) throw new Error('--bootstrap is required')
  if (!a.seed) throw new Error('--seed is required')
  const opts = { bootstrap }
  if (a.port) opts.port = Number(a.port)
  if (a.host) opts.host = a.host
  const dht = new HyperDHT(opts)
  const keyPair = HyperDHT.keyPair(b4a.from(a.seed, 'hex'))
  const rs = new relay.Server({
    createStream(o) {
      return dht.createRawStream({ ...o, framed: true })
    }
  })
  const server = dht.createServer({ shareLocalAddress: false }, (socket) => {
    socket.on('error', () => {})
    const session = rs.accept(socket, { id: socket.remotePublicKey })
    session.on('error', () => {})
  })
  exitWith(async () => {
    emit({ event: 'stats', stats: rs.stats })
    await server.close()
    await dht.destroy()
  })
  await dht.fullyBootstrapped()
  await server.listen(keyPair)
  emit({ event: 'listening', publicKey: b4a.toString(keyPair.publicKey, 'hex') })
}

main().catch((err) => {
  log('fatal:', err.stack || err)
  emit({ event: 'error', code: err.code || null, message: err.message })
  process.exit(1)
})
