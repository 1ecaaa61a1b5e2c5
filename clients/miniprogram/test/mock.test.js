// Mock mode: no network and no `wx` — canned logins and answers through the SDK's own pipeline.
'use strict'

const test = require('node:test')
const assert = require('node:assert/strict')
const { createClient, reply, readClaims, WxgateError } = require('../dist')

function clock() {
  let at = Date.now()
  const now = () => at
  now.advance = (ms) => (at += ms)
  return now
}

test('mock mode logs in, answers from its table, and 404s the rest', async () => {
  const seen = []
  const api = createClient({
    baseURL: 'https://api.example.com',
    mock: {
      openid: 'o-page-author',
      routes: {
        'GET /api/orders': [{ id: 1 }],
        'POST /api/orders': (req) => {
          seen.push(req)
          return reply(201, { id: 2, ...req.data })
        },
        '/api/items/*': (req) => ({ item: req.path.split('/').pop(), page: req.query.page }),
      },
    },
  })
  assert.deepEqual(await api.get('/api/orders'), [{ id: 1 }])
  assert.deepEqual(await api.post('/api/orders', { sku: 7 }), { id: 2, sku: 7 })
  assert.equal(seen[0].openid, 'o-page-author')
  assert.deepEqual(await api.get('/api/items/42', { data: { page: 3 } }), { item: '42', page: '3' })
  await assert.rejects(api.get('/api/unknown'), (e) => e instanceof WxgateError && e.code === 'no_route' && e.status === 404)
  assert.equal(api.isLoggedIn(), true)
  assert.equal(api.sessionInfo.openid, 'o-page-author')
})

test('mock mode expires tokens on the client clock and refreshes once for concurrent calls', async () => {
  const now = clock()
  let logins = 0
  const api = createClient({
    baseURL: 'https://api.example.com',
    now,
    onLogin: () => logins++,
    mock: { accessTtl: 600, routes: { '/api/x': (req) => req.openid } },
  })
  await api.get('/api/x')
  const first = api.sessionInfo.sessionId
  now.advance(601 * 1000)
  const answers = await Promise.all([api.get('/api/x'), api.get('/api/x'), api.get('/api/x')])
  assert.deepEqual(answers, ['o-mock-user', 'o-mock-user', 'o-mock-user'])
  assert.equal(logins, 1)
  assert.equal(api.sessionInfo.sessionId, first, 'refreshed, same session')
  assert.ok(readClaims(await api.accessToken()).exp * 1000 > now())
})

test("mock mode refuses a revoked session's token with wxgate's 401, and the SDK logs in again", async () => {
  let logins = 0
  const api = createClient({
    baseURL: 'https://api.example.com',
    onLogin: () => logins++,
    mock: { routes: { '/api/x': (req) => req.openid } },
  })
  await api.get('/api/x')
  const revoked = api.sessionInfo.sessionId
  // Logged out behind the SDK's back (a plain call, so the SDK keeps its tokens).
  await api.request({ path: '/auth/logout', method: 'POST' })
  assert.equal(await api.get('/api/x'), 'o-mock-user')
  assert.equal(logins, 2)
  assert.notEqual(api.sessionInfo.sessionId, revoked)
})

test('mock mode plays phone_required, phone, decrypt, sockets, uploads and logout', async () => {
  const api = createClient({
    baseURL: 'https://api.example.com',
    mock: {
      phoneRoutes: ['/pay'],
      phone: '13900000000',
      userInfo: { nickName: 'Page Author' },
      routes: { 'POST /pay/order': (req) => ({ phone: req.phone }), 'POST /api/avatar': (req) => req.data },
    },
    onPhoneRequired: () => 'mock-phone-code',
  })
  assert.deepEqual(await api.post('/pay/order'), { phone: '13900000000' })
  const opened = await api.decrypt({ encryptedData: 'x', iv: 'y' })
  assert.equal(opened.nickName, 'Page Author')
  const uploaded = await api.upload('/api/avatar', { filePath: 'wxfile://tmp/a.png', name: 'file' })
  assert.equal(uploaded.filePath, 'wxfile://tmp/a.png')

  const ws = await api.socket('/ws/chat')
  const message = new Promise((resolve) => ws.onMessage(resolve))
  await ws.send('hi')
  assert.deepEqual(JSON.parse(await message), { echo: 'hi', openid: 'o-mock-user' })

  const closed = new Promise((resolve) => ws.onClose(resolve))
  await api.logout()
  assert.equal((await closed).reason, 'logged_out')
  assert.equal(api.isLoggedIn(), false)
})

test('mock routes can stand in for an endpoint: session_key_expired makes the next decrypt log in first', async () => {
  let logins = 0
  let decrypts = 0
  const api = createClient({
    baseURL: 'https://api.example.com',
    onLogin: () => logins++,
    mock: {
      routes: {
        'POST /auth/decrypt': () => (++decrypts === 1 ? reply(401, { error: 'session_key_expired' }) : { ok: true }),
      },
    },
  })
  await api.get('/auth/session')
  assert.equal(logins, 1)
  await assert.rejects(api.decrypt({ encryptedData: 'a', iv: 'b' }), (e) => e.code === 'session_key_expired' && e.status === 401)
  assert.equal(logins, 1, 'a 401 session_key_expired is not a token problem: no login for it')
  assert.deepEqual(await api.decrypt({ encryptedData: 'a', iv: 'b' }), { ok: true })
  assert.equal(logins, 2, 'the next decrypt logged in first')
})

test('without wx and without platform or mock, createClient says what is missing', () => {
  assert.throws(() => createClient({ baseURL: 'https://api.example.com' }), /pass `platform`/)
  assert.throws(() => createClient({}), /baseURL/)
})
