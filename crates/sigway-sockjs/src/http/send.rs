//! xhr_send and jsonp_send: a request body of messages, read within the
//! size limit, parsed and handed to the session's app in order.

use actix_web::http::header;
use actix_web::{HttpRequest, web};
use bytes::BytesMut;
use futures_util::StreamExt as _;

use super::header_str;
use crate::app::SockjsApp;
use crate::error::SockjsError;
use crate::server::Server;

/// Reads a request body of at most `limit` bytes.
async fn read_body(
    req: &HttpRequest,
    mut body: web::Payload,
    limit: usize,
) -> Result<BytesMut, SockjsError> {
    let declared = header_str(req, header::CONTENT_LENGTH).and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(SockjsError::PayloadTooLarge(limit));
    }
    let mut bytes = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|_| SockjsError::PayloadExpected)?;
        if bytes.len() + chunk.len() > limit {
            return Err(SockjsError::PayloadTooLarge(limit));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// xhr_send / jsonp_send: decodes the messages with `parse`, hands them, in
/// order, to the session's app and waits until the app has handled them
/// (sockjs-node runs the app's handlers before it answers, so what they
/// send is queued by then).
pub(super) async fn receive_messages<A: SockjsApp>(
    server: &Server<A>,
    req: &HttpRequest,
    session_id: &str,
    body: web::Payload,
    parse: impl FnOnce(&[u8]) -> Result<Vec<String>, SockjsError>,
) -> Result<(), SockjsError> {
    let result = async {
        let bytes = read_body(req, body, server.options.max_message_bytes).await?;
        let messages = parse(&bytes)?;
        let session = server
            .registry
            .get(session_id)
            .ok_or(SockjsError::SessionNotFound)?;
        if session.is_closed() {
            return Ok(());
        }
        session.app.deliver_all(messages).await;
        Ok(())
    }
    .await;
    match &result {
        // A limit: worth seeing at the default level.
        Err(error @ SockjsError::PayloadTooLarge(_)) => {
            tracing::info!(session = session_id, "sockjs send refused: {error}")
        }
        Err(error) => tracing::debug!(session = session_id, "sockjs send refused: {error}"),
        Ok(()) => {}
    }
    result
}
