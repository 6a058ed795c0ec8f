//! The clinic's records: practices, patients, appointments, medical records,
//! prescriptions and inventory, each with create, read, update, delete and a paginated
//! list with simple filters.
//!
//! One descriptor per resource says which columns a client may write and filter on;
//! PostgreSQL types and checks the values (`jsonb_populate_record` against the table's
//! own row type), and its errors become clear 4xx answers. Table and column names come
//! from the descriptors only, never from the request.
//!
//! The routes take no `#[utoipa::path]`: they are made per descriptor, and so is their
//! part of the OpenAPI document ([`document`]), in the same loop.

use axum::Json;
use axum::extract::{Extension, Path, RawQuery};
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Map, Value};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, Parameter, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{AdditionalProperties, SchemaType, Type};
use utoipa::openapi::{
    ArrayBuilder, ContentBuilder, KnownFormat, ObjectBuilder, OpenApi, Ref, RefOr, Required,
    Response, ResponseBuilder, Schema, SchemaFormat,
};
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

use super::openapi::{error_response, int64, parameter, uuid_schema};
use super::{ApiFailure, ApiJson, AuthUser, Page};
use crate::context::TenantContext;

struct Resource {
    /// URL segment and table name.
    table: &'static str,
    /// Columns a client may set, with the JSON type their values must have.
    writable: &'static [(&'static str, Kind)],
    /// Columns a list may be filtered on by equality.
    filters: &'static [&'static str],
    /// Order of lists.
    order: &'static str,
    /// The permissions reading and writing it take.
    read: &'static str,
    write: &'static str,
}

/// The JSON type a column's values must have (or `null`). PostgreSQL checks the value
/// itself, but `jsonb_populate_record` converts between JSON types first: the number 5
/// becomes the text "5" and the string "5" the integer 5. A client sending the wrong
/// type has made a mistake we should tell them about, not guess around.
#[derive(Clone, Copy)]
enum Kind {
    /// text, and types written as text (uuid, date, timestamptz): a JSON string.
    Text,
    /// integer: a JSON number without a fraction.
    Integer,
    /// jsonb: any JSON value.
    Any,
}

use Kind::{Any, Integer, Text};

const RESOURCES: [Resource; 6] = [
    Resource {
        table: "practices",
        read: "practices:read",
        write: "practices:write",
        writable: &[
            ("name", Text),
            ("address", Text),
            ("phone", Text),
            ("email", Text),
        ],
        filters: &[],
        order: "name, id",
    },
    Resource {
        table: "patients",
        read: "patients:read",
        write: "patients:write",
        writable: &[
            ("practice_id", Text),
            ("name", Text),
            ("species", Text),
            ("breed", Text),
            ("date_of_birth", Text),
            ("owner_name", Text),
            ("owner_phone", Text),
            ("owner_email", Text),
            ("notes", Text),
        ],
        filters: &["practice_id", "species"],
        order: "name, id",
    },
    Resource {
        table: "appointments",
        read: "appointments:read",
        write: "appointments:write",
        writable: &[
            ("practice_id", Text),
            ("patient_id", Text),
            ("staff_id", Text),
            ("starts_at", Text),
            ("ends_at", Text),
            ("status", Text),
            ("reason", Text),
        ],
        filters: &["practice_id", "patient_id", "staff_id", "status"],
        order: "starts_at, id",
    },
    Resource {
        table: "medical_records",
        read: "medical_records:read",
        write: "medical_records:write",
        writable: &[
            ("patient_id", Text),
            ("author_id", Text),
            ("recorded_at", Text),
            ("kind", Text),
            ("summary", Text),
            ("details", Any),
        ],
        filters: &["patient_id", "kind"],
        order: "recorded_at DESC, id",
    },
    Resource {
        table: "prescriptions",
        read: "prescriptions:read",
        write: "prescriptions:write",
        writable: &[
            ("patient_id", Text),
            ("prescriber_id", Text),
            ("medication", Text),
            ("dosage", Text),
            ("instructions", Text),
            ("starts_on", Text),
            ("ends_on", Text),
            ("status", Text),
        ],
        filters: &["patient_id", "status"],
        order: "starts_on DESC, id",
    },
    Resource {
        table: "inventory",
        read: "inventory:read",
        write: "inventory:write",
        writable: &[
            ("practice_id", Text),
            ("sku", Text),
            ("name", Text),
            ("quantity", Integer),
            ("unit", Text),
            ("reorder_level", Integer),
        ],
        filters: &["practice_id", "sku"],
        order: "name, id",
    },
];

const MAX_PAGE: i64 = 200;

pub fn routes() -> OpenApiRouter {
    let mut router = OpenApiRouter::new();
    for (index, r) in RESOURCES.iter().enumerate() {
        router = router
            .route(
                &collection_path(r),
                get(move |ctx, user, query| list(index, ctx, user, query))
                    .post(move |ctx, user, body| create(index, ctx, user, body)),
            )
            .route(
                &item_path(r),
                get(move |ctx, user, id| show(index, ctx, user, id))
                    .patch(move |ctx, user, id, body| update(index, ctx, user, id, body))
                    .delete(move |ctx, user, id| remove(index, ctx, user, id)),
            );
        document(r, router.get_openapi_mut());
    }
    router
}

fn collection_path(r: &Resource) -> String {
    format!("/api/v1/{}", r.table)
}

fn item_path(r: &Resource) -> String {
    format!("/api/v1/{}/{{id}}", r.table)
}

/// Adds the resource's operations (those [`routes`] registers) and schemas to `openapi`:
/// `<Table>Record` (a row: `id` and the writable columns, and any other columns the table
/// has), `<Table>Fields` (what create takes: the writable columns, each of its [`Kind`] or
/// null), `<Table>Changes` (what update takes: the same, at least one) and `<Table>Page`.
fn document(r: &Resource, openapi: &mut OpenApi) {
    let stem: String = r
        .table
        .split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect();
    let [record, fields, changes, page] =
        ["Record", "Fields", "Changes", "Page"].map(|suffix| format!("{stem}{suffix}"));
    let schemas = &mut openapi
        .components
        .get_or_insert_with(Default::default)
        .schemas;
    schemas.insert(record.clone(), record_schema(r).into());
    schemas.insert(fields.clone(), fields_schema(r).build().into());
    schemas.insert(
        changes.clone(),
        fields_schema(r).min_properties(Some(1)).build().into(),
    );
    schemas.insert(page.clone(), page_schema(&record).into());

    let json = |schema: &str| {
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name(schema)))
            .build()
    };
    let answer = |description: &str, schema: &str| -> RefOr<Response> {
        ResponseBuilder::new()
            .description(description)
            .content("application/json", json(schema))
            .build()
            .into()
    };
    let body = |schema: &str| {
        RequestBodyBuilder::new()
            .content("application/json", json(schema))
            .required(Some(Required::True))
            .build()
    };
    let operation = |verb: &str, summary: String| {
        OperationBuilder::new()
            .operation_id(Some(format!("{}_{verb}", r.table)))
            .tag(r.table)
            .summary(Some(summary))
    };
    let conflict = |why: &str| error_response(why);
    let invalid = error_response(
        "`missing_field`, `unknown_reference`, `invalid_value` (wrong JSON type, unparsable or out of range), \
         or `invalid_body` (an unknown or read-only field)",
    );
    let writes = format!("Needs `{}`.", r.write);
    let reads = format!("Needs `{}`.", r.read);

    let mut list_parameters = super::openapi::page_parameters();
    list_parameters.extend(r.filters.iter().map(|column| {
        parameter(
            column,
            ParameterIn::Query,
            false,
            &format!("Only those whose {column} is this (compared as text)"),
            ObjectBuilder::new().schema_type(Type::String),
        )
    }));
    let paths = &mut openapi.paths;
    paths.add_path_operation(
        collection_path(r),
        vec![HttpMethod::Get],
        operation("list", format!("List {}", r.table))
            .description(Some(reads.clone()))
            .parameters(Some(list_parameters))
            .response("200", answer("A page", &page)),
    );
    paths.add_path_operation(
        collection_path(r),
        vec![HttpMethod::Post],
        operation("create", format!("Create one of {}", r.table))
            .description(Some(writes.clone()))
            .request_body(Some(body(&fields)))
            .response("201", answer("Created", &record))
            .response(
                "409",
                conflict("`duplicate`: a record with these values exists"),
            )
            .response("422", invalid.clone()),
    );
    paths.add_path_operation(
        item_path(r),
        vec![HttpMethod::Get],
        operation("show", format!("One of {}", r.table))
            .description(Some(reads))
            .parameter(id_parameter())
            .response("200", answer("The record", &record)),
    );
    paths.add_path_operation(
        item_path(r),
        vec![HttpMethod::Patch],
        operation("update", format!("Change one of {}", r.table))
            .description(Some(format!("Sets the fields given. {writes}")))
            .parameter(id_parameter())
            .request_body(Some(body(&changes)))
            .response("200", answer("Changed", &record))
            .response(
                "409",
                conflict("`duplicate`: a record with these values exists"),
            )
            .response("422", invalid),
    );
    paths.add_path_operation(
        item_path(r),
        vec![HttpMethod::Delete],
        operation("delete", format!("Delete one of {}", r.table))
            .description(Some(writes))
            .parameter(id_parameter())
            .response("204", ResponseBuilder::new().description("Deleted").build())
            .response(
                "409",
                conflict("`in_use`: other records refer to this one; delete them first"),
            ),
    );
}

/// The JSON a column of `kind` holds (or null): what [`fields`] lets through.
fn kind_schema(kind: Kind) -> Schema {
    let nullable = |t: Type| [t, Type::Null].into_iter().collect::<SchemaType>();
    match kind {
        Text => ObjectBuilder::new().schema_type(nullable(Type::String)),
        // `fields` takes what fits an i64; PostgreSQL then refuses what its column cannot hold.
        Integer => int64().schema_type(nullable(Type::Integer)),
        Any => ObjectBuilder::new().schema_type(SchemaType::AnyValue),
    }
    .build()
    .into()
}

fn fields_schema(r: &Resource) -> ObjectBuilder {
    r.writable.iter().fold(
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .additional_properties(Some(AdditionalProperties::FreeForm(false))),
        |object, (column, kind)| object.property(*column, kind_schema(*kind)),
    )
}

/// A row as `to_jsonb` gives it: every column, so `id` and the writable ones always, and
/// the others (`created_at`, `updated_at`) the descriptors do not name.
fn record_schema(r: &Resource) -> ObjectBuilder {
    r.writable.iter().fold(
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("id", uuid_schema())
            .required("id")
            .additional_properties(Some(AdditionalProperties::FreeForm(true))),
        |object, (column, kind)| {
            object
                .property(*column, kind_schema(*kind))
                .required(*column)
        },
    )
}

fn page_schema(record: &str) -> ObjectBuilder {
    let count = || {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
    };
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property(
            "items",
            ArrayBuilder::new().items(Ref::from_schema_name(record)),
        )
        .property("limit", count())
        .property("offset", count())
        .property("total", count())
        .required("items")
        .required("limit")
        .required("offset")
        .required("total")
}

fn id_parameter() -> Parameter {
    parameter(
        "id",
        ParameterIn::Path,
        true,
        "The record's id",
        uuid_schema(),
    )
}

fn parse_id(raw: &str) -> Result<Uuid, ApiFailure> {
    Uuid::parse_str(raw).map_err(|_| ApiFailure::NotFound)
}

/// The body's fields, refusing any the resource does not let clients write and values of
/// the wrong JSON type (`null` passes: the column's constraints decide).
fn fields(r: &Resource, body: Value) -> Result<Map<String, Value>, ApiFailure> {
    let Value::Object(map) = body else {
        return Err(ApiFailure::Unprocessable(
            "invalid_body",
            "the body must be a JSON object".into(),
        ));
    };
    for (key, value) in &map {
        let Some((_, kind)) = r.writable.iter().find(|(c, _)| c == key) else {
            let writable: Vec<&str> = r.writable.iter().map(|(c, _)| *c).collect();
            return Err(ApiFailure::Unprocessable(
                "invalid_body",
                format!("unknown or read-only field {key:?}; writable fields: {writable:?}"),
            ));
        };
        let fits = match kind {
            _ if value.is_null() => true,
            Text => value.is_string(),
            Integer => value.is_i64(),
            Any => true,
        };
        if !fits {
            let expected = match kind {
                Text => "a string",
                Integer => "an integer",
                Any => "JSON",
            };
            return Err(ApiFailure::Unprocessable(
                "invalid_value",
                format!("{key} must be {expected} or null"),
            ));
        }
    }
    Ok(map)
}

/// PostgreSQL's verdict on the values, as a 4xx.
fn map_db(e: tokio_postgres::Error) -> ApiFailure {
    let Some(db) = e.as_db_error() else {
        return e.into();
    };
    let detail = db.message().to_string();
    match *db.code() {
        SqlState::NOT_NULL_VIOLATION => ApiFailure::Unprocessable(
            "missing_field",
            format!("{} is required", db.column().unwrap_or("a field")),
        ),
        SqlState::FOREIGN_KEY_VIOLATION => ApiFailure::Unprocessable(
            "unknown_reference",
            "a referenced record does not exist".into(),
        ),
        SqlState::CHECK_VIOLATION => ApiFailure::Unprocessable(
            "invalid_value",
            format!(
                "a value is out of range ({})",
                db.constraint().unwrap_or("check")
            ),
        ),
        SqlState::UNIQUE_VIOLATION => {
            ApiFailure::Conflict("duplicate", "a record with these values exists".into())
        }
        SqlState::INVALID_TEXT_REPRESENTATION
        | SqlState::INVALID_DATETIME_FORMAT
        | SqlState::DATETIME_FIELD_OVERFLOW
        | SqlState::NUMERIC_VALUE_OUT_OF_RANGE
        | SqlState::INVALID_PARAMETER_VALUE
        | SqlState::DATATYPE_MISMATCH => ApiFailure::Unprocessable("invalid_value", detail),
        _ => e.into(),
    }
}

async fn list(
    index: usize,
    Extension(ctx): Extension<TenantContext>,
    user: AuthUser,
    RawQuery(query): RawQuery,
) -> Result<Json<Page<Value>>, ApiFailure> {
    let r = &RESOURCES[index];
    user.require(r.read)?;
    let mut limit = 50i64;
    let mut offset = 0i64;
    let mut filters: Vec<(&'static str, String)> = Vec::new();
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value).ok_or_else(|| {
            ApiFailure::BadRequest("invalid_query", format!("bad encoding in {key}"))
        })?;
        if value.contains('\0') {
            return Err(ApiFailure::BadRequest(
                "invalid_query",
                crate::text::NUL_MESSAGE.into(),
            ));
        }
        match key {
            "limit" => {
                limit = value.parse().map_err(|_| {
                    ApiFailure::BadRequest("invalid_query", "limit must be a number".into())
                })?
            }
            "offset" => {
                offset = value.parse().map_err(|_| {
                    ApiFailure::BadRequest("invalid_query", "offset must be a number".into())
                })?
            }
            other => match r.filters.iter().find(|f| **f == other) {
                Some(column) => filters.push((column, value)),
                None => {
                    return Err(ApiFailure::BadRequest(
                        "invalid_query",
                        format!(
                            "unknown filter {other:?}; filters: {:?}, limit, offset",
                            r.filters
                        ),
                    ));
                }
            },
        }
    }
    let limit = limit.clamp(1, MAX_PAGE);
    let offset = offset.max(0);
    // Filters compare as text, so PostgreSQL parses nothing from the query string.
    let mut matching = format!("FROM {} t WHERE true", r.table);
    let mut params: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
    for (column, value) in &filters {
        params.push(Box::new(value.clone()));
        matching.push_str(&format!(" AND t.{column}::text = ${}", params.len()));
    }
    // The page, and how many match in all (the envelope's `total`).
    let count_sql = format!("SELECT count(*) {matching}");
    let filter_count = params.len();
    params.push(Box::new(limit));
    params.push(Box::new(offset));
    let sql = format!(
        "SELECT to_jsonb(t) {matching} ORDER BY {} LIMIT ${} OFFSET ${}",
        r.order,
        params.len() - 1,
        params.len()
    );
    let refs: Vec<&(dyn ToSql + Sync)> = params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let conn = ctx.pool.get().await?;
    let rows = conn.query(&sql, &refs).await.map_err(map_db)?;
    let items: Vec<Value> = rows.iter().map(|row| row.get(0)).collect();
    let total: i64 = conn
        .query_one(&count_sql, &refs[..filter_count])
        .await
        .map_err(map_db)?
        .get(0);
    Ok(Json(Page {
        items,
        limit,
        offset,
        total,
    }))
}

async fn create(
    index: usize,
    Extension(ctx): Extension<TenantContext>,
    user: AuthUser,
    ApiJson(body): ApiJson<Value>,
) -> Result<(StatusCode, Json<Value>), ApiFailure> {
    let r = &RESOURCES[index];
    user.require(r.write)?;
    let map = fields(r, body)?;
    let columns: Vec<&str> = map.keys().map(|k| k.as_str()).collect();
    let names = columns.join(", ");
    let values = columns
        .iter()
        .map(|c| format!("r.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = if columns.is_empty() {
        format!(
            "INSERT INTO {t} (id) VALUES ($1) RETURNING to_jsonb({t}.*)",
            t = r.table
        )
    } else {
        format!(
            "INSERT INTO {t} (id, {names}) SELECT $1, {values} FROM jsonb_populate_record(NULL::{t}, $2) r RETURNING to_jsonb({t}.*)",
            t = r.table
        )
    };
    let conn = ctx.pool.get().await?;
    let id = Uuid::now_v7();
    let row = if columns.is_empty() {
        conn.query_one(&sql, &[&id]).await
    } else {
        conn.query_one(&sql, &[&id, &Value::Object(map)]).await
    }
    .map_err(map_db)?;
    Ok((StatusCode::CREATED, Json(row.get(0))))
}

async fn show(
    index: usize,
    Extension(ctx): Extension<TenantContext>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiFailure> {
    let r = &RESOURCES[index];
    user.require(r.read)?;
    let id = parse_id(&id)?;
    let conn = ctx.pool.get().await?;
    let row = conn
        .query_opt(
            &format!("SELECT to_jsonb(t) FROM {} t WHERE t.id = $1", r.table),
            &[&id],
        )
        .await
        .map_err(map_db)?
        .ok_or(ApiFailure::NotFound)?;
    Ok(Json(row.get(0)))
}

async fn update(
    index: usize,
    Extension(ctx): Extension<TenantContext>,
    user: AuthUser,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiFailure> {
    let r = &RESOURCES[index];
    user.require(r.write)?;
    let id = parse_id(&id)?;
    let map = fields(r, body)?;
    if map.is_empty() {
        return Err(ApiFailure::Unprocessable(
            "invalid_body",
            "nothing to change".into(),
        ));
    }
    let sets = map
        .keys()
        .map(|c| format!("{c} = r.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "UPDATE {t} t SET {sets}, updated_at = now() FROM jsonb_populate_record(NULL::{t}, $2) r \
         WHERE t.id = $1 RETURNING to_jsonb(t)",
        t = r.table
    );
    let conn = ctx.pool.get().await?;
    let row = conn
        .query_opt(&sql, &[&id, &Value::Object(map)])
        .await
        .map_err(map_db)?
        .ok_or(ApiFailure::NotFound)?;
    Ok(Json(row.get(0)))
}

async fn remove(
    index: usize,
    Extension(ctx): Extension<TenantContext>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiFailure> {
    let r = &RESOURCES[index];
    user.require(r.write)?;
    let id = parse_id(&id)?;
    let conn = ctx.pool.get().await?;
    let deleted = conn
        .execute(&format!("DELETE FROM {} WHERE id = $1", r.table), &[&id])
        .await
        .map_err(|e| match e.code() {
            Some(c) if *c == SqlState::FOREIGN_KEY_VIOLATION => ApiFailure::Conflict(
                "in_use",
                "other records refer to this one; delete them first".into(),
            ),
            _ => map_db(e),
        })?;
    if deleted == 1 {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiFailure::NotFound)
    }
}

/// `%XX` and `+` decoding for query values.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}
