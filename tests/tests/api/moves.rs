//! Moving a tenant's database to another server (a scratch cluster that checks
//! passwords): a writer keeps inserting the whole time and loses nothing; reads are
//! served while the copy is made; a move cut short is undone by the recovery pass; bad
//! moves are refused and change nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use control_plane::audit::Actor;
use control_plane::provisioning::{AddServer, FaultPoint};
use reqwest::Method;
use scratch_cluster::ScratchCluster;
use serde_json::{Value, json};

use crate::helpers::{TestApp, eventually, pg, spawn_app_with};

async fn connect(url: &str) -> tokio_postgres::Client {
    crate::helpers::connect_url(url)
        .await
        .expect("connect to the second server")
}

async fn add_server(app: &TestApp, cluster: &ScratchCluster, name: &str) {
    app.services
        .servers
        .add(
            AddServer {
                id: name.into(),
                url: cluster.url("postgres").into(),
                max_tenants: None,
                connection_budget: None,
                server_group: None,
            },
            &Actor::cli(),
        )
        .await
        .expect("add server");
}

async fn write(app: &TestApp, slug: &str, token: &str, name: &str) -> (u16, Option<String>) {
    let response = app
        .on(
            Method::POST,
            &format!("{slug}.localhost"),
            "/api/v1/practices",
            Some(token),
            Some(&json!({ "name": name })),
        )
        .await;
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body["error"]["code"].as_str().map(str::to_string))
}

async fn read(app: &TestApp, slug: &str, token: &str) -> u16 {
    app.on(
        Method::GET,
        &format!("{slug}.localhost"),
        "/api/v1/practices",
        Some(token),
        None,
    )
    .await
    .status()
    .as_u16()
}

async fn server_of(app: &TestApp, slug: &str) -> String {
    app.owner_client()
        .await
        .query_one(
            "SELECT server_id FROM tenants WHERE slug = $1 AND status <> 'deleted'",
            &[&slug],
        )
        .await
        .expect("tenant")
        .get(0)
}

#[tokio::test]
async fn a_tenant_moves_to_another_server_while_a_writer_loses_nothing() {
    let app = spawn_app_with(|c| c.move_grace = Duration::ZERO).await;
    let cluster = ScratchCluster::start();
    add_server(&app, &cluster, "second").await;
    let (tenant, token) = app.tenant_with_admin("mover", "free").await;
    assert_eq!(tenant["server_id"], "default");
    let db = tenant["db_name"].as_str().expect("db").to_string();
    for i in 0..50 {
        assert_eq!(
            write(&app, "mover", &token, &format!("before-{i}")).await.0,
            201
        );
    }

    // A writer inserts the whole time; it keeps the names the API said it stored.
    let stop = Arc::new(AtomicBool::new(false));
    let app = Arc::new(app);
    let writer = {
        let (app, token, stop) = (Arc::clone(&app), token.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let (mut stored, mut refused) = (vec![], 0);
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let name = format!("during-{i}");
                i += 1;
                match write(&app, "mover", &token, &name).await {
                    (201, _) => stored.push(name),
                    (503, Some(code)) if code == "tenant_maintenance" => refused += 1,
                    other => panic!("a write answered {other:?}"),
                }
            }
            (stored, refused)
        })
    };

    let response = app
        .http
        .post(format!(
            "{}/api/owner/tenants/mover/move?wait=true",
            app.address
        ))
        .bearer_auth(&app.token)
        .json(&json!({ "to": "second" }))
        .send()
        .await
        .expect("move");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    let moved = &body["move"];
    assert_eq!(moved["phase"], "switched", "{body}");
    assert!(moved["write_pause_ms"].as_i64().is_some(), "{body}");
    assert_eq!(
        moved["tables"]["public.practices"]["rows"]
            .as_i64()
            .map(|n| n >= 50),
        Some(true),
        "{body}"
    );
    assert_eq!(server_of(&app, "mover").await, "second");

    // Served from the new server: writes go on there.
    let after = eventually("writes to be served again", || async {
        match write(&app, "mover", &token, "after-0").await {
            (201, _) => Ok(()),
            seen => Err(seen),
        }
    });
    after.await;
    stop.store(true, Ordering::SeqCst);
    let (stored, refused) = writer.await.expect("writer");
    assert!(!stored.is_empty(), "the writer got some writes in");
    let target = connect(&cluster.url(&db)).await;
    let names: std::collections::BTreeSet<String> = target
        .query("SELECT name FROM practices", &[])
        .await
        .expect("practices")
        .iter()
        .map(|r| r.get(0))
        .collect();
    for name in &stored {
        assert!(names.contains(name), "{name} was acknowledged and lost");
    }
    assert_eq!(
        names.len(),
        50 + stored.len() + 1,
        "nothing more, nothing less ({refused} writes refused meanwhile)"
    );

    // The old database and roles are gone from the default server (no grace here).
    let leftovers: i64 = pg("postgres")
        .await
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&db],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(leftovers, 0);
    let audited = app
        .count("SELECT count(*) FROM audit_log WHERE action = 'tenant.move'")
        .await;
    assert_eq!(audited, 1);
    let moves: Value = app
        .get("/api/owner/tenants/mover/moves", Some(&app.token))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(moves["moves"][0]["phase"], "done", "{moves}");
}

#[tokio::test]
async fn a_move_cut_short_serves_reads_and_is_undone_and_bad_moves_change_nothing() {
    let app = spawn_app_with(|c| c.move_grace = Duration::ZERO).await;
    let cluster = ScratchCluster::start();
    add_server(&app, &cluster, "second").await;
    let (tenant, token) = app.tenant_with_admin("halted", "free").await;
    let db = tenant["db_name"].as_str().expect("db").to_string();
    let runtime_role = tenant["runtime_role"].as_str().expect("role").to_string();
    assert_eq!(write(&app, "halted", &token, "first").await.0, 201);

    // Bad moves: nothing changes.
    let refused = |to: &str| {
        let app = &app;
        let to = to.to_string();
        async move {
            let response = app
                .post_json(
                    "/api/owner/tenants/halted/move",
                    Some(&app.token),
                    &json!({ "to": to }),
                )
                .await;
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (status, body["error"]["code"].as_str().map(str::to_string))
        }
    };
    assert_eq!(refused("nowhere").await.0, 400, "an unknown server");
    assert_eq!(refused("default").await.0, 400, "the server it is on");
    app.services
        .servers
        .update(
            "second",
            &owner::servers::ServerChange {
                status: Some(owner::servers::ServerStatus::Draining),
                ..Default::default()
            },
            &Actor::cli(),
        )
        .await
        .expect("drain");
    assert_eq!(
        refused("second").await,
        (409, Some("server_not_active".into()))
    );
    app.services
        .servers
        .update(
            "second",
            &owner::servers::ServerChange {
                status: Some(owner::servers::ServerStatus::Active),
                ..Default::default()
            },
            &Actor::cli(),
        )
        .await
        .expect("activate");
    assert_eq!(
        app.count("SELECT count(*) FROM tenant_moves").await,
        0,
        "refused moves are not recorded"
    );

    // Cut short once the copy is made: the tenant stays in maintenance that serves reads.
    app.faults.arm(FaultPoint::MoveCopied);
    let tenant_row = owner::tenants::tenant_fetch_by_slug(&app.owner_client().await, "halted")
        .await
        .expect("tenant");
    let err = app
        .services
        .backups
        .move_tenant(&tenant_row, "second", &Actor::cli())
        .await
        .expect_err("the fault fires");
    assert!(err.to_string().contains("injected fault"), "{err}");
    assert_eq!(read(&app, "halted", &token).await, 200, "reads are served");
    assert_eq!(
        write(&app, "halted", &token, "blocked").await,
        (503, Some("tenant_maintenance".into())),
        "writes are not"
    );
    let second = connect(&cluster.url("postgres")).await;
    let copies = || async {
        second
            .query_one(
                "SELECT (SELECT count(*) FROM pg_database WHERE datname = $1) \
                 + (SELECT count(*) FROM pg_roles WHERE rolname = $2)",
                &[&db, &runtime_role],
            )
            .await
            .expect("count")
            .get::<_, i64>(0)
    };
    assert_eq!(
        copies().await,
        2,
        "the copy and its roles are on the target"
    );

    eventually("the recovery pass to undo the move", || async {
        match app.services.backups.recover_moves().await.expect("recover") {
            (1, 0) => Ok(()),
            seen => Err(seen),
        }
    })
    .await;
    assert_eq!(server_of(&app, "halted").await, "default");
    assert_eq!(copies().await, 0, "nothing left on the target");
    assert_eq!(
        write(&app, "halted", &token, "second").await.0,
        201,
        "writes are given back on the source"
    );
    let phase: (String, Option<String>) = app
        .owner_client()
        .await
        .query_one("SELECT phase, error FROM tenant_moves", &[])
        .await
        .map(|r| (r.get(0), r.get(1)))
        .expect("move");
    assert_eq!(phase.0, "failed");
    assert!(phase.1.unwrap_or_default().contains("interrupted"));

    // And the move, tried again, goes through.
    let tenant_row = owner::tenants::tenant_fetch_by_slug(&app.owner_client().await, "halted")
        .await
        .expect("tenant");
    app.services
        .backups
        .move_tenant(&tenant_row, "second", &Actor::cli())
        .await
        .expect("move");
    assert_eq!(server_of(&app, "halted").await, "second");
    let rows: i64 = connect(&cluster.url(&db))
        .await
        .query_one("SELECT count(*) FROM practices", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(rows, 2);
}

#[tokio::test]
async fn draining_a_server_moves_every_tenant_off_it() {
    let app = spawn_app_with(|c| c.move_grace = Duration::ZERO).await;
    let cluster = ScratchCluster::start();
    add_server(&app, &cluster, "second").await;
    let servers = &app.services.servers;
    servers
        .update(
            "default",
            &owner::servers::ServerChange {
                status: Some(owner::servers::ServerStatus::Draining),
                ..Default::default()
            },
            &Actor::cli(),
        )
        .await
        .expect("drain default");
    let (_, one) = app.tenant_with_admin("one", "free").await;
    let (_, two) = app.tenant_with_admin("two", "free").await;
    assert_eq!(server_of(&app, "one").await, "second");
    assert_eq!(server_of(&app, "two").await, "second");
    assert_eq!(write(&app, "one", &one, "kept").await.0, 201);
    servers
        .update(
            "default",
            &owner::servers::ServerChange {
                status: Some(owner::servers::ServerStatus::Active),
                ..Default::default()
            },
            &Actor::cli(),
        )
        .await
        .expect("activate default");

    let config = app.state.config.as_ref().clone();
    let cli = <control_plane::cli::Cli as clap::Parser>::try_parse_from([
        "control-plane",
        "servers",
        "drain",
        "second",
        "--json",
    ])
    .expect("parse");
    cli.run(config).await.expect("drain");
    assert_eq!(server_of(&app, "one").await, "default");
    assert_eq!(server_of(&app, "two").await, "default");
    assert_eq!(
        app.count(
            "SELECT count(*) FROM database_servers WHERE id = 'second' AND status = 'draining'"
        )
        .await,
        1
    );
    assert_eq!(read(&app, "one", &one).await, 200);
    assert_eq!(read(&app, "two", &two).await, 200);
    let kept: i64 = pg(
        &owner::tenants::tenant_fetch_by_slug(&app.owner_client().await, "one")
            .await
            .expect("tenant")
            .db_name,
    )
    .await
    .query_one("SELECT count(*) FROM practices WHERE name = 'kept'", &[])
    .await
    .expect("count")
    .get(0);
    assert_eq!(kept, 1, "the data came along");
}
