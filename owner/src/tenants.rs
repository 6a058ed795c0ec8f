//! `tenants`: the fleet, one row per tenant, each a persisted state machine.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

use crate::maintenance::Maintenance;
use crate::{Error, Result};

/// Where a tenant is, or is going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TenantStatus {
    /// Being created; `provisioning_step` says how far it got.
    Provisioning,
    Active,
    /// Kept intact but refused service.
    Suspended,
    /// Being removed; `provisioning_step` says how far it got.
    Deleting,
    /// Gone; the row stays for the audit trail.
    Deleted,
}

impl TenantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provisioning => "provisioning",
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Deleting => "deleting",
            Self::Deleted => "deleted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "provisioning" => Self::Provisioning,
            "active" => Self::Active,
            "suspended" => Self::Suspended,
            "deleting" => Self::Deleting,
            "deleted" => Self::Deleted,
            _ => return None,
        })
    }
}

/// The last step a tenant completed. Creation runs top to bottom through the first six,
/// deletion through the last five.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    RowInserted,
    RolesCreated,
    DatabaseCreated,
    SchemaMigrated,
    StorageCreated,
    Ready,
    DeleteRequested,
    DatabaseDropped,
    RolesDropped,
    StorageRemoved,
    Removed,
}

impl Step {
    pub const ALL: [Step; 11] = [
        Step::RowInserted,
        Step::RolesCreated,
        Step::DatabaseCreated,
        Step::SchemaMigrated,
        Step::StorageCreated,
        Step::Ready,
        Step::DeleteRequested,
        Step::DatabaseDropped,
        Step::RolesDropped,
        Step::StorageRemoved,
        Step::Removed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RowInserted => "row_inserted",
            Self::RolesCreated => "roles_created",
            Self::DatabaseCreated => "database_created",
            Self::SchemaMigrated => "schema_migrated",
            Self::StorageCreated => "storage_created",
            Self::Ready => "ready",
            Self::DeleteRequested => "delete_requested",
            Self::DatabaseDropped => "database_dropped",
            Self::RolesDropped => "roles_dropped",
            Self::StorageRemoved => "storage_removed",
            Self::Removed => "removed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|step| step.as_str() == s)
    }
}

/// A tenant row, secrets included: never serialised as such (answers use a view that
/// names what it shows).
#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    pub status: TenantStatus,
    pub provisioning_step: Step,
    pub last_error: Option<String>,
    pub plan_code: String,
    pub server_id: String,
    pub db_name: String,
    pub owner_role: String,
    pub runtime_role: String,
    pub owner_password_enc: Vec<u8>,
    pub runtime_password_enc: Vec<u8>,
    /// The master key version sealing its data key (or, without one, its passwords).
    pub secret_key_version: i32,
    /// Its data key, sealed under the master key (see migration V14); `None`: its
    /// passwords are sealed with the master key directly.
    pub data_key_enc: Option<Vec<u8>>,
    pub schema_version: Option<i32>,
    /// What the tenant app reads (see [`crate::tenant_settings::Settings`]).
    pub settings: serde_json::Value,
    /// Operators' overrides of the plan's features (see
    /// [`crate::tenant_settings::FeatureOverrides`]).
    pub features: serde_json::Value,
    /// The latest sampled database size is over the plan's `max_database_bytes`.
    pub database_over_quota: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub activated_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
    /// The first user to make in the tenant database, until active.
    pub initial_admin: Option<InitialAdmin>,
    /// New role passwords being put in place (see `tenant_rotation_begin`).
    pub rotation: Option<Rotation>,
    /// Set while the tenant is in maintenance (see [`crate::maintenance`]).
    pub maintenance: Option<Maintenance>,
}

/// A rotation of both role passwords in flight: sealed like the current ones.
#[derive(Debug, Clone)]
pub struct Rotation {
    pub key_version: i32,
    pub owner_password_enc: Vec<u8>,
    pub runtime_password_enc: Vec<u8>,
    pub started_at: DateTime<Utc>,
}

/// The first user (an admin) to make in a new tenant's database. Only the argon2 hash of
/// the password is kept, and only until the tenant is active.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InitialAdmin {
    pub email: String,
    pub password_hash: String,
    /// The password was generated (one-time): the user must choose their own.
    pub must_change_password: bool,
}

const COLUMNS: &str = "id, slug, name, status, provisioning_step, last_error, plan_code, \
    server_id, db_name, owner_role, runtime_role, owner_password_enc, runtime_password_enc, \
    secret_key_version, schema_version, settings, features, created_at, updated_at, \
    activated_at, deleted_at, initial_admin, rotation_key_version, rotation_owner_password_enc, \
    rotation_runtime_password_enc, rotation_started_at, maintenance, maintenance_note, \
    maintenance_reads, maintenance_since, database_over_quota, data_key_enc";

impl TryFrom<&Row> for Tenant {
    type Error = Error;

    fn try_from(row: &Row) -> Result<Self> {
        let status: String = row.try_get("status")?;
        let step: String = row.try_get("provisioning_step")?;
        Ok(Tenant {
            id: row.try_get("id")?,
            slug: row.try_get("slug")?,
            name: row.try_get("name")?,
            status: TenantStatus::parse(&status).ok_or_else(|| Error::Invalid {
                field: "tenants.status",
                reason: status.clone(),
            })?,
            provisioning_step: Step::parse(&step).ok_or_else(|| Error::Invalid {
                field: "tenants.provisioning_step",
                reason: step.clone(),
            })?,
            last_error: row.try_get("last_error")?,
            plan_code: row.try_get("plan_code")?,
            server_id: row.try_get("server_id")?,
            db_name: row.try_get("db_name")?,
            owner_role: row.try_get("owner_role")?,
            runtime_role: row.try_get("runtime_role")?,
            owner_password_enc: row.try_get("owner_password_enc")?,
            runtime_password_enc: row.try_get("runtime_password_enc")?,
            secret_key_version: row.try_get("secret_key_version")?,
            data_key_enc: row.try_get("data_key_enc")?,
            schema_version: row.try_get("schema_version")?,
            settings: row.try_get("settings")?,
            features: row.try_get("features")?,
            database_over_quota: row.try_get("database_over_quota")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            activated_at: row.try_get("activated_at")?,
            deleted_at: row.try_get("deleted_at")?,
            initial_admin: row
                .try_get::<_, Option<serde_json::Value>>("initial_admin")?
                .map(serde_json::from_value)
                .transpose()
                .map_err(|e| Error::Invalid {
                    field: "tenants.initial_admin",
                    reason: e.to_string(),
                })?,
            rotation: match row.try_get::<_, Option<i32>>("rotation_key_version")? {
                None => None,
                Some(key_version) => Some(Rotation {
                    key_version,
                    owner_password_enc: row.try_get("rotation_owner_password_enc")?,
                    runtime_password_enc: row.try_get("rotation_runtime_password_enc")?,
                    started_at: row.try_get("rotation_started_at")?,
                }),
            },
            maintenance: Maintenance::from_row(row)?,
        })
    }
}

/// [`COLUMNS`] qualified by a table alias, for queries that join `tenants`.
fn columns_of(alias: &str) -> String {
    COLUMNS
        .split(", ")
        .map(|c| format!("{alias}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn rows_to_tenants(rows: &[Row]) -> Result<Vec<Tenant>> {
    rows.iter().map(Tenant::try_from).collect()
}

/// What it takes to insert a tenant row; the names and secrets are made by the caller.
pub struct NewTenant<'a> {
    pub id: Uuid,
    pub slug: &'a str,
    pub name: &'a str,
    pub plan_code: &'a str,
    pub server_id: &'a str,
    pub db_name: &'a str,
    pub owner_role: &'a str,
    pub runtime_role: &'a str,
    pub owner_password_enc: &'a [u8],
    pub runtime_password_enc: &'a [u8],
    pub secret_key_version: i32,
    /// The tenant's data key, sealed under `secret_key_version`.
    pub data_key_enc: &'a [u8],
}

pub async fn tenant_insert(client: &impl GenericClient, new: &NewTenant<'_>) -> Result<Tenant> {
    let row = client
        .query_one(
            &format!(
                "INSERT INTO tenants (id, slug, name, status, provisioning_step, plan_code, \
                 server_id, db_name, owner_role, runtime_role, owner_password_enc, \
                 runtime_password_enc, secret_key_version, data_key_enc) \
                 VALUES ($1, $2, $3, 'provisioning', 'row_inserted', $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                 RETURNING {COLUMNS}"
            ),
            &[
                &new.id,
                &new.slug,
                &new.name,
                &new.plan_code,
                &new.server_id,
                &new.db_name,
                &new.owner_role,
                &new.runtime_role,
                &new.owner_password_enc,
                &new.runtime_password_enc,
                &new.secret_key_version,
                &new.data_key_enc,
            ],
        )
        .await
        .map_err(|e| match Error::from(e) {
            Error::UnknownPlan(_) => Error::UnknownPlan(new.plan_code.to_string()),
            other => other,
        })?;
    Tenant::try_from(&row)
}

pub async fn tenant_fetch(client: &impl GenericClient, id: Uuid) -> Result<Tenant> {
    let row = client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM tenants WHERE id = $1"),
            &[&id],
        )
        .await?
        .ok_or(Error::NotFound)?;
    Tenant::try_from(&row)
}

/// The living (not deleted) tenants on a database server, by slug.
pub async fn tenant_list_on_server(
    client: &impl GenericClient,
    server: &str,
) -> Result<Vec<Tenant>> {
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM tenants WHERE server_id = $1 AND status <> 'deleted' ORDER BY slug"
            ),
            &[&server],
        )
        .await?;
    rows_to_tenants(&rows)
}

/// Points the tenant at another database server (a move's switch).
pub async fn tenant_set_server(client: &impl GenericClient, id: Uuid, server: &str) -> Result<()> {
    client
        .execute(
            "UPDATE tenants SET server_id = $2, updated_at = now() WHERE id = $1",
            &[&id, &server],
        )
        .await?;
    Ok(())
}

/// Like [`tenant_fetch`], locking the row until the transaction ends.
pub async fn tenant_fetch_for_update(client: &impl GenericClient, id: Uuid) -> Result<Tenant> {
    let row = client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM tenants WHERE id = $1 FOR UPDATE"),
            &[&id],
        )
        .await?
        .ok_or(Error::NotFound)?;
    Tenant::try_from(&row)
}

/// The living (not deleted) tenant with this slug.
pub async fn tenant_fetch_by_slug(client: &impl GenericClient, slug: &str) -> Result<Tenant> {
    let row = client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM tenants WHERE slug = $1 AND status <> 'deleted'"),
            &[&slug],
        )
        .await?
        .ok_or(Error::NotFound)?;
    Tenant::try_from(&row)
}

/// A tenant named the way operators name one (API paths, dashboard URLs, the CLI): by
/// id, or by slug among living tenants.
pub async fn tenant_find(client: &impl GenericClient, key: &str) -> Result<Tenant> {
    match Uuid::parse_str(key) {
        Ok(id) => tenant_fetch(client, id).await,
        Err(_) => tenant_fetch_by_slug(client, key).await,
    }
}

/// Records new role passwords for a tenant (sealed under `key_version`, or with its data
/// key `sealed_with`) unless a rotation is already in flight or the tenant's key changed
/// since they were sealed (a rewrap); returns the tenant as it now is, with its rotation
/// (the new one, or the one in flight, which the caller finishes instead).
pub async fn tenant_rotation_begin(
    client: &impl GenericClient,
    id: Uuid,
    key_version: i32,
    sealed_with: Option<&[u8]>,
    owner_password_enc: &[u8],
    runtime_password_enc: &[u8],
) -> Result<Tenant> {
    client
        .execute(
            "UPDATE tenants SET rotation_key_version = $2, rotation_owner_password_enc = $3, \
             rotation_runtime_password_enc = $4, rotation_started_at = now() \
             WHERE id = $1 AND rotation_key_version IS NULL AND status IN ('active', 'suspended') \
             AND data_key_enc IS NOT DISTINCT FROM $5",
            &[
                &id,
                &key_version,
                &owner_password_enc,
                &runtime_password_enc,
                &sealed_with,
            ],
        )
        .await?;
    tenant_fetch(client, id).await
}

/// Makes the rotation's passwords the current ones (once both roles have them).
/// Returns whether a rotation was finished (false: none was in flight).
pub async fn tenant_rotation_finish(client: &impl GenericClient, id: Uuid) -> Result<bool> {
    let n = client
        .execute(
            "UPDATE tenants SET owner_password_enc = rotation_owner_password_enc, \
             runtime_password_enc = rotation_runtime_password_enc, \
             secret_key_version = CASE WHEN data_key_enc IS NULL THEN rotation_key_version \
                                       ELSE secret_key_version END, \
             rotation_key_version = NULL, \
             rotation_owner_password_enc = NULL, rotation_runtime_password_enc = NULL, \
             rotation_started_at = NULL, updated_at = now() \
             WHERE id = $1 AND rotation_key_version IS NOT NULL",
            &[&id],
        )
        .await?;
    Ok(n == 1)
}

/// Tenants with a rotation started more than `older_than_secs` ago: left by a crash.
pub async fn tenant_list_rotations_left(
    client: &impl GenericClient,
    older_than_secs: f64,
) -> Result<Vec<Tenant>> {
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM tenants WHERE rotation_key_version IS NOT NULL \
                 AND rotation_started_at < now() - make_interval(secs => $1) ORDER BY id"
            ),
            &[&older_than_secs],
        )
        .await?;
    rows_to_tenants(&rows)
}

/// The active tenants that served the most requests in the last `hours` (as metering
/// recorded them), most requested first, at most `limit`.
pub async fn tenants_most_requested(
    client: &impl GenericClient,
    hours: i32,
    limit: i64,
) -> Result<Vec<Tenant>> {
    let t_columns = columns_of("t");
    let rows = client
        .query(
            &format!(
                "SELECT {t_columns} FROM tenants t \
                 JOIN (SELECT tenant_id, sum(requests) AS requests FROM tenant_usage \
                       WHERE sampled_at > now() - make_interval(hours => $1) \
                       GROUP BY tenant_id HAVING sum(requests) > 0) u ON u.tenant_id = t.id \
                 WHERE t.status = 'active' ORDER BY u.requests DESC, t.id LIMIT $2"
            ),
            &[&hours, &limit],
        )
        .await?;
    rows_to_tenants(&rows)
}

/// Filters for [`tenant_list`]. `include_deleted` is off by default.
#[derive(Debug, Default, Clone)]
pub struct TenantFilter {
    pub status: Option<TenantStatus>,
    pub include_deleted: bool,
    pub limit: i64,
    pub offset: i64,
}

pub async fn tenant_list(
    client: &impl GenericClient,
    filter: &TenantFilter,
) -> Result<Vec<Tenant>> {
    let status = filter.status.map(TenantStatus::as_str);
    let limit = if filter.limit <= 0 { 100 } else { filter.limit };
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM tenants \
                 WHERE ($1::text IS NULL OR status = $1) AND ($2 OR status <> 'deleted') \
                 ORDER BY created_at, id LIMIT $3 OFFSET $4"
            ),
            &[
                &status,
                &filter.include_deleted,
                &limit,
                &filter.offset.max(0),
            ],
        )
        .await?;
    rows_to_tenants(&rows)
}

/// How many tenants [`tenant_list`] pages through (its filter without the page).
pub async fn tenant_count(client: &impl GenericClient, filter: &TenantFilter) -> Result<i64> {
    let status = filter.status.map(TenantStatus::as_str);
    Ok(client
        .query_one(
            "SELECT count(*) FROM tenants \
             WHERE ($1::text IS NULL OR status = $1) AND ($2 OR status <> 'deleted')",
            &[&status, &filter.include_deleted],
        )
        .await?
        .get(0))
}

/// Tenants whose status is not where it is going: provisioning or deleting.
pub async fn tenant_list_unsettled(client: &impl GenericClient) -> Result<Vec<Tenant>> {
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM tenants WHERE status IN ('provisioning', 'deleting') \
                 ORDER BY updated_at"
            ),
            &[],
        )
        .await?;
    rows_to_tenants(&rows)
}

/// Records that `step` is done, if the tenant is still in `expected` status.
/// Returns the updated row, or [`Error::Conflict`] when the status moved meanwhile
/// (say, a delete request arrived while provisioning ran).
pub async fn tenant_record_step(
    client: &impl GenericClient,
    id: Uuid,
    expected: TenantStatus,
    step: Step,
) -> Result<Tenant> {
    let row = client
        .query_opt(
            &format!(
                "UPDATE tenants SET provisioning_step = $3, last_error = NULL, updated_at = now() \
                 WHERE id = $1 AND status = $2 RETURNING {COLUMNS}"
            ),
            &[&id, &expected.as_str(), &step.as_str()],
        )
        .await?
        .ok_or(Error::Conflict)?;
    Tenant::try_from(&row)
}

/// Moves a tenant from one of `from` to `to`, recording `step`. Used for the lifecycle
/// edges: provisioning -> active, active <-> suspended, * -> deleting, deleting -> deleted.
pub async fn tenant_transition(
    client: &impl GenericClient,
    id: Uuid,
    from: &[TenantStatus],
    to: TenantStatus,
    step: Step,
) -> Result<Tenant> {
    let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
    let row = client
        .query_opt(
            &format!(
                "UPDATE tenants SET status = $3, provisioning_step = $4, last_error = NULL, \
                 updated_at = now(), \
                 activated_at = CASE WHEN $3 = 'active' AND activated_at IS NULL THEN now() ELSE activated_at END, \
                 deleted_at = CASE WHEN $3 = 'deleted' THEN now() ELSE deleted_at END, \
                 initial_admin = CASE WHEN $3 = 'provisioning' THEN initial_admin END \
                 WHERE id = $1 AND status = ANY($2) RETURNING {COLUMNS}"
            ),
            &[&id, &from, &to.as_str(), &step.as_str()],
        )
        .await?
        .ok_or(Error::Conflict)?;
    Tenant::try_from(&row)
}

/// Records the first user to create in the tenant's database during provisioning.
pub async fn tenant_set_initial_admin(
    client: &impl GenericClient,
    id: Uuid,
    admin: &InitialAdmin,
) -> Result<()> {
    let admin = serde_json::to_value(admin).map_err(|e| Error::Invalid {
        field: "initial_admin",
        reason: e.to_string(),
    })?;
    client
        .execute(
            "UPDATE tenants SET initial_admin = $2 WHERE id = $1",
            &[&id, &admin],
        )
        .await?;
    Ok(())
}

pub async fn tenant_set_error(client: &impl GenericClient, id: Uuid, error: &str) -> Result<()> {
    client
        .execute(
            "UPDATE tenants SET last_error = $2, updated_at = now() WHERE id = $1",
            &[&id, &error],
        )
        .await?;
    Ok(())
}

pub async fn tenant_set_schema_version(
    client: &impl GenericClient,
    id: Uuid,
    version: i32,
) -> Result<()> {
    client
        .execute(
            "UPDATE tenants SET schema_version = $2, updated_at = now() WHERE id = $1",
            &[&id, &version],
        )
        .await?;
    Ok(())
}

/// The tenants a fleet migration looks at: in one of `statuses`, optionally only these
/// slugs or this plan, oldest first.
pub async fn tenant_list_for_migration(
    client: &impl GenericClient,
    statuses: &[TenantStatus],
    slugs: &[String],
    plan: Option<&str>,
) -> Result<Vec<Tenant>> {
    let statuses: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM tenants WHERE status = ANY($1) \
                 AND (cardinality($2::text[]) = 0 OR slug = ANY($2)) \
                 AND ($3::text IS NULL OR plan_code = $3) ORDER BY created_at, id"
            ),
            &[&statuses, &slugs, &plan],
        )
        .await?;
    rows_to_tenants(&rows)
}

/// The tenant a domain belongs to, whatever its status.
pub async fn tenant_fetch_by_domain(
    client: &impl GenericClient,
    domain: &str,
) -> Result<Option<Tenant>> {
    let columns = columns_of("t");
    let row = client
        .query_opt(
            &format!("SELECT {columns} FROM tenant_domains d JOIN tenants t ON t.id = d.tenant_id WHERE d.domain = $1"),
            &[&domain],
        )
        .await?;
    row.as_ref().map(Tenant::try_from).transpose()
}

/// Moves a tenant to another plan (the subscription row changes with it, in the same
/// transaction).
pub async fn tenant_set_plan(client: &impl GenericClient, id: Uuid, plan_code: &str) -> Result<()> {
    let n = client
        .execute(
            "UPDATE tenants SET plan_code = $2, updated_at = now() WHERE id = $1 AND status <> 'deleted'",
            &[&id, &plan_code],
        )
        .await
        .map_err(|e| match Error::from(e) {
            Error::UnknownPlan(_) => Error::UnknownPlan(plan_code.to_string()),
            other => other,
        })?;
    if n == 0 {
        return Err(Error::NotFound);
    }
    Ok(())
}

/// Columns the tenants page may sort by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TenantSort {
    #[default]
    Created,
    Name,
    Slug,
    Status,
    Plan,
    SchemaVersion,
}

impl TenantSort {
    pub const ALL: [Self; 6] = [
        Self::Created,
        Self::Name,
        Self::Slug,
        Self::Status,
        Self::Plan,
        Self::SchemaVersion,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Name => "name",
            Self::Slug => "slug",
            Self::Status => "status",
            Self::Plan => "plan",
            Self::SchemaVersion => "schema",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    fn column(self) -> &'static str {
        match self {
            Self::Created => "t.created_at",
            Self::Name => "lower(t.name)",
            Self::Slug => "t.slug",
            Self::Status => "t.status",
            Self::Plan => "t.plan_code",
            Self::SchemaVersion => "t.schema_version",
        }
    }
}

/// The tenants page's query: free text over name, slug and domains, filters, sort, page.
#[derive(Debug, Clone, Default)]
pub struct TenantSearch {
    pub text: Option<String>,
    pub status: Option<TenantStatus>,
    pub plan: Option<String>,
    pub sort: TenantSort,
    pub descending: bool,
    pub limit: i64,
    pub offset: i64,
}

/// One line of the tenants page.
#[derive(Debug, Clone)]
pub struct TenantListItem {
    pub tenant: Tenant,
    pub primary_domain: Option<String>,
    pub database_bytes: Option<i64>,
    pub storage_bytes: Option<i64>,
}

/// A page of tenants and the number that match in all. Deleted tenants are shown only
/// when asked for by status.
pub async fn tenant_search(
    client: &impl GenericClient,
    search: &TenantSearch,
) -> Result<(Vec<TenantListItem>, i64)> {
    let pattern = search
        .text
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            let escaped = t
                .to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            format!("%{escaped}%")
        });
    let status = search.status.map(TenantStatus::as_str);
    let filter = "($1::text IS NULL OR lower(t.name) LIKE $1 OR t.slug LIKE $1 \
         OR EXISTS (SELECT 1 FROM tenant_domains d WHERE d.tenant_id = t.id AND d.domain LIKE $1)) \
         AND (($2::text IS NULL AND t.status <> 'deleted') OR t.status = $2) \
         AND ($3::text IS NULL OR t.plan_code = $3)";
    let total: i64 = client
        .query_one(
            &format!("SELECT count(*) FROM tenants t WHERE {filter}"),
            &[&pattern, &status, &search.plan],
        )
        .await?
        .get(0);
    let direction = if search.descending { "DESC" } else { "ASC" };
    let columns = columns_of("t");
    // The page is chosen first (an index scan for the default order) and only its rows
    // get their primary domain and latest usage: with ten thousand tenants, joining
    // before the LIMIT would look up every tenant's usage.
    // Default NULLS placement in both directions, so a backward index scan serves DESC.
    let order = format!("{} {direction}, t.id {direction}", search.sort.column());
    let rows = client
        .query(
            &format!(
                "WITH page AS (SELECT {columns} FROM tenants t WHERE {filter} \
                   ORDER BY {order} LIMIT $4 OFFSET $5) \
                 SELECT t.*, \
                   (SELECT domain FROM tenant_domains d WHERE d.tenant_id = t.id AND d.is_primary) AS primary_domain, \
                   u.database_bytes AS usage_database_bytes, u.storage_bytes AS usage_storage_bytes \
                 FROM page t \
                 LEFT JOIN tenant_usage_latest u ON u.tenant_id = t.id \
                 ORDER BY {order}"
            ),
            &[
                &pattern,
                &status,
                &search.plan,
                &search.limit.clamp(1, 500),
                &search.offset.max(0),
            ],
        )
        .await?;
    let items = rows
        .iter()
        .map(|r| {
            Ok(TenantListItem {
                tenant: Tenant::try_from(r)?,
                primary_domain: r.try_get("primary_domain")?,
                database_bytes: r.try_get("usage_database_bytes")?,
                storage_bytes: r.try_get("usage_storage_bytes")?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((items, total))
}

/// Living and deleted tenants per status, for the overview.
pub async fn tenant_status_counts(client: &impl GenericClient) -> Result<Vec<(String, i64)>> {
    let rows = client
        .query(
            "SELECT status, count(*) FROM tenants GROUP BY status ORDER BY status",
            &[],
        )
        .await?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// Tenants whose provisioning or deletion stopped on an error.
pub async fn tenant_list_failing(client: &impl GenericClient, limit: i64) -> Result<Vec<Tenant>> {
    let rows = client
        .query(
            &format!(
                "SELECT {COLUMNS} FROM tenants WHERE last_error IS NOT NULL \
                 AND status IN ('provisioning', 'deleting') ORDER BY updated_at DESC LIMIT $1"
            ),
            &[&limit],
        )
        .await?;
    rows_to_tenants(&rows)
}
