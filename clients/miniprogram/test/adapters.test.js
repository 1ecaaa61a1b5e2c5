// Platforms other than `wx`: a Taro-style platform (promises, and a promise of the
// SocketTask) and a uni-app-style one (detached functions), against the real gateway.
'use strict'

const test = require('node:test')
const assert = require('node:assert/strict')
const { Shim } = require('./support/shim')
const { startWorld, clientFor } = require('./support/world')

/** Like Taro: every API returns a promise; this one never calls success/fail at all. */
function taroLike(shim) {
  const promised = (name) => (options) => {
    const { success, fail, ...rest } = options
    void success
    void fail
    return new Promise((resolve, reject) => shim[name]({ ...rest, success: resolve, fail: reject }))
  }
  return {
    request: promised('request'),
    uploadFile: promised('uploadFile'),
    downloadFile: promised('downloadFile'),
    login: promised('login'),
    checkSession: promised('checkSession'),
    connectSocket: (options) => Promise.resolve(shim.connectSocket(options)),
    getStorageSync: (k) => shim.getStorageSync(k),
    setStorageSync: (k, v) => shim.setStorageSync(k, v),
    removeStorageSync: (k) => shim.removeStorageSync(k),
  }
}

/** Like passing uni's functions one by one: `{ request: uni.request, login: uni.login, … }`. */
function uniLike(shim) {
  const names = ['request', 'uploadFile', 'downloadFile', 'connectSocket', 'login', 'checkSession', 'getStorageSync', 'setStorageSync', 'removeStorageSync', 'getFileSystemManager']
  return Object.fromEntries(names.map((n) => [n, shim[n].bind(shim)]))
}

for (const [name, adapt] of [['Taro-style', taroLike], ['uni-app-style', uniLike]]) {
  test(`a ${name} platform logs in, refreshes, uploads and opens sockets`, async (t) => {
    const world = await startWorld(t, { accessTtl: '2s' })
    const shim = new Shim()
    t.after(() => shim.close())
    const api = clientFor(world, shim, { platform: adapt(shim), now: () => 0 })

    const first = await api.get('/api/a')
    assert.ok(first.headers['x-openid'])
    await world.untilExpired(shim.getStorageSync('wxgate_access_token'))
    const again = await api.get('/api/b')
    assert.equal(again.headers['x-openid'], first.headers['x-openid'])
    assert.equal(await world.endpointCount('refresh'), 1)

    const fs = require('node:fs')
    const file = `${shim.dir}/up.txt`
    fs.writeFileSync(file, 'via adapter')
    const uploaded = await api.upload('/api/up', { filePath: file, name: 'f' })
    assert.match(uploaded.body, /via adapter/)

    const ws = await api.socket('/ws/chat')
    const reply = new Promise((resolve) => ws.onMessage(resolve))
    await ws.send('ping')
    assert.equal(JSON.parse(await reply).openid, first.headers['x-openid'])
    ws.close()
  })
}
