//! `wxgate demo` and `wxgate mock-wechat`: the whole flow on loopback in one command.

use std::path::Path;
use std::process::ExitCode;

use tokio::net::TcpListener;

use super::mock_wechat::{MockOptions, MockWechat};
use crate::cli::{self, EXIT_CONFIG};
use crate::gateway::Gateway;
use crate::server::{run as run_gateway, Listeners};

const DEMO_APPID: &str = "wxd0000000000000de";
const PREFERRED_PORT: u16 = 8080;

pub async fn mock_wechat(listen: &str, slow_delay: &str) -> ExitCode {
    let slow_delay = match cli::flag_duration("slow-delay", slow_delay) {
        Ok(d) => d,
        Err(code) => return code,
    };
    let listener = match TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("wxgate mock-wechat: cannot listen on {listen}: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "mock-wechat listening");
    }
    let options = MockOptions {
        slow_delay,
        ..MockOptions::default()
    };
    match MockWechat::new(options)
        .serve(listener, cli::shutdown_signal())
        .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wxgate mock-wechat: {e}");
            ExitCode::FAILURE
        }
    }
}

pub async fn run() -> ExitCode {
    match start().await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wxgate demo: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn start() -> anyhow::Result<ExitCode> {
    let local = "127.0.0.1:0";
    let mock = TcpListener::bind(local).await?;
    let echo = TcpListener::bind(local).await?;
    let admin = TcpListener::bind(local).await?;
    let public = match TcpListener::bind(("127.0.0.1", PREFERRED_PORT)).await {
        Ok(l) => l,
        Err(_) => TcpListener::bind(local).await?,
    };
    let (mock_addr, echo_addr, admin_addr, gw_addr) = (
        mock.local_addr()?,
        echo.local_addr()?,
        admin.local_addr()?,
        public.local_addr()?,
    );
    let config = demo_config(gw_addr, admin_addr, mock_addr, echo_addr);
    let settings = crate::config::from_str(&config, Path::new("."))?;
    let gateway = Gateway::new(settings)?;
    tokio::spawn(MockWechat::new(MockOptions::default()).serve(mock, std::future::pending()));
    tokio::spawn(super::echo::serve(echo, std::future::pending()));
    // One write, and no panic if nobody reads stdout any more: the gateway must keep running.
    {
        use std::io::Write;
        let text = walkthrough(&format!("http://{gw_addr}"), admin_addr);
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    }
    run_gateway(
        Listeners {
            public,
            tls: None,
            admin: Some(admin),
        },
        gateway,
        cli::shutdown_signal(),
    )
    .await;
    Ok(ExitCode::SUCCESS)
}

fn demo_config(
    gateway: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    mock: std::net::SocketAddr,
    echo: std::net::SocketAddr,
) -> String {
    let secret = crate::tokens::random_id(32);
    format!(
        r#"
[server]
listen = "{gateway}"
[admin]
listen = "{admin}"
[wechat]
api_base = "http://{mock}"
timeout = "3s"
[[wechat.apps]]
appid = "{DEMO_APPID}"
secret = "demo-app-secret"
[auth]
audience = "demo-mini-program"
access_ttl = "15m"
[[auth.keys]]
kid = "demo"
alg = "HS256"
secret = "{secret}"
[[routes]]
prefix = "/api/public"
upstream = "http://{echo}"
auth = "none"
[[routes]]
prefix = "/api"
upstream = "http://{echo}"
auth = "required"
"#
    )
}

fn walkthrough(gw: &str, admin: std::net::SocketAddr) -> String {
    format!(
        r#"
wxgate demo is running: mock WeChat, an echo upstream and the gateway, all on loopback.
  gateway  {gw}        (routes: /api/public -> echo, no auth; /api -> echo, token required)
  admin    http://{admin}/healthz

Copy these into another terminal:

# 1. Log in with a wx.login code (mock-wechat accepts any code; a code works once).
curl -s -X POST {gw}/auth/login -H 'content-type: application/json' -d '{{"code":"demo-code-1"}}'
LOGIN=$(curl -s -X POST {gw}/auth/login -H 'content-type: application/json' -d '{{"code":"demo-code-2"}}')
TOKEN=$(echo "$LOGIN" | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
REFRESH=$(echo "$LOGIN" | sed -E 's/.*"refresh_token":"([^"]+)".*/\1/')

# 2. Call a protected route: the upstream sees the X-OpenId wxgate injected.
curl -s {gw}/api/hello -H "Authorization: Bearer $TOKEN"

# 3. Without a token: 401 with a WWW-Authenticate challenge.
curl -si {gw}/api/hello

# 4. Try to spoof an identity: the upstream never sees X-OpenId or X_OpenId from a client.
curl -s {gw}/api/public/hello -H 'X-OpenId: admin' -H 'X_OpenId: admin'

# 5. Reuse a code: WeChat is not called twice, the second try is 400 code_used.
curl -s -X POST {gw}/auth/login -H 'content-type: application/json' -d '{{"code":"demo-code-1"}}'

# 6. Refresh (the old refresh token is spent), then log out (the session's tokens stop working).
curl -s -X POST {gw}/auth/refresh -H 'content-type: application/json' -d "{{\"refresh_token\":\"$REFRESH\"}}"
curl -si -X POST {gw}/auth/logout -H "Authorization: Bearer $TOKEN"
curl -s {gw}/api/hello -H "Authorization: Bearer $TOKEN"

# 7. From a mini-program: the SDK in clients/miniprogram (npm package wxgate-miniprogram)
#    logs in on first use, refreshes once for every caller and logs in again when it must:
#      import {{ createClient }} from 'wxgate-miniprogram'
#      const api = createClient({{ baseURL: '{gw}' }})
#      const hello = await api.get('/api/hello')

Stop with Ctrl-C.
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walkthrough_shows_where_the_sdk_is_with_an_example_for_this_gateway() {
        let admin: std::net::SocketAddr = "127.0.0.1:9090".parse().expect("addr");
        let text = walkthrough("http://127.0.0.1:8080", admin);
        assert!(text.contains("clients/miniprogram"), "{text}");
        for line in [
            "import { createClient } from 'wxgate-miniprogram'",
            "const api = createClient({ baseURL: 'http://127.0.0.1:8080' })",
            "const hello = await api.get('/api/hello')",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }
}
