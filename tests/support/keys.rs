//! Signing keys for tests: PEM files generated at test time (nothing private is checked in),
//! `[[auth.keys]]` entries pointing at them, and a gateway that reads its config from a file
//! so that `reload()` can rotate keys.

use std::path::{Path, PathBuf};

use jsonwebtoken::Algorithm;

use super::{client, unique, ConfigBuilder, RunningGateway, Upstream, Wechat, World};

/// A temporary folder of key files, removed on drop.
pub struct KeyDir {
    pub path: PathBuf,
}

impl KeyDir {
    pub fn new() -> Self {
        let path =
            std::env::temp_dir().join(format!("wxgate-keys-{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(&path).expect("key dir");
        Self { path }
    }

    /// Writes a new key pair for `alg` as `{name}.pem` (private) and `{name}.pub.pem` (public),
    /// made by the library code behind `wxgate keygen`.
    pub fn generate(&self, name: &str, alg: Algorithm) -> KeyFiles {
        let generated = wxgate::tokens::keygen::generate(alg).expect("keygen");
        let private = self.path.join(format!("{name}.pem"));
        let public = self.path.join(format!("{name}.pub.pem"));
        std::fs::write(&private, generated.private.expose()).expect("write private key");
        std::fs::write(&public, generated.public.expect("public half")).expect("write public key");
        KeyFiles {
            alg,
            private,
            public,
        }
    }
}

impl Drop for KeyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The two PEM files of one generated key pair.
pub struct KeyFiles {
    pub alg: Algorithm,
    pub private: PathBuf,
    pub public: PathBuf,
}

impl KeyFiles {
    /// An entry that signs (when first) and verifies.
    pub fn signing(&self, kid: &str) -> String {
        entry(kid, self.alg, "private_key_file", &self.private)
    }

    /// An entry that only verifies.
    pub fn verify_only(&self, kid: &str) -> String {
        entry(kid, self.alg, "public_key_file", &self.public)
    }
}

fn entry(kid: &str, alg: Algorithm, field: &str, file: &Path) -> String {
    format!(
        "[[auth.keys]]\nkid = \"{kid}\"\nalg = \"{}\"\n{field} = \"{}\"\n",
        wxgate::tokens::alg_name(alg),
        file.display()
    )
}

/// An `[[auth.keys]]` HMAC entry with [`super::JWT_SECRET`].
pub fn hmac(kid: &str) -> String {
    format!(
        "[[auth.keys]]\nkid = \"{kid}\"\nalg = \"HS256\"\nsecret = \"{}\"\n",
        super::JWT_SECRET
    )
}

/// The usual trio, with the gateway's config in a file that [`FileWorld::reload_keys`] rewrites.
pub struct FileWorld {
    pub world: World,
    pub config: ConfigBuilder,
    pub path: PathBuf,
    _dir: KeyDir,
}

impl FileWorld {
    pub async fn start(keys: String) -> Self {
        let wechat = Wechat::start().await;
        let upstream = Upstream::start().await;
        let mut config = ConfigBuilder::new(&wechat.base(), &upstream.base());
        config.keys = keys;
        let dir = KeyDir::new();
        let path = dir.path.join("gateway.toml");
        std::fs::write(&path, config.text()).expect("write config");
        let settings = match wxgate::config::load(&path) {
            Ok(s) => s,
            Err(e) => panic!("test config is invalid: {e}\n{}", config.text()),
        };
        let gateway = RunningGateway::start_settings(settings).await;
        Self {
            world: World {
                wechat,
                upstream,
                gateway,
                http: client(),
            },
            config,
            path,
            _dir: dir,
        }
    }

    /// Rewrites the config file with new `[[auth.keys]]` and reloads it, as SIGHUP does.
    pub fn reload_keys(&mut self, keys: String) {
        self.config.keys = keys;
        std::fs::write(&self.path, self.config.text()).expect("rewrite config");
        if let Err(e) = self.world.gateway.state.reload() {
            panic!("reload failed: {e}");
        }
    }
}
