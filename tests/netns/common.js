'use strict'

// Shared helpers for the kernel-NAT scripts (public.js, server.js, client.js). They run inside
// network namespaces created by tests/src/netns.rs and load the pinned reference packages from
// tests/interop/node_modules. Output: one JSON object per line on stdout; logs on stderr.

const path = require('path')
const modules = path.join(__dirname, '..', 'interop', 'node_modules')
const load = (name) => require(path.join(modules, name))

function args() {
  const out = {}
  const argv = process.argv.slice(2)
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${JSON.stringify(a)}`)
    const next = argv[i + 1]
    if (next === undefined || next.startsWith('--')) out[a.slice(2)] = true
    else out[a.slice(2)] = argv[++i]
  }
  return out
}

function parseAddrs(list) {
  if (!list) return []
  return String(list)
    .split(',')
    .filter(Boolean)
    .map((s) => {
      const i = s.lastIndexOf(':')
      return { host: s.slice(0, i), port: Number(s.slice(i + 1)) }
    })
}

const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')
const log = (...a) => console.error(`[${path.basename(process.argv[1])}]`, ...a)

// Exit when the parent closes our stdin or signals us, after `cleanup` (bounded).
function exitWith(cleanup) {
  let exiting = false
  const bye = async (code) => {
    if (exiting) return
    exiting = true
    setTimeout(() => process.exit(code), 2000).unref()
    try {
      await cleanup()
    } catch (err) {
      log('cleanup failed:', err.message)
    }
    process.exit(code)
  }
  process.stdin.on('end', () => bye(0))
  process.stdin.on('error', () => bye(0))
  process.stdin.resume()
  process.on('SIGTERM', () => bye(0))
  process.on('SIGINT', () => bye(0))
  return bye
}

const FIREWALL_NAMES = ['UNKNOWN', 'OPEN', 'CONSISTENT', 'RANDOM']

module.exports = { load, args, parseAddrs, emit, log, exitWith, FIREWALL_NAMES }
