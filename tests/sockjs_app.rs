//! What an application sees through the SockJS layer: open with the right
//! session info, messages in order (a failing one costing only itself),
//! exactly one close whichever way the session ends, and a full outbound
//! queue closing the session. A recording app on 127.0.0.1 port 0.

mod sockjs_common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sigway_sockjs::testing::BackgroundServer;
use sigway_sockjs::{Options, Refusal, Server, SessionInfo, SessionLink, SockjsApp, SockjsSession};
use sockjs_common::*;
use tokio_tungstenite::tungstenite::Message;

/// Records every callback; echoes messages, after a short await so that
/// ordering is tested against an app that yields; panics on "boom";
/// on open sends `flood` messages (to overflow the queue when asked).
/// Admission takes `admit_delay` and refuses with `refuse` when set.
#[derive(Clone, Default)]
struct RecordingApp {
    events: Arc<Mutex<Vec<String>>>,
    flood: usize,
    admit_delay: Duration,
    refuse: Option<Refusal>,
}

struct RecordingSession {
    link: SessionLink,
    events: Arc<Mutex<Vec<String>>>,
}

impl RecordingApp {
    fn events(&self) -> Vec<String> {
        self.events.lock().expect("lock").clone()
    }

    fn record(events: &Mutex<Vec<String>>, event: String) {
        events.lock().expect("lock").push(event);
    }
}

impl SockjsApp for RecordingApp {
    type Ticket = ();
    type Session = RecordingSession;
    async fn admit(&self, info: &SessionInfo) -> Result<(), Refusal> {
        tokio::time::sleep(self.admit_delay).await;
        Self::record(&self.events, format!("admit {}", info.transport));
        match &self.refuse {
            Some(refusal) => Err(refusal.clone()),
            None => Ok(()),
        }
    }
    fn open(&self, link: SessionLink, info: SessionInfo, (): ()) -> RecordingSession {
        Self::record(
            &self.events,
            format!("open {} {}", info.transport, info.remote.is_some()),
        );
        for i in 0..self.flood {
            let _ = link.send(format!("flood {i}").into());
        }
        RecordingSession {
            link,
            events: self.events.clone(),
        }
    }
}

impl SockjsSession for RecordingSession {
    async fn on_message(&mut self, text: String) {
        tokio::time::sleep(Duration::from_millis(2)).await;
        if text == "boom" {
            panic!("the app fails on this message");
        }
        if text == "burst" {
            // Big messages at a pace the layer can drain, until a send fails.
            let chunk = "x".repeat(64 * 1024);
            for _ in 0..2000 {
                if self.link.send(chunk.clone().into()).is_err() {
                    RecordingApp::record(&self.events, "send refused".into());
                    return;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            return;
        }
        RecordingApp::record(&self.events, format!("message {text}"));
        let _ = self.link.send(text.into());
    }
    async fn on_close(&mut self) {
        RecordingApp::record(&self.events, "close".into());
    }
}

fn serve(app: RecordingApp, options: Options) -> BackgroundServer {
    let endpoint = Server::new(
        Options {
            prefix: "/app".into(),
            ..options
        },
        app,
        tokio::sync::watch::channel(false).1,
    );
    BackgroundServer::serve("127.0.0.1", 0, move |cfg| endpoint.configure(cfg))
        .expect("server starts")
}

fn session(server: &BackgroundServer) -> String {
    server.http_url(&format!("/app/000/{:016x}", rand_id()))
}

async fn wait_for(app: &RecordingApp, event: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !app.events().iter().any(|e| e == event) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {event:?} in {:?}",
            app.events()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn messages_reach_the_app_in_order_and_a_failing_one_costs_only_itself() {
    let app = RecordingApp::default();
    let server = serve(app.clone(), options());
    let url = session(&server);
    assert_eq!(post_text(&format!("{url}/xhr"), "").await.1, "o\n");
    let batch: Vec<String> = (0..20)
        .map(|i| i.to_string())
        .chain(["boom".into(), "last".into()])
        .collect();
    let body = serde_json::to_string(&batch).expect("json");
    assert_eq!(post_text(&format!("{url}/xhr_send"), &body).await.0, 204);
    wait_for(&app, "message last").await;
    let messages: Vec<String> = app
        .events()
        .into_iter()
        .filter(|e| e.starts_with("message "))
        .collect();
    let expected: Vec<String> = batch
        .iter()
        .filter(|m| *m != "boom")
        .map(|m| format!("message {m}"))
        .collect();
    assert_eq!(messages, expected);
    assert_eq!(
        app.events()[..2],
        ["admit xhr-polling", "open xhr-polling true"]
    );
    // The session still works after the failure.
    assert_eq!(
        post_text(&format!("{url}/xhr_send"), r#"["again"]"#)
            .await
            .0,
        204
    );
    wait_for(&app, "message again").await;
}

#[tokio::test]
async fn a_timed_out_session_is_closed_once_for_the_app() {
    let app = RecordingApp::default();
    let server = serve(
        app.clone(),
        Options {
            disconnect_delay: Duration::from_millis(200),
            ..options()
        },
    );
    let url = session(&server);
    assert_eq!(post_text(&format!("{url}/xhr"), "").await.1, "o\n");
    wait_for(&app, "close").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.events().iter().filter(|e| *e == "close").count(), 1);
}

#[tokio::test]
async fn closing_the_websocket_closes_the_app_session() {
    let app = RecordingApp::default();
    let server = serve(app.clone(), options());
    let url = server.ws_url(&format!("/app/000/{:016x}/websocket", rand_id()));
    let (mut ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("in time")
        .expect("handshake");
    let open = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("in time");
    assert!(matches!(open, Some(Ok(Message::Text(ref t))) if t.as_str() == "o"));
    ws.send(Message::text(r#"["hi"]"#)).await.expect("send");
    wait_for(&app, "message hi").await;
    ws.close(None).await.expect("close");
    wait_for(&app, "close").await;
    assert_eq!(
        app.events()[..2],
        ["admit websocket", "open websocket true"]
    );
}

#[tokio::test]
async fn admission_is_awaited_before_any_message_of_the_session_runs() {
    let app = RecordingApp {
        admit_delay: Duration::from_secs(1),
        ..RecordingApp::default()
    };
    let server = serve(app.clone(), options());
    let url = session(&server);
    assert_eq!(post_text(&format!("{url}/xhr"), "").await.1, "o\n");
    assert!(app.events().is_empty(), "admission still running");
    // The send answers once the app handled the message, after admission.
    assert_eq!(
        post_text(&format!("{url}/xhr_send"), r#"["early"]"#)
            .await
            .0,
        204
    );
    assert_eq!(
        app.events(),
        [
            "admit xhr-polling",
            "open xhr-polling true",
            "message early"
        ]
    );
    assert_eq!(
        post_text(&format!("{url}/xhr"), "").await.1,
        "a[\"early\"]\n"
    );
}

#[tokio::test]
async fn a_refused_session_gets_the_refusal_after_its_open_frame_and_runs_nothing() {
    let app = RecordingApp {
        refuse: Some(Refusal::new(1013, "Too many connections")),
        ..RecordingApp::default()
    };
    let server = serve(app.clone(), options());
    let url = session(&server);
    assert_eq!(post_text(&format!("{url}/xhr"), "").await.1, "o\n");
    assert_eq!(
        post_text(&format!("{url}/xhr_send"), r#"["ignored"]"#)
            .await
            .0,
        204
    );
    assert_eq!(
        post_text(&format!("{url}/xhr"), "").await.1,
        "c[1013,\"Too many connections\"]\n"
    );

    let ws_url = server.ws_url(&format!("/app/000/{:016x}/websocket", rand_id()));
    let (mut ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(ws_url))
        .await
        .expect("in time")
        .expect("handshake");
    let mut texts = Vec::new();
    while texts.len() < 2 {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("in time")
        {
            Some(Ok(Message::Text(text))) => texts.push(text.to_string()),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
    assert_eq!(texts, ["o", "c[1013,\"Too many connections\"]"]);
    assert_eq!(app.events(), ["admit xhr-polling", "admit websocket"]);
}

#[tokio::test]
async fn a_full_outbound_queue_closes_the_session() {
    let app = RecordingApp {
        flood: 10,
        ..RecordingApp::default()
    };
    let server = serve(
        app.clone(),
        Options {
            outbound_queue: 4,
            ..options()
        },
    );
    let url = session(&server);
    assert_eq!(post_text(&format!("{url}/xhr"), "").await.1, "o\n");
    let (_, body) = post_text(&format!("{url}/xhr"), "").await;
    assert!(body.starts_with("c[1013,"), "{body}");
    wait_for(&app, "close").await;

    let ws_url = server.ws_url(&format!("/app/000/{:016x}/websocket", rand_id()));
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url)
        .await
        .expect("handshake");
    let mut frames = Vec::new();
    while let Ok(Some(Ok(Message::Text(text)))) = tokio::time::timeout(WAIT, ws.next()).await {
        frames.push(text.to_string());
    }
    assert_eq!(frames.first().map(String::as_str), Some("o"));
    assert!(
        frames.last().is_some_and(|f| f.starts_with("c[1013,")),
        "{frames:?}"
    );
}

#[tokio::test]
async fn a_queue_holding_more_bytes_than_its_bound_closes_the_session() {
    // Ten messages of 7 or 8 bytes: far from the bound in messages, past
    // the bound in bytes.
    let app = RecordingApp {
        flood: 10,
        ..RecordingApp::default()
    };
    let server = serve(
        app.clone(),
        Options {
            outbound_queue: 100,
            outbound_queue_bytes: 40,
            ..options()
        },
    );
    let url = session(&server);
    assert_eq!(post_text(&format!("{url}/xhr"), "").await.1, "o\n");
    let (_, body) = post_text(&format!("{url}/xhr"), "").await;
    assert!(body.starts_with("c[1013,"), "{body}");
    wait_for(&app, "close").await;

    let ws_url = server.ws_url(&format!("/app/000/{:016x}/websocket", rand_id()));
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url)
        .await
        .expect("handshake");
    let mut frames = Vec::new();
    while let Ok(Some(Ok(Message::Text(text)))) = tokio::time::timeout(WAIT, ws.next()).await {
        frames.push(text.to_string());
    }
    assert_eq!(frames.first().map(String::as_str), Some("o"));
    assert!(
        frames.last().is_some_and(|f| f.starts_with("c[1013,")),
        "{frames:?}"
    );
}

#[tokio::test]
async fn sessions_close_with_1001_when_the_server_shuts_down() {
    let app = RecordingApp::default();
    let (shutdown, signal) = tokio::sync::watch::channel(false);
    let endpoint = Server::new(
        Options {
            prefix: "/app".into(),
            ..options()
        },
        app.clone(),
        signal,
    );
    let mounted = endpoint.clone();
    let server = BackgroundServer::serve("127.0.0.1", 0, move |cfg| mounted.configure(cfg))
        .expect("server starts");

    let url = session(&server);
    let (_, mut stream) = open_streaming(&url).await;
    assert_eq!(stream.read_until("\n").await, "o\n");
    let ws_url = server.ws_url(&format!("/app/000/{:016x}/websocket", rand_id()));
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url)
        .await
        .expect("handshake");
    let open = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("in time");
    assert!(matches!(open, Some(Ok(Message::Text(ref t))) if t.as_str() == "o"));

    shutdown.send(true).expect("signal");
    assert_eq!(
        stream.read_until("\n").await,
        "c[1001,\"server shutting down\"]\n"
    );
    assert!(stream.ends().await);
    let frame = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("in time");
    assert!(
        matches!(frame, Some(Ok(Message::Text(ref t))) if t.as_str() == r#"c[1001,"server shutting down"]"#),
        "{frame:?}"
    );
    let close = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("in time");
    assert!(
        // The `c` frame says why; the WebSocket closes normally after it,
        // as sockjs-node's framed receiver does.
        matches!(close, Some(Ok(Message::Close(Some(ref f)))) if u16::from(f.code) == 1000),
        "{close:?}"
    );
}

#[tokio::test]
async fn a_websocket_client_that_stops_reading_is_closed_when_its_queue_fills() {
    let app = RecordingApp::default();
    let server = serve(
        app.clone(),
        Options {
            outbound_queue: 4,
            ..options()
        },
    );
    let url = server.ws_url(&format!("/app/000/{:016x}/websocket", rand_id()));
    let (mut ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("in time")
        .expect("handshake");
    // Never read: socket buffers fill, then the app's queue.
    ws.send(Message::text(r#"["burst"]"#)).await.expect("send");
    wait_for(&app, "send refused").await;
    wait_for(&app, "close").await;
}

#[tokio::test]
async fn a_streaming_client_that_stops_reading_is_closed_when_its_queue_fills() {
    use tokio::io::AsyncWriteExt;
    let app = RecordingApp::default();
    let server = serve(
        app.clone(),
        Options {
            outbound_queue: 4,
            response_limit: usize::MAX,
            ..options()
        },
    );
    let id = format!("{:016x}", rand_id());
    let mut stream = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let request = format!(
        "POST /app/000/{id}/xhr_streaming HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    // Never read the response.
    wait_for(&app, "open xhr-streaming true").await;
    let url = server.http_url(&format!("/app/000/{id}"));
    assert_eq!(
        post_text(&format!("{url}/xhr_send"), r#"["burst"]"#)
            .await
            .0,
        204
    );
    wait_for(&app, "send refused").await;
    wait_for(&app, "close").await;
    drop(stream);
}
