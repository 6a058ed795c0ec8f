//! Typed configuration, read once at start-up and validated before anything runs.
//!
//! Sources, later ones winning: built-in defaults, an optional TOML file named by
//! `CP_CONFIG_FILE` (keys are the variable names in lower case without `CP_`, e.g.
//! `listen = "0.0.0.0:8080"`, `tenant_connection_budget = 100`), then the environment.
//! The settings, their defaults and meanings are the README's configuration table;
//! `control-plane config` prints the values in force. Every value is parsed by one
//! function here whatever its source, and a bad one stops start-up with a message that
//! names the setting (and the file, when it came from one). `CP_*` variables that name
//! no setting are reported once at start-up.

mod effective;
mod sources;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

pub use self::sources::{SETTINGS, Values, file_key};
use crate::Result;
use crate::pg::{Endpoint, tls};

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@localhost:5432/control_plane";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = "./data";
pub const DEFAULT_BASE_DOMAIN: &str = "localhost";
pub const DEFAULT_TENANT_DB_PREFIX: &str = "tenant_";
pub const DEFAULT_RECONCILE_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_OWNER_TOKEN_TTL: Duration = Duration::from_secs(900);
/// Daily usage roll-ups are kept this many days.
pub const DEFAULT_USAGE_RETENTION_DAYS: i32 = 400;
/// A dashboard session ends after this long without a page view...
pub const DEFAULT_DASHBOARD_IDLE: Duration = Duration::from_secs(30 * 60);
/// ...and after this long in any case.
pub const DEFAULT_DASHBOARD_SESSION: Duration = Duration::from_secs(12 * 3600);
pub const DEFAULT_METERING_INTERVAL: Duration = Duration::from_secs(300);
pub const DEFAULT_METERING_CONCURRENCY: usize = 4;
pub const DEFAULT_TENANT_POOL_SIZE: usize = 5;
/// PBKDF2 rounds in the tenant roles' SCRAM verifiers. Their passwords are 256 random bits,
/// which key stretching cannot make any harder to guess, while every login pays the rounds
/// (4096 by PostgreSQL's default, about a third of a connection's cost here).
pub const DEFAULT_TENANT_SCRAM_ITERATIONS: u32 = 16;
/// More rounds than anyone would want per login (PostgreSQL's own default is 4096).
const MAX_SCRAM_ITERATIONS: u32 = 1_000_000;
pub const DEFAULT_TENANT_POOL_IDLE: Duration = Duration::from_secs(300);
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 25 * 1024 * 1024;
/// Backups taken at once by the background job (each holds one admin connection and
/// runs one `pg_dump`).
pub const DEFAULT_BACKUP_CONCURRENCY: usize = 2;
/// How often the backup job looks for tenants whose plan says a backup is due.
pub const DEFAULT_BACKUP_SCHEDULE_INTERVAL: Duration = Duration::from_secs(60);
/// How often one recent backup is restored into a scratch database and checked.
pub const DEFAULT_RESTORE_TEST_INTERVAL: Duration = Duration::from_secs(86_400);
/// How long a moved tenant's old database is kept on its former server.
pub const DEFAULT_MOVE_GRACE: Duration = Duration::from_secs(3_600);
pub const DEFAULT_INTEGRATION_SYNC_INTERVAL: Duration = Duration::from_secs(3_600);
/// HTTP connections open at once; past it the oldest idle connection is closed.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Dev,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

pub use crate::secrets::MasterKeySource;

/// The whole configuration of the service and the CLI.
#[derive(Debug, Clone)]
pub struct Config {
    /// The owner database.
    pub database_url: SecretString,
    /// The connection that creates and drops tenant databases and roles.
    pub admin_database_url: SecretString,
    /// HTTP listen address; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Dev-mode state lives here.
    pub data_dir: PathBuf,
    /// Root of the tenants' file trees.
    pub storage_root: PathBuf,
    /// Tenants get `<slug>.<base_domain>` as their default domain.
    pub base_domain: String,
    pub master_key: MasterKeySource,
    pub environment: Environment,
    /// Prefix of every tenant database and role name; the rest is the tenant id.
    pub tenant_db_prefix: String,
    pub reconcile_interval: Duration,
    pub owner_token_ttl: Duration,
    /// A dashboard session ends after this long without a request (sliding).
    pub dashboard_idle: Duration,
    /// A dashboard session ends this long after sign-in, active or not.
    pub dashboard_session: Duration,
    pub log_format: LogFormat,
    /// Extra tenant migrations on top of the embedded ones.
    pub tenant_migrations_dir: Option<PathBuf>,
    /// Hosts that serve the owner API and are never resolved as tenants.
    pub owner_hosts: Vec<String>,
    pub tenant_pool_size: usize,
    /// PBKDF2 rounds in the SCRAM verifiers of tenant roles made or re-made from now on.
    pub tenant_scram_iterations: u32,
    /// Tenant pools kept at once; `None`: sized with the connection budget at start-up.
    pub max_tenant_pools: Option<u64>,
    /// Tenant connections open at once, all pools together; `None`: derived at start-up
    /// from the server's `max_connections` (see `gateway::budget`).
    pub tenant_connection_budget: Option<usize>,
    pub tenant_pool_idle: Duration,
    /// Largest single upload.
    pub max_upload_bytes: u64,
    /// Peers whose forwarded host headers are believed; everyone else's are ignored.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// How often usage is sampled; zero: never in the background.
    pub metering_interval: Duration,
    /// Tenants one metering sample visits at once.
    pub metering_concurrency: usize,
    /// Days the daily usage roll-ups are kept.
    pub usage_retention_days: i32,
    /// The dashboard cookie is sent over HTTPS only.
    pub cookie_secure: bool,
    /// CA certificates for `sslmode=verify-ca|verify-full` (and for checking the chain
    /// in `require`), when the URL names no `sslrootcert`.
    pub database_ca_file: Option<PathBuf>,
    /// HTTP connections open at once, all clients together.
    pub max_connections: usize,
    /// Where backups go; `None`: each tenant's own `backups` folder.
    pub backup_root: Option<PathBuf>,
    /// Backups the background job takes at once.
    pub backup_concurrency: usize,
    /// How often the backup job looks for due backups; zero: never in the background.
    pub backup_schedule_interval: Duration,
    /// How often a recent backup is test-restored; zero: never in the background.
    pub restore_test_interval: Duration,
    /// How long a moved tenant's old database and roles are kept on its former server.
    pub move_grace: Duration,
    /// Where mail goes (`smtp://user:password@host:587?tls=required`, `smtps://...`);
    /// `None`: files in `<data_dir>/mail` in dev mode, no mail in production.
    pub smtp_url: Option<SecretString>,
    /// The sender of the service's mail.
    pub mail_from: String,
    /// Base URLs that replace integration providers' own, by provider code.
    pub integration_endpoints: std::collections::HashMap<String, String>,
    /// How often each integration is synced; zero: never in the background.
    pub integration_sync_interval: Duration,
    /// `CP_*` variables that name no setting; reported once at start-up.
    pub unknown_variables: Vec<String>,
}

impl Config {
    /// Reads `CP_CONFIG_FILE` (if set) and the environment.
    pub fn load() -> Result<Self> {
        // A variable that is not UTF-8 cannot be one of ours.
        Self::from_env(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
        )
    }

    /// Like [`Config::load`], from the given variables instead of the process's.
    pub fn from_env(env: impl IntoIterator<Item = (String, String)>) -> Result<Self> {
        Self::from_values(&Values::gather(env)?)
    }

    /// Defaults for everything, as in a fresh dev checkout.
    pub fn defaults() -> Result<Self> {
        Self::from_values(&Values::default())
    }

    fn from_values(v: &Values) -> Result<Self> {
        let environment = match v.get("CP_ENV") {
            None | Some("dev") | Some("development") => Environment::Dev,
            Some("production") | Some("prod") => Environment::Production,
            Some(other) => {
                return Err(v.invalid("CP_ENV", format!("{other:?} is neither dev nor production")));
            }
        };
        let database_url = v.get("DATABASE_URL").unwrap_or(DEFAULT_DATABASE_URL);
        let owner_pg = tls::parse_url(database_url)
            .map_err(|e| v.invalid("DATABASE_URL", e))?
            .config;
        if owner_pg.get_dbname().is_none() {
            return Err(v.invalid("DATABASE_URL", "names no database"));
        }
        let admin_database_url = match v.get("CP_ADMIN_DATABASE_URL") {
            Some(url) => {
                tls::parse_url(url).map_err(|e| v.invalid("CP_ADMIN_DATABASE_URL", e))?;
                url.to_string()
            }
            None => with_database(database_url, "postgres").ok_or_else(|| {
                v.invalid(
                    "DATABASE_URL",
                    "cannot derive the admin URL from it; set CP_ADMIN_DATABASE_URL",
                )
            })?,
        };
        let database_ca_file = v.get_path("CP_DATABASE_CA_FILE");
        if let Some(file) = &database_ca_file
            && !file.is_file()
        {
            return Err(v.invalid(
                "CP_DATABASE_CA_FILE",
                format!("{} is not a readable file", file.display()),
            ));
        }
        let listen_raw = v.get("CP_LISTEN").unwrap_or(DEFAULT_LISTEN);
        let listen = listen_raw.parse().map_err(|_| {
            v.invalid(
                "CP_LISTEN",
                format!("{listen_raw:?} is not an address like 127.0.0.1:8080"),
            )
        })?;
        let data_dir = v
            .get_path("CP_DATA_DIR")
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let storage_root = v
            .get_path("CP_STORAGE_ROOT")
            .unwrap_or_else(|| data_dir.join("storage"));
        for (setting, dir) in [
            ("CP_DATA_DIR", &data_dir),
            ("CP_STORAGE_ROOT", &storage_root),
        ] {
            if dir.exists() && !dir.is_dir() {
                return Err(v.invalid(
                    setting,
                    format!("{} exists and is not a directory", dir.display()),
                ));
            }
        }
        let base_domain = v
            .get("CP_BASE_DOMAIN")
            .unwrap_or(DEFAULT_BASE_DOMAIN)
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let base_ok = !base_domain.is_empty()
            && base_domain.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            });
        if !base_ok {
            return Err(v.invalid(
                "CP_BASE_DOMAIN",
                format!("{base_domain:?} is not a domain name"),
            ));
        }
        let master_key = match (v.get("CP_MASTER_KEY"), v.get_path("CP_MASTER_KEY_FILE")) {
            (Some(_), Some(_)) => {
                return Err(v.invalid(
                    "CP_MASTER_KEY",
                    "set either CP_MASTER_KEY or CP_MASTER_KEY_FILE, not both",
                ));
            }
            (Some(key), None) => {
                crate::secrets::Keyring::parse(key).map_err(|e| v.invalid("CP_MASTER_KEY", e))?;
                MasterKeySource::Inline(SecretString::from(key.to_string()))
            }
            (None, Some(file)) if file.is_file() => MasterKeySource::File(file),
            (None, Some(file)) => {
                return Err(v.invalid(
                    "CP_MASTER_KEY_FILE",
                    format!("{} is not a readable file", file.display()),
                ));
            }
            (None, None) if environment == Environment::Production => {
                return Err(v.invalid(
                    "CP_MASTER_KEY",
                    "is required when CP_ENV=production (or set CP_MASTER_KEY_FILE)",
                ));
            }
            (None, None) => MasterKeySource::Generated(data_dir.join("master.key")),
        };
        let tenant_db_prefix = v
            .get("CP_TENANT_DB_PREFIX")
            .unwrap_or(DEFAULT_TENANT_DB_PREFIX)
            .to_string();
        let prefix_ok = (1..=20).contains(&tenant_db_prefix.len())
            && tenant_db_prefix.starts_with(|c: char| c.is_ascii_lowercase())
            && tenant_db_prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !prefix_ok {
            return Err(v.invalid(
                "CP_TENANT_DB_PREFIX",
                "must be 1 to 20 characters of a-z, 0-9 and _, starting with a letter",
            ));
        }
        let number = |setting: &str, zero_ok: bool| -> Result<Option<u64>> {
            let Some(text) = v.get(setting) else {
                return Ok(None);
            };
            match text.parse::<u64>() {
                Ok(n) if n > 0 || zero_ok => Ok(Some(n)),
                _ => Err(v.invalid(
                    setting,
                    format!(
                        "{text:?} is not a {} whole number",
                        if zero_ok { "non-negative" } else { "positive" }
                    ),
                )),
            }
        };
        let secs = |setting: &str, default: Duration| -> Result<Duration> {
            Ok(number(setting, false)?.map_or(default, Duration::from_secs))
        };
        let count = |setting: &str, default: usize| -> Result<usize> {
            match number(setting, false)? {
                None => Ok(default),
                Some(n) => usize::try_from(n).map_err(|_| v.invalid(setting, "is too large")),
            }
        };
        let reconcile_interval = secs("CP_RECONCILE_INTERVAL_SECS", DEFAULT_RECONCILE_INTERVAL)?;
        let owner_token_ttl = secs("CP_OWNER_TOKEN_TTL_SECS", DEFAULT_OWNER_TOKEN_TTL)?;
        let dashboard_idle = secs("CP_DASHBOARD_IDLE_SECS", DEFAULT_DASHBOARD_IDLE)?;
        let dashboard_session = secs("CP_DASHBOARD_SESSION_SECS", DEFAULT_DASHBOARD_SESSION)?;
        if dashboard_idle > dashboard_session {
            return Err(v.invalid(
                "CP_DASHBOARD_IDLE_SECS",
                "is longer than CP_DASHBOARD_SESSION_SECS, the session's whole lifetime",
            ));
        }
        let log_format = match v.get("CP_LOG_FORMAT") {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(v.invalid(
                    "CP_LOG_FORMAT",
                    format!("{other:?} is neither text nor json"),
                ));
            }
        };
        let tenant_migrations_dir = v.get_path("CP_TENANT_MIGRATIONS_DIR");
        if let Some(dir) = &tenant_migrations_dir
            && !dir.is_dir()
        {
            return Err(v.invalid(
                "CP_TENANT_MIGRATIONS_DIR",
                format!("{} is not a directory", dir.display()),
            ));
        }
        let tenant_pool_size = count("CP_TENANT_POOL_SIZE", DEFAULT_TENANT_POOL_SIZE)?;
        let tenant_scram_iterations = match number("CP_TENANT_SCRAM_ITERATIONS", false)? {
            None => DEFAULT_TENANT_SCRAM_ITERATIONS,
            Some(n) => u32::try_from(n)
                .ok()
                .filter(|n| *n <= MAX_SCRAM_ITERATIONS)
                .ok_or_else(|| {
                    v.invalid(
                        "CP_TENANT_SCRAM_ITERATIONS",
                        format!("must be 1 to {MAX_SCRAM_ITERATIONS}"),
                    )
                })?,
        };
        // A count, or `auto` (the default): worked out at start-up.
        let auto = |setting: &str| -> Result<Option<u64>> {
            match v.get(setting) {
                None => Ok(None),
                Some(raw) if raw.trim().eq_ignore_ascii_case("auto") => Ok(None),
                Some(raw) => match raw.trim().parse::<u64>() {
                    Ok(n) if n > 0 => Ok(Some(n)),
                    _ => Err(v.invalid(
                        setting,
                        format!("{raw:?} is neither auto nor a positive whole number"),
                    )),
                },
            }
        };
        let max_tenant_pools = auto("CP_MAX_TENANT_POOLS")?;
        let tenant_connection_budget = auto("CP_TENANT_CONNECTION_BUDGET")?
            .map(|n| {
                usize::try_from(n)
                    .map_err(|_| v.invalid("CP_TENANT_CONNECTION_BUDGET", "is too large"))
            })
            .transpose()?;
        if let Some(budget) = tenant_connection_budget
            && budget < tenant_pool_size
        {
            return Err(v.invalid(
                "CP_TENANT_CONNECTION_BUDGET",
                format!(
                    "{budget} is smaller than CP_TENANT_POOL_SIZE ({tenant_pool_size}); one busy tenant could not get its pool"
                ),
            ));
        }
        let tenant_pool_idle = secs("CP_TENANT_POOL_IDLE_SECS", DEFAULT_TENANT_POOL_IDLE)?;
        let max_upload_bytes =
            number("CP_MAX_UPLOAD_BYTES", false)?.unwrap_or(DEFAULT_MAX_UPLOAD_BYTES);
        let owner_hosts: Vec<String> = match v.get("CP_OWNER_HOSTS") {
            Some(list) => list
                .split(',')
                .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
            None => vec![base_domain.clone()],
        };
        if owner_hosts.is_empty() {
            return Err(v.invalid("CP_OWNER_HOSTS", "names no host"));
        }
        if let Some(bad) = owner_hosts.iter().find(|h| {
            !h.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        }) {
            return Err(v.invalid("CP_OWNER_HOSTS", format!("{bad:?} is not a host name")));
        }
        let trusted_proxies = match v.get("CP_TRUSTED_PROXIES") {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| {
                    p.parse().map_err(|_| {
                        v.invalid("CP_TRUSTED_PROXIES", format!("{p:?} is not an IP address"))
                    })
                })
                .collect::<Result<Vec<_>>>()?,
        };
        let metering_interval = number("CP_METERING_INTERVAL_SECS", true)?
            .map_or(DEFAULT_METERING_INTERVAL, Duration::from_secs);
        let metering_concurrency = count("CP_METERING_CONCURRENCY", DEFAULT_METERING_CONCURRENCY)?;
        let usage_retention_days = match number("CP_USAGE_RETENTION_DAYS", false)? {
            None => DEFAULT_USAGE_RETENTION_DAYS,
            Some(n) => i32::try_from(n).ok().filter(|n| *n >= 31).ok_or_else(|| {
                v.invalid(
                    "CP_USAGE_RETENTION_DAYS",
                    "must be at least 31 (hourly roll-ups are kept 30 days)",
                )
            })?,
        };
        let cookie_secure = match v.get("CP_COOKIE_SECURE").map(str::to_ascii_lowercase) {
            None => environment == Environment::Production,
            Some(b) if matches!(b.as_str(), "true" | "1" | "yes" | "on") => true,
            Some(b) if matches!(b.as_str(), "false" | "0" | "no" | "off") => false,
            Some(other) => {
                return Err(v.invalid(
                    "CP_COOKIE_SECURE",
                    format!("{other:?} is neither true nor false"),
                ));
            }
        };
        let max_connections = count("CP_MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS)?;
        let backup_root = v.get_path("CP_BACKUP_ROOT");
        if let Some(dir) = &backup_root
            && dir.exists()
            && !dir.is_dir()
        {
            return Err(v.invalid(
                "CP_BACKUP_ROOT",
                format!("{} exists and is not a directory", dir.display()),
            ));
        }
        let backup_concurrency = count("CP_BACKUP_CONCURRENCY", DEFAULT_BACKUP_CONCURRENCY)?;
        let backup_schedule_interval = number("CP_BACKUP_SCHEDULE_INTERVAL_SECS", true)?
            .map_or(DEFAULT_BACKUP_SCHEDULE_INTERVAL, Duration::from_secs);
        let restore_test_interval = number("CP_RESTORE_TEST_INTERVAL_SECS", true)?
            .map_or(DEFAULT_RESTORE_TEST_INTERVAL, Duration::from_secs);
        let move_grace =
            number("CP_MOVE_GRACE_SECS", true)?.map_or(DEFAULT_MOVE_GRACE, Duration::from_secs);
        let smtp_url = match v.get("CP_SMTP_URL") {
            None => None,
            Some(url) if url.starts_with("smtp://") || url.starts_with("smtps://") => {
                lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(url)
                    .map_err(|e| v.invalid("CP_SMTP_URL", e.to_string()))?;
                Some(SecretString::from(url.to_string()))
            }
            Some(_) => {
                return Err(v.invalid(
                    "CP_SMTP_URL",
                    "must start with smtp:// or smtps:// (smtp://user:password@host:587?tls=required)",
                ));
            }
        };
        let mail_from = match v.get("CP_MAIL_FROM") {
            Some(from) => {
                from.parse::<lettre::message::Mailbox>()
                    .map_err(|e| v.invalid("CP_MAIL_FROM", format!("not a mail address: {e}")))?;
                from.to_string()
            }
            None => format!("Control plane <no-reply@{base_domain}>"),
        };
        let mut integration_endpoints = std::collections::HashMap::new();
        for entry in v
            .get("CP_INTEGRATION_ENDPOINTS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let bad = |why: String| v.invalid("CP_INTEGRATION_ENDPOINTS", why);
            let (code, url) = entry
                .split_once('=')
                .ok_or_else(|| bad(format!("{entry:?} is not provider=url")))?;
            if tenant::integrations::provider(code.trim()).is_none() {
                return Err(bad(format!("no provider {:?}", code.trim())));
            }
            let url = url.trim();
            if !(url.starts_with("https://") || url.starts_with("http://"))
                || url.parse::<hyper::Uri>().is_err()
            {
                return Err(bad(format!("{url:?} is not an http(s) URL")));
            }
            integration_endpoints.insert(code.trim().to_string(), url.to_string());
        }
        let integration_sync_interval = number("CP_INTEGRATION_SYNC_INTERVAL_SECS", true)?
            .map_or(DEFAULT_INTEGRATION_SYNC_INTERVAL, Duration::from_secs);
        Ok(Config {
            move_grace,
            smtp_url,
            mail_from,
            integration_endpoints,
            integration_sync_interval,
            backup_root,
            backup_concurrency,
            backup_schedule_interval,
            restore_test_interval,
            cookie_secure,
            metering_interval,
            metering_concurrency,
            usage_retention_days,
            trusted_proxies,
            max_upload_bytes,
            owner_hosts,
            tenant_pool_size,
            tenant_scram_iterations,
            max_tenant_pools,
            tenant_connection_budget,
            tenant_pool_idle,
            tenant_migrations_dir,
            database_url: SecretString::from(database_url.to_string()),
            admin_database_url: SecretString::from(admin_database_url),
            database_ca_file,
            listen,
            data_dir,
            storage_root,
            base_domain,
            master_key,
            environment,
            tenant_db_prefix,
            reconcile_interval,
            owner_token_ttl,
            dashboard_idle,
            dashboard_session,
            log_format,
            max_connections,
            unknown_variables: v.unknown_variables.clone(),
        })
    }

    /// The owner database.
    pub fn owner_endpoint(&self) -> Result<Endpoint> {
        Endpoint::parse(
            self.database_url.expose_secret(),
            self.database_ca_file.as_deref(),
            "DATABASE_URL",
        )
    }

    /// The admin connection; tenant connections are derived from it.
    pub fn admin_endpoint(&self) -> Result<Endpoint> {
        Endpoint::parse(
            self.admin_database_url.expose_secret(),
            self.database_ca_file.as_deref(),
            "CP_ADMIN_DATABASE_URL",
        )
    }
}

/// `url` with its database replaced by `db` (URL form only).
pub fn with_database(url: &str, db: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let authority = before_query.split('/').next()?;
    let mut out = format!("{scheme}://{authority}/{db}");
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = Config::defaults().expect("defaults");
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(
            c.admin_database_url.expose_secret(),
            "postgres://postgres@localhost:5432/postgres"
        );
        assert_eq!(c.storage_root, PathBuf::from("./data/storage"));
        assert!(matches!(c.master_key, MasterKeySource::Generated(_)));
    }

    #[test]
    fn bad_settings_are_named() {
        let cases = [
            ("CP_LISTEN", "nope"),
            ("CP_ENV", "staging"),
            ("DATABASE_URL", "postgres://h:notaport/x"),
            ("DATABASE_URL", "postgres://h/x?sslmode=always"),
            ("CP_BASE_DOMAIN", "bad domain"),
            ("CP_TENANT_DB_PREFIX", "Bad-"),
            ("CP_RECONCILE_INTERVAL_SECS", "0"),
            ("CP_METERING_INTERVAL_SECS", "soon"),
            ("CP_METERING_CONCURRENCY", "0"),
            ("CP_TENANT_CONNECTION_BUDGET", "-1"),
            ("CP_COOKIE_SECURE", "maybe"),
            ("CP_MASTER_KEY", "not-a-key"),
        ];
        for (setting, value) in cases {
            let err = Config::from_values(&Values::from_pairs(&[(setting, value)]))
                .expect_err(setting)
                .to_string();
            assert!(err.contains(setting), "{err} does not name {setting}");
        }
        let err = Config::from_values(&Values::from_pairs(&[("CP_ENV", "production")]))
            .expect_err("production without a key")
            .to_string();
        assert!(err.contains("CP_MASTER_KEY"), "{err}");
    }

    #[test]
    fn secrets_are_read_from_files_named_by_file_variables() {
        let dir = std::env::temp_dir().join(format!("cp-secret-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let url = dir.join("database_url");
        std::fs::write(&url, "postgres://app:s3cret@db:5432/owner\n").expect("write");
        let env = |pairs: &[(&str, String)]| {
            Config::from_env(pairs.iter().map(|(k, v)| (k.to_string(), v.clone())))
        };
        let c = env(&[("DATABASE_URL_FILE", url.display().to_string())]).expect("config");
        assert_eq!(
            c.database_url.expose_secret(),
            "postgres://app:s3cret@db:5432/owner",
            "the file's content, without its line break"
        );
        let both = env(&[
            ("DATABASE_URL_FILE", url.display().to_string()),
            ("DATABASE_URL", "postgres://x@y/z".into()),
        ])
        .expect_err("both refused");
        assert!(both.to_string().contains("both"), "{both}");
        let missing = env(&[("CP_SMTP_URL_FILE", dir.join("absent").display().to_string())])
            .expect_err("unreadable refused");
        assert!(
            missing.to_string().contains("CP_SMTP_URL_FILE"),
            "{missing}"
        );
        std::fs::write(&url, "not a url").expect("write");
        let bad = env(&[("DATABASE_URL_FILE", url.display().to_string())]).expect_err("bad");
        assert!(
            bad.to_string().contains("read from") && !bad.to_string().contains("not a url"),
            "the error names the file, not its content: {bad}"
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn numbers_and_booleans_are_typed() {
        let c = Config::from_values(&Values::from_pairs(&[
            ("CP_TENANT_CONNECTION_BUDGET", "100"),
            ("CP_COOKIE_SECURE", "true"),
            ("CP_METERING_INTERVAL_SECS", "0"),
        ]))
        .expect("config");
        assert_eq!(c.tenant_connection_budget, Some(100));
        assert_eq!(c.max_tenant_pools, None, "auto by default");
        assert!(c.cookie_secure);
        assert!(c.metering_interval.is_zero());
    }

    #[test]
    fn unknown_variables_are_collected() {
        let v = Values::from_pairs(&[
            ("CP_LISTENS", "x"),
            ("CP_LISTEN", "127.0.0.1:1"),
            ("HOME", "/"),
        ]);
        assert_eq!(v.unknown_variables, ["CP_LISTENS"]);
    }

    #[test]
    fn admin_url_is_derived_with_query_kept() {
        assert_eq!(
            with_database("postgres://u:p@db:5433/cp?sslmode=disable", "postgres").as_deref(),
            Some("postgres://u:p@db:5433/postgres?sslmode=disable")
        );
    }
}
