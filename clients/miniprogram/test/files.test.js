// Uploads and downloads go through the same pipeline as requests, against the real gateway.
'use strict'

const test = require('node:test')
const assert = require('node:assert/strict')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const { Shim } = require('./support/shim')
const { startWorld, clientFor } = require('./support/world')

function tempFile(t, content) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wxgate-upload-'))
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }))
  const file = path.join(dir, 'avatar.png')
  fs.writeFileSync(file, content)
  return file
}

test('an upload carries the identity, its file and its form fields', async (t) => {
  const world = await startWorld(t)
  const shim = new Shim()
  t.after(() => shim.close())
  const api = clientFor(world, shim)
  const filePath = tempFile(t, 'PNG-bytes-for-the-test')

  const echoed = await api.upload('/api/avatar', { filePath, name: 'file', formData: { album: 'profile' } })

  assert.equal(echoed.method, 'POST')
  assert.equal(echoed.path, '/api/avatar')
  assert.match(echoed.headers['x-openid'], /^o/)
  assert.equal(echoed.headers['x-openid'], api.sessionInfo.openid)
  assert.match(echoed.headers['content-type'], /^multipart\/form-data; boundary=/)
  assert.match(echoed.body, /name="file"; filename="avatar.png"/)
  assert.match(echoed.body, /PNG-bytes-for-the-test/)
  assert.match(echoed.body, /name="album"\r\n\r\nprofile/)
})

test('an upload that meets 401 token_expired is refreshed and sent again', async (t) => {
  const world = await startWorld(t, { accessTtl: '2s' })
  const shim = new Shim()
  t.after(() => shim.close())
  const api = clientFor(world, shim, { now: () => 0 })
  await api.get('/api/warmup')
  await world.untilExpired(shim.getStorageSync('wxgate_access_token'))

  const echoed = await api.upload('/api/avatar', { filePath: tempFile(t, 'again'), name: 'file' })

  assert.match(echoed.body, /again/)
  assert.equal(await world.endpointCount('refresh'), 1)
  assert.equal(shim.calls.filter((c) => c.api === 'uploadFile').length, 2)
  assert.equal(world.upstream.seen.filter((r) => r.path === '/api/avatar').length, 1, 'the refused one never reached the service')
})

test('a download carries the identity, and a 401 is read from the saved body and refreshed', async (t) => {
  const world = await startWorld(t, { accessTtl: '2s' })
  const shim = new Shim()
  t.after(() => shim.close())
  const api = clientFor(world, shim, { now: () => 0 })

  const first = await api.download('/api/report.pdf')
  assert.equal(first.status, 200)
  const saved = JSON.parse(fs.readFileSync(first.tempFilePath, 'utf8'))
  assert.equal(saved.path, '/api/report.pdf')
  assert.equal(saved.headers['x-openid'], api.sessionInfo.openid)

  await world.untilExpired(shim.getStorageSync('wxgate_access_token'))
  const second = await api.download('/api/report.pdf')
  assert.equal(second.status, 200)
  assert.equal(JSON.parse(fs.readFileSync(second.tempFilePath, 'utf8')).headers['x-openid'], saved.headers['x-openid'])
  assert.equal(await world.endpointCount('refresh'), 1)
  assert.equal(shim.calls.filter((c) => c.api === 'downloadFile').length, 3)
})
