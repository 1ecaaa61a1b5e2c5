// Login on first use, shared logins, storage, logout and code_used, against the real gateway.
'use strict'

const test = require('node:test')
const assert = require('node:assert/strict')
const { Shim } = require('./support/shim')
const { startWorld, clientFor } = require('./support/world')
const { WxgateError } = require('../dist')

test('the first call logs in with wx.login and carries the identity wxgate injects', async (t) => {
  const world = await startWorld(t)
  const shim = new Shim()
  t.after(() => shim.close())
  const logins = []
  const api = clientFor(world, shim, { onLogin: (s) => logins.push(s) })
  assert.equal(api.isLoggedIn(), false)

  const echoed = await api.get('/api/orders', { data: { page: 2 } })

  assert.equal(shim.codes.length, 1, 'one wx.login')
  assert.equal(await world.endpointCount('login'), 1)
  assert.equal(logins.length, 1)
  assert.match(logins[0].openid, /^o[A-Za-z0-9_-]{27}$/)
  assert.equal(echoed.path, '/api/orders?page=2')
  assert.equal(echoed.headers['x-openid'], logins[0].openid, 'upstream sees the logged-in openid')
  assert.equal(echoed.headers.authorization, undefined, 'wxgate removed the token')
  assert.equal(api.isLoggedIn(), true)
  const login = shim.callsTo('/auth/login')[0]
  assert.equal(login.authorization, undefined, 'a login carries no token')
})

test('concurrent first calls share one login', async (t) => {
  const world = await startWorld(t)
  const shim = new Shim()
  t.after(() => shim.close())
  const api = clientFor(world, shim)

  const answers = await Promise.all(Array.from({ length: 10 }, (_, i) => api.post('/api/items', { i })))

  assert.equal(shim.codes.length, 1)
  assert.equal(await world.endpointCount('login'), 1)
  const openids = new Set(answers.map((a) => a.headers['x-openid']))
  assert.equal(openids.size, 1)
  assert.deepEqual(answers.map((a) => JSON.parse(a.body).i).sort((a, b) => a - b), [...Array(10).keys()])
})

test('tokens live under the configured storage keys, and a relaunch reuses them', async (t) => {
  const world = await startWorld(t)
  const shim = new Shim()
  t.after(() => shim.close())
  const storageKeys = { accessToken: 'my_at', refreshToken: 'my_rt', session: 'my_session' }
  const first = clientFor(world, shim, { storageKeys })
  const before = await first.get('/api/me')

  assert.match(shim.getStorageSync('my_at'), /^ey/)
  assert.equal(typeof shim.getStorageSync('my_rt'), 'string')
  assert.equal(shim.getStorageSync('my_session').openid, before.headers['x-openid'])
  assert.equal(shim.getStorageSync('wxgate_access_token'), '', 'default keys unused')

  // The app is launched again: a new client over the same storage.
  const second = clientFor(world, shim, { storageKeys })
  assert.equal(second.isLoggedIn(), true)
  const after = await second.get('/api/me')
  assert.equal(after.headers['x-openid'], before.headers['x-openid'])
  assert.equal(shim.codes.length, 1, 'no second wx.login')
  assert.equal(await world.endpointCount('login'), 1)
})

test('logout ends the session at wxgate, and the next call logs in again', async (t) => {
  const world = await startWorld(t)
  const shim = new Shim()
  t.after(() => shim.close())
  const events = []
  const api = clientFor(world, shim, { onLogout: (e) => events.push(e.reason) })
  await api.get('/api/a')
  const oldToken = shim.getStorageSync('wxgate_access_token')

  await api.logout()

  assert.deepEqual(events, ['logout'])
  assert.equal(api.isLoggedIn(), false)
  assert.equal(shim.getStorageSync('wxgate_access_token'), '')
  assert.equal(shim.getStorageSync('wxgate_refresh_token'), '')
  const refused = await fetch(`${world.base}/api/a`, { headers: { authorization: `Bearer ${oldToken}` } })
  assert.equal(refused.status, 401, 'the old token is refused by wxgate')
  assert.equal((await refused.json()).error, 'invalid_token')

  const echoed = await api.get('/api/a')
  assert.equal(shim.codes.length, 2, 'a new wx.login')
  assert.equal(await world.endpointCount('login'), 2)
  assert.equal(await world.endpointCount('logout'), 1)
  assert.ok(echoed.headers['x-openid'])
})

test('a code wxgate calls used is replaced by one more wx.login, and only one', async (t) => {
  const world = await startWorld(t)
  // A code already spent at wxgate, as a stale code from a previous launch would be.
  const spent = `spent${Date.now()}`
  const first = await fetch(`${world.base}/auth/login`, { method: 'POST', body: JSON.stringify({ code: spent }) })
  assert.equal(first.status, 200)

  const shim = new Shim({ codes: [spent] })
  t.after(() => shim.close())
  const api = clientFor(world, shim)
  const echoed = await api.get('/api/x')
  assert.ok(echoed.headers['x-openid'])
  assert.deepEqual(shim.codes.slice(0, 1), [spent])
  assert.equal(shim.codes.length, 2, 'one more wx.login after code_used')

  // Two used codes in a row: the second code_used is the caller's error, not a loop.
  const again = new Shim({ codes: [spent, spent] })
  t.after(() => again.close())
  const stuck = clientFor(world, again)
  await assert.rejects(stuck.get('/api/x'), (e) => e instanceof WxgateError && e.code === 'code_used' && e.status === 400)
  assert.equal(again.codes.length, 2)
})

test('logout with an expired access token refreshes first, so wxgate still ends the session', async (t) => {
  const world = await startWorld(t, { accessTtl: '2s' })
  const shim = new Shim()
  t.after(() => shim.close())
  const api = clientFor(world, shim)
  await api.get('/api/a')
  await world.untilExpired(shim.getStorageSync('wxgate_access_token'))

  await api.logout()

  assert.equal(await world.count('endpoint:refresh', '2xx'), 1)
  assert.equal(await world.count('endpoint:logout', '2xx'), 1, '204 from wxgate')
  assert.equal(await world.endpointCount('login'), 1, 'no login just to log out')
  assert.equal(api.isLoggedIn(), false)
})
