//! Fleet migrations: every tenant brought to the new version, failures isolated and
//! recorded, canaries, one run at a time, crash and resume, dry runs and drift.

use std::sync::Arc;

use control_plane::Error;
use control_plane::audit::Actor;
use control_plane::fleet::{Canary, FailureBudget, FleetOptions, FleetRun, fleet_status};
use control_plane::provisioning::CreateTenant;

use crate::helpers::{TestApp, eventually, pg, spawn_app};

const MICROCHIP: &str = "ALTER TABLE patients ADD COLUMN microchip text;\nCREATE INDEX patients_microchip ON patients (microchip);\n";

/// The latest embedded tenant migration: where tenants are before the test's own.
fn base_version() -> i32 {
    tenant::migrations::latest_version()
}

/// The version of the test's own migration, after every embedded one.
fn next_version() -> i32 {
    base_version() + 1
}

/// The history of a tenant database that applied versions 1 to `upto`, once each.
fn applied(upto: i32) -> Vec<(i32, i64)> {
    (1..=upto).map(|v| (v, 1)).collect()
}

fn migrations_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path()
            .join(format!("V{}__add_microchip.sql", next_version())),
        MICROCHIP,
    )
    .expect("write migration");
    dir
}

async fn versions(app: &TestApp) -> Vec<(String, Option<i32>)> {
    app.owner_client()
        .await
        .query(
            "SELECT slug, schema_version FROM tenants WHERE status = 'active' ORDER BY slug",
            &[],
        )
        .await
        .expect("versions")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// The versions recorded in the tenant database itself, with how often each appears.
async fn history(db: &str) -> Vec<(i32, i64)> {
    pg(db)
        .await
        .query(
            "SELECT version, count(*) FROM refinery_schema_history GROUP BY 1 ORDER BY 1",
            &[],
        )
        .await
        .expect("history")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// Waits until no session holds the fleet lock. A run lets go of it by ending its session,
/// which the server completes a moment after the run has returned; a run started within
/// that moment would be refused as busy.
async fn fleet_lock_released(app: &TestApp) {
    let owner = app.owner_client().await;
    eventually("the fleet lock to be released", || async {
        let key = "hashtextextended('cp-fleet-migration', 0)";
        let got: bool = owner
            .query_one(&format!("SELECT pg_try_advisory_lock({key})"), &[])
            .await
            .expect("try the fleet lock")
            .get(0);
        if !got {
            return Err("held");
        }
        owner
            .execute(&format!("SELECT pg_advisory_unlock({key})"), &[])
            .await
            .expect("let go of the fleet lock");
        Ok(())
    })
    .await;
}

async fn run(
    services: &control_plane::Services,
    options: FleetOptions,
) -> control_plane::fleet::RunSummary {
    FleetRun::start(services.fleet.clone(), options, "test")
        .await
        .expect("start")
        .execute(|_| {})
        .await
        .expect("execute")
}

#[tokio::test]
async fn thirty_tenants_migrate_and_a_second_run_does_nothing() {
    let app = spawn_app().await;
    let tenants = app.create_tenants("fleet", 30).await;
    assert!(
        versions(&app)
            .await
            .iter()
            .all(|(_, v)| *v == Some(base_version()))
    );
    let dir = migrations_dir();
    let services = app.services_with_dir(Some(dir.path())).await;

    let summary = run(&services, FleetOptions::default()).await;
    assert_eq!(
        (
            summary.status.as_str(),
            summary.succeeded,
            summary.failed,
            summary.total
        ),
        ("succeeded", 30, 0, 30),
        "{summary:?}"
    );
    assert!(
        versions(&app)
            .await
            .iter()
            .all(|(_, v)| *v == Some(next_version())),
        "{:?}",
        versions(&app).await
    );
    for t in &tenants {
        assert_eq!(
            history(&t.db_name).await,
            applied(next_version()),
            "{}",
            t.slug
        );
        let column: i64 = pg(&t.db_name)
            .await
            .query_one("SELECT count(*) FROM information_schema.columns WHERE table_name = 'patients' AND column_name = 'microchip'", &[])
            .await
            .expect("column")
            .get(0);
        assert_eq!(column, 1);
    }
    let recorded = app
        .count(&format!("SELECT count(*) FROM migration_run_tenants WHERE run_id = '{}' AND status = 'succeeded' AND from_version = {} AND to_version = {} AND duration_ms IS NOT NULL", summary.run_id, base_version(), next_version()))
        .await;
    assert_eq!(recorded, 30);

    // A table made by a new migration is usable by the tenant's runtime role.
    let runtime = crate::helpers::connect_as(&tenants[0].runtime_role, &tenants[0].db_name)
        .await
        .expect("runtime");
    runtime
        .execute("UPDATE patients SET microchip = 'x' WHERE false", &[])
        .await
        .expect("runtime role uses the new column");

    fleet_lock_released(&app).await;
    let again = run(&services, FleetOptions::default()).await;
    assert_eq!(
        (again.status.as_str(), again.total, again.up_to_date),
        ("succeeded", 0, 30),
        "{again:?}"
    );

    // New tenants are born at the new version (the template was upgraded).
    let born = app.create_tenants("newborn", 1).await;
    assert_eq!(born[0].schema_version, Some(next_version()));
}

#[tokio::test]
async fn a_failing_tenant_is_recorded_the_rest_migrate_and_a_rerun_fixes_only_it() {
    let app = spawn_app().await;
    let tenants = app.create_tenants("iso", 30).await;
    let broken = &tenants[7];
    // A conflicting object made beforehand: the new migration's index name is taken.
    pg(&broken.db_name)
        .await
        .batch_execute("CREATE TABLE patients_microchip (id int)")
        .await
        .expect("conflict");
    let dir = migrations_dir();
    let services = app.services_with_dir(Some(dir.path())).await;

    // Through the CLI, as ops would: the exit status says a tenant failed.
    let config = {
        let mut c = app.state.config.as_ref().clone();
        c.tenant_migrations_dir = None;
        c
    };
    let dir_arg = dir.path().to_str().expect("utf8").to_string();
    let cli = <control_plane::cli::Cli as clap::Parser>::try_parse_from([
        "control-plane",
        "migrate",
        "--dir",
        &dir_arg,
        "--json",
    ])
    .expect("parse");
    let result = cli.run(config.clone()).await;
    assert!(
        result.is_err(),
        "the CLI must exit non-zero when a tenant failed"
    );

    let v = versions(&app).await;
    assert_eq!(
        v.iter().filter(|(_, v)| *v == Some(next_version())).count(),
        29,
        "{v:?}"
    );
    assert!(
        v.iter()
            .any(|(s, v)| s == &broken.slug && *v == Some(base_version()))
    );
    let error: String = app
        .owner_client()
        .await
        .query_one(
            "SELECT error FROM migration_run_tenants WHERE tenant_id = $1 AND status = 'failed'",
            &[&broken.id],
        )
        .await
        .expect("failure recorded")
        .get(0);
    assert!(
        error.contains("patients_microchip") && error.contains("already exists"),
        "{error}"
    );
    assert_eq!(
        history(&broken.db_name).await,
        applied(base_version()),
        "the failed tenant stayed wholly at the version before"
    );

    pg(&broken.db_name)
        .await
        .batch_execute("DROP TABLE patients_microchip")
        .await
        .expect("fix");
    fleet_lock_released(&app).await;
    let rerun = run(&services, FleetOptions::default()).await;
    assert_eq!(
        (rerun.status.as_str(), rerun.succeeded, rerun.up_to_date),
        ("succeeded", 1, 29),
        "{rerun:?}"
    );
    assert!(
        versions(&app)
            .await
            .iter()
            .all(|(_, v)| *v == Some(next_version()))
    );
}

#[tokio::test]
async fn a_canary_failure_stops_the_run_before_the_rest() {
    let app = spawn_app().await;
    let tenants = app.create_tenants("bird", 6).await;
    pg(&tenants[0].db_name)
        .await
        .batch_execute("CREATE TABLE patients_microchip (id int)")
        .await
        .expect("conflict");
    let dir = migrations_dir();
    let services = app.services_with_dir(Some(dir.path())).await;
    let summary = run(
        &services,
        FleetOptions {
            canary: Canary::Slugs(vec![tenants[0].slug.clone(), tenants[1].slug.clone()]),
            ..FleetOptions::default()
        },
    )
    .await;
    assert_eq!(summary.status, "failed");
    assert!(
        summary
            .halt_reason
            .as_deref()
            .is_some_and(|r| r.contains("canary")),
        "{summary:?}"
    );
    assert_eq!(summary.not_attempted, 4, "{summary:?}");
    let v = versions(&app).await;
    assert_eq!(
        v.iter().filter(|(_, v)| *v == Some(next_version())).count(),
        1,
        "only the good canary moved: {v:?}"
    );
    let pending = app
        .count(&format!(
            "SELECT count(*) FROM migration_run_tenants WHERE run_id = '{}' AND status = 'pending'",
            summary.run_id
        ))
        .await;
    assert_eq!(pending, 4);

    // A failure budget halts the main wave too.
    fleet_lock_released(&app).await;
    let halted = run(
        &services,
        FleetOptions {
            concurrency: 1,
            max_failures: Some(FailureBudget::Count(0)),
            ..FleetOptions::default()
        },
    )
    .await;
    assert_eq!(halted.status, "halted", "{halted:?}");
    assert!(halted.not_attempted > 0, "{halted:?}");
}

#[tokio::test]
async fn only_one_fleet_run_at_a_time_and_creation_racing_a_run_ends_at_the_latest_version() {
    let app = spawn_app().await;
    app.create_tenants("lock", 4).await;
    let dir = migrations_dir();
    let services = app.services_with_dir(Some(dir.path())).await;
    let first = FleetRun::start(services.fleet.clone(), FleetOptions::default(), "test")
        .await
        .expect("first");
    let second = FleetRun::start(
        app.services_with_dir(Some(dir.path())).await.fleet.clone(),
        FleetOptions::default(),
        "test",
    )
    .await;
    match second {
        Err(e @ Error::FleetBusy(Some(id))) => {
            assert_eq!(id, first.run().id);
            assert!(
                e.to_string().contains("another fleet migration is running"),
                "{e}"
            );
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("a second run started while the first held the lock"),
    }
    // The API says the same with a 409.
    let response = app
        .post_json(
            "/api/owner/migrations",
            Some(&app.token),
            &serde_json::json!({ "dry_run": false }),
        )
        .await;
    assert_eq!(response.status(), 409);

    // A tenant created (by a process using the same migrations) while the run goes on.
    let provisioner = Arc::clone(&services.provisioner);
    let create = async {
        let t = provisioner
            .tenant_create(
                &CreateTenant {
                    slug: "racer".into(),
                    name: "Racer".into(),
                    ..CreateTenant::default()
                },
                &Actor::cli(),
            )
            .await
            .expect("create");
        provisioner.drive(t.id).await.expect("drive")
    };
    let (summary, racer) = tokio::join!(first.execute(|_| {}), create);
    assert_eq!(summary.expect("run").failed, 0);
    assert_eq!(racer.schema_version, Some(next_version()));
    assert_eq!(
        history(&racer.db_name).await,
        applied(next_version()),
        "nothing applied twice"
    );
    assert!(
        versions(&app)
            .await
            .iter()
            .all(|(_, v)| *v == Some(next_version()))
    );
}

#[tokio::test]
async fn a_run_killed_midway_is_marked_interrupted_and_the_next_run_finishes() {
    let app = spawn_app().await;
    app.create_tenants("crash", 10).await;
    let dir = migrations_dir();
    let services = app.services_with_dir(Some(dir.path())).await;
    // The run that dies has services of its own, as the killed process had, with its
    // owner-database sessions named so the test can see when they are all gone.
    let dead_process = format!("{}dead", app.prefix);
    let dead_services = app.services_named(Some(dir.path()), &dead_process).await;
    let dead = FleetRun::start(
        dead_services.fleet.clone(),
        FleetOptions {
            concurrency: 2,
            crash_after: Some(4),
            ..FleetOptions::default()
        },
        "test",
    )
    .await
    .expect("start");
    let dead_id = dead.run().id;
    assert!(
        dead.execute(|_| {}).await.is_err(),
        "the crash switch fires"
    );
    // Its sessions outlive it for a moment, as a killed process's do until the server
    // notices: one may still be finishing a statement sent before the crash, and its
    // session holds the fleet lock. Count what it migrated once they are all closed.
    drop(dead_services);
    let owner = app.owner_client().await;
    eventually("the dead run's sessions to close", || async {
        let open: i64 = owner
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                &[&dead_process],
            )
            .await
            .expect("sessions")
            .get(0);
        if open == 0 { Ok(()) } else { Err(open) }
    })
    .await;
    let migrated = versions(&app)
        .await
        .iter()
        .filter(|(_, v)| *v == Some(next_version()))
        .count();
    assert!(migrated < 10, "the dead run did not finish: {migrated}");

    let next = run(&services, FleetOptions::default()).await;
    assert_eq!(next.status, "succeeded");
    assert_eq!(next.succeeded + next.up_to_date, 10, "{next:?}");
    assert_eq!(
        next.succeeded,
        10 - migrated,
        "only what was still behind: {next:?}"
    );
    let status: String = app
        .owner_client()
        .await
        .query_one(
            "SELECT status FROM migration_runs WHERE id = $1",
            &[&dead_id],
        )
        .await
        .expect("run")
        .get(0);
    assert_eq!(status, "interrupted");
    assert!(
        versions(&app)
            .await
            .iter()
            .all(|(_, v)| *v == Some(next_version()))
    );
}

#[tokio::test]
async fn dry_run_changes_nothing_and_status_reports_versions_and_drift() {
    let app = spawn_app().await;
    let tenants = app.create_tenants("dry", 3).await;
    let dir = migrations_dir();
    let services = app.services_with_dir(Some(dir.path())).await;
    let summary = run(
        &services,
        FleetOptions {
            dry_run: true,
            ..FleetOptions::default()
        },
    )
    .await;
    assert_eq!(
        (
            summary.status.as_str(),
            summary.total,
            summary.would_apply,
            summary.succeeded
        ),
        ("dry_run", 3, 3, 0),
        "a dry run says what would apply, and migrates nothing: {summary:?}"
    );
    let would: Vec<serde_json::Value> = app
        .owner_client()
        .await
        .query(
            "SELECT pending FROM migration_run_tenants WHERE run_id = $1 AND status = 'would_apply'",
            &[&summary.run_id],
        )
        .await
        .expect("rows")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        would
            .iter()
            .all(|p| p == &serde_json::json!([format!("V{}__add_microchip", next_version())])),
        "{would:?}"
    );
    assert_eq!(
        would.len(),
        3,
        "every inspected tenant is marked would_apply"
    );
    assert!(
        versions(&app)
            .await
            .iter()
            .all(|(_, v)| *v == Some(base_version()))
    );
    for t in &tenants {
        assert_eq!(history(&t.db_name).await, applied(base_version()));
    }

    // A hand-made drift in one tenant.
    pg(&tenants[1].db_name)
        .await
        .batch_execute("UPDATE refinery_schema_history SET checksum = '42' WHERE version = 1")
        .await
        .expect("drift");
    let status = fleet_status(&services.fleet, true).await.expect("status");
    assert_eq!(status.target_version, next_version());
    assert_eq!(status.histogram, [(Some(base_version()), 3)]);
    assert_eq!(status.behind.len(), 3);
    assert_eq!(status.drift.len(), 1, "{:?}", status.drift);
    assert_eq!(status.drift[0].slug, tenants[1].slug);
    assert_eq!(
        status.drift[0]
            .drift
            .as_ref()
            .expect("drift")
            .checksum_mismatch,
        [1]
    );
}

#[tokio::test]
async fn the_owner_api_starts_and_shows_runs_and_viewers_cannot_start_them() {
    let app = spawn_app().await;
    app.create_tenants("api", 2).await;
    let response = app
        .post_json(
            "/api/owner/migrations?wait=true",
            Some(&app.token),
            &serde_json::json!({ "dry_run": true, "concurrency": 2 }),
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    let id = body["run"]["id"].as_str().expect("id").to_string();
    assert_eq!(body["summary"]["status"], "dry_run");
    // Nothing is behind the built-in migrations, so a dry run inspects no tenant.
    assert_eq!(body["summary"]["up_to_date"], 2);

    let shown: serde_json::Value = app
        .get(&format!("/api/owner/migrations/{id}"), Some(&app.token))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(shown["run"]["status"], "dry_run");
    assert!(
        shown["tenants"].is_array() && shown["counts"].is_object(),
        "{shown}"
    );
    let listed: serde_json::Value = app
        .get("/api/owner/migrations", Some(&app.token))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(listed["runs"][0]["id"], id.as_str());
    assert_eq!(
        app.get("/api/owner/migrations/not-a-uuid", Some(&app.token))
            .await
            .status(),
        404
    );

    let bad = app
        .post_json(
            "/api/owner/migrations",
            Some(&app.token),
            &serde_json::json!({ "dry_run": false, "concurrency": 0 }),
        )
        .await;
    assert_eq!(bad.status(), 400);
    // An empty body is not a real run of the whole fleet.
    let bad = app
        .post_json(
            "/api/owner/migrations",
            Some(&app.token),
            &serde_json::json!({}),
        )
        .await;
    assert_eq!(bad.status(), 400);
    let body: serde_json::Value = bad.json().await.expect("json");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("dry_run is required")),
        "{body}"
    );
    let bad = app
        .post_json(
            "/api/owner/migrations",
            Some(&app.token),
            &serde_json::json!({ "dry_run": false, "canary": "five" }),
        )
        .await;
    assert_eq!(bad.status(), 400);

    app.create_operator("viewer@example.com", "viewer").await;
    let viewer = app
        .login("viewer@example.com", crate::helpers::OPERATOR_PASSWORD)
        .await;
    let refused = app
        .post_json(
            "/api/owner/migrations",
            Some(&viewer),
            &serde_json::json!({ "dry_run": true }),
        )
        .await;
    assert_eq!(refused.status(), 403);
    assert_eq!(
        app.count("SELECT count(*) FROM migration_runs").await,
        1,
        "refused requests start nothing"
    );
}

#[tokio::test]
async fn migrate_with_backup_saves_each_tenant_first_and_the_run_page_links_the_failed_ones() {
    let app = spawn_app().await;
    let tenants = app.create_tenants("safe", 3).await;
    let broken = &tenants[1];
    pg(&broken.db_name)
        .await
        .batch_execute(
            "CREATE TABLE patients_microchip (id int); INSERT INTO patients_microchip VALUES (42)",
        )
        .await
        .expect("conflict");
    let dir = migrations_dir();
    let services = app.services_with_dir(Some(dir.path())).await;
    let dir_arg = dir.path().to_str().expect("utf8").to_string();
    let config = {
        let mut c = app.state.config.as_ref().clone();
        c.tenant_migrations_dir = None;
        c
    };
    let cli = <control_plane::cli::Cli as clap::Parser>::try_parse_from([
        "control-plane",
        "migrate",
        "--dir",
        &dir_arg,
        "--backup",
        "--json",
    ])
    .expect("parse");
    assert!(cli.run(config).await.is_err(), "a tenant failed");
    let owner = app.owner_client().await;
    let backed_up: Vec<(String, String)> = owner
        .query(
            "SELECT t.slug, b.kind FROM tenant_backups b JOIN tenants t ON t.id = b.tenant_id \
             WHERE b.status = 'succeeded' AND b.migration_run_id IS NOT NULL ORDER BY 1",
            &[],
        )
        .await
        .expect("backups")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut expected: Vec<(String, String)> = tenants
        .iter()
        .map(|t| (t.slug.clone(), "pre_migration".to_string()))
        .collect();
    expected.sort();
    assert_eq!(
        backed_up, expected,
        "every tenant saved before it was migrated"
    );

    // The run's record names the failed tenant's backup, and the dashboard links it.
    let run_id: uuid::Uuid = owner
        .query_one(
            "SELECT id FROM migration_runs ORDER BY started_at DESC LIMIT 1",
            &[],
        )
        .await
        .expect("run")
        .get(0);
    let run: serde_json::Value = app
        .get(&format!("/api/owner/migrations/{run_id}"), Some(&app.token))
        .await
        .json()
        .await
        .expect("json");
    let failed = run["tenants"]
        .as_array()
        .expect("tenants")
        .iter()
        .find(|t| t["status"] == "failed")
        .expect("a failed tenant")
        .clone();
    assert_eq!(failed["slug"], broken.slug.as_str());
    let backup_id = failed["backup_id"]
        .as_str()
        .expect("its backup")
        .to_string();

    // Restoring it brings the tenant back as it was before the run, conflict included.
    let restored = app
        .post_json(
            &format!("/api/owner/tenants/{}/restore?wait=true", broken.slug),
            Some(&app.token),
            &serde_json::json!({ "backup_id": backup_id }),
        )
        .await;
    assert_eq!(restored.status(), 200);
    let kept: i32 = pg(&broken.db_name)
        .await
        .query_one("SELECT id FROM patients_microchip", &[])
        .await
        .expect("the table is back")
        .get(0);
    assert_eq!(kept, 42);
    drop(services);
}

/// After `migrate --dir X`, every other view agrees without X: status, verify, the owner
/// API, the dashboard's process and the tenants it creates; a conflicting --dir is refused;
/// a migration no tenant reached may still be replaced by a fixed one.
#[tokio::test]
async fn a_run_records_its_migration_set_and_every_process_follows_it() {
    let app = spawn_app().await;
    let tenants = app.create_tenants("truth", 2).await;
    let dir = migrations_dir();
    let with_dir = app.services_with_dir(Some(dir.path())).await;
    let summary = run(&with_dir, FleetOptions::default()).await;
    assert_eq!(summary.succeeded, 2, "{summary:?}");

    // Another process, given no folder.
    let without = app.services_with_dir(None).await;
    let status = fleet_status(&without.fleet, true).await.expect("status");
    assert_eq!(status.target_version, next_version(), "{status:?}");
    assert!(status.behind.is_empty(), "{status:?}");
    assert!(
        status.drift.is_empty(),
        "verify finds no drift: {:?}",
        status.drift
    );
    assert!(
        status
            .migrations
            .contains(&format!("V{}__add_microchip", next_version())),
        "{status:?}"
    );

    // The serving process (started before the run, without the folder) follows too:
    // first through the change feed alone, then on its owner API.
    eventually("the serving process to adopt the recorded set", || async {
        let target = app.state.migrations.current().latest_version();
        if target == next_version() {
            Ok(())
        } else {
            Err(target)
        }
    })
    .await;
    let api: serde_json::Value = app
        .get("/api/owner/migrations/status?verify=true", Some(&app.token))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(api["target_version"], next_version(), "{api}");
    assert_eq!(api["drift"], serde_json::json!([]), "{api}");
    assert_eq!(api["behind"], serde_json::json!([]), "{api}");
    let born = app.create_tenant("truth-born").await;
    let born_db = born["db_name"].as_str().expect("db_name").to_string();
    assert_eq!(history(&born_db).await, applied(next_version()));
    assert_eq!(
        born["schema_version"],
        next_version(),
        "a tenant created by a process without the folder is born at the recorded set: {born}"
    );
    assert_eq!(history(&tenants[0].db_name).await, applied(next_version()));

    // A folder whose version of the recorded migration differs is refused.
    let other = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        other
            .path()
            .join(format!("V{}__add_microchip.sql", next_version())),
        "ALTER TABLE patients ADD COLUMN microchip varchar(20);",
    )
    .expect("write");
    let mut config = app.state.config.as_ref().clone();
    config.tenant_migrations_dir = Some(other.path().to_path_buf());
    let refused = control_plane::Services::init(
        config,
        Arc::new(control_plane::provisioning::Faults::default()),
    )
    .await;
    let message = refused
        .err()
        .expect("a conflicting --dir is refused")
        .to_string();
    assert!(
        message.contains("differs") && message.contains("record"),
        "{message}"
    );
}

#[tokio::test]
async fn a_run_that_stops_before_the_templates_records_nothing_and_a_fixed_folder_runs() {
    let app = spawn_app().await;
    app.create_tenants("fix", 2).await;
    let broken = tempfile::tempdir().expect("tempdir");
    let name = format!("V{}__add_microchip.sql", next_version());
    std::fs::write(
        broken.path().join(&name),
        "ALTER TABLE no_such_table ADD x int;",
    )
    .expect("write");
    let first = run(
        &app.services_with_dir(Some(broken.path())).await,
        FleetOptions::default(),
    )
    .await;
    assert_eq!(
        (first.status.as_str(), first.succeeded),
        ("failed", 0),
        "{first:?}"
    );
    let recorded = || async {
        app.count(&format!(
            "SELECT count(*) FROM tenant_migrations WHERE version = {}",
            next_version()
        ))
        .await
    };
    assert_eq!(
        recorded().await,
        0,
        "a migration that failed on the template is not recorded"
    );
    let status = fleet_status(&app.services_with_dir(None).await.fleet, false)
        .await
        .expect("status");
    assert_eq!(status.target_version, base_version(), "{status:?}");

    fleet_lock_released(&app).await;
    let fixed = migrations_dir();
    let second = run(
        &app.services_with_dir(Some(fixed.path())).await,
        FleetOptions::default(),
    )
    .await;
    assert_eq!((second.succeeded, second.failed), (2, 0), "{second:?}");
    let sql: String = app
        .owner_client()
        .await
        .query_one(
            "SELECT sql FROM tenant_migrations WHERE version = $1",
            &[&next_version()],
        )
        .await
        .expect("recorded")
        .get(0);
    assert_eq!(sql, MICROCHIP, "the fixed migration is the one recorded");
}
