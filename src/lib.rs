//! wxgate: an authentication gateway for WeChat mini-programs.
//!
//! # Layout
//!
//! The request path, in order, and the module that owns each stage:
//!
//! | stage | module |
//! |---|---|
//! | accept connections, HTTP/1.1 + HTTP/2, timeouts, drain | [`server`], [`tls`] |
//! | one request through the stages below, and its access line | [`proxy`] (`proxy::access`) |
//! | admit (target, `Host`, framing, limits) | `proxy::admit` |
//! | canonical path, pick endpoint or route | `proxy::path`, `proxy::routes` |
//! | derive the client address through trusted proxies | `proxy::clientip` |
//! | find and verify the token, the route's auth policy, revoked sessions | `proxy::authn`, `proxy::verified`, [`tokens`] |
//! | strip hop-by-hop and identity headers, then inject identity | `proxy::headers`, `proxy::outgoing` |
//! | pick the target, send over a pooled keep-alive connection, stream back | `proxy::forward`, [`upstream`], [`body`] |
//! | tunnel WebSocket upgrades after the upstream's handshake, until the token ends | `proxy::upgrade` |
//! | turn any failure into a JSON error response | [`error`] |
//!
//! The login side path: [`endpoints`] (login, refresh, logout, session, decrypt, JWKS) uses the
//! [`wechat`] client, the optional login [`hook`] (whose [`claims`] sessions and tokens
//! carry), the [`store`] of sessions and codes, the [`ratelimit`] limiter and
//! [`userdata`] (WeChat's encrypted user data).
//! Configuration is loaded by [`config`] into [`settings`]; [`gateway`] holds the state;
//! [`identity`] is who a verified token says the caller is; [`secret`] masks secrets.
//! [`admin`] serves health and metrics, and [`admin_sessions`] the operator's session and user
//! endpoints (list, revoke, block); [`mock_wechat`], [`echo`] and [`demo`] are the
//! development tools behind `wxgate mock-wechat` and `wxgate demo`.
#![forbid(unsafe_code)]

pub mod admin;
pub mod admin_sessions;
pub mod body;
pub mod claims;
pub mod cli;
pub mod config;
pub mod demo;
pub mod echo;
pub mod endpoints;
pub mod error;
pub mod gateway;
pub mod hook;
pub mod identity;
pub mod logwriter;
pub mod metrics;
pub mod mock_wechat;
pub mod proxy;
pub mod ratelimit;
pub mod secret;
pub mod server;
pub mod settings;
pub mod store;
pub mod tls;
pub mod tokens;
pub mod upstream;
pub mod userdata;
pub mod wechat;

pub use gateway::Gateway;
pub use server::{run, Listeners};
