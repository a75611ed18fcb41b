//! KEDA's external scaler against a live `auspex serve`: the embedded simulator replays two
//! hours of a small cluster through the forecaster, `embedded.hold` keeps the process up, and a
//! client written elsewhere (Python grpcio, stubs generated from the .proto at test time:
//! `crates/auspex-keda/tests/keda_client.py`) calls every method, with good and bad metadata.
//! Its answers are checked against the forecasts serve publishes on `/v1/forecasts`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Starts serve and returns it with its HTTP and gRPC addresses, once the source has ended.
fn start(dir: &Path) -> (Child, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_auspex"))
        .current_dir(dir)
        .args([
            "serve",
            "--set",
            &format!("model.path={}", root().join("fixtures/model").display()),
            "--set",
            &format!(
                "forecast.model={}",
                root().join("fixtures/forecast/model.bin").display()
            ),
            "--set",
            "keda.listen=127.0.0.1:0",
            "--set",
            "keda.stream_interval_ms=200",
            "--set",
            "http.listen=127.0.0.1:0",
            "--set",
            "embedded.hold=true",
            "--set",
            "embedded.alerts=alerts.ndjson",
            "--set",
            "embedded.seed=5",
            "--set",
            "embedded.sim={ nodes = 3, services = 4, replicas = 2, duration_ms = 7200000 }",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("auspex serve starts");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let (mut http, mut grpc) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match rx.recv_timeout(left) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!("serve never held its API; stderr:\n{}", seen.join("\n"));
            }
        };
        if let Some(a) = line.strip_prefix("auspex serve: HTTP API on http://") {
            http = Some(a.trim().to_string());
        }
        if let Some(a) = line.strip_prefix("auspex serve: KEDA external scaler (gRPC) on ") {
            grpc = Some(a.trim().to_string());
        }
        let holding = line.contains("holding the API");
        seen.push(line);
        if holding {
            break;
        }
    }
    (
        child,
        http.expect("HTTP address logged"),
        grpc.expect("gRPC address logged"),
    )
}

fn get(addr: &str, path: &str) -> Value {
    let mut s = TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    let (head, body) = body.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
    serde_json::from_str(body).expect("JSON")
}

fn python_client(grpc: &str, calls: &Value) -> Vec<Value> {
    let mut child = Command::new("python3")
        .arg(root().join("crates/auspex-keda/tests/keda_client.py"))
        .arg(root().join("crates/auspex-keda/proto"))
        .arg(grpc)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (with grpcio and grpcio-tools: .ci/install) runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(calls.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Python client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the client's JSON")
}

#[test]
fn keda_calls_the_scaler_and_gets_the_served_forecasts() {
    let dir = tempfile::tempdir().unwrap();
    let (mut serve, http, grpc) = start(dir.path());

    // Pick a workload serve forecasts CPU for, and its p90 at 15 minutes.
    let all = get(&http, "/v1/forecasts");
    let cpu: Vec<&Value> = all["forecasts"]
        .as_array()
        .expect("forecasts")
        .iter()
        .filter(|f| f["resource"] == "cpu_cores")
        .collect();
    assert!(!cpu.is_empty(), "serve forecast no workload's CPU: {all}");
    let f = cpu[0];
    let (ns, name) = (
        f["workload"]["namespace"].as_str().unwrap(),
        f["workload"]["workload"].as_str().unwrap(),
    );
    let q90 = f["quantiles"]
        .as_array()
        .unwrap()
        .iter()
        .position(|q| (q.as_f64().unwrap() - 0.9).abs() < 1e-9)
        .expect("p90 served");
    let h15 = f["horizons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["horizon_ms"] == 900_000)
        .expect("15 min served");
    let expected = h15["values"][q90].as_f64().unwrap().max(0.0);
    assert!(expected > 0.0, "a running workload needs CPU: {f}");

    let good = json!({
        "workload": format!("{ns}/{name}"),
        "resource": "cpu",
        "targetPerPod": "250m",
        "horizon": "15m",
        "quantile": "p90",
        "scalerAddress": grpc,
    });
    let with = |k: &str, v: Value| {
        let mut m = good.clone();
        m[k] = v;
        m
    };
    let without = |k: &str| {
        let mut m = good.clone();
        m.as_object_mut().unwrap().remove(k);
        m
    };
    let call = |method: &str, metadata: Value| json!({"method": method, "name": "so", "namespace": ns, "metadata": metadata});
    let calls = json!([
        call("GetMetricSpec", good.clone()),
        call("GetMetrics", good.clone()),
        call("IsActive", good.clone()),
        call("IsActive", with("activationValue", json!("100000"))),
        call("StreamIsActive", good.clone()),
        call("StreamIsActive", with("activationValue", json!("100000"))),
        call("GetMetrics", with("resource", json!("gpu"))),
        call("GetMetricSpec", without("targetPerPod")),
        call("IsActive", with("horizon", json!("10m"))),
        call("GetMetrics", with("quantile", json!("p95"))),
        call("GetMetricSpec", with("targetPerPd", json!("1"))),
        call("StreamIsActive", with("targetPerPod", json!("lots"))),
        call(
            "GetMetrics",
            with("workload", json!(format!("{ns}/no-such-workload")))
        ),
        call("IsActive", with("workload", json!("Not/A Name"))),
    ]);
    let r = python_client(&grpc, &calls);
    assert_eq!(r.len(), 14, "{r:?}");

    let spec = &r[0]["ok"]["metricSpecs"][0];
    assert_eq!(
        spec["metricName"],
        format!("auspex-cpu-p90-15m-{ns}-{name}").to_lowercase(),
        "{r:?}"
    );
    assert_eq!(spec["targetSizeFloat"], 0.25);
    let value = &r[1]["ok"]["metricValues"][0];
    assert!(
        (value["metricValueFloat"].as_f64().unwrap() - expected).abs() <= 1e-9 * expected.max(1.0),
        "GetMetrics {value} vs /v1/forecasts {expected}"
    );
    assert_eq!(value["metricValue"], expected.ceil() as i64);
    assert_eq!(r[2]["ok"]["result"], true, "{:?}", r[2]);
    assert_eq!(r[3]["ok"]["result"], false, "{:?}", r[3]);
    assert_eq!(r[4]["ok"]["first"], true, "{:?}", r[4]);
    assert_eq!(r[5]["ok"]["first"], false, "{:?}", r[5]);

    // Bad metadata: InvalidArgument, naming the key; an unknown workload: NotFound.
    for (i, key) in [
        (6, "resource"),
        (7, "targetPerPod"),
        (8, "horizon"),
        (9, "quantile"),
        (10, "targetPerPd"),
        (11, "targetPerPod"),
        (13, "workload"),
    ] {
        let e = &r[i]["error"];
        assert_eq!(e["code"], "INVALID_ARGUMENT", "call {i}: {:?}", r[i]);
        let details = e["details"].as_str().unwrap();
        assert!(
            details.contains(&format!("`{key}`")),
            "call {i} names {key}: {details}"
        );
    }
    assert!(
        r[8]["error"]["details"]
            .as_str()
            .unwrap()
            .contains("5m, 15m, 30m"),
        "{:?}",
        r[8]
    );
    assert_eq!(r[12]["error"]["code"], "NOT_FOUND", "{:?}", r[12]);
    assert!(
        r[12]["error"]["details"]
            .as_str()
            .unwrap()
            .contains("no-such-workload")
    );

    // The same forecasts as gauges on /metrics.
    let metrics = {
        let mut s = TcpStream::connect(&http).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut b = String::new();
        s.read_to_string(&mut b).unwrap();
        b
    };
    let series = format!(
        "auspex_forecast_demand{{namespace=\"{ns}\",workload=\"{name}\",resource=\"cpu_cores\",horizon=\"15m\",quantile=\"0.9\"}} "
    );
    let line = metrics
        .lines()
        .find(|l| l.starts_with(&series))
        .unwrap_or_else(|| panic!("no {series} in /metrics"));
    let gauge: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!((gauge - expected).abs() <= 1e-9 * expected.max(1.0));
    assert!(metrics.contains("auspex_keda_requests_total{method=\"GetMetrics\",code=\"ok\"} 1"));

    // SIGTERM ends the hold, the open scaler and the process, cleanly.
    let pid = serve.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = serve.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}

#[test]
fn the_scaler_needs_a_forecast_model() {
    let out = Command::new(env!("CARGO_BIN_EXE_auspex"))
        .args([
            "serve",
            "--set",
            "keda.listen=127.0.0.1:0",
            "--set",
            "http.listen=",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("keda.listen") && err.contains("forecast.model"),
        "{err}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_auspex"))
        .args(["serve", "--set", "forecast.model=/no/such/forecast.bin"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("forecast.model = /no/such/forecast.bin"),
        "{err}"
    );
}
