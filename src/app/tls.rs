//! TLS through openssl: the acceptor for a certificate chain and its key.
//! HTTP/1.1 only (no ALPN h2): SockJS receivers must notice a closed tab at
//! once, which an HTTP/2 stream reset hides, and the Node servers spoke 1.1.
//!
//! SIGHUP reloads the pair ([`TlsPair::load`] into the [`TlsSwap`]): the
//! acceptor's client-hello callback hands every new handshake the pair in
//! the swap, when one was reloaded; connections already up keep theirs.

use std::io;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{
    ClientHelloResponse, SslAcceptor, SslAcceptorBuilder, SslFiletype, SslMethod, SslMode,
};
use openssl::x509::X509;

use crate::config::Settings;

/// A certificate, the chain sent after it and its private key, read from
/// the configured files.
pub(super) struct TlsPair {
    cert: X509,
    chain: Vec<X509>,
    key: PKey<Private>,
}

/// The pair new handshakes use: `None` until a reload, then the latest.
pub(super) type TlsSwap = Arc<ArcSwapOption<TlsPair>>;

impl TlsPair {
    /// Reads `tls.cert` (leaf first, then its chain), `tls.ca` and
    /// `tls.key`, and checks that the key is the certificate's.
    pub(super) fn load(settings: &Settings) -> io::Result<Self> {
        let (cert_path, key_path) = settings
            .tls_files()
            .map_err(io::Error::other)?
            .ok_or_else(|| io::Error::other("TLS is not configured"))?;
        let read = |what: &str, path: &std::path::Path| {
            std::fs::read(path)
                .map_err(|e| io::Error::other(format!("TLS {what} {}: {e}", path.display())))
        };
        let bad = |what: &str, path: &std::path::Path, e: openssl::error::ErrorStack| {
            io::Error::other(format!("TLS {what} {}: {e}", path.display()))
        };
        let mut certs = X509::stack_from_pem(&read("certificate", cert_path)?)
            .map_err(|e| bad("certificate", cert_path, e))?
            .into_iter();
        let cert = certs.next().ok_or_else(|| {
            io::Error::other(format!(
                "TLS certificate {}: no certificate in it",
                cert_path.display()
            ))
        })?;
        let mut chain: Vec<X509> = certs.collect();
        if let Some(ca) = &settings.tls.ca {
            chain.extend(
                X509::stack_from_pem(&read("CA chain", ca)?).map_err(|e| bad("CA chain", ca, e))?,
            );
        }
        let key = PKey::private_key_from_pem(&read("key", key_path)?)
            .map_err(|e| bad("key", key_path, e))?;
        let matches = cert
            .public_key()
            .map(|public| public.public_eq(&key))
            .unwrap_or(false);
        if !matches {
            return Err(io::Error::other(format!(
                "TLS key {} does not match the certificate {}",
                key_path.display(),
                cert_path.display()
            )));
        }
        Ok(Self { cert, chain, key })
    }
}

/// The acceptor for the configured certificate chain (plus `tls.ca`) and
/// key, handing new handshakes the pair in `swap` once one is there.
pub(super) fn acceptor(settings: &Settings, swap: &TlsSwap) -> io::Result<SslAcceptorBuilder> {
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
    let swap = swap.clone();
    builder.set_client_hello_callback(move |ssl, _alert| {
        if let Some(pair) = swap.load_full() {
            ssl.set_certificate(&pair.cert)?;
            ssl.set_private_key(&pair.key)?;
            for extra in &pair.chain {
                ssl.add_chain_cert(extra.clone())?;
            }
        }
        Ok(ClientHelloResponse::SUCCESS)
    });
    Ok(builder)
}
