// The two ways a call fails: an HTTP answer that is an error (WxgateError, typed by wxgate's
// `error` code), or no answer at all (NetworkError).

/** The `error` codes wxgate answers with (README "Error codes"); upstreams may add their own. */
export type WxgateErrorCode =
  | 'invalid_request'
  | 'invalid_code'
  | 'code_used'
  | 'invalid_grant'
  | 'invalid_path'
  | 'decrypt_failed'
  | 'missing_token'
  | 'invalid_token'
  | 'token_expired'
  | 'session_key_expired'
  | 'code_blocked'
  | 'app_not_allowed'
  | 'phone_required'
  | 'login_denied'
  | 'no_route'
  | 'method_not_allowed'
  | 'request_timeout'
  | 'payload_too_large'
  | 'uri_too_long'
  | 'headers_too_large'
  | 'rate_limited'
  | 'server_misconfigured'
  | 'wechat_unavailable'
  | 'wechat_timeout'
  | 'wechat_busy'
  | 'wechat_quota_exceeded'
  | 'login_hook_failed'
  | 'upstream_unavailable'
  | 'upstream_timeout'
  | 'store_unavailable'
  /** The SDK's own: the re-login cap was reached (the cause is in `cause`). */
  | 'auth_failed'
  /** Any other status without a wxgate-shaped body (an upstream's own error). */
  | 'http_error'

export interface ErrorBody {
  error?: unknown
  error_description?: unknown
}

/** An HTTP answer with an error status, from wxgate or from the service behind it. */
export class WxgateError extends Error {
  readonly name = 'WxgateError'
  /** The HTTP status (0 for `auth_failed`, which the SDK raises itself). */
  readonly status: number
  /** wxgate's `error` code, an upstream's `error` string, or `http_error`. */
  readonly code: WxgateErrorCode | string
  /** `error_description`, when the answer had one. */
  readonly description: string
  /** The `X-Request-Id` wxgate answered with: quote it when reporting a problem. */
  readonly requestId?: string
  /** Seconds to wait, from `Retry-After` (429 `rate_limited`, 503 `wechat_busy`). */
  readonly retryAfter?: number
  /** The answer's body as it came. */
  readonly data?: unknown
  /** For `auth_failed`: the error that made the SDK stop logging in again. */
  readonly cause?: WxgateError | NetworkError

  constructor(init: {
    status: number
    code: string
    description?: string
    requestId?: string
    retryAfter?: number
    data?: unknown
    cause?: WxgateError | NetworkError
  }) {
    super(init.description ? `${init.code}: ${init.description}` : init.code)
    this.status = init.status
    this.code = init.code
    this.description = init.description || ''
    this.requestId = init.requestId
    this.retryAfter = init.retryAfter
    this.data = init.data
    this.cause = init.cause
  }

  /** The error an HTTP answer stands for. */
  static fromAnswer(status: number, data: unknown, requestId?: string, retryAfter?: number) {
    const body = errorBody(data)
    const code = body && typeof body.error === 'string' ? body.error : 'http_error'
    const description =
      body && typeof body.error_description === 'string'
        ? body.error_description
        : `HTTP ${status}`
    return new WxgateError({ status, code, description, requestId, retryAfter, data })
  }
}

/** No answer: unreachable, connection lost, timed out, or the platform call failed. */
export class NetworkError extends Error {
  readonly name = 'NetworkError'
  /** The platform's `errMsg` (`request:fail timeout`, `request:fail ...`). */
  readonly errMsg: string
  readonly errno?: number
  /** True when the platform says the call timed out. */
  readonly timedOut: boolean

  constructor(errMsg: string, errno?: number) {
    super(errMsg)
    this.errMsg = errMsg
    this.errno = errno
    this.timedOut = /time ?out/i.test(errMsg)
  }

  static from(error: unknown, what: string): NetworkError {
    if (error instanceof NetworkError) return error
    const failure = (error || {}) as { errMsg?: unknown; message?: unknown; errno?: unknown }
    const text =
      typeof failure.errMsg === 'string'
        ? failure.errMsg
        : typeof failure.message === 'string'
          ? `${what}:fail ${failure.message}`
          : `${what}:fail`
    return new NetworkError(text, typeof failure.errno === 'number' ? failure.errno : undefined)
  }
}

/** The `{error, error_description}` object in an answer, parsing text bodies (uploads). */
export function errorBody(data: unknown): ErrorBody | undefined {
  let value = data
  if (typeof value === 'string') {
    try {
      value = JSON.parse(value)
    } catch {
      return undefined
    }
  }
  return value !== null && typeof value === 'object' ? (value as ErrorBody) : undefined
}

/** `Retry-After` in seconds: a number of seconds, or an HTTP date. */
export function parseRetryAfter(value: string | undefined, nowMs: number): number | undefined {
  if (!value) return undefined
  const text = value.trim()
  if (/^\d+$/.test(text)) return Number(text)
  const at = Date.parse(text)
  return Number.isNaN(at) ? undefined : Math.max(0, Math.ceil((at - nowMs) / 1000))
}
