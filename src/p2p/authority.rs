//! The trust authority a root holds: its CA (rcgen), the enrollment decision (token, approval or renewal), and certificate issuance.

use intercloud_actors::directory::enrollment::SignedEnrollment;
use intercloud_actors::directory::record::{public_key, Body, Record, SignedRecord, VERSION};
use intercloud_actors::directory::zone::Zone;
use std::path::Path;
use std::time::Duration;

/// Largest certificate signing request accepted, in bytes.
const MAX_CSR: usize = 16 * 1024;
/// How far an enrollment request's clock may be from ours.
const MAX_SKEW_SECS: u64 = 600;

#[derive(Debug, thiserror::Error)]
pub enum AuthorityError {
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("certificate: {0}")]
    Gen(#[from] rcgen::Error),
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    #[error("bad certificate request: {0}")]
    Csr(String),
}

/// What the authority does with an enrollment request.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Issue a certificate; `renewal` when the holder already had a valid one.
    Issue {
        renewal: bool,
    },
    /// Wait for an administrator's approval (`intercloud directory approve`).
    Pending,
    Refuse(String),
}

/// A certificate the authority issued.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate and the CA's, PEM.
    pub chain_pem: String,
    pub cert_sha256: String,
    pub not_after: u64,
}

/// A root's trust authority.
pub struct Authority {
    domain: String,
    ca_pem: String,
    ca: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
    validity: Duration,
    tokens: Vec<String>,
    signer: ed25519_dalek::SigningKey,
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Compares without leaking where two secrets differ.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Authority {
    /// Loads the CA from `ca_cert`/`ca_key`, creating it on first use.
    pub fn load_or_create(
        domain: &str,
        ca_cert: &Path,
        ca_key: &Path,
        validity: Duration,
        tokens: Vec<String>,
        signer: ed25519_dalek::SigningKey,
    ) -> Result<Authority, AuthorityError> {
        if !ca_cert.exists() || !ca_key.exists() {
            crate::tls::generate_ca(
                &format!("Intercloud trust authority {domain}"),
                ca_cert,
                ca_key,
            )?;
            tracing::info!(path = %ca_cert.display(), "trust authority CA created");
        }
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|e| AuthorityError::Read(p.display().to_string(), e))
        };
        let ca_pem = read(ca_cert)?;
        let ca_key = rcgen::KeyPair::from_pem(&read(ca_key)?)?;
        // The issuer as rcgen needs it: same name and key as the stored CA certificate.
        let ca = rcgen::CertificateParams::from_ca_cert_pem(&ca_pem)?.self_signed(&ca_key)?;
        Ok(Authority {
            domain: domain.to_string(),
            ca_pem,
            ca,
            ca_key,
            validity,
            tokens,
            signer,
        })
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    fn sign(&self, domain: &str, body: Body, ttl: u32) -> SignedRecord {
        root_record(&self.signer, domain, body, ttl)
    }

    /// The zone record publishing this CA as a trust anchor.
    pub fn authority_record(&self) -> SignedRecord {
        self.sign(
            &self.domain,
            Body::Authority {
                ca_pem: self.ca_pem.clone(),
            },
            3600,
        )
    }

    /// Whether `domain`, for the holder of `key`, may get a certificate.
    pub fn decide(&self, zone: &Zone, req: &SignedEnrollment, now: u64) -> Decision {
        if let Err(e) = req.verify() {
            return Decision::Refuse(format!("enrollment request: {e}"));
        }
        let e = &req.enrollment;
        if e.time.abs_diff(now) > MAX_SKEW_SECS {
            return Decision::Refuse("enrollment request too old or from the future".into());
        }
        if e.csr_pem.len() > MAX_CSR {
            return Decision::Refuse("certificate request too large".into());
        }
        if let Some(Body::Revocation { revoked_key, .. }) =
            zone.revocation(&e.domain).map(|r| &r.record.body)
        {
            if *revoked_key == e.key {
                return Decision::Refuse(format!("{}: that key was revoked", e.domain));
            }
        }
        match zone.get(&e.domain) {
            Some(r) if matches!(r.record.body, Body::Delegation { .. }) => {
                return Decision::Refuse(format!("{} is a delegated zone", e.domain))
            }
            Some(r) if r.record.key != e.key => {
                return Decision::Refuse(format!("{} is held by another key", e.domain))
            }
            _ => {}
        }
        let renewal = match zone.certificate(&e.domain).map(|r| &r.record.body) {
            Some(Body::Certificate {
                holder_key,
                not_after,
                ..
            }) if *holder_key == e.key => *not_after > now,
            _ => false,
        };
        if renewal {
            return Decision::Issue { renewal: true };
        }
        if e.domain == self.domain && e.key == public_key(&self.signer) {
            // A root certifies itself.
            return Decision::Issue { renewal: false };
        }
        if let Some(t) = &e.token {
            let ok = self
                .tokens
                .iter()
                .any(|allowed| match allowed.split_once(':') {
                    Some((d, secret)) => {
                        d.eq_ignore_ascii_case(&e.domain) && same_secret(secret, t)
                    }
                    None => same_secret(allowed, t),
                });
            return if ok {
                Decision::Issue { renewal: false }
            } else {
                Decision::Refuse("bad enrollment token".into())
            };
        }
        match zone.approval(&e.domain).map(|r| &r.record.body) {
            Some(Body::Approval { holder_key }) if *holder_key == e.key => {
                Decision::Issue { renewal: false }
            }
            _ => Decision::Pending,
        }
    }

    /// Signs a certificate for exactly the request's domain, for the key in its CSR.
    pub fn issue(&self, req: &SignedEnrollment, now: u64) -> Result<Issued, AuthorityError> {
        use rcgen::{DnType, ExtendedKeyUsagePurpose, SanType};
        let e = &req.enrollment;
        // Parsing checks the CSR's own signature: the cloud holds the TLS key.
        let mut csr = rcgen::CertificateSigningRequestParams::from_pem(&e.csr_pem)
            .map_err(|err| AuthorityError::Csr(err.to_string()))?;
        // What the CSR asks for beyond its key does not matter: the
        // authority decides the name, usages and validity.
        let mut p = rcgen::CertificateParams::default();
        p.subject_alt_names = vec![SanType::DnsName(
            e.domain
                .clone()
                .try_into()
                .map_err(|_| AuthorityError::Csr("domain".into()))?,
        )];
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, &e.domain);
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let not_after = now + self.validity.as_secs().max(1);
        let at = |t: u64| {
            time::OffsetDateTime::from_unix_timestamp(t as i64)
                .map_err(|err| AuthorityError::Csr(err.to_string()))
        };
        p.not_before = at(now.saturating_sub(1))?;
        p.not_after = at(not_after)?;
        let mut serial = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut serial);
        serial[0] &= 0x7f;
        p.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        csr.params = p;
        let cert = csr.signed_by(&self.ca, &self.ca_key)?;
        Ok(Issued {
            chain_pem: format!("{}{}", cert.pem(), self.ca_pem),
            cert_sha256: crate::tls::cert_sha256(cert.der()),
            not_after,
        })
    }

    /// The zone record stating that a certificate was issued.
    pub fn certificate_record(
        &self,
        req: &SignedEnrollment,
        issued: &Issued,
        renewal: bool,
    ) -> SignedRecord {
        self.sign(
            &req.enrollment.domain,
            Body::Certificate {
                holder_key: req.enrollment.key.clone(),
                cert_sha256: issued.cert_sha256.clone(),
                not_after: issued.not_after,
                renewal,
            },
            60,
        )
    }
}

/// A statement a root signs (authority, certificate, approval, revocation,
/// delegation), its serial the current time.
pub fn root_record(
    signer: &ed25519_dalek::SigningKey,
    domain: &str,
    body: Body,
    ttl: u32,
) -> SignedRecord {
    Record {
        v: VERSION,
        domain: domain.to_ascii_lowercase(),
        serial: now().max(1),
        ttl,
        key: String::new(),
        body,
    }
    .sign(signer)
}

/// A certificate signing request for `domain` and the new key it carries (PEM).
pub fn csr(domain: &str) -> Result<(String, String), AuthorityError> {
    let mut p = rcgen::CertificateParams::new(vec![domain.to_string()])?;
    p.distinguished_name.push(rcgen::DnType::CommonName, domain);
    let kp = rcgen::KeyPair::generate()?;
    let req = p.serialize_request(&kp)?;
    Ok((req.pem()?, kp.serialize_pem()))
}

/// The validity window (seconds since the epoch) of the first certificate in a PEM file.
pub fn validity(pem: &str) -> Option<(u64, u64)> {
    let der = rustls_pemfile::certs(&mut pem.as_bytes()).next()?.ok()?;
    let (_, c) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let v = c.validity();
    Some((
        v.not_before.timestamp().max(0) as u64,
        v.not_after.timestamp().max(0) as u64,
    ))
}
