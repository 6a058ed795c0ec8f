//! Operator authentication: argon2 password hashes and short-lived bearer JWTs.
//!
//! Operator tokens are HS256, signed with a key derived from the master key for this
//! purpose only; they carry `aud = "owner"` and `iss = "control-plane"`, and decoding
//! requires both (jsonwebtoken checks `aud` only when asked), plus `exp` and `sub`.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use owner::operators::{Operator, OperatorRole};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::secrets::Keyring;
use crate::{Error, Result};

pub const OWNER_AUDIENCE: &str = "owner";
pub const ISSUER: &str = "control-plane";
pub const MIN_PASSWORD_CHARS: usize = 10;

/// Operator passwords use the same argon2 settings and limits as tenant users'.
pub use tenant::auth::verify_password;

pub fn hash_password(password: &str) -> Result<String> {
    tenant::auth::hash_password(password).map_err(Error::Crypto)
}

pub fn check_new_password(password: &str) -> Result<()> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(Error::BadRequest(format!(
            "password must be at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    Ok(())
}

#[derive(Debug, Serialize, Deserialize)]
pub struct OwnerClaims {
    pub sub: Uuid,
    pub aud: String,
    pub iss: String,
    pub exp: u64,
    pub iat: u64,
    pub jti: Uuid,
    pub role: OperatorRole,
}

/// Issues and checks operator tokens.
pub struct OwnerTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl: Duration,
}

impl OwnerTokens {
    pub fn new(keyring: &Keyring, ttl: Duration) -> Result<Self> {
        let key = keyring.derive("owner-jwt-v1")?;
        Ok(Self {
            encoding: EncodingKey::from_secret(key.expose_secret()),
            decoding: DecodingKey::from_secret(key.expose_secret()),
            ttl,
        })
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A signed token for the operator; returns it with its expiry (unix seconds).
    pub fn issue(&self, operator: &Operator) -> Result<(SecretString, u64)> {
        let now = jsonwebtoken::get_current_timestamp();
        let exp = now + self.ttl.as_secs();
        let claims = OwnerClaims {
            sub: operator.id,
            aud: OWNER_AUDIENCE.into(),
            iss: ISSUER.into(),
            exp,
            iat: now,
            jti: Uuid::new_v4(),
            role: operator.role,
        };
        let token = encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| Error::Crypto(format!("cannot sign token: {e}")))?;
        Ok((SecretString::from(token), exp))
    }

    /// The claims of a valid operator token; any defect is [`Error::Unauthenticated`].
    pub fn verify(&self, token: &str) -> Result<OwnerClaims> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[OWNER_AUDIENCE]);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        validation.leeway = 5;
        decode::<OwnerClaims>(token, &self.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|_| Error::Unauthenticated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn operator(role: OperatorRole) -> Operator {
        Operator {
            id: Uuid::new_v4(),
            email: "ops@example.com".into(),
            password_hash: String::new(),
            role,
            active: true,
            created_at: Utc::now(),
            last_login_at: None,
        }
    }

    #[test]
    fn passwords_hash_and_verify() {
        let hash = hash_password("correct horse battery").expect("hash");
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("wrong", &hash));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn tokens_round_trip_and_foreign_keys_fail() {
        let tokens = OwnerTokens::new(&Keyring::random(), Duration::from_secs(60)).expect("tokens");
        let op = operator(OperatorRole::Viewer);
        let (token, _) = tokens.issue(&op).expect("issue");
        let claims = tokens.verify(token.expose_secret()).expect("verify");
        assert_eq!(claims.sub, op.id);
        assert_eq!(claims.role, OperatorRole::Viewer);
        let other = OwnerTokens::new(&Keyring::random(), Duration::from_secs(60)).expect("tokens");
        assert!(other.verify(token.expose_secret()).is_err());
    }

    #[test]
    fn tokens_without_audience_or_expired_are_refused() {
        let ring = Keyring::random();
        let tokens = OwnerTokens::new(&ring, Duration::from_secs(60)).expect("tokens");
        let key = ring.derive("owner-jwt-v1").expect("derive");
        let now = jsonwebtoken::get_current_timestamp();
        let sign = |claims: serde_json::Value| {
            encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(key.expose_secret()),
            )
            .expect("sign")
        };
        let sub = Uuid::new_v4();
        let no_aud = sign(
            serde_json::json!({"sub": sub, "iss": ISSUER, "exp": now + 60, "iat": now, "jti": sub, "role": "owner"}),
        );
        assert!(
            tokens.verify(&no_aud).is_err(),
            "token without aud accepted"
        );
        let expired = sign(
            serde_json::json!({"sub": sub, "aud": OWNER_AUDIENCE, "iss": ISSUER, "exp": now - 120, "iat": now - 200, "jti": sub, "role": "owner"}),
        );
        assert!(tokens.verify(&expired).is_err(), "expired token accepted");
        let wrong_aud = sign(
            serde_json::json!({"sub": sub, "aud": "tenant", "iss": ISSUER, "exp": now + 60, "iat": now, "jti": sub, "role": "owner"}),
        );
        assert!(
            tokens.verify(&wrong_aud).is_err(),
            "tenant audience accepted"
        );
    }
}
