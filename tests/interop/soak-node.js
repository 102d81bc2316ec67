'use strict'

// One hyperdht 6.34.0 node in a process of its own, for the live soaks
// (tests/tests/soak_live.rs): the Node side of a local network whose memory is measured
// per process, as the Rust side's `hdht bootstrap` / `hdht node` are.
//
// Usage: node soak-node.js bootstrapper PORT        (DHT.bootstrapper on 127.0.0.1:PORT)
//        node soak-node.js node HOST:PORT [BIND]    (a persistent node on BIND or 127.0.0.1)
//        node soak-node.js server HOST:PORT SEED    (an ephemeral node listening on the key
//                                                    pair of SEED (hex), echoing every stream)
//        node soak-node.js client HOST:PORT KEY N    (opens N connections to public key KEY,
//                                                    writes 64 KiB on each and reads it back,
//                                                    then keeps them open until killed)
// Prints {"event":"ready","port":n[,"publicKey":hex]} once bootstrapped (listening), and
// {"event":"connections","n":n} whenever a server's open connections change. Closing stdin
// destroys the node and exits.

const b4a = require('b4a')
const HyperDHT = require('hyperdht')

const send = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')

async function main () {
  const [mode, arg, extra] = process.argv.slice(2)
  let dht
  let publicKey = null
  if (mode === 'bootstrapper') {
    dht = HyperDHT.bootstrapper(Number(arg), '127.0.0.1')
  } else {
    const i = arg.lastIndexOf(':')
    const bootstrap = [{ host: arg.slice(0, i), port: Number(arg.slice(i + 1)) }]
    const host = mode === 'node' && extra ? extra : '127.0.0.1'
    dht = new HyperDHT({ bootstrap, host, port: [0, 0], ephemeral: mode !== 'node' })
  }
  await dht.fullyBootstrapped()
  if (mode === 'client') {
    const key = b4a.from(extra, 'hex')
    const n = Number(process.argv[5])
    const chunk = b4a.alloc(65536, 7)
    await Promise.all(Array.from({ length: n }, () => new Promise((resolve, reject) => {
      const socket = dht.connect(key)
      let got = 0
      socket.on('error', reject)
      socket.on('open', () => socket.write(chunk))
      socket.on('data', (d) => {
        got += d.length
        if (got >= chunk.length) resolve()
      })
    })))
    send({ event: 'connected', n })
    process.stdin.resume()
    return
  }
  if (mode === 'server') {
    const keyPair = HyperDHT.keyPair(b4a.from(extra, 'hex'))
    let open = 0
    const server = dht.createServer((socket) => {
      open++
      send({ event: 'connections', n: open })
      socket.on('error', () => {})
      socket.on('data', (d) => socket.write(d))
      socket.on('end', () => socket.end())
      socket.on('close', () => {
        open--
        send({ event: 'connections', n: open })
      })
    })
    await server.listen(keyPair)
    publicKey = b4a.toString(keyPair.publicKey, 'hex')
  }
  send({ event: 'ready', port: dht.address().port, publicKey })
  process.stdin.resume()
  process.stdin.on('end', async () => {
    setTimeout(() => process.exit(0), 2000).unref()
    await dht.destroy({ force: true })
    process.exit(0)
  })
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
