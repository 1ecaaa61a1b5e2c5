//! wxgate: an authentication gateway for WeChat mini-programs.
//!
//! # Layout
//!
//! The request path, in order, one module per stage:
//!
//! | stage | module |
//! |---|---|
//! | accept connections, HTTP/1.1 or HTTP/2, connection timeouts, idle connections parked, drain | `server` |
//! | terminate HTTPS: certificates, ALPN, reloads | `tls` |
//! | one request through the stages below | `proxy` |
//! | admit: target, `Host`, framing, size limits | `proxy::admit` |
//! | the canonical path | `proxy::path` |
//! | pick the gateway endpoint or the route | `proxy::routes` |
//! | the client address, through trusted proxies | `proxy::clientip` |
//! | find the token, verify it, apply the route's auth policy | `proxy::authn` |
//! | the verified-token cache and the connection's memo | `proxy::verified` |
//! | token signatures, claims and keys | [`tokens`] |
//! | who a verified token says the caller is | `identity` |
//! | which request headers are hop-by-hop, identity or forwarding headers | `proxy::headers` |
//! | the upstream head: strip, then inject identity | `proxy::outgoing` |
//! | pick the target, eject failing ones, retry, time out | `proxy::forward` |
//! | send over a pooled keep-alive HTTP/1.1 connection and stream back | `upstream` |
//! | request and response body types and their limits | `body` |
//! | tunnel WebSocket upgrades until the token ends | `proxy::upgrade` |
//! | metrics and the access line when the response body ends | `proxy::access` |
//! | any failure as a JSON error, logged by who caused it | `error` |
//!
//! The login side path:
//!
//! | part | module |
//! |---|---|
//! | login, refresh, logout, session, decrypt, phone, JWKS | `endpoints` |
//! | WeChat's server API: managed token, breakers, calls | `wechat` |
//! | the optional login hook | `hook` |
//! | the extra claims a hook adds to sessions and tokens | `claims` |
//! | sessions, spent codes, revocations: memory or Redis | `store` |
//! | the per-client limiter of calls that reach WeChat | `ratelimit` |
//! | WeChat's encrypted user data | `userdata` |
//!
//! State and configuration:
//!
//! | part | module |
//! |---|---|
//! | the command line | [`cli`] |
//! | `gateway.toml`: parse (`config::file`) and check, one file per section (`config::build`) | [`config`] |
//! | the checked configuration | [`settings`] |
//! | the running state: the runtime a reload swaps, and what outlives it | `gateway` |
//! | secrets that never print | `secret` |
//!
//! The operator's side, beside the request path (`ops`):
//!
//! | part | module |
//! |---|---|
//! | the admin listener: `/healthz`, `/readyz`, `/metrics`, and the relay below | `ops::admin` |
//! | the WeChat API relay for backends (`WechatClient::relay` makes the call) | `ops::relay` |
//! | the operator's session and user endpoints: list, revoke, block | `ops::sessions` |
//! | metrics: the registry, per-route handles, the OpenMetrics text | `ops::metrics` |
//! | log output to stderr, batched | `ops::logwriter` |
//! | the access line, formatted directly | `ops::accesslog` |
//!
//! Off the request path, [`devtools`] holds the development tools behind `wxgate mock-wechat`
//! and `wxgate demo`: `devtools::mock_wechat` (a fake WeChat), `devtools::echo` (an upstream
//! that answers with what it received) and `devtools::demo` (both wired to a gateway).
#![forbid(unsafe_code)]

mod body;
mod claims;
pub mod cli;
pub mod config;
pub mod devtools;
mod endpoints;
mod error;
mod gateway;
mod hook;
mod identity;
mod ops;
mod proxy;
mod ratelimit;
mod secret;
mod server;
pub mod settings;
mod store;
mod tls;
pub mod tokens;
mod upstream;
mod userdata;
mod wechat;

// The library's surface: the modules above that are `pub` (the command line, the
// configuration and its checked form, tokens, the development tools) and these items, which
// the binary, the tests, the benchmarks and the fuzz targets use. Everything else is
// private to the crate, so the compiler reports what nothing uses.
pub use claims::Ext;
pub use error::GatewayError;
pub use gateway::Gateway;
pub use identity::Identity;
pub use ops::logwriter::flush as flush_logs;
pub use ops::metrics::sample as metric_sample;
pub use ops::metrics::{set_heap_probe, HeapStats};
pub use proxy::clientip::ClientAddr;
pub use proxy::outgoing::{outgoing, Hop};
pub use proxy::path::canonicalize;
pub use proxy::routes::{Miss, Route};
pub use proxy::verified::{ConnMemo, VerifiedTokens};
pub use secret::Secret;
pub use server::{run, Listeners};
pub use store::Store;
pub use upstream::wire::{read_head, BodyDecoder, Framing, Head as ResponseHead, Piece};
pub use upstream::Error as UpstreamError;
pub use wechat::{AccessTokens, WechatClient};
