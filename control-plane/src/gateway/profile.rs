//! A tenant's profile (settings and features, see `tenant::profile`) as its requests see
//! it: built from the tenant row the runtime was built from and the plan's terms, once
//! per plan version rather than per request. A change of the tenant rebuilds its
//! runtime; an edit of a plan replaces the cached terms, which this notices.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use owner::plans::PlanTerms;
use owner::tenant_settings::{FeatureOverrides, Settings};
use owner::tenants::Tenant;
use tenant::TenantProfile;

pub(super) struct ProfileSource {
    settings: Settings,
    overrides: FeatureOverrides,
    name: String,
    /// The profile last built, and the terms it was built with.
    built: Mutex<Option<(Arc<PlanTerms>, Arc<TenantProfile>)>>,
}

impl ProfileSource {
    pub(super) fn new(tenant: &Tenant) -> Self {
        Self {
            settings: Settings::from_stored(&tenant.settings),
            overrides: FeatureOverrides::from_stored(&tenant.features),
            name: tenant.name.clone(),
            built: Mutex::new(None),
        }
    }

    pub(super) fn for_plan(&self, terms: &Arc<PlanTerms>) -> Arc<TenantProfile> {
        let mut built = self.built.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((with, profile)) = built.as_ref()
            && Arc::ptr_eq(with, terms)
        {
            return Arc::clone(profile);
        }
        let profile = Arc::new(profile(
            &self.settings,
            &self.overrides,
            &self.name,
            &terms.features,
        ));
        *built = Some((Arc::clone(terms), Arc::clone(&profile)));
        profile
    }
}

/// The profile of a tenant named `name` with these settings and overrides on a plan
/// carrying `plan_features`.
pub fn profile(
    settings: &Settings,
    overrides: &FeatureOverrides,
    name: &str,
    plan_features: &[String],
) -> TenantProfile {
    let features: BTreeSet<String> = overrides.apply(plan_features.iter().map(String::as_str));
    TenantProfile {
        time_zone: settings.time_zone.clone(),
        locale: settings.locale.clone(),
        brand_name: settings
            .brand_name
            .clone()
            .unwrap_or_else(|| name.to_string()),
        brand_colour: settings.brand_colour.clone(),
        logo_file_id: settings.logo_file_id,
        features,
    }
}
