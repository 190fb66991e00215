//! The SockJS layer over real HTTP: static URLs, every HTTP transport, the
//! send endpoints and their errors, session rules (2010, abort, timeout,
//! response limit, heartbeat), CORS and cookies. Against the protocol test
//! server (echo/close/...) on 127.0.0.1 port 0.

mod sockjs_common;

use std::time::Duration;

use sigway_sockjs::Options;
use sockjs_common::*;

fn header<'h>(headers: &'h reqwest::header::HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

const NO_CACHE: &str = "no-store, no-cache, no-transform, must-revalidate, max-age=0";

#[tokio::test]
async fn greeting_with_or_without_slash_and_404_elsewhere() {
    let server = start(options());
    for path in ["/echo", "/echo/"] {
        let response = client()
            .get(server.http_url(path))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200);
        assert_eq!(
            header(response.headers(), "content-type"),
            Some("text/plain; charset=UTF-8")
        );
        assert!(response.headers().get("set-cookie").is_none());
        assert_eq!(response.text().await.expect("body"), "Welcome to SockJS!\n");
    }
    for suffix in [
        "/a",
        "/a.html",
        "//",
        "///",
        "/a/a",
        "/a/a/",
        "/a/",
        "/a./a/xhr",
        "/a/a./xhr",
    ] {
        let (status, _) = get_text(&server.http_url(&format!("/echo{suffix}"))).await;
        assert_eq!(status, 404, "{suffix}");
    }
}

#[tokio::test]
async fn info_reports_capabilities_uncached_with_fresh_entropy() {
    let server = start(options());
    let response = client()
        .get(server.http_url("/echo/info"))
        .header("Origin", "http://example.test")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/json; charset=UTF-8")
    );
    assert_eq!(header(&headers, "cache-control"), Some(NO_CACHE));
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some("http://example.test")
    );
    assert_eq!(
        header(&headers, "access-control-allow-credentials"),
        Some("true")
    );
    assert!(headers.get("set-cookie").is_none());
    let first: serde_json::Value =
        serde_json::from_str(&response.text().await.expect("body")).expect("json");
    assert_eq!(first["websocket"], true);
    assert_eq!(first["cookie_needed"], false);
    assert_eq!(first["origins"], serde_json::json!(["*:*"]));
    let (_, second) = get_text(&server.http_url("/echo/info")).await;
    let second: serde_json::Value = serde_json::from_str(&second).expect("json");
    assert!(first["entropy"].is_u64() && second["entropy"].is_u64());
    assert_ne!(first["entropy"], second["entropy"]);

    let (_, off) = get_text(&server.http_url("/disabled_websocket_echo/info")).await;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&off).expect("json")["websocket"],
        false
    );
    let (_, cookie) = get_text(&server.http_url("/cookie_needed_echo/info")).await;
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&cookie).expect("json")["cookie_needed"],
        true
    );
}

#[tokio::test]
async fn options_preflights_are_cacheable_and_echo_the_origin() {
    let server = start(options());
    let cases = [
        ("/echo/info", "OPTIONS, GET"),
        ("/echo/abc/abc/xhr", "OPTIONS, POST"),
        ("/echo/abc/abc/xhr_send", "OPTIONS, POST"),
        ("/echo/abc/abc/xhr_streaming", "OPTIONS, POST"),
    ];
    for (path, methods) in cases {
        for origin in [None, Some("test"), Some("null")] {
            let mut request = client().request(reqwest::Method::OPTIONS, server.http_url(path));
            if let Some(origin) = origin {
                request = request.header("Origin", origin);
            }
            let response = request.send().await.expect("request");
            assert_eq!(response.status(), 204, "{path}");
            let headers = response.headers().clone();
            let cache = header(&headers, "cache-control").expect("cache-control");
            assert!(
                cache.contains("public") && cache.contains("max-age=31536000"),
                "{cache}"
            );
            assert!(headers.get("expires").is_some());
            assert!(
                header(&headers, "access-control-max-age")
                    .expect("max-age")
                    .parse::<u64>()
                    .expect("number")
                    > 1_000_000
            );
            assert_eq!(
                header(&headers, "access-control-allow-methods"),
                Some(methods)
            );
            // The Origin as sent, `null` included (sockjs-node's xhr_cors).
            let expected_origin = origin.unwrap_or("*");
            assert_eq!(
                header(&headers, "access-control-allow-origin"),
                Some(expected_origin)
            );
            // Credentials only for a request with an Origin (sockjs-node).
            assert_eq!(
                header(&headers, "access-control-allow-credentials"),
                origin.map(|_| "true")
            );
            assert!(response.text().await.expect("body").is_empty());
        }
    }
}

#[tokio::test]
async fn iframe_is_cacheable_with_an_etag_and_answers_304() {
    let server = start(Options {
        client_url: "https://cdn.example.test/sockjs.js".into(),
        ..options()
    });
    for path in [
        "/echo/iframe.html",
        "/echo/iframe-0.1.2abc-dirty.2144.html",
        "/echo/iframe-a.html?t=1234",
    ] {
        let response = client()
            .get(server.http_url(path))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        assert_eq!(
            header(&headers, "content-type"),
            Some("text/html; charset=UTF-8")
        );
        assert!(
            header(&headers, "cache-control")
                .is_some_and(|c| c.contains("public") && c.contains("max-age=31536000"))
        );
        assert!(headers.get("expires").is_some() && headers.get("last-modified").is_none());
        let body = response.text().await.expect("body");
        assert!(body.starts_with("<!DOCTYPE html>"));
        assert!(body.contains(r#"<script src="https://cdn.example.test/sockjs.js"></script>"#));
        // sockjs-node 0.3.24's page (the protocol suite knew an older one).
        assert!(body.contains("    SockJS.bootstrap_iframe();\n"));
    }
    for path in [
        "/echo/iframe.htm",
        "/echo/IFRAME.HTML",
        "/echo/iframe.xml",
        "/echo/iframe-/.html",
    ] {
        assert_eq!(get_text(&server.http_url(path)).await.0, 404, "{path}");
    }
    let first = client()
        .get(server.http_url("/echo/iframe.html"))
        .send()
        .await
        .expect("request");
    let etag = header(first.headers(), "etag").expect("etag").to_owned();
    let again = client()
        .get(server.http_url("/echo/iframe.html"))
        .send()
        .await
        .expect("request");
    assert_eq!(header(again.headers(), "etag"), Some(etag.as_str()));
    let cached = client()
        .get(server.http_url("/echo/iframe.html"))
        .header("If-None-Match", &etag)
        .send()
        .await
        .expect("request");
    assert_eq!(cached.status(), 304);
    assert!(cached.headers().get("content-type").is_none());
    assert!(cached.text().await.expect("body").is_empty());
}

#[tokio::test]
async fn xhr_polling_opens_sends_and_echoes_with_cors_and_no_cache() {
    let server = start(options());
    let url = session_url(&server, "/echo");
    let response = client()
        .post(format!("{url}/xhr"))
        .header("Origin", "http://page.test")
        .header("Access-Control-Request-Headers", "a, b, c")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/javascript; charset=UTF-8")
    );
    assert_eq!(header(&headers, "cache-control"), Some(NO_CACHE));
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some("http://page.test")
    );
    assert_eq!(
        header(&headers, "access-control-allow-headers"),
        Some("a, b, c")
    );
    assert!(headers.get("set-cookie").is_none());
    assert_eq!(response.text().await.expect("body"), "o\n");

    let sent = post(&format!("{url}/xhr_send"), r#"["x"]"#).await;
    assert_eq!(sent.status(), 204);
    assert_eq!(
        header(sent.headers(), "content-type"),
        Some("text/plain; charset=UTF-8")
    );
    assert_eq!(header(sent.headers(), "cache-control"), Some(NO_CACHE));
    // No Origin: `*` and no credentials, as sockjs-node answers.
    assert_eq!(
        header(sent.headers(), "access-control-allow-credentials"),
        None
    );
    assert!(sent.text().await.expect("body").is_empty());
    assert_eq!(
        post_text(&format!("{url}/xhr"), "").await,
        (200, "a[\"x\"]\n".into())
    );

    // The server id is only for load balancers.
    let other_server = url.replacen("/000/", "/999/", 1);
    assert_eq!(
        post_text(&format!("{other_server}/xhr_send"), r#"["y"]"#)
            .await
            .0,
        204
    );
    assert_eq!(
        post_text(&format!("{url}/xhr"), "").await,
        (200, "a[\"y\"]\n".into())
    );
}

#[tokio::test]
async fn batches_and_content_types_all_arrive_in_order() {
    let server = start(options());
    let url = session_url(&server, "/echo");
    assert_eq!(post_text(&format!("{url}/xhr"), "").await.1, "o\n");
    for content_type in [
        "text/plain",
        "T",
        "application/json",
        "application/xml",
        "",
        "text/xml; charset=utf-8",
    ] {
        let response = client()
            .post(format!("{url}/xhr_send"))
            .header("Content-Type", content_type)
            .body(r#"["a","b"]"#)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 204, "{content_type}");
    }
    let (_, body) = post_text(&format!("{url}/xhr"), "").await;
    let expected = format!("a[{}]\n", [r#""a","b""#; 6].join(","));
    assert_eq!(body, expected);
}

#[tokio::test]
async fn xhr_send_refuses_empty_broken_unknown_and_oversized_bodies() {
    let server = start(Options {
        max_message_bytes: 1024,
        ..options()
    });
    let url = session_url(&server, "/echo");
    assert_eq!(post_text(&format!("{url}/xhr"), "").await.1, "o\n");
    let (status, body) = post_text(&format!("{url}/xhr_send"), r#"["x"#).await;
    assert_eq!(
        (status, body.contains("Broken JSON encoding.")),
        (500, true)
    );
    let (status, body) = post_text(&format!("{url}/xhr_send"), "").await;
    assert_eq!((status, body.contains("Payload expected.")), (500, true));
    let (status, body) = post_text(&format!("{url}/xhr_send"), r#"{"not":"an array"}"#).await;
    assert_eq!((status, body.contains("Payload expected.")), (500, true));
    let big = format!(r#"["{}"]"#, "x".repeat(2000));
    assert_eq!(post_text(&format!("{url}/xhr_send"), &big).await.0, 413);
    let unknown = session_url(&server, "/echo");
    assert_eq!(
        post_text(&format!("{unknown}/xhr_send"), r#"["x"]"#)
            .await
            .0,
        404
    );
    // The session survived all of it.
    assert_eq!(
        post_text(&format!("{url}/xhr_send"), r#"["a"]"#).await.0,
        204
    );
    assert_eq!(post_text(&format!("{url}/xhr"), "").await.1, "a[\"a\"]\n");
}

#[tokio::test]
async fn a_second_receiver_gets_2010_and_an_aborted_one_ends_the_session() {
    let server = start(options());
    let url = session_url(&server, "/echo");
    assert_eq!(post_text(&format!("{url}/xhr"), "").await.1, "o\n");
    let pending = client().post(format!("{url}/xhr")).send();
    let pending = tokio::spawn(pending);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        post_text(&format!("{url}/xhr"), "").await,
        (200, "c[2010,\"Another connection still open\"]\n".into())
    );
    // The first poll is dropped mid-response: as in sockjs-node (not as
    // the protocol suite's `c[1002,...]`), the session ends and is
    // forgotten, so the same id opens a new one.
    pending.abort();
    let _ = pending.await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(post_text(&format!("{url}/xhr"), "").await.1, "o\n");
}

#[tokio::test]
async fn streaming_second_receiver_gets_2010_and_its_response_ends() {
    let server = start(options());
    let url = session_url(&server, "/echo");
    let (headers, mut first) = open_streaming(&url).await;
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/javascript; charset=UTF-8")
    );
    assert_eq!(header(&headers, "cache-control"), Some(NO_CACHE));
    assert_eq!(first.read_until("\n").await, "o\n");
    let (_, mut second) = open_streaming(&url).await;
    assert_eq!(
        second.read_until("\n").await,
        "c[2010,\"Another connection still open\"]\n"
    );
    assert!(second.ends().await);
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The first went away: its session ended with it (sockjs-node), so the
    // same id opens a new one.
    let (_, mut third) = open_streaming(&url).await;
    assert_eq!(third.read_until("\n").await, "o\n");
}

#[tokio::test]
async fn xhr_streaming_delivers_each_frame_and_ends_at_the_response_limit() {
    let server = start(options());
    let url = session_url(&server, "/echo");
    let (_, mut stream) = open_streaming(&url).await;
    assert_eq!(stream.read_until("\n").await, "o\n");
    let message = format!("\"{}\"", "x".repeat(128));
    for _ in 0..31 {
        assert_eq!(
            post_text(&format!("{url}/xhr_send"), &format!("[{message}]"))
                .await
                .0,
            204
        );
        assert_eq!(stream.read_until("\n").await, format!("a[{message}]\n"));
    }
    assert!(stream.ends().await, "the response ends after 4 KiB");
    // The session goes on in a new response.
    assert_eq!(
        post_text(&format!("{url}/xhr_send"), r#"["after"]"#)
            .await
            .0,
        204
    );
    let (_, mut reopened) = open_streaming(&url).await;
    assert_eq!(reopened.read_until("\n").await, "a[\"after\"]\n");
}

#[tokio::test]
async fn messages_queued_without_receiver_arrive_on_the_next_one() {
    let server = start(options());
    let url = session_url(&server, "/echo");
    assert_eq!(post_text(&format!("{url}/xhr"), "").await.1, "o\n");
    for body in [r#"["1"]"#, r#"["2","3"]"#] {
        assert_eq!(post_text(&format!("{url}/xhr_send"), body).await.0, 204);
    }
    let (_, mut stream) = open_streaming(&url).await;
    assert_eq!(stream.read_until("\n").await, "a[\"1\",\"2\",\"3\"]\n");
}

#[tokio::test]
async fn eventsource_frames_as_data_lines_and_honours_the_limit() {
    let server = start(options());
    let url = session_url(&server, "/echo");
    let response = client()
        .get(format!("{url}/eventsource"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(response.headers(), "content-type"),
        Some("text/event-stream")
    );
    assert_eq!(header(response.headers(), "cache-control"), Some(NO_CACHE));
    let mut stream = StreamReader::new(response);
    assert_eq!(stream.read_until("\r\n").await, "\r\n");
    assert_eq!(stream.read_until("\r\n\r\n").await, "data: o\r\n\r\n");
    assert_eq!(
        post_text(&format!("{url}/xhr_send"), r#"["x"]"#).await.0,
        204
    );
    assert_eq!(
        stream.read_until("\r\n\r\n").await,
        "data: a[\"x\"]\r\n\r\n"
    );
    assert_eq!(
        post_text(&format!("{url}/xhr_send"), r#"["  \u0000\n\r "]"#)
            .await
            .0,
        204
    );
    assert_eq!(
        stream.read_until("\r\n\r\n").await,
        "data: a[\"  \\u0000\\n\\r \"]\r\n\r\n"
    );
    let big = format!("\"{}\"", "x".repeat(4096));
    assert_eq!(
        post_text(&format!("{url}/xhr_send"), &format!("[{big}]"))
            .await
            .0,
        204
    );
    assert_eq!(
        stream.read_until("\r\n\r\n").await,
        format!("data: a[{big}]\r\n\r\n")
    );
    assert!(stream.ends().await);
}

#[tokio::test]
async fn htmlfile_wraps_frames_in_script_tags_and_needs_a_valid_callback() {
    let server = start(options());
    let url = session_url(&server, "/echo");
    let response = client()
        .get(format!("{url}/htmlfile?c=%63allback"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    assert_eq!(
        header(response.headers(), "content-type"),
        Some("text/html; charset=UTF-8")
    );
    assert_eq!(header(response.headers(), "cache-control"), Some(NO_CACHE));
    let mut stream = StreamReader::new(response);
    let head = stream.read_until("\r\n\r\n").await;
    assert!(head.len() > 1024);
    assert!(head.trim().ends_with("</script>"));
    assert!(head.contains("var c = parent.callback;"));
    assert_eq!(
        stream.read_until("</script>\r\n").await,
        "<script>\np(\"o\");\n</script>\r\n"
    );
    assert_eq!(
        post_text(&format!("{url}/xhr_send"), r#"["x"]"#).await.0,
        204
    );
    assert_eq!(
        stream.read_until("</script>\r\n").await,
        "<script>\np(\"a[\\\"x\\\"]\");\n</script>\r\n"
    );

    let (status, body) = get_text(&server.http_url("/echo/a/a/htmlfile")).await;
    assert_eq!(
        (status, body.contains("\"callback\" parameter required")),
        (500, true)
    );
    let (status, body) = get_text(&server.http_url("/echo/a/a/htmlfile?c=alert(1)")).await;
    assert_eq!(
        (status, body.contains("invalid \"callback\" parameter")),
        (500, true)
    );
}

#[tokio::test]
async fn jsonp_polls_and_jsonp_send_takes_form_or_raw_bodies() {
    let server = start(options());
    let url = session_url(&server, "/echo");
    let response = client()
        .get(format!("{url}/jsonp?c=%63allback"))
        .send()
        .await
        .expect("request");
    assert_eq!(
        header(response.headers(), "content-type"),
        Some("application/javascript; charset=UTF-8")
    );
    assert_eq!(header(response.headers(), "cache-control"), Some(NO_CACHE));
    // `/**/` first, as sockjs-node has sent since 0.3.10.
    assert_eq!(
        response.text().await.expect("body"),
        "/**/callback(\"o\");\r\n"
    );

    let form = |body: &'static str| {
        client()
            .post(format!("{url}/jsonp_send"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let sent = form("d=%5B%22abc%22%5D").await.expect("request");
    assert_eq!(sent.status(), 200);
    assert_eq!(
        header(sent.headers(), "content-type"),
        Some("text/plain; charset=UTF-8")
    );
    assert_eq!(header(sent.headers(), "cache-control"), Some(NO_CACHE));
    assert_eq!(sent.text().await.expect("body"), "ok");
    let raw = client()
        .post(format!("{url}/jsonp_send"))
        .header("Content-Type", "text/plain")
        .body(r#"["%61bc"]"#)
        .send()
        .await
        .expect("request");
    assert_eq!(raw.text().await.expect("body"), "ok");
    assert_eq!(
        get_text(&format!("{url}/jsonp?c=x")).await.1,
        "/**/x(\"a[\\\"abc\\\",\\\"%61bc\\\"]\");\r\n"
    );

    let broken = form("d=%5B%22x").await.expect("request");
    assert_eq!(broken.status(), 500);
    assert!(
        broken
            .text()
            .await
            .expect("body")
            .contains("Broken JSON encoding.")
    );
    for body in ["", "d=", "p=p"] {
        let refused = form(body).await.expect("request");
        assert_eq!(refused.status(), 500, "{body}");
        assert!(
            refused
                .text()
                .await
                .expect("body")
                .contains("Payload expected.")
        );
    }
    let (status, body) = get_text(&server.http_url("/echo/a/a/jsonp")).await;
    assert_eq!(
        (status, body.contains("\"callback\" parameter required")),
        (500, true)
    );
}

#[tokio::test]
async fn the_close_app_serves_its_close_frame_until_the_session_expires() {
    let server = start(options());
    let url = session_url(&server, "/close");
    assert_eq!(post_text(&format!("{url}/xhr"), "").await.1, "o\n");
    for _ in 0..2 {
        assert_eq!(
            post_text(&format!("{url}/xhr"), "").await.1,
            "c[3000,\"Go away!\"]\n"
        );
    }
    let url = session_url(&server, "/close");
    assert_eq!(
        get_text(&format!("{url}/jsonp?c=x")).await.1,
        "/**/x(\"o\");\r\n"
    );
    assert_eq!(
        get_text(&format!("{url}/jsonp?c=x")).await.1,
        "/**/x(\"c[3000,\\\"Go away!\\\"]\");\r\n"
    );

    // Streaming: open, close, end; the next receiver gets the close frame.
    let url = session_url(&server, "/close");
    let (_, mut first) = open_streaming(&url).await;
    assert_eq!(first.read_until("\n").await, "o\n");
    assert_eq!(first.read_until("\n").await, "c[3000,\"Go away!\"]\n");
    let (_, mut second) = open_streaming(&url).await;
    assert_eq!(second.read_until("\n").await, "c[3000,\"Go away!\"]\n");
    assert!(first.ends().await);
    assert!(second.ends().await);
}

#[tokio::test]
async fn cookies_only_when_needed_dummy_or_echoed() {
    let server = start(options());
    let plain = session_url(&server, "/echo");
    let response = post(&format!("{plain}/xhr"), "").await;
    assert!(response.headers().get("set-cookie").is_none());

    let url = session_url(&server, "/cookie_needed_echo");
    let response = post(&format!("{url}/xhr"), "").await;
    assert_eq!(
        header(response.headers(), "set-cookie"),
        Some("JSESSIONID=dummy; path=/")
    );
    let response = client()
        .post(format!(
            "{}/xhr",
            session_url(&server, "/cookie_needed_echo")
        ))
        .header("Cookie", "other=1; JSESSIONID=abcdef")
        .send()
        .await
        .expect("request");
    assert_eq!(
        header(response.headers(), "set-cookie"),
        Some("JSESSIONID=abcdef; path=/")
    );
    let sent = post(&format!("{url}/xhr_send"), r#"["x"]"#).await;
    assert_eq!(
        header(sent.headers(), "set-cookie"),
        Some("JSESSIONID=dummy; path=/")
    );
    for transport in ["eventsource", "htmlfile?c=cb", "jsonp?c=cb"] {
        let response = client()
            .get(format!(
                "{}/{transport}",
                session_url(&server, "/cookie_needed_echo")
            ))
            .send()
            .await
            .expect("request");
        assert_eq!(
            header(response.headers(), "set-cookie"),
            Some("JSESSIONID=dummy; path=/"),
            "{transport}"
        );
    }
    let info = client()
        .get(server.http_url("/cookie_needed_echo/info"))
        .send()
        .await
        .expect("request");
    assert!(info.headers().get("set-cookie").is_none());
}

#[tokio::test]
async fn a_session_without_receiver_times_out_and_is_forgotten() {
    let server = start(Options {
        disconnect_delay: Duration::from_millis(1000),
        ..options()
    });
    let url = session_url(&server, "/echo");
    assert_eq!(post_text(&format!("{url}/xhr"), "").await.1, "o\n");
    assert_eq!(
        post_text(&format!("{url}/xhr_send"), r#"["x"]"#).await.0,
        204
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        post_text(&format!("{url}/xhr_send"), r#"["x"]"#).await.0,
        404
    );
    assert_eq!(server.endpoints.echo.polling_sessions(), 0);
    // The same id now opens a new session.
    assert_eq!(post_text(&format!("{url}/xhr"), "").await.1, "o\n");
}

#[tokio::test]
async fn open_sessions_get_heartbeats() {
    let server = start(Options {
        heartbeat: Duration::from_millis(200),
        ..options()
    });
    let url = session_url(&server, "/echo");
    let (_, mut stream) = open_streaming(&url).await;
    assert_eq!(stream.read_until("\n").await, "o\n");
    assert_eq!(stream.read_until("\n").await, "h\n");
    assert_eq!(stream.read_until("\n").await, "h\n");
    drop(stream);

    let url = session_url(&server, "/echo");
    assert_eq!(post_text(&format!("{url}/xhr"), "").await.1, "o\n");
    assert_eq!(post_text(&format!("{url}/xhr"), "").await.1, "h\n");
}

#[tokio::test]
async fn frames_escape_unsafe_characters_and_keep_the_rest() {
    let server = start(options());
    let url = session_url(&server, "/echo");
    assert_eq!(post_text(&format!("{url}/xhr"), "").await.1, "o\n");
    let unsafe_chars: String = (0xffu32..0x10000)
        .filter(
            |c| matches!(c, 0x200c..=0x200f | 0x2028..=0x202f | 0x2060..=0x206f | 0xfff0..=0xffff),
        )
        .filter_map(char::from_u32)
        .collect();
    let escaped: String = unsafe_chars
        .chars()
        .map(|c| format!("\\u{:04x}", c as u32))
        .collect();
    let payload = serde_json::to_string(&vec![format!("{unsafe_chars}é中\u{1}")]).expect("json");
    assert_eq!(post_text(&format!("{url}/xhr_send"), &payload).await.0, 204);
    let (_, body) = post_text(&format!("{url}/xhr"), "").await;
    assert_eq!(body, format!("a[\"{escaped}é中\\u0001\"]\n"));
}

#[tokio::test]
async fn wrong_methods_get_405_with_allow_and_no_body() {
    let server = start(options());
    let response = client()
        .get(server.http_url("/echo/a/a/xhr"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 405);
    // sockjs-node's dispatcher order.
    assert_eq!(header(response.headers(), "allow"), Some("POST, OPTIONS"));
    assert!(response.headers().get("content-type").is_none());
    assert!(response.text().await.expect("body").is_empty());
    let response = client()
        .post(server.http_url("/echo/a/a/websocket"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 405);
    assert_eq!(header(response.headers(), "allow"), Some("GET"));
}

#[tokio::test]
async fn the_server_decodes_every_character_a_client_escapes() {
    let server = start(options());
    let url = session_url(&server, "/echo");
    assert_eq!(post_text(&format!("{url}/xhr"), "").await.1, "o\n");
    let every_bmp_char: String = (1u32..0x10000).filter_map(char::from_u32).collect();
    let escaped: String = every_bmp_char
        .chars()
        .map(|c| format!("\\u{:04x}", c as u32))
        .collect();
    assert_eq!(
        post_text(&format!("{url}/xhr_send"), &format!("[\"{escaped}\"]"))
            .await
            .0,
        204
    );
    let (_, body) = post_text(&format!("{url}/xhr"), "").await;
    let echoed: Vec<String> =
        serde_json::from_str(body.trim_end().strip_prefix('a').expect("a frame")).expect("json");
    assert_eq!(echoed, vec![every_bmp_char]);
}

/// Sends `request` on a fresh connection and returns everything the server
/// writes until it closes the connection (or `WAIT` passes).
async fn raw_exchange(addr: std::net::SocketAddr, request: &str) -> (String, bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut received = Vec::new();
    let mut buffer = [0u8; 8192];
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return (String::from_utf8_lossy(&received).into_owned(), true);
            }
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
            Err(_) => return (String::from_utf8_lossy(&received).into_owned(), false),
        }
    }
}

#[tokio::test]
async fn http_1_0_streams_without_chunking_and_closes_the_connection() {
    let server = start(options());
    let request = format!(
        "POST /close/000/{:x}/xhr_streaming HTTP/1.0\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n",
        rand_id()
    );
    let (response, closed) = raw_exchange(server.addr(), &request).await;
    let (head, body) = response.split_once("\r\n\r\n").expect("head");
    let head = head.to_lowercase();
    assert!(
        head.starts_with("http/1.0 200") || head.starts_with("http/1.1 200"),
        "{head}"
    );
    assert!(
        !head.contains("transfer-encoding") && !head.contains("content-length"),
        "{head}"
    );
    assert_eq!(
        body,
        format!("{}\no\nc[3000,\"Go away!\"]\n", "h".repeat(2048))
    );
    assert!(closed);
}

#[tokio::test]
async fn http_1_1_sends_each_frame_as_its_own_chunk() {
    let server = start(options());
    let request = format!(
        "POST /close/000/{:x}/xhr_streaming HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        rand_id()
    );
    let (response, _) = raw_exchange(server.addr(), &request).await;
    let (head, body) = response.split_once("\r\n\r\n").expect("head");
    assert!(
        head.to_lowercase().contains("transfer-encoding: chunked"),
        "{head}"
    );
    assert_eq!(
        body,
        format!(
            "801\r\n{}\n\r\n2\r\no\n\r\n13\r\nc[3000,\"Go away!\"]\n\r\n0\r\n\r\n",
            "h".repeat(2048)
        )
    );
}
