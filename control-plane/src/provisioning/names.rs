//! Database and role names, derived from the tenant id only (never from user input),
//! and the marks that say a database or role is ours.

use uuid::Uuid;

/// The PostgreSQL names of one tenant: `<prefix><uuid hex>` and two role suffixes.
/// With a prefix of at most 20 bytes every name stays under PostgreSQL's 63-byte limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantNames {
    pub database: String,
    pub owner_role: String,
    pub runtime_role: String,
}

impl TenantNames {
    pub fn new(prefix: &str, id: Uuid) -> Self {
        let base = format!("{prefix}{}", id.simple());
        Self {
            owner_role: format!("{base}_owner"),
            runtime_role: format!("{base}_app"),
            database: base,
        }
    }
}

/// The databases of one restore: the one the backup is loaded into, and the name the
/// tenant's current database is moved to when the loaded one takes its place. Eight hex
/// digits of the restore id keep both under 63 bytes.
pub fn restore_databases(names: &TenantNames, restore_id: Uuid) -> (String, String) {
    let short = &restore_id.simple().to_string()[..8];
    (
        format!("{}_r{short}", names.database),
        format!("{}_p{short}", names.database),
    )
}

/// The template every tenant database is cloned from.
pub fn template_database(prefix: &str) -> String {
    format!("{prefix}template")
}

/// The role that owns the template *database*; its mark makes the template ours.
pub fn template_owner_role(prefix: &str) -> String {
    format!("{prefix}template_owner")
}

/// The role that owns the objects *inside* the template. A clone hands them to the
/// tenant's owner role with `REASSIGN OWNED`, which would also move any database this
/// role owned; that is why the template database has an owner of its own.
pub fn template_schema_role(prefix: &str) -> String {
    format!("{prefix}template_schema")
}

/// The comment placed on everything we create. Nothing without it is adopted or dropped.
pub fn marker(installation_id: &str, what: &str) -> String {
    format!("control-plane installation={installation_id} object={what}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_postgres_limits_and_derive_from_the_id() {
        let id = Uuid::new_v4();
        let names = TenantNames::new("abcdefghijklmnopqrst", id);
        for name in [&names.database, &names.owner_role, &names.runtime_role] {
            assert!(name.len() <= 63, "{name} too long");
            assert!(name.contains(&id.simple().to_string()));
        }
        assert_ne!(
            names,
            TenantNames::new("abcdefghijklmnopqrst", Uuid::new_v4())
        );
    }
}
