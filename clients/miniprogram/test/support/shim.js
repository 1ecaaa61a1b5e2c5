// A `wx` for Node: request, uploadFile, downloadFile, connectSocket, login, checkSession
// and storage behave as WeChat's do (callbacks, `errMsg` failures, the same argument and
// result shapes) and really talk HTTP and WebSocket to the gateway under test.
'use strict'

const fs = require('node:fs')
const http = require('node:http')
const os = require('node:os')
const path = require('node:path')
const { randomBytes } = require('node:crypto')
const WebSocket = require('ws')

/** wx.request's default timeout, like WeChat's. */
const DEFAULT_TIMEOUT = 60000

function lowerHeaders(header) {
  const out = {}
  for (const [k, v] of Object.entries(header || {})) out[k.toLowerCase()] = String(v)
  return out
}

function queryString(data) {
  return Object.entries(data)
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(typeof v === 'object' ? JSON.stringify(v) : String(v))}`)
    .join('&')
}

/** The request body as `wx.request` encodes `data`; GET/HEAD/DELETE put objects in the query. */
function encode(method, url, data, header) {
  if (data === undefined || data === null) return { url, body: undefined }
  if (['GET', 'HEAD', 'DELETE'].includes(method) && typeof data === 'object') {
    const qs = queryString(data)
    return { url: qs ? `${url}${url.includes('?') ? '&' : '?'}${qs}` : url, body: undefined }
  }
  if (typeof data === 'string') return { url, body: Buffer.from(data) }
  if (data instanceof ArrayBuffer) return { url, body: Buffer.from(data) }
  const type = header['content-type'] || 'application/json'
  if (type.startsWith('application/x-www-form-urlencoded')) return { url, body: Buffer.from(queryString(data)) }
  return { url, body: Buffer.from(JSON.stringify(data)) }
}

class Shim {
  constructor(options = {}) {
    this.prefix = options.codePrefix || `sdk${randomBytes(4).toString('hex')}-`
    this.storage = new Map()
    this.codes = []
    /** Codes to hand out before generated ones (used, err-1 …). */
    this.nextCodes = [...(options.codes || [])]
    this.sessionValid = options.sessionValid !== false
    /** Every platform call: { api, method, url, authorization }. */
    this.calls = []
    this.dropRules = []
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wxgate-shim-'))
    this.files = 0
    this.agent = new http.Agent({ keepAlive: true })
    this.sockets = []
  }

  /** The next matching request is sent and answered, but its answer never reaches the SDK. */
  dropAnswer(match) {
    this.dropRules.push(match)
  }

  callsTo(pathPart) {
    return this.calls.filter((c) => new URL(c.url).pathname === pathPart)
  }

  close() {
    this.agent.destroy()
    for (const s of this.sockets) s.terminate()
    fs.rmSync(this.dir, { recursive: true, force: true })
  }

  // ---- wx.request / wx.uploadFile / wx.downloadFile ----

  request({ url, method = 'GET', data, header = {}, timeout, dataType = 'json', responseType, success, fail }) {
    method = method.toUpperCase()
    const headers = lowerHeaders(header)
    if (!headers['content-type'] && !['GET', 'HEAD'].includes(method)) headers['content-type'] = 'application/json'
    const encoded = encode(method, url, data, headers)
    this.exchange('request', method, encoded.url, headers, encoded.body, timeout, (res, body) => {
      let parsed = body.toString('utf8')
      if (responseType === 'arraybuffer') {
        parsed = body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength)
      } else if (dataType === 'json') {
        try {
          parsed = JSON.parse(parsed)
        } catch {
          // wx.request hands non-JSON bodies over as text.
        }
      }
      success && success({ statusCode: res.statusCode, data: parsed, header: res.headers, cookies: [] })
    }, fail)
    return { abort() {} }
  }

  uploadFile({ url, filePath, name, header = {}, formData = {}, timeout, success, fail }) {
    let content
    try {
      content = fs.readFileSync(filePath)
    } catch (e) {
      setImmediate(() => fail && fail({ errMsg: `uploadFile:fail ${e.message}` }))
      return { abort() {} }
    }
    const boundary = `----wxshim${randomBytes(8).toString('hex')}`
    const parts = []
    for (const [k, v] of Object.entries(formData)) {
      parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${k}"\r\n\r\n${v}\r\n`))
    }
    parts.push(
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="${name}"; filename="${path.basename(filePath)}"\r\n` +
          'Content-Type: application/octet-stream\r\n\r\n',
      ),
      content,
      Buffer.from(`\r\n--${boundary}--\r\n`),
    )
    const headers = { ...lowerHeaders(header), 'content-type': `multipart/form-data; boundary=${boundary}` }
    this.exchange('uploadFile', 'POST', url, headers, Buffer.concat(parts), timeout, (res, body) => {
      // wx.uploadFile gives the body as text, unparsed.
      success && success({ statusCode: res.statusCode, data: body.toString('utf8'), header: res.headers })
    }, fail)
    return { abort() {} }
  }

  downloadFile({ url, header = {}, timeout, filePath, success, fail }) {
    this.exchange('downloadFile', 'GET', url, lowerHeaders(header), undefined, timeout, (res, body) => {
      const target = filePath || path.join(this.dir, `download-${++this.files}`)
      fs.writeFileSync(target, body)
      const result = { statusCode: res.statusCode, header: res.headers }
      if (filePath) result.filePath = target
      else result.tempFilePath = target
      success && success(result)
    }, fail)
    return { abort() {} }
  }

  getFileSystemManager() {
    return {
      readFileSync: (file, encoding) => (encoding ? fs.readFileSync(file, encoding) : fs.readFileSync(file).buffer),
    }
  }

  exchange(api, method, url, headers, body, timeout, onAnswer, fail) {
    this.calls.push({ api, method, url, authorization: headers.authorization })
    const dropAt = this.dropRules.findIndex((match) => match({ api, method, url: new URL(url) }))
    const drop = dropAt >= 0
    if (drop) this.dropRules.splice(dropAt, 1)
    const failWith = (errMsg) => fail && fail({ errMsg: `${api}:fail ${errMsg}`, errno: 600001 })
    let settled = false
    const settle = (fn) => {
      if (!settled) {
        settled = true
        fn()
      }
    }
    const req = http.request(url, { method, headers, agent: this.agent })
    const timer = setTimeout(() => {
      settle(() => failWith('timeout'))
      req.destroy()
    }, timeout || DEFAULT_TIMEOUT)
    req.on('response', (res) => {
      const chunks = []
      res.on('data', (c) => chunks.push(c))
      res.on('end', () => {
        clearTimeout(timer)
        // A lost answer: the server did the work, the mini-program never hears of it.
        if (drop) settle(() => failWith('timeout'))
        else settle(() => onAnswer(res, Buffer.concat(chunks)))
      })
      res.on('error', (e) => settle(() => failWith(e.message)))
    })
    req.on('error', (e) => {
      clearTimeout(timer)
      settle(() => failWith(e.message))
    })
    req.end(body)
  }

  // ---- wx.connectSocket ----

  connectSocket({ url, header = {}, protocols, timeout, success, fail }) {
    this.calls.push({ api: 'connectSocket', method: 'GET', url: url.replace(/^ws/, 'http'), authorization: lowerHeaders(header).authorization })
    const ws = new WebSocket(url, protocols, { headers: header, handshakeTimeout: timeout || DEFAULT_TIMEOUT })
    this.sockets.push(ws)
    const on = { open: [], message: [], close: [], error: [] }
    ws.on('open', () => on.open.forEach((f) => f({ header: {} })))
    ws.on('message', (data, isBinary) => {
      const value = isBinary ? data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength) : data.toString('utf8')
      on.message.forEach((f) => f({ data: value }))
    })
    ws.on('unexpected-response', (req, res) => {
      on.error.forEach((f) => f({ errMsg: `connectSocket:fail unexpected response ${res.statusCode}` }))
      req.destroy()
    })
    ws.on('error', (e) => on.error.forEach((f) => f({ errMsg: `connectSocket:fail ${e.message}` })))
    ws.on('close', (code, reason) => on.close.forEach((f) => f({ code, reason: reason.toString('utf8') })))
    setImmediate(() => success && success({ errMsg: 'connectSocket:ok' }))
    void fail
    return {
      send({ data, success: ok, fail: bad }) {
        ws.send(data, (e) => (e ? bad && bad({ errMsg: `sendSocketMessage:fail ${e.message}` }) : ok && ok({})))
      },
      close({ code, reason, success: ok } = {}) {
        ws.close(code, reason)
        ok && ok({})
      },
      onOpen: (f) => on.open.push(f),
      onMessage: (f) => on.message.push(f),
      onClose: (f) => on.close.push(f),
      onError: (f) => on.error.push(f),
    }
  }

  // ---- wx.login / wx.checkSession ----

  login({ success, fail } = {}) {
    const code = this.nextCodes.length ? this.nextCodes.shift() : `${this.prefix}${this.codes.length + 1}`
    this.codes.push(code)
    this.calls.push({ api: 'login', method: '', url: 'wx://login' })
    setImmediate(() => (code === null ? fail && fail({ errMsg: 'login:fail' }) : success && success({ code, errMsg: 'login:ok' })))
  }

  checkSession({ success, fail } = {}) {
    setImmediate(() => (this.sessionValid ? success && success({ errMsg: 'checkSession:ok' }) : fail && fail({ errMsg: 'checkSession:fail session time out' })))
  }

  // ---- storage: values are kept as WeChat keeps them, serialised ----

  getStorageSync(key) {
    return this.storage.has(key) ? JSON.parse(this.storage.get(key)) : ''
  }

  setStorageSync(key, value) {
    this.storage.set(key, JSON.stringify(value))
  }

  removeStorageSync(key) {
    this.storage.delete(key)
  }
}

module.exports = { Shim }
