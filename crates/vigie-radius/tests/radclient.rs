//! Must show #1 and #2: a real radclient against the real server on loopback,
//! codes from oathtool.

mod common;
use common::*;
use vigie_event::Payload;
use vigie_radius::store::LockoutPolicy;
use vigie_radius::{CodeTransport, Config};

fn req(user: &str, password: &str) -> String {
    format!(
        "User-Name = \"{user}\", User-Password = \"{password}\", Calling-Station-Id = \"198.51.100.7\", Message-Authenticator = 0x00"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_reject_replay_and_silence() {
    let f = fixture(CodeTransport::Append, true, common::config()).await;
    let b32 = f.user("alice", "correct horse").await;

    // accept with password + code
    let code = oathtool(&b32, 0);
    let out = f
        .radclient(&req("alice", &format!("correct horse{code}")))
        .await;
    assert!(accepted(&out), "{out}");
    // the answer carries Message-Authenticator (radclient checks it)
    assert!(out.contains("Message-Authenticator"), "{out}");

    // the same code again: replay refused
    let out = f
        .radclient(&req("alice", &format!("correct horse{code}")))
        .await;
    assert!(rejected(&out), "{out}");

    // wrong password with a fresh code
    let next = oathtool(&b32, 1);
    let out = f
        .radclient(&req("alice", &format!("wrong horse{next}")))
        .await;
    assert!(rejected(&out), "{out}");

    // wrong code
    let out = f.radclient(&req("alice", "correct horse000000")).await;
    assert!(rejected(&out), "{out}");

    // unknown user: same answer
    let out = f.radclient(&req("nobody", "whatever123456")).await;
    assert!(rejected(&out), "{out}");
    assert!(out.contains("Authentication failed"), "{out}");

    // no Message-Authenticator: silence
    let out = f
        .radclient(&format!(
            "User-Name = \"alice\", User-Password = \"correct horse{next}\""
        ))
        .await;
    assert!(silent(&out), "{out}");

    // wrong shared secret, so a wrong Message-Authenticator: silence
    let out = radclient(
        f.addr,
        "auth",
        "another-secret-0123456789",
        &req("alice", "x123456"),
    )
    .await;
    assert!(silent(&out), "{out}");

    let reasons: Vec<(String, Option<String>)> = f
        .events
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|e| match &e.payload {
            Payload::Authentication(a) => (a.outcome.as_str().to_string(), a.auth.reason.clone()),
            _ => panic!("not an auth event"),
        })
        .collect();
    assert_eq!(
        reasons,
        vec![
            ("success".into(), None),
            ("failure".into(), Some("code reused".into())),
            ("failure".into(), Some("wrong password".into())),
            ("failure".into(), Some("wrong code".into())),
            ("failure".into(), Some("unknown user".into())),
        ]
    );
    // the replayed code was refused because the step is stored
    let u = f.store.get_user("alice").await.unwrap().unwrap();
    assert!(u.last_step > 0);
    // no secret in the event JSON
    for e in f.events.0.lock().unwrap().iter() {
        let j = serde_json::to_string(e).unwrap();
        assert!(!j.contains("horse") && !j.contains(&code), "{j}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_client_gets_no_answer() {
    let f = fixture(CodeTransport::Append, true, common::config()).await;
    f.user("alice", "pw").await;
    // The server knows 127.0.0.1/32 only; send from 127.0.0.2.
    let sock = tokio::net::UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let mut p = vigie_radius::packet::Packet::new(1, 7, [1; 16]);
    p.push(1, b"alice".to_vec());
    let buf = vigie_radius::packet::encode_signed_request(p, SECRET.as_bytes()).unwrap();
    sock.send_to(&buf, f.addr).await.unwrap();
    let mut rbuf = [0u8; 4096];
    let r = tokio::time::timeout(
        std::time::Duration::from_millis(700),
        sock.recv_from(&mut rbuf),
    )
    .await;
    assert!(r.is_err(), "an unknown client got an answer");
    // and the same packet from the known address is answered (so the silence above is meaningful)
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(&buf, f.addr).await.unwrap();
    let r =
        tokio::time::timeout(std::time::Duration::from_secs(3), sock.recv_from(&mut rbuf)).await;
    assert!(r.is_ok(), "known client got no answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockout_after_failures_then_unlock() {
    let cfg = Config {
        lockout: LockoutPolicy {
            max_failures: 3,
            ..LockoutPolicy::default()
        },
        ..common::config()
    };
    let f = fixture(CodeTransport::Append, true, cfg).await;
    let b32 = f.user("bob", "bobs password").await;
    for _ in 0..3 {
        let out = f.radclient(&req("bob", "bad password123456")).await;
        assert!(rejected(&out), "{out}");
    }
    // right password and code, but locked
    let out = f
        .radclient(&req("bob", &format!("bobs password{}", oathtool(&b32, 0))))
        .await;
    assert!(rejected(&out), "{out}");
    let last = f.events.0.lock().unwrap().last().cloned().unwrap();
    let Payload::Authentication(a) = last.payload else {
        panic!()
    };
    assert_eq!(a.auth.reason.as_deref(), Some("account locked"));
    // Locked once (the refused attempt while locked does not lock again),
    // told to the sink and written to the audit log.
    let lockouts = f.events.1.lock().unwrap().clone();
    assert_eq!(lockouts.len(), 1, "{lockouts:?}");
    assert_eq!(
        (lockouts[0].user.as_str(), lockouts[0].failures),
        ("bob", 3)
    );
    assert_eq!(lockouts[0].nas, "vpn");
    assert!(lockouts[0].until > chrono::Utc::now().timestamp());
    let audit = f.store.audit_log().await.unwrap();
    let locks: Vec<_> = audit.iter().filter(|e| e.2 == "vpn.lockout").collect();
    assert_eq!(locks.len(), 1, "{audit:?}");
    assert_eq!(
        (locks[0].1.as_str(), locks[0].3.as_str()),
        ("radius", "bob")
    );
    vigie_radius::Store::unlock(&f.store, "bob").await.unwrap();
    let out = f
        .radclient(&req("bob", &format!("bobs password{}", oathtool(&b32, 0))))
        .await;
    assert!(accepted(&out), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_client_without_message_authenticator() {
    let f = fixture(CodeTransport::Append, false, common::config()).await;
    let b32 = f.user("carol", "carol pw").await;
    let code = oathtool(&b32, 0);
    // legacy NAS may omit it...
    let out = f
        .radclient(&format!(
            "User-Name = \"carol\", User-Password = \"carol pw{code}\""
        ))
        .await;
    assert!(accepted(&out), "{out}");
    // ...but never with Proxy-State (the BlastRADIUS attack shape)
    let out = f
        .radclient(&format!(
            "User-Name = \"carol\", User-Password = \"carol pw{}\", Proxy-State = 0x41",
            oathtool(&b32, 1)
        ))
        .await;
    assert!(silent(&out), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_transports_comma_and_scrv1() {
    use base64::Engine;
    let f = fixture(CodeTransport::Append, true, common::config()).await;
    let b32 = f.user("dave", "pass,word").await;
    let out = f
        .radclient(&req("dave", &format!("pass,word,{}", oathtool(&b32, 0))))
        .await;
    assert!(accepted(&out), "{out}");
    let b64 = base64::engine::general_purpose::STANDARD;
    let scrv1 = format!(
        "SCRV1:{}:{}",
        b64.encode("pass,word"),
        b64.encode(oathtool(&b32, 1))
    );
    let out = f.radclient(&req("dave", &scrv1)).await;
    assert!(accepted(&out), "{out}");
    // SCRV1 with a wrong password
    let b32e = f.user("erin", "erin pw").await;
    let bad = format!(
        "SCRV1:{}:{}",
        b64.encode("nope"),
        b64.encode(oathtool(&b32e, 0))
    );
    let out = f.radclient(&req("erin", &bad)).await;
    assert!(rejected(&out), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_challenge_round_trip() {
    let f = fixture(CodeTransport::Challenge, true, common::config()).await;
    let b32 = f.user("frank", "frank pw").await;
    let out = f.radclient(&req("frank", "frank pw")).await;
    assert!(out.contains("Received Access-Challenge"), "{out}");
    let state = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("State = "))
        .expect("State in challenge")
        .trim()
        .to_string();
    let second = format!(
        "User-Name = \"frank\", User-Password = \"{}\", State = {state}, Message-Authenticator = 0x00",
        oathtool(&b32, 0)
    );
    let out = f.radclient(&second).await;
    assert!(accepted(&out), "{out}");
    // State is single-use
    let again = format!(
        "User-Name = \"frank\", User-Password = \"{}\", State = {state}, Message-Authenticator = 0x00",
        oathtool(&b32, 1)
    );
    let out = f.radclient(&again).await;
    assert!(rejected(&out), "{out}");
    // wrong password: no challenge
    let out = f.radclient(&req("frank", "bad")).await;
    assert!(rejected(&out), "{out}");
    // a State bound to frank is refused for another user
    f.user("gina", "gina pw").await;
    let out = f.radclient(&req("frank", "frank pw")).await;
    let state = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("State = "))
        .unwrap()
        .trim()
        .to_string();
    let stolen = format!(
        "User-Name = \"gina\", User-Password = \"123456\", State = {state}, Message-Authenticator = 0x00"
    );
    let out = f.radclient(&stolen).await;
    assert!(rejected(&out), "{out}");
}
