// The Node.js side of the rpc datagram benchmark (core/benches/rpc_datagrams.rs).
// Feeds the same pre-encoded requests into dht-rpc's message handler, with the socket's send
// replaced by a counter, and prints {"datagramsPerSec":…,"replies":…} on stdout.
// Usage: node bench-rpc.js DATAGRAMS_FILE SECONDS   (file: lines "host port hex")
const fs = require('fs')
const DHT = require('dht-rpc')
const b4a = require('b4a')

async function main () {
  const [file, seconds = '2'] = process.argv.slice(2)
  const lines = fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => l.split(' '))
  const table = lines.filter((l) => l[0] === 'node')
  const datagrams = lines.filter((l) => l[0] === 'dgram').map(([, host, port, hex]) => ({ host, port: Number(port), buf: b4a.from(hex, 'hex') }))
  const dht = new DHT({ bootstrap: [], ephemeral: false, firewalled: false, host: '127.0.0.1', port: 0 })
  await dht.ready()
  for (const [, host, port] of table) dht.addNode({ host, port: Number(port) })
  let replies = 0
  dht.io.serverSocket.trySend = () => { replies++ }
  const socket = dht.io.serverSocket
  const deadline = Date.now() + Number(seconds) * 1000
  let handled = 0
  const start = process.hrtime.bigint()
  while (Date.now() < deadline) {
    for (const d of datagrams) dht.io.onmessage(socket, d.buf, d)
    handled += datagrams.length
  }
  const secs = Number(process.hrtime.bigint() - start) / 1e9
  const cpu = process.cpuUsage()
  process.stdout.write(JSON.stringify({ datagramsPerSec: handled / secs, handled, replies, seconds: secs, cpuUserMs: cpu.user / 1000 }) + '\n')
  await dht.destroy()
}

main().catch((err) => { console.error(err); process.exit(1) })
