// What the SDK needs from the mini-program runtime: the `wx` functions it calls, in their own
// callback shape. `wx` itself satisfies it; so do `uni` and `Taro`, whose APIs copy it.

import { NetworkError } from './errors'

/** A failure as `wx` reports it in `fail` callbacks. */
export interface PlatformFailure {
  errMsg?: string
  errno?: number
}

export interface Callbacks<T> {
  success?: (result: T) => void
  fail?: (error: PlatformFailure) => void
}

export type Header = Record<string, string>

export interface RequestArgs extends Callbacks<RequestResult> {
  url: string
  method?: string
  data?: unknown
  header?: Header
  timeout?: number
  dataType?: string
  responseType?: string
}

export interface RequestResult {
  statusCode: number
  data: unknown
  header?: Record<string, string | string[] | undefined>
}

export interface UploadArgs extends Callbacks<UploadResult> {
  url: string
  filePath: string
  name: string
  header?: Header
  formData?: Record<string, unknown>
  timeout?: number
}

export interface UploadResult {
  statusCode: number
  /** The response body as text: `wx.uploadFile` does not parse it. */
  data: string
  header?: Record<string, string | string[] | undefined>
}

export interface DownloadArgs extends Callbacks<DownloadResult> {
  url: string
  header?: Header
  timeout?: number
  filePath?: string
}

export interface DownloadResult {
  statusCode: number
  tempFilePath?: string
  filePath?: string
  header?: Record<string, string | string[] | undefined>
}

export interface SocketArgs extends Callbacks<unknown> {
  url: string
  header?: Header
  protocols?: string[]
  timeout?: number
}

/** The part of `wx.connectSocket`'s SocketTask the SDK uses. */
export interface SocketTaskLike {
  send(args: { data: string | ArrayBuffer } & Callbacks<unknown>): void
  close(args: { code?: number; reason?: string } & Callbacks<unknown>): void
  onOpen(callback: (result: unknown) => void): void
  onMessage(callback: (message: { data: string | ArrayBuffer }) => void): void
  onClose(callback: (event: { code?: number; reason?: string }) => void): void
  onError(callback: (error: PlatformFailure) => void): void
}

export interface FileSystemLike {
  readFileSync(filePath: string, encoding: 'utf8'): string | ArrayBuffer
}

/**
 * The runtime functions the SDK calls. Pass `wx`, `uni` or `Taro` as they are, or an object
 * of your own. Each function may answer through `success`/`fail` (as `wx` does), or return a
 * promise (as `Taro`'s do); `connectSocket` may return its task or a promise of it.
 * Only `request`, `login` and the storage functions are required; the others are needed
 * only by the SDK calls that use them.
 *
 * The SDK calls them with the arguments described by `RequestArgs`, `UploadArgs`,
 * `DownloadArgs`, `SocketArgs` and `LoginArgs`, and reads the results described there.
 * The parameters are typed loosely on purpose: each platform's own typings (`wx`'s
 * `RequestOption<T>` with its method union, Taro's, uni's) must be assignable as they are.
 */
export interface Platform {
  /* eslint-disable @typescript-eslint/no-explicit-any */
  request(args: any): unknown
  login(args: any): unknown
  getStorageSync(key: string): unknown
  setStorageSync(key: string, value: any): void
  removeStorageSync(key: string): void
  uploadFile?(args: any): unknown
  downloadFile?(args: any): unknown
  connectSocket?(args: any): unknown
  checkSession?(args: any): unknown
  getFileSystemManager?(): FileSystemLike
  /* eslint-enable @typescript-eslint/no-explicit-any */
}

/** What the SDK passes to `login`. */
export interface LoginArgs extends Callbacks<{ code?: string; errMsg?: string }> {
  timeout?: number
}

declare const wx: Platform | undefined

/** The native `wx` global, when there is one. */
export function nativePlatform(): Platform | undefined {
  return typeof wx === 'undefined' ? undefined : wx
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (
    value !== null &&
    (typeof value === 'object' || typeof value === 'function') &&
    typeof (value as { then?: unknown }).then === 'function'
  )
}

/**
 * Calls a `wx`-style function and settles once, whether it answers through its callbacks,
 * a returned promise, or both (Taro does both). A failure becomes a NetworkError: these
 * functions only fail when nothing came back (a lost connection, a timeout, an abort).
 */
export function invoke<A extends Callbacks<R>, R>(
  fn: (args: A) => unknown,
  args: Omit<A, 'success' | 'fail'>,
  what: string,
): { result: Promise<R>; returned: unknown } {
  let returned: unknown
  const result = new Promise<R>((resolve, reject) => {
    const fail = (error: unknown) => reject(NetworkError.from(error, what))
    const full = { ...args, success: resolve, fail } as unknown as A
    try {
      returned = fn(full)
    } catch (error) {
      fail(error)
      return
    }
    if (isThenable(returned)) {
      returned.then((value) => {
        // A promise-style adapter resolves with the result itself; a SocketTask promise
        // (Taro's connectSocket) is handled by the caller through `returned`.
        if (what !== 'connectSocket') resolve(value as R)
      }, fail)
    }
  })
  return { result, returned }
}

/** A header's value, whatever case the platform gives its names in. */
export function headerValue(
  header: Record<string, string | string[] | undefined> | undefined,
  name: string,
): string | undefined {
  if (!header) return undefined
  const wanted = name.toLowerCase()
  for (const key of Object.keys(header)) {
    if (key.toLowerCase() === wanted) {
      const value = header[key]
      return Array.isArray(value) ? value.join(', ') : value
    }
  }
  return undefined
}
