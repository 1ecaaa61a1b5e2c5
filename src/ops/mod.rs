//! The operator's side, beside the request path: the admin listener ([`admin`]) with the
//! WeChat API relay ([`relay`]), the metrics it serves ([`metrics`]), and the log output
//! ([`logwriter`]) with the access-line formatter ([`accesslog`]).

pub mod accesslog;
pub mod admin;
pub mod logwriter;
pub mod metrics;
pub mod relay;
