//! `GET /.well-known/jwks.json`: the public keys upstream services verify wxgate's tokens with.

use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use http::Response;

use crate::body::{self, ResBody};
use crate::gateway::Runtime;

/// Upstreams may cache the key set for 5 minutes. Key rotation waits at least this long
/// between publishing a new key and signing with it (README, "Key rotation").
const CACHE: &str = "public, max-age=300";

/// The document is serialized when the key set is built, so answering copies no key data.
pub(super) fn jwks(runtime: &Runtime) -> Response<ResBody> {
    let mut response = Response::new(body::full(runtime.settings.auth.keys.jwks().clone()));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static(CACHE));
    response
}
