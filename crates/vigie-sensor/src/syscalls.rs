//! Which syscalls the generic probes follow, and what to copy for each
//! (x86_64 numbers). The kernel side reads this table (map `sc_specs`).

/// Index of a syscall argument, or the return value, as the BPF side wants
/// it (+1, so 0 means "none").
const fn a(i: u8) -> u8 {
    i + 1
}
const RET: u8 = 7;

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Spec {
    pub nr: u32,
    pub name: &'static str,
    pub family: Family,
    pub str_arg: [u8; 3],
    pub dirfd_arg: [u8; 3],
    pub fd_arg: u8,
    pub sock_arg: u8,
    pub sockaddr_arg: u8,
    pub data_kind: u8,
    pub success_only: bool,
    pub failure_only: bool,
    pub dns_only: bool,
    pub open_kind: bool,
    pub eq_arg: u8,
    pub eq_val: [u64; 2],
    pub flags_arg: u8,
    pub flags_mask: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Family {
    #[default]
    File,
    Network,
    Dns,
    Cred,
    Ptrace,
    ExecFailed,
    Kernel,
}

impl Spec {
    /// The bytes of `struct sc_spec` (see vigie.bpf.c).
    pub fn to_bytes(self) -> [u8; 48] {
        let mut b = [0u8; 48];
        b[0] = 1;
        b[1..4].copy_from_slice(&self.str_arg);
        b[4..7].copy_from_slice(&self.dirfd_arg);
        b[7] = self.fd_arg;
        b[8] = self.sock_arg;
        b[9] = self.sockaddr_arg;
        b[10] = self.data_kind;
        b[11] = self.success_only as u8;
        b[12] = self.failure_only as u8;
        b[13] = self.dns_only as u8;
        b[14] = self.open_kind as u8;
        b[15] = self.eq_arg;
        b[16..24].copy_from_slice(&self.eq_val[0].to_ne_bytes());
        b[24..32].copy_from_slice(&self.eq_val[1].to_ne_bytes());
        b[32] = self.flags_arg;
        b[40..48].copy_from_slice(&self.flags_mask.to_ne_bytes());
        b
    }
}

const OPEN_WRITE_FLAGS: u64 = 0o1 | 0o2 | 0o100 | 0o1000; // O_WRONLY|O_RDWR|O_CREAT|O_TRUNC

fn s(nr: u32, name: &'static str, family: Family) -> Spec {
    Spec {
        nr,
        name,
        family,
        success_only: true,
        ..Spec::default()
    }
}

fn path1(nr: u32, name: &'static str, p: u8) -> Spec {
    Spec {
        str_arg: [a(p), 0, 0],
        ..s(nr, name, Family::File)
    }
}

fn path_at(nr: u32, name: &'static str, dirfd: u8, p: u8) -> Spec {
    Spec {
        str_arg: [a(p), 0, 0],
        dirfd_arg: [a(dirfd), 0, 0],
        ..s(nr, name, Family::File)
    }
}

fn fd1(nr: u32, name: &'static str) -> Spec {
    Spec {
        fd_arg: a(0),
        ..s(nr, name, Family::File)
    }
}

pub(crate) const NR_OPEN: u32 = 2;
pub(crate) const NR_CREAT: u32 = 85;
pub(crate) const NR_OPENAT: u32 = 257;
pub(crate) const NR_RENAME: u32 = 82;
pub(crate) const NR_RENAMEAT: u32 = 264;
pub(crate) const NR_RENAMEAT2: u32 = 316;
pub(crate) const NR_UNLINK: u32 = 87;
pub(crate) const NR_UNLINKAT: u32 = 263;
pub(crate) const NR_CHMOD: u32 = 90;
pub(crate) const NR_FCHMOD: u32 = 91;
pub(crate) const NR_FCHMODAT: u32 = 268;
pub(crate) const NR_FCHMODAT2: u32 = 452;
pub(crate) const NR_CHOWN: u32 = 92;
pub(crate) const NR_FCHOWN: u32 = 93;
pub(crate) const NR_LCHOWN: u32 = 94;
pub(crate) const NR_FCHOWNAT: u32 = 260;
pub(crate) const NR_TRUNCATE: u32 = 76;
pub(crate) const NR_FTRUNCATE: u32 = 77;
pub(crate) const NR_CONNECT: u32 = 42;
pub(crate) const NR_ACCEPT: u32 = 43;
pub(crate) const NR_ACCEPT4: u32 = 288;
pub(crate) const NR_LISTEN: u32 = 50;
pub(crate) const NR_SENDTO: u32 = 44;
pub(crate) const NR_RECVFROM: u32 = 45;
pub(crate) const NR_SENDMSG: u32 = 46;
pub(crate) const NR_RECVMSG: u32 = 47;
pub(crate) const NR_SENDMMSG: u32 = 307;
pub(crate) const NR_PTRACE: u32 = 101;
pub(crate) const NR_EXECVE: u32 = 59;
pub(crate) const NR_EXECVEAT: u32 = 322;
pub(crate) const NR_INIT_MODULE: u32 = 175;
pub(crate) const NR_FINIT_MODULE: u32 = 313;
pub(crate) const NR_BPF: u32 = 321;
pub(crate) const NR_MOUNT: u32 = 165;

/// The table. `file`/`net` select the families (config switches).
pub(crate) fn specs(file: bool, net: bool, dns: bool) -> Vec<Spec> {
    let mut v = Vec::new();
    if file {
        let open = |nr, name, dirfd: Option<u8>, p: u8, flags: Option<u8>| Spec {
            str_arg: [a(p), 0, 0],
            dirfd_arg: [dirfd.map(a).unwrap_or(0), 0, 0],
            fd_arg: RET,
            open_kind: true,
            flags_arg: flags.map(a).unwrap_or(0),
            flags_mask: OPEN_WRITE_FLAGS,
            ..s(nr, name, Family::File)
        };
        v.push(open(NR_OPEN, "open", None, 0, Some(1)));
        v.push(open(NR_CREAT, "creat", None, 0, None));
        v.push(open(NR_OPENAT, "openat", Some(0), 1, Some(2)));
        v.push(Spec {
            str_arg: [a(0), a(1), 0],
            ..s(NR_RENAME, "rename", Family::File)
        });
        for (nr, name) in [(NR_RENAMEAT, "renameat"), (NR_RENAMEAT2, "renameat2")] {
            v.push(Spec {
                str_arg: [a(1), a(3), 0],
                dirfd_arg: [a(0), a(2), 0],
                ..s(nr, name, Family::File)
            });
        }
        v.push(path1(NR_UNLINK, "unlink", 0));
        v.push(path_at(NR_UNLINKAT, "unlinkat", 0, 1));
        v.push(path1(NR_CHMOD, "chmod", 0));
        v.push(fd1(NR_FCHMOD, "fchmod"));
        v.push(path_at(NR_FCHMODAT, "fchmodat", 0, 1));
        v.push(path_at(NR_FCHMODAT2, "fchmodat2", 0, 1));
        v.push(path1(NR_CHOWN, "chown", 0));
        v.push(path1(NR_LCHOWN, "lchown", 0));
        v.push(fd1(NR_FCHOWN, "fchown"));
        v.push(path_at(NR_FCHOWNAT, "fchownat", 0, 1));
        v.push(path1(NR_TRUNCATE, "truncate", 0));
        v.push(fd1(NR_FTRUNCATE, "ftruncate"));
    }
    if net {
        v.push(Spec {
            sock_arg: a(0),
            sockaddr_arg: a(1),
            ..s(NR_CONNECT, "connect", Family::Network)
        });
        for (nr, name) in [(NR_ACCEPT, "accept"), (NR_ACCEPT4, "accept4")] {
            v.push(Spec {
                sock_arg: RET,
                ..s(nr, name, Family::Network)
            });
        }
        v.push(Spec {
            sock_arg: a(0),
            ..s(NR_LISTEN, "listen", Family::Network)
        });
    }
    if dns {
        for (nr, name) in [(NR_SENDTO, "sendto"), (NR_RECVFROM, "recvfrom")] {
            v.push(Spec {
                sock_arg: a(0),
                sockaddr_arg: a(4),
                data_kind: 1,
                dns_only: true,
                ..s(nr, name, Family::Dns)
            });
        }
        for (nr, name, kind) in [
            (NR_SENDMSG, "sendmsg", 2),
            (NR_RECVMSG, "recvmsg", 2),
            (NR_SENDMMSG, "sendmmsg", 3),
        ] {
            v.push(Spec {
                sock_arg: a(0),
                data_kind: kind,
                dns_only: true,
                ..s(nr, name, Family::Dns)
            });
        }
    }
    for (nr, name) in [
        (105, "setuid"),
        (106, "setgid"),
        (113, "setreuid"),
        (114, "setregid"),
        (117, "setresuid"),
        (119, "setresgid"),
        (126, "capset"),
    ] {
        v.push(s(nr, name, Family::Cred));
    }
    v.push(Spec {
        eq_arg: a(0),
        eq_val: [16, 0x4206], // PTRACE_ATTACH, PTRACE_SEIZE
        ..s(NR_PTRACE, "ptrace", Family::Ptrace)
    });
    v.push(Spec {
        success_only: false,
        failure_only: true,
        ..path1(NR_EXECVE, "execve", 0)
    });
    v.push(Spec {
        success_only: false,
        failure_only: true,
        family: Family::ExecFailed,
        ..path_at(NR_EXECVEAT, "execveat", 0, 1)
    });
    if let Some(x) = v.iter_mut().find(|x| x.nr == NR_EXECVE) {
        x.family = Family::ExecFailed;
    }
    v.push(s(NR_INIT_MODULE, "init_module", Family::Kernel));
    v.push(Spec {
        fd_arg: a(0),
        ..s(NR_FINIT_MODULE, "finit_module", Family::Kernel)
    });
    v.push(Spec {
        eq_arg: a(0),
        eq_val: [5, 5], // BPF_PROG_LOAD
        data_kind: 4,
        ..s(NR_BPF, "bpf", Family::Kernel)
    });
    v.push(Spec {
        str_arg: [a(0), a(1), a(2)],
        ..s(NR_MOUNT, "mount", Family::Kernel)
    });
    v
}
