//! Which host a request is for. Only the `Host` header (or, for HTTP/2, the request
//! target's authority) counts: `X-Forwarded-Host` and `Forwarded` are never read, so a
//! client cannot pick another tenant with a header.

use axum::http::{Request, header};

/// The request's host, normalised: lower case, without port or trailing dot.
/// `Err` for a missing or malformed host (including raw non-ASCII: international names
/// arrive in their `xn--` form from every real client).
pub fn request_host<B>(req: &Request<B>) -> Result<String, &'static str> {
    let raw = match req.headers().get(header::HOST) {
        Some(value) => value
            .to_str()
            .map_err(|_| "the Host header is not ASCII")?
            .to_string(),
        None => req
            .uri()
            .authority()
            .map(|a| a.as_str().to_string())
            .ok_or("the request names no host")?,
    };
    normalise(&raw)
}

pub fn normalise(raw: &str) -> Result<String, &'static str> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err("the Host header is empty");
    }
    if !raw.is_ascii() {
        return Err("the Host header is not ASCII");
    }
    let host = if let Some(rest) = raw.strip_prefix('[') {
        // [v6]:port
        let end = rest.find(']').ok_or("malformed IPv6 host")?;
        format!("[{}]", &rest[..end])
    } else {
        match raw.rsplit_once(':') {
            Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h.to_string(),
            Some(_) => return Err("malformed Host header"),
            None => raw.to_string(),
        }
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let valid = !host.is_empty()
        && host.len() <= 253
        && (host.starts_with('[')
            || host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'));
    if valid {
        Ok(host)
    } else {
        Err("malformed Host header")
    }
}

/// The host a trusted proxy forwarded: the first `X-Forwarded-Host` value, else the
/// `host=` of the first `Forwarded` element. Only ever consulted for requests whose peer
/// is a configured trusted proxy.
pub fn forwarded_host(headers: &axum::http::HeaderMap) -> Option<Result<String, &'static str>> {
    if let Some(value) = headers.get("x-forwarded-host") {
        let value = match value.to_str() {
            Ok(v) => v,
            Err(_) => return Some(Err("the X-Forwarded-Host header is not ASCII")),
        };
        let first = value.split(',').next().unwrap_or_default();
        return Some(normalise(first));
    }
    let forwarded = headers.get(header::FORWARDED)?.to_str().ok()?;
    let first = forwarded.split(',').next()?;
    first.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("host")
            .then(|| normalise(value.trim().trim_matches('"')))
    })
}

/// True for `127.0.0.1`, `[::1]` and the like.
pub fn is_ip_literal(host: &str) -> bool {
    host.starts_with('[') || host.parse::<std::net::IpAddr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_normalised() {
        assert_eq!(
            normalise("Acme.Example.COM:8080").as_deref(),
            Ok("acme.example.com")
        );
        assert_eq!(
            normalise("acme.localhost.").as_deref(),
            Ok("acme.localhost")
        );
        assert_eq!(normalise("[::1]:8080").as_deref(), Ok("[::1]"));
        assert_eq!(normalise("127.0.0.1:9").as_deref(), Ok("127.0.0.1"));
        for bad in ["", "аcme.localhost", "a b", "a/b", "acme:port", "acme@evil"] {
            assert!(normalise(bad).is_err(), "{bad:?} accepted");
        }
        assert!(
            is_ip_literal("127.0.0.1") && is_ip_literal("[::1]") && !is_ip_literal("localhost")
        );
    }
}
