//! A real S3-compatible server on 127.0.0.1 for the tests: `s3s-fs` (installed by
//! scripts/setup.sh), serving buckets as directories of a temporary root.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "cairn-test-access";
pub const SECRET_KEY: &str = "cairn-test-secret-key";

pub struct S3Server {
    child: Option<Child>,
    port: u16,
    root: tempfile::TempDir,
}

/// The `s3s-fs` binary: on PATH, or where `cargo install` puts it.
fn s3s_fs() -> PathBuf {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")));
    let candidates = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(cargo_home.map(|h| h.join("bin")));
    for dir in candidates {
        let bin = dir.join("s3s-fs");
        if bin.is_file() {
            return bin;
        }
    }
    panic!(
        "s3s-fs not found: run scripts/setup.sh (cargo install s3s-fs@0.14.1 --features binary)"
    );
}

impl S3Server {
    /// Starts a server with one bucket, `bucket`.
    pub fn start(bucket: &str) -> S3Server {
        let root = tempfile::tempdir().expect("server root");
        std::fs::create_dir(root.path().join(bucket)).expect("bucket directory");
        let mut server = S3Server {
            child: None,
            port: crate::free_port(),
            root,
        };
        server.run();
        server
    }

    fn run(&mut self) {
        let child = Command::new(s3s_fs())
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(self.root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting s3s-fs");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not start listening");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server abruptly (connections reset, requests in flight lost).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and data.
    pub fn restart(&mut self) {
        self.kill();
        self.run();
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Where the server keeps `bucket`'s objects.
    pub fn bucket_dir(&self, bucket: &str) -> PathBuf {
        self.root.path().join(bucket)
    }

    /// `[repository]` for the s3 sink on this server; credentials come from the
    /// environment variables the test passes (see [`S3Server::credentials`]).
    pub fn repository_config(&self, bucket: &str, prefix: &str) -> String {
        format!(
            "[repository]\nsink = \"s3\"\n[repository.options]\nbucket = \"{bucket}\"\nprefix = \"{prefix}\"\nendpoint = \"{}\"\naccess-key-id = \"env:TEST_S3_ACCESS_KEY\"\nsecret-access-key = \"env:TEST_S3_SECRET_KEY\"\n\n",
            self.endpoint()
        )
    }

    pub fn credentials() -> [(&'static str, &'static str); 2] {
        [
            ("TEST_S3_ACCESS_KEY", ACCESS_KEY),
            ("TEST_S3_SECRET_KEY", SECRET_KEY),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill();
    }
}
