//! Files in the tenant's storage tree: streamed uploads with a per-file limit and the
//! plan's quota, downloads, deletes; refused uploads and path tricks leave nothing behind.

use reqwest::Method;
use serde_json::Value;

use crate::helpers::{TestApp, spawn_app_with};

async fn upload(
    app: &TestApp,
    slug: &str,
    token: &str,
    path: &str,
    bytes: Vec<u8>,
) -> (u16, Value) {
    let response = app
        .http
        .post(format!("{}{path}", app.address))
        .header("host", format!("{slug}.localhost"))
        .header("content-type", "image/png")
        .bearer_auth(token)
        .body(bytes)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Every regular file under the tenant's tree (no directories).
fn files_on_disk(app: &TestApp, slug: &str) -> Vec<std::path::PathBuf> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&app.storage_root.join("tenants").join(slug), &mut out);
    out
}

#[tokio::test]
async fn upload_list_download_delete_and_refusals_leave_nothing() {
    let app = spawn_app_with(|c| c.max_upload_bytes = 64 * 1024).await;
    let token = app.tenant_with_admin("files", "pro").await.1;
    let content: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    let (s, meta) = upload(
        &app,
        "files",
        &token,
        "/api/v1/files/medical-imaging?name=x-ray%201.png",
        content.clone(),
    )
    .await;
    assert_eq!(s, 201, "{meta}");
    assert_eq!(meta["size_bytes"], 50_000);
    assert_eq!(meta["name"], "x-ray 1.png");
    assert_eq!(files_on_disk(&app, "files").len(), 1);

    let (_, list) = {
        let r = app
            .on(
                Method::GET,
                "files.localhost",
                "/api/v1/files?folder=medical-imaging",
                Some(&token),
                None,
            )
            .await;
        (r.status().as_u16(), r.json::<Value>().await.expect("json"))
    };
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));
    let id = meta["id"].as_str().expect("id");
    let download = app
        .on(
            Method::GET,
            "files.localhost",
            &format!("/api/v1/files/id/{id}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(download.status(), 200);
    assert_eq!(download.headers()["content-type"], "image/png");
    assert_eq!(download.bytes().await.expect("bytes").to_vec(), content);

    // Over the per-file limit: 413, nothing written.
    let (s, err) = upload(
        &app,
        "files",
        &token,
        "/api/v1/files/uploads?name=big.bin",
        vec![7u8; 100 * 1024],
    )
    .await;
    assert_eq!(
        (s, err["error"]["code"].as_str()),
        (413, Some("file_too_large"))
    );
    // Path tricks and unknown folders: 400, nothing written.
    for path in [
        "/api/v1/files/uploads?name=..%2F..%2Fetc%2Fpasswd",
        "/api/v1/files/uploads?name=a%2Fb",
        "/api/v1/files/uploads?name=..",
        "/api/v1/files/uploads?name=.hidden",
        "/api/v1/files/uploads?name=a%5Cb",
        "/api/v1/files/backups?name=a.txt",
        "/api/v1/files/..?name=a.txt",
    ] {
        let (s, err) = upload(&app, "files", &token, path, b"hello".to_vec()).await;
        assert!(s == 400 || s == 404, "{path}: {s} {err}");
    }
    assert_eq!(
        files_on_disk(&app, "files").len(),
        1,
        "refused uploads left files: {:?}",
        files_on_disk(&app, "files")
    );
    let rows = app
        .on(
            Method::GET,
            "files.localhost",
            "/api/v1/files",
            Some(&token),
            None,
        )
        .await
        .json::<Value>()
        .await
        .expect("json");
    assert_eq!(rows["items"].as_array().map(Vec::len), Some(1));

    assert_eq!(
        app.on(
            Method::DELETE,
            "files.localhost",
            &format!("/api/v1/files/id/{id}"),
            Some(&token),
            None
        )
        .await
        .status(),
        204
    );
    assert!(files_on_disk(&app, "files").is_empty());
    assert_eq!(
        app.on(
            Method::GET,
            "files.localhost",
            &format!("/api/v1/files/id/{id}"),
            Some(&token),
            None
        )
        .await
        .status(),
        404
    );
}

#[tokio::test]
async fn the_plans_storage_quota_is_enforced_with_507() {
    let app = spawn_app_with(|_| {}).await;
    app.owner_client()
        .await
        .execute("INSERT INTO subscription_plans (code, name, max_storage_bytes, features) VALUES ('tiny', 'Tiny', 30000, '[\"files\"]')", &[])
        .await
        .expect("tiny plan");
    let token = app.tenant_with_admin("small", "tiny").await.1;
    let (s, _) = upload(
        &app,
        "small",
        &token,
        "/api/v1/files/documents?name=a.pdf",
        vec![1u8; 20_000],
    )
    .await;
    assert_eq!(s, 201);
    let (s, err) = upload(
        &app,
        "small",
        &token,
        "/api/v1/files/documents?name=b.pdf",
        vec![1u8; 20_000],
    )
    .await;
    assert_eq!(
        (s, err["error"]["code"].as_str()),
        (507, Some("storage_quota"))
    );
    assert_eq!(
        files_on_disk(&app, "small").len(),
        1,
        "nothing written for the refused upload"
    );
    let (s, _) = upload(
        &app,
        "small",
        &token,
        "/api/v1/files/documents?name=c.pdf",
        vec![1u8; 9_000],
    )
    .await;
    assert_eq!(s, 201, "what fits in the quota is still accepted");
}
