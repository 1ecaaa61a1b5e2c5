//! `deploy/systemd/wxgate.service`: hardened, reloads with SIGHUP, passes `systemd-analyze
//! verify` where the machine has it, and names the config path every deployment uses.

use std::process::Command;

use crate::{find_on_path, read, temp_dir, unit_value, unit_values, CONFIG_PATH};

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
