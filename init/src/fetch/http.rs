//! The HTTP client side of a download: the agent with its per-phase timeouts, one GET that
//! follows redirects itself (never from https to http, never round a loop), the body decoded when a
//! server encoded it unasked, and ureq's errors sorted into the phase they belong to; and one POST
//! of a JSON body, for the boot reports (`report.rs`). It knows nothing of attempts, mirrors or
//! files: that is `engine.rs`.

use std::collections::HashMap;
use std::io::{self, Read};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

use super::{tls, FetchError, Phase};
use crate::cmdline::{ProxyConfig, ProxyServer, Url};

/// Per-phase timeouts of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    /// From sending the request to the end of the response headers.
    pub headers: Duration,
    /// The longest silence in the body.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            headers: Duration::from_secs(30),
            idle: Duration::from_secs(30),
        }
    }
}

/// The HTTP client: per-phase timeouts, statuses as values (the retry table decides what they mean),
/// and no proxy but `proxy=`'s: ureq's default reads `ALL_PROXY`, `HTTPS_PROXY`, `HTTP_PROXY` and
/// `NO_PROXY` from the environment, and the kernel hands PID 1 every cmdline word such as
/// `http_proxy=...` as an environment variable, which would route every download through a proxy
/// nobody documented.
///
/// Through `proxy=`, an https URL goes through a `CONNECT` tunnel (ureq's), so the certificate is
/// still checked against the origin's name; a plain http URL is asked of the proxy in absolute form
/// (`proxy.rs` says why and how).
pub(crate) struct Client {
    direct: ureq::Agent,
    proxy: ProxyConfig,
    /// For plain http through the proxy, and for https (ureq's `CONNECT`); `None` when ureq
    /// cannot read the proxy's URL (the cmdline parser took it): `get` then fails each request
    /// that would go through it, naming the proxy, rather than go around it.
    forward: Option<ureq::Agent>,
    tunnel: Option<ureq::Agent>,
}

impl Client {
    pub(crate) fn new(t: &Timeouts, proxy: &ProxyConfig) -> Client {
        let server = proxy.server.as_ref();
        let tunnel = server.and_then(|p| ureq::Proxy::new(p.as_str()).ok()).map(|p| agent(t, Some(p)));
        let forward = server
            .and_then(|p| format!("http://{}/", p.authority()).parse().ok())
            .map(|uri| super::proxy::forwarding_agent(config(t, None), uri));
        Client { direct: agent(t, None), proxy: proxy.clone(), forward, tunnel }
    }

    /// A client whose every name lookup was made now, once: the servers of `urls` and the proxy are
    /// resolved before this returns, and later requests use those addresses and never ask the
    /// system's resolver again. For the stream server, which outlives the initramfs's
    /// `/etc/resolv.conf` and `/etc/hosts` (after switch_root they are gone from its view).
    pub(crate) fn pinned(t: &Timeouts, proxy: &ProxyConfig, urls: &[Url]) -> Client {
        let pins = Pinned::default();
        for url in urls {
            pins.pin(url.as_str());
        }
        if let Some(p) = &proxy.server {
            pins.pin(&format!("http://{}/", p.authority()));
        }
        let server = proxy.server.as_ref();
        let with =
            |proxy| ureq::Agent::with_parts(config(t, proxy), DefaultConnector::default(), pins.clone());
        let tunnel = server.and_then(|p| ureq::Proxy::new(p.as_str()).ok()).map(|p| with(Some(p)));
        let forward = server
            .and_then(|p| format!("http://{}/", p.authority()).parse().ok())
            .map(|uri| super::proxy::forwarding_agent_with(config(t, None), uri, pins.clone()));
        Client { direct: with(None), proxy: proxy.clone(), forward, tunnel }
    }

    /// The agent for a request that goes `way`; `None` when ureq could not take `proxy=`.
    fn agent(&self, way: Way) -> Option<&ureq::Agent> {
        match way {
            Way::Direct => Some(&self.direct),
            Way::Forward => self.forward.as_ref(),
            Way::Tunnel => self.tunnel.as_ref(),
        }
    }

    /// The proxy a request for `url` goes through, as the log shows it.
    pub(crate) fn via(&self, url: &Url) -> Option<String> {
        self.proxy.for_url(url).map(ToString::to_string)
    }
}

/// A resolver that answers from the addresses [`Pinned::pin`] looked up, and asks the system
/// only for a name it was not given (the proxy's, from a redirect).
#[derive(Debug, Clone, Default)]
struct Pinned {
    map: Arc<Mutex<HashMap<HostPort, Vec<SocketAddr>>>>,
}

impl Pinned {
    /// Looks up the host of `url` now; a name that does not resolve is left to the later request.
    fn pin(&self, url: &str) {
        let Ok(uri) = url.parse::<Uri>() else { return };
        let Some(key) = host_port(&uri) else { return };
        if let Ok(addrs) = (key.0.as_str(), key.1).to_socket_addrs() {
            let addrs: Vec<SocketAddr> = addrs.collect();
            if let (false, Ok(mut map)) = (addrs.is_empty(), self.map.lock()) {
                map.insert(key, addrs);
            }
        }
    }
}

type HostPort = (String, u16);

/// The host (without IPv6 brackets) and port of a URI, the scheme's default port when none.
fn host_port(uri: &Uri) -> Option<HostPort> {
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']').to_owned();
    let port = uri.port_u16().unwrap_or(if uri.scheme_str() == Some("https") { 443 } else { 80 });
    Some((host, port))
}

impl Resolver for Pinned {
    fn resolve(
        &self,
        uri: &Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let pinned = host_port(uri).and_then(|k| self.map.lock().ok()?.get(&k).cloned());
        match pinned {
            Some(addrs) => {
                let mut out = self.empty();
                for a in addrs {
                    if out.try_push(a).is_err() {
                        break;
                    }
                }
                Ok(out)
            }
            None => DefaultResolver::default().resolve(uri, config, timeout),
        }
    }
}

fn config(t: &Timeouts, proxy: Option<ureq::Proxy>) -> ureq::config::Config {
    ureq::Agent::config_builder()
        .proxy(proxy)
        .http_status_as_error(false)
        // netinit follows redirects itself (see `get`), to refuse https -> http.
        .max_redirects(0)
        .max_redirects_will_error(false)
        .tls_config(tls::config())
        .timeout_resolve(Some(t.connect))
        .timeout_connect(Some(t.connect))
        .timeout_recv_response(Some(t.headers))
        .timeout_per_read(Some(t.idle))
        .user_agent(concat!("netinit/", env!("CARGO_PKG_VERSION")))
        .build()
}

fn agent(t: &Timeouts, proxy: Option<ureq::Proxy>) -> ureq::Agent {
    config(t, proxy).into()
}

/// How one request reaches its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Way {
    Direct,
    /// Plain http, asked of the proxy in absolute form.
    Forward,
    /// https, through a `CONNECT` tunnel.
    Tunnel,
}

/// The way of a request for `url` under `proxy`, and the proxy it goes through.
pub(crate) fn way<'a>(url: &Url, proxy: &'a ProxyConfig) -> (Way, Option<&'a ProxyServer>) {
    match proxy.for_url(url) {
        None => (Way::Direct, None),
        Some(p) if url.is_https() => (Way::Tunnel, Some(p)),
        Some(p) => (Way::Forward, Some(p)),
    }
}

/// The longest budget ureq is given: far beyond any cmdline bound, far below what overflows an `Instant`.
pub(super) const MAX_BUDGET: Duration = Duration::from_secs(1 << 32);

/// Redirects followed in one request, at most.
const MAX_REDIRECTS: usize = 10;

/// Why [`get`] returned no response.
pub(crate) enum GetError {
    /// A transfer that may be retried.
    Transfer(Phase, String),
    /// One that must not be: a certificate error, a redirect from https to http, a redirect loop.
    Fatal(FetchError),
}

/// GET `url` with `headers`, following redirects (301, 302, 303, 307, 308) but never from https to
/// http, and never round a loop. Returns the URL that answered and its response, whatever its
/// status. Asks for the body as it is (`Accept-Encoding: identity`): an image is compressed already.
/// `budget` bounds the whole exchange, every redirect and the reading of the final body included.
pub(super) fn get(
    client: &Client,
    url: &Url,
    headers: &[(&'static str, String)],
    budget: Option<Duration>,
) -> Result<(Url, ureq::http::Response<ureq::Body>), GetError> {
    let mut hops = vec![url.clone()];
    let start = crate::sys::uptime();
    loop {
        let at = hops.last().unwrap_or(url);
        // The budget covers every hop: each gets what the earlier ones left.
        // ureq adds the budget to an `Instant`, which panics past i64 seconds: hand it no more than
        // MAX_BUDGET, whatever the caller's arithmetic gave.
        let left =
            budget.map(|b| b.saturating_sub(crate::sys::uptime().saturating_sub(start)).min(MAX_BUDGET));
        if left == Some(Duration::ZERO) {
            return Err(GetError::Transfer(
                Phase::Headers,
                "the time budget ran out while following redirects".into(),
            ));
        }
        let (way, via) = way(at, &client.proxy);
        let through = |m: String| match via {
            Some(p) => format!("{m} (through the proxy {p})"),
            None => m,
        };
        let Some(agent) = client.agent(way) else {
            return Err(GetError::Transfer(
                Phase::Connect,
                through("the HTTP client cannot use this proxy".into()),
            ));
        };
        let mut request = agent
            .get(at.as_str())
            .config()
            .timeout_global(left)
            .build()
            .header("Accept-Encoding", "identity");
        if let (Way::Forward, Some(credentials)) = (way, via.and_then(ProxyServer::authorization)) {
            request = request.header("Proxy-Authorization", credentials);
        }
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = match request.call() {
            Ok(r) => r,
            Err(e) => {
                let (phase, message, fatal) = classify(&e);
                return Err(match fatal {
                    true => GetError::Fatal(FetchError::Tls { url: at.clone(), message }),
                    false => GetError::Transfer(phase, through(message)),
                });
            }
        };
        let status = response.status().as_u16();
        let location = response.headers().get("location").and_then(|v| v.to_str().ok());
        let Some(next) = next_hop(at, status, location)? else { return Ok((at.clone(), response)) };
        log::info!("{at} redirects ({status}) to {next}");
        let looped = hops.contains(&next);
        hops.push(next);
        if looped || hops.len() > MAX_REDIRECTS + 1 {
            return Err(GetError::Fatal(FetchError::Redirects {
                url: url.clone(),
                hops: route(&hops),
                looped,
            }));
        }
    }
}

/// POSTs `body` as `application/json` to `url`, once, through `proxy=` as a GET would go, within
/// `budget` (connect, send and the answer's headers; the answer's body is not read). Redirects are
/// not followed. Returns the status; any error is one line naming the phase.
pub(crate) fn post_json(client: &Client, url: &Url, body: &str, budget: Duration) -> Result<u16, String> {
    let (way, via) = way(url, &client.proxy);
    let Some(agent) = client.agent(way) else { return Err("the HTTP client cannot use this proxy".into()) };
    let mut request = agent
        .post(url.as_str())
        .config()
        .timeout_global(Some(budget.min(MAX_BUDGET)))
        .build()
        .header("Content-Type", "application/json");
    if let (Way::Forward, Some(credentials)) = (way, via.and_then(ProxyServer::authorization)) {
        request = request.header("Proxy-Authorization", credentials);
    }
    match request.send(body) {
        Ok(response) => Ok(response.status().as_u16()),
        Err(e) => {
            let (phase, message, _) = classify(&e);
            Err(format!("{phase} failed: {message}"))
        }
    }
}

/// The first hops of a redirect chain, for the error line: `a -> b -> c -> ...`.
fn route(hops: &[Url]) -> String {
    let mut shown: Vec<String> = hops.iter().take(4).map(Url::to_string).collect();
    if hops.len() > 4 {
        shown.push(format!("... ({} hops)", hops.len() - 1));
    }
    shown.join(" -> ")
}

/// Where a response sends the request next: `None` when it is not a redirect, the next URL when
/// it is, an error for a bad `Location` or a step from https down to http.
pub(crate) fn next_hop(at: &Url, status: u16, location: Option<&str>) -> Result<Option<Url>, GetError> {
    let (true, Some(location)) = (matches!(status, 301 | 302 | 303 | 307 | 308), location) else {
        return Ok(None);
    };
    let next = at
        .join(location)
        .map_err(|why| GetError::Transfer(Phase::Headers, format!("bad redirect to {location:?}: {why}")))?;
    if at.is_https() && !next.is_https() {
        return Err(GetError::Fatal(FetchError::Downgrade { from: at.clone(), to: next }));
    }
    Ok(Some(next))
}

/// The body as the image's bytes: decoded when a server gzipped it unasked; `None` for an encoding
/// netinit cannot decode.
pub(super) fn decoded(
    encoding: Option<&str>,
    body: ureq::BodyReader<'static>,
) -> Option<(Box<dyn Read>, bool)> {
    match encoding.map(|e| e.trim().to_ascii_lowercase()).as_deref() {
        None | Some("" | "identity") => Some((Box::new(body), false)),
        Some("gzip" | "x-gzip") => Some((Box::new(flate2::read::GzDecoder::new(body)), true)),
        Some(_) => None,
    }
}

/// Which phase a ureq error belongs to, what to say about it, and whether it is fatal (a
/// certificate that does not verify will not verify on the next try either).
pub(super) fn classify(e: &ureq::Error) -> (Phase, String, bool) {
    use ureq::Timeout;
    let (phase, message) = match e {
        ureq::Error::Rustls(tls) => return (Phase::Tls, tls.to_string(), tls::is_fatal(tls)),
        // The TLS stream reports rustls errors as I/O errors that carry them.
        ureq::Error::Io(io) if io.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()).is_some() => {
            let tls = io.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>());
            return (
                Phase::Tls,
                tls.map_or_else(|| io.to_string(), |t| t.to_string()),
                tls.is_some_and(tls::is_fatal),
            );
        }
        ureq::Error::Tls(why) => return (Phase::Tls, (*why).to_owned(), false),
        ureq::Error::HostNotFound => (Phase::Resolve, "host not found".into()),
        ureq::Error::Timeout(Timeout::Resolve) => (Phase::Resolve, "timed out".into()),
        ureq::Error::Timeout(Timeout::Connect) => (Phase::Connect, "timed out".into()),
        ureq::Error::ConnectionFailed => (Phase::Connect, "connection failed".into()),
        ureq::Error::Timeout(_) => (Phase::Headers, "timed out".into()),
        ureq::Error::Io(io)
            if matches!(
                io.kind(),
                io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::NetworkUnreachable
                    | io::ErrorKind::HostUnreachable
            ) =>
        {
            (Phase::Connect, io.to_string())
        }
        other => (Phase::Headers, other.to_string()),
    };
    (phase, message, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_pinned_once() {
        let pins = Pinned::default();
        pins.pin("http://localhost:8080/root.squashfs");
        pins.pin("https://[::1]/x");
        pins.pin("not a url");
        let map = pins.map.lock().unwrap();
        let local = map.get(&("localhost".to_owned(), 8080)).expect("localhost resolved");
        assert!(local.iter().all(|a| a.ip().is_loopback() && a.port() == 8080), "{local:?}");
        assert_eq!(map.get(&("::1".to_owned(), 443)).map(Vec::len), Some(1), "the https default port");
        assert_eq!(map.len(), 2);
    }

    #[test]
    fn redirects() {
        let url = |u: &str| Url::parse(u).unwrap();
        let check = |at: &str, status: u16, location: Option<&str>, expected: Result<Option<&str>, &str>| {
            let got = match next_hop(&url(at), status, location) {
                Ok(next) => Ok(next.map(|u| u.as_str().to_owned())),
                Err(GetError::Fatal(e)) => Err(e.to_string()),
                Err(GetError::Transfer(_, m)) => Err(m),
            };
            match expected {
                Ok(next) => assert_eq!(got, Ok(next.map(str::to_owned)), "{at} {status} {location:?}"),
                Err(m) => {
                    assert!(got.as_ref().is_err_and(|e| e.contains(m)), "{at} {status} {location:?}: {got:?}")
                }
            }
        };
        check("http://a/x", 200, Some("/y"), Ok(None));
        check("http://a/x", 302, None, Ok(None));
        check("http://a/x", 301, Some("/y"), Ok(Some("http://a/y")));
        check("http://a/x", 307, Some("https://b/y"), Ok(Some("https://b/y")));
        check("https://a/x", 308, Some("https://b/y"), Ok(Some("https://b/y")));
        check("https://a/x", 302, Some("//b/y"), Ok(Some("https://b/y")));
        check(
            "https://a/x",
            302,
            Some("http://b/y"),
            Err("https://a/x redirects to http://b/y: refusing to leave https for http"),
        );
        check("http://a/x", 303, Some("gopher://b/"), Err("bad redirect to \"gopher://b/\""));
    }
}
