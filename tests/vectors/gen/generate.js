'use strict'

// Regenerates the reference vectors in tests/vectors from the pinned Node packages of
// tests/interop. See ../README.md.
//
//   node tests/vectors/gen/generate.js                 deterministic sections; live captures kept
//   node tests/vectors/gen/generate.js --live          captures refreshed from live runs too
//   node tests/vectors/gen/generate.js --check         writes nothing; fails if a file would change
//   node tests/vectors/gen/generate.js connect.json …  only these files

const fs = require('fs')
const { vectorPath, writeVector } = require('./ref.js')

const GENERATORS = [
  require('./dht-rpc.js'),
  require('./hyperdht-records.js'),
  require('./hyperdht-records-scenario.js'),
  require('./connect.js'),
  require('./udx-secret-stream.js'),
  require('./udx-hyperdht-capture.js'),
  require('./protomux-blind-relay.js')
]

async function main() {
  const args = process.argv.slice(2)
  const live = args.includes('--live')
  const check = args.includes('--check')
  const wanted = args.filter((a) => !a.startsWith('--'))
  const unknown = wanted.filter((f) => !GENERATORS.some((g) => g.file === f))
  if (unknown.length) throw new Error('unknown vector file(s): ' + unknown.join(', ') + '; known: ' + GENERATORS.map((g) => g.file).join(', '))
  if (live && check) throw new Error('--check compares deterministic output; it cannot be combined with --live')

  let changed = 0
  for (const g of GENERATORS) {
    if (wanted.length && !wanted.includes(g.file)) continue
    if (g.liveOnly && !live) {
      console.log(g.file.padEnd(32), 'kept (a live capture: --live regenerates it)')
      continue
    }
    const started = Date.now()
    const value = await g.generate({ live })
    const text = JSON.stringify(value, null, 2) + '\n'
    const before = fs.existsSync(vectorPath(g.file)) ? fs.readFileSync(vectorPath(g.file), 'utf8') : null
    const same = before === text
    if (!same) changed++
    if (!check && !same) writeVector(g.file, value)
    const verdict = same ? 'unchanged' : check ? 'DIFFERS' : 'written'
    console.log(g.file.padEnd(32), verdict, '(' + (Date.now() - started) + ' ms)')
  }
  if (check && changed) {
    console.error(changed + ' file(s) differ from what the pinned reference packages produce')
    process.exit(1)
  }
  process.exit(0)
}

main().catch((err) => {
  console.error(err)
  process.exit(2)
})
