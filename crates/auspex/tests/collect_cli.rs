//! `auspex collect` as a process: configuration errors name the key and where it came from;
//! the effective configuration prints; a remote-write request posted to the running binary
//! comes out as NDJSON samples on stdout when SIGTERM flushes the open buckets.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use auspex_collect::remote_write::{self, Label, Sample, TimeSeries, WriteRequest};
use auspex_model::MetricSample;

fn auspex() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_auspex"));
    c.arg("collect");
    c
}

#[test]
fn configuration_errors_name_the_key() {
    let out = auspex()
        .args(["--set", "mapping.resolution_ms=10"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("mapping.resolution_ms"), "{err}");

    let out = auspex()
        .env("AUSPEX_COLLECT__SCRAPE__URL", "ftp://prometheus")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("scrape.url"), "{err}");

    let out = auspex()
        .args(["--set", "mapping.resolutoin_ms=5000"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("resolutoin_ms"),
        "{err}"
    );

    let out = auspex()
        .args([
            "--set",
            "kafka.brokers=k:9092",
            "--set",
            "kafka.properties.acks=1",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("kafka.properties.acks"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("collect.toml");
    std::fs::write(&file, "[http]\nlisten = \"nowhere\"\n").unwrap();
    let out = auspex().arg("--config").arg(&file).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("http.listen") && err.contains("collect.toml"),
        "{err}"
    );
}

#[test]
fn check_config_prints_the_effective_configuration_redacted() {
    let out = auspex()
        .args(["--check-config", "--set", "http.bearer_token=s3cret"])
        .env("AUSPEX_COLLECT__MAPPING__RESOLUTION_MS", "30000")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(c["mapping"]["resolution_ms"], 30000);
    assert_eq!(c["http"]["bearer_token"], "<redacted>");
}

#[test]
fn a_remote_write_comes_out_as_ndjson_on_sigterm() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = auspex()
        .args(["--set", &format!("http.listen=\"127.0.0.1:{port}\"")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let labels = |name: &str, mode: &str| {
        vec![
            Label::new("__name__", name),
            Label::new("instance", "worker-7:9100"),
            Label::new("mode", mode),
        ]
    };
    let body = remote_write::encode(&WriteRequest {
        timeseries: vec![
            TimeSeries {
                labels: labels("node_cpu_seconds_total", "user"),
                samples: vec![
                    Sample {
                        value: 10.0,
                        timestamp: now - 2000,
                    },
                    Sample {
                        value: 11.0,
                        timestamp: now - 1000,
                    },
                ],
            },
            TimeSeries {
                labels: labels("node_cpu_seconds_total", "idle"),
                samples: vec![
                    Sample {
                        value: 50.0,
                        timestamp: now - 2000,
                    },
                    Sample {
                        value: 50.0,
                        timestamp: now - 1000,
                    },
                ],
            },
        ],
        metadata: vec![],
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            write!(
                s,
                "POST /api/v1/write HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n\
                 Content-Encoding: snappy\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .unwrap();
            s.write_all(&body).unwrap();
            let mut resp = String::new();
            let _ = s.read_to_string(&mut resp);
            break resp;
        }
        assert!(Instant::now() < deadline, "collect did not listen");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.starts_with("HTTP/1.1 204"), "{status}");
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert!(child.wait().unwrap().success());
    let samples: Vec<MetricSample> = stdout
        .lines()
        .map(|l| MetricSample::from_json(l.as_bytes()).unwrap())
        .collect();
    // One bucket (or two, when the samples straddle a 15 s boundary) of node worker-7.
    assert!(!samples.is_empty(), "{stdout}");
    let s = samples.last().unwrap();
    assert_eq!(s.entity.id().as_str(), "node/worker-7");
    assert!((s.metrics["cpu_usage_cores"] - 1.0).abs() < 1e-9, "{s:?}");
    assert!(
        (s.metrics["node_cpu_utilization_ratio"] - 1.0).abs() < 1e-9,
        "{s:?}"
    );
}

/// A stand-in for kube-apiserver over real HTTP: the watcher crate's first-list fixtures
/// (API-format JSON) for every list, and watches held open with nothing to say. Returns the
/// server's URL; it serves until the test process ends.
fn fake_api_server() -> String {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../auspex-watch/tests/fixtures")
        .to_path_buf();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let fixtures = fixtures.clone();
            // Each connection in its own thread: hyper keeps connections alive.
            held.push(std::thread::spawn(move || {
                loop {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        match stream.read(&mut byte) {
                            Ok(1) => head.push(byte[0]),
                            _ => return,
                        }
                    }
                    let head = String::from_utf8_lossy(&head).to_string();
                    let target = head.split_whitespace().nth(1).unwrap_or("").to_string();
                    let path = target.split('?').next().unwrap_or("");
                    let resource = path.rsplit('/').next().unwrap_or("");
                    if target.contains("watch=true") {
                        // An idle watch: chunked, never a chunk.
                        let _ = stream.write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                              transfer-encoding: chunked\r\n\r\n",
                        );
                        std::thread::sleep(Duration::from_secs(3600));
                        return;
                    }
                    let body = std::fs::read(fixtures.join(format!("{resource}.list.1.json")));
                    let reply = match body {
                        Ok(b) => {
                            let mut r = format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                                 content-length: {}\r\n\r\n",
                                b.len()
                            )
                            .into_bytes();
                            r.extend(b);
                            r
                        }
                        Err(_) => b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".to_vec(),
                    };
                    if stream.write_all(&reply).is_err() {
                        return;
                    }
                }
            }));
        }
    });
    url
}

#[test]
fn with_watch_on_the_cluster_topology_comes_out_as_topology_events() {
    let api = fake_api_server();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: test\n\
             clusters: [{{name: test, cluster: {{server: \"{api}\"}}}}]\n\
             users: [{{name: test, user: {{}}}}]\n\
             contexts: [{{name: test, context: {{cluster: test, user: test}}}}]\n"
        ),
    )
    .unwrap();
    let out = dir.path().join("out.ndjson");
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = auspex()
        .env("KUBECONFIG", &kubeconfig)
        .args(["--set", &format!("http.listen=\"127.0.0.1:{port}\"")])
        .args(["--set", &format!("output.path=\"{}\"", out.display())])
        // Any key of [watch] turns the watcher on.
        .args(["--set", "watch.page_size=100"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let events = |text: &str| -> Vec<auspex_model::TopologyEvent> {
        text.lines()
            .filter_map(|l| auspex_model::TopologyEvent::from_json(l.as_bytes()).ok())
            .collect()
    };
    let started = Instant::now();
    let mut got = Vec::new();
    while started.elapsed() < Duration::from_secs(30) {
        got = events(&std::fs::read_to_string(&out).unwrap_or_default());
        // The first snapshot: 4 nodes, 2 services, the pods and their edges.
        if got.len() >= 10 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "{stderr}");
    let text: Vec<String> = got
        .iter()
        .map(|e| serde_json::to_string(&e.change).unwrap())
        .collect();
    let has = |needle: &str| text.iter().any(|t| t.contains(needle));
    assert!(has(r#""name":"node-a""#), "a node: {text:#?}\n{stderr}");
    assert!(has(r#""name":"cart-0""#), "a pod: {text:#?}");
    assert!(
        text.iter()
            .any(|t| t.contains("runs_on") && t.contains("cart-0") && t.contains("node-a")),
        "cart-0 runs on node-a: {text:#?}"
    );
    assert!(
        text.iter()
            .any(|t| t.contains("belongs_to") && t.contains(r#""name":"cart""#)),
        "a pod belongs to service cart: {text:#?}"
    );
}
