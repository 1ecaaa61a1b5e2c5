//! The container image: the Dockerfile's ports, health check, probe script, config path,
//! user and build; the container configs' admin listener that probes reach; and the probe
//! script itself, run against a fake admin listener.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::Command;
use std::time::Duration;

use crate::{
    compose_settings, deploy_dir, dockerfile_all, find_on_path, k8s_settings, ADMIN_PORT,
    CONFIG_PATH,
};

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
