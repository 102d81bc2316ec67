'use strict'

// hyperdht-records.json: key pairs (and the node's default key pair from the `seed` / `keyPair`
// options), the error codes of lib/errors.js, namespaces, hashes, node ids, every record message
// (peer, announce, lookup reply, mutable, immutable, router envelopes, plugin), announce and
// mutable signatures, decoder tolerance and whole dht-rpc frames, all made by hyperdht 6.34.0 /
// dht-rpc 6.27.0 / compact-encoding 3.5.2 themselves. Entirely deterministic.

const { ref, b4a, c, sodium, hex, unhex, utf8, blake2b256, version, generatorName } = require('./ref.js')
const { stubIO } = require('./dht-rpc.js')

const HyperDHT = ref('hyperdht')
const RPC = ref('dht-rpc')
const m = ref('hyperdht/lib/messages')
const Persistent = ref('hyperdht/lib/persistent')
const { COMMANDS, ERROR, NS, FIREWALL, BOOTSTRAP_NODES } = ref('hyperdht/lib/constants')
const hypercoreCrypto = ref('hypercore-crypto')
const nodeId = ref('dht-rpc/lib/peer').id

const FILE = 'hyperdht-records.json'

const addrJson = (a) => ({ host: a.host, port: a.port })
const peerJson = (p) => ({ publicKey: hex(p.publicKey), relayAddresses: p.relayAddresses.map(addrJson) })
const label = (text) => blake2b256(utf8('hyperdht-records-vectors ' + text))

const SEEDS = [
  '00'.repeat(32),
  Array.from({ length: 32 }, (_, i) => i.toString(16).padStart(2, '0')).join(''),
  hex(label('seed 2')),
  hex(label('seed 3'))
]
const KEY_PAIRS = SEEDS.map((s) => HyperDHT.keyPair(unhex(s)))
const TOPIC = label('topic')
const TOKEN = label('token')
const REFRESH = label('refresh')
const NODE = { host: '127.0.0.1', port: 49738 }
const NODE2 = { host: '88.99.3.86', port: 49737 }
const RELAYS = [
  { host: '10.0.0.1', port: 49737 },
  { host: '192.168.1.254', port: 1 },
  { host: '255.255.255.255', port: 65535 },
  { host: '1.2.3.4', port: 256 }
]
const PLACEHOLDER_SIGNATURE = b4a.alloc(64, 0xab)
const peerOf = (kp, relays = 0) => ({ publicKey: KEY_PAIRS[kp].publicKey, relayAddresses: RELAYS.slice(0, relays) })

function about() {
  return {
    description:
      'HyperDHT DHT-level record vectors (keys, hashes, namespaces, message encodings, signatures). ' +
      'All byte strings are lowercase hex. Addresses are {host, port}; IPv4 address encoding is 4 IP bytes ' +
      'in dotted order followed by the port as uint16 little-endian. "hash" always means unkeyed BLAKE2b with ' +
      '32-byte output (libsodium crypto_generichash). Signatures are Ed25519 detached (libsodium ' +
      'crypto_sign_detached), which is deterministic, so Rust must reproduce signature_hex exactly.',
    generator: generatorName(__filename),
    versions: Object.fromEntries(['hyperdht', 'dht-rpc', 'compact-encoding', 'hypercore-crypto', 'sodium-universal', 'record-cache', 'xache'].map((p) => [p, version(p)]))
  }
}

function constants() {
  return {
    commands: { ...COMMANDS },
    dht_rpc_internal_commands: { PING: 0, PING_NAT: 1, FIND_NODE: 2, DOWN_HINT: 3, DELAYED_PING: 4 },
    response_error_codes: {
      dht_rpc: { OK: RPC.OK, UNKNOWN_COMMAND: RPC.ERROR_UNKNOWN_COMMAND, INVALID_TOKEN: RPC.ERROR_INVALID_TOKEN },
      hyperdht: { SEQ_REUSED: ERROR.SEQ_REUSED, SEQ_TOO_LOW: ERROR.SEQ_TOO_LOW }
    },
    noise_payload_error_codes: { NONE: ERROR.NONE, ABORTED: ERROR.ABORTED, VERSION_MISMATCH: ERROR.VERSION_MISMATCH, TRY_LATER: ERROR.TRY_LATER },
    firewall: { ...FIREWALL },
    bootstrap_nodes: BOOTSTRAP_NODES.slice(),
    default_port: 49737,
    max_relay_addresses_stored: 3,
    max_peers_per_lookup_reply: 20,
    max_bump_drift_ms: 60000,
    cache_defaults: {
      maxSize: 65536,
      maxAge_ms: 20 * 60 * 1000,
      mutables_immutables_maxSize: 32768,
      mutables_immutables_maxAge_ms: 48 * 60 * 60 * 1000,
      relayAddressesCache_maxSize: 512
    },
    router_modes: { FROM_CLIENT: 0, FROM_SERVER: 1, FROM_RELAY: 2, FROM_SECOND_RELAY: 3, REPLY: 4 },
    announcer: { MIN_ACTIVE: 3, relays_per_announce: 3, ping_rounds: 100, ping_round_sleep_ms: 3000 }
  }
}

function namespaces() {
  const name = 'hyperswarm/dht'
  const base = blake2b256(utf8(name))
  const ids = ['ANNOUNCE', 'UNANNOUNCE', 'MUTABLE_PUT', 'PEER_HANDSHAKE', 'PEER_HOLEPUNCH', 'PLUGIN']
  const fromLibrary = hypercoreCrypto.namespace(name, ids.map((id) => COMMANDS[id]))
  return {
    description: 'hypercore-crypto namespace(name, ids): base = hash(utf8(name)); NS[id] = hash(base || [id as one byte])',
    name,
    name_utf8_hex: hex(utf8(name)),
    base_hash: hex(base),
    entries: ids.map((id, i) => {
      const preimage = b4a.concat([base, b4a.from([COMMANDS[id]])])
      const value = blake2b256(preimage)
      // the formula written down here is what the reference computes
      if (!b4a.equals(value, fromLibrary[i]) || !b4a.equals(value, NS[id])) throw new Error('namespace ' + id + ' differs from hypercore-crypto')
      return { name: 'NS_' + id, id: COMMANDS[id], preimage_hex: hex(preimage), value: hex(value) }
    })
  }
}

function hashes() {
  const entry = (name, description, input) => ({ name, description, input: hex(input), hash: hex(HyperDHT.hash(input)) })
  return [
    entry('target_of_public_key_kp0', 'Target used by findPeer/server listen/mutablePut/mutableGet for a public key: hash(publicKey)', KEY_PAIRS[0].publicKey),
    entry('target_of_public_key_kp1', 'hash(publicKey) for kp1', KEY_PAIRS[1].publicKey),
    entry('immutable_empty', 'immutablePut target of an empty value: hash(value)', b4a.alloc(0)),
    entry('immutable_hello_world', 'immutablePut target of utf8("hello world")', utf8('hello world')),
    entry('topic_example', 'The TOPIC used in these vectors: hash(utf8("hyperdht-records-vectors topic")). Topics are opaque 32 bytes; hyperdht never hashes them', utf8('hyperdht-records-vectors topic'))
  ]
}

function nodeIds() {
  return [NODE, NODE2, { host: '10.0.0.1', port: 49737 }].map((a) => ({
    description: 'dht-rpc node id = hash(ipv4Address(host, port)) (6 bytes: 4 IP + uint16 LE port). Used as "id" in announce signables',
    host: a.host,
    port: a.port,
    address_encoding: hex(c.encode(c.ipv4Address, a)),
    id: hex(nodeId(a.host, a.port))
  }))
}

function peerRecords() {
  const cases = [
    ['peer_no_relays', peerOf(0, 0)],
    ['peer_one_relay', peerOf(1, 1)],
    ['peer_three_relays', peerOf(2, 3)],
    ['peer_four_relays', peerOf(3, 4), 'encodable, but a server truncates to the first 3 before storing']
  ]
  return cases.map(([name, peer, extra]) => ({
    name,
    description: 'peer: fixed32 publicKey, uint count, count * ipv4Address' + (extra ? ' (' + extra + ')' : ''),
    value: peerJson(peer),
    encoded: hex(c.encode(m.peer, peer))
  }))
}

function announceMessages() {
  const ann = (peer, refresh, signature, bump) => ({ peer, refresh, signature, bump })
  const cases = [
    ['announce_peer_only', ann(peerOf(0), null, null, 0)],
    ['announce_peer_signature', ann(peerOf(0, 2), null, PLACEHOLDER_SIGNATURE, 0)],
    ['announce_peer_refresh_signature', ann(peerOf(1), REFRESH, PLACEHOLDER_SIGNATURE, 0)],
    ['announce_peer_signature_bump', ann(peerOf(1), null, PLACEHOLDER_SIGNATURE, 1700000000000)],
    ['announce_refresh_only', ann(null, REFRESH, null, 0)],
    ['announce_empty', ann(null, null, null, 0)]
  ]
  return cases.map(([name, msg]) => {
    const encoded = c.encode(m.announce, msg)
    return {
      name,
      description:
        'announce (ANNOUNCE/UNANNOUNCE request value): uint flags (1=peer,2=refresh,4=signature,8=bump), then present fields in that order: peer, fixed32 refresh, fixed64 signature, uint bump. bump is only written when non-zero',
      value: { peer: msg.peer ? peerJson(msg.peer) : null, refresh: hex(msg.refresh), signature: hex(msg.signature), bump: msg.bump },
      flags: encoded[0],
      encoded: hex(encoded),
      decoded_bump: c.decode(m.announce, encoded).bump
    }
  })
}

function lookupReplies() {
  const record0 = c.encode(m.peer, peerOf(0, 0))
  const record2 = c.encode(m.peer, peerOf(2, 3))
  const cases = [
    ['lookup_reply_one_peer_bump0', [record0], 0],
    ['lookup_reply_two_peers_bump', [record0, record2], 1700000000000],
    ['lookup_reply_bump_small', [record2], 300]
  ]
  const list = cases.map(([name, peers, bump]) => {
    const encoded = c.encode(m.lookupRawReply, { peers, bump })
    return {
      name,
      description: 'LOOKUP response value (lookupRawReply): uint count, count * peer record (stored bytes copied verbatim), uint bump (always written by 6.34 servers)',
      peers: c.decode(m.lookupRawReply, encoded).peers.map(peerJson),
      bump,
      encoded: hex(encoded)
    }
  })
  const legacy = c.encode(m.peers, [peerOf(0, 0)])
  const decoded = c.decode(m.lookupRawReply, legacy)
  list.push({
    name: 'lookup_reply_legacy_no_bump',
    description: 'Decode-only: a reply that ends right after the peers array decodes with bump = 0',
    decode_only: true,
    peers: decoded.peers.map(peerJson),
    bump: decoded.bump,
    encoded: hex(legacy)
  })
  return list
}

function announceSignatures() {
  const NODE_ID = nodeId(NODE.host, NODE.port)
  const NODE2_ID = nodeId(NODE2.host, NODE2.port)
  const cases = [
    { name: 'announce_topic_no_relays', ns: 'ANNOUNCE', kp: 0, target: TOPIC, node: NODE, id: NODE_ID, ann: { peer: peerOf(0), refresh: null, signature: null, bump: 0 } },
    {
      name: 'announce_topic_with_relays_and_bump',
      note: 'bump is NOT covered by the signature',
      ns: 'ANNOUNCE',
      kp: 1,
      target: TOPIC,
      node: NODE2,
      id: NODE2_ID,
      ann: { peer: peerOf(1, 3), refresh: null, signature: null, bump: 1700000000000 }
    },
    {
      name: 'announce_topic_with_refresh',
      note: 'refresh (32 bytes) is the last hashed part when present',
      ns: 'ANNOUNCE',
      kp: 2,
      target: TOPIC,
      node: NODE,
      id: NODE_ID,
      ann: { peer: peerOf(2), refresh: REFRESH, signature: null, bump: 0 }
    },
    {
      name: 'announce_self_server_style',
      note: 'What a listening server (announcer.js) sends: target = hash(publicKey), no relay addresses, no refresh, no bump',
      ns: 'ANNOUNCE',
      kp: 0,
      target: HyperDHT.hash(KEY_PAIRS[0].publicKey),
      node: NODE,
      id: NODE_ID,
      ann: { peer: peerOf(0), refresh: null, signature: null }
    },
    {
      name: 'unannounce_topic',
      note: 'Unannounce: same layout, NS_UNANNOUNCE, relayAddresses always empty',
      ns: 'UNANNOUNCE',
      kp: 0,
      target: TOPIC,
      node: NODE,
      id: NODE_ID,
      ann: { peer: peerOf(0), signature: null }
    }
  ]
  return cases.map((sc) => {
    const keyPair = KEY_PAIRS[sc.kp]
    const parts = [sc.target, sc.id, TOKEN, c.encode(m.peer, sc.ann.peer), sc.ann.refresh || b4a.alloc(0)]
    const digest = blake2b256(b4a.concat(parts))
    const signable = b4a.concat([NS[sc.ns], digest])
    const sign = sc.ns === 'ANNOUNCE' ? Persistent.signAnnounce : Persistent.signUnannounce
    const signature = sign(sc.target, TOKEN, sc.id, sc.ann, keyPair)
    // the signable written down here is what the reference signs
    const ours = b4a.alloc(64)
    sodium.crypto_sign_detached(ours, signable, keyPair.secretKey)
    if (!b4a.equals(ours, signature) || !sodium.crypto_sign_verify_detached(signature, signable, keyPair.publicKey)) {
      throw new Error(sc.name + ': the signable differs from what hyperdht signs')
    }
    return {
      name: sc.name,
      description:
        'signable = NS_' + sc.ns + ' (32) || hash(target || node_id || token || encode(peer) || (refresh or empty)) (32); signature = Ed25519(secretKey, signable)' +
        (sc.note ? '. ' + sc.note : ''),
      namespace: sc.ns,
      namespace_value: hex(NS[sc.ns]),
      seed: SEEDS[sc.kp],
      publicKey: hex(keyPair.publicKey),
      secretKey: hex(keyPair.secretKey),
      target: hex(sc.target),
      token: hex(TOKEN),
      node_address: addrJson(sc.node),
      node_id: hex(sc.id),
      peer: peerJson(sc.ann.peer),
      refresh: sc.ann.refresh ? hex(sc.ann.refresh) : null,
      bump: sc.ann.bump || 0,
      hash_input_parts: parts.map(hex),
      hash_input: hex(b4a.concat(parts)),
      signable_hash: hex(digest),
      signable: hex(signable),
      signature: hex(signature),
      request_value: hex(c.encode(m.announce, { ...sc.ann, signature })),
      request_value_description: 'announce message with the signature filled in (what goes in the dht-rpc request value)'
    }
  })
}

function mutables() {
  const cases = [
    ['mutable_seq0_hello', 0, 0, utf8('hello')],
    ['mutable_seq1_world', 0, 1, utf8('world')],
    ['mutable_seq252_empty_value', 1, 252, b4a.alloc(0)],
    ['mutable_seq253_uint16', 1, 253, b4a.from([0, 1, 2, 3])],
    ['mutable_seq65536_uint32', 2, 65536, b4a.alloc(300, 0x61)],
    ['mutable_seq2pow32_uint64', 3, 2 ** 32, utf8('big seq')]
  ]
  return cases.map(([name, kp, seq, value]) => {
    const keyPair = KEY_PAIRS[kp]
    const inner = c.encode(m.mutableSignable, { seq, value })
    const innerHash = blake2b256(inner)
    const signable = b4a.concat([NS.MUTABLE_PUT, innerHash])
    const signature = Persistent.signMutable(seq, value, keyPair)
    const ours = b4a.alloc(64)
    sodium.crypto_sign_detached(ours, signable, keyPair.secretKey)
    if (!b4a.equals(ours, signature) || !Persistent.verifyMutable(signature, seq, value, keyPair.publicKey)) {
      throw new Error(name + ': the signable differs from what hyperdht signs')
    }
    return {
      name,
      description:
        'Mutable record. signable = NS_MUTABLE_PUT (32) || hash(uint seq || buffer value) (32); target = hash(publicKey). ' +
        'MUTABLE_PUT value = fixed32 publicKey, uint seq, buffer value, fixed64 signature. ' +
        'MUTABLE_GET response value = uint seq, buffer value, fixed64 signature (= put request without the public key)',
      seed: SEEDS[kp],
      publicKey: hex(keyPair.publicKey),
      secretKey: hex(keyPair.secretKey),
      target: hex(HyperDHT.hash(keyPair.publicKey)),
      seq,
      value: hex(value),
      signable_inner: hex(inner),
      signable_inner_hash: hex(innerHash),
      signable: hex(signable),
      signature: hex(signature),
      mutable_put_request: hex(c.encode(m.mutablePutRequest, { publicKey: keyPair.publicKey, seq, value, signature })),
      mutable_get_response: hex(c.encode(m.mutableGetResponse, { seq, value, signature }))
    }
  })
}

function routerEnvelopes() {
  const noise = unhex('00112233445566778899')
  const a = (host, port) => ({ host, port })
  const handshakes = [
    ['handshake_from_client', 0, null, null],
    ['handshake_from_relay', 2, a('1.2.3.4', 5000), null],
    ['handshake_from_second_relay', 3, a('1.2.3.4', 5000), a('5.6.7.8', 49737)],
    ['handshake_reply_relayed', 4, a('9.9.9.9', 65535), null]
  ].map(([name, mode, peerAddress, relayAddress]) => ({
    name,
    description: 'PEER_HANDSHAKE value: uint flags (1=peerAddress,2=relayAddress), uint mode, buffer noise, [ipv4Address peerAddress], [ipv4Address relayAddress]',
    mode,
    noise: hex(noise),
    peerAddress,
    relayAddress,
    encoded: hex(c.encode(m.handshake, { mode, noise, peerAddress, relayAddress }))
  }))
  const payload = unhex('deadbeef')
  const holepunches = [
    ['holepunch_from_client', 0, 7, null],
    ['holepunch_from_relay', 2, 300, a('1.2.3.4', 5000)],
    ['holepunch_from_server', 1, 0, a('1.2.3.4', 5000)]
  ].map(([name, mode, id, peerAddress]) => ({
    name,
    description: 'PEER_HOLEPUNCH value: uint flags (1=peerAddress), uint mode, uint id, buffer payload, [ipv4Address peerAddress]',
    mode,
    id,
    payload: hex(payload),
    peerAddress,
    encoded: hex(c.encode(m.holepunch, { mode, id, payload, peerAddress }))
  }))
  return { handshakes, holepunches }
}

function pluginRequests() {
  return [
    { plugin: 'example', version: 1, command: 0, value: null },
    { plugin: 'example', version: 2, command: 5, value: utf8('payload') }
  ].map((p) => ({
    description: 'PLUGIN (command 10) request value: string plugin (uint len + utf8), uint version, uint command, uint flags (1=value), [buffer value]',
    plugin: p.plugin,
    version: p.version,
    command: p.command,
    value: hex(p.value),
    encoded: hex(c.encode(m.pluginRequest, p))
  }))
}

function decodeCases(firstMutable) {
  const renderAnnounce = (v) => ({ peer: v.peer ? peerJson(v.peer) : null, refresh: hex(v.refresh), signature: hex(v.signature), bump: v.bump })
  const renderMutable = (v) => ({ seq: v.seq, value: hex(v.value), signature: hex(v.signature) })
  const signed = c.encode(m.announce, { peer: peerOf(0), refresh: null, signature: PLACEHOLDER_SIGNATURE, bump: 0 })
  const unknownBit = b4a.from(signed)
  unknownBit[0] = 0x15 // peer | signature | 16, a bit no field belongs to
  const mutableGet = unhex(firstMutable.mutable_get_response)
  const seq2pow53 = b4a.concat([KEY_PAIRS[0].publicKey, b4a.from([0xff, 0, 0, 0, 0, 0, 0, 0x20, 0]), b4a.from([0]), b4a.alloc(64)])
  const cases = [
    ['announce_unknown_flag_bit_ignored', 'announce', m.announce, unknownBit, 'Unknown flag bits are ignored (no field is read for them)', renderAnnounce],
    ['announce_trailing_bytes_ignored', 'announce', m.announce, b4a.concat([signed, b4a.from([1, 2, 3])]), 'Trailing bytes after the last field are ignored by every hyperdht decoder', renderAnnounce],
    ['announce_truncated_signature', 'announce', m.announce, signed.subarray(0, signed.length - 1), 'A field cut short is a decode error; a server then drops the request without replying', renderAnnounce],
    ['mutable_get_response_trailing_bytes', 'mutableGetResponse', m.mutableGetResponse, b4a.concat([mutableGet, b4a.from([0xff])]), 'Trailing bytes are ignored', renderMutable],
    [
      'mutable_put_seq_above_2pow53_minus_1',
      'mutablePutRequest',
      m.mutablePutRequest,
      seq2pow53,
      'A uint above 2^53-1 (here 2^53) throws in the reference decoder, so such a MUTABLE_PUT is dropped',
      (v) => ({ publicKey: hex(v.publicKey), seq: v.seq, value: hex(v.value), signature: hex(v.signature) })
    ],
    ['uint_non_canonical_accepted', 'uint', c.uint, b4a.from([0xfd, 0x05, 0x00]), 'compact uint decoding does not require the shortest form: fd 05 00 decodes to 5', (v) => v]
  ]
  return cases.map(([name, encoding, codec, input, description, render]) => {
    let decoded = null
    let error = null
    try {
      decoded = render(c.decode(codec, input))
    } catch (err) {
      error = err.message
    }
    return { name, encoding, description, input: hex(input), decodes: error === null, decoded, error }
  })
}

/** Whole datagrams as dht-rpc writes them: requests from an ephemeral client, replies from NODE. */
function frames(announceValue, mutable, lookupValue) {
  const secrets = [b4a.alloc(32, 1), b4a.alloc(32, 2)]
  const client = { id: null, host: '10.1.2.3', port: 40000 }
  const to = { id: null, host: NODE.host, port: NODE.port }
  const list = []

  const request = (name, tid, token, command, target, value, description) => {
    const it = stubIO({ tableId: nodeId(NODE.host, NODE.port), secrets })
    it._tid = tid
    const req = it.createRequest(to, token, false, command, target, value, null, 0)
    list.push({
      name,
      kind: 'request',
      description,
      tid,
      to: addrJson(to),
      token: hex(token),
      command,
      target: hex(target),
      value: hex(value),
      frame: hex(req._encodeRequest(token, value, to, null))
    })
  }
  const response = (name, tid, error, value, token, closerNodes, description) => {
    const it = stubIO({ tableId: nodeId(NODE.host, NODE.port), persistent: true, secrets })
    it._tid = tid
    const req = it.createRequest(client, null, false, 0, null, null, null, 0)
    req.from = client
    req._sendReply(error, value, token, closerNodes, client, it.serverSocket)
    list.push({
      name,
      kind: 'response',
      description,
      tid,
      to: addrJson(client),
      responder_id: hex(nodeId(NODE.host, NODE.port)),
      responder_address: addrJson(NODE),
      token_included: !!token,
      token: token ? hex(it.token(client, 1)) : null,
      token_secret_hex: hex(it._secrets[1]),
      token_formula: 'keyed BLAKE2b-256: crypto_generichash(out32, message = utf8(to.host), key = secret)',
      error,
      value: hex(value),
      frame: hex(it.serverSocket.sent[0].buffer)
    })
  }

  const mutableTarget = unhex(mutable.target)
  request('frame_lookup_request', 1, null, COMMANDS.LOOKUP, TOPIC, null, 'LOOKUP query request (no token, no value)')
  request('frame_announce_request', 2, TOKEN, COMMANDS.ANNOUNCE, TOPIC, announceValue, 'ANNOUNCE commit request: token from the LOOKUP reply, value = signed announce message')
  request('frame_mutable_get_request', 3, null, COMMANDS.MUTABLE_GET, mutableTarget, c.encode(c.uint, 0), 'MUTABLE_GET query request: value = uint seq (0)')
  request('frame_mutable_put_request', 4, TOKEN, COMMANDS.MUTABLE_PUT, mutableTarget, unhex(mutable.mutable_put_request), 'MUTABLE_PUT commit request')
  request('frame_immutable_put_request', 5, TOKEN, COMMANDS.IMMUTABLE_PUT, HyperDHT.hash(utf8('hello world')), utf8('hello world'), 'IMMUTABLE_PUT commit request: value is the raw bytes')
  request('frame_find_peer_request', 6, null, COMMANDS.FIND_PEER, HyperDHT.hash(KEY_PAIRS[0].publicKey), null, 'FIND_PEER query request for hash(publicKey)')
  response('frame_lookup_response', 1, 0, lookupValue, true, false, 'LOOKUP reply from a persistent node: id + token + value (closer nodes omitted here because the table is empty)')
  response('frame_announce_ok_response', 2, 0, null, false, false, 'ANNOUNCE / UNANNOUNCE success reply: reply(null, {token:false, closerNodes:false}) -> only id')
  response('frame_mutable_put_seq_too_low', 4, ERROR.SEQ_TOO_LOW, null, false, true, 'MUTABLE_PUT rejected with SEQ_TOO_LOW (17): error field, no token (closer nodes would be included if known)')
  response('frame_mutable_get_response', 3, 0, unhex(mutable.mutable_get_response), true, true, 'MUTABLE_GET reply with the stored record')
  return list
}

// `new HyperDHT({ keyPair, seed })`: the node's defaultKeyPair (what servers listen on and
// connects use when given none). A node with no bootstrap nodes on 127.0.0.1, destroyed at once.
async function defaultKeyPairs() {
  const cases = [
    { name: 'seed_kp2', opts: { seed: unhex(SEEDS[2]) }, description: 'seed only: defaultKeyPair = createKeyPair(seed)' },
    { name: 'seed_kp3', opts: { seed: unhex(SEEDS[3]) }, description: 'seed only: defaultKeyPair = createKeyPair(seed)' },
    { name: 'key_pair_wins', opts: { keyPair: KEY_PAIRS[0], seed: unhex(SEEDS[1]) }, description: 'keyPair and seed: keyPair wins' }
  ]
  const list = []
  for (const { name, opts, description } of cases) {
    const dht = new HyperDHT({ ...opts, bootstrap: [], host: '127.0.0.1' })
    const kp = dht.defaultKeyPair
    await dht.destroy()
    list.push({
      name,
      description: 'new HyperDHT({ ' + Object.keys(opts).join(', ') + ' }).defaultKeyPair; ' + description,
      seed: opts.seed ? hex(opts.seed) : null,
      keyPairSeed: opts.keyPair ? SEEDS[0] : null,
      publicKey: hex(kp.publicKey),
      secretKey: hex(kp.secretKey)
    })
  }
  return list
}

// The `err.code` and `err.message` of every error factory in hyperdht's and dht-rpc's
// `lib/errors.js`, called with its default message.
function errorCodes() {
  const list = (pkg, errors) =>
    Object.getOwnPropertyNames(errors)
      .filter((n) => typeof errors[n] === 'function')
      .map((n) => {
        const e = errors[n]()
        return { package: pkg, code: e.code, message: e.message }
      })
  return {
    description: "Every error factory of lib/errors.js, called with its default message: err.code and err.message ('CODE: message')",
    hyperdht: list('hyperdht', ref('hyperdht/lib/errors')),
    dht_rpc: list('dht-rpc', ref('dht-rpc/lib/errors'))
  }
}

async function generate() {
  const out = { about: about(), constants: constants() }
  out.keypairs = SEEDS.map((seed, i) => ({
    name: 'kp' + i,
    description: 'HyperDHT.keyPair(seed): Ed25519 seed key pair (crypto_sign_seed_keypair); secretKey = seed || publicKey',
    seed,
    publicKey: hex(KEY_PAIRS[i].publicKey),
    secretKey: hex(KEY_PAIRS[i].secretKey)
  }))
  out.default_key_pairs = await defaultKeyPairs()
  out.error_codes = errorCodes()
  out.namespaces = namespaces()
  out.hashes = hashes()
  out.node_ids = nodeIds()
  out.peer_records = peerRecords()
  out.announce_messages = announceMessages()
  out.lookup_replies = lookupReplies()
  out.announce_signatures = announceSignatures()
  out.mutable = mutables()
  out.mutable_get_requests = [0, 1, 252, 253, 65535, 65536, 4294967295, 4294967296].map((seq) => ({
    description: 'MUTABLE_GET request value: compact uint of the minimum seq wanted (client default 0)',
    seq,
    encoded: hex(c.encode(c.uint, seq))
  }))
  out.immutable = [b4a.alloc(0), utf8('hello world'), b4a.alloc(1000, 0x7a)].map((value, i) => ({
    name: 'immutable_' + i,
    description: 'IMMUTABLE_PUT request value and IMMUTABLE_GET response value are the raw bytes (no inner encoding); target = hash(value)',
    value: hex(value),
    target: hex(HyperDHT.hash(value))
  }))
  const envelopes = routerEnvelopes()
  out.handshake_envelopes = envelopes.handshakes
  out.holepunch_envelopes = envelopes.holepunches
  out.plugin_requests = pluginRequests()
  out.decode_cases = decodeCases(out.mutable[0])
  out.frames = {
    description:
      'Informative full UDP frames built by dht-rpc ' + version('dht-rpc') + ' itself (framing is specified in the dht-rpc document). ' +
      'Requests are from an ephemeral client (no id). Responses are from a persistent node whose id is node_ids[0].id.',
    list: frames(unhex(out.announce_signatures[0].request_value), out.mutable[1], unhex(out.lookup_replies[0].encoded))
  }
  return out
}

module.exports = { file: FILE, generate }
