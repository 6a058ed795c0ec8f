//! The OpenAPI document matches the owner API's routes, in both directions.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::Value;

use crate::helpers::spawn_app;

/// `(METHOD, /path)` of every route registered in `control-plane/src/http/owner_*.rs`,
/// read from the routers' source: `.route("/path", get(h).post(h))`.
fn routed() -> BTreeSet<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../control-plane/src/http");
    let mut found = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).expect("http dir") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if !name.starts_with("owner_") {
            continue;
        }
        let source = std::fs::read_to_string(&path).expect("source");
        for call in source.split(".route(").skip(1) {
            // The call's text up to its closing parenthesis.
            let mut depth = 1;
            let end = call
                .char_indices()
                .find(|(_, c)| {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map(|(i, _)| i)
                .expect("closed .route(");
            let call = &call[..end];
            let route = call.split('"').nth(1).expect("path literal").to_string();
            for method in ["get", "post", "put", "patch", "delete"] {
                let used = call.match_indices(&format!("{method}(")).any(|(i, _)| {
                    i == 0 || !call[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_')
                });
                if used {
                    found.insert((method.to_uppercase(), route.clone()));
                }
            }
        }
    }
    found
}

#[tokio::test]
async fn the_openapi_document_matches_the_routes() {
    let app = spawn_app().await;
    let response = app.get("/api/owner/openapi.json", None).await;
    assert_eq!(response.status(), 200);
    let doc: Value = response.json().await.expect("json");
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            assert!(
                operation["responses"].is_object(),
                "{method} {path} has no responses"
            );
            if let Some(schema) =
                operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].as_str()
            {
                let name = schema.rsplit('/').next().unwrap_or_default();
                assert!(
                    doc["components"]["schemas"][name].is_object(),
                    "{schema} is not defined"
                );
            }
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let mut routed = routed();
    routed.insert(("GET".into(), "/openapi.json".into()));
    assert!(
        routed.len() > 20,
        "the route scan found too little: {routed:?}"
    );
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from the document: {undocumented:?}"
    );
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        unrouted.is_empty(),
        "documented but not routed: {unrouted:?}"
    );
    // And every documented operation answers as a route (never 404 or 405), unauthenticated.
    for (method, path) in &documented {
        let concrete = path
            .replace("{id}", "00000000-0000-0000-0000-000000000000")
            .replace("{domain}", "x.example.com")
            .replace("{code}", "free");
        let response = app
            .on(
                Method::from_bytes(method.as_bytes()).expect("method"),
                "127.0.0.1",
                &format!("/api/owner{concrete}"),
                None,
                (method != "GET" && method != "DELETE")
                    .then_some(&Value::Object(Default::default())),
            )
            .await;
        let status = response.status().as_u16();
        assert!(
            status != 404 && status != 405,
            "{method} {path} answered {status}"
        );
    }
}
