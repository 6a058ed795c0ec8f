//! An export: everything a tenant owns in one tar archive, for a customer who leaves or
//! asks for their data. It holds the `pg_dump` of the database, each table as JSON lines
//! (`tables/<schema>.<table>.jsonl`, one object per row), the files (`files/...`) and a
//! manifest, all taken from one snapshot. It is written to a file beside the storage
//! tree (never held in memory) and streamed from there; the file is removed once sent.

use std::path::{Path, PathBuf};

use chrono::Utc;
use futures::StreamExt;
use owner::tenants::{Tenant, TenantStatus};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use super::manifest::{self, DATABASE_DUMP, FORMAT_VERSION, MANIFEST, Manifest};
use super::{Backups, archive, begin_snapshot, blocking, count_rows};
use crate::audit::{self, Actor, Target};
use crate::pg::ident;
use crate::pg::tools;
use crate::{Error, Result};

/// A finished export archive on disk. Removed when dropped, so a download that is cut
/// short leaves nothing behind.
pub struct Export {
    pub path: PathBuf,
    /// What to call it when handing it over: `<slug>-export-<date>.tar`.
    pub file_name: String,
    pub bytes: u64,
}

impl Export {
    /// `<slug>-export-<date>.tar`.
    pub fn file_name_for(slug: &str) -> String {
        format!("{slug}-export-{}.tar", Utc::now().format("%Y%m%d"))
    }
}

impl Drop for Export {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Backups {
    /// Writes the export of `tenant`.
    pub async fn export(&self, tenant: &Tenant, actor: &Actor) -> Result<Export> {
        if !matches!(
            tenant.status,
            TenantStatus::Active | TenantStatus::Suspended
        ) {
            return Err(Error::WrongState {
                id: tenant.id,
                status: tenant.status.as_str(),
            });
        }
        let id = Uuid::new_v4();
        let exports = self.storage.root().join(".exports");
        let work = exports.join(id.to_string());
        let out = exports.join(format!("{id}.tar"));
        let result = self.write_export(tenant, id, &work, &out).await;
        {
            let work = work.clone();
            let _ = blocking(move || archive::remove_dir(&work)).await;
        }
        let bytes = match result {
            Ok(bytes) => bytes,
            Err(e) => {
                let _ = std::fs::remove_file(&out);
                return Err(e);
            }
        };
        let export = Export {
            path: out,
            file_name: Export::file_name_for(&tenant.slug),
            bytes,
        };
        let conn = self.owner.conn().await?;
        audit::record(
            &**conn,
            actor,
            "tenant.export",
            Target("tenant", &tenant.id.to_string()),
            json!({ "bytes": bytes }),
        )
        .await?;
        Ok(export)
    }

    async fn write_export(
        &self,
        tenant: &Tenant,
        id: Uuid,
        work: &Path,
        out: &Path,
    ) -> Result<u64> {
        let tables_dir = work.join("tables");
        tokio::fs::create_dir_all(&tables_dir)
            .await
            .map_err(|e| Error::Internal(format!("cannot create {}: {e}", tables_dir.display())))?;
        let started_at = Utc::now();
        let cluster = self.servers.of(tenant).await?;
        let mut session = cluster.admin_session(&tenant.db_name).await?;
        let (tx, snapshot, server_version) = begin_snapshot(&mut session).await?;
        let tables = count_rows(&tx).await?;
        let dump = work.join(DATABASE_DUMP);
        self.dump(&cluster, &tenant.db_name, &snapshot, &dump)
            .await?;
        let mut jsonl = Vec::new();
        for name in tables.keys() {
            let (schema, table) = name.split_once('.').unwrap_or(("public", name));
            let path = tables_dir.join(format!("{}.jsonl", file_name_of(name)));
            let copy = format!(
                "COPY (SELECT row_to_json(t) FROM {}.{} t) TO STDOUT",
                ident(schema),
                ident(table)
            );
            let stream = tx.copy_out(&copy).await?;
            futures::pin_mut!(stream);
            let mut file = tokio::fs::File::create(&path)
                .await
                .map_err(|e| Error::Internal(format!("cannot write {}: {e}", path.display())))?;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                file.write_all(&unescape_copy_text(&chunk))
                    .await
                    .map_err(|e| {
                        Error::Internal(format!("cannot write {}: {e}", path.display()))
                    })?;
            }
            file.flush()
                .await
                .map_err(|e| Error::Internal(format!("cannot write {}: {e}", path.display())))?;
            jsonl.push(path);
        }
        tx.commit().await?;
        let pg_dump_version = tools::pg_dump_version().await?;
        let tree = self.storage.tenant(&tenant.slug)?.dir().to_path_buf();
        let (host, port) = crate::pg::server_address(cluster.admin_endpoint().config());
        let (work, out) = (work.to_path_buf(), out.to_path_buf());
        let tenant = tenant.clone();
        blocking(move || {
            let mut files = vec![manifest::hash_file(&dump)?];
            for path in &jsonl {
                let mut entry = manifest::hash_file(path)?;
                entry.name = format!("tables/{}", entry.name);
                files.push(entry);
            }
            let manifest = Manifest {
                format_version: FORMAT_VERSION,
                backup_id: id,
                tenant_id: tenant.id,
                tenant_slug: tenant.slug.clone(),
                database: tenant.db_name.clone(),
                schema_version: tenant.schema_version,
                server: format!("{host}:{port}"),
                server_version,
                pg_dump_version,
                started_at,
                finished_at: Utc::now(),
                files,
                tables,
            };
            let bytes = serde_json::to_vec_pretty(&manifest)
                .map_err(|e| Error::Internal(format!("cannot write the manifest: {e}")))?;
            std::fs::write(work.join(MANIFEST), bytes)
                .map_err(|e| Error::Internal(format!("cannot write the manifest: {e}")))?;
            let io =
                |e: std::io::Error| Error::Internal(format!("cannot write {}: {e}", out.display()));
            let file = std::fs::File::create(&out).map_err(io)?;
            let mut builder = tar::Builder::new(std::io::BufWriter::new(file));
            builder.follow_symlinks(false);
            builder
                .append_path_with_name(work.join(MANIFEST), MANIFEST)
                .map_err(io)?;
            builder
                .append_path_with_name(work.join(DATABASE_DUMP), DATABASE_DUMP)
                .map_err(io)?;
            builder
                .append_dir_all("tables", work.join("tables"))
                .map_err(io)?;
            archive::append_tree(&mut builder, &tree, "files")?;
            let mut writer = builder.into_inner().map_err(io)?;
            std::io::Write::flush(&mut writer).map_err(io)?;
            Ok(writer.get_ref().metadata().map_err(io)?.len())
        })
        .await
    }
}

/// A table's name as a file name: anything but letters, digits, `.`, `_` and `-` becomes
/// `_`, so no name can reach outside the export's folder.
fn file_name_of(table: &str) -> String {
    table
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        .trim_start_matches('.')
        .to_string()
}

/// Undoes the backslash escapes of COPY's text format: `\\` for a backslash, and `\n`,
/// `\t`... for the control characters a `json` (not `jsonb`) value may hold between its
/// tokens.
fn unescape_copy_text(chunk: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(chunk.len());
    let mut i = 0;
    while i < chunk.len() {
        if chunk[i] == b'\\' && i + 1 < chunk.len() {
            out.push(match chunk[i + 1] {
                b'n' => b'\n',
                b't' => b'\t',
                b'r' => b'\r',
                b'b' => 0x08,
                b'f' => 0x0c,
                b'v' => 0x0b,
                other => other,
            });
            i += 2;
        } else {
            out.push(chunk[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn copy_text_unescaping_gives_the_json_back() {
        let line = br#"{"a":"x\\\\ny","b":"q\\"z"}"#;
        assert_eq!(
            super::unescape_copy_text(line),
            br#"{"a":"x\\ny","b":"q\"z"}"#.to_vec()
        );
    }
}
