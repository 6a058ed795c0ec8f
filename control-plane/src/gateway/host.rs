//! Which host a request is for. Only the `Host` header (or, for HTTP/2, the request
//! target's authority) counts: `X-Forwarded-Host` and `Forwarded` are never read, so a
//! client cannot pick another tenant with a header.

use axum::http::{Request, header};

/// The request's host, normalised: lower case, without port or trailing dot.
/// `Err` for a missing or malformed host (including raw non-ASCII: international names
/// arrive in their `xn--` form from every real client), for two `Host` headers (RFC 9112
/// answers 400), and for a request target whose authority disagrees with `Host` (RFC 9113
/// rejects an HTTP/2 `:authority` that disagrees; a proxy in front could route by either).
pub fn request_host<B>(req: &Request<B>) -> Result<String, &'static str> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let header_host = match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => return Err("the request has more than one Host header"),
        (Some(value), None) => Some(normalise(
            value.to_str().map_err(|_| "the Host header is not ASCII")?,
        )?),
        (None, _) => None,
    };
    let authority = req
        .uri()
        .authority()
        .map(|a| normalise(a.as_str()))
        .transpose()?;
    match (header_host, authority) {
        (Some(h), Some(a)) if h != a => Err("the Host header and the request target disagree"),
        (Some(h), _) => Ok(h),
        (None, Some(a)) => Ok(a),
        (None, None) => Err("the request names no host"),
    }
}

pub fn normalise(raw: &str) -> Result<String, &'static str> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err("the Host header is empty");
    }
    if !raw.is_ascii() {
        return Err("the Host header is not ASCII");
    }
    let (host, port) = if let Some(rest) = raw.strip_prefix('[') {
        // [v6]:port
        let end = rest.find(']').ok_or("malformed IPv6 host")?;
        let after = &rest[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(port) => Some(port),
            None if after.is_empty() => None,
            None => return Err("malformed Host header"),
        };
        let v6 = &rest[..end];
        v6.parse::<std::net::Ipv6Addr>()
            .map_err(|_| "malformed IPv6 host")?;
        (format!("[{}]", v6.to_ascii_lowercase()), port)
    } else {
        match raw.rsplit_once(':') {
            Some((h, port)) => (h.to_string(), Some(port)),
            None => (raw.to_string(), None),
        }
    };
    if let Some(port) = port {
        let valid_port = (1..=5).contains(&port.len())
            && port.chars().all(|c| c.is_ascii_digit())
            && port.parse::<u32>().is_ok_and(|p| (1..=65535).contains(&p));
        if !valid_port {
            return Err("the Host header has an invalid port");
        }
    }
    if host.starts_with('[') {
        return Ok(host);
    }
    // One trailing dot names the same host (the root); more is not a host name.
    let host = host.strip_suffix('.').unwrap_or(&host).to_ascii_lowercase();
    let valid = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
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
        for bad in [
            "",
            "аcme.localhost",
            "a b",
            "a/b",
            "acme:port",
            "acme@evil",
            "a.localhost:99999",
            "a.localhost:0",
            "a.localhost..",
            "a..localhost",
            ".a.localhost",
            "[::1]x",
            "[nope]",
        ] {
            assert!(normalise(bad).is_err(), "{bad:?} accepted");
        }
        assert!(
            is_ip_literal("127.0.0.1") && is_ip_literal("[::1]") && !is_ip_literal("localhost")
        );
    }

    fn request(hosts: &[&str], uri: &str) -> Request<()> {
        let mut builder = Request::builder().uri(uri);
        for host in hosts {
            builder = builder.header(header::HOST, *host);
        }
        builder.body(()).expect("request")
    }

    #[test]
    fn two_host_headers_or_a_disagreeing_authority_are_refused() {
        assert_eq!(
            request_host(&request(&["a.localhost"], "/x")).as_deref(),
            Ok("a.localhost")
        );
        assert!(request_host(&request(&["a.localhost", "b.localhost"], "/x")).is_err());
        assert!(request_host(&request(&["a.localhost", "a.localhost"], "/x")).is_err());
        // HTTP/2 gives the authority in the request target, next to (or instead of) Host.
        assert_eq!(
            request_host(&request(&[], "http://a.localhost:8080/x")).as_deref(),
            Ok("a.localhost")
        );
        assert_eq!(
            request_host(&request(&["A.localhost"], "http://a.localhost/x")).as_deref(),
            Ok("a.localhost")
        );
        assert!(request_host(&request(&["b.localhost"], "http://a.localhost/x")).is_err());
        assert!(request_host(&request(&[], "/x")).is_err());
    }
}
