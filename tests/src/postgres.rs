//! Real PostgreSQL clusters for the tests: Debian's server binaries (found with
//! `pg_config --bindir`, installed by scripts/setup.sh), `initdb` and `pg_ctl` in a
//! temporary directory, listening on a free port of 127.0.0.1 with password
//! authentication, stopped when the value is dropped. When the tests run as root the
//! server runs as the `postgres` user, since PostgreSQL refuses to run as root.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// The superuser of every test cluster, and its password.
pub const USER: &str = "cairn";
pub const PASSWORD: &str = "cairn-test-pg-secret";
/// The environment variable configs name in `password = "env:..."`.
pub const PASSWORD_VAR: &str = "CAIRN_TEST_PGPASSWORD";

pub struct PgCluster {
    dir: tempfile::TempDir,
    bindir: PathBuf,
    pub port: u16,
}

/// Where the PostgreSQL server binaries are.
pub fn bindir() -> PathBuf {
    let out = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .expect("pg_config not found: run scripts/setup.sh (it installs postgresql-15)");
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(
        dir.join("initdb").is_file(),
        "{} has no initdb: run scripts/setup.sh (it installs postgresql-15)",
        dir.display()
    );
    dir
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The directory holding `postgres.h`: the installed server headers, or those
/// scripts/setup.sh unpacked into its cache.
fn server_headers() -> PathBuf {
    let out = Command::new("pg_config")
        .arg("--includedir-server")
        .output()
        .expect("pg_config not found: run scripts/setup.sh (it installs postgresql-15)");
    let installed = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if installed.join("postgres.h").is_file() {
        return installed;
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .expect("neither XDG_CACHE_HOME nor HOME is set");
    let unpacked = cache.join("cairn/postgresql-server-dev-15/usr/include/postgresql/15/server");
    assert!(
        unpacked.join("postgres.h").is_file(),
        "no PostgreSQL server headers in {} or {}: run scripts/setup.sh",
        installed.display(),
        unpacked.display()
    );
    unpacked
}

impl PgCluster {
    pub fn start() -> PgCluster {
        PgCluster::start_with(false, false)
    }

    /// A cluster that also accepts TLS, with a self-signed certificate for 127.0.0.1
    /// (see [`PgCluster::root_certificate`]).
    pub fn start_with_tls() -> PgCluster {
        PgCluster::start_with(true, false)
    }

    /// A cluster with the test security label provider `cairn_test` loaded
    /// (tests/fixtures/label_provider.c: it accepts every label but `forbidden`).
    pub fn start_with_label_provider() -> PgCluster {
        PgCluster::start_with(false, true)
    }

    /// The CA certificate that signed the server's (for `sslrootcert`).
    pub fn root_certificate(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    fn start_with(tls: bool, label_provider: bool) -> PgCluster {
        let dir = tempfile::Builder::new()
            .prefix("cairn-pg-")
            .tempdir()
            .expect("cluster dir");
        let cluster = PgCluster {
            bindir: bindir(),
            port: crate::free_port(),
            dir,
        };
        let label_library = cluster.dir.path().join("cairn_test_label.so");
        if label_provider {
            let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/label_provider.c");
            let out = Command::new("cc")
                .args(["-shared", "-fPIC", "-O2", "-I"])
                .arg(server_headers())
                .arg("-o")
                .arg(&label_library)
                .arg(&source)
                .output()
                .expect("cc not found: install gcc");
            assert!(
                out.status.success(),
                "building {}: {}",
                source.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(cluster.dir.path())
                .status()
                .expect("chown");
            assert!(status.success(), "chown of the cluster directory failed");
        }
        let pwfile = cluster.dir.path().join("pwfile");
        std::fs::write(&pwfile, PASSWORD).expect("pwfile");
        if is_root() {
            Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&pwfile)
                .status()
                .expect("chown");
        }
        let data = cluster.data();
        cluster.run_tool(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                USER,
                "--pwfile",
                &pwfile.to_string_lossy(),
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=50",
            cluster.port,
            cluster.dir.path().display()
        );
        if label_provider {
            options.push_str(&format!(
                " -c shared_preload_libraries={}",
                label_library.display()
            ));
        }
        if tls {
            cluster.make_certificate();
            options.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                cluster.dir.path().join("server.crt").display(),
                cluster.dir.path().join("server.key").display()
            ));
        }
        cluster.run_tool(
            "pg_ctl",
            &[
                "-D",
                &data,
                "-l",
                &cluster.dir.path().join("server.log").to_string_lossy(),
                "-o",
                &options,
                "-w",
                "start",
            ],
        );
        cluster
    }

    /// A test CA, and a server certificate for 127.0.0.1 it signed.
    fn make_certificate(&self) {
        let dir = self.dir.path();
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )
        .expect("extensions file");
        let openssl = |args: &str| {
            let out = Command::new("openssl")
                .args(args.split_whitespace())
                .current_dir(dir)
                .output()
                .expect("openssl");
            assert!(
                out.status.success(),
                "openssl {args}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        openssl(
            "req -new -x509 -days 2 -nodes -newkey rsa:2048 -subj /CN=cairn-test-ca -keyout ca.key -out ca.crt",
        );
        openssl(
            "req -new -nodes -newkey rsa:2048 -subj /CN=127.0.0.1 -keyout server.key -out server.csr",
        );
        openssl(
            "x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile server.ext -out server.crt",
        );
        let key = dir.join("server.key");
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("key mode");
        if is_root() {
            Command::new("chown")
                .arg("postgres:postgres")
                .arg(&key)
                .arg(dir.join("server.crt"))
                .status()
                .expect("chown");
        }
    }

    fn data(&self) -> String {
        self.dir.path().join("data").to_string_lossy().into_owned()
    }

    /// A server tool run as the cluster's owner.
    fn tool(&self, name: &str) -> Command {
        let path = self.bindir.join(name);
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        cmd.current_dir(self.dir.path()).stdin(Stdio::null());
        cmd
    }

    fn run_tool(&self, name: &str, args: &[&str]) {
        let out = self.tool(name).args(args).output().expect(name);
        assert!(
            out.status.success(),
            "{name} failed: {}{}\nserver log: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
        );
    }

    /// `postgres://cairn@127.0.0.1:PORT/DB` (the password comes from the environment).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{db}", self.port)
    }

    /// A client program (psql, pg_dump, pgbench) connected over TCP with the password.
    pub fn client(&self, name: &str, db: &str) -> Command {
        let mut cmd = Command::new(self.bindir.join(name));
        cmd.env("PGHOST", "127.0.0.1")
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", USER)
            .env("PGPASSWORD", PASSWORD)
            .env("PGDATABASE", db)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs SQL with psql (stopping at the first error); returns the unaligned output.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = self
            .client("psql", db)
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "psql failed: {}\nSQL: {sql}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Runs a SQL script file with psql.
    pub fn psql_file(&self, db: &str, file: &Path) {
        let out = self
            .client("psql", db)
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-f"])
            .arg(file)
            .output()
            .expect("psql");
        assert!(
            out.status.success(),
            "psql -f {} failed: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn create_database(&self, db: &str) {
        self.psql("postgres", &format!("CREATE DATABASE \"{db}\""));
    }

    pub fn output(&self, cmd: &mut Command) -> Output {
        cmd.output().expect("running a PostgreSQL client")
    }

    /// `pg_dump --schema-only` without ownership, privileges, comments-as-headers or
    /// settings: what must match between a database and its restored copy.
    pub fn schema_dump(&self, db: &str) -> String {
        self.dump_schema(db, &["--no-owner", "--no-privileges"])
    }

    /// `pg_dump --schema-only` with owners and privileges (for a copy restored in the same
    /// cluster, where every role exists).
    pub fn schema_dump_with_privileges(&self, db: &str) -> String {
        self.dump_schema(db, &[])
    }

    fn dump_schema(&self, db: &str, options: &[&str]) -> String {
        let out = self
            .client("pg_dump", db)
            .arg("--schema-only")
            .args(options)
            .output()
            .expect("pg_dump");
        assert!(
            out.status.success(),
            "pg_dump failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        normalise_dump(&String::from_utf8_lossy(&out.stdout))
    }

    /// An md5 of each table's contents in a canonical order, by table name.
    pub fn table_digests(&self, db: &str) -> Vec<(String, String)> {
        let tables = self.psql(
            db,
            "SELECT c.oid::regclass FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
             AND n.nspname NOT LIKE 'pg_toast%' ORDER BY c.oid::regclass::text",
        );
        tables
            .lines()
            .map(|t| {
                let digest = self.psql(
                    db,
                    &format!(
                        "SELECT count(*) || ':' || coalesce(md5(string_agg(x::text, E'\\n' ORDER BY x::text)), '') FROM {t} x"
                    ),
                );
                (t.to_string(), digest)
            })
            .collect()
    }

    /// Each large object: oid, owner, privileges, comment and an md5 of its contents.
    pub fn large_objects(&self, db: &str) -> String {
        self.psql(
            db,
            "SELECT string_agg(concat_ws(' ', l.oid, l.lomowner::regrole, l.lomacl, \
               obj_description(l.oid, 'pg_largeobject'), md5(lo_get(l.oid))), E'\\n' ORDER BY l.oid) \
             FROM pg_largeobject_metadata l",
        )
    }

    /// Starts a process that commits transactions until killed.
    pub fn spawn(&self, name: &str, db: &str, args: &[&str]) -> Child {
        self.client(name, db)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting a client")
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self
            .tool("pg_ctl")
            .args(["-D", &self.data(), "-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Drops what differs between two dumps of equal databases: comments, settings, blank
/// lines, and the `\restrict` key pg_dump 15.14+ writes.
pub fn normalise_dump(dump: &str) -> String {
    dump.lines()
        .filter(|l| {
            !l.starts_with("--")
                && !l.starts_with("SET ")
                && !l.starts_with("SELECT pg_catalog.set_config")
                && !l.starts_with("\\restrict")
                && !l.starts_with("\\unrestrict")
                && !l.trim().is_empty()
        })
        .collect::<Vec<_>>()
        .join("\n")
}
