'use strict'

// udx-hyperdht-capture.json: one real hyperdht 6.34.0 connection between two ephemeral nodes
// of a 3-node testnet on 127.0.0.1, captured with tcpdump on the loopback interface, so the UDX
// stream packets (sent by libudx's C code) are in it too. Live only; needs tcpdump and the
// right to capture on "lo" (root).

const fs = require('fs')
const os = require('os')
const path = require('path')
const { spawn, spawnSync } = require('child_process')
const { ref, b4a, sodium, hex, utf8, sleep, printable, generatorName } = require('./ref.js')

const FILE = 'udx-hyperdht-capture.json'

function kindOf(buf) {
  if (buf.length >= 20 && buf[0] === 0xff && buf[1] === 0x01) return 'udx'
  if (buf.length >= 1 && buf[0] === 0x03) return 'dht-rpc request (0x03)'
  if (buf.length >= 1 && buf[0] === 0x13) return 'dht-rpc response (0x13)'
  if (buf.length === 1 && buf[0] === 0x00) return 'holepunch probe (0x00)'
  return 'other'
}

function udxHeader(buf) {
  const type = buf[2]
  const names = [[1, 'DATA'], [2, 'END'], [4, 'SACK'], [8, 'MESSAGE'], [16, 'DESTROY'], [32, 'HEARTBEAT']].filter(([bit]) => type & bit).map(([, n]) => n)
  return {
    type,
    flags: names.length ? names : ['ACK(no flags)'],
    data_offset: buf[3],
    remote_id: buf.readUInt32LE(4),
    rwnd: buf.readUInt32LE(8),
    seq: buf.readUInt32LE(12),
    ack: buf.readUInt32LE(16),
    payload_len: buf.length - 20 - buf[3]
  }
}

/** The UDP/IPv4 datagrams of a classic pcap file (Ethernet or Linux cooked link layer). */
function readPcap(file) {
  const b = fs.readFileSync(file)
  const magic = b.readUInt32LE(0)
  const nanoseconds = magic === 0xa1b23c4d
  if (magic !== 0xa1b2c3d4 && !nanoseconds) throw new Error(file + ' is not a little-endian pcap file')
  const linkType = b.readUInt32LE(20)
  const out = []
  for (let off = 24; off + 16 <= b.length; ) {
    const sec = b.readUInt32LE(off)
    const frac = b.readUInt32LE(off + 4)
    const caplen = b.readUInt32LE(off + 8)
    const frame = b.subarray(off + 16, off + 16 + caplen)
    off += 16 + caplen
    let ip
    if (linkType === 1 && frame.readUInt16BE(12) === 0x0800) ip = 14
    else if (linkType === 113 && frame.readUInt16BE(14) === 0x0800) ip = 16
    else continue
    if (frame[ip + 9] !== 17) continue // not UDP
    const udp = ip + (frame[ip] & 0x0f) * 4
    out.push({
      t: sec * 1e3 + (nanoseconds ? frac / 1e6 : frac / 1e3),
      srcPort: frame.readUInt16BE(udp),
      dstPort: frame.readUInt16BE(udp + 2),
      payload: b4a.from(frame.subarray(udp + 8, udp + frame.readUInt16BE(udp + 4)))
    })
  }
  return out
}

/** tcpdump writing UDP on lo to `file`; resolves once it listens. */
async function startTcpdump(file) {
  if (spawnSync('tcpdump', ['--version']).error) throw new Error('tcpdump is not installed (apt-get install tcpdump): it is needed for ' + FILE)
  const dump = spawn('tcpdump', ['-i', 'lo', '--immediate-mode', '-U', '-s', '0', '-w', file, 'udp and host 127.0.0.1'], { stdio: ['ignore', 'ignore', 'pipe'] })
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('tcpdump did not start listening on lo within 5 s')), 5000)
    dump.stderr.on('data', (d) => {
      if (!/listening/.test(d.toString())) return
      clearTimeout(timer)
      resolve()
    })
    dump.once('exit', (code) => reject(new Error('tcpdump exited with ' + code + ' (capturing on lo needs root)')))
  })
  dump.removeAllListeners('exit')
  return dump
}

async function generate() {
  const createTestnet = ref('hyperdht/testnet')
  const [NS_INITIATOR] = ref('hypercore-crypto').namespace('hyperswarm/secret-stream', 3)
  const pcap = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'hdht-vectors-')), 'capture.pcap')
  const dump = await startTcpdump(pcap)

  const testnet = await createTestnet(3)
  const serverNode = testnet.createNode()
  const clientNode = testnet.createNode()
  await serverNode.fullyBootstrapped()
  await clientNode.fullyBootstrapped()
  const labels = new Map()
  testnet.nodes.forEach((n, i) => {
    const who = n === serverNode ? 'server-node' : n === clientNode ? 'client-node' : 'bootstrap' + i
    labels.set(n.io.serverSocket.address().port, who + '.serverSocket')
    labels.set(n.io.clientSocket.address().port, who + '.clientSocket')
  })

  const DHT = serverNode.constructor
  const keyPair = DHT.keyPair(b4a.alloc(32, 9))
  const clientKeyPair = DHT.keyPair(b4a.alloc(32, 10))
  const server = serverNode.createServer()
  let serverSocket = null
  const accepted = new Promise((resolve) => {
    server.on('connection', (s) => {
      serverSocket = s
      resolve()
    })
  })
  await server.listen(keyPair)

  const t0 = Date.now()
  const marks = []
  const mark = (what) => marks.push({ t_ms: Date.now() - t0, what })
  mark('client.connect(serverPublicKey)')
  const clientSocket = clientNode.connect(keyPair.publicKey, { keyPair: clientKeyPair })
  clientSocket.on('error', () => {})
  await new Promise((resolve) => clientSocket.once('open', resolve))
  mark('client secret stream open')
  await accepted
  serverSocket.on('error', () => {})
  await serverSocket.opened
  mark('server secret stream open')

  const atServer = new Promise((resolve) => serverSocket.once('data', resolve))
  clientSocket.write(utf8('hello from client'))
  mark('client writes "hello from client"')
  await atServer
  const atClient = new Promise((resolve) => clientSocket.once('data', resolve))
  serverSocket.write(utf8('hello from server'))
  mark('server writes "hello from server"')
  await atClient
  await sleep(50)
  mark('client end()')
  clientSocket.end()
  serverSocket.end()
  await Promise.all([clientSocket, serverSocket].map((s) => new Promise((resolve) => s.once('close', resolve))))
  mark('both secret streams closed')

  const side = (s, kp) => ({
    udx_local_stream_id: s.rawStream.id,
    udx_remote_stream_id: s.rawStream.remoteId,
    handshake_hash_hex: hex(s.handshakeHash),
    tx_key_hex: hex(s._encrypt.key),
    rx_key_hex: hex(s._decrypt.key),
    public_key_hex: hex(kp.publicKey)
  })
  const connection = { client: side(clientSocket, clientKeyPair), server: side(serverSocket, keyPair) }

  await sleep(200)
  await server.close()
  await testnet.destroy()
  await sleep(200)
  dump.kill('SIGINT')
  await new Promise((resolve) => dump.once('exit', resolve))

  const packets = readPcap(pcap).filter((p) => labels.has(p.srcPort) || labels.has(p.dstPort))
  fs.rmSync(path.dirname(pcap), { recursive: true, force: true })
  const tFirst = packets.length ? packets[0].t : 0
  const datagrams = packets.map((p, i) => {
    const kind = kindOf(p.payload)
    const e = {
      i,
      t_ms: Math.round((p.t - tFirst) * 100) / 100,
      from: labels.get(p.srcPort) || 'port ' + p.srcPort,
      to: labels.get(p.dstPort) || 'port ' + p.dstPort,
      len: p.payload.length,
      kind,
      hex: hex(p.payload)
    }
    if (kind === 'udx') e.udx = udxHeader(p.payload)
    return e
  })

  // the reliable bytes of each direction, then their secret-stream frames decrypted with the keys
  const directions = {}
  for (const e of datagrams) {
    if (!e.udx || !(e.udx.type & 1)) continue
    const dir = e.from + ' -> ' + e.to
    directions[dir] = directions[dir] || new Map()
    if (!directions[dir].has(e.udx.seq)) directions[dir].set(e.udx.seq, b4a.from(e.hex, 'hex').subarray(20 + e.udx.data_offset))
  }
  const initiatorId = b4a.alloc(32) // the client is the Noise initiator
  sodium.crypto_generichash(initiatorId, NS_INITIATOR, b4a.from(connection.client.handshake_hash_hex, 'hex'))
  const decoded = {}
  for (const [dir, bySeq] of Object.entries(directions)) {
    const bytes = b4a.concat([...bySeq.keys()].sort((x, y) => x - y).map((s) => bySeq.get(s)))
    const frames = []
    let state = null
    for (let off = 0; off + 3 <= bytes.length; ) {
      const len = bytes[off] | (bytes[off + 1] << 8) | (bytes[off + 2] << 16)
      const f = bytes.subarray(off + 3, off + 3 + len)
      off += 3 + len
      if (state === null) {
        const sender = b4a.equals(f.subarray(0, 32), initiatorId) ? 'client' : 'server'
        state = b4a.alloc(sodium.crypto_secretstream_xchacha20poly1305_STATEBYTES)
        sodium.crypto_secretstream_xchacha20poly1305_init_pull(state, f.subarray(32), b4a.from(connection[sender].tx_key_hex, 'hex'))
        frames.push({ kind: 'id+header', len: f.length, sender: sender + (sender === 'client' ? ' (initiator)' : ' (responder)'), stream_id_hex: hex(f.subarray(0, 32)), secretstream_header_hex: hex(f.subarray(32)) })
        continue
      }
      const plain = b4a.alloc(f.length - 17)
      let ok = true
      try {
        sodium.crypto_secretstream_xchacha20poly1305_pull(state, plain, b4a.alloc(1), f, null)
      } catch {
        ok = false
      }
      frames.push({ kind: 'message', len: f.length, decrypt_ok: ok, plaintext_text: ok ? printable(plain) : null })
    }
    decoded[dir] = frames
  }
  const counts = {}
  for (const e of datagrams) counts[e.kind] = (counts[e.kind] || 0) + 1

  return {
    generator: generatorName(__filename) + ' (node ' + process.version + ', tcpdump on lo)',
    spec: 'spec/04-udx-secret-stream.md (section 4)',
    description:
      'A real hyperdht 6.34.0 connection (client node -> server node) in a 3-node local testnet on 127.0.0.1, captured with tcpdump. Every node has two UDP sockets (io.serverSocket and io.clientSocket). The UDX stream of the connection runs on the same sockets as the DHT RPC; datagrams are told apart by their first bytes (0xff 0x01 = UDX, 0x03 = RPC request, 0x13 = RPC response). Random parts (keys, stream ids, secretstream headers) differ per run; the keys printed below decrypt this capture.',
    ports: Object.fromEntries([...labels].map(([port, label]) => [label, port])),
    marks,
    connection,
    counts_by_kind: counts,
    decoded_stream_frames: decoded,
    datagrams
  }
}

module.exports = { file: FILE, generate, liveOnly: true }
