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

use axum::body::Body;
use axum::extract::{Extension, Path, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use super::{ApiFailure, ApiQuery, AuthUser};
use crate::context::TenantContext;
use crate::ledger::{self, Reservation};

/// Folders clients may put files in.
pub const FOLDERS: [&str; 3] = ["documents", "uploads", "medical-imaging"];
const MAX_NAME_BYTES: usize = 255;

pub fn routes() -> Router {
    Router::new()
        .route("/api/v1/files", get(list))
        .route("/api/v1/files/{folder}", axum::routing::post(upload))
        .route("/api/v1/files/id/{id}", get(download).delete(remove))
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

async fn upload(
    Extension(ctx): Extension<TenantContext>,
    user: AuthUser,
    Path(folder): Path<String>,
    ApiQuery(query): ApiQuery<UploadQuery>,
    headers: HeaderMap,
    request: Request,
) -> Result<(StatusCode, Json<Value>), ApiFailure> {
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
        Ok(row) => Ok((StatusCode::CREATED, Json(row.get(0)))),
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

async fn list(
    Extension(ctx): Extension<TenantContext>,
    user: AuthUser,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiFailure> {
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
    let items: Vec<Value> = rows.iter().map(|r| r.get(0)).collect();
    let total: i64 = conn
        .query_one(
            "SELECT count(*) FROM files WHERE ($1::text IS NULL OR folder = $1)",
            &[&query.folder],
        )
        .await?
        .get(0);
    Ok(Json(
        json!({ "items": items, "total": total, "limit": limit, "offset": offset }),
    ))
}

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
