//! TLS for the HTTPS listener: rustls on aws-lc-rs (the one crypto provider), TLS 1.3 and
//! 1.2 with rustls' default (modern, AEAD-only) suites, ALPN `h2` then `http/1.1`.
//!
//! The server config is built from the PEM files with the rest of the configuration, so
//! `wxgate check` validates them and a SIGHUP reload picks up renewed certificates: new
//! handshakes use the new ones, established connections keep theirs.
//!
//! Sessions resume with stateless tickets ([`ticketer`]): rustls' default is a stateful
//! cache of 256 sessions, which a few hundred clients turn over in seconds, so a phone
//! coming back after a minute would pay a full handshake again.

use std::sync::{Arc, OnceLock};

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
    config.ticketer = ticketer()?;
    Ok(Arc::new(config))
}

/// The process's session-ticket keys: AES-256 + HMAC-SHA256 (RFC 5077 §4), a new key every
/// 6 hours, tickets valid 12 hours. Resumption costs the server no memory per client, and
/// TLS 1.3 resumption still runs an (EC)DHE exchange, so session traffic keeps forward
/// secrecy; early data stays off. One ticketer for the life of the process, shared by
/// every configuration a reload builds: a SIGHUP (a renewed certificate) must not send
/// every client back to a full handshake at once. The configurations it is shared
/// between differ only in their certificate, never in client authentication (there is
/// none), which is what makes sharing it safe (see rustls' `ServerConfig` docs). Each
/// instance has its own keys: a client resumes with the instance that issued its ticket.
fn ticketer() -> Result<Arc<dyn rustls::server::ProducesTickets>, String> {
    static TICKETER: OnceLock<Arc<dyn rustls::server::ProducesTickets>> = OnceLock::new();
    if let Some(ticketer) = TICKETER.get() {
        return Ok(ticketer.clone());
    }
    // Not cached when it fails (the system RNG refused): the next load tries again.
    let made = rustls::crypto::aws_lc_rs::Ticketer::new()
        .map_err(|e| format!("TLS session tickets: {e}"))?;
    Ok(TICKETER.get_or_init(|| made).clone())
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
