//! "Which tenants am I in?" A person may have accounts in several tenants (a vet working
//! in two clinics). Accounts stay in the tenant databases; the owner database keeps an
//! index of emails -> tenants (`owner::finder`), which the tenant API keeps up to date
//! ([`EmailIndex`]) and `tenants reindex-users` rebuilds.
//!
//! `POST /api/public/find-tenants` answers the same for every address: a code is made
//! whether or not the address has accounts, and the lookup and the mail happen after the
//! answer, so neither the answer nor its timing tells who has an account. Only a caller
//! who presents the code mailed to the address (`.../verify`) gets the tenants' sign-in
//! addresses.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use hmac::{Hmac, Mac};
use owner::finder::FoundTenant;
use secrecy::{ExposeSecret, SecretBox};
use serde::Serialize;
use sha2::Sha256;
use uuid::Uuid;

use crate::mailer::Mailer;
use crate::services::{OwnerDb, Tasks, TenantAccess, TenantRole};
use crate::{Error, Result};

/// How long a code works.
pub const CODE_TTL: Duration = Duration::from_secs(600);
/// Wrong guesses a code takes before it stops working.
const CODE_ATTEMPTS: i32 = 5;
/// Codes made for one address per [`WINDOW`]; more requests get the same answer and no
/// new code (nor mail).
const CODES_PER_ADDRESS: i64 = 3;
/// Requests (asking or verifying) from one client address per [`WINDOW`].
const REQUESTS_PER_CLIENT: usize = 20;
const WINDOW: Duration = Duration::from_secs(900);

/// What the tenant API reports about its users, written to the owner database's index.
pub struct EmailIndex {
    owner: OwnerDb,
}

impl EmailIndex {
    pub fn new(owner: OwnerDb) -> Self {
        Self { owner }
    }
}

impl tenant::directory::UserDirectory for EmailIndex {
    fn user_changed<'a>(
        &'a self,
        tenant: Uuid,
        email: &'a str,
        present: bool,
    ) -> tenant::directory::BoxFuture<'a, ()> {
        Box::pin(async move {
            let result = async {
                let conn = self.owner.conn().await?;
                owner::finder::email_set(&**conn, tenant, email, present).await?;
                Ok::<_, Error>(())
            }
            .await;
            if let Err(e) = result {
                // The user's request succeeded; the index is repaired by a reindex.
                tracing::warn!(tenant_id = %tenant, error = %e, "could not update the email index; run `control-plane tenants reindex-users`");
            }
        })
    }
}

/// A tenant in the answer to a verified request.
#[derive(Debug, Clone, Serialize)]
pub struct TenantLink {
    #[serde(flatten)]
    pub tenant: FoundTenant,
    pub login_url: String,
}

pub struct Finder {
    owner: OwnerDb,
    access: Arc<TenantAccess>,
    mailer: Arc<Mailer>,
    tasks: Tasks,
    code_key: SecretBox<[u8; 32]>,
    /// `https://` or `http://`, and `:port` for links in dev.
    scheme: &'static str,
    port: String,
    clients: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl Finder {
    pub fn new(
        owner: OwnerDb,
        access: Arc<TenantAccess>,
        mailer: Arc<Mailer>,
        tasks: Tasks,
        config: &crate::config::Config,
    ) -> Result<Self> {
        let code_key = access.keyring().derive("find-tenants-code-v1")?;
        let (scheme, port) = if config.cookie_secure {
            ("https", String::new())
        } else {
            ("http", format!(":{}", config.listen.port()))
        };
        Ok(Self {
            owner,
            access,
            mailer,
            tasks,
            code_key,
            scheme,
            port,
            clients: Mutex::new(HashMap::new()),
        })
    }

    /// Counts a request from `client`; `Err(retry after)` past the limit.
    fn admit(&self, client: Option<IpAddr>) -> std::result::Result<(), Duration> {
        let Some(client) = client else {
            return Ok(());
        };
        let now = Instant::now();
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if clients.len() > 100_000 {
            clients.retain(|_, seen| seen.back().is_some_and(|t| now - *t < WINDOW));
        }
        let seen = clients.entry(client).or_default();
        while seen.front().is_some_and(|t| now - *t >= WINDOW) {
            seen.pop_front();
        }
        if seen.len() >= REQUESTS_PER_CLIENT {
            let oldest = seen.front().copied().unwrap_or(now);
            return Err(WINDOW.saturating_sub(now - oldest));
        }
        seen.push_back(now);
        Ok(())
    }

    fn code_hash(&self, email: &str, code: &str) -> Vec<u8> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.code_key.expose_secret())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(email.as_bytes());
        mac.update(b"\0");
        mac.update(code.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    /// Starts a request for `email`'s tenants: the same outcome whatever the address.
    pub async fn request(&self, email: &str, client: Option<IpAddr>) -> Result<()> {
        let email = owner::Email::parse(email)?.as_str().to_string();
        if let Err(wait) = self.admit(client) {
            return Err(Error::RateLimited(wait.as_secs().max(1)));
        }
        if !self.mailer.is_configured() {
            return Err(Error::NotConfigured(
                "mail is not configured on this installation (CP_SMTP_URL)".into(),
            ));
        }
        let conn = self.owner.conn().await?;
        let since = Utc::now() - chrono::Duration::from_std(WINDOW).unwrap_or_default();
        if owner::finder::codes_since(&**conn, &email, since).await? >= CODES_PER_ADDRESS {
            return Ok(());
        }
        let code = format!("{:06}", rand::random::<u32>() % 1_000_000);
        let expires = Utc::now() + chrono::Duration::from_std(CODE_TTL).unwrap_or_default();
        owner::finder::code_insert(&**conn, &email, &self.code_hash(&email, &code), expires)
            .await?;
        drop(conn);
        let (owner, mailer) = (self.owner.clone(), Arc::clone(&self.mailer));
        self.tasks.spawn(async move {
            if let Err(e) = mail_code(&owner, &mailer, &email, &code).await {
                tracing::warn!(error = %e, "could not send a find-tenants code");
            }
        });
        Ok(())
    }

    /// The tenants of `email`, for a caller presenting the code mailed to it; refused
    /// alike for a wrong, used, expired or never-sent code.
    pub async fn verify(
        &self,
        email: &str,
        code: &str,
        client: Option<IpAddr>,
    ) -> Result<Vec<TenantLink>> {
        let email = owner::Email::parse(email)?.as_str().to_string();
        if let Err(wait) = self.admit(client) {
            return Err(Error::RateLimited(wait.as_secs().max(1)));
        }
        let code = code.trim();
        let conn = self.owner.conn().await?;
        let valid = code.len() == 6
            && code.chars().all(|c| c.is_ascii_digit())
            && owner::finder::code_redeem(
                &**conn,
                &email,
                &self.code_hash(&email, code),
                CODE_ATTEMPTS,
            )
            .await?;
        if !valid {
            return Err(Error::InvalidCode);
        }
        Ok(owner::finder::tenants_of(&**conn, &email)
            .await?
            .into_iter()
            .map(|tenant| TenantLink {
                login_url: format!("{}://{}{}/", self.scheme, tenant.domain, self.port),
                tenant,
            })
            .collect())
    }

    /// Rebuilds the index from the tenant databases (every active tenant, or those
    /// named); how many tenants were read. A tenant that cannot be read is reported and
    /// the others go on.
    pub async fn reindex(&self, slugs: &[String]) -> Result<(usize, Vec<String>)> {
        let tenants = {
            let conn = self.owner.conn().await?;
            let all = owner::tenants::tenant_list(
                &**conn,
                &owner::tenants::TenantFilter {
                    status: Some(owner::tenants::TenantStatus::Active),
                    limit: i64::MAX,
                    ..Default::default()
                },
            )
            .await?;
            all.into_iter()
                .filter(|t| slugs.is_empty() || slugs.contains(&t.slug))
                .collect::<Vec<_>>()
        };
        let mut done = 0;
        let mut failed = Vec::new();
        for t in tenants {
            let result = async {
                let client = self.access.connect(&t, TenantRole::Runtime).await?;
                let emails = tenant::users::active_emails(&client).await?;
                let conn = self.owner.conn().await?;
                owner::finder::emails_replace(&**conn, t.id, &emails).await?;
                Ok::<_, Error>(())
            }
            .await;
            match result {
                Ok(()) => done += 1,
                Err(e) => {
                    tracing::warn!(tenant_id = %t.id, slug = %t.slug, error = %e, "could not reindex a tenant's users");
                    failed.push(t.slug);
                }
            }
        }
        Ok((done, failed))
    }
}

/// Mails the code to `email` if it has tenants; to no one otherwise.
async fn mail_code(owner: &OwnerDb, mailer: &Mailer, email: &str, code: &str) -> Result<()> {
    let tenants = {
        let conn = owner.conn().await?;
        owner::finder::tenants_of(&**conn, email).await?
    };
    if tenants.is_empty() {
        return Ok(());
    }
    let body = format!(
        "Someone (we hope you) asked which workspaces this address can sign in to.\n\n\
         Your code: {code}\n\n\
         It works for {} minutes. If you did not ask, ignore this message.\n",
        CODE_TTL.as_secs() / 60
    );
    mailer
        .send(email, "Your workspaces: sign-in code", &body)
        .await
}
