//! Tenant users' authentication: argon2 passwords, short-lived access JWTs and
//! revocable refresh tokens.
//!
//! Access tokens are HS256 with the algorithm pinned, signed with a key that belongs to
//! one tenant (the gateway derives it from the master key and the tenant id), and carry
//! `aud = "tenant"`, `iss`, `exp` and `tid` (the tenant id), all required; `tid` must be
//! the tenant the request was resolved to. A token of tenant A fails on tenant B twice
//! over: B's key does not verify it, and its `tid` is not B.
//! Refresh tokens are random, stored as SHA-256 hashes in the tenant's `sessions`, rotated
//! on every use and revoked on logout.

use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use base64::Engine;
use base64::prelude::BASE64_URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub const AUDIENCE: &str = "tenant";
pub const ISSUER: &str = "control-plane";
pub const ACCESS_TTL: Duration = Duration::from_secs(15 * 60);
pub const REFRESH_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
pub const MIN_PASSWORD_CHARS: usize = 10;

/// At most this many argon2 computations at once (each takes ~19 MiB and a core for tens
/// of milliseconds); a flood of logins waits here instead of exhausting memory.
const HASHING_SLOTS: usize = 4;
/// Longest a login waits for a hashing slot before it is told to retry.
const HASHING_WAIT: Duration = Duration::from_secs(5);

static HASHING: std::sync::LazyLock<tokio::sync::Semaphore> =
    std::sync::LazyLock::new(|| tokio::sync::Semaphore::new(HASHING_SLOTS));

/// Too many password checks at once.
#[derive(Debug, Clone, Copy)]
pub struct Busy;

async fn hashing<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, Busy> {
    let _permit = tokio::time::timeout(HASHING_WAIT, HASHING.acquire())
        .await
        .map_err(|_| Busy)?
        .map_err(|_| Busy)?;
    tokio::task::spawn_blocking(work).await.map_err(|_| Busy)
}

/// [`verify_password`] off the async threads, under the hashing limit.
pub async fn verify_password_async(password: String, hash: String) -> Result<bool, Busy> {
    hashing(move || verify_password(&password, &hash)).await
}

/// [`verify_dummy`] off the async threads, under the hashing limit.
pub async fn verify_dummy_async(password: String) -> Result<(), Busy> {
    hashing(move || verify_dummy(&password)).await
}

/// [`hash_password`] off the async threads, under the hashing limit.
pub async fn hash_password_async(password: String) -> Result<Result<String, String>, Busy> {
    hashing(move || hash_password(&password)).await
}

static DUMMY_HASH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| hash_password("not-a-real-password").unwrap_or_default());

pub fn hash_password(password: &str) -> Result<String, String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash password: {e}"))
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// The same work as a real verification, for unknown accounts.
pub fn verify_dummy(password: &str) {
    let _ = verify_password(password, &DUMMY_HASH);
}

/// A fresh random secret (refresh tokens, one-time passwords): 32 bytes, base64url.
pub fn random_token() -> String {
    BASE64_URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub aud: String,
    pub iss: String,
    /// The tenant the token belongs to.
    pub tid: Uuid,
    pub exp: u64,
    pub iat: u64,
    pub role: String,
    /// The user must change a one-time password before anything else.
    #[serde(default)]
    pub mcp: bool,
}

/// One tenant's signing keys.
pub struct TenantKeys {
    tenant_id: Uuid,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl TenantKeys {
    pub fn new(tenant_id: Uuid, secret: &[u8]) -> Self {
        Self {
            tenant_id,
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
        }
    }

    pub fn issue(
        &self,
        user: Uuid,
        role: &str,
        must_change_password: bool,
    ) -> Result<(String, u64), String> {
        let now = jsonwebtoken::get_current_timestamp();
        let exp = now + ACCESS_TTL.as_secs();
        let claims = Claims {
            sub: user,
            aud: AUDIENCE.into(),
            iss: ISSUER.into(),
            tid: self.tenant_id,
            exp,
            iat: now,
            role: role.into(),
            mcp: must_change_password,
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map(|t| (t, exp))
            .map_err(|e| format!("cannot sign token: {e}"))
    }

    /// The claims of a token valid for this tenant; `None` for anything else.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        validation.leeway = 5;
        let claims = decode::<Claims>(token, &self.decoding, &validation)
            .ok()?
            .claims;
        (claims.tid == self.tenant_id).then_some(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_verifies_only_for_its_tenant() {
        let a = Uuid::new_v4();
        let b = Uuid::new_v4();
        let keys_a = TenantKeys::new(a, &[1u8; 32]);
        let (token, _) = keys_a.issue(Uuid::new_v4(), "admin", false).expect("issue");
        assert!(keys_a.verify(&token).is_some());
        assert!(
            TenantKeys::new(b, &[2u8; 32]).verify(&token).is_none(),
            "other key"
        );
        assert!(
            TenantKeys::new(b, &[1u8; 32]).verify(&token).is_none(),
            "same key, other tenant"
        );
    }
}
