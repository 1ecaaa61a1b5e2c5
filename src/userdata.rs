//! WeChat user data: the `rawData` signature and `encryptedData` decryption (wechat-api.md 3).
//!
//! encryptedData has no MAC and the client picks the IV, so its first block is malleable:
//! decrypted data is client-influenced input, never a source of identity. An `openId` in it
//! must equal the session's. Every failure is the same error, so the endpoint cannot serve
//! as a padding oracle.

use aws_lc_rs::cipher::{DecryptionContext, PaddedBlockDecryptingKey, UnboundCipherKey, AES_128};
use aws_lc_rs::iv::FixedLength;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{Map, Value};

/// Decryption failed; deliberately says nothing about why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DecryptFailed;

/// What the plaintext must agree with.
pub(crate) struct Expect<'a> {
    pub appid: &'a str,
    pub openid: &'a str,
}

/// `signature == sha1(rawData + session_key)` in lowercase hex, compared in constant time.
pub(crate) fn signature_matches(raw_data: &str, session_key: &str, signature: &str) -> bool {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(raw_data.as_bytes());
    ctx.update(session_key.as_bytes());
    let expected: String = ctx
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    constant_time_eq(expected.as_bytes(), signature.as_bytes())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// AES-128-CBC with strict PKCS#7, then a JSON object whose watermark names our app and
/// whose `openId`, when present, is the session's.
pub(crate) fn decrypt(
    session_key: &str,
    encrypted: &str,
    iv: &str,
    expect: &Expect<'_>,
) -> Result<Map<String, Value>, DecryptFailed> {
    let key = STANDARD.decode(session_key).map_err(|_| DecryptFailed)?;
    let iv: [u8; 16] = STANDARD
        .decode(iv)
        .ok()
        .and_then(|v| v.try_into().ok())
        .ok_or(DecryptFailed)?;
    let mut data = STANDARD.decode(encrypted).map_err(|_| DecryptFailed)?;
    if data.is_empty() || data.len() % 16 != 0 {
        return Err(DecryptFailed);
    }
    let key = UnboundCipherKey::new(&AES_128, &key).map_err(|_| DecryptFailed)?;
    let key = PaddedBlockDecryptingKey::cbc_pkcs7(key).map_err(|_| DecryptFailed)?;
    let plain = key
        .decrypt(&mut data, DecryptionContext::Iv128(FixedLength::from(iv)))
        .map_err(|_| DecryptFailed)?;
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(plain) else {
        return Err(DecryptFailed);
    };
    let watermark_ok = object
        .get("watermark")
        .and_then(|w| w.get("appid"))
        .and_then(Value::as_str)
        == Some(expect.appid);
    let openid_ok = match object.get("openId") {
        None => true,
        Some(v) => v.as_str() == Some(expect.openid),
    };
    if watermark_ok && openid_ok {
        Ok(object)
    } else {
        Err(DecryptFailed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_official_signature_example_verifies() {
        let raw = r#"{"nickName":"Band","gender":1,"language":"zh_CN","city":"Guangzhou","province":"Guangdong","country":"CN","avatarUrl":"http://wx.qlogo.cn/mmopen/vi_32/1vZvI39NWFQ9XM4LtQpFrQJ1xlgZxx3w7bQxKARol6503Iuswjjn6nIGBiaycAjAtpujxyzYsrztuuICqIM5ibXQ/0"}"#;
        let key = "HyVFkGl5F5OQWJZZaNzBBg==";
        assert!(signature_matches(
            raw,
            key,
            "75e81ceda165f4ffa64f4068af58c64b8f54b88c"
        ));
        assert!(!signature_matches(
            raw,
            key,
            "75e81ceda165f4ffa64f4068af58c64b8f54b88d"
        ));
        assert!(!signature_matches(
            raw,
            key,
            "75E81CEDA165F4FFA64F4068AF58C64B8F54B88C"
        ));
        assert!(!signature_matches(raw, key, ""));
    }

    #[test]
    fn malformed_inputs_fail_the_same_way() {
        let expect = Expect {
            appid: "wx1",
            openid: "o1",
        };
        let key = "AAAAAAAAAAAAAAAAAAAAAA==";
        let iv = "AAAAAAAAAAAAAAAAAAAAAA==";
        for (k, data, iv) in [
            ("not base64", "AAAAAAAAAAAAAAAAAAAAAA==", iv),
            (key, "not base64!", iv),
            (key, "", iv),
            (key, "AAAAAAAAAAAAAAAAAAAA", iv),
            (key, "AAAAAAAAAAAAAAAAAAAAAA==", "AAAA"),
            ("AAAA", "AAAAAAAAAAAAAAAAAAAAAA==", iv),
        ] {
            assert_eq!(
                decrypt(k, data, iv, &expect),
                Err(DecryptFailed),
                "{k} {data} {iv}"
            );
        }
    }
}
