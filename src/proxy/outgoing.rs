//! Strip, then inject: the upstream request's header lines, built from the client's in one
//! pass. Hop-by-hop headers (and whatever `Connection` names), every spelling of every
//! identity header, underscore spellings of forwarding headers, gateway tokens and
//! `Expect` go first; only then are wxgate's own added, so no client header can remove
//! or fake them.

use std::net::IpAddr;

use http::header::{
    HeaderName, HeaderValue, AUTHORIZATION, CONNECTION, CONTENT_LENGTH, COOKIE, EXPECT, HOST,
};
use http::request::Parts;

use super::clientip::ClientAddr;
use super::headers::{
    self, FORWARDED, X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO, X_REAL_IP, X_REQUEST_ID,
};
use crate::error::GatewayError;
use crate::identity::Identity;
use crate::settings::{AuthSettings, IdentityHeaders};
use crate::upstream::Outgoing;

/// What the forwarded request says about the client and the hop.
pub struct Hop<'a> {
    pub client: ClientAddr,
    pub peer: IpAddr,
    /// `peer` as a header value.
    pub peer_value: &'a HeaderValue,
    pub proto: &'static str,
    pub host: Option<&'a str>,
    pub request_id: &'a HeaderValue,
}

/// Builds the upstream request's headers from the client's. The rules are those of a
/// rewrite in this order, applied as one filter: hop-by-hop headers (and whatever
/// `Connection` names) go, then every spelling of every identity header, then gateway
/// tokens and `Expect`; only then does wxgate add its own, so no client header can remove
/// or fake them. `websocket` restores the upgrade headers the hop-by-hop rule removed.
pub fn outgoing(
    parts: &Parts,
    auth: &AuthSettings,
    identity: Option<&Identity>,
    hop: &Hop<'_>,
    websocket: bool,
) -> Result<Outgoing, GatewayError> {
    let h = &parts.headers;
    // One pass for what the rules below ask about, instead of a lookup each.
    let mut seen = Seen::default();
    for (name, value) in h {
        seen.note(name, value);
    }
    let connection_named = if seen.connection {
        headers::connection_named(h)
    } else {
        Vec::new()
    };
    let strip_bearer = !auth.forward_token && seen.bearer;
    // What a header must pass to reach upstream at all.
    let passes = |name: &HeaderName| {
        !(headers::is_hop_by_hop(name)
            || connection_named.contains(name)
            || headers::is_identity(name, &auth.identity.strip)
            || headers::is_forwarding_alias(name)
            || (!auth.forward_token
                && auth.token_headers.contains(name)
                && (name != AUTHORIZATION || strip_bearer))
            || name == EXPECT
            || name == HOST
            || name == CONTENT_LENGTH)
    };
    let trusted = hop.client.peer_trusted;
    // A trusted proxy's X-Forwarded-Proto/-Host are kept; anyone else's are replaced.
    let keep_proto = trusted && seen.forwarded_proto && passes(&X_FORWARDED_PROTO);
    let keep_host = trusted && seen.forwarded_host && passes(&X_FORWARDED_HOST);
    let chain = trusted && seen.forwarded_for && passes(&X_FORWARDED_FOR);
    let ours = |name: &HeaderName| {
        name == X_FORWARDED_FOR
            || name == X_REAL_IP
            || name == X_REQUEST_ID
            || (name == FORWARDED && !trusted)
            || (name == X_FORWARDED_PROTO && !keep_proto)
            || (name == X_FORWARDED_HOST && !keep_host)
    };
    // HTTP/2 clients send each cookie as its own field; HTTP/1.1 allows one `Cookie`
    // line, so they are joined with "; " (RFC 9113 8.2.3), the only header joined so.
    let join_cookies = seen.cookies > 1 && passes(&COOKIE);
    let mut lines = Vec::with_capacity(512);
    for (name, value) in h {
        if passes(name) && !ours(name) && !(join_cookies && name == COOKIE) {
            put(&mut lines, name.as_str(), value.as_bytes());
        }
    }
    if join_cookies {
        lines.extend_from_slice(b"cookie: ");
        for (i, value) in h.get_all(COOKIE).iter().enumerate() {
            if i > 0 {
                lines.extend_from_slice(b"; ");
            }
            lines.extend_from_slice(value.as_bytes());
        }
        lines.extend_from_slice(b"\r\n");
    }
    // X-Forwarded-For: only a trusted proxy's chain is kept (and extended); anyone else's
    // is replaced, not appended to.
    lines.extend_from_slice(b"x-forwarded-for: ");
    if chain {
        for value in h
            .get_all(X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
        {
            lines.extend_from_slice(value.as_bytes());
            lines.extend_from_slice(b", ");
        }
    }
    lines.extend_from_slice(hop.peer_value.as_bytes());
    lines.extend_from_slice(b"\r\n");
    if hop.client.ip == hop.peer {
        put(&mut lines, "x-real-ip", hop.peer_value.as_bytes());
    } else {
        put(
            &mut lines,
            "x-real-ip",
            hop.client.ip.to_string().as_bytes(),
        );
    }
    if !keep_proto {
        put(&mut lines, "x-forwarded-proto", hop.proto.as_bytes());
    }
    if !keep_host {
        if let Some(host) = hop.host.filter(|host| is_value(host)) {
            put(&mut lines, "x-forwarded-host", host.as_bytes());
        }
    }
    put(&mut lines, "x-request-id", hop.request_id.as_bytes());
    if let Some(identity) = identity {
        put_identity(&mut lines, &auth.identity, identity)?;
        put_claims(&mut lines, &auth.claim_headers, identity);
    }
    if websocket {
        lines.extend_from_slice(crate::proxy::upgrade::REQUEST_LINES);
    }
    Ok(Outgoing {
        method: parts.method.clone(),
        lines,
        had_length: seen.length,
    })
}

/// Which of the headers the forwarding rules depend on a request carries.
#[derive(Default)]
struct Seen {
    connection: bool,
    length: bool,
    forwarded_for: bool,
    forwarded_proto: bool,
    forwarded_host: bool,
    /// How many `Cookie` fields there are (counting stops at two).
    cookies: u8,
    /// An `Authorization` header carries a bearer token: only then is it the gateway's to
    /// remove (an upstream's own Basic credentials pass on public routes).
    bearer: bool,
}

impl Seen {
    fn note(&mut self, name: &HeaderName, value: &HeaderValue) {
        if name == CONNECTION {
            self.connection = true;
        } else if name == CONTENT_LENGTH {
            self.length = true;
        } else if name == COOKIE {
            self.cookies = self.cookies.saturating_add(1).min(2);
        } else if name == AUTHORIZATION {
            self.bearer |= std::str::from_utf8(value.as_bytes())
                .ok()
                .and_then(crate::proxy::authn::bearer_scheme)
                .is_some();
        } else if name == X_FORWARDED_FOR {
            self.forwarded_for = true;
        } else if name == X_FORWARDED_PROTO {
            self.forwarded_proto = true;
        } else if name == X_FORWARDED_HOST {
            self.forwarded_host = true;
        }
    }
}

fn put_identity(
    lines: &mut Vec<u8>,
    names: &IdentityHeaders,
    identity: &Identity,
) -> Result<(), GatewayError> {
    // Values were checked against `^[A-Za-z0-9_-]{1,64}$` during verification; checked
    // again here because these lines are written as they are.
    let mut value = |name: &HeaderName, v: &str| {
        if !is_value(v) {
            return Err(GatewayError::Internal(
                "identity value is not a header value",
            ));
        }
        put(lines, name.as_str(), v.as_bytes());
        Ok(())
    };
    value(&names.openid, &identity.openid)?;
    if let Some(appid) = &identity.appid {
        value(&names.appid, appid)?;
    }
    if let Some(unionid) = &identity.unionid {
        value(&names.unionid, unionid)?;
    }
    if let Some(source) = &names.source {
        value(source, "wxgate")?;
    }
    Ok(())
}

/// One header per configured claim the identity has: `phone` is the session's verified phone
/// number, any other name a hook claim. A claim the token lacks adds nothing (its header was
/// stripped from the client's request all the same), and a value that is not a valid header
/// value is skipped (the hook's answer was refused for it already).
fn put_claims(lines: &mut Vec<u8>, claim_headers: &[(String, HeaderName)], identity: &Identity) {
    for (claim, header) in claim_headers {
        let text = if claim == crate::claims::PHONE {
            identity.phone.as_deref().map(std::borrow::Cow::Borrowed)
        } else {
            identity.ext.get(claim).and_then(crate::claims::render)
        };
        if let Some(text) = text.filter(|t| is_value(t)) {
            put(lines, header.as_str(), text.as_bytes());
        }
    }
}

/// What `HeaderValue::from_str` accepts: visible ASCII, spaces and tabs.
fn is_value(text: &str) -> bool {
    text.bytes().all(|b| (b >= 0x20 && b != 0x7f) || b == b'\t')
}

fn put(lines: &mut Vec<u8>, name: &str, value: &[u8]) {
    lines.extend_from_slice(name.as_bytes());
    lines.extend_from_slice(b": ");
    lines.extend_from_slice(value);
    lines.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests;
