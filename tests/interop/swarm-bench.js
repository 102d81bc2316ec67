'use strict'
// Swarm benchmark peers for tests/tests/swarm_bench.rs: N hyperswarm@4.17.2 peers in this
// process, each on a DHT node of its own bound to 127.0.0.1, join TOPIC.
//
// Usage: node swarm-bench.js BOOTSTRAP_HOST:PORT TOPIC_HEX N MODE TIMEOUT_MS
//   MODE "together": every peer joins at the same moment.
//   MODE "staggered": each peer joins once the previous one's discovery.flushed() resolved.
// Prints one JSON line: {"firstMs":[per peer: join -> its first connection, null if none],
// "meshMs": first join -> every peer holds a connection to each other one (null: not within
// TIMEOUT_MS), "pairs": pairs connected at the end}, then destroys everything and exits.

const Hyperswarm = require('hyperswarm')
const DHT = require('hyperdht')
const b4a = require('b4a')

const [bootstrap, topicHex, nStr, mode, timeoutStr] = process.argv.slice(2)
const [host, port] = bootstrap.split(':')
const n = Number(nStr)
const timeout = Number(timeoutStr)
const topic = b4a.from(topicHex, 'hex')

async function main() {
  const swarms = []
  for (let i = 0; i < n; i++) {
    const dht = new DHT({ host: '127.0.0.1', port: [0, 0], bootstrap: [{ host, port: Number(port) }] })
    await dht.fullyBootstrapped()
    swarms.push(new Hyperswarm({ dht }))
  }
  const joinedAt = new Array(n).fill(null)
  const firstMs = new Array(n).fill(null)
  let start = null
  let meshMs = null
  let resolveMesh
  const meshed = new Promise((resolve) => { resolveMesh = resolve })
  const check = () => {
    if (meshMs === null && swarms.every((s) => s.connections.size >= n - 1)) {
      meshMs = Date.now() - start
      resolveMesh()
    }
  }
  swarms.forEach((s, i) => {
    s.on('connection', (conn) => {
      conn.on('error', () => {})
      if (firstMs[i] === null && joinedAt[i] !== null) firstMs[i] = Date.now() - joinedAt[i]
      check()
    })
  })
  start = Date.now()
  const discoveries = []
  for (let i = 0; i < n; i++) {
    joinedAt[i] = Date.now()
    const d = swarms[i].join(topic, { server: true, client: true })
    discoveries.push(d)
    if (mode === 'staggered') await d.flushed()
  }
  await Promise.race([meshed, new Promise((resolve) => setTimeout(resolve, timeout))])
  const keys = swarms.map((s) => b4a.toString(s.keyPair.publicKey, 'hex'))
  let pairs = 0
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      const has = [...swarms[i].connections].some((c) => b4a.toString(c.remotePublicKey, 'hex') === keys[j])
      if (has) pairs++
    }
  }
  process.stdout.write(JSON.stringify({ firstMs, meshMs, pairs }) + '\n')
  await Promise.all(swarms.map((s) => s.destroy()))
  process.exit(0)
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
