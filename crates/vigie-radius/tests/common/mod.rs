//! Test fixture: a real server on a loopback port with a temp data folder,
//! driven by real clients (radclient, oathtool).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use vigie_event::Event;
use vigie_radius::admin;
use vigie_radius::totp::Algorithm;
use vigie_radius::{CodeTransport, Config, EventSink, MasterKey, Server, Store};

pub const SECRET: &str = "testing-secret-0123456789";

/// What the server handed to its sink: events, and lockouts.
#[derive(Default, Clone)]
pub struct Collect(
    pub Arc<Mutex<Vec<Event>>>,
    pub Arc<Mutex<Vec<vigie_radius::Lockout>>>,
);

impl EventSink for Collect {
    fn emit(&self, event: Event) {
        self.0.lock().unwrap().push(event);
    }
    fn lockout(&self, lockout: vigie_radius::Lockout) {
        self.1.lock().unwrap().push(lockout);
    }
}

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub store: Store,
    pub addr: SocketAddr,
    pub events: Collect,
    pub server: Arc<Server>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The default configuration with rejects answered at once: the reject
/// delay has its own test (`reject_delay.rs`); elsewhere it would only make
/// each reject last a second (and outlast radclient's 1 s timeout).
pub fn config() -> Config {
    Config {
        reject_delay: std::time::Duration::ZERO,
        ..Config::default()
    }
}

/// A signed Access-Request (Message-Authenticator) for `user` with `field`
/// as User-Password, and its Request Authenticator (to check the answer).
pub fn signed_request(user: &str, field: &str) -> (Vec<u8>, [u8; 16]) {
    use vigie_radius::packet::{self, Packet, attr, code};
    let auth: [u8; 16] = vigie_radius::crypto::random_bytes();
    let mut p = Packet::new(code::ACCESS_REQUEST, auth[0], auth);
    p.push(attr::USER_NAME, user.as_bytes().to_vec());
    p.push(
        attr::USER_PASSWORD,
        packet::hide_password(field.as_bytes(), SECRET.as_bytes(), &auth),
    );
    let raw = packet::encode_signed_request(p, SECRET.as_bytes()).unwrap();
    (raw, auth)
}

pub async fn fixture(transport: CodeTransport, require_ma: bool, cfg: Config) -> Fixture {
    fixture_with(transport, require_ma, cfg, None).await
}

pub async fn fixture_with(
    transport: CodeTransport,
    require_ma: bool,
    cfg: Config,
    ldap: Option<Arc<dyn vigie_radius::PasswordBackend>>,
) -> Fixture {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    fixture_on(sock, transport, require_ma, cfg, ldap).await
}

/// The same, serving on a socket the caller bound (e.g. inside a network
/// namespace); the NAS client is 127.0.0.1/32.
pub async fn fixture_on(
    sock: std::net::UdpSocket,
    transport: CodeTransport,
    require_ma: bool,
    cfg: Config,
    ldap: Option<Arc<dyn vigie_radius::PasswordBackend>>,
) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (store, key) = Store::open_data_dir(dir.path()).await.unwrap();
    add_nas(&store, &key, transport, require_ma).await;
    serve(dir, store, sock, cfg, ldap).await
}

/// Register the NAS client "vpn" (127.0.0.1/32, secret [`SECRET`]).
pub async fn add_nas(store: &Store, key: &MasterKey, transport: CodeTransport, require_ma: bool) {
    admin::add_client(
        store,
        key,
        "test",
        "vpn",
        "127.0.0.1/32",
        SECRET.as_bytes(),
        transport,
        require_ma,
    )
    .await
    .unwrap();
}

/// A server on `store` (any database) with the key file in `dir`, on `sock`.
/// The NAS client must already be in the store.
pub async fn serve(
    dir: tempfile::TempDir,
    store: Store,
    sock: std::net::UdpSocket,
    cfg: Config,
    ldap: Option<Arc<dyn vigie_radius::PasswordBackend>>,
) -> Fixture {
    let key = MasterKey::load_or_create(&dir.path().join("keys/mfa.key")).unwrap();
    let events = Collect::default();
    let server = Server::new(store.clone(), key, Arc::new(events.clone()), ldap, cfg)
        .await
        .unwrap();
    sock.set_nonblocking(true).unwrap();
    let sock = tokio::net::UdpSocket::from_std(sock).unwrap();
    let addr = sock.local_addr().unwrap();
    let task = tokio::spawn({
        let s = server.clone();
        async move {
            let _ = s.serve_udp(sock).await;
        }
    });
    Fixture {
        dir,
        store,
        addr,
        events,
        server,
        task,
    }
}

impl Fixture {
    pub fn key(&self) -> MasterKey {
        MasterKey::load_or_create(&self.dir.path().join("keys/mfa.key")).unwrap()
    }

    /// Add a local user and enrol it; returns the base32 secret.
    pub async fn user(&self, name: &str, password: &str) -> String {
        admin::add_user(&self.store, "test", name, Some(password.as_bytes()))
            .await
            .unwrap();
        let e = admin::enroll(
            &self.store,
            &self.key(),
            "test",
            name,
            Algorithm::SHA1,
            6,
            "Vigie",
        )
        .await
        .unwrap();
        e.secret_base32.to_string()
    }

    /// Send one request with radclient; returns its stdout+stderr.
    pub async fn radclient(&self, attrs: &str) -> String {
        radclient(self.addr, "auth", SECRET, attrs).await
    }
}

/// [`test_support::radius::radclient`], off the async runtime's threads.
pub async fn radclient(addr: SocketAddr, kind: &str, secret: &str, attrs: &str) -> String {
    let (kind, secret, attrs) = (kind.to_string(), secret.to_string(), attrs.to_string());
    tokio::task::spawn_blocking(move || {
        test_support::radius::radclient(addr, &kind, &secret, &attrs)
    })
    .await
    .unwrap()
}

#[allow(unused_imports)] // each test binary uses some of them
pub use test_support::radius::{accepted, oathtool, rejected, silent};

/// A child process (daemon or proxy) killed and reaped when dropped, also
/// when the test fails.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A private certificate authority for the TLS tests.
pub struct TestCa {
    key: rcgen::KeyPair,
    cert: rcgen::Certificate,
}

impl TestCa {
    pub fn new(common_name: &str) -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let cert = params.self_signed(&key).unwrap();
        TestCa { key, cert }
    }

    /// The CA certificate (PEM).
    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A certificate for `name` (common name and DNS name) with one extended
    /// key usage, signed by this CA: (certificate PEM, private key PEM).
    pub fn leaf(&self, name: &str, eku: rcgen::ExtendedKeyUsagePurpose) -> (String, String) {
        use rcgen::{CertificateParams, DnType, KeyPair};
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![eku];
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}
