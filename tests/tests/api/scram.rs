//! Tenant roles log in with SCRAM verifiers of `CP_TENANT_SCRAM_ITERATIONS` rounds, on a
//! cluster that checks passwords (this machine's default cluster trusts loopback); and a
//! server on the same machine is reached over its Unix socket.

use std::sync::Arc;
use std::time::Duration;

use control_plane::audit::Actor;
use control_plane::config::MasterKeySource;
use control_plane::provisioning::{CreateTenant, Faults};
use control_plane::{Application, Config};
use owner::tenants::{Tenant, TenantStatus};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use crate::scratch_cluster::ScratchCluster;

async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// The service on a scratch cluster, with one active tenant.
struct Running {
    port: u16,
    tenant: Tenant,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<control_plane::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Running {
    /// Starts the service with its owner and admin connections at `url(database)`, then
    /// creates and drives the tenant `slug`.
    async fn start(
        url: impl Fn(&str) -> String,
        slug: &str,
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config::defaults().expect("defaults");
        config.database_url = SecretString::from(url(&format!("cpt_{slug}_owner")));
        config.admin_database_url = SecretString::from(url("postgres"));
        config.listen = "127.0.0.1:0".parse().expect("addr");
        config.data_dir = dir.path().to_path_buf();
        config.storage_root = dir.path().join("storage");
        config.master_key = MasterKeySource::Inline(SecretString::from(
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=".to_string(),
        ));
        config.tenant_db_prefix = format!("cpt_{slug}_");
        config.reconcile_interval = Duration::from_secs(3600);
        config.metering_interval = Duration::ZERO;
        adjust(&mut config);
        let app = Application::build(config, Arc::new(Faults::default()))
            .await
            .expect("the service starts on the scratch cluster");
        let port = app.port();
        let services = app.services().clone();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(app.run(shutdown.clone()));
        let created = services
            .provisioner
            .record_create(
                &CreateTenant {
                    slug: slug.into(),
                    name: slug.into(),
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
        Self {
            port,
            tenant,
            shutdown,
            server,
            _dir: dir,
        }
    }

    /// A tenant request through the gateway, which logs in as the tenant's runtime role.
    async fn assert_tenant_served(&self) {
        let response = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{}/api/v1/status", self.port))
            .header("Host", format!("{}.localhost", self.tenant.slug))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.server.await.expect("join").expect("server");
    }
}

#[tokio::test]
async fn tenant_roles_get_verifiers_of_the_configured_rounds_and_log_in_over_scram() {
    let cluster = ScratchCluster::start();
    let running = Running::start(
        |db| cluster.url(db),
        "scram",
        |config| {
            config.tenant_scram_iterations = 7;
        },
    )
    .await;
    let tenant = &running.tenant;

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

    // Over TCP, with the stored password.
    running.assert_tenant_served().await;

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
    running.stop().await;
}

/// A server on the same machine can be reached over its Unix socket, for the owner, admin
/// and tenant connections alike.
#[tokio::test]
async fn a_server_on_the_same_machine_is_reached_over_its_unix_socket() {
    let cluster = ScratchCluster::start();
    let running = Running::start(|db| cluster.socket_url(db), "socket", |_| {}).await;
    running.assert_tenant_served().await;

    // Every session of ours came over the socket: none over TCP.
    let admin = connect(&cluster.socket_url("postgres"))
        .await
        .expect("socket login");
    let count = |over_tcp: bool| {
        let admin = &admin;
        async move {
            let row = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE application_name = 'control-plane' AND (client_addr IS NOT NULL) = $1",
                    &[&over_tcp],
                )
                .await
                .expect("count");
            row.get::<_, i64>(0)
        }
    };
    assert_eq!(count(true).await, 0);
    assert!(count(false).await > 0, "no session of the service is open");
    running.stop().await;
}
