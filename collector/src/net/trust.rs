//! Which node certificates the collector takes: those signed by the
//! `--client-ca` and not revoked by a `--tls-client-crl`, checked by one
//! verifier that rustls keeps for the server's life, whose CA and CRLs
//! `reload` (SIGHUP) replaces as a whole. A reload keeps open
//! connections, but their next request checks the certificate they showed
//! again (`Shown`): a node revoked since its handshake is answered 403 and
//! its connection closed, so a kept-alive connection outlives no revocation.

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{VerifierBuilderError, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("{0}")]
    File(#[from] bounce_client::ClientError),
    #[error("{0}: {1}")]
    ClientCa(PathBuf, String),
    #[error("{0}: {1}")]
    Crl(PathBuf, String),
}

/// The client CA and the CRLs, as files and as the verifier made of them.
#[derive(Debug)]
pub struct ClientTrust {
    ca: PathBuf,
    crl: Option<PathBuf>,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<dyn ClientCertVerifier>>,
    /// How many times it was reloaded: a connection verified at an older
    /// count checks its certificate again.
    generation: AtomicU64,
}

impl ClientTrust {
    /// Reads both files; an error names the file and what is wrong with it.
    pub fn load(
        ca: &Path,
        crl: Option<&Path>,
        provider: Arc<CryptoProvider>,
    ) -> Result<ClientTrust, TrustError> {
        let current = RwLock::new(verifier(ca, crl, &provider)?);
        Ok(ClientTrust {
            ca: ca.into(),
            crl: crl.map(Into::into),
            provider,
            current,
            generation: AtomicU64::new(0),
        })
    }

    /// Reads both files again; on any error the current CA and CRLs stay.
    pub fn reload(&self) -> Result<(), TrustError> {
        let fresh = verifier(&self.ca, self.crl.as_deref(), &self.provider)?;
        *self.current.write().unwrap() = fresh;
        self.generation.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// What SIGHUP says it reloaded.
    pub fn files(&self) -> String {
        match &self.crl {
            None => self.ca.display().to_string(),
            Some(crl) => format!("{} and {}", self.ca.display(), crl.display()),
        }
    }

    fn now(&self) -> Arc<dyn ClientCertVerifier> {
        self.current.read().unwrap().clone()
    }
}

/// The certificate chain a connection showed in its handshake, and the
/// reload it was last found good at.
pub struct Shown {
    trust: Arc<ClientTrust>,
    chain: Vec<CertificateDer<'static>>,
    good_at: AtomicU64,
}

impl Shown {
    /// What `conn` showed (verified in its handshake), if anything.
    pub fn of(trust: Arc<ClientTrust>, conn: &rustls::ServerConnection) -> Option<Shown> {
        let chain = conn.peer_certificates()?.to_vec();
        let good_at = AtomicU64::new(trust.generation.load(Ordering::SeqCst));
        Some(Shown {
            trust,
            chain,
            good_at,
        })
    }

    /// Whether the CA and CRLs read now still take it (checked again only
    /// after a reload); why not, in words.
    pub fn still_trusted(&self) -> Result<(), String> {
        let now = self.trust.generation.load(Ordering::SeqCst);
        if self.good_at.load(Ordering::SeqCst) == now {
            return Ok(());
        }
        let (leaf, rest) = self.chain.split_first().ok_or("no certificate")?;
        match self.trust.verify_client_cert(leaf, rest, UnixTime::now()) {
            Ok(_) => {
                self.good_at.store(now, Ordering::SeqCst);
                Ok(())
            }
            Err(e) => Err(format!(
                "the node certificate this connection showed is no longer trusted ({e}; the client CA or CRLs were reloaded since it connected)"
            )),
        }
    }
}

fn verifier(
    ca: &Path,
    crl: Option<&Path>,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TrustError> {
    let mut roots = RootCertStore::empty();
    for c in bounce_client::read_certs(ca)? {
        roots
            .add(c)
            .map_err(|e| TrustError::ClientCa(ca.into(), e.to_string()))?;
    }
    let mut builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            // Admins and Prometheus come with tokens, not certificates.
            .allow_unauthenticated()
            // A node's certificate is what gets revoked; a CA that should no
            // longer sign is taken out of --client-ca.
            .only_check_end_entity_revocation();
    if let Some(path) = crl {
        builder = builder.with_crls(read_crls(path)?);
    }
    builder.build().map_err(|e| match (e, crl) {
        (VerifierBuilderError::InvalidCrl(why), Some(path)) => {
            TrustError::Crl(path.into(), format!("a CRL that does not parse: {why:?}"))
        }
        (e, _) => TrustError::ClientCa(ca.into(), e.to_string()),
    })
}

/// Every CRL in a PEM file (`X509 CRL` blocks); at least one. Checked
/// further (DER, version, extensions) by the verifier's builder.
fn read_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TrustError> {
    let crls = CertificateRevocationListDer::pem_file_iter(path)
        .map_err(|e| TrustError::Crl(path.into(), format!("cannot read: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TrustError::Crl(path.into(), format!("not PEM: {e}")))?;
    if crls.is_empty() {
        return Err(TrustError::Crl(
            path.into(),
            "holds no X509 CRL block (PEM)".into(),
        ));
    }
    Ok(crls)
}

impl ClientCertVerifier for ClientTrust {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    /// No hints: they would have to outlive a reload. A client then shows
    /// whatever certificate it has, which is what agents do anyway.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.now()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.now().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.now().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.now().supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer,
        IsCa, KeyIdMethod, KeyPair, RevokedCertParams, SerialNumber, date_time_ymd,
    };

    struct Files {
        dir: PathBuf,
        issuer: CertifiedIssuer<'static, KeyPair>,
    }

    impl Files {
        fn new(name: &str) -> Files {
            let dir =
                std::env::temp_dir().join(format!("bounce-trust-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let issuer =
                CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
            std::fs::write(dir.join("ca.pem"), issuer.pem()).unwrap();
            Files { dir, issuer }
        }

        fn node(&self, name: &str, serial: u64) -> CertificateDer<'static> {
            let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
            params.serial_number = Some(SerialNumber::from(serial));
            let cert = params
                .signed_by(&KeyPair::generate().unwrap(), &self.issuer)
                .unwrap();
            cert.der().clone()
        }

        /// A CRL revoking `serials`, written to `file`.
        fn crl(&self, file: &str, serials: &[u64]) -> PathBuf {
            let params = CertificateRevocationListParams {
                this_update: date_time_ymd(2020, 1, 1),
                next_update: date_time_ymd(2090, 1, 1),
                crl_number: SerialNumber::from(1u64),
                issuing_distribution_point: None,
                revoked_certs: serials
                    .iter()
                    .map(|s| RevokedCertParams {
                        serial_number: SerialNumber::from(*s),
                        revocation_time: date_time_ymd(2021, 1, 1),
                        reason_code: None,
                        invalidity_date: None,
                    })
                    .collect(),
                key_identifier_method: KeyIdMethod::Sha256,
            };
            let pem = params.signed_by(&self.issuer).unwrap().pem().unwrap();
            self.write(file, &pem)
        }

        fn write(&self, file: &str, text: &str) -> PathBuf {
            let path = self.dir.join(file);
            std::fs::write(&path, text).unwrap();
            path
        }
    }

    impl Drop for Files {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn accepts(trust: &ClientTrust, cert: &CertificateDer) -> bool {
        trust.verify_client_cert(cert, &[], UnixTime::now()).is_ok()
    }

    fn provider() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::ring::default_provider())
    }

    #[test]
    fn a_revoked_node_is_refused_once_the_crl_is_read_and_a_bad_crl_keeps_the_old_one() {
        let f = Files::new("reload");
        let (a, b) = (f.node("node-a", 11), f.node("node-b", 12));
        let ca = f.dir.join("ca.pem");
        let crl = f.crl("crl.pem", &[]);
        let trust = ClientTrust::load(&ca, Some(&crl), provider()).unwrap();
        assert!(accepts(&trust, &a) && accepts(&trust, &b));

        f.crl("crl.pem", &[11]);
        trust.reload().unwrap();
        assert!(!accepts(&trust, &a), "node-a is revoked");
        assert!(accepts(&trust, &b), "node-b is not");

        // Garbage in place of the CRL: the last good CA and CRLs stay.
        for (text, words) in [
            ("not a crl at all\n", "holds no X509 CRL block"),
            (
                "-----BEGIN X509 CRL-----\n!!!!\n-----END X509 CRL-----\n",
                "not PEM",
            ),
            (
                "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n",
                "a CRL that does not parse",
            ),
        ] {
            f.write("crl.pem", text);
            let err = trust.reload().unwrap_err().to_string();
            assert!(err.starts_with(&crl.display().to_string()), "{err}");
            assert!(err.contains(words), "{err}");
            assert!(!accepts(&trust, &a) && accepts(&trust, &b), "{text}");
        }
        // A CA file gone bad is named as well.
        f.crl("crl.pem", &[]);
        f.write("ca.pem", "nothing\n");
        let err = trust.reload().unwrap_err().to_string();
        assert!(err.contains(&ca.display().to_string()), "{err}");
        assert!(!accepts(&trust, &a), "still the old CRL");
    }

    #[test]
    fn a_node_of_a_ca_without_a_crl_is_refused_and_garbage_fails_at_load() {
        let f = Files::new("load");
        let other = Files::new("load-other");
        let ca = f.write(
            "both.pem",
            &format!("{}{}", f.issuer.pem(), other.issuer.pem()),
        );
        let crl = f.crl("crl.pem", &[]);
        let trust = ClientTrust::load(&ca, Some(&crl), provider()).unwrap();
        assert!(accepts(&trust, &f.node("n1", 1)));
        assert!(
            !accepts(&trust, &other.node("n2", 2)),
            "its issuer has no CRL: unknown is refused"
        );
        let without = ClientTrust::load(&ca, None, provider()).unwrap();
        assert!(accepts(&without, &other.node("n2", 2)));

        let garbage = f.write("garbage.pem", "garbage");
        let err = ClientTrust::load(&ca, Some(&garbage), provider())
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(&garbage.display().to_string()), "{err}");
    }
}
