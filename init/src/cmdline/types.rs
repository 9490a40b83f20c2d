//! The typed configuration the cmdline parser produces, and the small value types it is made of.
//! Each type parses its own syntax; none does I/O.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// The countdown when the cmdline has no `panic=`.
pub const DEFAULT_COUNTDOWN: Duration = Duration::from_secs(10);
/// How long DHCP may take by default: long enough for a switch port's spanning tree to open (30-50 s).
pub const DEFAULT_DHCP_TIMEOUT: Duration = Duration::from_secs(90);
/// Download retries after the first attempt, by default.
pub const DEFAULT_RETRIES: u32 = 5;
pub const MAX_RETRIES: u32 = 1000;
/// The whole download's time budget, by default.
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(900);

/// An http or https URL, checked enough to fail early with a clear message; the HTTP client parses
/// it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    raw: String,
    /// Where the host part starts in `raw` (after any `user:password@`).
    host_start: usize,
    /// Where the path starts (the end of the authority).
    path_start: usize,
    userinfo: bool,
}

impl Url {
    pub fn parse(raw: &str) -> Result<Url, String> {
        // The scheme is case-insensitive (RFC 3986 3.1): `HTTPS://` from a server's Location is https.
        let lowered;
        let raw = match raw.split_once("://") {
            Some((scheme, rest)) if scheme.bytes().any(|b| b.is_ascii_uppercase()) => {
                lowered = format!("{}://{rest}", scheme.to_ascii_lowercase());
                lowered.as_str()
            }
            _ => raw,
        };
        let scheme_len = if raw.starts_with("http://") {
            "http://".len()
        } else if raw.starts_with("https://") {
            "https://".len()
        } else {
            return Err("expected an http:// or https:// URL".into());
        };
        let rest = &raw[scheme_len..];
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((_, hostport)) => (true, hostport),
            None => (false, authority),
        };
        let (host, port) = match hostport.strip_prefix('[') {
            Some(rest) => match rest.split_once(']') {
                Some((host, after)) => (host, after.strip_prefix(':')),
                None => return Err("the host has '[' without ']'".into()),
            },
            None => match hostport.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (hostport, None),
            },
        };
        if host.is_empty() {
            return Err("the URL has no host".into());
        }
        if let Some(port) = port {
            if decimal::<u16>(port).is_none_or(|p| p == 0) {
                return Err(format!("bad port {port:?}"));
            }
        }
        if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("the URL has spaces or control characters".into());
        }
        let host_start = scheme_len + authority.len() - hostport.len();
        let path_start = scheme_len + authority.len();
        Ok(Url { raw: raw.to_owned(), host_start, path_start, userinfo })
    }

    pub fn is_https(&self) -> bool {
        self.raw.starts_with("https://")
    }

    /// `scheme://authority`, credentials included.
    pub fn origin(&self) -> &str {
        &self.raw[..self.path_start]
    }

    /// The URL a redirect's `Location` names, relative to this one.
    pub fn join(&self, location: &str) -> Result<Url, String> {
        let location = location.trim();
        // Absolute: a scheme before the first '/' (and any scheme but http and https is refused).
        if location.split('/').next().is_some_and(|first| first.ends_with(':') && first.len() > 1) {
            return Url::parse(location);
        }
        if let Some(rest) = location.strip_prefix("//") {
            let scheme = if self.is_https() { "https://" } else { "http://" };
            return Url::parse(&format!("{scheme}{rest}"));
        }
        if location.starts_with('/') {
            return Url::parse(&format!("{}{location}", self.origin()));
        }
        let path = &self.raw[self.path_start..];
        let path = path.split(['?', '#']).next().unwrap_or("");
        let dir = path.rfind('/').map_or("/", |i| &path[..=i]);
        let dir = if dir.is_empty() { "/" } else { dir };
        Url::parse(&format!("{}{dir}{location}", self.origin()))
    }

    /// The URL as given, credentials included: for the HTTP client only, never for a log line.
    pub fn as_str(&self) -> &str {
        &self.raw
    }
}

/// Shows the URL with any credentials replaced by `***`, so it is safe to log.
impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.userinfo {
            let scheme = if self.is_https() { "https" } else { "http" };
            write!(f, "{scheme}://***@{}", &self.raw[self.host_start..])
        } else {
            f.write_str(&self.raw)
        }
    }
}

impl Url {
    /// The host as the URL names it: a name, an IPv4 address, or an IPv6 address without its brackets.
    pub fn host(&self) -> &str {
        let hostport = &self.raw[self.host_start..self.path_start];
        match hostport.strip_prefix('[') {
            Some(rest) => rest.split(']').next().unwrap_or(""),
            None => hostport.split(':').next().unwrap_or(""),
        }
    }

    /// `host[:port]`, without credentials: the `Host` header's value.
    pub fn authority(&self) -> &str {
        &self.raw[self.host_start..self.path_start]
    }

    /// The credentials of `user:password@`, still percent-encoded.
    pub fn userinfo(&self) -> Option<&str> {
        self.userinfo.then(|| &self.raw[self.raw.find("://").map_or(0, |i| i + 3)..self.host_start - 1])
    }
}

/// `proxy=`: the HTTP proxy downloads go through, `http://[user:password@]host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyServer {
    url: Url,
}

impl ProxyServer {
    /// dracut's form. The port is required: proxies listen on 3128, 8080, 8888..., and a guessed
    /// default would fail far from its cause.
    pub fn parse(v: &str) -> Result<ProxyServer, String> {
        if v.starts_with("https://") {
            return Err("expected an http:// proxy (TLS to the proxy itself is not supported; https images still go through it)".into());
        }
        let url = Url::parse(v).map_err(|why| format!("{why}; expected http://[user:password@]host:port"))?;
        if !url.raw[url.path_start..].trim_end_matches('/').is_empty() {
            return Err("a proxy URL has no path: expected http://[user:password@]host:port".into());
        }
        let port = url.authority().rsplit_once(':').map(|(_, p)| p).filter(|p| !p.ends_with(']'));
        if port.is_none() {
            return Err(format!("give the proxy's port, as in http://{}:3128", url.authority()));
        }
        if url.userinfo().is_some_and(|u| percent_decode(u).is_none()) {
            return Err("the credentials have a bad %-escape".into());
        }
        Ok(ProxyServer { url })
    }

    /// `host:port`.
    pub fn authority(&self) -> &str {
        self.url.authority()
    }

    /// The URL as given, credentials included: for the HTTP client only.
    pub fn as_str(&self) -> &str {
        self.url.as_str().trim_end_matches('/')
    }

    /// `Proxy-Authorization`'s value, when the URL has credentials.
    pub fn authorization(&self) -> Option<String> {
        self.url.userinfo().and_then(basic_credentials)
    }
}

/// Shows the proxy with any credentials replaced by `***`.
impl fmt::Display for ProxyServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.url.to_string().trim_end_matches('/'))
    }
}

/// `Basic` credentials from a URL's `user:password` (percent-encoded), as RFC 7617 writes them.
pub fn basic_credentials(userinfo: &str) -> Option<String> {
    use base64::Engine as _;
    let decoded = percent_decode(userinfo)?;
    Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(decoded)))
}

/// `%XX` escapes decoded; `None` for a bad escape.
fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => {
                let hex = [bytes.next()?, bytes.next()?];
                out.push(hex_byte(std::str::from_utf8(&hex).ok()?)?);
            }
            b => out.push(b),
        }
    }
    Some(out)
}

/// One `noproxy=` entry: the hosts reached without the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bypass {
    /// `*`: every host.
    All,
    /// `example.com` or `.example.com`: that name and every name under it.
    Domain(String),
    /// `10.0.0.0/8`, `fd00::/8`, or one address: URLs whose host is an address in it.
    Net(IpAddr, u8),
}

impl Bypass {
    pub fn parse(v: &str) -> Result<Bypass, String> {
        if v == "*" {
            return Ok(Bypass::All);
        }
        let (addr, prefix) = match v.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (v, None),
        };
        let addr = addr.strip_prefix('[').and_then(|a| a.strip_suffix(']')).unwrap_or(addr);
        if let Ok(addr) = addr.parse::<IpAddr>() {
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                None => max,
                Some(p) => {
                    decimal::<u8>(p).filter(|p| *p <= max).ok_or(format!("bad prefix length {p:?}"))?
                }
            };
            return Ok(Bypass::Net(addr, prefix));
        }
        let name = v.strip_prefix('.').unwrap_or(v).trim_end_matches('.').to_ascii_lowercase();
        match prefix.is_none() && super::valid_hostname(&name) {
            true => Ok(Bypass::Domain(name)),
            false => Err("expected a host name, a .domain, an address, an address/prefix or *".into()),
        }
    }

    /// Whether a URL naming `host` bypasses the proxy. Names are not resolved: an address entry
    /// matches only URLs that name an address.
    pub fn matches(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        match self {
            Bypass::All => true,
            Bypass::Domain(d) => {
                host == *d || host.strip_suffix(d.as_str()).is_some_and(|h| h.ends_with('.'))
            }
            Bypass::Net(net, prefix) => match (host.parse::<IpAddr>(), net) {
                (Ok(IpAddr::V4(a)), IpAddr::V4(n)) => in_prefix(&a.octets(), &n.octets(), *prefix),
                (Ok(IpAddr::V6(a)), IpAddr::V6(n)) => in_prefix(&a.octets(), &n.octets(), *prefix),
                _ => false,
            },
        }
    }
}

impl fmt::Display for Bypass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bypass::All => f.write_str("*"),
            Bypass::Domain(d) => write!(f, ".{d}"),
            Bypass::Net(a, p) => write!(f, "{a}/{p}"),
        }
    }
}

/// Whether the first `prefix` bits of `a` and `net` agree.
fn in_prefix(a: &[u8], net: &[u8], prefix: u8) -> bool {
    let (bytes, bits) = (usize::from(prefix / 8), prefix % 8);
    a[..bytes] == net[..bytes] && (bits == 0 || (a[bytes] ^ net[bytes]) >> (8 - bits) == 0)
}

/// `proxy=` and `noproxy=`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyConfig {
    pub server: Option<ProxyServer>,
    pub bypass: Vec<Bypass>,
}

impl ProxyConfig {
    /// The proxy a download from `url` goes through, if any.
    pub fn for_url(&self, url: &Url) -> Option<&ProxyServer> {
        let host = url.host();
        self.server.as_ref().filter(|_| !self.bypass.iter().any(|b| b.matches(host)))
    }
}

/// A URL with Alpine's `{MAC}` and `{UUID}` placeholders (`apkovl=`), or with those and `{IP}`,
/// `{HOSTNAME}` and `{SERIAL}` (`netinit.report=`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlTemplate(String);

/// What fills a [`UrlTemplate`]: each placeholder and this machine's value for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Machine {
    /// The boot NIC's MAC, `aa:bb:...`.
    pub mac: String,
    /// The SMBIOS system UUID, lower case.
    pub uuid: String,
    /// The boot NIC's IPv4 address (else its first IPv6 one).
    pub ip: String,
    pub hostname: String,
    /// The SMBIOS product serial.
    pub serial: String,
}

impl Machine {
    fn values(&self) -> [(&'static str, &str); 5] {
        [
            ("{MAC}", &self.mac),
            ("{UUID}", &self.uuid),
            ("{IP}", &self.ip),
            ("{HOSTNAME}", &self.hostname),
            ("{SERIAL}", &self.serial),
        ]
    }
}

impl UrlTemplate {
    /// `apkovl=`'s template: `{MAC}` and `{UUID}`.
    pub fn parse(raw: &str) -> Result<UrlTemplate, String> {
        let t = UrlTemplate(raw.to_owned());
        t.fill("52:54:00:00:00:00", "00000000-0000-0000-0000-000000000000")?;
        Ok(t)
    }

    /// `netinit.report=`'s template: every placeholder of [`Machine`].
    pub fn parse_report(raw: &str) -> Result<UrlTemplate, String> {
        let t = UrlTemplate(raw.to_owned());
        let sample = Machine {
            mac: "52:54:00:00:00:00".into(),
            uuid: "00000000-0000-0000-0000-000000000000".into(),
            ip: "192.0.2.1".into(),
            hostname: "host".into(),
            serial: "serial".into(),
        };
        t.fill_machine(&sample)?;
        Ok(t)
    }

    /// The URL for this machine: `{MAC}` is the boot NIC's MAC (`aa:bb:...`), `{UUID}` the SMBIOS
    /// system UUID. A placeholder with nothing to fill it (no NIC, no readable SMBIOS UUID) is an
    /// error: an empty one would fetch another machine's file, or a directory's.
    pub fn fill(&self, mac: &str, uuid: &str) -> Result<Url, String> {
        let machine = Machine { mac: mac.into(), uuid: uuid.into(), ..Machine::default() };
        self.fill_only(&machine.values()[..2])
    }

    /// The URL for this machine, every placeholder of [`Machine`] filled, under the same rule.
    pub fn fill_machine(&self, machine: &Machine) -> Result<Url, String> {
        self.fill_only(&machine.values())
    }

    fn fill_only(&self, values: &[(&str, &str)]) -> Result<Url, String> {
        let mut url = self.0.clone();
        for (name, value) in values {
            if self.0.contains(name) && value.is_empty() {
                return Err(format!("{} names {name}, which this machine does not have", self.0));
            }
            // A value with `/`, `?`, `#`, `@` or a space would change the URL's shape.
            let escaped: String = value
                .chars()
                .map(|c| match c {
                    'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '.' | '_' | '~' | ':' => c.to_string(),
                    c => c.to_string().bytes().map(|b| format!("%{b:02X}")).collect(),
                })
                .collect();
            url = url.replace(name, &escaped);
        }
        Url::parse(&url)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `netinit.netconsole=HOST[:PORT]`: where the kernel's netconsole sends the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetconsoleTarget {
    pub host: Ipv4Addr,
    pub port: u16,
}

impl NetconsoleTarget {
    /// The kernel's netconsole port, and the usual listeners' (`nc -u -l 6666`).
    pub const DEFAULT_PORT: u16 = 6666;

    pub fn parse(v: &str) -> Result<NetconsoleTarget, String> {
        let (host, port) = match v.split_once(':') {
            Some((host, port)) => match decimal::<u16>(port).filter(|p| *p != 0) {
                Some(port) => (host, port),
                None => return Err(format!("bad port {port:?} (expected 1 to 65535)")),
            },
            None => (v, Self::DEFAULT_PORT),
        };
        let host = host.parse().map_err(|_| format!("expected an IPv4 address, not {host:?}"))?;
        Ok(NetconsoleTarget { host, port })
    }
}

impl fmt::Display for NetconsoleTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// A MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// `aa:bb:cc:dd:ee:ff`, `aa-bb-cc-dd-ee-ff`, or the PXE `BOOTIF` form `01-aa-bb-cc-dd-ee-ff`
    /// (hardware type 1, Ethernet, first).
    pub fn parse(s: &str) -> Option<Mac> {
        let parts: Vec<&str> = s.split([':', '-']).collect();
        let parts = match parts.len() {
            6 => &parts[..],
            7 if parts[0] == "01" => &parts[1..],
            _ => return None,
        };
        let mut mac = [0u8; 6];
        for (byte, part) in mac.iter_mut().zip(parts) {
            if part.len() != 2 {
                return None;
            }
            *byte = hex_byte(part)?;
        }
        Some(Mac(mac))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
    }
}

/// A static IPv4 configuration from `ip=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticIp {
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv4Addr>,
    pub dns: Vec<Ipv4Addr>,
}

/// A DHCP client identifier from `ip=dhcp,<type>,<id>` (option 61).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientId {
    pub kind: u8,
    pub id: String,
}

/// A static IPv6 configuration from `ip=` (the kernel's bracketed form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticIp6 {
    pub address: Ipv6Addr,
    pub prefix: u8,
    pub gateway: Option<Ipv6Addr>,
    pub dns: Vec<IpAddr>,
}

/// How the IPv6 half of a dual-stack `ip=` is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stack6 {
    Auto6,
    Dhcp6,
}

impl Stack6 {
    pub fn name(self) -> &'static str {
        match self {
            Stack6::Auto6 => "auto6",
            Stack6::Dhcp6 => "dhcp6",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpMode {
    /// DHCPv4.
    Dhcp {
        client_id: Option<ClientId>,
    },
    Static(StaticIp),
    /// IPv6 by SLAAC: the address the kernel forms from a Router Advertisement's prefix, DNS from
    /// its RDNSS and DNSSL options.
    Auto6,
    /// IPv6 from a DHCPv6 server; the on-link prefix and routes from the Router Advertisements.
    Dhcp6,
    /// DHCPv4, then IPv6 on the NIC that got the lease (`dhcp,auto6`, `dhcp,dhcp6`).
    DualStack {
        client_id: Option<ClientId>,
        v6: Stack6,
    },
    Static6(StaticIp6),
    Off,
}

/// One `ip=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    pub mode: IpMode,
    /// The NIC it names (`eth0`), if any.
    pub device: Option<String>,
    /// The hostname field, if given.
    pub hostname: Option<String>,
    /// The NTP server field (the tenth), if given: the clock is set from it.
    pub ntp: Option<Ipv4Addr>,
}

/// One `vlan=`: an 802.1Q interface `name` over the NIC `parent`, tagging with `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vlan {
    pub name: String,
    pub parent: String,
    pub id: u16,
}

impl Vlan {
    /// dracut's `<name>:<phys>`. The VLAN id is in the name, in one of dracut's four styles:
    /// `vlan0005`, `vlan5`, `eth0.0005`, `eth0.5`.
    pub fn parse(v: &str) -> Result<Vlan, String> {
        let (name, parent) = v
            .split_once(':')
            .filter(|(_, p)| !p.contains(':'))
            .ok_or("expected <name>:<nic>, like eth0.100:eth0 or vlan100:eth0")?;
        for (what, n) in [("VLAN", name), ("NIC", parent)] {
            if !valid_interface_name(n) {
                return Err(format!(
                    "{what} name {n:?} is not an interface name (1 to 15 letters, digits, '.', '-' or '_')"
                ));
            }
        }
        if name == parent {
            return Err(format!("the VLAN cannot be its own NIC, {name}"));
        }
        let digits = match name.rsplit_once('.') {
            Some((_, id)) => id,
            None => name.strip_prefix("vlan").unwrap_or(""),
        };
        let id = decimal::<u16>(digits)
            .filter(|id| (1..=4094).contains(id))
            .ok_or_else(|| format!("{name:?} names no VLAN id from 1 to 4094 (eth0.100, vlan100)"))?;
        Ok(Vlan { name: name.to_owned(), parent: parent.to_owned(), id })
    }
}

/// A bonding mode, by the kernel's number (`BOND_MODE_*` in `<linux/if_bonding.h>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BondMode {
    BalanceRr = 0,
    ActiveBackup = 1,
    BalanceXor = 2,
    Broadcast = 3,
    Lacp = 4,
    BalanceTlb = 5,
    BalanceAlb = 6,
}

impl BondMode {
    const ALL: [BondMode; 7] = [
        BondMode::BalanceRr,
        BondMode::ActiveBackup,
        BondMode::BalanceXor,
        BondMode::Broadcast,
        BondMode::Lacp,
        BondMode::BalanceTlb,
        BondMode::BalanceAlb,
    ];

    /// The kernel's name, as `/proc/net/bonding` and `ip -d link` show it.
    pub fn name(self) -> &'static str {
        match self {
            BondMode::BalanceRr => "balance-rr",
            BondMode::ActiveBackup => "active-backup",
            BondMode::BalanceXor => "balance-xor",
            BondMode::Broadcast => "broadcast",
            BondMode::Lacp => "802.3ad",
            BondMode::BalanceTlb => "balance-tlb",
            BondMode::BalanceAlb => "balance-alb",
        }
    }

    /// By name or by number, as the kernel's `mode=` takes it.
    fn parse(v: &str) -> Option<BondMode> {
        BondMode::ALL.into_iter().find(|m| m.name() == v || decimal::<u8>(v) == Some(*m as u8))
    }
}

/// `xmit_hash_policy=`'s names, in the kernel's order (`BOND_XMIT_POLICY_*`).
pub const XMIT_HASH_POLICIES: [&str; 6] =
    ["layer2", "layer3+4", "layer2+3", "encap2+3", "encap3+4", "vlan+srcmac"];

/// One `bond=`: a bonding interface `name` over `slaves`, with its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bond {
    pub name: String,
    pub slaves: Vec<String>,
    pub mode: BondMode,
    /// Link monitoring every so many ms (netinit's default 100: without it a dead link is not noticed).
    pub miimon: u32,
    pub updelay: Option<u32>,
    pub downdelay: Option<u32>,
    /// 802.3ad's LACPDU rate: `true` for fast (every second), `false` for slow (every 30 s).
    pub lacp_fast: Option<bool>,
    /// An index into [`XMIT_HASH_POLICIES`].
    pub xmit_hash_policy: Option<u8>,
    /// The slave preferred while it has a link.
    pub primary: Option<String>,
    pub mtu: Option<u32>,
}

/// The bond's options netinit knows, for the message about one it does not.
const BOND_OPTIONS: &str = "mode, miimon, updelay, downdelay, lacp_rate, xmit_hash_policy, primary";

impl Bond {
    /// dracut's `<name>[:<slaves>[:<options>[:<mtu>]]]`: slaves comma-separated (default
    /// `eth0,eth1`, as dracut's), options comma-separated `key=value` (default mode active-backup,
    /// not dracut's balance-rr: it is the mode that works with any switch).
    pub fn parse(v: &str) -> Result<Bond, String> {
        let mut fields = v.split(':');
        let name = fields.next().unwrap_or("");
        let slaves = fields.next().filter(|s| !s.is_empty()).unwrap_or("eth0,eth1");
        let options = fields.next().unwrap_or("");
        let mtu = fields.next().filter(|m| !m.is_empty());
        if fields.next().is_some() {
            return Err(
                "expected <name>[:<nics>[:<options>[:<mtu>]]], like bond0:eth0,eth1:mode=802.3ad".into()
            );
        }
        let bad_name = |what: &str, n: &str| {
            format!("{what} name {n:?} is not an interface name (1 to 15 letters, digits, '.', '-' or '_')")
        };
        if !valid_interface_name(name) {
            return Err(bad_name("bond", name));
        }
        let slaves: Vec<String> = slaves.split(',').map(str::to_owned).collect();
        for (i, s) in slaves.iter().enumerate() {
            if !valid_interface_name(s) {
                return Err(bad_name("NIC", s));
            }
            if *s == name {
                return Err(format!("the bond cannot be its own NIC, {name}"));
            }
            if slaves[..i].contains(s) {
                return Err(format!("{s} is named twice"));
            }
        }
        let mut bond = Bond {
            name: name.to_owned(),
            slaves,
            mode: BondMode::ActiveBackup,
            miimon: 100,
            updelay: None,
            downdelay: None,
            lacp_fast: None,
            xmit_hash_policy: None,
            primary: None,
            mtu: None,
        };
        let ms = |k: &str, v: &str| {
            decimal::<u32>(v).ok_or_else(|| format!("{k}={v:?} is not a whole number of milliseconds"))
        };
        for option in options.split(',').filter(|o| !o.is_empty()) {
            let (key, value) =
                option.split_once('=').ok_or_else(|| format!("option {option:?} is not key=value"))?;
            match key {
                "mode" => {
                    bond.mode = BondMode::parse(value).ok_or_else(|| {
                        let names: Vec<&str> = BondMode::ALL.iter().map(|m| m.name()).collect();
                        format!("mode={value:?} is not a bonding mode ({}, or 0 to 6)", names.join(", "))
                    })?
                }
                "miimon" => bond.miimon = ms(key, value)?,
                "updelay" => bond.updelay = Some(ms(key, value)?),
                "downdelay" => bond.downdelay = Some(ms(key, value)?),
                "lacp_rate" => {
                    bond.lacp_fast = Some(match value {
                        "slow" | "0" => false,
                        "fast" | "1" => true,
                        _ => return Err(format!("lacp_rate={value:?} is not slow or fast")),
                    })
                }
                "xmit_hash_policy" => {
                    let known = XMIT_HASH_POLICIES.iter().position(|p| *p == value);
                    let number = decimal::<u8>(value).filter(|n| usize::from(*n) < XMIT_HASH_POLICIES.len());
                    let policy = known.and_then(|p| u8::try_from(p).ok()).or(number).ok_or_else(|| {
                        format!("xmit_hash_policy={value:?} is not one of {}", XMIT_HASH_POLICIES.join(", "))
                    })?;
                    bond.xmit_hash_policy = Some(policy);
                }
                "primary" => bond.primary = Some(value.to_owned()),
                _ => return Err(format!("unknown bonding option {key:?} (netinit knows {BOND_OPTIONS})")),
            }
        }
        // What the kernel refuses in the chosen mode (its options' `unsuppmodes`), refused here.
        let mode = bond.mode;
        if bond.lacp_fast.is_some() && mode != BondMode::Lacp {
            return Err(format!("lacp_rate is for mode 802.3ad, not {}", mode.name()));
        }
        let hashed = [BondMode::BalanceXor, BondMode::Lacp, BondMode::BalanceTlb];
        if bond.xmit_hash_policy.is_some() && !hashed.contains(&mode) {
            return Err(format!(
                "xmit_hash_policy is for modes balance-xor, 802.3ad and balance-tlb, not {}",
                mode.name()
            ));
        }
        if let Some(p) = &bond.primary {
            if !bond.slaves.contains(p) {
                return Err(format!(
                    "primary={p} is not one of the bond's NICs ({})",
                    bond.slaves.join(", ")
                ));
            }
            let with_primary = [BondMode::ActiveBackup, BondMode::BalanceTlb, BondMode::BalanceAlb];
            if !with_primary.contains(&mode) {
                return Err(format!(
                    "primary is for modes active-backup, balance-tlb and balance-alb, not {}",
                    mode.name()
                ));
            }
        }
        if let Some(m) = mtu {
            bond.mtu = Some(
                decimal::<u32>(m)
                    .filter(|m| (68..=65535).contains(m))
                    .ok_or_else(|| format!("MTU {m:?} is not a number from 68 to 65535"))?,
            );
        }
        Ok(bond)
    }

    /// The options that differ from the kernel's defaults, as `key value` for a log line or a plan.
    pub fn options_text(&self) -> String {
        let mut o = vec![format!("miimon {}", self.miimon)];
        let policy = |p: u8| XMIT_HASH_POLICIES.get(usize::from(p)).copied().unwrap_or("?");
        o.extend(self.updelay.map(|d| format!("updelay {d}")));
        o.extend(self.downdelay.map(|d| format!("downdelay {d}")));
        o.extend(self.lacp_fast.map(|f| format!("lacp_rate {}", if f { "fast" } else { "slow" })));
        o.extend(self.xmit_hash_policy.map(|p| format!("xmit_hash_policy {}", policy(p))));
        o.extend(self.primary.as_ref().map(|p| format!("primary {p}")));
        o.extend(self.mtu.map(|m| format!("mtu {m}")));
        o.join(", ")
    }
}

/// What the kernel takes as an interface name (`dev_valid_name`), kept to the characters a shell
/// and a lease file take without quoting.
pub fn valid_interface_name(n: &str) -> bool {
    (1..=15).contains(&n.len())
        && n != "."
        && n != ".."
        && n.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// `netinit.keep_lease=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepLease {
    Yes,
    No,
    /// When the new root has no DHCP client of its own.
    Auto,
}

impl KeepLease {
    pub fn name(self) -> &'static str {
        match self {
            KeepLease::Yes => "yes",
            KeepLease::No => "no",
            KeepLease::Auto => "auto",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// One per `ip=` (DHCP on the chosen NIC when there is none). With several, each names its NIC.
    pub interfaces: Vec<IpConfig>,
    /// The `vlan=` interfaces to create, in cmdline order.
    pub vlans: Vec<Vlan>,
    /// The `bond=` interfaces to create, in cmdline order, before the VLANs (which may sit on one).
    pub bonds: Vec<Bond>,
    /// The boot NIC's MAC from `BOOTIF=`, if any.
    pub bootif: Option<Mac>,
    pub dhcp_timeout: Duration,
    /// `netinit.keep_lease=`: whether a process keeps the DHCP lease after switch_root.
    pub keep_lease: KeepLease,
    /// `hostname=`; an `ip=` hostname field counts when this is absent.
    pub hostname: Option<String>,
}

impl NetConfig {
    /// `hostname=`, else the first hostname field of an `ip=`.
    pub fn hostname(&self) -> Option<&str> {
        self.hostname.as_deref().or_else(|| self.interfaces.iter().find_map(|i| i.hostname.as_deref()))
    }
}

/// `modloop_verify=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Verify when the initramfs carries trusted keys (the default).
    Auto,
    /// Refuse to boot an image that is not signed by a trusted key.
    Required,
    Off,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageConfig {
    pub urls: Vec<Url>,
    pub sha256: Option<[u8; 32]>,
    pub verify: Verify,
    /// `modloop_stream=yes`: serve the root from the network (NBD) while the image arrives.
    pub stream: bool,
    pub retries: u32,
    pub timeout: Duration,
    /// `proxy=` and `noproxy=`: every download's route, the image's and the smaller files'.
    pub proxy: ProxyConfig,
}

/// A tmpfs size: a share of RAM or a byte count, as tmpfs(5)'s `size=` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    Percent(u8),
    Bytes(u64),
}

/// A decimal number of ASCII digits only: `str::parse` would also take a leading `+`.
pub fn decimal<T: std::str::FromStr>(s: &str) -> Option<T> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
}

/// A byte written as hexadecimal digits only (`u8::from_str_radix` would also take `+f`).
pub fn hex_byte(s: &str) -> Option<u8> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u8::from_str_radix(s, 16).ok())
        .flatten()
}

impl Size {
    /// `50%`, `512M`, `2G`, `1048576`, `64k` (suffixes k, m, g, t, either case, powers of 1024).
    pub fn parse(v: &str) -> Option<Size> {
        if let Some(p) = v.strip_suffix('%') {
            return decimal::<u8>(p).filter(|p| (1..=100).contains(p)).map(Size::Percent);
        }
        let (digits, shift) = match v.chars().last()?.to_ascii_lowercase() {
            'k' => (&v[..v.len() - 1], 10),
            'm' => (&v[..v.len() - 1], 20),
            'g' => (&v[..v.len() - 1], 30),
            't' => (&v[..v.len() - 1], 40),
            _ => (v, 0),
        };
        let n: u64 = decimal(digits).filter(|n| *n > 0)?;
        n.checked_mul(1u64 << shift).map(Size::Bytes)
    }

    /// The tmpfs `size=` option value.
    pub fn tmpfs_option(self) -> String {
        match self {
            Size::Percent(p) => format!("{p}%"),
            Size::Bytes(b) => b.to_string(),
        }
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Size::Percent(p) => write!(f, "{p}% of RAM"),
            Size::Bytes(b) if b % (1 << 30) == 0 => write!(f, "{} GiB", b >> 30),
            Size::Bytes(b) if b % (1 << 20) == 0 => write!(f, "{} MiB", b >> 20),
            Size::Bytes(b) => write!(f, "{b} bytes"),
        }
    }
}

/// `ssh_key=`: a key given inline, or a URL to fetch it from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SshKey {
    Inline(String),
    Fetch(Url),
}

impl SshKey {
    pub fn parse(v: &str) -> Result<SshKey, String> {
        if v.starts_with("http://") || v.starts_with("https://") {
            return Url::parse(v).map(SshKey::Fetch);
        }
        if SshKey::is_key_line(v) {
            Ok(SshKey::Inline(v.to_owned()))
        } else {
            Err("expected a public key like \"ssh-ed25519 AAAA... user\" (quoted) or an http:// URL".into())
        }
    }

    /// One public key as `authorized_keys` holds it, without options: `TYPE BASE64 [COMMENT]`. The
    /// same rule for a key on the cmdline and each line of a fetched key file.
    pub fn is_key_line(v: &str) -> bool {
        let mut words = v.split_whitespace();
        let kind = words.next().unwrap_or("");
        let known = kind.starts_with("ssh-") || kind.starts_with("ecdsa-") || kind.starts_with("sk-");
        let blob = words.next().unwrap_or("");
        let base64 = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=');
        known && !blob.is_empty() && blob.bytes().all(base64) && !v.contains(['\r', '\0'])
    }
}

/// The Alpine parameters that shape the booted system.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AlpineConfig {
    pub apkovl: Option<UrlTemplate>,
    pub repositories: Vec<String>,
    pub ssh_key: Option<SshKey>,
}

/// What netinit does when the boot fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailAction {
    Reboot,
    Poweroff,
    Halt,
    /// A rescue shell on the console (when the initramfs has one), then reboot.
    Shell,
}

impl FailAction {
    pub fn parse(v: &str) -> Option<FailAction> {
        match v {
            "reboot" => Some(FailAction::Reboot),
            "poweroff" => Some(FailAction::Poweroff),
            "halt" => Some(FailAction::Halt),
            "shell" => Some(FailAction::Shell),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            FailAction::Reboot => "reboot",
            FailAction::Poweroff => "poweroff",
            FailAction::Halt => "halt",
            FailAction::Shell => "shell",
        }
    }
}

/// One candidate of [`INIT_RULE`]: the image's init when `init=` is not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitCandidate {
    /// The program, inside the image.
    pub path: &'static str,
    /// Its arguments, unless `init_args=` gives others.
    pub args: &'static [&'static str],
    /// A directory the image must also have for this candidate to be chosen.
    pub with_dir: Option<&'static str>,
}

/// Without `init=`, the first of these the image has is its init. Zero-OS's convention first (its
/// initramfs ends with `switch_root /mnt/root /sbin/zinit init`, services in `/etc/zinit/`), then the
/// usual `/sbin/init`, then OpenRC's own PID 1 for images that have no `/sbin/init`.
pub const INIT_RULE: [InitCandidate; 3] = [
    InitCandidate { path: "/sbin/zinit", args: &["init"], with_dir: Some("/etc/zinit") },
    InitCandidate { path: "/sbin/init", args: &[], with_dir: None },
    InitCandidate { path: "/sbin/openrc-init", args: &[], with_dir: None },
];

/// How long to wait, counting down, before the failure action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Countdown {
    After(Duration),
    /// `panic=` negative: at once.
    Immediately,
    /// `panic=0`: never; the operator power-cycles the machine.
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailurePolicy {
    pub action: FailAction,
    pub countdown: Countdown,
}

impl Default for FailurePolicy {
    fn default() -> Self {
        FailurePolicy { action: FailAction::Reboot, countdown: Countdown::After(DEFAULT_COUNTDOWN) }
    }
}

/// The whole boot configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub image: ImageConfig,
    pub overlay_size: Size,
    pub net: NetConfig,
    pub modules: Vec<String>,
    pub blacklist: Vec<String>,
    /// `netinit.coldplug=`: load the modules the devices ask for (the default), or every packed one.
    pub coldplug: bool,
    pub alpine: AlpineConfig,
    /// `init=`: the program to exec in the new root. `None`: the image decides, by [`INIT_RULE`].
    pub init: Option<String>,
    /// `init_args=`: when not empty, they replace the chosen init's default arguments.
    pub init_args: Vec<String>,
    pub failure: FailurePolicy,
    pub debug: bool,
    pub quiet: bool,
    pub single: bool,
    /// `netinit.report=`: where each boot event is POSTed.
    pub report: Option<UrlTemplate>,
    /// `netinit.netconsole=`: where the kernel streams its log once the network is up.
    pub netconsole: Option<NetconsoleTarget>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            image: ImageConfig {
                urls: Vec::new(),
                sha256: None,
                verify: Verify::Auto,
                stream: false,
                retries: DEFAULT_RETRIES,
                timeout: DEFAULT_FETCH_TIMEOUT,
                proxy: ProxyConfig::default(),
            },
            overlay_size: Size::Percent(50),
            net: NetConfig {
                interfaces: vec![IpConfig {
                    mode: IpMode::Dhcp { client_id: None },
                    device: None,
                    hostname: None,
                    ntp: None,
                }],
                vlans: Vec::new(),
                bonds: Vec::new(),
                bootif: None,
                dhcp_timeout: DEFAULT_DHCP_TIMEOUT,
                keep_lease: KeepLease::Auto,
                hostname: None,
            },
            modules: Vec::new(),
            blacklist: Vec::new(),
            coldplug: true,
            alpine: AlpineConfig::default(),
            init: None,
            init_args: Vec::new(),
            failure: FailurePolicy::default(),
            debug: false,
            quiet: false,
            single: false,
            report: None,
            netconsole: None,
        }
    }
}

/// One thing wrong with the cmdline: the parameter, the value as given, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub param: &'static str,
    pub value: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.is_empty() {
            write!(f, "{}: {}", self.param, self.message)
        } else {
            write!(f, "{}: {:?}: {}", self.param, self.value, self.message)
        }
    }
}

/// The result of parsing: the configuration (defaults where a value was bad), warnings (the boot goes
/// on), errors (the boot cannot succeed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub config: Config,
    pub warnings: Vec<Problem>,
    pub errors: Vec<Problem>,
}

/// The kernel's default when `ip=` gives an address but no netmask: the address's old class.
pub fn classful_prefix(a: std::net::Ipv4Addr) -> u8 {
    match a.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        _ => 24,
    }
}
