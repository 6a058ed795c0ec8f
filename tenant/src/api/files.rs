//! `/api/v1/files`: upload (streamed), list, download and delete files in the tenant's
//! storage tree, with their metadata in the `files` table.
//!
//! Nothing a client sends becomes part of a path on disk: a file is stored as
//! `<folder>/<file id>` and its name lives only in the metadata. Names with path tricks
//! are refused all the same, so clients learn early. An upload is written to a temporary
//! file and abandoned (deleted) the moment it passes the per-file limit or the plan's
//! storage quota, so a refused upload leaves nothing behind. The quota holds under
//! parallel uploads: each reserves its bytes in the tenant's ledger before writing them
//! (see `crate::ledger`).

use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, Path, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use utoipa::openapi::ObjectBuilder;
use utoipa::openapi::path::{Parameter, ParameterIn};
use utoipa::openapi::schema::{Schema, Type};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::openapi::{CONTROL, ErrorBody, one_of, parameter, uuid_schema};
use super::{ApiFailure, ApiQuery, AuthUser, Page};
use crate::context::TenantContext;
use crate::ledger::{self, Reservation};

/// Folders clients may put files in.
pub const FOLDERS: [&str; 3] = ["documents", "uploads", "medical-imaging"];
const MAX_NAME_BYTES: usize = 255;

pub fn routes() -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(upload))
        .routes(routes!(download, remove))
}

#[derive(Deserialize)]
struct UploadPath {
    folder: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadQuery {
    name: String,
    patient_id: Option<Uuid>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    folder: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

// Written out rather than derived: a derived parameter with its own schema loses its
// description and whether it is required.
impl IntoParams for UploadPath {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![parameter(
            "folder",
            ParameterIn::Path,
            true,
            "Where the file goes",
            one_of(&FOLDERS, false),
        )]
    }
}

impl IntoParams for UploadQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            parameter(
                "name",
                ParameterIn::Query,
                true,
                "The file's name: 1 to 255 bytes, without slashes, backslashes, `..`, a leading dot or control characters",
                file_name(),
            ),
            parameter(
                "patient_id",
                ParameterIn::Query,
                false,
                "The patient the file belongs to",
                uuid_schema(),
            ),
        ]
    }
}

impl IntoParams for ListQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![parameter(
            "folder",
            ParameterIn::Query,
            false,
            "Only the files of this folder",
            one_of(&FOLDERS, false),
        )]
        .into_iter()
        .chain(super::openapi::page_parameters())
        .collect()
    }
}

/// A file's metadata, as `to_jsonb` gives the row (without its storage path and digest).
#[derive(Deserialize, Serialize, ToSchema)]
struct FileInfo {
    content_type: String,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(schema_with = folder_of_file)]
    folder: String,
    id: Uuid,
    name: String,
    #[schema(required = true)]
    patient_id: Option<Uuid>,
    size_bytes: i64,
    /// The user who uploaded it (null once that user is deleted).
    #[schema(required = true)]
    uploaded_by: Option<Uuid>,
}

impl FileInfo {
    fn of(row: &tokio_postgres::Row) -> Result<Self, ApiFailure> {
        serde_json::from_value(row.get(0)).map_err(|e| ApiFailure::Internal(e.to_string()))
    }
}

/// What [`check_name`] lets through (counting characters: a schema cannot count bytes).
fn file_name() -> Schema {
    let allowed = format!(r"[^./\\{CONTROL}]");
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_NAME_BYTES))
        // No leading dot and no "..": every dot but a last one comes before another character.
        .pattern(Some(format!(r"^{allowed}(?:{allowed}|\.{allowed})*\.?$")))
        .build()
        .into()
}

fn folder_of_file() -> Schema {
    one_of(&FOLDERS, false)
}

fn check_name(name: &str) -> Result<(), ApiFailure> {
    let bad = name.is_empty()
        || name.len() > MAX_NAME_BYTES
        || name.starts_with('.')
        || name.contains(['/', '\\', '\0'])
        || name.contains("..")
        || name.chars().any(char::is_control);
    if bad {
        return Err(ApiFailure::BadRequest(
            "invalid_name",
            "a file name is 1-255 bytes, without slashes, backslashes, '..', a leading dot or control characters".into(),
        ));
    }
    Ok(())
}

fn check_folder(folder: &str) -> Result<(), ApiFailure> {
    if FOLDERS.contains(&folder) {
        Ok(())
    } else {
        Err(ApiFailure::BadRequest(
            "invalid_folder",
            format!("folder must be one of {FOLDERS:?}"),
        ))
    }
}

/// Uploads a file (streamed), within the per-file limit and the storage quota.
#[utoipa::path(
    post,
    path = "/api/v1/files/{folder}",
    operation_id = "files_upload",
    tag = "files",
    params(UploadPath, UploadQuery),
    request_body(
        description = "The file's bytes; the request's Content-Type is kept as the file's (`application/octet-stream` without one)",
        content(("application/octet-stream")),
    ),
    responses(
        (status = 201, description = "Stored", body = FileInfo),
        (status = 400, description = "An unknown folder, a name refused, or a malformed query string", body = ErrorBody),
        (status = 413, description = "`file_too_large`: over the plan's per-file limit", body = ErrorBody),
        (status = 422, description = "`unknown_reference`: no such patient", body = ErrorBody),
        (status = 507, description = "`storage_quota`: over the plan's storage quota, or `database_quota`", body = ErrorBody),
    ),
)]
async fn upload(
    Extension(ctx): Extension<TenantContext>,
    user: AuthUser,
    Path(UploadPath { folder }): Path<UploadPath>,
    ApiQuery(query): ApiQuery<UploadQuery>,
    headers: HeaderMap,
    request: Request,
) -> Result<(StatusCode, Json<FileInfo>), ApiFailure> {
    user.require("files:write")?;
    check_folder(&folder)?;
    check_name(&query.name)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 200)
        .unwrap_or("application/octet-stream")
        .to_string();

    // The per-file limit is known up front; the quota is checked against the ledger of
    // this tenant's uploads in flight (see `crate::ledger`), reserving as the body comes.
    let file_limit = ctx.limits.max_file_bytes;
    let mut reservation = ctx.ledger.reservation(ctx.limits.max_storage_bytes);
    if let Some(declared) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        refuse_over_file_limit(declared, file_limit)?;
        reservation.grow(&ctx.pool, declared, 0).await?;
    }

    let id = Uuid::now_v7();
    let relative = format!("{folder}/{id}");
    let final_path = ctx
        .storage
        .resolve(&relative)
        .map_err(|e| ApiFailure::BadRequest("invalid_path", e.to_string()))?;
    let temp_path = final_path.with_file_name(format!(".{id}.part"));
    if let Some(parent) = final_path.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| ApiFailure::Internal(e.to_string()))?;
    }
    let written = stream_to(
        &temp_path,
        request.into_body(),
        file_limit,
        &ctx.pool,
        &mut reservation,
    )
    .await;
    let (size, digest) = match written {
        Ok(done) => done,
        Err(e) => {
            let _ = tokio::fs::remove_file(&temp_path).await;
            return Err(e);
        }
    };
    if let Err(e) = tokio::fs::rename(&temp_path, &final_path).await {
        let _ = tokio::fs::remove_file(&temp_path).await;
        return Err(ApiFailure::Internal(e.to_string()));
    }
    // The row is written and the reservation released in one step under the ledger's
    // lock, so a parallel check sees these bytes in one place or the other.
    let row = reservation
        .complete(async || {
            let conn = ctx.pool.get().await?;
            conn.query_one(
                "INSERT INTO files (id, folder, name, storage_path, content_type, size_bytes, sha256, uploaded_by, patient_id) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING to_jsonb(files.*) - 'sha256' - 'storage_path'",
                &[&id, &folder, &query.name, &relative, &content_type, &(size as i64), &digest, &user.user.id, &query.patient_id],
            )
            .await
            .map_err(ApiFailure::from)
        })
        .await;
    match row {
        Ok(row) => Ok((StatusCode::CREATED, Json(FileInfo::of(&row)?))),
        Err(e) => {
            // The metadata is the record of the file: no row, no file.
            let _ = tokio::fs::remove_file(&final_path).await;
            match e {
                ApiFailure::Db(e)
                    if e.code()
                        == Some(&tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION) =>
                {
                    Err(ApiFailure::Unprocessable(
                        "unknown_reference",
                        "no such patient".into(),
                    ))
                }
                e => Err(e),
            }
        }
    }
}

fn refuse_over_file_limit(size: u64, file_limit: Option<u64>) -> Result<(), ApiFailure> {
    match file_limit {
        Some(limit) if size > limit => Err(ApiFailure::TooLarge(format!(
            "a file may be at most {limit} bytes"
        ))),
        _ => Ok(()),
    }
}

/// Streams the body to `path`, refusing as soon as it passes the per-file limit or needs
/// more of the quota than the reservation can get.
async fn stream_to(
    path: &std::path::Path,
    body: Body,
    file_limit: Option<u64>,
    pool: &crate::pool::TenantPool,
    reservation: &mut Reservation,
) -> Result<(u64, Vec<u8>), ApiFailure> {
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| ApiFailure::Internal(e.to_string()))?;
    let mut stream = body.into_data_stream();
    let mut size: u64 = 0;
    let mut hasher = Sha256::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiFailure::BadRequest("bad_body", e.to_string()))?;
        size += chunk.len() as u64;
        refuse_over_file_limit(size, file_limit)?;
        if size > reservation.bytes() {
            reservation.grow(pool, size, ledger::STEP).await?;
        }
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|e| ApiFailure::Internal(e.to_string()))?;
    }
    file.sync_all()
        .await
        .map_err(|e| ApiFailure::Internal(e.to_string()))?;
    Ok((size, hasher.finalize().to_vec()))
}

/// The tenant's files, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/api/v1/files",
    operation_id = "files_list",
    tag = "files",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of files", body = Page<FileInfo>),
        (status = 400, description = "An unknown folder or a malformed query string", body = ErrorBody),
    ),
)]
async fn list(
    Extension(ctx): Extension<TenantContext>,
    user: AuthUser,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Page<FileInfo>>, ApiFailure> {
    user.require("files:read")?;
    if let Some(folder) = &query.folder {
        check_folder(folder)?;
    }
    let limit = query.limit.unwrap_or(50).clamp(1, 200);
    let offset = query.offset.unwrap_or(0).max(0);
    let conn = ctx.pool.get().await?;
    let rows = conn
        .query(
            "SELECT to_jsonb(f) - 'sha256' - 'storage_path' FROM files f WHERE ($1::text IS NULL OR folder = $1) \
             ORDER BY created_at DESC, id LIMIT $2 OFFSET $3",
            &[&query.folder, &limit, &offset],
        )
        .await?;
    let items = rows.iter().map(FileInfo::of).collect::<Result<_, _>>()?;
    let total: i64 = conn
        .query_one(
            "SELECT count(*) FROM files WHERE ($1::text IS NULL OR folder = $1)",
            &[&query.folder],
        )
        .await?
        .get(0);
    Ok(Json(Page {
        items,
        limit,
        offset,
        total,
    }))
}

/// A file's bytes, as an attachment of the type it was uploaded with.
#[utoipa::path(
    get,
    path = "/api/v1/files/id/{id}",
    operation_id = "files_download",
    tag = "files",
    params(("id" = Uuid, Path, description = "The file's id")),
    responses((status = 200, description = "The file", content(("*/*")))),
)]
async fn download(
    Extension(ctx): Extension<TenantContext>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<Response, ApiFailure> {
    user.require("files:read")?;
    let id = Uuid::parse_str(&id).map_err(|_| ApiFailure::NotFound)?;
    let conn = ctx.pool.get().await?;
    let row = conn
        .query_opt(
            "SELECT storage_path, name, content_type FROM files WHERE id = $1",
            &[&id],
        )
        .await?
        .ok_or(ApiFailure::NotFound)?;
    drop(conn);
    let relative: String = row.get(0);
    let name: String = row.get(1);
    let content_type: String = row.get(2);
    let path = ctx
        .storage
        .resolve(&relative)
        .map_err(|e| ApiFailure::Internal(e.to_string()))?;
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|_| ApiFailure::NotFound)?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(file));
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    let ascii_name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".-_ ".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{ascii_name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}

/// Deletes a file and its bytes.
#[utoipa::path(
    delete,
    path = "/api/v1/files/id/{id}",
    operation_id = "files_delete",
    tag = "files",
    params(("id" = Uuid, Path, description = "The file's id")),
    responses((status = 204, description = "Deleted")),
)]
async fn remove(
    Extension(ctx): Extension<TenantContext>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiFailure> {
    user.require("files:write")?;
    let id = Uuid::parse_str(&id).map_err(|_| ApiFailure::NotFound)?;
    let conn = ctx.pool.get().await?;
    let row = conn
        .query_opt(
            "DELETE FROM files WHERE id = $1 RETURNING storage_path",
            &[&id],
        )
        .await?
        .ok_or(ApiFailure::NotFound)?;
    let relative: String = row.get(0);
    if let Ok(path) = ctx.storage.resolve(&relative) {
        let _ = tokio::fs::remove_file(path).await;
    }
    Ok(StatusCode::NO_CONTENT)
}
