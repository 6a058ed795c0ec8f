//! A password change ends every other session of the account, tenant user or operator,
//! and the session that made the change goes on.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{OPERATOR_PASSWORD, TENANT_ADMIN_PASSWORD, spawn_app};

#[tokio::test]
async fn a_tenant_password_change_ends_the_users_other_sessions() {
    let app = spawn_app().await;
    app.tenant_with_admin("moving", "pro").await;
    let host = "moving.localhost";
    let login = json!({ "email": "admin@moving.example", "password": TENANT_ADMIN_PASSWORD });
    let sign_in = || async {
        let response = app
            .on(Method::POST, host, "/api/v1/auth/login", None, Some(&login))
            .await;
        assert_eq!(response.status(), 200);
        response.json::<Value>().await.expect("json")
    };
    let laptop = sign_in().await;
    let phone = sign_in().await;

    let change = json!({ "current_password": TENANT_ADMIN_PASSWORD, "new_password": "a-brand-new-password" });
    let changed = app
        .on(
            Method::POST,
            host,
            "/api/v1/auth/password",
            laptop["access_token"].as_str(),
            Some(&change),
        )
        .await;
    assert_eq!(changed.status(), 200);
    let changed: Value = changed.json().await.expect("json");

    let refresh = |token: &Value| {
        let body = json!({ "refresh_token": token });
        let app = &app;
        async move {
            app.on(
                Method::POST,
                host,
                "/api/v1/auth/refresh",
                None,
                Some(&body),
            )
            .await
            .status()
        }
    };
    assert_eq!(
        refresh(&phone["refresh_token"]).await,
        401,
        "the other session's refresh token is revoked"
    );
    // The session that changed the password goes on with the pair it was given.
    assert_eq!(
        app.on(
            Method::GET,
            host,
            "/api/v1/me",
            changed["access_token"].as_str(),
            None
        )
        .await
        .status(),
        200
    );
    assert_eq!(refresh(&changed["refresh_token"]).await, 200);
}

#[tokio::test]
async fn an_operators_password_change_ends_their_other_sessions() {
    let app = spawn_app().await;
    app.create_operator("mover@example.com", "admin").await;
    let laptop = app.login("mover@example.com", OPERATOR_PASSWORD).await;
    let phone = app.login("mover@example.com", OPERATOR_PASSWORD).await;
    let untouched = app.token.clone();

    let changed = app
        .post_json(
            "/api/owner/me/password",
            Some(&laptop),
            &json!({ "current_password": OPERATOR_PASSWORD, "new_password": "a-brand-new-password" }),
        )
        .await;
    assert_eq!(changed.status(), 204);

    let me = |token: String| {
        let app = &app;
        async move { app.get("/api/owner/me", Some(&token)).await.status() }
    };
    assert_eq!(me(phone).await, 401, "the other session is revoked");
    assert_eq!(
        me(laptop).await,
        200,
        "the session that made the change goes on"
    );
    assert_eq!(
        me(untouched).await,
        200,
        "other operators' sessions are untouched"
    );
    app.login("mover@example.com", "a-brand-new-password").await;
}
