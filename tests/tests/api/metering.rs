//! Metering: one row per tenant per sample with database size, storage bytes, users and
//! the requests served since the previous sample; a tenant whose database is down does
//! not stop the others.

use reqwest::Method;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{TestApp, spawn_app};

/// `(database_bytes, storage_bytes, users, requests)` of every row of a tenant, oldest first.
type Row = (Option<i64>, Option<i64>, Option<i32>, i64);

async fn rows(app: &TestApp, tenant: Uuid) -> Vec<Row> {
    app.owner_client()
        .await
        .query(
            "SELECT database_bytes, storage_bytes, users, requests FROM tenant_usage \
             WHERE tenant_id = $1 ORDER BY sampled_at, id",
            &[&tenant],
        )
        .await
        .expect("usage rows")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

fn id(tenant: &serde_json::Value) -> Uuid {
    tenant["id"].as_str().expect("id").parse().expect("uuid")
}

async fn status_on(app: &TestApp, slug: &str) -> u16 {
    app.get_on(&format!("{slug}.localhost"), "/api/v1/status", &[])
        .await
        .status()
        .as_u16()
}

#[tokio::test]
async fn metering_writes_samples_for_every_active_tenant_and_keeps_going_when_one_tenants_database_is_down()
 {
    let app = spawn_app().await;
    let (alpha, alpha_token) = app.tenant_with_admin("meter-alpha", "pro").await;
    let (beta, _) = app.tenant_with_admin("meter-beta", "pro").await;
    let (down, _) = app.tenant_with_admin("meter-down", "pro").await;
    // Never served, so the gateway has no pool for it.
    let quiet = app.create_tenants("meter-quiet", 1).await.remove(0);
    let gone = app.create_tenants("meter-gone", 1).await.remove(0);
    app.provisioner()
        .tenant_delete(gone.id, &control_plane::audit::Actor::cli())
        .await
        .expect("delete");
    app.provisioner()
        .drive(gone.id)
        .await
        .expect("drive delete");
    let (alpha, beta, down) = (id(&alpha), id(&beta), id(&down));

    // A first sample takes the requests made while setting up.
    let first = app
        .state
        .metering
        .sample_once()
        .await
        .expect("first sample");
    assert_eq!(first.sampled, 4, "{first:?}");
    assert_eq!(first.failed, 0, "{first:?}");
    assert_eq!(
        rows(&app, gone.id).await,
        [],
        "deleted tenants are not sampled"
    );

    // alpha: a second user, a 1234-byte upload and two status calls: 4 requests.
    let new_user = app
        .on(
            Method::POST,
            "meter-alpha.localhost",
            "/api/v1/users",
            Some(&alpha_token),
            Some(&json!({"email": "vet@meter-alpha.example", "role": "staff", "password": "a-staff-password"})),
        )
        .await;
    assert_eq!(new_user.status(), 201);
    let upload = app
        .http
        .post(format!("{}/api/v1/files/documents?name=a.pdf", app.address))
        .header("host", "meter-alpha.localhost")
        .bearer_auth(&alpha_token)
        .body(vec![7u8; 1234])
        .send()
        .await
        .expect("upload");
    assert_eq!(upload.status(), 201);
    for _ in 0..2 {
        assert_eq!(status_on(&app, "meter-alpha").await, 200);
    }
    // beta: three status calls, and a file that lies in its tree without the API.
    for _ in 0..3 {
        assert_eq!(status_on(&app, "meter-beta").await, 200);
    }
    std::fs::write(
        app.storage_root.join("tenants/meter-beta/uploads/raw.bin"),
        vec![1u8; 100],
    )
    .expect("write file");
    // down: its database stops accepting connections; one request is refused.
    let db = app
        .owner_client()
        .await
        .query_one("SELECT db_name FROM tenants WHERE id = $1", &[&down])
        .await
        .expect("db name")
        .get::<_, String>(0);
    let superuser = crate::helpers::pg("postgres").await;
    superuser
        .batch_execute(&format!("ALTER DATABASE \"{db}\" ALLOW_CONNECTIONS false"))
        .await
        .expect("make unreachable");
    crate::helpers::terminate_backends("datname = $1", &[&db]).await;
    assert_eq!(status_on(&app, "meter-down").await, 503);

    let pools_before = app.state.gateway.open_pools().await;
    let second = app
        .state
        .metering
        .sample_once()
        .await
        .expect("second sample");
    assert_eq!(second.sampled, 4, "{second:?}");
    assert_eq!(second.failed, 1, "{second:?}");
    assert_eq!(second.requests, 4 + 3 + 1);
    assert_eq!(
        app.state.gateway.open_pools().await,
        pools_before,
        "metering opens no tenant pool"
    );

    let (db_bytes, storage, users, requests) = rows(&app, alpha).await[1];
    assert!(db_bytes.is_some_and(|b| b > 0), "{db_bytes:?}");
    assert_eq!(
        (storage, users, requests),
        (Some(1234), Some(2), 4),
        "alpha"
    );
    let (db_bytes, storage, users, requests) = rows(&app, beta).await[1];
    assert!(db_bytes.is_some_and(|b| b > 0), "{db_bytes:?}");
    assert_eq!((storage, users, requests), (Some(100), Some(1), 3), "beta");
    let (db_bytes, storage, users, requests) = rows(&app, quiet.id).await[1];
    assert!(db_bytes.is_some_and(|b| b > 0), "{db_bytes:?}");
    assert_eq!((storage, users, requests), (Some(0), Some(0), 0), "quiet");
    let down_rows = rows(&app, down).await;
    assert_eq!(down_rows.len(), 2);
    let (_, storage, users, requests) = down_rows[1];
    assert_eq!(
        users, None,
        "a user count it could not take is unknown, not zero"
    );
    assert_eq!(
        (storage, requests),
        (Some(0), 1),
        "what could be measured is kept"
    );

    // Back up: its next row is complete, and nobody's requests are counted twice.
    superuser
        .batch_execute(&format!("ALTER DATABASE \"{db}\" ALLOW_CONNECTIONS true"))
        .await
        .expect("restore");
    let third = app
        .state
        .metering
        .sample_once()
        .await
        .expect("third sample");
    assert_eq!((third.sampled, third.failed, third.requests), (4, 0, 0));
    let (db_bytes, storage, users, requests) = rows(&app, down).await[2];
    assert!(db_bytes.is_some_and(|b| b > 0), "{db_bytes:?}");
    assert_eq!(
        (storage, users, requests),
        (Some(0), Some(1), 0),
        "down, restored"
    );
    for tenant in [alpha, beta, quiet.id] {
        let rows = rows(&app, tenant).await;
        assert_eq!(rows.len(), 3, "one row per sample");
        assert_eq!(rows[2].3, 0, "requests are counted in one sample only");
    }
    assert_eq!(rows(&app, alpha).await[2].2, Some(2));

    // The dashboard's views of the same rows.
    let owner = app.owner_client().await;
    let series = owner::usage::usage_series(&owner, alpha, 2)
        .await
        .expect("series");
    assert_eq!(series.len(), 2, "limited to the newest");
    assert_eq!(
        series.iter().map(|s| s.requests).collect::<Vec<_>>(),
        [4, 0],
        "oldest first"
    );
    let totals = owner::usage::usage_totals(&owner).await.expect("totals");
    assert_eq!(totals.active_tenants, 4);
    assert_eq!(totals.users, 2 + 1 + 1);
    assert_eq!(totals.storage_bytes, 1234 + 100);
    let requests_total = app
        .count("SELECT sum(requests)::bigint FROM tenant_usage")
        .await;
    assert_eq!(totals.requests_24h, requests_total);
    let latest = owner::usage::usage_latest_per_tenant(&owner, &[alpha, down])
        .await
        .expect("latest");
    assert_eq!(latest.len(), 2);
    assert_eq!(latest[&down].users, Some(1));
}

#[tokio::test]
async fn request_counts_survive_a_failed_write() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("meter-retry").await;
    let tenant = id(&tenant);
    for _ in 0..2 {
        assert_eq!(status_on(&app, "meter-retry").await, 200);
    }
    // The owner database refuses the insert (and only that).
    let owner = app.owner_client().await;
    owner
        .batch_execute("ALTER TABLE tenant_usage ADD CONSTRAINT refuse CHECK (false) NOT VALID")
        .await
        .expect("break inserts");
    assert!(app.state.metering.sample_once().await.is_err());
    assert_eq!(status_on(&app, "meter-retry").await, 200);
    owner
        .batch_execute("ALTER TABLE tenant_usage DROP CONSTRAINT refuse")
        .await
        .expect("repair");
    let report = app.state.metering.sample_once().await.expect("sample");
    assert_eq!(report.requests, 3, "the failed sample's requests are kept");
    assert_eq!(rows(&app, tenant).await.len(), 1);
    assert_eq!(rows(&app, tenant).await[0].3, 3);
}

#[tokio::test]
async fn with_two_replicas_one_samples_and_every_request_is_counted_once() {
    use std::sync::Arc;

    use control_plane::gateway::{ConnectionPlan, Gateway};
    use control_plane::metering::Metering;

    let app = spawn_app().await;
    let tenant = app.create_tenant("meter-shared").await;
    let tenant = id(&tenant);
    // A second replica: its own gateway and metering, on the same owner database.
    let other = app.services_with_dir(None).await;
    let gateway = Gateway::new(
        &other.config,
        &ConnectionPlan {
            budget: 10,
            max_pools: 100,
            derived: None,
        },
        control_plane::gateway::Backends {
            owner: other.owner.clone(),
            access: Arc::clone(&other.access),
            storage: other.storage.clone(),
            directory: other.email_index.clone(),
            caller: other.provider_client.clone(),
        },
        &other.events,
        other.traffic.clone(),
    );
    let metering = Metering::new(
        other.owner.clone(),
        Arc::clone(&other.access),
        other.storage.clone(),
        Arc::clone(&gateway),
        2,
    );
    // Whatever setting up counted goes into a first sample.
    app.state
        .metering
        .sample_once()
        .await
        .expect("first sample");
    let before = rows(&app, tenant).await.len();

    // Requests on both replicas: 3 here, 2 there.
    for _ in 0..3 {
        assert_eq!(status_on(&app, "meter-shared").await, 200);
    }
    for _ in 0..2 {
        gateway
            .admit(
                "meter-shared.localhost",
                None,
                control_plane::gateway::Effect::Read,
            )
            .await
            .expect("admitted by the other replica");
    }
    // While someone else samples, both only hand their counts over.
    let owner = app.owner_client().await;
    let key = "hashtextextended('cp-metering', 0)";
    owner
        .query_one(&format!("SELECT pg_advisory_lock({key})"), &[])
        .await
        .expect("take the metering lock");
    let here = app.state.metering.sample_once().await.expect("hand over");
    let there = metering.sample_once().await.expect("hand over");
    assert_eq!((here.sampled, here.requests), (0, 3));
    assert_eq!((there.sampled, there.requests), (0, 2));
    assert_eq!(rows(&app, tenant).await.len(), before, "no rows from them");
    owner
        .query_one(&format!("SELECT pg_advisory_unlock({key})"), &[])
        .await
        .expect("let go");

    // The sampler takes everyone's counts: one row, every request in it once.
    let report = metering.sample_once().await.expect("sample");
    assert!(report.sampled >= 1);
    assert_eq!(report.requests, 5);
    let rows = rows(&app, tenant).await;
    assert_eq!(rows.len(), before + 1);
    assert_eq!(rows[before].3, 5);
    assert_eq!(
        app.count("SELECT count(*) FROM tenant_request_counts")
            .await,
        0,
        "nothing left waiting"
    );
}

/// The usage history stays small: samples older than two days become hourly rows,
/// hourly rows older than 30 days daily ones, daily ones past the retention go; the
/// figures survive the roll-up (largest size, summed requests), the latest figures are
/// one row per tenant, and the chart's series reads the roll-ups too.
#[tokio::test]
async fn usage_history_is_rolled_up_and_the_latest_figures_are_kept_apart() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("rolled").await;
    let tenant = id(&tenant);
    let owner = app.owner_client().await;
    // Three samples in one hour three days ago, two on one day forty days ago, and a
    // daily row from before the retention.
    owner
        .batch_execute(&format!(
            "INSERT INTO tenant_usage (tenant_id, sampled_at, database_bytes, storage_bytes, users, requests) VALUES \
             ('{tenant}', date_trunc('hour', now() - interval '3 days') + interval '5 minutes', 100, 10, 1, 4), \
             ('{tenant}', date_trunc('hour', now() - interval '3 days') + interval '10 minutes', 300, NULL, 2, 5), \
             ('{tenant}', date_trunc('hour', now() - interval '3 days') + interval '15 minutes', 200, 30, NULL, 6), \
             ('{tenant}', date_trunc('day', now() - interval '40 days') + interval '1 hour', 50, 5, 1, 7), \
             ('{tenant}', date_trunc('day', now() - interval '40 days') + interval '9 hours', 70, 5, 1, 8); \
             INSERT INTO tenant_usage_rollups (tenant_id, period, bucket, samples, database_bytes, storage_bytes, users, requests) \
             VALUES ('{tenant}', 'day', now() - interval '500 days', 288, 1, 1, 1, 1000);"
        ))
        .await
        .expect("history");
    app.state.metering.sample_once().await.expect("sample");

    let old_raw = app
        .count("SELECT count(*) FROM tenant_usage WHERE sampled_at < now() - interval '47 hours'")
        .await;
    assert_eq!(old_raw, 0, "raw samples past two days are rolled up");
    let hour = owner
        .query_one(
            &format!(
                "SELECT samples, database_bytes, storage_bytes, users, requests FROM tenant_usage_rollups \
                 WHERE tenant_id = '{tenant}' AND period = 'hour'"
            ),
            &[],
        )
        .await
        .expect("one hourly row");
    assert_eq!(
        (
            hour.get::<_, i32>(0),
            hour.get::<_, Option<i64>>(1),
            hour.get::<_, Option<i64>>(2),
            hour.get::<_, Option<i32>>(3),
            hour.get::<_, i64>(4)
        ),
        (3, Some(300), Some(30), Some(2), 15)
    );
    let day = owner
        .query_one(
            &format!(
                "SELECT samples, database_bytes, requests FROM tenant_usage_rollups \
                 WHERE tenant_id = '{tenant}' AND period = 'day'"
            ),
            &[],
        )
        .await
        .expect("one daily row: the 40-day-old one; the 500-day-old one is gone");
    assert_eq!(
        (
            day.get::<_, i32>(0),
            day.get::<_, Option<i64>>(1),
            day.get::<_, i64>(2)
        ),
        (2, Some(70), 15)
    );

    // The latest figures are the fresh sample's, one row per tenant.
    let latest = owner::usage::usage_latest_per_tenant(&owner, &[tenant])
        .await
        .expect("latest");
    let fresh = &latest[&tenant];
    assert!(
        std::time::SystemTime::from(fresh.sampled_at) > chrono_free_recent(&owner).await,
        "the latest row is the new sample"
    );
    assert!(fresh.database_bytes.is_some_and(|b| b > 1000), "{fresh:?}");
    // The chart's series: the daily row, the hourly row, then the raw sample.
    let series = owner::usage::usage_series(&owner, tenant, 10)
        .await
        .expect("series");
    assert_eq!(
        series.iter().map(|s| s.requests).collect::<Vec<_>>()[..2],
        [15, 15],
        "{series:?}"
    );
    assert_eq!(series.len(), 3, "{series:?}");
}

/// A moment a minute ago, by the database's clock.
async fn chrono_free_recent(owner: &tokio_postgres::Client) -> std::time::SystemTime {
    owner
        .query_one("SELECT now() - interval '1 minute'", &[])
        .await
        .expect("now")
        .get(0)
}
