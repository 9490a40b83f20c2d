//! Plain http through `proxy=`: the request goes to the proxy, naming the image's URL in absolute
//! form (`GET http://images.lan/root.squashfs HTTP/1.1`, RFC 9112 3.2.2).
//!
//! ureq 3 sends every request through an HTTP proxy in a `CONNECT` tunnel, plain http included,
//! and most proxies refuse `CONNECT` to any port but 443 (squid's and tinyproxy's default
//! configurations do). So for plain http netinit gives ureq a connector of its own: ureq resolves
//! and connects to the proxy instead of the server (the [`ToProxy`] resolver), and the request
//! line it writes, `GET /path`, is rewritten in its output buffer to name the scheme and authority
//! too (the [`AbsoluteForm`] transport). Everything else is ureq's: the `Host` header, the
//! server's `Authorization` from the URL, the body, keep-alive (its pool is keyed by the server,
//! so a kept connection only ever carries requests for one server).

use std::fmt;

use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, NextTimeout, TcpConnector, Transport,
};

/// The agent for plain http through the proxy at `proxy` (`http://host:port`).
pub(super) fn forwarding_agent(config: ureq::config::Config, proxy: Uri) -> ureq::Agent {
    forwarding_agent_with(config, proxy, DefaultResolver::default())
}

/// The same, resolving the proxy's name with `inner`.
pub(super) fn forwarding_agent_with(
    config: ureq::config::Config,
    proxy: Uri,
    inner: impl Resolver,
) -> ureq::Agent {
    let connector = ().chain(TcpConnector::default()).chain(Forward);
    ureq::Agent::with_parts(config, connector, ToProxy { proxy, inner })
}

/// Resolves every server's name to the proxy's addresses: the proxy resolves the server's.
#[derive(Debug)]
struct ToProxy<R> {
    proxy: Uri,
    inner: R,
}

impl<R: Resolver> Resolver for ToProxy<R> {
    fn resolve(
        &self,
        _server: &Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        self.inner.resolve(&self.proxy, config, timeout)
    }
}

/// Wraps the TCP connection to the proxy in [`AbsoluteForm`].
#[derive(Debug)]
struct Forward;

impl<In: Transport> Connector<In> for Forward {
    type Out = AbsoluteForm<In>;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        let Some(inner) = chained else { return Ok(None) };
        Ok(Some(AbsoluteForm { inner, origin: origin(details.uri) }))
    }
}

/// `http://host[:port]` of a URI, without credentials.
fn origin(uri: &Uri) -> String {
    let host = uri.host().unwrap_or("");
    match uri.port_u16() {
        Some(port) => format!("http://{host}:{port}"),
        None => format!("http://{host}"),
    }
}

/// A connection to the proxy whose requests name `origin`.
struct AbsoluteForm<T> {
    inner: T,
    origin: String,
}

impl<T> fmt::Debug for AbsoluteForm<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AbsoluteForm").field("origin", &self.origin).finish()
    }
}

impl<T: Transport> Transport for AbsoluteForm<T> {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.inner.buffers()
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        let out = self.inner.buffers().output();
        let amount = absolute_form(out, amount, &self.origin).ok_or_else(|| {
            ureq::Error::Io(std::io::Error::other("the request line does not fit ureq's buffer"))
        })?;
        self.inner.transmit_output(amount, timeout)
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        self.inner.await_input(timeout)
    }

    fn is_open(&mut self) -> bool {
        self.inner.is_open()
    }
}

/// Rewrites the request line at the start of `buf[..amount]`, `METHOD /path HTTP/1.1`, to
/// `METHOD {origin}/path HTTP/1.1`, in place; returns the new amount. Output that is not the start
/// of a request (no `METHOD /` at its start: a request body) is left as it is. `None` when the
/// longer line does not fit `buf`.
pub(super) fn absolute_form(buf: &mut [u8], amount: usize, origin: &str) -> Option<usize> {
    let data = buf.get(..amount)?;
    let method = data.iter().take(16).position(|b| *b == b' ');
    let Some(space) = method.filter(|&i| i > 0 && data[..i].iter().all(u8::is_ascii_uppercase)) else {
        return Some(amount);
    };
    if data.get(space + 1) != Some(&b'/') {
        return Some(amount);
    }
    let grown = amount.checked_add(origin.len())?;
    if grown > buf.len() {
        return None;
    }
    buf.copy_within(space + 1..amount, space + 1 + origin.len());
    buf[space + 1..space + 1 + origin.len()].copy_from_slice(origin.as_bytes());
    Some(grown)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(data: &str, room: usize, origin: &str) -> Option<String> {
        let mut buf = data.as_bytes().to_vec();
        buf.resize(data.len() + room, 0);
        let n = absolute_form(&mut buf, data.len(), origin)?;
        Some(String::from_utf8(buf[..n].to_vec()).unwrap())
    }

    #[test]
    fn request_lines_name_the_server() {
        let get = "GET /root.squashfs HTTP/1.1\r\nhost: images.lan\r\n\r\n";
        assert_eq!(
            rewrite(get, 64, "http://images.lan:8080").as_deref(),
            Some("GET http://images.lan:8080/root.squashfs HTTP/1.1\r\nhost: images.lan\r\n\r\n")
        );
        // A body, or anything else that is not a request's start, is sent as it is.
        assert_eq!(rewrite("some body bytes", 64, "http://a").as_deref(), Some("some body bytes"));
        assert_eq!(
            rewrite("GET http://a/x HTTP/1.1\r\n", 64, "http://a").as_deref(),
            Some("GET http://a/x HTTP/1.1\r\n")
        );
        assert_eq!(rewrite("", 64, "http://a").as_deref(), Some(""));
        // No room for the longer line: an error, not a truncated request.
        assert_eq!(rewrite(get, 3, "http://images.lan:8080"), None);
    }

    #[test]
    fn origins_have_no_credentials() {
        let uri: Uri = "http://user:pw@images.lan:8080/x".parse().unwrap();
        assert_eq!(origin(&uri), "http://images.lan:8080");
        let uri: Uri = "http://[fd00::1]/x".parse().unwrap();
        assert_eq!(origin(&uri), "http://[fd00::1]");
    }
}
