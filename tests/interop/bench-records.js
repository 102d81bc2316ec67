'use strict'

// The Node.js client of the records benchmark (tests/benches/records.rs): one ephemeral
// hyperdht 6.34.0 node that runs record operations on request and times each one *inside*
// this process (process.hrtime), so the JSON-over-stdio round trip that carries the request
// is not part of the figure.
//
// Usage: node bench-records.js HOST:PORT[,HOST:PORT...]   (the bootstrap nodes, 127.x only)
// Prints {"event":"ready"} once bootstrapped. Then each stdin line is one request, handled one
// at a time, answered by one stdout line:
//   {"op":"lookup","topic":hex}                         -> {"ms":n,"replies":n,"peers":n}
//   {"op":"announce","topic":hex,"seed":hex}            -> {"ms":n,"closest":n}
//   {"op":"unannounce","topic":hex,"seed":hex}          -> {"ms":n}
//   {"op":"immutablePut","value":hex}                   -> {"ms":n,"hash":hex,"closest":n}
//   {"op":"immutableGet","hash":hex}                    -> {"ms":n,"found":bool}
//   {"op":"mutablePut","seed":hex,"value":hex,"seq":n}  -> {"ms":n,"seq":n,"closest":n}
//   {"op":"mutableGet","publicKey":hex,"seq":n,"latest":bool} -> {"ms":n,"found":bool,"seq":n|null}
// or {"error":"message"}. Key pairs are derived from seeds before the clock starts. Closing
// stdin destroys the node and exits.

const readline = require('readline')
const b4a = require('b4a')
const HyperDHT = require('hyperdht')

const hex = (buf) => b4a.toString(buf, 'hex')
const fromHex = (s) => b4a.from(s, 'hex')
const send = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')

function bootstrapList (arg) {
  if (!arg) throw new Error('usage: node bench-records.js HOST:PORT[,HOST:PORT...]')
  return arg.split(',').map((a) => {
    const i = a.lastIndexOf(':')
    const host = a.slice(0, i)
    if (!/^127\.\d+\.\d+\.\d+$/.test(host)) throw new Error(`bootstrap host must be 127.x: ${a}`)
    return { host, port: Number(a.slice(i + 1)) }
  })
}

const keyPairs = new Map()
function keyPair (seed) {
  if (!keyPairs.has(seed)) keyPairs.set(seed, HyperDHT.keyPair(fromHex(seed)))
  return keyPairs.get(seed)
}

// Runs `fn` and returns its result with the elapsed milliseconds.
async function timed (fn) {
  const start = process.hrtime.bigint()
  const result = await fn()
  const ms = Number(process.hrtime.bigint() - start) / 1e6
  return { ms, ...result }
}

// Drains a query stream (lookup / announce) to its end.
async function drain (q) {
  let replies = 0
  let peers = 0
  q.on('data', (r) => {
    replies++
    peers += r.peers ? r.peers.length : 0
  })
  await q.finished()
  return { replies, peers, closest: q.closestReplies.length }
}

function ops (dht) {
  return {
    lookup (m) {
      const topic = fromHex(m.topic)
      return timed(async () => {
        const r = await drain(dht.lookup(topic))
        return { replies: r.replies, peers: r.peers }
      })
    },
    announce (m) {
      const topic = fromHex(m.topic)
      const kp = keyPair(m.seed)
      return timed(async () => {
        const r = await drain(dht.announce(topic, kp, []))
        return { closest: r.closest }
      })
    },
    unannounce (m) {
      const topic = fromHex(m.topic)
      const kp = keyPair(m.seed)
      return timed(async () => {
        await dht.unannounce(topic, kp)
        return {}
      })
    },
    immutablePut (m) {
      const value = fromHex(m.value)
      return timed(async () => {
        const r = await dht.immutablePut(value)
        return { hash: hex(r.hash), closest: r.closestNodes.length }
      })
    },
    immutableGet (m) {
      const hash = fromHex(m.hash)
      return timed(async () => {
        const r = await dht.immutableGet(hash)
        return { found: !!r }
      })
    },
    mutablePut (m) {
      const kp = keyPair(m.seed)
      const value = fromHex(m.value)
      return timed(async () => {
        const r = await dht.mutablePut(kp, value, { seq: m.seq })
        return { seq: r.seq, closest: r.closestNodes.length }
      })
    },
    mutableGet (m) {
      const pk = fromHex(m.publicKey)
      const opts = { seq: m.seq || 0, latest: m.latest !== false }
      return timed(async () => {
        const r = await dht.mutableGet(pk, opts)
        return { found: !!r, seq: r ? r.seq : null }
      })
    }
  }
}

async function main () {
  const bootstrap = bootstrapList(process.argv[2])
  // [0, 0]: any free port (a plain 0 makes hyperdht try its default 49737 first).
  const dht = new HyperDHT({ bootstrap, host: '127.0.0.1', port: [0, 0], ephemeral: true })
  await dht.fullyBootstrapped()
  const table = ops(dht)

  // One request at a time: the clock of one operation never overlaps another.
  let chain = Promise.resolve()
  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity })
  rl.on('line', (line) => {
    if (line.trim() === '') return
    chain = chain.then(async () => {
      try {
        const m = JSON.parse(line)
        const fn = Object.prototype.hasOwnProperty.call(table, m.op) ? table[m.op] : null
        if (!fn) throw new Error(`unknown op ${JSON.stringify(m.op)}`)
        send(await fn(m))
      } catch (err) {
        send({ error: (err && err.message) || String(err) })
      }
    })
  })
  rl.on('close', async () => {
    await chain
    setTimeout(() => process.exit(0), 2000).unref()
    await dht.destroy({ force: true })
    process.exit(0)
  })
  send({ event: 'ready' })
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
