// The session as the mini-program keeps it: tokens in storage, and what the SDK reads from
// the access token (its `exp`) without verifying it — wxgate verifies, the SDK only plans.

import { Platform } from './platform'

export interface StorageKeys {
  /** Default `wxgate_access_token`. */
  accessToken?: string
  /** Default `wxgate_refresh_token`. */
  refreshToken?: string
  /** Default `wxgate_session`: openid, session id, refresh expiry, clock offset. */
  session?: string
}

/** What the login and refresh endpoints answer. */
export interface TokenAnswer {
  access_token: string
  refresh_token?: string
  expires_in?: number
  refresh_expires_in?: number
  openid?: string
  unionid?: string
  session_id?: string
}

/** Who is logged in, as the SDK last heard from wxgate. */
export interface SessionInfo {
  openid?: string
  unionid?: string
  sessionId?: string
  /** Local clock, ms: when the refresh token stops working. */
  refreshExpiresAt?: number
  /** wxgate's clock minus the device's, ms, learnt from the last token's `iat`. */
  clockOffset?: number
}

export interface AccessClaims {
  exp?: number
  iat?: number
  sub?: string
  sid?: string
  phone?: string
}

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'

/** base64url (padded or not, `+/` accepted too) to bytes; null when it is not base64. */
function base64urlBytes(text: string): number[] | null {
  const clean = text.replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_')
  const bytes: number[] = []
  let buffer = 0
  let bits = 0
  for (let i = 0; i < clean.length; i++) {
    const value = ALPHABET.indexOf(clean.charAt(i))
    if (value < 0) return null
    buffer = (buffer << 6) | value
    bits += 6
    if (bits >= 8) {
      bits -= 8
      bytes.push((buffer >> bits) & 0xff)
    }
  }
  return bytes
}

/** UTF-8 bytes to text; mini-program runtimes do not all have TextDecoder. */
function utf8(bytes: number[]): string {
  let out = ''
  for (let i = 0; i < bytes.length; ) {
    const b = bytes[i++]
    let code: number
    if (b < 0x80) code = b
    else if (b < 0xe0) code = ((b & 0x1f) << 6) | (bytes[i++] & 0x3f)
    else if (b < 0xf0) code = ((b & 0x0f) << 12) | ((bytes[i++] & 0x3f) << 6) | (bytes[i++] & 0x3f)
    else
      code =
        ((b & 0x07) << 18) |
        ((bytes[i++] & 0x3f) << 12) |
        ((bytes[i++] & 0x3f) << 6) |
        (bytes[i++] & 0x3f)
    if (code > 0xffff) {
      code -= 0x10000
      out += String.fromCharCode(0xd800 + (code >> 10), 0xdc00 + (code & 0x3ff))
    } else {
      out += String.fromCharCode(code)
    }
  }
  return out
}

/** The claims of a JWT, unverified; null when it is not a JWT. */
export function readClaims(token: string): AccessClaims | null {
  const parts = token.split('.')
  if (parts.length !== 3) return null
  const bytes = base64urlBytes(parts[1])
  if (!bytes) return null
  try {
    const claims = JSON.parse(utf8(bytes))
    return claims !== null && typeof claims === 'object' ? (claims as AccessClaims) : null
  } catch {
    return null
  }
}

/** The stored session: every read and write goes through here, so keys live in one place. */
export class TokenStore {
  private readonly keys: Required<StorageKeys>

  constructor(
    private readonly platform: Platform,
    keys: StorageKeys | undefined,
  ) {
    this.keys = {
      accessToken: (keys && keys.accessToken) || 'wxgate_access_token',
      refreshToken: (keys && keys.refreshToken) || 'wxgate_refresh_token',
      session: (keys && keys.session) || 'wxgate_session',
    }
  }

  get access(): string | undefined {
    return this.text(this.keys.accessToken)
  }

  get refresh(): string | undefined {
    return this.text(this.keys.refreshToken)
  }

  get info(): SessionInfo {
    const value = this.read(this.keys.session)
    return value !== null && typeof value === 'object' ? (value as SessionInfo) : {}
  }

  /** Keeps a login or refresh answer. `now` is the device clock, ms. */
  save(answer: TokenAnswer, now: number): SessionInfo {
    const previous = this.info
    const claims = readClaims(answer.access_token)
    const info: SessionInfo = {
      openid: answer.openid || (claims && claims.sub) || previous.openid,
      unionid: answer.unionid || previous.unionid,
      sessionId: answer.session_id || (claims && claims.sid) || previous.sessionId,
      refreshExpiresAt:
        typeof answer.refresh_expires_in === 'number'
          ? now + answer.refresh_expires_in * 1000
          : previous.refreshExpiresAt,
      clockOffset:
        claims && typeof claims.iat === 'number' ? claims.iat * 1000 - now : previous.clockOffset,
    }
    this.write(this.keys.accessToken, answer.access_token)
    if (answer.refresh_token) this.write(this.keys.refreshToken, answer.refresh_token)
    this.write(this.keys.session, info)
    return info
  }

  /** Replaces the access token alone (`/auth/phone` mints one; the refresh token stays). */
  saveAccess(token: string, now: number): void {
    const claims = readClaims(token)
    const info = this.info
    if (claims && typeof claims.iat === 'number') info.clockOffset = claims.iat * 1000 - now
    this.write(this.keys.accessToken, token)
    this.write(this.keys.session, info)
  }

  clear(): void {
    for (const key of [this.keys.accessToken, this.keys.refreshToken, this.keys.session]) {
      try {
        this.platform.removeStorageSync(key)
      } catch {
        // Storage that cannot be cleared leaves tokens wxgate has already revoked: harmless.
      }
    }
  }

  private text(key: string): string | undefined {
    const value = this.read(key)
    return typeof value === 'string' && value !== '' ? value : undefined
  }

  private read(key: string): unknown {
    try {
      return this.platform.getStorageSync(key)
    } catch {
      return undefined
    }
  }

  private write(key: string, value: unknown): void {
    this.platform.setStorageSync(key, value)
  }
}
