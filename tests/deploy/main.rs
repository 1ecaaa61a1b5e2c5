//! `deploy/`: what can be checked without Docker or Kubernetes, in one file per deployment:
//! `yaml` (every YAML file parses, every TOML is known here), `k8s`, `compose`, `docker` (the
//! image and its probe script) and `systemd`. Each shipped `gateway.toml` is loaded as wxgate
//! would, with the environment and secret files its deployment provides, and the deployments
//! must agree on ports, paths and timeouts. No network, no Docker. Here: the readers of
//! `deploy/` (YAML, configs, the Dockerfile, the unit) that those files share.
// Test code may panic on what it set up, and its helpers are `pub` for the test files.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod compose;
mod docker;
mod k8s;
mod systemd;
mod yaml;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use wxgate::config;
use wxgate::settings::Settings;
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

/// The wxgate container's volume mount at `path` in a Deployment, and the volume it mounts.
fn mounted_at<'a>(deployment: &'a Yaml, path: &str) -> (&'a Yaml, &'a Yaml) {
    let wxgate = container(deployment, "wxgate");
    let mount = vec_of(&wxgate["volumeMounts"], "volumeMounts")
        .iter()
        .find(|m| m["mountPath"].as_str() == Some(path))
        .unwrap_or_else(|| panic!("nothing is mounted at {path}"));
    let volume_name = str_of(&mount["name"], "volumeMount name");
    let volume = vec_of(
        &deployment["spec"]["template"]["spec"]["volumes"],
        "volumes",
    )
    .iter()
    .find(|v| v["name"].as_str() == Some(volume_name))
    .unwrap_or_else(|| panic!("no volume {volume_name} for {path}"));
    (mount, volume)
}

/// The gateway.toml embedded in the ConfigMap the Deployment mounts at [`CONFIG_PATH`].
fn k8s_config_text() -> String {
    let deployment = k8s("Deployment/wxgate");
    let (mount, volume) = mounted_at(&deployment, CONFIG_PATH);
    let key = str_of(&mount["subPath"], "config subPath");
    let configmap = str_of(&volume["configMap"]["name"], "configMap name");
    let configmap = k8s(&format!("ConfigMap/{configmap}"));
    str_of(&configmap["data"][key], "ConfigMap data").to_string()
}

/// The Secret keys the Deployment mounts under [`K8S_SECRETS_DIR`], file name → key.
fn k8s_secret_files() -> (String, BTreeMap<String, String>) {
    let deployment = k8s("Deployment/wxgate");
    let (mount, volume) = mounted_at(&deployment, K8S_SECRETS_DIR.trim_end_matches('/'));
    assert_eq!(mount["readOnly"].as_bool(), Some(true));
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

/// The file `name` in a `PATH` directory, if there is one.
fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}
