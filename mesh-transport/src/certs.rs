//! Making and storing the cluster CA and node certificates (what `meshctl cert ca|issue`
//! runs).
//!
//! - [`generate_ca`] makes a self-signed CA that may sign node certificates only
//!   (path length 0).
//! - [`issue_node_cert`] makes a node certificate signed by that CA. The node name is
//!   the certificate's only DNS subjectAltName and its common name; the extended key
//!   usages are both `serverAuth` and `clientAuth`, because every node both accepts and
//!   dials.
//! - Validity: both start on January 1st of the previous calendar year (so that a clock
//!   a little behind is harmless) and end about ten years later. There is no rotation
//!   or revocation yet; re-issue before expiry.
//! - Keys are ECDSA P-256.

use std::fs;
use std::io;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// The longest node name accepted (a DNS label fits in 63 bytes); the rule lives in
/// `mesh-types`, shared with the sans-IO core.
pub use mesh_types::node_name::MAX_NODE_NAME_LEN;

/// How many years a certificate stays valid, counted from January 1st of this year.
const VALIDITY_YEARS: i32 = 10;

/// A PEM certificate and its PEM private key.
#[derive(Clone, PartialEq, Eq)]
pub struct CertPair {
    /// The certificate, PEM (`-----BEGIN CERTIFICATE-----`).
    pub cert_pem: String,
    /// The private key, PEM (PKCS#8 `-----BEGIN PRIVATE KEY-----`).
    pub key_pem: String,
}

impl std::fmt::Debug for CertPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key.
        f.debug_struct("CertPair")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// Why a certificate could not be made, written or read. Every failure leaves files
/// already on disk as they were, except where a variant says otherwise.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The node name cannot be a certificate DNS name. Nothing was generated.
    #[error(
        "node name {0:?} is not valid: use 1 to 63 letters, digits, '-' or '.', starting and ending with a letter or digit"
    )]
    InvalidName(String),
    /// The cluster name is empty. Nothing was generated.
    #[error("cluster name is empty")]
    EmptyClusterName,
    /// The CA certificate or key given to [`issue_node_cert`] is unusable. Nothing was
    /// generated.
    #[error("CA is unusable: {0}")]
    InvalidCa(String),
    /// rcgen refused to generate a key or certificate. Nothing was generated.
    #[error("cannot generate certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// The directory could not be created. Nothing was written.
    #[error("cannot create directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A file could not be written. A temporary `*.tmp` file may be left beside it; the
    /// target file itself is either unchanged or complete.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A file holds no PEM block of the expected kind.
    #[error("no {what} found in {path}")]
    Missing {
        /// What was looked for ("certificate" or "private key").
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
}

/// Checks that `name` can be a node name: 1 to 63 bytes of `[A-Za-z0-9.-]`, starting
/// and ending with a letter or digit, so it is also a valid DNS name in a certificate.
pub fn validate_node_name(name: &str) -> Result<(), CertError> {
    if mesh_types::node_name::is_valid_node_name(name) {
        Ok(())
    } else {
        Err(CertError::InvalidName(name.to_owned()))
    }
}

/// Makes a self-signed cluster CA named after `cluster_name`. It may sign node
/// certificates but no further CAs.
pub fn generate_ca(cluster_name: &str) -> Result<CertPair, CertError> {
    if cluster_name.trim().is_empty() {
        return Err(CertError::EmptyClusterName);
    }
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "mesh");
    params
        .distinguished_name
        .push(DnType::CommonName, format!("mesh CA {cluster_name}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params);
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok(CertPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Makes a certificate for `node_name` signed by `ca`: the name is the only DNS
/// subjectAltName and the common name; extended key usages are `serverAuth` and
/// `clientAuth`.
pub fn issue_node_cert(ca: &CertPair, node_name: &str) -> Result<CertPair, CertError> {
    validate_node_name(node_name)?;
    let ca_key = KeyPair::from_pem(&ca.key_pem)
        .map_err(|e| CertError::InvalidCa(format!("cannot parse the CA private key: {e}")))?;
    check_ca(&ca.cert_pem, &ca_key)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key)
        .map_err(|e| CertError::InvalidCa(format!("cannot parse the CA certificate: {e}")))?;

    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, node_name);
    // Built by hand rather than with `CertificateParams::new`, which would turn a name
    // that parses as an IP address into an IP SAN.
    let dns = node_name
        .try_into()
        .map_err(|_| CertError::InvalidName(node_name.to_owned()))?;
    params.subject_alt_names = vec![SanType::DnsName(dns)];
    params.is_ca = IsCa::NoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(CertPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Checks that the CA certificate is a CA and belongs to `key`, so that a mixed-up
/// pair fails here rather than as unverifiable node certificates later.
fn check_ca(cert_pem: &str, key: &KeyPair) -> Result<(), CertError> {
    let der = rustls_pemfile::certs(&mut cert_pem.as_bytes())
        .next()
        .and_then(Result::ok)
        .ok_or_else(|| CertError::InvalidCa("no certificate in the CA PEM".to_owned()))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| CertError::InvalidCa(format!("cannot parse the CA certificate: {e}")))?;
    if !cert.is_ca() {
        return Err(CertError::InvalidCa(
            "the certificate is not a CA (basicConstraints cA is not set)".to_owned(),
        ));
    }
    if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err(CertError::InvalidCa(
            "the private key does not belong to the CA certificate".to_owned(),
        ));
    }
    Ok(())
}

fn set_validity(params: &mut CertificateParams) {
    let year = current_year();
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + VALIDITY_YEARS, 1, 1);
}

/// The current calendar year, give or take a day at new year (which the validity
/// margins absorb).
fn current_year() -> i32 {
    const SECS_PER_YEAR: u64 = 31_556_952; // 365.2425 days
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Clamped to years rcgen's date helper accepts.
    1970 + i32::try_from(secs / SECS_PER_YEAR).unwrap_or(0).min(7000)
}

/// The certificate and key paths for `basename` in `dir`: `dir/basename.crt` and
/// `dir/basename.key`.
pub fn pair_paths(dir: &Path, basename: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{basename}.crt")),
        dir.join(format!("{basename}.key")),
    )
}

/// Writes `dir/basename.crt` and `dir/basename.key`, creating `dir` if needed. The key
/// file is readable by its owner only (mode 0600 on unix). Each file is written to a
/// temporary name and renamed into place, so a reader never sees half a file.
pub fn write_pair(dir: &Path, basename: &str, pair: &CertPair) -> Result<(), CertError> {
    fs::create_dir_all(dir).map_err(|source| CertError::CreateDir {
        path: dir.to_owned(),
        source,
    })?;
    let (cert_path, key_path) = pair_paths(dir, basename);
    write_file(&key_path, pair.key_pem.as_bytes(), true)?;
    write_file(&cert_path, pair.cert_pem.as_bytes(), false)?;
    Ok(())
}

fn write_file(path: &Path, contents: &[u8], secret: bool) -> Result<(), CertError> {
    let err = |source| CertError::Write {
        path: path.to_owned(),
        source,
    };
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(err)?;
    #[cfg(unix)]
    if secret {
        // `mode` only applies when the file is created; a stale temp file keeps its
        // old permissions unless they are set again.
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(err)?;
    }
    #[cfg(not(unix))]
    let _ = secret;
    file.write_all(contents).map_err(err)?;
    file.sync_all().map_err(err)?;
    drop(file);
    fs::rename(&tmp, path).map_err(err)
}

/// Reads `dir/basename.crt` and `dir/basename.key` back, checking that each holds a PEM
/// block of the right kind.
pub fn read_pair(dir: &Path, basename: &str) -> Result<CertPair, CertError> {
    let (cert_path, key_path) = pair_paths(dir, basename);
    let read = |path: &Path| {
        fs::read_to_string(path).map_err(|source| CertError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let cert_pem = read(&cert_path)?;
    let key_pem = read(&key_path)?;
    let has_cert = rustls_pemfile::certs(&mut cert_pem.as_bytes()).any(|c| c.is_ok());
    if !has_cert {
        return Err(CertError::Missing {
            what: "certificate",
            path: cert_path,
        });
    }
    if !matches!(
        rustls_pemfile::private_key(&mut key_pem.as_bytes()),
        Ok(Some(_))
    ) {
        return Err(CertError::Missing {
            what: "private key",
            path: key_path,
        });
    }
    Ok(CertPair { cert_pem, key_pem })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::cert_name;

    fn first_der(pem: &str) -> Vec<u8> {
        rustls_pemfile::certs(&mut pem.as_bytes())
            .next()
            .expect("one certificate")
            .expect("valid PEM")
            .to_vec()
    }

    #[test]
    fn node_cert_carries_its_name_and_the_ca_as_issuer() {
        let ca = generate_ca("test").expect("ca");
        let node = issue_node_cert(&ca, "n1.example").expect("node");
        let der = first_der(&node.cert_pem);
        assert_eq!(cert_name(&der).as_deref(), Some("n1.example"));

        let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("parse");
        let ca_der = first_der(&ca.cert_pem);
        let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca_der).expect("parse ca");
        assert_eq!(cert.issuer(), ca_cert.subject());
        assert!(!cert.is_ca());
        assert!(ca_cert.is_ca());
        let eku = cert
            .extended_key_usage()
            .expect("eku parses")
            .expect("eku present")
            .value;
        assert!(eku.server_auth && eku.client_auth);
        // About ten years.
        let days = (cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp())
            / 86_400;
        assert!((3650..=4100).contains(&days), "validity {days} days");
    }

    #[test]
    fn a_name_that_looks_like_an_ip_is_still_a_dns_name() {
        let ca = generate_ca("test").expect("ca");
        let node = issue_node_cert(&ca, "10.0.0.1").expect("node");
        assert_eq!(
            cert_name(&first_der(&node.cert_pem)).as_deref(),
            Some("10.0.0.1")
        );
    }

    #[test]
    fn bad_names_and_bad_cas_are_refused() {
        let ca = generate_ca("test").expect("ca");
        for bad in ["", "-a", "a-", "a b", "é", &"a".repeat(64)] {
            assert!(
                matches!(issue_node_cert(&ca, bad), Err(CertError::InvalidName(_))),
                "{bad:?} accepted"
            );
        }
        let other = generate_ca("other").expect("ca");
        let mixed = CertPair {
            cert_pem: ca.cert_pem.clone(),
            key_pem: other.key_pem.clone(),
        };
        assert!(matches!(
            issue_node_cert(&mixed, "n1"),
            Err(CertError::InvalidCa(_))
        ));
        let node = issue_node_cert(&ca, "n1").expect("node");
        assert!(matches!(
            issue_node_cert(&node, "n2"),
            Err(CertError::InvalidCa(_))
        ));
        assert!(matches!(generate_ca(" "), Err(CertError::EmptyClusterName)));
    }

    #[test]
    fn pairs_round_trip_through_files_with_a_private_key_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sub = dir.path().join("certs");
        let ca = generate_ca("test").expect("ca");
        write_pair(&sub, "ca", &ca).expect("write");
        assert_eq!(read_pair(&sub, "ca").expect("read"), ca);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(sub.join("ca.key"))
                .expect("stat")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn reading_names_the_missing_or_empty_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = read_pair(dir.path(), "nope").expect_err("missing");
        assert!(err.to_string().contains("nope.crt"), "{err}");

        fs::write(dir.path().join("x.crt"), "not pem").expect("write");
        fs::write(dir.path().join("x.key"), "not pem").expect("write");
        let err = read_pair(dir.path(), "x").expect_err("empty");
        assert!(
            err.to_string().contains("no certificate found in")
                && err.to_string().contains("x.crt"),
            "{err}"
        );
    }
}
