//! The gateway's state: the current runtime (swappable as a whole) and what outlives reloads.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::endpoints::Endpoint;
use crate::hook::HookClient;
use crate::ops::metrics::RouteMetrics;
use crate::proxy::forward::Forwarder;
use crate::proxy::verified::VerifiedTokens;
use crate::ratelimit::LoginLimiter;
use crate::settings::Settings;
use crate::store::Store;
use crate::wechat::WechatClient;

/// Everything derived from one version of the configuration, and a handle on the store that
/// outlives it: a request holds one runtime from start to end and needs nothing else.
pub struct Runtime {
    pub settings: Settings,
    /// A clone of [`Gateway::store`] (two `Arc`s): the same sessions under every runtime.
    pub store: Store,
    /// The Unix time by which every access token minted under an earlier configuration has
    /// expired (see [`Runtime::revocation_horizon`]).
    earlier_tokens_end: i64,
    pub forwarder: Forwarder,
    pub wechat: WechatClient,
    /// The login hook, when `[auth.on_login]` is configured.
    pub hook: Option<HookClient>,
    pub limiter: LoginLimiter,
    /// Tokens verified under this configuration's keys.
    pub verified: VerifiedTokens,
    /// Metric handles per route (by `Route::index`) and per endpoint.
    pub route_metrics: Vec<Arc<RouteMetrics>>,
    pub endpoint_metrics: Vec<Arc<RouteMetrics>>,
    /// For requests that reached no route or endpoint.
    pub unrouted_metrics: Arc<RouteMetrics>,
    /// Counts this runtime in `wxgate_config_runtimes` while it lives.
    _alive: crate::ops::metrics::RuntimeGuard,
}

impl Runtime {
    /// `earlier_tokens_end`: see the field; 0 for the first configuration.
    pub fn new(settings: Settings, store: Store, earlier_tokens_end: i64) -> anyhow::Result<Self> {
        let wechat = WechatClient::new(&settings.wechat)?;
        let hook = settings
            .auth
            .on_login
            .as_ref()
            .map(HookClient::new)
            .transpose()?;
        let mut route_metrics: Vec<_> = settings.routes.iter().collect();
        route_metrics.sort_by_key(|r| r.index);
        Ok(Self {
            route_metrics: route_metrics
                .into_iter()
                .map(|r| RouteMetrics::new(&r.prefix))
                .collect(),
            endpoint_metrics: Endpoint::ALL
                .iter()
                .map(|e| RouteMetrics::new(&format!("endpoint:{}", e.name())))
                .collect(),
            unrouted_metrics: RouteMetrics::new("-"),
            hook,
            forwarder: Forwarder::new(&settings.routes),
            limiter: LoginLimiter::new(settings.auth.login_rate_limit),
            verified: VerifiedTokens::new(),
            wechat,
            settings,
            store,
            earlier_tokens_end,
            _alive: crate::ops::metrics::runtime_made(),
        })
    }

    /// Until when a session revoked now must stay revoked: until every access token it may
    /// have, under this configuration or an earlier one, has expired.
    pub fn revocation_horizon(&self) -> i64 {
        let current = crate::tokens::now_unix() + lifetime(self);
        current.max(self.earlier_tokens_end) + 1
    }
}

pub struct Gateway {
    runtime: ArcSwap<Runtime>,
    /// Sessions, codes and revocations: kept across reloads, cloned into each runtime.
    pub store: Store,
    /// The Unix time by which every access token minted under an earlier configuration has
    /// expired: a reload that shortens `access_ttl` must not shorten revocations of
    /// sessions whose tokens were minted under the longer one. Each new runtime gets it.
    earlier_tokens_end: AtomicI64,
}

impl Gateway {
    pub fn new(settings: Settings) -> anyhow::Result<Arc<Self>> {
        let store = Store::new(&settings.store)?;
        let runtime = Runtime::new(settings, store.clone(), 0)?;
        crate::ops::metrics::reload(true);
        Ok(Arc::new(Self {
            runtime: ArcSwap::from_pointee(runtime),
            store,
            earlier_tokens_end: AtomicI64::new(0),
        }))
    }

    /// The runtime a request uses from start to end, even if a reload happens meanwhile.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.load_full()
    }
}

impl Gateway {
    /// Re-reads the file the running configuration came from and swaps it in whole.
    /// Listener addresses cannot change without a restart; sessions are kept.
    pub fn reload(&self) -> anyhow::Result<()> {
        let result = self.swap_in_from_file();
        crate::ops::metrics::reload(result.is_ok());
        result
    }

    fn swap_in_from_file(&self) -> anyhow::Result<()> {
        let current = self.runtime();
        let path = current
            .settings
            .source
            .clone()
            .ok_or_else(|| anyhow::anyhow!("the configuration did not come from a file"))?;
        let settings = crate::config::load(&path)?;
        let tls_listen = |s: &Settings| s.server.tls.as_ref().map(|t| t.listen);
        if settings.server.listen != current.settings.server.listen
            || settings.admin_listen != current.settings.admin_listen
            || tls_listen(&settings) != tls_listen(&current.settings)
        {
            tracing::warn!("listen addresses changed; they take effect only after a restart");
        }
        if settings.store != current.settings.store {
            tracing::warn!("[store] changed; it takes effect only after a restart");
        }
        let minted_until = crate::tokens::now_unix() + lifetime(&current);
        let earlier = self
            .earlier_tokens_end
            .fetch_max(minted_until, Ordering::Relaxed)
            .max(minted_until);
        let next = Runtime::new(settings, self.store.clone(), earlier)?;
        self.runtime.store(Arc::new(next));
        Ok(())
    }
}

/// The longest an access token minted under `runtime` is accepted: its TTL and the leeway.
fn lifetime(runtime: &Runtime) -> i64 {
    let auth = &runtime.settings.auth;
    (auth.access_ttl + auth.leeway).as_secs() as i64
}
