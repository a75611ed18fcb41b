//! A real Kafka-protocol broker for tests: tansu (installed by `.ci/install`), started on a free
//! loopback port, stopped when dropped. In-memory storage by default; [`Broker::durable`] keeps
//! its data in SQLite so a test can stop and restart it. Enabled by the `testing` feature, for
//! the integration tests of every crate that talks to Kafka.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Broker {
    child: Option<Child>,
    /// `127.0.0.1:PORT`, for `bootstrap.servers`.
    pub addr: String,
    storage: String,
    dir: tempfile::TempDir,
}

/// The tansu binary: `$TANSU`, else `tansu` on PATH, else cargo's bin directory.
fn tansu() -> PathBuf {
    if let Some(p) = std::env::var_os("TANSU") {
        return p.into();
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("tansu"))
            .find(|p| p.is_file())
    });
    on_path
        .or_else(|| {
            let home = std::env::var_os("CARGO_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
            Some(home.join("bin/tansu")).filter(|p| p.is_file())
        })
        .expect("tansu is not installed: run `bash .ci/install` (see shared KAFKA.md)")
}

impl Broker {
    /// A broker with in-memory storage.
    pub fn start() -> Broker {
        Self::with_storage("memory://tansu/")
    }

    /// A broker whose messages and committed offsets survive [`Broker::restart`]. The SQLite
    /// path is relative to the broker's working directory, the test's temporary folder (a
    /// leading slash is not honoured: see KAFKA.md).
    pub fn durable() -> Broker {
        Self::with_storage("sqlite://tansu.db")
    }

    fn with_storage(storage: &str) -> Broker {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let mut broker = Broker {
            child: None,
            addr: format!("127.0.0.1:{port}"),
            storage: storage.to_string(),
            dir: tempfile::tempdir().expect("a temporary directory"),
        };
        broker.launch();
        broker
    }

    fn launch(&mut self) {
        let url = format!("tcp://{}", self.addr);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("tansu.log"))
            .expect("the broker's log file");
        let child = Command::new(tansu())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", &self.storage])
            .current_dir(self.dir.path())
            .stdout(Stdio::from(log.try_clone().expect("log handle")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("tansu starts");
        self.child = Some(child);
        let started = Instant::now();
        while TcpStream::connect(&self.addr).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "tansu did not listen on {} within 20 s: {}",
                self.addr,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the broker (as a crash would); [`Broker::restart`] brings it back on the same port.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the broker again on the same port and storage.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    pub fn create_topic(&self, name: &str, partitions: u32) {
        let out = Command::new(tansu())
            .args(["topic", "create", name, "--broker"])
            .arg(format!("tcp://{}", self.addr))
            .args(["--partitions", &partitions.to_string()])
            .current_dir(self.dir.path())
            .output()
            .expect("tansu topic create runs");
        assert!(
            out.status.success(),
            "topic {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The broker's working directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tansu.log")).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}
