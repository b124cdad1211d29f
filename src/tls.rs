//! TLS material: self-signed certificates from rcgen, and rustls configurations for servers and pinned clients.

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use std::path::Path;
use std::sync::Arc;

/// SHA-256 of a certificate (DER), hex: how directory records and
/// revocations name certificates (the directory, its authority and s2s use it).
pub fn cert_sha256(der: &[u8]) -> String {
    intercloud_actors::credentials::ScramHash::Sha256
        .hash(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    #[error("no certificate in {0}")]
    NoCert(String),
    #[error("no private key in {0}")]
    NoKey(String),
    #[error("certificate generation: {0}")]
    Gen(#[from] rcgen::Error),
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("cannot write {0}: {1}")]
    Write(String, std::io::Error),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Writes a self-signed certificate for `domain` (and `*.domain`), usable
/// for both ends of mutual TLS (serverAuth + clientAuth).
pub fn generate_self_signed(domain: &str, cert: &Path, key: &Path) -> Result<(), TlsError> {
    use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair};
    let mut params = CertificateParams::new(vec![domain.to_string(), format!("*.{domain}")])?;
    params.distinguished_name.push(DnType::CommonName, domain);
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.not_before = rcgen::date_time_ymd(2025, 1, 1);
    params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let kp = KeyPair::generate()?;
    let c = params.self_signed(&kp)?;
    for (path, pem) in [(cert, c.pem()), (key, kp.serialize_pem())] {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| TlsError::Write(dir.display().to_string(), e))?;
        }
        std::fs::write(path, pem).map_err(|e| TlsError::Write(path.display().to_string(), e))?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o600));
    }
    Ok(())
}

/// Reads every certificate of a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let data = std::fs::read(path).map_err(|e| TlsError::Read(path.display().to_string(), e))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut data.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Read(path.display().to_string(), e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCert(path.display().to_string()));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let data = std::fs::read(path).map_err(|e| TlsError::Read(path.display().to_string(), e))?;
    rustls_pemfile::private_key(&mut data.as_slice())
        .map_err(|e| TlsError::Read(path.display().to_string(), e))?
        .ok_or_else(|| TlsError::NoKey(path.display().to_string()))
}

/// The server side of STARTTLS.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs = load_certs(cert)?;
    let key = load_key(key)?;
    let cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(Arc::new(cfg))
}

/// A client configuration that accepts exactly one server certificate
/// (a pinned self-signed certificate), whatever name it is asked for.
pub fn pinned_client_config(pinned: CertificateDer<'static>) -> Arc<rustls::ClientConfig> {
    client_config(Some(pinned))
}

/// A client configuration that accepts any server certificate (the load
/// generator against servers with self-signed certificates; the handshake
/// signature is still checked).
pub fn any_server_client_config() -> Arc<rustls::ClientConfig> {
    client_config(None)
}

fn client_config(pinned: Option<CertificateDer<'static>>) -> Arc<rustls::ClientConfig> {
    let p = provider();
    let verifier = Arc::new(ServerCert {
        pinned,
        algs: p.signature_verification_algorithms,
    });
    let cfg = rustls::ClientConfig::builder_with_provider(p)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Arc::new(cfg)
}

/// Creates a certificate authority (for test federations, and later the trust authority).
pub fn generate_ca(name: &str, cert: &Path, key: &Path) -> Result<(), TlsError> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = rcgen::date_time_ymd(2025, 1, 1);
    params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let kp = KeyPair::generate()?;
    let c = params.self_signed(&kp)?;
    write_pair(cert, &c.pem(), key, &kp.serialize_pem())
}

/// Issues a certificate for `domain` signed by the CA at `ca_cert`/`ca_key`,
/// for both ends of mutual TLS.
pub fn issue(
    ca_cert: &Path,
    ca_key: &Path,
    domain: &str,
    cert: &Path,
    key: &Path,
) -> Result<(), TlsError> {
    use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair};
    let ca_key_pem = std::fs::read_to_string(ca_key)
        .map_err(|e| TlsError::Read(ca_key.display().to_string(), e))?;
    let ca_kp = KeyPair::from_pem(&ca_key_pem)?;
    let ca_pem = std::fs::read_to_string(ca_cert)
        .map_err(|e| TlsError::Read(ca_cert.display().to_string(), e))?;
    let ca_params = CertificateParams::from_ca_cert_pem(&ca_pem)?;
    let ca = ca_params.self_signed(&ca_kp)?;
    let mut params = CertificateParams::new(vec![domain.to_string(), format!("*.{domain}")])?;
    params.distinguished_name.push(DnType::CommonName, domain);
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.not_before = rcgen::date_time_ymd(2025, 1, 1);
    params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let kp = KeyPair::generate()?;
    let c = params.signed_by(&kp, &ca, &ca_kp)?;
    write_pair(cert, &c.pem(), key, &kp.serialize_pem())
}

fn write_pair(cert: &Path, cert_pem: &str, key: &Path, key_pem: &str) -> Result<(), TlsError> {
    for (path, pem) in [(cert, cert_pem), (key, key_pem)] {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| TlsError::Write(dir.display().to_string(), e))?;
        }
        std::fs::write(path, pem).map_err(|e| TlsError::Write(path.display().to_string(), e))?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o600));
    }
    Ok(())
}

/// Checks a peer's certificate chain against `roots` and its name against `domain` (XEP-0178).
pub fn verify_peer(
    chain: &[CertificateDer<'_>],
    roots: &rustls::RootCertStore,
    domain: &str,
) -> Result<(), rustls::Error> {
    let Some((ee, intermediates)) = chain.split_first() else {
        return Err(rustls::Error::NoCertificatesPresented);
    };
    if roots.is_empty() {
        return Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        ));
    }
    let parsed = rustls::server::ParsedCertificate::try_from(ee)?;
    rustls::client::verify_server_cert_signed_by_trust_anchor(
        &parsed,
        roots,
        intermediates,
        UnixTime::now(),
        provider().signature_verification_algorithms.all,
    )?;
    let name = ServerName::try_from(domain.to_string())
        .map_err(|_| rustls::Error::General(format!("bad domain {domain}")))?;
    rustls::client::verify_server_name(&parsed, &name)
}

/// A node's s2s certificate and key, replaceable while the node runs (a
/// certificate from the trust authority, then its renewals): new handshakes
/// use the new one, established streams keep theirs.
#[derive(Debug)]
pub struct Identity {
    current: std::sync::RwLock<Arc<rustls::sign::CertifiedKey>>,
}

impl Identity {
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Identity>, TlsError> {
        Ok(Arc::new(Identity {
            current: std::sync::RwLock::new(certified_key(cert, key)?),
        }))
    }

    /// Switches to another certificate and key.
    pub fn reload(&self, cert: &Path, key: &Path) -> Result<(), TlsError> {
        let k = certified_key(cert, key)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = k;
        Ok(())
    }

    fn get(&self) -> Arc<rustls::sign::CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The end-entity certificate presented now.
    pub fn cert(&self) -> CertificateDer<'static> {
        self.get().cert[0].clone()
    }
}

fn certified_key(cert: &Path, key: &Path) -> Result<Arc<rustls::sign::CertifiedKey>, TlsError> {
    let signing = provider().key_provider.load_private_key(load_key(key)?)?;
    Ok(Arc::new(rustls::sign::CertifiedKey::new(
        load_certs(cert)?,
        signing,
    )))
}

impl rustls::server::ResolvesServerCert for Identity {
    fn resolve(
        &self,
        _: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.get())
    }
}

impl rustls::client::ResolvesClientCert for Identity {
    fn resolve(
        &self,
        _: &[&[u8]],
        _: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.get())
    }
    fn has_certs(&self) -> bool {
        true
    }
}

/// The trust anchors of SASL EXTERNAL: CA files from the config plus the
/// roots' trust authorities learnt from the directory, replaceable at run time.
#[derive(Debug)]
pub struct Anchors {
    fixed: Vec<CertificateDer<'static>>,
    current: std::sync::RwLock<Arc<rustls::RootCertStore>>,
    /// Woken when a peer's certificate did not chain to what we trust: the
    /// directory may know a trust authority we have not learnt yet.
    refresh: tokio::sync::Notify,
}

impl Anchors {
    pub fn load(paths: &[std::path::PathBuf]) -> Result<Arc<Anchors>, TlsError> {
        let mut fixed = Vec::new();
        for p in paths {
            fixed.extend(load_certs(p)?);
        }
        let a = Anchors {
            fixed,
            current: std::sync::RwLock::new(Arc::new(rustls::RootCertStore::empty())),
            refresh: tokio::sync::Notify::new(),
        };
        a.set_learnt(&[]);
        Ok(Arc::new(a))
    }

    /// Replaces the CA certificates learnt from the directory (PEM); returns how many anchors there are now.
    pub fn set_learnt(&self, pems: &[String]) -> usize {
        let mut roots = rustls::RootCertStore::empty();
        for c in &self.fixed {
            let _ = roots.add(c.clone());
        }
        for pem in pems {
            for c in rustls_pemfile::certs(&mut pem.as_bytes()).flatten() {
                if let Err(e) = roots.add(c) {
                    tracing::warn!(error = %e, "unusable trust authority certificate");
                }
            }
        }
        let n = roots.len();
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(roots);
        n
    }

    /// Asks whoever keeps the learnt anchors to fetch them again soon.
    pub fn want_refresh(&self) {
        self.refresh.notify_one();
    }

    /// Returns when a refresh was asked for (since the last call).
    pub async fn refresh_wanted(&self) {
        self.refresh.notified().await
    }

    pub fn current(&self) -> Arc<rustls::RootCertStore> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Server side of s2s TLS: asks for a client certificate but accepts any at
/// the TLS layer (dialback peers have self-signed ones); SASL EXTERNAL checks
/// it afterwards with `verify_peer`.
pub fn s2s_server_config(identity: Arc<Identity>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let p = provider();
    let v = Arc::new(AnyClientCert {
        algs: p.signature_verification_algorithms,
    });
    let mut cfg = rustls::ServerConfig::builder_with_provider(p)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(v)
        .with_cert_resolver(identity);
    // No resumption: a resumed session carries the certificate of the first
    // handshake, but ours change at run time (enrollment, renewal, learnt
    // authorities) and SASL EXTERNAL must see the current one.
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    cfg.send_tls13_tickets = 0;
    Ok(Arc::new(cfg))
}

/// Client side of s2s TLS: presents our certificate; the server's is checked
/// after the handshake (`verify_peer`) when SASL EXTERNAL is used.
pub fn s2s_client_config(identity: Arc<Identity>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let p = provider();
    let v = Arc::new(ServerCert {
        pinned: None,
        algs: p.signature_verification_algorithms,
    });
    let mut cfg = rustls::ClientConfig::builder_with_provider(p)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(v)
        .with_client_cert_resolver(identity);
    // As on the server side: every link presents the current certificate.
    cfg.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(cfg))
}

/// Accepts any client certificate, still checking the handshake signature.
#[derive(Debug)]
struct AnyClientCert {
    algs: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl rustls::server::danger::ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// Checks a server's certificate at the TLS layer: either exactly one pinned
/// certificate, or (s2s) any, left to `verify_peer` after the handshake.
/// The handshake signature is always checked.
#[derive(Debug)]
struct ServerCert {
    pinned: Option<CertificateDer<'static>>,
    algs: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl rustls::client::danger::ServerCertVerifier for ServerCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        match &self.pinned {
            Some(p) if p.as_ref() != end_entity.as_ref() => Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            )),
            _ => Ok(rustls::client::danger::ServerCertVerified::assertion()),
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algs.supported_schemes()
    }
}
