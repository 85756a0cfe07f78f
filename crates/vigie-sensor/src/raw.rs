//! Parsing of the records the BPF programs send (layout in vigie.bpf.c).
//! Every read is bounds-checked: a short or garbled record is an error,
//! never a panic.

pub(crate) const EV_EXEC: u32 = 1;
pub(crate) const EV_FORK: u32 = 2;
pub(crate) const EV_EXIT: u32 = 3;
pub(crate) const EV_SYSCALL: u32 = 4;
pub(crate) const EV_WRITE_CLOSE: u32 = 5;
pub(crate) const EV_CREATE: u32 = 6;

pub(crate) const F_FILENAME: u16 = 1;
pub(crate) const F_ARGV: u16 = 2;
pub(crate) const F_EXE_COMP: u16 = 3;
pub(crate) const F_CWD_COMP: u16 = 4;
pub(crate) const F_STR0: u16 = 5;
pub(crate) const F_DIR0_COMP: u16 = 8;
pub(crate) const F_FD_COMP: u16 = 11;
pub(crate) const F_SOCK: u16 = 12;
pub(crate) const F_SOCKADDR: u16 = 13;
pub(crate) const F_DATA: u16 = 14;
pub(crate) const F_EXE_META: u16 = 15;
pub(crate) const F_CGROUP: u16 = 16;
pub(crate) const F_BPF_ATTR: u16 = 17;

pub(crate) const EVF_ARGV_TRUNC: u32 = 1;

const HDR_LEN: usize = 160;

/// `gid` and `cgroup_id` are decoded for completeness (not used yet).
#[allow(dead_code)]
#[derive(Debug, Clone, Default)]
pub(crate) struct Header {
    pub kind: u32,
    pub ts_boot_ns: u64,
    pub pid: u32,
    pub tgid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
    pub loginuid: u32,
    pub start_boot_ns: u64,
    pub parent_start_boot_ns: u64,
    pub cgroup_id: u64,
    pub comm: Vec<u8>,
    pub ret: i64,
    pub nr: u32,
    pub flags: u32,
    pub args: [u64; 6],
    /// Inode of the task's network namespace; 0 when the kernel could not
    /// tell (an exiting task without nsproxy).
    pub netns: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct Record<'a> {
    pub hdr: Header,
    pub fields: Vec<(u16, &'a [u8])>,
}

#[derive(Debug, thiserror::Error)]
#[error("malformed sensor record: {0}")]
pub(crate) struct Malformed(&'static str);

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_ne_bytes(b[o..o + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_ne_bytes(b[o..o + 8].try_into().expect("8 bytes"))
}

pub(crate) fn parse(b: &[u8]) -> Result<Record<'_>, Malformed> {
    if b.len() < HDR_LEN {
        return Err(Malformed("shorter than the header"));
    }
    let comm = &b[72..88];
    let comm_len = comm.iter().position(|&c| c == 0).unwrap_or(16);
    let mut args = [0u64; 6];
    for (i, a) in args.iter_mut().enumerate() {
        *a = u64_at(b, 104 + 8 * i);
    }
    let hdr = Header {
        kind: u32_at(b, 0),
        ts_boot_ns: u64_at(b, 8),
        pid: u32_at(b, 16),
        tgid: u32_at(b, 20),
        ppid: u32_at(b, 24),
        uid: u32_at(b, 28),
        gid: u32_at(b, 32),
        euid: u32_at(b, 36),
        egid: u32_at(b, 40),
        loginuid: u32_at(b, 44),
        start_boot_ns: u64_at(b, 48),
        parent_start_boot_ns: u64_at(b, 56),
        cgroup_id: u64_at(b, 64),
        comm: comm[..comm_len].to_vec(),
        ret: u64_at(b, 88) as i64,
        nr: u32_at(b, 96),
        flags: u32_at(b, 100),
        args,
        netns: u32_at(b, 152),
    };
    let size = (u32_at(b, 4) as usize).min(b.len());
    let mut fields = Vec::new();
    let mut o = HDR_LEN;
    while o + 4 <= size {
        let t = u16::from_ne_bytes([b[o], b[o + 1]]);
        let l = u16::from_ne_bytes([b[o + 2], b[o + 3]]) as usize;
        let start = o + 4;
        if start + l > size {
            return Err(Malformed("field runs past the record"));
        }
        fields.push((t, &b[start..start + l]));
        o = start + l;
    }
    Ok(Record { hdr, fields })
}

impl<'a> Record<'a> {
    pub fn field(&self, t: u16) -> Option<&'a [u8]> {
        self.fields.iter().find(|(ft, _)| *ft == t).map(|(_, v)| *v)
    }

    /// A NUL-terminated string field, without its NUL.
    pub fn cstr(&self, t: u16) -> Option<&'a [u8]> {
        self.field(t).map(trim_nul)
    }

    /// A path sent as components (leaf first): joined root first.
    pub fn path(&self, t: u16) -> Option<Vec<u8>> {
        let comps: Vec<&[u8]> = self
            .fields
            .iter()
            .filter(|(ft, _)| *ft == t)
            .map(|(_, v)| trim_nul(v))
            .collect();
        if comps.is_empty() {
            return None;
        }
        let mut p = Vec::new();
        for c in comps.iter().rev() {
            if c.is_empty() || *c == b"/" {
                continue;
            }
            p.push(b'/');
            p.extend_from_slice(c);
        }
        if p.is_empty() {
            p.push(b'/');
        }
        Some(p)
    }
}

pub(crate) fn trim_nul(v: &[u8]) -> &[u8] {
    match v.iter().position(|&c| c == 0) {
        Some(i) => &v[..i],
        None => v,
    }
}

/// Bytes from the kernel as a String. Valid UTF-8 is kept as is; each
/// invalid byte becomes `\xNN`, so nothing is lost (U+FFFD would lose it).
pub fn bytes_to_string(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    for chunk in b.utf8_chunks() {
        out.push_str(chunk.valid());
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_utf8_is_escaped_not_lost() {
        assert_eq!(bytes_to_string(b"a\xffb\n"), "a\\xffb\n");
        assert_eq!(bytes_to_string("é".as_bytes()), "é");
    }

    #[test]
    fn short_and_garbled_records_are_errors() {
        assert!(parse(&[0u8; 10]).is_err());
        let mut b = vec![0u8; HDR_LEN + 8];
        b[4..8].copy_from_slice(&((HDR_LEN + 8) as u32).to_ne_bytes());
        // A field claiming 1000 bytes in an 8-byte tail.
        b[HDR_LEN..HDR_LEN + 2].copy_from_slice(&1u16.to_ne_bytes());
        b[HDR_LEN + 2..HDR_LEN + 4].copy_from_slice(&1000u16.to_ne_bytes());
        assert!(parse(&b).is_err());
    }
}
