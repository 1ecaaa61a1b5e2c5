//! `deploy/k8s`: the kustomization lists every manifest, the ConfigMap's `gateway.toml` loads
//! with what the pod provides (and refuses the Secret's placeholders), probes and the Service
//! use the right ports, the Deployment is locked down and rolls without losing capacity, the
//! PDB, the autoscaler and the bundled Redis, and the pod's termination grace (with the
//! systemd unit's stop timeout) leaves room for the drain.

use std::collections::BTreeSet;
use std::time::Duration;

use wxgate::config::duration;
use wxgate::settings::StoreSettings;
use yaml_rust2::Yaml;

use crate::{
    container, deploy_files, dockerfile_all, env_references, file_references, int_of, k8s,
    k8s_config_text, k8s_env_names, k8s_objects, k8s_secret_files, k8s_settings, keys_of,
    load_config, read, str_of, temp_dir, unit_value, vec_of, yaml_doc, ADMIN_PORT, CONFIG_PATH,
    K8S_SECRETS_DIR,
};

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
