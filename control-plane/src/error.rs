//! The crate's one error type. `http::error` maps it to responses, in one place.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Owner(#[from] owner::Error),
    #[error(transparent)]
    Storage(#[from] storage::Error),
    #[error(transparent)]
    Tenant(#[from] tenant::Error),
    #[error("database error: {}", tenant::chain(.0))]
    Db(#[from] tokio_postgres::Error),
    #[error("owner database pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("crypto: {0}")]
    Crypto(String),
    /// A database or role exists under a tenant's name but does not carry our mark.
    #[error("refusing to touch {0}: it was not created by this control plane")]
    NotOurs(String),
    #[error("injected fault at {0}")]
    InjectedFault(String),
    #[error("tenant {id} is {status}, which does not allow this")]
    WrongState {
        id: uuid::Uuid,
        status: &'static str,
    },
    #[error("another fleet migration is running{}", .0.map(|id| format!(" (run {id})")).unwrap_or_default())]
    FleetBusy(Option<uuid::Uuid>),
    /// The request conflicts with the current state: `(code, message)`.
    #[error("{1}")]
    Conflict(&'static str, String),
    /// Too much work at once (password hashing); retry shortly.
    #[error("busy: {0}")]
    Busy(String),
    #[error("invalid request: {0}")]
    BadRequest(String),
    #[error("authentication required")]
    Unauthenticated,
    /// A sign-in with an unknown email, a wrong password or a disabled account (which of
    /// them is not said).
    #[error("wrong email or password")]
    WrongCredentials,
    /// Too many failed sign-ins for the account or from the address; retry after this
    /// many seconds.
    #[error("too many failed sign-ins; retry in {0} s")]
    TooManyAttempts(u64),
    /// Too many requests from the client's address; retry after this many seconds.
    #[error("too many requests; retry in {0} s")]
    RateLimited(u64),
    /// A one-time code that is wrong, used, expired or was never sent.
    #[error("the code is wrong, used or expired; ask for a new one")]
    InvalidCode,
    /// Something this installation is not set up for (mail without `CP_SMTP_URL`).
    #[error("{0}")]
    NotConfigured(String),
    /// A state-changing request authenticated by the session cookie came without the
    /// session's CSRF token.
    #[error("missing or wrong CSRF token")]
    CsrfRejected,
    /// The operator signed in with a one-time password and must choose their own first.
    #[error("choose a new password first")]
    PasswordChangeRequired,
    #[error("not allowed")]
    Forbidden,
    /// A backup's files or manifest do not match their checksums; nothing was restored.
    #[error("the backup cannot be used: {0}")]
    BackupCorrupt(String),
    #[error("{0}")]
    Internal(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl From<tenant::auth::Busy> for Error {
    fn from(_: tenant::auth::Busy) -> Self {
        Error::Busy("too many password checks at once".into())
    }
}
