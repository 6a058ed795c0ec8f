//! The tenant API's OpenAPI document, served on every tenant host, and the tenant router
//! agree in both directions: every documented operation is routed, every routed method of a
//! documented path is documented, undocumented paths get the fallback, and the security
//! the document declares is the one the server applies.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

const HOST: &str = "atlas.localhost";
const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// Every `$ref` in `value`.
fn refs(value: &Value, found: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("$ref", Value::String(target)) => {
                        found.insert(target.clone());
                    }
                    _ => refs(v, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, found)),
        _ => {}
    }
}

/// `path` with each `{parameter}` replaced by a fresh uuid.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') && segment.ends_with('}') {
                uuid::Uuid::new_v4().to_string()
            } else {
                segment.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The status and the error code and message of an answer (empty when it has none).
async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, String, String) {
    let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
    // An empty object: enough for every body to be read, never enough to change anything.
    let body = (method != Method::GET && method != Method::DELETE).then(|| json!({}));
    let response = app.on(method, HOST, path, token, body.as_ref()).await;
    let status = response.status().as_u16();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    let text = |key: &str| {
        answer["error"][key]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    (status, text("code"), text("message"))
}

fn no_such_route((status, code, message): &(u16, String, String)) -> bool {
    *status == 404 && code == "not_found" && message == "no such route"
}

#[tokio::test]
async fn the_tenant_document_and_the_tenant_router_agree() {
    let app = spawn_app().await;
    // `pro` has every feature the API gates, so no route answers `feature_disabled`.
    let (_, token) = app.tenant_with_admin("atlas", "pro").await;

    let response = app.get_on(HOST, "/api/v1/openapi.json", &[]).await;
    assert_eq!(response.status(), 200);
    let doc: Value = response.json().await.expect("json");
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "tenant API");

    let mut targets = BTreeSet::new();
    refs(&doc, &mut targets);
    assert!(
        targets.contains("#/components/schemas/Error"),
        "{targets:?}"
    );
    for target in &targets {
        let pointer = target
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("{target} is not local"));
        assert!(doc.pointer(pointer).is_some(), "{target} is not defined");
    }
    let global = &doc["security"];
    assert_eq!(global, &json!([{ "bearer": [] }]));
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );

    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() > 20, "{}", paths.len());
    let mut operation_ids = BTreeSet::new();
    let mut public = BTreeSet::new();
    for (path, item) in paths {
        assert!(path.starts_with("/api/v1/"), "{path}");
        for method in METHODS {
            let url = concrete(path);
            let Some(operation) = item.get(method) else {
                // The router takes no method the document does not list.
                let answer = call(&app, method, &url, Some(&token)).await;
                assert_eq!(
                    (answer.0, answer.1.as_str()),
                    (405, "method_not_allowed"),
                    "{method} {path} is routed but not documented: {answer:?}"
                );
                continue;
            };
            let id = operation["operationId"].as_str().expect("operationId");
            assert!(operation_ids.insert(id.to_string()), "{id} twice");
            assert!(operation["responses"]["503"].is_object(), "{method} {path}");

            // Documented and routed: never the fallback, never 405.
            let answer = call(&app, method, &url, Some(&token)).await;
            assert!(
                !no_such_route(&answer) && answer.0 != 405,
                "{method} {path} is documented but not routed: {answer:?}"
            );
            assert!(answer.0 < 500, "{method} {path}: {answer:?}");
            assert!(
                operation["responses"][answer.0.to_string()].is_object(),
                "{method} {path} answered {answer:?}, which it does not document"
            );

            // The security the document declares is the one the server applies.
            let security = operation.get("security").unwrap_or(global);
            let anonymous_allowed = security
                .as_array()
                .expect("security")
                .iter()
                .any(|requirement| requirement.as_object().is_some_and(|r| r.is_empty()));
            let anonymous = call(&app, method, &url, None).await;
            if anonymous_allowed {
                public.insert(format!("{method} {path}"));
                assert_ne!(
                    anonymous.1, "unauthenticated",
                    "{method} {path} is documented as public: {anonymous:?}"
                );
            } else {
                assert_eq!(
                    anonymous.0, 401,
                    "{method} {path} is documented as needing a token: {anonymous:?}"
                );
                assert!(operation["responses"]["401"].is_object(), "{method} {path}");
            }
        }
    }
    assert_eq!(
        public,
        [
            "get /api/v1/openapi.json",
            "get /api/v1/settings",
            "get /api/v1/settings/logo",
            "get /api/v1/status",
            "post /api/v1/auth/login",
            "post /api/v1/auth/logout",
            "post /api/v1/auth/refresh",
        ]
        .map(String::from)
        .into(),
    );

    // Every record resource is documented from its descriptor, each with its schemas.
    for table in [
        "practices",
        "patients",
        "appointments",
        "medical_records",
        "prescriptions",
        "inventory",
    ] {
        let collection = &doc["paths"][format!("/api/v1/{table}")];
        assert!(
            collection["get"].is_object() && collection["post"].is_object(),
            "{table}"
        );
        let item = &doc["paths"][format!("/api/v1/{table}/{{id}}")];
        for method in ["get", "patch", "delete"] {
            assert!(item[method].is_object(), "{method} {table}");
        }
    }
    assert_eq!(
        doc["components"]["schemas"]["InventoryFields"]["properties"]["quantity"]["type"],
        json!(["integer", "null"])
    );

    // Paths the document does not have get the router's fallback.
    for path in [
        "/api/v1/nothing-here",
        "/api/v1/users/extra/segments",
        "/api/v1/practices/x/members/y/z",
        "/api/v1/openapi.yaml",
        "/api/v1",
    ] {
        assert!(!paths.contains_key(path), "{path}");
        let answer = call(&app, "get", path, Some(&token)).await;
        assert!(no_such_route(&answer), "{path}: {answer:?}");
    }
}

#[tokio::test]
async fn typed_answers_match_their_schemas() {
    let app = spawn_app().await;
    let (_, token) = app.tenant_with_admin("typed", "pro").await;
    let host = "typed.localhost";
    let doc: Value = app
        .get_on(host, "/api/v1/openapi.json", &[])
        .await
        .json()
        .await
        .expect("json");
    let schema = |name: &str| doc["components"]["schemas"][name].clone();
    let required = |name: &str| -> BTreeSet<String> {
        schema(name)["required"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let properties = |name: &str| -> BTreeSet<String> {
        schema(name)["properties"]
            .as_object()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    };
    let keys = |value: &Value| -> BTreeSet<String> {
        value.as_object().expect("object").keys().cloned().collect()
    };

    // Anonymous status: only the required fields; with details: every documented one.
    let anonymous: Value = app
        .on(Method::GET, host, "/api/v1/status", None, None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(keys(&anonymous), required("StatusBody"), "{anonymous}");
    let detailed: Value = app
        .on(Method::GET, host, "/api/v1/status", Some(&token), None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(keys(&detailed), properties("StatusBody"), "{detailed}");

    let settings: Value = app
        .on(Method::GET, host, "/api/v1/settings", None, None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(keys(&settings), properties("Settings"), "{settings}");
    assert_eq!(required("Settings"), properties("Settings"));

    let me: Value = app
        .on(Method::GET, host, "/api/v1/me", Some(&token), None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(keys(&me), properties("User"), "{me}");

    // A record: `id` and the writable columns are documented, the others allowed.
    let created = app
        .on(
            Method::POST,
            host,
            "/api/v1/practices",
            Some(&token),
            Some(&json!({ "name": "North" })),
        )
        .await;
    assert_eq!(created.status(), 201);
    let practice: Value = created.json().await.expect("json");
    assert!(
        required("PracticesRecord").is_subset(&keys(&practice)),
        "{practice}"
    );
    assert_eq!(schema("PracticesRecord")["additionalProperties"], true);
    let page: Value = app
        .on(Method::GET, host, "/api/v1/practices", Some(&token), None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(keys(&page), properties("PracticesPage"), "{page}");

    // A field the descriptor does not list is refused, as the schema says.
    assert_eq!(schema("PracticesFields")["additionalProperties"], false);
    let refused = app
        .on(
            Method::POST,
            host,
            "/api/v1/practices",
            Some(&token),
            Some(&json!({ "name": "South", "id": uuid::Uuid::new_v4() })),
        )
        .await;
    assert_eq!(refused.status(), 422);
}
