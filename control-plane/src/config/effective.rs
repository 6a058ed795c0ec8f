//! The configuration in force, as `control-plane config` prints it: every setting by its
//! variable, secrets never shown (a URL's password and the master key are masked).

use secrecy::ExposeSecret;

use super::{Config, Environment, LogFormat, MasterKeySource};

impl Config {
    /// `(variable, value)` for every setting, in the README's order.
    pub fn effective(&self) -> Vec<(&'static str, String)> {
        let path = |p: &Option<std::path::PathBuf>| {
            p.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        let join = |items: Vec<String>| items.join(",");
        let (key, key_file) = match &self.master_key {
            MasterKeySource::Inline(_) => ("(set)".to_string(), String::new()),
            MasterKeySource::File(p) => (String::new(), p.display().to_string()),
            MasterKeySource::Generated(p) => {
                (String::new(), format!("{} (generated)", p.display()))
            }
        };
        vec![
            (
                "DATABASE_URL",
                mask_password(self.database_url.expose_secret()),
            ),
            (
                "CP_ADMIN_DATABASE_URL",
                mask_password(self.admin_database_url.expose_secret()),
            ),
            ("CP_DATABASE_CA_FILE", path(&self.database_ca_file)),
            ("CP_LISTEN", self.listen.to_string()),
            ("CP_DATA_DIR", self.data_dir.display().to_string()),
            ("CP_STORAGE_ROOT", self.storage_root.display().to_string()),
            ("CP_BASE_DOMAIN", self.base_domain.clone()),
            ("CP_MASTER_KEY", key),
            ("CP_MASTER_KEY_FILE", key_file),
            (
                "CP_ENV",
                match self.environment {
                    Environment::Dev => "dev",
                    Environment::Production => "production",
                }
                .into(),
            ),
            ("CP_TENANT_DB_PREFIX", self.tenant_db_prefix.clone()),
            (
                "CP_RECONCILE_INTERVAL_SECS",
                self.reconcile_interval.as_secs().to_string(),
            ),
            (
                "CP_OWNER_TOKEN_TTL_SECS",
                self.owner_token_ttl.as_secs().to_string(),
            ),
            (
                "CP_DASHBOARD_IDLE_SECS",
                self.dashboard_idle.as_secs().to_string(),
            ),
            (
                "CP_DASHBOARD_SESSION_SECS",
                self.dashboard_session.as_secs().to_string(),
            ),
            (
                "CP_LOG_FORMAT",
                match self.log_format {
                    LogFormat::Text => "text",
                    LogFormat::Json => "json",
                }
                .into(),
            ),
            (
                "CP_TENANT_MIGRATIONS_DIR",
                path(&self.tenant_migrations_dir),
            ),
            ("CP_OWNER_HOSTS", join(self.owner_hosts.clone())),
            ("CP_TENANT_POOL_SIZE", self.tenant_pool_size.to_string()),
            (
                "CP_TENANT_SCRAM_ITERATIONS",
                self.tenant_scram_iterations.to_string(),
            ),
            ("CP_MAX_TENANT_POOLS", auto(self.max_tenant_pools)),
            (
                "CP_TENANT_CONNECTION_BUDGET",
                auto(self.tenant_connection_budget),
            ),
            (
                "CP_TENANT_POOL_IDLE_SECS",
                self.tenant_pool_idle.as_secs().to_string(),
            ),
            ("CP_MAX_UPLOAD_BYTES", self.max_upload_bytes.to_string()),
            (
                "CP_TRUSTED_PROXIES",
                join(self.trusted_proxies.iter().map(|p| p.to_string()).collect()),
            ),
            (
                "CP_METERING_INTERVAL_SECS",
                self.metering_interval.as_secs().to_string(),
            ),
            (
                "CP_METERING_CONCURRENCY",
                self.metering_concurrency.to_string(),
            ),
            (
                "CP_USAGE_RETENTION_DAYS",
                self.usage_retention_days.to_string(),
            ),
            ("CP_COOKIE_SECURE", self.cookie_secure.to_string()),
            ("CP_MAX_CONNECTIONS", self.max_connections.to_string()),
            (
                "CP_BACKUP_ROOT",
                self.backup_root.as_ref().map_or_else(
                    || "(each tenant's backups folder)".to_string(),
                    |p| p.display().to_string(),
                ),
            ),
            ("CP_BACKUP_CONCURRENCY", self.backup_concurrency.to_string()),
            (
                "CP_BACKUP_SCHEDULE_INTERVAL_SECS",
                self.backup_schedule_interval.as_secs().to_string(),
            ),
            (
                "CP_RESTORE_TEST_INTERVAL_SECS",
                self.restore_test_interval.as_secs().to_string(),
            ),
            ("CP_MOVE_GRACE_SECS", self.move_grace.as_secs().to_string()),
            (
                "CP_SMTP_URL",
                self.smtp_url.as_ref().map_or_else(
                    || "(none: files in <CP_DATA_DIR>/mail in dev mode)".to_string(),
                    |u| mask_password(u.expose_secret()),
                ),
            ),
            ("CP_MAIL_FROM", self.mail_from.clone()),
            (
                "CP_INTEGRATION_SYNC_INTERVAL_SECS",
                self.integration_sync_interval.as_secs().to_string(),
            ),
            ("CP_INTEGRATION_ENDPOINTS", {
                let mut e: Vec<String> = self
                    .integration_endpoints
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                e.sort();
                e.join(",")
            }),
        ]
    }
}

/// `postgres://user:secret@host/db` -> `postgres://user:***@host/db`; key=value strings
/// get `password=***`.
fn mask_password(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        if let Some((userinfo, host)) = authority.rsplit_once('@')
            && let Some((user, _)) = userinfo.split_once(':')
        {
            return format!("{scheme}://{user}:***@{host}{tail}");
        }
        return url.to_string();
    }
    url.split_whitespace()
        .map(|w| match w.split_once('=') {
            Some(("password", _)) => "password=***".to_string(),
            _ => w.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A setting worked out at start-up unless given: `auto`, or its value.
fn auto<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "auto".to_string(), |v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            mask_password("postgres://u:p%40ss@h:5432/db?sslmode=require"),
            "postgres://u:***@h:5432/db?sslmode=require"
        );
        assert_eq!(mask_password("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            mask_password("host=h password=x dbname=d"),
            "host=h password=*** dbname=d"
        );
    }

    #[test]
    fn every_setting_is_shown() {
        let shown: Vec<&str> = Config::defaults()
            .expect("defaults")
            .effective()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(shown, super::super::SETTINGS);
    }
}
