// The client: every call goes through one pipeline that finds a token (logging in on first
// use), sends, and on wxgate's 401s renews the session once — one refresh or one login for
// all the calls that meet the failure at the same time — and replays the call once.

import { NetworkError, WxgateError, errorBody, parseRetryAfter } from './errors'
import {
  DownloadArgs,
  DownloadResult,
  Header,
  LoginArgs,
  Platform,
  RequestArgs,
  RequestResult,
  SocketArgs,
  UploadArgs,
  UploadResult,
  headerValue,
  invoke,
  nativePlatform,
} from './platform'
import { ManagedSocket, SocketHost, SocketOptions, WxgateSocket } from './socket'
import { SessionInfo, StorageKeys, TokenAnswer, TokenStore, readClaims } from './tokens'
import { MockOptions, mockPlatform } from './mock'

declare function setTimeout(callback: () => void, ms: number): unknown

export interface ClientOptions {
  /** Where wxgate is, e.g. `https://api.example.com` (no trailing path needed). */
  baseURL: string
  /** Sent with every login, for a gateway serving several mini-programs. */
  appid?: string
  /** `wx` (the default), `uni`, `Taro`, or any object with their functions. */
  platform?: Platform
  /** Storage keys for the tokens and the session record. */
  storageKeys?: StorageKeys
  /** wxgate's `[auth] endpoint_prefix`. Default `/auth`. */
  authPrefix?: string
  /**
   * The header that carries the token, as in wxgate's `[auth] token_headers`. Default
   * `Authorization` (`Bearer <token>`); any other header gets the token alone.
   */
  tokenHeader?: string
  /** Headers added to every call (the call's own headers win). */
  header?: Header
  /** Milliseconds before a call with no answer fails with a NetworkError (default: the platform's). */
  timeout?: number
  /**
   * Seconds before an access token's `exp` at which it is refreshed instead of sent. Default
   * 60, and never more than half the token's lifetime.
   */
  refreshBefore?: number
  /** Silent re-logins in a row (without an accepted call between them) before giving up. Default 2. */
  reloginLimit?: number
  /** Ask `wx.checkSession` at start-up whether WeChat's session_key is still valid. Default true. */
  checkSession?: boolean
  /** The device clock in ms (tests inject one). Default `Date.now`. */
  now?: () => number
  /** No network: canned logins and answers, for writing pages before a gateway exists. */
  mock?: MockOptions | boolean
  /** After every successful login (the first, and silent re-logins). */
  onLogin?: (session: SessionInfo) => void
  /** After `logout()`, and when the SDK gives a session up (`auth_failed`). */
  onLogout?: (event: { reason: 'logout' | 'auth_failed' }) => void
  /**
   * When logging in cannot help: the re-login cap was reached (`auth_failed`), or a login
   * was refused (`login_denied`, `code_blocked`). A typical app shows its login page.
   */
  onAuthFailed?: (error: WxgateError) => void
  /**
   * A call met 403 `phone_required`. Show your `<button open-type="getPhoneNumber">` and
   * resolve with `e.detail.code`: the SDK sends it to `/auth/phone` and replays the call.
   * Resolve with nothing (the user declined) and the call fails with `phone_required`.
   */
  onPhoneRequired?: (error: WxgateError) => Promise<string | null | undefined | void> | string | null | undefined | void
}

export interface CallOptions {
  /** Query parameters for GET/HEAD/DELETE (as `wx.request` sends them), the body otherwise. */
  data?: unknown
  header?: Header
  timeout?: number
  /** `false`: send no token and never log in (public routes). Default true. */
  auth?: boolean
  /** Passed to `wx.request` (`json` by default, `text`, or `arraybuffer` with responseType). */
  dataType?: string
  responseType?: string
}

export interface RequestOptions extends CallOptions {
  /** A path under `baseURL`, or a full URL (a token is only ever sent to `baseURL`'s origin). */
  path: string
  method?: string
}

export interface Response<T> {
  status: number
  data: T
  header: Record<string, string | string[] | undefined>
  /** wxgate's `X-Request-Id`. */
  requestId?: string
}

export interface UploadOptions {
  filePath: string
  /** The multipart field name of the file. */
  name: string
  formData?: Record<string, unknown>
  header?: Header
  timeout?: number
}

export interface DownloadOptions {
  header?: Header
  timeout?: number
  /** Where to keep the file (`wx.downloadFile`'s `filePath`). */
  filePath?: string
}

export interface Downloaded {
  status: number
  tempFilePath?: string
  filePath?: string
}

export interface EncryptedData {
  encryptedData: string
  iv: string
  rawData?: string
  signature?: string
}

export interface PhoneInfo {
  phoneNumber: string
  purePhoneNumber: string
  countryCode: string | number
  watermark?: { appid: string; timestamp: number }
}

/** One answer from the platform, whatever the transport. */
interface Answer {
  status: number
  data: unknown
  header?: Record<string, string | string[] | undefined>
  file?: DownloadResult
}

/** How to send one call; `send` is called again for each replay. */
interface Exchange {
  idempotent: boolean
  send(token: string | undefined): Promise<Answer>
}

/** A renewed session: the token to replay with, and whether a login made it. */
interface Renewal {
  token: string
  relogged: boolean
}

type Renew = 'refresh' | 'relogin' | 'login'

const IDEMPOTENT = ['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']

/** Re-throws where the runtime reports it, so an app's callback cannot break the SDK. */
function report(error: unknown): void {
  setTimeout(() => {
    throw error
  }, 0)
}

function callSafely<A>(callback: ((arg: A) => void) | undefined, arg: A): void {
  if (!callback) return
  try {
    callback(arg)
  } catch (error) {
    report(error)
  }
}

function parseText(data: unknown): unknown {
  if (typeof data !== 'string') return data
  try {
    return JSON.parse(data)
  } catch {
    return data
  }
}

function isTokenAnswer(data: unknown): data is TokenAnswer {
  return (
    data !== null &&
    typeof data === 'object' &&
    typeof (data as TokenAnswer).access_token === 'string'
  )
}

function originOf(url: string): string {
  const match = /^([a-z][a-z0-9+.-]*:\/\/[^/?#]*)/i.exec(url)
  return match ? match[1].toLowerCase() : ''
}

export class WxgateClient {
  private readonly platform: Platform
  private readonly store: TokenStore
  private readonly now: () => number
  private readonly base: string
  private readonly authPrefix: string
  private readonly reloginLimit: number
  /** The one login or refresh in flight; every call that needs a new token waits for it. */
  private pending: Promise<Renewal> | undefined
  private phonePending: Promise<string> | undefined
  /** Silent re-logins since wxgate last accepted a token. */
  private reloginStreak = 0
  /** Whether onAuthFailed was told about the current streak. */
  private gaveUp = false
  /** Resolves true when `wx.checkSession` said WeChat's session_key is stale. */
  private sessionKeyStale: Promise<boolean>
  private readonly sockets: ManagedSocket[] = []

  constructor(private readonly options: ClientOptions) {
    if (!options || typeof options.baseURL !== 'string' || options.baseURL === '') {
      throw new TypeError('createClient: `baseURL` is required')
    }
    this.now = options.now || (() => Date.now())
    const mock = options.mock
    const platform = mock
      ? mockPlatform(mock === true ? {} : mock, options, this.now)
      : options.platform || nativePlatform()
    if (!platform) {
      throw new TypeError('createClient: no `wx` here; pass `platform` (uni, Taro, or your own)')
    }
    this.platform = platform
    this.store = new TokenStore(platform, options.storageKeys)
    this.base = options.baseURL.replace(/\/+$/, '')
    this.authPrefix = (options.authPrefix || '/auth').replace(/\/+$/, '')
    this.reloginLimit = options.reloginLimit === undefined ? 2 : options.reloginLimit
    this.sessionKeyStale = this.askCheckSession()
  }

  // ---- business calls ----

  /** Any method; resolves with the whole answer, rejects on a status of 400 or more. */
  async request<T = unknown>(options: RequestOptions): Promise<Response<T>> {
    const method = (options.method || 'GET').toUpperCase()
    const url = this.url(options.path)
    const exchange: Exchange = {
      idempotent: IDEMPOTENT.indexOf(method) >= 0,
      send: (token) =>
        this.send({
          url,
          method,
          data: options.data,
          header: this.headers(options.header, token),
          timeout: options.timeout || this.options.timeout,
          dataType: options.dataType,
          responseType: options.responseType,
        }),
    }
    const withToken = options.auth !== false && originOf(url) === originOf(this.base)
    const answer = withToken ? await this.authorized(exchange) : await this.anonymous(exchange)
    if (answer.status >= 400) throw this.errorOf(answer)
    return {
      status: answer.status,
      data: answer.data as T,
      header: answer.header || {},
      requestId: headerValue(answer.header, 'x-request-id'),
    }
  }

  async get<T = unknown>(path: string, options?: CallOptions): Promise<T> {
    return (await this.request<T>({ ...options, path, method: 'GET' })).data
  }

  async delete<T = unknown>(path: string, options?: CallOptions): Promise<T> {
    return (await this.request<T>({ ...options, path, method: 'DELETE' })).data
  }

  async post<T = unknown>(path: string, data?: unknown, options?: CallOptions): Promise<T> {
    return (await this.request<T>({ ...options, path, data, method: 'POST' })).data
  }

  async put<T = unknown>(path: string, data?: unknown, options?: CallOptions): Promise<T> {
    return (await this.request<T>({ ...options, path, data, method: 'PUT' })).data
  }

  async patch<T = unknown>(path: string, data?: unknown, options?: CallOptions): Promise<T> {
    return (await this.request<T>({ ...options, path, data, method: 'PATCH' })).data
  }

  /** `wx.uploadFile` with the token; the answer's JSON body (text when it is not JSON). */
  async upload<T = unknown>(path: string, options: UploadOptions): Promise<T> {
    const uploadFile = this.need('uploadFile')
    const url = this.url(path)
    const answer = await this.authorized({
      // A POST of a file: never sent twice after a lost answer.
      idempotent: false,
      send: async (token) => {
        const result = await invoke<UploadArgs, UploadResult>(
          uploadFile,
          {
            url,
            filePath: options.filePath,
            name: options.name,
            formData: options.formData,
            header: this.headers(options.header, token),
            timeout: options.timeout || this.options.timeout,
          },
          'uploadFile',
        ).result
        return { status: result.statusCode, data: parseText(result.data), header: result.header }
      },
    })
    if (answer.status >= 400) throw this.errorOf(answer)
    return answer.data as T
  }

  /** `wx.downloadFile` with the token, through the same renewals as requests. */
  async download(path: string, options?: DownloadOptions): Promise<Downloaded> {
    const downloadFile = this.need('downloadFile')
    const url = this.url(path)
    const opts = options || {}
    const answer = await this.authorized({
      idempotent: true,
      send: async (token) => {
        const file = await invoke<DownloadArgs, DownloadResult>(
          downloadFile,
          {
            url,
            header: this.headers(opts.header, token),
            timeout: opts.timeout || this.options.timeout,
            filePath: opts.filePath,
          },
          'downloadFile',
        ).result
        // An error answer is saved as the file: read it for wxgate's `error` code.
        const data = file.statusCode >= 400 ? this.readSmallFile(file) : undefined
        return { status: file.statusCode, data, header: file.header, file }
      },
    })
    if (answer.status >= 400) throw this.errorOf(answer)
    const file = answer.file || { statusCode: answer.status }
    return { status: file.statusCode, tempFilePath: file.tempFilePath, filePath: file.filePath }
  }

  /**
   * `wx.connectSocket` with the token; resolves once the socket is open. The SDK closes it
   * when its token expires (4001 `token_expired`), on logout (4000 `logged_out`) and when
   * the session is replaced (4003 `session_replaced`); with `reconnect` (the default) it
   * then opens a new one with a fresh token, except after logout.
   */
  async socket(path: string, options?: SocketOptions): Promise<WxgateSocket> {
    const connectSocket = this.need('connectSocket')
    const socket = new ManagedSocket(this.socketHost(connectSocket), path, options || {})
    this.sockets.push(socket)
    try {
      await socket.open()
    } catch (error) {
      this.forgetSocket(socket)
      throw error
    }
    return socket
  }

  // ---- wxgate's endpoints ----

  /**
   * The getPhoneNumber button's `e.detail.code` to `/auth/phone`: the session gets the number,
   * and the new access token carrying it is kept. Resolves with WeChat's `phone_info`.
   */
  async phone(code: string): Promise<PhoneInfo> {
    const answer = await this.authorized(this.endpoint('POST', '/phone', { code }))
    if (answer.status >= 400) throw this.errorOf(answer)
    const data = answer.data as { access_token?: unknown; phone_info?: PhoneInfo }
    if (typeof data.access_token === 'string') this.store.saveAccess(data.access_token, this.now())
    return data.phone_info as PhoneInfo
  }

  /**
   * User data (`encryptedData`, `iv`, and `rawData`/`signature` when given) opened by
   * `/auth/decrypt` with the session's key. When `wx.checkSession` said at start-up that
   * WeChat's session_key is stale, this logs in again first. A 401 `session_key_expired`
   * is thrown as it is, and the next decrypt logs in first: ask the user for the data again.
   */
  async decrypt<T = Record<string, unknown>>(data: EncryptedData): Promise<T> {
    await this.ensureSessionKey()
    const answer = await this.authorized(this.endpoint('POST', '/decrypt', data))
    if (answer.status >= 400) {
      const error = this.errorOf(answer)
      if (error.code === 'session_key_expired') this.sessionKeyStale = Promise.resolve(true)
      throw error
    }
    return answer.data as T
  }

  /**
   * Logs in again when WeChat said the session_key is stale (`wx.checkSession` at start-up,
   * or a `session_key_expired`). Call it before showing a button whose data you will
   * decrypt, so WeChat seals the data with the key wxgate holds.
   */
  async ensureSessionKey(): Promise<void> {
    if (await this.sessionKeyStale) await this.freshLogin()
  }

  /** `GET /auth/session`: who wxgate says is logged in. */
  async session(): Promise<{
    openid: string
    unionid?: string
    appid: string
    session_id: string
    expires_at: number
    phone?: string
    claims?: Record<string, unknown>
  }> {
    const answer = await this.authorized(this.endpoint('GET', '/session', undefined))
    if (answer.status >= 400) throw this.errorOf(answer)
    return answer.data as never
  }

  /**
   * A fresh login now (`wx.login` → `/auth/login`), after any login or refresh in flight;
   * calls made meanwhile wait for it. Also what an app's login page calls after
   * `onAuthFailed`: it starts the re-login count again.
   */
  async login(): Promise<SessionInfo> {
    this.reloginStreak = 0
    this.gaveUp = false
    await this.freshLogin()
    return this.store.info
  }

  /**
   * `/auth/logout` (every token of the session stops working at wxgate), then the stored
   * session is forgotten and sockets are closed — even when wxgate cannot be reached.
   */
  async logout(): Promise<void> {
    try {
      while (this.pending) await this.pending.catch(() => undefined)
      let token = this.store.access
      // An expired token cannot log out: refresh it first (never log in just to log out).
      if (token && this.secondsLeft(token) <= 0) token = await this.refreshOnly()
      if (token) {
        const answer = await this.send(this.endpointArgs('POST', '/logout', undefined, token))
        if (this.authFailure(answer) === 'refresh') {
          const fresh = await this.refreshOnly()
          if (fresh) await this.send(this.endpointArgs('POST', '/logout', undefined, fresh))
        }
      }
    } catch {
      // Offline: the tokens are forgotten here anyway and expire at wxgate on their own.
    } finally {
      this.store.clear()
      this.closeSockets(4000, 'logged_out', false)
      callSafely(this.options.onLogout, { reason: 'logout' as const })
    }
  }

  /**
   * Whether calls can go out without `wx.login`: the stored access token has not expired
   * (by its `exp`), or the refresh token has not.
   */
  isLoggedIn(): boolean {
    const access = this.store.access
    if (access && this.secondsLeft(access) > 0) return true
    const info = this.store.info
    return !!this.store.refresh && (info.refreshExpiresAt || 0) > this.now()
  }

  /** An access token that is not known to be expired (logging in or refreshing if needed). */
  accessToken(): Promise<string> {
    return this.validToken()
  }

  /** What the SDK knows of the session: openid, unionid, session id. */
  get sessionInfo(): SessionInfo {
    return this.store.info
  }

  // ---- the pipeline ----

  /** Sends with a token and renews the session on wxgate's 401s, once of each kind. */
  private async authorized(exchange: Exchange): Promise<Answer> {
    let token: string = await this.validToken()
    let refreshed = false
    let relogged = false
    let retried = false
    let phoned = false
    for (;;) {
      let answer: Answer
      try {
        answer = await exchange.send(token)
      } catch (error) {
        // Only a call that may safely happen twice is sent again after a lost answer.
        if (error instanceof NetworkError && exchange.idempotent && !retried) {
          retried = true
          continue
        }
        throw error
      }
      const failure = this.authFailure(answer)
      if (failure === 'refresh' && !refreshed) {
        refreshed = true
        const renewal = await this.renew('refresh', token, this.errorOf(answer))
        relogged = relogged || renewal.relogged
        token = renewal.token
        continue
      }
      if (failure && !relogged) {
        relogged = true
        token = (await this.renew('relogin', token, this.errorOf(answer))).token
        continue
      }
      if (!failure) {
        // wxgate took the token: the session works, so the re-login count starts again.
        this.reloginStreak = 0
        this.gaveUp = false
      }
      if (!phoned && this.options.onPhoneRequired && this.isPhoneRequired(answer)) {
        phoned = true
        token = await this.obtainPhone(this.errorOf(answer))
        continue
      }
      return answer
    }
  }

  private async anonymous(exchange: Exchange): Promise<Answer> {
    try {
      return await exchange.send(undefined)
    } catch (error) {
      if (error instanceof NetworkError && exchange.idempotent) return exchange.send(undefined)
      throw error
    }
  }

  /** A token not known to be expired: the stored one, or one from the login/refresh in flight. */
  private async validToken(): Promise<string> {
    if (this.pending) return (await this.pending).token
    const access = this.store.access
    if (access && this.secondsLeft(access) > this.margin(access)) return access
    if (this.store.refresh) return (await this.renew('refresh', access)).token
    return (await this.renew('login', access)).token
  }

  /**
   * Starts one renewal, or joins the one in flight. `from` is the token that failed: when
   * the stored token is already another one, someone renewed meanwhile and it is used as is.
   */
  private renew(kind: Renew, from: string | undefined, cause?: WxgateError): Promise<Renewal> {
    if (this.pending) return this.pending
    const current = this.store.access
    if (from !== undefined && current !== undefined && current !== from) {
      return Promise.resolve({ token: current, relogged: false })
    }
    const run =
      kind === 'refresh'
        ? this.refreshOrRelogin(cause)
        : kind === 'relogin'
          ? this.relogin(cause)
          : this.loginFlow().then((token) => ({ token, relogged: false }))
    this.pending = this.track(run)
    return this.pending
  }

  private track(run: Promise<Renewal>): Promise<Renewal> {
    return run.then(
      (renewal) => {
        this.pending = undefined
        return renewal
      },
      (error) => {
        this.pending = undefined
        throw error
      },
    )
  }

  /** A login even when a token is stored; waits for any renewal in flight first. */
  private async freshLogin(): Promise<void> {
    while (this.pending) await this.pending.catch(() => undefined)
    this.pending = this.track(this.loginFlow().then((token) => ({ token, relogged: true })))
    await this.pending
  }

  private async refreshOrRelogin(cause?: WxgateError): Promise<Renewal> {
    const refreshToken = this.store.refresh
    if (!refreshToken) return this.relogin(cause)
    let answer: Answer
    try {
      answer = await this.postRefresh(refreshToken)
    } catch (error) {
      // The answer may be lost after wxgate spent the refresh token; sending it again would
      // be a replay that revokes the session. A new login is always safe.
      if (error instanceof NetworkError) return this.relogin(cause)
      throw error
    }
    if (answer.status === 200 && isTokenAnswer(answer.data)) {
      return { token: answer.data.access_token, relogged: false }
    }
    // 400 invalid_grant: spent, expired or revoked (or storage held garbage): log in again.
    if (answer.status === 400) return this.relogin(this.errorOf(answer))
    throw this.errorOf(answer)
  }

  /** One `/auth/refresh` with the stored refresh token; a good answer is kept. */
  private async postRefresh(refreshToken: string): Promise<Answer> {
    const answer = await this.send(
      this.endpointArgs('POST', '/refresh', { refresh_token: refreshToken }, undefined),
    )
    if (answer.status === 200 && isTokenAnswer(answer.data)) this.store.save(answer.data, this.now())
    return answer
  }

  /** A refreshed access token, or undefined when the session cannot be refreshed. */
  private async refreshOnly(): Promise<string | undefined> {
    const refreshToken = this.store.refresh
    if (!refreshToken) return undefined
    const answer = await this.postRefresh(refreshToken)
    return isTokenAnswer(answer.data) && answer.status === 200 ? answer.data.access_token : undefined
  }

  private async relogin(cause?: WxgateError): Promise<Renewal> {
    if (this.reloginStreak >= this.reloginLimit) {
      const error = new WxgateError({
        status: 0,
        code: 'auth_failed',
        description: `gave up after ${this.reloginStreak} logins in a row that wxgate refused`,
        cause,
      })
      if (!this.gaveUp) {
        this.gaveUp = true
        callSafely(this.options.onAuthFailed, error)
        callSafely(this.options.onLogout, { reason: 'auth_failed' as const })
      }
      throw error
    }
    this.reloginStreak++
    try {
      return { token: await this.loginFlow(), relogged: true }
    } catch (error) {
      // Being offline is not the session's fault: it does not count towards the cap.
      if (error instanceof NetworkError) this.reloginStreak--
      throw error
    }
  }

  /** `wx.login` and `/auth/login`; a code wxgate calls used is replaced once. */
  private async loginFlow(): Promise<string> {
    for (let attempt = 0; ; attempt++) {
      const code = await this.wxLogin()
      const data: Record<string, string> = { code }
      if (this.options.appid) data.appid = this.options.appid
      const answer = await this.send(this.endpointArgs('POST', '/login', data, undefined))
      if (answer.status === 200 && isTokenAnswer(answer.data)) {
        const replaced = this.store.info.sessionId
        const info = this.store.save(answer.data, this.now())
        // A fresh wx.login gave wxgate WeChat's current session_key.
        this.sessionKeyStale = Promise.resolve(false)
        // Sockets opened with the old session's identity reconnect with the new one.
        if (replaced && replaced !== info.sessionId) this.closeSockets(4003, 'session_replaced', true)
        callSafely(this.options.onLogin, info)
        return answer.data.access_token
      }
      const error = this.errorOf(answer)
      if (error.code === 'code_used' && attempt === 0) continue
      if (error.code === 'login_denied' || error.code === 'code_blocked') {
        callSafely(this.options.onAuthFailed, error)
      }
      throw error
    }
  }

  private async wxLogin(): Promise<string> {
    const result = await invoke<LoginArgs, { code?: string; errMsg?: string }>(
      (args) => this.platform.login(args),
      { timeout: this.options.timeout },
      'login',
    ).result
    if (!result || typeof result.code !== 'string' || result.code === '') {
      throw new NetworkError((result && result.errMsg) || 'login:fail no code')
    }
    return result.code
  }

  /** One phone flow for every call that met `phone_required` at the same time. */
  private obtainPhone(cause: WxgateError): Promise<string> {
    if (!this.phonePending) {
      const hook = this.options.onPhoneRequired
      const flow = Promise.resolve(hook && hook(cause)).then(async (code) => {
        if (typeof code !== 'string' || code === '') throw cause
        await this.phone(code)
        return this.validToken()
      })
      this.phonePending = flow.then(
        (token) => {
          this.phonePending = undefined
          return token
        },
        (error) => {
          this.phonePending = undefined
          throw error
        },
      )
    }
    return this.phonePending
  }

  // ---- what a 401 means ----

  /**
   * `refresh` for wxgate's 401 `token_expired`, `relogin` for its other 401s (the token is
   * not one wxgate accepts any more: revoked, unknown session, retired key), nothing for
   * anything else — including an upstream's own 401, told apart by wxgate's challenge.
   */
  private authFailure(answer: Answer): 'refresh' | 'relogin' | undefined {
    if (answer.status !== 401) return undefined
    // wxgate's token 401s carry its challenge. Where the platform shows no headers at all
    // (`wx.uploadFile` and `wx.downloadFile` may not), the body has to do.
    const challenge = headerValue(answer.header, 'www-authenticate')
    const headersKnown = !!answer.header && Object.keys(answer.header).length > 0
    if (headersKnown && !(challenge && /realm="wxgate"/i.test(challenge))) return undefined
    const body = errorBody(answer.data)
    const code = body && body.error
    if (code === 'token_expired') return 'refresh'
    if (code === 'invalid_token' || code === 'missing_token') return 'relogin'
    // No readable body (a download saved it where the SDK cannot read): a refresh falls
    // back to a login when the session is gone, so it covers both.
    if (body === undefined) return 'refresh'
    return undefined
  }

  private isPhoneRequired(answer: Answer): boolean {
    const body = errorBody(answer.data)
    return answer.status === 403 && !!body && body.error === 'phone_required'
  }

  // ---- plumbing ----

  private async send(args: Omit<RequestArgs, 'success' | 'fail'>): Promise<Answer> {
    const result = await invoke<RequestArgs, RequestResult>(
      (a) => this.platform.request(a),
      args,
      'request',
    ).result
    return { status: result.statusCode, data: result.data, header: result.header }
  }

  private endpoint(method: string, name: string, data: unknown): Exchange {
    return {
      idempotent: method === 'GET',
      send: (token) => this.send(this.endpointArgs(method, name, data, token)),
    }
  }

  private endpointArgs(
    method: string,
    name: string,
    data: unknown,
    token: string | undefined,
  ): Omit<RequestArgs, 'success' | 'fail'> {
    const header = this.headers(undefined, token)
    if (method !== 'GET') header['content-type'] = 'application/json'
    return {
      url: this.base + this.authPrefix + name,
      method,
      data,
      header,
      timeout: this.options.timeout,
    }
  }

  private headers(own: Header | undefined, token: string | undefined): Header {
    const header: Header = { ...(this.options.header || {}), ...(own || {}) }
    if (token !== undefined) {
      const name = this.options.tokenHeader || 'Authorization'
      header[name] = name.toLowerCase() === 'authorization' ? `Bearer ${token}` : token
    }
    return header
  }

  private url(path: string): string {
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(path)) return path
    return this.base + (path.charAt(0) === '/' ? path : `/${path}`)
  }

  private errorOf(answer: Answer): WxgateError {
    return WxgateError.fromAnswer(
      answer.status,
      answer.data,
      headerValue(answer.header, 'x-request-id'),
      parseRetryAfter(headerValue(answer.header, 'retry-after'), this.now()),
    )
  }

  private need<K extends 'uploadFile' | 'downloadFile' | 'connectSocket'>(
    name: K,
  ): NonNullable<Platform[K]> {
    const fn = this.platform[name]
    if (typeof fn !== 'function') throw new TypeError(`the platform has no ${name}`)
    return ((args: never) => (fn as (a: never) => unknown).call(this.platform, args)) as never
  }

  private readSmallFile(file: DownloadResult): unknown {
    const path = file.tempFilePath || file.filePath
    const fs = this.platform.getFileSystemManager && this.platform.getFileSystemManager()
    if (!path || !fs) return undefined
    try {
      return parseText(fs.readFileSync(path, 'utf8'))
    } catch {
      return undefined
    }
  }

  /** Seconds until the token's `exp` on wxgate's clock (Infinity when it has none). */
  private secondsLeft(token: string): number {
    const claims = readClaims(token)
    if (!claims || typeof claims.exp !== 'number') return Infinity
    const serverNow = this.now() + (this.store.info.clockOffset || 0)
    return claims.exp - serverNow / 1000
  }

  /** How early a token is refreshed: `refreshBefore`, at most half its lifetime. */
  private margin(token: string): number {
    const claims = readClaims(token)
    const wanted = this.options.refreshBefore === undefined ? 60 : this.options.refreshBefore
    if (!claims || typeof claims.exp !== 'number' || typeof claims.iat !== 'number') return wanted
    return Math.min(wanted, (claims.exp - claims.iat) / 2)
  }

  private askCheckSession(): Promise<boolean> {
    const checkSession = this.platform.checkSession
    if (this.options.checkSession === false || typeof checkSession !== 'function') {
      return Promise.resolve(false)
    }
    return invoke((args) => checkSession.call(this.platform, args), {}, 'checkSession').result.then(
      () => false,
      () => true,
    )
  }

  private socketHost(connectSocket: (args: SocketArgs) => unknown): SocketHost {
    return {
      connect: async (path, options) => {
        const token = await this.validToken()
        const url = this.url(path).replace(/^http(s?):\/\//i, 'ws$1://')
        return {
          token,
          args: {
            url,
            header: this.headers(options.header, token),
            protocols: options.protocols,
            timeout: options.timeout || this.options.timeout,
          },
          connectSocket,
        }
      },
      secondsLeft: (token) => this.secondsLeft(token),
      forget: (socket) => this.forgetSocket(socket),
    }
  }

  private forgetSocket(socket: ManagedSocket): void {
    const at = this.sockets.indexOf(socket)
    if (at >= 0) this.sockets.splice(at, 1)
  }

  private closeSockets(code: number, reason: string, reconnect: boolean): void {
    for (const socket of this.sockets.slice()) socket.closeFor(code, reason, reconnect)
  }
}

/** A client for one gateway. */
export function createClient(options: ClientOptions): WxgateClient {
  return new WxgateClient(options)
}
