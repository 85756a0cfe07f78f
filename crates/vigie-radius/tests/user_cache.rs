//! The warm path takes a recently accepted user from memory, not from the
//! database. An administrator's change made by another process (here a
//! second connection to the same database file, as `vigie mfa` makes)
//! must still take effect on the very next login: disable, lockout, a new
//! password, a TOTP reset. And a code accepted on the warm path is never
//! accepted again.

mod common;
use common::*;
use vigie_event::Payload;
use vigie_radius::store::LockoutPolicy;
use vigie_radius::{CodeTransport, Store};

fn req(user: &str, field: &str) -> String {
    format!(
        "User-Name = \"{user}\", User-Password = \"{field}\", Calling-Station-Id = \"198.51.100.8\", Message-Authenticator = 0x00"
    )
}

/// The reason of the last event for `user`.
fn last_reason(f: &Fixture, user: &str) -> Option<String> {
    let events = f.events.0.lock().unwrap();
    events.iter().rev().find_map(|e| match &e.payload {
        Payload::Authentication(a) if a.user.name.as_deref() == Some(user) => {
            Some(a.auth.reason.clone().unwrap_or_else(|| "accepted".into()))
        }
        _ => None,
    })
}

/// Logs `user` in twice (the second time on the warm path) and returns its
/// base32 secret and the code of the warm login (a replay must send that
/// very code: asking oathtool again after a step boundary gives a new one).
async fn warm_user(f: &Fixture, user: &str, pw: &str) -> (String, String) {
    let b32 = f.user(user, pw).await;
    let out = f
        .radclient(&req(user, &format!("{pw}{}", oathtool(&b32, -1))))
        .await;
    assert!(accepted(&out), "{user} cold login: {out}");
    let warm = f.server.warm_accepts();
    let code = oathtool(&b32, 0);
    let out = f.radclient(&req(user, &format!("{pw}{code}"))).await;
    assert!(accepted(&out), "{user} warm login: {out}");
    assert_eq!(
        f.server.warm_accepts(),
        warm + 1,
        "{user}: not the warm path"
    );
    (b32, code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_changes_by_another_process_apply_to_cached_users_at_once() {
    let f = fixture(CodeTransport::Append, true, common::config()).await;
    // What `vigie mfa --data DIR user ...` does: its own connection.
    let (admin, _key) = Store::open_data_dir(f.dir.path()).await.unwrap();

    // Replay: the warm login's code again, refused.
    let (_, same) = warm_user(&f, "alice", "alice pw").await;
    let out = f.radclient(&req("alice", &format!("alice pw{same}"))).await;
    assert!(rejected(&out), "replayed code accepted: {out}");
    assert_eq!(last_reason(&f, "alice").as_deref(), Some("code reused"));

    // Disabled while cached: refused at once; enabled again: accepted.
    let (b32, _) = warm_user(&f, "bob", "bob pw").await;
    admin.set_disabled("bob", true).await.unwrap();
    let next = oathtool(&b32, 1);
    let out = f.radclient(&req("bob", &format!("bob pw{next}"))).await;
    assert!(rejected(&out), "disabled user accepted: {out}");
    assert_eq!(last_reason(&f, "bob").as_deref(), Some("account disabled"));
    admin.set_disabled("bob", false).await.unwrap();
    let out = f.radclient(&req("bob", &format!("bob pw{next}"))).await;
    assert!(accepted(&out), "re-enabled user refused: {out}");

    // Locked by another manager (failures counted elsewhere): refused.
    let (b32, _) = warm_user(&f, "carol", "carol pw").await;
    let strict = LockoutPolicy {
        max_failures: 1,
        ..LockoutPolicy::default()
    };
    let (_, until) = admin
        .record_failure("carol", vigie_radius::store::now_unix(), &strict)
        .await
        .unwrap();
    assert!(until > 0);
    let out = f
        .radclient(&req("carol", &format!("carol pw{}", oathtool(&b32, 1))))
        .await;
    assert!(rejected(&out), "locked user accepted: {out}");
    assert_eq!(last_reason(&f, "carol").as_deref(), Some("account locked"));

    // A new password: the old one refused at once, the new one accepted.
    let (b32, _) = warm_user(&f, "dave", "old pw").await;
    let hash = vigie_radius::crypto::hash_password(b"new pw").unwrap();
    admin.set_password_hash("dave", &hash).await.unwrap();
    let next = oathtool(&b32, 1);
    let out = f.radclient(&req("dave", &format!("old pw{next}"))).await;
    assert!(rejected(&out), "old password accepted: {out}");
    assert_eq!(last_reason(&f, "dave").as_deref(), Some("wrong password"));
    let out = f.radclient(&req("dave", &format!("new pw{next}"))).await;
    assert!(accepted(&out), "new password refused: {out}");

    // TOTP reset: the old authenticator's codes refused at once.
    let (b32, _) = warm_user(&f, "erin", "erin pw").await;
    admin.reset_totp("erin").await.unwrap();
    let out = f
        .radclient(&req("erin", &format!("erin pw{}", oathtool(&b32, 1))))
        .await;
    assert!(rejected(&out), "reset TOTP accepted: {out}");
    assert_eq!(last_reason(&f, "erin").as_deref(), Some("not enrolled"));
}

/// Every request runs in its own task, whose allocation holds the
/// request's whole future. The full path (database reads, argon2, failure
/// accounting) and a send to a full step-writer queue are boxed inside it,
/// so a warm accept does not allocate and copy the state of paths it does
/// not take: 2,272 bytes before, 1,176 after (Rust 1.95).
#[tokio::test]
async fn a_request_future_stays_small() {
    let f = fixture(CodeTransport::Append, true, config()).await;
    let (raw, _) = signed_request("alice", "pw123456");
    let src: std::net::SocketAddr = "127.0.0.1:1812".parse().unwrap();
    let fut = f.server.handle_datagram(&raw, src);
    let size = std::mem::size_of_val(&fut);
    eprintln!("request future: {size} bytes");
    assert!(size <= 1280, "request future is {size} bytes");
}
