'use strict'

// The "internet" side of the kernel-NAT topology: one bootstrapper plus persistent, non-firewalled
// hyperdht nodes, each bound to its own public address (all in the public namespace).
//   node public.js --ips 20.0.0.10,20.0.0.11,... [--port 49737]
// The first address hosts the bootstrapper (DHT.bootstrapper semantics, but bound to that
// address). Prints {"event":"ready","bootstrap":["ip:port"],"nodes":[...]} once every node is
// fully bootstrapped; runs until stdin closes or SIGTERM.

const { load, args, emit, log, exitWith } = require('./common')
const HyperDHT = load('hyperdht')

async function main() {
  const a = args()
  const ips = String(a.ips || '').split(',').filter(Boolean)
  const port = Number(a.port || 49737)
  if (ips.length < 2) throw new Error('--ips needs at least two addresses')

  const nodes = []
  const bye = exitWith(async () => {
    for (let i = nodes.length - 1; i >= 0; i--) await nodes[i].destroy()
  })

  // DHT.bootstrapper(port, host) binds 0.0.0.0; with several addresses in one namespace replies
  // must leave from the announced one, so bind it explicitly.
  const boot = new HyperDHT({ port, host: ips[0], ephemeral: false, firewalled: false, anyPort: false, bootstrap: [] })
  boot._nat.add(ips[0], port)
  nodes.push(boot)
  await boot.ready()
  const bootstrap = [{ host: ips[0], port }]

  for (const host of ips.slice(1)) {
    const dht = new HyperDHT({ port, host, anyPort: false, ephemeral: false, firewalled: false, bootstrap })
    nodes.push(dht)
  }
  await Promise.all(nodes.slice(1).map((d) => d.fullyBootstrapped()))
  // A second pass fills the early nodes' tables with the later ones.
  await Promise.all(nodes.map((d) => d.findNode(d.id || Buffer.alloc(32)).finished().catch(() => {})))

  emit({
    event: 'ready',
    bootstrap: bootstrap.map((b) => `${b.host}:${b.port}`),
    nodes: nodes.map((d) => ({ host: d.host, port: d.port, firewalled: d.firewalled, ephemeral: d.ephemeral, tableSize: d.toArray().length }))
  })
  void bye
}

main().catch((err) => {
  log('fatal:', err.stack || err)
  emit({ event: 'error', message: err.message })
  process.exit(1)
})
