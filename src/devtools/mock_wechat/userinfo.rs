//! Encrypted user data as `wx.getUserProfile` hands it to a mini-program: `rawData`, its
//! `signature`, and `encryptedData` + `iv` sealed with the session_key of a login.

use aws_lc_rs::cipher::{EncryptionContext, PaddedBlockEncryptingKey, UnboundCipherKey, AES_128};
use aws_lc_rs::digest;
use aws_lc_rs::iv::FixedLength;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hyper::StatusCode;
use serde_json::{json, Value};

use super::wire::{json_resp, param};
use super::{random_bytes, unix_now, MockWechat, Params, Resp};

impl MockWechat {
    /// The user data a mini-program would get after logging in with `code` for `appid`,
    /// sealed with that login's session_key; `None` before the login.
    pub fn user_info(&self, appid: &str, code: &str) -> Option<Value> {
        let openid = Self::openid_for(appid, code);
        let key = self.session_key(&openid)?;
        let raw = json!({
            "nickName": "微信用户",
            "gender": 0,
            "language": "zh_CN",
            "city": "",
            "province": "",
            "country": "",
            "avatarUrl": "https://thirdwx.qlogo.cn/mmopen/vi_32/mock/132",
        });
        let mut sealed = raw.clone();
        sealed["openId"] = openid.into();
        sealed["watermark"] = json!({ "appid": appid, "timestamp": unix_now() });
        let raw_text = raw.to_string();
        let iv = random_bytes::<16>()?;
        Some(json!({
            "rawData": raw_text,
            "signature": sha1_hex(&format!("{raw_text}{key}")),
            "encryptedData": seal(&key, iv, &sealed.to_string())?,
            "iv": STANDARD.encode(iv),
        }))
    }

    /// `GET /mock/userinfo?appid=…&code=…` (not a WeChat API: a stand-in for the client side).
    pub(super) fn user_info_answer(&self, q: &Params) -> Resp {
        let found = param(q, "appid")
            .zip(param(q, "code"))
            .and_then(|(appid, code)| self.user_info(appid, code));
        match found {
            Some(data) => json_resp(StatusCode::OK, &data),
            None => json_resp(
                StatusCode::NOT_FOUND,
                &json!({"errcode": -1, "errmsg": "no login for this appid and code"}),
            ),
        }
    }
}

/// AES-128-CBC with PKCS#7, as WeChat encrypts user data.
fn seal(session_key: &str, iv: [u8; 16], plain: &str) -> Option<String> {
    let key = STANDARD.decode(session_key).ok()?;
    let key = UnboundCipherKey::new(&AES_128, &key).ok()?;
    let key = PaddedBlockEncryptingKey::cbc_pkcs7(key).ok()?;
    let mut data = plain.as_bytes().to_vec();
    key.less_safe_encrypt(&mut data, EncryptionContext::Iv128(FixedLength::from(iv)))
        .ok()?;
    Some(STANDARD.encode(data))
}

fn sha1_hex(text: &str) -> String {
    let hash = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, text.as_bytes());
    hash.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devtools::mock_wechat::MockOptions;
    use crate::userdata::{self, Expect};

    #[test]
    fn user_info_opens_with_the_logins_session_key() {
        let mock = MockWechat::new(MockOptions::default());
        assert!(mock.user_info("wx1", "c1").is_none(), "no login yet");
        let _ = mock.login_success("wx1", "c1");
        let data = mock.user_info("wx1", "c1").expect("user info");
        let openid = MockWechat::openid_for("wx1", "c1");
        let key = mock.session_key(&openid).expect("key");
        let text = |k: &str| data[k].as_str().expect("string").to_string();
        assert!(userdata::signature_matches(
            &text("rawData"),
            &key,
            &text("signature")
        ));
        let expect = Expect {
            appid: "wx1",
            openid: &openid,
        };
        let opened = userdata::decrypt(&key, &text("encryptedData"), &text("iv"), &expect)
            .expect("decrypts");
        assert_eq!(opened["openId"], openid.as_str());
        assert_eq!(opened["nickName"], "微信用户");
    }
}
