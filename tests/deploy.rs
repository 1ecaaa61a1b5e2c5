//! `deploy/`: what can be checked without Docker or Kubernetes. Every YAML file parses,
//! every shipped `gateway.toml` is a valid wxgate config with the environment and secret
//! files its deployment provides, and the Dockerfile, the compose stack, the Kubernetes
//! manifests and the systemd unit agree on ports, paths and timeouts. The systemd unit is
//! checked by `systemd-analyze verify` when the machine has it, and the container's health
//! probe script is run against a fake admin listener. No network, no Docker.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use wxgate::config::{self, duration};
use wxgate::settings::{Settings, StoreSettings};
use yaml_rust2::yaml::Hash;
use yaml_rust2::{Yaml, YamlLoader};

/// The admin listener's port in every container config, probe and health check.
const ADMIN_PORT: u16 = 9090;
/// Where every deployment puts the config file.
const CONFIG_PATH: &str = "/etc/wxgate/gateway.toml";
/// Where the Kubernetes deployment mounts the Secret.
const K8S_SECRETS_DIR: &str = "/etc/wxgate/secrets/";
/// Where compose mounts its secrets.
const COMPOSE_SECRETS_DIR: &str = "/run/secrets/";
/// The wxgate services of docker-compose.yml that run the gateway.
const COMPOSE_GATEWAYS: [&str; 2] = ["wxgate-a", "wxgate-b"];

// ── helpers ────────────────────────────────────────────────────────────────────────────

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn read(relative: &str) -> String {
    let path = deploy_dir().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Every file under `deploy/` (recursively), as paths relative to it, sorted.
fn deploy_files() -> Vec<String> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("read deploy dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(&path, base, out);
            } else {
                let relative = path.strip_prefix(base).expect("under deploy/");
                out.push(relative.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut out = Vec::new();
    walk(&deploy_dir(), &deploy_dir(), &mut out);
    out.sort();
    out
}

/// All documents of a YAML file, with `<<` merge keys applied (as compose does).
fn yaml_docs(relative: &str) -> Vec<Yaml> {
    let docs = YamlLoader::load_from_str(&read(relative))
        .unwrap_or_else(|e| panic!("deploy/{relative} is not valid YAML: {e}"));
    docs.into_iter().map(apply_merge_keys).collect()
}

fn apply_merge_keys(node: Yaml) -> Yaml {
    match node {
        Yaml::Array(items) => Yaml::Array(items.into_iter().map(apply_merge_keys).collect()),
        Yaml::Hash(hash) => {
            let merge_key = Yaml::String("<<".into());
            let mut out = Hash::new();
            let mut merged = Vec::new();
            for (k, v) in hash {
                if k == merge_key {
                    match v {
                        Yaml::Array(sources) => merged.extend(sources),
                        source => merged.push(source),
                    }
                } else {
                    out.insert(k, apply_merge_keys(v));
                }
            }
            for source in merged {
                let Yaml::Hash(source) = apply_merge_keys(source) else {
                    panic!("`<<` must merge a mapping");
                };
                for (k, v) in source {
                    out.entry(k).or_insert(v);
                }
            }
            Yaml::Hash(out)
        }
        other => other,
    }
}

fn yaml_doc(relative: &str) -> Yaml {
    let mut docs = yaml_docs(relative);
    assert_eq!(docs.len(), 1, "deploy/{relative}: one document");
    docs.remove(0)
}

fn str_of<'a>(node: &'a Yaml, what: &str) -> &'a str {
    node.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, found {node:?}"))
}

fn int_of(node: &Yaml, what: &str) -> i64 {
    node.as_i64()
        .unwrap_or_else(|| panic!("{what}: expected an integer, found {node:?}"))
}

fn vec_of<'a>(node: &'a Yaml, what: &str) -> &'a Vec<Yaml> {
    node.as_vec()
        .unwrap_or_else(|| panic!("{what}: expected a list, found {node:?}"))
}

fn keys_of(node: &Yaml, what: &str) -> BTreeSet<String> {
    node.as_hash()
        .unwrap_or_else(|| panic!("{what}: expected a mapping, found {node:?}"))
        .keys()
        .map(|k| str_of(k, what).to_string())
        .collect()
}

/// Every Kubernetes object under `deploy/k8s/` (kustomization excluded), by `Kind/name`.
fn k8s_objects() -> BTreeMap<String, Yaml> {
    let mut objects = BTreeMap::new();
    for file in deploy_files() {
        let Some(name) = file.strip_prefix("k8s/") else {
            continue;
        };
        if name == "kustomization.yaml" || !(name.ends_with(".yaml") || name.ends_with(".yml")) {
            continue;
        }
        for doc in yaml_docs(&file) {
            let kind = str_of(&doc["kind"], &format!("{file}: kind")).to_string();
            let object = str_of(&doc["metadata"]["name"], &format!("{file}: metadata.name"));
            let key = format!("{kind}/{object}");
            assert!(objects.insert(key.clone(), doc).is_none(), "{key} twice");
        }
    }
    objects
}

fn k8s(kind_and_name: &str) -> Yaml {
    k8s_objects()
        .remove(kind_and_name)
        .unwrap_or_else(|| panic!("deploy/k8s has no {kind_and_name}"))
}

/// The container named `name` of a Deployment.
fn container<'a>(deployment: &'a Yaml, name: &str) -> &'a Yaml {
    vec_of(
        &deployment["spec"]["template"]["spec"]["containers"],
        "containers",
    )
    .iter()
    .find(|c| c["name"].as_str() == Some(name))
    .unwrap_or_else(|| panic!("no container {name}"))
}

/// A probe's or Service's port, named ports resolved through the container's `ports`.
fn resolve_port(container: &Yaml, port: &Yaml) -> u16 {
    let number = match port {
        Yaml::Integer(n) => *n,
        Yaml::String(name) => {
            let found = vec_of(&container["ports"], "ports")
                .iter()
                .find(|p| p["name"].as_str() == Some(name))
                .unwrap_or_else(|| panic!("no container port named {name}"));
            int_of(&found["containerPort"], "containerPort")
        }
        other => panic!("a port is a number or a name, not {other:?}"),
    };
    u16::try_from(number).expect("port in range")
}

/// `${NAME}` references in a config text.
fn env_references(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let end = after.find('}').expect("`${` is closed");
        names.insert(after[..end].to_string());
        rest = &after[end..];
    }
    names
}

/// The values of every `*_file` key in a config (secret and key files).
fn file_references(text: &str) -> BTreeSet<String> {
    fn walk(value: &toml::Value, key: &str, out: &mut BTreeSet<String>) {
        match value {
            toml::Value::String(s) if key.ends_with("_file") => {
                out.insert(s.clone());
            }
            toml::Value::Table(table) => {
                for (k, v) in table {
                    walk(v, k, out);
                }
            }
            toml::Value::Array(items) => {
                for item in items {
                    walk(item, key, out);
                }
            }
            _ => {}
        }
    }
    let value: toml::Value = toml::from_str(text).expect("TOML");
    let mut out = BTreeSet::new();
    walk(&value, "", &mut out);
    out
}

/// A fresh empty directory under the system temp dir.
fn temp_dir(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "wxgate-deploy-{tag}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Loads a config as wxgate would, with `env` as the whole environment and every file
/// path under `mount` read from `files` (mount-relative name → host path) instead.
fn load_config(
    text: &str,
    env: &BTreeMap<String, String>,
    mount: &str,
    files: &BTreeMap<String, PathBuf>,
) -> Result<Settings, config::ConfigError> {
    let mut text = text.to_string();
    for (name, host) in files {
        let from = format!("\"{mount}{name}\"");
        let to = toml::Value::String(host.to_string_lossy().into_owned()).to_string();
        text = text.replace(&from, &to);
    }
    config::from_str_with_env(&text, Path::new("/nonexistent"), &|name| {
        env.get(name).cloned()
    })
}

/// The gateway.toml embedded in the ConfigMap the Deployment mounts at [`CONFIG_PATH`].
fn k8s_config_text() -> String {
    let deployment = k8s("Deployment/wxgate");
    let wxgate = container(&deployment, "wxgate");
    let mount = vec_of(&wxgate["volumeMounts"], "volumeMounts")
        .iter()
        .find(|m| m["mountPath"].as_str() == Some(CONFIG_PATH))
        .expect("the config is mounted at /etc/wxgate/gateway.toml");
    let volume_name = str_of(&mount["name"], "volumeMount name");
    let key = str_of(&mount["subPath"], "config subPath");
    let volume = vec_of(
        &deployment["spec"]["template"]["spec"]["volumes"],
        "volumes",
    )
    .iter()
    .find(|v| v["name"].as_str() == Some(volume_name))
    .expect("config volume");
    let configmap = str_of(&volume["configMap"]["name"], "configMap name");
    let configmap = k8s(&format!("ConfigMap/{configmap}"));
    str_of(&configmap["data"][key], "ConfigMap data").to_string()
}

/// The Secret keys the Deployment mounts under [`K8S_SECRETS_DIR`], file name → key.
fn k8s_secret_files() -> (String, BTreeMap<String, String>) {
    let deployment = k8s("Deployment/wxgate");
    let wxgate = container(&deployment, "wxgate");
    let mount = vec_of(&wxgate["volumeMounts"], "volumeMounts")
        .iter()
        .find(|m| m["mountPath"].as_str() == Some(K8S_SECRETS_DIR.trim_end_matches('/')))
        .expect("the Secret is mounted at /etc/wxgate/secrets");
    assert_eq!(mount["readOnly"].as_bool(), Some(true));
    let volume_name = str_of(&mount["name"], "volumeMount name");
    let volume = vec_of(
        &deployment["spec"]["template"]["spec"]["volumes"],
        "volumes",
    )
    .iter()
    .find(|v| v["name"].as_str() == Some(volume_name))
    .expect("secret volume");
    let secret = str_of(&volume["secret"]["secretName"], "secretName").to_string();
    let files = vec_of(&volume["secret"]["items"], "secret items")
        .iter()
        .map(|item| {
            (
                str_of(&item["path"], "item path").to_string(),
                str_of(&item["key"], "item key").to_string(),
            )
        })
        .collect();
    (secret, files)
}

/// The environment variable names the wxgate container gets.
fn k8s_env_names() -> BTreeSet<String> {
    let deployment = k8s("Deployment/wxgate");
    vec_of(&container(&deployment, "wxgate")["env"], "env")
        .iter()
        .map(|e| str_of(&e["name"], "env name").to_string())
        .collect()
}

/// The Kubernetes config, loaded with made-up values for everything the pod provides.
fn k8s_settings() -> Settings {
    let text = k8s_config_text();
    let env: BTreeMap<String, String> = k8s_env_names()
        .into_iter()
        .map(|name| (name, "fake-value".to_string()))
        .collect();
    let dir = temp_dir("k8s");
    let (_, mounted) = k8s_secret_files();
    let files = mounted
        .keys()
        .map(|name| {
            let path = dir.join(name);
            std::fs::write(&path, format!("{name}-fake-but-long-enough-for-hs256\n"))
                .expect("write");
            (name.clone(), path)
        })
        .collect();
    let settings = load_config(&text, &env, K8S_SECRETS_DIR, &files);
    let _ = std::fs::remove_dir_all(&dir);
    settings.unwrap_or_else(|e| panic!("the ConfigMap's gateway.toml: {e}"))
}

fn compose() -> Yaml {
    yaml_doc("docker-compose.yml")
}

fn compose_service<'a>(compose: &'a Yaml, name: &str) -> &'a Yaml {
    let service = &compose["services"][name];
    assert!(
        !service.is_badvalue(),
        "docker-compose.yml has no service {name}"
    );
    service
}

/// The compose config, loaded with the environment and the (committed, dev-only) secret
/// files that docker-compose.yml gives the gateway services.
fn compose_settings() -> Settings {
    let compose = compose();
    let service = compose_service(&compose, COMPOSE_GATEWAYS[0]);
    let text = read("compose/gateway.toml");
    let env: BTreeMap<String, String> = keys_of(&service["environment"], "environment")
        .into_iter()
        .map(|name| (name, "fake-value".to_string()))
        .collect();
    let files = vec_of(&service["secrets"], "secrets")
        .iter()
        .map(|name| {
            let name = str_of(name, "secret name");
            let file = str_of(&compose["secrets"][name]["file"], "secret file");
            (name.to_string(), deploy_dir().join(file))
        })
        .collect();
    load_config(&text, &env, COMPOSE_SECRETS_DIR, &files)
        .unwrap_or_else(|e| panic!("deploy/compose/gateway.toml: {e}"))
}

/// Dockerfile instructions: continuation lines joined, comments dropped.
fn dockerfile() -> Vec<(String, String)> {
    let text = read("Dockerfile");
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (word, rest) = current.split_once(' ').unwrap_or((&current, ""));
        instructions.push((word.to_ascii_uppercase(), rest.trim().to_string()));
        current.clear();
    }
    instructions
}

fn dockerfile_all(instruction: &str) -> Vec<String> {
    dockerfile()
        .into_iter()
        .filter(|(word, _)| word == instruction)
        .map(|(_, rest)| rest)
        .collect()
}

/// The (section, key, value) lines of the systemd unit.
fn unit() -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in read("systemd/wxgate.service").lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            section = line.trim_matches(['[', ']']).to_string();
            continue;
        }
        let (key, value) = line.split_once('=').expect("Key=Value");
        out.push((section.clone(), key.to_string(), value.to_string()));
    }
    out
}

fn unit_values(key: &str) -> Vec<String> {
    unit()
        .into_iter()
        .filter(|(section, k, _)| section == "Service" && k == key)
        .map(|(_, _, v)| v)
        .collect()
}

fn unit_value(key: &str) -> String {
    let values = unit_values(key);
    assert_eq!(
        values.len(),
        1,
        "wxgate.service: one {key}=, found {values:?}"
    );
    values.into_iter().next().expect("one")
}

// ── YAML and TOML ──────────────────────────────────────────────────────────────────────

#[test]
fn every_yaml_file_under_deploy_parses() {
    let files: Vec<String> = deploy_files()
        .into_iter()
        .filter(|f| f.ends_with(".yaml") || f.ends_with(".yml"))
        .collect();
    assert!(files.len() >= 9, "found only {files:?}");
    for file in &files {
        let docs = yaml_docs(file);
        assert!(!docs.is_empty(), "deploy/{file}: no document");
        for (i, doc) in docs.iter().enumerate() {
            assert!(doc.is_hash(), "deploy/{file} document {i}: not a mapping");
            if file.starts_with("k8s/") {
                for field in ["apiVersion", "kind"] {
                    str_of(&doc[field], &format!("deploy/{file} document {i}: {field}"));
                }
                if file != "k8s/kustomization.yaml" {
                    str_of(&doc["metadata"]["name"], &format!("deploy/{file}: name"));
                }
            }
        }
    }
}

#[test]
fn kustomization_lists_every_manifest() {
    let kustomization = yaml_doc("k8s/kustomization.yaml");
    let listed: BTreeSet<String> = vec_of(&kustomization["resources"], "resources")
        .iter()
        .map(|r| str_of(r, "resource").to_string())
        .collect();
    let present: BTreeSet<String> = deploy_files()
        .into_iter()
        .filter_map(|f| f.strip_prefix("k8s/").map(str::to_string))
        .filter(|f| (f.ends_with(".yaml") || f.ends_with(".yml")) && f != "kustomization.yaml")
        .collect();
    assert_eq!(listed, present);
    let kinds: BTreeSet<String> = k8s_objects()
        .keys()
        .map(|k| k.split('/').next().expect("kind").to_string())
        .collect();
    for kind in [
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
    ] {
        assert!(kinds.contains(kind), "no {kind} in deploy/k8s");
    }
}

#[test]
fn every_toml_under_deploy_is_known_to_this_test() {
    let tomls: Vec<String> = deploy_files()
        .into_iter()
        .filter(|f| f.ends_with(".toml"))
        .collect();
    // A new config under deploy/ must be loaded by a test here too.
    assert_eq!(tomls, ["compose/gateway.toml"]);
}

#[test]
fn the_kubernetes_config_is_valid_with_what_the_pod_provides() {
    let text = k8s_config_text();
    // Every ${NAME} is in the container's environment...
    let env = k8s_env_names();
    for name in env_references(&text) {
        assert!(
            env.contains(&name),
            "${{{name}}} is not set in deployment.yaml"
        );
    }
    // ...and every file is a key of the mounted Secret.
    let (secret_name, mounted) = k8s_secret_files();
    let secret = k8s(&format!("Secret/{secret_name}"));
    let secret_keys = keys_of(&secret["stringData"], "Secret stringData");
    for (file, key) in &mounted {
        assert!(secret_keys.contains(key), "Secret has no key {key}");
        assert_eq!(file, key, "mounted under its own name");
    }
    for path in file_references(&text) {
        let name = path
            .strip_prefix(K8S_SECRETS_DIR)
            .unwrap_or_else(|| panic!("{path} is not under {K8S_SECRETS_DIR}"));
        assert!(mounted.contains_key(name), "{path} is not mounted");
    }
    for entry in vec_of(
        &container(&k8s("Deployment/wxgate"), "wxgate")["env"],
        "env",
    ) {
        let reference = &entry["valueFrom"]["secretKeyRef"];
        if !reference.is_badvalue() {
            assert_eq!(str_of(&reference["name"], "secretKeyRef"), secret_name);
            let key = str_of(&reference["key"], "secretKeyRef key");
            assert!(secret_keys.contains(key), "Secret has no key {key}");
        }
    }

    let settings = k8s_settings();
    assert!(
        matches!(settings.store, StoreSettings::Redis(_)),
        "several replicas need store.backend = \"redis\""
    );
    assert!(!settings.routes.is_empty(), "a route to forward to");
}

#[test]
fn the_kubernetes_secret_placeholders_are_refused() {
    // A forgotten CHANGE-ME must stop wxgate, not sign tokens with a guessable key.
    let secret = k8s("Secret/wxgate-secrets");
    let dir = temp_dir("placeholders");
    let (_, mounted) = k8s_secret_files();
    let files = mounted
        .iter()
        .map(|(name, key)| {
            let value = str_of(&secret["stringData"][key.as_str()], key);
            assert!(value.contains("CHANGE-ME"), "{key} is a marked placeholder");
            let path = dir.join(name);
            std::fs::write(&path, value).expect("write");
            (name.clone(), path)
        })
        .collect();
    let env = k8s_env_names()
        .into_iter()
        .map(|n| (n, "CHANGE-ME".to_string()))
        .collect();
    let result = load_config(&k8s_config_text(), &env, K8S_SECRETS_DIR, &files);
    let _ = std::fs::remove_dir_all(&dir);
    let error = result.err().expect("placeholders are refused").to_string();
    assert!(error.contains("auth.keys[0]"), "{error}");
}

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

// ── ports, paths and timeouts agree ────────────────────────────────────────────────────

#[test]
fn container_configs_listen_for_probes_on_the_admin_port() {
    for (what, settings) in [("k8s", k8s_settings()), ("compose", compose_settings())] {
        assert_eq!(
            settings.admin_listen.port(),
            ADMIN_PORT,
            "{what} admin.listen"
        );
        assert!(
            settings.admin_listen.ip().is_unspecified(),
            "{what}: admin.listen must be 0.0.0.0 for probes from outside the container"
        );
        assert_ne!(settings.server.listen.port(), ADMIN_PORT, "{what}");
    }
}

#[test]
fn the_dockerfile_exposes_probes_and_reads_the_config_path() {
    let exposed: BTreeSet<u16> = dockerfile_all("EXPOSE")
        .iter()
        .flat_map(|line| {
            line.split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .map(|p| p.trim_end_matches("/tcp").parse().expect("port"))
        .collect();
    let public = k8s_settings().server.listen.port();
    assert_eq!(exposed, BTreeSet::from([public, ADMIN_PORT]));

    let healthcheck = dockerfile_all("HEALTHCHECK");
    assert_eq!(healthcheck.len(), 1);
    let (_, command) = healthcheck[0]
        .split_once("CMD ")
        .expect("HEALTHCHECK … CMD");
    let command: Vec<String> = serde_json::from_str(command).expect("exec form");
    assert_eq!(
        command,
        [
            "/usr/local/bin/wxgate-probe",
            &ADMIN_PORT.to_string(),
            "/healthz"
        ]
    );
    let copies = dockerfile_all("COPY");
    assert!(
        copies
            .iter()
            .any(|c| c.ends_with("deploy/docker/wxgate-probe /usr/local/bin/wxgate-probe")),
        "the probe is in the image: {copies:?}"
    );

    assert_eq!(
        dockerfile_all("ENV"),
        [format!("WXGATE_CONFIG={CONFIG_PATH}")]
    );
    assert_eq!(dockerfile_all("STOPSIGNAL"), ["SIGTERM"]);
    assert_eq!(dockerfile_all("USER"), ["10001:10001"], "numeric, non-root");
    let froms = dockerfile_all("FROM");
    assert_eq!(froms.len(), 2, "multi-stage: {froms:?}");
    let build = dockerfile_all("RUN").join("\n");
    assert!(build.contains("cargo build --release --locked"), "{build}");
    assert!(
        build.contains("ca-certificates"),
        "CA roots for api.weixin.qq.com"
    );
}

#[test]
fn kubernetes_probes_use_the_admin_port_and_the_service_the_public_one() {
    let settings = k8s_settings();
    let deployment = k8s("Deployment/wxgate");
    let wxgate = container(&deployment, "wxgate");
    for probe in ["livenessProbe", "readinessProbe"] {
        let get = &wxgate[probe]["httpGet"];
        assert_eq!(resolve_port(wxgate, &get["port"]), ADMIN_PORT, "{probe}");
        let path = str_of(&get["path"], probe);
        assert!(["/healthz", "/readyz"].contains(&path), "{probe}: {path}");
    }
    assert_eq!(
        str_of(&wxgate["livenessProbe"]["httpGet"]["path"], "liveness"),
        "/healthz",
        "liveness must not depend on Redis"
    );
    let args: Vec<&str> = vec_of(&wxgate["args"], "args")
        .iter()
        .map(|a| str_of(a, "arg"))
        .collect();
    assert_eq!(args, ["run", "-c", CONFIG_PATH]);

    let service = k8s("Service/wxgate");
    assert_eq!(str_of(&service["spec"]["type"], "type"), "ClusterIP");
    let ports = vec_of(&service["spec"]["ports"], "Service ports");
    assert_eq!(ports.len(), 1, "only the public port");
    assert_eq!(int_of(&ports[0]["port"], "port"), 80);
    assert_eq!(
        resolve_port(wxgate, &ports[0]["targetPort"]),
        settings.server.listen.port(),
        "the Service targets server.listen"
    );
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    for (what, selector) in [
        ("Service", &service["spec"]["selector"]),
        ("Deployment", &deployment["spec"]["selector"]["matchLabels"]),
        (
            "PodDisruptionBudget",
            &k8s("PodDisruptionBudget/wxgate")["spec"]["selector"]["matchLabels"],
        ),
    ] {
        for (k, v) in selector.as_hash().expect("selector") {
            assert_eq!(&pod_labels[str_of(k, what)], v, "{what} selects the pods");
        }
    }
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

#[test]
fn stop_timeouts_leave_room_for_the_drain() {
    let settings = k8s_settings();
    let deployment = k8s("Deployment/wxgate");
    let spec = &deployment["spec"]["template"]["spec"];
    let termination = Duration::from_secs(
        u64::try_from(int_of(
            &spec["terminationGracePeriodSeconds"],
            "terminationGracePeriodSeconds",
        ))
        .expect("positive"),
    );
    let wxgate = container(&deployment, "wxgate");
    let pre_stop: Vec<&str> = vec_of(
        &wxgate["lifecycle"]["preStop"]["exec"]["command"],
        "preStop",
    )
    .iter()
    .map(|c| str_of(c, "preStop"))
    .collect();
    assert_eq!(pre_stop[0], "sleep");
    let sleep = Duration::from_secs(pre_stop[1].parse().expect("seconds"));
    assert!(
        termination > sleep + settings.server.shutdown_grace,
        "terminationGracePeriodSeconds {termination:?} must exceed preStop {sleep:?} + \
         shutdown_grace {:?}",
        settings.server.shutdown_grace
    );

    let stop = duration::parse(&unit_value("TimeoutStopSec")).expect("TimeoutStopSec");
    let default_grace = Duration::from_secs(30);
    assert!(
        stop > default_grace,
        "TimeoutStopSec above the default shutdown_grace"
    );
}

#[test]
fn the_config_path_is_the_same_everywhere() {
    let dockerfile = read("Dockerfile");
    let deployment = read("k8s/deployment.yaml");
    let unit = read("systemd/wxgate.service");
    for (what, text) in [
        ("Dockerfile", &dockerfile),
        ("deployment.yaml", &deployment),
        ("wxgate.service", &unit),
    ] {
        assert!(text.contains(CONFIG_PATH), "{what} uses {CONFIG_PATH}");
    }
    assert_eq!(
        unit_value("ExecStart"),
        format!("/usr/local/bin/wxgate run -c {CONFIG_PATH}")
    );
}

// ── Kubernetes objects ─────────────────────────────────────────────────────────────────

#[test]
fn the_deployment_is_locked_down_and_rolls_without_losing_capacity() {
    let deployment = k8s("Deployment/wxgate");
    let spec = &deployment["spec"];
    assert_eq!(int_of(&spec["replicas"], "replicas"), 3);
    let rolling = &spec["strategy"]["rollingUpdate"];
    assert_eq!(int_of(&rolling["maxUnavailable"], "maxUnavailable"), 0);
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    let uid = dockerfile_all("USER")[0]
        .split(':')
        .next()
        .expect("uid")
        .parse::<i64>()
        .expect("numeric");
    assert_eq!(
        int_of(&pod["securityContext"]["runAsUser"], "runAsUser"),
        uid
    );
    let term = &pod["affinity"]["podAntiAffinity"]
        ["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"];
    assert_eq!(
        str_of(&term["topologyKey"], "topologyKey"),
        "kubernetes.io/hostname"
    );

    let wxgate = container(&deployment, "wxgate");
    let security = &wxgate["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(security["allowPrivilegeEscalation"].as_bool(), Some(false));
    let dropped: Vec<&str> = vec_of(&security["capabilities"]["drop"], "drop")
        .iter()
        .map(|c| str_of(c, "capability"))
        .collect();
    assert_eq!(dropped, ["ALL"]);
    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                !wxgate["resources"][kind][resource].is_badvalue(),
                "resources.{kind}.{resource}"
            );
        }
    }
}

#[test]
fn the_pdb_and_the_autoscaler_target_the_deployment() {
    let pdb = k8s("PodDisruptionBudget/wxgate");
    assert_eq!(int_of(&pdb["spec"]["maxUnavailable"], "maxUnavailable"), 1);

    let hpa = k8s("HorizontalPodAutoscaler/wxgate");
    assert_eq!(str_of(&hpa["apiVersion"], "apiVersion"), "autoscaling/v2");
    let target = &hpa["spec"]["scaleTargetRef"];
    assert_eq!(str_of(&target["kind"], "kind"), "Deployment");
    assert_eq!(str_of(&target["name"], "name"), "wxgate");
    assert_eq!(int_of(&hpa["spec"]["minReplicas"], "minReplicas"), 3);
    assert_eq!(int_of(&hpa["spec"]["maxReplicas"], "maxReplicas"), 10);
    let metric = &hpa["spec"]["metrics"][0]["resource"];
    assert_eq!(str_of(&metric["name"], "metric"), "cpu");
    assert_eq!(
        int_of(
            &metric["target"]["averageUtilization"],
            "averageUtilization"
        ),
        70
    );
}

#[test]
fn the_bundled_redis_is_the_one_the_config_names() {
    let settings = k8s_settings();
    let StoreSettings::Redis(_) = settings.store else {
        panic!("redis backend");
    };
    let text = k8s_config_text();
    let service = k8s("Service/wxgate-redis");
    let port = int_of(&service["spec"]["ports"][0]["port"], "redis port");
    assert!(
        text.contains(&format!("@wxgate-redis:{port}/")),
        "[store] url points at the wxgate-redis Service"
    );
    let redis = k8s("Deployment/wxgate-redis");
    assert_eq!(int_of(&redis["spec"]["replicas"], "replicas"), 1);
    assert!(read("k8s/redis.yaml").contains("use a managed Redis"));
}

// ── systemd ────────────────────────────────────────────────────────────────────────────

#[test]
fn the_systemd_unit_is_hardened_and_reloads_with_sighup() {
    for (key, value) in [
        ("DynamicUser", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("NoNewPrivileges", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("RestrictNamespaces", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("SystemCallArchitectures", "native"),
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
        ("UMask", "0077"),
        ("EnvironmentFile", "-/etc/wxgate/wxgate.env"),
        ("Restart", "on-failure"),
        ("LimitNOFILE", "65536"),
    ] {
        assert_eq!(unit_value(key), value, "wxgate.service {key}=");
    }
    assert!(unit_values("SystemCallFilter").contains(&"@system-service".to_string()));
    let reload = unit_values("ExecReload");
    assert_eq!(
        reload.last().map(String::as_str),
        Some("/bin/kill -HUP $MAINPID"),
        "reload ends with SIGHUP: {reload:?}"
    );
    assert!(unit_values("User").is_empty(), "DynamicUser, no fixed user");
}

#[test]
fn systemd_analyze_verifies_the_unit() {
    let Some(analyze) = find_on_path("systemd-analyze") else {
        eprintln!("skipped: systemd-analyze is not installed here");
        return;
    };
    let Some(true_binary) = find_on_path("true") else {
        eprintln!("skipped: no `true` binary to stand in for wxgate");
        return;
    };
    // verify insists that ExecStart's binary exists: point it at one that does.
    let unit = read("systemd/wxgate.service")
        .replace("/usr/local/bin/wxgate", &true_binary.to_string_lossy());
    let dir = temp_dir("systemd");
    let path = dir.join("wxgate.service");
    std::fs::write(&path, unit).expect("write unit");
    let output = Command::new(analyze)
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("run systemd-analyze");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Unknown or malformed directives are only warnings (exit 0), so read stderr too.
    let about_ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("wxgate.service"))
        .collect();
    assert!(
        output.status.success() && about_ours.is_empty(),
        "systemd-analyze verify: {}\n{stderr}",
        output.status
    );
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

// ── the container's health probe ───────────────────────────────────────────────────────

/// Serves one canned answer per connection; returns the address and the request lines.
fn fake_admin(answers: Vec<&'static str>) -> (SocketAddr, std::thread::JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let addr = listener.local_addr().expect("addr");
    let handle = std::thread::spawn(move || {
        let mut request_lines = Vec::new();
        for answer in answers {
            let (stream, _) = listener.accept().expect("accept");
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            reader.read_line(&mut line).expect("request line");
            request_lines.push(line.trim_end().to_string());
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                    break;
                }
            }
            let _ = reader.get_mut().write_all(answer.as_bytes());
        }
        request_lines
    });
    (addr, handle)
}

fn probe(port: u16, path: &str) -> bool {
    Command::new("bash")
        .arg(deploy_dir().join("docker/wxgate-probe"))
        .args([&port.to_string(), path])
        .output()
        .expect("run bash")
        .status
        .success()
}

#[test]
fn the_health_probe_passes_only_on_a_2xx_status_line() {
    if find_on_path("bash").is_none() {
        eprintln!("skipped: no bash here");
        return;
    }
    let (addr, server) = fake_admin(vec![
        "HTTP/1.1 200 OK\r\ncontent-length: 15\r\n\r\n{\"status\":\"ok\"}",
        "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n",
        "garbage\r\n\r\n",
        "",
    ]);
    assert!(probe(addr.port(), "/healthz"), "200 passes");
    assert!(!probe(addr.port(), "/readyz"), "503 fails");
    assert!(!probe(addr.port(), "/healthz"), "a non-HTTP answer fails");
    assert!(!probe(addr.port(), "/healthz"), "no answer fails");
    let lines = server.join().expect("server");
    assert_eq!(lines[0], "GET /healthz HTTP/1.1");
    assert_eq!(lines[1], "GET /readyz HTTP/1.1");

    // Nothing listening: refused, fails.
    let closed = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    assert!(!probe(port, "/healthz"), "a closed port fails");
}
