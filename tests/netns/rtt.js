'use strict'

// Measures the round-trip time to public DHT nodes with dht-rpc PINGs (a topology self-check:
// the delay pumps must add their 2 × 20 ms).
//   node rtt.js --to ip:port[,...] [--count 5]
// Prints {"event":"rtt","minMs","maxMs","samples":[...]} and exits.

const { load, args, parseAddrs, emit, log } = require('./common')
const HyperDHT = load('hyperdht')

async function main() {
  const a = args()
  const to = parseAddrs(a.to)
  const count = Number(a.count || 5)
  if (!to.length) throw new Error('--to is required')
  const dht = new HyperDHT({ bootstrap: [], port: Number(a.port || 0) || undefined })
  await dht.ready()
  const samples = []
  for (let i = 0; i < count; i++) {
    const addr = to[i % to.length]
    const t = process.hrtime.bigint()
    await dht.ping(addr)
    samples.push(Number(process.hrtime.bigint() - t) / 1e6)
  }
  await dht.destroy({ force: true })
  emit({ event: 'rtt', minMs: Math.min(...samples), maxMs: Math.max(...samples), samples })
  process.exit(0)
}

main().catch((err) => {
  log('fatal:', err.stack || err)
  emit({ event: 'error', code: err.code || null, message: err.message })
  process.exit(1)
})
