//! Property tests of the RADIUS/1.1 path (RFC 9765): the decoder never
//! panics on any input, encode/decode round-trip, and the server's RADIUS/1.1
//! entry point survives any bytes (random, and mutations of real requests),
//! answering only with well-formed RADIUS/1.1 that echoes the Token.

mod common;
use common::*;
use proptest::prelude::*;
use vigie_radius::CodeTransport;
use vigie_radius::packet::{Attribute, Packet, attr, code};
use vigie_radius::radius11::{self, decode, encode, token, user_password};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn decode_never_panics(buf in prop::collection::vec(any::<u8>(), 0..5000)) {
        if let Ok(p) = decode(&buf) {
            prop_assert_eq!(p.identifier, 0);
            prop_assert_eq!(&p.authenticator[4..], &[0u8; 12][..]);
            prop_assert!(p.get(attr::MESSAGE_AUTHENTICATOR).is_none());
            let again = encode(p.clone(), token(&p)).unwrap();
            prop_assert_eq!(decode(&again).unwrap(), p);
        }
    }

    #[test]
    fn round_trip(
        c in any::<u8>(), tok in any::<[u8; 4]>(),
        attrs in prop::collection::vec(
            (any::<u8>(), prop::collection::vec(any::<u8>(), 0..=253)), 0..12),
    ) {
        let mut p = Packet::new(c, 0, [0; 16]);
        p.attributes = attrs.into_iter().map(|(typ, value)| Attribute { typ, value }).collect();
        if let Ok(buf) = encode(p, tok) {
            prop_assert_eq!(buf[1], 0);
            prop_assert_eq!(&buf[4..8], &tok[..]);
            prop_assert_eq!(token(&decode(&buf).unwrap()), tok);
        }
    }

    #[test]
    fn password_never_panics(v in prop::collection::vec(any::<u8>(), 0..300)) {
        let p = user_password(&v);
        prop_assert_eq!(p.is_some(), (1..=128).contains(&v.len()));
    }
}

/// One request through `Server::handle_radius11`; the answer, if any, must
/// be RADIUS/1.1 with the request's Token and no Message-Authenticator.
async fn check_server(f: &Fixture, raw: &[u8]) -> Result<(), TestCaseError> {
    let src = "127.0.0.1:40000".parse().unwrap();
    if let Some(resp) = f.server.handle_radius11(raw, src).await {
        prop_assert_eq!(resp[1], 0);
        prop_assert_eq!(&resp[4..8], &raw[4..8]);
        prop_assert_eq!(&resp[8..20], &[0u8; 12][..]);
        let p = Packet::decode(&resp).unwrap();
        prop_assert!(p.get(attr::MESSAGE_AUTHENTICATOR).is_none());
    }
    Ok(())
}

#[test]
fn server_survives_any_radius11_input() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let f = rt.block_on(async {
        let f = fixture(CodeTransport::Append, true, common::config()).await;
        f.user("carol", "carol pw").await;
        f
    });
    // Two real requests to mutate: password + code, and a challenge answer.
    let mut req = Packet::new(code::ACCESS_REQUEST, 0, [0; 16]);
    req.push(attr::USER_NAME, b"carol".to_vec());
    req.push(attr::USER_PASSWORD, b"carol pw123456".to_vec());
    req.push(attr::PROXY_STATE, b"ps".to_vec());
    let login = radius11::encode(req.clone(), [1, 2, 3, 4]).unwrap();
    req.push(attr::STATE, vec![1; 16]);
    let challenge = radius11::encode(req, [5, 6, 7, 8]).unwrap();

    // Few cases: a mutated request that still parses costs a password check.
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(200));
    let strategy = (
        prop::collection::vec(any::<u8>(), 20..600),
        prop::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        0..3u8,
    );
    runner
        .run(&strategy, |(random, flips, which)| {
            let mut raw = match which {
                0 => random,
                1 => login.clone(),
                _ => challenge.clone(),
            };
            let n = raw.len();
            for (i, b) in flips {
                raw[i % n] = b;
            }
            rt.block_on(check_server(&f, &raw))
        })
        .unwrap();
    // The mutations did reach the decision path, not only the decoder.
    let decided = f.events.0.lock().unwrap().len();
    assert!(decided >= 10, "only {decided} requests reached a decision");
}
