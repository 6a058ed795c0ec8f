//! "Which tenants am I in?": the email index the tenant API keeps, its rebuild, and the
//! public flow that answers alike for every address and lists tenants only to whoever
//! reads the code mailed to it (dev mode: mail is files in the data folder).

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, eventually, spawn_app};

async fn public(app: &TestApp, path: &str, body: &Value) -> (u16, Value) {
    let response = app.post_json(path, None, body).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The messages written to the dev mail folder.
fn mails(app: &TestApp) -> Vec<String> {
    let dir = app.state.config.data_dir.join("mail");
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    out.sort();
    out
}

async fn indexed(app: &TestApp, email: &str) -> i64 {
    app.owner_client()
        .await
        .query_one(
            "SELECT count(*) FROM tenant_user_emails WHERE email = $1",
            &[&email],
        )
        .await
        .expect("index")
        .get(0)
}

async fn add_user(app: &TestApp, slug: &str, admin: &str, email: &str) -> Value {
    let response = app
        .on(
            Method::POST,
            &format!("{slug}.localhost"),
            "/api/v1/users",
            Some(admin),
            Some(&json!({ "email": email, "role": "staff", "password": "vet-password-12" })),
        )
        .await;
    assert_eq!(response.status(), 201);
    response.json().await.expect("user")
}

/// Waits until no background task (the mailing) is left.
async fn mail_settled(app: &TestApp) {
    eventually("the mail tasks to finish", || async {
        match app.state.tasks.len() {
            0 => Ok(()),
            n => Err(n),
        }
    })
    .await;
}

#[tokio::test]
async fn the_answer_is_the_same_for_every_address_and_the_code_lists_the_tenants() {
    let app = spawn_app().await;
    let (_, a) = app.tenant_with_admin("clinic-a", "free").await;
    let (_, b) = app.tenant_with_admin("clinic-b", "free").await;
    add_user(&app, "clinic-a", &a, "Vet@Shared.example").await;
    add_user(&app, "clinic-b", &b, "vet@shared.example").await;
    assert_eq!(indexed(&app, "vet@shared.example").await, 2);

    let (status, unknown) = public(
        &app,
        "/api/public/find-tenants",
        &json!({ "email": "nobody@nowhere.example" }),
    )
    .await;
    assert_eq!(status, 202);
    let (status, known) = public(
        &app,
        "/api/public/find-tenants",
        &json!({ "email": "VET@shared.example" }),
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(known, unknown, "the same answer whatever the address");
    let codes = app
        .count("SELECT count(*) FROM find_tenant_codes WHERE email IN ('nobody@nowhere.example', 'vet@shared.example')")
        .await;
    assert_eq!(codes, 2, "a code is made either way");
    mail_settled(&app).await;
    let sent = mails(&app);
    assert_eq!(
        sent.len(),
        1,
        "mail only to the address with accounts: {sent:?}"
    );
    assert!(sent[0].contains("To: vet@shared.example"), "{}", sent[0]);
    let code: String = sent[0]
        .lines()
        .find_map(|l| l.strip_prefix("Your code: "))
        .expect("a code in the mail")
        .trim()
        .to_string();
    assert_eq!(code.len(), 6);

    // Wrong, unknown and never-sent codes are refused alike.
    for (email, code) in [
        ("vet@shared.example", "000000x"),
        ("nobody@nowhere.example", code.as_str()),
        (
            "vet@shared.example",
            if code == "123456" { "654321" } else { "123456" },
        ),
    ] {
        let (status, answer) = public(
            &app,
            "/api/public/find-tenants/verify",
            &json!({ "email": email, "code": code }),
        )
        .await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (401, Some("invalid_code"))
        );
    }
    let (status, found) = public(
        &app,
        "/api/public/find-tenants/verify",
        &json!({ "email": "vet@shared.example", "code": code }),
    )
    .await;
    assert_eq!(status, 200, "{found}");
    let slugs: Vec<&str> = found["tenants"]
        .as_array()
        .expect("tenants")
        .iter()
        .filter_map(|t| t["slug"].as_str())
        .collect();
    assert_eq!(slugs, ["clinic-a", "clinic-b"]);
    assert!(
        found["tenants"][0]["login_url"]
            .as_str()
            .is_some_and(|u| u.starts_with("http://clinic-a.localhost:")),
        "{found}"
    );
    let (status, _) = public(
        &app,
        "/api/public/find-tenants/verify",
        &json!({ "email": "vet@shared.example", "code": code }),
    )
    .await;
    assert_eq!(status, 401, "a code works once");

    // Bad input: a clear error, nothing recorded.
    let before = app.count("SELECT count(*) FROM find_tenant_codes").await;
    let (status, answer) = public(
        &app,
        "/api/public/find-tenants",
        &json!({ "email": "not-an-address" }),
    )
    .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (422, Some("invalid_email"))
    );
    let (status, _) = public(
        &app,
        "/api/public/find-tenants",
        &json!({ "mail": "x@y.example" }),
    )
    .await;
    assert_eq!(status, 422);
    let raw = app
        .http
        .post(format!("{}/api/public/find-tenants", app.address))
        .header("content-type", "application/json")
        .body("{\"email\": ")
        .send()
        .await
        .expect("request");
    assert_eq!(raw.status(), 400);
    assert_eq!(
        app.count("SELECT count(*) FROM find_tenant_codes").await,
        before
    );

    // An address gets at most three codes in a quarter of an hour (the answer stays the
    // same); a client address at most twenty requests.
    for _ in 0..3 {
        let (status, answer) = public(
            &app,
            "/api/public/find-tenants",
            &json!({ "email": "nobody@nowhere.example" }),
        )
        .await;
        assert_eq!((status, &answer), (202, &unknown));
    }
    assert_eq!(
        app.count("SELECT count(*) FROM find_tenant_codes WHERE email = 'nobody@nowhere.example'")
            .await,
        3
    );
    let mut statuses = Vec::new();
    for i in 0..20 {
        let (status, _) = public(
            &app,
            "/api/public/find-tenants",
            &json!({ "email": format!("someone{i}@nowhere.example") }),
        )
        .await;
        statuses.push(status);
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    mail_settled(&app).await;
    assert_eq!(mails(&app).len(), 1, "still only the one mail");
}

#[tokio::test]
async fn the_index_follows_users_and_is_rebuilt_from_the_tenant_databases() {
    let app = spawn_app().await;
    let (_, admin) = app.tenant_with_admin("idx", "free").await;
    assert_eq!(
        indexed(&app, "admin@idx.example").await,
        1,
        "the first admin"
    );
    let user = add_user(&app, "idx", &admin, "nurse@idx.example").await;
    assert_eq!(indexed(&app, "nurse@idx.example").await, 1);
    let id = user["id"].as_str().expect("id");
    let path = format!("/api/v1/users/{id}");
    for (status, present) in [("disabled", 0), ("active", 1)] {
        let response = app
            .on(
                Method::PATCH,
                "idx.localhost",
                &path,
                Some(&admin),
                Some(&json!({ "status": status })),
            )
            .await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            indexed(&app, "nurse@idx.example").await,
            present,
            "{status}"
        );
    }
    let response = app
        .on(Method::DELETE, "idx.localhost", &path, Some(&admin), None)
        .await;
    assert_eq!(response.status(), 204);
    assert_eq!(indexed(&app, "nurse@idx.example").await, 0);

    // Lost updates are repaired by a rebuild.
    add_user(&app, "idx", &admin, "vet@idx.example").await;
    app.owner_client()
        .await
        .execute("DELETE FROM tenant_user_emails", &[])
        .await
        .expect("clear");
    let (done, failed) = app.services.finder.reindex(&[]).await.expect("reindex");
    assert_eq!((done, failed.len()), (1, 0));
    assert_eq!(indexed(&app, "admin@idx.example").await, 1);
    assert_eq!(indexed(&app, "vet@idx.example").await, 1);
}
