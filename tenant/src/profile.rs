//! What the tenant app reads about its tenant: its settings (time zone, locale, branding,
//! as operators set them in the owner database) and its features (its plan's, with
//! operators' overrides). The gateway builds it; routes of a feature the tenant lacks
//! answer 403 `feature_disabled`.

use std::collections::BTreeSet;

use serde::Serialize;
use uuid::Uuid;

#[derive(Debug, Clone, Serialize)]
pub struct TenantProfile {
    pub time_zone: String,
    pub locale: String,
    /// The brand name set, else the tenant's name.
    pub brand_name: String,
    pub brand_colour: Option<String>,
    /// Served at `GET /api/v1/settings/logo` (see `api::settings`).
    #[serde(skip)]
    pub logo_file_id: Option<Uuid>,
    pub features: BTreeSet<String>,
}

impl TenantProfile {
    pub fn has(&self, feature: &str) -> bool {
        self.features.contains(feature)
    }
}

impl Default for TenantProfile {
    /// What a tenant with nothing set and a plan of only `core` reads.
    fn default() -> Self {
        Self {
            time_zone: "UTC".into(),
            locale: "en".into(),
            brand_name: String::new(),
            brand_colour: None,
            logo_file_id: None,
            features: BTreeSet::from(["core".to_string()]),
        }
    }
}
