//! What a tenant's own roles cannot do or undo, and what start-up never does.

use std::sync::Arc;

use control_plane::provisioning::Faults;
use control_plane::{Application, Config};
use secrecy::SecretString;

use crate::helpers::{connect_as, pg, pg_url, spawn_app};

#[tokio::test]
async fn the_runtime_role_may_append_to_the_audit_log_but_never_rewrite_it() {
    let app = spawn_app().await;
    let t = app.create_tenant("append-only").await;
    let db = t["db_name"].as_str().expect("db");
    let runtime = connect_as(t["runtime_role"].as_str().expect("role"), db)
        .await
        .expect("connect as runtime");
    runtime
        .execute("INSERT INTO audit_log (action) VALUES ('test.append')", &[])
        .await
        .expect("the runtime role appends");
    for statement in [
        "UPDATE audit_log SET action = 'rewritten'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ] {
        let err = runtime.batch_execute(statement).await.expect_err(statement);
        assert_eq!(
            err.code(),
            Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{statement}: {err}"
        );
    }
}

#[tokio::test]
async fn tenant_roles_have_connection_limits() {
    let app = spawn_app().await;
    let t = app.create_tenant("limited").await;
    let server = pg("postgres").await;
    let limit = |role: String| {
        let server = &server;
        async move {
            server
                .query_one(
                    "SELECT rolconnlimit FROM pg_roles WHERE rolname = $1",
                    &[&role],
                )
                .await
                .expect("role")
                .get::<_, i32>(0)
        }
    };
    let pool_size = i32::try_from(app.state.config.tenant_pool_size).expect("size");
    let runtime = limit(t["runtime_role"].as_str().expect("role").to_string()).await;
    assert!(
        runtime > pool_size && runtime < 10 * pool_size,
        "runtime role limit {runtime} for a pool of {pool_size}"
    );
    let owner = limit(t["owner_role"].as_str().expect("role").to_string()).await;
    assert!(owner > 0, "owner role has no connection limit ({owner})");
}

#[tokio::test]
async fn the_reconciler_closes_a_tenant_database_its_owner_reopened_to_public() {
    let app = spawn_app().await;
    let t = app.create_tenant("reopened").await;
    let db = t["db_name"].as_str().expect("db");
    let owner = connect_as(t["owner_role"].as_str().expect("role"), db)
        .await
        .expect("connect as owner");
    owner
        .batch_execute(&format!("GRANT CONNECT ON DATABASE \"{db}\" TO PUBLIC"))
        .await
        .expect("a database owner can grant CONNECT");
    let open = "SELECT has_database_privilege('public', $1, 'CONNECT')";
    let server = pg("postgres").await;
    let is_open: bool = server.query_one(open, &[&db]).await.expect("q").get(0);
    assert!(is_open, "the grant did not take, so this proves nothing");
    app.provisioner().reconcile_once().await.expect("reconcile");
    let is_open: bool = server.query_one(open, &[&db]).await.expect("q").get(0);
    assert!(
        !is_open,
        "the reconciler left the tenant database open to PUBLIC"
    );
}

#[tokio::test]
async fn an_unreachable_owner_server_is_never_replaced_by_the_admin_server() {
    let name = format!(
        "cpt_unreachable_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::defaults().expect("defaults");
    // Nothing listens on port 1.
    config.database_url = SecretString::from(format!("postgres://postgres@127.0.0.1:1/{name}"));
    config.admin_database_url = SecretString::from(pg_url("postgres"));
    config.storage_root = dir.path().join("storage");
    config.listen = "127.0.0.1:0".parse().expect("addr");
    let err = match Application::build(config, Arc::new(Faults::default())).await {
        Ok(_) => panic!("started without its owner database"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("DATABASE_URL"), "{err}");
    let created = pg("postgres")
        .await
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .expect("query")
        .is_some();
    if created {
        let _ = pg("postgres")
            .await
            .batch_execute(&format!("DROP DATABASE \"{name}\""))
            .await;
    }
    assert!(
        !created,
        "the owner database was created on the admin server"
    );
}
