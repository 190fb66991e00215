//! Who may open the dashboard, through real sockets: with no token of its
//! own it follows the admin API (it wants `admin.token` when that is set),
//! `dashboard.public = true` opens it anyway, its own `dashboard.token`
//! wins over the admin one; with no token at all it stays public and the
//! `sigway` binary says so in one line at start (and says nothing of the
//! kind when a token protects it).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{WAIT, start, test_settings};
use sigway::app::BackgroundServer;

/// The status of `GET path`, with `bearer` as a bearer token when given.
async fn status(server: &BackgroundServer, path: &str, bearer: Option<&str>) -> u16 {
    let mut request = reqwest::Client::new().get(server.http_url(path));
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = tokio::time::timeout(WAIT, request.send())
        .await
        .expect("answer in time")
        .expect("http");
    response.status().as_u16()
}

#[tokio::test]
async fn without_its_own_token_the_dashboard_wants_the_admin_token() {
    let mut settings = test_settings();
    settings.admin.token = "admin-secret".into();
    let server = start(settings);
    for path in ["/dashboard", "/dashboard/feed"] {
        assert_eq!(status(&server, path, None).await, 401, "{path}");
        assert_eq!(status(&server, path, Some("wrong")).await, 401, "{path}");
        assert_eq!(
            status(&server, path, Some("admin-secret")).await,
            200,
            "{path}"
        );
    }
    assert_eq!(
        status(&server, "/dashboard?token=admin-secret", None).await,
        200
    );
    let refused = reqwest::get(server.http_url("/dashboard"))
        .await
        .expect("http")
        .text()
        .await
        .expect("body");
    assert!(refused.contains("admin.token"), "{refused}");
    // What was public stays public.
    assert_eq!(status(&server, "/metrics", None).await, 200);
    server.stop();
}

#[tokio::test]
async fn public_opens_the_dashboard_despite_the_admin_token() {
    let mut settings = test_settings();
    settings.admin.token = "admin-secret".into();
    settings.dashboard.public = true;
    let server = start(settings);
    assert_eq!(status(&server, "/dashboard", None).await, 200);
    assert_eq!(status(&server, "/dashboard/feed", None).await, 200);
    server.stop();
}

#[tokio::test]
async fn the_dashboards_own_token_wins_over_the_admin_token() {
    let mut settings = test_settings();
    settings.admin.token = "admin-secret".into();
    settings.dashboard.token = "dash-secret".into();
    let server = start(settings);
    assert_eq!(
        status(&server, "/dashboard", Some("admin-secret")).await,
        401
    );
    assert_eq!(
        status(&server, "/dashboard", Some("dash-secret")).await,
        200
    );
    server.stop();
}

#[tokio::test]
async fn with_no_token_anywhere_the_dashboard_is_public() {
    let server = start(test_settings());
    assert_eq!(status(&server, "/dashboard", None).await, 200);
    assert_eq!(status(&server, "/dashboard/feed", None).await, 200);
    server.stop();
}

#[test]
fn public_beside_a_dashboard_token_is_refused_at_start() {
    let mut settings = test_settings();
    settings.dashboard.token = "dash-secret".into();
    settings.dashboard.public = true;
    let error = settings.validate().expect_err("contrary settings");
    assert!(error.to_string().contains("dashboard.public"), "{error}");
}

/// The child is killed when the test ends, passing or not.
struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The lines `sigway` prints (both streams) until it says it listens,
/// within a bound; `env` adds settings.
fn start_lines(env: &[(&str, &str)]) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let mut gateway = Gateway(
        Command::new(env!("CARGO_BIN_EXE_sigway"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .current_dir(dir.path())
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .env("SIGWAY_LOG__FILE", "")
            .env("SIGWAY_LOG__LEVEL", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sigway starts"),
    );
    let receive = common::output_lines(&mut gateway.0);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match receive.recv_timeout(left) {
            Ok(line) if line.contains("Signaling server is listening") => return seen,
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    panic!("sigway did not say it listens within 20 s; it printed {seen:#?}");
}

#[test]
fn start_up_says_when_the_dashboard_is_public_for_want_of_a_token() {
    let public = start_lines(&[]);
    let said: Vec<&String> = public
        .iter()
        .filter(|line| line.contains("the dashboard (/dashboard) is public"))
        .collect();
    assert_eq!(said.len(), 1, "one line: {public:#?}");
    assert!(said[0].contains("admin.token"), "{}", said[0]);

    let protected = start_lines(&[("SIGWAY_ADMIN__TOKEN", "admin-secret")]);
    assert!(
        !protected.iter().any(|line| line.contains("is public")),
        "{protected:#?}"
    );
    let chosen = start_lines(&[
        ("SIGWAY_ADMIN__TOKEN", "admin-secret"),
        ("SIGWAY_DASHBOARD__PUBLIC", "true"),
    ]);
    assert!(
        !chosen.iter().any(|line| line.contains("is public")),
        "public by choice is not worth a line: {chosen:#?}"
    );
}
