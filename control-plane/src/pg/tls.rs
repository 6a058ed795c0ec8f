//! TLS to PostgreSQL, with libpq's `sslmode` meanings, for every connection the service
//! makes (owner, admin and tenant alike):
//!
//! | sslmode | encrypted | certificate checked |
//! | --- | --- | --- |
//! | `disable` | never | — |
//! | `prefer` (default) | if the server offers it | no (chain checked when a CA file is set) |
//! | `require` | always | no (chain checked when a CA file is set, as libpq does) |
//! | `verify-ca` | always | chains to the CA file (or the system's roots) |
//! | `verify-full` | always | chains to the CA, and names the host |
//!
//! `sslmode` and `sslrootcert` are read from the connection URL; `CP_DATABASE_CA_FILE`
//! is the CA file for URLs that name none. tokio-postgres knows only disable, prefer and
//! require, so both are taken out of the URL here and the verify modes become a TLS
//! configuration of their own.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres::config::SslMode as DriverSslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(text: &str) -> Result<Self, String> {
        Ok(match text {
            "disable" => Self::Disable,
            "allow" | "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(format!(
                    "sslmode {other:?} is not one of disable, prefer, require, verify-ca, verify-full"
                ));
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

/// A connection URL taken apart: the driver's configuration, and what TLS it asks for.
#[derive(Debug, Clone)]
pub struct ParsedUrl {
    pub config: tokio_postgres::Config,
    pub mode: SslMode,
    pub root_cert: Option<PathBuf>,
}

/// Parses a `postgres://` URL or a `key=value` connection string.
pub fn parse_url(url: &str) -> Result<ParsedUrl, String> {
    let mut mode = SslMode::Prefer;
    let mut root_cert = None;
    let mut take = |key: &str, value: &str| -> Result<bool, String> {
        match key {
            "sslmode" => mode = SslMode::parse(value)?,
            "sslrootcert" => root_cert = Some(PathBuf::from(value)),
            _ => return Ok(false),
        }
        Ok(true)
    };
    let rest = if let Some((base, query)) = url.split_once('?')
        && (url.starts_with("postgres://") || url.starts_with("postgresql://"))
    {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
            .map_err(|e| format!("its query string is malformed ({e})"))?;
        let mut kept = Vec::new();
        for (k, v) in pairs {
            if !take(&k, &v)? {
                kept.push((k, v));
            }
        }
        if kept.is_empty() {
            base.to_string()
        } else {
            let query = serde_urlencoded::to_string(&kept)
                .map_err(|e| format!("its query string is malformed ({e})"))?;
            format!("{base}?{query}")
        }
    } else if url.contains("://") {
        url.to_string()
    } else {
        let mut kept = Vec::new();
        for word in url.split_whitespace() {
            match word.split_once('=') {
                Some((k, v)) if take(k.trim(), v.trim().trim_matches('\''))? => {}
                _ => kept.push(word),
            }
        }
        kept.join(" ")
    };
    let mut config: tokio_postgres::Config = rest
        .parse()
        .map_err(|e| format!("not a PostgreSQL URL ({e})"))?;
    config.ssl_mode(match mode {
        SslMode::Disable => DriverSslMode::Disable,
        SslMode::Prefer => DriverSslMode::Prefer,
        _ => DriverSslMode::Require,
    });
    Ok(ParsedUrl {
        config,
        mode,
        root_cert,
    })
}

/// The TLS connector for `mode`, trusting `ca_file` (or the system's roots when a verify
/// mode names none).
pub fn connector(mode: SslMode, ca_file: Option<&Path>) -> Result<MakeRustlsConnect, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = || -> Result<Arc<RootCertStore>, String> {
        let mut store = RootCertStore::empty();
        match ca_file {
            Some(file) => {
                let certs = CertificateDer::pem_file_iter(file)
                    .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| format!("cannot read the CA file {}: {e}", file.display()))?;
                let (added, _) = store.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(format!(
                        "the CA file {} holds no usable certificate",
                        file.display()
                    ));
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                store.add_parsable_certificates(found.certs);
                if store.is_empty() {
                    return Err(format!(
                        "sslmode={} needs a CA: set CP_DATABASE_CA_FILE or sslrootcert",
                        mode.as_str()
                    ));
                }
            }
        }
        Ok(Arc::new(store))
    };
    let webpki = |roots: Arc<RootCertStore>| {
        WebPkiServerVerifier::builder_with_provider(roots, Arc::clone(&provider))
            .build()
            .map_err(|e| format!("cannot build the certificate verifier: {e}"))
    };
    let verifier: Arc<dyn ServerCertVerifier> = match (mode, ca_file) {
        // Never used for a handshake; no CA file needs to be readable.
        (SslMode::Disable, _) | (SslMode::Require | SslMode::Prefer, None) => {
            Arc::new(Unchecked(provider.signature_verification_algorithms))
        }
        (SslMode::VerifyFull, _) => webpki(roots()?)?,
        (SslMode::VerifyCa, _) | (SslMode::Require | SslMode::Prefer, Some(_)) => {
            Arc::new(ChainOnly(webpki(roots()?)?))
        }
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// `require` without a CA: encrypted, but any certificate is taken (libpq's meaning).
/// The handshake's signatures are still checked against the certificate presented.
#[derive(Debug)]
struct Unchecked(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted CA; the name in the certificate is not
/// compared with the host.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_is_taken_out_of_urls_and_strings() {
        let p = parse_url("postgres://u@h:5433/db?sslmode=verify-full&application_name=cp")
            .expect("parse");
        assert_eq!(p.mode, SslMode::VerifyFull);
        assert_eq!(p.config.get_ssl_mode(), DriverSslMode::Require);
        assert_eq!(p.config.get_application_name(), Some("cp"));
        let p = parse_url("host=h dbname=db sslmode=disable sslrootcert=/x/ca.pem").expect("kv");
        assert_eq!(p.mode, SslMode::Disable);
        assert_eq!(p.root_cert.as_deref(), Some(Path::new("/x/ca.pem")));
        assert_eq!(p.config.get_dbname(), Some("db"));
        assert_eq!(
            parse_url("postgres://h/db").expect("plain").mode,
            SslMode::Prefer
        );
        let err = parse_url("postgres://h/db?sslmode=sometimes").expect_err("bad mode");
        assert!(err.contains("sometimes"), "{err}");
    }

    #[test]
    fn verify_modes_refuse_a_ca_file_without_certificates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("ca.pem");
        std::fs::write(&file, "not a certificate").expect("write");
        let err = connector(SslMode::VerifyFull, Some(&file))
            .err()
            .expect("refused");
        assert!(err.contains("no usable certificate"), "{err}");
        assert!(connector(SslMode::Require, None).is_ok());
    }
}
