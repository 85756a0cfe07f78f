//! RADIUS packet codec: RFC 2865 (Access), RFC 2866 (Accounting), RFC 3579
//! (Message-Authenticator).
//!
//! Written here because no Rust RADIUS crate is mature (DESIGN.md §5). The
//! decoder never panics on any input (property-tested in `tests/codec.rs`).

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use subtle::ConstantTimeEq;

/// Smallest and largest legal packet (RFC 2865 §3).
pub const MIN_LEN: usize = 20;
pub const MAX_LEN: usize = 4096;

/// Packet codes.
pub mod code {
    pub const ACCESS_REQUEST: u8 = 1;
    pub const ACCESS_ACCEPT: u8 = 2;
    pub const ACCESS_REJECT: u8 = 3;
    pub const ACCOUNTING_REQUEST: u8 = 4;
    pub const ACCOUNTING_RESPONSE: u8 = 5;
    pub const ACCESS_CHALLENGE: u8 = 11;
    pub const STATUS_SERVER: u8 = 12;
}

/// Attribute types used by Vigie.
pub mod attr {
    pub const USER_NAME: u8 = 1;
    pub const USER_PASSWORD: u8 = 2;
    pub const CHAP_PASSWORD: u8 = 3;
    pub const NAS_IP_ADDRESS: u8 = 4;
    pub const NAS_PORT: u8 = 5;
    pub const FRAMED_IP_ADDRESS: u8 = 8;
    pub const REPLY_MESSAGE: u8 = 18;
    pub const STATE: u8 = 24;
    pub const CLASS: u8 = 25;
    pub const SESSION_TIMEOUT: u8 = 27;
    pub const CALLED_STATION_ID: u8 = 30;
    pub const CALLING_STATION_ID: u8 = 31;
    pub const NAS_IDENTIFIER: u8 = 32;
    pub const PROXY_STATE: u8 = 33;
    pub const ACCT_STATUS_TYPE: u8 = 40;
    pub const ACCT_INPUT_OCTETS: u8 = 42;
    pub const ACCT_OUTPUT_OCTETS: u8 = 43;
    pub const ACCT_SESSION_ID: u8 = 44;
    pub const ACCT_SESSION_TIME: u8 = 46;
    pub const ACCT_INPUT_GIGAWORDS: u8 = 52;
    pub const ACCT_OUTPUT_GIGAWORDS: u8 = 53;
    pub const MESSAGE_AUTHENTICATOR: u8 = 80;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("packet too short: {0} bytes (minimum 20)")]
    TooShort(usize),
    #[error("length field {field} does not fit the {got} bytes received (or is outside 20..=4096)")]
    BadLength { field: usize, got: usize },
    #[error("attribute at offset {0} has a length below 2 or runs past the packet end")]
    BadAttribute(usize),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("attribute {0} value is longer than 253 bytes")]
    AttributeTooLong(u8),
    #[error("packet would be {0} bytes (maximum 4096)")]
    PacketTooLong(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub typ: u8,
    pub value: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub code: u8,
    pub identifier: u8,
    pub authenticator: [u8; 16],
    pub attributes: Vec<Attribute>,
}

impl Packet {
    pub fn new(code: u8, identifier: u8, authenticator: [u8; 16]) -> Self {
        Packet {
            code,
            identifier,
            authenticator,
            attributes: Vec::new(),
        }
    }

    /// Decode one packet. Bytes past the length field are ignored (RFC 2865 §3
    /// says they are padding); a length field larger than the datagram is an error.
    pub fn decode(buf: &[u8]) -> Result<Packet, DecodeError> {
        if buf.len() < MIN_LEN {
            return Err(DecodeError::TooShort(buf.len()));
        }
        let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
        if !(MIN_LEN..=MAX_LEN).contains(&len) || len > buf.len() {
            return Err(DecodeError::BadLength {
                field: len,
                got: buf.len(),
            });
        }
        let mut authenticator = [0u8; 16];
        authenticator.copy_from_slice(&buf[4..20]);
        let mut attributes = Vec::new();
        let mut i = MIN_LEN;
        while i < len {
            if i + 2 > len {
                return Err(DecodeError::BadAttribute(i));
            }
            let alen = buf[i + 1] as usize;
            if alen < 2 || i + alen > len {
                return Err(DecodeError::BadAttribute(i));
            }
            attributes.push(Attribute {
                typ: buf[i],
                value: buf[i + 2..i + alen].to_vec(),
            });
            i += alen;
        }
        Ok(Packet {
            code: buf[0],
            identifier: buf[1],
            authenticator,
            attributes,
        })
    }

    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut len = MIN_LEN;
        for a in &self.attributes {
            if a.value.len() > 253 {
                return Err(EncodeError::AttributeTooLong(a.typ));
            }
            len += 2 + a.value.len();
        }
        if len > MAX_LEN {
            return Err(EncodeError::PacketTooLong(len));
        }
        let mut out = Vec::with_capacity(len);
        out.push(self.code);
        out.push(self.identifier);
        out.extend_from_slice(&(len as u16).to_be_bytes());
        out.extend_from_slice(&self.authenticator);
        for a in &self.attributes {
            out.push(a.typ);
            out.push((a.value.len() + 2) as u8);
            out.extend_from_slice(&a.value);
        }
        Ok(out)
    }

    pub fn get(&self, typ: u8) -> Option<&[u8]> {
        self.attributes
            .iter()
            .find(|a| a.typ == typ)
            .map(|a| a.value.as_slice())
    }

    pub fn get_all(&self, typ: u8) -> impl Iterator<Item = &[u8]> {
        self.attributes
            .iter()
            .filter(move |a| a.typ == typ)
            .map(|a| a.value.as_slice())
    }

    /// A text attribute, lossily decoded (RADIUS text is UTF-8 but NASes send anything).
    pub fn get_str(&self, typ: u8) -> Option<String> {
        self.get(typ)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    pub fn get_u32(&self, typ: u8) -> Option<u32> {
        self.get(typ)
            .and_then(|v| <[u8; 4]>::try_from(v).ok())
            .map(u32::from_be_bytes)
    }

    pub fn get_ipv4(&self, typ: u8) -> Option<std::net::Ipv4Addr> {
        self.get(typ)
            .and_then(|v| <[u8; 4]>::try_from(v).ok())
            .map(std::net::Ipv4Addr::from)
    }

    pub fn push(&mut self, typ: u8, value: impl Into<Vec<u8>>) {
        self.attributes.push(Attribute {
            typ,
            value: value.into(),
        });
    }
}

fn hmac_md5(secret: &[u8], data: &[u8]) -> [u8; 16] {
    let mut mac = <Hmac<Md5> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Offset of the value of the first Message-Authenticator in an encoded packet.
fn message_authenticator_offset(buf: &[u8]) -> Option<usize> {
    let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
    let mut i = MIN_LEN;
    while i + 2 <= len {
        let alen = buf[i + 1] as usize;
        if alen < 2 {
            return None;
        }
        if buf[i] == attr::MESSAGE_AUTHENTICATOR && alen == 18 {
            return Some(i + 2);
        }
        i += alen;
    }
    None
}

/// What the Message-Authenticator check of a request found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageAuth {
    Valid,
    Missing,
    Invalid,
}

/// Check the Message-Authenticator of a request as received (`raw` must be a
/// packet that [`Packet::decode`] accepted). For Access-Request and
/// Status-Server the HMAC covers the packet as sent (RFC 3579 §3.2); for
/// Accounting-Request the authenticator field counts as zeros (RFC 5080 §2.2).
pub fn verify_request_message_authenticator(raw: &[u8], secret: &[u8]) -> MessageAuth {
    let len = u16::from_be_bytes([raw[2], raw[3]]) as usize;
    let raw = &raw[..len];
    let Some(off) = message_authenticator_offset(raw) else {
        return MessageAuth::Missing;
    };
    let mut copy = raw.to_vec();
    copy[off..off + 16].fill(0);
    if raw[0] == code::ACCOUNTING_REQUEST {
        copy[4..20].fill(0);
    }
    let expected = hmac_md5(secret, &copy);
    if bool::from(expected.ct_eq(&raw[off..off + 16])) {
        MessageAuth::Valid
    } else {
        MessageAuth::Invalid
    }
}

/// Verify the Request Authenticator of an Accounting-Request (RFC 2866 §3).
pub fn verify_accounting_request(raw: &[u8], secret: &[u8]) -> bool {
    let len = u16::from_be_bytes([raw[2], raw[3]]) as usize;
    let raw = &raw[..len];
    let mut h = Md5::new();
    h.update(&raw[..4]);
    h.update([0u8; 16]);
    h.update(&raw[20..]);
    h.update(secret);
    let expected: [u8; 16] = h.finalize().into();
    bool::from(expected.ct_eq(&raw[4..20]))
}

/// Encode a response to a request whose authenticator was `request_auth`:
/// Message-Authenticator goes first (BlastRADIUS hardening), then the
/// Response Authenticator is computed over the whole packet (RFC 2865 §3).
pub fn encode_response(
    mut resp: Packet,
    request_auth: &[u8; 16],
    secret: &[u8],
) -> Result<Vec<u8>, EncodeError> {
    resp.attributes
        .retain(|a| a.typ != attr::MESSAGE_AUTHENTICATOR);
    // Accounting-Response: the Response Authenticator already covers the
    // whole packet, and RADIUS clients (FreeRADIUS's radclient among them)
    // do not agree on how a Message-Authenticator there would be computed,
    // so it is left out, as FreeRADIUS does (BlastRADIUS concerns Access-*).
    let with_ma = resp.code != code::ACCOUNTING_RESPONSE;
    if with_ma {
        resp.attributes.insert(
            0,
            Attribute {
                typ: attr::MESSAGE_AUTHENTICATOR,
                value: vec![0; 16],
            },
        );
    }
    resp.authenticator = *request_auth;
    let mut buf = resp.encode()?;
    if with_ma {
        let ma = hmac_md5(secret, &buf);
        buf[22..38].copy_from_slice(&ma);
    }
    let mut h = Md5::new();
    h.update(&buf);
    h.update(secret);
    let ra: [u8; 16] = h.finalize().into();
    buf[4..20].copy_from_slice(&ra);
    Ok(buf)
}

/// Sign a request as a client does (used by our load generator and tests):
/// adds a Message-Authenticator and fills it.
pub fn encode_signed_request(mut req: Packet, secret: &[u8]) -> Result<Vec<u8>, EncodeError> {
    req.attributes
        .retain(|a| a.typ != attr::MESSAGE_AUTHENTICATOR);
    req.attributes.insert(
        0,
        Attribute {
            typ: attr::MESSAGE_AUTHENTICATOR,
            value: vec![0; 16],
        },
    );
    let mut buf = req.encode()?;
    let ma = hmac_md5(secret, &buf);
    buf[22..38].copy_from_slice(&ma);
    Ok(buf)
}

/// Check a response's Response Authenticator (client side).
pub fn verify_response(raw: &[u8], request_auth: &[u8; 16], secret: &[u8]) -> bool {
    if raw.len() < MIN_LEN {
        return false;
    }
    let len = (u16::from_be_bytes([raw[2], raw[3]]) as usize).min(raw.len());
    let mut h = Md5::new();
    h.update(&raw[..4]);
    h.update(request_auth);
    h.update(&raw[20..len]);
    h.update(secret);
    let expected: [u8; 16] = h.finalize().into();
    bool::from(expected.ct_eq(&raw[4..20]))
}

/// Hide a User-Password (RFC 2865 §5.2).
pub fn hide_password(password: &[u8], secret: &[u8], request_auth: &[u8; 16]) -> Vec<u8> {
    let mut padded = password.to_vec();
    padded.resize(password.len().div_ceil(16).max(1) * 16, 0);
    let mut prev: [u8; 16] = *request_auth;
    for chunk in padded.chunks_mut(16) {
        let mut h = Md5::new();
        h.update(secret);
        h.update(prev);
        let b: [u8; 16] = h.finalize().into();
        for (c, k) in chunk.iter_mut().zip(b) {
            *c ^= k;
        }
        prev.copy_from_slice(chunk);
    }
    padded
}

/// Recover a User-Password (RFC 2865 §5.2). `None` when the attribute length is
/// not a multiple of 16 in 16..=128. Trailing NULs (the padding) are removed.
pub fn unhide_password(
    hidden: &[u8],
    secret: &[u8],
    request_auth: &[u8; 16],
) -> Option<zeroize::Zeroizing<Vec<u8>>> {
    if hidden.is_empty() || !hidden.len().is_multiple_of(16) || hidden.len() > 128 {
        return None;
    }
    let mut out = zeroize::Zeroizing::new(Vec::with_capacity(hidden.len()));
    let mut prev: &[u8] = request_auth;
    for chunk in hidden.chunks(16) {
        let mut h = Md5::new();
        h.update(secret);
        h.update(prev);
        let b: [u8; 16] = h.finalize().into();
        out.extend(chunk.iter().zip(b).map(|(c, k)| c ^ k));
        prev = chunk;
    }
    while out.last() == Some(&0) {
        out.pop();
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_hiding_round_trips() {
        let auth = [7u8; 16];
        for pw in [
            &b""[..],
            b"a",
            b"0123456789abcdef",
            b"0123456789abcdef0",
            &[b'x'; 128],
        ] {
            let h = hide_password(pw, b"secret", &auth);
            assert_eq!(h.len() % 16, 0);
            assert!(!h.is_empty());
            assert_eq!(&unhide_password(&h, b"secret", &auth).unwrap()[..], pw);
        }
    }

    #[test]
    fn rfc2865_example_password() {
        // RFC 2865 §7.1: secret "xyzzy5461", password "arctangent".
        let auth: [u8; 16] = hex::decode("0f403f9473978057bd83d5cb98f4227a")
            .unwrap()
            .try_into()
            .unwrap();
        let hidden = hex::decode("0dbe708d93d413ce3196e43f782a0aee").unwrap();
        assert_eq!(hide_password(b"arctangent", b"xyzzy5461", &auth), hidden);
        assert_eq!(
            &unhide_password(&hidden, b"xyzzy5461", &auth).unwrap()[..],
            b"arctangent"
        );
    }

    #[test]
    fn response_is_signed_and_verifiable() {
        let req_auth = [3u8; 16];
        let mut p = Packet::new(code::ACCESS_ACCEPT, 9, [0; 16]);
        p.push(attr::REPLY_MESSAGE, b"hi".to_vec());
        let buf = encode_response(p, &req_auth, b"s3cret").unwrap();
        assert!(verify_response(&buf, &req_auth, b"s3cret"));
        assert!(!verify_response(&buf, &req_auth, b"other"));
        let back = Packet::decode(&buf).unwrap();
        assert_eq!(back.attributes[0].typ, attr::MESSAGE_AUTHENTICATOR);
    }

    #[test]
    fn signed_request_verifies() {
        let mut p = Packet::new(code::ACCESS_REQUEST, 1, [5; 16]);
        p.push(attr::USER_NAME, b"alice".to_vec());
        let buf = encode_signed_request(p, b"secret").unwrap();
        assert_eq!(
            verify_request_message_authenticator(&buf, b"secret"),
            MessageAuth::Valid
        );
        assert_eq!(
            verify_request_message_authenticator(&buf, b"wrong"),
            MessageAuth::Invalid
        );
        let mut unsigned = Packet::new(code::ACCESS_REQUEST, 1, [5; 16]);
        unsigned.push(attr::USER_NAME, b"alice".to_vec());
        assert_eq!(
            verify_request_message_authenticator(&unsigned.encode().unwrap(), b"secret"),
            MessageAuth::Missing
        );
    }
}
