//! Tenant sign-in is throttled per account and per client address, from the tenant's own
//! audit log, and the throttle lifts by itself when the failures leave the window.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TENANT_ADMIN_PASSWORD, TestApp, pg, spawn_app_with};

/// A login as if from `address` (the service trusts 127.0.0.1 as its proxy here).
async fn login_from(
    app: &TestApp,
    address: &str,
    email: &str,
    password: &str,
) -> (u16, Value, Option<u64>) {
    let response = app
        .http
        .post(format!("{}/api/v1/auth/login", app.address))
        .header("host", "guarded.localhost")
        .header("x-forwarded-for", format!("198.51.100.250, {address}"))
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    (
        status,
        response.json().await.unwrap_or(Value::Null),
        retry_after,
    )
}

#[tokio::test]
async fn failed_tenant_sign_ins_are_throttled_per_account_and_per_address() {
    let app = spawn_app_with(|c| c.trusted_proxies = vec!["127.0.0.1".parse().expect("ip")]).await;
    let (tenant, admin_token) = app.tenant_with_admin("guarded", "pro").await;
    let db = pg(tenant["db_name"].as_str().expect("db")).await;
    let admin = "admin@guarded.example";
    let staff = json!({ "email": "staff@guarded.example", "role": "staff", "password": "staff-password-1" });
    let created = app
        .on(
            Method::POST,
            "guarded.localhost",
            "/api/v1/users",
            Some(&admin_token),
            Some(&staff),
        )
        .await;
    assert_eq!(created.status(), 201);

    // Five wrong passwords for the admin: then even the right one is throttled.
    for _ in 0..5 {
        let (status, body, _) = login_from(&app, "203.0.113.1", admin, "wrong-password").await;
        assert_eq!(status, 401, "{body}");
    }
    let (status, body, retry_after) =
        login_from(&app, "203.0.113.1", admin, TENANT_ADMIN_PASSWORD).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (429, Some("too_many_attempts")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    assert!(
        retry_after.is_some_and(|s| (1..=900).contains(&s)),
        "Retry-After: {retry_after:?}"
    );
    // From another address too: the account is what is throttled...
    assert_eq!(
        login_from(&app, "203.0.113.2", admin, TENANT_ADMIN_PASSWORD)
            .await
            .0,
        429
    );
    // ...not the address, whose other accounts still sign in.
    assert_eq!(
        login_from(
            &app,
            "203.0.113.1",
            "staff@guarded.example",
            "staff-password-1"
        )
        .await
        .0,
        200
    );

    let count = |sql: &'static str| {
        let db = &db;
        async move { db.query_one(sql, &[]).await.expect(sql).get::<_, i64>(0) }
    };
    assert_eq!(
        count("SELECT count(*) FROM audit_log WHERE action = 'user.login_failed' AND target_id = 'admin@guarded.example' AND ip = '203.0.113.1'").await,
        5
    );
    assert_eq!(
        count("SELECT count(*) FROM audit_log WHERE action = 'user.login_throttled'").await,
        2
    );

    // Hammering a throttled account does not extend its lock: once the failures are
    // older than the window (aged here by hand), the right password works again.
    for _ in 0..3 {
        assert_eq!(
            login_from(&app, "203.0.113.3", admin, "wrong-password")
                .await
                .0,
            429
        );
    }
    db.execute(
        "UPDATE audit_log SET at = at - interval '16 minutes' WHERE action IN ('user.login_attempt', 'user.login_failed')",
        &[],
    )
    .await
    .expect("age");
    assert_eq!(
        login_from(&app, "203.0.113.3", admin, TENANT_ADMIN_PASSWORD)
            .await
            .0,
        200
    );

    // Thirty failures from one address, over many (unknown) accounts: that address is
    // throttled for every account, other addresses are not.
    for i in 0..30 {
        let (status, _, _) = login_from(
            &app,
            "203.0.113.9",
            &format!("nobody{i}@guarded.example"),
            "x",
        )
        .await;
        assert_eq!(status, 401, "attempt {i}");
    }
    assert_eq!(
        login_from(
            &app,
            "203.0.113.9",
            "staff@guarded.example",
            "staff-password-1"
        )
        .await
        .0,
        429
    );
    assert_eq!(
        login_from(
            &app,
            "203.0.113.10",
            "staff@guarded.example",
            "staff-password-1"
        )
        .await
        .0,
        200
    );
}

#[tokio::test]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    let app = spawn_app_with(|_| {}).await;
    let (tenant, _) = app.tenant_with_admin("guarded", "pro").await;
    // Without a trusted proxy, X-Forwarded-For is the client's to choose: ignored.
    for i in 0..5 {
        let (status, _, _) = login_from(
            &app,
            &format!("192.0.2.{i}"),
            "admin@guarded.example",
            "wrong",
        )
        .await;
        assert_eq!(status, 401);
    }
    let ips: Vec<Option<String>> = pg(tenant["db_name"].as_str().expect("db"))
        .await
        .query(
            "SELECT DISTINCT ip FROM audit_log WHERE action = 'user.login_failed'",
            &[],
        )
        .await
        .expect("ips")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ips, vec![Some("127.0.0.1".to_string())]);
}
