//! The tenant API's OpenAPI 3.1 document, served at `GET /api/v1/openapi.json` on every
//! tenant host, no token needed.
//!
//! Every route is registered through `utoipa_axum::routes!` from a handler carrying its
//! `#[utoipa::path]` (the records routes from their descriptors, see `records.rs`), and
//! the schemas derive from the types the handlers take and return: the document is built
//! from the same code that routes, so the two cannot drift. The error answers that come
//! from the extractors, the token check, the gateway and the error envelope rather than
//! from a handler are added here, by rule, in one place (see [`standard_errors`]).

use std::sync::LazyLock;

use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::path::{HttpMethod, Operation, Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, OpenApi, Ref, RefOr, Response, ResponseBuilder,
};
use utoipa::openapi::{KnownFormat, Required, SchemaFormat};
use utoipa::{Modify, ToSchema};

/// Where the document is served.
pub const DOCUMENT_PATH: &str = "/api/v1/openapi.json";

/// Every error answer: `{"error": {"code": "...", "message": "..."}}`.
#[derive(serde::Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody<'a> {
    pub error: ErrorDetail<'a>,
}

#[derive(serde::Serialize, ToSchema)]
pub struct ErrorDetail<'a> {
    /// Stable and machine-readable, such as `not_found` or `weak_password`.
    pub code: &'a str,
    /// For people.
    pub message: &'a str,
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "tenant API",
        description = "The API of one tenant, served on its own domains under `/api/v1` from its own database and storage. \
Sign in with `POST /api/v1/auth/login` and send the access token as `Authorization: Bearer <token>`. \
Errors are `{\"error\": {\"code\", \"message\"}}`; a 503 or 429 comes with `Retry-After`. \
Every answer may also be one of the gateway's: 404 `unknown_tenant` on a host no tenant is served on, \
403 `tenant_suspended`, 503 `tenant_provisioning`, `tenant_maintenance` or `tenant_unavailable`, \
and 507 `database_quota` for writes once the tenant's database is over its plan's quota.",
    ),
    security(("bearer" = [])),
    components(schemas(ErrorBody)),
    modifiers(&BearerScheme),
)]
struct TenantApi;

/// The base the routers add their paths to: info, security, the `Error` schema.
pub fn base() -> OpenApi {
    let mut document = <TenantApi as utoipa::OpenApi>::openapi();
    document.info.version = env!("CARGO_PKG_VERSION").to_string();
    document
}

/// The `bearer` scheme the global `security` names.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut OpenApi) {
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .description(Some(
                            "An access token from POST /api/v1/auth/login or /api/v1/auth/refresh",
                        ))
                        .build(),
                ),
            );
    }
}

/// The document, computed once.
static DOCUMENT: LazyLock<Bytes> = LazyLock::new(|| {
    Bytes::from(serde_json::to_vec(&super::openapi()).expect("an OpenAPI document serializes"))
});

/// This document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    operation_id = "openapi",
    tag = "meta",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = Object)),
)]
pub async fn document() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.clone(),
    )
}

/// An `Error` answer described as `description`.
pub fn error_response(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Error")))
                .build(),
        )
        .build()
        .into()
}

/// Adds the error answers an operation gives whatever its handler does, so no handler
/// lists them and none is forgotten. A status a handler documents keeps its description.
/// - 400: a JSON body that is not JSON, or a query string that does not parse;
/// - 401: no valid token, where the operation reads one;
/// - 403: the role lacks the permission, a one-time password must be changed first, the
///   tenant lacks the feature or is suspended (the gateway's answer, on every operation);
/// - 404: the path names something that is not there;
/// - 413, 415 and 422: a JSON body over the limit, not `application/json`, or of the wrong shape;
/// - 503: the tenant's database is unavailable or busy (every operation);
/// - 507: the gateway refuses writes while the tenant's database is over its quota (the
///   sign-in routes and deletions are served all the same).
pub fn standard_errors(openapi: &mut OpenApi) {
    for (path, item) in openapi.paths.paths.iter_mut() {
        let operations: [(HttpMethod, &mut Option<Operation>); 5] = [
            (HttpMethod::Get, &mut item.get),
            (HttpMethod::Post, &mut item.post),
            (HttpMethod::Put, &mut item.put),
            (HttpMethod::Patch, &mut item.patch),
            (HttpMethod::Delete, &mut item.delete),
        ];
        for (method, operation) in operations {
            let Some(operation) = operation else { continue };
            let reads_token = operation
                .security
                .as_ref()
                .is_none_or(|requirements| !requirements.iter().all(is_empty_requirement));
            let json_body = operation
                .request_body
                .as_ref()
                .is_some_and(|body| match body {
                    RefOr::T(body) => body.content.contains_key("application/json"),
                    RefOr::Ref(_) => true,
                });
            let has_query = operation.parameters.iter().flatten().any(|p| match p {
                RefOr::T(p) => p.parameter_in == ParameterIn::Query,
                RefOr::Ref(_) => false,
            });
            let responses = &mut operation.responses.responses;
            let mut add = |status: &str, response: RefOr<Response>| {
                responses.entry(status.to_string()).or_insert(response);
            };
            if json_body || has_query {
                add("400", error_response("A malformed body or query string"));
            }
            if reads_token {
                add(
                    "401",
                    with_header(
                        "No valid access token of this tenant",
                        "WWW-Authenticate",
                        "`Bearer`",
                    ),
                );
                add(
                    "403",
                    error_response(
                        "The role does not grant the permission, a one-time password must be changed first, \
                         the tenant lacks the feature, or the tenant is suspended",
                    ),
                );
            } else {
                add("403", error_response("The tenant is suspended"));
            }
            if path.contains('{') {
                add("404", error_response("No such resource"));
            }
            if json_body {
                add(
                    "413",
                    error_response("The body is over the service's limit"),
                );
                add(
                    "415",
                    error_response("The body is not JSON (`Content-Type: application/json`)"),
                );
                add(
                    "422",
                    error_response("The body is JSON of the wrong shape, or holds a NUL character"),
                );
            }
            add(
                "503",
                with_header(
                    "The tenant's database is unavailable or busy, or the tenant is being set up or in maintenance; retry",
                    "Retry-After",
                    "Seconds to wait",
                ),
            );
            let writes = matches!(
                method,
                HttpMethod::Post | HttpMethod::Put | HttpMethod::Patch
            ) && !path.starts_with("/api/v1/auth/");
            if writes {
                add(
                    "507",
                    error_response("The tenant's database is over its plan's quota"),
                );
            }
        }
    }
}

/// An `Error` answer with a header (`Retry-After`, `WWW-Authenticate`).
pub fn with_header(description: &str, name: &str, header_description: &str) -> RefOr<Response> {
    let schema = if name == "Retry-After" {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(0))
    } else {
        ObjectBuilder::new().schema_type(Type::String)
    };
    let mut response = match error_response(description) {
        RefOr::T(response) => response,
        other => return other,
    };
    response.headers.insert(
        name.to_string(),
        HeaderBuilder::new()
            .schema(Some(schema))
            .description(Some(header_description))
            .build()
            .into(),
    );
    response.into()
}

/// Whether a security requirement is the empty one (`{}`): the operation takes no token.
pub fn is_empty_requirement(requirement: &SecurityRequirement) -> bool {
    *requirement == SecurityRequirement::default()
}

/// Characters `char::is_whitespace` takes (what `str::trim` removes), as a regex class body.
pub const WHITESPACE: &str =
    r"\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
/// Characters `char::is_control` takes, as a regex class body.
pub const CONTROL: &str = r"\x00-\x1f\x7f-\x9f";

/// A string the server trims and then takes if it has `min..=max` characters and no
/// control characters (names, descriptions): the pattern allows the whitespace the
/// server trims away and counts only what is left.
pub fn trimmed_text(min: usize, max: usize, nullable: bool) -> Schema {
    let edge = format!("[{WHITESPACE}]*");
    let inner = format!("[^{CONTROL}]");
    let outer = format!("[^{CONTROL}{WHITESPACE}]");
    let core = match max {
        0 => String::new(),
        1 => outer.clone(),
        _ => format!("{outer}(?:{inner}{{0,{}}}{outer})?", max - 2),
    };
    let core = if min == 0 {
        format!("(?:{core})?")
    } else {
        core
    };
    debug_assert!(min <= 1, "longer minimums would need another pattern");
    ObjectBuilder::new()
        .schema_type(string_type(nullable))
        .pattern(Some(format!("^{edge}{core}{edge}$")))
        .build()
        .into()
}

/// `string`, or `["string", "null"]`.
pub fn string_type(nullable: bool) -> SchemaType {
    if nullable {
        [Type::String, Type::Null].into_iter().collect()
    } else {
        SchemaType::new(Type::String)
    }
}

/// A string that is one of `values` (or null).
pub fn one_of(values: &[&str], nullable: bool) -> Schema {
    one_of_builder(values, nullable).build().into()
}

fn one_of_builder(values: &[&str], nullable: bool) -> ObjectBuilder {
    let mut values: Vec<serde_json::Value> = values.iter().map(|v| (*v).into()).collect();
    if nullable {
        values.push(serde_json::Value::Null);
    }
    ObjectBuilder::new()
        .schema_type(string_type(nullable))
        .enum_values(Some(values))
}

/// An array of strings each one of `values` (or null).
pub fn array_of(values: &[&str], nullable: bool) -> Schema {
    let array = ArrayBuilder::new().items(one_of_builder(values, false));
    let array = if nullable {
        array.schema_type(
            [Type::Array, Type::Null]
                .into_iter()
                .collect::<SchemaType>(),
        )
    } else {
        array
    };
    array.build().into()
}

/// A parameter whose schema is not derived.
pub fn parameter(
    name: &str,
    parameter_in: ParameterIn,
    required: bool,
    description: &str,
    schema: impl Into<RefOr<Schema>>,
) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(parameter_in)
        .required(if required {
            Required::True
        } else {
            Required::False
        })
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

pub fn uuid_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
}

/// Any integer an `i64` holds (`limit`, `offset`: parsed as such, then clamped).
/// `limit` and `offset`, the query parameters of every paged list.
pub fn page_parameters() -> Vec<Parameter> {
    vec![
        parameter(
            "limit",
            ParameterIn::Query,
            false,
            "At most this many (1 to 200; default 50)",
            int64(),
        ),
        parameter(
            "offset",
            ParameterIn::Query,
            false,
            "Skip this many (default 0)",
            int64(),
        ),
    ]
}

pub fn int64() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(i64::MIN))
        .maximum(Some(i64::MAX))
}
