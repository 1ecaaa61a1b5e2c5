//! `[server]`: the listeners, HTTPS, trusted proxies, timeouts and request limits.

use ipnet::IpNet;

use super::Builder;
use crate::config::file::ServerSection;
use crate::settings::{ServerSettings, TlsSettings};

impl Builder<'_> {
    pub(super) fn server(&mut self, s: &ServerSection) -> Option<ServerSettings> {
        let listen = self.socket("server.listen", &s.listen);
        let tls = self.tls(s);
        let mut trusted_proxies = Vec::new();
        for (i, text) in s.trusted_proxies.iter().enumerate() {
            match parse_net(text) {
                Some(net) => trusted_proxies.push(net),
                None => self.problem(
                    &format!("server.trusted_proxies[{i}]"),
                    format!("`{text}` is not an address or CIDR range"),
                ),
            }
        }
        let header_read_timeout =
            self.duration("server.header_read_timeout", &s.header_read_timeout);
        let request_timeout = self.duration("server.request_timeout", &s.request_timeout);
        let shutdown_grace = self.duration("server.shutdown_grace", &s.shutdown_grace);
        let max_body_bytes = self.positive("server.max_body_bytes", s.max_body_bytes);
        let max_header_bytes =
            self.bounded("server.max_header_bytes", s.max_header_bytes, 1024, 1 << 20);
        let max_headers = self.bounded("server.max_headers", s.max_headers, 8, 1000);
        let max_uri_bytes = self.bounded("server.max_uri_bytes", s.max_uri_bytes, 256, 65_000);
        Some(ServerSettings {
            listen: listen?,
            tls: tls?,
            trusted_proxies,
            header_read_timeout: header_read_timeout?,
            request_timeout: request_timeout?,
            max_body_bytes: max_body_bytes?,
            max_header_bytes: max_header_bytes?,
            max_headers: max_headers?,
            max_uri_bytes: max_uri_bytes?,
            shutdown_grace: shutdown_grace?,
        })
    }

    fn tls(&mut self, s: &ServerSection) -> Option<Option<TlsSettings>> {
        let (listen, cert, key) = match (&s.tls_listen, &s.tls_cert_file, &s.tls_key_file) {
            (None, None, None) => return Some(None),
            (Some(listen), Some(cert), Some(key)) => (listen, cert, key),
            _ => {
                self.problem(
                    "server.tls_listen",
                    "HTTPS needs all of tls_listen, tls_cert_file and tls_key_file",
                );
                return None;
            }
        };
        let listen = self.socket("server.tls_listen", listen);
        let chain = self.read_file("server.tls_cert_file", cert);
        // The key is read as a secret: it is never shown, whatever goes wrong.
        let key_pem = self.read_file("server.tls_key_file", key);
        let config = match (chain, key_pem) {
            (Some(chain), Some(key_pem)) => {
                match crate::tls::server_config(chain.as_bytes(), key_pem.as_bytes()) {
                    Ok(config) => Some(config),
                    Err(e) => {
                        self.problem("server.tls_cert_file", e);
                        None
                    }
                }
            }
            _ => None,
        };
        Some(Some(TlsSettings {
            listen: listen?,
            cert_file: self.base.join(cert),
            key_file: self.base.join(key),
            config: config?,
        }))
    }
}

fn parse_net(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}
