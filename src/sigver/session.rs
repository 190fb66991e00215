//! A sigver WebSocket session.

use actix_web::{HttpRequest, HttpResponse, web};

use crate::server::Shared;

pub async fn entry(
    req: HttpRequest,
    body: web::Payload,
    _shared: web::Data<Shared>,
) -> actix_web::Result<HttpResponse> {
    let (res, _session, _stream) = actix_ws::handle(&req, body)?;
    Ok(res)
}
