//! Certificates made at test time for TLS servers: a throwaway certificate authority and a
//! server certificate it signed, valid for `127.0.0.1` and `localhost` (also as a client
//! certificate, for the nodes of a TLS cluster). Nothing is committed
//! or read from the machine's trust store.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A certificate authority and a server certificate it signed (for `127.0.0.1` and
/// `localhost`), generated when first asked for and shared by the tests of one binary.
///
/// Clients trust the servers started with TLS by trusting [`TestCa::ca_pem`], for example
/// through [`TestCa::tls_certificates`] and `redis::Client::build_with_tls`.
#[derive(Debug)]
pub struct TestCa {
    ca_pem: String,
    server_cert_pem: String,
    server_key_pem: String,
}

/// Where a server's copies of the certificate files are.
#[derive(Debug)]
pub(crate) struct TlsFiles {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) ca: PathBuf,
}

impl TestCa {
    /// The certificates of this test binary, generated on first use.
    ///
    /// # Panics
    ///
    /// Generating a key or certificate fails.
    pub fn shared() -> &'static TestCa {
        static CA: OnceLock<TestCa> = OnceLock::new();
        CA.get_or_init(|| Self::generate().expect("cannot generate test certificates"))
    }

    fn generate() -> Result<Self, rcgen::Error> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "ruecache test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

        let mut server_params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])?;
        server_params
            .distinguished_name
            .push(DnType::CommonName, "ruecache test server");
        server_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        // Cluster nodes present this certificate to each other on the TLS cluster bus, where
        // the accepting node always asks for a client certificate.
        server_params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let server_key = KeyPair::generate()?;
        let server_cert = server_params.signed_by(&server_key, &ca)?;

        Ok(Self {
            ca_pem: ca.pem(),
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
        })
    }

    /// The CA certificate (PEM) that signed the servers' certificates.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// What `redis::Client::build_with_tls` needs to trust the test servers (and only them).
    pub fn tls_certificates(&self) -> redis::TlsCertificates {
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(self.ca_pem.as_bytes().to_vec()),
        }
    }

    /// Writes the server's certificate, key and the CA certificate into `dir` (a server's
    /// private directory), key readable by the owner only.
    pub(crate) fn write_server_files(&self, dir: &Path) -> io::Result<TlsFiles> {
        let files = TlsFiles {
            cert: dir.join("server.crt"),
            key: dir.join("server.key"),
            ca: ca_file(dir),
        };
        fs::write(&files.cert, &self.server_cert_pem)?;
        fs::write(&files.ca, &self.ca_pem)?;
        write_private(&files.key, self.server_key_pem.as_bytes())?;
        Ok(files)
    }
}

/// Where [`TestCa::write_server_files`] puts the CA certificate in a server's directory.
pub(crate) fn ca_file(dir: &Path) -> PathBuf {
    dir.join("ca.crt")
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?
        .write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    fs::write(path, bytes)
}
