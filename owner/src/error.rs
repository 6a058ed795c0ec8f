use tokio_postgres::error::SqlState;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid slug: {0}")]
    InvalidSlug(String),
    #[error("invalid domain: {0}")]
    InvalidDomain(String),
    #[error("invalid email address")]
    InvalidEmail,
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("a live tenant already has this slug")]
    SlugTaken,
    #[error("domain {0} already belongs to a tenant")]
    DomainTaken(String),
    #[error("an operator with this email already exists")]
    EmailTaken,
    #[error("unknown plan: {0}")]
    UnknownPlan(String),
    #[error("not found")]
    NotFound,
    #[error("row changed concurrently")]
    Conflict,
    /// One of a kind per tenant at a time (a backup, a restore) is already running.
    #[error("a {0} of this tenant is already running")]
    AlreadyRunning(&'static str),
    #[error("owner database error: {0}")]
    Db(#[source] tokio_postgres::Error),
    #[error("owner migration failed: {0}")]
    Migration(#[from] refinery::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

impl From<tokio_postgres::Error> for Error {
    /// Named constraint violations become errors callers can branch on; everything else
    /// stays a database error.
    fn from(e: tokio_postgres::Error) -> Self {
        if let Some(db) = e.as_db_error() {
            let constraint = db.constraint().unwrap_or_default();
            if *db.code() == SqlState::UNIQUE_VIOLATION {
                match constraint {
                    "tenants_slug_live" => return Error::SlugTaken,
                    "tenant_domains_pkey" => {
                        let domain = db
                            .detail()
                            .and_then(|d| d.split("=(").nth(1))
                            .and_then(|d| d.split(')').next())
                            .unwrap_or_default()
                            .to_string();
                        return Error::DomainTaken(domain);
                    }
                    "owner_users_email_key" => return Error::EmailTaken,
                    "tenant_backups_one_running" => return Error::AlreadyRunning("backup"),
                    "tenant_restores_one_running" => return Error::AlreadyRunning("restore"),
                    _ => {}
                }
            }
            if *db.code() == SqlState::FOREIGN_KEY_VIOLATION
                && constraint.ends_with("plan_code_fkey")
            {
                return Error::UnknownPlan(String::new());
            }
        }
        Error::Db(e)
    }
}
