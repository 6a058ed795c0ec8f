//! A throwaway PostgreSQL cluster for the tests that need what this machine's cluster
//! does not do: check passwords (it trusts loopback). Made with the installed `initdb`
//! and `pg_ctl` as the `postgres` OS user (initdb refuses root), on a free port, with
//! scram-sha-256 for TCP logins; stopped and removed when dropped, panics included.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct ScratchCluster {
    dir: tempfile::TempDir,
    bindir: PathBuf,
    pub port: u16,
    /// The superuser's password (every TCP login checks one).
    pub password: String,
}

fn run(what: &str, command: &mut Command) {
    let out = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn as_postgres(bindir: &Path, program: &str) -> Command {
    let mut command = Command::new("runuser");
    command
        .args(["-u", "postgres", "--"])
        .arg(bindir.join(program));
    command
}

impl ScratchCluster {
    pub fn start() -> Self {
        let bindir = Command::new("pg_config")
            .arg("--bindir")
            .output()
            .expect("pg_config");
        let bindir = PathBuf::from(String::from_utf8_lossy(&bindir.stdout).trim());
        let dir = tempfile::Builder::new()
            .prefix("cpt-cluster-")
            .tempdir()
            .expect("tempdir");
        let password = uuid::Uuid::new_v4().simple().to_string();
        std::fs::write(dir.path().join("pw"), &password).expect("password file");
        run(
            "chown",
            Command::new("chown")
                .args(["-R", "postgres"])
                .arg(dir.path()),
        );
        run(
            "initdb",
            as_postgres(&bindir, "initdb")
                .arg("-D")
                .arg(dir.path().join("data"))
                .args(["-U", "postgres", "--auth-local=trust"])
                .args(["--auth-host=scram-sha-256", "-E", "UTF8"])
                .arg(format!("--pwfile={}", dir.path().join("pw").display())),
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        run(
            "pg_ctl start",
            as_postgres(&bindir, "pg_ctl")
                .arg("-D")
                .arg(dir.path().join("data"))
                .arg("-l")
                .arg(dir.path().join("log"))
                .args(["-w", "-o"])
                .arg(format!(
                    "-p {port} -k {} -c listen_addresses=127.0.0.1",
                    dir.path().display()
                ))
                .arg("start"),
        );
        Self {
            dir,
            bindir,
            port,
            password,
        }
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
        format!(
            "postgres://postgres:{}@127.0.0.1:{}/{db}",
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
