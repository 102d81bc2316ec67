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
// stdin: a line "join-peer HEX" calls swarm.joinPeer(HEX); a line "server-only" is read
// before the join when given as the 4th argument. Exits when stdin ends (after destroying
// the swarm).
//
// Usage with a 4th argument "server-only": joins TOPIC as a server only (it listens and
// announces, but never looks the topic up), for staged joinPeer races.

const Hyperswarm = require('hyperswarm')
const DHT = require('hyperdht')
const b4a = require('b4a')

const [bootstrap, topicHex, seedHex, mode] = process.argv.slice(2)
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
  const serverOnly = mode === 'server-only'
  const discovery = swarm.join(b4a.from(topicHex, 'hex'), { server: true, client: !serverOnly })
  await discovery.flushed()
  out({ event: 'joined', publicKey: b4a.toString(swarm.keyPair.publicKey, 'hex') })
  let pending = ''
  process.stdin.on('data', (chunk) => {
    pending += chunk.toString()
    let i
    while ((i = pending.indexOf('\n')) !== -1) {
      const line = pending.slice(0, i).trim()
      pending = pending.slice(i + 1)
      const m = /^join-peer ([0-9a-f]{64})$/.exec(line)
      if (m) swarm.joinPeer(b4a.from(m[1], 'hex'))
    }
  })
  process.stdin.on('end', async () => {
    await swarm.destroy()
    process.exit(0)
  })
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
