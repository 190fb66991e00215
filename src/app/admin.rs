//! The admin API (README "Admin API"): JSON under `/admin/` to look at
//! this node's rooms and sessions, close a peer or a room with a chosen
//! code, start a drain and read the effective settings, secrets redacted.
//!
//! It is served on its own listener (`admin.listen`, never the public
//! port) and, when `admin.token` is set, also under `/admin/` on the
//! public port; with a token every call needs `Authorization: Bearer
//! <token>` (compared in constant time; a refusal is 401 and a log line).
//! Rooms answer for themselves ([`Describe`], one message per room, at
//! most `limit` rooms per call); what a room cannot know of its members
//! (address, origin, transport, queue depth) comes from the sessions'
//! registry ([`crate::rooms::peers`]). In cluster mode the answers cover this
//! node only and say which node that is.

use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::{Next, from_fn};
use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};
use sigway_core::redact::key_hash;
use subtle::ConstantTimeEq;

use crate::config::Settings;
use crate::rooms::peers::{is_operator_close_code, parse_member_id};
use crate::rooms::{Describe, ListedRoom, MemberId, RoomSummary};
use crate::services::Services;

/// Rooms one `GET /admin/rooms` lists when no `limit` is given, and the
/// most it lists whatever the `limit`.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;
/// How long a room has to describe itself (a busy room answers after the
/// messages queued before the question).
const DESCRIBE_WAIT: Duration = Duration::from_secs(2);

/// The bearer token the admin API asks for, when one is set.
#[derive(Clone)]
pub(super) struct AdminToken(Option<String>);

impl AdminToken {
    pub(super) fn of(settings: &Settings) -> Self {
        let token = &settings.admin.token;
        Self((!token.is_empty()).then(|| token.expose().to_owned()))
    }
}

/// Whether `header` (an `Authorization` value) carries `token`, compared
/// in constant time.
fn bearer_matches(header: Option<&[u8]>, token: &str) -> bool {
    let presented = header
        .and_then(|value| value.strip_prefix(b"Bearer "))
        .unwrap_or(b"");
    // Time tells at most the token's length, never how much of it matched.
    bool::from(presented.ct_eq(token.as_bytes()))
}

/// Refuses a call without the token (401, logged with the client).
async fn require_token(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> actix_web::Result<ServiceResponse<BoxBody>> {
    let token = req
        .app_data::<web::Data<AdminToken>>()
        .and_then(|token| token.0.clone());
    if let Some(token) = token {
        let header = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .map(|value| value.as_bytes());
        if !bearer_matches(header, &token) {
            tracing::warn!(
                client = ?req.peer_addr(), path = req.path(),
                "admin call refused: missing or wrong bearer token"
            );
            let response = HttpResponse::Unauthorized()
                .insert_header(("WWW-Authenticate", "Bearer"))
                .json(json!({"error": "a bearer token is required"}));
            return Ok(req.into_response(response).map_into_boxed_body());
        }
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

/// Mounts the admin API under `/admin` (behind the token check).
pub(super) fn routes(cfg: &mut web::ServiceConfig, token: AdminToken) {
    cfg.service(
        web::scope("/admin")
            .app_data(web::Data::new(token))
            .wrap(from_fn(require_token))
            .route("/rooms", web::get().to(list_rooms))
            .route("/rooms/{protocol}/{key}", web::get().to(show_room))
            .route("/rooms/{protocol}/{key}/close", web::post().to(close_room))
            .route("/peers/{id}/close", web::post().to(close_peer))
            .route("/drain", web::post().to(drain))
            .route("/settings", web::get().to(settings)),
    );
}

#[derive(Deserialize)]
struct Page {
    limit: Option<usize>,
    cursor: Option<usize>,
}

/// A room key as `/stats` shows keys: `key_hash` unless `log.show_keys`.
fn key_fields(key: &str, show: bool, into: &mut serde_json::Map<String, Value>) {
    if show {
        into.insert("key".into(), key.into());
    }
    into.insert("key_hash".into(), key_hash(key).into());
}

async fn describe(room: &ListedRoom) -> Option<RoomSummary> {
    tokio::time::timeout(DESCRIBE_WAIT, room.room.send(Describe))
        .await
        .ok()?
        .ok()
}

fn room_json(
    room: &ListedRoom,
    summary: &RoomSummary,
    show: bool,
) -> serde_json::Map<String, Value> {
    let mut entry = serde_json::Map::new();
    entry.insert("protocol".into(), room.kind.into());
    key_fields(&room.key, show, &mut entry);
    entry.insert("members".into(), summary.members.len().into());
    entry.insert("age_secs".into(), summary.age.as_secs().into());
    entry.insert("messages".into(), summary.relayed.into());
    entry
}

/// `GET /admin/rooms?limit=&cursor=`: this node's rooms, a page at a time.
async fn list_rooms(services: web::Data<Services>, page: web::Query<Page>) -> HttpResponse {
    let limit = page.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let listed = services.rooms.list(page.cursor.unwrap_or(0), limit);
    let show = services.settings.log.show_keys;
    let mut rooms = Vec::with_capacity(listed.rooms.len());
    for room in &listed.rooms {
        // A room that closed since it was listed is left out.
        if let Some(summary) = describe(room).await {
            rooms.push(Value::Object(room_json(room, &summary, show)));
        }
    }
    HttpResponse::Ok().json(json!({
        "node": services.rooms.node(),
        "scope": "this node",
        "rooms": rooms,
        "next_cursor": listed.next,
    }))
}

fn not_found(what: &str) -> HttpResponse {
    HttpResponse::NotFound().json(json!({ "error": format!("no such {what} on this node") }))
}

fn bad_request(why: &str) -> HttpResponse {
    HttpResponse::BadRequest().json(json!({ "error": why }))
}

/// What a member of a room is, as far as this node knows.
fn member_json(services: &Services, id: MemberId) -> Value {
    match services.peers.get(&id) {
        Some(card) => serde_json::to_value(card.view()).unwrap_or(Value::Null),
        // Connected to another node of the cluster.
        None => json!({ "id": id.to_string(), "node": id.node, "remote": true }),
    }
}

/// `GET /admin/rooms/{protocol}/{key_or_hash}`: one room and its members.
async fn show_room(
    services: web::Data<Services>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (protocol, key) = path.into_inner();
    let Some(room) = services.rooms.find_listed(&protocol, &key) else {
        return not_found("room");
    };
    let Some(summary) = describe(&room).await else {
        return not_found("room");
    };
    let mut body = room_json(&room, &summary, services.settings.log.show_keys);
    let members: Vec<Value> = summary
        .members
        .iter()
        .map(|id| member_json(&services, *id))
        .collect();
    body.insert("members".into(), members.into());
    body.insert("node".into(), services.rooms.node().into());
    HttpResponse::Ok().json(body)
}

/// The body of a close call.
#[derive(Deserialize)]
struct CloseBody {
    code: u16,
    #[serde(default)]
    reason: String,
}

/// The reason is sent in a close frame: at most 123 bytes there.
const MAX_REASON_BYTES: usize = 123;

/// Why a close call is refused, if it is (the 400 answer's text).
fn close_refusal(body: &CloseBody) -> Option<&'static str> {
    if !is_operator_close_code(body.code) {
        return Some("code must be 1000, 1001 or an application code (3000-4999)");
    }
    if body.reason.len() > MAX_REASON_BYTES {
        return Some("reason must fit a close frame (123 bytes)");
    }
    None
}

/// `POST /admin/rooms/{protocol}/{key_or_hash}/close` `{code, reason}`:
/// every member connected to this node is closed with the code.
async fn close_room(
    services: web::Data<Services>,
    path: web::Path<(String, String)>,
    body: web::Json<CloseBody>,
) -> HttpResponse {
    if let Some(why) = close_refusal(&body) {
        return bad_request(why);
    }
    let (protocol, key) = path.into_inner();
    let Some(room) = services.rooms.find_listed(&protocol, &key) else {
        return not_found("room");
    };
    let Some(summary) = describe(&room).await else {
        return not_found("room");
    };
    let mut closed = Vec::new();
    for id in &summary.members {
        if let Some(card) = services.peers.get(id) {
            card.close(body.code, &body.reason);
            closed.push(id.to_string());
        }
    }
    tracing::info!(
        protocol, room = %key_hash(&room.key), code = body.code, closed = closed.len(),
        "admin: room closed"
    );
    HttpResponse::Ok().json(json!({ "closed": closed, "node": services.rooms.node() }))
}

/// `POST /admin/peers/{id}/close` `{code, reason}`.
async fn close_peer(
    services: web::Data<Services>,
    path: web::Path<String>,
    body: web::Json<CloseBody>,
) -> HttpResponse {
    if let Some(why) = close_refusal(&body) {
        return bad_request(why);
    }
    let Some(id) = parse_member_id(&path) else {
        return bad_request("a peer id is NODE.NUMBER, as the room listing shows it");
    };
    let Some(card) = services.peers.get(&id) else {
        return not_found("peer");
    };
    card.close(body.code, &body.reason);
    tracing::info!(peer = %id, code = body.code, "admin: peer closed");
    HttpResponse::Ok().json(json!({ "closed": id.to_string() }))
}

/// `POST /admin/drain`: starts the drain SIGTERM starts.
async fn drain(services: web::Data<Services>) -> HttpResponse {
    let started = services.drain.start();
    if started {
        tracing::info!("admin: drain requested");
    }
    HttpResponse::build(StatusCode::ACCEPTED).json(json!({
        "draining": true,
        "already": !started,
        "drain_timeout_secs": services.settings.drain_timeout_secs,
    }))
}

/// `GET /admin/settings`: the settings in effect, secrets redacted.
async fn settings(services: web::Data<Services>) -> HttpResponse {
    let current = services.current_settings();
    HttpResponse::Ok().json(redacted(&current))
}

/// What replaces a secret in `GET /admin/settings`.
const REDACTED: &str = "<redacted>";

/// `settings` as JSON with every secret replaced: `auth` secrets, the admin
/// token, any `secret`/`token`/`password` key of any section (`turn.secret`
/// too), and the password of the cluster's Redis URL.
pub(super) fn redacted(settings: &Settings) -> Value {
    let mut value = serde_json::to_value(settings).unwrap_or(Value::Null);
    redact_secrets(&mut value);
    if let Some(url) = value.pointer_mut("/cluster/redis_url")
        && let Some(text) = url.as_str()
    {
        *url = redact_url_password(text).into();
    }
    value
}

fn redact_secrets(value: &mut Value) {
    if let Value::Object(map) = value {
        for (name, field) in map.iter_mut() {
            let secret =
                name.ends_with("secret") || name.ends_with("token") || name.ends_with("password");
            match field {
                Value::String(text) if secret && !text.is_empty() => *field = REDACTED.into(),
                _ => redact_secrets(field),
            }
        }
    }
}

/// `scheme://user:password@host...` with the password (of each host list
/// entry's userinfo) replaced; URLs without one are unchanged.
fn redact_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let Some((userinfo, hosts)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    let userinfo = match userinfo.split_once(':') {
        Some((user, _password)) => format!("{user}:{REDACTED}"),
        // `redis://secret@host`: the one word is the password.
        None => REDACTED.to_owned(),
    };
    format!("{scheme}://{userinfo}@{hosts}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_match_only_exactly() {
        assert!(bearer_matches(Some(b"Bearer s3cret"), "s3cret"));
        for wrong in [
            None,
            Some(&b""[..]),
            Some(b"s3cret"),
            Some(b"Bearer s3cre"),
            Some(b"Bearer s3cret "),
            Some(b"bearer s3cret"),
            Some(b"Basic s3cret"),
        ] {
            assert!(!bearer_matches(wrong, "s3cret"), "{wrong:?}");
        }
    }

    #[test]
    fn redis_passwords_are_redacted_and_the_rest_kept() {
        assert_eq!(
            redact_url_password("redis://user:pw@10.0.0.1:6379/2"),
            "redis://user:<redacted>@10.0.0.1:6379/2"
        );
        assert_eq!(
            redact_url_password("redis+sentinel://:pw@a:1,b:2/master"),
            "redis+sentinel://:<redacted>@a:1,b:2/master"
        );
        assert_eq!(redact_url_password("redis://pw@h"), "redis://<redacted>@h");
        assert_eq!(redact_url_password("redis://h:6379/0"), "redis://h:6379/0");
        assert_eq!(redact_url_password(""), "");
    }

    #[test]
    fn settings_show_no_secret() {
        let mut settings = Settings::default();
        settings.auth.key_secret = "k-secret".into();
        settings.auth.previous_key_secret = "old-secret".into();
        settings.admin.token = "admin-token".into();
        settings.cluster.redis_url = "redis://u:redis-pw@127.0.0.1:6379".into();
        settings.tls.key = Some("/etc/sigway/key.pem".into());
        let shown = redacted(&settings).to_string();
        for secret in ["k-secret", "old-secret", "admin-token", "redis-pw"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("/etc/sigway/key.pem"), "{shown}");
        let value = redacted(&settings);
        assert_eq!(value["auth"]["key_secret"], REDACTED);
        assert_eq!(value["admin"]["token"], REDACTED);
        // An unset secret says so.
        assert_eq!(redacted(&Settings::default())["auth"]["key_secret"], "");
    }
}
