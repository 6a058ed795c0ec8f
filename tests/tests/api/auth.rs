//! Operator authentication and roles on the owner API.

use serde_json::{Value, json};

use crate::helpers::{OPERATOR_PASSWORD, spawn_app};

#[tokio::test]
async fn owner_api_requires_a_valid_operator_token() {
    let app = spawn_app().await;
    for token in [
        None,
        Some("garbage"),
        Some("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."),
    ] {
        let response = app.get("/api/owner/tenants", token).await;
        assert_eq!(response.status(), 401, "token {token:?}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["error"]["code"], "unauthenticated");
    }
    // A token signed with another installation's key is refused.
    let other = spawn_app().await;
    let response = app.get("/api/owner/tenants", Some(&other.token)).await;
    assert_eq!(response.status(), 401);
    // A tampered token is refused.
    let mut tampered = app.token.clone();
    let last = tampered.pop().expect("char");
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(
        app.get("/api/owner/tenants", Some(&tampered))
            .await
            .status(),
        401
    );
    assert_eq!(
        app.get("/api/owner/tenants", Some(&app.token))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn wrong_passwords_are_refused_and_audited() {
    let app = spawn_app().await;
    for (email, password) in [
        ("owner@example.com", "wrong-password"),
        ("nobody@example.com", OPERATOR_PASSWORD),
    ] {
        let response = app
            .post_json(
                "/api/owner/auth/login",
                None,
                &json!({ "email": email, "password": password }),
            )
            .await;
        assert_eq!(response.status(), 401, "{email}");
    }
    assert_eq!(
        app.count("SELECT count(*) FROM audit_log WHERE action = 'operator.login_failed'")
            .await,
        2
    );
    assert!(
        app.count("SELECT count(*) FROM audit_log WHERE action = 'operator.login'")
            .await
            >= 1
    );
}

#[tokio::test]
async fn viewers_can_look_but_not_change() {
    let app = spawn_app().await;
    let tenant = app.create_tenant("watched").await;
    let id = tenant["id"].as_str().expect("id");
    app.create_operator("viewer@example.com", "viewer").await;
    let viewer = app.login("viewer@example.com", OPERATOR_PASSWORD).await;
    assert_eq!(
        app.get("/api/owner/tenants", Some(&viewer)).await.status(),
        200
    );
    assert_eq!(
        app.get(&format!("/api/owner/tenants/{id}"), Some(&viewer))
            .await
            .status(),
        200
    );
    let attempts = [
        app.post_json(
            "/api/owner/tenants",
            Some(&viewer),
            &json!({ "slug": "nope", "name": "Nope" }),
        )
        .await,
        app.post_json(
            &format!("/api/owner/tenants/{id}/suspend"),
            Some(&viewer),
            &json!({}),
        )
        .await,
        app.post_json(
            &format!("/api/owner/tenants/{id}/resume"),
            Some(&viewer),
            &json!({}),
        )
        .await,
        app.delete(&format!("/api/owner/tenants/{id}"), Some(&viewer))
            .await,
    ];
    for response in attempts {
        assert_eq!(response.status(), 403);
    }
    assert_eq!(
        app.count("SELECT count(*) FROM tenants WHERE status = 'active'")
            .await,
        1
    );

    // A disabled operator's token stops working at once.
    app.owner_client()
        .await
        .execute(
            "UPDATE owner_users SET status = 'disabled' WHERE email = 'viewer@example.com'",
            &[],
        )
        .await
        .expect("disable");
    assert_eq!(
        app.get("/api/owner/tenants", Some(&viewer)).await.status(),
        401
    );
}

#[tokio::test]
async fn a_failed_sign_in_says_wrong_email_or_password_whichever_it_was() {
    let app = spawn_app().await;
    for (email, password) in [
        ("owner@example.com", "not-the-password"),
        ("nobody@example.com", OPERATOR_PASSWORD),
    ] {
        let response = app
            .post_json(
                "/api/owner/auth/login",
                None,
                &json!({ "email": email, "password": password }),
            )
            .await;
        assert_eq!(response.status(), 401, "{email}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(
            (
                body["error"]["code"].as_str(),
                body["error"]["message"].as_str()
            ),
            (Some("wrong_credentials"), Some("wrong email or password")),
            "{email}"
        );
    }
}
