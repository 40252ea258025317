//! What a browser on another site must not do to the dashboard port: change a sweep (CSRF),
//! or read it through a host name that resolves to this machine (DNS rebinding).
//!
//! - A request that changes something (anything but GET, HEAD, OPTIONS) is refused when the
//!   browser says it comes from another origin (`Origin` not this host, or `Sec-Fetch-Site`
//!   `cross-site`/`same-site`). Clients that are not browsers send neither and pass.
//! - Without a token, every request must name this server by an IP address, `localhost`, this
//!   machine's host name or a name given with `--http-allow-host`: a page of another site whose
//!   name was made to resolve here names its own host and is refused. (With a token, that page
//!   cannot read or change anything anyway: it has no token.)

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Which hosts the dashboard port answers to, and whether a token guards it.
#[derive(Debug, Clone)]
pub struct Guard {
    /// Host names (lower case, without port) accepted besides IP addresses and `localhost`.
    hosts: Arc<Vec<String>>,
    /// Whether a token is required (then the host name is not checked).
    token: bool,
}

impl Guard {
    /// A guard accepting `extra` host names and this machine's own name.
    pub fn new(extra: &[String], token: bool) -> Guard {
        let mut hosts: Vec<String> = extra.iter().map(|h| h.to_ascii_lowercase()).collect();
        if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
            hosts.push(h.trim().to_ascii_lowercase());
        }
        Guard {
            hosts: Arc::new(hosts),
            token,
        }
    }

    fn host_allowed(&self, host: &str) -> bool {
        let name = host_name(host).to_ascii_lowercase();
        name == "localhost"
            || name.ends_with(".localhost")
            || name.parse::<std::net::IpAddr>().is_ok()
            || self.hosts.contains(&name)
    }
}

/// `host[:port]` or `[v6]:port` → the host alone (brackets removed).
fn host_name(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

fn forbidden(msg: String) -> Response {
    (StatusCode::FORBIDDEN, Json(json!({ "error": msg }))).into_response()
}

/// The middleware.
pub async fn check(State(g): State<Guard>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    if !g.token && !g.host_allowed(&host) {
        return forbidden(format!(
            "this coordinator does not answer to the host name {:?} (a guard against DNS rebinding): use its IP address or localhost, start it with --http-allow-host {}, or give it a token",
            host,
            host_name(&host)
        ));
    }
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if changes {
        if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
            let from = origin
                .split_once("://")
                .map_or(origin, |(_, rest)| rest)
                .trim_end_matches('/');
            if !from.eq_ignore_ascii_case(&host) {
                return forbidden(format!(
                    "a request from the page of another origin ({origin}) cannot change anything here"
                ));
            }
        }
        if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
            if site == "cross-site" || site == "same-site" {
                return forbidden(format!(
                    "a request from another site (Sec-Fetch-Site: {site}) cannot change anything here"
                ));
            }
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_by_address_localhost_or_name_given() {
        let g = Guard::new(&["Sweeps.Example.org".into()], false);
        for ok in [
            "127.0.0.1:8080",
            "[::1]:8080",
            "10.1.2.3",
            "localhost:8080",
            "app.localhost",
            "sweeps.example.org:8080",
        ] {
            assert!(g.host_allowed(ok), "{ok}");
        }
        for bad in ["evil.example.com:8080", "127.0.0.1.evil.com", ""] {
            assert!(!g.host_allowed(bad), "{bad}");
        }
    }
}
