//! Requests the coordinator sends (branch calls, completion callbacks, alert webhooks): where
//! they may go and how they are signed.
//!
//! **The guard (SSRF).** A participant's `base_url` and a saga's `callback_url` come from API
//! clients, so a caller could point the coordinator at what only the coordinator's host can
//! reach. They never go to link-local addresses (169.254.0.0/16 with the cloud metadata
//! service, fe80::/10), unspecified ones (0.0.0.0, ::) or cloud metadata names
//! (`metadata.google.internal`, ...); `--allow-outbound CIDR|HOST` narrows the targets further
//! to what it lists. Checked when a URL is registered (`400` naming the field) and again on the
//! addresses a name resolves to when the call is made (a DNS answer may change after
//! registration): the clients resolve through [`GuardedResolver`], which drops every refused
//! address, so a call to a name that resolves only to refused addresses fails to connect.
//!
//! **Signing.** With `--signing-key`, every request is signed (`sagas::signing`) after it is
//! built, over the exact bytes sent.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::str::FromStr;
use std::sync::Arc;

use ipnet::IpNet;
use sagas::{FieldError, SigningKeys};

/// Host names of cloud metadata services, refused whatever they resolve to.
const METADATA_HOSTS: &[&str] = &[
    "metadata.google.internal",
    "metadata.goog",
    "metadata",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.azure.com",
];

/// One `--allow-outbound` entry: a network, or a host name (exact, case-insensitive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedTarget {
    /// Addresses in this network (`10.0.0.0/8`; a bare address is a /32 or /128).
    Net(IpNet),
    /// This host name, whatever it resolves to (the resolved addresses still pass the
    /// always-refused rules).
    Host(String),
}

impl FromStr for AllowedTarget {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Ok(net) = text.parse::<IpNet>() {
            return Ok(AllowedTarget::Net(net));
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(AllowedTarget::Net(IpNet::from(ip)));
        }
        let host_ok = !text.is_empty()
            && text.len() <= 253
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'));
        if host_ok {
            Ok(AllowedTarget::Host(text.to_ascii_lowercase()))
        } else {
            Err(format!(
                "{text:?} is neither a CIDR, an IP address nor a host name"
            ))
        }
    }
}

/// Where outbound requests may go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundGuard {
    /// Empty: anywhere but the always-refused addresses and names.
    allowed: Vec<AllowedTarget>,
}

impl OutboundGuard {
    /// A guard allowing `allowed` (every target but the always-refused ones when empty).
    pub fn new(allowed: Vec<AllowedTarget>) -> OutboundGuard {
        OutboundGuard { allowed }
    }

    /// Why `ip` may not be called, if it may not.
    pub fn refuses_ip(&self, ip: IpAddr) -> Option<String> {
        // An IPv4 address inside IPv6 (mapped ::ffff:a.b.c.d, or NAT64's 64:ff9b::/96) is
        // judged as the IPv4 address it reaches.
        let ip = match ip {
            IpAddr::V6(v6) => {
                let s = v6.segments();
                let nat64 = s[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
                match v6.to_ipv4_mapped() {
                    Some(v4) => IpAddr::V4(v4),
                    None if nat64 => IpAddr::V4(std::net::Ipv4Addr::from(
                        (u32::from(s[6]) << 16) | u32::from(s[7]),
                    )),
                    None => ip,
                }
            }
            v4 => v4,
        };
        let always_refused = match ip {
            IpAddr::V4(v4) => v4.is_unspecified() || v4.is_link_local(),
            // fe80::/10
            IpAddr::V6(v6) => v6.is_unspecified() || (v6.segments()[0] & 0xffc0) == 0xfe80,
        };
        if always_refused {
            return Some(format!(
                "{ip} is a link-local or unspecified address (cloud metadata lives there)"
            ));
        }
        let by_net = self.allowed.iter().any(|target| match target {
            AllowedTarget::Net(net) => net.contains(&ip),
            AllowedTarget::Host(_) => false,
        });
        if self.allowed.is_empty() || by_net {
            None
        } else {
            Some(format!("{ip} is outside --allow-outbound"))
        }
    }

    /// Why `host` (a name, not an address) may not be called, if it may not.
    fn refuses_name(&self, host: &str) -> Option<String> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if METADATA_HOSTS.contains(&host.as_str()) {
            return Some(format!("{host} is a cloud metadata service"));
        }
        None
    }

    /// Whether `host` is allowed by name by `--allow-outbound` (its addresses then pass
    /// only the always-refused rules).
    fn allows_name(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.allowed
            .iter()
            .any(|target| matches!(target, AllowedTarget::Host(h) if *h == host))
    }

    /// Checks `url` (already a valid http(s) URL) for the field `field`: `400` material.
    /// Names are checked as names here and on their resolved addresses at call time.
    pub fn check_url(&self, field: &str, url: &str) -> Result<(), FieldError> {
        let refuse = |why: String| {
            Err(FieldError::new(
                field,
                format!("must not point at {why} (got {url:?})"),
            ))
        };
        let Ok(parsed) = reqwest::Url::parse(url) else {
            return Ok(()); // the URL rules (`sagas::limits`) say what is wrong with it
        };
        match parsed.host() {
            Some(url::Host::Ipv4(ip)) => self.refuses_ip(ip.into()).map_or(Ok(()), refuse),
            Some(url::Host::Ipv6(ip)) => self.refuses_ip(ip.into()).map_or(Ok(()), refuse),
            Some(url::Host::Domain(name)) => {
                if let Some(why) = self.refuses_name(name) {
                    return refuse(why);
                }
                let listed_net = self
                    .allowed
                    .iter()
                    .any(|t| matches!(t, AllowedTarget::Net(_)));
                if self.allowed.is_empty() || self.allows_name(name) || listed_net {
                    // A listed network: the name's addresses are checked when it is called.
                    Ok(())
                } else {
                    refuse(format!("{name}, which is not in --allow-outbound"))
                }
            }
            None => Ok(()),
        }
    }

    /// The addresses of `addrs` that `host` may be called at.
    fn filter(&self, host: &str, addrs: impl Iterator<Item = SocketAddr>) -> Vec<SocketAddr> {
        let by_name = self.allows_name(host);
        addrs
            .filter(|addr| match self.refuses_ip(addr.ip()) {
                None => true,
                // Allowed by name: only the always-refused addresses stay refused.
                Some(_) if by_name => {
                    OutboundGuard::default().refuses_ip(addr.ip()).is_none()
                }
                Some(why) => {
                    tracing::warn!(host, address = %addr.ip(), reason = %why, "outbound guard dropped a resolved address");
                    false
                }
            })
            .collect()
    }
}

/// A DNS resolver for reqwest that resolves with the system's resolver and drops every address
/// the guard refuses (DNS rebinding: a name checked at registration may resolve elsewhere
/// later).
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    guard: Arc<OutboundGuard>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.guard.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            if let Some(why) = guard.refuses_name(&host) {
                return Err(why.into());
            }
            let lookup = host.clone();
            let resolved =
                tokio::task::spawn_blocking(move || (lookup.as_str(), 0).to_socket_addrs())
                    .await
                    .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)??;
            let allowed = guard.filter(&host, resolved);
            if allowed.is_empty() {
                return Err(format!(
                    "outbound guard: {host} resolves only to addresses it may not call"
                )
                .into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// How the coordinator's clients reach out: the guard and the signing keys.
#[derive(Debug, Clone)]
pub struct Outbound {
    guard: Arc<OutboundGuard>,
    keys: Option<SigningKeys>,
    local_address: Option<IpAddr>,
    /// Certificate authorities trusted besides the system's (`--ca-cert`).
    ca_certs: Vec<reqwest::Certificate>,
}

impl Outbound {
    /// Outbound requests from `local_address` (the system's choice when `None`), guarded by
    /// `guard`, signed with `keys` when there are any.
    pub fn new(
        guard: OutboundGuard,
        keys: Option<SigningKeys>,
        local_address: Option<IpAddr>,
    ) -> Outbound {
        Outbound {
            guard: Arc::new(guard),
            keys,
            local_address,
            ca_certs: Vec::new(),
        }
    }

    /// Also trusts `certs` for `https://` targets (a private CA), besides the system's roots.
    pub fn trusting(mut self, certs: Vec<reqwest::Certificate>) -> Outbound {
        self.ca_certs = certs;
        self
    }

    /// No guard beyond the always-refused addresses, no signing: for tests and embedding.
    pub fn open() -> Outbound {
        Outbound::new(OutboundGuard::default(), None, None)
    }

    /// The guard.
    pub fn guard(&self) -> &OutboundGuard {
        &self.guard
    }

    /// `builder` with the local address, the guarded resolver and the extra CAs. A URL naming an address
    /// (no resolution) is checked in [`Outbound::check_target`] before it is sent.
    pub fn client(&self, builder: reqwest::ClientBuilder) -> reqwest::Client {
        builder
            .tls_certs_merge(self.ca_certs.iter().cloned())
            .local_address(self.local_address)
            .dns_resolver(Arc::new(GuardedResolver {
                guard: self.guard.clone(),
            }))
            // A redirect could lead anywhere: branch calls, callbacks and alerts never follow.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a reqwest client with static settings always builds")
    }

    /// Why `request` may not be sent, if its URL names a refused address or name (names are
    /// also checked on what they resolve to, by the resolver).
    pub fn check_target(&self, request: &reqwest::Request) -> Result<(), String> {
        let url = request.url();
        let why = match url.host() {
            Some(url::Host::Ipv4(ip)) => self.guard.refuses_ip(ip.into()),
            Some(url::Host::Ipv6(ip)) => self.guard.refuses_ip(ip.into()),
            Some(url::Host::Domain(name)) => self.guard.refuses_name(name),
            None => None,
        };
        match why {
            Some(why) => Err(format!("outbound guard: {why}")),
            None => Ok(()),
        }
    }

    /// Signs `request` when there are signing keys.
    pub fn sign(&self, request: &mut reqwest::Request) {
        if let Some(keys) = &self.keys {
            keys.sign_request(request);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(allowed: &[&str]) -> OutboundGuard {
        OutboundGuard::new(allowed.iter().map(|a| a.parse().unwrap()).collect())
    }

    #[test]
    fn link_local_unspecified_and_metadata_targets_are_refused() {
        let open = guard(&[]);
        for url in [
            "http://169.254.169.254/latest/meta-data",
            "http://[fe80::1]:8080",
            "http://0.0.0.0:7701",
            "http://[::]:7701",
            "http://[::ffff:169.254.169.254]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://2852039166/",
            "http://0/",
            "http://metadata.google.internal/computeMetadata/v1",
            "http://METADATA.google.internal./",
        ] {
            let err = open.check_url("base_url", url).unwrap_err();
            assert_eq!(err.field, "base_url", "{url}");
        }
        for url in [
            "http://127.0.0.1:7701",
            "https://wallet.internal",
            "http://[::1]:1",
        ] {
            open.check_url("base_url", url).unwrap();
        }
    }

    #[test]
    fn allow_outbound_narrows_to_its_networks_and_names() {
        let loopback = guard(&["127.0.0.0/8", "::1", "wallet.internal"]);
        loopback
            .check_url("callback_url", "http://127.0.0.1:9/cb")
            .unwrap();
        loopback
            .check_url("callback_url", "http://[::1]:9/cb")
            .unwrap();
        loopback
            .check_url("base_url", "http://wallet.internal")
            .unwrap();
        assert!(loopback.check_url("base_url", "http://10.0.0.1").is_err());
        // Even listed, the always-refused addresses stay refused.
        assert!(
            guard(&["0.0.0.0/0"])
                .check_url("base_url", "http://169.254.169.254")
                .is_err()
        );
        let by_name = guard(&["wallet.internal"]);
        assert!(
            by_name
                .check_url("base_url", "http://points.internal")
                .is_err()
        );
        let resolved = [
            "10.0.0.1:80".parse().unwrap(),
            "169.254.169.254:80".parse().unwrap(),
        ];
        assert_eq!(
            by_name.filter("wallet.internal", resolved.into_iter()),
            vec!["10.0.0.1:80".parse::<SocketAddr>().unwrap()]
        );
        assert!(
            loopback
                .filter("evil.example", resolved.into_iter())
                .is_empty()
        );
        assert!("not a target!".parse::<AllowedTarget>().is_err());
    }
}
