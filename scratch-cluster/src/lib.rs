//! A throwaway PostgreSQL cluster for the tests and benchmarks that need what this
//! machine's cluster does not do: check passwords (it trusts loopback), or allow many
//! more connections. Made with the installed `initdb` and `pg_ctl` as the `postgres` OS
//! user (initdb refuses root), on a free port, with scram-sha-256 for TCP logins and trust
//! on its Unix socket; stopped (fast) and removed when dropped, panics included.
//!
//! Clusters live under the temp directory as `scratch-pg-*`, each with a file naming the
//! process that made it. A run that is killed never drops its cluster, so every start
//! first sweeps the clusters whose process is gone: stopped (immediate) and removed.
//!
//! ```no_run
//! let cluster = scratch_cluster::ScratchCluster::builder()
//!     .max_connections(1200)
//!     .setting("log_min_messages", "warning")
//!     .start();
//! let url = cluster.url("postgres"); // the superuser over TCP, with its password
//! ```

use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

/// What cluster directories are called under the temp directory.
pub const PREFIX: &str = "scratch-pg-";
/// The file in a cluster directory naming its owning process: `<pid> <start time>`.
const OWNER_FILE: &str = "owner";
/// A directory without an owner file younger than this may be a start in progress.
const UNOWNED_GRACE: Duration = Duration::from_secs(120);

pub struct ScratchCluster {
    dir: tempfile::TempDir,
    bindir: PathBuf,
    pub port: u16,
    /// The superuser's password (every TCP login checks one).
    pub password: String,
}

/// Settings for a cluster to start; [`ScratchCluster::builder`].
#[derive(Debug, Clone, Default)]
pub struct Builder {
    max_connections: Option<u32>,
    shared_buffers: Option<String>,
    settings: Vec<(String, String)>,
}

impl Builder {
    /// `max_connections` (PostgreSQL's default is 100).
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = Some(n);
        self
    }

    /// `shared_buffers`, e.g. `"256MB"` (PostgreSQL's default is 128MB).
    pub fn shared_buffers(mut self, size: impl Into<String>) -> Self {
        self.shared_buffers = Some(size.into());
        self
    }

    /// Any other server setting, as `-c name=value` would give it.
    pub fn setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((name.into(), value.into()));
        self
    }

    /// Starts the cluster; panics with the tool's output if it cannot.
    pub fn start(self) -> ScratchCluster {
        self.try_start()
            .unwrap_or_else(|e| panic!("scratch cluster: {e}"))
    }

    /// Sweeps clusters left by dead processes, then makes and starts a new one.
    pub fn try_start(self) -> io::Result<ScratchCluster> {
        let bindir = bindir()?;
        sweep_in(&std::env::temp_dir(), &bindir);
        let dir = tempfile::Builder::new().prefix(PREFIX).tempdir()?;
        std::fs::write(dir.path().join(OWNER_FILE), owner_stamp())?;
        let password = uuid::Uuid::new_v4().simple().to_string();
        std::fs::write(dir.path().join("pw"), &password)?;
        run(
            "chown",
            Command::new("chown")
                .args(["-R", "postgres"])
                .arg(dir.path()),
        )?;
        let data = dir.path().join("data");
        run(
            "initdb",
            as_postgres(&bindir, "initdb")
                .arg("-D")
                .arg(&data)
                .args(["-U", "postgres", "--auth-local=trust"])
                .args(["--auth-host=scram-sha-256", "-E", "UTF8"])
                .arg(format!("--pwfile={}", dir.path().join("pw").display())),
        )?;
        std::fs::remove_file(dir.path().join("pw"))?;
        let mut conf = format!(
            "\n# scratch-cluster\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = {}\n",
            quote(&dir.path().display().to_string())
        );
        let mut settings = Vec::new();
        if let Some(n) = self.max_connections {
            settings.push(("max_connections".to_string(), n.to_string()));
        }
        if let Some(size) = self.shared_buffers {
            settings.push(("shared_buffers".to_string(), size));
        }
        settings.extend(self.settings);
        for (name, value) in &settings {
            conf.push_str(&format!("{name} = {}\n", quote(value)));
        }
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))?;
        io::Write::write_all(&mut file, conf.as_bytes())?;
        drop(file);

        // From here on a failure must stop the server: Drop does.
        let mut cluster = ScratchCluster {
            dir,
            bindir,
            port: 0,
            password,
        };
        // The free port is released before the server binds it; another process may
        // take it in between, so try a few.
        let mut last = None;
        for _ in 0..3 {
            let port = free_port()?;
            match run(
                "pg_ctl start",
                as_postgres(&cluster.bindir, "pg_ctl")
                    .arg("-D")
                    .arg(&data)
                    .arg("-l")
                    .arg(cluster.dir.path().join("log"))
                    .args(["-w", "-o"])
                    .arg(format!("-p {port}"))
                    .arg("start"),
            ) {
                Ok(()) => {
                    cluster.port = port;
                    return Ok(cluster);
                }
                Err(e) => last = Some(e),
            }
        }
        let log = std::fs::read_to_string(cluster.dir.path().join("log")).unwrap_or_default();
        Err(io::Error::other(format!(
            "{}\nserver log:\n{log}",
            last.expect("tried")
        )))
    }
}

impl ScratchCluster {
    /// A cluster with PostgreSQL's defaults (see [`Builder`] for others).
    pub fn start() -> Self {
        Self::builder().start()
    }

    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The cluster's directory (also its Unix socket directory).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The superuser's URL for `db` over the cluster's Unix socket (local logins are
    /// trusted, as on a database host where only the service's user can reach the socket).
    pub fn socket_url(&self, db: &str) -> String {
        format!(
            "postgres://postgres@/{db}?host={}&port={}",
            self.dir.path().display(),
            self.port
        )
    }

    /// The superuser's URL for `db`, over TCP (so the password is checked).
    pub fn url(&self, db: &str) -> String {
        format!("{}/{db}", self.server_url())
    }

    /// The superuser's URL over TCP without a database.
    pub fn server_url(&self) -> String {
        format!(
            "postgres://postgres:{}@127.0.0.1:{}",
            self.password, self.port
        )
    }
}

impl Drop for ScratchCluster {
    fn drop(&mut self) {
        // Fast shutdown ends the sessions still open; the directory goes with `dir`.
        let _ = as_postgres(&self.bindir, "pg_ctl")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "fast", "-w", "stop"])
            .output();
    }
}

/// Stops (immediate) and removes the clusters under the temp directory whose owning
/// process is gone; returns how many. [`Builder::try_start`] does this first.
pub fn sweep() -> io::Result<usize> {
    Ok(sweep_in(&std::env::temp_dir(), &bindir()?))
}

fn sweep_in(root: &Path, bindir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(root) else {
        return 0;
    };
    let mut swept = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let is_cluster = entry.file_name().to_string_lossy().starts_with(PREFIX)
            && entry.file_type().is_ok_and(|t| t.is_dir());
        if !is_cluster || !abandoned(&path) {
            continue;
        }
        let data = path.join("data");
        if data.join("postmaster.pid").exists() {
            let _ = as_postgres(bindir, "pg_ctl")
                .arg("-D")
                .arg(&data)
                .args(["-m", "immediate", "-w", "stop"])
                .output();
        }
        // Another sweeper may be removing it at the same time.
        if std::fs::remove_dir_all(&path).is_ok() {
            swept += 1;
        }
    }
    swept
}

/// Whether the process that made the cluster at `dir` is gone.
fn abandoned(dir: &Path) -> bool {
    match std::fs::read_to_string(dir.join(OWNER_FILE)) {
        Ok(stamp) => {
            let mut parts = stamp.split_whitespace();
            let Some(pid) = parts.next().and_then(|p| p.parse::<u32>().ok()) else {
                return true;
            };
            let started = parts.next().and_then(|s| s.parse::<u64>().ok());
            match (process_start(pid), started) {
                (None, _) => true,
                // The id was reused by a later process.
                (Some(now), Some(then)) => now != then,
                (Some(_), None) => false,
            }
        }
        // Made just now by a start that has not written the file yet, or not one of ours.
        Err(_) => std::fs::metadata(dir)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age > UNOWNED_GRACE),
    }
}

/// This process: its id and start time, so a reused id is not taken for it.
fn owner_stamp() -> String {
    let pid = std::process::id();
    match process_start(pid) {
        Some(start) => format!("{pid} {start}\n"),
        None => format!("{pid}\n"),
    }
}

/// The start time (clock ticks since boot) of process `pid`, if it is alive.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name in parentheses (which may hold spaces): field 3 onwards;
    // the start time is field 22.
    let rest = &stat[stat.rfind(')')? + 1..];
    let start = rest.split_whitespace().nth(19).and_then(|s| s.parse().ok());
    // A zombie is dead for our purpose.
    match rest.split_whitespace().next() {
        Some("Z") | Some("X") => None,
        _ => Some(start.unwrap_or(0)),
    }
}

fn bindir() -> io::Result<PathBuf> {
    let out = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .map_err(|e| io::Error::other(format!("pg_config: {e}")))?;
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A postgresql.conf string literal.
fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

fn run(what: &str, command: &mut Command) -> io::Result<()> {
    let out = command
        .output()
        .map_err(|e| io::Error::other(format!("{what}: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

fn as_postgres(bindir: &Path, program: &str) -> Command {
    let mut command = Command::new("runuser");
    command
        .args(["-u", "postgres", "--"])
        .arg(bindir.join(program));
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The id of a process that has exited (and been reaped).
    fn dead_pid() -> u32 {
        let mut child = Command::new("true").spawn().expect("spawn");
        let pid = child.id();
        child.wait().expect("wait");
        pid
    }

    #[test]
    fn the_sweep_removes_directories_of_dead_owners_only() {
        let root = tempfile::tempdir().expect("root");
        let dead = root.path().join(format!("{PREFIX}dead"));
        let alive = root.path().join(format!("{PREFIX}alive"));
        let reused = root.path().join(format!("{PREFIX}reused"));
        let other = root.path().join("not-a-cluster");
        for dir in [&dead, &alive, &reused, &other] {
            std::fs::create_dir(dir).expect("dir");
        }
        std::fs::write(dead.join(OWNER_FILE), format!("{} 1\n", dead_pid())).expect("w");
        std::fs::write(alive.join(OWNER_FILE), owner_stamp()).expect("w");
        // Our id, another start time: the id was reused.
        std::fs::write(
            reused.join(OWNER_FILE),
            format!("{} 1\n", std::process::id()),
        )
        .expect("w");
        std::fs::write(other.join(OWNER_FILE), format!("{} 1\n", dead_pid())).expect("w");

        assert_eq!(sweep_in(root.path(), Path::new("/nonexistent")), 2);
        assert!(!dead.exists() && !reused.exists());
        assert!(alive.exists() && other.exists());
    }

    /// A running cluster whose owner died is stopped and removed by the next start.
    #[test]
    fn a_cluster_left_by_a_killed_run_is_stopped_and_removed() {
        let left = ScratchCluster::builder().max_connections(20).start();
        let pid: u32 = std::fs::read_to_string(left.dir().join("data/postmaster.pid"))
            .expect("postmaster.pid")
            .lines()
            .next()
            .and_then(|l| l.parse().ok())
            .expect("postmaster id");
        assert!(process_start(pid).is_some(), "the server is not running");
        std::fs::write(left.dir().join(OWNER_FILE), format!("{} 1\n", dead_pid())).expect("w");

        let next = ScratchCluster::start();
        assert!(!left.dir().exists(), "the abandoned cluster is still there");
        assert!(process_start(pid).is_none(), "its server still runs");
        assert!(next.dir().exists());
        drop(left); // nothing left to stop or remove: no panic
    }
}
