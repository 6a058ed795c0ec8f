//! Master key rotation: rotate, rewrap (online, resumable, giving tenants without a data
//! key one), retire; tenants' secrets sealed with their own data keys, bound to them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use base64::Engine;
use control_plane::audit::Actor;
use control_plane::config::MasterKeySource;
use control_plane::services::TenantRole;
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};

use crate::helpers::{TestApp, spawn_app_with};

fn random_key() -> String {
    let bytes: Vec<u8> = (0..2)
        .flat_map(|_| *uuid::Uuid::new_v4().as_bytes())
        .collect();
    base64::prelude::BASE64_STANDARD.encode(bytes)
}

/// A service configured with two master key versions, sealing with version 1.
async fn two_key_app() -> TestApp {
    let spec = format!("1:{},2:{}", random_key(), random_key());
    let app =
        spawn_app_with(|c| c.master_key = MasterKeySource::Inline(SecretString::from(spec))).await;
    assert_eq!(
        app.services
            .keys
            .rotate(&Actor::cli(), Some(1))
            .await
            .expect("v1"),
        1
    );
    app
}

async fn tenant_row(app: &TestApp, slug: &str) -> owner::tenants::Tenant {
    let conn = app.services.owner.conn().await.expect("owner");
    owner::tenants::tenant_fetch_by_slug(&**conn, slug)
        .await
        .expect("tenant")
}

/// Puts tenant `slug` back to how tenants made before data keys were stored: passwords
/// sealed with the master key directly.
async fn make_legacy(app: &TestApp, slug: &str) {
    let t = tenant_row(app, slug).await;
    let access = &app.services.access;
    let seal = |role: TenantRole, purpose: &str| {
        let password = access.password(&t, role).expect("password");
        access
            .keyring()
            .seal(
                password.expose_secret().as_bytes(),
                &format!("tenant:{}:{purpose}", t.id),
            )
            .expect("seal")
    };
    let (version, owner_enc) = seal(TenantRole::Owner, "db-owner");
    let (_, runtime_enc) = seal(TenantRole::Runtime, "db-runtime");
    app.owner_client()
        .await
        .execute(
            "UPDATE tenants SET data_key_enc = NULL, secret_key_version = $2, \
             owner_password_enc = $3, runtime_password_enc = $4 WHERE id = $1",
            &[&t.id, &version, &owner_enc, &runtime_enc],
        )
        .await
        .expect("legacy row");
    app.state.gateway.forget(Some(t.id)).await;
}

#[tokio::test]
async fn rotate_and_rewrap_while_tenants_are_served_then_retire_the_old_version() {
    let app = two_key_app().await;
    let (_, token) = app.tenant_with_admin("ka", "free").await;
    app.create_tenant("kb").await;
    app.create_tenant("kc").await;
    make_legacy(&app, "kc").await;
    let status = app.services.keys.status().await.expect("status");
    assert_eq!(status.sealing_version, 1);
    let v1 = status.versions.iter().find(|v| v.version == 1).expect("v1");
    assert_eq!(
        (v1.usage.tenant_data_keys, v1.usage.tenant_passwords),
        (2, 1)
    );
    assert_eq!(v1.share, 100.0);

    // Requests run all along: a signed-in user of a tenant with a data key, and the
    // tenant without one (through its pool: its password must keep opening).
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let load = {
        let (stop, served) = (Arc::clone(&stop), Arc::clone(&served));
        let (http, address) = (app.http.clone(), app.address.clone());
        tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                for (host, path, bearer) in [
                    ("ka.localhost", "/api/v1/me", Some(&token)),
                    ("kc.localhost", "/api/v1/status", None),
                ] {
                    let mut request = http
                        .request(Method::GET, format!("{address}{path}"))
                        .header("host", host);
                    if let Some(token) = bearer {
                        request = request.bearer_auth(token);
                    }
                    let status = request.send().await.map(|r| r.status().as_u16());
                    match status {
                        Ok(200) => {
                            served.fetch_add(1, Ordering::SeqCst);
                        }
                        other => failures.push(format!("{host}{path}: {other:?}")),
                    }
                }
            }
            failures
        })
    };
    let keys = &app.services.keys;
    assert_eq!(keys.rotate(&Actor::cli(), None).await.expect("rotate"), 2);

    // A run cut short (here: told to stop after one tenant) leaves the others as they
    // were; the next run carries on.
    let quiet = |_: usize, _: i64| {};
    let first = keys
        .rewrap(&Actor::cli(), Some(1), &quiet)
        .await
        .expect("rewrap one");
    assert_eq!(first.remaining, 2, "{first:?}");
    let refused = keys.retire(&Actor::cli(), 1).await;
    assert!(
        matches!(
            refused,
            Err(control_plane::Error::Conflict("key_in_use", _))
        ),
        "{refused:?}"
    );
    let rest = keys
        .rewrap(&Actor::cli(), None, &quiet)
        .await
        .expect("rewrap");
    assert_eq!(rest.remaining, 0, "{rest:?}");
    assert_eq!(
        first.tenants_rewrapped
            + first.tenants_given_data_keys
            + rest.tenants_rewrapped
            + rest.tenants_given_data_keys,
        3
    );
    assert_eq!(
        first.tenants_given_data_keys + rest.tenants_given_data_keys,
        1,
        "kc got a data key"
    );

    // Every pool is built again from the rewrapped rows while requests keep coming.
    let before = served.load(Ordering::SeqCst);
    app.state.gateway.forget(None).await;
    crate::helpers::eventually("requests are served after the rewrap", || async {
        let now = served.load(Ordering::SeqCst);
        if now >= before + 20 { Ok(()) } else { Err(now) }
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let failures = load.await.expect("load");
    assert!(failures.is_empty(), "failed requests: {failures:?}");

    let status = keys.status().await.expect("status");
    let v2 = status.versions.iter().find(|v| v.version == 2).expect("v2");
    assert_eq!(
        (v2.usage.tenant_data_keys, v2.usage.tenant_passwords),
        (3, 0)
    );
    assert_eq!(status.tenants_to_rewrap, 0);
    assert!(tenant_row(&app, "kc").await.data_key_enc.is_some());
    keys.retire(&Actor::cli(), 1).await.expect("retire");
    assert!(
        keys.rotate(&Actor::cli(), Some(1)).await.is_err(),
        "a retired version seals nothing again"
    );
    assert!(
        keys.retire(&Actor::cli(), 2).await.is_err(),
        "the sealing version"
    );
    let audited = app
        .count("SELECT count(*) FROM audit_log WHERE action IN ('keys.rotate', 'keys.rewrap', 'keys.retire')")
        .await;
    assert_eq!(audited, 2 + 2 + 1);

    // A process configured with version 2 only now starts: nothing needs version 1.
    let mut config = app.state.config.as_ref().clone();
    let MasterKeySource::Inline(spec) = &config.master_key else {
        panic!("inline key")
    };
    let v2_only = spec
        .expose_secret()
        .split(',')
        .find(|p| p.starts_with("2:"))
        .expect("v2")
        .to_string();
    config.master_key = MasterKeySource::Inline(SecretString::from(v2_only));
    let later = control_plane::Services::init(
        config,
        Arc::new(control_plane::provisioning::Faults::default()),
    )
    .await
    .expect("starts with version 2 only");
    let kb = tenant_row(&app, "kb").await;
    later
        .access
        .password(&kb, TenantRole::Runtime)
        .expect("opens with version 2 alone");
}

#[tokio::test]
async fn a_ciphertext_copied_to_another_tenants_row_does_not_open() {
    let app = two_key_app().await;
    app.create_tenant("own").await;
    app.create_tenant("other").await;
    let own = tenant_row(&app, "own").await;
    let other = tenant_row(&app, "other").await;
    // Its data key copied: bound to its tenant, it does not open on the other row.
    app.owner_client()
        .await
        .execute(
            "UPDATE tenants SET data_key_enc = $2, owner_password_enc = $3, \
             runtime_password_enc = $4, secret_key_version = $5 WHERE id = $1",
            &[
                &other.id,
                &own.data_key_enc,
                &own.owner_password_enc,
                &own.runtime_password_enc,
                &own.secret_key_version,
            ],
        )
        .await
        .expect("copy");
    app.state.gateway.forget(None).await;
    let copied = tenant_row(&app, "other").await;
    assert!(
        app.services
            .access
            .password(&copied, TenantRole::Runtime)
            .is_err()
    );
    let (status, code) = crate::helpers::status_on(&app, "other.localhost").await;
    assert_eq!((status, code.as_deref()), (503, Some("tenant_unavailable")));
    assert_eq!(
        crate::helpers::status_on(&app, "own.localhost").await.0,
        200
    );

    // Its own data key with the other's passwords: bound to the tenant too.
    app.owner_client()
        .await
        .execute(
            "UPDATE tenants SET data_key_enc = $2, secret_key_version = $3 WHERE id = $1",
            &[&other.id, &other.data_key_enc, &other.secret_key_version],
        )
        .await
        .expect("own key back");
    let mixed = tenant_row(&app, "other").await;
    assert!(
        app.services
            .access
            .password(&mixed, TenantRole::Runtime)
            .is_err()
    );

    // An unconfigured version cannot be made the sealing one.
    assert!(
        app.services
            .keys
            .rotate(&Actor::cli(), Some(3))
            .await
            .is_err()
    );
}
