//! TLS to PostgreSQL: the local server has `ssl = on` with its own certificate (CN and
//! SAN `localhost`), so `sslmode=require` encrypts every connection the service makes,
//! owner, admin and tenant alike, and `verify-full` against a CA that did not sign the
//! server's certificate is refused before anything starts.

use std::path::Path;
use std::sync::Arc;

use control_plane::provisioning::Faults;
use control_plane::{Application, Config};
use secrecy::{ExposeSecret, SecretString};

use crate::helpers::{pg, spawn_app_with};

fn with_sslmode(url: &SecretString, mode: &str) -> SecretString {
    SecretString::from(format!("{}?sslmode={mode}", url.expose_secret()))
}

#[tokio::test]
async fn with_sslmode_require_owner_and_tenant_connections_are_encrypted() {
    let app = spawn_app_with(|c| {
        c.database_url = with_sslmode(&c.database_url, "require");
        c.admin_database_url = with_sslmode(&c.admin_database_url, "require");
    })
    .await;
    let (tenant, token) = app.tenant_with_admin("tls-vets", "free").await;
    let response = app
        .on(
            reqwest::Method::GET,
            "tls-vets.localhost",
            "/api/v1/patients",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(response.status(), 200);

    // The service's own owner-database connections, and the tenant's runtime role's.
    let server = pg("postgres").await;
    let by_role = "SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a \
                   JOIN pg_stat_ssl s USING (pid) WHERE a.usename = $1 AND a.datname = $2";
    let runtime_role = tenant["runtime_role"].as_str().expect("runtime role");
    let db_name = tenant["db_name"].as_str().expect("db name");
    let row = server
        .query_one(by_role, &[&runtime_role, &db_name])
        .await
        .expect("tenant sessions");
    let (all, encrypted): (i64, i64) = (row.get(0), row.get(1));
    assert!(all > 0, "the tenant's pool holds no connection");
    assert_eq!(all, encrypted, "a tenant connection is not encrypted");
    let owner_sessions = "SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a \
                          JOIN pg_stat_ssl s USING (pid) WHERE a.datname = $1 AND a.application_name = 'control-plane'";
    let row = server
        .query_one(owner_sessions, &[&app.owner_db])
        .await
        .expect("owner sessions");
    let (all, encrypted): (i64, i64) = (row.get(0), row.get(1));
    assert!(all > 0, "no owner-database session");
    assert_eq!(
        all, encrypted,
        "an owner-database connection is not encrypted"
    );
}

#[tokio::test]
async fn verify_full_with_the_servers_own_certificate_as_ca_connects() {
    let ca = Path::new("/etc/ssl/certs/ssl-cert-snakeoil.pem");
    let app = spawn_app_with(|c| {
        c.database_url = with_sslmode(&c.database_url, "verify-full");
        c.admin_database_url = with_sslmode(&c.admin_database_url, "verify-full");
        c.database_ca_file = Some(ca.to_path_buf());
    })
    .await;
    app.create_tenant("verified").await;
}

#[tokio::test]
async fn verify_full_with_a_wrong_ca_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("wrong-ca.pem");
    let key = dir.path().join("wrong-ca.key");
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=not the server's CA"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&ca)
        .output()
        .expect("openssl");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );

    let mut config = Config::defaults().expect("defaults");
    config.database_url = SecretString::from(crate::helpers::pg_url(
        "cpt_never_created?sslmode=verify-full",
    ));
    config.admin_database_url =
        SecretString::from(crate::helpers::pg_url("postgres?sslmode=verify-full"));
    config.database_ca_file = Some(ca);
    config.storage_root = dir.path().join("storage");
    config.listen = "127.0.0.1:0".parse().expect("addr");
    let err = match Application::build(config, Arc::new(Faults::default())).await {
        Ok(_) => panic!("a server whose certificate the CA did not sign was trusted"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("certificate") && err.contains("UnknownIssuer"),
        "unclear error: {err}"
    );
    let exists = pg("postgres")
        .await
        .query_opt(
            "SELECT 1 FROM pg_database WHERE datname = 'cpt_never_created'",
            &[],
        )
        .await
        .expect("query")
        .is_some();
    assert!(
        !exists,
        "the owner database was created over an untrusted connection"
    );
}
