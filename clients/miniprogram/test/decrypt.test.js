// /auth/decrypt through the SDK, and wx.checkSession's verdict acted on, against the real gateway.
'use strict'

const test = require('node:test')
const assert = require('node:assert/strict')
const { Shim } = require('./support/shim')
const { startWorld, clientFor } = require('./support/world')

/** What wx.getUserProfile would hand the page after the login with `code` (from mock-wechat). */
async function userInfo(world, code) {
  const res = await fetch(`${world.wechat}/mock/userinfo?appid=${world.appid}&code=${code}`)
  assert.equal(res.status, 200)
  return res.json()
}

test('decrypt opens user data with the session key wxgate holds', async (t) => {
  const world = await startWorld(t)
  const shim = new Shim()
  t.after(() => shim.close())
  const api = clientFor(world, shim)
  await api.get('/api/a')

  const opened = await api.decrypt(await userInfo(world, shim.codes[0]))

  assert.equal(opened.openId, api.sessionInfo.openid)
  assert.equal(opened.nickName, '微信用户')
  assert.equal(opened.watermark.appid, world.appid)
  assert.equal(shim.codes.length, 1, 'no extra login while WeChat says the session is fine')
})

test('when wx.checkSession says the session_key is stale, the next decrypt logs in first', async (t) => {
  const world = await startWorld(t)
  const shim = new Shim()
  t.after(() => shim.close())
  await clientFor(world, shim).get('/api/a') // a session from an earlier launch
  shim.sessionValid = false // WeChat has moved the user's session on since

  const api = clientFor(world, shim) // this launch asks wx.checkSession
  const sealedEarlier = await userInfo(world, shim.codes[0])
  const refused = await api.decrypt(sealedEarlier).catch((e) => e)

  const order = shim.calls.map((c) => (c.api === 'login' ? 'wx.login' : new URL(c.url).pathname))
  assert.deepEqual(order.slice(-3), ['wx.login', '/auth/login', '/auth/decrypt'], 'a fresh login before the decrypt')
  const decryptCall = shim.calls.at(-1)
  assert.equal(decryptCall.authorization, `Bearer ${shim.getStorageSync('wxgate_access_token')}`, 'with the new session')
  // mock-wechat gives every login its own openid, so data sealed for the earlier login
  // does not belong to the new session; with WeChat it is the same user and a fresh key.
  assert.equal(refused.code, 'decrypt_failed')

  const opened = await api.decrypt(await userInfo(world, shim.codes[1]))
  assert.equal(opened.openId, api.sessionInfo.openid)
  assert.equal(shim.codes.length, 2, 'the stale verdict is spent by one login')
})
