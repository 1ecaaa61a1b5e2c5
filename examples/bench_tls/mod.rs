//! The TLS settings shared by the benchmark's TLS tools: TLS 1.3 only, one cipher suite
//! (TLS_AES_128_GCM_SHA256) and one key exchange (X25519), the ones `bench/run.sh` also
//! gives h2load, nginx and HAProxy, so every setup does the same cryptography.
// Each tool uses its part of this module.
#![allow(dead_code)]

use std::sync::Arc;

use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// aws-lc-rs restricted to the benchmark's suite and group.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(CryptoProvider {
        cipher_suites: vec![aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256],
        kx_groups: vec![aws_lc_rs::kx_group::X25519],
        ..aws_lc_rs::default_provider()
    })
}

/// A server with the PEM chain and key, ALPN `h2` then `http/1.1`, and stateless session
/// tickets (what nginx and HAProxy do with OpenSSL's defaults).
pub fn server_config(cert_pem: &str, key_pem: &str) -> Arc<ServerConfig> {
    let chain = CertificateDer::pem_file_iter(cert_pem)
        .unwrap_or_else(|e| panic!("{cert_pem}: {e}"))
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| panic!("{cert_pem}: {e}"));
    let key = PrivateKeyDer::from_pem_file(key_pem).unwrap_or_else(|e| panic!("{key_pem}: {e}"));
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("certificate and key");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.ticketer = aws_lc_rs::Ticketer::new().expect("ticketer");
    Arc::new(config)
}

/// A client trusting only the CA in `ca_pem`, offering `alpn`; with `resume`, connections
/// made with this config share one session store (rustls' in-memory cache, which keeps the
/// last 8 TLS 1.3 tickets per server), as the connections of one app would.
pub fn client_config(ca_pem: &str, alpn: &[&[u8]], resume: bool) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_pem).unwrap_or_else(|e| panic!("{ca_pem}: {e}")) {
        roots
            .add(cert.unwrap_or_else(|e| panic!("{ca_pem}: {e}")))
            .expect("CA certificate");
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    if !resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Arc::new(config)
}

/// `config` with a session store of its own: another client (another phone) of the same
/// kind.
pub fn own_sessions(config: &ClientConfig) -> Arc<ClientConfig> {
    let mut own = config.clone();
    own.resumption = rustls::client::Resumption::in_memory_sessions(8);
    Arc::new(own)
}

/// The name the benchmark's certificate is for.
pub fn server_name() -> rustls::pki_types::ServerName<'static> {
    rustls::pki_types::ServerName::try_from("localhost").expect("server name")
}
