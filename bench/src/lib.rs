//! Shared by the benchmarks: timing a child process with its peak memory, generating the
//! data sets, and printing results.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

/// Wall time and peak resident memory of one child process.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    pub time: Duration,
    pub peak_rss_kib: u64,
}

/// Runs `cmd` to completion, failing if it fails; peak RSS from wait4(2).
pub fn measure(cmd: &mut Command) -> anyhow::Result<Measured> {
    let started = Instant::now();
    let child = cmd.stdout(std::process::Stdio::null()).spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid, and wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child; status and usage are valid for writes.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let time = started.elapsed();
    anyhow::ensure!(
        rc == pid,
        "wait4 failed: {}",
        std::io::Error::last_os_error()
    );
    anyhow::ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{cmd:?} failed with status {status}"
    );
    std::mem::forget(child);
    Ok(Measured {
        time,
        peak_rss_kib: usage.ru_maxrss as u64,
    })
}

/// The mixed tree of the repository benchmarks: `small` files of 1-64 KiB in nested
/// directories plus `large` files of `large_mib` MiB, all compressing about 2:1.
pub fn mixed_tree(
    root: &Path,
    small: usize,
    large: usize,
    large_mib: usize,
) -> anyhow::Result<u64> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(2026);
    let mut total = 0u64;
    for i in 0..small {
        let dir = root.join(format!("d{:02}/e{:02}", i % 40, (i / 40) % 20));
        std::fs::create_dir_all(&dir)?;
        let len = rng.random_range(1024..64 * 1024);
        std::fs::write(
            dir.join(format!("file-{i}.dat")),
            cairn_e2e::semi_compressible(&mut rng, len),
        )?;
        total += len as u64;
    }
    std::fs::create_dir_all(root.join("large"))?;
    for i in 0..large {
        let mut file = std::fs::File::create(root.join(format!("large/blob-{i}.bin")))?;
        for _ in 0..large_mib {
            std::io::Write::write_all(&mut file, &cairn_e2e::semi_compressible(&mut rng, 1 << 20))?;
        }
        total += (large_mib as u64) << 20;
    }
    Ok(total)
}

pub fn mib_per_s(bytes: u64, time: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / time.as_secs_f64()
}

/// Size of everything below `dir`.
pub fn du(dir: &Path) -> u64 {
    cairn_e2e::dir_size(dir)
}

/// A program on `PATH`.
pub fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

/// Warms the page cache with every file below `dir`, so the tools compared read from memory.
pub fn warm(dir: &Path) -> anyhow::Result<()> {
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "find {} -type f -exec cat {{}} + > /dev/null",
            dir.display()
        ))
        .status()?;
    Ok(())
}

/// Times a benchmark's commands, each one after recycling `$BENCH_RECYCLE_MIB` (default
/// 2048; 0 turns it off) MiB of memory.
///
/// Recycling makes memory recently used, so that the timed command writes into memory the
/// kernel has just freed: it writes that many zeros to a scratch file, then deletes it,
/// which frees the file's page-cache pages at once (dirty pages of a deleted file are
/// never written out).
///
/// Why: a VM that reports free memory to its host (virtio-balloon free page reporting,
/// as on this project's CI machines) hands back memory that has been free for about two
/// seconds, and touching it again costs the host a fault per page. Here, `dd` of 1 GiB
/// took 0.75-1.06 s into memory free for 5-8 s, against 0.22-0.38 s into memory freed a
/// moment before (bench/README.md, "Known effects of this VM"). A contender that writes more than the one
/// before it freed would then be timed on the VM's bookkeeping, by an amount that depends
/// on how the seconds fall. A busy server recycles its page cache, and bare metal has no
/// such charge, so every contender is given recently used memory alike.
#[derive(Debug, Clone)]
pub struct Timer {
    scratch: std::path::PathBuf,
    recycle_mib: u64,
}

impl Timer {
    /// A timer whose scratch file goes in `dir` (on the benchmark's filesystem).
    pub fn from_env(dir: &Path) -> anyhow::Result<Timer> {
        let recycle_mib = match std::env::var("BENCH_RECYCLE_MIB") {
            Ok(n) => n
                .parse()
                .map_err(|_| anyhow::anyhow!("BENCH_RECYCLE_MIB must be a number of MiB"))?,
            Err(_) => 2048,
        };
        Ok(Timer {
            scratch: dir.join(".recycle"),
            recycle_mib,
        })
    }

    /// The header line saying how commands are timed.
    pub fn describe(&self) -> String {
        match self.recycle_mib {
            0 => "# memory not recycled before timed commands (BENCH_RECYCLE_MIB=0)".into(),
            mib => {
                format!(
                    "# each timed command follows {mib} MiB written and deleted (BENCH_RECYCLE_MIB)"
                )
            }
        }
    }

    /// Recycles memory, then runs `cmd` to completion and measures it.
    pub fn time(&self, cmd: &mut Command) -> anyhow::Result<Measured> {
        self.recycle()?;
        measure(cmd)
    }

    /// Recycles memory: for work timed in the benchmark's own process.
    pub fn recycle(&self) -> anyhow::Result<()> {
        use std::io::Write;
        if self.recycle_mib == 0 {
            return Ok(());
        }
        let zeros = vec![0u8; 1 << 20];
        let mut file = std::fs::File::create(&self.scratch)?;
        for _ in 0..self.recycle_mib {
            file.write_all(&zeros)?;
        }
        drop(file);
        std::fs::remove_file(&self.scratch)?;
        Ok(())
    }
}

/// `[SMALL_FILES LARGE_FILES LARGE_MIB]` from the command line, for the mixed tree; the
/// default is about 1 GiB (16,000 files of 1-64 KiB plus 4 of 128 MiB).
pub fn tree_args(program: &str) -> anyhow::Result<(usize, usize, usize)> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    match args.as_slice() {
        [] => Ok((16_000, 4, 128)),
        [s, l, m] => Ok((*s, *l, *m)),
        _ => anyhow::bail!("usage: {program} [SMALL_FILES LARGE_FILES LARGE_MIB]"),
    }
}

/// The release `cairn` binary beside the running benchmark.
pub fn cairn_exe() -> anyhow::Result<std::path::PathBuf> {
    let cairn = std::env::current_exe()?.with_file_name("cairn");
    anyhow::ensure!(
        cairn.exists(),
        "{} missing: cargo build --release -p cairn",
        cairn.display()
    );
    Ok(cairn)
}

/// The run of median time among `runs` (for rounds run interleaved, so that a noisy
/// moment of a shared machine weighs on one round of each contender, not on the result).
pub fn median(runs: &[Measured]) -> Measured {
    let mut sorted = runs.to_vec();
    sorted.sort_by_key(|m| m.time);
    sorted[sorted.len() / 2]
}

/// Rounds to run: `$BENCH_ROUNDS`, default 3.
pub fn rounds() -> anyhow::Result<usize> {
    match std::env::var("BENCH_ROUNDS") {
        Ok(n) => {
            let n: usize = n
                .parse()
                .map_err(|_| anyhow::anyhow!("BENCH_ROUNDS must be a positive number"))?;
            anyhow::ensure!(n > 0, "BENCH_ROUNDS must be a positive number");
            Ok(n)
        }
        Err(_) => Ok(3),
    }
}

/// Prints cairn against restic, one row a measurement: wall times, peak RSS and the
/// cairn/restic ratios of each.
pub fn print_vs_restic(rows: &[(&str, Measured, Measured)]) {
    println!(
        "{:<22} {:>10} {:>10} {:>8} {:>12} {:>12} {:>8}",
        "", "cairn s", "restic s", "ratio", "cairn RSS", "restic RSS", "ratio"
    );
    for (name, a, b) in rows {
        println!(
            "{:<22} {:>10.2} {:>10.2} {:>8.2} {:>9} MiB {:>9} MiB {:>8.2}",
            name,
            a.time.as_secs_f64(),
            b.time.as_secs_f64(),
            a.time.as_secs_f64() / b.time.as_secs_f64(),
            a.peak_rss_kib / 1024,
            b.peak_rss_kib / 1024,
            a.peak_rss_kib as f64 / b.peak_rss_kib as f64
        );
    }
}

/// An `events` table (id, kind, time, body) with an index on time, filled to `size_mib`.
pub fn events_database(path: &Path, size_mib: u64) -> anyhow::Result<()> {
    let conn = rusqlite::Connection::open(path)?;
    conn.execute_batch(
        "PRAGMA journal_mode=WAL;
         CREATE TABLE events(id INTEGER PRIMARY KEY, kind TEXT NOT NULL, created INTEGER NOT NULL, body TEXT NOT NULL);
         CREATE INDEX events_created ON events(created);",
    )?;
    // About 600 bytes a row with its index entry.
    let rows = size_mib * 1024 * 1024 / 600;
    let batch = 100_000;
    let mut done = 0;
    while done < rows {
        let n = batch.min(rows - done);
        conn.execute_batch(&format!(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {n})
             INSERT INTO events(kind, created, body)
             SELECT 'kind-' || (abs(random()) % 20), 1700000000 + {done} + x,
                    hex(randomblob(140)) || ' user signed in from a device in the office ' || x || printf('%.*c', 200, 'x')
             FROM c;"
        ))?;
        done += n;
    }
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
    Ok(())
}

/// A cairn repository on local disk for one contender, its config, plugin cache and
/// scratch space under `work`, backing up one SQLite database as source `app`.
pub struct LocalCairn {
    pub exe: std::path::PathBuf,
    pub work: std::path::PathBuf,
    pub config: std::path::PathBuf,
    pub repo: std::path::PathBuf,
}

impl LocalCairn {
    /// Writes the config (`extra` goes after the source's `path` option: more options, or
    /// a `[source.replicate]` table), initialises the repository and compiles the plugins
    /// into the cache first, as any second run would find them.
    pub fn sqlite(exe: &Path, work: &Path, db: &Path, extra: &str) -> anyhow::Result<LocalCairn> {
        let repo = work.join("repo");
        let repository = format!(
            "[repository]\nsink = \"local\"\n[repository.options]\npath = \"{}\"\n\n",
            repo.display()
        );
        LocalCairn::sqlite_in(exe, work, db, &repository, &repo, extra)
    }

    /// The same with a `[repository]` section of the caller's, whose objects are files
    /// under `repo` (the local S3 server's bucket directory, say).
    pub fn sqlite_in(
        exe: &Path,
        work: &Path,
        db: &Path,
        repository: &str,
        repo: &Path,
        extra: &str,
    ) -> anyhow::Result<LocalCairn> {
        std::fs::create_dir_all(work.join("tmp"))?;
        let repo = repo.to_path_buf();
        let config = work.join("cairn.toml");
        std::fs::write(
            &config,
            format!(
                "{repository}[[source]]\nname = \"app\"\nplugin = \"sqlite\"\n[source.options]\npath = \"{}\"\n{extra}",
                db.display()
            ),
        )?;
        let made = LocalCairn {
            exe: exe.to_path_buf(),
            work: work.to_path_buf(),
            config,
            repo,
        };
        measure(&mut made.command(&["init"]))?;
        measure(&mut made.command(&["plugin", "inspect", "sqlite"]))?;
        Ok(made)
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.arg("--config")
            .arg(&self.config)
            .args(args)
            .env("CAIRN_PASSWORD", "bench")
            .env("CAIRN_CACHE_DIR", self.work.join("cache"))
            .env("TMPDIR", self.work.join("tmp"));
        cmd
    }
}
