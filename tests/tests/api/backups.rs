//! Per-tenant backups, restores, clones and exports: round trips that compare every row
//! and every file, crashes at each side of a restore's swap, tampered backups, retention,
//! the schedule, the restore test, and isolation between tenants.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use control_plane::audit::Actor;
use control_plane::backups::BackupRequest;
use control_plane::provisioning::FaultPoint;
use owner::backups::{BackupKind, BackupStatus};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, eventually, pg, spawn_app, spawn_app_with};

/// Every row of every table of a database, as JSON text, sorted per table.
async fn rows(db: &str) -> BTreeMap<String, Vec<String>> {
    let client = pg(db).await;
    let tables = client
        .query(
            "SELECT schemaname || '.' || tablename FROM pg_tables \
             WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
            &[],
        )
        .await
        .expect("tables");
    let mut out = BTreeMap::new();
    for t in tables {
        let name: String = t.get(0);
        let mut lines: Vec<String> = client
            .query(&format!("SELECT row_to_json(t)::text FROM {name} t"), &[])
            .await
            .expect("rows")
            .iter()
            .map(|r| r.get(0))
            .collect();
        lines.sort();
        out.insert(name, lines);
    }
    out
}

/// Every file of a tenant's tree but its `backups` folder, with its bytes.
fn files(app: &TestApp, slug: &str) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let relative = path.strip_prefix(root).expect("inside").to_path_buf();
            if relative.starts_with("backups") {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.insert(relative, std::fs::read(&path).expect("read"));
            }
        }
    }
    let root = app.storage_root.join("tenants").join(slug);
    let mut out = BTreeMap::new();
    walk(&root, &root, &mut out);
    out
}

/// A tenant's row in the owner database.
async fn tenant_row(app: &TestApp, id: uuid::Uuid) -> owner::tenants::Tenant {
    let conn = app.services.owner.conn().await.expect("conn");
    owner::tenants::tenant_fetch(&**conn, id)
        .await
        .expect("tenant")
}

async fn call(
    app: &TestApp,
    method: Method,
    slug: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let response = app
        .on(
            method,
            &format!("{slug}.localhost"),
            path,
            Some(token),
            body.as_ref(),
        )
        .await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn upload(app: &TestApp, slug: &str, token: &str, name: &str, bytes: &[u8]) -> Value {
    let response = app
        .http
        .post(format!(
            "{}/api/v1/files/documents?name={name}",
            app.address
        ))
        .header("host", format!("{slug}.localhost"))
        .header("content-type", "application/octet-stream")
        .bearer_auth(token)
        .body(bytes.to_vec())
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), 201);
    response.json().await.expect("json")
}

/// A tenant with a practice, two patients and a file. Returns the tenant and a token.
async fn seeded(app: &TestApp, slug: &str) -> (Value, String) {
    let (tenant, token) = app.tenant_with_admin(slug, "pro").await;
    let (s, practice) = call(
        app,
        Method::POST,
        slug,
        "/api/v1/practices",
        &token,
        Some(json!({ "name": "Main" })),
    )
    .await;
    assert_eq!(s, 201, "{practice}");
    for name in ["Rex", "Tom"] {
        let body = json!({ "practice_id": practice["id"], "name": name, "species": "dog" });
        let (s, p) = call(
            app,
            Method::POST,
            slug,
            "/api/v1/patients",
            &token,
            Some(body),
        )
        .await;
        assert_eq!(s, 201, "{p}");
    }
    upload(app, slug, &token, "scan.bin", &[7u8; 3000]).await;
    (tenant, token)
}

/// Changes the tenant after its backup: a patient added, a file added.
async fn change(app: &TestApp, slug: &str, token: &str) {
    let (_, practices) = call(app, Method::GET, slug, "/api/v1/practices", token, None).await;
    let pid = practices["items"][0]["id"].clone();
    let body = json!({ "practice_id": pid, "name": "Later", "species": "cat" });
    let (s, p) = call(
        app,
        Method::POST,
        slug,
        "/api/v1/patients",
        token,
        Some(body),
    )
    .await;
    assert_eq!(s, 201, "{p}");
    upload(app, slug, token, "later.bin", b"after the backup").await;
}

async fn backup_via_api(app: &TestApp, slug: &str) -> Value {
    let response = app
        .post_json(
            &format!("/api/owner/tenants/{slug}/backups?wait=true"),
            Some(&app.token),
            &json!({}),
        )
        .await;
    let status = response.status();
    let body: Value = response.json().await.expect("json");
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "succeeded", "{body}");
    body
}

async fn restore_via_api(app: &TestApp, slug: &str, body: &Value) -> (u16, Value) {
    let response = app
        .post_json(
            &format!("/api/owner/tenants/{slug}/restore?wait=true"),
            Some(&app.token),
            body,
        )
        .await;
    let status = response.status().as_u16();
    (status, response.json().await.expect("json"))
}

/// Databases and folders a restore may leave behind if it does not clean up.
async fn leftovers(app: &TestApp) -> (Vec<String>, Vec<String>) {
    let (dbs, _) = app.server_objects().await;
    // `<tenant database>_r<8 hex>` (loaded) and `_p<8 hex>` (set aside), or a restore test's.
    let restore_db = |d: &str| {
        d.rsplit_once('_').is_some_and(|(_, tail)| {
            tail.len() == 9
                && (tail.starts_with('r') || tail.starts_with('p'))
                && tail[1..].chars().all(|c| c.is_ascii_hexdigit())
        })
    };
    let stray_dbs = dbs
        .into_iter()
        .filter(|d| restore_db(d) || d.contains("restoretest"))
        .collect();
    let stray_dirs = app
        .tenant_dirs()
        .into_iter()
        .filter(|d| d.starts_with('.'))
        .collect();
    (stray_dbs, stray_dirs)
}

#[tokio::test]
async fn backup_then_restore_gives_back_every_row_and_every_file() {
    let app = spawn_app().await;
    let (tenant, token) = seeded(&app, "roundtrip").await;
    let db = tenant["db_name"].as_str().expect("db").to_string();
    let rows_before = rows(&db).await;
    let files_before = files(&app, "roundtrip");
    assert!(files_before.len() == 1, "{files_before:?}");

    let backup = backup_via_api(&app, "roundtrip").await;
    let location = PathBuf::from(backup["location"].as_str().expect("location"));
    for name in ["database.dump", "files.tar", "manifest.json"] {
        assert!(location.join(name).is_file(), "{name} missing");
    }
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(location.join("manifest.json")).expect("manifest"))
            .expect("json");
    assert_eq!(manifest["tenant_slug"], "roundtrip");
    assert_eq!(manifest["tables"]["public.patients"], 2);
    assert!(backup["size_bytes"].as_i64().expect("size") > 0);
    assert_eq!(manifest["schema_version"], backup["schema_version"]);

    change(&app, "roundtrip", &token).await;
    assert_ne!(rows(&db).await, rows_before);
    assert_ne!(files(&app, "roundtrip"), files_before);

    let (status, restored) =
        restore_via_api(&app, "roundtrip", &json!({ "backup_id": backup["id"] })).await;
    assert_eq!(status, 200, "{restored}");
    assert_eq!(restored["restore"]["status"], "succeeded", "{restored}");
    assert_eq!(
        rows(&db).await,
        rows_before,
        "every row as it was at the backup"
    );
    assert_eq!(
        files(&app, "roundtrip"),
        files_before,
        "every file as it was"
    );
    assert!(
        location.join("manifest.json").is_file(),
        "the backups folder is kept"
    );

    // Served again, from the restored database, by the same roles.
    let (s, patients) = call(
        &app,
        Method::GET,
        "roundtrip",
        "/api/v1/patients",
        &token,
        None,
    )
    .await;
    assert_eq!(s, 200, "{patients}");
    assert_eq!(patients["items"].as_array().expect("list").len(), 2);
    let shown: Value = app
        .get("/api/owner/tenants/roundtrip", Some(&app.token))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(shown["maintenance"], Value::Null);
    assert_eq!(leftovers(&app).await, (vec![], vec![]));
    assert_eq!(
        app.count(
            "SELECT count(*) FROM audit_log WHERE action IN ('tenant.backup', 'tenant.restore')"
        )
        .await,
        2
    );
}

#[tokio::test]
async fn restore_into_a_new_tenant_clones_it_and_leaves_the_source_alone() {
    let app = spawn_app().await;
    let (source, token) = seeded(&app, "origin").await;
    let source_db = source["db_name"].as_str().expect("db").to_string();
    let backup = backup_via_api(&app, "origin").await;
    let rows_at_backup = rows(&source_db).await;
    let files_at_backup = files(&app, "origin");
    change(&app, "origin", &token).await;
    let source_rows_now = rows(&source_db).await;

    let (status, answer) = restore_via_api(
        &app,
        "origin",
        &json!({ "backup_id": backup["id"], "into": "copy" }),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let clone = &answer["tenant"];
    assert_eq!(clone["slug"], "copy");
    assert_eq!(clone["status"], "active");
    assert_eq!(clone["plan_code"], "pro");
    assert_ne!(clone["id"], source["id"]);
    assert_ne!(clone["runtime_role"], source["runtime_role"]);
    let clone_db = clone["db_name"].as_str().expect("db");
    assert_eq!(rows(clone_db).await, rows_at_backup);
    assert_eq!(files(&app, "copy"), files_at_backup);
    assert_eq!(
        rows(&source_db).await,
        source_rows_now,
        "the source is untouched"
    );

    // The clone is served on its own domain; the source's token is not valid there.
    let login = json!({ "email": "admin@origin.example", "password": crate::helpers::TENANT_ADMIN_PASSWORD });
    let response = app
        .on(
            Method::POST,
            "copy.localhost",
            "/api/v1/auth/login",
            None,
            Some(&login),
        )
        .await;
    assert_eq!(response.status(), 200, "the clone's users came with it");
    let tokens: Value = response.json().await.expect("json");
    let (s, _) = call(&app, Method::GET, "copy", "/api/v1/patients", &token, None).await;
    assert_eq!(s, 401, "a token of the source is foreign to the clone");
    let (s, patients) = call(
        &app,
        Method::GET,
        "copy",
        "/api/v1/patients",
        tokens["access_token"].as_str().expect("token"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(patients["items"].as_array().expect("list").len(), 2);
    assert_eq!(leftovers(&app).await, (vec![], vec![]));
}

#[tokio::test]
async fn a_tampered_backup_is_refused_before_anything_is_touched() {
    let app = spawn_app().await;
    let (tenant, token) = seeded(&app, "tamper").await;
    let db = tenant["db_name"].as_str().expect("db").to_string();
    let backup = backup_via_api(&app, "tamper").await;
    change(&app, "tamper", &token).await;
    let rows_now = rows(&db).await;
    let files_now = files(&app, "tamper");
    let location = PathBuf::from(backup["location"].as_str().expect("location"));

    for name in ["database.dump", "files.tar", "manifest.json"] {
        let path = location.join(name);
        let original = std::fs::read(&path).expect("read");
        let mut changed = original.clone();
        let middle = changed.len() / 2;
        changed[middle] ^= 0x01;
        std::fs::write(&path, &changed).expect("write");
        let (status, body) =
            restore_via_api(&app, "tamper", &json!({ "backup_id": backup["id"] })).await;
        assert_eq!(status, 422, "{name}: {body}");
        assert_eq!(body["error"]["code"], "backup_corrupt", "{name}: {body}");
        let (status, body) = restore_via_api(
            &app,
            "tamper",
            &json!({ "backup_id": backup["id"], "into": "tampered-copy" }),
        )
        .await;
        assert_eq!(status, 422, "{name}, into a new tenant: {body}");
        std::fs::write(&path, &original).expect("restore the byte");
    }
    assert_eq!(rows(&db).await, rows_now, "nothing restored");
    assert_eq!(files(&app, "tamper"), files_now);
    assert_eq!(app.count("SELECT count(*) FROM tenant_restores").await, 0);
    assert_eq!(
        app.count("SELECT count(*) FROM tenants WHERE slug = 'tampered-copy'")
            .await,
        0
    );
    let (s, _) = call(
        &app,
        Method::GET,
        "tamper",
        "/api/v1/patients",
        &token,
        None,
    )
    .await;
    assert_eq!(s, 200, "still served");
    // Untouched again, the backup restores.
    let (status, body) =
        restore_via_api(&app, "tamper", &json!({ "backup_id": backup["id"] })).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn foreign_unknown_and_malformed_backup_ids_are_not_found_and_tenants_cannot_reach_backups() {
    let app = spawn_app().await;
    let (_, token_a) = seeded(&app, "alpha").await;
    app.tenant_with_admin("beta", "pro").await;
    let backup = backup_via_api(&app, "alpha").await;
    let id = backup["id"].as_str().expect("id");
    for (path, body) in [
        (format!("/api/owner/tenants/beta/backups/{id}"), None),
        (
            format!("/api/owner/tenants/beta/backups/{}", uuid::Uuid::new_v4()),
            None,
        ),
        (
            "/api/owner/tenants/beta/backups/not-a-uuid".to_string(),
            None,
        ),
        (
            "/api/owner/tenants/beta/restore?wait=true".to_string(),
            Some(json!({ "backup_id": id })),
        ),
        (
            "/api/owner/tenants/alpha/restore?wait=true".to_string(),
            Some(json!({ "backup_id": uuid::Uuid::new_v4() })),
        ),
    ] {
        let response = match &body {
            None => app.get(&path, Some(&app.token)).await,
            Some(b) => app.post_json(&path, Some(&app.token), b).await,
        };
        let status = response.status();
        let err: Value = response.json().await.expect("json");
        assert_eq!(status, 404, "{path}: {err}");
        assert_eq!(err["error"]["code"], "not_found");
    }
    // Malformed requests are 4xx with the envelope and change nothing.
    for body in [
        json!({}),
        json!({ "backup_id": id, "extra": 1 }),
        json!({ "backup_id": id, "into": "Bad Slug" }),
    ] {
        let response = app
            .post_json("/api/owner/tenants/alpha/restore", Some(&app.token), &body)
            .await;
        assert!(response.status().is_client_error(), "{body}");
        let err: Value = response.json().await.expect("json");
        assert!(err["error"]["code"].is_string(), "{err}");
    }
    assert_eq!(app.count("SELECT count(*) FROM tenant_restores").await, 0);

    // The tenant API has no way into the backups folder, its own or anyone's.
    let list: Value = app
        .get("/api/owner/tenants/beta/backups", Some(&app.token))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        list.as_array().expect("list").len(),
        0,
        "beta has no backups: {list}"
    );
    for path in [
        format!("/api/v1/files/backups/{id}/manifest.json"),
        format!("/api/v1/files/documents/..%2F..%2Fbackups%2F{id}%2Fmanifest.json"),
        "/api/v1/files?folder=backups".to_string(),
    ] {
        let (s, body) = call(&app, Method::GET, "alpha", &path, &token_a, None).await;
        assert!((400..500).contains(&s), "{path}: {s} {body}");
    }
}

#[tokio::test]
async fn a_backup_cut_short_by_a_crash_is_marked_failed_and_its_files_removed() {
    let app = spawn_app().await;
    let (tenant, _) = seeded(&app, "crashy").await;
    let id: uuid::Uuid = tenant["id"].as_str().expect("id").parse().expect("uuid");
    let backups = &app.services.backups;
    let tenant_row = tenant_row(&app, id).await;
    let actor = Actor::system("test");
    let request = BackupRequest {
        kind: BackupKind::Manual,
        actor: &actor,
        migration_run_id: None,
    };

    // Two backups of one tenant never overlap.
    let started = backups.start(&tenant_row, &request).await.expect("start");
    let second = backups.start(&tenant_row, &request).await;
    assert!(second.is_err(), "a second backup while one runs");
    let (s, body) = {
        let r = app
            .post_json(
                "/api/owner/tenants/crashy/backups",
                Some(&app.token),
                &json!({}),
            )
            .await;
        (r.status().as_u16(), r.json::<Value>().await.expect("json"))
    };
    assert_eq!(s, 409, "{body}");
    assert_eq!(body["error"]["code"], "already_running");
    // A recovery pass leaves a backup that is alive alone.
    let report = backups.recover_left().await.expect("recover");
    assert_eq!(report.backups_failed, 0);
    backups.finish(started).await.expect("finish");

    app.faults.arm(FaultPoint::BackupDumped);
    let err = backups
        .take(&tenant_row, &request)
        .await
        .expect_err("the fault fires");
    assert!(err.to_string().contains("injected fault"), "{err}");
    let left = backups.list(Some(id), 10).await.expect("list");
    let crashed = left
        .iter()
        .find(|b| b.status == BackupStatus::Running)
        .expect("left running");
    let dir = PathBuf::from(&crashed.location);
    assert!(
        dir.join("database.dump").is_file(),
        "the crash left a partial backup"
    );

    // The crashed backup's lock goes with its session, once the server notices.
    eventually(
        "the recovery pass takes over the crashed backup",
        || async {
            let report = backups.recover_left().await.expect("recover");
            if report.backups_failed == 1 {
                Ok(())
            } else {
                Err(report)
            }
        },
    )
    .await;
    let after = backups.fetch_of(id, crashed.id).await.expect("fetch");
    assert_eq!(after.status, BackupStatus::Failed);
    assert!(after.error.expect("error").contains("interrupted"));
    assert!(!dir.exists(), "partial files removed");
    // And the tenant can be backed up again.
    backups
        .take(&tenant_row, &request)
        .await
        .expect("backup after recovery");
}

#[tokio::test]
async fn a_restore_cut_short_before_its_swap_is_undone_and_after_it_finished() {
    let app = spawn_app().await;
    let (tenant, token) = seeded(&app, "phoenix").await;
    let db = tenant["db_name"].as_str().expect("db").to_string();
    let id: uuid::Uuid = tenant["id"].as_str().expect("id").parse().expect("uuid");
    let backup = backup_via_api(&app, "phoenix").await;
    let backup_id: uuid::Uuid = backup["id"].as_str().expect("id").parse().expect("uuid");
    let rows_at_backup = rows(&db).await;
    let files_at_backup = files(&app, "phoenix");
    change(&app, "phoenix", &token).await;
    let rows_changed = rows(&db).await;
    let files_changed = files(&app, "phoenix");
    let backups = &app.services.backups;
    let actor = Actor::system("test");
    let fetch = || tenant_row(&app, id);

    // Before the swap: the tenant stays in maintenance until the recovery pass undoes it.
    app.faults.arm(FaultPoint::RestoreLoaded);
    let checked = backups
        .check(&fetch().await, backup_id)
        .await
        .expect("check");
    let err = backups
        .restore(&fetch().await, &checked, &actor)
        .await
        .expect_err("the fault fires");
    assert!(err.to_string().contains("injected fault"), "{err}");
    let (s, body) = call(
        &app,
        Method::GET,
        "phoenix",
        "/api/v1/patients",
        &token,
        None,
    )
    .await;
    assert_eq!(s, 503, "{body}");
    assert_eq!(body["error"]["code"], "tenant_maintenance");
    // Nothing else changes the tenant while a restore holds it.
    let refused = app
        .delete("/api/owner/tenants/phoenix", Some(&app.token))
        .await;
    assert_eq!(refused.status(), 409);
    let err: Value = refused.json().await.expect("json");
    assert_eq!(err["error"]["code"], "tenant_in_maintenance", "{err}");
    // The crashed restore's lock goes with its session, once the server notices.
    eventually("the recovery pass undoes the crashed restore", || async {
        let report = backups.recover_left().await.expect("recover");
        if report.restores_undone == 1 {
            Ok(())
        } else {
            Err(report)
        }
    })
    .await;
    assert_eq!(
        rows(&db).await,
        rows_changed,
        "undone: the tenant as it was"
    );
    assert_eq!(files(&app, "phoenix"), files_changed);
    assert_eq!(leftovers(&app).await, (vec![], vec![]));
    let (s, _) = call(
        &app,
        Method::GET,
        "phoenix",
        "/api/v1/patients",
        &token,
        None,
    )
    .await;
    assert_eq!(s, 200, "served again");

    // After the database swap: the recovery pass finishes the files and the rest.
    app.faults.arm(FaultPoint::RestoreDatabaseSwapped);
    let err = backups
        .restore(&fetch().await, &checked, &actor)
        .await
        .expect_err("the fault fires");
    assert!(err.to_string().contains("injected fault"), "{err}");
    assert_eq!(
        fetch().await.maintenance.map(|m| m.by),
        Some(owner::maintenance::Holder::Restore)
    );
    eventually("the recovery pass finishes the crashed restore", || async {
        let report = backups.recover_left().await.expect("recover");
        if report.restores_finished == 1 {
            Ok(())
        } else {
            Err(report)
        }
    })
    .await;
    assert_eq!(
        rows(&db).await,
        rows_at_backup,
        "finished: the backup's rows"
    );
    assert_eq!(files(&app, "phoenix"), files_at_backup, "and its files");
    assert_eq!(fetch().await.maintenance, None);
    assert_eq!(leftovers(&app).await, (vec![], vec![]));
    let statuses: Vec<String> = app
        .owner_client()
        .await
        .query(
            "SELECT status || '/' || phase FROM tenant_restores ORDER BY started_at",
            &[],
        )
        .await
        .expect("restores")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(statuses, ["failed/loading", "succeeded/swapped"]);
    let (s, _) = call(
        &app,
        Method::GET,
        "phoenix",
        "/api/v1/patients",
        &token,
        None,
    )
    .await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn retention_removes_exactly_the_backups_the_policy_no_longer_keeps() {
    let app = spawn_app().await;
    let (tenant, _) = app.tenant_with_admin("keeper", "starter").await;
    let id: uuid::Uuid = tenant["id"].as_str().expect("id").parse().expect("uuid");
    let backups = &app.services.backups;
    let tenant_row = tenant_row(&app, id).await;
    let actor = Actor::system("test");
    let request = BackupRequest {
        kind: BackupKind::Scheduled,
        actor: &actor,
        migration_run_id: None,
    };
    let mut taken = Vec::new();
    for _ in 0..4 {
        taken.push(backups.take(&tenant_row, &request).await.expect("backup"));
    }
    let manual = backups
        .take(
            &tenant_row,
            &BackupRequest {
                kind: BackupKind::Manual,
                ..request
            },
        )
        .await
        .expect("manual");
    // Ages: now, 2 days, 3 days and 30 days; keep the newest of 2 days and of 0 weeks.
    let owner = app.owner_client().await;
    for (backup, days) in taken.iter().zip([0, 2, 3, 30]) {
        owner
            .execute(
                "UPDATE tenant_backups SET started_at = now() - make_interval(days => $2), \
                 finished_at = now() - make_interval(days => $2) + interval '1 second' WHERE id = $1",
                &[&backup.id, &days],
            )
            .await
            .expect("age");
    }
    owner
        .execute("UPDATE backup_policies SET keep_daily = 2, keep_weekly = 0 WHERE plan_code = 'starter'", &[])
        .await
        .expect("policy");
    let pruned = backups.prune(id).await.expect("prune");
    let mut removed = pruned.removed.clone();
    removed.sort();
    let mut expected = vec![taken[2].id, taken[3].id];
    expected.sort();
    assert_eq!(removed, expected, "the 3- and 30-day-old backups go");
    for (backup, gone) in taken.iter().zip([false, false, true, true]) {
        let now = backups.fetch_of(id, backup.id).await.expect("fetch");
        assert_eq!(now.status == BackupStatus::Removed, gone, "{}", backup.id);
        assert_eq!(
            Path::new(&backup.location).exists(),
            !gone,
            "{}",
            backup.location
        );
    }
    assert!(
        Path::new(&manual.location).exists(),
        "manual backups are not pruned"
    );
    assert!(
        backups.prune(id).await.expect("again").removed.is_empty(),
        "a second pass removes nothing"
    );
}

#[tokio::test]
async fn the_schedule_backs_up_due_tenants_once_and_the_restore_test_checks_one() {
    let root = tempfile::tempdir().expect("tempdir");
    let backup_root = root.path().join("backups");
    let app = spawn_app_with(|c| c.backup_root = Some(backup_root.clone())).await;
    seeded(&app, "sched-a").await;
    app.tenant_with_admin("sched-b", "enterprise").await;
    let backups = &app.services.backups;
    let report = backups.schedule_once().await.expect("schedule");
    assert_eq!(
        (report.due, report.taken, report.failed),
        (2, 2, 0),
        "{report:?}"
    );
    let report = backups.schedule_once().await.expect("schedule again");
    assert_eq!(report.due, 0, "nothing is due right after");
    let all = backups.list(None, 10).await.expect("list");
    assert_eq!(all.len(), 2);
    for b in &all {
        assert_eq!(b.kind, BackupKind::Scheduled);
        assert!(
            Path::new(&b.location).starts_with(backup_root.join(b.tenant_id.to_string())),
            "{}",
            b.location
        );
    }
    // An hourly plan is due again an hour later, a daily one is not.
    app.owner_client()
        .await
        .execute(
            "UPDATE tenant_backups SET started_at = started_at - interval '2 hours'",
            &[],
        )
        .await
        .expect("age");
    let report = backups.schedule_once().await.expect("schedule");
    assert_eq!((report.due, report.taken), (1, 1), "{report:?}");

    let test = backups
        .test_restore_once()
        .await
        .expect("test")
        .expect("a backup to test");
    assert!(test.ok, "{}", test.detail);
    let latest: Value = app
        .get("/api/owner/backups/restore-test", Some(&app.token))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(latest["latest"]["ok"], true, "{latest}");
    assert_eq!(leftovers(&app).await, (vec![], vec![]));
    let metrics = app.get("/metrics", None).await.text().await.expect("text");
    assert!(metrics.contains("backup_restore_test_ok 1"), "{metrics}");
}

#[tokio::test]
async fn an_export_holds_the_dump_every_table_as_json_lines_and_the_files() {
    let app = spawn_app().await;
    let (tenant, _) = seeded(&app, "leaving").await;
    let db = tenant["db_name"].as_str().expect("db").to_string();
    let response = app
        .get("/api/owner/tenants/leaving/export", Some(&app.token))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-tar");
    assert!(
        response.headers()["content-disposition"]
            .to_str()
            .expect("header")
            .contains("leaving-export-"),
    );
    let bytes = response.bytes().await.expect("body");
    let mut archive = tar::Archive::new(&bytes[..]);
    let mut entries: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        let name = entry.path().expect("path").display().to_string();
        let mut content = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut content).expect("read");
        entries.insert(name, content);
    }
    assert!(
        entries["database.dump"].starts_with(b"PGDMP"),
        "a pg_dump custom archive"
    );
    let manifest: Value = serde_json::from_slice(&entries["manifest.json"]).expect("manifest");
    assert_eq!(manifest["tenant_slug"], "leaving");
    let expected = rows(&db).await;
    for (table, lines) in &expected {
        let name = format!("tables/{table}.jsonl");
        let text = String::from_utf8(entries[&name].clone()).expect("utf-8");
        let mut exported: Vec<String> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l)
                    .expect("one JSON object per line")
                    .to_string()
            })
            .collect();
        exported.sort();
        let mut wanted: Vec<String> = lines
            .iter()
            .map(|l| serde_json::from_str::<Value>(l).expect("json").to_string())
            .collect();
        wanted.sort();
        assert_eq!(exported, wanted, "{table}");
        assert_eq!(manifest["tables"][table], lines.len());
    }
    for (path, content) in files(&app, "leaving") {
        assert_eq!(
            entries[&format!("files/{}", path.display())],
            content,
            "{}",
            path.display()
        );
    }
    assert!(!entries.keys().any(|k| k.starts_with("files/backups")));
    // Only operators who may write export; nothing is left on disk once it was sent.
    app.create_operator("viewer@example.com", "viewer").await;
    let viewer = app
        .login("viewer@example.com", crate::helpers::OPERATOR_PASSWORD)
        .await;
    let refused = app
        .get("/api/owner/tenants/leaving/export", Some(&viewer))
        .await;
    assert_eq!(refused.status(), 403);
    eventually("the export file is removed", || async {
        let left = std::fs::read_dir(app.storage_root.join(".exports"))
            .map(|d| d.count())
            .unwrap_or(0);
        if left == 0 { Ok(()) } else { Err(left) }
    })
    .await;
    assert_eq!(
        app.count("SELECT count(*) FROM audit_log WHERE action = 'tenant.export'")
            .await,
        1
    );
}

#[tokio::test]
async fn the_cli_backs_up_lists_restores_and_exports() {
    use clap::Parser;
    let app = spawn_app().await;
    let (tenant, token) = seeded(&app, "cli-kept").await;
    let db = tenant["db_name"].as_str().expect("db").to_string();
    let config = app.state.config.as_ref().clone();
    let run = |args: Vec<String>| {
        let config = config.clone();
        let mut argv = vec!["control-plane".to_string()];
        argv.extend(args);
        let cli = control_plane::cli::Cli::try_parse_from(argv).expect("parse");
        async move { cli.run(config).await }
    };
    let args = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
    run(args("tenants backup cli-kept --json"))
        .await
        .expect("backup");
    let rows_at_backup = rows(&db).await;
    let id = app
        .services
        .backups
        .list(None, 1)
        .await
        .expect("list")
        .first()
        .expect("one")
        .id;
    run(args("backups list cli-kept --json"))
        .await
        .expect("list");
    change(&app, "cli-kept", &token).await;
    assert_ne!(rows(&db).await, rows_at_backup);
    run(args(&format!(
        "tenants restore cli-kept --backup {id} --yes --json"
    )))
    .await
    .expect("restore");
    assert_eq!(rows(&db).await, rows_at_backup);
    let out = tempfile::tempdir().expect("tempdir");
    let file = out.path().join("export.tar");
    run(args(&format!(
        "tenants export cli-kept --out {}",
        file.display()
    )))
    .await
    .expect("export");
    assert!(std::fs::metadata(&file).expect("written").len() > 0);
    run(args(
        "backups set-policy pro --every-secs 21600 --keep-daily 14 --keep-weekly 2",
    ))
    .await
    .expect("set a policy");
    assert_eq!(
        app.count(
            "SELECT count(*) FROM backup_policies WHERE plan_code = 'pro' \
             AND every_secs = 21600 AND keep_daily = 14 AND keep_weekly = 2"
        )
        .await,
        1
    );
    for bad in [
        "backups set-policy pro --every-secs 10 --keep-daily 1 --keep-weekly 1",
        "backups set-policy pro --every-secs 3600 --keep-daily 0 --keep-weekly 0",
        "backups set-policy no-such-plan --every-secs 3600 --keep-daily 1 --keep-weekly 1",
    ] {
        assert!(run(args(bad)).await.is_err(), "{bad}");
    }
    assert_eq!(
        app.count(
            "SELECT count(*) FROM backup_policies WHERE plan_code = 'pro' AND every_secs = 21600"
        )
        .await,
        1,
        "refused changes change nothing"
    );
    run(args("backups policies --json"))
        .await
        .expect("policies");
    assert!(
        run(args(&format!(
            "tenants restore cli-kept --backup {} --yes",
            uuid::Uuid::new_v4()
        )))
        .await
        .is_err(),
        "an unknown backup"
    );
}

#[tokio::test]
async fn a_backup_root_that_cannot_be_written_stops_start_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, b"not a directory").expect("write");
    let mut config = control_plane::config::Config::defaults().expect("defaults");
    config.backup_root = Some(blocker.join("backups"));
    let err = control_plane::backups::Backups::check_root(config.backup_root.as_deref())
        .expect_err("refused");
    assert!(err.to_string().contains("CP_BACKUP_ROOT"), "{err}");
    let err = control_plane::config::Config::from_env([(
        "CP_BACKUP_ROOT".to_string(),
        blocker.display().to_string(),
    )])
    .expect_err("a file is not a directory");
    assert!(err.to_string().contains("CP_BACKUP_ROOT"), "{err}");
}

#[tokio::test]
async fn a_clone_whose_restore_dies_is_deleted_again_by_the_recovery_pass() {
    let app = spawn_app().await;
    let (source, _) = seeded(&app, "mother").await;
    let id: uuid::Uuid = source["id"].as_str().expect("id").parse().expect("uuid");
    let backup = backup_via_api(&app, "mother").await;
    let backup_id: uuid::Uuid = backup["id"].as_str().expect("id").parse().expect("uuid");
    let backups = &app.services.backups;
    let tenant = tenant_row(&app, id).await;
    let checked = backups.check(&tenant, backup_id).await.expect("check");
    app.faults.arm(FaultPoint::RestoreLoaded);
    let err = backups
        .restore_as_new(&checked, "daughter", &Actor::system("test"))
        .await
        .expect_err("the fault fires");
    assert!(err.to_string().contains("injected fault"), "{err}");
    // Provisioned, but in maintenance: never served with the template's empty database.
    let (s, body) = {
        let r = app
            .get_on("daughter.localhost", "/api/v1/status", &[])
            .await;
        (r.status().as_u16(), r.json::<Value>().await.expect("json"))
    };
    assert_eq!(s, 503, "{body}");
    assert_eq!(body["error"]["code"], "tenant_maintenance");
    // The crashed restore's lock goes with its session, once the server notices.
    eventually("the recovery pass undoes the crashed restore", || async {
        let report = backups.recover_left().await.expect("recover");
        if report.restores_undone == 1 {
            Ok(())
        } else {
            Err(report)
        }
    })
    .await;
    assert_eq!(
        app.count("SELECT count(*) FROM tenants WHERE slug = 'daughter' AND status = 'deleted'")
            .await,
        1,
        "the failed clone is deleted"
    );
    assert_eq!(leftovers(&app).await, (vec![], vec![]));
    assert!(!app.tenant_dirs().contains(&"daughter".to_string()));
}
