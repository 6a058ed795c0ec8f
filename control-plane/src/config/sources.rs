//! Where settings come from: an optional TOML file named by `CP_CONFIG_FILE`, then the
//! environment, which wins. Every value is kept as the text it was given (a TOML number
//! or boolean becomes its text, a TOML array of strings is joined with commas), so one
//! parser per setting in `mod.rs` judges it whatever its source, and its errors name the
//! setting and where the value came from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Every setting, by its environment variable. The TOML key is the same name in lower
/// case without `CP_` (`CP_LISTEN` -> `listen`, `DATABASE_URL` -> `database_url`).
pub const SETTINGS: &[&str] = &[
    "DATABASE_URL",
    "CP_ADMIN_DATABASE_URL",
    "CP_DATABASE_CA_FILE",
    "CP_LISTEN",
    "CP_DATA_DIR",
    "CP_STORAGE_ROOT",
    "CP_BASE_DOMAIN",
    "CP_MASTER_KEY",
    "CP_MASTER_KEY_FILE",
    "CP_ENV",
    "CP_TENANT_DB_PREFIX",
    "CP_RECONCILE_INTERVAL_SECS",
    "CP_OWNER_TOKEN_TTL_SECS",
    "CP_DASHBOARD_IDLE_SECS",
    "CP_DASHBOARD_SESSION_SECS",
    "CP_LOG_FORMAT",
    "CP_TENANT_MIGRATIONS_DIR",
    "CP_OWNER_HOSTS",
    "CP_TENANT_POOL_SIZE",
    "CP_TENANT_SCRAM_ITERATIONS",
    "CP_MAX_TENANT_POOLS",
    "CP_TENANT_CONNECTION_BUDGET",
    "CP_TENANT_POOL_IDLE_SECS",
    "CP_MAX_UPLOAD_BYTES",
    "CP_TRUSTED_PROXIES",
    "CP_METERING_INTERVAL_SECS",
    "CP_METERING_CONCURRENCY",
    "CP_USAGE_RETENTION_DAYS",
    "CP_COOKIE_SECURE",
    "CP_MAX_CONNECTIONS",
    "CP_BACKUP_ROOT",
    "CP_BACKUP_CONCURRENCY",
    "CP_BACKUP_SCHEDULE_INTERVAL_SECS",
    "CP_RESTORE_TEST_INTERVAL_SECS",
    "CP_MOVE_GRACE_SECS",
    "CP_SMTP_URL",
    "CP_MAIL_FROM",
    "CP_INTEGRATION_SYNC_INTERVAL_SECS",
    "CP_INTEGRATION_ENDPOINTS",
];

/// Secrets that may instead be read from a file named by `<SETTING>_FILE` (Docker and
/// Kubernetes secrets are files): the value is the file's content, without its final
/// line break. `CP_MASTER_KEY_FILE` is a setting of its own (a key file, checked as such).
pub const SECRET_FILES: &[&str] = &["DATABASE_URL", "CP_ADMIN_DATABASE_URL", "CP_SMTP_URL"];

/// Variables with the `CP_` prefix that are not settings but are read all the same.
const OTHER_VARIABLES: &[&str] = &[
    "CP_CONFIG_FILE",
    "CP_ADMIN_DATABASE_URL_FILE",
    "CP_SMTP_URL_FILE",
];

/// The TOML key of a setting.
pub fn file_key(setting: &str) -> String {
    setting
        .strip_prefix("CP_")
        .unwrap_or(setting)
        .to_ascii_lowercase()
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    Environment,
    File(PathBuf),
    /// `<SETTING>_FILE`.
    SecretFile(PathBuf),
}

/// The settings as given, before they are parsed.
#[derive(Debug, Default, Clone)]
pub struct Values {
    values: BTreeMap<&'static str, (String, Origin)>,
    /// `CP_*` variables that name no setting (typos such as `CP_LISTENS`).
    pub unknown_variables: Vec<String>,
}

impl Values {
    /// Reads the file named by `CP_CONFIG_FILE` in `env` (if any), then `env` itself.
    pub fn gather(env: impl IntoIterator<Item = (String, String)>) -> Result<Self> {
        let env: BTreeMap<String, String> = env.into_iter().collect();
        let mut out = Values::default();
        if let Some(file) = env.get("CP_CONFIG_FILE") {
            out.read_file(Path::new(file))?;
        }
        for (name, value) in &env {
            match SETTINGS.iter().find(|s| *s == name) {
                Some(setting) => {
                    out.values
                        .insert(setting, (value.clone(), Origin::Environment));
                }
                None if name.starts_with("CP_") && !OTHER_VARIABLES.contains(&name.as_str()) => {
                    out.unknown_variables.push(name.clone());
                }
                None => {}
            }
        }
        for setting in SECRET_FILES {
            let variable = format!("{setting}_FILE");
            let Some(path) = env.get(&variable).filter(|p| !p.trim().is_empty()) else {
                continue;
            };
            if env.get(*setting).is_some_and(|v| !v.trim().is_empty()) {
                return Err(Error::Config(format!(
                    "invalid setting {setting}: both {setting} and {variable} are set; give one"
                )));
            }
            let text = std::fs::read_to_string(path).map_err(|e| {
                Error::Config(format!(
                    "invalid setting {setting}: cannot read {variable} ({path}): {e}"
                ))
            })?;
            let value = text.strip_suffix('\n').unwrap_or(&text);
            let value = value.strip_suffix('\r').unwrap_or(value).to_string();
            out.values
                .insert(setting, (value, Origin::SecretFile(PathBuf::from(path))));
        }
        Ok(out)
    }

    /// Unknown keys in a file are refused: the file is ours alone, so a key we do not
    /// know is a typo, and a silently ignored setting is worse than a refusal.
    fn read_file(&mut self, path: &Path) -> Result<()> {
        let bad = |why: String| Error::Config(format!("invalid setting CP_CONFIG_FILE: {why}"));
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
        let table: toml::Table = text
            .parse()
            .map_err(|e| bad(format!("{} is not valid TOML: {e}", path.display())))?;
        for (key, value) in table {
            let setting = SETTINGS
                .iter()
                .find(|s| file_key(s) == key)
                .ok_or_else(|| {
                    bad(format!(
                        "{} has the unknown key {key:?} (keys are the settings' names in lower case without CP_, e.g. listen)",
                        path.display()
                    ))
                })?;
            let text = scalar_text(&value).ok_or_else(|| {
                Error::Config(format!(
                    "invalid setting {setting} ({key} in {}): expected a string, number or boolean",
                    path.display()
                ))
            })?;
            self.values
                .insert(setting, (text, Origin::File(path.to_path_buf())));
        }
        Ok(())
    }

    /// The value of `setting`, if one was given; blank counts as not given.
    pub fn get(&self, setting: &str) -> Option<&str> {
        self.values
            .get(setting)
            .map(|(v, _)| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// The untrimmed value (keys, URLs with meaningful spaces are not expected, but a
    /// secret is passed on exactly as given apart from its outer whitespace).
    pub fn get_path(&self, setting: &str) -> Option<PathBuf> {
        self.get(setting).map(PathBuf::from)
    }

    /// A configuration error naming `setting` and, for a file, the key and file.
    pub fn invalid(&self, setting: &str, why: impl std::fmt::Display) -> Error {
        match self.values.get(setting) {
            Some((_, Origin::File(path))) => Error::Config(format!(
                "invalid setting {setting} ({} in {}): {why}",
                file_key(setting),
                path.display()
            )),
            Some((_, Origin::SecretFile(path))) => Error::Config(format!(
                "invalid setting {setting} (read from {}): {why}",
                path.display()
            )),
            _ => Error::Config(format!("invalid setting {setting}: {why}")),
        }
    }

    #[cfg(test)]
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Self::gather(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()))).expect("gather")
    }
}

fn scalar_text(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(n) => Some(n.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Array(items) => items
            .iter()
            .map(|i| match i {
                toml::Value::String(s) => Some(s.clone()),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .map(|v| v.join(",")),
        _ => None,
    }
}
