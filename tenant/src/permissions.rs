//! What a tenant's users may do. Every route of the tenant API needs one permission; a
//! role (the `roles` table, tenant migration V2) is a set of them. `admin`, `staff` and
//! `viewer` are built in; admins define others with `/api/v1/roles`.

/// Every permission, in the order the README lists them.
pub const ALL: &[&str] = &[
    "practices:read",
    "practices:write",
    "patients:read",
    "patients:write",
    "appointments:read",
    "appointments:write",
    "medical_records:read",
    "medical_records:write",
    "prescriptions:read",
    "prescriptions:write",
    "inventory:read",
    "inventory:write",
    "files:read",
    "files:write",
    "members:read",
    "members:manage",
    "integrations:read",
    "integrations:manage",
    "users:manage",
    "roles:manage",
    "status:details",
];

/// The built-in roles: they cannot be changed or removed.
pub const BUILT_IN: &[&str] = &["admin", "staff", "viewer"];

/// The tenant schema version that brought the `roles` table: databases before it know
/// only the built-in roles (see [`built_in`]).
pub const ROLES_SINCE: i32 = 2;

const STAFF: &[&str] = &[
    "practices:read",
    "practices:write",
    "patients:read",
    "patients:write",
    "appointments:read",
    "appointments:write",
    "medical_records:read",
    "medical_records:write",
    "prescriptions:read",
    "prescriptions:write",
    "inventory:read",
    "inventory:write",
    "files:read",
    "files:write",
    "members:read",
    "integrations:read",
];

const VIEWER: &[&str] = &[
    "practices:read",
    "patients:read",
    "appointments:read",
    "medical_records:read",
    "prescriptions:read",
    "inventory:read",
    "files:read",
    "members:read",
    "integrations:read",
];

/// What a built-in role grants (as tenant migration V2 records it); nothing for any
/// other name.
pub fn built_in(role: &str) -> Vec<String> {
    let granted = match role {
        "admin" => ALL,
        "staff" => STAFF,
        "viewer" => VIEWER,
        _ => &[],
    };
    granted.iter().map(|p| p.to_string()).collect()
}

pub fn is_known(permission: &str) -> bool {
    ALL.contains(&permission)
}
