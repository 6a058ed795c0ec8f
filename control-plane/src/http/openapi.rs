//! The owner API's OpenAPI 3.1 document, served at `/api/owner/openapi.json` with an
//! offline Swagger UI at `/api/owner/docs`.
//!
//! Every owner route is registered through `utoipa_axum::routes!` from a handler carrying
//! its `#[utoipa::path]`, and the request and answer schemas derive from the types the
//! handlers take and return: the document is built from the same code that routes, so the
//! two cannot drift. What every operation of a kind shares (the error answers the
//! extractors, the session layer and the error envelope give) is added here, by rule, in
//! one place.

use axum::Json;
use tenant::api::openapi::{ErrorBody, error_response as error, is_empty_requirement, with_header};
use utoipa::Modify;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi, RefOr};
use utoipa_axum::router::OpenApiRouter;

use super::state::AppState;
use super::{
    owner_audit, owner_auth, owner_backups, owner_migrations, owner_moves, owner_operators,
    owner_plans, owner_servers, owner_tenants,
};

/// Where the document and its UI are served.
pub const DOCUMENT_PATH: &str = "/api/owner/openapi.json";
pub const DOCS_PATH: &str = "/api/owner/docs";

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "control-plane owner API",
        description = "Operate a database-per-tenant fleet: tenants, domains, plans, subscriptions, backups, servers, operators, audit, fleet migrations. Errors are `{\"error\": {\"code\", \"message\"}}`. Writes from a dashboard session also need the `X-CSRF-Token` header.",
    ),
    servers((url = "/api/owner")),
    security(("bearer" = []), ("session" = [])),
    components(schemas(ErrorBody)),
    modifiers(&Conventions),
)]
struct OwnerApi;

/// The owner API's routes (relative to `/api/owner`) and the document describing them.
pub fn owner_api() -> (axum::Router<AppState>, OpenApi) {
    let (router, mut document) =
        OpenApiRouter::with_openapi(<OwnerApi as utoipa::OpenApi>::openapi())
            .merge(owner_auth::routes())
            .merge(owner_tenants::routes())
            .merge(owner_backups::routes())
            .merge(owner_migrations::routes())
            .merge(owner_operators::routes())
            .merge(owner_plans::routes())
            .merge(owner_servers::routes())
            .merge(owner_moves::routes())
            .merge(owner_audit::routes())
            .split_for_parts();
    document.info.version = env!("CARGO_PKG_VERSION").to_string();
    conventions(&mut document);
    (router, document)
}

/// The document itself, on the owner host, with no token needed.
pub fn document_route(document: OpenApi) -> axum::Router<AppState> {
    let document = std::sync::Arc::new(document);
    axum::Router::new().route(
        DOCUMENT_PATH,
        axum::routing::get(move || {
            let document = std::sync::Arc::clone(&document);
            async move { Json(document) }
        }),
    )
}

/// The Swagger UI, served from files compiled into the binary: it loads nothing from the
/// internet, so it works where the service cannot reach it.
pub fn docs_ui() -> axum::Router<AppState> {
    let config = utoipa_swagger_ui::Config::new([DOCUMENT_PATH])
        // Swagger UI would send the document to validator.swagger.io for a badge.
        .validator_url("none")
        .try_it_out_enabled(true);
    axum::Router::from(utoipa_swagger_ui::SwaggerUi::new(DOCS_PATH).config(config))
}

/// The security schemes the global `security` names.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("A token from POST /auth/login"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::http::session::SESSION_COOKIE,
                "The dashboard's session cookie; writes also need the X-CSRF-Token header.",
            ))),
        );
    }
}

/// What every operation gets by rule rather than by hand:
/// - an operation id made of its method and path (`get_tenants_id_backups`), unique as
///   handler names are not;
/// - its success answers described by their status when the handler gave no words;
/// - the error answers every operation of a kind can give, so no handler has to list
///   them and none is forgotten:
///   - 400: a malformed path, query or body; 503 (with `Retry-After`): the owner
///     database is unavailable or the request timed out;
///   - 401 (with `WWW-Authenticate`) and 403 on every operation that needs a token (403:
///     the role does not allow
///     it, a password must be changed first, or a cookie write came without its CSRF
///     token);
///   - 404 where the path names something; 409 and 422 on writes;
///   - 413 and 415 where there is a body.
fn conventions(openapi: &mut OpenApi) {
    for (path, item) in openapi.paths.paths.iter_mut() {
        let names_something = path.contains('{');
        let operations: [(&str, &mut Option<Operation>); 5] = [
            ("get", &mut item.get),
            ("post", &mut item.post),
            ("put", &mut item.put),
            ("patch", &mut item.patch),
            ("delete", &mut item.delete),
        ];
        for (method, operation) in operations {
            let Some(operation) = operation else { continue };
            let id: String = format!("{method}{path}")
                .split(|c: char| !c.is_ascii_alphanumeric())
                .filter(|part| !part.is_empty())
                .collect::<Vec<_>>()
                .join("_");
            operation.operation_id = Some(id);
            for (status, response) in operation.responses.responses.iter_mut() {
                if let RefOr::T(response) = response
                    && response.description.is_empty()
                {
                    response.description = status
                        .parse::<u16>()
                        .ok()
                        .and_then(|code| axum::http::StatusCode::from_u16(code).ok())
                        .and_then(|code| code.canonical_reason())
                        .unwrap_or("Success")
                        .to_string();
                }
            }
            let public = operation
                .security
                .as_ref()
                .is_some_and(|requirements| requirements.iter().all(is_empty_requirement));
            let has_body = operation.request_body.is_some();
            let responses = &mut operation.responses.responses;
            let mut add = |status: &str, response: RefOr<utoipa::openapi::Response>| {
                responses.entry(status.to_string()).or_insert(response);
            };
            add("400", error("Malformed path, query or body"));
            if !public {
                add(
                    "401",
                    with_header("No valid token or session", "WWW-Authenticate", "`Bearer`"),
                );
                add(
                    "403",
                    error(
                        "The operator's role does not allow this, a new password must be chosen first, or a cookie session sent no CSRF token",
                    ),
                );
            }
            if names_something {
                add("404", error("No such resource"));
            }
            if method != "get" {
                add("409", error("Conflicts with the current state"));
                add("422", error("Invalid values"));
            }
            if has_body {
                add("413", error("The body is over the limit"));
                add("415", error("The body is not application/json"));
            }
            add(
                "503",
                with_header(
                    "The owner database is unavailable or the request took too long; retry",
                    "Retry-After",
                    "Seconds to wait",
                ),
            );
        }
    }
}
