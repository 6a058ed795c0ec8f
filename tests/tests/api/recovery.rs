//! Crash safety: stop provisioning or deletion at every point, then let the reconciler
//! finish. Each case must end with exactly one clean tenant (or none), and no orphan
//! database, role or directory.

use control_plane::audit::Actor;
use control_plane::provisioning::{CreateTenant, FaultPoint};
use owner::tenants::Step;

use crate::helpers::{TestApp, spawn_app};

const CREATE_STEPS: [Step; 5] = [
    Step::RolesCreated,
    Step::DatabaseCreated,
    Step::SchemaMigrated,
    Step::StorageCreated,
    Step::Ready,
];
const DELETE_STEPS: [Step; 4] = [
    Step::DatabaseDropped,
    Step::RolesDropped,
    Step::StorageRemoved,
    Step::Removed,
];

fn points(steps: &[Step]) -> Vec<FaultPoint> {
    steps
        .iter()
        .flat_map(|s| [FaultPoint::BeforeRecord(*s), FaultPoint::AfterRecord(*s)])
        .collect()
}

async fn assert_only_tenants(app: &TestApp, live: &[(&str, uuid::Uuid)]) {
    let (dbs, roles) = app.server_objects().await;
    let mut expected_dbs = vec![format!("{}template", app.prefix)];
    let mut expected_roles = vec![
        format!("{}template_owner", app.prefix),
        format!("{}template_schema", app.prefix),
    ];
    for (_, id) in live {
        let base = format!("{}{}", app.prefix, id.simple());
        expected_dbs.push(base.clone());
        expected_roles.push(format!("{base}_app"));
        expected_roles.push(format!("{base}_owner"));
    }
    expected_dbs.sort();
    expected_roles.sort();
    assert_eq!(dbs, expected_dbs, "databases");
    assert_eq!(roles, expected_roles, "roles");
    let mut slugs: Vec<String> = live.iter().map(|(s, _)| s.to_string()).collect();
    slugs.sort();
    assert_eq!(app.tenant_dirs(), slugs, "directories");
}

#[tokio::test]
async fn a_crash_at_any_creation_step_is_finished_by_the_reconciler() {
    let app = spawn_app().await;
    let provisioner = app.provisioner();
    let mut live = Vec::new();
    for (i, point) in points(&CREATE_STEPS).into_iter().enumerate() {
        let slug = format!("crash-{i}");
        let tenant = provisioner
            .tenant_create(
                &CreateTenant {
                    slug: slug.clone(),
                    name: slug.clone(),
                    ..CreateTenant::default()
                },
                &Actor::cli(),
            )
            .await
            .expect("create");
        app.faults.arm(point);
        let err = provisioner
            .drive(tenant.id)
            .await
            .expect_err("the fault fires");
        assert!(
            err.to_string().contains("injected fault"),
            "{point:?}: {err}"
        );
        let stuck = app
            .count(&format!(
                "SELECT count(*) FROM tenants WHERE id = '{}' AND status = 'provisioning'",
                tenant.id
            ))
            .await;
        // After the final step is recorded the tenant is already active.
        if point != FaultPoint::AfterRecord(Step::Ready) {
            assert_eq!(stuck, 1, "{point:?} left the tenant provisioning");
        }

        let report = provisioner.reconcile_once().await.expect("reconcile");
        assert_eq!(report.failed, 0, "{point:?}: {report:?}");
        let active = app.count(&format!("SELECT count(*) FROM tenants WHERE slug = '{slug}' AND status = 'active' AND last_error IS NULL")).await;
        assert_eq!(active, 1, "{point:?} did not end active");
        live.push((slug, tenant.id));
        let live_refs: Vec<(&str, uuid::Uuid)> =
            live.iter().map(|(s, id)| (s.as_str(), *id)).collect();
        assert_only_tenants(&app, &live_refs).await;
    }
    // Each finished tenant went through every step exactly once in the audit log.
    let per_step = app
        .count("SELECT count(*) FROM (SELECT target_id, action FROM audit_log WHERE action LIKE 'tenant.step.%' GROUP BY 1, 2 HAVING count(*) > 1) dup")
        .await;
    assert_eq!(per_step, 0, "a step was recorded twice");
}

#[tokio::test]
async fn a_crash_at_any_deletion_step_is_finished_by_the_reconciler() {
    let app = spawn_app().await;
    let provisioner = app.provisioner();
    for (i, point) in points(&DELETE_STEPS).into_iter().enumerate() {
        let slug = format!("doomed-{i}");
        let body = app.create_tenant(&slug).await;
        let id: uuid::Uuid = body["id"].as_str().expect("id").parse().expect("uuid");
        provisioner
            .tenant_delete(id, &Actor::cli())
            .await
            .expect("delete");
        app.faults.arm(point);
        let err = provisioner.drive(id).await.expect_err("the fault fires");
        assert!(
            err.to_string().contains("injected fault"),
            "{point:?}: {err}"
        );

        let report = provisioner.reconcile_once().await.expect("reconcile");
        assert_eq!(report.failed, 0, "{point:?}: {report:?}");
        let deleted = app
            .count(&format!(
                "SELECT count(*) FROM tenants WHERE id = '{id}' AND status = 'deleted'"
            ))
            .await;
        assert_eq!(deleted, 1, "{point:?} did not end deleted");
        assert_only_tenants(&app, &[]).await;
    }
}

#[tokio::test]
async fn the_reconciler_never_adopts_a_database_it_did_not_create() {
    let app = spawn_app().await;
    let provisioner = app.provisioner();
    let tenant = provisioner
        .tenant_create(
            &CreateTenant {
                slug: "squatted".into(),
                name: "Squatted".into(),
                ..CreateTenant::default()
            },
            &Actor::cli(),
        )
        .await
        .expect("create");
    // Someone else already has a role under the tenant's name.
    let admin = crate::helpers::pg("postgres").await;
    admin
        .batch_execute(&format!("CREATE ROLE \"{}\"", tenant.owner_role))
        .await
        .expect("squat");
    let err = provisioner.drive(tenant.id).await.expect_err("must refuse");
    assert!(
        err.to_string()
            .contains("not created by this control plane"),
        "{err}"
    );
    let last_error: Option<String> = app
        .owner_client()
        .await
        .query_one(
            "SELECT last_error FROM tenants WHERE id = $1",
            &[&tenant.id],
        )
        .await
        .expect("row")
        .get(0);
    assert!(last_error.is_some_and(|e| e.contains("not created by this control plane")));
    // Deleting the stuck tenant must not drop the stranger's role either.
    provisioner
        .tenant_delete(tenant.id, &Actor::cli())
        .await
        .expect("delete request");
    assert!(provisioner.drive(tenant.id).await.is_err());
    let still_there: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_roles WHERE rolname = $1",
            &[&tenant.owner_role],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(still_there, 1);
    admin
        .batch_execute(&format!("DROP ROLE \"{}\"", tenant.owner_role))
        .await
        .expect("cleanup");
}

#[tokio::test]
async fn concurrent_drivers_of_one_tenant_do_each_step_once() {
    let app = spawn_app().await;
    let provisioner = app.provisioner();
    let tenant = provisioner
        .tenant_create(
            &CreateTenant {
                slug: "contested".into(),
                name: "Contested".into(),
                ..CreateTenant::default()
            },
            &Actor::cli(),
        )
        .await
        .expect("create");
    // Two blocking drivers and a reconciler pass (which skips a busy tenant) at once,
    // as two service processes and a CLI would.
    let (a, b, pass) = tokio::join!(
        provisioner.drive(tenant.id),
        provisioner.drive(tenant.id),
        provisioner.reconcile_once()
    );
    assert_eq!(a.expect("first driver").status.as_str(), "active");
    assert_eq!(b.expect("second driver").status.as_str(), "active");
    assert_eq!(pass.expect("reconcile").failed, 0);
    let steps = app
        .count(&format!(
            "SELECT count(*) FROM audit_log WHERE target_id = '{}' AND action LIKE 'tenant.step.%'",
            tenant.id
        ))
        .await;
    assert_eq!(steps, 5, "each of the five steps recorded once");
    assert_only_tenants(&app, &[("contested", tenant.id)]).await;
}

/// A `serve` killed during the database step leaves its CREATE DATABASE running on the
/// server; when it commits under the reconciler's feet, one pass must still converge.
#[tokio::test]
async fn one_reconcile_pass_converges_when_a_killed_create_database_commits_meanwhile() {
    let app = spawn_app().await;
    let provisioner = app.provisioner();
    let tenant = provisioner
        .tenant_create(
            &CreateTenant {
                slug: "orphaned".into(),
                name: "Orphaned".into(),
                ..CreateTenant::default()
            },
            &Actor::cli(),
        )
        .await
        .expect("create");
    app.faults.arm(FaultPoint::OrphanedCreateDatabase);
    let report = provisioner.reconcile_once().await.expect("reconcile");
    assert_eq!(report.failed, 0, "{report:?}");
    assert!(
        !app.faults.is_armed(),
        "the orphaned CREATE DATABASE never happened, so this proves nothing"
    );
    let active = app
        .count(&format!(
            "SELECT count(*) FROM tenants WHERE id = '{}' AND status = 'active' AND last_error IS NULL",
            tenant.id
        ))
        .await;
    assert_eq!(active, 1, "one pass did not converge");
    assert_only_tenants(&app, &[("orphaned", tenant.id)]).await;
}
