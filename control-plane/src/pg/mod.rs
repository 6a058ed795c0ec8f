//! PostgreSQL plumbing shared by the service and the CLI: endpoints (where and how to
//! connect, TLS included), the owner pool, identifier and literal quoting, and server
//! hardening.

pub mod tls;
pub mod tools;

use std::path::Path;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use secrecy::{ExposeSecret, SecretString};
use tokio_postgres::Client;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::{Error, Result};

/// Where to connect and how: the driver's configuration and the TLS connector its
/// `sslmode` asks for. Cheap to clone; derived endpoints (another database, another
/// role on the same server) keep the TLS settings.
#[derive(Clone)]
pub struct Endpoint {
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    mode: tls::SslMode,
    /// The CA file the connector trusts, if one was named (handed to libpq tools).
    root_cert: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        f.debug_struct("Endpoint")
            .field("hosts", &self.config.get_hosts())
            .field("ports", &self.config.get_ports())
            .field("dbname", &self.config.get_dbname())
            .field("user", &self.config.get_user())
            .field("sslmode", &self.mode)
            .finish()
    }
}

impl Endpoint {
    /// Parses a connection URL; `setting` names it in errors. `ca_file` is used when the
    /// URL names no `sslrootcert`.
    pub fn parse(url: &str, ca_file: Option<&Path>, setting: &str) -> Result<Self> {
        let invalid = |why: String| Error::Config(format!("invalid setting {setting}: {why}"));
        let parsed = tls::parse_url(url).map_err(invalid)?;
        let ca = parsed.root_cert.as_deref().or(ca_file);
        let connector = tls::connector(parsed.mode, ca).map_err(invalid)?;
        let mut config = parsed.config;
        // So operators can tell our sessions apart in pg_stat_activity.
        if config.get_application_name().is_none() {
            config.application_name(APPLICATION_NAME);
        }
        Ok(Self {
            config,
            tls: connector,
            mode: parsed.mode,
            root_cert: ca.map(Path::to_path_buf),
        })
    }

    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// For session options (`options`, `application_name`); TLS stays as parsed.
    pub fn config_mut(&mut self) -> &mut tokio_postgres::Config {
        &mut self.config
    }

    pub fn tls(&self) -> &MakeRustlsConnect {
        &self.tls
    }

    pub fn sslmode(&self) -> tls::SslMode {
        self.mode
    }

    pub fn root_cert(&self) -> Option<&Path> {
        self.root_cert.as_deref()
    }

    /// The same server and credentials, another database.
    pub fn with_database(&self, db: &str) -> Self {
        let mut out = self.clone();
        out.config.dbname(db);
        out
    }

    /// The same server, another database, logging in as `role`.
    pub fn as_role(&self, db: &str, role: &str, password: &SecretString) -> Self {
        let mut out = self.with_database(db);
        out.config.user(role).password(password.expose_secret());
        out
    }

    /// Opens one connection (see [`connect`]).
    pub async fn connect(&self) -> Result<Client> {
        connect(self).await
    }
}

/// `application_name` of every session we open, unless the URL names another.
pub const APPLICATION_NAME: &str = "control-plane";
pub const OWNER_POOL_SIZE: usize = 16;
pub const OWNER_POOL_WAIT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens one connection and drives it on a background task. Dropping the client ends
/// the session (and releases its session-level advisory locks).
pub async fn connect(endpoint: &Endpoint) -> Result<Client> {
    let mut config = endpoint.config.clone();
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    let (client, connection) = config.connect(endpoint.tls.clone()).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "postgres connection closed with an error");
        }
    });
    Ok(client)
}

/// The owner-database pool. Connections are verified on recycle, so one killed by a
/// server restart is replaced instead of failing the next request; `get` waits at most
/// [`OWNER_POOL_WAIT`].
pub fn owner_pool(endpoint: &Endpoint) -> Result<Pool> {
    let mut config = endpoint.config.clone();
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    let manager = Manager::from_config(
        config,
        endpoint.tls.clone(),
        ManagerConfig {
            recycling_method: RecyclingMethod::Verified,
        },
    );
    Pool::builder(manager)
        .max_size(OWNER_POOL_SIZE)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(OWNER_POOL_WAIT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .build()
        .map_err(|e| Error::Internal(format!("cannot build the owner pool: {e}")))
}

/// `"name"` with inner quotes doubled. Names we build are plain already; quoting is the
/// second fence, not the first.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'` with inner quotes doubled, for the few statements (COMMENT, PASSWORD) that
/// take no parameters.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Makes sure the owner database exists, creating it only when its server says it does
/// not: never because the server could not be reached (that would put it on the admin
/// server when `DATABASE_URL` names another one). It is created through the admin
/// connection when both name the same server, else through the owner URL's credentials.
pub async fn ensure_owner_database(owner: &Endpoint, admin: &Endpoint, db: &str) -> Result<()> {
    match owner.connect().await {
        Ok(_) => return Ok(()),
        Err(Error::Db(e))
            if e.code() == Some(&tokio_postgres::error::SqlState::INVALID_CATALOG_NAME) => {}
        Err(e) => {
            return Err(Error::Config(format!(
                "cannot reach the owner database named by DATABASE_URL: {e}"
            )));
        }
    }
    let same_server = owner.config.get_hosts() == admin.config.get_hosts()
        && owner.config.get_ports() == admin.config.get_ports();
    if same_server {
        ensure_database_exists(admin, db).await
    } else {
        ensure_database_exists(&owner.with_database("postgres"), db).await
    }
}

/// Creates the database `db` through `admin` if it does not exist yet.
pub async fn ensure_database_exists(admin: &Endpoint, db: &str) -> Result<()> {
    let client = connect(admin).await?;
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db])
        .await?
        .is_some();
    if !exists {
        match client
            .batch_execute(&format!("CREATE DATABASE {}", ident(db)))
            .await
        {
            Ok(()) => tracing::info!(database = db, "created the owner database"),
            // Another process created it between our check and our create.
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Takes `CONNECT` away from `PUBLIC` on the databases tenant roles must never reach:
/// `postgres`, `template1` and the owner database (on the server that holds it).
/// Superusers are unaffected.
pub async fn harden_server(admin: &Endpoint, owner_db: Option<&str>) -> Result<()> {
    let client = connect(admin).await?;
    for db in ["postgres", "template1"].into_iter().chain(owner_db) {
        let public_can_connect = "SELECT has_database_privilege('public', $1, 'CONNECT')";
        let open: bool = client.query_one(public_can_connect, &[&db]).await?.get(0);
        if !open {
            continue;
        }
        let revoke = client
            .batch_execute(&format!(
                "REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC",
                ident(db)
            ))
            .await;
        if let Err(e) = revoke {
            // Two processes starting together race on the same catalog row
            // ("tuple concurrently updated"); what matters is the outcome.
            let open: bool = client.query_one(public_can_connect, &[&db]).await?.get(0);
            if open {
                return Err(e.into());
            }
        }
    }
    Ok(())
}

/// Host and port of a connection configuration (its first host), as recorded in
/// `database_servers` and in backup manifests.
pub fn server_address(config: &tokio_postgres::Config) -> (String, u16) {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    (host, port)
}
