#![no_main]
use libfuzzer_sys::fuzz_target;
use vigie_radius::packet::{self, Packet};

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Packet::decode(data) {
        let _ = packet::verify_request_message_authenticator(data, b"secret");
        let _ = packet::verify_accounting_request(data, b"secret");
        let again = p.encode().expect("a decoded packet re-encodes");
        assert_eq!(Packet::decode(&again).expect("re-decodes"), p);
        if let Some(pw) = p.get(packet::attr::USER_PASSWORD) {
            let _ = packet::unhide_password(pw, b"secret", &p.authenticator);
        }
    }
});
