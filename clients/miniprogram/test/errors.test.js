// Errors typed by wxgate's code, network errors apart from HTTP errors, and which calls
// are retried after a lost answer, against the real gateway.
'use strict'

const test = require('node:test')
const assert = require('node:assert/strict')
const http = require('node:http')
const { Shim } = require('./support/shim')
const { startWorld, clientFor, closedPort } = require('./support/world')
const { createClient, WxgateError, NetworkError } = require('../dist')

test('an error answer is a WxgateError with status, code, description and request id', async (t) => {
  const world = await startWorld(t, {
    routes: `[[routes]]\nprefix = "/down"\nupstream = "http://127.0.0.1:9"\nauth = "required"\n`,
  })
  const shim = new Shim()
  t.after(() => shim.close())
  const api = clientFor(world, shim)

  const error = await api.get('/nowhere').catch((e) => e)
  assert.ok(error instanceof WxgateError)
  assert.ok(!(error instanceof NetworkError))
  assert.equal(error.status, 404)
  assert.equal(error.code, 'no_route')
  assert.ok(error.description.length > 0)
  assert.match(error.requestId, /^[A-Za-z0-9._-]+$/)
  const sent = shim.calls.at(-1)
  assert.equal(new URL(sent.url).pathname, '/nowhere')

  const down = await api.post('/down/x', {}).catch((e) => e)
  assert.equal(down.status, 502)
  assert.equal(down.code, 'upstream_unavailable')
})

test('rate_limited carries retryAfter from Retry-After', async (t) => {
  const world = await startWorld(t, { tables: '[auth.login_rate_limit]\nper_minute = 1\nburst = 1\n' })
  const shim = new Shim()
  t.after(() => shim.close())
  const api = clientFor(world, shim)
  await api.get('/api/a') // the one login the limit allows
  await api.logout()

  const error = await api.get('/api/a').catch((e) => e)
  assert.ok(error instanceof WxgateError, String(error))
  assert.equal(error.status, 429)
  assert.equal(error.code, 'rate_limited')
  assert.ok(Number.isInteger(error.retryAfter) && error.retryAfter > 0, `retryAfter ${error.retryAfter}`)
})

test('wechat_busy (WeChat errcode -1) surfaces with retryAfter, and is not retried', async (t) => {
  const world = await startWorld(t)
  const shim = new Shim({ codes: ['err-1busy'] })
  t.after(() => shim.close())
  const api = clientFor(world, shim)

  const error = await api.get('/api/a').catch((e) => e)
  assert.equal(error.code, 'wechat_busy')
  assert.equal(error.status, 503)
  assert.equal(error.retryAfter, 2)
  assert.equal(shim.codes.length, 1, 'the code may be spent: no second login')

  // The next call tries again with a fresh code and works.
  const echoed = await api.get('/api/a')
  assert.ok(echoed.headers['x-openid'])
})

test('login_denied-style refusals (code_blocked) reach onAuthFailed', async (t) => {
  const world = await startWorld(t)
  const shim = new Shim({ codes: ['err40226risky'] })
  t.after(() => shim.close())
  const failures = []
  const api = clientFor(world, shim, { onAuthFailed: (e) => failures.push(e.code) })
  await assert.rejects(api.get('/api/a'), (e) => e.code === 'code_blocked' && e.status === 403)
  assert.deepEqual(failures, ['code_blocked'])
})

test('a gateway that is down gives a NetworkError at once, not a hang', async (t) => {
  const port = await closedPort()
  const shim = new Shim()
  t.after(() => shim.close())
  const api = createClient({ baseURL: `http://127.0.0.1:${port}`, platform: shim })
  const started = Date.now()

  const error = await api.get('/api/a').catch((e) => e)

  assert.ok(error instanceof NetworkError, String(error))
  assert.ok(!(error instanceof WxgateError))
  assert.match(error.errMsg, /^request:fail /)
  assert.equal(error.timedOut, false)
  assert.ok(Date.now() - started < 5000)
  assert.equal(shim.callsTo('/auth/login').length, 1, 'the login was tried once')
})

test('a gateway that accepts and never answers gives a timed-out NetworkError after `timeout`', async (t) => {
  const sockets = []
  const silent = http.createServer(() => {})
  silent.on('connection', (s) => sockets.push(s))
  await new Promise((r) => silent.listen(0, '127.0.0.1', r))
  t.after(() => {
    sockets.forEach((s) => s.destroy())
    silent.close()
  })
  const shim = new Shim()
  t.after(() => shim.close())
  const api = createClient({ baseURL: `http://127.0.0.1:${silent.address().port}`, platform: shim, timeout: 300 })
  const started = Date.now()

  const error = await api.get('/api/a').catch((e) => e)

  assert.ok(error instanceof NetworkError)
  assert.equal(error.timedOut, true)
  assert.ok(Date.now() - started < 3000)
})

test('a GET whose answer is lost is sent once more; a POST is not', async (t) => {
  const world = await startWorld(t)
  const shim = new Shim()
  t.after(() => shim.close())
  const api = clientFor(world, shim)
  await api.get('/api/warmup')

  shim.dropAnswer(({ url }) => url.pathname === '/api/read')
  const read = await api.get('/api/read')
  assert.equal(read.path, '/api/read')
  assert.equal(world.upstream.seen.filter((r) => r.path === '/api/read').length, 2, 'sent twice')

  shim.dropAnswer(({ url }) => url.pathname === '/api/write')
  const error = await api.post('/api/write', { n: 1 }).catch((e) => e)
  assert.ok(error instanceof NetworkError)
  assert.equal(world.upstream.seen.filter((r) => r.path === '/api/write').length, 1, 'sent once')

  // Two lost answers in a row: the GET is retried once only.
  shim.dropAnswer(({ url }) => url.pathname === '/api/twice')
  shim.dropAnswer(({ url }) => url.pathname === '/api/twice')
  await assert.rejects(api.get('/api/twice'), NetworkError)
  assert.equal(world.upstream.seen.filter((r) => r.path === '/api/twice').length, 2)
})

test('auth: false calls send no token and never log in; tokens never go to another origin', async (t) => {
  const world = await startWorld(t)
  const shim = new Shim()
  t.after(() => shim.close())
  const api = clientFor(world, shim)

  const open = await api.get('/public/hello', { auth: false })
  assert.equal(open.headers['x-openid'], undefined)
  assert.equal(shim.codes.length, 0, 'no login')

  await api.get('/api/a')
  const foreign = await api.get(`${world.upstream.base}/direct`)
  assert.equal(foreign.headers.authorization, undefined, 'no token to another origin')
})

test("an upstream's own 401 reaches the caller: no refresh, no login", async (t) => {
  const world = await startWorld(t)
  const shim = new Shim()
  t.after(() => shim.close())
  const api = clientFor(world, shim)
  const error = await api.get('/api/upstream-401').catch((e) => e)
  assert.equal(error.status, 401)
  assert.equal(error.code, 'invalid_token')
  assert.equal(error.description, 'not yours')
  assert.equal(await world.endpointCount('login'), 1)
  assert.equal(await world.endpointCount('refresh'), 0)
  assert.equal(world.upstream.seen.filter((r) => r.path === '/api/upstream-401').length, 1, 'not replayed')
})
