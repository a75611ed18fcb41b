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
