//! The test harness: every test gets its own owner database, its own tenant-name prefix
//! and its own storage root, and a real service on a random port. Everything it made is
//! dropped when the `TestApp` goes out of scope, even if the test panicked; leftovers of
//! crashed runs are swept once per test binary before the first app starts.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use control_plane::config::MasterKeySource;
use control_plane::provisioning::{Faults, Provisioner};
use control_plane::{AppState, Application, Config};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::sync::OnceCell;
use tokio_postgres::{Client, NoTls};
use tokio_util::sync::CancellationToken;

/// Everything a test run creates on the server starts with this.
pub const TEST_PREFIX: &str = "cpt_";
pub const PG_HOST: &str = "localhost";
pub const OPERATOR_PASSWORD: &str = "operator-password-123";
pub const TENANT_ADMIN_PASSWORD: &str = "tenant-admin-password";

static SWEEP: OnceCell<()> = OnceCell::const_new();

pub fn pg_url(db: &str) -> String {
    let host = std::env::var("TEST_PG_HOST").unwrap_or_else(|_| PG_HOST.to_string());
    format!("postgres://postgres@{host}:5432/{db}")
}

/// A superuser connection to `db`.
pub async fn pg(db: &str) -> Client {
    connect_as("postgres", db)
        .await
        .expect("connect as postgres")
}

/// A connection as `role` to `db` (trust auth: the server does not check passwords here,
/// so what these tests observe is privileges, not credentials).
pub async fn connect_as(role: &str, db: &str) -> Result<Client, tokio_postgres::Error> {
    let mut config: tokio_postgres::Config = pg_url(db).parse().expect("url");
    config.user(role);
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// A connection to any server by URL (a scratch cluster's, with its password).
pub async fn connect_url(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// `GET /api/v1/status` on `host`: the status and the error code, if any.
pub async fn status_on(app: &TestApp, host: &str) -> (u16, Option<String>) {
    let response = app.get_on(host, "/api/v1/status", &[]).await;
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body["error"]["code"].as_str().map(str::to_string))
}

/// Leftovers older than this are from crashed runs; younger ones may belong to a suite
/// running right now in another process.
const STALE_AFTER_SECS: u64 = 3600;

/// Drops what crashed runs left behind: test databases and roles whose name says they were
/// made more than [`STALE_AFTER_SECS`] ago.
async fn sweep_stale() {
    let client = pg("postgres").await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let pattern = format!("{}%", TEST_PREFIX.replace('_', "\\_"));
    let owners: Vec<String> = client
        .query("SELECT datname FROM pg_database WHERE datname LIKE $1 UNION SELECT rolname FROM pg_roles WHERE rolname LIKE $1", &[&pattern])
        .await
        .expect("list leftovers")
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    let mut stale = std::collections::BTreeSet::new();
    for name in owners {
        let stamp = name
            .strip_prefix(TEST_PREFIX)
            .and_then(|rest| rest.get(..8))
            .and_then(|hex| u64::from_str_radix(hex, 16).ok());
        // Names without a readable stamp come from older layouts: stale by definition.
        if stamp.is_none_or(|t| now.saturating_sub(t) > STALE_AFTER_SECS) {
            let run = name
                .strip_prefix(TEST_PREFIX)
                .and_then(|rest| rest.get(..14))
                .unwrap_or_default()
                .to_string();
            stale.insert(format!("{TEST_PREFIX}{run}"));
        }
    }
    for prefix in stale {
        drop_prefixed(&client, &prefix).await;
    }
}

/// Drops every database and role whose name starts with `prefix`.
async fn drop_prefixed(client: &Client, prefix: &str) {
    let pattern = format!("{}%", prefix.replace('_', "\\_"));
    let dbs = client
        .query(
            "SELECT datname FROM pg_database WHERE datname LIKE $1",
            &[&pattern],
        )
        .await
        .expect("list databases");
    for row in dbs {
        let name: String = row.get(0);
        let _ = client
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await;
    }
    let roles = client
        .query(
            "SELECT rolname FROM pg_roles WHERE rolname LIKE $1",
            &[&pattern],
        )
        .await
        .expect("list roles");
    for row in roles {
        let name: String = row.get(0);
        let _ = client
            .batch_execute(&format!("DROP ROLE IF EXISTS \"{name}\""))
            .await;
    }
}

/// Longest a test waits for state that another task or process settles in its own time
/// (a server process exiting, a session's lock released). Generous, since the suite runs on
/// loaded machines; a test that holds still fails once it has passed.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// How often [`eventually`] looks again.
const POLL: Duration = Duration::from_millis(50);

/// Looks with `probe` until it answers `Ok`, for at most [`PATIENCE`], and returns that
/// answer; otherwise panics with `what` and the last thing `probe` saw. For a condition
/// that something outside the awaited request brings about: the test waits for the
/// condition itself, bounded, never for a guessed time.
pub async fn eventually<T, E, F, Fut>(what: &str, probe: F) -> T
where
    E: std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    within(PATIENCE, what, probe).await
}

/// [`eventually`] with a bound of its own, for a condition that must come about sooner
/// than something else would bring it about anyway (a cache entry's expiry).
pub async fn within<T, E, F, Fut>(bound: Duration, what: &str, mut probe: F) -> T
where
    E: std::fmt::Debug,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        match probe().await {
            Ok(found) => return found,
            Err(seen) if tokio::time::Instant::now() >= deadline => {
                panic!("{what}: still not so after {bound:?} (last seen: {seen:?})")
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// Terminates the server processes of the connections that `filter` (a condition on
/// `pg_stat_activity`) selects, and waits until they have exited: `pg_terminate_backend`
/// only signals a process, and one that has not acted on the signal yet still answers
/// queries and holds its locks. Returns how many were terminated.
pub async fn terminate_backends(
    filter: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> usize {
    let admin = pg("postgres").await;
    let pids: Vec<i32> = admin
        .query(
            &format!(
                "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE pid <> pg_backend_pid() AND ({filter})"
            ),
            params,
        )
        .await
        .expect("terminate backends")
        .iter()
        .map(|r| r.get(0))
        .collect();
    eventually("the terminated server processes to exit", || async {
        let left: Vec<i32> = admin
            .query(
                "SELECT pid FROM pg_stat_activity WHERE pid = ANY($1)",
                &[&pids],
            )
            .await
            .expect("backends left")
            .iter()
            .map(|r| r.get(0))
            .collect();
        if left.is_empty() { Ok(()) } else { Err(left) }
    })
    .await;
    pids.len()
}

pub struct TestApp {
    pub address: String,
    pub http: reqwest::Client,
    /// The owner database of this test.
    pub owner_db: String,
    /// Prefix of this test's tenant databases and roles.
    pub prefix: String,
    pub storage_root: PathBuf,
    pub state: AppState,
    pub services: control_plane::Services,
    pub faults: Arc<Faults>,
    /// A bearer token of an operator with the `owner` role.
    pub token: String,
    _dir: tempfile::TempDir,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<()>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Like [`spawn_app`], with the configuration adjusted first.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    SWEEP.get_or_init(sweep_stale).await;
    // `<seconds since the epoch, hex><random>`: unique, and telling its age to the sweep.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let unique = format!(
        "{now:08x}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    );
    let owner_db = format!("{TEST_PREFIX}{unique}");
    let prefix = format!("{TEST_PREFIX}{unique}_");
    let dir = tempfile::tempdir().expect("tempdir");
    let storage_root = dir.path().join("storage");
    let mut config = Config::defaults().expect("defaults");
    config.database_url = SecretString::from(pg_url(&owner_db));
    config.admin_database_url = SecretString::from(pg_url("postgres"));
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.data_dir = dir.path().to_path_buf();
    config.storage_root = storage_root.clone();
    config.master_key = MasterKeySource::Inline(SecretString::from(random_key()));
    config.tenant_db_prefix = prefix.clone();
    // Background passes would race the tests' own; tests run passes explicitly.
    config.reconcile_interval = Duration::from_secs(3600);
    config.metering_interval = Duration::ZERO;
    config.backup_schedule_interval = Duration::ZERO;
    config.restore_test_interval = Duration::ZERO;
    config.integration_sync_interval = Duration::ZERO;
    adjust(&mut config);
    let faults = Arc::new(Faults::default());
    let app = Application::build(config, Arc::clone(&faults))
        .await
        .expect("build application");
    let port = app.port();
    let state = app.state().clone();
    let services = app.services().clone();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            app.run(shutdown).await.expect("server");
        }
    });
    let mut test_app = TestApp {
        address: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::new(),
        owner_db,
        prefix,
        storage_root,
        state,
        services,
        faults,
        token: String::new(),
        _dir: dir,
        shutdown,
        server: Some(server),
    };
    test_app.create_operator("owner@example.com", "owner").await;
    test_app.token = test_app.login("owner@example.com", OPERATOR_PASSWORD).await;
    test_app
}

fn random_key() -> String {
    use base64::Engine;
    let bytes: Vec<u8> = (0..32)
        .map(|_| uuid::Uuid::new_v4().as_bytes()[0])
        .collect();
    base64::prelude::BASE64_STANDARD.encode(bytes)
}

impl TestApp {
    pub fn provisioner(&self) -> &Arc<Provisioner> {
        &self.state.provisioner
    }

    /// A second set of services on this test's owner database (as a CLI process or a
    /// second service would have), optionally with extra tenant migrations.
    pub async fn services_with_dir(
        &self,
        dir: Option<&std::path::Path>,
    ) -> control_plane::Services {
        let mut config = self.state.config.as_ref().clone();
        config.tenant_migrations_dir = dir.map(|d| d.to_path_buf());
        control_plane::Services::init(config, Arc::new(Faults::default()))
            .await
            .expect("services")
    }

    /// Like [`TestApp::services_with_dir`], with every owner-database connection of these
    /// services named `application_name` in `pg_stat_activity`, so a test can tell when
    /// they are all closed.
    pub async fn services_named(
        &self,
        dir: Option<&std::path::Path>,
        application_name: &str,
    ) -> control_plane::Services {
        let mut config = self.state.config.as_ref().clone();
        config.tenant_migrations_dir = dir.map(|d| d.to_path_buf());
        config.database_url = SecretString::from(format!(
            "{}?application_name={application_name}",
            pg_url(&self.owner_db)
        ));
        control_plane::Services::init(config, Arc::new(Faults::default()))
            .await
            .expect("services")
    }

    /// Creates `n` active tenants `<stem>-<i>` directly through the provisioner.
    pub async fn create_tenants(&self, stem: &str, n: usize) -> Vec<owner::tenants::Tenant> {
        use control_plane::audit::Actor;
        use control_plane::provisioning::CreateTenant;
        use futures::StreamExt;
        let provisioner = self.provisioner();
        let mut tenants: Vec<owner::tenants::Tenant> = futures::stream::iter(0..n)
            .map(|i| async move {
                let slug = format!("{stem}-{i}");
                let t = provisioner
                    .tenant_create(
                        &CreateTenant {
                            slug: slug.clone(),
                            name: slug,
                            ..CreateTenant::default()
                        },
                        &Actor::cli(),
                    )
                    .await
                    .expect("create");
                provisioner.drive(t.id).await.expect("drive")
            })
            .buffer_unordered(4)
            .collect()
            .await;
        tenants.sort_by(|a, b| a.slug.cmp(&b.slug));
        tenants
    }

    pub async fn owner_client(&self) -> Client {
        pg(&self.owner_db).await
    }

    pub async fn create_operator(&self, email: &str, role: &str) {
        let hash = control_plane::auth::hash_password(OPERATOR_PASSWORD).expect("hash");
        let client = self.owner_client().await;
        client
            .execute(
                "INSERT INTO owner_users (id, email, password_hash, role) VALUES ($1, $2, $3, $4)",
                &[&uuid::Uuid::new_v4(), &email, &hash, &role],
            )
            .await
            .expect("insert operator");
    }

    pub async fn login(&self, email: &str, password: &str) -> String {
        let response = self
            .post_json(
                "/api/owner/auth/login",
                None,
                &json!({ "email": email, "password": password }),
            )
            .await;
        assert_eq!(response.status(), 200, "login failed");
        let body: Value = response.json().await.expect("json");
        body["token"].as_str().expect("token").to_string()
    }

    pub async fn post_json(
        &self,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> reqwest::Response {
        let mut request = self.http.post(format!("{}{path}", self.address)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("request")
    }

    pub async fn post_raw(&self, path: &str, body: &'static str) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.address))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request")
    }

    /// A GET as if sent to `host` (the `Host` header), plus any extra headers.
    pub async fn get_on(
        &self,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut request = self
            .http
            .get(format!("{}{path}", self.address))
            .header("host", host);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.expect("request")
    }

    /// A request to `host` with an optional bearer token and JSON body.
    pub async fn on(
        &self,
        method: reqwest::Method,
        host: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> reqwest::Response {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.address))
            .header("host", host);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.expect("request")
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut request = self.http.get(format!("{}{path}", self.address));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("request")
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut request = self.http.delete(format!("{}{path}", self.address));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("request")
    }

    /// Creates a tenant through the API and waits until it is active.
    pub async fn create_tenant(&self, slug: &str) -> Value {
        let response = self
            .post_json(
                "/api/owner/tenants?wait=true",
                Some(&self.token),
                &json!({ "slug": slug, "name": format!("Tenant {slug}") }),
            )
            .await;
        let status = response.status();
        let body: Value = response.json().await.expect("json");
        assert_eq!(status, 201, "create {slug}: {body}");
        assert_eq!(body["status"], "active", "{body}");
        body
    }

    /// Creates an active tenant on `plan` with an admin `admin@<slug>.example` (password
    /// [`TENANT_ADMIN_PASSWORD`]), logs the admin in, and returns the tenant and the token.
    pub async fn tenant_with_admin(&self, slug: &str, plan: &str) -> (Value, String) {
        let body = json!({
            "slug": slug, "name": slug, "plan": plan,
            "admin_email": format!("admin@{slug}.example"), "admin_password": TENANT_ADMIN_PASSWORD,
        });
        let created = self
            .post_json("/api/owner/tenants?wait=true", Some(&self.token), &body)
            .await;
        assert_eq!(created.status(), 201, "create {slug}");
        let tenant: Value = created.json().await.expect("json");
        let token = self
            .tenant_login(
                slug,
                &format!("admin@{slug}.example"),
                TENANT_ADMIN_PASSWORD,
            )
            .await;
        (tenant, token)
    }

    /// Signs `email` in to tenant `slug`; its access token.
    pub async fn tenant_login(&self, slug: &str, email: &str, password: &str) -> String {
        let tokens: Value = self
            .on(
                reqwest::Method::POST,
                &format!("{slug}.localhost"),
                "/api/v1/auth/login",
                None,
                Some(&json!({ "email": email, "password": password })),
            )
            .await
            .json()
            .await
            .expect("json");
        tokens["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("{email} cannot sign in to {slug}: {tokens}"))
            .to_string()
    }

    /// Databases and roles of this test on the server.
    pub async fn server_objects(&self) -> (Vec<String>, Vec<String>) {
        self.services
            .servers
            .default_cluster()
            .await
            .expect("cluster")
            .list_prefixed()
            .await
            .expect("list")
    }

    /// Names under `<storage root>/tenants`.
    pub fn tenant_dirs(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.storage_root.join("tenants"))
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.owner_client()
            .await
            .query_one(sql, &[])
            .await
            .expect(sql)
            .get(0)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
        let server = self.server.take();
        let owner_db = self.owner_db.clone();
        // Async cleanup from Drop: a thread with its own runtime, joined before we return.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                if let Some(server) = server {
                    server.abort();
                }
                drop_prefixed(&pg("postgres").await, &owner_db).await;
            });
        });
        let _ = cleanup.join();
    }
}

/// The version a test's own tenant migration takes: after every embedded one.
pub fn next_version() -> i32 {
    tenant::migrations::latest_version() + 1
}

/// The file name of a test's own tenant migration adding `patients.microchip`.
pub fn microchip_file() -> String {
    format!("V{}__add_microchip.sql", next_version())
}
