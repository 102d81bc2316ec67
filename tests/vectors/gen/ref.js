'use strict'

// What every generator shares: the pinned reference packages (resolved from tests/interop, so
// the versions are the ones in its package-lock.json), byte helpers, and reading / writing the
// vector files next to this folder.

const fs = require('fs')
const path = require('path')
const { createRequire } = require('module')

const INTEROP = path.join(__dirname, '..', '..', 'interop')
const VECTORS = path.join(__dirname, '..')

/** `require` as seen from tests/interop: every package comes from its pinned node_modules. */
const ref = createRequire(path.join(INTEROP, 'package.json'))

if (!fs.existsSync(path.join(INTEROP, 'node_modules', 'hyperdht'))) {
  throw new Error('the Node reference packages are not installed: run `npm ci --prefix tests/interop` first')
}

const b4a = ref('b4a')
const sodium = ref('sodium-universal')
const c = ref('compact-encoding')

const hex = (buf) => (buf === null || buf === undefined ? null : b4a.toString(buf, 'hex'))
const unhex = (text) => b4a.from(text, 'hex')
const utf8 = (text) => b4a.from(text, 'utf8')

/** Unkeyed (or keyed) BLAKE2b with a 32-byte output over the concatenated parts. */
function blake2b256(parts, key) {
  const input = Array.isArray(parts) ? b4a.concat(parts.map((p) => (typeof p === 'string' ? utf8(p) : p))) : parts
  const out = b4a.alloc(32)
  if (key) sodium.crypto_generichash(out, input, key)
  else sodium.crypto_generichash(out, input)
  return out
}

/** Ed25519 key pair from a 32-byte seed (libsodium crypto_sign_seed_keypair). */
function seedKeyPair(seed) {
  const publicKey = b4a.alloc(32)
  const secretKey = b4a.alloc(64)
  sodium.crypto_sign_seed_keypair(publicKey, secretKey, seed)
  return { publicKey, secretKey }
}

const version = (name) => ref(name + '/package.json').version
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** The bytes as latin1 text when every byte is printable ASCII, else null. */
function printable(buf) {
  for (const byte of buf) if (byte < 0x20 || byte > 0x7e) return null
  return b4a.toString(buf, 'latin1')
}

/** A buffer of `len` bytes where byte i = (i * mul) & 0xff. */
function pattern(len, mul) {
  const out = b4a.alloc(len)
  for (let i = 0; i < len; i++) out[i] = (i * mul) & 0xff
  return out
}

const vectorPath = (file) => path.join(VECTORS, file)

/** The current contents of a vector file, or null when it does not exist yet. */
function readVector(file) {
  const p = vectorPath(file)
  return fs.existsSync(p) ? JSON.parse(fs.readFileSync(p, 'utf8')) : null
}

/** Writes a vector file the way every file here is formatted: 2-space JSON and a newline. */
function writeVector(file, value) {
  fs.writeFileSync(vectorPath(file), JSON.stringify(value, null, 2) + '\n')
}

/** The live sections of an existing file, or a clear error when a deterministic-only run has none. */
function keptLive(file, keys) {
  const existing = readVector(file)
  const kept = {}
  for (const key of keys) {
    if (!existing || !(key in existing)) {
      throw new Error(file + ' has no `' + key + '` section to keep: run with --live to capture it')
    }
    kept[key] = existing[key]
  }
  return kept
}

/** The path of a generator relative to the repository root, for the files' provenance fields. */
const generatorName = (file) => path.relative(path.join(VECTORS, '..', '..'), file).split(path.sep).join('/')

module.exports = {
  ref,
  b4a,
  sodium,
  c,
  hex,
  unhex,
  utf8,
  blake2b256,
  seedKeyPair,
  version,
  sleep,
  printable,
  pattern,
  vectorPath,
  readVector,
  writeVector,
  keptLive,
  generatorName
}
