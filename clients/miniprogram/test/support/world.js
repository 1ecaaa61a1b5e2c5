// The real thing on loopback: a `wxgate mock-wechat` and a `wxgate run` process (the binary
// built from this repository) on port 0, and a recording echo upstream, for one test.
'use strict'

const { spawn } = require('node:child_process')
const fs = require('node:fs')
const http = require('node:http')
const os = require('node:os')
const path = require('node:path')
const readline = require('node:readline')
const { WebSocketServer } = require('ws')

const BIN = process.env.WXGATE_BIN || path.resolve(__dirname, '../../../../target/debug/wxgate')
const APPID = 'wx0123456789abcdef'
const JWT_SECRET = 'sdk-test-jwt-secret-0123456789abcdef-0123456789'
/** How long a process may take to say it is listening. */
const START_TIMEOUT = 15000

const children = new Set()
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL')
})

/**
 * Spawns the binary with JSON logs and resolves with it once a stderr line satisfies
 * `ready`; every stderr line is kept in `lines`.
 */
function start(args, ready) {
  return new Promise((resolve, reject) => {
    const child = spawn(BIN, ['--log-format', 'json', ...args], { stdio: ['ignore', 'ignore', 'pipe'] })
    children.add(child)
    const lines = []
    const found = {}
    const timer = setTimeout(() => fail(new Error(`${path.basename(BIN)} ${args.join(' ')} did not start:\n${lines.join('\n')}`)), START_TIMEOUT)
    const fail = (error) => {
      clearTimeout(timer)
      child.kill('SIGKILL')
      reject(error)
    }
    child.on('error', (e) => fail(new Error(`cannot run ${BIN} (build it with cargo build, or set WXGATE_BIN): ${e.message}`)))
    child.on('exit', (code) => {
      children.delete(child)
      fail(new Error(`${path.basename(BIN)} ${args[0]} exited with ${code}:\n${lines.join('\n')}`))
    })
    readline.createInterface({ input: child.stderr }).on('line', (line) => {
      lines.push(line)
      let event
      try {
        event = JSON.parse(line)
      } catch {
        return
      }
      if (ready(event, found)) {
        clearTimeout(timer)
        resolve({ child, lines, found })
      }
    })
  })
}

function stop(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve()
    child.removeAllListeners('exit')
    child.once('exit', () => {
      children.delete(child)
      resolve()
    })
    child.kill('SIGTERM')
  })
}

/**
 * An upstream that answers every request with what it received (method, path, headers,
 * body) and records it; WebSocket messages are echoed with the identity of the upgrade.
 */
function startUpstream() {
  const seen = []
  const sockets = []
  const server = http.createServer((req, res) => {
    const chunks = []
    req.on('data', (c) => chunks.push(c))
    req.on('end', () => {
      const record = { method: req.method, path: req.url, headers: req.headers, body: Buffer.concat(chunks).toString('utf8') }
      seen.push(record)
      if (req.url.startsWith('/api/upstream-401')) {
        // The service's own refusal, in words that look like wxgate's but without its challenge.
        res.writeHead(401, { 'content-type': 'application/json' })
        return res.end(JSON.stringify({ error: 'invalid_token', error_description: 'not yours' }))
      }
      const body = JSON.stringify(record)
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
      res.end(body)
    })
  })
  const wss = new WebSocketServer({ noServer: true })
  server.on('upgrade', (req, socket, head) => {
    wss.handleUpgrade(req, socket, head, (ws) => {
      const identity = { openid: req.headers['x-openid'], path: req.url }
      sockets.push({ identity, ws, headers: req.headers })
      ws.on('message', (data) => ws.send(JSON.stringify({ echo: data.toString('utf8'), ...identity })))
    })
  })
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      resolve({
        base: `http://127.0.0.1:${server.address().port}`,
        seen,
        sockets,
        close: () =>
          new Promise((done) => {
            for (const s of sockets) s.ws.terminate()
            server.closeAllConnections()
            server.close(() => done())
          }),
      })
    })
  })
}

function config({ wechat, upstream, accessTtl = '2h', authExtra = '', tables = '', routes = '' }) {
  return `
[server]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[wechat]
api_base = "${wechat}"
timeout = "3s"
[[wechat.apps]]
appid = "${APPID}"
secret = "sdk-test-app-secret"
[auth]
audience = "sdk-tests"
access_ttl = "${accessTtl}"
leeway = "0s"
${authExtra}
[[auth.keys]]
kid = "k1"
alg = "HS256"
secret = "${JWT_SECRET}"
[auth.claim_headers]
phone = "X-Phone"
${tables}
[[routes]]
prefix = "/api"
upstream = "${upstream}"
auth = "required"
[[routes]]
prefix = "/ws"
upstream = "${upstream}"
auth = "required"
[[routes]]
prefix = "/pay"
upstream = "${upstream}"
auth = "phone"
[[routes]]
prefix = "/public"
upstream = "${upstream}"
auth = "none"
${routes}
`
}

/** A gateway process on `text`; `admin`/`base` are its addresses, `lines` its stderr. */
async function startGateway(text) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wxgate-sdk-'))
  const file = path.join(dir, 'gateway.toml')
  fs.writeFileSync(file, text)
  const { child, lines, found } = await start(['run', '-c', file], (event, found) => {
    if (event.message === 'listening') found[event.listener] = event.addr
    return found.public && found.admin
  })
  return {
    base: `http://${found.public}`,
    admin: `http://${found.admin}`,
    lines,
    stop: async () => {
      await stop(child)
      fs.rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** Prometheus text → the value of every series whose name and labels contain `parts`. */
function sum(text, ...parts) {
  let total = 0
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue
    if (parts.every((p) => line.includes(p))) total += Number(line.slice(line.lastIndexOf(' ') + 1))
  }
  return total
}

/**
 * mock-wechat, the echo upstream and a gateway in front of them; `t.after` stops them.
 * `options`: accessTtl, authExtra, tables, routes (TOML added to the config).
 */
async function startWorld(t, options = {}) {
  const mock = await start(['mock-wechat', '--listen', '127.0.0.1:0'], (event, found) => {
    if (event.message === 'mock-wechat listening') found.addr = event.addr
    return !!found.addr
  })
  const wechat = `http://${mock.found.addr}`
  const upstream = await startUpstream()
  const gateway = await startGateway(config({ wechat, upstream: upstream.base, ...options }))
  const world = {
    appid: APPID,
    wechat,
    upstream,
    gateway,
    base: gateway.base,
    metrics: async () => (await fetch(`${gateway.admin}/metrics`)).text(),
    /** Answers of an endpoint (`login`, `refresh`, …) so far, all statuses. */
    endpointCount: async (name) => sum(await world.metrics(), 'wxgate_requests_total{', `route="endpoint:${name}"`),
    /** Answers of an endpoint or route with status class `class` (`2xx`, `4xx`). */
    count: async (route, cls) => sum(await world.metrics(), 'wxgate_requests_total{', `route="${route}"`, `class="${cls}"`),
    /** Waits until wxgate itself answers 401 token_expired to `token` (a real expiry). */
    untilExpired: async (token) => {
      for (;;) {
        const res = await fetch(`${gateway.base}/api/probe-expiry`, { headers: { authorization: `Bearer ${token}` } })
        const body = await res.json()
        if (res.status === 401 && body.error === 'token_expired') return
        if (res.status !== 200) throw new Error(`unexpected ${res.status} ${JSON.stringify(body)}`)
        await new Promise((r) => setTimeout(r, 100))
      }
    },
    stop: async () => {
      await gateway.stop()
      await stop(mock.child)
      await upstream.close()
    },
  }
  t.after(() => world.stop())
  return world
}

/** A port where nothing listens. */
function closedPort() {
  return new Promise((resolve) => {
    const server = http.createServer()
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

module.exports = { startWorld, startGateway, startUpstream, closedPort, config, sum, APPID, BIN }

/** A client of the world's gateway on `shim`, with the test's options. */
function clientFor(world, shim, options = {}) {
  const { createClient } = require('../../dist')
  return createClient({ baseURL: world.base, platform: shim, ...options })
}

module.exports.clientFor = clientFor
