//! A tenant's settings (what its app reads: time zone, locale, branding) and operators'
//! overrides of its plan's features, both kept on the tenant row as JSON objects.
//!
//! Changes come as patches: a field given replaces the stored one, a field given as
//! `null` goes back to its default (a feature override given as `null` is removed), a
//! field left out stays. The result is validated as a whole and stored normalised, so
//! the row never holds a value the service would refuse.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::{Error, Result};

/// What the tenant app reads. Every field has a default, so `{}` is valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// An IANA time zone name, as PostgreSQL knows them (`Europe/Rome`).
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
    /// A BCP 47 language tag (`en`, `it-IT`, `pt-BR`, `zh-Hant-TW`).
    #[serde(default = "default_locale")]
    pub locale: String,
    /// The name the app shows; the tenant's own name when unset.
    #[serde(default)]
    pub brand_name: Option<String>,
    /// `#rrggbb`.
    #[serde(default)]
    pub brand_colour: Option<String>,
    /// A file of the tenant's (an id from its files API) served publicly as its logo at
    /// `GET /api/v1/settings/logo`, when it is a PNG, JPEG, GIF or WebP image.
    #[serde(default)]
    pub logo_file_id: Option<Uuid>,
}

/// A patch of [`Settings`], as the owner API documents it: a field given replaces, `null`
/// resets it to the default, a field left out stays. [`Settings::patched`] applies it; a
/// test keeps the two field lists the same.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct SettingsPatch {
    /// An IANA time zone name such as `Europe/Rome` (default `UTC`).
    time_zone: Option<String>,
    /// A BCP 47 tag such as `it-IT` (default `en`).
    locale: Option<String>,
    /// Default: the tenant's name.
    #[schema(max_length = 100)]
    brand_name: Option<String>,
    #[schema(pattern = "^#[0-9a-fA-F]{6}$")]
    brand_colour: Option<String>,
    /// A PNG, JPEG, GIF or WebP file of the tenant's, served publicly at
    /// `GET /api/v1/settings/logo`.
    logo_file_id: Option<Uuid>,
}

fn default_time_zone() -> String {
    "UTC".into()
}

fn default_locale() -> String {
    "en".into()
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            time_zone: default_time_zone(),
            locale: default_locale(),
            brand_name: None,
            brand_colour: None,
            logo_file_id: None,
        }
    }
}

fn invalid(field: &'static str, reason: &str) -> Error {
    Error::Invalid {
        field,
        reason: reason.to_string(),
    }
}

impl Settings {
    /// The settings stored on a row; a row that somehow holds something else reads as
    /// the defaults rather than failing the tenant's requests.
    pub fn from_stored(value: &serde_json::Value) -> Self {
        serde_json::from_value(value.clone()).unwrap_or_default()
    }

    /// `self` with `patch` applied (see the module's doc), validated; the time zone is
    /// checked against the server by [`settings_update`].
    pub fn patched(&self, patch: &serde_json::Value) -> Result<Self> {
        let serde_json::Value::Object(patch) = patch else {
            return Err(invalid("settings", "must be a JSON object"));
        };
        let serde_json::Value::Object(mut merged) =
            serde_json::to_value(self).map_err(|e| invalid("settings", &e.to_string()))?
        else {
            return Err(invalid("settings", "must be a JSON object"));
        };
        for (key, value) in patch {
            if value.is_null() {
                merged.remove(key);
            } else {
                merged.insert(key.clone(), value.clone());
            }
        }
        let settings: Settings = serde_json::from_value(serde_json::Value::Object(merged))
            .map_err(|e| invalid("settings", &e.to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks every field's shape (not whether the time zone exists: that needs the
    /// server's list).
    pub fn validate(&self) -> Result<()> {
        let tz = &self.time_zone;
        if tz.is_empty()
            || tz.len() > 64
            || !tz
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/_-+".contains(c))
        {
            return Err(invalid(
                "time_zone",
                "must be an IANA time zone name such as Europe/Rome",
            ));
        }
        if !valid_locale(&self.locale) {
            return Err(invalid(
                "locale",
                "must be a language tag such as en, it-IT or pt-BR",
            ));
        }
        if let Some(name) = &self.brand_name {
            let count = name.trim().chars().count();
            if count == 0 || count > 100 || name.chars().any(char::is_control) {
                return Err(invalid(
                    "brand_name",
                    "must be 1 to 100 characters, without control characters",
                ));
            }
        }
        if let Some(colour) = &self.brand_colour {
            let hex = colour.strip_prefix('#').unwrap_or("");
            if hex.len() != 6 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(invalid("brand_colour", "must be #rrggbb, such as #1a7f5a"));
            }
        }
        Ok(())
    }
}

/// A BCP 47 tag of the common shapes: language, then optional script, region and
/// variants (`en`, `it-IT`, `zh-Hant-TW`, `es-419`, `de-CH-1996`).
fn valid_locale(tag: &str) -> bool {
    let mut parts = tag.split('-');
    let Some(language) = parts.next() else {
        return false;
    };
    if !(2..=3).contains(&language.len()) || !language.chars().all(|c| c.is_ascii_lowercase()) {
        return false;
    }
    tag.len() <= 35
        && parts.all(|p| (2..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// Operators' overrides of a tenant's plan features: `true` adds a feature the plan does
/// not carry, `false` takes away one it does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FeatureOverrides(pub BTreeMap<String, bool>);

impl FeatureOverrides {
    pub fn from_stored(value: &serde_json::Value) -> Self {
        serde_json::from_value(value.clone()).unwrap_or_default()
    }

    /// `self` with `patch` (`{"feature": true|false|null}`) applied, validated.
    pub fn patched(&self, patch: &serde_json::Value) -> Result<Self> {
        let serde_json::Value::Object(patch) = patch else {
            return Err(invalid(
                "features",
                "must be a JSON object of feature: true, false or null",
            ));
        };
        let mut out = self.clone();
        for (feature, value) in patch {
            if !valid_feature(feature) {
                return Err(invalid(
                    "features",
                    "each feature is 1 to 40 of a-z, 0-9, - and _",
                ));
            }
            match value {
                serde_json::Value::Null => {
                    out.0.remove(feature);
                }
                serde_json::Value::Bool(on) => {
                    out.0.insert(feature.clone(), *on);
                }
                _ => {
                    return Err(invalid(
                        "features",
                        "each value is true (add), false (take away) or null (as the plan says)",
                    ));
                }
            }
        }
        if out.0.len() > 100 {
            return Err(invalid("features", "at most 100 overrides"));
        }
        Ok(out)
    }

    /// The features of a tenant on a plan carrying `plan`, with these overrides.
    pub fn apply<'a>(&self, plan: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
        let mut features: BTreeSet<String> = plan
            .into_iter()
            .filter(|f| self.0.get(*f) != Some(&false))
            .map(str::to_string)
            .collect();
        features.extend(self.0.iter().filter(|(_, on)| **on).map(|(f, _)| f.clone()));
        features
    }
}

/// A feature code, as plans take them.
pub fn valid_feature(f: &str) -> bool {
    !f.is_empty()
        && f.len() <= 40
        && f.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// Whether the server knows `name` as a time zone.
pub async fn time_zone_exists(client: &impl GenericClient, name: &str) -> Result<bool> {
    Ok(client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = $1)",
            &[&name],
        )
        .await?
        .get(0))
}

/// Stores `settings` on tenant `id` (validated; the time zone against the server's list).
pub async fn settings_update(
    client: &impl GenericClient,
    id: Uuid,
    settings: &Settings,
) -> Result<()> {
    settings.validate()?;
    if !time_zone_exists(client, &settings.time_zone).await? {
        return Err(invalid(
            "time_zone",
            "is not a time zone this server knows (an IANA name such as Europe/Rome)",
        ));
    }
    let value = serde_json::to_value(settings).map_err(|e| invalid("settings", &e.to_string()))?;
    let n = client
        .execute(
            "UPDATE tenants SET settings = $2, updated_at = now() \
             WHERE id = $1 AND status NOT IN ('deleting', 'deleted')",
            &[&id, &value],
        )
        .await?;
    if n == 0 {
        return Err(Error::NotFound);
    }
    Ok(())
}

/// Stores `overrides` on tenant `id`.
pub async fn features_update(
    client: &impl GenericClient,
    id: Uuid,
    overrides: &FeatureOverrides,
) -> Result<()> {
    let value = serde_json::to_value(overrides).map_err(|e| invalid("features", &e.to_string()))?;
    let n = client
        .execute(
            "UPDATE tenants SET features = $2, updated_at = now() \
             WHERE id = $1 AND status NOT IN ('deleting', 'deleted')",
            &[&id, &value],
        )
        .await?;
    if n == 0 {
        return Err(Error::NotFound);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_documented_patch_names_every_setting() {
        let schema = serde_json::to_value(<SettingsPatch as utoipa::PartialSchema>::schema())
            .expect("schema");
        let documented: std::collections::BTreeSet<&String> = schema["properties"]
            .as_object()
            .expect("properties")
            .keys()
            .collect();
        let settings = serde_json::to_value(Settings::default()).expect("settings");
        let actual: std::collections::BTreeSet<&String> =
            settings.as_object().expect("object").keys().collect();
        assert_eq!(documented, actual);
    }

    #[test]
    fn a_patch_replaces_given_fields_resets_nulls_and_keeps_the_rest() {
        let base = Settings::default()
            .patched(&json!({"locale": "it-IT", "brand_colour": "#1A7f5a"}))
            .unwrap();
        assert_eq!(base.locale, "it-IT");
        let next = base
            .patched(&json!({"locale": null, "brand_name": "Clinica"}))
            .unwrap();
        assert_eq!(next.locale, "en");
        assert_eq!(next.brand_colour.as_deref(), Some("#1A7f5a"));
        assert_eq!(next.brand_name.as_deref(), Some("Clinica"));
    }

    #[test]
    fn bad_settings_are_refused_naming_the_field() {
        for (patch, field) in [
            (json!({"locale": "english"}), "locale"),
            (json!({"locale": "EN"}), "locale"),
            (json!({"brand_colour": "red"}), "brand_colour"),
            (json!({"brand_name": " "}), "brand_name"),
            (json!({"time_zone": "../../etc/passwd"}), "time_zone"),
            (json!({"colour": "#000000"}), "settings"),
            (json!({"logo_file_id": "not-a-uuid"}), "settings"),
            (json!(["locale"]), "settings"),
        ] {
            match Settings::default().patched(&patch) {
                Err(Error::Invalid { field: f, .. }) => assert_eq!(f, field, "{patch}"),
                other => panic!("{patch}: {other:?}"),
            }
        }
    }

    #[test]
    fn overrides_add_and_take_away_plan_features() {
        let overrides = FeatureOverrides::default()
            .patched(&json!({"files": false, "beta": true, "sso": true}))
            .unwrap()
            .patched(&json!({"sso": null}))
            .unwrap();
        let features = overrides.apply(["core", "files"]);
        assert_eq!(
            features.into_iter().collect::<Vec<_>>(),
            vec!["beta".to_string(), "core".to_string()]
        );
        assert!(
            FeatureOverrides::default()
                .patched(&json!({"Files": true}))
                .is_err()
        );
        assert!(
            FeatureOverrides::default()
                .patched(&json!({"files": "yes"}))
                .is_err()
        );
    }
}
