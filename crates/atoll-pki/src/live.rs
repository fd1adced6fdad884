//! TLS whose certificates and trusted CAs change while a process runs:
//! renewal replaces a certificate, a CA rotation first adds the new CA to
//! every trust store and later removes the old one. Connections verify
//! against what is set at their handshake; open ones are left alone.

use std::sync::{Arc, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::{CertKey, PkiError, Result, certs, fingerprint_der, private_key, provider, roots};

/// The CAs a process trusts now, shared by its clients (to verify servers)
/// and its listeners (to verify client certificates).
#[derive(Debug)]
pub struct LiveRoots(RwLock<Arc<Verifiers>>);

#[derive(Debug)]
struct Verifiers {
    fingerprints: Vec<String>,
    servers: Arc<rustls::client::WebPkiServerVerifier>,
    clients: Arc<dyn ClientCertVerifier>,
}

impl Verifiers {
    fn new(bundle_pem: &str) -> Result<Verifiers> {
        let fingerprints = fingerprints(bundle_pem)?;
        let store = Arc::new(roots(&[bundle_pem])?);
        let servers = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::clone(&store), provider())
            .build()
            .map_err(|e| PkiError::Config(e.to_string()))?;
        let clients = rustls::server::WebPkiClientVerifier::builder_with_provider(store, provider())
            .allow_unauthenticated()
            .build()
            .map_err(|e| PkiError::Config(e.to_string()))?;
        Ok(Verifiers { fingerprints, servers, clients })
    }
}

impl LiveRoots {
    /// Trusts the CAs in `bundle_pem` (one or several certificates).
    pub fn new(bundle_pem: &str) -> Result<Arc<LiveRoots>> {
        Ok(Arc::new(LiveRoots(RwLock::new(Arc::new(Verifiers::new(bundle_pem)?)))))
    }

    /// Trusts exactly the CAs in `bundle_pem` from the next handshake on;
    /// whether that changed anything.
    pub fn set(&self, bundle_pem: &str) -> Result<bool> {
        let next = Verifiers::new(bundle_pem)?;
        let mut slot = self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let changed = slot.fingerprints != next.fingerprints;
        if changed {
            *slot = Arc::new(next);
        }
        Ok(changed)
    }

    /// The fingerprints of the CAs trusted now, in the bundle's order.
    pub fn fingerprints(&self) -> Vec<String> {
        self.now().fingerprints.clone()
    }

    fn now(&self) -> Arc<Verifiers> {
        Arc::clone(&self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// What a client uses to verify servers against these roots.
    pub fn server_verifier(self: &Arc<Self>) -> Arc<dyn ServerCertVerifier> {
        Arc::new(LiveServerVerifier(Arc::clone(self)))
    }

    /// What a listener uses to check client certificates against these
    /// roots; a connection without one is let through (the application
    /// decides per request).
    pub fn client_verifier(self: &Arc<Self>) -> Arc<dyn ClientCertVerifier> {
        Arc::new(LiveClientVerifier(Arc::clone(self)))
    }
}

/// The fingerprint of each certificate in `bundle_pem`, in order.
pub fn fingerprints(bundle_pem: &str) -> Result<Vec<String>> {
    Ok(certs(bundle_pem, "the CA bundle")?.iter().map(|c| fingerprint_der(c)).collect())
}

/// The handshake signature checks, the same whichever roots: the
/// provider's algorithms (what the WebPki verifiers use too).
macro_rules! handshake_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &SIGNATURES)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &SIGNATURES)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            SIGNATURES.supported_schemes()
        }
    };
}

static SIGNATURES: std::sync::LazyLock<rustls::crypto::WebPkiSupportedAlgorithms> =
    std::sync::LazyLock::new(|| provider().signature_verification_algorithms);

#[derive(Debug)]
struct LiveServerVerifier(Arc<LiveRoots>);

impl ServerCertVerifier for LiveServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        self.0.now().servers.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
    }

    handshake_signatures!();
}

#[derive(Debug)]
struct LiveClientVerifier(Arc<LiveRoots>);

impl ClientCertVerifier for LiveClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    /// None: the hints would have to outlive a change of roots. Our
    /// clients present their one certificate whatever the hints say.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> std::result::Result<ClientCertVerified, rustls::Error> {
        self.0.now().clients.verify_client_cert(end_entity, intermediates, now)
    }

    handshake_signatures!();
}

/// The certificate a process presents now, as a server or as a client;
/// none yet means a server's handshakes fail and a client presents none.
#[derive(Debug, Default)]
pub struct LiveCert(RwLock<Option<Arc<rustls::sign::CertifiedKey>>>);

impl LiveCert {
    pub fn set(&self, own: &CertKey) -> Result<()> {
        let key = provider().key_provider.load_private_key(private_key(&own.key_pem)?).map_err(|e| PkiError::Config(e.to_string()))?;
        let certified = Arc::new(rustls::sign::CertifiedKey::new(certs(&own.cert_pem, "the certificate")?, key));
        *self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(certified);
        Ok(())
    }

    /// Presents nothing from the next handshake on.
    pub fn clear(&self) {
        *self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    pub fn is_set(&self) -> bool {
        self.current().is_some()
    }

    fn current(&self) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

impl rustls::server::ResolvesServerCert for LiveCert {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.current()
    }
}

impl rustls::client::ResolvesClientCert for LiveCert {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.current()
    }

    fn has_certs(&self) -> bool {
        self.is_set()
    }
}

/// A process's client TLS: the roots it trusts and the certificate it
/// presents, both replaceable, in one configuration built once. A change
/// of either forgets the sessions kept for resumption: a resumed TLS 1.3
/// session presents no certificate (it carries the one of its first
/// handshake, perhaps none) and verifies no server certificate again.
#[derive(Debug)]
pub struct LiveClientTls {
    roots: Arc<LiveRoots>,
    identity: Arc<LiveCert>,
    sessions: Arc<Sessions>,
    config: rustls::ClientConfig,
}

impl LiveClientTls {
    /// Trusts the CAs of `bundle_pem`, presents nothing yet.
    pub fn new(bundle_pem: &str) -> Result<LiveClientTls> {
        let roots = LiveRoots::new(bundle_pem)?;
        let identity = Arc::new(LiveCert::default());
        let sessions = Arc::new(Sessions::default());
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| PkiError::Config(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(roots.server_verifier())
            .with_client_cert_resolver(Arc::clone(&identity) as Arc<dyn rustls::client::ResolvesClientCert>);
        config.resumption = rustls::client::Resumption::store(Arc::clone(&sessions) as Arc<dyn rustls::client::ClientSessionStore>);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(LiveClientTls { roots, identity, sessions, config })
    }

    /// The configuration every client of the process is built from.
    pub fn config(&self) -> rustls::ClientConfig {
        self.config.clone()
    }

    pub fn roots(&self) -> &Arc<LiveRoots> {
        &self.roots
    }

    /// Trusts exactly the CAs of `bundle_pem`; whether that changed anything.
    pub fn trust(&self, bundle_pem: &str) -> Result<bool> {
        let changed = self.roots.set(bundle_pem)?;
        if changed {
            self.sessions.reset();
        }
        Ok(changed)
    }

    /// Presents `own` from the next handshake on; `None`: nothing.
    pub fn present(&self, own: Option<&CertKey>) -> Result<()> {
        match own {
            Some(own) => self.identity.set(own)?,
            None => self.identity.clear(),
        }
        self.sessions.reset();
        Ok(())
    }
}

/// rustls' in-memory session cache, replaced by an empty one on reset.
#[derive(Debug)]
struct Sessions(RwLock<Arc<rustls::client::ClientSessionMemoryCache>>);

impl Default for Sessions {
    fn default() -> Self {
        Sessions(RwLock::new(Arc::new(rustls::client::ClientSessionMemoryCache::new(256))))
    }
}

impl Sessions {
    fn now(&self) -> Arc<rustls::client::ClientSessionMemoryCache> {
        Arc::clone(&self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    fn reset(&self) {
        *self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(rustls::client::ClientSessionMemoryCache::new(256));
    }
}

impl rustls::client::ClientSessionStore for Sessions {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: rustls::NamedGroup) {
        self.now().set_kx_hint(server_name, group)
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.now().kx_hint(server_name)
    }

    fn set_tls12_session(&self, server_name: ServerName<'static>, value: rustls::client::Tls12ClientSessionValue) {
        self.now().set_tls12_session(server_name, value)
    }

    fn tls12_session(&self, server_name: &ServerName<'_>) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.now().tls12_session(server_name)
    }

    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        self.now().remove_tls12_session(server_name)
    }

    fn insert_tls13_ticket(&self, server_name: ServerName<'static>, value: rustls::client::Tls13ClientSessionValue) {
        self.now().insert_tls13_ticket(server_name, value)
    }

    fn take_tls13_ticket(&self, server_name: &ServerName<'static>) -> Option<rustls::client::Tls13ClientSessionValue> {
        self.now().take_tls13_ticket(server_name)
    }
}

/// Which CA of `bundle_pem` issued `leaf_pem` (its signature verifies and
/// it is valid now), by fingerprint; `None` when none did.
pub fn issuer_of(leaf_pem: &str, bundle_pem: &str) -> Result<Option<String>> {
    let leaf = certs(leaf_pem, "the certificate")?.remove(0);
    let leaf = webpki::EndEntityCert::try_from(&leaf).map_err(|e| PkiError::Parse { what: "the certificate", detail: e.to_string() })?;
    let algs = provider().signature_verification_algorithms.all;
    for ca in certs(bundle_pem, "the CA bundle")? {
        let anchor = webpki::anchor_from_trusted_cert(&ca).map_err(|e| PkiError::Parse { what: "the CA bundle", detail: e.to_string() })?;
        let anchors = [anchor];
        let issued = [webpki::KeyUsage::server_auth(), webpki::KeyUsage::client_auth()]
            .into_iter()
            .any(|usage| leaf.verify_for_usage(algs, &anchors, &[], UnixTime::now(), usage, None, None).is_ok());
        if issued {
            return Ok(Some(fingerprint_der(&ca)));
        }
    }
    Ok(None)
}
