//! Tenant roles log in with SCRAM verifiers of `CP_TENANT_SCRAM_ITERATIONS` rounds, on a
//! cluster that checks passwords (this machine's default cluster trusts loopback).

use std::sync::Arc;
use std::time::Duration;

use control_plane::audit::Actor;
use control_plane::config::MasterKeySource;
use control_plane::provisioning::{CreateTenant, Faults};
use control_plane::{Application, Config};
use owner::tenants::TenantStatus;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use crate::scratch_cluster::ScratchCluster;

async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

#[tokio::test]
async fn tenant_roles_get_verifiers_of_the_configured_rounds_and_log_in_over_scram() {
    let cluster = ScratchCluster::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::defaults().expect("defaults");
    config.database_url = SecretString::from(cluster.url("cpt_scram_owner"));
    config.admin_database_url = SecretString::from(cluster.url("postgres"));
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.data_dir = dir.path().to_path_buf();
    config.storage_root = dir.path().join("storage");
    config.master_key = MasterKeySource::Inline(SecretString::from(
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".to_string(),
    ));
    config.tenant_db_prefix = "cpt_scram_".into();
    config.reconcile_interval = Duration::from_secs(3600);
    config.metering_interval = Duration::ZERO;
    config.tenant_scram_iterations = 7;
    let app = Application::build(config, Arc::new(Faults::default()))
        .await
        .expect("the service starts against a scram-sha-256 cluster");
    let port = app.port();
    let services = app.services().clone();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run(shutdown.clone()));

    let created = services
        .provisioner
        .record_create(
            &CreateTenant {
                slug: "scram".into(),
                name: "Scram".into(),
                ..CreateTenant::default()
            },
            &Actor::cli(),
        )
        .await
        .expect("create");
    let tenant = services
        .provisioner
        .drive(created.tenant.id)
        .await
        .expect("drive");
    assert_eq!(tenant.status, TenantStatus::Active);

    let admin = connect(&cluster.url("postgres"))
        .await
        .expect("superuser login with its password");
    for role in [&tenant.owner_role, &tenant.runtime_role] {
        let verifier: String = admin
            .query_one(
                "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
                &[role],
            )
            .await
            .expect("verifier")
            .get(0);
        assert!(
            verifier.starts_with("SCRAM-SHA-256$7:"),
            "{role} has a verifier of other rounds"
        );
    }

    // The gateway's pool logs in as the runtime role, over TCP, with the stored password.
    let response = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/api/v1/status"))
        .header("Host", "scram.localhost")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200, "{:?}", response.text().await);

    // The cluster does check: the runtime role with another password is refused.
    let wrong = format!(
        "postgres://{}:wrong@127.0.0.1:{}/{}",
        tenant.runtime_role, cluster.port, tenant.db_name
    );
    let refused = connect(&wrong)
        .await
        .expect_err("a wrong password logged in");
    assert_eq!(
        refused.code(),
        Some(&tokio_postgres::error::SqlState::INVALID_PASSWORD),
        "{refused:?}"
    );

    shutdown.cancel();
    server.await.expect("join").expect("server");
}

/// A server on the same machine can be reached over its Unix socket, for the owner, admin
/// and tenant connections alike.
#[tokio::test]
async fn a_server_on_the_same_machine_is_reached_over_its_unix_socket() {
    let cluster = ScratchCluster::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::defaults().expect("defaults");
    config.database_url = SecretString::from(cluster.socket_url("cpt_socket_owner"));
    config.admin_database_url = SecretString::from(cluster.socket_url("postgres"));
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.data_dir = dir.path().to_path_buf();
    config.storage_root = dir.path().join("storage");
    config.master_key = MasterKeySource::Inline(SecretString::from(
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".to_string(),
    ));
    config.tenant_db_prefix = "cpt_socket_".into();
    config.reconcile_interval = Duration::from_secs(3600);
    config.metering_interval = Duration::ZERO;
    let app = Application::build(config, Arc::new(Faults::default()))
        .await
        .expect("the service starts over the Unix socket");
    let port = app.port();
    let services = app.services().clone();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run(shutdown.clone()));

    let created = services
        .provisioner
        .record_create(
            &CreateTenant {
                slug: "socket".into(),
                name: "Socket".into(),
                ..CreateTenant::default()
            },
            &Actor::cli(),
        )
        .await
        .expect("create");
    let tenant = services
        .provisioner
        .drive(created.tenant.id)
        .await
        .expect("drive");
    assert_eq!(tenant.status, TenantStatus::Active);

    let response = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/api/v1/status"))
        .header("Host", "socket.localhost")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200, "{:?}", response.text().await);

    // Every session of ours came over the socket: none over TCP.
    let admin = connect(&cluster.socket_url("postgres"))
        .await
        .expect("socket login");
    let over_tcp: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE application_name = 'control-plane' AND client_addr IS NOT NULL",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    let over_socket: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE application_name = 'control-plane' AND client_addr IS NULL",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(over_tcp, 0);
    assert!(over_socket > 0, "no session of the service is open");

    shutdown.cancel();
    server.await.expect("join").expect("server");
}
