//! Who the client is, by address: what sign-in throttling counts per address and what the
//! audit logs record. It is the peer of the connection, unless that peer is a configured
//! trusted proxy: then it is the address the proxy forwarded (`X-Forwarded-For`, else the
//! `for=` of `Forwarded`). Behind a proxy every peer is the proxy, so without this one
//! client's failed sign-ins would throttle every client.
//!
//! A forwarded chain is read from the right, because only its right end was written by
//! a proxy we trust: each trusted proxy appends the peer it saw, and whatever stands to
//! the left of that came from the client and may be made up. So the client is the
//! rightmost entry that is not itself a trusted proxy; an entry that does not parse ends
//! the walk at the last address we could vouch for.

use std::net::IpAddr;

use axum::http::{HeaderMap, header};

/// The client's address, computed once per request by the gateway (see `dispatch`) and
/// kept in the request's extensions for the owner routes; tenant requests get it in
/// their `TenantContext`.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<IpAddr>);

/// The client's address for a connection from `peer`.
pub fn client_addr(
    peer: Option<IpAddr>,
    trusted: &[IpAddr],
    headers: &HeaderMap,
) -> Option<IpAddr> {
    let mut client = peer?;
    if !trusted.contains(&client) {
        return Some(client);
    }
    for entry in forwarded_for(headers).iter().rev() {
        match parse_node(entry) {
            Some(ip) => {
                client = ip;
                if !trusted.contains(&ip) {
                    break;
                }
            }
            None => break,
        }
    }
    Some(client)
}

/// The forwarded chain, left to right: every `X-Forwarded-For` value in order, else the
/// `for=` of every `Forwarded` element.
fn forwarded_for(headers: &HeaderMap) -> Vec<String> {
    let list = |name| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|s| s.trim().to_string())
            .collect()
    };
    let xff = list(header::HeaderName::from_static("x-forwarded-for"));
    if !xff.is_empty() {
        return xff;
    }
    list(header::FORWARDED)
        .iter()
        .map(|element| {
            element
                .split(';')
                .find_map(|pair| {
                    let (key, value) = pair.trim().split_once('=')?;
                    key.trim()
                        .eq_ignore_ascii_case("for")
                        .then(|| value.trim().to_string())
                })
                .unwrap_or_default()
        })
        .collect()
}

/// `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`, `"[2001:db8::1]:4711"`; `None` for
/// anything else (`unknown`, obfuscated names, garbage).
fn parse_node(raw: &str) -> Option<IpAddr> {
    let node = raw.trim().trim_matches('"');
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    if let Ok(ip) = node.parse() {
        return Some(ip);
    }
    // IPv4 with a port (an IPv6 address with a port must be bracketed).
    let (host, port) = node.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, value.parse().expect("header value"));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn untrusted_peers_are_the_client_whatever_they_forward() {
        let h = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(
            client_addr(Some(ip("198.51.100.1")), &[ip("10.0.0.1")], &h),
            Some(ip("198.51.100.1"))
        );
        assert_eq!(client_addr(None, &[], &h), None);
    }

    #[test]
    fn a_trusted_proxy_forwards_the_rightmost_untrusted_address() {
        let trusted = [ip("10.0.0.1"), ip("10.0.0.2")];
        let peer = Some(ip("10.0.0.1"));
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.0.0.2")]);
        assert_eq!(client_addr(peer, &trusted, &h), Some(ip("203.0.113.9")));
        // Several header lines form one list.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "203.0.113.9:5000"),
        ]);
        assert_eq!(client_addr(peer, &trusted, &h), Some(ip("203.0.113.9")));
        // Nothing forwarded: the proxy itself.
        assert_eq!(client_addr(peer, &trusted, &HeaderMap::new()), peer);
        // Garbage ends the walk at the last address vouched for.
        let h = headers(&[("x-forwarded-for", "203.0.113.9, nonsense, 10.0.0.2")]);
        assert_eq!(client_addr(peer, &trusted, &h), Some(ip("10.0.0.2")));
    }

    #[test]
    fn forwarded_elements_are_read_when_there_is_no_x_forwarded_for() {
        let trusted = [ip("10.0.0.1")];
        let h = headers(&[(
            "forwarded",
            r#"for=6.6.6.6, for="[2001:db8:cafe::17]:4711";proto=https"#,
        )]);
        assert_eq!(
            client_addr(Some(ip("10.0.0.1")), &trusted, &h),
            Some(ip("2001:db8:cafe::17"))
        );
    }
}
