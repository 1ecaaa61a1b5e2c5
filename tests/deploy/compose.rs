//! `deploy/docker-compose.yml`: its `gateway.toml` loads with what compose provides, health
//! checks use the admin port, only the balancer is published, one service builds the image,
//! and nginx balances over exactly the gateways, which trust its address.

use std::collections::BTreeSet;

use wxgate::config::duration;
use wxgate::settings::StoreSettings;

use crate::{
    compose, compose_service, compose_settings, env_references, file_references, keys_of, read,
    str_of, vec_of, ADMIN_PORT, COMPOSE_GATEWAYS, COMPOSE_SECRETS_DIR, CONFIG_PATH,
};

#[test]
fn the_compose_config_is_valid_with_what_compose_provides() {
    let compose = compose();
    let text = read("compose/gateway.toml");
    for name in COMPOSE_GATEWAYS {
        let service = compose_service(&compose, name);
        let env = keys_of(&service["environment"], "environment");
        for reference in env_references(&text) {
            assert!(
                env.contains(&reference),
                "{name}: ${{{reference}}} is not set"
            );
        }
        let secrets: BTreeSet<String> = vec_of(&service["secrets"], "secrets")
            .iter()
            .map(|s| str_of(s, "secret").to_string())
            .collect();
        for path in file_references(&text) {
            let secret = path
                .strip_prefix(COMPOSE_SECRETS_DIR)
                .unwrap_or_else(|| panic!("{path} is not under {COMPOSE_SECRETS_DIR}"));
            assert!(
                secrets.contains(secret),
                "{name} does not get secret {secret}"
            );
        }
        let volumes: Vec<&str> = vec_of(&service["volumes"], "volumes")
            .iter()
            .map(|v| str_of(v, "volume"))
            .collect();
        assert!(
            volumes.contains(&format!("./compose/gateway.toml:{CONFIG_PATH}:ro").as_str()),
            "{name} mounts compose/gateway.toml read-only at {CONFIG_PATH}: {volumes:?}"
        );
    }
    let settings = compose_settings();
    assert!(matches!(settings.store, StoreSettings::Redis(_)));
    assert_eq!(settings.wechat.api_base, "http://mock-wechat:9100");
    let mock = compose_service(&compose, "mock-wechat");
    let command: Vec<&str> = vec_of(&mock["command"], "command")
        .iter()
        .map(|c| str_of(c, "command"))
        .collect();
    assert_eq!(command, ["mock-wechat", "--listen", "0.0.0.0:9100"]);
}

#[test]
fn compose_health_checks_use_the_admin_port_and_only_the_balancer_is_published() {
    let compose = compose();
    let settings = compose_settings();
    let services = keys_of(&compose["services"], "services");
    for name in &services {
        let service = compose_service(&compose, name);
        if name == "lb" {
            let ports: Vec<&str> = vec_of(&service["ports"], "lb ports")
                .iter()
                .map(|p| str_of(p, "port"))
                .collect();
            assert_eq!(ports, ["127.0.0.1:8080:8080"], "loopback only");
        } else {
            assert!(service["ports"].is_badvalue(), "{name} publishes no port");
        }
    }
    for name in COMPOSE_GATEWAYS {
        let service = compose_service(&compose, name);
        assert_eq!(str_of(&service["image"], "image"), "wxgate:dev");
        let test: Vec<&str> = vec_of(&service["healthcheck"]["test"], "healthcheck")
            .iter()
            .map(|t| str_of(t, "test"))
            .collect();
        assert_eq!(
            test,
            [
                "CMD",
                "/usr/local/bin/wxgate-probe",
                &ADMIN_PORT.to_string(),
                "/healthz"
            ],
            "{name}"
        );
        let grace =
            duration::parse(str_of(&service["stop_grace_period"], "stop_grace")).expect("duration");
        assert!(
            grace > settings.server.shutdown_grace,
            "{name} stop_grace_period"
        );
    }
    // wxgate:dev is built once, from deploy/Dockerfile, and used by every wxgate service.
    let builders: Vec<&String> = services
        .iter()
        .filter(|name| !compose_service(&compose, name)["build"].is_badvalue())
        .collect();
    assert_eq!(
        builders.len(),
        1,
        "one service builds wxgate:dev: {builders:?}"
    );
    let build = &compose_service(&compose, builders[0])["build"];
    assert_eq!(
        str_of(&compose_service(&compose, builders[0])["image"], "image"),
        "wxgate:dev"
    );
    assert_eq!(
        str_of(&build["dockerfile"], "dockerfile"),
        "deploy/Dockerfile"
    );
    assert_eq!(str_of(&build["context"], "context"), "..");
    assert_eq!(
        str_of(&compose_service(&compose, "mock-wechat")["image"], "image"),
        "wxgate:dev"
    );
    // nginx balances over exactly the gateway services, on their server.listen port.
    let nginx = read("compose/nginx.conf");
    let servers: BTreeSet<String> = nginx
        .lines()
        .map(str::trim)
        .filter_map(|l| l.strip_prefix("server "))
        .filter_map(|l| l.strip_suffix(';'))
        .map(|l| l.split_whitespace().next().expect("address").to_string())
        .collect();
    let expected: BTreeSet<String> = COMPOSE_GATEWAYS
        .iter()
        .map(|name| format!("{name}:{}", settings.server.listen.port()))
        .collect();
    assert_eq!(servers, expected);
    assert!(
        nginx.contains("listen 8080;"),
        "nginx listens on the published port"
    );
    // ...and wxgate believes nginx's X-Forwarded-For, because nginx has a fixed address.
    let lb_address: std::net::IpAddr = str_of(
        &compose_service(&compose, "lb")["networks"]["default"]["ipv4_address"],
        "lb address",
    )
    .parse()
    .expect("IP");
    assert!(
        settings
            .server
            .trusted_proxies
            .iter()
            .any(|net| net.contains(&lb_address)),
        "trusted_proxies includes the load balancer"
    );
}
