//! Plan limits hold under parallel requests: the check and the write they guard are one
//! step, so a burst of requests cannot all pass the check before any of them writes.

use futures::future::join_all;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, pg, spawn_app};

#[tokio::test]
async fn parallel_user_creations_stop_at_the_plans_user_limit() {
    let app = spawn_app().await;
    // Plan "free" allows 3 active users; the admin is the first.
    let (tenant, admin) = app.tenant_with_admin("burst", "free").await;
    let attempts = (0..12).map(|i| {
        let body = json!({
            "email": format!("user{i}@burst.example"),
            "role": "staff",
            "password": "user-password-1",
        });
        let app = &app;
        let admin = &admin;
        async move {
            let response = app
                .on(
                    Method::POST,
                    "burst.localhost",
                    "/api/v1/users",
                    Some(admin),
                    Some(&body),
                )
                .await;
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    });
    let outcomes = join_all(attempts).await;
    let created = outcomes.iter().filter(|(s, _)| *s == 201).count();
    assert_eq!(created, 2, "{outcomes:?}");
    for (status, body) in outcomes.iter().filter(|(s, _)| *s != 201) {
        assert_eq!(
            (*status, body["error"]["code"].as_str()),
            (409, Some("plan_limit")),
            "{body}"
        );
    }
    let users: i64 = pg(tenant["db_name"].as_str().expect("db"))
        .await
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(users, 3, "the plan's limit, admin included");
}

#[tokio::test]
async fn re_enabling_a_user_counts_against_the_plans_user_limit() {
    let app = spawn_app().await;
    let (_, admin) = app.tenant_with_admin("swap", "free").await;
    let create = |email: &'static str| {
        let body = json!({ "email": email, "role": "staff", "password": "user-password-1" });
        let app = &app;
        let admin = &admin;
        async move {
            let response = app
                .on(
                    Method::POST,
                    "swap.localhost",
                    "/api/v1/users",
                    Some(admin),
                    Some(&body),
                )
                .await;
            assert_eq!(response.status(), 201, "{email}");
            response.json::<Value>().await.expect("json")["id"]
                .as_str()
                .expect("id")
                .to_string()
        }
    };
    let first = create("first@swap.example").await;
    create("second@swap.example").await;
    let path = format!("/api/v1/users/{first}");
    let set = |status: &'static str| {
        let body = json!({ "status": status });
        let (app, admin, path) = (&app, &admin, &path);
        async move {
            let response = app
                .on(
                    Method::PATCH,
                    "swap.localhost",
                    path,
                    Some(admin),
                    Some(&body),
                )
                .await;
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    assert_eq!(set("disabled").await.0, 200);
    create("third@swap.example").await;
    let (status, body) = set("active").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("plan_limit")),
        "{body}"
    );
    assert_eq!(
        set("disabled").await.0,
        200,
        "an allowed change still works"
    );
}

/// A plan with a 100 KB storage quota, and a tenant on it with its admin's token.
async fn tenant_with_quota(app: &TestApp, slug: &str) -> (Value, String) {
    app.owner_client()
        .await
        .execute(
            "INSERT INTO subscription_plans (code, name, max_storage_bytes, features) \
             VALUES ('quota100k', 'Quota 100k', 100000, '[\"files\"]') ON CONFLICT DO NOTHING",
            &[],
        )
        .await
        .expect("plan");
    app.tenant_with_admin(slug, "quota100k").await
}

async fn stored_bytes(tenant: &Value) -> (i64, i64) {
    let row = pg(tenant["db_name"].as_str().expect("db"))
        .await
        .query_one(
            "SELECT count(*), coalesce(sum(size_bytes), 0)::bigint FROM files",
            &[],
        )
        .await
        .expect("sum");
    (row.get(0), row.get(1))
}

/// Regular files in the tenant's tree, temporary ones included.
fn files_on_disk(app: &TestApp, slug: &str) -> usize {
    fn walk(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| {
                let path = e.path();
                if path.is_dir() { walk(&path) } else { 1 }
            })
            .sum()
    }
    walk(&app.storage_root.join("tenants").join(slug))
}

#[tokio::test]
async fn parallel_uploads_with_a_declared_length_never_pass_the_quota() {
    let app = spawn_app().await;
    let (tenant, token) = tenant_with_quota(&app, "packed").await;
    let uploads = (0..10).map(|i| {
        let request = app
            .http
            .post(format!(
                "{}/api/v1/files/uploads?name=part{i}.bin",
                app.address
            ))
            .header("host", "packed.localhost")
            .bearer_auth(&token)
            .body(vec![7u8; 60_000]);
        async move {
            let response = request.send().await.expect("request");
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    });
    let outcomes = join_all(uploads).await;
    assert_eq!(
        outcomes.iter().filter(|(s, _)| *s == 201).count(),
        1,
        "{outcomes:?}"
    );
    for (status, body) in outcomes.iter().filter(|(s, _)| *s != 201) {
        assert_eq!(
            (*status, body["error"]["code"].as_str()),
            (507, Some("storage_quota")),
            "{body}"
        );
    }
    assert_eq!(stored_bytes(&tenant).await, (1, 60_000));
    assert_eq!(
        files_on_disk(&app, "packed"),
        1,
        "refused uploads left files"
    );
}

/// A chunked upload (no Content-Length) over a raw connection; the status code.
async fn chunked_upload(app: &TestApp, slug: &str, token: &str, name: &str, size: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /api/v1/files/uploads?name={name} HTTP/1.1\r\nHost: {slug}.localhost\r\n\
         Authorization: Bearer {token}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    let chunk = vec![9u8; 8_000];
    let mut sent = 0;
    while sent < size {
        let n = chunk.len().min(size - sent);
        let mut frame = format!("{n:x}\r\n").into_bytes();
        frame.extend_from_slice(&chunk[..n]);
        frame.extend_from_slice(b"\r\n");
        // A refused upload may be answered (and closed) before the body is all sent.
        if stream.write_all(&frame).await.is_err() {
            break;
        }
        sent += n;
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"))
}

#[tokio::test]
async fn parallel_uploads_of_unknown_length_never_pass_the_quota() {
    let app = spawn_app().await;
    let (tenant, token) = tenant_with_quota(&app, "streamed").await;
    let names: Vec<String> = (0..10).map(|i| format!("s{i}.bin")).collect();
    let statuses = join_all(
        names
            .iter()
            .map(|name| chunked_upload(&app, "streamed", &token, name, 60_000)),
    )
    .await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 507),
        "{statuses:?}"
    );
    assert_eq!(stored_bytes(&tenant).await, (1, 60_000));
    assert_eq!(files_on_disk(&app, "streamed"), 1);
    // What the refused uploads reserved was given back: 40 KB still fit.
    assert_eq!(
        chunked_upload(&app, "streamed", &token, "small.bin", 40_000).await,
        201
    );
    assert_eq!(stored_bytes(&tenant).await, (2, 100_000));
}
