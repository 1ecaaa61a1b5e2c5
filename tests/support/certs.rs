//! A throwaway certificate authority made at test time (rcgen), and leaf certificates it
//! signs for localhost and 127.0.0.1: servers (the HTTPS listener, a TLS Redis) and clients,
//! and a rustls client that trusts only it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "wxgate test CA");
        let key = KeyPair::generate().expect("ca key");
        Self {
            issuer: CertifiedIssuer::self_signed(params, key).expect("ca"),
        }
    }

    /// A leaf for localhost and 127.0.0.1: (certificate PEM, key PEM, certificate DER).
    pub fn leaf(&self, name: &str) -> (String, String, CertificateDer<'static>) {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("leaf");
        (cert.pem(), key.serialize_pem(), cert.der().clone())
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A TLS client handshake for `localhost` on `tcp`, trusting only this CA and offering
    /// `alpn`.
    pub async fn connect(
        &self,
        tcp: TcpStream,
        alpn: &[&[u8]],
    ) -> tokio_rustls::client::TlsStream<TcpStream> {
        connect_with(Arc::new(self.client_config(alpn)), tcp).await
    }

    /// The rustls client [`Ca::connect`] uses (with its own session cache: connections made
    /// with one `Arc` of it resume each other's sessions).
    pub fn client_config(&self, alpn: &[&[u8]]) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der()).expect("root");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// Writes the CA (`ca.pem`) and a leaf named `name` (`{name}.pem`, `{name}.key`) into
    /// `dir`; returns the leaf's two paths.
    pub fn write_leaf(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let (cert, key, _) = self.leaf(name);
        std::fs::write(dir.join("ca.pem"), self.pem()).expect("write ca");
        let paths = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&paths.0, cert).expect("write cert");
        std::fs::write(&paths.1, key).expect("write key");
        paths
    }
}

/// A TLS client handshake for `localhost` on `tcp` with `config`.
pub async fn connect_with(
    config: Arc<rustls::ClientConfig>,
    tcp: TcpStream,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let name = ServerName::try_from("localhost").expect("name");
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .expect("handshake")
}

/// A fresh folder under the system temp dir, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(what: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "wxgate-{what}-{}-{}",
            std::process::id(),
            super::unique()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
