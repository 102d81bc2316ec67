'use strict'

// dht-rpc.json: the compact-encoding primitives, node ids, tokens, every message shape, the
// routing table, nat-sampler, XOR order, congestion window and health, all computed by calling
// dht-rpc 6.27.0 / compact-encoding 3.5.2 / kademlia-routing-table / nat-sampler themselves
// (deterministic), plus `captured`: the datagrams of a live local dht-rpc network (--live).

const { ref, b4a, c, hex, utf8, blake2b256, version, sleep, keptLive, generatorName } = require('./ref.js')

const IO = ref('dht-rpc/lib/io.js')
const peer = ref('dht-rpc/lib/peer.js')
const Query = ref('dht-rpc/lib/query.js')
const NetworkHealth = ref('dht-rpc/lib/health.js')
const Table = ref('kademlia-routing-table')
const NatSampler = ref('nat-sampler')

const FILE = 'dht-rpc.json'
const INTERNAL = ['PING', 'PING_NAT', 'FIND_NODE', 'DOWN_HINT', 'DELAYED_PING']
const LIVE_KEYS = ['captured', 'captured_meta']

// ---------------------------------------------------------------------------------------------
// A dht-rpc IO with sockets that only record what they are asked to send

function recordingSocket(port) {
  return {
    sent: [],
    address: () => ({ host: '127.0.0.1', family: 4, port }),
    trySend(buffer, port, host, ttl) {
      this.sent.push({ buffer: b4a.from(buffer), port, host, ttl })
    }
  }
}

const noUdx = { watchNetworkInterfaces: () => ({ on() {}, destroy() {} }) }

/** A real IO; persistent = not ephemeral and not firewalled (it then answers from its server socket). */
function io({ tableId = b4a.alloc(32, 0xaa), persistent = false, secrets = null } = {}) {
  const it = new IO(new Table(tableId), noUdx, { firewalled: !persistent, onrequest() {} })
  it.serverSocket = recordingSocket(49737)
  it.clientSocket = recordingSocket(40000)
  it.ephemeral = !persistent
  if (secrets) it._secrets = secrets.map((s) => b4a.from(s))
  return it
}

// dht-rpc does not export its Request class; a request object's constructor is it.
const Request = io().createRequest({ id: null, host: '127.0.0.1', port: 1 }, null, true, 0, null, null, null, 0).constructor

/** dht-rpc's own request decoder (id checked against the UDP source), as plain JSON. */
function decodeRequest(buf, udpFrom) {
  if (buf.byteLength < 2 || buf[0] !== 0x03) return null
  const it = io()
  const req = Request.decode(it, it.serverSocket, { id: null, host: udpFrom.host, port: udpFrom.port }, { start: 1, end: buf.byteLength, buffer: buf })
  if (req === null) return null
  return {
    type: 'request',
    tid: req.tid,
    to: { host: req.to.host, port: req.to.port },
    id: hex(req.from.id),
    token: hex(req.token),
    internal: req.internal,
    command: req.command,
    target: hex(req.target),
    value: hex(req.value)
  }
}

/** dht-rpc's reply decoder, reached the way a reply is: IO.onmessage with a request in flight. */
function decodeResponse(buf, udpFrom) {
  if (buf.byteLength < 2 || buf[0] !== 0x13) return null
  let tid
  try {
    const state = { start: 1, end: buf.byteLength, buffer: buf }
    c.uint.decode(state)
    tid = c.uint16.decode(state)
  } catch {
    return null
  }
  const it = io()
  it._tid = tid
  const req = it.createRequest({ id: null, host: udpFrom.host, port: udpFrom.port }, null, true, 0, null, null, null, 0)
  let res = null
  req.onresponse = (m) => {
    res = m
  }
  it.onmessage(it.clientSocket, buf, { host: udpFrom.host, port: udpFrom.port })
  if (res === null) return null
  return {
    type: 'response',
    tid: res.tid,
    to: { host: res.to.host, port: res.to.port },
    id: hex(res.from.id),
    token: hex(res.token),
    closer_nodes: res.closerNodes === null ? null : res.closerNodes.map((n) => ({ host: n.host, port: n.port })),
    error: res.error,
    value: hex(res.value)
  }
}

function decodeDatagram(buf, udpFrom) {
  if (buf[0] === 0x03) return decodeRequest(buf, udpFrom)
  if (buf[0] === 0x13) return decodeResponse(buf, udpFrom)
  return null
}

/** Byte segments of a datagram, read field by field independently of dht-rpc's decoder. */
function layout(buf) {
  const segments = []
  const st = { start: 0, end: buf.byteLength, buffer: buf }
  const read = (field, fn) => {
    const offset = st.start
    const value = fn()
    segments.push({ offset, length: st.start - offset, field, hex: hex(buf.subarray(offset, st.start)), value })
    return value
  }
  const type = read('type_version', () => {
    const t = c.uint8.decode(st)
    if (t === 0x03) return 'REQUEST (type 0, version 3)'
    if (t === 0x13) return 'RESPONSE (type 1, version 3)'
    return 'unknown'
  })
  if (type === 'unknown') return segments
  const request = buf[0] === 0x03
  const flagNames = request ? ['id', 'token', 'internal', 'target', 'value'] : ['id', 'token', 'closerNodes', 'error', 'value']
  let flags = 0
  read('flags', () => {
    flags = c.uint.decode(st)
    return flagNames.filter((_, bit) => flags & (1 << bit)).join('|') || '(none)'
  })
  const address = () => {
    const a = c.ipv4Address.decode(st)
    return a.host + ':' + a.port
  }
  read('tid', () => c.uint16.decode(st))
  read('to', address)
  if (flags & 1) read('id', () => hex(c.fixed32.decode(st)))
  if (flags & 2) read('token', () => hex(c.fixed32.decode(st)))
  if (request) {
    read('command', () => {
      const cmd = c.uint.decode(st)
      if (!(flags & 4)) return 'user command ' + cmd
      return INTERNAL[cmd] || 'internal ' + cmd
    })
    if (flags & 8) read('target', () => hex(c.fixed32.decode(st)))
  } else {
    if (flags & 4) {
      const count = read('closerNodes.count', () => c.uint.decode(st))
      for (let i = 0; i < count; i++) read('closerNodes[' + i + ']', address)
    }
    if (flags & 8) read('error', () => c.uint.decode(st))
  }
  if (flags & 16) {
    const len = read('value.length', () => c.uint.decode(st))
    read('value', () => {
      st.start += len
      return hex(buf.subarray(st.start - len, st.start))
    })
  }
  if (st.start < buf.byteLength) {
    read('trailing (ignored)', () => {
      st.start = buf.byteLength
      return null
    })
  }
  return segments
}

// ---------------------------------------------------------------------------------------------
// Deterministic sections

function primitives() {
  const list = []
  const add = (name, codecName, codec, fields, value) => list.push({ name, codec: codecName, fields, hex: hex(c.encode(codec, value)) })
  const scalar = (codecName, codec, values) => {
    for (const v of values) add(codecName + '_' + v, codecName, codec, { value: v }, v)
  }
  scalar('uint', c.uint, [0, 1, 0x7f, 0x80, 0xfb, 0xfc, 0xfd, 0xfe, 0xff, 0x100, 0x1234, 0xfffe, 0xffff, 0x10000, 0x123456, 0xffffffff, 0x100000000, 0x123456789a, Number.MAX_SAFE_INTEGER])
  scalar('uint16', c.uint16, [0, 1, 0xff, 0x100, 0x1234, 49737, 0xffff])
  scalar('uint32', c.uint32, [0, 1000, 10000, 0x12345678, 0xffffffff])
  scalar('uint64', c.uint64, [0, 0x0102030405, Number.MAX_SAFE_INTEGER])
  scalar('bool', c.bool, [false, true])
  for (const len of [0, 1, 3, 252, 253, 300]) {
    const bytes = b4a.alloc(len)
    for (let i = 0; i < len; i++) bytes[i] = i & 0xff
    add('buffer_len' + len, 'buffer', c.buffer, { value: hex(bytes) }, bytes)
  }
  for (const s of ['', 'hello', 'h\u00e9llo \u2603']) add('string_' + JSON.stringify(s), 'string', c.string, { value: s }, s)
  const f32 = blake2b256(['fixed32 example'])
  add('fixed32_example', 'fixed32', c.fixed32, { value: hex(f32) }, f32)
  const hosts = [['127.0.0.1', 49737], ['0.0.0.0', 0], ['255.255.255.255', 65535], ['88.99.3.86', 49737], ['10.0.0.1', 1], ['192.168.1.100', 256]]
  for (const [host, port] of hosts) add('ipv4Address_' + host + ':' + port, 'ipv4Address', peer.ipv4, { host, port }, { host, port })
  const bootstrapLike = [{ host: '88.99.3.86', port: 49737 }, { host: '142.93.90.113', port: 49737 }, { host: '138.68.147.8', port: 49737 }]
  for (const arr of [[], [{ host: '127.0.0.1', port: 49737 }], bootstrapLike]) {
    add('ipv4Array_len' + arr.length, 'ipv4Array', peer.ipv4Array, { value: arr }, arr)
  }
  add('array_uint_mixed', 'array<uint>', c.array(c.uint), { value: [0, 252, 253, 65536] }, [0, 252, 253, 65536])
  return list
}

function primitiveDecodeCases() {
  const cases = [
    ['uint_noncanonical_fd_0005', 'uint', c.uint, 'fd0500'],
    ['uint_noncanonical_fe_00000005', 'uint', c.uint, 'fe05000000'],
    ['uint_noncanonical_ff_8bytes_5', 'uint', c.uint, 'ff0500000000000000'],
    ['uint_truncated_fd', 'uint', c.uint, 'fd05'],
    ['uint_empty', 'uint', c.uint, ''],
    ['uint64_above_2pow53', 'uint', c.uint, 'ff0000000000002000'],
    ['buffer_len_exceeds_input', 'buffer', c.buffer, '05010203'],
    ['buffer_len0', 'buffer', c.buffer, '00'],
    ['fixed32_short', 'fixed32', c.fixed32, '00'.repeat(31)],
    ['ipv4Address_short', 'ipv4Address', c.ipv4Address, '7f000001ff'],
    ['uint16_le', 'uint16', c.uint16, '4922'],
    ['bool_2_is_false', 'bool', c.bool, '02']
  ]
  return cases.map(([name, codecName, codec, h]) => {
    let result
    try {
      const st = { start: 0, end: h.length / 2, buffer: b4a.from(h, 'hex') }
      const v = codec.decode(st)
      result = { ok: true, value: b4a.isBuffer(v) ? hex(v) : v, consumed: st.start }
    } catch (err) {
      result = { ok: false, error: err.message }
    }
    return { name, codec: codecName, hex: h, result }
  })
}

function nodeIds() {
  const addrs = [['127.0.0.1', 49737], ['127.0.0.1', 49738], ['88.99.3.86', 49737], ['142.93.90.113', 49737], ['138.68.147.8', 49737], ['10.0.0.1', 1], ['192.168.1.100', 65535], ['0.0.0.0', 0]]
  return addrs.map(([host, port]) => ({
    name: 'node_id_' + host + ':' + port,
    fields: { host, port },
    addr_hex: hex(c.encode(peer.ipv4, { host, port })),
    id_hex: hex(peer.id(host, port))
  }))
}

const SECRETS = [blake2b256(['dht-rpc vector secret 0']), blake2b256(['dht-rpc vector secret 1'])]

function tokens() {
  return ['127.0.0.1', '88.99.3.86', '10.0.0.2'].map((host) => ({
    name: 'token_' + host,
    fields: { host, secret_hex: hex(SECRETS[1]) },
    token_hex: hex(io({ secrets: SECRETS }).token({ host, port: 1234 }, 1)),
    note: 'token = BLAKE2b-256(message = ASCII host string, key = secret). Port is not part of the token.'
  }))
}

function tokenRotation() {
  const it = io({ secrets: SECRETS })
  const addr = { host: '10.0.0.2', port: 5000 }
  const first = it.token(addr, 1)
  const state = (drains) => ({
    drains,
    secrets: it._secrets.map(hex),
    current_token: hex(it.token(addr, 1)),
    previous_token: hex(it.token(addr, 0))
  })
  const steps = [state(0)]
  for (let drains = 1; drains <= 20; drains++) {
    it._drain()
    if (drains !== 9 && drains !== 10 && drains !== 20) continue
    const step = state(drains)
    step.original_token_still_valid = b4a.equals(first, it.token(addr, 1)) || b4a.equals(first, it.token(addr, 0))
    steps.push(step)
  }
  return {
    name: 'token_rotation',
    fields: { host: addr.host, initial_secrets: SECRETS.map(hex), drain_interval_ms: 750, drains_per_rotation: 10 },
    steps,
    note: 'secrets[1] signs, secrets[0] or secrets[1] validates. Rotation: new[0] = old[1]; new[1] = BLAKE2b-256(old[0]) (unkeyed).'
  }
}

const TARGET = blake2b256(['dht-rpc vector target'])
const EPHEMERAL_TABLE_ID = blake2b256(['some random ephemeral table id'])
const REQUESTER = { host: '10.0.0.2', port: 5000 }
const RESPONDER = { host: '10.0.0.3', port: 49737 }

/** The bytes dht-rpc's request encoder writes for `spec`, from a sender at REQUESTER. */
function encodeRequest(spec) {
  const it = io({ tableId: spec.persistent ? peer.id(REQUESTER.host, REQUESTER.port) : EPHEMERAL_TABLE_ID, persistent: spec.persistent })
  it._tid = spec.tid
  const req = it.createRequest({ id: null, ...RESPONDER }, spec.token || null, spec.internal, spec.command, spec.target || null, spec.value || null, null, 0)
  return req._encodeRequest(req.token, req.value, req.to, req.socket)
}

function requestVector(name, spec, note) {
  const buf = encodeRequest(spec)
  return {
    name,
    kind: 'request',
    note,
    udp_from: REQUESTER,
    udp_to: RESPONDER,
    sender_persistent: !!spec.persistent,
    fields: {
      tid: spec.tid,
      to: RESPONDER,
      id: spec.persistent ? hex(peer.id(REQUESTER.host, REQUESTER.port)) : null,
      token: hex(spec.token),
      internal: spec.internal,
      command: spec.command,
      target: hex(spec.target),
      value: hex(spec.value)
    },
    flags: buf[1],
    hex: hex(buf),
    layout: layout(buf)
  }
}

/** What RESPONDER sends when `act` answers the request `spec` (decoded by dht-rpc as it arrives). */
function responseVector(name, { persistent, closer = [], request, act, note }) {
  const it = io({ tableId: persistent ? peer.id(RESPONDER.host, RESPONDER.port) : EPHEMERAL_TABLE_ID, persistent, secrets: SECRETS })
  for (const n of closer) it.table.add({ id: peer.id(n.host, n.port), host: n.host, port: n.port })
  const reqBuf = encodeRequest(request)
  const socket = it.firewalled ? it.clientSocket : it.serverSocket
  const req = Request.decode(it, socket, { id: null, ...REQUESTER }, { start: 1, end: reqBuf.byteLength, buffer: reqBuf })
  act(req)
  const sent = socket.sent[0]
  const dec = decodeResponse(sent.buffer, RESPONDER)
  return {
    name,
    kind: 'response',
    note,
    udp_from: RESPONDER,
    udp_to: { host: sent.host, port: sent.port },
    sender_persistent: !!persistent,
    in_reply_to_hex: hex(reqBuf),
    fields: { tid: dec.tid, to: dec.to, id: dec.id, token: dec.token, closer_nodes: dec.closer_nodes, error: dec.error, value: dec.value },
    flags: sent.buffer[1],
    hex: hex(sent.buffer),
    layout: layout(sent.buffer)
  }
}

function messages() {
  const token = io({ secrets: SECRETS }).token(REQUESTER, 1)
  const list = [
    requestVector('req_ping_ephemeral', { tid: 0, internal: true, command: 0 }, 'minimal request: PING from an ephemeral node'),
    requestVector('req_ping_persistent', { persistent: true, tid: 1, internal: true, command: 0 }, 'PING from a persistent node: carries id = BLAKE2b-256(ipv4(10.0.0.2:5000))'),
    requestVector('req_ping_with_value', { tid: 0x1234, internal: true, command: 0, value: b4a.alloc(4) }, 'dht.ping(to, { size: 4 }) => value of 4 zero bytes'),
    requestVector('req_ping_nat', { tid: 65535, internal: true, command: 1, value: c.encode(c.uint16, 49737) }, 'PING_NAT asking for the reply to port 49737 (uint16 LE)'),
    requestVector('req_find_node', { tid: 7, internal: true, command: 2, target: TARGET }, 'FIND_NODE from an ephemeral node'),
    requestVector('req_find_node_persistent', { persistent: true, tid: 8, internal: true, command: 2, target: TARGET }, 'FIND_NODE from a persistent node'),
    requestVector('req_down_hint', { tid: 9, internal: true, command: 3, value: c.encode(peer.ipv4, { host: '10.0.0.99', port: 6000 }) }, 'DOWN_HINT: value = ipv4Address of the node that did not answer'),
    requestVector('req_delayed_ping', { tid: 10, internal: true, command: 4, value: c.encode(c.uint32, 1500) }, 'DELAYED_PING with delay 1500 ms (uint32 LE)'),
    requestVector('req_user_command_token_target_value', { tid: 11, token, internal: false, command: 6, target: TARGET, value: utf8('hello') }, 'user (non-internal) command 6 with round-trip token (as issued by B using token vector secret for host 10.0.0.2), target and value'),
    requestVector('req_user_command_all_fields_persistent', { persistent: true, tid: 12, token, internal: false, command: 300, target: TARGET, value: b4a.alloc(300, 0x61) }, 'all flags set; command 300 needs a 3-byte varint; value length 300 needs a 3-byte varint'),
    requestVector('req_user_command_empty_value', { tid: 13, internal: false, command: 16, value: b4a.alloc(0) }, 'an EMPTY (non-null) value is still flagged (bit 4) and encoded as length 0')
  ]

  const closer3 = [{ host: '10.0.1.1', port: 49737 }, { host: '10.0.1.2', port: 49737 }, { host: '10.0.1.3', port: 40001 }]
  const closer25 = Array.from({ length: 25 }, (_, i) => ({ host: '10.2.' + i + '.' + (i * 3 + 1), port: 49737 + i }))
  const ping = { tid: 0x0102, internal: true, command: 0 }
  const findNode = { tid: 0x0203, internal: true, command: 2, target: TARGET }
  const user = { tid: 0x0304, internal: false, command: 6, target: TARGET, value: utf8('q') }
  const plain = (r) => r.sendReply(0, null, false, false)
  const withCloser = (r) => r.sendReply(0, null, false, true)

  list.push(
    responseVector('res_ping_ephemeral', { persistent: false, request: ping, act: plain, note: 'PING reply from an ephemeral responder: only tid and to (= requester address as seen)' }),
    responseVector('res_ping_persistent', { persistent: true, request: ping, act: plain, note: 'PING reply from a persistent responder (on its server socket): carries its id' }),
    responseVector('res_ping_nat', {
      persistent: true,
      request: { tid: 0x0405, internal: true, command: 1, value: c.encode(c.uint16, 40404) },
      act: (r) => {
        r.from.port = c.decode(c.uint16, r.value)
        plain(r)
      },
      note: 'PING_NAT reply: sent to (requester host, port from the value); the to field carries that port too'
    }),
    responseVector('res_find_node_3_closer', { persistent: true, closer: closer3, request: findNode, act: withCloser, note: 'FIND_NODE reply with 3 closer nodes (responder table order), no token' }),
    responseVector('res_find_node_20_closer', { persistent: true, closer: closer25, request: findNode, act: withCloser, note: 'FIND_NODE reply with k=20 closer nodes taken from a 25-node table (table.closest order)' }),
    responseVector('res_find_node_empty_table', { persistent: true, request: findNode, act: withCloser, note: 'FIND_NODE reply when the table is empty: closerNodes flag NOT set (an empty list is never encoded)' }),
    responseVector('res_user_reply_token_value_closer', { persistent: true, closer: closer3, request: user, act: (r) => r.reply(utf8('world')), note: 'req.reply(value) defaults: token + closer nodes (target present) + value' }),
    responseVector('res_user_reply_no_token_no_closer', { persistent: false, closer: closer3, request: user, act: (r) => r.reply(utf8('world'), { token: false, closerNodes: false }), note: 'req.reply(value, { token: false, closerNodes: false }) from an ephemeral responder' }),
    responseVector('res_user_reply_empty_value', { persistent: false, request: user, act: (r) => r.reply(b4a.alloc(0), { token: false }), note: 'empty non-null value => value flag set + length 0' }),
    responseVector('res_error_unknown_command', { persistent: true, closer: closer3, request: user, act: (r) => r.sendReply(1, null, false, r.target !== null), note: 'ERROR_UNKNOWN_COMMAND (1) with closer nodes because the request had a target' }),
    responseVector('res_error_invalid_token', { persistent: true, closer: closer3, request: user, act: (r) => r.error(2, { token: true }), note: 'ERROR_INVALID_TOKEN (2) as sent by io.onmessage: fresh token + closer nodes' }),
    responseVector('res_error_custom_300', { persistent: false, request: ping, act: (r) => r.error(300), note: 'req.error(300): error code is a uint varint (3 bytes here); default error() sends no token' })
  )
  return list
}

function messageDecodeCases(msgs) {
  const hexOf = (name) => msgs.find((m) => m.name === name).hex
  const persistentPing = hexOf('req_ping_persistent')
  const ping = hexOf('req_ping_ephemeral')
  const find3 = hexOf('res_find_node_3_closer')
  const cases = [
    ['decode_id_mismatch_ignored', persistentPing, { host: '10.0.0.2', port: 5001 }, 'id present but != hash(udp source): decoder keeps the message, id becomes null'],
    ['decode_id_valid', persistentPing, { host: '10.0.0.2', port: 5000 }, 'id matches hash(udp source)'],
    ['decode_trailing_bytes_ignored', ping + 'deadbeef', REQUESTER, 'bytes after the last field are ignored'],
    ['decode_truncated_request', ping.slice(0, 16), REQUESTER, 'truncated => message dropped (null)'],
    ['decode_unknown_flag_bits_ignored', '03e4' + ping.slice(4), REQUESTER, 'flags 0xe4: bits 5..7 are not used and are ignored (bit 2 = internal still applies)'],
    ['decode_noncanonical_flags_varint', '03fd0400' + ping.slice(4), REQUESTER, 'flags (0x04) written as a 3-byte varint is accepted'],
    ['decode_wrong_version', '02' + ping.slice(2), REQUESTER, 'type/version byte other than 0x03/0x13 => ignored (null)'],
    ['decode_response_truncated_closer', find3.slice(0, find3.length - 4), RESPONDER, 'closer node list shorter than its count => dropped']
  ]
  return cases.map(([name, h, udpFrom, note]) => ({ name, hex: h, udp_from: udpFrom, note, result: decodeDatagram(b4a.from(h, 'hex'), udpFrom) }))
}

function routingTable() {
  const own = { host: '10.0.0.1', port: 49737 }
  const table = new Table(peer.id(own.host, own.port))
  const adds = []
  for (let i = 0; i < 120; i++) {
    const node = { host: '10.1.' + (i >> 4) + '.' + ((i * 13) & 0xff), port: 49737 + (i % 7) }
    node.id = peer.id(node.host, node.port)
    const accepted = table.add(node)
    adds.push({ host: node.host, port: node.port, id: hex(node.id), row: table._diff(node.id), accepted })
  }
  const targets = [
    ['own_id', table.id],
    ['target_a', blake2b256(['routing target a'])],
    ['target_b', blake2b256(['routing target b'])],
    ['existing_node', b4a.from(adds[5].id, 'hex')]
  ]
  const closest = []
  for (const [name, target] of targets) {
    for (const k of [20, 5]) {
      closest.push({
        name: 'closest_' + name + '_k' + k,
        target: hex(target),
        k,
        target_row: table._diff(target),
        result: table.closest(target, k).map((n) => ({ host: n.host, port: n.port }))
      })
    }
  }
  return {
    name: 'routing_table_scenario',
    own: { ...own, id: hex(table.id) },
    k: table.k,
    adds,
    size_after: table.size,
    closest,
    note: 'row = number of leading bits shared with own id; rows hold <= k nodes sorted by id ascending; add to a full row is rejected (returns false, emits "full").'
  }
}

function natSampler() {
  const run = (name, samples, note) => {
    const sampler = new NatSampler()
    const steps = samples.map(([host, port]) => {
      const hits = sampler.add(host, port)
      return { add: { host, port }, returned_hits: hits, host: sampler.host, port: sampler.port, size: sampler.size, threshold: sampler._threshold }
    })
    return { name, note, steps }
  }
  const same = (n, host, port) => Array.from({ length: n }, () => [host, port])
  return [
    run('nat_consistent', same(6, '1.2.3.4', 5000), 'same host:port every time'),
    run('nat_single_sample', same(1, '1.2.3.4', 5000), 'one sample is enough while size < 4 (threshold = size)'),
    run('nat_random_ports', [0, 1, 2, 3, 4, 5].map((i) => ['1.2.3.4', 5000 + i]), 'same host, different ports: host known, port 0 (randomized NAT)'),
    run('nat_mixed_hosts', [['1.2.3.4', 5000], ['5.6.7.8', 5000], ['1.2.3.4', 5000], ['1.2.3.4', 5000], ['1.2.3.4', 5000], ['5.6.7.8', 5000]], 'inconsistent hosts'),
    run('nat_one_outlier', [...same(4, '1.2.3.4', 5000), ['1.2.3.4', 6000], ...same(4, '1.2.3.4', 5000)], 'an outlier port among consistent samples'),
    run(
      'nat_ring_wrap',
      [...same(20, '1.2.3.4', 5000), ...Array.from({ length: 20 }, (_, i) => ['9.9.9.9', 7000 + (i % 2)])],
      'more than 16 samples: ring buffer of 32 entries (16 host:port + 16 host:0), threshold caps at 13'
    )
  ]
}

function xorOrder() {
  const target = blake2b256(['xor order target'])
  const ids = Array.from({ length: 10 }, (_, i) => blake2b256(['xor order id ' + i]))
  ids.push(b4a.from(target))
  const sorted = ids.slice().sort((a, b) => Query.prototype._compare.call({ target }, a, b))
  return { name: 'xor_order', target: hex(target), ids: ids.map(hex), sorted: sorted.map(hex), note: 'ascending XOR distance to target (Query._compare)' }
}

function congestion() {
  const CongestionWindow = io().congestion.constructor
  const w = new CongestionWindow(80)
  const script = [['send', 79], ['send', 1], ['recv', 1], ['send', 1], ['drain', 1], ['send', 79], ['send', 1], ['drain', 1], ['recv', 5], ['drain', 1], ['drain', 1], ['drain', 1], ['recv', 1]]
  const ops = script.map(([op, times]) => {
    for (let i = 0; i < times; i++) w[op]()
    return { op, times, is_full: w.isFull(), total: w._total, slot: w._i, window: w._window.slice() }
  })
  return { name: 'congestion_window_trace', max_window: 80, note: 'isFull = total >= 160 || window[slot] >= 80; recv only decrements the CURRENT slot (if > 0); drain advances slot and forgets that slot', ops }
}

function health() {
  const calls = []
  const dht = {
    stats: { requests: { responses: 0, timeouts: 0 } },
    _online: () => calls.push('online'),
    _degraded: () => calls.push('degraded'),
    _offline: () => calls.push('offline')
  }
  const h = new NetworkHealth(dht)
  const deltas = [[10, 0], [10, 0], [10, 0], [10, 0], [10, 0], [2, 10], [2, 10], [2, 10], [2, 10], [0, 10], [0, 10], [0, 10], [1, 1], [10, 0], [10, 0], [10, 0], [10, 0], [10, 0]]
  const ticks = deltas.map(([responses, timeouts]) => {
    dht.stats.requests.responses += responses
    dht.stats.requests.timeouts += timeouts
    calls.length = 0
    h.update()
    return { delta_responses: responses, delta_timeouts: timeouts, cold: h.cold, idle: h.idle, online: h.online, degraded: h.degraded, callbacks: calls.slice() }
  })
  return { name: 'health_trace', note: 'one update() per 5 s tick; callbacks = which of dht._online/_degraded/_offline was invoked (the DHT only emits network-update when its own state flips)', ticks }
}

// ---------------------------------------------------------------------------------------------
// Live capture: every datagram of a small dht-rpc network on 127.0.0.1

const HOST = '127.0.0.1'

/** 49737 (the reference's default port) when it is free, else any free UDP port. */
async function bootstrapPort() {
  const dgram = require('dgram')
  const tryBind = (port) =>
    new Promise((resolve) => {
      const s = dgram.createSocket('udp4')
      s.once('error', () => s.close(() => resolve(0)))
      s.bind(port, HOST, () => {
        const bound = s.address().port
        s.close(() => resolve(bound))
      })
    })
  return (await tryBind(49737)) || tryBind(0)
}

async function capture() {
  const DHT = ref('dht-rpc')
  const UDXSocket = ref('udx-native/lib/socket.js')

  const sent = []
  const roles = new Map()
  let phase = 'init'
  let phaseStart = Date.now()
  const enter = (name) => {
    phase = name
    phaseStart = Date.now()
  }
  const name = (label, node) => {
    roles.set(node.io.serverSocket.address().port, label + '.server')
    roles.set(node.io.clientSocket.address().port, label + '.client')
  }

  // Every datagram any node sends goes through udx-native's trySend: log it on the way out.
  const trySend = UDXSocket.prototype.trySend
  UDXSocket.prototype.trySend = function (buffer, port, host, ttl) {
    let from = 0
    try {
      from = this.address().port
    } catch {}
    sent.push({ phase, t_ms: Date.now() - phaseStart, from: { host: HOST, port: from }, to: { host, port }, buffer: b4a.from(buffer) })
    return trySend.call(this, buffer, port, host, ttl)
  }

  // Command 16 stores (with a token) or returns (without) a value; anything else is unknown.
  const serveValues = (node) => {
    const values = new Map()
    node.on('request', (req) => {
      if (req.command !== 16) return req.error(DHT.ERROR_UNKNOWN_COMMAND)
      if (req.token) {
        values.set(hex(req.target), req.value)
        return req.reply(null)
      }
      req.reply(values.get(hex(req.target)) || null)
    })
  }
  const persistentNode = async (label) => {
    const node = new DHT({ bootstrap, host: HOST, ephemeral: false })
    await node.io.bind()
    name(label, node)
    await node.fullyBootstrapped()
    return node
  }

  const port = await bootstrapPort()
  const bootstrap = [{ host: HOST, port }]
  enter('bootstrapper_start')
  const B = DHT.bootstrapper(port, HOST, { host: HOST })
  await B.fullyBootstrapped()
  name('B', B)

  enter('persistent_join_P1')
  const P1 = await persistentNode('P1')
  enter('persistent_join_P2')
  const P2 = await persistentNode('P2')
  await sleep(200)
  for (const node of [B, P1, P2]) serveValues(node)

  enter('ephemeral_join_E')
  const E = new DHT({ bootstrap, host: HOST }) // the default: adaptive, starts ephemeral and firewalled
  await E.io.bind()
  name('E', E)
  await E.fullyBootstrapped()
  await sleep(300) // late PING_NAT replies

  enter('ping_E_to_P1')
  await E.ping({ host: HOST, port: P1.address().port })
  await sleep(50)

  enter('find_node_E')
  let findNodeReplies = 0
  for await (const reply of E.findNode(blake2b256(['captured find_node target']))) {
    void reply
    findNodeReplies++
  }
  await sleep(50)

  enter('user_query_commit_E')
  const key = blake2b256(['captured user query key'])
  await E.query({ target: key, command: 16, value: utf8('captured value') }, { commit: true }).finished()
  await sleep(50)

  enter('invalid_token_E_to_P1')
  try {
    // resolves with the INVALID_TOKEN reply (error 2)
    await E.request({ token: b4a.alloc(32, 7), command: 16, target: key, value: utf8('x') }, { host: HOST, port: P1.address().port })
  } catch {}
  await sleep(50)

  enter('unknown_command_E_to_P2')
  await E.request({ command: 99, target: key }, { host: HOST, port: P2.address().port })
  await sleep(50)

  // D joins and dies; E's lookup of D times out on it and sends a DOWN_HINT.
  enter('persistent_join_D')
  const D = await persistentNode('D')
  const deadId = D.id
  await sleep(200)
  await D.destroy()

  enter('down_hint_E_lookup_dead_D')
  for await (const reply of E.findNode(deadId)) void reply
  await sleep(5000) // the hinted node re-pings D until it gives up (4 sends, 1 s apart)

  UDXSocket.prototype.trySend = trySend
  for (const node of [E, P2, P1, B]) await node.destroy()

  const perPhase = new Map()
  const captured = sent.map((entry) => {
    const decoded = decodeDatagram(entry.buffer, entry.from)
    let label = 'unknown_raw'
    if (decoded && decoded.type === 'request') {
      label = 'req_' + (decoded.internal ? INTERNAL[decoded.command] || 'INTERNAL_' + decoded.command : 'USER_' + decoded.command)
    } else if (decoded && decoded.type === 'response') {
      label = 'res_' + (decoded.error ? 'ERROR_' + decoded.error : 'OK')
    }
    const n = (perPhase.get(entry.phase) || 0) + 1
    perPhase.set(entry.phase, n)
    let fields = null
    if (decoded) {
      const { type, ...rest } = decoded
      fields = rest
    }
    const role = (port) => roles.get(port) || 'port' + port
    return {
      name: 'captured_' + entry.phase + '_' + String(n).padStart(3, '0') + '_' + label,
      phase: entry.phase,
      t_ms: entry.t_ms,
      direction: role(entry.from.port) + ' -> ' + role(entry.to.port),
      udp_from: entry.from,
      udp_to: entry.to,
      kind: decoded ? decoded.type : 'unparsed',
      fields,
      hex: hex(entry.buffer),
      layout: decoded ? layout(entry.buffer) : null
    }
  })

  const captured_meta = {
    description:
      'Real datagrams from a local testnet on 127.0.0.1 (dht-rpc ' + version('dht-rpc') + '). Bootstrapper B on port ' + port + ', persistent nodes P1/P2 (ephemeral:false), ' +
      'an adaptive (default) node E, and a persistent node D that is destroyed before E looks it up (to trigger DOWN_HINT). ' +
      'Ports other than ' + port + ' are random per run; tids are random; tokens depend on random secrets. t_ms is relative to the start of the phase.',
    roles: Object.fromEntries([...roles].map(([port, role]) => [role, port])),
    ids: { B: hex(B.table.id), P1: hex(P1.table.id), P2: hex(P2.table.id), D: hex(deadId), E_table_id_random: hex(E.table.id) },
    E_final_state: { ephemeral: E.ephemeral, firewalled: E.firewalled, host: E.host, port: E.port },
    find_node_replies_seen_by_E: findNodeReplies,
    phases: [...perPhase].map(([p, datagrams]) => ({ phase: p, datagrams }))
  }
  return { captured, captured_meta }
}

// ---------------------------------------------------------------------------------------------

async function generate({ live }) {
  const msgs = messages()
  const out = {
    meta: {
      description: 'dht-rpc wire vectors generated with the reference Node.js packages',
      packages: {
        'dht-rpc': version('dht-rpc'),
        'compact-encoding': version('compact-encoding'),
        'kademlia-routing-table': version('kademlia-routing-table'),
        'nat-sampler': version('nat-sampler')
      },
      generator: generatorName(__filename) + ' (captured* with --live)',
      conventions: {
        hex: 'lowercase hex, no separators',
        null: 'field absent on the wire',
        udp_from: 'UDP source address of the datagram (needed to validate an id)',
        layout: 'byte segments {offset, length, field, hex, value} produced by an independent annotator'
      },
      constants: {
        REQUEST_TYPE_BYTE: 0x03,
        RESPONSE_TYPE_BYTE: 0x13,
        commands: { PING: 0, PING_NAT: 1, FIND_NODE: 2, DOWN_HINT: 3, DELAYED_PING: 4 },
        errors: { OK: 0, UNKNOWN_COMMAND: 1, INVALID_TOKEN: 2 }
      }
    },
    primitives: primitives(),
    primitive_decode_cases: primitiveDecodeCases(),
    node_ids: nodeIds(),
    tokens: tokens(),
    token_rotation: tokenRotation(),
    token_secrets: { secret0: hex(SECRETS[0]), secret1: hex(SECRETS[1]), derivation: 'BLAKE2b-256 of the ASCII strings "dht-rpc vector secret 0" / "... 1"' },
    messages: msgs,
    message_decode_cases: messageDecodeCases(msgs),
    routing_table: routingTable(),
    nat_sampler: natSampler(),
    xor_order: xorOrder(),
    congestion: congestion(),
    health: health()
  }
  Object.assign(out, live ? await capture() : keptLive(FILE, LIVE_KEYS))
  return out
}

module.exports = { file: FILE, generate, stubIO: io, layout, decodeDatagram }
