//! TLS to Redis: `rediss://` or `tls = true`, the CA and the client certificate pair.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::{Check, StoreSection};
use crate::secret::Secret;
use crate::settings::RedisTls;

impl Check<'_> {
    /// TLS when the URL says `rediss://` or `tls = true`; `None` inside means plain TCP.
    pub(super) fn tls(&mut self, s: &StoreSection) -> Option<Option<RedisTls>> {
        let on = match &s.url {
            Some(url) => url.starts_with("rediss://"),
            None => s.tls.unwrap_or(false),
        };
        if !on {
            let files = [
                ("ca_file", s.ca_file.is_some()),
                ("cert_file", s.cert_file.is_some()),
                ("key_file", s.key_file.is_some()),
            ];
            for (key, _) in files.iter().filter(|(_, set)| *set) {
                self.problem(key, "is only used with TLS (rediss://, or tls = true)");
            }
            return Some(None);
        }
        let ca = match s.ca_file.as_deref() {
            None => None,
            Some(file) => {
                let pem = self.read("ca_file", file)?;
                let certs = CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>();
                if !certs.is_ok_and(|c| !c.is_empty()) {
                    self.problem("ca_file", "holds no PEM CERTIFICATE block");
                    return None;
                }
                Some(pem)
            }
        };
        let client = match (s.cert_file.as_deref(), s.key_file.as_deref()) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(self.client_pair(cert, key)?),
            _ => {
                self.problem("cert_file", "set both cert_file and key_file, or neither");
                return None;
            }
        };
        Some(Some(RedisTls { ca, client }))
    }

    /// The client certificate chain and key, checked to be a usable pair.
    fn client_pair(&mut self, cert_file: &str, key_file: &str) -> Option<(Vec<u8>, Secret)> {
        let chain_pem = self.read("cert_file", cert_file)?;
        let key_pem = self.read("key_file", key_file)?;
        let chain = CertificateDer::pem_slice_iter(&chain_pem).collect::<Result<Vec<_>, _>>();
        let chain = match chain {
            Ok(chain) if !chain.is_empty() => chain,
            _ => {
                self.problem("cert_file", "holds no PEM CERTIFICATE block");
                return None;
            }
        };
        // The message never shows the key's contents.
        let Ok(key) = PrivateKeyDer::from_pem_slice(&key_pem) else {
            self.problem("key_file", "holds no PEM private key");
            return None;
        };
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let usable = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|b| {
                b.with_root_certificates(rustls::RootCertStore::empty())
                    .with_client_auth_cert(chain, key)
            });
        if let Err(e) | Ok(Err(e)) = usable.map(|r| r.map(drop)) {
            self.problem(
                "key_file",
                format!("does not make a usable pair with cert_file: {e}"),
            );
            return None;
        }
        let key_text = String::from_utf8(key_pem).ok()?;
        Some((chain_pem, Secret::new(key_text)))
    }
}
