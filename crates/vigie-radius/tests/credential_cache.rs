//! The verified-credential cache inside the server: a user's next login skips
//! argon2id, and a reject after a cache hit (right password, wrong code) still
//! takes as long as a wrong password, so its timing does not tell that the
//! password was right. Requests go straight to `Server::handle_datagram`, so
//! the times measured are the server's alone.

mod common;
use common::*;
use std::time::{Duration, Instant};
use vigie_radius::packet::{self, code};
use vigie_radius::store::LockoutPolicy;
use vigie_radius::{CodeTransport, Config};

/// One Access-Request; returns the answer's code and the time it took.
async fn login(f: &Fixture, user: &str, field: &str) -> (u8, Duration) {
    let (raw, auth) = signed_request(user, field);
    let t = Instant::now();
    let resp = f
        .server
        .handle_datagram(&raw, "127.0.0.1:40000".parse().unwrap())
        .await
        .expect("an answer");
    let took = t.elapsed();
    assert!(packet::verify_response(&resp, &auth, SECRET.as_bytes()));
    (resp[0], took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_password_is_fast_but_its_rejects_are_not() {
    let cfg = Config {
        lockout: LockoutPolicy {
            max_failures: 100,
            ..LockoutPolicy::default()
        },
        ..common::config()
    };
    let f = fixture(CodeTransport::Append, true, cfg).await;
    let b32 = f.user("alice", "alice pw").await;
    let at = |steps: i64| oathtool(&b32, steps);

    // First login: argon2id, and the password goes into the cache.
    let (c, _) = login(&f, "alice", &format!("alice pw{}", at(-1))).await;
    assert_eq!(c, code::ACCESS_ACCEPT);

    // Each kind three times, the fastest kept (the machine may be busy).
    let mut wrong_pw = Duration::MAX;
    let mut cached_wrong_code = Duration::MAX;
    for _ in 0..3 {
        let (c, t) = login(&f, "alice", "not alice pw000000").await;
        assert_eq!(c, code::ACCESS_REJECT);
        wrong_pw = wrong_pw.min(t);
        let (c, t) = login(&f, "alice", "alice pw000000").await;
        assert_eq!(c, code::ACCESS_REJECT);
        cached_wrong_code = cached_wrong_code.min(t);
    }
    // The next two steps' codes: accepted from the cache, without argon2id.
    let mut warm = Duration::MAX;
    for step in [0, 1] {
        let (c, t) = login(&f, "alice", &format!("alice pw{}", at(step))).await;
        assert_eq!(c, code::ACCESS_ACCEPT);
        warm = warm.min(t);
    }
    assert!(
        cached_wrong_code >= wrong_pw / 2,
        "a reject after a cache hit ({cached_wrong_code:?}) is faster than one for a wrong password ({wrong_pw:?})"
    );
    assert!(
        warm < wrong_pw / 2,
        "a cached login ({warm:?}) is not faster than an argon2id check ({wrong_pw:?})"
    );
}
