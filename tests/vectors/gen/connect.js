'use strict'

// connect.json: the connect / holepunch layer of hyperdht 6.34.0 (noise-handshake 4.2.0,
// noise-curve-ed 2.1.0, dht-rpc 6.27.0).
//
// Deterministic: namespaces, Ed25519 DH, Noise IK with fixed ephemerals, NoisePayload,
// PEER_HANDSHAKE / PEER_HOLEPUNCH values, holepunch payloads, SecurePayload and its tokens, and
// `simulated_connect`: a relay chain run through the real dht-rpc IO and hyperdht Router over an
// in-memory network with fixed tids, keys and nonces.
// Live (--live): `captured_*`, real connects on a hyperdht testnet on 127.0.0.1. Every datagram
// a udx-native socket sends from JavaScript (send / trySend) is logged: dht-rpc messages and
// 1-byte probes. UDX stream packets leave from libudx's C code and are not in these logs.

const { ref, b4a, c, sodium, hex, unhex, utf8, blake2b256, seedKeyPair, version, sleep, keptLive, generatorName } = require('./ref.js')

const FILE = 'connect.json'
const LIVE_KEYS = ['captured_lan', 'captured_holepunch_fast_open', 'captured_holepunch_rounds', 'captured_open_server', 'captured_direct']

const curve = ref('noise-curve-ed')
const NoiseHandshake = ref('noise-handshake')
const m = ref('hyperdht/lib/messages.js')
const NoiseWrap = ref('hyperdht/lib/noise-wrap.js')
const SecurePayload = ref('hyperdht/lib/secure-payload.js')
const Router = ref('hyperdht/lib/router.js')
const { NS, COMMANDS, FIREWALL, ERROR } = ref('hyperdht/lib/constants.js')
const IO = ref('dht-rpc/lib/io.js')
const peer = ref('dht-rpc/lib/peer.js')
const NoiseSecretStream = ref('@hyperswarm/secret-stream')
const hypercoreCrypto = ref('hypercore-crypto')

const MODES = ['FROM_CLIENT', 'FROM_SERVER', 'FROM_RELAY', 'FROM_SECOND_RELAY', 'REPLY']
const FIREWALLS = ['UNKNOWN', 'OPEN', 'CONSISTENT', 'RANDOM']
const USER_COMMANDS = Object.fromEntries(Object.entries(COMMANDS).map(([name, n]) => [n, name]))
const INTERNAL_COMMANDS = ['PING', 'PING_NAT', 'FIND_NODE', 'DOWN_HINT', 'DELAYED_PING']

const seedOf = (label) => blake2b256(utf8(label))
const addr = (host, port) => ({ host, port })

/** Buffers as hex, recursively; address objects lose the fields that are not on the wire. */
function jsonify(v) {
  if (v === undefined) return undefined
  if (v === null) return null
  if (b4a.isBuffer(v) || v instanceof Uint8Array) return hex(v)
  if (Array.isArray(v)) return v.map(jsonify)
  if (typeof v !== 'object') return v
  const isAddress = typeof v.host === 'string' && typeof v.port === 'number'
  const out = {}
  for (const key of Object.keys(v)) {
    if (isAddress && ['id', 'family', 'hits', 'verified'].includes(key)) continue
    const j = jsonify(v[key])
    if (j !== undefined) out[key] = j
  }
  return out
}

/** SHA-512(seed)[0..32], clamped: the scalar noise-curve-ed multiplies by. */
function clampedScalar(seed) {
  const h = b4a.alloc(64)
  sodium.crypto_hash_sha512(h, seed)
  h[0] &= 248
  h[31] &= 127
  h[31] |= 64
  return h.subarray(0, 32)
}

const KEYS = {
  client: seedKeyPair(seedOf('hyperdht-vector-client')),
  server: seedKeyPair(seedOf('hyperdht-vector-server')),
  clientEphSeed: seedOf('hyperdht-vector-client-ephemeral'),
  serverEphSeed: seedOf('hyperdht-vector-server-ephemeral')
}

function about() {
  const packages = ['hyperdht', 'dht-rpc', 'noise-handshake', 'noise-curve-ed', '@hyperswarm/secret-stream', 'compact-encoding', 'sodium-native', 'udx-native', 'blind-relay']
  return {
    description:
      'HyperDHT connect/holepunch wire vectors. All byte strings are lowercase hex. ' +
      'Addresses are {host, port}; on the wire an IPv4 address is 4 octets followed by the port as uint16 little-endian. ' +
      'compact-encoding "uint" is the 1/3/5/9-byte varint (<=0xfc: 1 byte; 0xfd+u16le; 0xfe+u32le; 0xff+u64le).',
    generator: generatorName(__filename),
    versions: Object.fromEntries(packages.map((p) => [p, version(p)])),
    seeds:
      'Every "seed" below is BLAKE2b-256(utf8(label)) of the label given next to it; Ed25519 key pairs are libsodium crypto_sign_seed_keypair(seed): secretKey = seed || publicKey (64 bytes).'
  }
}

function namespaces() {
  const [initiator, responder, send] = hypercoreCrypto.namespace('hyperswarm/secret-stream', 3)
  return {
    description:
      'crypto.namespace(name, ids): base = BLAKE2b-256(utf8(name)); ns[i] = BLAKE2b-256(base || byte(id_i)). hyperdht uses name "hyperswarm/dht" with ids = command numbers.',
    hyperswarm_dht_base: hex(blake2b256(utf8('hyperswarm/dht'))),
    ANNOUNCE_id4: hex(NS.ANNOUNCE),
    UNANNOUNCE_id5: hex(NS.UNANNOUNCE),
    MUTABLE_PUT_id6: hex(NS.MUTABLE_PUT),
    PEER_HANDSHAKE_id0: hex(NS.PEER_HANDSHAKE),
    PEER_HOLEPUNCH_id1: hex(NS.PEER_HOLEPUNCH),
    PLUGIN_id10: hex(NS.PLUGIN),
    secret_stream_base: hex(blake2b256(utf8('hyperswarm/secret-stream'))),
    secret_stream_NS_INITIATOR_id0: hex(initiator),
    secret_stream_NS_RESPONDER_id1: hex(responder),
    secret_stream_NS_SEND_id2: hex(send),
    noise_prologue: hex(NS.PEER_HANDSHAKE)
  }
}

function ed25519Dh() {
  const party = (label) => {
    const seed = seedOf(label)
    const kp = seedKeyPair(seed)
    return { label, seed, kp, json: { label, seed: hex(seed), publicKey: hex(kp.publicKey), secretKey: hex(kp.secretKey), scalar: hex(clampedScalar(seed)) } }
  }
  const cases = [['alice', 'bob'], ['hyperdht-vector-client', 'hyperdht-vector-server'], ['eph-a', 'eph-b']].map(([la, lb]) => {
    const a = party(la)
    const b = party(lb)
    const shared = curve.dh(b.kp.publicKey, a.kp)
    if (!b4a.equals(shared, curve.dh(a.kp.publicKey, b.kp))) throw new Error('noise-curve-ed DH is not symmetric for ' + la + '/' + lb)
    // X25519 on the birationally equivalent keys, to show it is NOT what hyperdht computes
    const xsk = b4a.alloc(32)
    const xpk = b4a.alloc(32)
    const x = b4a.alloc(32)
    sodium.crypto_sign_ed25519_sk_to_curve25519(xsk, a.kp.secretKey)
    sodium.crypto_sign_ed25519_pk_to_curve25519(xpk, b.kp.publicKey)
    sodium.crypto_scalarmult(x, xsk, xpk)
    return { a: a.json, b: b.json, shared: hex(shared), x25519_of_converted_keys_NOT_USED: hex(x) }
  })

  const alice = seedKeyPair(seedOf('alice'))
  const invalid = []
  const attempt = (name, publicKey) => {
    try {
      invalid.push({ name, publicKey: hex(publicKey), ok: true, shared: hex(curve.dh(publicKey, alice)) })
    } catch (err) {
      invalid.push({ name, publicKey: hex(publicKey), ok: false, error: err.message })
    }
  }
  const identity = b4a.alloc(32)
  identity[0] = 1
  attempt('identity point (small order)', identity)
  attempt('all zero (small order, y=0)', b4a.alloc(32))
  const torsion = unhex('26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05') // a point of order 8
  const mixed = b4a.alloc(32)
  try {
    sodium.crypto_core_ed25519_add(mixed, alice.publicKey, torsion)
    attempt('valid key + order-8 torsion point (mixed order)', mixed)
  } catch (err) {
    invalid.push({ name: 'mixed-order construction failed', error: err.message })
  }
  const nonCanonical = b4a.alloc(32, 0xff)
  nonCanonical[31] = 0x7f
  attempt('non-canonical y >= p', nonCanonical)

  return {
    description:
      'noise-curve-ed DH: scalar = SHA-512(seed)[0..32] clamped (s[0]&=248, s[31]&=127, s[31]|=64); ' +
      'shared = compressed-Edwards encoding of scalar*P via libsodium crypto_scalarmult_ed25519_noclamp (32 bytes). ' +
      'publicKey is the plain Ed25519 public key. x25519_of_converted_keys_NOT_USED shows what X25519 on converted keys would give - it differs and must not be used.',
    cases,
    invalid_public_keys: invalid
  }
}

const noiseState = (hs) => ({ h: hex(b4a.from(hs.digest)), ck: hex(b4a.from(hs.chainingKey)) })

/** One full IK handshake between the fixed client and server keys with the fixed ephemerals. */
function ikHandshake(name, payload1, payload2, prologue) {
  const initiator = new NoiseHandshake('IK', true, KEYS.client, { curve })
  const responder = new NoiseHandshake('IK', false, KEYS.server, { curve })
  initiator.initialise(prologue, KEYS.server.publicKey)
  responder.initialise(prologue)
  const afterInitialise = noiseState(initiator)
  if (afterInitialise.h !== noiseState(responder).h) throw new Error('IK: the two sides start from different states')
  initiator.e = curve.generateKeyPair(KEYS.clientEphSeed)
  responder.e = curve.generateKeyPair(KEYS.serverEphSeed)

  const msg1 = initiator.send(payload1)
  const msg1Hex = hex(msg1) // noise-handshake zeroes the received ephemeral inside msg1 later
  const afterMsg1 = noiseState(initiator)
  if (!b4a.equals(responder.recv(msg1), payload1)) throw new Error('IK: payload 1 did not arrive intact')
  const responderAfterMsg1 = noiseState(responder)
  if (responderAfterMsg1.h !== afterMsg1.h || responderAfterMsg1.ck !== afterMsg1.ck) throw new Error('IK: states differ after msg1')
  const ephemeralI = hex(initiator.e.publicKey)
  const ephemeralR = hex(responder.e.publicKey)
  const msg2 = responder.send(payload2)
  const msg2Hex = hex(msg2)
  if (!b4a.equals(initiator.recv(msg2), payload2)) throw new Error('IK: payload 2 did not arrive intact')
  if (!b4a.equals(initiator.hash, responder.hash) || !b4a.equals(initiator.tx, responder.rx) || !b4a.equals(initiator.rx, responder.tx)) {
    throw new Error('IK: the two sides ended with different keys')
  }

  const eI = curve.generateKeyPair(KEYS.clientEphSeed)
  const eR = curve.generateKeyPair(KEYS.serverEphSeed)
  const side = (staticLabel, kp, ephLabel, ephSeed, ephPublic) => ({
    static_seed_label: staticLabel,
    static_seed: hex(seedOf(staticLabel)),
    static_publicKey: hex(kp.publicKey),
    static_secretKey: hex(kp.secretKey),
    ephemeral_seed_label: ephLabel,
    ephemeral_seed: hex(ephSeed),
    ephemeral_publicKey: ephPublic
  })
  return {
    name,
    protocol_name: b4a.toString(initiator.protocol),
    protocol_name_hex: hex(initiator.protocol),
    prologue: hex(prologue),
    initiator: side('hyperdht-vector-client', KEYS.client, 'hyperdht-vector-client-ephemeral', KEYS.clientEphSeed, ephemeralI),
    responder: side('hyperdht-vector-server', KEYS.server, 'hyperdht-vector-server-ephemeral', KEYS.serverEphSeed, ephemeralR),
    dh_outputs: {
      es: hex(curve.dh(KEYS.server.publicKey, eI)),
      ss: hex(curve.dh(KEYS.server.publicKey, KEYS.client)),
      ee: hex(curve.dh(eR.publicKey, eI)),
      se: hex(curve.dh(eR.publicKey, KEYS.client))
    },
    state_after_initialise: afterInitialise,
    state_after_msg1: afterMsg1,
    payload1: hex(payload1),
    msg1: msg1Hex,
    msg1_layout: 'e.pub(32) || AEAD(s.pub)(32+16) || AEAD(payload1)(len+16)',
    payload2: hex(payload2),
    msg2: msg2Hex,
    msg2_layout: 'e.pub(32) || AEAD(payload2)(len+16)',
    handshake_hash: hex(initiator.hash),
    initiator_tx: hex(initiator.tx),
    initiator_rx: hex(initiator.rx),
    responder_tx: hex(responder.tx),
    responder_rx: hex(responder.rx),
    holepunch_secret: hex(blake2b256(NS.PEER_HOLEPUNCH, initiator.hash)),
    secret_stream_id_initiator: hex(NoiseSecretStream.id(initiator.hash, true)),
    secret_stream_id_responder: hex(NoiseSecretStream.id(initiator.hash, false))
  }
}

const CLIENT_PAYLOAD = {
  error: ERROR.NONE,
  firewall: FIREWALL.UNKNOWN,
  holepunch: null,
  addresses4: [addr('192.168.1.20', 49737)],
  addresses6: [],
  udx: { reusableSocket: false, id: 0x1a2b3c4d, seq: 0 },
  secretStream: {},
  relayThrough: null
}
const SERVER_PAYLOAD = {
  error: ERROR.NONE,
  firewall: FIREWALL.UNKNOWN,
  holepunch: { id: 0, relays: [{ relayAddress: addr('203.0.113.10', 49737), peerAddress: addr('192.0.2.20', 40000) }] },
  addresses4: [addr('10.0.0.5', 40000)],
  addresses6: null,
  udx: { reusableSocket: false, id: 0x5e6f7a8b, seq: 0 },
  secretStream: {},
  relayThrough: null,
  relayAddresses: [addr('203.0.113.10', 49737)]
}

const finalJson = (f) => jsonify({ isInitiator: f.isInitiator, publicKey: f.publicKey, remotePublicKey: f.remotePublicKey, remoteId: f.remoteId, holepunchSecret: f.holepunchSecret, hash: f.hash, tx: f.tx, rx: f.rx })

function noiseIk() {
  const withPayloads = ikHandshake('IK with hyperdht NoisePayloads (as used by connect)', c.encode(m.noisePayload, CLIENT_PAYLOAD), c.encode(m.noisePayload, SERVER_PAYLOAD), NS.PEER_HANDSHAKE)
  withPayloads.payload1_decoded = jsonify(CLIENT_PAYLOAD)
  withPayloads.payload2_decoded = jsonify(SERVER_PAYLOAD)
  const empty = ikHandshake('IK with empty payloads (for testing a bare Noise implementation)', b4a.alloc(0), b4a.alloc(0), NS.PEER_HANDSHAKE)

  // hyperdht's NoiseWrap (what connect.js and server.js call) must write the very same bytes
  const client = new NoiseWrap(KEYS.client, KEYS.server.publicKey)
  client.handshake.e = curve.generateKeyPair(KEYS.clientEphSeed)
  const server = new NoiseWrap(KEYS.server, null)
  server.handshake.e = curve.generateKeyPair(KEYS.serverEphSeed)
  const msg1 = b4a.from(client.send(CLIENT_PAYLOAD))
  if (hex(msg1) !== withPayloads.msg1) throw new Error('NoiseWrap msg1 differs from the IK vector')
  server.recv(b4a.from(msg1))
  const msg2 = server.send(SERVER_PAYLOAD)
  if (hex(msg2) !== withPayloads.msg2) throw new Error('NoiseWrap msg2 differs from the IK vector')
  client.recv(b4a.from(msg2))
  const clientFinal = client.final()
  const serverFinal = server.final()
  if (hex(clientFinal.holepunchSecret) !== withPayloads.holepunch_secret) throw new Error('NoiseWrap holepunch secret differs')
  if (!b4a.equals(clientFinal.remotePublicKey, KEYS.server.publicKey) || !b4a.equals(serverFinal.remotePublicKey, KEYS.client.publicKey)) {
    throw new Error('NoiseWrap remote keys differ')
  }
  withPayloads.noisewrap_final_client = finalJson(clientFinal)
  withPayloads.noisewrap_final_server = finalJson(serverFinal)

  const tampered = b4a.from(msg1)
  tampered[tampered.length - 1] ^= 1
  let result
  try {
    new NoiseWrap(KEYS.server, null).recv(tampered)
    result = 'accepted (unexpected)'
  } catch (err) {
    result = 'rejected: ' + err.message
  }
  return {
    description:
      'Noise_IK_Ed25519_ChaChaPoly_BLAKE2b as implemented by noise-handshake 4.2.0 with noise-curve-ed. HASHLEN=64 (BLAKE2b-512), ' +
      'HMAC block 128, HKDF per Noise spec, cipher keys = first 32 bytes of HKDF outputs, ChaCha20-Poly1305-IETF nonce = 4 zero bytes || counter as u64 little-endian (library writes a u32 LE at offset 4). ' +
      'Ephemeral key pairs are Ed25519 key pairs from the given seeds (injected for reproducibility). Initiator = client (connect), responder = server.',
    vectors: [withPayloads, empty],
    tampered_msg1: { msg1: hex(tampered), result }
  }
}

function noisePayloads() {
  const cases = []
  const add = (name, value, note) => {
    const encoded = c.encode(m.noisePayload, value)
    cases.push({ name, value: jsonify(value), hex: hex(encoded), decoded: jsonify(c.decode(m.noisePayload, encoded)), note })
  }
  const failed = (error, firewall, holepunch) => ({
    error,
    firewall,
    holepunch,
    addresses4: [],
    addresses6: null,
    udx: { reusableSocket: false, id: 0, seq: 0 },
    secretStream: {},
    relayThrough: null,
    relayAddresses: null
  })
  add('client, firewalled, LAN address, no relay (typical connect.js request)', CLIENT_PAYLOAD)
  add('client with no addresses (localConnection:false and firewalled)', { ...CLIENT_PAYLOAD, addresses4: [] }, 'addresses4 empty => flag bit 1 not set, field omitted')
  add('client OPEN (has a public remoteAddress) plus local address', {
    ...CLIENT_PAYLOAD,
    firewall: FIREWALL.OPEN,
    addresses4: [addr('198.51.100.7', 49737), addr('192.168.1.20', 49737)],
    udx: { reusableSocket: true, id: 7, seq: 0 }
  })
  add('client with relayThrough', { ...CLIENT_PAYLOAD, relayThrough: { publicKey: KEYS.server.publicKey, token: blake2b256(utf8('relay-token')) } })
  add('server, firewalled (holepunch info, relayAddresses)', SERVER_PAYLOAD)
  add('server OPEN (no holepunch info)', { ...SERVER_PAYLOAD, firewall: FIREWALL.OPEN, holepunch: null, addresses4: [addr('198.51.100.80', 49737), addr('10.0.0.5', 49737)] })
  add('server, empty relayAddresses array (flag 64 set, count 0)', { ...SERVER_PAYLOAD, relayAddresses: [] }, 'relayAddresses is gated on truthiness, not length: [] still sets bit 6 and writes a 0 count')
  add('server error ABORTED (client payload had no udx), udx id 0', failed(ERROR.ABORTED, FIREWALL.UNKNOWN, { id: 3, relays: [] }))
  add('server error VERSION_MISMATCH', failed(ERROR.VERSION_MISMATCH, FIREWALL.OPEN, null))
  add('with IPv6 addresses and multi-byte uints', {
    error: ERROR.NONE,
    firewall: FIREWALL.CONSISTENT,
    holepunch: {
      id: 300,
      relays: [
        { relayAddress: addr('203.0.113.10', 49737), peerAddress: addr('192.0.2.20', 40000) },
        { relayAddress: addr('203.0.113.11', 1), peerAddress: addr('192.0.2.20', 65535) }
      ]
    },
    addresses4: [addr('10.0.0.5', 40000)],
    addresses6: [addr('2001:db8::1', 40000), addr('fe80::1:2:3:4', 1)],
    udx: { reusableSocket: true, id: 0xfffffffe, seq: 70000 },
    secretStream: {},
    relayThrough: null,
    relayAddresses: null
  })
  const future = unhex('02ffffffff')
  cases.push({
    name: 'decode of version 2 payload (rest ignored)',
    hex: hex(future),
    decoded: jsonify(c.decode(m.noisePayload, future)),
    note: 'decoder returns version only; connect.js then fails with SERVER_INCOMPATIBLE, server replies ERROR.VERSION_MISMATCH'
  })
  return {
    description:
      'hyperdht lib/messages.js noisePayload: uint version(=1) | uint flags | uint error | uint firewall | [holepunch] | [addresses4] | [addresses6] | [udx] | [secretStream] | [relayThrough] | [relayAddresses]. ' +
      'flags: 1 holepunch, 2 addresses4 (non-empty), 4 addresses6 (non-empty), 8 udx, 16 secretStream, 32 relayThrough, 64 relayAddresses (truthy).',
    cases
  }
}

/** Cases of a router envelope: the value, its bytes and what the reference decodes them to. */
function envelopeCases(encoding, list) {
  return list.map(([name, value]) => {
    const encoded = c.encode(encoding, value)
    return { name, mode: MODES[value.mode], value: jsonify(value), hex: hex(encoded), decoded: jsonify(c.decode(encoding, encoded)) }
  })
}

function peerHandshakes(noise1, noise2) {
  const client = addr('198.51.100.7', 50001)
  const server = addr('192.0.2.20', 40123)
  const hs = (mode, noise, peerAddress, relayAddress) => ({ mode, noise, peerAddress, relayAddress })
  return {
    description:
      'PEER_HANDSHAKE (command 0) request/response value: uint flags (1 peerAddress, 2 relayAddress) | uint mode | buffer noise (uint length + bytes) | [ipv4 peerAddress] | [ipv4 relayAddress]. modes: 0 FROM_CLIENT, 1 FROM_SERVER, 2 FROM_RELAY, 3 FROM_SECOND_RELAY, 4 REPLY.',
    cases: envelopeCases(m.handshake, [
      ['FROM_CLIENT (client -> DHT node)', hs(0, noise1, null, null)],
      ['FROM_RELAY (DHT node -> server), peerAddress = client as seen by node', hs(2, noise1, client, null)],
      ['FROM_SERVER (server -> DHT node), peerAddress = client (echoed back)', hs(1, noise2, client, null)],
      ['REPLY relayed (DHT node -> client), peerAddress = server as seen by node', hs(4, noise2, server, null)],
      ['REPLY direct (server -> client), no addresses', hs(4, noise2, null, null)],
      ['FROM_CLIENT with explicit relayAddress (unused by connect.js 6.34.0)', hs(0, noise1, null, addr('203.0.113.11', 49737))],
      ['FROM_SECOND_RELAY (2nd DHT node -> server)', hs(3, noise1, client, addr('203.0.113.10', 49737))]
    ])
  }
}

function peerHolepunches() {
  const payload = unhex('00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff0011223344556677')
  const hp = (mode, id, p, peerAddress) => ({ mode, id, payload: p, peerAddress })
  return {
    description:
      'PEER_HOLEPUNCH (command 1) value: uint flags (1 peerAddress) | uint mode | uint id | buffer payload | [ipv4 peerAddress]. payload = secretbox-encrypted holepunchPayload.',
    cases: envelopeCases(m.holepunch, [
      ['FROM_CLIENT (client -> relay), peerAddress = server address the relay should forward to', hp(0, 0, payload, addr('192.0.2.20', 40000))],
      ['FROM_RELAY (relay -> server), peerAddress = client as seen by relay', hp(2, 0, payload, addr('198.51.100.7', 50002))],
      ['FROM_SERVER (server -> relay), id always 0, peerAddress = client', hp(1, 0, payload, addr('198.51.100.7', 50002))],
      ['REPLY (relay -> client), peerAddress = server as seen by relay', hp(4, 0, payload, addr('192.0.2.20', 40123))],
      ['FROM_CLIENT with large holepunch id', hp(0, 253, b4a.alloc(0), null)]
    ])
  }
}

const NO_PUNCH = { error: 0, firewall: 0, round: 0, connected: false, punching: false, addresses: null, remoteAddress: null, token: null, remoteToken: null }
const tokenOf = (label) => blake2b256(utf8(label))

function holepunchPayloads() {
  const server = addr('192.0.2.20', 40123)
  const client = addr('198.51.100.7', 50002)
  const list = [
    ['client probe round 0 (firewall unknown yet, fastOpen remoteAddress)', { remoteAddress: server }],
    ['client probe round 0 (consistent, addresses known)', { firewall: 2, addresses: [client], remoteAddress: server }],
    ['server probe reply (token present because it came via one of its announce relays)', { firewall: 2, addresses: [server], token: tokenOf('t1') }],
    ['client punch round 1', { firewall: 2, round: 1, punching: true, addresses: [client], token: tokenOf('t2'), remoteToken: tokenOf('t1') }],
    ['server punch reply', { firewall: 2, round: 1, punching: true, addresses: [server], token: tokenOf('t1'), remoteToken: tokenOf('t2') }],
    ['abort (error ABORTED)', { error: ERROR.ABORTED, round: 2 }],
    ['try later (error TRY_LATER, random NAT)', { error: ERROR.TRY_LATER, firewall: 3, round: 1, addresses: [server] }],
    ['connected flag set, addresses empty array', { firewall: 1, round: 5, connected: true, addresses: [] }]
  ]
  return {
    description:
      'holepunchPayload (plaintext inside the secretbox): uint flags | uint error | uint firewall | uint round | [ipv4[] addresses] | [ipv4 remoteAddress] | [fixed32 token] | [fixed32 remoteToken]. ' +
      'flags: 1 connected, 2 punching, 4 addresses (non-null, may be empty), 8 remoteAddress, 16 token, 32 remoteToken.',
    cases: list.map(([name, fields]) => {
      const value = { ...NO_PUNCH, ...fields }
      const encoded = c.encode(m.holepunchPayload, value)
      return { name, value: jsonify(value), hex: hex(encoded), decoded: jsonify(c.decode(m.holepunchPayload, encoded)) }
    })
  }
}

/** nonce || crypto_secretbox_easy(holepunchPayload): a SecurePayload box with a chosen nonce. */
function sealHolepunch(secret, nonce, payload) {
  const plain = c.encode(m.holepunchPayload, payload)
  const box = b4a.alloc(24 + 16 + plain.byteLength)
  box.set(nonce, 0)
  sodium.crypto_secretbox_easy(box.subarray(24), plain, nonce, secret)
  return { box, plain }
}

function securePayload(secret) {
  const nonce = blake2b256(utf8('holepunch-nonce')).subarray(0, 24)
  const payload = { ...NO_PUNCH, firewall: 2, round: 1, punching: true, addresses: [addr('198.51.100.7', 50002)], token: tokenOf('t2'), remoteToken: tokenOf('t1') }
  const { box, plain } = sealHolepunch(secret, nonce, payload)
  const sp = new SecurePayload(secret)
  const opened = sp.decrypt(b4a.from(box))
  if (!opened || opened.round !== 1) throw new Error('SecurePayload does not open the box')
  const own = new SecurePayload(secret).decrypt(sp.encrypt(payload)) // its own random nonce
  if (!own || own.round !== 1) throw new Error('SecurePayload does not open its own box')
  const tampered = b4a.from(box)
  tampered[30] ^= 0x40
  const localSecret = blake2b256(utf8('holepunch-local-secret'))
  sp._localSecret = localSecret
  return {
    description:
      'SecurePayload: key = holepunchSecret = BLAKE2b-256(input=NS_PEER_HOLEPUNCH, key=handshakeHash(64)). box = nonce(24, random) || crypto_secretbox_easy(plaintext) (= MAC(16) || XSalsa20 ciphertext). ' +
      'Decrypt fails (message dropped) if total length <= 40 or MAC fails or plaintext does not decode.',
    key: hex(secret),
    nonce: hex(nonce),
    payload: jsonify(payload),
    plaintext: hex(plain),
    box: hex(box),
    tampered_box: hex(tampered),
    tampered_decrypt_result: new SecurePayload(secret).decrypt(tampered),
    token_description: 'token(addr) = BLAKE2b-256(input=utf8(addr.host), key=localSecret(32 random bytes per SecurePayload)). The port is NOT included.',
    token_local_secret: hex(localSecret),
    tokens: [addr('198.51.100.7', 50002), addr('198.51.100.7', 1), addr('192.0.2.20', 40123)].map((a) => ({ address: a, token: hex(sp.token(a)) }))
  }
}

// ---------------------------------------------------------------------------------------------
// Annotating datagrams: dht-rpc framing, then what the value holds

function decodeDatagram(buf, ctx) {
  if (buf.byteLength === 1) return { kind: 'holepunch-probe', note: '1-byte datagram (value ' + buf[0] + '); never parsed by dht-rpc (needs >= 2 bytes)' }
  if (buf[0] !== 0x03 && buf[0] !== 0x13) return { kind: 'other', first_byte: buf[0] }
  const request = buf[0] === 0x03
  const st = { start: 1, end: buf.byteLength, buffer: buf }
  const d = { kind: request ? 'dht-rpc request' : 'dht-rpc response' }
  const address = () => {
    const a = c.ipv4Address.decode(st)
    return { host: a.host, port: a.port }
  }
  try {
    const flags = (d.flags = c.uint.decode(st))
    d.tid = c.uint16.decode(st)
    d.to = address()
    if (flags & 1) d.id = hex(c.fixed32.decode(st))
    if (flags & 2) d.token = hex(c.fixed32.decode(st))
    if (request) {
      d.internal = (flags & 4) !== 0
      d.command_num = c.uint.decode(st)
      d.command = d.internal ? INTERNAL_COMMANDS[d.command_num] || 'internal?' : USER_COMMANDS[d.command_num] || 'user?'
      if (flags & 8) d.target = hex(c.fixed32.decode(st))
      if (flags & 16) d.value = hex(c.buffer.decode(st))
    } else {
      if (flags & 4) d.closerNodes = c.array(c.ipv4Address).decode(st).map((a) => ({ host: a.host, port: a.port }))
      if (flags & 8) d.error = c.uint.decode(st)
      if (flags & 16) d.value = hex(c.buffer.decode(st))
    }
    if (st.start !== st.end) d.trailing_bytes = st.end - st.start
  } catch (err) {
    d.decode_error = err.message
    return d
  }
  if (d.value) annotateValue(d, ctx)
  return d
}

function decodeOrNull(encoding, bytes) {
  try {
    const v = c.decode(encoding, bytes)
    return v.mode > 4 ? null : v
  } catch {
    return null
  }
}

/** Adds what a request's (or, by its tid, a response's) value decodes to. */
function annotateValue(d, ctx) {
  const value = unhex(d.value)
  const command = d.command || (ctx && ctx.tidCommand ? ctx.tidCommand(d) : null)
  if (command === 'PEER_HANDSHAKE' || (!d.command && !command)) {
    const hs = decodeOrNull(m.handshake, value)
    if (hs && (command === 'PEER_HANDSHAKE' || hs.noise.byteLength >= 48)) {
      d.peer_handshake = { mode: MODES[hs.mode], noise: hex(hs.noise), noise_len: hs.noise.byteLength, peerAddress: hs.peerAddress, relayAddress: hs.relayAddress }
      const plain = ctx && ctx.noise && ctx.noise.get(hex(hs.noise))
      if (plain) d.peer_handshake.noise_plaintext = plain
      return
    }
  }
  if (command === 'PEER_HOLEPUNCH' || !d.command) {
    const hp = decodeOrNull(m.holepunch, value)
    if (hp && hp.payload.byteLength > 40) {
      d.peer_holepunch = { mode: MODES[hp.mode], id: hp.id, payload: hex(hp.payload), peerAddress: hp.peerAddress }
      for (const secret of (ctx && ctx.secrets) || []) {
        const plain = new SecurePayload(secret).decrypt(b4a.from(hp.payload))
        if (!plain) continue
        d.peer_holepunch.payload_decrypted = jsonify(plain)
        d.peer_holepunch.payload_decrypted.firewall_name = FIREWALLS[plain.firewall]
        break
      }
      return
    }
  }
  if (command === 'FIND_PEER') {
    try {
      d.peer_record = jsonify(c.decode(m.peer, value))
    } catch {}
  }
  if (command === 'ANNOUNCE' || command === 'UNANNOUNCE') {
    try {
      d.announce = jsonify(c.decode(m.announce, value))
    } catch {}
  }
}

/**
 * Annotated datagrams. The list is read twice with one tid -> command map, so that a reply
 * learns its request's command (what its value holds) even when the reply was logged first.
 */
function annotateAll(list, ctx, describe) {
  const commandOfTid = new Map()
  const pass = () =>
    list.map((entry, i) => {
      const decoded = decodeDatagram(entry.buf, { ...ctx, tidCommand: (d) => commandOfTid.get(d.tid) || null })
      if (decoded.kind === 'dht-rpc request') commandOfTid.set(decoded.tid, decoded.command)
      else if (decoded.kind === 'dht-rpc response' && commandOfTid.has(decoded.tid)) decoded.in_reply_to = commandOfTid.get(decoded.tid)
      return { i, ...describe(entry), len: entry.buf.byteLength, hex: hex(entry.buf), decoded }
    })
  pass()
  return pass()
}

// ---------------------------------------------------------------------------------------------
// simulated_connect: client -> DHT node -> server, in memory, through dht-rpc IO and hyperdht Router

async function simulatedConnect() {
  const datagrams = []
  const sockets = new Map()
  const nextTick = () => new Promise((resolve) => setImmediate(resolve))

  const socket = (name, host, port) => {
    const s = {
      name,
      host,
      port,
      io: null,
      address: () => ({ host, port, family: 4 }),
      trySend: (buf, toPort, toHost, ttl) => deliver(s, b4a.from(buf), toPort, toHost, ttl),
      send(buf, toPort, toHost, ttl) {
        deliver(s, b4a.from(buf), toPort, toHost, ttl)
        return Promise.resolve(true)
      }
    }
    sockets.set(host + ':' + port, s)
    return s
  }
  // logs a private copy (a receiver may change the bytes it is given) and delivers on the next turn
  function deliver(from, buf, port, host, ttl) {
    const to = sockets.get(host + ':' + port)
    datagrams.push({ from: from.name, from_addr: addr(from.host, from.port), to: to ? to.name : '?', to_addr: addr(host, port), ttl: ttl || 0, buf: b4a.from(buf) })
    if (!to) return
    setImmediate(() => {
      if (buf.byteLength === 1) {
        if (to.onprobe) to.onprobe(buf, { host: from.host, port: from.port })
        return
      }
      to.io.onmessage(to, buf, { host: from.host, port: from.port })
    })
  }

  const udx = { watchNetworkInterfaces: () => ({ on() {}, destroy() {} }) }
  const node = (name, host, port, { persistent = false, firewalled = true } = {}) => {
    const n = { name }
    const io = new IO({ id: peer.id(host, port), closest: () => [] }, udx, { firewalled, onrequest: (req) => n.onrequest(req) })
    io.ephemeral = !persistent
    const s = socket(name, host, port)
    s.io = io
    io.serverSocket = s
    io.clientSocket = s
    n.io = io
    const dht = {
      request({ token = null, command, target = null, value = null }, to, opts) {
        const req = io.createRequest({ id: null, host: to.host, port: to.port }, token, false, command, target, value, null, 0)
        if (opts && opts.socket) req.socket = opts.socket
        return new Promise((resolve, reject) => {
          req.onresponse = resolve
          req.onerror = reject
          req.send()
        })
      }
    }
    n.router = new Router(dht, { forwards: { maxSize: 100, maxAge: 0 } })
    n.onrequest = (req) => {
      if (!req.internal && req.command === COMMANDS.PEER_HANDSHAKE) return n.router.onpeerhandshake(req)
      if (!req.internal && req.command === COMMANDS.PEER_HOLEPUNCH) return n.router.onpeerholepunch(req)
      if (req.internal && req.command === 0) return req.sendReply(0, null, false, false) // PING
      if (n.onother) return n.onother(req)
    }
    return n
  }
  const request = (io, to, { internal = false, command, target = null, socket: via = null }) =>
    new Promise((resolve, reject) => {
      const req = io.createRequest({ id: null, ...to }, null, internal, command, target, null, null, 0)
      if (via) req.socket = via
      req.onresponse = resolve
      req.onerror = reject
      req.send()
    })

  const A = {
    client: addr('198.51.100.7', 50001),
    clientPuncher: addr('198.51.100.7', 50002),
    relay: addr('203.0.113.10', 49737),
    server: addr('192.0.2.20', 40000),
    serverPuncher: addr('192.0.2.20', 40123)
  }
  const client = node('client', A.client.host, A.client.port)
  const relay = node('dht-node', A.relay.host, A.relay.port, { persistent: true, firewalled: false })
  const server = node('server', A.server.host, A.server.port)
  const clientPuncher = socket('client-puncher', A.clientPuncher.host, A.clientPuncher.port)
  clientPuncher.io = client.io
  const serverPuncher = socket('server-puncher', A.serverPuncher.host, A.serverPuncher.port)
  serverPuncher.io = server.io
  client.io._tid = 0x0100
  relay.io._tid = 0x0200
  server.io._tid = 0x0300

  const target = blake2b256(KEYS.server.publicKey)
  const record = c.encode(m.peer, { publicKey: KEYS.server.publicKey, relayAddresses: [] })
  relay.router.set(target, { relay: A.server, record, onconnect: null, onholepunch: null })
  relay.onother = (req) => {
    if (req.command !== COMMANDS.FIND_PEER || req.internal) return
    const fwd = relay.router.get(req.target)
    req.reply(fwd ? fwd.record : null, { token: false }) // no token: keeps the vector stable
  }

  const clientSecret = blake2b256(utf8('sim-client-local-secret'))
  const serverSecret = blake2b256(utf8('sim-server-local-secret'))
  let nonces = 0
  const nextNonce = () => blake2b256(utf8('sim-nonce-' + nonces++)).subarray(0, 24)
  const serverPayload = {
    error: ERROR.NONE,
    firewall: FIREWALL.UNKNOWN,
    holepunch: { id: 0, relays: [{ relayAddress: A.relay, peerAddress: A.server }] },
    addresses4: [],
    addresses6: null,
    udx: { reusableSocket: false, id: 0x5e6f7a8b, seq: 0 },
    secretStream: {},
    relayThrough: null,
    relayAddresses: [A.relay]
  }
  const clientPayload = { ...CLIENT_PAYLOAD, addresses4: [] }

  const session = {}
  server.router.set(target, {
    relay: null,
    record,
    onpeerhandshake: async ({ noise, peerAddress }) => {
      const w = new NoiseWrap(KEYS.server, null)
      w.handshake.e = curve.generateKeyPair(KEYS.serverEphSeed)
      w.recv(noise)
      const reply = w.send(serverPayload)
      session.final = w.final()
      session.payload = new SecurePayload(session.final.holepunchSecret)
      session.payload._localSecret = serverSecret
      session.client = peerAddress
      return { socket: serverPuncher, noise: reply }
    },
    onpeerholepunch: async ({ payload, peerAddress }) => {
      const remote = session.payload.decrypt(payload)
      const reply = {
        error: ERROR.NONE,
        firewall: FIREWALL.CONSISTENT,
        round: remote.round,
        connected: false,
        punching: remote.punching,
        addresses: [A.serverPuncher],
        remoteAddress: null,
        token: session.payload.token(peerAddress),
        remoteToken: remote.token
      }
      return { socket: serverPuncher, payload: sealHolepunch(session.final.holepunchSecret, nextNonce(), reply).box }
    }
  })

  const steps = []
  const step = (label) => steps.push({ label, first_datagram: datagrams.length })

  step('FIND_PEER query step: client asks a DHT node close to hash(serverPublicKey)')
  const findPeer = await request(client.io, A.relay, { command: COMMANDS.FIND_PEER, target })
  if (!b4a.equals(c.decode(m.peer, findPeer.value).publicKey, KEYS.server.publicKey)) throw new Error('simulated FIND_PEER did not find the server')

  step('PEER_HANDSHAKE: client -> node (FROM_CLIENT), node -> server (FROM_RELAY), server -> node (FROM_SERVER, sent from the server puncher socket), node -> client (response, REPLY)')
  const noise = new NoiseWrap(KEYS.client, KEYS.server.publicKey)
  noise.handshake.e = curve.generateKeyPair(KEYS.clientEphSeed)
  const msg1 = noise.send(clientPayload)
  const msg1Hex = hex(msg1)
  const handshake = await client.router.peerHandshake(target, { noise: msg1, socket: null, session: null }, A.relay)
  const plaintexts = new Map([
    [msg1Hex, { sender: 'client', message: 'IK msg1 (client -> server)', payload: jsonify(clientPayload) }],
    [hex(handshake.noise), { sender: 'server', message: 'IK msg2 (server -> client)', payload: jsonify(serverPayload) }]
  ])
  const fromServer = noise.recv(b4a.from(handshake.noise))
  const final = noise.final()
  const clientSP = new SecurePayload(final.holepunchSecret)
  clientSP._localSecret = clientSecret

  step('NAT sample: internal PING from the client puncher socket to a DHT node; the response "to" field reveals the puncher public address')
  await request(client.io, A.relay, { internal: true, command: 0, socket: clientPuncher })

  step('fast-open: 1-byte probe (TTL 5) from client puncher to serverAddress. In this simulation it is treated as lost (a TTL-5 probe is meant to open the client NAT mapping, not to arrive); on loopback it does arrive and the server echoes it, see captured_holepunch_fast_open')
  clientPuncher.trySend(b4a.from([0]), A.serverPuncher.port, A.serverPuncher.host, 5)
  await nextTick()

  step('PEER_HOLEPUNCH round 0 (probe): client puncher -> node (FROM_CLIENT, peerAddress = relays[0].peerAddress), node -> server (FROM_RELAY), server puncher -> node (FROM_SERVER), node -> client puncher (REPLY)')
  const via = fromServer.holepunch.relays[0]
  const round = (payload, peerAddress, relayAddress) =>
    client.router.peerHolepunch(target, { id: fromServer.holepunch.id, payload: sealHolepunch(final.holepunchSecret, nextNonce(), payload).box, peerAddress, socket: clientPuncher, session: null }, relayAddress)
  const probe = { ...NO_PUNCH, firewall: FIREWALL.CONSISTENT, addresses: [A.clientPuncher], remoteAddress: handshake.serverAddress }
  const reply0 = await round(probe, via.peerAddress, via.relayAddress)
  const opened0 = clientSP.decrypt(reply0.payload)

  step('PEER_HOLEPUNCH round 1 (punch): sent to the server puncher address learned from the round-0 REPLY peerAddress')
  const punch = { ...NO_PUNCH, firewall: FIREWALL.CONSISTENT, round: 1, punching: true, addresses: [A.clientPuncher], token: clientSP.token(reply0.peerAddress), remoteToken: opened0.token }
  const reply1 = await round(punch, reply0.peerAddress, A.relay)
  const opened1 = clientSP.decrypt(reply1.payload)

  step('punching: 1-byte probes (TTL 64); the server echoes every probe it receives; the client is connected on the first probe it receives')
  serverPuncher.onprobe = (buf, from) => serverPuncher.trySend(b4a.from([0]), from.port, from.host, 64)
  let connectedVia = null
  clientPuncher.onprobe = (buf, from) => {
    if (!connectedVia) connectedVia = from
  }
  clientPuncher.trySend(b4a.from([0]), A.serverPuncher.port, A.serverPuncher.host, 64)
  await nextTick()
  await nextTick()
  for (const n of [client, relay, server]) n.router.destroy()

  return {
    description:
      'Deterministic relay chain produced by driving the real dht-rpc IO encoder/decoder and the real hyperdht Router with an in-memory network (no NAT). ' +
      'tids are fixed (client io starts at 0x0100, dht node 0x0200, server 0x0300). The DHT node is persistent (its relayed requests and responses from its server socket carry its 32-byte node id = BLAKE2b-256(ip(4)||port(u16le))). ' +
      'Noise ephemerals and holepunch nonces/local secrets are fixed, so every byte is reproducible. The FIND_PEER reply here omits the token and closer nodes (a real node sends a token).',
    addresses: A,
    keys: {
      client_static_publicKey: hex(KEYS.client.publicKey),
      server_static_publicKey: hex(KEYS.server.publicKey),
      target: hex(target),
      holepunch_secret: hex(final.holepunchSecret),
      client_token_local_secret: hex(clientSecret),
      server_token_local_secret: hex(serverSecret)
    },
    client_noise_payload: jsonify(clientPayload),
    server_noise_payload: jsonify(serverPayload),
    handshake_result: { relayed: handshake.relayed, serverAddress: handshake.serverAddress, clientAddress: handshake.clientAddress },
    holepunch_round0_reply: jsonify(opened0),
    holepunch_round1_reply: jsonify(opened1),
    round0_reply_peerAddress: reply0.peerAddress,
    connected_via: connectedVia,
    steps,
    datagrams: annotateAll(datagrams, { secrets: [final.holepunchSecret], noise: plaintexts }, (d) => ({ from: d.from, from_addr: d.from_addr, to: d.to, to_addr: d.to_addr, ttl: d.ttl }))
  }
}

// ---------------------------------------------------------------------------------------------
// Live captures: real connects on a hyperdht testnet on 127.0.0.1

const CAPTURES = [
  [
    'captured_lan',
    'Default options on loopback. Both peers are firewalled dht-rpc nodes (ephemeral, firewall UNKNOWN), so the server replies with holepunch info; because client and server have the same public host (127.0.0.1) and the client advertises its local address, the client races the LAN shortcut (PING to the server local address, then UDX over its io server socket) against holepunching.',
    { listenCapture: true }
  ],
  [
    'captured_holepunch_fast_open',
    'connect({ localConnection: false }): no LAN shortcut. The server answers the handshake from a fresh puncher socket; the client opens a puncher socket, sends a 1-byte TTL-5 probe to the server puncher address (fast open), the server echoes it, and the client connects on that first echo.',
    { connectOpts: { localConnection: false } }
  ],
  [
    'captured_holepunch_rounds',
    'connect({ localConnection: false, fastOpen: false }): the full PEER_HOLEPUNCH probe round (round 0) and punch round (round 1) happen before any probe is sent; both sides then probe (consistent/consistent).',
    { connectOpts: { localConnection: false, fastOpen: false } }
  ],
  [
    'captured_open_server',
    'Server DHT node created with { firewalled: false } so dht.remoteAddress() is known: the server reply says firewall OPEN and carries no holepunch info; the client connects straight to the server address (no PEER_HOLEPUNCH, no probes).',
    { serverDhtOpts: { firewalled: false }, connectOpts: { localConnection: false } }
  ],
  [
    'captured_direct',
    'connect({ relayAddresses: [server node address] }): the client sends PEER_HANDSHAKE FROM_CLIENT straight to the server node, which answers with a direct REPLY (no peerAddress); both sides connect their UDX streams immediately to the addresses the handshake travelled over.',
    { directToServer: true, connectOpts: { localConnection: false } }
  ]
]

/** Logs every datagram udx-native sends from JavaScript and names pool sockets; undo() restores. */
function installTap() {
  const UDXSocket = ref('udx-native/lib/socket.js')
  const SocketPool = ref('hyperdht/lib/socket-pool.js')
  const tap = { on: false, log: [], t0: 0, poolNames: new WeakMap() }
  const { send, trySend } = UDXSocket.prototype
  const { acquire } = SocketPool.prototype
  const record = (sock, buf, port, host, ttl) => {
    if (!tap.on) return
    let local = null
    try {
      local = sock.address()
    } catch {}
    tap.log.push({ t: Date.now() - tap.t0, sock, from: local ? { host: local.host, port: local.port } : null, to: { host: host || '127.0.0.1', port }, ttl: ttl || 0, buf: b4a.from(buf) })
  }
  UDXSocket.prototype.send = function (buf, port, host, ttl) {
    record(this, buf, port, host, ttl)
    return send.call(this, buf, port, host, ttl)
  }
  UDXSocket.prototype.trySend = function (buf, port, host, ttl) {
    record(this, buf, port, host, ttl)
    return trySend.call(this, buf, port, host, ttl)
  }
  SocketPool.prototype.acquire = function () {
    const held = acquire.call(this)
    this.__acquired = (this.__acquired || 0) + 1
    tap.poolNames.set(held.socket, (this._dht.__captureName || 'dht') + '.pool' + this.__acquired)
    return held
  }
  tap.start = () => {
    tap.log = []
    tap.t0 = Date.now()
    tap.on = true
  }
  tap.stop = () => {
    tap.on = false
    return tap.log
  }
  tap.undo = () => {
    Object.assign(UDXSocket.prototype, { send, trySend })
    SocketPool.prototype.acquire = acquire
  }
  return tap
}

async function captureConnect(tap, name, description, { size = 10, serverOpts = {}, serverDhtOpts = {}, clientOpts = {}, connectOpts = {}, listenCapture = false, directToServer = false } = {}) {
  const createTestnet = ref('hyperdht/testnet.js')
  const testnet = await createTestnet(size)
  const labels = new Map() // local port -> name
  const nameSockets = (node, prefix) => {
    labels.set(node.io.serverSocket.address().port, prefix + '.server-socket')
    labels.set(node.io.clientSocket.address().port, prefix + '.client-socket')
  }
  testnet.nodes.forEach((n, i) => nameSockets(n, 'dht' + i))
  const serverDht = testnet.createNode(serverDhtOpts)
  const clientDht = testnet.createNode(clientOpts)
  serverDht.__captureName = 'server'
  clientDht.__captureName = 'client'
  await serverDht.fullyBootstrapped()
  await clientDht.fullyBootstrapped()
  nameSockets(serverDht, 'server.io')
  nameSockets(clientDht, 'client.io')

  // Handshakes with the fixed ephemerals, logging each Noise message with its payload.
  const plaintexts = new Map()
  const finals = {}
  const handshakeFor = (role, ephemeralSeed) => (keyPair, remotePublicKey) => {
    const w = new NoiseWrap(keyPair, remotePublicKey)
    w.handshake.e = curve.generateKeyPair(ephemeralSeed)
    const send = w.send.bind(w)
    const final = w.final.bind(w)
    w.send = (payload) => {
      const msg = send(payload)
      plaintexts.set(hex(msg), {
        sender: role,
        message: role === 'client' ? 'IK msg1 (client -> server)' : 'IK msg2 (server -> client)',
        payload: jsonify(payload),
        payload_hex: hex(c.encode(m.noisePayload, payload))
      })
      return msg
    }
    w.final = () => (finals[role] = final())
    return w
  }

  const serverEvents = []
  const clientEvents = []
  const server = serverDht.createServer({ ...serverOpts, createHandshake: handshakeFor('server', KEYS.serverEphSeed) })
  let serverConn = null
  const serverOpened = new Promise((resolve) => {
    server.on('connection', (s) => {
      serverConn = s
      s.on('error', () => {})
      serverEvents.push({ t: Date.now() - tap.t0, event: 'connection' })
      s.opened.then(() => {
        serverEvents.push({ t: Date.now() - tap.t0, event: 'server secret-stream opened' })
        resolve()
      })
    })
  })

  if (listenCapture) tap.start()
  await server.listen(KEYS.server)
  const listenLog = listenCapture ? tap.stop() : null
  await sleep(300)

  const opts = { ...connectOpts, keyPair: KEYS.client, createHandshake: handshakeFor('client', KEYS.clientEphSeed) }
  if (directToServer) opts.relayAddresses = [{ host: '127.0.0.1', port: serverDht.io.serverSocket.address().port }]
  tap.start()
  const sock = clientDht.connect(KEYS.server.publicKey, opts)
  let clientError = null
  sock.on('error', (err) => {
    clientError = err.code || err.message
  })
  const clientOpened = new Promise((resolve) => {
    sock.once('open', () => {
      clientEvents.push({ t: Date.now() - tap.t0, event: 'client secret-stream open' })
      resolve()
    })
    sock.once('close', resolve)
  })
  const outcome = await Promise.race([Promise.all([clientOpened, serverOpened]), sleep(15000).then(() => 'timeout')])
  let echo = null
  if (outcome !== 'timeout' && serverConn) {
    serverConn.on('data', (d) => serverConn.write(d))
    sock.write(utf8('ping'))
    echo = await Promise.race([new Promise((resolve) => sock.once('data', (d) => resolve(b4a.toString(d)))), sleep(2000).then(() => null)])
  }
  await sleep(300)
  const log = tap.stop()

  for (const e of log) if (e.from && tap.poolNames.has(e.sock)) labels.set(e.from.port, tap.poolNames.get(e.sock))
  const senderName = (e) => (e.sock && tap.poolNames.has(e.sock) ? tap.poolNames.get(e.sock) : labels.get((e.from || { port: 0 }).port) || 'port ' + (e.from || { port: 0 }).port)
  const receiverName = (e) => labels.get(e.to.port) || 'port ' + e.to.port
  const secrets = finals.client ? [finals.client.holepunchSecret] : []
  const datagrams = annotateAll(log, { secrets, noise: plaintexts }, (e) => {
    const o = { t_ms: e.t, from: senderName(e), from_addr: e.from, to: receiverName(e), to_addr: e.to, ttl: e.ttl }
    if (e.from && e.from.port === e.to.port && e.buf.byteLength === 1) o.note = 'server local-address validation (temporary socket sends 1 byte to itself)'
    return o
  })
  const rawStream = (s) => (s && s.rawStream ? { local_id: s.rawStream.id, remote_id: s.rawStream.remoteId, local_port: s.rawStream.socket && s.rawStream.socket.address().port, remote: addr(s.rawStream.remoteHost, s.rawStream.remotePort) } : null)

  const result = {
    description,
    testnet_size: size,
    connect_options: jsonify({ ...connectOpts, ...(directToServer ? { relayAddresses: opts.relayAddresses } : {}) }),
    server_dht_options: serverDhtOpts,
    client_firewalled: clientDht.firewalled,
    server_firewalled: serverDht.firewalled,
    server_remote_address: serverDht.remoteAddress(),
    client_remote_address: clientDht.remoteAddress(),
    server_public_key: hex(KEYS.server.publicKey),
    client_public_key: hex(KEYS.client.publicKey),
    target: hex(blake2b256(KEYS.server.publicKey)),
    result: outcome === 'timeout' ? 'timeout' : clientError ? 'client error ' + clientError : 'connected',
    echo_roundtrip: echo,
    handshake_hash: finals.client ? hex(finals.client.hash) : null,
    holepunch_secret: finals.client ? hex(finals.client.holepunchSecret) : null,
    client_raw_stream: rawStream(sock),
    server_raw_stream: rawStream(serverConn),
    events: [...clientEvents, ...serverEvents].sort((x, y) => x.t - y.t),
    noise_messages: [...plaintexts].map(([noise, v]) => ({ noise, ...v })),
    socket_labels: Object.fromEntries([...labels].map(([port, label]) => [String(port), label])),
    note: 'Only datagrams sent through udx-native JS send()/trySend() are logged: dht-rpc messages and 1-byte holepunch probes. UDX stream packets (secret-stream header and data) are sent by libudx internally and do not appear.',
    datagrams
  }
  for (const s of [result.client_raw_stream, result.server_raw_stream]) if (s && s.local_port) s.local_socket = labels.get(s.local_port)
  if (listenLog) {
    result.listen_datagrams = annotateAll(listenLog, {}, (e) => ({ t_ms: e.t, from: senderName(e), to: receiverName(e), ttl: e.ttl }))
  }
  if (result.result !== 'connected') throw new Error(name + ': the reference peers did not connect (' + result.result + ')')

  sock.destroy()
  if (serverConn) serverConn.destroy()
  await server.close()
  await testnet.destroy()
  return result
}

async function captures() {
  const tap = installTap()
  try {
    const out = {}
    for (const [name, description, opts] of CAPTURES) out[name] = await captureConnect(tap, name, description, opts)
    return out
  } finally {
    tap.undo()
  }
}

// ---------------------------------------------------------------------------------------------

async function generate({ live }) {
  const out = { about: about(), namespaces: namespaces(), ed25519_dh: ed25519Dh(), noise_ik: noiseIk() }
  const ik = out.noise_ik.vectors[0]
  out.noise_payload = noisePayloads()
  out.peer_handshake = peerHandshakes(unhex(ik.msg1), unhex(ik.msg2))
  out.peer_holepunch = peerHolepunches()
  out.holepunch_payload = holepunchPayloads()
  out.secure_payload = securePayload(unhex(ik.holepunch_secret))
  out.simulated_connect = await simulatedConnect()
  Object.assign(out, live ? await captures() : keptLive(FILE, LIVE_KEYS))
  return out
}

module.exports = { file: FILE, generate }
