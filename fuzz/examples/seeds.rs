//! Writes the seed corpus of the byte-level fuzz targets to
//! `fuzz/corpus/<target>/`: real frames of both sigver dialects (as
//! Netflux clients send them), cluster snapshots of groups in several
//! states, videre packets as videre-client sends them, SockJS send bodies,
//! framed WebSocket payloads and URLs as sockjs-client makes them, and the
//! two settings files of `config/`. The seeds are committed; this program
//! is how they were made (`cd fuzz && cargo run --example seeds`), so that
//! they can be made again when a format changes. The targets driven by
//! `arbitrary` event sequences (`sigver_rules`, `legacy_rules`,
//! `videre_rooms`) have no hand-made seeds: theirs are inputs the fuzzer
//! found, minimised (see fuzz/README.md).

use std::path::{Path, PathBuf};

use bytes::Bytes;
use prost::Message as _;
use sigway_core::proto::legacy as legacy_wire;
use sigway_core::proto::sigver as wire;
use sigway_core::sigver::ids::GroupIds;
use sigway_core::sigver::legacy::state::LegacyGroupState;
use sigway_core::sigver::snapshot::Snapshot;
use sigway_core::sigver::state::{ContentIn, GroupLimits, GroupState};

struct Seeds {
    root: PathBuf,
}

impl Seeds {
    fn write(&self, target: &str, name: &str, bytes: impl AsRef<[u8]>) {
        let dir = self.root.join(target);
        if let Err(error) = std::fs::create_dir_all(&dir) {
            panic!("cannot create {}: {error}", dir.display());
        }
        let path = dir.join(name);
        if let Err(error) = std::fs::write(&path, bytes) {
            panic!("cannot write {}: {error}", path.display());
        }
    }

    /// A seed of a target whose first byte chooses a variant.
    fn write_with(&self, target: &str, name: &str, choice: u8, bytes: impl AsRef<[u8]>) {
        let mut seed = vec![choice];
        seed.extend_from_slice(bytes.as_ref());
        self.write(target, name, seed);
    }
}

fn current(r#type: wire::message::Type) -> Vec<u8> {
    wire::Message {
        r#type: Some(r#type),
    }
    .encode_to_vec()
}

fn legacy(r#type: legacy_wire::message::Type) -> Vec<u8> {
    legacy_wire::Message {
        r#type: Some(r#type),
    }
    .encode_to_vec()
}

const SDP: &[u8] = br#"{"type":"offer","sdp":"v=0\r\no=- 4611 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"}"#;

fn sigver_frames(seeds: &Seeds) {
    use wire::message::Type;
    let t = "sigver_decode";
    seeds.write(t, "heartbeat", current(Type::Heartbeat(true)));
    seeds.write(
        t,
        "connect_alone",
        current(Type::Connect(wire::GroupData {
            id: 17,
            members: vec![],
        })),
    );
    seeds.write(
        t,
        "connect_with_view",
        current(Type::Connect(wire::GroupData {
            id: 3,
            members: vec![1, 2, 3, 88_000_000],
        })),
    );
    let offer = wire::Content {
        sender_id: 0,
        recipient_id: 0,
        last_data: false,
        data: Bytes::from_static(SDP),
    };
    seeds.write(t, "content_up", current(Type::Content(offer)));
    let down = wire::Content {
        sender_id: 0,
        recipient_id: 123_456,
        last_data: true,
        data: Bytes::from_static(b"candidate"),
    };
    seeds.write(t, "content_down_last", current(Type::Content(down)));
    seeds.write(t, "connected", current(Type::Connected(true)));
    seeds.write(
        t,
        "relayed",
        sigway_core::sigver::codec::content(5, 0, Bytes::from_static(b"answer")),
    );
    // A frame holding both a heartbeat and a content (sigver 20 relayed it).
    let mut both = current(Type::Heartbeat(true));
    both.extend(current(Type::Content(wire::Content {
        data: Bytes::from_static(b"x"),
        ..Default::default()
    })));
    seeds.write(t, "heartbeat_and_content", both);
    seeds.write(t, "group_nested", [0x0b, 0x0b, 0x0c, 0x0c, 0x08, 0x01]);
}

fn legacy_frames(seeds: &Seeds) {
    use legacy_wire::content::Type as Payload;
    use legacy_wire::message::Type;
    let t = "legacy_decode";
    seeds.write(t, "stable", legacy(Type::Stable(true)));
    seeds.write(t, "try_another", legacy(Type::TryAnother(true)));
    seeds.write(t, "heartbeat", legacy(Type::Heartbeat(true)));
    seeds.write(t, "is_first", legacy(Type::IsFirst(false)));
    let content = |id, payload| {
        legacy(Type::Content(legacy_wire::Content {
            id,
            r#type: Some(payload),
        }))
    };
    seeds.write(
        t,
        "content_data",
        content(0, Payload::Data(Bytes::from_static(SDP))),
    );
    seeds.write(t, "content_end", content(42, Payload::IsEnd(true)));
    seeds.write(t, "content_error", content(42, Payload::IsError(true)));
    seeds.write(
        t,
        "content_untyped",
        legacy(Type::Content(legacy_wire::Content {
            id: 9,
            r#type: None,
        })),
    );
}

/// Snapshots of groups after a few events, for the restore target (first
/// byte: even = current dialect, odd = legacy; the rest picks the limit).
fn snapshots(seeds: &Seeds) {
    let t = "sigver_snapshot";
    let address = |&peer: &u64| (1u32, peer);
    let mut ids = GroupIds::default();
    let mut out = Vec::new();
    let mut group = GroupState::<u64>::new(GroupLimits::default());
    seeds.write_with(t, "current_empty", 0, group.snapshot(&ids, address));
    for peer in 1..=4 {
        group.attach(peer, peer == 2);
    }
    group.connect(1, 100, &[], &mut ids, &mut out);
    group.connect(2, 200, &[], &mut ids, &mut out);
    group.connect(3, 300, &[100], &mut ids, &mut out);
    let content = ContentIn {
        sender_id: 0,
        recipient_id: 0,
        last_data: true,
        data: Bytes::from_static(b"o"),
    };
    group.content(2, content, &mut out);
    seeds.write_with(t, "current_group", 0, group.snapshot(&ids, address));
    group.leave(1, &mut ids, &mut out);
    seeds.write_with(t, "current_after_leave", 2, group.snapshot(&ids, address));

    let mut ids = GroupIds::default();
    let mut out = Vec::new();
    let mut group = LegacyGroupState::<u64>::new(GroupLimits::default());
    for peer in 1..=4 {
        group.attach(peer, &mut ids, &mut out);
    }
    group.stable(2, &mut ids, &mut out);
    group.try_another(3, &mut ids, &mut out);
    seeds.write_with(t, "legacy_group", 1, group.snapshot(&ids, address));
    group.leave(1, &mut ids, &mut out);
    seeds.write_with(t, "legacy_after_leave", 3, group.snapshot(&ids, address));
}

fn packet(event: &str, user: &str, room: &str, payload: serde_json::Value) -> String {
    serde_json::json!({"Header": {"Event": event, "UserId": user, "RoomId": room}, "Payload": payload})
        .to_string()
}

fn videre_packets(seeds: &Seeds) {
    let t = "videre_packet";
    seeds.write(
        t,
        "connect",
        packet("connect", "alice", "room-1", "".into()),
    );
    let sdp = String::from_utf8_lossy(SDP).into_owned();
    seeds.write(
        t,
        "broadcast_offer",
        packet("broadcast", "alice", "room-1", sdp.into()),
    );
    seeds.write(
        t,
        "ping",
        packet("ping", "bob", "room-1", serde_json::Value::Null),
    );
    seeds.write(
        t,
        "disconnect",
        packet("disconnect", "bob", "room-1", "".into()),
    );
    seeds.write(
        t,
        "no_payload",
        r#"{"Header":{"Event":"connect","UserId":"u","RoomId":"r"}}"#,
    );
    seeds.write(
        t,
        "extra_fields",
        r#"{ "Payload" : 1, "Header":{"RoomId":"r","Event":"ping","UserId":"u","X":[1]}, "Z":{} }"#,
    );
    seeds.write(t, "not_a_packet", r#"[1,2,3]"#);
}

fn sockjs(seeds: &Seeds) {
    // CONTENT_TYPES in fuzz/src/lib.rs: 0 none, 1 text/plain, 3 form.
    let batch = serde_json::to_string(&[
        packet("connect", "alice", "r", "".into()),
        "%E0%A4%A 50% off \u{2028} </script> \u{1F600}".into(),
    ])
    .unwrap_or_default();
    let t = "sockjs_xhr_send";
    seeds.write_with(t, "batch", 1, &batch);
    seeds.write_with(t, "empty_array", 0, "[]");
    seeds.write_with(
        t,
        "lone_surrogate",
        2,
        r#"["\ud800x","\udc00","\ud83d\ude00"]"#,
    );
    seeds.write_with(t, "non_strings", 2, r#"[1,{"a":null},[true]]"#);

    let t = "sockjs_jsonp_send";
    let form = serde_urlencoded::to_string([("d", batch.as_str())]).unwrap_or_default();
    seeds.write_with(t, "form", 3, &form);
    seeds.write_with(t, "form_two_d", 3, "d=a&d=b&x=1");
    seeds.write_with(t, "raw", 1, &batch);
    seeds.write_with(
        t,
        "raw_string",
        1,
        serde_json::to_string(&batch).unwrap_or_default(),
    );

    let t = "sockjs_websocket_payload";
    seeds.write(t, "batch", &batch);
    seeds.write(t, "single", r#""hello""#);
    seeds.write(t, "number", "42");
    seeds.write(t, "escapes", r#"["\u0000\\\"\ud800\udbff\udfff"]"#);

    // METHODS in sockjs_route.rs: 0 GET, 1 POST, 2 OPTIONS.
    let t = "sockjs_route";
    for (name, method, path) in [
        ("greeting", 0, ""),
        ("info", 0, "/info"),
        ("info_options", 2, "/info"),
        ("iframe", 0, "/iframe-1.6.1.html"),
        ("raw_websocket", 0, "/websocket"),
        ("framed_websocket", 0, "/123/abcdefgh/websocket"),
        ("xhr", 1, "/123/abcdefgh/xhr"),
        ("xhr_send_preflight", 2, "/123/abcdefgh/xhr_send/"),
        ("jsonp", 0, "/123/abcdefgh/jsonp"),
        ("chunking", 1, "/chunking_test"),
        ("wrong_method", 0, "/1/2/xhr_streaming"),
    ] {
        seeds.write_with(t, name, method, path);
    }
}

fn settings(seeds: &Seeds, repo: &Path) {
    let t = "settings";
    for (name, choice, file) in [
        ("default_toml", 0, "config/default.toml"),
        ("conf_json", 1, "config/conf.json"),
    ] {
        let path = repo.join(file);
        match std::fs::read(&path) {
            Ok(text) => seeds.write_with(t, name, choice, text),
            Err(error) => panic!("cannot read {}: {error}", path.display()),
        }
    }
    seeds.write_with(t, "layered", 0, "port = 9000\n[sigver]\nprotocol = \"legacy\"\n[cluster]\nredis_url = \"redis://127.0.0.1:1\"\n");
}

fn main() {
    let fuzz_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let seeds = Seeds {
        root: fuzz_dir.join("corpus"),
    };
    sigver_frames(&seeds);
    legacy_frames(&seeds);
    snapshots(&seeds);
    videre_packets(&seeds);
    sockjs(&seeds);
    settings(&seeds, fuzz_dir.parent().unwrap_or(fuzz_dir));
    println!("seeds written to {}", seeds.root.display());
}
