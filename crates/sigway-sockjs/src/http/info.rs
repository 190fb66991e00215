//! The pages that are not sessions: the info document, the iframe page
//! (built once per endpoint, with its ETag) and chunking_test, plus
//! draining a body nobody wants.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use futures_util::StreamExt as _;
use tokio::sync::mpsc;

use super::receiver::ChannelBody;
use super::{BODY_CHUNKS, JAVASCRIPT, NO_CACHE, cache_for_a_year, cors, header_str};
use crate::app::SockjsApp;
use crate::frame;
use crate::server::Server;

/// The iframe page with its ETag, built once per endpoint.
pub(crate) struct IframePage {
    body: String,
    etag: String,
}

impl IframePage {
    /// sockjs-node's page and ETag (the quoted MD5 of the page). The client
    /// URL is HTML-escaped here (sockjs-node pastes it raw, which changes
    /// nothing for URLs without `&`, `"`, `<` or `>`).
    pub(crate) fn new(client_url: &str) -> Self {
        let url = client_url
            .replace('&', "&amp;")
            .replace('"', "&quot;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        let body = format!(
            r#"<!DOCTYPE html>
<html>
<head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
  <script src="{url}"></script>
  <script>
    document.domain = document.domain;
    SockJS.bootstrap_iframe();
  </script>
</head>
<body>
  <h2>Don't panic!</h2>
  <p>This is a SockJS hidden iframe. It's used for cross domain magic.</p>
</body>
</html>"#
        );
        let etag = format!("\"{}\"", md5_hex(body.as_bytes()));
        Self { body, etag }
    }
}

fn md5_hex(data: &[u8]) -> String {
    match openssl::hash::hash(openssl::hash::MessageDigest::md5(), data) {
        Ok(digest) => digest.iter().map(|b| format!("{b:02x}")).collect(),
        // MD5 unavailable (a FIPS-only OpenSSL): any stable tag will do.
        Err(_) => format!("{:016x}", data.len()),
    }
}

pub(super) fn info<A: SockjsApp>(server: &Server<A>, req: &HttpRequest) -> HttpResponse {
    // Key order as sockjs-node's (serde_json keeps insertion order here).
    let body = serde_json::json!({
        "websocket": server.options.websocket,
        "origins": ["*:*"],
        "cookie_needed": server.options.cookie_needed,
        "entropy": rand::random::<u32>(),
    });
    let mut builder = HttpResponse::Ok();
    cors(&mut builder, req);
    builder
        .insert_header((header::CACHE_CONTROL, NO_CACHE))
        .content_type("application/json; charset=UTF-8")
        .body(body.to_string())
}

/// sockjs-node answers 304 only to its exact ETag, with the caching headers
/// and neither the ETag nor a body.
pub(super) fn iframe(page: &IframePage, req: &HttpRequest) -> HttpResponse {
    let mut builder = HttpResponse::Ok();
    if header_str(req, header::IF_NONE_MATCH) == Some(page.etag.as_str()) {
        cache_for_a_year(&mut builder);
        return builder.status(StatusCode::NOT_MODIFIED).finish();
    }
    builder
        .content_type("text/html; charset=UTF-8")
        .insert_header((header::ETAG, page.etag.as_str()));
    cache_for_a_year(&mut builder);
    builder.body(page.body.clone())
}

/// Reads and drops a (small) request body that nobody wants, so that the
/// connection can serve the next request, as Node's does.
pub(super) async fn drain(mut body: web::Payload) {
    let mut seen = 0usize;
    while let Some(Ok(chunk)) = body.next().await {
        seen += chunk.len();
        if seen > 64 * 1024 {
            break;
        }
    }
}

/// `chunking_test`: `h`, 2 KiB of spaces and `h`, then `h` after 5, 25,
/// 125, 625 and 3125 ms, each its own chunk (the request body is read and
/// ignored, as sockjs-node does).
pub(super) async fn chunking_test(req: &HttpRequest, body: web::Payload) -> HttpResponse {
    // The body is read first, as expect_xhr does.
    drain(body).await;
    let (tx, rx) = mpsc::channel(BODY_CHUNKS);
    actix_web::rt::spawn(async move {
        for (delay_ms, payload) in frame::chunking_test_steps() {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            if tx.send(Bytes::from(payload)).await.is_err() {
                return;
            }
        }
    });
    let mut builder = HttpResponse::Ok();
    cors(&mut builder, req);
    builder
        .content_type(JAVASCRIPT)
        .streaming(ChannelBody::new(rx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iframe_page_quotes_the_client_url_and_has_a_stable_etag() {
        let page = IframePage::new(r#"https://cdn.test/s.js?a=1&b="x"<"#);
        assert!(page.body.contains(
            r#"<script src="https://cdn.test/s.js?a=1&amp;b=&quot;x&quot;&lt;"></script>"#
        ));
        assert_eq!(
            page.etag,
            IframePage::new(r#"https://cdn.test/s.js?a=1&b="x"<"#).etag
        );
        assert_ne!(page.etag, IframePage::new("/other.js").etag);
        assert!(page.etag.starts_with('"') && page.etag.ends_with('"'));
    }

    #[test]
    fn the_default_iframe_page_is_sockjs_node_s_with_its_etag() {
        let page =
            IframePage::new("https://cdn.jsdelivr.net/npm/sockjs-client@1/dist/sockjs.min.js");
        // The MD5 sockjs-node 0.3.24 gives the same page.
        assert_eq!(page.etag, "\"08c88a6396a2481f245d665a53d9dc14\"");
        assert!(page.body.contains("    SockJS.bootstrap_iframe();\n"));
    }
}
