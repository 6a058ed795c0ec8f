//! Running the binary, and a throwaway owner database per test.

use std::path::Path;
use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_control-plane");

/// The binary with an empty environment apart from `vars` (and PATH), run in `cwd`.
pub fn run(cwd: &Path, vars: &[(&str, &str)], args: &[&str]) -> Output {
    command(cwd, vars, args)
        .output()
        .expect("run control-plane")
}

pub fn command(cwd: &Path, vars: &[(&str, &str)], args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(vars.iter().copied())
        .args(args);
    cmd
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn pg_url(db: &str) -> String {
    let host = std::env::var("TEST_PG_HOST").unwrap_or_else(|_| "localhost".into());
    format!("postgres://postgres@{host}:5432/{db}")
}

/// A unique name in the shape the integration suite's sweep knows (`cpt_<hex secs><rand>`),
/// so what a killed run leaves behind is dropped by a later run.
pub fn unique_name() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    format!(
        "cpt_{now:08x}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    )
}

/// Drops the owner database `name` and every database and role named `<name>_...` when
/// dropped itself.
pub struct OwnerDb {
    pub name: String,
}

impl OwnerDb {
    pub fn new() -> Self {
        Self {
            name: unique_name(),
        }
    }

    pub fn url(&self) -> String {
        pg_url(&self.name)
    }

    pub fn prefix(&self) -> String {
        format!("{}_", self.name)
    }
}

impl Drop for OwnerDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside any runtime; give the cleanup one of its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok((client, conn)) =
                    tokio_postgres::connect(&pg_url("postgres"), tokio_postgres::NoTls).await
                else {
                    return;
                };
                tokio::spawn(conn);
                let pattern = format!("{}%", name.replace('_', "\\_"));
                for (list, drop) in [
                    (
                        "SELECT datname FROM pg_database WHERE datname LIKE $1",
                        "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                    ),
                    (
                        "SELECT rolname FROM pg_roles WHERE rolname LIKE $1",
                        "DROP ROLE IF EXISTS \"{}\"",
                    ),
                ] {
                    if let Ok(rows) = client.query(list, &[&pattern]).await {
                        for row in rows {
                            let item: String = row.get(0);
                            let _ = client
                                .batch_execute(&drop.replace("{}", &item.replace('"', "\"\"")))
                                .await;
                        }
                    }
                }
            });
        })
        .join();
    }
}

/// 32 random bytes, base64.
pub fn random_key() -> String {
    use base64::Engine;
    base64::prelude::BASE64_STANDARD.encode(
        uuid::Uuid::new_v4()
            .as_bytes()
            .iter()
            .chain(uuid::Uuid::new_v4().as_bytes())
            .copied()
            .collect::<Vec<u8>>(),
    )
}
