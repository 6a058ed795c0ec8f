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
    config: Config,
    gateway: Arc<control_plane::gateway::Gateway>,
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
        let app = Application::build(config.clone(), Arc::new(Faults::default()))
            .await
            .expect("the service starts on the scratch cluster");
        let port = app.port();
        let services = app.services().clone();
        let gateway = Arc::clone(&app.state().gateway);
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
            config,
            gateway,
            shutdown,
            server,
            _dir: dir,
        }
    }

    /// A tenant request through the gateway, which logs in as the tenant's runtime role.
    async fn assert_tenant_served(&self) {
        let (status, body) = status_of(self.port, &self.tenant.slug).await;
        assert_eq!(status, 200, "{body}");
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.server.await.expect("join").expect("server");
    }
}

async fn status_of(port: u16, slug: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/api/v1/status"))
        .header("Host", format!("{slug}.localhost"))
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// The server refuses the login at `url` for its password (not for any other reason).
async fn assert_password_refused(url: &str, what: &str) {
    let refused = connect(url).await.expect_err(&format!("{what} logged in"));
    assert_eq!(
        refused.code(),
        Some(&tokio_postgres::error::SqlState::INVALID_PASSWORD),
        "{what}: {refused:?}"
    );
}

/// The role's stored SCRAM verifier.
async fn verifier(admin: &tokio_postgres::Client, role: &str) -> String {
    admin
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
            &[&role],
        )
        .await
        .expect("verifier")
        .get(0)
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
        assert!(
            verifier(&admin, role).await.starts_with("SCRAM-SHA-256$7:"),
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
    assert_password_refused(&wrong, "a wrong password").await;
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

/// Requests sent back to back by `clients` tasks until stopped: how many were answered
/// 200, and every other answer.
struct Load {
    ok: Arc<std::sync::atomic::AtomicUsize>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<(u16, String)>>>,
}

impl Load {
    fn start(port: u16, slug: &str, clients: usize) -> Self {
        let ok = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tasks = (0..clients)
            .map(|_| {
                let (ok, stop, slug) = (Arc::clone(&ok), Arc::clone(&stop), slug.to_string());
                tokio::spawn(async move {
                    let mut failures = Vec::new();
                    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                        match status_of(port, &slug).await {
                            (200, _) => {
                                ok.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            }
                            other => failures.push(other),
                        }
                    }
                    failures
                })
            })
            .collect();
        Self { ok, stop, tasks }
    }

    /// Waits until `more` further requests have been served.
    async fn served(&self, more: usize) {
        let target = self.ok.load(std::sync::atomic::Ordering::SeqCst) + more;
        crate::helpers::eventually("requests to be served", || async {
            let now = self.ok.load(std::sync::atomic::Ordering::SeqCst);
            if now >= target { Ok(()) } else { Err(now) }
        })
        .await;
    }

    async fn stop(self) -> Vec<(u16, String)> {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut failures = Vec::new();
        for task in self.tasks {
            failures.extend(task.await.expect("load task"));
        }
        failures
    }
}

#[tokio::test]
async fn credentials_rotate_online_from_another_process_without_a_failed_request() {
    let cluster = ScratchCluster::start();
    let running = Running::start(
        |db| cluster.url(db),
        "rotate",
        |config| config.tenant_scram_iterations = 9,
    )
    .await;
    let tenant = running.tenant.clone();
    let admin = connect(&cluster.url("postgres")).await.expect("admin");
    // The rotation comes from another set of services, as from the CLI in another
    // process: the serving process hears nothing of it.
    let cli =
        control_plane::wiring::Services::init(running.config.clone(), Arc::new(Faults::default()))
            .await
            .expect("a second process's services");
    let old_runtime = secrecy::ExposeSecret::expose_secret(
        &cli.access
            .password(&tenant, control_plane::services::TenantRole::Runtime)
            .expect("password"),
    )
    .to_string();
    let old_owner = secrecy::ExposeSecret::expose_secret(
        &cli.access
            .password(&tenant, control_plane::services::TenantRole::Owner)
            .expect("password"),
    )
    .to_string();

    // Requests keep coming while the roles get their new passwords: sessions already
    // open keep working.
    let load = Load::start(running.port, &tenant.slug, 4);
    load.served(50).await;
    let rotated = cli
        .provisioner
        .rotate_credentials(tenant.id, &Actor::cli())
        .await
        .expect("rotate");
    assert!(rotated.rotation.is_none(), "the rotation is finished");
    assert_ne!(rotated.runtime_password_enc, tenant.runtime_password_enc);
    load.served(50).await;
    let failures = load.stop().await;
    assert!(
        failures.is_empty(),
        "requests failed during the rotation: {failures:?}"
    );

    // The serving process's open sessions go; its next logins use the old password,
    // which the server now refuses, and it finds the new one by itself.
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
            &[&tenant.runtime_role],
        )
        .await
        .expect("terminate");
    crate::helpers::eventually("the killed backends to exit", || async {
        let left: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = $1",
                &[&tenant.runtime_role],
            )
            .await
            .expect("count")
            .get(0);
        if left == 0 { Ok(()) } else { Err(left) }
    })
    .await;
    crate::helpers::eventually("the dead connections to be dropped", || async {
        match running.gateway.connections_open() {
            0 => Ok(()),
            n => Err(n),
        }
    })
    .await;
    let load = Load::start(running.port, &tenant.slug, 4);
    load.served(50).await;
    let failures = load.stop().await;
    assert!(
        failures.is_empty(),
        "requests failed after the rotation: {failures:?}"
    );

    // The old passwords no longer log in; the new verifiers have the configured rounds.
    for (role, password) in [
        (&tenant.runtime_role, &old_runtime),
        (&tenant.owner_role, &old_owner),
    ] {
        let url = format!(
            "postgres://{role}:{password}@127.0.0.1:{}/{}",
            cluster.port, tenant.db_name
        );
        assert_password_refused(&url, "an old password").await;
        assert!(verifier(&admin, role).await.starts_with("SCRAM-SHA-256$9:"));
    }
    let audited: i64 = {
        let conn = cli.owner.conn().await.expect("owner");
        conn.query_one(
            "SELECT count(*) FROM audit_log WHERE action = 'tenant.rotate_credentials' AND target_id = $1",
            &[&tenant.id.to_string()],
        )
        .await
        .expect("audit")
        .get(0)
    };
    assert_eq!(audited, 1, "the rotation is audited once");

    // A rotation cut short after its new passwords were recorded (a crash) is finished
    // with those passwords by the next rotation, not replaced.
    let current = {
        let conn = cli.owner.conn().await.expect("owner");
        owner::tenants::tenant_fetch(&**conn, tenant.id)
            .await
            .expect("tenant")
    };
    let sealed = cli.access.seal_new_passwords(&current).expect("seal");
    let left = {
        let conn = cli.owner.conn().await.expect("owner");
        owner::tenants::tenant_rotation_begin(
            &**conn,
            tenant.id,
            sealed.key_version,
            current.data_key_enc.as_deref(),
            &sealed.owner,
            &sealed.runtime,
        )
        .await
        .expect("begin")
    };
    let pending = cli
        .access
        .rotation_password(&left, control_plane::services::TenantRole::Runtime)
        .expect("open")
        .expect("a rotation in flight");
    let finished = cli
        .provisioner
        .rotate_credentials(tenant.id, &Actor::cli())
        .await
        .expect("finish");
    assert!(finished.rotation.is_none());
    assert_eq!(
        finished.runtime_password_enc, sealed.runtime,
        "the recorded passwords"
    );
    let url = format!(
        "postgres://{}:{}@127.0.0.1:{}/{}",
        tenant.runtime_role,
        secrecy::ExposeSecret::expose_secret(&pending),
        cluster.port,
        tenant.db_name
    );
    connect(&url).await.expect("the recorded password logs in");
    running.assert_tenant_served().await;
    running.stop().await;
}
