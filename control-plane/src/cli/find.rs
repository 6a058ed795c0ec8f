//! Finding what a command names.

use owner::tenants::Tenant;

use crate::wiring::Services;
use crate::{Error, Result};

/// A tenant named by id, or by slug among living tenants; "not found" says which.
pub async fn tenant(services: &Services, key: &str) -> Result<Tenant> {
    let conn = services.owner.conn().await?;
    match owner::tenants::tenant_find(&**conn, key).await {
        Ok(tenant) => Ok(tenant),
        Err(owner::Error::NotFound) => Err(Error::BadRequest(format!(
            "no tenant {key:?} (a slug of a living tenant, or an id; see `tenants list`)"
        ))),
        Err(e) => Err(e.into()),
    }
}
