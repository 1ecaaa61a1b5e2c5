//! Calls to the operator's endpoints on a gateway's admin listener.

use serde_json::Value;

use super::RunningGateway;

/// One admin call: `GET` when `body` is `None`, else `POST` with it as JSON; the status and
/// the JSON answer (`Null` if none). `token` goes in `Authorization: Bearer`.
pub async fn call(
    http: &reqwest::Client,
    gw: &RunningGateway,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> (u16, Value) {
    let url = format!("http://{}{path}", gw.admin);
    let mut request = match body {
        Some(body) => http.post(url).json(&body),
        None => http.get(url),
    };
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("admin request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `GET {path}` without a token.
pub async fn get(http: &reqwest::Client, gw: &RunningGateway, path: &str) -> (u16, Value) {
    call(http, gw, path, None, None).await
}

/// `POST {path}` with `body`, without a token.
pub async fn post(
    http: &reqwest::Client,
    gw: &RunningGateway,
    path: &str,
    body: Value,
) -> (u16, Value) {
    call(http, gw, path, Some(body), None).await
}

/// `POST /sessions/revoke` with `body`, which must succeed; the answer.
pub async fn revoke(http: &reqwest::Client, gw: &RunningGateway, body: Value) -> Value {
    let (status, answer) = post(http, gw, "/sessions/revoke", body).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

/// The session ids `GET /sessions?{query}` lists.
pub async fn session_ids(http: &reqwest::Client, gw: &RunningGateway, query: &str) -> Vec<String> {
    let (status, body) = get(http, gw, &format!("/sessions?{query}")).await;
    assert_eq!(status, 200, "{body}");
    let mut ids: Vec<String> = body["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .map(|s| s["session_id"].as_str().expect("session_id").to_string())
        .collect();
    ids.sort();
    ids
}
