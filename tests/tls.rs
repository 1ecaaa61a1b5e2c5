//! HTTPS: a throwaway CA and certificate made at test time, HTTP/1.1 and HTTP/2 (ALPN) over
//! TLS, `X-Forwarded-Proto: https`, a certificate renewed by a reload while an
//! established connection keeps working, and session resumption with tickets.
// Test code may panic on what it set up, and its helpers are `pub` for the test files.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::HandshakeKind;
use support::certs::{connect_with, Ca};
use support::{mint, ConfigBuilder, RunningGateway, Upstream, Wechat};
use tokio::net::TcpStream;

struct Https {
    _wechat: Wechat,
    upstream: Upstream,
    gateway: RunningGateway,
    ca: Ca,
    dir: PathBuf,
    first: CertificateDer<'static>,
}

impl Https {
    async fn start() -> Self {
        let ca = Ca::new();
        let dir = std::env::temp_dir().join(format!(
            "wxgate-tls-{}-{}",
            std::process::id(),
            support::unique()
        ));
        std::fs::create_dir_all(&dir).expect("dir");
        let (cert, key, first) = ca.leaf("first");
        write_pair(&dir, &cert, &key);
        let wechat = Wechat::start().await;
        let upstream = Upstream::start().await;
        let mut config = ConfigBuilder::new(&wechat.base(), &upstream.base());
        config.server_extra = "tls_listen = \"127.0.0.1:0\"\ntls_cert_file = \"tls.crt\"\ntls_key_file = \"tls.key\"\n".into();
        let path = dir.join("gateway.toml");
        std::fs::write(&path, config.text()).expect("config");
        let settings = wxgate::config::load(&path).expect("valid config");
        let gateway = RunningGateway::start_settings(settings).await;
        Self {
            _wechat: wechat,
            upstream,
            gateway,
            ca,
            dir,
            first,
        }
    }

    fn client(&self, http1_only: bool) -> reqwest::Client {
        let ca = reqwest::Certificate::from_der(&self.ca.der()).expect("ca");
        let builder = reqwest::Client::builder().tls_certs_only([ca]);
        let builder = if http1_only {
            builder.http1_only()
        } else {
            builder
        };
        builder.build().expect("client")
    }

    fn url(&self, path: &str) -> String {
        let port = self.gateway.tls.expect("tls listener").port();
        format!("https://localhost:{port}{path}")
    }

    /// A raw TLS connection offering `alpn`.
    async fn connect(&self, alpn: &[&[u8]]) -> tokio_rustls::client::TlsStream<TcpStream> {
        let tcp = TcpStream::connect(self.gateway.tls.expect("tls"))
            .await
            .expect("tcp");
        self.ca.connect(tcp, alpn).await
    }

    /// A connection made with `client` (and its session cache) that completes one request,
    /// so the client has read the session tickets sent after the handshake; how it
    /// shook hands.
    async fn served_with(&self, client: &Arc<rustls::ClientConfig>) -> HandshakeKind {
        let tcp = TcpStream::connect(self.gateway.tls.expect("tls"))
            .await
            .expect("tcp");
        let mut stream = connect_with(client.clone(), tcp).await;
        assert_eq!(
            support::get_on(&mut stream, &mint("o_tls_resume", 300)).await,
            200
        );
        let kind = stream.get_ref().1.handshake_kind().expect("handshake done");
        assert_eq!(
            stream.get_ref().1.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        );
        kind
    }
}

impl Drop for Https {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn write_pair(dir: &Path, cert: &str, key: &str) {
    std::fs::write(dir.join("tls.crt"), cert).expect("cert");
    std::fs::write(dir.join("tls.key"), key).expect("key");
}

fn peer_leaf(stream: &tokio_rustls::client::TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().expect("certs")[0]
        .clone()
        .into_owned()
}

#[tokio::test]
async fn https_serves_http1_and_http2_and_says_so_upstream() {
    let https = Https::start().await;
    let token = mint("o_tls_1", 300);
    for (http1_only, version) in [
        (true, reqwest::Version::HTTP_11),
        (false, reqwest::Version::HTTP_2),
    ] {
        let response = https
            .client(http1_only)
            .get(https.url("/api/orders"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("https request");
        assert_eq!(response.status(), 200);
        assert_eq!(response.version(), version);
        let seen = https.upstream.last();
        assert_eq!(seen.one("x-forwarded-proto"), Some("https"));
        assert_eq!(seen.one("x-openid"), Some("o_tls_1"));
    }
    let plain = reqwest::get(https.gateway.url("/api/orders"))
        .await
        .expect("plain");
    assert_eq!(plain.status(), 401, "the plain listener still serves");
}

#[tokio::test]
async fn without_alpn_a_tls_client_speaks_http1_and_its_connection_is_counted() {
    let https = Https::start().await;
    let mut stream = https.connect(&[]).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), None);
    assert_eq!(
        support::get_on(&mut stream, &mint("o_tls_2", 300)).await,
        200
    );
    let metrics = reqwest::get(format!("http://{}/metrics", https.gateway.admin))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let open = wxgate::metric_sample(&metrics, "wxgate_open_connections{listener=\"https\"}");
    assert!(
        open >= 1.0,
        "the open TLS connection is not counted:\n{metrics}"
    );
}

#[tokio::test]
async fn an_https_keep_alive_connection_serves_again_after_it_parks() {
    let https = Https::start().await;
    let mut stream = https.connect(&[b"http/1.1"]).await;
    let token = mint("o_tls_parked", 300);
    assert_eq!(support::get_on(&mut stream, &token).await, 200);
    // Idle for longer than the second after which an HTTP/1 connection is parked: the
    // TLS session stays, hyper's buffers go, and the next request resumes it.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let metrics = reqwest::get(format!("http://{}/metrics", https.gateway.admin))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let parked = wxgate::metric_sample(&metrics, "wxgate_parked_connections");
    assert!(parked >= 1.0, "the idle TLS connection is not parked");
    assert_eq!(support::get_on(&mut stream, &token).await, 200);
    assert_eq!(support::get_on(&mut stream, &token).await, 200);
    let paths: Vec<String> = https
        .upstream
        .requests()
        .into_iter()
        .map(|r| r.target)
        .collect();
    assert_eq!(paths.len(), 3, "{paths:?}");
}

#[tokio::test]
async fn alpn_offers_h2_then_http1() {
    let https = Https::start().await;
    let h2 = https.connect(&[b"h2", b"http/1.1"]).await;
    assert_eq!(h2.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let h1 = https.connect(&[b"http/1.1"]).await;
    assert_eq!(h1.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let version = h1.get_ref().1.protocol_version();
    assert!(
        matches!(
            version,
            Some(rustls::ProtocolVersion::TLSv1_3 | rustls::ProtocolVersion::TLSv1_2)
        ),
        "{version:?}"
    );
}

#[tokio::test]
async fn a_reload_serves_the_renewed_certificate_without_dropping_connections() {
    let https = Https::start().await;
    let token = mint("o_tls_2", 300);
    let mut open = https.connect(&[b"http/1.1"]).await;
    assert_eq!(peer_leaf(&open), https.first);
    assert_eq!(support::get_on(&mut open, &token).await, 200);

    let (cert, key, second) = https.ca.leaf("second");
    write_pair(&https.dir, &cert, &key);
    https.gateway.state.reload().expect("reload");

    let fresh = https.connect(&[b"http/1.1"]).await;
    assert_eq!(
        peer_leaf(&fresh),
        second,
        "new handshakes get the renewed certificate"
    );
    assert_eq!(
        support::get_on(&mut open, &token).await,
        200,
        "the old connection keeps working"
    );

    std::fs::write(https.dir.join("tls.key"), "not a key").expect("write");
    assert!(
        https.gateway.state.reload().is_err(),
        "a broken key is refused"
    );
    let after = https.connect(&[b"http/1.1"]).await;
    assert_eq!(
        peer_leaf(&after),
        second,
        "and the running certificate kept"
    );
}

#[tokio::test]
async fn a_returning_client_resumes_its_session() {
    let https = Https::start().await;
    let client = Arc::new(https.ca.client_config(&[b"http/1.1"]));
    assert_eq!(https.served_with(&client).await, HandshakeKind::Full);
    assert_eq!(https.served_with(&client).await, HandshakeKind::Resumed);
    assert_eq!(
        https.served_with(&client).await,
        HandshakeKind::Resumed,
        "the resumed connection brought a new ticket"
    );
}

/// Tickets, not a server-side cache: rustls' default cache holds 256 sessions, and 300
/// other clients (two tickets each) would have pushed the first one out of it. A reload
/// keeps the ticket keys.
#[tokio::test]
async fn a_session_resumes_after_many_other_clients_and_a_reload() {
    let https = Https::start().await;
    let client = Arc::new(https.ca.client_config(&[b"http/1.1"]));
    assert_eq!(https.served_with(&client).await, HandshakeKind::Full);
    for _ in 0..300 {
        let other = Arc::new(https.ca.client_config(&[b"http/1.1"]));
        assert_eq!(https.served_with(&other).await, HandshakeKind::Full);
    }
    https.gateway.state.reload().expect("reload");
    assert_eq!(https.served_with(&client).await, HandshakeKind::Resumed);
}

#[test]
fn config_errors_name_the_tls_keys_and_never_show_the_key() {
    let ca = Ca::new();
    let (cert, _, _) = ca.leaf("x");
    let (_, other_key, _) = ca.leaf("y");
    let dir = std::env::temp_dir().join(format!("wxgate-tls-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("tls.crt"), &cert).expect("cert");
    std::fs::write(dir.join("other.key"), &other_key).expect("key");
    let with = |server_extra: &str| {
        let mut c = ConfigBuilder::new("http://127.0.0.1:9", "http://127.0.0.1:9");
        c.server_extra = server_extra.into();
        match wxgate::config::from_str(&c.text(), &dir) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    };
    let mismatch = with(
        "tls_listen = \"127.0.0.1:0\"\ntls_cert_file = \"tls.crt\"\ntls_key_file = \"other.key\"\n",
    );
    assert!(mismatch.contains("server.tls_cert_file"), "{mismatch}");
    let key_line = other_key.lines().nth(1).expect("key body");
    assert!(!mismatch.contains(key_line), "{mismatch}");
    let partial = with("tls_listen = \"127.0.0.1:0\"\n");
    assert!(partial.contains("server.tls_listen"), "{partial}");
    let missing = with("tls_listen = \"127.0.0.1:0\"\ntls_cert_file = \"nope.crt\"\ntls_key_file = \"other.key\"\n");
    assert!(
        missing.contains("server.tls_cert_file: cannot read"),
        "{missing}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
