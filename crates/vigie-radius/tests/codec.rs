//! Property tests of the packet codec: the decoder never panics on any input,
//! and encode/decode round-trip.

use proptest::prelude::*;
use vigie_radius::packet::{
    self, Attribute, Packet, hide_password, unhide_password, verify_accounting_request,
    verify_request_message_authenticator,
};

fn arb_packet() -> impl Strategy<Value = Packet> {
    (
        any::<u8>(),
        any::<u8>(),
        any::<[u8; 16]>(),
        prop::collection::vec(
            (any::<u8>(), prop::collection::vec(any::<u8>(), 0..=253)),
            0..12,
        ),
    )
        .prop_map(|(code, identifier, authenticator, attrs)| Packet {
            code,
            identifier,
            authenticator,
            attributes: attrs
                .into_iter()
                .map(|(typ, value)| Attribute { typ, value })
                .collect(),
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn decode_never_panics(buf in prop::collection::vec(any::<u8>(), 0..5000)) {
        if let Ok(p) = Packet::decode(&buf) {
            // Anything accepted is re-encodable and checks never panic.
            let again = p.encode().unwrap();
            prop_assert_eq!(Packet::decode(&again).unwrap(), p);
            let _ = verify_request_message_authenticator(&buf, b"secret");
            let _ = verify_accounting_request(&buf, b"secret");
        }
    }

    #[test]
    fn decode_never_panics_on_plausible_headers(
        code in any::<u8>(), id in any::<u8>(), len in 0u16..5000,
        rest in prop::collection::vec(any::<u8>(), 16..600),
    ) {
        let mut buf = vec![code, id];
        buf.extend_from_slice(&len.to_be_bytes());
        buf.extend_from_slice(&rest);
        if Packet::decode(&buf).is_ok() {
            let _ = verify_request_message_authenticator(&buf, b"k");
            let _ = verify_accounting_request(&buf, b"k");
        }
    }

    #[test]
    fn encode_decode_round_trip(p in arb_packet()) {
        match p.encode() {
            Ok(buf) => prop_assert_eq!(Packet::decode(&buf).unwrap(), p),
            Err(packet::EncodeError::PacketTooLong(n)) => prop_assert!(n > packet::MAX_LEN),
            Err(e) => prop_assert!(false, "unexpected {e}"),
        }
    }

    #[test]
    fn password_round_trip(
        pw in prop::collection::vec(1u8..=255, 0..=128),
        secret in prop::collection::vec(any::<u8>(), 1..40),
        auth in any::<[u8; 16]>(),
    ) {
        let hidden = hide_password(&pw, &secret, &auth);
        prop_assert_eq!(&unhide_password(&hidden, &secret, &auth).unwrap()[..], &pw[..]);
    }

    #[test]
    fn unhide_never_panics(
        hidden in prop::collection::vec(any::<u8>(), 0..200),
        auth in any::<[u8; 16]>(),
    ) {
        let _ = unhide_password(&hidden, b"secret", &auth);
    }
}
