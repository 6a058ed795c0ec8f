//! Validated identifiers: parse once at the edge, then pass the typed value around.

use std::fmt;

use serde::Serialize;

use crate::{Error, Result};

/// Slugs that could be mistaken for system objects, the owner's own hosts or common
/// infrastructure names. Anything starting with `pg` is refused as well.
const RESERVED_SLUGS: &[&str] = &[
    "admin",
    "administrator",
    "api",
    "app",
    "assets",
    "auth",
    "cdn",
    "control-plane",
    "dashboard",
    "default",
    "docs",
    "ftp",
    "health",
    "healthz",
    "help",
    "imap",
    "info",
    "internal",
    "localhost",
    "mail",
    "metrics",
    "mx",
    "ns",
    "ns1",
    "ns2",
    "owner",
    "postgres",
    "public",
    "readyz",
    "root",
    "smtp",
    "static",
    "status",
    "support",
    "system",
    "template",
    "template0",
    "template1",
    "tenant",
    "tenants",
    "test",
    "www",
];

/// A tenant's slug: `^[a-z][a-z0-9-]{1,39}$`, no trailing or doubled hyphen, not reserved.
/// It names the tenant's storage folder and default subdomain, never a database object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct TenantSlug(String);

impl TenantSlug {
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |why: &str| Err(Error::InvalidSlug(why.to_string()));
        let len = s.len();
        if !(2..=40).contains(&len) {
            return bad("must be 2 to 40 characters long");
        }
        let mut chars = s.chars();
        if !chars.next().is_some_and(|c| c.is_ascii_lowercase()) {
            return bad("must start with a lowercase letter a-z");
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return bad("may contain only lowercase letters a-z, digits and hyphens");
        }
        if s.ends_with('-') || s.contains("--") {
            return bad("must not end with a hyphen or contain two in a row");
        }
        if s.starts_with("pg") || RESERVED_SLUGS.contains(&s) {
            return bad("is reserved");
        }
        Ok(Self(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A host name a tenant is served on: lowercase ASCII (IDNs in their `xn--` form),
/// labels of 1-63 letters, digits and inner hyphens, at least two labels, 253 bytes at most.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct DomainName(String);

impl DomainName {
    /// Parses a domain as an operator typed it: surrounding whitespace and one trailing
    /// dot are dropped and letters lower-cased; anything else invalid is refused.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = |why: &str| Err(Error::InvalidDomain(format!("{s:?} {why}")));
        let trimmed = s.trim();
        let d = trimmed.strip_suffix('.').unwrap_or(trimmed);
        if !d.is_ascii() {
            return bad("must be ASCII (write international names in their xn-- form)");
        }
        let d = d.to_ascii_lowercase();
        if d.is_empty() || d.len() > 253 {
            return bad("must be 1 to 253 characters long");
        }
        let labels: Vec<&str> = d.split('.').collect();
        if labels.len() < 2 {
            return bad("must have at least two labels (like acme.example.com)");
        }
        for label in &labels {
            if label.is_empty() || label.len() > 63 {
                return bad("has an empty label or one longer than 63 characters");
            }
            if !label
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            {
                return bad("may contain only letters, digits, hyphens and dots");
            }
            if label.starts_with('-') || label.ends_with('-') {
                return bad("has a label starting or ending with a hyphen");
            }
        }
        if labels
            .last()
            .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit()))
        {
            return bad("looks like an IP address");
        }
        Ok(Self(d))
    }

    /// The default domain of a tenant: `<slug>.<base>`.
    pub fn for_slug(slug: &TenantSlug, base_domain: &str) -> Result<Self> {
        Self::parse(&format!("{}.{}", slug.as_str(), base_domain))
    }

    /// True when this domain is `base` itself or a name under it.
    pub fn is_within(&self, base: &str) -> bool {
        self.0 == base || self.0.ends_with(&format!(".{base}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An operator's email address, lower-cased. Only the shape is checked: one `@`, a
/// non-empty local part and a domain with a dot.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim().to_lowercase();
        let valid = s.len() <= 254
            && !s.chars().any(|c| c.is_whitespace() || c.is_control())
            && matches!(s.split_once('@'), Some((local, domain))
                if !local.is_empty() && domain.contains('.') && !domain.contains('@')
                    && !domain.starts_with('.') && !domain.ends_with('.'));
        if valid {
            Ok(Self(s))
        } else {
            Err(Error::InvalidEmail)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_follow_the_documented_shape() {
        for good in ["acme", "a1", "acme-vet-2", &"a".repeat(40)] {
            assert!(TenantSlug::parse(good).is_ok(), "{good} refused");
        }
        for bad in [
            "",
            "a",
            "1acme",
            "-acme",
            "acme-",
            "ac--me",
            "Acme",
            "Postgres",
            "postgres",
            "pg_x",
            "pgadmin",
            "template1",
            "owner",
            "www",
            "api",
            "../x",
            "a/b",
            "a_b",
            "acme.com",
            "аcme", // Cyrillic a
            &"a".repeat(41),
            &"a".repeat(64),
        ] {
            assert!(TenantSlug::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn domains_are_normalised_and_validated() {
        assert_eq!(
            DomainName::parse(" Clinic.Example.COM. ")
                .expect("valid")
                .as_str(),
            "clinic.example.com"
        );
        assert!(DomainName::parse("xn--bcher-kva.example").is_ok());
        for bad in [
            "",
            "localhost",
            "exa mple.com",
            "a..b",
            "-a.com",
            "a-.com",
            "bücher.example",
            "аcme.localhost",
            "a.b/c",
            "a.b:80",
            "10.0.0.1",
            &format!("{}.com", "a".repeat(64)),
        ] {
            assert!(DomainName::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn within_base_domain() {
        let d = DomainName::parse("acme.localhost").expect("valid");
        assert!(d.is_within("localhost"));
        assert!(!d.is_within("host"));
    }

    #[test]
    fn emails() {
        assert_eq!(
            Email::parse(" Ops@Example.com ").expect("valid").as_str(),
            "ops@example.com"
        );
        for bad in [
            "",
            "a",
            "a@b",
            "@b.com",
            "a@@b.com",
            "a b@c.com",
            "a@b.com.",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
