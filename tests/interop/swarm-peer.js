'use strict'
// A hyperswarm@4.17.2 peer for the Rust swarm interop test (tests/tests/swarm_interop.rs).
//
// Usage: node swarm-peer.js BOOTSTRAP_HOST:PORT TOPIC_HEX SEED_HEX
// Binds to 127.0.0.1, joins TOPIC (server and client) on a local network and, per
// connection, writes "hello from node\n". stdout: one JSON object per line —
//   {"event":"joined","publicKey"}                      the announce is stored
//   {"event":"connection","remotePublicKey","initiator","handshakeHash"}
//   {"event":"data","remotePublicKey","handshakeHash","data"}   data as UTF-8
//   {"event":"close","remotePublicKey","handshakeHash"}
// Exits when stdin ends (after destroying the swarm).

const Hyperswarm = require('hyperswarm')
const DHT = require('hyperdht')
const b4a = require('b4a')

const [bootstrap, topicHex, seedHex] = process.argv.slice(2)
if (!bootstrap || !topicHex || !seedHex) {
  console.error('usage: node swarm-peer.js HOST:PORT TOPIC_HEX SEED_HEX')
  process.exit(2)
}
const [host, port] = bootstrap.split(':')

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

async function main() {
  const dht = new DHT({ host: '127.0.0.1', port: [0, 0], bootstrap: [{ host, port: Number(port) }] })
  const swarm = new Hyperswarm({ dht, seed: b4a.from(seedHex, 'hex') })
  swarm.on('connection', (conn, info) => {
    const remotePublicKey = b4a.toString(conn.remotePublicKey, 'hex')
    const handshakeHash = b4a.toString(conn.handshakeHash, 'hex')
    out({ event: 'connection', remotePublicKey, initiator: conn.isInitiator, handshakeHash })
    conn.on('data', (data) => out({ event: 'data', remotePublicKey, handshakeHash, data: b4a.toString(data) }))
    conn.on('error', () => {})
    conn.on('close', () => out({ event: 'close', remotePublicKey, handshakeHash }))
    conn.write('hello from node\n')
  })
  const discovery = swarm.join(b4a.from(topicHex, 'hex'), { server: true, client: true })
  await discovery.flushed()
  out({ event: 'joined', publicKey: b4a.toString(swarm.keyPair.publicKey, 'hex') })
  process.stdin.resume()
  process.stdin.on('end', async () => {
    await swarm.destroy()
    process.exit(0)
  })
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
