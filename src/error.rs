//! The gateway's side of errors: turning the protocols' [`Close`]s into
//! WebSocket close frames. The protocol errors themselves (and which close
//! each one means) are plain data in `sigway_core::error`, re-exported
//! here; the SockJS layer's errors live in `sigway_sockjs`.

pub(crate) use sigway_core::error::*;

/// The close frame actix-ws sends for `close` (it trims the reason to what
/// a control frame holds).
pub(crate) fn ws_close(close: &Close) -> actix_ws::CloseReason {
    sigway_sockjs::ws::close_reason(close.code, &close.reason)
}
