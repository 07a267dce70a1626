//! Mutual TLS for the cluster: a node's identity (CA, certificate, key) and the rustls
//! configurations built from it.
//!
//! Both directions verify the peer's chain against the cluster CA:
//!
//! - Accepting, rustls' `WebPkiClientVerifier` requires a client certificate that chains
//!   to the CA with the `clientAuth` usage.
//! - Dialing, the node often does not know the name of the peer it dials (a seed is
//!   just an address), so a custom verifier checks the chain against the CA with the
//!   `serverAuth` usage and ignores the TLS server name. The transport then reads the
//!   name from the verified certificate and compares it with the name it expected, if
//!   any.
//!
//! Only TLS 1.3 is offered (QUIC requires it) and ALPN is `mesh/1`.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use x509_parser::extensions::GeneralName;

/// The ALPN protocol spoken on every connection.
pub const ALPN: &[u8] = b"mesh/1";

/// The TLS server name used when dialing. Peers are identified by the name in their
/// verified certificate, not by this.
pub(crate) const DIAL_SERVER_NAME: &str = "mesh";

/// Why a TLS identity could not be loaded or turned into a configuration. Nothing is
/// changed by a failure.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A PEM section could not be parsed.
    #[error("malformed PEM in {source_name}: {source}")]
    Pem {
        /// The file (or "CA PEM", "certificate PEM", "key PEM" for in-memory input).
        source_name: String,
        /// What went wrong.
        source: io::Error,
    },
    /// No certificate was found where one was expected.
    #[error("no certificate found in {source_name}")]
    NoCertificate {
        /// The file or in-memory input.
        source_name: String,
    },
    /// No private key was found where one was expected.
    #[error("no private key found in {source_name}")]
    NoPrivateKey {
        /// The file or in-memory input.
        source_name: String,
    },
    /// A CA certificate cannot be used as a trust anchor.
    #[error("the CA certificate in {source_name} is not usable as a trust anchor: {reason}")]
    InvalidCa {
        /// The file or in-memory input.
        source_name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The node certificate has no DNS subjectAltName to serve as the node name.
    #[error(
        "the certificate in {source_name} has no DNS name (subjectAltName) to use as the node name"
    )]
    NoName {
        /// The file or in-memory input.
        source_name: String,
    },
    /// The node certificate does not verify under the CA (other CA, expired, wrong
    /// usage, ...).
    #[error("the certificate in {cert} is not valid under the CA in {ca}: {reason}")]
    NotSignedByCa {
        /// Where the certificate came from.
        cert: String,
        /// Where the CA came from.
        ca: String,
        /// What the verifier said.
        reason: String,
    },
    /// The private key is unusable or does not belong to the certificate.
    #[error("the private key in {key} does not fit the certificate in {cert}: {reason}")]
    KeyMismatch {
        /// Where the certificate came from.
        cert: String,
        /// Where the key came from.
        key: String,
        /// What rustls said.
        reason: String,
    },
    /// rustls or quinn refused the configuration built from a valid identity (a bug or
    /// an unsupported key type).
    #[error("TLS configuration rejected: {0}")]
    Config(String),
}

/// Everything needed to speak mTLS in the cluster: the CA (trust anchors), this node's
/// certificate chain and key, and the node name read from the certificate.
///
/// Cheap to clone.
#[derive(Clone)]
pub struct TlsIdentity {
    name: String,
    roots: Arc<RootCertStore>,
    key: Arc<CertifiedKey>,
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("name", &self.name)
            .field("trust_anchors", &self.roots.len())
            .finish_non_exhaustive()
    }
}

impl TlsIdentity {
    /// Loads an identity from PEM text: `ca_pem` holds one or more CA certificates
    /// (all trusted), `cert_pem` this node's certificate (optionally followed by
    /// intermediates), `key_pem` its private key.
    ///
    /// Fails unless the certificate verifies under the CA, carries a DNS name and
    /// matches the key.
    pub fn from_pem(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<Self, TlsError> {
        Self::from_pem_bytes(ca_pem.as_bytes(), cert_pem.as_bytes(), key_pem.as_bytes())
    }

    /// Like [`from_pem`](Self::from_pem), from PEM bytes in memory (what an embedding
    /// application holds after reading a secret store or generating certificates).
    /// The bytes need not be UTF-8 outside the PEM sections; errors name the input
    /// ("CA PEM", "certificate PEM", "key PEM") and what is wrong with it: no PEM
    /// section of the expected kind, a malformed one, a certificate not issued by the
    /// CA, or a key that does not belong to the certificate.
    pub fn from_pem_bytes(
        ca_pem: &[u8],
        cert_pem: &[u8],
        key_pem: &[u8],
    ) -> Result<Self, TlsError> {
        Self::load(
            Source::new("CA PEM", ca_pem),
            Source::new("certificate PEM", cert_pem),
            Source::new("key PEM", key_pem),
            true,
        )
    }

    /// Like [`from_pem`](Self::from_pem), reading the three files; errors name the
    /// file and what is wrong with it.
    pub fn from_files(ca: &Path, cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let read = |path: &Path| {
            fs::read_to_string(path).map_err(|source| TlsError::Read {
                path: path.to_owned(),
                source,
            })
        };
        let (ca_pem, cert_pem, key_pem) = (read(ca)?, read(cert)?, read(key)?);
        let name = |p: &Path| p.display().to_string();
        Self::load(
            Source::new(name(ca), ca_pem.as_bytes()),
            Source::new(name(cert), cert_pem.as_bytes()),
            Source::new(name(key), key_pem.as_bytes()),
            true,
        )
    }

    /// The node name: the first DNS subjectAltName of this node's certificate.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Loads without checking that the certificate verifies under the CA, to build a
    /// misconfigured peer in tests.
    #[cfg(test)]
    pub(crate) fn from_pem_unchecked(
        ca_pem: &str,
        cert_pem: &str,
        key_pem: &str,
    ) -> Result<Self, TlsError> {
        Self::load(
            Source::new("CA PEM", ca_pem.as_bytes()),
            Source::new("certificate PEM", cert_pem.as_bytes()),
            Source::new("key PEM", key_pem.as_bytes()),
            false,
        )
    }

    fn load(
        ca: Source<'_>,
        cert: Source<'_>,
        key: Source<'_>,
        verify: bool,
    ) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());

        let ca_certs = ca.certs()?;
        let mut roots = RootCertStore::empty();
        for der in ca_certs {
            roots.add(der).map_err(|e| TlsError::InvalidCa {
                source_name: ca.name.clone(),
                reason: e.to_string(),
            })?;
        }

        let chain = cert.certs()?;
        let name = chain
            .first()
            .and_then(|der| cert_name(der))
            .ok_or_else(|| TlsError::NoName {
                source_name: cert.name.clone(),
            })?;
        if verify {
            if let Some((end_entity, intermediates)) = chain.split_first() {
                verify_chain(
                    end_entity,
                    intermediates,
                    &roots,
                    &provider.signature_verification_algorithms,
                    UnixTime::now(),
                )
                .map_err(|e| TlsError::NotSignedByCa {
                    cert: cert.name.clone(),
                    ca: ca.name.clone(),
                    reason: e.to_string(),
                })?;
            }
        }

        let private_key = key.private_key()?;
        let certified = CertifiedKey::from_der(chain, private_key, &provider).map_err(|e| {
            TlsError::KeyMismatch {
                cert: cert.name.clone(),
                key: key.name.clone(),
                reason: e.to_string(),
            }
        })?;

        Ok(Self {
            name,
            roots: Arc::new(roots),
            key: Arc::new(certified),
            provider,
        })
    }

    /// The rustls server side: our certificate, client certificates required and
    /// verified against the CA.
    pub(crate) fn server_config(&self) -> Result<rustls::ServerConfig, TlsError> {
        let verifier =
            WebPkiClientVerifier::builder_with_provider(self.roots.clone(), self.provider.clone())
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(SingleCertAndKey::from(self.key.clone())));
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }

    /// The rustls client side: our certificate as client certificate, the server's
    /// chain verified against the CA whatever its name.
    pub(crate) fn client_config(&self) -> Result<rustls::ClientConfig, TlsError> {
        let verifier = CaVerifier {
            roots: self.roots.clone(),
            provider: self.provider.clone(),
        };
        let mut config = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(self.key.clone())));
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }
}

/// A PEM input and the name errors use for it.
struct Source<'a> {
    name: String,
    pem: &'a [u8],
}

impl<'a> Source<'a> {
    fn new(name: impl Into<String>, pem: &'a [u8]) -> Self {
        Self {
            name: name.into(),
            pem,
        }
    }

    fn certs(&self) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let certs = rustls_pemfile::certs(&mut &*self.pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| TlsError::Pem {
                source_name: self.name.clone(),
                source,
            })?;
        if certs.is_empty() {
            return Err(TlsError::NoCertificate {
                source_name: self.name.clone(),
            });
        }
        Ok(certs)
    }

    fn private_key(&self) -> Result<PrivateKeyDer<'static>, TlsError> {
        match rustls_pemfile::private_key(&mut &*self.pem) {
            Ok(Some(key)) => Ok(key),
            Ok(None) => Err(TlsError::NoPrivateKey {
                source_name: self.name.clone(),
            }),
            Err(source) => Err(TlsError::Pem {
                source_name: self.name.clone(),
                source,
            }),
        }
    }
}

/// The node name in a DER certificate: its first DNS subjectAltName. `None` if the
/// certificate does not parse or has no DNS name.
pub fn cert_name(cert_der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|name| match name {
        GeneralName::DNSName(dns) => Some((*dns).to_owned()),
        _ => None,
    })
}

/// Checks that `end_entity` chains to one of `roots` for `serverAuth`, at `now`.
fn verify_chain(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    roots: &RootCertStore,
    algorithms: &WebPkiSupportedAlgorithms,
    now: UnixTime,
) -> Result<(), rustls::Error> {
    let parsed = ParsedCertificate::try_from(end_entity)?;
    rustls::client::verify_server_cert_signed_by_trust_anchor(
        &parsed,
        roots,
        intermediates,
        now,
        algorithms.all,
    )
}

/// Verifies a server's certificate chain against the cluster CA and ignores the
/// server name: dialing a seed by address, the name is not known in advance. The
/// certificate must still carry a DNS name, which becomes the peer's identity.
#[derive(Debug)]
struct CaVerifier {
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for CaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        verify_chain(
            end_entity,
            intermediates,
            &self.roots,
            &self.provider.signature_verification_algorithms,
            now,
        )?;
        if cert_name(end_entity).is_none() {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName,
            ));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::{generate_ca, issue_node_cert, write_pair};

    fn der(pem: &str) -> CertificateDer<'static> {
        rustls_pemfile::certs(&mut pem.as_bytes())
            .next()
            .expect("a certificate")
            .expect("valid PEM")
    }

    #[test]
    fn identity_loads_and_names_itself_from_its_certificate() {
        let ca = generate_ca("c").expect("ca");
        let node = issue_node_cert(&ca, "n1").expect("node");
        let id =
            TlsIdentity::from_pem(&ca.cert_pem, &node.cert_pem, &node.key_pem).expect("identity");
        assert_eq!(id.name(), "n1");
        assert_eq!(cert_name(&der(&node.cert_pem)).as_deref(), Some("n1"));
        id.server_config().expect("server config");
        id.client_config().expect("client config");
    }

    #[test]
    fn a_certificate_from_another_ca_is_rejected() {
        let ca = generate_ca("c").expect("ca");
        let other = generate_ca("other").expect("ca");
        let stranger = issue_node_cert(&other, "n9").expect("node");

        let err = TlsIdentity::from_pem(&ca.cert_pem, &stranger.cert_pem, &stranger.key_pem)
            .expect_err("foreign certificate accepted");
        assert!(matches!(err, TlsError::NotSignedByCa { .. }), "{err}");

        // The dialing verifier refuses it too, whatever server name was asked for.
        let mut roots = RootCertStore::empty();
        roots.add(der(&ca.cert_pem)).expect("root");
        let verifier = CaVerifier {
            roots: Arc::new(roots),
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        };
        let name = ServerName::try_from("mesh").expect("name");
        assert!(verifier
            .verify_server_cert(&der(&stranger.cert_pem), &[], &name, &[], UnixTime::now())
            .is_err());
        let own = issue_node_cert(&ca, "n2").expect("n2");
        verifier
            .verify_server_cert(&der(&own.cert_pem), &[], &name, &[], UnixTime::now())
            .expect("own CA's certificate verifies, whatever the server name");
    }

    #[test]
    fn mismatched_key_is_rejected() {
        let ca = generate_ca("c").expect("ca");
        let a = issue_node_cert(&ca, "a").expect("a");
        let b = issue_node_cert(&ca, "b").expect("b");
        let err =
            TlsIdentity::from_pem(&ca.cert_pem, &a.cert_pem, &b.key_pem).expect_err("mismatch");
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
    }

    #[test]
    fn file_errors_name_the_file_and_the_problem() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = generate_ca("c").expect("ca");
        let node = issue_node_cert(&ca, "n1").expect("node");
        write_pair(dir.path(), "ca", &ca).expect("write");
        write_pair(dir.path(), "n1", &node).expect("write");
        let p = |f: &str| dir.path().join(f);

        let id = TlsIdentity::from_files(&p("ca.crt"), &p("n1.crt"), &p("n1.key")).expect("loads");
        assert_eq!(id.name(), "n1");

        let err = TlsIdentity::from_files(&p("missing.crt"), &p("n1.crt"), &p("n1.key"))
            .expect_err("missing");
        let msg = err.to_string();
        assert!(
            msg.starts_with("cannot read") && msg.contains("missing.crt"),
            "{msg}"
        );

        // A key where the certificate should be.
        let err =
            TlsIdentity::from_files(&p("ca.crt"), &p("n1.key"), &p("n1.key")).expect_err("no cert");
        let msg = err.to_string();
        assert!(
            msg.contains("no certificate found in") && msg.contains("n1.key"),
            "{msg}"
        );

        // A certificate where the key should be.
        let err =
            TlsIdentity::from_files(&p("ca.crt"), &p("n1.crt"), &p("n1.crt")).expect_err("no key");
        let msg = err.to_string();
        assert!(
            msg.contains("no private key found in") && msg.contains("n1.crt"),
            "{msg}"
        );
    }

    #[test]
    fn pem_bytes_in_memory_load_and_name_the_node() {
        let ca = generate_ca("c").expect("ca");
        let node = issue_node_cert(&ca, "n1").expect("node");
        let id = TlsIdentity::from_pem_bytes(
            ca.cert_pem.as_bytes(),
            node.cert_pem.as_bytes(),
            node.key_pem.as_bytes(),
        )
        .expect("identity from bytes");
        assert_eq!(id.name(), "n1");
        id.server_config().expect("server config");
        id.client_config().expect("client config");
    }

    #[test]
    fn garbage_pem_bytes_are_refused_naming_the_input() {
        let ca = generate_ca("c").expect("ca");
        let node = issue_node_cert(&ca, "n1").expect("node");
        let (ca_pem, cert, key) = (
            ca.cert_pem.as_bytes(),
            node.cert_pem.as_bytes(),
            node.key_pem.as_bytes(),
        );

        // No PEM section at all, and bytes that are not UTF-8.
        let err = TlsIdentity::from_pem_bytes(b"\xff\xfe not pem", cert, key).expect_err("ca");
        assert!(
            matches!(err, TlsError::NoCertificate { ref source_name } if source_name == "CA PEM"),
            "{err}"
        );
        assert_eq!(err.to_string(), "no certificate found in CA PEM");

        // A certificate section whose body is not base64.
        let broken = b"-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n";
        let err = TlsIdentity::from_pem_bytes(ca_pem, broken, key).expect_err("cert");
        assert!(
            matches!(err, TlsError::Pem { ref source_name, .. } if source_name == "certificate PEM"),
            "{err}"
        );
        assert!(
            err.to_string()
                .starts_with("malformed PEM in certificate PEM"),
            "{err}"
        );

        // A certificate where the key should be.
        let err = TlsIdentity::from_pem_bytes(ca_pem, cert, cert).expect_err("key");
        assert_eq!(err.to_string(), "no private key found in key PEM");

        // Another node's key.
        let other = issue_node_cert(&ca, "n2").expect("n2");
        let err = TlsIdentity::from_pem_bytes(ca_pem, cert, other.key_pem.as_bytes())
            .expect_err("mismatch");
        assert!(
            matches!(err, TlsError::KeyMismatch { ref cert, ref key, .. } if cert == "certificate PEM" && key == "key PEM"),
            "{err}"
        );
    }
}
