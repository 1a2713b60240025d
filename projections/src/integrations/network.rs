//! Which addresses integrations may reach. A receiver URL is given by whoever administers an
//! environment; without a guard it would let them make flaglog's server send requests into its
//! own network (cloud metadata services, databases, admin ports). As Flagsmith does, flaglog
//! refuses URLs whose host is, or resolves only to, a private, loopback, link-local or otherwise
//! non-public address, unless the node was started with `--allow-private-integration-urls`
//! (receivers on the same network; tests on loopback). Names are checked where they are
//! resolved, for every connection ([`PublicOnly`]), so a name that later resolves elsewhere
//! (DNS rebinding) is refused too; literal addresses are checked before sending
//! ([`refused_host`]), and when an integration is configured.

use std::error::Error as StdError;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Whether integrations may reach private and local addresses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PrivateNetworks {
    #[default]
    Refused,
    Allowed,
}

/// How flaglog says an address was refused.
pub const REFUSED: &str = "points at a private or local address, which integrations may not \
                           reach (start flaglog with --allow-private-integration-urls to allow it)";

/// Whether `ip` is on the public internet: not private, loopback, link-local, unspecified,
/// multicast, broadcast, shared (CGNAT), documentation, benchmarking or reserved.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (18..20).contains(&b))
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first & 0xffc0) == 0xfec0 // site-local
        || (first == 0x2001 && ip.segments()[1] == 0x0db8)) // documentation
}

/// Why `url` may not be reached when private networks are refused: its host is a literal
/// non-public address, or `localhost`. Names are left to [`PublicOnly`].
pub fn refused_host(url: &str) -> Option<String> {
    let url = reqwest::Url::parse(url).ok()?;
    let refused = match url.host()? {
        url::Host::Ipv4(ip) => !is_public(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => !is_public(IpAddr::V6(ip)),
        url::Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
    };
    refused.then(|| format!("{} {REFUSED}", url.host_str().unwrap_or_default()))
}

/// A resolver that answers only public addresses: a name that resolves to none fails to
/// connect, with [`PrivateAddress`] as the reason.
pub struct PublicOnly;

/// A name resolved only to addresses integrations may not reach.
#[derive(Debug)]
pub struct PrivateAddress(pub String);

impl fmt::Display for PrivateAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {REFUSED}", self.0)
    }
}

impl StdError for PrivateAddress {}

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|address| is_public(address.ip()))
                .collect();
            if public.is_empty() {
                return Err(Box::new(PrivateAddress(host)) as Box<dyn StdError + Send + Sync>);
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_local_addresses_are_not_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn literal_private_hosts_and_localhost_are_refused() {
        for refused in [
            "http://127.0.0.1:8080/hook",
            "http://[::1]/x",
            "https://169.254.169.254/latest/meta-data",
            "http://localhost:9000/",
            "http://api.localhost/",
        ] {
            assert!(refused_host(refused).is_some(), "{refused}");
        }
        for allowed in ["https://hooks.example.com/x", "https://8.8.8.8/"] {
            assert_eq!(refused_host(allowed), None, "{allowed}");
        }
    }
}
