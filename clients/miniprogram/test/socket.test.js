// WebSockets opened with the token, closed by the SDK when the token expires or the
// session ends, and reopened after a refresh, against the real gateway.
'use strict'

const test = require('node:test')
const assert = require('node:assert/strict')
const { Shim } = require('./support/shim')
const { startWorld, clientFor } = require('./support/world')
const { NetworkError } = require('../dist')

function next(register) {
  return new Promise((resolve) => {
    let done = false
    register((value) => {
      if (!done) {
        done = true
        resolve(value)
      }
    })
  })
}

test('a socket carries the identity wxgate injects at the upgrade', async (t) => {
  const world = await startWorld(t)
  const shim = new Shim()
  t.after(() => shim.close())
  const api = clientFor(world, shim)

  const ws = await api.socket('/ws/chat')
  assert.equal(ws.readyState, 'open')
  const reply = next((f) => ws.onMessage(f))
  await ws.send('hello')
  const echoed = JSON.parse(await reply)

  assert.equal(echoed.echo, 'hello')
  assert.equal(echoed.openid, api.sessionInfo.openid)
  assert.equal(echoed.path, '/ws/chat')
  assert.equal(world.upstream.sockets[0].headers.authorization, undefined, 'the token stayed at wxgate')
  assert.equal(shim.codes.length, 1, 'logged in first')
  ws.close()
})

test('a socket whose token expires is closed with token_expired and reopened with a refreshed token', async (t) => {
  const world = await startWorld(t, { accessTtl: '2s' })
  const shim = new Shim()
  t.after(() => shim.close())
  const api = clientFor(world, shim)
  const ws = await api.socket('/ws/chat')
  const firstToken = shim.calls.find((c) => c.api === 'connectSocket').authorization

  const closed = next((f) => ws.onClose(f))
  const reopened = next((f) => ws.onOpen(f))
  const event = await closed
  assert.deepEqual(event, { code: 4001, reason: 'token_expired', reconnecting: true })
  await reopened

  const connects = shim.calls.filter((c) => c.api === 'connectSocket')
  assert.equal(connects.length, 2)
  assert.notEqual(connects[1].authorization, firstToken, 'the new socket has a new token')
  assert.ok((await world.endpointCount('refresh')) >= 1)
  assert.equal(await world.endpointCount('login'), 1, 'a refresh, not a login')
  assert.equal(world.upstream.sockets.length, 2)
  assert.equal(world.upstream.sockets[1].identity.openid, world.upstream.sockets[0].identity.openid)
  const reply = next((f) => ws.onMessage(f))
  await ws.send('after')
  assert.equal(JSON.parse(await reply).echo, 'after')
  ws.close()
})

test('logout closes sockets with logged_out and does not reopen them', async (t) => {
  const world = await startWorld(t)
  const shim = new Shim()
  t.after(() => shim.close())
  const api = clientFor(world, shim)
  const ws = await api.socket('/ws/chat', { reconnect: true })
  const closed = next((f) => ws.onClose(f))

  await api.logout()

  assert.deepEqual(await closed, { code: 4000, reason: 'logged_out', reconnecting: false })
  assert.equal(ws.readyState, 'closed')
  await assert.rejects(ws.send('x'), NetworkError)
  assert.equal(shim.calls.filter((c) => c.api === 'connectSocket').length, 1)
})

test('a new login replaces the session: open sockets reconnect with the new identity', async (t) => {
  const world = await startWorld(t)
  const shim = new Shim()
  t.after(() => shim.close())
  const api = clientFor(world, shim)
  const ws = await api.socket('/ws/chat')
  const closed = next((f) => ws.onClose(f))
  const reopened = next((f) => ws.onOpen(f))

  await api.login()

  assert.deepEqual(await closed, { code: 4003, reason: 'session_replaced', reconnecting: true })
  await reopened
  assert.equal(world.upstream.sockets.length, 2)
  assert.equal(world.upstream.sockets[1].identity.openid, api.sessionInfo.openid)
  ws.close()
})

test('an upgrade wxgate refuses fails socket() with a NetworkError', async (t) => {
  const world = await startWorld(t)
  const shim = new Shim()
  t.after(() => shim.close())
  const api = clientFor(world, shim, { tokenHeader: 'X-Not-A-Token-Header' })
  await assert.rejects(api.socket('/ws/chat'), (e) => e instanceof NetworkError && /401/.test(e.errMsg))
  assert.equal(world.upstream.sockets.length, 0)
})
