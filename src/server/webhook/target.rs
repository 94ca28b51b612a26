//! Which webhook targets may be called: `http`/`https` URLs whose host resolves to public
//! addresses only, unless the operator allowed the host (`serve --webhook-allow`).
//!
//! Owns the address rules ([`is_public`]), the check when a hook is added ([`check`]) and the
//! resolver deliveries connect through ([`GuardedResolver`]): it resolves a name, drops every
//! address that is not public and hands reqwest exactly the addresses it checked, so that a
//! DNS answer that changes between the check and the connection (rebinding) cannot point a
//! delivery at a private address. Does not deliver (see `delivery`).

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

/// Why a target URL is refused.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("invalid webhook url {url:?}")]
    Url {
        url: String,
        #[source]
        source: url::ParseError,
    },
    #[error("webhook url {url:?}: only http and https are supported")]
    Scheme { url: String },
    #[error("webhook url {url:?} has no host")]
    NoHost { url: String },
    #[error("webhook url {url:?} must not carry credentials (the body is signed instead)")]
    Credentials { url: String },
    #[error(
        "webhook host {host} is a non-public address ({addr}); the server operator can allow \
         it with `git hypha serve --webhook-allow {host}`"
    )]
    NotPublic { host: String, addr: IpAddr },
    #[error("cannot resolve webhook host {host}")]
    Resolve {
        host: String,
        #[source]
        source: std::io::Error,
    },
}

/// Hosts the operator allowed although they may resolve to non-public addresses, compared
/// case-insensitively with the URL's host (IPv6 without brackets).
#[derive(Debug, Clone, Default)]
pub struct Allowed(Arc<BTreeSet<String>>);

impl Allowed {
    pub fn new<I: IntoIterator<Item = S>, S: AsRef<str>>(hosts: I) -> Allowed {
        Allowed(Arc::new(
            hosts
                .into_iter()
                .map(|h| normalize(h.as_ref()))
                .filter(|h| !h.is_empty())
                .collect(),
        ))
    }

    pub fn contains(&self, host: &str) -> bool {
        self.0.contains(&normalize(host))
    }
}

fn normalize(host: &str) -> String {
    host.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

/// Parse `url` and check its form; an IP-literal host is checked here too, since reqwest
/// never asks a resolver about one.
pub fn parse(url: &str, allowed: &Allowed) -> Result<url::Url, TargetError> {
    let parsed = url::Url::parse(url).map_err(|source| TargetError::Url {
        url: url.to_owned(),
        source,
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(TargetError::Scheme {
            url: url.to_owned(),
        });
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(TargetError::Credentials {
            url: url.to_owned(),
        });
    }
    let host = parsed.host().ok_or_else(|| TargetError::NoHost {
        url: url.to_owned(),
    })?;
    let literal = match host {
        url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        url::Host::Domain(_) => None,
    };
    if let Some(addr) = literal {
        let host = addr.to_string();
        if !allowed.contains(&host) && !is_public(addr) {
            return Err(TargetError::NotPublic { host, addr });
        }
    }
    Ok(parsed)
}

/// What is checked when a hook is added: the URL's form, and that every address its host
/// resolves to now is public (or the host is allowed).
pub async fn check(url: &str, allowed: &Allowed) -> Result<(), TargetError> {
    let parsed = parse(url, allowed)?;
    let Some(url::Host::Domain(host)) = parsed.host() else {
        return Ok(());
    };
    if allowed.contains(host) {
        return Ok(());
    }
    let port = parsed.port_or_known_default().unwrap_or(443);
    let addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|source| TargetError::Resolve {
            host: host.to_owned(),
            source,
        })?;
    for addr in addrs {
        if !is_public(addr.ip()) {
            return Err(TargetError::NotPublic {
                host: host.to_owned(),
                addr: addr.ip(),
            });
        }
    }
    Ok(())
}

/// reqwest's resolver for deliveries: allowed hosts resolve as usual, any other host to its
/// public addresses only (an error when it has none).
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    pub allowed: Allowed,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let allowed = self.allowed.contains(&host);
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| allowed || is_public(a.ip()))
                .collect();
            if kept.is_empty() {
                let err: Box<dyn std::error::Error + Send + Sync> = match found.first() {
                    Some(addr) => Box::new(TargetError::NotPublic {
                        host,
                        addr: addr.ip(),
                    }),
                    None => format!("{host} has no address").into(),
                };
                return Err(err);
            }
            let addrs: Addrs = Box::new(kept.into_iter());
            Ok(addrs)
        })
    }
}

/// Whether `ip` is a public unicast address: not loopback, private, link-local, shared
/// (CGNAT), documentation, benchmarking, multicast, reserved, nor an IPv6 form of one.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    // Forms that carry an IPv4 address: judge that address.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return is_public_v4(embedded_v4(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return is_public_v4(embedded_v4(s[1], s[2]));
    }
    // Global unicast is 2000::/3; within it, documentation (2001:db8::/32) is not public.
    (s[0] & 0xe000) == 0x2000 && !(s[0] == 0x2001 && s[1] == 0x0db8)
}

fn embedded_v4(high: u16, low: u16) -> Ipv4Addr {
    let [a, b] = high.to_be_bytes();
    let [c, d] = low.to_be_bytes();
    Ipv4Addr::new(a, b, c, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_classes() {
        for public in ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(is_public(public.parse().expect("ip")), "{public}");
        }
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "198.18.0.1",
            "192.0.2.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
            "2002:c0a8:101::1",
            "2001:db8::1",
        ] {
            assert!(!is_public(private.parse().expect("ip")), "{private}");
        }
    }

    #[test]
    fn urls() {
        let none = Allowed::default();
        assert!(matches!(
            parse("http://127.0.0.1:9/x", &none),
            Err(TargetError::NotPublic { .. })
        ));
        assert!(matches!(
            parse("http://[::1]/x", &none),
            Err(TargetError::NotPublic { .. })
        ));
        assert!(matches!(
            parse("ftp://example.com/", &none),
            Err(TargetError::Scheme { .. })
        ));
        assert!(matches!(
            parse("https://u:p@example.com/", &none),
            Err(TargetError::Credentials { .. })
        ));
        let loopback = Allowed::new(["127.0.0.1", "[::1]", "LocalHost"]);
        assert!(parse("http://127.0.0.1:9/x", &loopback).is_ok());
        assert!(parse("http://[::1]:9/x", &loopback).is_ok());
        assert!(loopback.contains("localhost"));
        assert!(parse("https://example.com/hook", &none).is_ok());
    }

    #[tokio::test]
    async fn names_resolving_to_loopback_are_refused_unless_allowed() {
        let none = Allowed::default();
        assert!(matches!(
            check("http://localhost:9/x", &none).await,
            Err(TargetError::NotPublic { .. })
        ));
        assert!(check("http://localhost:9/x", &Allowed::new(["localhost"]))
            .await
            .is_ok());
        let resolver = GuardedResolver { allowed: none };
        let name: Name = "localhost".parse().expect("name");
        assert!(resolver.resolve(name).await.is_err());
    }
}
