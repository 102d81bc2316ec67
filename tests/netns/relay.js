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
  // The relay runs on the public no-NAT host, as a deployed relay: it is reachable, so it
  // starts unfirewalled (as the Rust relay finds itself there). A fresh hyperdht node would
  // otherwise stay firewalled for minutes (adaptive mode) and punch to every relay connection,
  // and hyperdht's server runs one random punch per 20 s (`randomPunchInterval`): the relay
  // connections of peers behind randomized NATs then get TRY_LATER and most pairings fail
  // with RELAY_ABORTED (Node and Rust peers alike: the relay's limit, not the peers').
  const opts = { bootstrap, firewalled: false }
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
    if (process.env.HDHT_NETNS_SHOW) {
      log('relay session', b4a.toString(socket.remotePublicKey, 'hex').slice(0, 8), JSON.stringify(dht.stats.punches))
      socket.on('close', () => log('relay session closed', b4a.toString(socket.remotePublicKey, 'hex').slice(0, 8)))
    }
    const session = rs.accept(socket, { id: socket.remotePublicKey })
    session.on('error', () => {})
  })
  exitWith(async () => {
    emit({ event: 'stats', stats: rs.stats, punches: dht.stats.punches, firewalled: dht.firewalled })
    await server.close()
    await dht.destroy()
  })
  await dht.fullyBootstrapped()
  await server.listen(keyPair)
  emit({ event: 'listening', publicKey: b4a.toString(keyPair.publicKey, 'hex'), firewalled: dht.firewalled })
}

main().catch((err) => {
  log('fatal:', err.stack || err)
  emit({ event: 'error', code: err.code || null, message: err.message })
  process.exit(1)
})
