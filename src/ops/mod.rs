//! The operator's side, beside the request path: the admin listener ([`admin`]) with the
//! WeChat API relay ([`relay`]), the metrics it serves ([`metrics`]), and the log output
//! ([`logwriter`]) with the access-line formatter ([`accesslog`]).

pub(crate) mod accesslog;
pub(crate) mod admin;
pub(crate) mod logwriter;
pub(crate) mod metrics;
pub(crate) mod relay;
pub(crate) mod sessions;
