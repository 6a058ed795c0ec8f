//! What the logs never contain, even at `RUST_LOG=trace`: the driver would log every
//! statement with its parameters (password hashes, SCRAM verifiers, ciphertexts).

use std::io::Write;
use std::process::Stdio;

use crate::support::{OwnerDb, command, pg_url, random_key, stderr};

const ADMIN_PASSWORD: &str = "a-tenant-admin-password-42";

async fn query_strings(db: &str, sql: &str) -> Vec<String> {
    let (client, conn) = tokio_postgres::connect(&pg_url(db), tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    client
        .query(sql, &[])
        .await
        .expect(sql)
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect()
}

#[tokio::test]
async fn debug_and_driver_trace_logs_of_provisioning_hold_no_hash_verifier_ciphertext_or_key() {
    let db = OwnerDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let key = random_key();
    let url = db.url();
    let prefix = db.prefix();
    let vars = [
        ("DATABASE_URL", url.as_str()),
        ("CP_TENANT_DB_PREFIX", prefix.as_str()),
        ("CP_MASTER_KEY", key.as_str()),
        (
            "RUST_LOG",
            "debug,tokio_postgres=trace,postgres_protocol=trace,refinery_core=trace",
        ),
    ];
    let mut child = command(
        dir.path(),
        &vars,
        &[
            "tenants",
            "create",
            "--slug",
            "logged",
            "--name",
            "Logged",
            "--admin-email",
            "admin@logged.example",
            "--admin-password-stdin",
            "--json",
        ],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{ADMIN_PASSWORD}\n").as_bytes())
        .expect("password");
    let created = child.wait_with_output().expect("create");
    assert!(created.status.success(), "{}", stderr(&created));
    let logs = stderr(&created);
    assert!(
        logs.contains("TRACE") || logs.contains("DEBUG"),
        "the logs are not at trace level, so this test proves nothing"
    );

    let tenant_db: String = query_strings(
        &db.name,
        "SELECT db_name FROM tenants WHERE slug = 'logged'",
    )
    .await
    .remove(0);
    let mut secrets = query_strings(
        "postgres",
        &format!(
            "SELECT rolpassword FROM pg_authid WHERE rolname LIKE '{prefix}%' AND rolpassword IS NOT NULL"
        ),
    )
    .await;
    assert!(!secrets.is_empty(), "no tenant role has a verifier");
    secrets.extend(query_strings(&tenant_db, "SELECT password_hash FROM users").await);
    secrets.extend(
        query_strings(
            &db.name,
            "SELECT encode(owner_password_enc, 'hex') FROM tenants UNION ALL \
             SELECT encode(runtime_password_enc, 'hex') FROM tenants",
        )
        .await,
    );
    for secret in &secrets {
        // The first 24 characters are enough to recognise it, in any rendering that
        // keeps it whole.
        let head = &secret[..secret.len().min(24)];
        assert!(
            !logs.contains(head),
            "a secret appears in the logs: {head}…"
        );
    }
    // A bytea parameter would be logged in its Debug form, `[12, 200, ...]`.
    let (client, conn) = tokio_postgres::connect(&pg_url(&db.name), tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    for row in client
        .query(
            "SELECT owner_password_enc, runtime_password_enc FROM tenants",
            &[],
        )
        .await
        .expect("ciphertexts")
    {
        for i in 0..2 {
            let blob: Vec<u8> = row.get(i);
            let debug = format!("{:?}", &blob[..8]);
            let head = debug.trim_end_matches(']');
            assert!(
                !logs.contains(head),
                "a ciphertext appears in the logs: {head}"
            );
        }
    }
    for marker in ["SCRAM-SHA-256$", "$argon2", ADMIN_PASSWORD, key.as_str()] {
        assert!(!logs.contains(marker), "the logs contain {marker:?}");
    }
}

#[tokio::test]
async fn commands_log_warnings_only_unless_asked_and_never_in_colour_to_a_pipe() {
    let db = OwnerDb::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let key = random_key();
    let url = db.url();
    let prefix = db.prefix();
    let vars = [
        ("DATABASE_URL", url.as_str()),
        ("CP_TENANT_DB_PREFIX", prefix.as_str()),
        ("CP_MASTER_KEY", key.as_str()),
    ];
    let quiet = crate::support::run(dir.path(), &vars, &["tenants", "list"]);
    assert!(quiet.status.success(), "{}", stderr(&quiet));
    let quiet = stderr(&quiet);
    assert!(
        !quiet.contains("INFO"),
        "a command logs progress unasked: {quiet}"
    );
    let verbose = crate::support::run(dir.path(), &vars, &["tenants", "list", "-v"]);
    assert!(verbose.status.success(), "{}", stderr(&verbose));
    let verbose = stderr(&verbose);
    assert!(verbose.contains("INFO"), "-v logs progress: {verbose}");
    assert!(
        !verbose.contains('\u{1b}'),
        "colour codes in logs written to a pipe: {verbose:?}"
    );
}
