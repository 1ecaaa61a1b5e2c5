//! Request header hygiene: strip, then inject (`proxy::outgoing::outgoing`), on any headers.
//!
//! Input: one flag byte (config style, trusted peer, WebSocket, which identity fields the
//! verified identity has), then `name:value` lines separated by `\n`; lines the `http`
//! crate refuses are skipped, as hyper would have refused them.
//! Asserts, on the header lines sent upstream: no header whose name folds (case, `_` as
//! `-`) to an identity or claim header survives except those wxgate injected, each once,
//! with the verified identity's values; no hop-by-hop header survives (Connection,
//! Keep-Alive, TE, Trailer, Transfer-Encoding, Upgrade, Proxy-*, and what any Connection
//! header names), except the two upgrade lines a WebSocket request gets back.
#![no_main]

use std::net::IpAddr;
use std::path::Path;
use std::sync::OnceLock;

use http::header::{HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use wxgate::Identity;
use wxgate::ClientAddr;
use wxgate::{outgoing, Hop};
use wxgate::settings::AuthSettings;

const BASE: &str = r#"
[wechat]
api_base = "http://127.0.0.1:9"
[[wechat.apps]]
appid = "wx0123456789abcdef"
secret = "fuzz-app-secret"
[auth]
audience = "fuzz"
token_headers = ["Authorization", "X-Token"]
[[auth.keys]]
kid = "k1"
alg = "HS256"
secret = "fuzz-secret-0123456789abcdef-0123456789"
[auth.on_login]
url = "http://127.0.0.1:9/hook"
[auth.claim_headers]
uid = "X-User-Id"
tenant = "X_Tenant"
phone = "X-Phone"
"#;

/// The claim headers as wxgate writes them (lower-case), with the claim each carries.
const CLAIMS: [(&str, &str); 3] = [
    ("uid", "x-user-id"),
    ("tenant", "x_tenant"),
    ("phone", "x-phone"),
];
/// Injected in the Cloud Run style, and stripped from clients in either style.
const CLOUDRUN: [&str; 4] = ["x-wx-openid", "x-wx-appid", "x-wx-unionid", "x-wx-source"];

/// One configuration: its settings and the identity header names (openid, unionid, appid)
/// it injects and strips, folded.
struct Style {
    auth: AuthSettings,
    names: [&'static str; 3],
    cloudrun: bool,
}

fn styles() -> &'static [Style; 2] {
    static STYLES: OnceLock<[Style; 2]> = OnceLock::new();
    STYLES.get_or_init(|| {
        let load = |extra: &str| {
            let text = BASE.replace("[auth]\n", &format!("[auth]\n{extra}\n"));
            match wxgate::config::from_str(&text, Path::new(".")) {
                Ok(settings) => settings.auth,
                Err(e) => panic!("fuzz config: {e}"),
            }
        };
        [
            Style {
                auth: load(""),
                names: ["x-openid", "x-unionid", "x-appid"],
                cloudrun: false,
            },
            Style {
                auth: load("header_style = \"cloudrun\"\nidentity_header = \"X_Caller_Id\""),
                names: ["x-caller-id", "x-unionid", "x-appid"],
                cloudrun: true,
            },
        ]
    })
}

const OPENID: &str = "oVerified";
const UNIONID: &str = "uVerified";
const APPID: &str = "wx0123456789abcdef";
const PHONE: &str = "13800138000";

fn identity(flags: u8) -> Identity {
    let mut ext = wxgate::Ext::new();
    if flags & 0x80 != 0 {
        ext.insert("uid".into(), 42.into());
        ext.insert("tenant".into(), "acme".into());
    }
    Identity {
        openid: OPENID.into(),
        unionid: (flags & 0x10 != 0).then(|| UNIONID.into()),
        appid: (flags & 0x20 != 0).then(|| APPID.into()),
        sid: Some("s1".into()),
        exp: i64::MAX,
        ext,
        phone: (flags & 0x40 != 0).then(|| PHONE.into()),
    }
}

/// The identity lines wxgate may write for `identity`: (name, value).
fn injected(style: &Style, identity: &Identity) -> Vec<(String, String)> {
    let [openid, unionid, appid] = if style.cloudrun {
        [CLOUDRUN[0], CLOUDRUN[2], CLOUDRUN[1]]
    } else {
        style.names
    };
    let mut lines = vec![(openid.to_string(), identity.openid.clone())];
    if let Some(u) = &identity.unionid {
        lines.push((unionid.to_string(), u.clone()));
    }
    if let Some(a) = &identity.appid {
        lines.push((appid.to_string(), a.clone()));
    }
    if style.cloudrun {
        lines.push((CLOUDRUN[3].to_string(), "wxgate".to_string()));
    }
    for (claim, header) in CLAIMS {
        let value = match claim {
            "phone" => identity.phone.clone(),
            _ => identity.ext.get(claim).map(|v| match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            }),
        };
        if let Some(value) = value {
            lines.push((header.to_string(), value));
        }
    }
    lines
}

fn fold(name: &str) -> String {
    name.bytes()
        .map(|b| char::from(b.to_ascii_lowercase()))
        .map(|c| if c == '_' { '-' } else { c })
        .collect()
}

fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection" | "keep-alive" | "te" | "trailer" | "transfer-encoding" | "upgrade"
    ) || name.starts_with("proxy-")
}

/// Every name any `Connection` header lists, lower-case, read from the raw bytes.
fn connection_listed(headers: &http::HeaderMap) -> Vec<String> {
    headers
        .get_all(http::header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(|token| String::from_utf8_lossy(token.trim_ascii()).to_ascii_lowercase())
        .filter(|token| !token.is_empty())
        .collect()
}

/// `name:value` lines; whatever the `http` crate refuses is skipped.
fn header_map(lines: &[u8]) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    for line in lines.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(&line[colon + 1..]),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    headers
}

const PROTO: &str = "https";
const HOST: &str = "api.example.com";
const REQUEST_ID: &str = "rid-fuzz";

fuzz_target!(|data: &[u8]| {
    let Some((&flags, lines)) = data.split_first() else {
        return;
    };
    let style = &styles()[usize::from(flags & 1)];
    let trusted = flags & 2 != 0;
    let websocket = flags & 4 != 0;
    let identity = (flags & 8 != 0).then(|| identity(flags));
    let mut request = http::Request::builder().uri("/api/x");
    if let Some(headers) = request.headers_mut() {
        *headers = header_map(lines);
    }
    let Ok(request) = request.body(()) else {
        return;
    };
    let (parts, ()) = request.into_parts();
    let peer = IpAddr::from([10, 0, 0, 1]);
    let peer_value = HeaderValue::from_static("10.0.0.1");
    let request_id = HeaderValue::from_static(REQUEST_ID);
    let hop = Hop {
        client: ClientAddr {
            ip: peer,
            peer_trusted: trusted,
        },
        peer,
        peer_value: &peer_value,
        proto: PROTO,
        host: Some(HOST),
        request_id: &request_id,
    };
    let out = match outgoing(&parts, &style.auth, identity.as_ref(), &hop, websocket) {
        Ok(out) => out,
        Err(e) => panic!("outgoing refused fixed identity values: {e}"),
    };
    let mut written: Vec<(String, String)> = Vec::new();
    for line in out.lines.split(|b| *b == b'\n') {
        let Some(line) = line.strip_suffix(b"\r") else {
            assert!(line.is_empty(), "unterminated line {line:?}");
            continue;
        };
        let text = String::from_utf8_lossy(line);
        let Some((name, value)) = text.split_once(": ") else {
            panic!("not a header line: {text:?}");
        };
        written.push((name.to_string(), value.to_string()));
    }
    if websocket {
        let upgrade = [("connection", "upgrade"), ("upgrade", "websocket")];
        let tail = written.split_off(written.len().saturating_sub(2));
        let tail: Vec<(&str, &str)> = tail.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        assert_eq!(
            tail, upgrade,
            "a WebSocket request ends with its upgrade lines"
        );
    }

    let protected: Vec<String> = style
        .names
        .iter()
        .chain(CLOUDRUN.iter())
        .chain(CLAIMS.iter().map(|(_, h)| h))
        .map(|n| fold(n))
        .collect();
    let mut expected = match &identity {
        Some(identity) => injected(style, identity),
        None => Vec::new(),
    };
    let listed = connection_listed(&parts.headers);
    for (name, value) in &written {
        if protected.contains(&fold(name)) {
            let Some(i) = expected.iter().position(|(n, v)| n == name && v == value) else {
                panic!("{name}: {value:?} reached upstream; wxgate injects {expected:?}");
            };
            expected.remove(i);
            continue;
        }
        assert!(
            !is_hop_by_hop(name),
            "hop-by-hop {name}: {value:?} survived"
        );
        // wxgate's own forwarding lines, which it writes whatever the client listed.
        let own = match name.as_str() {
            "x-forwarded-for" => true,
            "x-real-ip" => value == "10.0.0.1",
            "x-forwarded-proto" => value == PROTO,
            "x-forwarded-host" => value == HOST,
            "x-request-id" => value == REQUEST_ID,
            _ => false,
        };
        assert!(
            own || !listed.contains(name),
            "{name}: {value:?} survived though Connection lists it"
        );
    }
    assert!(expected.is_empty(), "not injected: {expected:?}");
});
