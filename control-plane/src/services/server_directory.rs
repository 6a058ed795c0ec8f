//! Where each PostgreSQL server of the registry (`database_servers`) is reached as its
//! admin role. The default server is CP_ADMIN_DATABASE_URL's; every other server's URL
//! is stored sealed under the master key, bound to the server's id, and opened here only.
//! Endpoints are cached: a server's URL never changes once registered, so the cache
//! only grows (a server registered by another process is read on first use).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use owner::servers::{DEFAULT_SERVER, DatabaseServer};
use secrecy::{ExposeSecret, SecretString};

use super::OwnerDb;
use crate::pg::Endpoint;
use crate::secrets::Keyring;
use crate::{Error, Result};

pub struct ServerDirectory {
    owner: OwnerDb,
    keyring: Arc<Keyring>,
    default: Endpoint,
    /// The CA that TLS connections to servers trust, unless their URL names another.
    ca_file: Option<PathBuf>,
    known: RwLock<HashMap<String, Endpoint>>,
}

fn aad(id: &str) -> String {
    format!("server:{id}:admin-url")
}

impl ServerDirectory {
    pub fn new(
        owner: OwnerDb,
        keyring: Arc<Keyring>,
        default: Endpoint,
        ca_file: Option<PathBuf>,
    ) -> Self {
        Self {
            owner,
            keyring,
            default,
            ca_file,
            known: RwLock::new(HashMap::new()),
        }
    }

    /// The default server's admin connection (CP_ADMIN_DATABASE_URL).
    pub fn default_endpoint(&self) -> &Endpoint {
        &self.default
    }

    /// Parses an admin URL for server `id` (errors name the server, never the URL).
    pub fn parse(&self, id: &str, url: &SecretString) -> Result<Endpoint> {
        Endpoint::parse(
            url.expose_secret(),
            self.ca_file.as_deref(),
            &format!("admin URL of database server {id}"),
        )
    }

    /// Seals an admin URL for server `id`'s row: `(key version, ciphertext)`.
    pub fn seal(&self, id: &str, url: &SecretString) -> Result<(i32, Vec<u8>)> {
        self.keyring.seal(url.expose_secret().as_bytes(), &aad(id))
    }

    /// Server `server`'s admin URL sealed again under the sealing version (a rewrap).
    pub fn reseal(&self, server: &DatabaseServer) -> Result<(i32, Vec<u8>)> {
        let (version, blob) = server.admin_url.as_ref().ok_or_else(|| {
            Error::Internal(format!("database server {} has no admin URL", server.id))
        })?;
        let url = self.keyring.open_string(*version, blob, &aad(&server.id))?;
        self.seal(&server.id, &url)
    }

    /// Server `id`'s admin connection.
    pub async fn endpoint(&self, id: &str) -> Result<Endpoint> {
        if id == DEFAULT_SERVER {
            return Ok(self.default.clone());
        }
        if let Some(known) = self.known.read().unwrap_or_else(|p| p.into_inner()).get(id) {
            return Ok(known.clone());
        }
        let server = {
            let conn = self.owner.conn().await?;
            owner::servers::server_fetch(&**conn, id).await?
        };
        let endpoint = self.open(&server)?;
        self.known
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), endpoint.clone());
        Ok(endpoint)
    }

    fn open(&self, server: &DatabaseServer) -> Result<Endpoint> {
        let (version, blob) = server.admin_url.as_ref().ok_or_else(|| {
            Error::Internal(format!("database server {} has no admin URL", server.id))
        })?;
        let url = self.keyring.open_string(*version, blob, &aad(&server.id))?;
        self.parse(&server.id, &url)
    }
}
