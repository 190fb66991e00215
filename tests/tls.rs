//! TLS with openssl: a certificate made by the test, served as wss:// and
//! https:// on the same port, optionally with a CA chain file.

mod common;

use common::{Peer, WAIT, start, test_settings};
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::x509::{X509, X509NameBuilder};

/// Writes a self-signed certificate for 127.0.0.1 and its key; returns paths.
fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let key = PKey::from_rsa(Rsa::generate(2048).expect("rsa")).expect("pkey");
    let mut name = X509NameBuilder::new().expect("name");
    name.append_entry_by_text("CN", "127.0.0.1").expect("cn");
    let name = name.build();
    let mut cert = X509::builder().expect("x509");
    cert.set_version(2).expect("version");
    cert.set_serial_number(
        &BigNum::from_u32(1)
            .expect("bn")
            .to_asn1_integer()
            .expect("serial"),
    )
    .expect("serial");
    cert.set_subject_name(&name).expect("subject");
    cert.set_issuer_name(&name).expect("issuer");
    cert.set_pubkey(&key).expect("pubkey");
    cert.set_not_before(&Asn1Time::days_from_now(0).expect("time"))
        .expect("nb");
    cert.set_not_after(&Asn1Time::days_from_now(2).expect("time"))
        .expect("na");
    cert.sign(&key, MessageDigest::sha256()).expect("sign");
    let cert = cert.build();
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, cert.to_pem().expect("pem")).expect("write cert");
    std::fs::write(&key_path, key.private_key_to_pem_pkcs8().expect("pem")).expect("write key");
    (cert_path, key_path)
}

#[tokio::test]
async fn wss_and_https_are_served_with_the_given_certificate() {
    let dir = tempfile::tempdir().expect("tmp");
    let (cert, key) = self_signed(dir.path());
    let mut settings = test_settings();
    settings.tls.cert = Some(cert.clone());
    settings.tls.key = Some(key);
    // The CA chain file is sent after the certificate (here: itself).
    settings.tls.ca = Some(cert);
    let server = start(settings);
    assert!(server.tls);

    let connector = native_tls::TlsConnector::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .expect("tls");
    let url = server.ws_url("/secure");
    assert!(url.starts_with("wss://"));
    let (ws, _) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::connect_async_tls_with_config(
            url.as_str(),
            None,
            false,
            Some(tokio_tungstenite::Connector::NativeTls(connector)),
        ),
    )
    .await
    .expect("in time")
    .expect("wss handshake");
    let mut peer = Peer { ws, heartbeats: 0 };
    assert!(peer.connect(1, &[]).await);

    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .expect("client");
    let page = client
        .get(server.http_url("/healthz"))
        .send()
        .await
        .expect("https GET");
    assert_eq!(page.status(), 200);

    // Plain HTTP on the TLS port does not get through.
    let plain = reqwest::get(format!("http://{}/healthz", server.addr)).await;
    assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true));
}

#[test]
fn tls_offers_http_1_1_only_as_the_node_servers_did() {
    let dir = tempfile::tempdir().expect("tmp");
    let (cert, key) = self_signed(dir.path());
    let mut settings = test_settings();
    settings.tls.cert = Some(cert);
    settings.tls.key = Some(key);
    let server = start(settings);
    let mut connector =
        openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls()).expect("connector");
    connector.set_verify(openssl::ssl::SslVerifyMode::NONE);
    // A browser offers h2 first; SockJS needs each closed tab noticed at
    // once, which HTTP/2 stream resets would hide.
    connector
        .set_alpn_protos(b"\x02h2\x08http/1.1")
        .expect("alpn");
    let tcp = std::net::TcpStream::connect(server.addr).expect("tcp");
    tcp.set_read_timeout(Some(WAIT)).expect("timeout");
    let tls = connector
        .build()
        .connect("127.0.0.1", tcp)
        .expect("handshake");
    assert_eq!(tls.ssl().selected_alpn_protocol(), Some(&b"http/1.1"[..]));
}
