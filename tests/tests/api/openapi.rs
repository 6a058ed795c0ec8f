//! The owner API's OpenAPI document: generated from the handlers, so it names every route
//! and nothing else; complete enough to call the API from; and readable offline in the
//! docs UI.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::Value;

use crate::helpers::spawn_app;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// Every `$ref` in `value`.
fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r);
            }
            map.values().for_each(|v| refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_openapi_document_describes_every_route_and_answer() {
    let app = spawn_app().await;
    let response = app.get("/api/owner/openapi.json", None).await;
    assert_eq!(response.status(), 200);
    let doc: Value = response.json().await.expect("json");
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["servers"][0]["url"], "/api/owner");

    // Every reference resolves.
    let mut found = Vec::new();
    refs(&doc, &mut found);
    assert!(found.len() > 50, "too few references: {}", found.len());
    for r in found {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected reference {r}"));
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "{r} is not defined"
        );
    }

    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            let Some(operation) = item.get(method) else {
                continue;
            };
            let what = format!("{method} {path}");
            let responses = operation["responses"].as_object().expect("responses");
            // A success answer, described, with its body's schema unless it has none.
            let (status, success) = responses
                .iter()
                .find(|(status, _)| status.starts_with('2'))
                .unwrap_or_else(|| panic!("{what} has no success answer"));
            assert!(success["description"].is_string(), "{what} {status}");
            if status != "204" {
                assert!(
                    success["content"].is_object(),
                    "{what} {status} has no body schema"
                );
            }
            // The errors every request can meet.
            for status in ["400", "503"] {
                assert!(responses.contains_key(status), "{what} lacks {status}");
            }
            let public = operation["security"] == serde_json::json!([{}]);
            if !public {
                for status in ["401", "403"] {
                    assert!(responses.contains_key(status), "{what} lacks {status}");
                }
                assert!(
                    responses["401"]["headers"]["WWW-Authenticate"].is_object(),
                    "{what}: 401 without WWW-Authenticate"
                );
            }
            assert!(
                responses["503"]["headers"]["Retry-After"].is_object(),
                "{what}: 503 without Retry-After"
            );
            if operation.get("requestBody").is_some() {
                for status in ["413", "415"] {
                    assert!(responses.contains_key(status), "{what} lacks {status}");
                }
            }
            // Every path parameter is declared.
            let declared: BTreeSet<&str> = operation["parameters"]
                .as_array()
                .map(|p| {
                    p.iter()
                        .filter(|p| p["in"] == "path")
                        .filter_map(|p| p["name"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            let in_path: BTreeSet<&str> = path
                .split('/')
                .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            assert_eq!(declared, in_path, "{what}: path parameters");
            assert!(operation["summary"].is_string(), "{what} has no summary");
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    assert!(documented.len() > 45, "too few operations: {documented:?}");

    // Request schemas are as strict as the server where it matters.
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["MigrationStart"]["properties"]["concurrency"]["minimum"],
        1
    );
    assert_eq!(
        schemas["PlanFields"]["properties"]["price_cents"]["minimum"],
        0
    );
    assert!(schemas["TenantCreate"]["properties"]["slug"]["pattern"].is_string());
    assert!(
        schemas["TenantView"].to_string().contains("TenantInfo"),
        "a tenant's answer shows the tenant"
    );

    // Every documented operation is routed: it answers as a route (never the fallback's
    // 404 or a 405), and an undocumented path under the API is not.
    let token = app.token.clone();
    for (method, path) in &documented {
        let concrete = path
            .replace("{id}", "00000000-0000-0000-0000-000000000000")
            .replace("{backup}", "00000000-0000-0000-0000-000000000000")
            .replace("{restore}", "00000000-0000-0000-0000-000000000000")
            .replace("{domain}", "x.example.com")
            .replace("{code}", "nope");
        let response = app
            .on(
                Method::from_bytes(method.as_bytes()).expect("method"),
                "127.0.0.1",
                &format!("/api/owner{concrete}"),
                Some(&token),
                (method != "GET" && method != "DELETE")
                    .then_some(&Value::Object(Default::default())),
            )
            .await;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or_default();
        assert!(
            status != 405 && body["error"]["message"] != "no such route",
            "{method} {path} answered {status} {body}"
        );
    }
    let response = app
        .get("/api/owner/tenants/x/not-a-route", Some(&token))
        .await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["message"], "no such route");
}

/// The docs UI is served from the binary: its page and scripts load from the service
/// itself, never from the internet, and it reads the owner API's document.
#[tokio::test]
async fn the_docs_ui_works_offline() {
    let app = spawn_app().await;
    let response = app.get("/api/owner/docs/", None).await;
    assert_eq!(response.status(), 200);
    assert!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/html"))
    );
    let page = response.text().await.expect("page");
    let mut assets = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        for part in page.split(attribute).skip(1) {
            let target = part.split('"').next().unwrap_or_default();
            assert!(
                !target.contains("://") && !target.starts_with("//"),
                "the page loads {target} from elsewhere"
            );
            assets.push(target.trim_start_matches("./").to_string());
        }
    }
    assert!(
        assets.iter().any(|a| a.ends_with(".js")),
        "no script in {page}"
    );
    for asset in &assets {
        let response = app.get(&format!("/api/owner/docs/{asset}"), None).await;
        assert_eq!(response.status(), 200, "{asset}");
        if asset.contains("initializer") {
            let script = response.text().await.expect("script");
            assert!(
                script.contains("/api/owner/openapi.json"),
                "the UI does not read the document: {script}"
            );
            assert!(
                !script.contains("validator.swagger.io"),
                "the UI sends the document away"
            );
        }
    }
    assert!(
        assets.iter().any(|a| a.contains("initializer")),
        "no initializer among {assets:?}"
    );
}
