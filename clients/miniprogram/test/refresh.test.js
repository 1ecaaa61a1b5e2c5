// Refresh and re-login: one refresh for many 401s, a lost refresh answer, revoked sessions,
// spent refresh tokens and the re-login cap, against the real gateway.
'use strict'

const test = require('node:test')
const assert = require('node:assert/strict')
const { Shim } = require('./support/shim')
const { startWorld, startGateway, startUpstream, clientFor, config } = require('./support/world')
const { WxgateError } = require('../dist')

/** A device clock the test moves by hand; it starts at the real time. */
function clock() {
  let at = Date.now()
  const now = () => at
  now.advance = (ms) => {
    at += ms
  }
  return now
}

test('20 concurrent calls meeting 401 token_expired make exactly one refresh, and all succeed', async (t) => {
  const world = await startWorld(t, { accessTtl: '2s' })
  const shim = new Shim()
  t.after(() => shim.close())
  // The device clock stands still, so the SDK does not know the token expired: wxgate
  // tells it, with a 401 to every one of the 20 calls.
  const api = clientFor(world, shim, { now: clock() })
  const first = await api.get('/api/warmup')
  const expired = shim.getStorageSync('wxgate_access_token')
  await world.untilExpired(expired)
  const seenBefore = world.upstream.seen.length

  const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => api.get(`/api/item/${i}`)))

  assert.equal(await world.endpointCount('refresh'), 1, 'one /auth/refresh')
  assert.equal(await world.count('endpoint:refresh', '2xx'), 1)
  assert.equal(await world.endpointCount('login'), 1, 'no second login')
  assert.equal(shim.callsTo('/auth/refresh').length, 1)
  const expiredCalls = shim.calls.filter((c) => c.url.includes('/api/item/') && c.authorization === `Bearer ${expired}`)
  assert.equal(expiredCalls.length, 20, 'each call went out once with the expired token')
  assert.equal(shim.calls.filter((c) => c.url.includes('/api/item/')).length, 40, 'and was replayed once')
  for (const [i, answer] of answers.entries()) {
    assert.equal(answer.path, `/api/item/${i}`)
    assert.equal(answer.headers['x-openid'], first.headers['x-openid'], 'same user after the refresh')
  }
  const reached = world.upstream.seen.slice(seenBefore).filter((r) => r.path.startsWith('/api/item/'))
  assert.equal(reached.length, 20, 'the upstream saw each call once')
  assert.notEqual(shim.getStorageSync('wxgate_access_token'), expired)
})

test('20 concurrent calls with a token known to be expired from its exp refresh once, before sending', async (t) => {
  const world = await startWorld(t)
  const shim = new Shim()
  t.after(() => shim.close())
  const now = clock()
  const api = clientFor(world, shim, { now })
  await api.get('/api/warmup')
  now.advance(2 * 3600 * 1000) // the 2 h token has expired on the device's clock

  await Promise.all(Array.from({ length: 20 }, (_, i) => api.get(`/api/item/${i}`)))

  assert.equal(await world.endpointCount('refresh'), 1)
  assert.equal(await world.count('/api', '4xx'), 0, 'no call was sent with the expired token')
  assert.equal(await world.count('/api', '2xx'), 21)
})

test('a token is refreshed shortly before its exp (refreshBefore), not after', async (t) => {
  const world = await startWorld(t)
  const shim = new Shim()
  t.after(() => shim.close())
  const now = clock()
  const api = clientFor(world, shim, { now, refreshBefore: 120 })
  await api.get('/api/warmup')
  now.advance(2 * 3600 * 1000 - 150 * 1000) // 150 s left: still sent as it is
  await api.get('/api/a')
  assert.equal(await world.endpointCount('refresh'), 0)
  now.advance(60 * 1000) // 90 s left: inside the 120 s margin
  await api.get('/api/b')
  assert.equal(await world.endpointCount('refresh'), 1)
})

test('a refresh whose answer is lost recovers with one silent login, not a loop', async (t) => {
  const world = await startWorld(t, { accessTtl: '2s' })
  const shim = new Shim()
  t.after(() => shim.close())
  const logins = []
  const api = clientFor(world, shim, { now: clock(), onLogin: (s) => logins.push(s.sessionId) })
  await api.get('/api/warmup')
  await world.untilExpired(shim.getStorageSync('wxgate_access_token'))
  // wxgate rotates the refresh token, but the answer never reaches the phone.
  shim.dropAnswer(({ url }) => url.pathname === '/auth/refresh')

  const echoed = await api.get('/api/after-loss')

  assert.ok(echoed.headers['x-openid'])
  assert.equal(await world.count('endpoint:refresh', '2xx'), 1, 'the lost refresh did happen at wxgate')
  assert.equal(await world.endpointCount('refresh'), 1, 'the spent refresh token was not sent again')
  assert.equal(await world.endpointCount('login'), 2, 'one silent login')
  assert.equal(shim.codes.length, 2)
  assert.equal(logins.length, 2)
  assert.notEqual(logins[0], logins[1], 'a new session')

  // The new session refreshes normally afterwards.
  await world.untilExpired(shim.getStorageSync('wxgate_access_token'))
  await api.get('/api/later')
  assert.equal(await world.count('endpoint:refresh', '2xx'), 2)
  assert.equal(await world.endpointCount('login'), 2)
})

test('a session revoked elsewhere (401 invalid_token) is replaced by one silent login and the call replayed', async (t) => {
  const world = await startWorld(t)
  const shim = new Shim()
  t.after(() => shim.close())
  const api = clientFor(world, shim)
  const before = await api.get('/api/a')
  // Logged out from somewhere else: every token of the session is refused now.
  const token = shim.getStorageSync('wxgate_access_token')
  const out = await fetch(`${world.base}/auth/logout`, { method: 'POST', headers: { authorization: `Bearer ${token}` } })
  assert.equal(out.status, 204)

  const after = await api.post('/api/orders', { sku: 1 })

  assert.equal(await world.count('/api', '4xx'), 1, 'one 401')
  assert.equal(await world.endpointCount('login'), 2)
  assert.equal(await world.endpointCount('refresh'), 0, 'invalid_token goes straight to a login')
  assert.equal(JSON.parse(after.body).sku, 1)
  assert.ok(after.headers['x-openid'])
  assert.ok(before.headers['x-openid'])
})

test('a refresh answered invalid_grant (a spent refresh token) leads to one login', async (t) => {
  const world = await startWorld(t)
  const shim = new Shim()
  t.after(() => shim.close())
  const now = clock()
  const api = clientFor(world, shim, { now })
  await api.get('/api/a')
  // Someone else used the refresh token first (another copy of the storage, say).
  const rt = shim.getStorageSync('wxgate_refresh_token')
  const stolen = await fetch(`${world.base}/auth/refresh`, { method: 'POST', body: JSON.stringify({ refresh_token: rt }) })
  assert.equal(stolen.status, 200)
  now.advance(3 * 3600 * 1000)

  const echoed = await api.get('/api/b')

  assert.ok(echoed.headers['x-openid'])
  assert.equal(await world.count('endpoint:refresh', '4xx'), 1, 'the replay was refused (invalid_grant)')
  assert.equal(await world.endpointCount('login'), 2)
})

test('re-logins stop at the cap: the error reaches onAuthFailed once, and logins stop', async (t) => {
  // Gateway B refuses every token gateway A signs (another key); A forwards /elsewhere to B
  // with the token, so every call there meets a real 401 invalid_token from wxgate.
  const upstream = await startUpstream()
  t.after(() => upstream.close())
  const b = await startGateway(
    config({ wechat: 'http://127.0.0.1:9', upstream: upstream.base }).replace(
      /secret = "sdk-test-jwt-secret[^"]*"/,
      'secret = "another-signing-secret-0123456789abcdef-0123456789"',
    ),
  )
  t.after(() => b.stop())
  const world = await startWorld(t, {
    authExtra: 'forward_token = true',
    routes: `[[routes]]\nprefix = "/elsewhere"\nupstream = "${b.base}"\nauth = "none"\nstrip_prefix = true\n`,
  })
  const shim = new Shim()
  t.after(() => shim.close())
  const failures = []
  const api = clientFor(world, shim, { onAuthFailed: (e) => failures.push(e) })

  // Each call: a login (the first) or a re-login, then the 401 surfaces — one replay only.
  for (let i = 0; i < 2; i++) {
    await assert.rejects(api.get('/elsewhere/api/x'), (e) => e instanceof WxgateError && e.code === 'invalid_token' && e.status === 401)
  }
  assert.equal(await world.endpointCount('login'), 3, 'first login + two re-logins')
  assert.equal(failures.length, 0)

  await assert.rejects(api.get('/elsewhere/api/x'), (e) => e.code === 'auth_failed' && e.cause.code === 'invalid_token')
  await assert.rejects(api.get('/elsewhere/api/x'), (e) => e.code === 'auth_failed')
  assert.equal(await world.endpointCount('login'), 3, 'no login after the cap')
  assert.equal(failures.length, 1, 'onAuthFailed is told once')
  assert.equal(failures[0].code, 'auth_failed')

  // A call wxgate accepts starts the count again; an explicit login() does too.
  const fine = await api.get('/api/ok')
  assert.ok(fine.headers['x-openid'])
  await assert.rejects(api.get('/elsewhere/api/x'), (e) => e.code === 'invalid_token')
  assert.equal(await world.endpointCount('login'), 4)
})
