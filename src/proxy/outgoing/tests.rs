use super::*;

const CONFIG: &str = r#"
[wechat]
api_base = "http://127.0.0.1:9"
[[wechat.apps]]
appid = "wx0123456789abcdef"
secret = "app-secret"
[auth]
audience = "test"
token_headers = ["Authorization", "X-Token"]
[[auth.keys]]
kid = "k1"
alg = "HS256"
secret = "0123456789abcdef0123456789abcdef"
[auth.on_login]
url = "http://127.0.0.1:9/hook"
[auth.claim_headers]
uid = "X-User-Id"
phone = "X-Phone"
"#;

fn auth(extra: &str) -> AuthSettings {
    let text = CONFIG.replace("[auth]\n", &format!("[auth]\n{extra}\n"));
    match crate::config::from_str(&text, std::path::Path::new(".")) {
        Ok(settings) => settings.auth,
        Err(e) => panic!("test config: {e}"),
    }
}

fn identity() -> Identity {
    let mut ext = crate::claims::Ext::new();
    ext.insert("uid".into(), 42.into());
    Identity {
        openid: "oVerified".into(),
        unionid: Some("uVerified".into()),
        appid: Some("wx0123456789abcdef".into()),
        sid: Some("s1".into()),
        exp: i64::MAX,
        ext,
        phone: Some("13800138000".into()),
    }
}

/// The header lines sent upstream for a request with `headers`, as (name, value).
fn lines(
    auth: &AuthSettings,
    headers: &[(&str, &str)],
    identity: Option<&Identity>,
    trusted: bool,
) -> Vec<(String, String)> {
    let mut request = http::Request::builder().uri("/api/x");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let (parts, ()) = request.body(()).expect("request").into_parts();
    let peer = IpAddr::from([10, 0, 0, 1]);
    let peer_value = HeaderValue::from_static("10.0.0.1");
    let request_id = HeaderValue::from_static("rid-1");
    let hop = Hop {
        client: ClientAddr {
            ip: peer,
            peer_trusted: trusted,
        },
        peer,
        peer_value: &peer_value,
        proto: "https",
        host: Some("api.example.com"),
        request_id: &request_id,
    };
    let out = match outgoing(&parts, auth, identity, &hop, false) {
        Ok(out) => out,
        Err(e) => panic!("outgoing: {e}"),
    };
    String::from_utf8_lossy(&out.lines)
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(": "))
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn values<'a>(lines: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    lines
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

#[test]
fn identity_comes_only_from_the_verified_identity() {
    let auth = auth("");
    let forged = [
        ("X-OpenId", "evil"),
        ("x_openid", "evil"),
        ("X-UnionId", "evil"),
        ("X_AppId", "evil"),
        ("X-User-Id", "evil"),
        ("x_user_id", "evil"),
        ("X-Phone", "evil"),
        ("X-WX-OPENID", "evil"),
        ("Connection", "X-OpenId, X-User-Id"),
    ];
    let ident = identity();
    let cases: [(Option<&Identity>, [&[&str]; 5]); 2] = [
        (
            Some(&ident),
            [
                &["oVerified"],
                &["uVerified"],
                &["wx0123456789abcdef"],
                &["42"],
                &["13800138000"],
            ],
        ),
        (None, [&[], &[], &[], &[], &[]]),
    ];
    for (identity, expected) in cases {
        let out = lines(&auth, &forged, identity, false);
        let names = ["x-openid", "x-unionid", "x-appid", "x-user-id", "x-phone"];
        for (name, want) in names.iter().zip(expected) {
            assert_eq!(values(&out, name), want, "{name} with {identity:?}");
        }
        assert!(
            !out.iter().any(|(n, v)| n.contains('_') || v == "evil"),
            "{out:?}"
        );
    }
}

#[test]
fn hop_by_hop_and_framing_headers_never_pass() {
    let auth = auth("");
    let out = lines(
        &auth,
        &[
            ("Connection", "keep-alive, X-Custom"),
            ("X-Custom", "1"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Upgrade", "h2c"),
            ("Transfer-Encoding", "chunked"),
            ("Content-Length", "5"),
            ("Host", "api.example.com"),
            ("Expect", "100-continue"),
            ("Accept", "keep"),
        ],
        None,
        false,
    );
    let names: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "accept",
            "x-forwarded-for",
            "x-real-ip",
            "x-forwarded-proto",
            "x-forwarded-host",
            "x-request-id"
        ]
    );
}

#[test]
fn gateway_tokens_go_unless_forward_token_is_set() {
    for (extra, kept) in [("", 0), ("forward_token = true", 2)] {
        let auth = auth(extra);
        let out = lines(
            &auth,
            &[("Authorization", "bearer\tabc"), ("X-Token", "abc")],
            None,
            false,
        );
        let tokens = values(&out, "authorization").len() + values(&out, "x-token").len();
        assert_eq!(tokens, kept, "{extra:?}: {out:?}");
    }
    // Another scheme is not the gateway's to remove.
    let out = lines(&auth(""), &[("Authorization", "Basic dTpw")], None, false);
    assert_eq!(values(&out, "authorization"), ["Basic dTpw"]);
}

#[test]
fn forwarding_headers_are_kept_only_from_trusted_proxies() {
    let auth = auth("");
    let client = [
        ("X-Forwarded-For", "6.6.6.6"),
        ("X-Forwarded-Proto", "http"),
        ("X-Forwarded-Host", "evil.example"),
        ("X-Real-IP", "6.6.6.6"),
        ("Forwarded", "for=6.6.6.6"),
        ("X_Forwarded_For", "6.6.6.6"),
    ];
    for (trusted, want) in [
        (false, ["10.0.0.1", "https", "api.example.com", ""]),
        (
            true,
            ["6.6.6.6, 10.0.0.1", "http", "evil.example", "for=6.6.6.6"],
        ),
    ] {
        let out = lines(&auth, &client, None, trusted);
        let got = [
            "x-forwarded-for",
            "x-forwarded-proto",
            "x-forwarded-host",
            "forwarded",
        ]
        .map(|name| values(&out, name).join(" | "));
        assert_eq!(got, want, "trusted: {trusted}");
        assert_eq!(values(&out, "x-real-ip"), ["10.0.0.1"]);
        assert!(!out.iter().any(|(n, _)| n.contains('_')), "{out:?}");
    }
}

#[test]
fn http2_cookie_fields_become_one_line() {
    let out = lines(
        &auth(""),
        &[("cookie", "a=1"), ("cookie", "b=2")],
        None,
        false,
    );
    assert_eq!(values(&out, "cookie"), ["a=1; b=2"]);
    let one = lines(&auth(""), &[("cookie", "a=1")], None, false);
    assert_eq!(values(&one, "cookie"), ["a=1"]);
}
