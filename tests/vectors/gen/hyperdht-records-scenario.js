'use strict'

// hyperdht-records-scenario.json: what the reference's record layer does on a live local
// testnet (hyperdht 6.34.0 on 127.0.0.1): one entry per observation, with the expected value
// where the spec makes a claim. Live only (Date.now() bumps, timings); the generation fails if
// an expectation is not met.

const { ref, b4a, c, sodium, hex, utf8, sleep, generatorName } = require('./ref.js')

const FILE = 'hyperdht-records-scenario.json'

async function generate() {
  const DHT = ref('hyperdht')
  const createTestnet = ref('hyperdht/testnet')
  const m = ref('hyperdht/lib/messages')
  const Persistent = ref('hyperdht/lib/persistent')
  const { COMMANDS, ERROR } = ref('hyperdht/lib/constants')
  const nodeId = ref('dht-rpc/lib/peer').id

  const keyPair = (label) => DHT.keyPair(DHT.hash(utf8('scenario seed ' + label)))
  const results = []
  let failures = 0

  /** Records an observation; with `expected`, also whether they are equal (as JSON). */
  const observe = (name, observed, expected) => {
    const entry = { name, observed }
    if (expected !== undefined) {
      entry.expected = expected
      entry.ok = JSON.stringify(observed) === JSON.stringify(expected)
      if (!entry.ok) failures++
    }
    results.push(entry)
    if (process.env.HDHT_VECTORS_VERBOSE) console.error(JSON.stringify(entry))
  }

  const all = async (stream) => {
    const items = []
    for await (const item of stream) items.push(item)
    return items
  }
  const addressOf = (node) => ({ host: '127.0.0.1', port: node.address().port })

  /** One raw request: the reply's interesting parts, or that none came. */
  const request = async (dht, msg, to, opts) => {
    try {
      const res = await dht.request(msg, to, opts)
      return { replied: true, error: res.error, hasToken: !!res.token, closerNodes: res.closerNodes ? res.closerNodes.length : null, value: hex(res.value), res }
    } catch (err) {
      return { replied: false, code: err.code }
    }
  }
  const once = { retry: false }
  const tokenFrom = async (dht, to, target) => {
    const res = await dht.request({ command: COMMANDS.LOOKUP, target, value: null }, to)
    return { token: res.token, id: res.from.id }
  }

  /** Every key a lookup finds, with how many nodes listed it. */
  const lookupKeys = async (dht, topic) => {
    const replies = await all(dht.lookup(topic))
    const keys = new Map()
    const bumps = new Set()
    let maxPerReply = 0
    for (const reply of replies) {
      maxPerReply = Math.max(maxPerReply, reply.peers.length)
      bumps.add(reply.bump)
      for (const peer of reply.peers) {
        const k = hex(peer.publicKey)
        if (!keys.has(k)) keys.set(k, { count: 0, relayAddresses: peer.relayAddresses })
        keys.get(k).count++
      }
    }
    return { replies, keys, maxPerReply, bumps: [...bumps] }
  }

  const testnet = await createTestnet(10, { host: '127.0.0.1' })
  const persistent = testnet.nodes.filter((n) => n.id !== null)
  observe('testnet: first (bootstrap) node stays ephemeral; the other 9 become persistent', { ephemeralFirst: testnet.nodes[0].id === null, persistent: persistent.length }, { ephemeralFirst: true, persistent: 9 })
  observe('persistent node id = hash(ipv4Address(host, port))', persistent.every((n) => b4a.equals(n.id, nodeId('127.0.0.1', n.address().port))), true)

  const a = testnet.createNode()
  const b = testnet.createNode()
  await a.fullyBootstrapped()
  await b.fullyBootstrapped()
  observe('client nodes are ephemeral (id === null)', [a.id, b.id], [null, null])
  const n1 = addressOf(persistent[0])

  // ------------------------------------------------------------------------------ announce
  const topic = DHT.hash(utf8('scenario topic'))
  const kpA = keyPair('A')
  const relays4 = [1, 2, 3, 4].map((i) => ({ host: '10.0.0.' + i, port: 1000 + i }))
  const announcing = a.announce(topic, kpA, relays4)
  observe('announce on a fresh topic emits no lookup data (no peers yet)', (await all(announcing)).length, 0)
  observe('announce commits to every closest reply (all 9 persistent nodes, k = 20)', announcing.closestReplies.length, 9)

  let found = await lookupKeys(b, topic)
  const recordA = found.keys.get(hex(kpA.publicKey))
  observe('lookup finds the announced key on all 9 storing nodes', recordA && recordA.count, 9)
  observe('server stores only the first 3 relay addresses', recordA && recordA.relayAddresses, relays4.slice(0, 3))
  observe('lookup data object fields', Object.keys(found.replies[0]).sort(), ['bump', 'from', 'peers', 'to', 'token'])
  observe('lookup reply bump defaults to 0', found.bumps, [0])

  await a.announce(topic, kpA, [{ host: '10.9.9.9', port: 9 }]).finished()
  found = await lookupKeys(b, topic)
  observe('re-announce with different relayAddresses does NOT replace a record still in the fresh generation', found.keys.get(hex(kpA.publicKey)).relayAddresses, relays4.slice(0, 3))

  const kpB = keyPair('B')
  const bump = Date.now()
  const bumpsAfter = async (value) => {
    await a.announce(topic, kpB, [], { bump: value }).finished()
    return (await lookupKeys(b, topic)).bumps
  }
  observe('bump stored per topic and returned in lookup replies', await bumpsAfter(bump), [bump])
  observe('bump more than 60 s in the future is ignored', await bumpsAfter(Date.now() + 120000), [bump])
  observe('lower bump is ignored (bump only increases)', await bumpsAfter(bump - 1000), [bump])

  await a.unannounce(topic, kpA)
  found = await lookupKeys(b, topic)
  observe('unannounce removes the key from all nodes', found.keys.has(hex(kpA.publicKey)), false)
  observe('other keys on the topic are untouched', found.keys.has(hex(kpB.publicKey)), true)

  {
    const started = Date.now()
    let error = null
    try {
      await a.announce(topic, keyPair('bad'), [], { signAnnounce: () => b4a.alloc(64, 7) }).finished()
    } catch (err) {
      error = err
    }
    observe('announce with an invalid signature: servers do not reply; the query rejects', { rejected: !!error, message: error && error.message, seconds: Math.round((Date.now() - started) / 1000) })
    found = await lookupKeys(b, topic)
    observe('invalid-signature announce was not stored', found.keys.has(hex(keyPair('bad').publicKey)), false)
  }

  // ------------------------------------------------------------------------------ direct requests
  {
    const target = DHT.hash(utf8('direct'))
    observe('LOOKUP without target: no reply (timeout)', (await request(a, { command: COMMANDS.LOOKUP, target: null }, n1, once)).replied, false)

    const empty = await request(a, { command: COMMANDS.LOOKUP, target }, n1)
    observe('LOOKUP on empty topic: error 0, null value, token + closer nodes present', { error: empty.error, value: empty.value, hasToken: empty.hasToken, closer: empty.closerNodes > 0 }, { error: 0, value: null, hasToken: true, closer: true })
    observe('unknown command 42 -> error UNKNOWN_COMMAND (1)', (await request(a, { command: 42, target }, n1)).error, 1)
    observe('LOOKUP to an ephemeral node -> error UNKNOWN_COMMAND (1)', (await request(a, { command: COMMANDS.LOOKUP, target }, addressOf(testnet.nodes[0]))).error, 1)

    const kpD = keyPair('D')
    const { token, id } = await tokenFrom(a, n1, target)
    const ann = { peer: { publicKey: kpD.publicKey, relayAddresses: [] }, refresh: null, signature: null }
    ann.signature = Persistent.signAnnounce(target, token, id, ann, kpD)
    const value = c.encode(m.announce, ann)

    observe('ANNOUNCE without token: silently dropped', (await request(a, { command: COMMANDS.ANNOUNCE, target, value }, n1, once)).replied, false)
    const wrongToken = await request(a, { command: COMMANDS.ANNOUNCE, target, value, token: b4a.alloc(32, 1) }, n1)
    observe('ANNOUNCE with a wrong token -> error INVALID_TOKEN (2), reply carries a fresh token', { error: wrongToken.error, hasToken: wrongToken.hasToken }, { error: 2, hasToken: true })
    const good = await request(a, { command: COMMANDS.ANNOUNCE, target, value, token }, n1)
    observe('valid ANNOUNCE -> error 0, no value, no token, no closer nodes', { error: good.error, value: good.value, hasToken: good.hasToken, closer: good.closerNodes }, { error: 0, value: null, hasToken: false, closer: null })

    const listed = await request(a, { command: COMMANDS.LOOKUP, target }, n1)
    const reply = c.decode(m.lookupRawReply, listed.res.value)
    observe('LOOKUP after direct announce returns lookupRawReply with the record and bump 0', { decoded: { peers: reply.peers.map((p) => hex(p.publicKey)), bump: reply.bump } }, { decoded: { peers: [hex(kpD.publicKey)], bump: 0 } })
    observe('raw lookup value bytes (1 peer, no relays, bump 0)', listed.value, '01' + hex(kpD.publicKey) + '0000')

    const other = addressOf(persistent[1])
    const otherToken = (await tokenFrom(a, other, target)).token
    observe('ANNOUNCE whose signature was made for another node id is dropped', (await request(a, { command: COMMANDS.ANNOUNCE, target, value, token: otherToken }, other, once)).replied, false)

    const un = { peer: { publicKey: kpD.publicKey, relayAddresses: [] }, signature: b4a.alloc(64) }
    const unannounce = (opts) => request(a, { command: COMMANDS.UNANNOUNCE, target, value: c.encode(m.announce, un), token }, n1, opts)
    observe('UNANNOUNCE with a bad signature is dropped', (await unannounce(once)).replied, false)
    un.signature = Persistent.signUnannounce(target, token, id, un, kpD)
    const goodUn = await unannounce()
    observe('valid UNANNOUNCE -> error 0, no token', { error: goodUn.error, hasToken: goodUn.hasToken }, { error: 0, hasToken: false })
    observe('LOOKUP after UNANNOUNCE -> null value', (await request(a, { command: COMMANDS.LOOKUP, target }, n1)).value, null)
    observe('UNANNOUNCE of a key that is not stored still replies error 0', (await unannounce()).error, 0)

    // a refresh chain: the server keeps hash(next); a refresh-only announce of `next` re-adds the record
    const next = b4a.alloc(32, 9)
    const withRefresh = { peer: { publicKey: kpD.publicKey, relayAddresses: [] }, refresh: DHT.hash(next), signature: null }
    withRefresh.signature = Persistent.signAnnounce(target, token, id, withRefresh, kpD)
    const refreshOnly = (refresh, opts) => request(a, { command: COMMANDS.ANNOUNCE, target, value: c.encode(m.announce, { peer: null, refresh, signature: null }), token }, n1, opts)
    const announced = await request(a, { command: COMMANDS.ANNOUNCE, target, value: c.encode(m.announce, withRefresh), token }, n1)
    await unannounce()
    const gone = await request(a, { command: COMMANDS.LOOKUP, target }, n1)
    const refreshed = await refreshOnly(next)
    const back = await request(a, { command: COMMANDS.LOOKUP, target }, n1)
    observe(
      'refresh chain: refresh-only announce whose hash matches a stored refresh re-adds the record',
      { announceWithRefresh: announced.error, afterUnannounce: gone.value, refreshOnlyError: refreshed.error, restored: back.value && hex(c.decode(m.lookupRawReply, back.res.value).peers[0].publicKey) },
      { announceWithRefresh: 0, afterUnannounce: null, refreshOnlyError: 0, restored: hex(kpD.publicKey) }
    )
    observe('refresh-only announce with an unknown refresh value is dropped', (await refreshOnly(b4a.alloc(32, 3), once)).replied, false)
  }

  // ------------------------------------------------------------------------------ immutable
  {
    const value = utf8('hello immutable')
    const put = await a.immutablePut(value)
    observe('immutablePut returns {hash, closestNodes}; hash = hash(value)', { keys: Object.keys(put).sort(), hashOk: b4a.equals(put.hash, DHT.hash(value)), closest: put.closestNodes.length }, { keys: ['closestNodes', 'hash'], hashOk: true, closest: 9 })
    const got = await b.immutableGet(put.hash)
    observe('immutableGet returns {token, from, to, value}', { keys: Object.keys(got).sort(), value: got.value.toString() }, { keys: ['from', 'to', 'token', 'value'], value: 'hello immutable' })
    const emptyGot = await b.immutableGet((await a.immutablePut(b4a.alloc(0))).hash)
    observe('immutable put/get of an EMPTY value works (present-but-empty value != absent value)', { found: !!emptyGot, length: emptyGot && emptyGot.value.length }, { found: true, length: 0 })
    observe('immutableGet of an unknown hash resolves null', await b.immutableGet(DHT.hash(utf8('never stored'))), null)

    const { token } = await tokenFrom(a, n1, DHT.hash(utf8('some other value')))
    observe('IMMUTABLE_PUT whose value does not hash to the target is dropped', (await request(a, { command: COMMANDS.IMMUTABLE_PUT, target: DHT.hash(utf8('some other value')), value, token }, n1, once)).replied, false)
    const direct = utf8('direct immutable')
    const ok = await request(a, { command: COMMANDS.IMMUTABLE_PUT, target: DHT.hash(direct), value: direct, token }, n1)
    observe('valid IMMUTABLE_PUT -> error 0, reply carries token and closer nodes (plain reply)', { error: ok.error, hasToken: ok.hasToken, closer: ok.closerNodes > 0 }, { error: 0, hasToken: true, closer: true })
    observe('IMMUTABLE_GET response value is the raw bytes', (await request(a, { command: COMMANDS.IMMUTABLE_GET, target: DHT.hash(direct) }, n1)).value, hex(direct))
  }

  // ------------------------------------------------------------------------------ mutable
  {
    const kpM = keyPair('M')
    const target = DHT.hash(kpM.publicKey)
    const put1 = await a.mutablePut(kpM, utf8('v1'), { seq: 1 })
    observe('mutablePut returns {publicKey, closestNodes, seq, signature}', { keys: Object.keys(put1).sort(), seq: put1.seq, closest: put1.closestNodes.length }, { keys: ['closestNodes', 'publicKey', 'seq', 'signature'], seq: 1, closest: 9 })
    let got = await b.mutableGet(kpM.publicKey)
    observe('mutableGet returns {token, from, to, seq, value, signature}', { keys: Object.keys(got).sort(), seq: got.seq, value: got.value.toString() }, { keys: ['from', 'seq', 'signature', 'to', 'token', 'value'], seq: 1, value: 'v1' })

    await a.mutablePut(kpM, utf8('v2'), { seq: 2 })
    got = await b.mutableGet(kpM.publicKey)
    observe('higher seq replaces', [got.seq, got.value.toString()], [2, 'v2'])

    let threw = false
    let lower = null
    try {
      lower = await a.mutablePut(kpM, utf8('v1'), { seq: 1 })
    } catch {
      threw = true
    }
    observe('client mutablePut with a lower seq still RESOLVES (server errors are not surfaced)', { threw, resolvedSeq: lower && lower.seq }, { threw: false, resolvedSeq: 1 })
    got = await b.mutableGet(kpM.publicKey)
    observe('stored value unchanged after lower-seq put', [got.seq, got.value.toString()], [2, 'v2'])

    const { token } = await tokenFrom(a, n1, target)
    const signed = (seq, value) => c.encode(m.mutablePutRequest, { publicKey: kpM.publicKey, seq, value, signature: Persistent.signMutable(seq, value, kpM) })
    const put = (value, opts, over = {}) => request(a, { command: COMMANDS.MUTABLE_PUT, target, token, value, ...over }, n1, opts)
    const low = await put(signed(1, utf8('v1')))
    observe('MUTABLE_PUT with seq < stored -> error SEQ_TOO_LOW (17), no token', { error: low.error, hasToken: low.hasToken }, { error: ERROR.SEQ_TOO_LOW, hasToken: false })
    observe('MUTABLE_PUT with same seq and different value -> error SEQ_REUSED (16)', (await put(signed(2, utf8('different')))).error, ERROR.SEQ_REUSED)
    const same = await put(signed(2, utf8('v2')))
    observe('MUTABLE_PUT with same seq and same value -> accepted (error 0, token present)', { error: same.error, hasToken: same.hasToken }, { error: 0, hasToken: true })
    const badSignature = c.encode(m.mutablePutRequest, { publicKey: kpM.publicKey, seq: 5, value: utf8('x'), signature: b4a.alloc(64, 1) })
    observe('MUTABLE_PUT with a bad signature is dropped', (await put(badSignature, once)).replied, false)
    observe('MUTABLE_PUT whose target != hash(publicKey) is dropped', (await put(signed(9, utf8('x')), once, { target: DHT.hash(utf8('x')) })).replied, false)
    observe('MUTABLE_PUT without token is dropped', (await put(signed(9, utf8('x')), once, { token: undefined })).replied, false)

    const get = (value, opts) => request(a, { command: COMMANDS.MUTABLE_GET, target, value }, n1, opts)
    const above = await get(c.encode(c.uint, 5))
    observe('MUTABLE_GET with seq above stored -> null value, error 0', { error: above.error, value: above.value }, { error: 0, value: null })
    const stored = c.decode(m.mutableGetResponse, (await get(c.encode(c.uint, 0))).res.value)
    observe('MUTABLE_GET seq 0 -> mutableGetResponse bytes', { seq: stored.seq, value: stored.value.toString(), sigValid: Persistent.verifyMutable(stored.signature, stored.seq, stored.value, kpM.publicKey) }, { seq: 2, value: 'v2', sigValid: true })
    observe('MUTABLE_GET without a value is dropped', (await get(undefined, once)).replied, false)

    observe('mutableGet({seq: 3}) when only seq 2 exists -> null', await b.mutableGet(kpM.publicKey, { seq: 3 }), null)
    got = await b.mutableGet(kpM.publicKey, { seq: 2 })
    observe('mutableGet({seq: 2}) -> seq 2', got && got.seq, 2)

    // seq 3 on one node only: the default (latest) still finds it
    await put(signed(3, utf8('v3')), undefined, { token: (await tokenFrom(a, n1, target)).token })
    observe('mutableGet default (latest) returns the highest seq even if only one node has it', (await b.mutableGet(kpM.publicKey)).seq, 3)
    observe('mutableGet({latest:false}) returns the first verified value', { seq: (await b.mutableGet(kpM.publicKey, { latest: false })).seq })

    const kpE = keyPair('E')
    await a.mutablePut(kpE, b4a.alloc(0), { seq: 0 })
    got = await b.mutableGet(kpE.publicKey)
    observe('mutable put/get with an empty value and seq 0', got && [got.seq, got.value.length], [0, 0])
  }

  // ------------------------------------------------------------------------------ value sizes
  {
    // hyperdht checks no value size; udx-native drops any datagram larger than 2048 bytes
    const kpS = keyPair('size1000')
    await a.mutablePut(kpS, b4a.alloc(1000, 0x61), { seq: 1 })
    const mutable = await b.mutableGet(kpS.publicKey)
    const immutable = await b.immutableGet((await a.immutablePut(b4a.alloc(1000, 0x62))).hash)
    observe('1000-byte mutable and immutable values round-trip', [mutable && mutable.value.length, immutable && immutable.value.length], [1000, 1000])

    const { token } = await tokenFrom(a, n1, DHT.hash(utf8('size probe')))
    const answered = async (len) => {
      const value = b4a.alloc(len, 0x63)
      return (await request(a, { command: COMMANDS.IMMUTABLE_PUT, target: DHT.hash(value), value, token }, n1, once)).replied
    }
    // ephemeral sender with token, target and a value of >= 253 bytes: frame = 78 + value length
    observe('IMMUTABLE_PUT frame of exactly 2048 bytes is answered, 2049 bytes is silently ignored', { value1970_frame2048: await answered(1970), value1971_frame2049: await answered(1971) }, { value1970_frame2048: true, value1971_frame2049: false })
  }

  // ------------------------------------------------------------------------------ at most 20 per reply
  {
    const crowded = DHT.hash(utf8('crowded topic'))
    await Promise.all(Array.from({ length: 25 }, (_, i) => a.announce(crowded, keyPair('crowd' + i), []).finished()))
    const seen = await lookupKeys(b, crowded)
    observe('lookup reply carries at most 20 peers per node', { maxPerReply: seen.maxPerReply, distinctSeen: seen.keys.size })
  }

  // ------------------------------------------------------------------------------ servers and findPeer
  {
    const c1 = testnet.createNode()
    await c1.fullyBootstrapped()
    const kpS = keyPair('server')
    const server = c1.createServer(() => {})
    await server.listen(kpS)
    const replies = await all(b.findPeer(kpS.publicKey))
    observe(
      'findPeer on a listening server: replies from the (up to 3) nodes it announced to, record has no relays',
      { replies: replies.length, keys: Object.keys(replies[0]).sort(), relayAddressesEmpty: replies.every((r) => r.peer.relayAddresses.length === 0), fromIsRelay: replies.every((r) => server._announcer.isRelay(r.from)) },
      { replies: 3, keys: ['from', 'peer', 'to', 'token'], relayAddressesEmpty: true, fromIsRelay: true }
    )
    observe('LOOKUP on hash(serverKey) also returns the router record', (await lookupKeys(b, DHT.hash(kpS.publicKey))).keys.has(hex(kpS.publicKey)), true)
    observe('server.relayAddresses (announcer) length <= 3', server.relayAddresses.length <= 3, true)
    await c1.destroy()
    observe('destroy() (no force) closes servers and unannounces them', (await all(b.findPeer(kpS.publicKey))).length, 0)

    const c2 = testnet.createNode()
    await c2.fullyBootstrapped()
    const kpF = keyPair('forced')
    await c2.createServer(() => {}).listen(kpF)
    await c2.destroy({ force: true })
    observe('destroy({force:true}) skips unannouncing; records stay on the relays', (await all(b.findPeer(kpF.publicKey))).length > 0, true)

    const kpT = keyPair('selfann')
    await a.announce(DHT.hash(kpT.publicKey), kpT, relays4).finished()
    const self = await all(b.findPeer(kpT.publicKey))
    observe('announce under hash(publicKey) goes to the router table: findPeer returns it with <= 3 relays', { replies: self.length, relays: self[0] && self[0].peer.relayAddresses }, { replies: 9, relays: relays4.slice(0, 3) })
  }

  await a.destroy()
  await b.destroy()
  await testnet.destroy()

  // ------------------------------------------------------------------------------ maxAge expiry
  {
    const boot = new DHT({ ephemeral: false, firewalled: false, bootstrap: [], host: '127.0.0.1', port: 0 })
    await boot.fullyBootstrapped()
    const bootstrap = [addressOf(boot)]
    const nodes = []
    for (let i = 0; i < 3; i++) {
      const node = new DHT({ ephemeral: false, firewalled: false, bootstrap, host: '127.0.0.1', maxAge: 1500 })
      await node.fullyBootstrapped()
      nodes.push(node)
    }
    const client = new DHT({ bootstrap, host: '127.0.0.1' })
    await client.fullyBootstrapped()
    const expiring = DHT.hash(utf8('expiring'))
    const kpX = keyPair('X')
    await client.announce(expiring, kpX, []).finished()
    await client.mutablePut(kpX, utf8('m'), { seq: 1 })
    const before = (await lookupKeys(client, expiring)).keys.size
    const mutableBefore = await client.mutableGet(kpX.publicKey)
    await sleep(3300) // more than 2 GC ticks of ceil(2/3 * 1500) = 1000 ms
    const after = (await lookupKeys(client, expiring)).keys.size
    const mutableAfter = await client.mutableGet(kpX.publicKey)
    observe(
      'maxAge option: records (and mutables) vanish after at most 4/3 * maxAge without refresh',
      { announcedBefore: before, announcedAfter: after, mutableBefore: mutableBefore && mutableBefore.seq, mutableAfter: mutableAfter && mutableAfter.seq },
      { announcedBefore: 1, announcedAfter: 0, mutableBefore: 1, mutableAfter: null }
    )
    await client.destroy()
    for (const node of nodes) await node.destroy()
    await boot.destroy()
  }

  // ------------------------------------------------------------------------------ bootstrapper
  {
    const boot = DHT.bootstrapper(47000 + Math.floor(Math.random() * 1000), '127.0.0.1')
    await boot.fullyBootstrapped()
    const port = boot.address().port
    observe(
      'DHT.bootstrapper(port, host): persistent immediately, id = hash(host:port), storage enabled',
      { ephemeral: boot.ephemeral, idOk: !!boot.id && b4a.equals(boot.id, nodeId('127.0.0.1', port)), storage: boot._persistent !== null },
      { ephemeral: false, idOk: true, storage: true }
    )
    await boot.destroy()
  }

  // ------------------------------------------------------------------------------ no persistent node
  {
    const lonely = new DHT({ ephemeral: false, firewalled: false, bootstrap: [], host: '127.0.0.1', port: 0 })
    await lonely.fullyBootstrapped()
    const client = new DHT({ bootstrap: [addressOf(lonely)], host: '127.0.0.1' })
    await client.fullyBootstrapped()
    const t = DHT.hash(utf8('t'))
    const outcomes = {}
    const attempts = {
      immutablePut: () => client.immutablePut(utf8('x')),
      mutablePut: () => client.mutablePut(keyPair('lonely'), utf8('x')),
      announce: () => client.announce(t, keyPair('lonely'), []).finished(),
      unannounce: () => client.unannounce(t, keyPair('lonely'))
    }
    for (const [name, attempt] of Object.entries(attempts)) {
      try {
        await attempt()
        outcomes[name] = 'resolved'
      } catch (err) {
        outcomes[name] = err.message
      }
    }
    const tooFew = 'Too few nodes responded'
    observe('put/announce/unannounce with no persistent node reachable reject "Too few nodes responded"', outcomes, { immutablePut: tooFew, mutablePut: tooFew, announce: tooFew, unannounce: tooFew })
    observe('lookup with no persistent node reachable just ends empty', (await all(client.lookup(t))).length, 0)
    await client.destroy()
    await lonely.destroy()
  }

  // ------------------------------------------------------------------------------ keyPair
  {
    const seed = b4a.alloc(32, 0)
    const kp = DHT.keyPair(seed)
    const publicKey = b4a.alloc(32)
    const secretKey = b4a.alloc(64)
    sodium.crypto_sign_seed_keypair(publicKey, secretKey, seed)
    observe(
      'DHT.keyPair(seed) == crypto_sign_seed_keypair; secretKey = seed || publicKey',
      { same: b4a.equals(kp.publicKey, publicKey) && b4a.equals(kp.secretKey, secretKey), skLayout: b4a.equals(kp.secretKey, b4a.concat([seed, publicKey])) },
      { same: true, skLayout: true }
    )
  }

  const summary = { checks: results.filter((r) => 'ok' in r).length, failures }
  if (failures) {
    const failed = results.filter((r) => r.ok === false).map((r) => r.name)
    throw new Error(failures + ' expectation(s) of the scenario not met by the reference: ' + failed.join('; '))
  }
  return { generator: generatorName(__filename), summary, results }
}

module.exports = { file: FILE, generate, liveOnly: true }
