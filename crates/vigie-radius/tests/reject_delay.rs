//! The reject delay (`Config::reject_delay`, FreeRADIUS's `reject_delay`):
//! every Access-Reject leaves one delay after its request arrived, whatever
//! failed, while accepts and other requests go on meanwhile; a
//! retransmission during the delay is neither answered twice nor counted
//! twice. Real UDP to the server's own loop, and a real radclient.

mod common;
use common::*;
use std::time::{Duration, Instant};
use test_support::radius::{oathtool, radclient_with_timeout, rejected};
use tokio::net::UdpSocket;
use vigie_event::{Outcome, Payload};
use vigie_radius::packet::{self, code};
use vigie_radius::{CodeTransport, Config, DEFAULT_REJECT_DELAY};

/// Waits up to `within` for one answer on `sock`; checks it is signed.
async fn answer(sock: &UdpSocket, auth: &[u8; 16], within: Duration) -> Option<u8> {
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(within, sock.recv(&mut buf))
        .await
        .ok()?
        .unwrap();
    assert!(packet::verify_response(&buf[..n], auth, SECRET.as_bytes()));
    Some(buf[0])
}

/// Sends one request from a fresh socket; the answer's code and how long it took.
async fn login(f: &Fixture, user: &str, field: &str) -> (u8, Duration) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.connect(f.addr).await.unwrap();
    let (raw, auth) = signed_request(user, field);
    let t = Instant::now();
    sock.send(&raw).await.unwrap();
    let c = answer(&sock, &auth, Duration::from_secs(10))
        .await
        .expect("an answer");
    (c, t.elapsed())
}

fn failures(f: &Fixture, user: &str) -> usize {
    f.events
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|e| match &e.payload {
            Payload::Authentication(a) => {
                a.outcome == Outcome::Failure && a.user.name.as_deref() == Some(user)
            }
            _ => false,
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reject_waits_the_delay_whatever_failed() {
    let cfg = Config::default();
    assert_eq!(cfg.reject_delay, Duration::from_secs(1));
    let delay = cfg.reject_delay;
    let f = fixture(CodeTransport::Append, true, cfg).await;
    let b32 = f.user("alice", "alice pw").await;

    let cases = [
        ("unknown user", "mallory", format!("x{}", oathtool(&b32, 0))),
        (
            "wrong password",
            "alice",
            format!("nope{}", oathtool(&b32, 0)),
        ),
        ("wrong code", "alice", "alice pw000000".to_string()),
        ("no code", "alice", "alice pw".to_string()),
    ];
    for (what, user, field) in &cases {
        let (c, took) = login(&f, user, field).await;
        assert_eq!(c, code::ACCESS_REJECT, "{what}");
        assert!(
            took >= delay,
            "{what}: rejected after {took:?}, before the delay"
        );
        assert!(
            took < delay + Duration::from_secs(4),
            "{what}: rejected after {took:?}"
        );
    }

    // Accepts are not delayed: the first login pays argon2id, the next one
    // (a later step's code, password from the cache) takes milliseconds.
    let (c, _) = login(&f, "alice", &format!("alice pw{}", oathtool(&b32, 0))).await;
    assert_eq!(c, code::ACCESS_ACCEPT);
    let (c, took) = login(&f, "alice", &format!("alice pw{}", oathtool(&b32, 1))).await;
    assert_eq!(c, code::ACCESS_ACCEPT);
    assert!(took < delay / 2, "a warm accept took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_reject_holds_up_nothing_and_is_sent_once() {
    let cfg = Config {
        reject_delay: Duration::from_secs(2),
        ..Config::default()
    };
    let f = fixture(CodeTransport::Append, true, cfg).await;
    let bob = f.user("bob", "bob pw").await;
    let carol = f.user("carol", "carol pw").await;
    // Carol's password goes into the cache, so her next login is fast.
    let (c, _) = login(&f, "carol", &format!("carol pw{}", oathtool(&carol, 0))).await;
    assert_eq!(c, code::ACCESS_ACCEPT);

    // Bob's wrong password, then the same datagram again (a NAS
    // retransmitting) while the reject waits.
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.connect(f.addr).await.unwrap();
    let (raw, auth) = signed_request("bob", &format!("wrong{}", oathtool(&bob, 0)));
    let t = Instant::now();
    sock.send(&raw).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    sock.send(&raw).await.unwrap();

    // Meanwhile Carol gets in at once.
    let (c, took) = login(&f, "carol", &format!("carol pw{}", oathtool(&carol, 1))).await;
    assert_eq!(c, code::ACCESS_ACCEPT);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "carol waited for bob's reject ({took:?})"
    );

    // One answer for Bob, after the delay; no second one.
    assert_eq!(
        answer(&sock, &auth, Duration::from_secs(10)).await,
        Some(code::ACCESS_REJECT)
    );
    assert!(t.elapsed() >= Duration::from_secs(2));
    assert_eq!(
        answer(&sock, &auth, Duration::from_millis(1500)).await,
        None
    );
    assert_eq!(failures(&f, "bob"), 1, "the retransmission was counted");

    // A retransmission after the answer left gets the same answer again
    // (RFC 5080), at once and still counted once.
    let t = Instant::now();
    sock.send(&raw).await.unwrap();
    assert_eq!(
        answer(&sock, &auth, Duration::from_secs(1)).await,
        Some(code::ACCESS_REJECT)
    );
    assert!(t.elapsed() < Duration::from_secs(1));
    assert_eq!(failures(&f, "bob"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn radclient_waits_for_the_delayed_reject() {
    let f = fixture(CodeTransport::Append, true, Config::default()).await;
    let b32 = f.user("dave", "dave pw").await;
    let attrs = format!(
        "User-Name = \"dave\", User-Password = \"guess{}\", Message-Authenticator = 0x00",
        oathtool(&b32, 0)
    );
    let addr = f.addr;
    let t = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        radclient_with_timeout(addr, "auth", SECRET, &attrs, 3)
    })
    .await
    .unwrap();
    assert!(rejected(&out), "{out}");
    assert!(t.elapsed() >= DEFAULT_REJECT_DELAY);
}
