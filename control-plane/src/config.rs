//! Typed configuration, read once at start-up and validated before anything runs.
//!
//! Sources, later ones winning: built-in defaults, an optional TOML file named by
//! `CP_CONFIG_FILE` (keys are the variable names below in lower case without `CP_`,
//! e.g. `listen = "0.0.0.0:8080"`), then the environment:
//!
//! | variable | default | meaning |
//! | --- | --- | --- |
//! | `DATABASE_URL` | `postgres://postgres@localhost:5432/control_plane` | the owner database (created if missing) |
//! | `CP_ADMIN_DATABASE_URL` | `DATABASE_URL` with database `postgres` | the connection that creates tenant databases and roles |
//! | `CP_LISTEN` | `127.0.0.1:8080` | HTTP listen address |
//! | `CP_DATA_DIR` | `./data` | where dev-mode state (the generated master key) is kept |
//! | `CP_STORAGE_ROOT` | `./data/storage` | root of the tenants' file trees |
//! | `CP_BASE_DOMAIN` | `localhost` | tenants get `<slug>.<base domain>` |
//! | `CP_MASTER_KEY` | none | base64 of 32 bytes, or `1:<b64>,2:<b64>` for several versions |
//! | `CP_MASTER_KEY_FILE` | none | a file holding the same |
//! | `CP_ENV` | `dev` | `dev` or `production` (production requires a master key) |
//! | `CP_TENANT_DB_PREFIX` | `tenant_` | prefix of tenant database and role names |
//! | `CP_RECONCILE_INTERVAL_SECS` | `5` | how often the reconciler looks for unfinished work |
//! | `CP_OWNER_TOKEN_TTL_SECS` | `900` | lifetime of operator bearer tokens |
//! | `CP_LOG_FORMAT` | `text` | `text` or `json` |
//! | `CP_TENANT_MIGRATIONS_DIR` | none | extra tenant migrations (`V{n}__{name}.sql`) on top of the built-in ones |
//! | `CP_OWNER_HOSTS` | the base domain | comma-separated hosts that serve `/api/owner` (IP-literal hosts always do) |
//! | `CP_TENANT_POOL_SIZE` | `5` | connections per tenant pool |
//! | `CP_MAX_TENANT_POOLS` | `200` | tenant pools kept open at once (least recently used closed first) |
//! | `CP_TENANT_CONNECTION_BUDGET` | `40` | tenant connections open at once, all tenants together |
//! | `CP_TENANT_POOL_IDLE_SECS` | `300` | an unused tenant pool is closed after this long |
//! | `CP_MAX_UPLOAD_BYTES` | `26214400` | largest single file a tenant may upload |
//! | `CP_TRUSTED_PROXIES` | none | comma-separated proxy IPs whose `X-Forwarded-Host` / `Forwarded` is believed |
//! | `CP_METERING_INTERVAL_SECS` | `300` | how often every tenant's usage is sampled into `tenant_usage`; `0` turns the job off |
//! | `CP_METERING_CONCURRENCY` | `4` | tenants a metering sample visits at once |
//! | `CP_COOKIE_SECURE` | `false` (`true` in production) | mark the dashboard's session cookie `Secure` (sent over HTTPS only) |

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::{Error, Result};

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@localhost:5432/control_plane";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = "./data";
pub const DEFAULT_BASE_DOMAIN: &str = "localhost";
pub const DEFAULT_TENANT_DB_PREFIX: &str = "tenant_";
pub const DEFAULT_RECONCILE_INTERVAL: Duration = Duration::from_secs(5);
pub const DEFAULT_OWNER_TOKEN_TTL: Duration = Duration::from_secs(900);
pub const DEFAULT_METERING_INTERVAL: Duration = Duration::from_secs(300);
pub const DEFAULT_METERING_CONCURRENCY: usize = 4;

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

/// Where the master key comes from.
#[derive(Debug, Clone)]
pub enum MasterKeySource {
    /// The key material itself (`CP_MASTER_KEY`).
    Inline(SecretString),
    /// A file holding it (`CP_MASTER_KEY_FILE`).
    File(PathBuf),
    /// Dev only: generated once into `<data dir>/master.key`.
    Generated(PathBuf),
}

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
    pub log_format: LogFormat,
    /// Extra tenant migrations on top of the embedded ones.
    pub tenant_migrations_dir: Option<PathBuf>,
    /// Hosts that serve the owner API and are never resolved as tenants.
    pub owner_hosts: Vec<String>,
    pub tenant_pool_size: usize,
    pub max_tenant_pools: u64,
    /// Tenant connections open at once, all pools together.
    pub tenant_connection_budget: usize,
    pub tenant_pool_idle: Duration,
    /// Largest single upload.
    pub max_upload_bytes: u64,
    /// Peers whose forwarded host headers are believed; everyone else's are ignored.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// How often usage is sampled; zero: never in the background.
    pub metering_interval: Duration,
    /// Tenants one metering sample visits at once.
    pub metering_concurrency: usize,
    /// The dashboard cookie is sent over HTTPS only.
    pub cookie_secure: bool,
}

/// The raw settings as the sources give them; every field optional until validated.
#[derive(Debug, Default, Deserialize)]
struct Raw {
    database_url: Option<String>,
    admin_database_url: Option<String>,
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    storage_root: Option<PathBuf>,
    base_domain: Option<String>,
    master_key: Option<String>,
    master_key_file: Option<PathBuf>,
    env: Option<String>,
    tenant_db_prefix: Option<String>,
    reconcile_interval_secs: Option<String>,
    owner_token_ttl_secs: Option<String>,
    log_format: Option<String>,
    tenant_migrations_dir: Option<PathBuf>,
    owner_hosts: Option<String>,
    tenant_pool_size: Option<String>,
    max_tenant_pools: Option<String>,
    tenant_connection_budget: Option<String>,
    tenant_pool_idle_secs: Option<String>,
    max_upload_bytes: Option<String>,
    trusted_proxies: Option<String>,
    metering_interval_secs: Option<String>,
    metering_concurrency: Option<String>,
    cookie_secure: Option<String>,
}

fn invalid(setting: &str, why: impl std::fmt::Display) -> Error {
    Error::Config(format!("invalid setting {setting}: {why}"))
}

impl Config {
    /// Reads `CP_CONFIG_FILE` (if set) and the environment.
    pub fn load() -> Result<Self> {
        let mut figment = Figment::new();
        if let Ok(file) = std::env::var("CP_CONFIG_FILE") {
            if !std::path::Path::new(&file).is_file() {
                return Err(invalid(
                    "CP_CONFIG_FILE",
                    format!("{file} is not a readable file"),
                ));
            }
            figment = figment.merge(Toml::file(file));
        }
        let raw: Raw = figment
            .merge(Env::prefixed("CP_").ignore(&["CONFIG_FILE"]))
            .merge(Env::raw().only(&["DATABASE_URL"]))
            .extract()
            .map_err(|e| Error::Config(format!("invalid configuration: {e}")))?;
        Self::from_raw(raw)
    }

    /// Defaults for everything, as in a fresh dev checkout.
    pub fn defaults() -> Result<Self> {
        Self::from_raw(Raw::default())
    }

    fn from_raw(raw: Raw) -> Result<Self> {
        let environment = match raw.env.as_deref().map(str::trim) {
            None | Some("") | Some("dev") | Some("development") => Environment::Dev,
            Some("production") | Some("prod") => Environment::Production,
            Some(other) => {
                return Err(invalid(
                    "CP_ENV",
                    format!("{other:?} is neither dev nor production"),
                ));
            }
        };
        let database_url = raw
            .database_url
            .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_string());
        let owner_pg: tokio_postgres::Config = database_url
            .parse()
            .map_err(|e| invalid("DATABASE_URL", format!("not a PostgreSQL URL ({e})")))?;
        if owner_pg.get_dbname().is_none() {
            return Err(invalid("DATABASE_URL", "names no database"));
        }
        let admin_database_url = match raw.admin_database_url {
            Some(url) => {
                url.parse::<tokio_postgres::Config>().map_err(|e| {
                    invalid(
                        "CP_ADMIN_DATABASE_URL",
                        format!("not a PostgreSQL URL ({e})"),
                    )
                })?;
                url
            }
            None => with_database(&database_url, "postgres").ok_or_else(|| {
                invalid(
                    "DATABASE_URL",
                    "cannot derive the admin URL from it; set CP_ADMIN_DATABASE_URL",
                )
            })?,
        };
        let listen_raw = raw.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let listen = listen_raw.parse().map_err(|_| {
            invalid(
                "CP_LISTEN",
                format!("{listen_raw:?} is not an address like 127.0.0.1:8080"),
            )
        })?;
        let data_dir = raw
            .data_dir
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let storage_root = raw.storage_root.unwrap_or_else(|| data_dir.join("storage"));
        let base_domain = raw
            .base_domain
            .unwrap_or_else(|| DEFAULT_BASE_DOMAIN.to_string())
            .trim()
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
            return Err(invalid(
                "CP_BASE_DOMAIN",
                format!("{base_domain:?} is not a domain name"),
            ));
        }
        let master_key = match (raw.master_key, raw.master_key_file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "CP_MASTER_KEY",
                    "set either CP_MASTER_KEY or CP_MASTER_KEY_FILE, not both",
                ));
            }
            (Some(key), None) => MasterKeySource::Inline(SecretString::from(key)),
            (None, Some(file)) => MasterKeySource::File(file),
            (None, None) if environment == Environment::Production => {
                return Err(invalid(
                    "CP_MASTER_KEY",
                    "is required when CP_ENV=production (or set CP_MASTER_KEY_FILE)",
                ));
            }
            (None, None) => MasterKeySource::Generated(data_dir.join("master.key")),
        };
        let tenant_db_prefix = raw
            .tenant_db_prefix
            .unwrap_or_else(|| DEFAULT_TENANT_DB_PREFIX.to_string());
        let prefix_ok = (1..=20).contains(&tenant_db_prefix.len())
            && tenant_db_prefix.starts_with(|c: char| c.is_ascii_lowercase())
            && tenant_db_prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !prefix_ok {
            return Err(invalid(
                "CP_TENANT_DB_PREFIX",
                "must be 1 to 20 characters of a-z, 0-9 and _, starting with a letter",
            ));
        }
        let secs = |setting: &str, value: Option<String>, default: Duration| -> Result<Duration> {
            match value {
                None => Ok(default),
                Some(v) => match v.trim().parse::<u64>() {
                    Ok(n) if n > 0 => Ok(Duration::from_secs(n)),
                    _ => Err(invalid(
                        setting,
                        format!("{v:?} is not a positive number of seconds"),
                    )),
                },
            }
        };
        let reconcile_interval = secs(
            "CP_RECONCILE_INTERVAL_SECS",
            raw.reconcile_interval_secs,
            DEFAULT_RECONCILE_INTERVAL,
        )?;
        let owner_token_ttl = secs(
            "CP_OWNER_TOKEN_TTL_SECS",
            raw.owner_token_ttl_secs,
            DEFAULT_OWNER_TOKEN_TTL,
        )?;
        let log_format = match raw.log_format.as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(invalid(
                    "CP_LOG_FORMAT",
                    format!("{other:?} is neither text nor json"),
                ));
            }
        };
        if let Some(dir) = &raw.tenant_migrations_dir
            && !dir.is_dir()
        {
            return Err(invalid(
                "CP_TENANT_MIGRATIONS_DIR",
                format!("{} is not a directory", dir.display()),
            ));
        }
        let count = |setting: &str, value: Option<String>, default: usize| -> Result<usize> {
            match value {
                None => Ok(default),
                Some(v) => match v.trim().parse::<usize>() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => Err(invalid(setting, format!("{v:?} is not a positive number"))),
                },
            }
        };
        let tenant_pool_size = count("CP_TENANT_POOL_SIZE", raw.tenant_pool_size, 5)?;
        let max_tenant_pools = count("CP_MAX_TENANT_POOLS", raw.max_tenant_pools, 200)? as u64;
        let tenant_connection_budget = count(
            "CP_TENANT_CONNECTION_BUDGET",
            raw.tenant_connection_budget,
            40,
        )?;
        let tenant_pool_idle = secs(
            "CP_TENANT_POOL_IDLE_SECS",
            raw.tenant_pool_idle_secs,
            Duration::from_secs(300),
        )?;
        let max_upload_bytes = count(
            "CP_MAX_UPLOAD_BYTES",
            raw.max_upload_bytes,
            25 * 1024 * 1024,
        )? as u64;
        let owner_hosts: Vec<String> = match raw.owner_hosts {
            Some(list) => list
                .split(',')
                .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
            None => vec![base_domain.clone()],
        };
        if owner_hosts.is_empty() {
            return Err(invalid("CP_OWNER_HOSTS", "names no host"));
        }
        let trusted_proxies = match raw.trusted_proxies {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| {
                    p.parse().map_err(|_| {
                        invalid("CP_TRUSTED_PROXIES", format!("{p:?} is not an IP address"))
                    })
                })
                .collect::<Result<Vec<_>>>()?,
        };
        let metering_interval = match raw.metering_interval_secs {
            None => DEFAULT_METERING_INTERVAL,
            Some(v) => v
                .trim()
                .parse::<u64>()
                .map(Duration::from_secs)
                .map_err(|_| {
                    invalid(
                        "CP_METERING_INTERVAL_SECS",
                        format!("{v:?} is not a number of seconds (0 turns metering off)"),
                    )
                })?,
        };
        let metering_concurrency = count(
            "CP_METERING_CONCURRENCY",
            raw.metering_concurrency,
            DEFAULT_METERING_CONCURRENCY,
        )?;
        let cookie_secure = match raw.cookie_secure.as_deref().map(str::trim) {
            None | Some("") => environment == Environment::Production,
            Some("true" | "1" | "yes") => true,
            Some("false" | "0" | "no") => false,
            Some(other) => {
                return Err(invalid(
                    "CP_COOKIE_SECURE",
                    format!("{other:?} is neither true nor false"),
                ));
            }
        };
        Ok(Config {
            cookie_secure,
            metering_interval,
            metering_concurrency,
            trusted_proxies,
            max_upload_bytes,
            owner_hosts,
            tenant_pool_size,
            max_tenant_pools,
            tenant_connection_budget,
            tenant_pool_idle,
            tenant_migrations_dir: raw.tenant_migrations_dir,
            database_url: SecretString::from(database_url),
            admin_database_url: SecretString::from(admin_database_url),
            listen,
            data_dir,
            storage_root,
            base_domain,
            master_key,
            environment,
            tenant_db_prefix,
            reconcile_interval,
            owner_token_ttl,
            log_format,
        })
    }

    pub fn owner_pg_config(&self) -> Result<tokio_postgres::Config> {
        self.database_url
            .expose_secret()
            .parse()
            .map_err(|e| invalid("DATABASE_URL", e))
    }

    pub fn admin_pg_config(&self) -> Result<tokio_postgres::Config> {
        self.admin_database_url
            .expose_secret()
            .parse()
            .map_err(|e| invalid("CP_ADMIN_DATABASE_URL", e))
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
        let cases: Vec<(Raw, &str)> = vec![
            (
                Raw {
                    listen: Some("nope".into()),
                    ..Raw::default()
                },
                "CP_LISTEN",
            ),
            (
                Raw {
                    env: Some("staging".into()),
                    ..Raw::default()
                },
                "CP_ENV",
            ),
            (
                Raw {
                    env: Some("production".into()),
                    ..Raw::default()
                },
                "CP_MASTER_KEY",
            ),
            (
                Raw {
                    database_url: Some("postgres://h:notaport/x".into()),
                    ..Raw::default()
                },
                "DATABASE_URL",
            ),
            (
                Raw {
                    base_domain: Some("bad domain".into()),
                    ..Raw::default()
                },
                "CP_BASE_DOMAIN",
            ),
            (
                Raw {
                    tenant_db_prefix: Some("Bad-".into()),
                    ..Raw::default()
                },
                "CP_TENANT_DB_PREFIX",
            ),
            (
                Raw {
                    reconcile_interval_secs: Some("0".into()),
                    ..Raw::default()
                },
                "CP_RECONCILE_INTERVAL_SECS",
            ),
            (
                Raw {
                    metering_interval_secs: Some("soon".into()),
                    ..Raw::default()
                },
                "CP_METERING_INTERVAL_SECS",
            ),
            (
                Raw {
                    metering_concurrency: Some("0".into()),
                    ..Raw::default()
                },
                "CP_METERING_CONCURRENCY",
            ),
        ];
        for (raw, setting) in cases {
            let err = Config::from_raw(raw).expect_err(setting).to_string();
            assert!(err.contains(setting), "{err} does not name {setting}");
        }
    }

    #[test]
    fn admin_url_is_derived_with_query_kept() {
        assert_eq!(
            with_database("postgres://u:p@db:5433/cp?sslmode=disable", "postgres").as_deref(),
            Some("postgres://u:p@db:5433/postgres?sslmode=disable")
        );
    }
}
