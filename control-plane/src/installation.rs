//! One installation, one key, one storage root.
//!
//! At its first start an installation records in the owner database a check value for
//! each master key version (an HMAC of a fixed label under the key: it proves which key
//! it was without revealing it) and the absolute storage root. Every later process, the
//! service and each CLI command alike, compares its own with the record and refuses to
//! run on a mismatch. Without this, a CLI started from another directory in dev mode
//! generated a second key and a second storage tree: the tenants it made were `active`
//! but could never be served, and their files lived elsewhere.

use std::path::{Path, PathBuf};

use tokio_postgres::GenericClient;

use crate::secrets::Keyring;
use crate::secrets::MasterKeySource;
use crate::{Error, Result};

const STORAGE_ROOT: &str = "storage_root";
const KEY_SOURCE: &str = "master_key_source";

const KEY_CHECK_PREFIX: &str = "master_key_check:";

fn key_check_name(version: i32) -> String {
    format!("{KEY_CHECK_PREFIX}{version}")
}

/// Where this process's key came from, in words for the messages below (never the key).
pub fn describe_key_source(source: &MasterKeySource) -> String {
    match source {
        MasterKeySource::Inline(_) => "CP_MASTER_KEY".to_string(),
        MasterKeySource::File(p) => {
            format!("the file {} (CP_MASTER_KEY_FILE)", absolute(p).display())
        }
        MasterKeySource::Generated(p) => format!(
            "the dev key file {} (generated under CP_DATA_DIR)",
            absolute(p).display()
        ),
    }
}

/// `path` made absolute against the current directory, symlinks resolved where it exists.
pub fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_path_buf())
}

/// In dev mode the key file is generated when missing; if the installation already has
/// a key, a missing file means this process runs from the wrong place, and generating a
/// second key would only make the mismatch harder to see.
pub async fn refuse_second_dev_key(
    client: &impl GenericClient,
    key_source: &MasterKeySource,
) -> Result<()> {
    let MasterKeySource::Generated(path) = key_source else {
        return Ok(());
    };
    if path.exists() {
        return Ok(());
    }
    let versions = owner::settings::setting_versions(client, KEY_CHECK_PREFIX).await?;
    if versions.is_empty() {
        return Ok(());
    }
    let recorded = owner::settings::setting_text(client, KEY_SOURCE)
        .await?
        .unwrap_or_else(|| "another place".into());
    Err(Error::Config(format!(
        "there is no master key at {}, but this installation already has one: it came from {recorded}. \
         Run from the directory where the service first ran, or set CP_DATA_DIR to the directory holding its master.key \
         (or CP_MASTER_KEY_FILE to the key file itself). No new key was generated",
        absolute(path).display()
    )))
}

/// Records (first start) or compares (every later start) the key check values and the
/// storage root. `storage_root` must be absolute.
pub async fn verify(
    client: &impl GenericClient,
    keyring: &Keyring,
    key_source: &MasterKeySource,
    storage_root: &Path,
) -> Result<()> {
    let ours = describe_key_source(key_source);
    let recorded_source = owner::settings::setting_text_init(client, KEY_SOURCE, &ours).await?;
    for (version, check) in keyring.check_values()? {
        let recorded =
            owner::settings::setting_text_init(client, &key_check_name(version), &check).await?;
        if recorded != check {
            return Err(Error::Config(format!(
                "master key version {version} is not the key this installation was set up with. \
                 This process read its key from {ours}; the installation's key came from {recorded_source}. \
                 A different key cannot open any tenant's credentials, so nothing was started. \
                 Point CP_MASTER_KEY or CP_MASTER_KEY_FILE at the installation's key \
                 (in dev mode: run from the directory where the service first ran, or set CP_DATA_DIR to the directory holding its master.key)"
            )));
        }
    }
    crate::keys::adopt_sealing_version(client, keyring).await?;
    if let Some(version) = keyring_gaps(client, keyring).await?.first() {
        return Err(Error::Config(format!(
            "master key version {version} seals tenant or server credentials but is not configured \
             (this process read its keys from {ours}). Add it back to CP_MASTER_KEY or the key file \
             as `{version}:<key>` next to the newer versions"
        )));
    }
    let root = storage_root.display().to_string();
    let recorded = owner::settings::setting_text_init(client, STORAGE_ROOT, &root).await?;
    if recorded != root {
        return Err(Error::Config(format!(
            "the storage root is {root}, but this installation keeps its tenants' files in {recorded}. \
             Set CP_STORAGE_ROOT={recorded} (in dev mode: run from the directory where the service first ran, or set CP_DATA_DIR). \
             If you moved the tree to {root} on purpose, record the new place with `control-plane installation adopt-storage-root`"
        )));
    }
    Ok(())
}

/// Key versions that still seal tenant or server credentials but are missing from
/// `keyring`.
async fn keyring_gaps(client: &impl GenericClient, keyring: &Keyring) -> Result<Vec<i32>> {
    Ok(owner::keys::key_usage(client)
        .await?
        .into_iter()
        .map(|u| u.version)
        .filter(|v| !keyring.has_version(*v))
        .collect())
}

/// What the installation recorded: `(storage root, key source, key versions)`.
pub async fn recorded(
    client: &impl GenericClient,
) -> Result<(Option<String>, Option<String>, Vec<i32>)> {
    let root = owner::settings::setting_text(client, STORAGE_ROOT).await?;
    let source = owner::settings::setting_text(client, KEY_SOURCE).await?;
    let versions = owner::settings::setting_versions(client, KEY_CHECK_PREFIX).await?;
    Ok((root, source, versions))
}

/// Records `storage_root` as the installation's (after the operator moved the tree).
pub async fn adopt_storage_root(client: &impl GenericClient, storage_root: &Path) -> Result<()> {
    owner::settings::setting_text_set(client, STORAGE_ROOT, &storage_root.display().to_string())
        .await?;
    Ok(())
}
