//! vigie-radius: Vigie's RADIUS server for VPN two-factor authentication.
//!
//! * [`packet`]: our RADIUS codec (RFC 2865/2866/3579), never panics on input.
//! * [`totp`]: RFC 6238 codes, one step either side, never the same step twice.
//! * [`credcache`]: passwords that passed argon2id, remembered as keyed hashes.
//! * [`crypto`]: the key file (`DIR/keys/mfa.key`) sealing secrets at rest, argon2id.
//! * [`store`]: [`Store`], users, NAS clients, VPN sessions and audit in `mfa_`
//!   tables (SQLite or PostgreSQL through sqlx).
//! * [`radsec`]: RADIUS over TLS (RFC 6614), and [`radius11`]: RADIUS/1.1
//!   (RFC 9765) for RadSec clients that negotiate it by ALPN.
//! * [`server`]: [`Server`], the RADIUS service; every attempt becomes a
//!   `vigie_event::Event` handed to an [`EventSink`].
//! * [`alert_log`]: alerts in the log, the first of each rule then a count
//!   per minute (the alert output keeps every one).

pub mod admin;
pub mod alert_log;
pub mod cli;
pub mod credcache;
pub mod crypto;
pub mod ldap;
pub mod packet;
pub mod radius11;
pub mod radsec;
pub mod server;
pub mod standalone;
pub mod store;
pub mod totp;

pub use crypto::MasterKey;
pub use server::{
    Config, DEFAULT_REJECT_DELAY, EventSink, Lockout, MAX_REJECT_DELAY, PasswordBackend, Server,
};
pub use store::{CodeTransport, Store};
