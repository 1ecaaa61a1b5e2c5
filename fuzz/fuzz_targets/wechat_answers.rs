//! WeChat's answers, read by the real client (`wechat::WechatClient`) over loopback HTTP
//! from a fake WeChat that answers with the fuzz input.
//!
//! Input: one byte choosing the API (jscode2session, stable_token, the phone number,
//! checksession), then the answer body. The calls made with an access_token get a valid
//! stable_token answer first.
//! Asserts: no panic; an error is one of the WeChat errors (typed, never `Internal`) and
//! its client-facing text holds neither the app secret nor the access_token; an answer
//! whose `errcode` (a number or a numeric string) is not 0 is never taken as success,
//! nor is one whose `errcode` is of another type; a success carries what the answer said.
#![no_main]

use std::path::Path;
use std::sync::{Mutex, OnceLock};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wxgate::GatewayError;
use wxgate::Secret;
use wxgate::settings::Settings;
use wxgate::Store;
use wxgate::{AccessTokens, WechatClient};

const APP_SECRET: &str = "fuzz-app-secret-9f8e7d6c";
const ACCESS_TOKEN: &str = "FUZZ-ACCESS-TOKEN-5b4a3c2d";
const APPID: &str = "wx0123456789abcdef";
/// Where the client shares an app's access_token in the store.
const SHARED_TOKEN: &str = "access_token:wx0123456789abcdef";
/// What the fake WeChat answers `stable_token` with when the input is for another API.
const GOOD_TOKEN: &[u8] = b"{\"access_token\":\"FUZZ-ACCESS-TOKEN-5b4a3c2d\",\"expires_in\":7200}";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Api {
    Jscode2session,
    StableToken,
    PhoneNumber,
    CheckSession,
}

/// The API under test and the body the fake WeChat answers it with.
static ANSWER: Mutex<(Api, Vec<u8>)> = Mutex::new((Api::Jscode2session, Vec::new()));

struct World {
    runtime: tokio::runtime::Runtime,
    settings: Settings,
    /// One client for every run (building one takes far longer than a call); its token
    /// cache is emptied before each run, and its breakers never open.
    client: Mutex<WechatClient>,
    /// One store for every run (making and dropping one costs more than a call); the
    /// access_token a run shares through it is forgotten at the end of the run.
    store: Store,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(e) => panic!("runtime: {e}"),
        };
        let listener = match runtime.block_on(TcpListener::bind("127.0.0.1:0")) {
            Ok(listener) => listener,
            Err(e) => panic!("bind: {e}"),
        };
        let addr = match listener.local_addr() {
            Ok(addr) => addr,
            Err(e) => panic!("addr: {e}"),
        };
        runtime.spawn(serve(listener));
        // The breaker never opens: every run reaches the answer.
        let config = format!(
            "[wechat]\napi_base = \"http://{addr}\"\ncircuit_failures = {max}\n\
             [[wechat.apps]]\nappid = \"{APPID}\"\nsecret = \"{APP_SECRET}\"\n\
             [auth]\naudience = \"fuzz\"\n\
             [[auth.keys]]\nkid = \"k1\"\nalg = \"HS256\"\n\
             secret = \"fuzz-secret-0123456789abcdef-0123456789\"\n",
            max = u32::MAX
        );
        let settings = match wxgate::config::from_str(&config, Path::new(".")) {
            Ok(settings) => settings,
            Err(e) => panic!("fuzz config: {e}"),
        };
        let client = match WechatClient::new(&settings.wechat) {
            Ok(client) => Mutex::new(client),
            Err(e) => panic!("client: {e}"),
        };
        World {
            runtime,
            settings,
            client,
            store: Store::memory(),
        }
    })
}

async fn serve(listener: TcpListener) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(answer(stream));
    }
}

/// Answers requests on one keep-alive connection until the client closes it.
async fn answer(mut stream: TcpStream) {
    let mut buf = Vec::with_capacity(4096);
    loop {
        let Some((path, end)) = read_request(&mut stream, &mut buf).await else {
            return;
        };
        buf.drain(..end);
        let body = {
            let answer = match ANSWER.lock() {
                Ok(answer) => answer,
                Err(poisoned) => poisoned.into_inner(),
            };
            if path.starts_with("/cgi-bin/stable_token") && answer.0 != Api::StableToken {
                GOOD_TOKEN.to_vec()
            } else {
                answer.1.clone()
            }
        };
        // WeChat labels JSON as text/plain at times; the client must not care.
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        if stream
            .write_all(&[head.as_bytes(), &body].concat())
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Reads one request (head and `Content-Length` body) into `buf`: its path and length.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, usize)> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        if let httparse::Status::Complete(head) = request.parse(buf).ok()? {
            let length: usize = request
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
                .unwrap_or(0);
            let path = request.path.unwrap_or("").to_string();
            if buf.len() >= head + length {
                return Some((path, head + length));
            }
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// `errcode` as the answer holds it: `Some(code)` for absent (0), a number, or a numeric
/// string; `None` for anything else.
fn errcode(answer: &Value) -> Option<i64> {
    match answer.get("errcode") {
        None | Some(Value::Null) => Some(0),
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        Some(_) => None,
    }
}

/// The answer as a JSON object, when it is one.
fn object(body: &[u8]) -> Option<Value> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .filter(Value::is_object)
}

/// A success needs an object whose errcode reads as 0 (or `ok_code` for checksession's
/// "expired" answer).
fn assert_success_allowed(api: Api, body: &[u8], ok_code: i64) {
    let answer = object(body);
    let code = answer.as_ref().and_then(errcode);
    assert_eq!(
        code,
        Some(ok_code),
        "{api:?} took {:?} as success",
        String::from_utf8_lossy(body)
    );
}

fn assert_typed_error(api: Api, error: &GatewayError) {
    let allowed = matches!(
        error,
        GatewayError::InvalidCode
            | GatewayError::CodeUsed
            | GatewayError::CodeBlocked
            | GatewayError::RateLimited { .. }
            | GatewayError::WechatBusy
            | GatewayError::WechatUnavailable(_)
            | GatewayError::WechatQuota
            | GatewayError::ServerMisconfigured(_)
    );
    assert!(allowed, "{api:?} failed with {error:?}");
    for text in [error.description().into_owned(), error.to_string()] {
        assert!(
            !text.contains(APP_SECRET) && !text.contains(ACCESS_TOKEN),
            "{api:?} error text leaks a secret: {text}"
        );
    }
}

fn str_at<'a>(answer: &'a Value, pointer: &str) -> Option<&'a str> {
    answer.pointer(pointer).and_then(Value::as_str)
}

async fn call(api: Api, body: &[u8], world: &World, client: &WechatClient) {
    let (settings, store) = (&world.settings, &world.store);
    // A token shared through the store by an earlier run would skip the fetch.
    assert!(
        matches!(store.shared_get(SHARED_TOKEN).await, Ok(None)),
        "an access_token is left in the store"
    );
    let app = &settings.wechat.apps[0];
    let answer = object(body);
    let got = |pointer: &str| answer.as_ref().and_then(|a| str_at(a, pointer));
    match api {
        Api::Jscode2session => match client.jscode2session(app, "fuzzcode").await {
            Ok(session) => {
                assert_success_allowed(api, body, 0);
                assert_eq!(Some(session.openid.as_str()), got("/openid"));
                assert!(wxgate::tokens::is_safe_id(&session.openid));
                let key = session.session_key.expose();
                assert_eq!(Some(key), got("/session_key"));
                assert!(STANDARD.decode(key).is_ok_and(|k| k.len() == 16));
                assert_eq!(session.unionid.as_deref(), got("/unionid"));
            }
            Err(e) => assert_typed_error(api, &e),
        },
        Api::StableToken => match client.access_token(app, store).await {
            Ok(managed) => {
                assert_success_allowed(api, body, 0);
                assert_eq!(Some(managed.token.expose()), got("/access_token"));
                let _ = store
                    .shared_forget(SHARED_TOKEN, managed.token.expose())
                    .await;
            }
            Err(e) => assert_typed_error(api, &e),
        },
        Api::PhoneNumber => {
            match client
                .phone_number(app, store, "fuzzphonecode", "oFuzz")
                .await
            {
                Ok(info) => {
                    assert_success_allowed(api, body, 0);
                    assert_eq!(
                        Some(info.phone_number.as_str()),
                        got("/phone_info/phoneNumber")
                    );
                    assert_eq!(got("/phone_info/watermark/appid"), Some(APPID));
                    // It may become a header value upstream.
                    let phone = info.phone_number.as_bytes();
                    assert!(
                        (1..=32).contains(&phone.len())
                            && phone
                                .iter()
                                .all(|b| b.is_ascii_digit() || b" +-".contains(b)),
                        "phone {:?}",
                        info.phone_number
                    );
                }
                Err(e) => assert_typed_error(api, &e),
            }
        }
        Api::CheckSession => {
            let key = Secret::new("AAAAAAAAAAAAAAAAAAAAAA==");
            match client.session_key_valid(app, store, "oFuzz", &key).await {
                Ok(valid) => assert_success_allowed(api, body, if valid { 0 } else { 87009 }),
                Err(e) => assert_typed_error(api, &e),
            }
        }
    }
    let _ = store.shared_forget(SHARED_TOKEN, ACCESS_TOKEN).await;
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let api = match selector % 4 {
        0 => Api::Jscode2session,
        1 => Api::StableToken,
        2 => Api::PhoneNumber,
        _ => Api::CheckSession,
    };
    let world = world();
    {
        let mut answer = match ANSWER.lock() {
            Ok(answer) => answer,
            Err(poisoned) => poisoned.into_inner(),
        };
        *answer = (api, body.to_vec());
    }
    let mut client = match world.client.lock() {
        Ok(client) => client,
        Err(poisoned) => poisoned.into_inner(),
    };
    // Each run fetches its own access_token: none cached, no failure held.
    client.tokens = AccessTokens::default();
    world.runtime.block_on(call(api, body, world, &client));
});
