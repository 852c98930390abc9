//! TLS for distribution connections, through tokio-rustls, compatible with
//! `erl -proto_dist inet_tls`.
//!
//! TLS wraps the whole connection, handshake included; EPMD stays plain, as in OTP. Build a
//! [`TlsConfig`] from PEM files: the node's certificate chain and key (used both when accepting
//! and when connecting) and optionally a CA bundle. With a CA bundle the node verifies the
//! peer's certificate in both directions (mutual TLS); without one it presents its certificate
//! but accepts any server certificate when connecting, which suits only tests.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::{self, pki_types};

use crate::error::NodeError;

/// Server and client TLS settings for one node.
#[derive(Clone)]
pub struct TlsConfig {
    pub(crate) acceptor: tokio_rustls::TlsAcceptor,
    pub(crate) connector: tokio_rustls::TlsConnector,
    /// Whether peers' certificates are verified against a CA (mutual TLS).
    pub(crate) mutual: bool,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsConfig")
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_err(e: impl std::fmt::Display) -> NodeError {
    NodeError::Tls(e.to_string())
}

fn read_certs(path: &Path) -> Result<Vec<pki_types::CertificateDer<'static>>, NodeError> {
    let data = std::fs::read(path).map_err(|e| tls_err(format!("{}: {e}", path.display())))?;
    let certs = rustls_pemfile::certs(&mut &data[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(tls_err(format!("{}: no certificate", path.display())));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<pki_types::PrivateKeyDer<'static>, NodeError> {
    let data = std::fs::read(path).map_err(|e| tls_err(format!("{}: {e}", path.display())))?;
    rustls_pemfile::private_key(&mut &data[..])
        .map_err(|e| tls_err(format!("{}: {e}", path.display())))?
        .ok_or_else(|| tls_err(format!("{}: no private key", path.display())))
}

impl TlsConfig {
    /// Loads the node's certificate chain and key, and optionally a CA bundle that peers'
    /// certificates must chain to (which turns on mutual TLS).
    pub fn from_pem_files(
        cert: &Path,
        key: &Path,
        ca: Option<&Path>,
    ) -> Result<TlsConfig, NodeError> {
        let certs = read_certs(cert)?;
        let key = read_key(key)?;
        let roots = match ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for c in read_certs(ca)? {
                    roots.add(c).map_err(tls_err)?;
                }
                Some(Arc::new(roots))
            }
            None => None,
        };

        let server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(tls_err)?;
        let server = match &roots {
            Some(roots) => server.with_client_cert_verifier(
                rustls::server::WebPkiClientVerifier::builder_with_provider(
                    roots.clone(),
                    provider(),
                )
                .build()
                .map_err(tls_err)?,
            ),
            None => server.with_no_client_auth(),
        }
        .with_single_cert(certs.clone(), key.clone_key())
        .map_err(tls_err)?;

        let client = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(tls_err)?;
        let client = match &roots {
            Some(roots) => client.with_root_certificates(roots.clone()),
            None => client
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(insecure::AcceptAny(provider()))),
        }
        .with_client_auth_cert(certs, key)
        .map_err(tls_err)?;

        Ok(TlsConfig {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
            connector: tokio_rustls::TlsConnector::from(Arc::new(client)),
            mutual: roots.is_some(),
        })
    }
}

mod insecure {
    use std::sync::Arc;

    use tokio_rustls::rustls::client::danger::{
        HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
    };
    use tokio_rustls::rustls::crypto::{
        verify_tls12_signature, verify_tls13_signature, CryptoProvider,
    };
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use tokio_rustls::rustls::{DigitallySignedStruct, Error, SignatureScheme};

    /// Accepts any server certificate (still checking signatures): for setups without a CA.
    #[derive(Debug)]
    pub struct AcceptAny(pub Arc<CryptoProvider>);

    impl ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
}
