// wxgate-miniprogram: the mini-program side of wxgate. `createClient` gives a client whose
// calls log in on first use, refresh once for everyone when the token expires, and fail
// with errors typed by wxgate's `error` code.

export {
  createClient,
  WxgateClient,
  ClientOptions,
  CallOptions,
  RequestOptions,
  Response,
  UploadOptions,
  DownloadOptions,
  Downloaded,
  EncryptedData,
  PhoneInfo,
} from './client'
export { WxgateError, NetworkError, WxgateErrorCode } from './errors'
export {
  Platform,
  PlatformFailure,
  SocketTaskLike,
  FileSystemLike,
  Header,
  RequestArgs,
  RequestResult,
  UploadArgs,
  UploadResult,
  DownloadArgs,
  DownloadResult,
  SocketArgs,
  LoginArgs,
  Callbacks,
} from './platform'
export { SocketOptions, SocketCloseEvent, WxgateSocket } from './socket'
export { SessionInfo, StorageKeys, readClaims } from './tokens'
export { MockOptions, MockRequest, MockReply, MockRoute, reply } from './mock'
