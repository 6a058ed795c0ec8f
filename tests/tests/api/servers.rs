//! Several database servers: a second PostgreSQL server (a scratch cluster that checks
//! passwords) is registered, new tenants are spread over the servers, and a tenant on
//! the second one is provisioned, served, backed up, migrated and deleted there. A
//! draining server takes no new tenants; a server that is down fails only its tenants.

use reqwest::Method;
use scratch_cluster::ScratchCluster;
use serde_json::{Value, json};

use crate::helpers::{TestApp, connect_url, eventually, pg, spawn_app};

async fn send(app: &TestApp, method: Method, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut request = app
        .http
        .request(method, format!("{}{path}", app.address))
        .bearer_auth(&app.token);
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn databases_on(cluster: &ScratchCluster, pattern: &str) -> Vec<String> {
    connect_url(&cluster.url("postgres"))
        .await
        .expect("connect to the second server")
        .query(
            "SELECT datname FROM pg_database WHERE datname LIKE $1 ORDER BY 1",
            &[&pattern],
        )
        .await
        .expect("databases")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn served(app: &TestApp, slug: &str, token: &str) -> u16 {
    app.on(
        Method::GET,
        &format!("{slug}.localhost"),
        "/api/v1/users",
        Some(token),
        None,
    )
    .await
    .status()
    .as_u16()
}

#[tokio::test]
async fn tenants_spread_over_a_second_server_and_live_their_whole_life_there() {
    let app = spawn_app().await;
    let cluster = ScratchCluster::start();

    // Registered through the API: checked, and its URL never shown.
    let url = cluster.url("postgres");
    let (status, body) = send(
        &app,
        Method::POST,
        "/api/owner/servers",
        Some(&json!({ "name": "second", "url": url, "connection_budget": 7 })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["reachable"], true, "{body}");
    assert_eq!(body["tenants"], 0);
    assert!(
        !body.to_string().contains(&cluster.password),
        "the URL's password is never shown"
    );
    let stored: Vec<u8> = app
        .owner_client()
        .await
        .query_one(
            "SELECT admin_url_enc FROM database_servers WHERE id = 'second'",
            &[],
        )
        .await
        .expect("row")
        .get(0);
    assert!(
        !String::from_utf8_lossy(&stored).contains(&cluster.password),
        "stored sealed"
    );
    let (status, body) = send(
        &app,
        Method::POST,
        "/api/owner/servers",
        Some(&json!({ "name": "second", "url": url })),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("server_exists"))
    );
    let wrong = format!(
        "postgres://postgres:wrong@127.0.0.1:{}/postgres",
        cluster.port
    );
    let (status, body) = send(
        &app,
        Method::POST,
        "/api/owner/servers",
        Some(&json!({ "name": "third", "url": wrong })),
    )
    .await;
    assert_eq!(status, 400, "a server that refuses the login: {body}");
    assert!(!body.to_string().contains("wrong@"), "no URL in the error");
    for bad in [
        json!({ "name": "Bad_Name", "url": url }),
        json!({ "name": "x" }),
    ] {
        let (status, _) = send(&app, Method::POST, "/api/owner/servers", Some(&bad)).await;
        assert!((400..500).contains(&status), "{bad}");
    }
    assert_eq!(
        app.count("SELECT count(*) FROM database_servers").await,
        2,
        "refused servers are not recorded"
    );

    // The default server holds none of this test's tenants either: the first new
    // tenant goes to the default (ties go to it), the second to the emptier one.
    let (alpha, alpha_token) = app.tenant_with_admin("alpha", "free").await;
    let (bravo, bravo_token) = app.tenant_with_admin("bravo", "free").await;
    assert_eq!(alpha["server_id"], "default");
    assert_eq!(bravo["server_id"], "second");
    let bravo_db = bravo["db_name"].as_str().expect("db").to_string();
    assert_eq!(
        databases_on(&cluster, &bravo_db).await,
        vec![bravo_db.clone()]
    );
    assert!(
        connect_url(&crate::helpers::pg_url(&bravo_db))
            .await
            .is_err(),
        "not on the default server"
    );
    assert_eq!(served(&app, "alpha", &alpha_token).await, 200);
    assert_eq!(
        served(&app, "bravo", &bravo_token).await,
        200,
        "served from the second server, logging in with its password"
    );

    // Its connections count against its own budget.
    let metrics = app
        .get("/metrics", None)
        .await
        .text()
        .await
        .expect("metrics");
    assert!(
        metrics.contains("tenant_server_connection_budget{server=\"second\"} 7"),
        "{metrics}"
    );
    assert!(
        metrics.lines().any(
            |l| l.starts_with("tenant_server_connections_open{server=\"second\"}")
                && !l.ends_with(" 0")
        ),
        "{metrics}"
    );

    // Backed up from there.
    let (status, body) = send(
        &app,
        Method::POST,
        "/api/owner/tenants/bravo/backups?wait=true",
        None,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "succeeded", "{body}");

    // A fleet migration reaches both servers, and the second's template too.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join(crate::helpers::microchip_file()),
        "ALTER TABLE patients ADD COLUMN microchip text;\n",
    )
    .expect("write migration");
    let services = app.services_with_dir(Some(dir.path())).await;
    let summary = control_plane::fleet::FleetRun::start(
        services.fleet.clone(),
        control_plane::fleet::FleetOptions::default(),
        "test",
    )
    .await
    .expect("start")
    .execute(|_| {})
    .await
    .expect("run");
    assert_eq!((summary.succeeded, summary.failed), (2, 0), "{summary:?}");
    let has_column = |db: String, on_second: bool| {
        let url = if on_second {
            cluster.url(&db)
        } else {
            crate::helpers::pg_url(&db)
        };
        async move {
            connect_url(&url)
                .await
                .expect("connect")
                .query_one(
                    "SELECT count(*) FROM information_schema.columns \
                     WHERE table_name = 'patients' AND column_name = 'microchip'",
                    &[],
                )
                .await
                .expect("columns")
                .get::<_, i64>(0)
                == 1
        }
    };
    assert!(has_column(alpha["db_name"].as_str().expect("db").into(), false).await);
    assert!(has_column(bravo_db.clone(), true).await);
    let template = format!("{}template", app.prefix);
    assert!(
        has_column(template, true).await,
        "the second server's template is at the new version"
    );

    // Draining: new tenants go elsewhere, even to a fuller server.
    let (status, body) = send(
        &app,
        Method::PATCH,
        "/api/owner/servers/second",
        Some(&json!({ "status": "draining" })),
    )
    .await;
    assert_eq!((status, body["status"].as_str()), (200, Some("draining")));
    let charlie = app.create_tenant("charlie").await;
    assert_eq!(charlie["server_id"], "default");
    let (status, _) = send(
        &app,
        Method::PATCH,
        "/api/owner/servers/second",
        Some(&json!({ "status": "sleeping" })),
    )
    .await;
    assert_eq!(status, 400);

    let (status, body) = send(&app, Method::GET, "/api/owner/servers", None).await;
    assert_eq!(status, 200);
    let second = body["servers"]
        .as_array()
        .expect("servers")
        .iter()
        .find(|s| s["id"] == "second")
        .expect("listed")
        .clone();
    assert_eq!(second["tenants"], 1, "{second}");
    assert_eq!(second["reachable"], true);
    assert!(
        second["databases"].as_i64().expect("databases") >= 2,
        "{second}"
    );

    // Deleted there.
    let (status, _) = send(
        &app,
        Method::DELETE,
        "/api/owner/tenants/bravo?wait=true",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(databases_on(&cluster, &bravo_db).await.is_empty());
}

#[tokio::test]
async fn a_server_that_is_down_fails_only_its_own_tenants() {
    let app = spawn_app().await;
    let cluster = ScratchCluster::start();
    app.services
        .servers
        .add(
            control_plane::provisioning::AddServer {
                id: "flaky".into(),
                url: cluster.url("postgres").into(),
                max_tenants: Some(1),
                connection_budget: None,
                server_group: None,
            },
            &control_plane::audit::Actor::cli(),
        )
        .await
        .expect("add");
    let (first, first_token) = app.tenant_with_admin("steady", "free").await;
    let (second, second_token) = app.tenant_with_admin("fragile", "free").await;
    assert_eq!(
        (first["server_id"].as_str(), second["server_id"].as_str()),
        (Some("default"), Some("flaky"))
    );
    // Full (max 1): the next tenant goes to the default server.
    let third = app.create_tenant("later").await;
    assert_eq!(third["server_id"], "default");

    drop(cluster);
    eventually("the fragile tenant to be unavailable", || async {
        let response = app
            .on(
                Method::GET,
                "fragile.localhost",
                "/api/v1/users",
                Some(&second_token),
                None,
            )
            .await;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        match (status, body["error"]["code"].as_str()) {
            (503, Some("tenant_unavailable")) => Ok(()),
            seen => Err(format!("{seen:?}")),
        }
    })
    .await;
    assert_eq!(served(&app, "steady", &first_token).await, 200);
    let (status, body) = send(&app, Method::GET, "/api/owner/servers/flaky", None).await;
    assert_eq!((status, body["reachable"].as_bool()), (200, Some(false)));
    // The default server's databases are untouched by all this.
    assert!(
        pg(first["db_name"].as_str().expect("db"))
            .await
            .simple_query("SELECT 1")
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_plan_pinned_to_a_server_group_places_its_tenants_there_only() {
    let app = spawn_app().await;
    let cluster = ScratchCluster::start();
    app.services
        .servers
        .add(
            control_plane::provisioning::AddServer {
                id: "dedicated".into(),
                url: cluster.url("postgres").into(),
                max_tenants: None,
                connection_budget: None,
                server_group: Some("vip".into()),
            },
            &control_plane::audit::Actor::cli(),
        )
        .await
        .expect("add");
    let plan = |group: Value| {
        json!({ "name": "Enterprise", "max_users": null, "max_storage_bytes": null,
                "max_database_bytes": null, "price_cents": 99900, "currency": "USD",
                "features": ["core"], "active": true, "server_group": group })
    };
    let (status, body) = send(
        &app,
        Method::PUT,
        "/api/owner/plans/enterprise",
        Some(&plan(json!("vip"))),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["server_group"], "vip");

    // The emptier server is the dedicated one, yet only the pinned plan goes there.
    let free = app.create_tenant("ordinary").await;
    assert_eq!(free["server_id"], "default");
    let (status, body) = send(
        &app,
        Method::POST,
        "/api/owner/tenants?wait=true",
        Some(&json!({ "slug": "important", "name": "Important", "plan": "enterprise" })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["server_id"], "dedicated");

    // A group with no server: refused, nothing recorded.
    let (status, _) = send(
        &app,
        Method::PUT,
        "/api/owner/plans/enterprise",
        Some(&plan(json!("nowhere"))),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = send(
        &app,
        Method::POST,
        "/api/owner/tenants",
        Some(&json!({ "slug": "stranded", "name": "Stranded", "plan": "enterprise" })),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("no_server_capacity")),
        "{body}"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM tenants WHERE slug = 'stranded'")
            .await,
        0
    );
    let (status, _) = send(
        &app,
        Method::PUT,
        "/api/owner/plans/enterprise",
        Some(&plan(json!("Not A Group"))),
    )
    .await;
    assert_eq!(status, 422, "a malformed group is refused");
}
