// Mock mode: a platform with no network. It plays wxgate (logins, refresh with rotation and
// reuse detection, logout, phone, decrypt, 401s for expired or revoked tokens) and answers
// business calls from a table, so pages can be written before a gateway exists — and the
// SDK's own pipeline runs exactly as it will against the real thing.

import type { ClientOptions } from './client'
import {
  Callbacks,
  DownloadArgs,
  Header,
  Platform,
  RequestArgs,
  SocketArgs,
  SocketTaskLike,
  UploadArgs,
} from './platform'
import { readClaims } from './tokens'

declare function setTimeout(callback: () => void, ms: number): unknown

/** What a mock route handler is given. */
export interface MockRequest {
  method: string
  path: string
  query: Record<string, string>
  data: unknown
  header: Header
  /** The caller's openid, when the call carried a valid token. */
  openid?: string
  phone?: string
}

/** A status other than 200, or headers: return `reply(...)` from a route. */
export interface MockReply {
  readonly mockReply: true
  status: number
  data?: unknown
  header?: Header
}

export type MockRoute = unknown | ((request: MockRequest) => unknown)

export interface MockOptions {
  /**
   * Answers by `'METHOD /path'` or `'/path'` (any method); a key ending in `/*` matches
   * the paths below it. A value is the 200 body, or a function of the request returning
   * the body or a `reply(status, data)`. Unmatched calls are 404 `no_route`.
   * For sockets, `'WS /path'` is `(message, send, request) => void` (default: an echo).
   * `'POST /auth/decrypt'` and the other endpoints can be given too, to play their errors.
   */
  routes?: Record<string, MockRoute>
  /** The openid every login gets. Default `o-mock-user`. */
  openid?: string
  /** Access token lifetime in seconds. Default 7200. */
  accessTtl?: number
  /** Path prefixes that answer 403 `phone_required` until `phone()` was called. */
  phoneRoutes?: string[]
  /** The number `/auth/phone` answers. Default `13800138000`. */
  phone?: string
  /** What `/auth/decrypt` answers. */
  userInfo?: Record<string, unknown>
  /** Milliseconds before each answer. Default 0. */
  latency?: number
}

/** A mock answer with a status (and headers). */
export function reply(status: number, data?: unknown, header?: Header): MockReply {
  return { mockReply: true, status, data, header }
}

function isReply(value: unknown): value is MockReply {
  return value !== null && typeof value === 'object' && (value as MockReply).mockReply === true
}

function utf8Bytes(text: string): number[] {
  const bytes: number[] = []
  for (let i = 0; i < text.length; i++) {
    let code = text.charCodeAt(i)
    if (code >= 0xd800 && code < 0xdc00 && i + 1 < text.length) {
      code = 0x10000 + ((code - 0xd800) << 10) + (text.charCodeAt(++i) - 0xdc00)
    }
    if (code < 0x80) bytes.push(code)
    else if (code < 0x800) bytes.push(0xc0 | (code >> 6), 0x80 | (code & 0x3f))
    else if (code < 0x10000) {
      bytes.push(0xe0 | (code >> 12), 0x80 | ((code >> 6) & 0x3f), 0x80 | (code & 0x3f))
    } else {
      bytes.push(
        0xf0 | (code >> 18),
        0x80 | ((code >> 12) & 0x3f),
        0x80 | ((code >> 6) & 0x3f),
        0x80 | (code & 0x3f),
      )
    }
  }
  return bytes
}

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'

function base64url(text: string): string {
  const bytes = utf8Bytes(text)
  let out = ''
  for (let i = 0; i < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | ((bytes[i + 1] || 0) << 8) | (bytes[i + 2] || 0)
    out += ALPHABET.charAt((n >> 18) & 63) + ALPHABET.charAt((n >> 12) & 63)
    if (i + 1 < bytes.length) out += ALPHABET.charAt((n >> 6) & 63)
    if (i + 2 < bytes.length) out += ALPHABET.charAt(n & 63)
  }
  return out
}

function parseQuery(text: string): Record<string, string> {
  const query: Record<string, string> = {}
  for (const pair of text.split('&')) {
    if (!pair) continue
    const at = pair.indexOf('=')
    const key = decodeURIComponent(at < 0 ? pair : pair.slice(0, at))
    query[key] = at < 0 ? '' : decodeURIComponent(pair.slice(at + 1).replace(/\+/g, ' '))
  }
  return query
}

function headerOf(header: Header | undefined, name: string): string | undefined {
  for (const key of Object.keys(header || {})) {
    if (key.toLowerCase() === name) return (header as Header)[key]
  }
  return undefined
}

interface MockSession {
  sid: string
  openid: string
  phone?: string
  revoked: boolean
}

interface Answer {
  status: number
  data?: unknown
  header?: Header
}

class MockGateway {
  private counter = 0
  private readonly sessions: Record<string, MockSession> = {}
  /** refresh token -> [sid, spent] */
  private readonly refreshTokens: Record<string, [string, boolean]> = {}
  private readonly storage: Record<string, unknown> = {}
  private readonly files: Record<string, string> = {}
  private readonly base: string
  private readonly prefix: string

  constructor(
    private readonly options: MockOptions,
    client: ClientOptions,
    private readonly now: () => number,
  ) {
    this.base = client.baseURL.replace(/\/+$/, '')
    this.prefix = (client.authPrefix || '/auth').replace(/\/+$/, '')
  }

  platform(): Platform {
    return {
      request: (args: RequestArgs) => this.later(args, () => this.request(args)),
      uploadFile: (args: UploadArgs) =>
        this.later(args, async () => {
          const answer = await this.business('POST', args.url, args.header, {
            filePath: args.filePath,
            name: args.name,
            formData: args.formData,
          })
          return { ...answer, data: JSON.stringify(answer.data === undefined ? '' : answer.data) }
        }),
      downloadFile: (args: DownloadArgs) =>
        this.later(args, async () => {
          const answer = await this.business('GET', args.url, args.header, undefined)
          const tempFilePath = `mock://file/${++this.counter}`
          const body = answer.data
          this.files[tempFilePath] = typeof body === 'string' ? body : JSON.stringify(body)
          return { statusCode: answer.status, tempFilePath, header: answer.header }
        }),
      connectSocket: (args: SocketArgs) => this.socket(args),
      login: (args: Callbacks<{ code: string }>) =>
        this.later(args, () => ({ code: `mock-code-${++this.counter}` }), true),
      checkSession: (args: Callbacks<unknown>) => this.later(args, () => ({}), true),
      getStorageSync: (key: string) => this.storage[key],
      setStorageSync: (key: string, value: unknown) => {
        this.storage[key] = JSON.parse(JSON.stringify(value))
      },
      removeStorageSync: (key: string) => {
        delete this.storage[key]
      },
      getFileSystemManager: () => ({
        readFileSync: (path: string) => {
          if (!(path in this.files)) throw new Error(`readFileSync:fail no such file ${path}`)
          return this.files[path]
        },
      }),
    }
  }

  /** Answers through `success` after the configured latency, as `wx` does (never at once). */
  private later<T>(
    args: Callbacks<T>,
    answer: () => Answer | T | Promise<Answer | T>,
    plain = false,
  ): void {
    setTimeout(() => {
      Promise.resolve()
        .then(answer)
        .then(
          (value) => {
            if (!args.success) return
            if (plain) return args.success(value as T)
            const a = value as Answer & { statusCode?: number }
            const statusCode = a.statusCode === undefined ? a.status : a.statusCode
            const header = { 'x-request-id': `mock-${++this.counter}`, ...(a.header || {}) }
            args.success({ ...(a as object), statusCode, data: a.data, header } as unknown as T)
          },
          (error: unknown) => args.fail && args.fail({ errMsg: `request:fail ${String(error)}` }),
        )
    }, this.options.latency || 0)
  }

  private request(args: RequestArgs): Answer | Promise<Answer> {
    const method = (args.method || 'GET').toUpperCase()
    const path = this.pathOf(args.url)
    const data = typeof args.data === 'string' ? safeJson(args.data) : args.data
    const body = (data || {}) as Record<string, unknown>
    const bare = path.split('?')[0]
    // A route may stand in for an endpoint, to play its errors (`session_key_expired`…).
    if (`${method} ${bare}` in (this.options.routes || {})) {
      return this.business(method, args.url, args.header, data)
    }
    switch (bare) {
      case `${this.prefix}/login`:
        return this.login()
      case `${this.prefix}/refresh`:
        return this.refresh(body.refresh_token)
      case `${this.prefix}/logout`:
        return this.authed(args.header, (session) => {
          session.revoked = true
          return { status: 204 }
        })
      case `${this.prefix}/session`:
        return this.authed(args.header, (session) => ({
          status: 200,
          data: {
            openid: session.openid,
            appid: 'wxmock',
            session_id: session.sid,
            expires_at: Math.floor(this.now() / 1000) + 30 * 86400,
            phone: session.phone,
          },
        }))
      case `${this.prefix}/phone`:
        return this.authed(args.header, (session) => {
          session.phone = this.options.phone || '13800138000'
          const info = {
            phoneNumber: `+86 ${session.phone}`,
            purePhoneNumber: session.phone,
            countryCode: '86',
            watermark: { appid: 'wxmock', timestamp: Math.floor(this.now() / 1000) },
          }
          const token = this.mint(session)
          return {
            status: 200,
            data: { phone_info: info, access_token: token, token_type: 'Bearer', expires_in: this.ttl() },
          }
        })
      case `${this.prefix}/decrypt`:
        return this.authed(args.header, (session) => ({
          status: 200,
          data: {
            nickName: '微信用户',
            avatarUrl: '',
            ...(this.options.userInfo || {}),
            openId: session.openid,
            watermark: { appid: 'wxmock', timestamp: Math.floor(this.now() / 1000) },
          },
        }))
      default:
        return this.business(method, args.url, args.header, data)
    }
  }

  private business(
    method: string,
    url: string,
    header: Header | undefined,
    data: unknown,
  ): Answer | Promise<Answer> {
    const full = this.pathOf(url)
    const at = full.indexOf('?')
    const path = at < 0 ? full : full.slice(0, at)
    const query = at < 0 ? {} : parseQuery(full.slice(at + 1))
    const identity = this.identify(header)
    if ('status' in identity) return identity
    const session = identity.session
    const needsPhone = (this.options.phoneRoutes || []).some((prefix) => path.indexOf(prefix) === 0)
    if (needsPhone && !(session && session.phone)) {
      if (!session) return error(401, 'missing_token', 'an access token is required')
      return error(403, 'phone_required', 'this route needs a verified phone number')
    }
    const route = this.route(method, path)
    if (route === undefined) return error(404, 'no_route', `no mock route for ${method} ${path}`)
    const request: MockRequest = {
      method,
      path,
      query: method === 'GET' && data && typeof data === 'object' ? { ...query, ...stringify(data) } : query,
      data,
      header: header || {},
      openid: session && session.openid,
      phone: session && session.phone,
    }
    return Promise.resolve(typeof route === 'function' ? route(request) : route).then((value) =>
      isReply(value) ? { status: value.status, data: value.data, header: value.header } : { status: 200, data: value },
    )
  }

  private route(method: string, path: string): MockRoute | undefined {
    const routes = this.options.routes || {}
    for (const key of [`${method} ${path}`, path]) if (key in routes) return routes[key]
    let best: string | undefined
    for (const key of Object.keys(routes)) {
      const match = /^(?:([A-Z]+) )?(\/.*)\/\*$/.exec(key)
      if (!match || (match[1] && match[1] !== method)) continue
      if (path === match[2] || path.indexOf(`${match[2]}/`) === 0) {
        if (!best || key.length > best.length) best = key
      }
    }
    return best === undefined ? undefined : routes[best]
  }

  private login(): Answer {
    const sid = `mock-session-${++this.counter}`
    const session: MockSession = { sid, openid: this.options.openid || 'o-mock-user', revoked: false }
    this.sessions[sid] = session
    return this.tokens(session)
  }

  private refresh(presented: unknown): Answer {
    const entry = typeof presented === 'string' ? this.refreshTokens[presented] : undefined
    const session = entry && this.sessions[entry[0]]
    if (!entry || !session || session.revoked) {
      return error(400, 'invalid_grant', 'the refresh token is not valid')
    }
    if (entry[1]) {
      // As wxgate does: a spent refresh token presented again revokes the whole session.
      session.revoked = true
      return error(400, 'invalid_grant', 'the refresh token is not valid')
    }
    entry[1] = true
    return this.tokens(session)
  }

  private tokens(session: MockSession): Answer {
    const refresh = `mock-refresh-${++this.counter}`
    this.refreshTokens[refresh] = [session.sid, false]
    return {
      status: 200,
      data: {
        access_token: this.mint(session),
        token_type: 'Bearer',
        expires_in: this.ttl(),
        refresh_token: refresh,
        refresh_expires_in: 30 * 86400,
        openid: session.openid,
        session_id: session.sid,
      },
    }
  }

  private ttl(): number {
    return this.options.accessTtl || 7200
  }

  private mint(session: MockSession): string {
    const iat = Math.floor(this.now() / 1000)
    const claims: Record<string, unknown> = { sub: session.openid, sid: session.sid, iat, exp: iat + this.ttl() }
    if (session.phone) claims.phone = session.phone
    return `${base64url('{"alg":"none","typ":"at+jwt"}')}.${base64url(JSON.stringify(claims))}.mock`
  }

  /** The session a call's token belongs to (none without a token), or the 401 wxgate gives. */
  private identify(header: Header | undefined): { session?: MockSession } | Answer {
    const value = headerOf(header, 'authorization')
    if (!value) return {}
    const token = value.replace(/^Bearer\s+/i, '')
    const claims = readClaims(token)
    const session = claims && claims.sid ? this.sessions[claims.sid] : undefined
    if (!claims || !session || session.revoked || typeof claims.exp !== 'number') {
      return error(401, 'invalid_token', 'the access token is not valid')
    }
    if (claims.exp * 1000 <= this.now()) return error(401, 'token_expired', 'the access token expired')
    // Like wxgate, the phone comes from the token, not from the session.
    return { session: { ...session, phone: claims.phone } }
  }

  private authed(header: Header | undefined, then: (session: MockSession) => Answer): Answer {
    const identity = this.identify(header)
    if ('status' in identity) return identity
    if (!identity.session) return error(401, 'missing_token', 'an access token is required')
    return then(this.sessions[identity.session.sid])
  }

  private pathOf(url: string): string {
    return url.indexOf(this.base) === 0 ? url.slice(this.base.length) || '/' : url.replace(/^[a-z]+:\/\/[^/]*/i, '')
  }

  private socket(args: SocketArgs): SocketTaskLike {
    const listeners = {
      open: [] as Array<(r: unknown) => void>,
      message: [] as Array<(m: { data: string | ArrayBuffer }) => void>,
      close: [] as Array<(e: { code?: number; reason?: string }) => void>,
      error: [] as Array<(e: { errMsg: string }) => void>,
    }
    let open = false
    const latency = this.options.latency || 0
    const path = this.pathOf(args.url.replace(/^ws/i, 'http')).split('?')[0]
    const identity = this.identify(args.header)
    const session = 'status' in identity ? undefined : identity.session
    const request: MockRequest = {
      method: 'WS',
      path,
      query: {},
      data: undefined,
      header: args.header || {},
      openid: session && session.openid,
      phone: session && session.phone,
    }
    const handler = (this.options.routes || {})[`WS ${path}`]
    const end = (code: number, reason: string) => {
      if (!open) return
      open = false
      setTimeout(() => listeners.close.forEach((f) => f({ code, reason })), latency)
    }
    const deliver = (data: string | ArrayBuffer) =>
      setTimeout(() => open && listeners.message.forEach((f) => f({ data })), latency)
    setTimeout(() => {
      if ('status' in identity) {
        listeners.error.forEach((f) => f({ errMsg: `connectSocket:fail ${identity.status}` }))
        return
      }
      open = true
      listeners.open.forEach((f) => f({}))
    }, latency)
    if (args.success) setTimeout(() => args.success && args.success({ errMsg: 'connectSocket:ok' }), 0)
    return {
      send: (a) => {
        if (!open) return a.fail && a.fail({ errMsg: 'sendSocketMessage:fail not open' })
        if (typeof handler === 'function') handler(a.data, deliver, request)
        else deliver(JSON.stringify({ echo: a.data, openid: request.openid }))
        if (a.success) a.success({})
      },
      close: (a) => {
        end(a.code === undefined ? 1000 : a.code, a.reason || '')
        if (a.success) a.success({})
      },
      onOpen: (f) => listeners.open.push(f),
      onMessage: (f) => listeners.message.push(f),
      onClose: (f) => listeners.close.push(f),
      onError: (f) => listeners.error.push(f),
    }
  }
}

function error(status: number, code: string, description: string): Answer {
  // wxgate's token refusals carry its challenge; the SDK acts on no other 401.
  const header: Header | undefined =
    status === 401 ? { 'www-authenticate': 'Bearer realm="wxgate"' } : undefined
  return { status, data: { error: code, error_description: description }, header }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return text
  }
}

function stringify(data: object): Record<string, string> {
  const out: Record<string, string> = {}
  for (const key of Object.keys(data)) out[key] = String((data as Record<string, unknown>)[key])
  return out
}

/** The mock platform `createClient({ mock })` uses. */
export function mockPlatform(options: MockOptions, client: ClientOptions, now: () => number): Platform {
  return new MockGateway(options, client, now).platform()
}
