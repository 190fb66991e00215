//! TLS through openssl: the acceptor for a certificate chain and its key.
//! HTTP/1.1 only (no ALPN h2): SockJS receivers must notice a closed tab at
//! once, which an HTTP/2 stream reset hides, and the Node servers spoke 1.1.

use std::io;

use openssl::ssl::{SslAcceptor, SslAcceptorBuilder, SslFiletype, SslMethod, SslMode};
use openssl::x509::X509;

use crate::config::Settings;

/// The acceptor for the configured certificate chain (plus `tls.ca`) and key.
pub(super) fn acceptor(settings: &Settings) -> io::Result<SslAcceptorBuilder> {
    let tls = &settings.tls;
    let (cert, key) = settings
        .tls_files()
        .map_err(io::Error::other)?
        .ok_or_else(|| io::Error::other("TLS requested without files"))?;
    let mut builder =
        SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).map_err(io::Error::other)?;
    let context = |what: &str, path: &std::path::Path, e: openssl::error::ErrorStack| {
        io::Error::other(format!("TLS {what} {}: {e}", path.display()))
    };
    builder
        .set_private_key_file(key, SslFiletype::PEM)
        .map_err(|e| context("key", key, e))?;
    builder
        .set_certificate_chain_file(cert)
        .map_err(|e| context("certificate", cert, e))?;
    if let Some(ca) = &tls.ca {
        let pem = std::fs::read(ca)?;
        for extra in X509::stack_from_pem(&pem).map_err(|e| context("CA chain", ca, e))? {
            builder
                .add_extra_chain_cert(extra)
                .map_err(|e| context("CA chain", ca, e))?;
        }
    }
    builder
        .check_private_key()
        .map_err(|e| context("key (does not match the certificate)", key, e))?;
    // OpenSSL gives an idle connection's record buffers (about 34 KB for
    // reading and writing) back and takes them again when bytes move: idle
    // peers are most of a signaling server's connections.
    builder.set_mode(SslMode::RELEASE_BUFFERS);
    Ok(builder)
}
