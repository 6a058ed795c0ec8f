//! PostgreSQL's own client tools (`pg_dump`, `pg_restore`), run against an [`Endpoint`].
//!
//! The connection is handed over in libpq's environment variables, never on the command
//! line, so the password does not show in `ps`; what a tool prints on failure is libpq's
//! and never holds it either.

use std::ffi::OsString;
use std::process::Stdio;

use secrecy::{ExposeSecret, SecretString};
use tokio::process::Command;

use super::Endpoint;
use crate::{Error, Result};

/// A tool run against one database of an endpoint's server.
pub struct Tool {
    command: Command,
    program: &'static str,
}

impl Tool {
    /// `program` (found on `PATH`) connecting to database `db` as the endpoint's user.
    /// It runs at a lower CPU priority (`nice`), so requests served by this host come
    /// first.
    pub fn new(program: &'static str, endpoint: &Endpoint, db: &str) -> Self {
        let mut command = Command::new("nice");
        command.args(["-n", "10", program]);
        Self::with(command, program, endpoint, db)
    }

    /// Like [`Tool::new`] at normal priority, for work a tenant waits on (a move's copy,
    /// made while its writes are paused).
    pub fn urgent(program: &'static str, endpoint: &Endpoint, db: &str) -> Self {
        Self::with(Command::new(program), program, endpoint, db)
    }

    fn with(mut command: Command, program: &'static str, endpoint: &Endpoint, db: &str) -> Self {
        command
            .env_clear()
            .envs(libpq_env(endpoint, db))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(path) = std::env::var_os("PATH") {
            command.env("PATH", path);
        }
        Self { command, program }
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.command.arg(arg.into());
        self
    }

    /// Runs the tool to the end; its standard output, or an error with what it printed
    /// on standard error.
    pub async fn run(mut self) -> Result<String> {
        let output = self.command.output().await.map_err(|e| {
            Error::Internal(format!(
                "cannot run {}: {e} (is the PostgreSQL client installed?)",
                self.program
            ))
        })?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(Error::Internal(format!(
                "{} failed ({}): {}",
                self.program,
                output.status,
                stderr.trim()
            )));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// Runs `from` with its standard output fed to `to`'s standard input (`pg_dump |
/// pg_restore`), so the second works while the first still produces. Fails if either
/// does, with what it printed.
pub async fn pipe(from: Tool, to: Tool) -> Result<()> {
    let (mut from_command, from_name) = (from.command, from.program);
    let (mut to_command, to_name) = (to.command, to.program);
    let cannot = |program: &str, e: std::io::Error| {
        Error::Internal(format!(
            "cannot run {program}: {e} (is the PostgreSQL client installed?)"
        ))
    };
    let mut producer = from_command.spawn().map_err(|e| cannot(from_name, e))?;
    let stdout = producer
        .stdout
        .take()
        .ok_or_else(|| Error::Internal(format!("{from_name} has no standard output")))?;
    let stdin: Stdio = stdout
        .try_into()
        .map_err(|e| Error::Internal(format!("cannot connect {from_name} to {to_name}: {e}")))?;
    let consumer = to_command
        .stdin(stdin)
        .spawn()
        .map_err(|e| cannot(to_name, e))?;
    let (produced, consumed) =
        tokio::join!(producer.wait_with_output(), consumer.wait_with_output());
    for (name, output) in [(from_name, produced), (to_name, consumed)] {
        let output = output.map_err(|e| cannot(name, e))?;
        if !output.status.success() {
            return Err(Error::Internal(format!(
                "{name} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
    }
    Ok(())
}

/// `pg_dump --version`, asked once per process.
pub async fn pg_dump_version() -> Result<String> {
    static VERSION: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    VERSION
        .get_or_try_init(|| version("pg_dump"))
        .await
        .cloned()
}

/// `pg_dump --version`, e.g. `pg_dump (PostgreSQL) 15.20`.
pub async fn version(program: &'static str) -> Result<String> {
    let output = Command::new(program)
        .arg("--version")
        .output()
        .await
        .map_err(|e| {
            Error::Internal(format!(
                "cannot run {program}: {e} (is the PostgreSQL client installed?)"
            ))
        })?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// libpq's variables for the endpoint's first host, with database `db`.
fn libpq_env(endpoint: &Endpoint, db: &str) -> Vec<(&'static str, OsString)> {
    use tokio_postgres::config::Host;
    let config = endpoint.config();
    let mut env: Vec<(&'static str, OsString)> = vec![("PGDATABASE", db.into())];
    match config.get_hosts().first() {
        Some(Host::Tcp(host)) => env.push(("PGHOST", host.into())),
        Some(Host::Unix(path)) => env.push(("PGHOST", path.into())),
        None => {}
    }
    if let Some(port) = config.get_ports().first() {
        env.push(("PGPORT", port.to_string().into()));
    }
    if let Some(user) = config.get_user() {
        env.push(("PGUSER", user.into()));
    }
    if let Some(password) = config.get_password() {
        let password = SecretString::from(String::from_utf8_lossy(password).into_owned());
        env.push(("PGPASSWORD", password.expose_secret().into()));
    }
    env.push(("PGSSLMODE", endpoint.sslmode().as_str().into()));
    if let Some(ca) = endpoint.root_cert() {
        env.push(("PGSSLROOTCERT", ca.into()));
    }
    if let Some(name) = config.get_application_name() {
        env.push(("PGAPPNAME", name.into()));
    }
    env.push(("PGCONNECT_TIMEOUT", "10".into()));
    env
}
