//! Every row of the README's configuration table, through the real loader: a valid
//! non-default value is applied (environment and TOML file alike), and an invalid one
//! stops start-up with a message naming the setting.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use crate::support::{random_key, run, stderr};

/// `(setting, valid non-default value, shown as, invalid value)`. `{dir}`, `{file}` and
/// `{key}` are replaced by a temporary directory, an existing file and a fresh key.
const ROWS: &[(&str, &str, &str, &str)] = &[
    (
        "DATABASE_URL",
        "postgres://app@db.internal:5433/cp",
        "postgres://app@db.internal:5433/cp",
        "postgres://h:notaport/x",
    ),
    (
        "CP_ADMIN_DATABASE_URL",
        "postgres://admin:pw@db.internal/postgres?sslmode=verify-full",
        "postgres://admin:***@db.internal/postgres?sslmode=verify-full",
        "postgres://h/postgres?sslmode=sometimes",
    ),
    (
        "CP_DATABASE_CA_FILE",
        "{file}",
        "{file}",
        "{dir}/missing.pem",
    ),
    ("CP_LISTEN", "0.0.0.0:9090", "0.0.0.0:9090", "nope"),
    ("CP_DATA_DIR", "{dir}/state", "{dir}/state", "{file}"),
    ("CP_STORAGE_ROOT", "{dir}/files", "{dir}/files", "{file}"),
    (
        "CP_BASE_DOMAIN",
        "saas.example.com",
        "saas.example.com",
        "bad domain",
    ),
    ("CP_MASTER_KEY", "{key}", "(set)", "short"),
    (
        "CP_MASTER_KEY_FILE",
        "{file}",
        "{file}",
        "{dir}/no-such.key",
    ),
    ("CP_ENV", "production", "production", "staging"),
    ("CP_TENANT_DB_PREFIX", "acme_", "acme_", "Bad-"),
    ("CP_RECONCILE_INTERVAL_SECS", "17", "17", "0"),
    ("CP_OWNER_TOKEN_TTL_SECS", "1800", "1800", "-5"),
    ("CP_DASHBOARD_IDLE_SECS", "600", "600", "0"),
    ("CP_DASHBOARD_SESSION_SECS", "7200", "7200", "never"),
    ("CP_LOG_FORMAT", "json", "json", "xml"),
    (
        "CP_TENANT_MIGRATIONS_DIR",
        "{dir}",
        "{dir}",
        "{dir}/not-there",
    ),
    (
        "CP_OWNER_HOSTS",
        "admin.example.com,ops.example.com",
        "admin.example.com,ops.example.com",
        "bad host!",
    ),
    ("CP_TENANT_POOL_SIZE", "7", "7", "seven"),
    ("CP_TENANT_SCRAM_ITERATIONS", "4096", "4096", "0"),
    ("CP_MAX_TENANT_POOLS", "500", "500", "0"),
    ("CP_TENANT_CONNECTION_BUDGET", "100", "100", "lots"),
    ("CP_TENANT_POOL_IDLE_SECS", "60", "60", "0"),
    ("CP_MAX_UPLOAD_BYTES", "1048576", "1048576", "1MB"),
    (
        "CP_TRUSTED_PROXIES",
        "10.0.0.1,::1",
        "10.0.0.1,::1",
        "proxy.local",
    ),
    ("CP_METERING_INTERVAL_SECS", "0", "0", "soon"),
    ("CP_METERING_CONCURRENCY", "8", "8", "0"),
    ("CP_USAGE_RETENTION_DAYS", "90", "90", "7"),
    ("CP_COOKIE_SECURE", "true", "true", "maybe"),
    ("CP_BACKUP_ROOT", "{dir}/backups", "{dir}/backups", "{file}"),
    ("CP_BACKUP_CONCURRENCY", "3", "3", "0"),
    ("CP_BACKUP_SCHEDULE_INTERVAL_SECS", "0", "0", "hourly"),
    ("CP_RESTORE_TEST_INTERVAL_SECS", "3600", "3600", "daily"),
    ("CP_MOVE_GRACE_SECS", "0", "0", "an hour"),
    (
        "CP_SMTP_URL",
        "smtp://mailer:s3cret@mail.example.com:587?tls=required",
        "smtp://mailer:***@mail.example.com:587?tls=required",
        "mail.example.com",
    ),
    ("CP_INTEGRATION_SYNC_INTERVAL_SECS", "0", "0", "hourly"),
    (
        "CP_INTEGRATION_ENDPOINTS",
        "stripe=http://127.0.0.1:9999",
        "stripe=http://127.0.0.1:9999",
        "paypal=https://api.paypal.com",
    ),
    (
        "CP_MAIL_FROM",
        "Ops <ops@example.com>",
        "Ops <ops@example.com>",
        "not an address",
    ),
    ("CP_MAX_CONNECTIONS", "500", "500", "0"),
];

/// Settings a row needs beside its own to be valid.
fn companions(setting: &str, key: &str) -> Vec<(&'static str, String)> {
    match setting {
        // Production refuses to start without a master key.
        "CP_ENV" => vec![("CP_MASTER_KEY", key.to_string())],
        _ => Vec::new(),
    }
}

fn readme_settings() -> Vec<String> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md");
    let section = readme
        .split("\n## Configuration")
        .nth(1)
        .expect("a Configuration section")
        .split("\n## ")
        .next()
        .unwrap_or_default();
    section
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split('`').next())
        .map(str::to_string)
        .collect()
}

fn fill(template: &str, dir: &Path, file: &Path, key: &str) -> String {
    template
        .replace("{dir}", &dir.display().to_string())
        .replace("{file}", &file.display().to_string())
        .replace("{key}", key)
}

/// A TOML line for `key`: numbers and booleans as TOML numbers and booleans, the rest as
/// strings, as an operator would write them.
fn toml_line(key: &str, value: &str) -> String {
    if value.parse::<i64>().is_ok() || value == "true" || value == "false" {
        format!("{key} = {value}\n")
    } else {
        format!("{key} = {}\n", toml_string(value))
    }
}

fn toml_string(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

fn shown(out: &std::process::Output, setting: &str) -> String {
    assert!(
        out.status.success(),
        "{setting}: config failed: {}",
        stderr(out)
    );
    let json: Value = serde_json::from_slice(&out.stdout).expect("config --json prints JSON");
    json[setting]
        .as_str()
        .unwrap_or_else(|| panic!("{setting} missing from `config --json`"))
        .to_string()
}

#[test]
fn every_readme_setting_is_covered_here_and_shown_by_config() {
    let readme: BTreeSet<String> = readme_settings().into_iter().collect();
    let rows: BTreeSet<String> = ROWS.iter().map(|r| r.0.to_string()).collect();
    assert_eq!(readme, rows, "README table and this test disagree");
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(dir.path(), &[], &["config", "--json"]);
    let json: Value = serde_json::from_slice(&out.stdout).expect("json");
    let shown: BTreeSet<String> = json.as_object().expect("object").keys().cloned().collect();
    assert_eq!(shown, readme, "`config` and the README disagree");
}

#[test]
fn each_setting_is_applied_from_the_environment_and_from_a_toml_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("some.pem");
    std::fs::write(&file, "x").expect("file");
    let key = random_key();
    for (setting, valid, expected, _) in ROWS {
        let value = fill(valid, dir.path(), &file, &key);
        let expected = fill(expected, dir.path(), &file, &key);
        let mut vars: Vec<(&str, String)> = companions(setting, &key);
        vars.push((setting, value.clone()));
        let env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let out = run(dir.path(), &env, &["config", "--json"]);
        assert_eq!(
            shown(&out, setting),
            expected,
            "{setting} from the environment"
        );

        let toml: String = vars
            .iter()
            .map(|(k, v)| toml_line(&control_plane::config::file_key(k), v))
            .collect();
        let config_file = dir.path().join("config.toml");
        std::fs::write(&config_file, &toml).expect("toml");
        let path = config_file.display().to_string();
        let out = run(
            dir.path(),
            &[("CP_CONFIG_FILE", &path)],
            &["config", "--json"],
        );
        assert_eq!(
            shown(&out, setting),
            expected,
            "{setting} from the file:\n{toml}"
        );
    }
}

#[test]
fn an_invalid_value_stops_start_up_naming_the_setting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("some.pem");
    std::fs::write(&file, "x").expect("file");
    let key = random_key();
    for (setting, _, _, invalid) in ROWS {
        let value = fill(invalid, dir.path(), &file, &key);
        let out = run(dir.path(), &[(setting, &value)], &["config"]);
        assert_eq!(out.status.code(), Some(2), "{setting}={value} was accepted");
        let err = stderr(&out);
        assert!(err.contains(setting), "{setting}: {err}");

        let config_file = dir.path().join("bad.toml");
        let key_name = control_plane::config::file_key(setting);
        std::fs::write(&config_file, toml_line(&key_name, &value)).expect("toml");
        let path = config_file.display().to_string();
        let out = run(dir.path(), &[("CP_CONFIG_FILE", &path)], &["config"]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{setting} in a file was accepted"
        );
        let err = stderr(&out);
        assert!(
            err.contains(setting) && err.contains(&key_name) && err.contains(&path),
            "{setting}: {err}"
        );
    }
}

#[test]
fn unknown_variables_are_warned_about_and_unknown_file_keys_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(dir.path(), &[("CP_LISTENS", "0.0.0.0:1")], &["config"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.matches("CP_LISTENS").count(), 1, "warned once: {err}");

    let config_file = dir.path().join("typo.toml");
    std::fs::write(&config_file, "listens = \"0.0.0.0:1\"\n").expect("toml");
    let path = config_file.display().to_string();
    let out = run(dir.path(), &[("CP_CONFIG_FILE", &path)], &["config"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("listens"), "{}", stderr(&out));
}
