//! How the mock talks like WeChat: errors as `errcode`/`errmsg` inside HTTP 200 with a trace
//! id, JSON that is sometimes `text/plain`, and the faults tests can inject (malformed login
//! answers, `err<N>` codes, failing paths); also reading query parameters and bodies.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};

use super::{unix_now, Failure, MockWechat, Params, Resp, MAX_BODY};

const BIG_BODY: usize = 10 * 1024 * 1024;
const JSON: &str = "application/json; charset=utf-8";
pub(super) const TEXT: &str = "text/plain";
/// Fixed keys for the malformed answers: those codes must behave identically on every call.
const FIXED_KEY_16: &str = "AAECAwQFBgcICQoLDA0ODw==";
const FIXED_KEY_8: &str = "AAECAwQFBgc=";

impl MockWechat {
    /// An HTTP 200 WeChat error body with a realistic errmsg and trace id.
    pub(super) fn error(&self, errcode: i64) -> Resp {
        let n = self.inner.rid_counter.fetch_add(1, Ordering::Relaxed);
        // Shaped like WeChat's `rid: 6565c3a1-1f2e3d4c-5b6a7988`; unique per answer, not secret.
        let mix = n.wrapping_mul(0x9e37_79b9);
        let rid = format!("{:08x}-{:08x}-{mix:08x}", unix_now(), n);
        let errmsg = format!("{}, rid: {rid}", errmsg(errcode));
        json_resp(
            StatusCode::OK,
            &json!({"errcode": errcode, "errmsg": errmsg}),
        )
    }

    /// The answer of a path made to fail with [`MockWechat::fail_path`].
    pub(super) fn fault(&self, failure: Failure) -> Resp {
        match failure {
            Failure::Errcode(errcode) => self.error(errcode),
            Failure::Status(status) => {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
                raw_resp(status, TEXT, status.to_string())
            }
        }
    }
}

/// Malformed jscode2session answers for the gateway's defensive-parsing tests.
pub(super) fn malformed_login(appid: &str, code: &str) -> Option<Resp> {
    let openid = MockWechat::openid_for(appid, code);
    let ok = StatusCode::OK;
    let resp = if code.starts_with("badhtml") {
        let page = "<html><head><title>502 Bad Gateway</title></head><body><center>\
                    <h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>";
        raw_resp(ok, "text/html; charset=utf-8", page)
    } else if code.starts_with("badtext") {
        raw_resp(ok, TEXT, r#"{"errcode":"40029","errmsg":"invalid code"}"#)
    } else if code.starts_with("badstatus") {
        let body = json!({"errcode": -1, "errmsg": "system error"});
        json_resp(StatusCode::INTERNAL_SERVER_ERROR, &body)
    } else if code.starts_with("badbig") {
        raw_resp(ok, JSON, big_body(&openid))
    } else if code.starts_with("badnokey") {
        json_resp(ok, &json!({"openid": openid}))
    } else if code.starts_with("badshortkey") {
        json_resp(ok, &json!({"openid": openid, "session_key": FIXED_KEY_8}))
    } else if code.starts_with("badopenid") {
        // CR LF plus a header line: a gateway that copies the openid into a header would inject it.
        let openid = format!("{openid}\r\nX-Injected: 1");
        json_resp(ok, &json!({"openid": openid, "session_key": FIXED_KEY_16}))
    } else {
        return None;
    };
    Some(resp)
}

/// A syntactically valid success body padded to 10 MiB, to test the gateway's body cap.
fn big_body(openid: &str) -> String {
    let head = format!(r#"{{"openid":"{openid}","session_key":"{FIXED_KEY_16}","padding":""#);
    let tail = r#""}"#;
    let pad = BIG_BODY.saturating_sub(head.len() + tail.len());
    let mut body = String::with_capacity(BIG_BODY);
    body.push_str(&head);
    body.extend(std::iter::repeat_n('a', pad));
    body.push_str(tail);
    body
}

/// `err` + optional `-` + digits (trailing text ignored): `err40029abc` -> 40029, `err-1` -> -1.
pub(super) fn errcode_from_code(code: &str) -> Option<i64> {
    let rest = code.strip_prefix("err")?;
    let (negative, digits) = match rest.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, rest),
    };
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    // Empty or overflowing digit runs are not error codes; such codes are ordinary codes.
    let n: i64 = digits[..end].parse().ok()?;
    Some(if negative { -n } else { n })
}

fn errmsg(errcode: i64) -> &'static str {
    match errcode {
        -1 => "system error",
        0 => "ok",
        40001 => "invalid credential, access_token is invalid or not latest",
        40002 => "invalid grant_type",
        40013 => "invalid appid",
        40029 => "invalid code",
        40125 => "invalid appsecret",
        40163 => "code been used",
        40226 => "code blocked",
        41001 => "access_token missing",
        41002 => "appid missing",
        41004 => "appsecret missing",
        41008 => "missing code",
        42001 => "access_token expired",
        43002 => "require POST method",
        45011 => "api minute-quota reach limit, must slower, retry next minute",
        47001 => "data format error",
        87008 => "invalid sig_method",
        87009 => "invalid signature",
        _ => "mock error",
    }
}

/// Query parameters; the first occurrence of a repeated name wins.
pub(super) fn parse_query(query: Option<&str>) -> Params {
    let mut params = Params::new();
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        params
            .entry(k.into_owned())
            .or_insert_with(|| v.into_owned());
    }
    params
}

/// A parameter that is present and non-empty (WeChat treats empty as missing).
pub(super) fn param<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

/// A bounded JSON object body; oversized, unreadable or non-object bodies are `None` (47001).
pub(super) async fn read_json(req: Request<Incoming>) -> Option<Value> {
    let collected = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .ok()?;
    serde_json::from_slice::<Value>(&collected.to_bytes())
        .ok()
        .filter(Value::is_object)
}

pub(super) fn json_resp(status: StatusCode, body: &Value) -> Resp {
    raw_resp(status, JSON, body.to_string())
}

pub(super) fn raw_resp(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Resp {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errcode_codes_parse() {
        assert_eq!(errcode_from_code("err40029"), Some(40029));
        assert_eq!(errcode_from_code("err40029abc"), Some(40029));
        assert_eq!(errcode_from_code("err-1"), Some(-1));
        assert_eq!(errcode_from_code("err99999"), Some(99999));
        assert_eq!(errcode_from_code("err"), None);
        assert_eq!(errcode_from_code("err-"), None);
        assert_eq!(errcode_from_code("errand"), None);
        assert_eq!(errcode_from_code("err99999999999999999999999"), None);
        assert_eq!(errcode_from_code("abc"), None);
    }
}
