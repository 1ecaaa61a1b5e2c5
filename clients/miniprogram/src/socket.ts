// A WebSocket opened with the session's token. wxgate checks the token once, at the
// upgrade; after that the tunnel stays open whatever happens to the token, so the SDK
// closes the socket itself when the token expires or the session ends.

import { NetworkError } from './errors'
import { Header, SocketArgs, SocketTaskLike, invoke } from './platform'

declare function setTimeout(callback: () => void, ms: number): unknown
declare function clearTimeout(handle: unknown): void

export interface SocketOptions {
  header?: Header
  protocols?: string[]
  timeout?: number
  /**
   * After the SDK closed the socket because its token expired (4001) or the session was
   * replaced by a new login (4003), open a new one with a fresh token. Default true.
   */
  reconnect?: boolean
}

export interface SocketCloseEvent {
  code: number
  reason: string
  /** True when the SDK is opening a new socket in its place. */
  reconnecting: boolean
}

export interface WxgateSocket {
  readonly readyState: 'connecting' | 'open' | 'closed'
  send(data: string | ArrayBuffer): Promise<void>
  /** Closes for good (no reconnect). */
  close(code?: number, reason?: string): void
  /** Each time a socket opens: the first time, and after each reconnect. */
  onOpen(callback: () => void): void
  onMessage(callback: (data: string | ArrayBuffer) => void): void
  onClose(callback: (event: SocketCloseEvent) => void): void
  onError(callback: (error: NetworkError) => void): void
}

/** What a socket needs from its client. */
export interface SocketHost {
  connect(
    path: string,
    options: SocketOptions,
  ): Promise<{
    token: string
    args: Omit<SocketArgs, 'success' | 'fail'>
    connectSocket: (args: SocketArgs) => unknown
  }>
  secondsLeft(token: string): number
  forget(socket: ManagedSocket): void
}

interface Ending {
  code: number
  reason: string
  reconnect: boolean
}

/** setTimeout's limit (about 24.8 days); longer waits are not needed for a token. */
const MAX_DELAY = 2147483647
/**
 * wxgate itself closes a tunnel, without a close frame, once its token expires. The SDK
 * closes this much earlier so that its own close, with a reason the app can read, comes
 * first; a close from the far end this near the end of the token counts as expiry too.
 */
const EXPIRY_MARGIN_MS = 1000

export class ManagedSocket implements WxgateSocket {
  readyState: 'connecting' | 'open' | 'closed' = 'connecting'
  private task: SocketTaskLike | undefined
  private timer: unknown
  /** The token the current task was opened with. */
  private token: string | undefined
  /** Set when the SDK or the app closes the socket: what to report, and what follows. */
  private ending: Ending | undefined
  /** Events of a task that was replaced are ignored. */
  private generation = 0
  private readonly listeners = {
    open: [] as Array<() => void>,
    message: [] as Array<(data: string | ArrayBuffer) => void>,
    close: [] as Array<(event: SocketCloseEvent) => void>,
    error: [] as Array<(error: NetworkError) => void>,
  }

  constructor(
    private readonly host: SocketHost,
    private readonly path: string,
    private readonly options: SocketOptions,
  ) {}

  /** Connects with a fresh token; resolves when the socket is open. */
  async open(): Promise<void> {
    const generation = ++this.generation
    this.readyState = 'connecting'
    this.task = undefined
    const { token, args, connectSocket } = await this.host.connect(this.path, this.options)
    if (this.ending) return this.abandoned()
    const { result, returned } = invoke<SocketArgs, unknown>(connectSocket, args, 'connectSocket')
    // `wx` and `uni` return the task, Taro a promise of it; `fail` means it never started.
    const failed = result.then(
      () => new Promise<never>(() => undefined),
      (error: unknown) => Promise.reject(error),
    )
    const task = (await Promise.race([Promise.resolve(returned), failed])) as SocketTaskLike
    if (!task || typeof task.onOpen !== 'function') {
      throw new NetworkError('connectSocket:fail the platform returned no SocketTask')
    }
    this.task = task
    await new Promise<void>((resolve, reject) => {
      let opened = false
      failed.catch(reject)
      const current = () => generation === this.generation
      task.onOpen(() => {
        if (!current()) return
        opened = true
        this.readyState = 'open'
        this.token = token
        this.schedule(token)
        resolve()
        if (this.ending) {
          this.shut()
          return
        }
        this.listeners.open.forEach((callback) => callback())
      })
      task.onMessage((message) => {
        if (current()) this.listeners.message.forEach((callback) => callback(message.data))
      })
      task.onError((failure) => {
        if (!current()) return
        const error = NetworkError.from(failure, 'connectSocket')
        if (opened) this.listeners.error.forEach((callback) => callback(error))
        else reject(error)
      })
      task.onClose((event) => {
        if (!current()) return
        if (!opened) {
          reject(new NetworkError(`connectSocket:fail closed before it opened (${event.code})`))
        }
        this.closed(event)
      })
    })
  }

  send(data: string | ArrayBuffer): Promise<void> {
    const task = this.task
    if (!task || this.readyState !== 'open') {
      return Promise.reject(new NetworkError('sendSocketMessage:fail the socket is not open'))
    }
    return invoke((args) => task.send(args as never), { data }, 'sendSocketMessage').result.then(
      () => undefined,
    )
  }

  close(code?: number, reason?: string): void {
    this.closeFor(code === undefined ? 1000 : code, reason || '', false)
  }

  /** The SDK's close: `reconnect` is honoured only when the app allowed reconnecting. */
  closeFor(code: number, reason: string, reconnect: boolean): void {
    if (this.readyState === 'closed' || this.ending) return
    this.ending = { code, reason, reconnect: reconnect && this.options.reconnect !== false }
    this.clearTimer()
    if (this.task && this.readyState === 'open') this.shut()
    // Still connecting: `open` closes the task as soon as there is one.
  }

  onOpen(callback: () => void): void {
    this.listeners.open.push(callback)
  }

  onMessage(callback: (data: string | ArrayBuffer) => void): void {
    this.listeners.message.push(callback)
  }

  onClose(callback: (event: SocketCloseEvent) => void): void {
    this.listeners.close.push(callback)
  }

  onError(callback: (error: NetworkError) => void): void {
    this.listeners.error.push(callback)
  }

  private shut(): void {
    const task = this.task
    const ending = this.ending
    if (!task || !ending) return
    try {
      task.close({ code: ending.code, reason: ending.reason })
    } catch {
      this.closed({})
    }
  }

  /** The socket was closed before its task existed. */
  private abandoned(): void {
    this.closed({})
  }

  private closed(event: { code?: number; reason?: string }): void {
    this.clearTimer()
    this.readyState = 'closed'
    this.generation++
    const ending = this.ending || this.expiredAtTheFarEnd()
    this.ending = undefined
    const report: SocketCloseEvent = ending
      ? { code: ending.code, reason: ending.reason, reconnecting: ending.reconnect }
      : { code: event.code === undefined ? 1006 : event.code, reason: event.reason || '', reconnecting: false }
    this.listeners.close.forEach((callback) => callback(report))
    if (report.reconnecting) {
      this.open().catch((error: unknown) => {
        const failure = NetworkError.from(error, 'connectSocket')
        this.listeners.error.forEach((callback) => callback(failure))
        this.readyState = 'closed'
        this.host.forget(this)
        const gaveUp = { code: 1006, reason: 'reconnect_failed', reconnecting: false }
        this.listeners.close.forEach((callback) => callback(gaveUp))
      })
    } else {
      this.host.forget(this)
    }
  }

  /** A close the SDK did not ask for, when the token is (all but) expired: wxgate's. */
  private expiredAtTheFarEnd(): Ending | undefined {
    const token = this.token
    if (token === undefined || this.host.secondsLeft(token) * 1000 > EXPIRY_MARGIN_MS) return undefined
    return { code: 4001, reason: 'token_expired', reconnect: this.options.reconnect !== false }
  }

  /** Closes the socket when its token expires, so nothing runs on an expired identity. */
  private schedule(token: string): void {
    this.clearTimer()
    const seconds = this.host.secondsLeft(token)
    if (!isFinite(seconds)) return
    const delay = Math.min(MAX_DELAY, Math.max(1000, Math.ceil(seconds * 1000) - EXPIRY_MARGIN_MS))
    this.timer = setTimeout(() => {
      this.timer = undefined
      this.closeFor(4001, 'token_expired', true)
    }, delay)
  }

  private clearTimer(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer)
      this.timer = undefined
    }
  }
}
