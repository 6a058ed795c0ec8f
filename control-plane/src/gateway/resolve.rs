//! Host -> tenant, through the domain cache, with the last known answer as a fallback
//! while the owner database is unreachable; and a plan's limits, cached.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::Expiry;
use owner::tenants::{Tenant, TenantStatus};

use super::{Gateway, KNOWN_TTL, Refusal, UNKNOWN_TTL};

#[derive(Clone)]
pub enum Resolution {
    Tenant(Arc<Tenant>),
    Unknown,
}

pub(super) struct ResolutionExpiry;

impl Expiry<String, Resolution> for ResolutionExpiry {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Resolution,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(match value {
            Resolution::Tenant(_) => KNOWN_TTL,
            Resolution::Unknown => UNKNOWN_TTL,
        })
    }
}

fn count_lookup(resolution: &Resolution) {
    let outcome = match resolution {
        Resolution::Tenant(_) => "tenant",
        Resolution::Unknown => "unknown",
    };
    metrics::counter!("gateway_domain_lookups_total", "outcome" => outcome).increment(1);
}

impl Gateway {
    pub(super) async fn resolve(&self, domain: &str) -> Result<Resolution, Refusal> {
        // A lookup that overlapped a change may have read the old row: drop it and
        // look again (once; a second overlap is served as read, and expires in time).
        let before = self.generation.load(std::sync::atomic::Ordering::SeqCst);
        let first = self.resolve_once(domain).await;
        if self.generation.load(std::sync::atomic::Ordering::SeqCst) == before {
            return first;
        }
        self.domains.invalidate(domain).await;
        self.resolve_once(domain).await
    }

    async fn resolve_once(&self, domain: &str) -> Result<Resolution, Refusal> {
        metrics::counter!("gateway_domain_cache_requests_total").increment(1);
        // The common case, a cached answer, without building the loader below.
        if let Some(known) = self.domains.get(domain).await {
            count_lookup(&known);
            return Ok(known);
        }
        let owner = self.owner.clone();
        let last_known = self.last_known.clone();
        let key = domain.to_string();
        let lookup = self
            .domains
            .try_get_with(key.clone(), async move {
                metrics::counter!("gateway_domain_cache_misses_total").increment(1);
                let conn = owner.conn().await.map_err(|e| e.to_string())?;
                let tenant = owner::tenants::tenant_fetch_by_domain(&**conn, &key)
                    .await
                    .map_err(|e| e.to_string())?;
                // Only answers read from the owner database update the fallback, and a
                // domain that no longer resolves leaves it.
                Ok::<_, String>(match tenant {
                    Some(t) => {
                        let t = Arc::new(t);
                        last_known.insert(key, Arc::clone(&t)).await;
                        Resolution::Tenant(t)
                    }
                    None => {
                        last_known.invalidate(&key).await;
                        Resolution::Unknown
                    }
                })
            })
            .await;
        match lookup {
            Ok(resolution) => {
                count_lookup(&resolution);
                Ok(resolution)
            }
            Err(e) => {
                // The owner database is unreachable: serve a tenant last known active.
                match self.last_known.get(domain).await {
                    Some(t) if t.status == TenantStatus::Active => {
                        tracing::warn!(error = %e, domain, "owner database unreachable; serving from the last known state");
                        Ok(Resolution::Tenant(t))
                    }
                    _ => {
                        tracing::warn!(error = %e, domain, "owner database unreachable");
                        Err(Refusal::OwnerUnavailable)
                    }
                }
            }
        }
    }

    /// The terms of a plan (unlimited and without features for an unknown plan code).
    pub(super) async fn plan_terms(
        &self,
        plan: &str,
    ) -> Result<Arc<owner::plans::PlanTerms>, Refusal> {
        if let Some(terms) = self.plans.get(plan).await {
            return Ok(terms);
        }
        let owner = self.owner.clone();
        let code = plan.to_string();
        self.plans
            .try_get_with(code.clone(), async move {
                let conn = owner.conn().await.map_err(|e| e.to_string())?;
                let terms = owner::plans::plan_terms(&**conn, &code)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>(Arc::new(terms.unwrap_or_default()))
            })
            .await
            .map_err(|_| Refusal::OwnerUnavailable)
    }
}
