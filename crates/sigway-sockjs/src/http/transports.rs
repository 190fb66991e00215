//! What each session transport answers: the headers in sockjs-node's
//! filter order, then a send endpoint or a receiver with the transport's
//! wrapping (newline, eventsource, htmlfile, jsonp), streaming or polling.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use super::receiver::open_receiver;
use super::send::receive_messages;
use super::{
    JAVASCRIPT, NO_CACHE, TEXT, cookie, cors, eventsource_cors, header_str, not_found, refuse,
    set_cookie,
};
use crate::app::SockjsApp;
use crate::frame::{self, Wrapping};
use crate::route::Transport;
use crate::server::Server;

/// The values of the query parameter `c`, else of `callback` (sockjs-node
/// reads `c` when present at all).
fn callback_values(req: &HttpRequest) -> Vec<String> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(req.query_string()).unwrap_or_default();
    for name in ["c", "callback"] {
        let values: Vec<String> = pairs
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect();
        if !values.is_empty() {
            return values;
        }
    }
    Vec::new()
}

pub(super) async fn transport_response<A: SockjsApp>(
    server: &Arc<Server<A>>,
    req: &HttpRequest,
    session_id: &str,
    transport: Transport,
    body: web::Payload,
) -> HttpResponse {
    // Headers in sockjs-node's filter order: h_sid, h_no_cache, then CORS
    // for the xhr transports.
    let mut builder = HttpResponse::Ok();
    set_cookie(&mut builder, cookie(server, req));
    builder.insert_header((header::CACHE_CONTROL, NO_CACHE));
    let content_type = header_str(req, header::CONTENT_TYPE).map(str::to_owned);
    match transport {
        Transport::XhrSend => {
            cors(&mut builder, req);
            let parse = |bytes: &[u8]| frame::parse_xhr_send(content_type.as_deref(), bytes);
            match receive_messages(server, req, session_id, body, parse).await {
                Ok(()) => builder
                    .status(StatusCode::NO_CONTENT)
                    .content_type(TEXT)
                    .finish(),
                Err(error) => refuse(&error, builder),
            }
        }
        Transport::JsonpSend => {
            let parse = |bytes: &[u8]| frame::parse_jsonp_send(content_type.as_deref(), bytes);
            match receive_messages(server, req, session_id, body, parse).await {
                Ok(()) => builder.content_type(TEXT).body("ok"),
                Err(error) => refuse(&error, builder),
            }
        }
        Transport::Xhr | Transport::XhrStreaming => {
            cors(&mut builder, req);
            let streaming = transport == Transport::XhrStreaming;
            let prelude = streaming.then(frame::xhr_streaming_prelude);
            let mut body = open_receiver(
                server,
                req,
                session_id,
                transport,
                Wrapping::Newline,
                streaming,
                prelude,
            );
            if !streaming {
                body.wait_first().await;
            }
            builder.content_type(JAVASCRIPT).streaming(body)
        }
        Transport::EventSource => {
            builder.content_type("text/event-stream");
            eventsource_cors(&mut builder, req);
            let body = open_receiver(
                server,
                req,
                session_id,
                transport,
                Wrapping::EventSource,
                true,
                Some("\r\n".into()),
            );
            builder.streaming(body)
        }
        Transport::HtmlFile | Transport::Jsonp => {
            let max_len = (transport == Transport::Jsonp).then_some(frame::MAX_JSONP_CALLBACK_LEN);
            let values = callback_values(req);
            let callback = match frame::validate_callback(&values, max_len) {
                Ok(callback) => callback.to_owned(),
                Err(error) => {
                    tracing::debug!(session = session_id, "sockjs {}: {error}", transport.name());
                    return refuse(&error, builder);
                }
            };
            if transport == Transport::HtmlFile {
                let prelude = frame::htmlfile_prelude(&callback);
                let body = open_receiver(
                    server,
                    req,
                    session_id,
                    transport,
                    Wrapping::HtmlFile,
                    true,
                    Some(prelude),
                );
                builder
                    .content_type("text/html; charset=UTF-8")
                    .streaming(body)
            } else {
                let mut body = open_receiver(
                    server,
                    req,
                    session_id,
                    transport,
                    Wrapping::Jsonp(callback),
                    false,
                    None,
                );
                body.wait_first().await;
                builder
                    .insert_header(("X-Content-Type-Options", "nosniff"))
                    .content_type(JAVASCRIPT)
                    .streaming(body)
            }
        }
        Transport::Websocket => not_found(),
    }
}
