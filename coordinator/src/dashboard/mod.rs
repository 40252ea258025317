//! The web dashboard (`coordinator serve --http-listen ADDR`): four pages built into the binary
//! — `/` (every sweep), `/sweeps/{id}` (one sweep, live), `/sweeps/{id}/trials/{n}` (one trial),
//! `/workers` (the workers and their GPUs)
//! — that draw themselves in the browser from the JSON API (`crate::http`). The pages hold no
//! data: everything comes through `/api/v1` with the token, so a client without it gets an
//! empty page and a prompt. No CDN, no fonts or scripts from elsewhere: the Content Security
//! Policy allows this origin only.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

const INDEX: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const APP_CSS: &str = include_str!("app.css");

/// What the pages may load: this origin only; no inline script, no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self' blob: data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
frame-ancestors 'none'";

fn page(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            // A new binary brings new pages: the browser asks each time (they are small).
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn index() -> Response {
    page(INDEX, "text/html; charset=utf-8")
}

async fn app_js() -> Response {
    page(APP_JS, "text/javascript; charset=utf-8")
}

async fn app_css() -> Response {
    page(APP_CSS, "text/css; charset=utf-8")
}

/// The pages and their two assets.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/workers", get(index))
        .route("/sweeps/{id}", get(index))
        .route("/sweeps/{id}/trials/{n}", get(index))
        .route("/static/app.js", get(app_js))
        .route("/static/app.css", get(app_css))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_load_nothing_from_elsewhere() {
        for (name, text) in [
            ("index.html", INDEX),
            ("app.js", APP_JS),
            ("app.css", APP_CSS),
        ] {
            for bad in ["http://", "https://", "//cdn", "@import"] {
                // The SVG namespace is a name, not a fetch.
                let hits = text
                    .match_indices(bad)
                    .filter(|(i, _)| !text[*i..].starts_with("http://www.w3.org/2000/svg"))
                    .count();
                assert_eq!(hits, 0, "{name} mentions {bad}");
            }
        }
        assert!(
            !INDEX.contains("<script>"),
            "inline script would break the CSP"
        );
        assert!(
            !INDEX.contains("style="),
            "inline style would break the CSP"
        );
        assert!(
            !APP_JS.contains("innerHTML"),
            "text goes in as text, never as markup"
        );
    }
}
