//! Secrets at rest: the master keyring, AES-256-GCM sealing, random passwords, SCRAM
//! verifiers and derived signing keys.
//!
//! Ciphertexts are `nonce (12 bytes) || ciphertext+tag`, stored next to the key version
//! that sealed them. The associated data binds each secret to its owner and purpose
//! (`tenant:<id>:db-owner`), so a ciphertext copied to another row does not open.
//! Every configured version opens; new secrets are sealed with the sealing version, which
//! the installation records (`keys rotate` moves it), so a key can be rolled out to every
//! replica before anything is sealed with it.
//!
//! Tenants' secrets are sealed with a data key of their own ([`DataKey`]: envelope
//! encryption), and only that key with the master key, so re-encrypting everything under a
//! new master version touches one small key per tenant.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

use aes_gcm::aead::{Aead, Generate, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::prelude::{BASE64_STANDARD, BASE64_URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::Sha256;

use crate::{Error, Result};

/// Where the master key comes from.
#[derive(Debug, Clone)]
pub enum MasterKeySource {
    /// The key material itself (`CP_MASTER_KEY`).
    Inline(SecretString),
    /// A file holding it (`CP_MASTER_KEY_FILE`).
    File(PathBuf),
    /// Dev only: generated once into `<data dir>/master.key`.
    Generated(PathBuf),
}

const NONCE_LEN: usize = 12;

/// The master keys by version. Cheap to share behind an `Arc`; `Debug` shows versions only.
pub struct Keyring {
    keys: BTreeMap<i32, SecretBox<[u8; 32]>>,
    /// The version new secrets are sealed with (see [`Keyring::set_sealing_version`]).
    current: AtomicI32,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("versions", &self.keys.keys().collect::<Vec<_>>())
            .field("sealing", &self.sealing_version())
            .finish()
    }
}

impl Keyring {
    /// Parses `<base64>` (version 1) or `1:<base64>,2:<base64>`; each key is 32 bytes.
    pub fn parse(spec: &str) -> Result<Self> {
        let bad = |why: String| Error::Config(format!("invalid master key: {why}"));
        let mut keys = BTreeMap::new();
        for (i, part) in spec
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .enumerate()
        {
            let (version, b64) = match part.split_once(':') {
                Some((v, k)) => (
                    v.trim()
                        .parse::<i32>()
                        .ok()
                        .filter(|v| *v > 0)
                        .ok_or_else(|| bad(format!("entry {} has a bad version", i + 1)))?,
                    k.trim(),
                ),
                None => (1, part),
            };
            let bytes = BASE64_STANDARD
                .decode(b64)
                .map_err(|_| bad(format!("entry {} is not base64", i + 1)))?;
            let key: [u8; 32] = bytes
                .try_into()
                .map_err(|_| bad(format!("entry {} is not 32 bytes", i + 1)))?;
            if keys
                .insert(version, SecretBox::new(Box::new(key)))
                .is_some()
            {
                return Err(bad(format!("version {version} appears twice")));
            }
        }
        let current = *keys
            .keys()
            .next_back()
            .ok_or_else(|| bad("no key given".into()))?;
        Ok(Self {
            keys,
            current: AtomicI32::new(current),
        })
    }

    /// Loads the keyring from where the configuration says; in dev, generates the key
    /// file once (mode 0600) and says so loudly.
    pub fn load(source: &MasterKeySource) -> Result<Self> {
        match source {
            MasterKeySource::Inline(spec) => Self::parse(spec.expose_secret()),
            MasterKeySource::File(path) => Self::parse(&read_key_file(path)?),
            MasterKeySource::Generated(path) => {
                if !path.exists() {
                    generate_key_file(path)?;
                    tracing::warn!(
                        path = %std::fs::canonicalize(path).unwrap_or_else(|_| path.clone()).display(),
                        "DEV MODE: generated a new master key. Tenant passwords are encrypted with it; \
                         keep this file, and set CP_MASTER_KEY or CP_MASTER_KEY_FILE in production"
                    );
                }
                Self::parse(&read_key_file(path)?)
            }
        }
    }

    /// A fresh random keyring (tests, benchmarks).
    pub fn random() -> Self {
        let mut keys = BTreeMap::new();
        keys.insert(1, SecretBox::new(Box::new(rand::random::<[u8; 32]>())));
        Self {
            keys,
            current: AtomicI32::new(1),
        }
    }

    pub fn has_version(&self, version: i32) -> bool {
        self.keys.contains_key(&version)
    }

    /// `(version, check value)` for every key: HMAC-SHA256 of a fixed label under the
    /// key, hex. It tells keys apart without revealing them.
    pub fn check_values(&self) -> Result<Vec<(i32, String)>> {
        self.keys
            .iter()
            .map(|(version, key)| {
                let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.expose_secret())
                    .map_err(|_| Error::Crypto("bad master key length".into()))?;
                mac.update(b"control-plane master key check v1");
                let digest = mac.finalize().into_bytes();
                let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
                Ok((*version, hex))
            })
            .collect()
    }

    /// The version new secrets are sealed with: the highest configured until the
    /// installation's recorded one is set.
    pub fn sealing_version(&self) -> i32 {
        self.current.load(Ordering::SeqCst)
    }

    /// The highest configured version (what `keys rotate` moves sealing to).
    pub fn newest_version(&self) -> i32 {
        self.keys.keys().next_back().copied().unwrap_or(0)
    }

    /// Every configured version, oldest first.
    pub fn versions(&self) -> Vec<i32> {
        self.keys.keys().copied().collect()
    }

    /// Seals new secrets with `version` from now on; refused unless it is configured.
    pub fn set_sealing_version(&self, version: i32) -> Result<()> {
        if !self.has_version(version) {
            return Err(Error::Config(format!(
                "master key version {version} seals new secrets in this installation but is not configured here; \
                 add it to CP_MASTER_KEY or the key file as `{version}:<key>`"
            )));
        }
        self.current.store(version, Ordering::SeqCst);
        Ok(())
    }

    fn cipher(&self, version: i32) -> Result<Aes256Gcm> {
        let key = self.keys.get(&version).ok_or_else(|| {
            Error::Crypto(format!("master key version {version} is not configured"))
        })?;
        Ok(Aes256Gcm::new(&Key::<Aes256Gcm>::from(
            *key.expose_secret(),
        )))
    }

    /// Seals `plaintext` under the sealing version; returns the version and the blob.
    pub fn seal(&self, plaintext: &[u8], aad: &str) -> Result<(i32, Vec<u8>)> {
        let version = self.sealing_version();
        Ok((version, seal_with(&self.cipher(version)?, plaintext, aad)?))
    }

    /// Opens a blob sealed by [`Keyring::seal`] with the same associated data.
    pub fn open(&self, version: i32, blob: &[u8], aad: &str) -> Result<SecretBox<[u8]>> {
        open_with(&self.cipher(version)?, blob, aad)
    }

    pub fn open_string(&self, version: i32, blob: &[u8], aad: &str) -> Result<SecretString> {
        utf8(self.open(version, blob, aad)?)
    }

    /// A 32-byte key for `purpose`, derived with HMAC-SHA256 from the oldest configured
    /// master key, so signing keys never equal an encryption key and differ per purpose.
    /// The oldest, not the sealing one: `keys rotate` must not change what every replica
    /// signs operators' tokens with; retiring the oldest version does (operators sign in
    /// again once).
    pub fn derive(&self, purpose: &str) -> Result<SecretBox<[u8; 32]>> {
        let (_, root) = self
            .keys
            .first_key_value()
            .ok_or_else(|| Error::Crypto("no master key".into()))?;
        Ok(hmac_key(root.expose_secret(), purpose))
    }

    /// A new data key for the secrets bound to `aad` (a tenant's), and the key sealed
    /// under the sealing version: `(key, version, sealed)`.
    pub fn new_data_key(&self, aad: &str) -> Result<(DataKey, i32, Vec<u8>)> {
        let key = DataKey(SecretBox::new(Box::new(rand::random::<[u8; 32]>())));
        let (version, sealed) = self.seal(key.0.expose_secret(), aad)?;
        Ok((key, version, sealed))
    }

    /// Opens a data key sealed by [`Keyring::new_data_key`].
    pub fn open_data_key(&self, version: i32, sealed: &[u8], aad: &str) -> Result<DataKey> {
        let plain = self.open(version, sealed, aad)?;
        let key: [u8; 32] = plain
            .expose_secret()
            .try_into()
            .map_err(|_| Error::Crypto("a data key is not 32 bytes".into()))?;
        Ok(DataKey(SecretBox::new(Box::new(key))))
    }

    /// Seals an opened data key again under the sealing version (a rewrap).
    pub fn reseal_data_key(&self, key: &DataKey, aad: &str) -> Result<(i32, Vec<u8>)> {
        self.seal(key.0.expose_secret(), aad)
    }
}

/// A key of one tenant's, sealing its secrets; kept sealed under the master key.
pub struct DataKey(SecretBox<[u8; 32]>);

impl DataKey {
    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&Key::<Aes256Gcm>::from(*self.0.expose_secret()))
    }

    pub fn seal(&self, plaintext: &[u8], aad: &str) -> Result<Vec<u8>> {
        seal_with(&self.cipher(), plaintext, aad)
    }

    pub fn open(&self, blob: &[u8], aad: &str) -> Result<SecretBox<[u8]>> {
        open_with(&self.cipher(), blob, aad)
    }

    pub fn open_string(&self, blob: &[u8], aad: &str) -> Result<SecretString> {
        utf8(self.open(blob, aad)?)
    }

    /// A key of its own for one kind of secret (integration credentials), derived from
    /// this one: it lives and rotates with the data key, and opens nothing else.
    pub fn subkey(&self, purpose: &str) -> DataKey {
        DataKey(self.derive(purpose))
    }

    /// A 32-byte key for `purpose`, derived from this data key (see [`Keyring::derive`]).
    pub fn derive(&self, purpose: &str) -> SecretBox<[u8; 32]> {
        hmac_key(self.0.expose_secret(), purpose)
    }
}

fn hmac_key(key: &[u8], purpose: &str) -> SecretBox<[u8; 32]> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(purpose.as_bytes());
    SecretBox::new(Box::new(mac.finalize().into_bytes().into()))
}

fn seal_with(cipher: &Aes256Gcm, plaintext: &[u8], aad: &str) -> Result<Vec<u8>> {
    let nonce = Nonce::generate();
    let ciphertext = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| Error::Crypto("encryption failed".into()))?;
    let mut blob = nonce.to_vec();
    blob.extend_from_slice(&ciphertext);
    Ok(blob)
}

fn open_with(cipher: &Aes256Gcm, blob: &[u8], aad: &str) -> Result<SecretBox<[u8]>> {
    if blob.len() < NONCE_LEN {
        return Err(Error::Crypto("ciphertext too short".into()));
    }
    let (nonce, ciphertext) = blob.split_at(NONCE_LEN);
    let nonce = Nonce::try_from(nonce).map_err(|_| Error::Crypto("bad nonce".into()))?;
    let plain = cipher
        .decrypt(
            &nonce,
            Payload {
                msg: ciphertext,
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| Error::Crypto("decryption failed (wrong key or associated data)".into()))?;
    Ok(SecretBox::new(plain.into_boxed_slice()))
}

fn utf8(plain: SecretBox<[u8]>) -> Result<SecretString> {
    let s = std::str::from_utf8(plain.expose_secret())
        .map_err(|_| Error::Crypto("secret is not UTF-8".into()))?;
    Ok(SecretString::from(s.to_string()))
}

fn read_key_file(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| {
        Error::Config(format!(
            "cannot read master key file {}: {e}",
            path.display()
        ))
    })
}

fn generate_key_file(path: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Config(format!("cannot create {}: {e}", dir.display())))?;
    }
    let key = BASE64_STANDARD.encode(rand::random::<[u8; 32]>());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            Error::Config(format!(
                "cannot create master key file {}: {e}",
                path.display()
            ))
        })?;
    writeln!(file, "1:{key}").map_err(|e| {
        Error::Config(format!(
            "cannot write master key file {}: {e}",
            path.display()
        ))
    })?;
    Ok(())
}

/// A new random password: 32 random bytes, base64url (43 characters).
pub fn random_password() -> SecretString {
    SecretString::from(BASE64_URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>()))
}

/// The SCRAM-SHA-256 verifier PostgreSQL stores for `password`, computed here so the
/// clear-text password never appears in a statement the server could log.
pub fn scram_verifier(password: &SecretString, iterations: u32) -> String {
    scram_verifier_salted(password, iterations, rand::random::<[u8; 16]>())
}

/// The verifier PostgreSQL would compute itself (RFC 5802/7677), with the iteration count
/// chosen here: the server accepts any count in a verifier the client computed, and each
/// login then costs that many PBKDF2 rounds. Our passwords are URL-safe base64, which
/// SASLprep leaves as it is.
fn scram_verifier_salted(password: &SecretString, iterations: u32, salt: [u8; 16]) -> String {
    let hmac = |key: &[u8], parts: &[&[u8]]| -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    };
    let password = password.expose_secret().as_bytes();
    // PBKDF2-HMAC-SHA256, one block (the output is one SHA-256 long).
    let mut block = hmac(password, &[&salt, &1u32.to_be_bytes()]);
    let mut salted = block;
    for _ in 1..iterations.max(1) {
        block = hmac(password, &[&block]);
        for (s, b) in salted.iter_mut().zip(block) {
            *s ^= b;
        }
    }
    let client_key = hmac(&salted, &[b"Client Key"]);
    let stored_key: [u8; 32] = <Sha256 as sha2::Digest>::digest(client_key).into();
    let server_key = hmac(&salted, &[b"Server Key"]);
    format!(
        "SCRAM-SHA-256${}:{}${}:{}",
        iterations.max(1),
        BASE64_STANDARD.encode(salt),
        BASE64_STANDARD.encode(stored_key),
        BASE64_STANDARD.encode(server_key)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open_round_trip_bound_to_aad() {
        let ring = Keyring::random();
        let (v, blob) = ring.seal(b"s3cret", "tenant:1:db-owner").expect("seal");
        let opened = ring.open(v, &blob, "tenant:1:db-owner").expect("open");
        assert_eq!(opened.expose_secret(), b"s3cret");
        assert!(
            ring.open(v, &blob, "tenant:2:db-owner").is_err(),
            "other aad opened it"
        );
        let mut tampered = blob.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert!(ring.open(v, &tampered, "tenant:1:db-owner").is_err());
    }

    #[test]
    fn old_versions_stay_readable_and_new_secrets_use_the_newest() {
        let k1 = BASE64_STANDARD.encode([1u8; 32]);
        let k2 = BASE64_STANDARD.encode([2u8; 32]);
        let old = Keyring::parse(&format!("1:{k1}")).expect("parse");
        let (v1, blob) = old.seal(b"x", "a").expect("seal");
        let both = Keyring::parse(&format!("1:{k1},2:{k2}")).expect("parse");
        assert_eq!(both.sealing_version(), 2, "the newest until told otherwise");
        assert_eq!(
            both.open(v1, &blob, "a").expect("open").expose_secret(),
            b"x"
        );
        assert_eq!(both.seal(b"y", "a").expect("seal").0, 2);
    }

    #[test]
    fn bad_key_specs_are_refused() {
        for bad in [
            "",
            "nope",
            "1:abc",
            &format!("0:{}", BASE64_STANDARD.encode([0u8; 32])),
        ] {
            assert!(Keyring::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn derived_keys_differ_by_purpose() {
        let ring = Keyring::random();
        let a = ring.derive("owner-jwt").expect("derive");
        let b = ring.derive("tenant-jwt:x").expect("derive");
        assert_ne!(a.expose_secret(), b.expose_secret());
    }

    #[test]
    fn scram_verifier_has_postgres_shape() {
        let v = scram_verifier(&SecretString::from("pw".to_string()), 4096);
        assert!(v.starts_with("SCRAM-SHA-256$4096:"), "{v}");
        assert!(!v.contains("pw$"));
    }

    #[test]
    fn scram_verifier_matches_postgres_protocols_for_the_same_salt() {
        let pw = random_password();
        let theirs = postgres_protocol::password::scram_sha_256(pw.expose_secret().as_bytes());
        let salt_b64 = theirs
            .split(['$', ':'])
            .nth(2)
            .expect("SCRAM-SHA-256$<iter>:<salt>$...");
        let salt: [u8; 16] = BASE64_STANDARD
            .decode(salt_b64)
            .expect("base64")
            .try_into()
            .expect("16 bytes");
        assert_eq!(scram_verifier_salted(&pw, 4096, salt), theirs);
        assert!(scram_verifier(&pw, 7).starts_with("SCRAM-SHA-256$7:"));
    }
}

#[cfg(test)]
mod data_key_tests {
    use super::*;

    #[test]
    fn a_data_key_survives_a_rewrap_and_stays_bound_to_its_tenant() {
        let k1 = BASE64_STANDARD.encode([1u8; 32]);
        let k2 = BASE64_STANDARD.encode([2u8; 32]);
        let ring = Keyring::parse(&format!("1:{k1},2:{k2}")).expect("parse");
        ring.set_sealing_version(1).expect("v1");
        let (key, v1, sealed) = ring.new_data_key("tenant:a:data-key").expect("key");
        assert_eq!(v1, 1);
        let secret = key.seal(b"password", "tenant:a:db-owner").expect("seal");
        ring.set_sealing_version(2).expect("v2");
        let opened = ring
            .open_data_key(1, &sealed, "tenant:a:data-key")
            .expect("open");
        let (v2, resealed) = ring
            .reseal_data_key(&opened, "tenant:a:data-key")
            .expect("reseal");
        assert_eq!(v2, 2);
        let again = ring
            .open_data_key(2, &resealed, "tenant:a:data-key")
            .expect("open");
        assert_eq!(
            again
                .open_string(&secret, "tenant:a:db-owner")
                .expect("open")
                .expose_secret(),
            "password"
        );
        assert!(
            ring.open_data_key(2, &resealed, "tenant:b:data-key")
                .is_err(),
            "another tenant's row does not open it"
        );
        assert!(ring.set_sealing_version(3).is_err(), "not configured");
        assert_eq!(
            again.derive("x").expose_secret(),
            key.derive("x").expose_secret(),
            "signing keys survive a rewrap"
        );
    }
}
