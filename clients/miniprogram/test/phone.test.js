// phone_required → the app's phone button → /auth/phone → the call passes, against the real gateway.
'use strict'

const test = require('node:test')
const assert = require('node:assert/strict')
const { Shim } = require('./support/shim')
const { startWorld, clientFor } = require('./support/world')
const { readClaims } = require('../dist')

test('phone_required asks the app for a phone code once, and the calls pass with X-Phone', async (t) => {
  const world = await startWorld(t)
  const shim = new Shim()
  t.after(() => shim.close())
  const asked = []
  const api = clientFor(world, shim, {
    // What an app does: show <button open-type="getPhoneNumber"> and hand back e.detail.code.
    onPhoneRequired: async (error) => {
      asked.push(error.code)
      return `phonecode${Date.now()}`
    },
  })

  const answers = await Promise.all([api.post('/pay/orders', { sku: 1 }), api.get('/pay/balance')])

  assert.deepEqual(asked, ['phone_required'], 'one button for both calls')
  assert.equal(await world.endpointCount('phone'), 1)
  for (const answer of answers) assert.match(answer.headers['x-phone'], /^\+86 138\d{8}$/)
  assert.equal(JSON.parse(answers[0].body).sku, 1)
  assert.equal(await world.count('/pay', '4xx'), 2, 'each call met phone_required once')
  assert.equal(readClaims(shim.getStorageSync('wxgate_access_token')).phone, answers[0].headers['x-phone'])
  const session = await api.session()
  assert.equal(session.phone, answers[0].headers['x-phone'])
})

test('a user who declines the phone button gets phone_required, and nothing loops', async (t) => {
  const world = await startWorld(t)
  const shim = new Shim()
  t.after(() => shim.close())
  let asked = 0
  const api = clientFor(world, shim, { onPhoneRequired: () => { asked++ } })
  await assert.rejects(api.get('/pay/x'), (e) => e.code === 'phone_required' && e.status === 403)
  assert.equal(asked, 1)
  assert.equal(await world.endpointCount('phone'), 0)
})

test('api.phone(code) stores the new token; the number survives a refresh', async (t) => {
  const world = await startWorld(t, { accessTtl: '2s' })
  const shim = new Shim()
  t.after(() => shim.close())
  const api = clientFor(world, shim)
  const info = await api.phone(`phonecode${Date.now()}`)
  assert.match(info.purePhoneNumber, /^138\d{8}$/)
  assert.equal(info.watermark.appid, world.appid)
  await world.untilExpired(shim.getStorageSync('wxgate_access_token'))
  const answer = await api.get('/pay/x')
  assert.equal(answer.headers['x-phone'], info.phoneNumber)
  assert.ok((await world.endpointCount('refresh')) >= 1)
})
