//! TLS for the HTTPS listener: rustls on aws-lc-rs (the one crypto provider), TLS 1.3 and
//! 1.2 with rustls' default (modern, AEAD-only) suites, ALPN `h2` then `http/1.1`.
//!
//! The server config is built from the PEM files with the rest of the configuration, so
//! `wxgate check` validates them and a SIGHUP reload picks up renewed certificates: new
//! handshakes use the new ones, established connections keep theirs.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

/// Builds the server config from a PEM certificate chain (leaf first) and a PEM private key
/// (PKCS#8, PKCS#1 or SEC1). Messages name what is wrong, never the key's contents.
pub(crate) fn server_config(chain_pem: &[u8], key_pem: &[u8]) -> Result<Arc<ServerConfig>, String> {
    let chain = CertificateDer::pem_slice_iter(chain_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| "the certificate file is not valid PEM".to_string())?;
    if chain.is_empty() {
        return Err("the certificate file holds no CERTIFICATE block".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|_| "the key file holds no PEM private key".to_string())?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("the certificate and key do not make a usable pair: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_refused_without_echoing_it() {
        let e = server_config(b"not pem", b"SECRET-KEY-BYTES")
            .err()
            .unwrap_or_default();
        assert!(e.contains("no CERTIFICATE"), "{e}");
        assert!(!e.contains("SECRET"));
    }
}
