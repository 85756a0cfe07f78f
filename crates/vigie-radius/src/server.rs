//! The RADIUS service: NAS client table, Access-Request decisions (first
//! factor, TOTP, lockout, throttling, Access-Challenge), accounting, duplicate
//! detection (RFC 5080), and the UDP loop. The transport-independent entry
//! point is [`Server::handle_datagram`], shared by UDP and RadSec.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Result;
use base64::Engine as _;
use tokio::net::UdpSocket;
use vigie_event::{AuthDetails, AuthEvent, Endpoint, Event, Host, Outcome, Payload, User};
use zeroize::Zeroizing;

use crate::credcache::{CredentialCache, UserCache};
use crate::crypto::{self, MasterKey};
use crate::packet::{self, MessageAuth, Packet, attr, code};
use crate::store::{
    CodeTransport, LockoutPolicy, SessionUpdate, StepUpdate, StepWriter, Store, UserRecord,
    now_unix,
};
use crate::totp;

/// Where authentication events go: the manager's detection engine, or the
/// JSON-lines writer of `vigie radius`. Called on the answer path: it must
/// not wait (queue the work, or drop it and say so).
pub trait EventSink: Send + Sync + 'static {
    fn emit(&self, event: Event);
    /// An account was just locked after too many failures (the server has
    /// already written it to `mfa_audit`); the manager audits it too.
    fn lockout(&self, _lockout: Lockout) {}
}

/// An account locked by the lockout policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lockout {
    pub user: String,
    /// Unix time (seconds) until which logins are refused.
    pub until: i64,
    /// Failures counted in the policy's window.
    pub failures: i64,
    /// The NAS client the last failure came through.
    pub nas: String,
    /// Its Calling-Station-Id (the VPN user's address), when sent.
    pub source: Option<String>,
}

impl EventSink for tokio::sync::mpsc::UnboundedSender<Event> {
    fn emit(&self, event: Event) {
        // A closed receiver means the caller stopped listening; authentication goes on.
        let _ = self.send(event);
    }
}

impl EventSink for std::sync::mpsc::Sender<Event> {
    fn emit(&self, event: Event) {
        let _ = self.send(event);
    }
}

/// First factor against a directory (see [`crate::ldap`]).
pub trait PasswordBackend: Send + Sync + 'static {
    /// True when `password` is the user's password. Must refuse empty passwords.
    fn verify<'a>(
        &'a self,
        user: &'a str,
        password: &'a [u8],
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + 'a>>;
}

/// A NAS client with its secret decrypted (wiped on drop).
pub struct Client {
    pub name: String,
    pub net: ipnet::IpNet,
    pub secret: Zeroizing<Vec<u8>>,
    pub transport: CodeTransport,
    pub require_message_authenticator: bool,
    /// The manager's organisation for this gateway's logins (`None`: default).
    pub org: Option<String>,
    /// Set on the per-request copy for a RadSec connection that negotiated
    /// RADIUS/1.1 (RFC 9765, see [`crate::radius11`]): no shared secret, no
    /// MD5, no Message-Authenticator; the Token replaces Identifier and
    /// Authenticator.
    pub radius11: bool,
}

#[derive(Clone)]
pub struct Config {
    pub lockout: LockoutPolicy,
    /// Failures from one Calling-Station-Id before it is refused for `source_window`.
    pub source_max_failures: u32,
    pub source_window: Duration,
    /// Lifetime of an Access-Challenge State.
    pub challenge_ttl: Duration,
    /// How long an answer is kept to re-send for a duplicate request (RFC 5080).
    pub duplicate_window: Duration,
    /// The host name put in events.
    pub host: String,
    /// How long a password that passed argon2id is remembered (keyed hash in
    /// memory, see [`crate::credcache`]); zero disables the cache.
    pub credential_cache_ttl: Duration,
    /// argon2 checks running at once, on the blocking pool (each takes
    /// ~19 MiB and a core for a few ms; the UDP loop never waits on them).
    pub hash_workers: usize,
    /// An Access-Reject leaves this long after its request arrived (or when
    /// it is decided, if that takes longer), like FreeRADIUS's
    /// `reject_delay`: guessing slows down, and every reject takes the same
    /// time whatever failed (unknown user, wrong password, wrong code), so
    /// its timing tells nothing. Zero sends rejects at once.
    pub reject_delay: Duration,
}

/// FreeRADIUS's default `reject_delay` too.
pub const DEFAULT_REJECT_DELAY: Duration = Duration::from_secs(1);

/// Longest `reject_delay` accepted: a NAS retransmits after a few seconds,
/// and a delay past its timeout turns every reject into a retry.
pub const MAX_REJECT_DELAY: Duration = Duration::from_secs(10);

impl Default for Config {
    fn default() -> Self {
        Config {
            lockout: LockoutPolicy::default(),
            source_max_failures: 20,
            source_window: Duration::from_secs(15 * 60),
            challenge_ttl: Duration::from_secs(60),
            duplicate_window: Duration::from_secs(30),
            host: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "localhost".into()),
            credential_cache_ttl: Duration::from_secs(8 * 3600),
            hash_workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            reject_delay: DEFAULT_REJECT_DELAY,
        }
    }
}

struct Pending {
    user: String,
    client: String,
    expires: Instant,
}

type DupKey = (SocketAddr, u8, [u8; 16]);

/// Most requests remembered for duplicate detection: under a load that
/// would keep more within the window, the oldest go first.
const MAX_DUPLICATES: usize = 200_000;

/// Requests seen in the duplicate window (RFC 5080), with their answer
/// (`None` while being processed), and the same keys in arrival order so
/// that expiry costs O(1) per request instead of a sweep of the map.
#[derive(Default)]
struct DupCache {
    map: HashMap<DupKey, (Instant, Option<Vec<u8>>)>,
    order: std::collections::VecDeque<(Instant, DupKey)>,
}

impl DupCache {
    fn expire(&mut self, now: Instant, window: Duration) {
        while let Some(&(t, key)) = self.order.front() {
            if now.duration_since(t) < window && self.order.len() <= MAX_DUPLICATES {
                break;
            }
            self.order.pop_front();
            // The key may have been seen again since (its entry is newer).
            if self.map.get(&key).is_some_and(|(seen, _)| *seen == t) {
                self.map.remove(&key);
            }
        }
    }
}

pub struct Server {
    store: Store,
    key: MasterKey,
    sink: Arc<dyn EventSink>,
    ldap: Option<Arc<dyn PasswordBackend>>,
    cfg: Config,
    clients: RwLock<Vec<Arc<Client>>>,
    challenges: Mutex<HashMap<[u8; 16], Pending>>,
    duplicates: Mutex<DupCache>,
    /// Users accepted recently (the warm path, see [`Server::cached_accept`]).
    users: UserCache,
    /// Group commit of accepted TOTP steps.
    steps: StepWriter,
    /// Logins accepted on the warm path.
    warm_accepts: std::sync::atomic::AtomicU64,
    sources: Mutex<HashMap<String, (u32, Instant)>>,
    /// Hash checked for unknown, disabled and locked users so that the answer
    /// takes as long as for a real user.
    dummy_hash: String,
    creds: CredentialCache,
    hash_slots: tokio::sync::Semaphore,
}

/// What the password check found.
enum Password {
    Wrong,
    /// Checked by argon2id (or the LDAP directory).
    Verified,
    /// Matched in the verified-credential cache, without argon2id.
    Cached,
}

/// What was decided about an Access-Request.
enum Decision {
    Accept {
        step: &'static str,
    },
    Reject {
        reason: &'static str,
        step: &'static str,
    },
    Challenge {
        state: [u8; 16],
    },
}

/// A refusal: why, and at which step of the decision.
fn reject(reason: &'static str, step: &'static str) -> Decision {
    Decision::Reject { reason, step }
}

impl Server {
    pub async fn new(
        store: Store,
        key: MasterKey,
        sink: Arc<dyn EventSink>,
        ldap: Option<Arc<dyn PasswordBackend>>,
        cfg: Config,
    ) -> Result<Arc<Server>> {
        let dummy = crypto::random_bytes::<16>();
        let dummy_hash =
            tokio::task::spawn_blocking(move || crypto::hash_password(&dummy)).await??;
        let (cfg_ttl, hash_workers) = (cfg.credential_cache_ttl, cfg.hash_workers);
        let steps = StepWriter::spawn(store.clone());
        let s = Arc::new(Server {
            store,
            key,
            sink,
            ldap,
            cfg,
            clients: RwLock::new(Vec::new()),
            challenges: Mutex::new(HashMap::new()),
            duplicates: Mutex::new(DupCache::default()),
            users: UserCache::new(cfg_ttl),
            steps,
            warm_accepts: Default::default(),
            sources: Mutex::new(HashMap::new()),
            dummy_hash,
            creds: CredentialCache::new(cfg_ttl),
            hash_slots: tokio::sync::Semaphore::new(hash_workers.max(1)),
        });
        s.reload_clients().await?;
        Ok(s)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Logins accepted on the warm path so far (user and password from
    /// memory, see [`Server::cached_accept`]).
    pub fn warm_accepts(&self) -> u64 {
        self.warm_accepts.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Re-read NAS clients from the store (after `vigie mfa client add`).
    pub async fn reload_clients(&self) -> Result<usize> {
        let mut out = Vec::new();
        for c in self.store.list_clients().await? {
            let secret = self
                .key
                .open(&c.sealed_secret, &format!("nas:{}", c.name))?;
            out.push(Arc::new(Client {
                name: c.name,
                net: c.address,
                secret: Zeroizing::new(secret.to_vec()),
                transport: c.transport,
                require_message_authenticator: c.require_message_authenticator,
                org: c.org,
                radius11: false,
            }));
        }
        // Most specific network first, so a /32 wins over a /24.
        out.sort_by_key(|c| std::cmp::Reverse(c.net.prefix_len()));
        let n = out.len();
        *self.clients.write().expect("clients lock") = out;
        Ok(n)
    }

    /// The organisation of the NAS client named `name` (events carry the
    /// name in `vigie.auth.nas`); `None` for none or an unknown client.
    pub fn client_org(&self, name: &str) -> Option<String> {
        self.clients
            .read()
            .expect("clients lock")
            .iter()
            .find(|c| c.name == name)
            .and_then(|c| c.org.clone())
    }

    pub fn client_for(&self, ip: IpAddr) -> Option<Arc<Client>> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.clients
            .read()
            .expect("clients lock")
            .iter()
            .find(|c| c.net.contains(&ip))
            .cloned()
    }

    /// Serve RADIUS over UDP until the socket fails. Each request runs in its
    /// own task (password hashing must not hold up other NASes).
    pub async fn serve_udp(self: Arc<Self>, socket: UdpSocket) -> Result<()> {
        let socket = Arc::new(socket);
        let mut buf = vec![0u8; packet::MAX_LEN];
        loop {
            let (n, src) = socket.recv_from(&mut buf).await?;
            let raw = buf[..n].to_vec();
            let me = self.clone();
            let sock = socket.clone();
            tokio::spawn(async move {
                if let Some(resp) = me.handle_datagram(&raw, src).await
                    && let Err(e) = sock.send_to(&resp, src).await
                {
                    tracing::warn!(%src, error = %e, "sending RADIUS answer failed");
                }
            });
        }
    }

    /// One request in, at most one answer out. `None` means the request is
    /// dropped (unknown client, bad authenticator, malformed): never answered.
    pub async fn handle_datagram(&self, raw: &[u8], src: SocketAddr) -> Option<Vec<u8>> {
        let Some(client) = self.client_for(src.ip()) else {
            tracing::warn!(%src, "RADIUS packet from an unknown client dropped");
            return None;
        };
        self.handle_for(raw, src, &client).await
    }

    /// A packet received over RadSec: the shared secret is "radsec" (RFC 6614 §2.3).
    pub async fn handle_radsec(&self, raw: &[u8], src: SocketAddr) -> Option<Vec<u8>> {
        let client = self.radsec_client(src, false)?;
        self.handle_for(raw, src, &client).await
    }

    /// A packet received on a RadSec connection that negotiated RADIUS/1.1
    /// (RFC 9765). Duplicates are the connection's business (the Token is
    /// only unique per connection): see [`crate::radsec`].
    pub async fn handle_radius11(&self, raw: &[u8], src: SocketAddr) -> Option<Vec<u8>> {
        let client = self.radsec_client(src, true)?;
        let arrived = Instant::now();
        let pkt = match crate::radius11::decode(raw) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(%src, client = %client.name, error = %e, "malformed RADIUS/1.1 packet dropped");
                return None;
            }
        };
        self.handle_packet(raw, &pkt, &client, src, arrived).await
    }

    fn radsec_client(&self, src: SocketAddr, radius11: bool) -> Option<Client> {
        let Some(c) = self.client_for(src.ip()) else {
            tracing::warn!(%src, "RadSec packet from an unknown client dropped");
            return None;
        };
        Some(Client {
            name: c.name.clone(),
            net: c.net,
            secret: Zeroizing::new(b"radsec".to_vec()),
            transport: c.transport,
            require_message_authenticator: c.require_message_authenticator,
            org: c.org.clone(),
            radius11,
        })
    }

    async fn handle_for(&self, raw: &[u8], src: SocketAddr, client: &Client) -> Option<Vec<u8>> {
        let arrived = Instant::now();
        let pkt = match Packet::decode(raw) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(%src, client = %client.name, error = %e, "malformed RADIUS packet dropped");
                return None;
            }
        };
        // RFC 5080 §2.2.2: a retransmission gets the same answer, and is not
        // processed twice (that would count a failure twice or burn a code);
        // one that arrives while its request is in progress (e.g. a reject
        // being delayed) is dropped: the answer is on its way.
        let key = (src, pkt.identifier, pkt.authenticator);
        let seen = {
            let mut d = self.duplicates.lock().expect("dup lock");
            let now = Instant::now();
            d.expire(now, self.cfg.duplicate_window);
            match d.map.get(&key) {
                Some((t, cached)) if now.duration_since(*t) < self.cfg.duplicate_window => {
                    tracing::debug!(%src, id = pkt.identifier, "duplicate request");
                    return cached.clone();
                }
                _ => {
                    d.map.insert(key, (now, None));
                    d.order.push_back((now, key));
                    now
                }
            }
        };
        let answer = self.handle_packet(raw, &pkt, client, src, arrived).await;
        let mut d = self.duplicates.lock().expect("dup lock");
        // Kept under the time it was first seen: the window counts from there.
        match &answer {
            // Unless it already left the window (then its order entry is gone too).
            Some(a) => {
                if let Some(e) = d.map.get_mut(&key).filter(|e| e.0 == seen) {
                    e.1 = Some(a.clone());
                }
            }
            None => {
                d.map.remove(&key);
            }
        }
        answer
    }

    async fn handle_packet(
        &self,
        raw: &[u8],
        pkt: &Packet,
        client: &Client,
        src: SocketAddr,
        arrived: Instant,
    ) -> Option<Vec<u8>> {
        // RADIUS/1.1: TLS authenticates every packet; Message-Authenticator
        // was already discarded by the decoder (RFC 9765 §5.2).
        let ma = if client.radius11 {
            MessageAuth::Valid
        } else {
            packet::verify_request_message_authenticator(raw, &client.secret)
        };
        match pkt.code {
            code::ACCESS_REQUEST | code::STATUS_SERVER => {
                match ma {
                    MessageAuth::Valid => {}
                    MessageAuth::Invalid => {
                        tracing::warn!(%src, client = %client.name, "bad Message-Authenticator: dropped");
                        return None;
                    }
                    MessageAuth::Missing => {
                        // BlastRADIUS: without Message-Authenticator the answer can be forged.
                        if client.require_message_authenticator || pkt.code == code::STATUS_SERVER {
                            tracing::warn!(%src, client = %client.name, "request without Message-Authenticator dropped");
                            return None;
                        }
                        if pkt.get(attr::PROXY_STATE).is_some() {
                            tracing::warn!(%src, client = %client.name, "legacy request with Proxy-State and no Message-Authenticator dropped");
                            return None;
                        }
                    }
                }
                let resp = if pkt.code == code::STATUS_SERVER {
                    Packet::new(code::ACCESS_ACCEPT, pkt.identifier, [0; 16])
                } else {
                    self.access_request(pkt, client, src, arrived).await
                };
                self.finish(resp, pkt, client)
            }
            code::ACCOUNTING_REQUEST => {
                if (!client.radius11 && !packet::verify_accounting_request(raw, &client.secret))
                    || ma == MessageAuth::Invalid
                {
                    tracing::warn!(%src, client = %client.name, "bad accounting authenticator: dropped");
                    return None;
                }
                if let Err(e) = self.accounting(pkt, client).await {
                    // No answer: the NAS retries, so nothing is lost.
                    tracing::error!(client = %client.name, error = %e, "storing accounting record failed");
                    return None;
                }
                let resp = Packet::new(code::ACCOUNTING_RESPONSE, pkt.identifier, [0; 16]);
                self.finish(resp, pkt, client)
            }
            other => {
                tracing::warn!(%src, code = other, "unexpected RADIUS code dropped");
                None
            }
        }
    }

    fn finish(&self, mut resp: Packet, req: &Packet, client: &Client) -> Option<Vec<u8>> {
        // RFC 2865: Proxy-State is echoed unmodified, in order.
        for ps in req.get_all(attr::PROXY_STATE) {
            resp.push(attr::PROXY_STATE, ps.to_vec());
        }
        let encoded = if client.radius11 {
            crate::radius11::encode(resp, crate::radius11::token(req))
        } else {
            packet::encode_response(resp, &req.authenticator, &client.secret)
        };
        match encoded {
            Ok(b) => Some(b),
            Err(e) => {
                tracing::error!(error = %e, "encoding answer failed");
                None
            }
        }
    }

    async fn access_request(
        &self,
        pkt: &Packet,
        client: &Client,
        src: SocketAddr,
        arrived: Instant,
    ) -> Packet {
        let user = pkt.get_str(attr::USER_NAME).unwrap_or_default();
        let calling = pkt.get_str(attr::CALLING_STATION_ID);
        let decision = self.decide(pkt, client, &user, calling.as_deref()).await;
        let mut resp;
        let (outcome, reason, step) = match decision {
            Decision::Accept { step } => {
                resp = Packet::new(code::ACCESS_ACCEPT, pkt.identifier, [0; 16]);
                // Every attempt is an authentication event (the manager's
                // database, `vigie radius --events`); the log at info keeps
                // what needs attention, and one line per login cost 3 % of
                // the server's CPU under load.
                tracing::debug!(user = %user, client = %client.name, "access accepted");
                (Outcome::Success, None, step)
            }
            Decision::Reject { reason, step } => {
                resp = Packet::new(code::ACCESS_REJECT, pkt.identifier, [0; 16]);
                // Same words whatever the reason: the answer must not tell
                // whether the user exists or which factor failed.
                resp.push(attr::REPLY_MESSAGE, b"Authentication failed".to_vec());
                tracing::info!(user = %user, client = %client.name, reason, "access rejected");
                (Outcome::Failure, Some(reason), step)
            }
            Decision::Challenge { state } => {
                resp = Packet::new(code::ACCESS_CHALLENGE, pkt.identifier, [0; 16]);
                resp.push(
                    attr::REPLY_MESSAGE,
                    b"Enter your verification code".to_vec(),
                );
                resp.push(attr::STATE, state.to_vec());
                return resp;
            }
        };
        self.emit(pkt, client, src, &user, calling, outcome, reason, step);
        if outcome == Outcome::Failure {
            // Counted and reported already; only the answer waits (its own
            // task: other requests go on meanwhile).
            tokio::time::sleep_until((arrived + self.cfg.reject_delay).into()).await;
        }
        resp
    }

    #[allow(clippy::too_many_arguments)]
    fn emit(
        &self,
        pkt: &Packet,
        client: &Client,
        src: SocketAddr,
        user: &str,
        calling: Option<String>,
        outcome: Outcome,
        reason: Option<&str>,
        step: &str,
    ) {
        let source_ip = calling.as_deref().and_then(parse_calling_ip);
        let ev = AuthEvent {
            outcome,
            user: User {
                name: (!user.is_empty()).then(|| user.to_string()),
                ..User::default()
            },
            source: Endpoint {
                ip: source_ip,
                ..Endpoint::default()
            },
            auth: AuthDetails {
                service: "vpn".into(),
                nas: Some(client.name.clone()),
                nas_ip: pkt
                    .get_ipv4(attr::NAS_IP_ADDRESS)
                    .map(IpAddr::V4)
                    .or(Some(src.ip())),
                reason: reason.map(str::to_string),
                step: Some(step.to_string()),
                calling_station_id: calling,
                local_hour: Some(chrono::Timelike::hour(&chrono::Local::now()) as u8),
            },
        };
        self.sink.emit(Event::new(
            chrono::Utc::now(),
            Host::named(self.cfg.host.clone()),
            Payload::Authentication(ev),
        ));
    }

    async fn decide(
        &self,
        pkt: &Packet,
        client: &Client,
        user: &str,
        calling: Option<&str>,
    ) -> Decision {
        if user.is_empty() || crate::store::validate_name("user", user).is_err() {
            return reject("missing or invalid user name", "request");
        }
        let Some(hidden) = pkt.get(attr::USER_PASSWORD) else {
            return reject(
                "no User-Password (CHAP and others are not supported)",
                "request",
            );
        };
        let field = if client.radius11 {
            crate::radius11::user_password(hidden)
        } else {
            packet::unhide_password(hidden, &client.secret, &pkt.authenticator)
        };
        let Some(field) = field else {
            return reject("malformed User-Password", "request");
        };
        if let Some(src) = calling
            && self.source_blocked(src)
        {
            return reject("too many failures from this source", "throttle");
        }
        if pkt.get(attr::STATE).is_none()
            && let Some(d) = self.cached_accept(user, &field, client).await
        {
            if let Some(c) = calling {
                self.sources.lock().expect("sources lock").remove(c);
            }
            return d;
        }
        // Boxed: its state (database reads, argon2, failure accounting) is
        // most of a request's future, which every request's task would
        // otherwise allocate and copy, the warm accepts included.
        Box::pin(self.decide_full(pkt, client, user, calling, field)).await
    }

    /// Everything but the warm path: a fresh read of the user, then each
    /// factor, counting failures and spending a reject's time.
    async fn decide_full(
        &self,
        pkt: &Packet,
        client: &Client,
        user: &str,
        calling: Option<&str>,
        field: Zeroizing<Vec<u8>>,
    ) -> Decision {
        let record = match self.store.get_user(user).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "reading user failed");
                return reject("internal error", "request");
            }
        };

        // Second round of an Access-Challenge: the field is the code.
        if let Some(state) = pkt.get(attr::STATE) {
            let pending = <[u8; 16]>::try_from(state)
                .ok()
                .and_then(|s| self.challenges.lock().expect("challenge lock").remove(&s));
            let valid = pending.is_some_and(|p| {
                p.expires > Instant::now() && p.user == user && p.client == client.name
            });
            let Some(u) = record.filter(|_| valid) else {
                self.failure(None, client, calling).await;
                return reject("invalid or expired challenge", "challenge");
            };
            let code = String::from_utf8_lossy(&field).into_owned();
            return self
                .check_code(&u, &code, client, calling, "challenge")
                .await;
        }

        let digits = record.as_ref().map(|u| u.totp_digits).unwrap_or(6);
        let (password, code) = match split_code(&field, client.transport, digits) {
            Ok(pc) => pc,
            Err(reason) => {
                self.burn_time().await;
                self.failure(record.as_ref(), client, calling).await;
                return reject(reason, "password");
            }
        };

        let now = now_unix();
        let usable = match &record {
            None => Err("unknown user"),
            Some(u) if u.disabled => Err("account disabled"),
            Some(u) if u.locked_until > now => Err("account locked"),
            Some(_) => Ok(()),
        };
        if let Err(reason) = usable {
            self.burn_time().await;
            // Unknown users count against their source only.
            self.failure(None, client, calling).await;
            return reject(reason, "password");
        }
        let u = record.expect("checked above");
        let cached = match self.check_password(&u, &password).await {
            Password::Wrong => {
                self.failure(Some(&u), client, calling).await;
                return reject("wrong password", "password");
            }
            Password::Verified => false,
            Password::Cached => true,
        };
        let decision = self.second_factor(&u, code, client, calling).await;
        if cached && matches!(decision, Decision::Reject { .. }) {
            // A cache hit takes microseconds: without this, a fast reject
            // (right password, wrong or missing code) would tell an attacker
            // the password was right, where a wrong one pays argon2.
            self.burn_time().await;
        }
        decision
    }

    /// The warm path: a user accepted recently ([`UserCache`]), the password
    /// in the verified-credential cache, a code for a step newer than the
    /// last one accepted. No database read: the step is recorded with a
    /// compare-and-set that also checks, in the database, that the account
    /// is still enabled, unlocked, with the same password hash and TOTP
    /// secret ([`StepUpdate`]), so a change by any process takes effect at
    /// once. Only an accept is decided here; anything else (`None`) goes
    /// through the full path on a fresh read of the user, which counts
    /// failures and spends the time a reject must take.
    async fn cached_accept(&self, user: &str, field: &[u8], client: &Client) -> Option<Decision> {
        let warm = self.users.get(user)?;
        let u = &warm.record;
        if u.backend == "ldap" {
            return None;
        }
        let Ok((password, Some(code))) = split_code(field, client.transport, u.totp_digits) else {
            return None;
        };
        if !self
            .creds
            .check(user, &password, u.password_hash.as_deref()?)
        {
            return None;
        }
        let acc = verify_totp(u, &warm.totp_key, &code, warm.last_step)?;
        let update = StepUpdate::for_user(u, acc.step, acc.drift)?;
        match self.steps.accept(update).await {
            Ok(true) => {
                self.users.accepted(user, acc.step);
                self.warm_accepts
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Some(Decision::Accept { step: "totp" })
            }
            // Changed or replayed meanwhile: the full path finds out which.
            _ => {
                self.users.forget(user);
                None
            }
        }
    }

    /// After a right password: the TOTP code, or an Access-Challenge for it.
    async fn second_factor(
        &self,
        u: &UserRecord,
        code: Option<String>,
        client: &Client,
        calling: Option<&str>,
    ) -> Decision {
        match code {
            Some(code) => self.check_code(u, &code, client, calling, "totp").await,
            None if client.transport == CodeTransport::Challenge => {
                if u.totp_secret.is_none() {
                    self.failure(Some(u), client, calling).await;
                    return reject("not enrolled", "totp");
                }
                let state = crypto::random_bytes::<16>();
                let mut c = self.challenges.lock().expect("challenge lock");
                let now = Instant::now();
                c.retain(|_, p| p.expires > now);
                c.insert(
                    state,
                    Pending {
                        user: u.name.clone(),
                        client: client.name.clone(),
                        expires: now + self.cfg.challenge_ttl,
                    },
                );
                Decision::Challenge { state }
            }
            None => {
                self.failure(Some(u), client, calling).await;
                reject("code missing", "totp")
            }
        }
    }

    async fn check_code(
        &self,
        u: &UserRecord,
        code: &str,
        client: &Client,
        calling: Option<&str>,
        step: &'static str,
    ) -> Decision {
        let Some(sealed) = &u.totp_secret else {
            self.failure(Some(u), client, calling).await;
            return reject("not enrolled", step);
        };
        let secret = match self.key.open(sealed, &format!("totp:{}", u.name)) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(user = %u.name, error = %e, "TOTP secret unreadable");
                return reject("internal error", step);
            }
        };
        let accepted = verify_totp(u, &secret, code, u.last_step);
        let update = accepted.and_then(|acc| StepUpdate::for_user(u, acc.step, acc.drift));
        match accepted.zip(update) {
            Some((acc, update)) => match self.steps.accept(update).await {
                Ok(true) => {
                    if let Some(c) = calling {
                        self.sources.lock().expect("sources lock").remove(c);
                    }
                    // The next logins take the warm path.
                    if u.backend != "ldap" {
                        self.users.insert(u.clone(), acc.step, secret);
                    }
                    Decision::Accept { step }
                }
                Ok(false) => {
                    // Another request took this step, or the account changed
                    // (disabled, locked, ...) since it was read.
                    let reused = match self.store.get_user(&u.name).await {
                        Ok(Some(now)) => now.last_step >= acc.step,
                        _ => false,
                    };
                    self.failure(Some(u), client, calling).await;
                    let reason = if reused {
                        "code reused"
                    } else {
                        "account changed"
                    };
                    reject(reason, step)
                }
                Err(e) => {
                    tracing::error!(error = %e, "recording TOTP step failed");
                    reject("internal error", step)
                }
            },
            None => {
                let reused = verify_totp(u, &secret, code, i64::MIN).is_some();
                self.failure(Some(u), client, calling).await;
                reject(if reused { "code reused" } else { "wrong code" }, step)
            }
        }
    }

    async fn check_password(&self, u: &UserRecord, password: &[u8]) -> Password {
        let verified = |ok| {
            if ok {
                Password::Verified
            } else {
                Password::Wrong
            }
        };
        if password.is_empty() {
            self.burn_time().await;
            return Password::Wrong;
        }
        match u.backend.as_str() {
            "ldap" => match &self.ldap {
                Some(b) => verified(b.verify(&u.name, password).await),
                None => {
                    tracing::error!(user = %u.name, "LDAP user but no LDAP directory configured");
                    Password::Wrong
                }
            },
            _ => {
                let Some(hash) = u.password_hash.as_deref() else {
                    self.burn_time().await;
                    return Password::Wrong;
                };
                // Only a match is taken from the cache; anything else pays argon2.
                if self.creds.check(&u.name, password, hash) {
                    return Password::Cached;
                }
                let ok = self.argon2_verify(password, hash).await;
                if ok {
                    self.creds.insert(&u.name, password, hash);
                }
                verified(ok)
            }
        }
    }

    /// argon2id on the blocking pool, at most `hash_workers` at once: a flood
    /// of wrong passwords queues here instead of taking every core and
    /// gigabytes of memory, and cached logins do not wait behind it.
    async fn argon2_verify(&self, password: &[u8], hash: &str) -> bool {
        let Ok(_slot) = self.hash_slots.acquire().await else {
            return false;
        };
        let pw = Zeroizing::new(password.to_vec());
        let hash = hash.to_string();
        tokio::task::spawn_blocking(move || crypto::verify_password(&pw, &hash))
            .await
            .unwrap_or(false)
    }

    /// Spend the time of a password check, for answers that must not be faster.
    async fn burn_time(&self) {
        self.argon2_verify(b"x", &self.dummy_hash).await;
    }

    async fn failure(&self, u: Option<&UserRecord>, client: &Client, calling: Option<&str>) {
        if let Some(u) = u {
            self.users.forget(&u.name);
            let now = now_unix();
            match self
                .store
                .record_failure(&u.name, now, &self.cfg.lockout)
                .await
            {
                // `u` was read before this failure: locked now, not before.
                Ok((failures, until)) if until > now && u.locked_until <= now => {
                    self.locked(u, failures, until, client, calling).await
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "recording failure failed"),
            }
        }
        if let Some(c) = calling {
            let mut s = self.sources.lock().expect("sources lock");
            let now = Instant::now();
            let e = s.entry(c.to_string()).or_insert((0, now));
            if now.duration_since(e.1) > self.cfg.source_window {
                *e = (0, now);
            }
            e.0 += 1;
        }
    }

    /// Tell the audit log and the sink that `u` is now locked.
    async fn locked(
        &self,
        u: &UserRecord,
        failures: i64,
        until: i64,
        client: &Client,
        calling: Option<&str>,
    ) {
        tracing::warn!(user = %u.name, client = %client.name, seconds = until - now_unix(), "account locked after repeated failures");
        let detail = serde_json::json!({
            "until": until, "failures": failures, "nas": client.name, "source": calling,
        });
        if let Err(e) = self
            .store
            .audit("radius", "vpn.lockout", &u.name, &detail.to_string())
            .await
        {
            tracing::error!(error = %e, "auditing a lockout failed");
        }
        self.sink.lockout(Lockout {
            user: u.name.clone(),
            until,
            failures,
            nas: client.name.clone(),
            source: calling.map(str::to_string),
        });
    }

    fn source_blocked(&self, calling: &str) -> bool {
        let s = self.sources.lock().expect("sources lock");
        s.get(calling).is_some_and(|(n, t)| {
            *n >= self.cfg.source_max_failures && t.elapsed() < self.cfg.source_window
        })
    }

    async fn accounting(&self, pkt: &Packet, client: &Client) -> Result<()> {
        let status = pkt.get_u32(attr::ACCT_STATUS_TYPE).unwrap_or(0);
        // 1 Start, 2 Stop, 3 Interim-Update; 7/8 Accounting-On/Off carry no session.
        if !matches!(status, 1..=3) {
            return Ok(());
        }
        let Some(session_id) = pkt.get_str(attr::ACCT_SESSION_ID) else {
            anyhow::bail!("accounting request without Acct-Session-Id");
        };
        let octets = |lo, hi| {
            (pkt.get_u32(hi).unwrap_or(0) as i64) << 32 | pkt.get_u32(lo).unwrap_or(0) as i64
        };
        self.store
            .upsert_session(&SessionUpdate {
                nas: client.name.clone(),
                session_id,
                user_name: pkt.get_str(attr::USER_NAME).unwrap_or_default(),
                client_ip: pkt.get_str(attr::CALLING_STATION_ID),
                tunnel_ip: pkt.get_ipv4(attr::FRAMED_IP_ADDRESS).map(|i| i.to_string()),
                now: now_unix(),
                stop: status == 2,
                duration: pkt.get_u32(attr::ACCT_SESSION_TIME).unwrap_or(0) as i64,
                input_octets: octets(attr::ACCT_INPUT_OCTETS, attr::ACCT_INPUT_GIGAWORDS),
                output_octets: octets(attr::ACCT_OUTPUT_OCTETS, attr::ACCT_OUTPUT_GIGAWORDS),
            })
            .await
    }
}

/// Calling-Station-Id is an IP for VPNs; some NASes add a port ("1.2.3.4:5555"
/// or "[::1]:5555").
fn parse_calling_ip(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| s.rsplit_once(':').and_then(|(h, _)| h.parse().ok()))
}

/// The step `code` is for under `u`'s TOTP settings and decrypted `secret`,
/// if it is newer than `last_step` (the warm path and the full one).
fn verify_totp(
    u: &UserRecord,
    secret: &[u8],
    code: &str,
    last_step: i64,
) -> Option<totp::Accepted> {
    let alg = totp::parse_algorithm(&u.totp_algorithm).unwrap_or(totp::Algorithm::SHA1);
    let now = now_unix().max(0) as u64;
    totp::verify(secret, alg, u.totp_digits, code, now, last_step)
}

type Split = (Zeroizing<Vec<u8>>, Option<String>);

/// Separate password and code according to how this NAS sends them.
/// `SCRV1:base64(password):base64(code)` (OpenVPN static challenge) is
/// recognised from any NAS.
pub fn split_code(
    field: &[u8],
    transport: CodeTransport,
    digits: u32,
) -> Result<Split, &'static str> {
    if let Some(rest) = field.strip_prefix(b"SCRV1:") {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut parts = rest.splitn(2, |&b| b == b':');
        let (Some(p), Some(c)) = (parts.next(), parts.next()) else {
            return Err("malformed SCRV1 response");
        };
        let pw = Zeroizing::new(b64.decode(p).map_err(|_| "malformed SCRV1 response")?);
        let code = b64.decode(c).map_err(|_| "malformed SCRV1 response")?;
        let code = String::from_utf8(code).map_err(|_| "malformed SCRV1 response")?;
        return Ok((pw, Some(code.trim().to_string())));
    }
    if transport == CodeTransport::Challenge {
        return Ok((Zeroizing::new(field.to_vec()), None));
    }
    let d = digits as usize;
    let is_code = |s: &[u8]| s.len() == d && s.iter().all(u8::is_ascii_digit);
    if let Some(pos) = field.iter().rposition(|&b| b == b',')
        && is_code(&field[pos + 1..])
    {
        return Ok((
            Zeroizing::new(field[..pos].to_vec()),
            Some(String::from_utf8_lossy(&field[pos + 1..]).into_owned()),
        ));
    }
    if field.len() > d && is_code(&field[field.len() - d..]) {
        let (p, c) = field.split_at(field.len() - d);
        return Ok((
            Zeroizing::new(p.to_vec()),
            Some(String::from_utf8_lossy(c).into_owned()),
        ));
    }
    Err("code missing")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits() {
        let (p, c) = split_code(b"secret123456", CodeTransport::Append, 6).unwrap();
        assert_eq!((&p[..], c.as_deref()), (&b"secret"[..], Some("123456")));
        let (p, c) = split_code(b"sec,ret,123456", CodeTransport::Append, 6).unwrap();
        assert_eq!((&p[..], c.as_deref()), (&b"sec,ret"[..], Some("123456")));
        let (p, c) = split_code(b"pw12345678", CodeTransport::Append, 8).unwrap();
        assert_eq!((&p[..], c.as_deref()), (&b"pw"[..], Some("12345678")));
        assert!(split_code(b"secret", CodeTransport::Append, 6).is_err());
        assert!(split_code(b"123456", CodeTransport::Append, 6).is_err());
        let (p, c) = split_code(b"secret", CodeTransport::Challenge, 6).unwrap();
        assert_eq!((&p[..], c), (&b"secret"[..], None));
        // echo -n pass | base64 ; echo -n 123456 | base64
        let (p, c) = split_code(b"SCRV1:cGFzcw==:MTIzNDU2", CodeTransport::Challenge, 6).unwrap();
        assert_eq!((&p[..], c.as_deref()), (&b"pass"[..], Some("123456")));
        assert!(split_code(b"SCRV1:!!:MTIz", CodeTransport::Append, 6).is_err());
    }

    #[test]
    fn calling_station_ids() {
        assert_eq!(
            parse_calling_ip("192.0.2.1"),
            Some("192.0.2.1".parse().unwrap())
        );
        assert_eq!(
            parse_calling_ip("192.0.2.1:4444"),
            Some("192.0.2.1".parse().unwrap())
        );
        assert_eq!(
            parse_calling_ip("[2001:db8::1]:4444"),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(parse_calling_ip("00-11-22-33-44-55"), None);
    }
}
