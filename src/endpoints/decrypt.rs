//! `POST {prefix}/decrypt`: the session's `session_key` opens the user data WeChat encrypted.

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::Value;

use super::{bearer_session, json_body, Call};
use crate::body::ResBody;
use crate::error::{json_response, GatewayError};
use crate::userdata::{self, Expect};

pub async fn decrypt(
    call: Call<'_>,
    request: Request<Incoming>,
) -> Result<Response<ResBody>, GatewayError> {
    let session = bearer_session(&call, &request).await?;
    let body = json_body(&call, request).await?;
    let text = |name: &str| match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(GatewayError::InvalidRequest(
            "decrypt fields must be strings",
        )),
    };
    let (Some(encrypted), Some(iv)) = (text("encryptedData")?, text("iv")?) else {
        return Err(GatewayError::InvalidRequest(
            "`encryptedData` and `iv` are required",
        ));
    };
    let key = session.session_key.expose();
    match (text("rawData")?, text("signature")?) {
        (None, None) => {}
        (Some(raw), Some(signature)) if userdata::signature_matches(raw, key, signature) => {}
        _ => return Err(GatewayError::DecryptFailed),
    }
    let expect = Expect {
        appid: &session.appid,
        openid: &session.openid,
    };
    let object =
        userdata::decrypt(key, encrypted, iv, &expect).map_err(|_| GatewayError::DecryptFailed)?;
    Ok(json_response(StatusCode::OK, &Value::Object(object)))
}
