//! Cross-origin REST calls, for a web app served from another origin than
//! the gateway's (`CORS_ORIGINS`). The WebSocket needs none of it: browsers
//! apply no CORS to an upgrade, and its token can travel in the query
//! (PROTOCOL.md 1). Off by default: an app on the gateway's own origin, or
//! behind a proxy that serves both, needs no headers, and every origin
//! allowed is one more site whose pages can call the API with a token they
//! hold.
//!
//! Tokens travel in the `Authorization` header, never in cookies, so no
//! credentials are allowed: a page can only use a token it was given.

use std::time::Duration;

use axum::http::{header, HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// How long a browser may keep a preflight's answer before asking again.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(3600);

/// The origins whose pages may call the REST API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origins {
    /// `*`: any page.
    Any,
    /// These origins only, as browsers send them (`https://app.example.com`).
    List(Vec<HeaderValue>),
}

/// Parses `CORS_ORIGINS`: `*`, or origins separated by commas, each a
/// scheme, a host and an optional port, with no path.
pub fn parse(value: &str) -> Result<Origins, String> {
    if value.trim() == "*" {
        return Ok(Origins::Any);
    }
    let origins =
        value.split(',').map(str::trim).filter(|o| !o.is_empty()).map(origin).collect::<Result<Vec<_>, _>>()?;
    if origins.is_empty() {
        return Err("expected `*` or origins separated by commas, such as https://app.example.com".into());
    }
    Ok(Origins::List(origins))
}

/// One origin, written as browsers send it, since the layer compares the
/// bytes: the scheme and host in lower case, and no port where it is the
/// scheme's own (a browser leaves `:443` off `https`).
fn origin(text: &str) -> Result<HeaderValue, String> {
    let written = text.to_ascii_lowercase();
    let (host, default_port) = match written.strip_prefix("https://") {
        Some(host) => (Some(host), ":443"),
        None => (written.strip_prefix("http://"), ":80"),
    };
    let well_formed = host.is_some_and(|host| {
        !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
    });
    if !well_formed {
        return Err(format!(
            "{text:?} is not an origin: a browser sends its page's origin as scheme://host[:port], without a path or a trailing slash"
        ));
    }
    if written.ends_with(default_port) {
        return Err(format!(
            "{text:?}: a browser leaves the scheme's own port out of the origin it sends; drop {default_port}"
        ));
    }
    HeaderValue::from_str(&written).map_err(|e| format!("{text:?}: {e}"))
}

/// The layer that answers preflights and marks responses (errors included,
/// so a page can read their JSON) for `origins`. `Retry-After` is exposed:
/// a page is told to wait what a 429 names, and without it a browser hides
/// the header from the page (found by a client developer's audit).
pub fn layer(origins: &Origins) -> CorsLayer {
    let allowed = match origins {
        Origins::Any => AllowOrigin::any(),
        Origins::List(list) => AllowOrigin::list(list.iter().cloned()),
    };
    CorsLayer::new()
        .allow_origin(allowed)
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, HeaderName::from_static("idempotency-key")])
        .expose_headers([header::RETRY_AFTER])
        .max_age(PREFLIGHT_MAX_AGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_a_star_or_a_list_of_scheme_host_port() {
        assert_eq!(parse("*"), Ok(Origins::Any));
        assert_eq!(
            parse("https://App.Example.com, http://localhost:3000"),
            Ok(Origins::List(vec![
                HeaderValue::from_static("https://app.example.com"),
                HeaderValue::from_static("http://localhost:3000"),
            ])),
            "written as a browser sends it"
        );
        let bad = ["", ",", "app.example.com", "https://app.example.com/", "https://", "ftp://x", "https://a b"];
        let never_sent = ["https://app.example.com:443", "http://localhost:80"];
        for bad in bad.into_iter().chain(never_sent) {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
