//! The APIs called with an access_token: the phone number behind a getPhoneNumber code,
//! `checksession`, and the token-authenticated APIs a legacy service relays
//! (`subscribe/send`, `getwxacodeunlimit`).

use aws_lc_rs::{digest, hmac};
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde_json::{json, Value};

use super::wire::{errcode_from_code, json_resp, param, raw_resp, read_json};
use super::{unix_now, MockWechat, Params, Resp, MAX_BODY};

impl MockWechat {
    /// The last body a token-authenticated API (`subscribe/send`, `getwxacodeunlimit`) got.
    pub fn last_body(&self, path: &str) -> Option<Bytes> {
        self.state().last_bodies.get(path).cloned()
    }

    /// `POST /wxa/business/getuserphonenumber?access_token=...` with `{"code", "openid"?}`.
    pub(super) async fn phone_number(&self, q: &Params, req: Request<Incoming>) -> Resp {
        if req.method() != Method::POST {
            return self.error(43002);
        }
        let appid = match self.token_appid(q) {
            Ok(appid) => appid,
            Err(errcode) => return self.error(errcode),
        };
        let Some(body) = read_json(req).await else {
            return self.error(47001);
        };
        let code = body.get("code").and_then(Value::as_str).unwrap_or("");
        let openid_ok = body.get("openid").is_none_or(Value::is_string);
        if code.is_empty() || !openid_ok {
            return self.error(47001);
        }
        if let Some(errcode) = errcode_from_code(code) {
            return self.error(errcode);
        }
        if !self.state().used_phone_codes.insert(code.to_owned()) {
            return self.error(40029);
        }
        if code.starts_with("slow") {
            tokio::time::sleep(self.inner.options.slow_delay).await;
        }
        let pure = phone_for(code);
        let info = json!({
            "phoneNumber": format!("+86 {pure}"),
            "purePhoneNumber": pure,
            "countryCode": 86,
            "watermark": {"timestamp": unix_now(), "appid": appid},
        });
        json_resp(
            StatusCode::OK,
            &json!({"errcode": 0, "errmsg": "ok", "phone_info": info}),
        )
    }

    /// A token-authenticated API that a legacy service might call through the relay:
    /// `subscribe/send` answers ok, `getwxacodeunlimit` answers a (fake) PNG image.
    pub(super) async fn token_api(&self, path: &str, q: &Params, req: Request<Incoming>) -> Resp {
        if req.method() != Method::POST {
            return self.error(43002);
        }
        if let Err(errcode) = self.token_appid(q) {
            return self.error(errcode);
        }
        let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => return self.error(47001),
        };
        self.state().last_bodies.insert(path.to_owned(), body);
        if path == "/wxa/getwxacodeunlimit" {
            return raw_resp(
                StatusCode::OK,
                "image/png",
                &b"\x89PNG\r\n\x1a\nmock-qr-code"[..],
            );
        }
        json_resp(StatusCode::OK, &json!({"errcode": 0, "errmsg": "ok"}))
    }

    /// `GET /wxa/checksession`: the signature must be made with the openid's *current* key.
    pub(super) fn check_session(&self, q: &Params) -> Resp {
        if let Err(errcode) = self.token_appid(q) {
            return self.error(errcode);
        }
        if param(q, "sig_method") != Some("hmac_sha256") {
            return self.error(87008);
        }
        let key = param(q, "openid").and_then(|openid| self.session_key(openid));
        let valid = match (key, param(q, "signature")) {
            (Some(key), Some(sig)) => checksession_signature(&key) == sig,
            _ => false,
        };
        if valid {
            json_resp(StatusCode::OK, &json!({"errcode": 0, "errmsg": "ok"}))
        } else {
            self.error(87009)
        }
    }
}

/// `138` + 8 digits derived from the phone code.
fn phone_for(code: &str) -> String {
    let hash = digest::digest(&digest::SHA256, format!("phone:{code}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_ref()[..8]);
    format!("138{:08}", u64::from_be_bytes(first) % 100_000_000)
}

/// Lowercase hex HMAC-SHA256 keyed with the session_key's base64 *text*, over the empty string.
fn checksession_signature(session_key: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, session_key.as_bytes());
    let tag = hmac::sign(&key, b"");
    tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksession_hmac_vector() {
        assert_eq!(
            checksession_signature("o0q0otL8aEzpcZL/FT9WsQ=="),
            "46e043c5525c2d817c44be603d30837a808a1d930d038f6fdc3e62a201fed128"
        );
    }

    #[test]
    fn phone_is_deterministic() {
        let p = phone_for("abc");
        assert_eq!(p, phone_for("abc"));
        assert_eq!(p.len(), 11);
        assert!(p.starts_with("138") && p.chars().all(|c| c.is_ascii_digit()));
    }
}
