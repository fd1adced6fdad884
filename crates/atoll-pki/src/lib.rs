//! The platform's certificate authority, and the rustls configurations
//! every process builds from it.
//!
//! One CA per platform: servers keep its key sealed in MetaDB and issue a
//! certificate to each server, agent and proxy as it joins. Trust is the
//! CA alone (no system roots): a process of one platform talks to
//! processes of that platform only. Keys are ECDSA P-256; rustls runs on
//! `ring`, the one crypto provider compiled in.

mod listener;
mod live;

pub use listener::{TlsListener, TlsPeer};
pub use live::{LiveCert, LiveClientTls, LiveRoots, fingerprints, issuer_of};

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot make a certificate: {0}")]
    Generate(String),
    #[error("cannot read {what}: {detail}")]
    Parse { what: &'static str, detail: String },
    #[error("cannot build the TLS configuration: {0}")]
    Config(String),
}

type Result<T> = std::result::Result<T, PkiError>;

/// How long a CA is valid; rotation replaces it well before.
pub const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long a server's, agent's or proxy's certificate is valid.
pub const LEAF_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
/// When a running process replaces its certificate: half-way through its
/// life, so a failed renewal has months to succeed before anything breaks.
pub const RENEW_AFTER: Duration = Duration::from_secs(LEAF_LIFETIME.as_secs() / 2);

/// The crypto provider every rustls configuration here uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes `ring` the process's default provider, for TLS configurations
/// built elsewhere (reqwest's, which has no provider of its own compiled
/// in and panics without one). Idempotent; every entry point calls it
/// before it builds an HTTP client.
pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A certificate and its private key, both PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct CertKey {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for CertKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key: these end up in logs through `{:?}` otherwise.
        f.debug_struct("CertKey").field("fingerprint", &fingerprint(&self.cert_pem).ok()).finish_non_exhaustive()
    }
}

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// Accepts TLS connections (a server's API, an agent's API).
    Server,
    /// Opens TLS connections and proves who it is (mutual TLS).
    Client,
    /// Both: an agent serves the platform and calls it.
    Both,
}

/// A leaf certificate to issue.
#[derive(Debug, Clone)]
pub struct LeafRequest {
    /// Who it names, e.g. `server 127.0.0.1:8080` or `agent <host id>`.
    pub common_name: String,
    pub ips: Vec<IpAddr>,
    pub dns: Vec<String>,
    pub usage: Usage,
    pub lifetime: Duration,
}

impl LeafRequest {
    /// A certificate for `ips`, valid for [`LEAF_LIFETIME`], no DNS names.
    pub fn new(common_name: impl Into<String>, ips: Vec<IpAddr>, usage: Usage) -> LeafRequest {
        LeafRequest { common_name: common_name.into(), ips, dns: Vec::new(), usage, lifetime: LEAF_LIFETIME }
    }
}

/// The platform's CA: its certificate, its key, and what issues with them.
pub struct Ca {
    pub cert_key: CertKey,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    /// A new CA named `name` (shown to people who inspect a certificate).
    pub fn generate(name: &str) -> Result<Ca> {
        let key = KeyPair::generate().map_err(failed)?;
        let params = ca_params(name, Some(CA_LIFETIME));
        let cert = params.self_signed(&key).map_err(failed)?;
        let cert_key = CertKey { cert_pem: cert.pem(), key_pem: key.serialize_pem() };
        Ok(Ca { cert_key, issuer: Issuer::new(ca_params(name, None), key) })
    }

    /// The CA made by [`Ca::generate`] with `name`, from its PEMs.
    pub fn from_pem(name: &str, cert_key: CertKey) -> Result<Ca> {
        let key = KeyPair::from_pem(&cert_key.key_pem).map_err(|e| PkiError::Parse { what: "the CA key", detail: e.to_string() })?;
        certs(&cert_key.cert_pem, "the CA certificate")?;
        Ok(Ca { cert_key, issuer: Issuer::new(ca_params(name, None), key) })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_key.cert_pem
    }

    /// Issues a certificate with a fresh key.
    pub fn issue(&self, req: &LeafRequest) -> Result<CertKey> {
        let key = KeyPair::generate().map_err(failed)?;
        let cert = leaf_params(req)?.signed_by(&key, &self.issuer).map_err(failed)?;
        Ok(CertKey { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }

    /// Issues a certificate (PEM) for a key someone else holds, given by
    /// its public half ([`public_key_hex`]): an agent's key never leaves
    /// its host.
    pub fn issue_for(&self, req: &LeafRequest, public_key_hex: &str) -> Result<String> {
        let key = P256Public::from_hex(public_key_hex)?;
        Ok(leaf_params(req)?.signed_by(&key, &self.issuer).map_err(failed)?.pem())
    }
}

fn leaf_params(req: &LeafRequest) -> Result<CertificateParams> {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(&req.common_name);
    params.subject_alt_names = req.ips.iter().map(|ip| SanType::IpAddress(*ip)).collect();
    for name in &req.dns {
        params.subject_alt_names.push(SanType::DnsName(name.as_str().try_into().map_err(failed)?));
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = match req.usage {
        Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
        Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        Usage::Both => vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
    };
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, req.lifetime);
    Ok(params)
}

/// A new private key (ECDSA P-256), PEM: what a process keeps to itself.
pub fn new_key_pem() -> Result<String> {
    Ok(KeyPair::generate().map_err(failed)?.serialize_pem())
}

/// The public half of `key_pem` as hex (the uncompressed P-256 point):
/// what a process sends to be issued a certificate.
pub fn public_key_hex(key_pem: &str) -> Result<String> {
    let key = KeyPair::from_pem(key_pem).map_err(|e| PkiError::Parse { what: "the private key", detail: e.to_string() })?;
    Ok(hex::encode(key.public_key_raw()))
}

/// A P-256 public key given as its uncompressed point.
struct P256Public(Vec<u8>);

impl P256Public {
    fn from_hex(text: &str) -> Result<P256Public> {
        let bad = |detail: &str| PkiError::Parse { what: "the public key", detail: detail.to_string() };
        let raw = hex::decode(text.trim()).map_err(|_| bad("not hex"))?;
        // 0x04, then X and Y of 32 bytes each.
        if raw.len() != 65 || raw[0] != 4 {
            return Err(bad("not an uncompressed ECDSA P-256 point (65 bytes starting 04)"));
        }
        Ok(P256Public(raw))
    }
}

impl rcgen::PublicKeyData for P256Public {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

fn failed(e: impl std::fmt::Display) -> PkiError {
    PkiError::Generate(e.to_string())
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Atoll");
    dn.push(DnType::CommonName, common_name);
    dn
}

/// The CA's parameters; the same name rebuilds the same issuer (subject
/// and key identifier), which is all a leaf's signature refers to.
fn ca_params(name: &str, lifetime: Option<Duration>) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    if let Some(lifetime) = lifetime {
        validity(&mut params, lifetime);
    }
    params
}

/// Valid from an hour ago (clocks differ a little) for `lifetime`.
fn validity(params: &mut CertificateParams, lifetime: Duration) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::seconds(lifetime.as_secs() as i64);
}

/// The certificates in a PEM text, in order.
pub fn certs(pem: &str, what: &'static str) -> Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| PkiError::Parse { what, detail: e.to_string() })?;
    if certs.is_empty() {
        return Err(PkiError::Parse { what, detail: "no certificate in it".into() });
    }
    Ok(certs)
}

fn private_key(pem: &str) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| PkiError::Parse { what: "the private key", detail: e.to_string() })
}

/// `sha256:` and the hex SHA-256 of the first certificate's DER: what an
/// operator compares, and what a joining agent pins the CA by.
pub fn fingerprint(cert_pem: &str) -> Result<String> {
    let first = certs(cert_pem, "a certificate")?
        .into_iter()
        .next()
        .ok_or_else(|| PkiError::Parse { what: "a certificate", detail: "no certificate in it".into() })?;
    Ok(fingerprint_der(&first))
}

fn fingerprint_der(der: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(der)))
}

/// Roots holding only the given CAs (several during a rotation).
pub fn roots(ca_pems: &[&str]) -> Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for pem in ca_pems {
        for cert in certs(pem, "the CA certificate")? {
            roots.add(cert).map_err(|e| PkiError::Config(e.to_string()))?;
        }
    }
    Ok(roots)
}

/// A server's TLS: its certificate; with `client_cas`, it also requires a
/// client certificate issued by one of them (mutual TLS).
pub fn server_config(own: &CertKey, client_cas: Option<&[&str]>) -> Result<rustls::ServerConfig> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| PkiError::Config(e.to_string()))?;
    let builder = match client_cas {
        Some(cas) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots(cas)?), provider())
                .build()
                .map_err(|e| PkiError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs(&own.cert_pem, "the certificate")?, private_key(&own.key_pem)?)
        .map_err(|e| PkiError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A server's TLS whose certificate can change while it runs ([`LiveCert`]):
/// an agent serves once registration gave it one, and a renewed one takes
/// over for the next handshake. With `clients`, client certificates are
/// asked for and checked against those roots when given (a connection
/// without one is let through: the application decides per request).
pub fn live_server_config(live: Arc<LiveCert>, clients: Option<&Arc<LiveRoots>>) -> Result<rustls::ServerConfig> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| PkiError::Config(e.to_string()))?;
    let builder = match clients {
        Some(roots) => builder.with_client_cert_verifier(roots.client_verifier()),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(live);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A client's TLS: trusts the given CAs only; with `own`, presents it.
pub fn client_config(ca_pems: &[&str], own: Option<&CertKey>) -> Result<rustls::ClientConfig> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| PkiError::Config(e.to_string()))?
        .with_root_certificates(roots(ca_pems)?);
    let mut config = match own {
        Some(own) => builder
            .with_client_auth_cert(certs(&own.cert_pem, "the certificate")?, private_key(&own.key_pem)?)
            .map_err(|e| PkiError::Config(e.to_string()))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn leaf(ca: &Ca, usage: Usage) -> CertKey {
        let req = LeafRequest {
            common_name: format!("{usage:?}"),
            ips: vec!["127.0.0.1".parse().unwrap()],
            dns: vec!["localhost".into()],
            usage,
            lifetime: LEAF_LIFETIME,
        };
        ca.issue(&req).unwrap()
    }

    /// A TLS connection over loopback: Ok(what the server read) or the
    /// handshake error, as the client saw it.
    async fn handshake(server: rustls::ServerConfig, client: rustls::ClientConfig, name: &str) -> std::result::Result<String, String> {
        handshake_seen(server, client, name).await.map(|(read, _)| read)
    }

    /// [`handshake`], and whether the server saw a client certificate.
    async fn handshake_seen(
        server: rustls::ServerConfig,
        client: rustls::ClientConfig,
        name: &str,
    ) -> std::result::Result<(String, bool), String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let served = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
            let mut buf = [0u8; 5];
            tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
            let cert = tls.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty());
            // An answer, so the client also reads the session tickets.
            tls.write_all(b"ok").await.map_err(|e| e.to_string())?;
            tls.flush().await.map_err(|e| e.to_string())?;
            Ok::<_, String>((String::from_utf8_lossy(&buf).to_string(), cert))
        });
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let server_name = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
        let sent = async {
            let mut tls = connector.connect(server_name, tcp).await.map_err(|e| e.to_string())?;
            tls.write_all(b"hello").await.map_err(|e| e.to_string())?;
            tls.flush().await.map_err(|e| e.to_string())?;
            let mut answer = [0u8; 2];
            tls.read_exact(&mut answer).await.map(|_| ()).map_err(|e| e.to_string())
        }
        .await;
        let got = served.await.unwrap();
        sent?;
        got
    }

    #[tokio::test]
    async fn a_ca_issues_what_its_clients_trust_and_nothing_else_passes() {
        let ca = Ca::generate("Atoll test CA").unwrap();
        let server = leaf(&ca, Usage::Server);
        let client = leaf(&ca, Usage::Client);
        let ca_pem = ca.cert_pem().to_string();

        // Plain TLS by IP and by name.
        let ok = handshake(server_config(&server, None).unwrap(), client_config(&[&ca_pem], None).unwrap(), "127.0.0.1").await;
        assert_eq!(ok.unwrap(), "hello");
        let ok = handshake(server_config(&server, None).unwrap(), client_config(&[&ca_pem], None).unwrap(), "localhost").await;
        assert_eq!(ok.unwrap(), "hello");
        // A name the certificate does not carry.
        let e = handshake(server_config(&server, None).unwrap(), client_config(&[&ca_pem], None).unwrap(), "127.0.0.2").await;
        assert!(e.unwrap_err().contains("certificate"));

        // Another platform's CA is not trusted, either way round.
        let other = Ca::generate("Another CA").unwrap();
        let stranger = leaf(&other, Usage::Server);
        assert!(handshake(server_config(&stranger, None).unwrap(), client_config(&[&ca_pem], None).unwrap(), "127.0.0.1").await.is_err());

        // Mutual TLS: a client certificate of our CA passes, none or a
        // stranger's does not.
        let mtls = || server_config(&server, Some(&[ca_pem.as_str()])).unwrap();
        assert_eq!(handshake(mtls(), client_config(&[&ca_pem], Some(&client)).unwrap(), "127.0.0.1").await.unwrap(), "hello");
        assert!(handshake(mtls(), client_config(&[&ca_pem], None).unwrap(), "127.0.0.1").await.is_err());
        let foreign_client = leaf(&other, Usage::Client);
        assert!(handshake(mtls(), client_config(&[&ca_pem], Some(&foreign_client)).unwrap(), "127.0.0.1").await.is_err());

        // The CA rebuilt from its PEMs issues certificates the old
        // certificate verifies (a server restart, another server).
        let again = Ca::from_pem("Atoll test CA", ca.cert_key.clone()).unwrap();
        let server2 = leaf(&again, Usage::Both);
        let ok = handshake(server_config(&server2, None).unwrap(), client_config(&[&ca_pem], None).unwrap(), "127.0.0.1").await;
        assert_eq!(ok.unwrap(), "hello");

        // During a rotation clients trust both CAs.
        let both = client_config(&[&ca_pem, other.cert_pem()], None).unwrap();
        assert_eq!(handshake(server_config(&stranger, None).unwrap(), both, "127.0.0.1").await.unwrap(), "hello");
    }

    /// An agent's case: its key stays with it, the CA signs its public
    /// half, the certificate arrives after the server started, and client
    /// certificates are optional but checked when given.
    #[tokio::test]
    async fn a_live_certificate_for_a_key_held_elsewhere_with_optional_client_certs() {
        let ca = Ca::generate("Atoll test CA").unwrap();
        let ca_pem = ca.cert_pem().to_string();
        let key_pem = new_key_pem().unwrap();
        let req = LeafRequest {
            common_name: "agent".into(),
            ips: vec!["127.0.0.1".parse().unwrap()],
            dns: vec![],
            usage: Usage::Both,
            lifetime: LEAF_LIFETIME,
        };
        let cert_pem = ca.issue_for(&req, &public_key_hex(&key_pem).unwrap()).unwrap();
        assert!(ca.issue_for(&req, "04abcd").is_err(), "a short point is refused");
        assert!(ca.issue_for(&req, "not hex").is_err());

        let live = Arc::new(LiveCert::default());
        let roots = LiveRoots::new(&ca_pem).unwrap();
        let config = || live_server_config(Arc::clone(&live), Some(&roots)).unwrap();
        let anonymous = || client_config(&[&ca_pem], None).unwrap();
        assert!(handshake(config(), anonymous(), "127.0.0.1").await.is_err(), "no certificate yet: no handshake");
        live.set(&CertKey { cert_pem, key_pem }).unwrap();
        assert!(live.is_set());
        assert_eq!(handshake(config(), anonymous(), "127.0.0.1").await.unwrap(), "hello");
        let member = leaf(&ca, Usage::Client);
        assert_eq!(handshake(config(), client_config(&[&ca_pem], Some(&member)).unwrap(), "127.0.0.1").await.unwrap(), "hello");
        let other = Ca::generate("someone else").unwrap();
        let stranger = leaf(&other, Usage::Client);
        assert!(handshake(config(), client_config(&[&ca_pem], Some(&stranger)).unwrap(), "127.0.0.1").await.is_err());
    }

    /// A rotation as one process sees it: the listener and the client
    /// follow the roots they share, without being rebuilt.
    #[tokio::test]
    async fn live_roots_follow_a_rotation() {
        let old = Ca::generate("old").unwrap();
        let new = Ca::generate("new").unwrap();
        let (old_pem, new_pem) = (old.cert_pem().to_string(), new.cert_pem().to_string());
        let tls = LiveClientTls::new(&old_pem).unwrap();
        let roots = Arc::clone(tls.roots());
        let served = Arc::new(LiveCert::default());
        served.set(&leaf(&old, Usage::Server)).unwrap();
        // One server configuration throughout: it resumes sessions.
        let server_config = live_server_config(Arc::clone(&served), Some(&roots)).unwrap();
        let server = || server_config.clone();
        let client = tls.config();
        // The first handshake without a client certificate: a session
        // resumed from it would present none after `present`.
        assert_eq!(handshake_seen(server(), client.clone(), "127.0.0.1").await.unwrap(), ("hello".into(), false));
        tls.present(Some(&leaf(&old, Usage::Client))).unwrap();
        assert_eq!(handshake_seen(server(), client.clone(), "127.0.0.1").await.unwrap(), ("hello".into(), true));
        assert_eq!(handshake_seen(server(), client.clone(), "127.0.0.1").await.unwrap(), ("hello".into(), true), "resumed");

        // A new-CA certificate is refused until its CA is trusted (a fresh
        // client: the live one would resume its verified session).
        served.set(&leaf(&new, Usage::Server)).unwrap();
        assert!(handshake(server(), client_config(&[&old_pem], None).unwrap(), "127.0.0.1").await.is_err());
        let bundle = format!("{old_pem}{new_pem}");
        assert!(tls.trust(&bundle).unwrap());
        assert!(!tls.trust(&bundle).unwrap(), "the same bundle changes nothing");
        assert_eq!(roots.fingerprints(), vec![fingerprint(&old_pem).unwrap(), fingerprint(&new_pem).unwrap()]);
        assert_eq!(handshake(server(), client.clone(), "127.0.0.1").await.unwrap(), "hello", "old client cert, new server cert");

        // Retired: only new-CA certificates pass, either way round.
        tls.trust(&new_pem).unwrap();
        assert!(handshake(server(), client.clone(), "127.0.0.1").await.is_err(), "an old-CA client certificate is refused");
        tls.present(Some(&leaf(&new, Usage::Client))).unwrap();
        assert_eq!(handshake(server(), client.clone(), "127.0.0.1").await.unwrap(), "hello");
        served.set(&leaf(&old, Usage::Server)).unwrap();
        let fresh = client_config(&[&new_pem], None).unwrap();
        assert!(handshake(server(), fresh, "127.0.0.1").await.is_err(), "an old-CA server certificate is refused");
    }

    #[test]
    fn which_ca_issued_a_certificate() {
        let (a, b) = (Ca::generate("a").unwrap(), Ca::generate("b").unwrap());
        let bundle = format!("{}{}", a.cert_pem(), b.cert_pem());
        for usage in [Usage::Server, Usage::Client, Usage::Both] {
            assert_eq!(issuer_of(&leaf(&b, usage).cert_pem, &bundle).unwrap(), Some(fingerprint(b.cert_pem()).unwrap()));
            assert_eq!(issuer_of(&leaf(&a, usage).cert_pem, &bundle).unwrap(), Some(fingerprint(a.cert_pem()).unwrap()));
            assert_eq!(issuer_of(&leaf(&a, usage).cert_pem, b.cert_pem()).unwrap(), None);
        }
        assert!(issuer_of("junk", &bundle).is_err());
    }

    #[test]
    fn fingerprints_and_bad_pem() {
        let ca = Ca::generate("x").unwrap();
        let f = fingerprint(ca.cert_pem()).unwrap();
        assert!(f.starts_with("sha256:") && f.len() == 7 + 64, "{f}");
        assert_eq!(f, fingerprint(ca.cert_pem()).unwrap());
        assert!(fingerprint("nonsense").is_err());
        assert!(!format!("{:?}", ca.cert_key).contains("PRIVATE KEY"), "keys stay out of Debug output");
    }
}
