//! A backup's manifest: what it holds and how to check it. Written last, as
//! `manifest.json` beside the files it names; its own SHA-256 is kept in the owner
//! database, so neither the files nor the manifest can be changed unnoticed.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{Error, Result};

pub const MANIFEST: &str = "manifest.json";
pub const DATABASE_DUMP: &str = "database.dump";
pub const FILES_ARCHIVE: &str = "files.tar";
/// Bumped when the layout of a backup changes; older versions stay readable.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub backup_id: Uuid,
    pub tenant_id: Uuid,
    pub tenant_slug: String,
    pub database: String,
    /// The tenant schema version (latest applied tenant migration) in the dump.
    pub schema_version: Option<i32>,
    /// `host:port` and `server_version` of the PostgreSQL server dumped.
    pub server: String,
    pub server_version: String,
    pub pg_dump_version: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub files: Vec<FileEntry>,
    /// Rows per table (`schema.table`), counted in the snapshot the dump was taken from.
    pub tables: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileEntry {
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
}

impl Manifest {
    pub fn file(&self, name: &str) -> Option<&FileEntry> {
        self.files.iter().find(|f| f.name == name)
    }
}

/// The SHA-256 of a file and its size, read in blocks (never whole into memory).
pub fn hash_file(path: &Path) -> Result<FileEntry> {
    let mut file = std::fs::File::open(path)
        .map_err(|e| Error::Internal(format!("cannot read {}: {e}", path.display())))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| Error::Internal(format!("cannot read {}: {e}", path.display())))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok(FileEntry {
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        bytes,
        sha256: hex(&hasher.finalize()),
    })
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads the manifest in `dir` and checks it against `expected_sha256` (from the owner
/// database), then every file it names against its checksum. Nothing is restored from a
/// backup that fails here.
pub fn verify(dir: &Path, expected_sha256: &str) -> Result<Manifest> {
    let corrupt = |why: String| Error::BackupCorrupt(why);
    let bytes = std::fs::read(dir.join(MANIFEST))
        .map_err(|e| corrupt(format!("its manifest cannot be read: {e}")))?;
    if sha256_hex(&bytes) != expected_sha256 {
        return Err(corrupt("its manifest was changed since the backup".into()));
    }
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| corrupt(format!("its manifest is not valid: {e}")))?;
    for expected in &manifest.files {
        let found = hash_file(&dir.join(&expected.name))
            .map_err(|e| corrupt(format!("{} is missing or unreadable: {e}", expected.name)))?;
        if found.sha256 != expected.sha256 || found.bytes != expected.bytes {
            return Err(corrupt(format!(
                "{} does not match its checksum (changed since the backup)",
                expected.name
            )));
        }
    }
    for needed in [DATABASE_DUMP, FILES_ARCHIVE] {
        if manifest.file(needed).is_none() {
            return Err(corrupt(format!("its manifest names no {needed}")));
        }
    }
    Ok(manifest)
}
