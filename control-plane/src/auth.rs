//! Operator authentication: argon2 password hashes, short-lived JWTs and CSRF tokens.
//!
//! Operator tokens are HS256, signed with a key derived from the master key for this
//! purpose only; they carry `aud = "owner"` and `iss = "control-plane"`, and decoding
//! requires both (jsonwebtoken checks `aud` only when asked), plus `exp`, `sub` and `sid`.
//! `sid` names the `owner_sessions` row, so a token can be revoked before it expires.
//! The same token is the bearer token of the API and the dashboard's cookie.
//!
//! A cookie is sent by the browser whoever asks, so state-changing requests authenticated
//! by the cookie must also carry a CSRF token: an HMAC of the session id under another
//! derived key. A page embeds it; another site cannot read it.

use std::time::Duration;

use base64::Engine;
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use owner::operators::{Operator, OperatorRole};
use owner::sessions::SessionKind;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
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
    /// The `owner_sessions` row this token belongs to.
    pub sid: Uuid,
    pub role: OperatorRole,
}

/// Issues and checks operator tokens and CSRF tokens.
pub struct OwnerTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    csrf_key: secrecy::SecretBox<[u8; 32]>,
    ttl: Duration,
    /// A dashboard session's whole lifetime (its idle limit is kept in its row).
    dashboard_ttl: Duration,
}

impl OwnerTokens {
    pub fn new(keyring: &Keyring, ttl: Duration) -> Result<Self> {
        let key = keyring.derive("owner-jwt-v1")?;
        Ok(Self {
            encoding: EncodingKey::from_secret(key.expose_secret()),
            decoding: DecodingKey::from_secret(key.expose_secret()),
            csrf_key: keyring.derive("owner-csrf-v1")?,
            ttl,
            dashboard_ttl: ttl,
        })
    }

    /// Dashboard sessions live this long at most (API tokens keep `ttl`).
    pub fn with_dashboard_ttl(mut self, ttl: Duration) -> Self {
        self.dashboard_ttl = ttl;
        self
    }

    /// How long a token of this kind of session lives.
    pub fn ttl(&self, kind: SessionKind) -> Duration {
        match kind {
            SessionKind::Api => self.ttl,
            SessionKind::Dashboard => self.dashboard_ttl,
        }
    }

    /// A signed token for the operator's session `sid`; returns it with its expiry (unix
    /// seconds).
    pub fn issue(
        &self,
        operator: &Operator,
        sid: Uuid,
        kind: SessionKind,
    ) -> Result<(SecretString, u64)> {
        let now = jsonwebtoken::get_current_timestamp();
        let exp = now + self.ttl(kind).as_secs();
        let claims = OwnerClaims {
            sub: operator.id,
            aud: OWNER_AUDIENCE.into(),
            iss: ISSUER.into(),
            exp,
            iat: now,
            jti: Uuid::new_v4(),
            sid,
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

    fn csrf_mac(&self, sid: Uuid) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.csrf_key.expose_secret())
            .expect("HMAC takes any key length");
        mac.update(sid.as_bytes());
        mac
    }

    /// The CSRF token of a session: pages embed it in forms and scripts send it back.
    pub fn csrf_for(&self, sid: Uuid) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(self.csrf_mac(sid).finalize().into_bytes())
    }

    /// Whether `token` is the session's CSRF token (compared in constant time).
    pub fn csrf_ok(&self, sid: Uuid, token: &str) -> bool {
        match base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.trim()) {
            Ok(bytes) => self.csrf_mac(sid).verify_slice(&bytes).is_ok(),
            Err(_) => false,
        }
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
            must_change_password: false,
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
        let sid = Uuid::new_v4();
        let (token, _) = tokens.issue(&op, sid, SessionKind::Api).expect("issue");
        let claims = tokens.verify(token.expose_secret()).expect("verify");
        assert_eq!(claims.sub, op.id);
        assert_eq!(claims.sid, sid);
        assert_eq!(claims.role, OperatorRole::Viewer);
        let other = OwnerTokens::new(&Keyring::random(), Duration::from_secs(60)).expect("tokens");
        assert!(other.verify(token.expose_secret()).is_err());
    }

    #[test]
    fn csrf_tokens_belong_to_one_session() {
        let tokens = OwnerTokens::new(&Keyring::random(), Duration::from_secs(60)).expect("tokens");
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let token = tokens.csrf_for(a);
        assert!(tokens.csrf_ok(a, &token));
        assert!(
            !tokens.csrf_ok(b, &token),
            "another session's token accepted"
        );
        assert!(!tokens.csrf_ok(a, ""), "empty token accepted");
        assert!(!tokens.csrf_ok(a, &token[1..]), "truncated token accepted");
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
            serde_json::json!({"sub": sub, "iss": ISSUER, "exp": now + 60, "iat": now, "jti": sub, "sid": sub, "role": "owner"}),
        );
        assert!(
            tokens.verify(&no_aud).is_err(),
            "token without aud accepted"
        );
        let expired = sign(
            serde_json::json!({"sub": sub, "aud": OWNER_AUDIENCE, "iss": ISSUER, "exp": now - 120, "iat": now - 200, "jti": sub, "sid": sub, "role": "owner"}),
        );
        assert!(tokens.verify(&expired).is_err(), "expired token accepted");
        let wrong_aud = sign(
            serde_json::json!({"sub": sub, "aud": "tenant", "iss": ISSUER, "exp": now + 60, "iat": now, "jti": sub, "sid": sub, "role": "owner"}),
        );
        assert!(
            tokens.verify(&wrong_aud).is_err(),
            "tenant audience accepted"
        );
    }
}
