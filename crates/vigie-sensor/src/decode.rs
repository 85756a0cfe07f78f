//! Turns kernel records into typed `vigie_event::Event`s, with the process
//! table for context (parent, ancestors) and the hash cache.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::Arc;

use vigie_event::{
    Dns, DnsAnswer, DnsEvent, DnsQuestion, Endpoint, Event, File, FileAction, FileEvent, Host,
    KernelAction, KernelDetail, KernelEvent, NetworkAction, NetworkEvent, Payload, Process,
    ProcessAction, ProcessEvent, ProcessSummary, Transport,
};

use crate::process::{Clock, HashCache, ProcessTable, entity_id, hash_of, netns_of};
use crate::raw::*;
use crate::syscalls::{self, Family, Spec};

const TMPFS_MAGIC: u64 = 0x0102_1994;

pub(crate) struct Decoder {
    pub table: ProcessTable,
    pub clock: Clock,
    hashes: HashCache,
    host: Host,
    specs: HashMap<u32, Spec>,
    /// Only events of this network namespace (inode) are handed on; the
    /// process table still follows every process (ancestry crosses
    /// namespaces: `ip netns exec` starts from the root one).
    scope: Option<u32>,
}

fn s(b: &[u8]) -> String {
    bytes_to_string(b)
}

fn join(base: &[u8], rel: &[u8]) -> Vec<u8> {
    let mut p = base.to_vec();
    if !p.ends_with(b"/") {
        p.push(b'/');
    }
    p.extend_from_slice(rel);
    p
}

fn container_id(cgroup: &str) -> Option<String> {
    // docker-<64 hex>.scope, cri-containerd-<id>.scope, or a bare <64 hex>.
    let id = cgroup
        .trim_end_matches(".scope")
        .rsplit(['-', '/'])
        .next()?;
    (id.len() == 64 && id.bytes().all(|c| c.is_ascii_hexdigit())).then(|| id.to_string())
}

impl Decoder {
    pub fn new(host: Host, max_hash_size: u64) -> Self {
        Decoder {
            table: ProcessTable::new(),
            clock: Clock::new(),
            hashes: HashCache::new(max_hash_size),
            host,
            specs: syscalls::specs(true, true, true)
                .into_iter()
                .map(|s| (s.nr, s))
                .collect(),
            scope: None,
        }
    }

    /// Hands on only the events of network namespace `netns` (None: all).
    pub fn with_scope(mut self, netns: Option<u32>) -> Self {
        self.scope = netns;
        self
    }

    /// Whether the record's process is in the scope: the namespace the
    /// kernel read at the event, else (no nsproxy: an exiting task) the one
    /// the table recorded at fork, exec or seed, else /proc. Unknown is out:
    /// no other host's event may reach detection and response.
    fn in_scope(&self, h: &Header) -> bool {
        let Some(want) = self.scope else {
            return true;
        };
        let ns = if h.netns != 0 {
            Some(h.netns)
        } else {
            let ticks = self.clock.ticks(h.start_boot_ns);
            self.table
                .get(h.tgid, ticks)
                .and_then(|p| p.vigie.netns)
                .or_else(|| netns_of(h.tgid))
        };
        ns == Some(want)
    }

    fn event(&self, h: &Header, payload: Payload) -> Event {
        Event::new(self.clock.wall(h.ts_boot_ns), self.host.clone(), payload)
    }

    /// The acting process, with parent and ancestors, from the table (or
    /// from the header and /proc when the table does not know it).
    fn process_of(&mut self, h: &Header) -> Process {
        let ticks = self.clock.ticks(h.start_boot_ns);
        let mut p = match self.table.get(h.tgid, ticks) {
            Some(p) => p.clone(),
            None => {
                let from_proc = self
                    .table
                    .read_proc(h.tgid, &self.clock)
                    .filter(|(_, t, _)| *t == ticks);
                match from_proc {
                    Some((p, t, ppid)) => {
                        self.table.insert(p.clone(), t, ppid);
                        p
                    }
                    None => self.bare_process(h),
                }
            }
        };
        self.apply_header(&mut p, h);
        self.attach_ancestry(&mut p, h);
        p
    }

    fn bare_process(&self, h: &Header) -> Process {
        let ticks = self.clock.ticks(h.start_boot_ns);
        Process {
            entity_id: entity_id(h.tgid, ticks),
            pid: h.tgid,
            start: Some(self.clock.wall(h.start_boot_ns)),
            name: s(&h.comm),
            ..Process::default()
        }
    }

    /// Credentials and names as the kernel saw them at the event.
    fn apply_header(&self, p: &mut Process, h: &Header) {
        // Mostly what the table already holds: rebuild (allocate) only what
        // changed.
        if p.name.as_bytes() != h.comm.as_slice() {
            p.name = s(&h.comm);
        }
        let id_is = |id: &Option<String>, want: u32| {
            id.as_deref().and_then(|i| i.parse::<u32>().ok()) == Some(want)
        };
        if !p.user.as_ref().is_some_and(|u| id_is(&u.id, h.euid)) {
            p.user = Some(self.table.user(h.euid));
        }
        if !p.real_user.as_ref().is_some_and(|u| id_is(&u.id, h.uid)) {
            p.real_user = Some(self.table.user(h.uid));
        }
        if !p.group.as_ref().is_some_and(|g| id_is(&g.id, h.egid)) {
            p.group = Some(self.table.group(h.egid));
        }
        p.vigie.ppid = Some(h.ppid);
        p.vigie.login_uid = (h.loginuid != u32::MAX).then_some(h.loginuid);
        p.thread = (h.pid != h.tgid).then_some(vigie_event::Thread { id: h.pid });
        if h.netns != 0 {
            p.vigie.netns = Some(h.netns);
        }
    }

    fn attach_ancestry(&mut self, p: &mut Process, h: &Header) {
        let pticks = self.clock.ticks(h.parent_start_boot_ns);
        let (parent, ancestors) = self.table.ancestry(h.ppid, Some(pticks));
        p.parent = Some(parent.unwrap_or_else(|| {
            Arc::new(ProcessSummary {
                entity_id: entity_id(h.ppid, pticks),
                pid: h.ppid,
                ..ProcessSummary::default()
            })
        }));
        p.vigie.ancestors = ancestors;
    }

    /// Decodes one record; None for records that make no event.
    pub fn decode(&mut self, data: &[u8]) -> Result<Option<Event>, Malformed> {
        let rec = parse(data)?;
        let h = rec.hdr.clone();
        let keep = self.in_scope(&h);
        let ev = match h.kind {
            // Out of scope, the process table still learns from these.
            EV_EXEC => Some(self.exec(&rec, keep)).filter(|_| keep),
            EV_FORK => Some(self.fork(&h)).filter(|_| keep),
            EV_EXIT => Some(self.exit(&h)).filter(|_| keep),
            _ if !keep => None,
            EV_WRITE_CLOSE => {
                let path = rec.path(F_FD_COMP).unwrap_or_default();
                let mut f = File::at(s(&path));
                f.vigie.bytes_written = Some(h.args[1]);
                Some(self.file(&h, FileAction::Write, f))
            }
            EV_CREATE => {
                let path = rec.path(F_FD_COMP).unwrap_or_default();
                Some(self.file(&h, FileAction::Create, File::at(s(&path))))
            }
            EV_SYSCALL => self.syscall(&rec),
            _ => None,
        };
        self.table.evict_expired();
        Ok(ev)
    }

    /// `hash`: hash the executable (not for out-of-scope processes, whose
    /// exec only feeds the table).
    fn exec(&mut self, rec: &Record, hash: bool) -> Event {
        let h = &rec.hdr;
        let ticks = self.clock.ticks(h.start_boot_ns);
        let argv = rec.field(F_ARGV).unwrap_or_default();
        let mut args: Vec<String> = argv.split(|&c| c == 0).map(s).collect();
        // argv ends with a NUL: drop the empty tail (not empty arguments).
        if argv.last() == Some(&0) {
            args.pop();
        }
        let truncated = h.flags & EVF_ARGV_TRUNC != 0;
        if truncated && argv.last() != Some(&0) {
            // the last argument was cut mid-way: keep it, flagged
        }
        let exe = rec.path(F_EXE_COMP).unwrap_or_default();
        let cwd = rec.path(F_CWD_COMP);
        let filename = rec.cstr(F_FILENAME).unwrap_or_default();
        let script_path = if filename.starts_with(b"/") {
            filename.to_vec()
        } else {
            join(cwd.as_deref().unwrap_or(b"/"), filename)
        };
        let exe_s = s(&exe);
        let proc_exe = format!("/proc/{}/exe", h.tgid);
        let meta = rec.field(F_EXE_META).filter(|m| m.len() >= 48);
        let u64_at = |m: &[u8], o: usize| u64::from_ne_bytes(m[o..o + 8].try_into().expect("8"));
        let (dev, ino, nlink, magic) = meta
            .map(|m| {
                (
                    u64_at(m, 0),
                    u64_at(m, 8),
                    u32::from_ne_bytes(m[36..40].try_into().expect("4")),
                    u64_at(m, 40),
                )
            })
            .unwrap_or((0, 0, 1, 0));
        let kernel_key = meta.map(|m| {
            let nsec = u32::from_ne_bytes(m[32..36].try_into().expect("4"));
            (dev, ino, u64_at(m, 16) as i64, u64_at(m, 24) as i64, nsec)
        });
        // A script: execve got the script, the kernel runs its interpreter.
        // A name that leads to the very file that runs (a symlink such as
        // /bin -> usr/bin) is no script: one stat instead of an open+read.
        let same_file = || {
            let Some((kdev, kino, ..)) = kernel_key else {
                return false;
            };
            std::fs::metadata(std::ffi::OsStr::from_bytes_compat(&script_path)).is_ok_and(|m| {
                use std::os::unix::fs::MetadataExt;
                m.ino() == kino
                    && libc::major(m.dev()) as u64 == kdev >> 20
                    && libc::minor(m.dev()) as u64 == kdev & 0xfffff
            })
        };
        let is_script = script_path != exe && !same_file() && {
            let mut head = [0u8; 2];
            std::fs::File::open(std::ffi::OsStr::from_bytes_compat(&script_path))
                .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
                .is_ok()
                && &head == b"#!"
        };
        let (executable, interpreter) = if is_script {
            (s(&script_path), Some(exe_s.clone()))
        } else {
            (exe_s.clone(), None)
        };
        let hash = if !hash {
            None
        } else if is_script {
            self.hashes.sha256(
                Path::new(std::ffi::OsStr::from_bytes_compat(&script_path)),
                None,
                None,
            )
        } else if let Some(key) = kernel_key {
            self.hashes.sha256_exec(
                key,
                Path::new(std::ffi::OsStr::from_bytes_compat(&exe)),
                Some(Path::new(&proc_exe)),
            )
        } else {
            self.hashes.sha256(
                Path::new(std::ffi::OsStr::from_bytes_compat(&exe)),
                Some(Path::new(&proc_exe)),
                None,
            )
        };
        let cgroup = rec.cstr(F_CGROUP).map(s).filter(|c| !c.is_empty());
        let mut p = Process {
            entity_id: entity_id(h.tgid, ticks),
            pid: h.tgid,
            start: Some(self.clock.wall(h.start_boot_ns)),
            name: s(&h.comm),
            executable,
            command_line: args.join(" "),
            args_count: Some(args.len() as u32),
            args,
            working_directory: cwd.map(|c| s(&c)),
            hash: hash_of(hash),
            ..Process::default()
        };
        p.vigie.args_truncated = truncated;
        p.vigie.interpreter = interpreter;
        p.vigie.exe_memfd = exe_s.starts_with("/memfd:");
        p.vigie.exe_deleted = nlink == 0 && !p.vigie.exe_memfd;
        p.vigie.exe_on_tmp = (magic == TMPFS_MAGIC && !p.vigie.exe_memfd)
            || ["/tmp/", "/var/tmp/", "/dev/shm/"]
                .iter()
                .any(|t| exe_s.starts_with(t));
        p.vigie.container_id = cgroup.as_deref().and_then(container_id);
        p.vigie.cgroup = cgroup;
        self.apply_header(&mut p, h);
        // The table keeps the process without its ancestry (built per event).
        self.table.insert(p.clone(), ticks, h.ppid);
        self.attach_ancestry(&mut p, h);
        self.event(
            h,
            Payload::Process(ProcessEvent {
                action: ProcessAction::Exec,
                process: p,
                target: None,
                error: None,
            }),
        )
    }

    fn fork(&mut self, h: &Header) -> Event {
        let ticks = self.clock.ticks(h.start_boot_ns);
        let pticks = self.clock.ticks(h.parent_start_boot_ns);
        // The child runs its parent's image until it execs.
        let mut p = match self.table.get(h.ppid, pticks) {
            Some(parent) => Process {
                entity_id: entity_id(h.tgid, ticks),
                pid: h.tgid,
                start: Some(self.clock.wall(h.start_boot_ns)),
                ..parent.clone()
            },
            None => self.bare_process(h),
        };
        p.parent = None;
        p.vigie.ancestors = Default::default();
        self.apply_header(&mut p, h);
        self.table.insert(p.clone(), ticks, h.ppid);
        self.attach_ancestry(&mut p, h);
        self.event(
            h,
            Payload::Process(ProcessEvent {
                action: ProcessAction::Fork,
                process: p,
                target: None,
                error: None,
            }),
        )
    }

    fn exit(&mut self, h: &Header) -> Event {
        let ticks = self.clock.ticks(h.start_boot_ns);
        let mut p = self.process_of(h);
        let code = h.ret as i32;
        let sig = code & 0x7f;
        if sig != 0 {
            p.vigie.exit_signal = Some(sig);
        } else {
            p.exit_code = Some((code >> 8) & 0xff);
        }
        self.table.mark_exited(h.tgid, ticks);
        self.event(
            h,
            Payload::Process(ProcessEvent {
                action: ProcessAction::Exit,
                process: p,
                target: None,
                error: None,
            }),
        )
    }

    fn file(&mut self, h: &Header, action: FileAction, file: File) -> Event {
        let process = self.process_of(h);
        self.event(
            h,
            Payload::File(FileEvent {
                action,
                file,
                process,
            }),
        )
    }

    /// Full path of string argument `i`: absolute as given, or joined to
    /// its dirfd's path or the cwd.
    fn str_path(rec: &Record, i: u16) -> Option<Vec<u8>> {
        let raw = rec.cstr(F_STR0 + i)?;
        if raw.starts_with(b"/") {
            return Some(raw.to_vec());
        }
        let base = rec
            .path(F_DIR0_COMP + i)
            .or_else(|| rec.path(F_CWD_COMP))
            .unwrap_or_else(|| b"/".to_vec());
        Some(join(&base, raw))
    }

    fn syscall(&mut self, rec: &Record) -> Option<Event> {
        let h = &rec.hdr;
        let spec = *self.specs.get(&h.nr)?;
        match spec.family {
            Family::File => {
                let path = Self::str_path(rec, 0).or_else(|| rec.path(F_FD_COMP))?;
                let mut file = File::at(s(&path));
                let action = match h.nr {
                    syscalls::NR_RENAME | syscalls::NR_RENAMEAT | syscalls::NR_RENAMEAT2 => {
                        let new = Self::str_path(rec, 1).unwrap_or_default();
                        let mut f = File::at(s(&new));
                        f.vigie.original_path = Some(s(&path));
                        file = f;
                        FileAction::Rename
                    }
                    syscalls::NR_UNLINK | syscalls::NR_UNLINKAT => {
                        // unlinkat(AT_REMOVEDIR) removes a directory: still a delete.
                        FileAction::Delete
                    }
                    syscalls::NR_CHMOD
                    | syscalls::NR_FCHMOD
                    | syscalls::NR_FCHMODAT
                    | syscalls::NR_FCHMODAT2 => {
                        let mode = match h.nr {
                            syscalls::NR_CHMOD | syscalls::NR_FCHMOD => h.args[1],
                            _ => h.args[2],
                        } as u32;
                        file.mode = Some(format!("{:o}", mode & 0o7777));
                        file.vigie.setuid = mode & 0o4000 != 0;
                        file.vigie.setgid = mode & 0o2000 != 0;
                        FileAction::Chmod
                    }
                    syscalls::NR_CHOWN
                    | syscalls::NR_FCHOWN
                    | syscalls::NR_LCHOWN
                    | syscalls::NR_FCHOWNAT => {
                        let (u, g) = match h.nr {
                            syscalls::NR_FCHOWNAT => (h.args[2], h.args[3]),
                            _ => (h.args[1], h.args[2]),
                        };
                        file.uid = (u as u32 != u32::MAX).then(|| (u as u32).to_string());
                        file.gid = (g as u32 != u32::MAX).then(|| (g as u32).to_string());
                        FileAction::Chown
                    }
                    syscalls::NR_TRUNCATE | syscalls::NR_FTRUNCATE => {
                        file.size = Some(h.args[1]);
                        FileAction::Truncate
                    }
                    _ => return None,
                };
                Some(self.file(h, action, file))
            }
            Family::Network => self.network(rec, spec),
            Family::Dns => self.dns(rec),
            Family::Cred => {
                let process = self.process_of(h);
                Some(self.event(
                    h,
                    Payload::Process(ProcessEvent {
                        action: ProcessAction::CredentialChange,
                        process,
                        target: None,
                        error: None,
                    }),
                ))
            }
            Family::Ptrace => {
                let process = self.process_of(h);
                let tpid = h.args[1] as u32;
                let target = self
                    .table
                    .read_proc(tpid, &self.clock)
                    .map(|(p, _, _)| ProcessSummary::from(&p))
                    .unwrap_or(ProcessSummary {
                        pid: tpid,
                        ..ProcessSummary::default()
                    });
                Some(self.event(
                    h,
                    Payload::Process(ProcessEvent {
                        action: ProcessAction::Ptrace,
                        process,
                        target: Some(target),
                        error: Some(h.args[0] as i32),
                    }),
                ))
            }
            Family::ExecFailed => {
                let mut process = self.process_of(h);
                let path = Self::str_path(rec, 0).unwrap_or_default();
                process.executable = s(&path);
                process.args.clear();
                process.command_line.clear();
                Some(self.event(
                    h,
                    Payload::Process(ProcessEvent {
                        action: ProcessAction::ExecFailed,
                        process,
                        target: None,
                        error: Some((-h.ret) as i32),
                    }),
                ))
            }
            Family::Kernel => {
                let (action, detail) = match h.nr {
                    syscalls::NR_INIT_MODULE | syscalls::NR_FINIT_MODULE => (
                        KernelAction::ModuleLoad,
                        KernelDetail {
                            name: rec
                                .path(F_FD_COMP)
                                .map(|p| s(&p))
                                .unwrap_or_else(|| "(module from memory)".into()),
                            ..KernelDetail::default()
                        },
                    ),
                    syscalls::NR_BPF => {
                        let attr = rec.field(F_BPF_ATTR).unwrap_or_default();
                        let ptype = attr
                            .get(0..4)
                            .map(|b| u32::from_ne_bytes(b.try_into().expect("4")));
                        let name = attr.get(48..64).map(trim_nul).map(s).unwrap_or_default();
                        (
                            KernelAction::BpfLoad,
                            KernelDetail {
                                name,
                                kind: ptype.map(|t| format!("prog_type {t}")),
                                source: None,
                            },
                        )
                    }
                    syscalls::NR_MOUNT => (
                        KernelAction::Mount,
                        KernelDetail {
                            name: Self::str_path(rec, 1).map(|p| s(&p)).unwrap_or_default(),
                            kind: rec.cstr(F_STR0 + 2).map(s),
                            source: rec.cstr(F_STR0).map(s),
                        },
                    ),
                    _ => return None,
                };
                let process = self.process_of(h);
                Some(self.event(
                    h,
                    Payload::Kernel(KernelEvent {
                        action,
                        detail,
                        process,
                    }),
                ))
            }
        }
    }

    fn network(&mut self, rec: &Record, spec: Spec) -> Option<Event> {
        let h = &rec.hdr;
        let si = rec.field(F_SOCK).filter(|b| b.len() >= 48)?;
        let family = u16::from_ne_bytes([si[0], si[1]]);
        let sock_type = u16::from_ne_bytes([si[2], si[3]]);
        let lport = u16::from_ne_bytes([si[6], si[7]]);
        let rport = u16::from_ne_bytes([si[8], si[9]]);
        let ip = |b: &[u8]| -> IpAddr {
            if family == 2 {
                IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
            } else {
                let a: [u8; 16] = b[..16].try_into().expect("16");
                let v6 = Ipv6Addr::from(a);
                v6.to_ipv4_mapped()
                    .map(IpAddr::V4)
                    .unwrap_or(IpAddr::V6(v6))
            }
        };
        let local = Endpoint {
            ip: Some(ip(&si[16..32])),
            port: Some(lport),
            domain: None,
        };
        let mut remote = Endpoint {
            ip: Some(ip(&si[32..48])),
            port: Some(rport),
            domain: None,
        };
        // A non-blocking connect may not have filled the socket yet: the
        // address the process asked for is authoritative.
        if h.nr == syscalls::NR_CONNECT
            && let Some((a, p)) = rec.field(F_SOCKADDR).and_then(parse_sockaddr)
        {
            remote.ip = Some(a);
            remote.port = Some(p);
        }
        let transport = if sock_type == 2 {
            Transport::Udp
        } else {
            Transport::Tcp
        };
        let (action, source, destination) = match spec.nr {
            syscalls::NR_CONNECT => (NetworkAction::Connect, local, remote),
            syscalls::NR_LISTEN => (NetworkAction::Listen, Endpoint::default(), local),
            _ => (NetworkAction::Accept, remote, local),
        };
        let process = self.process_of(h);
        Some(self.event(
            h,
            Payload::Network(NetworkEvent {
                action,
                transport,
                source,
                destination,
                process,
            }),
        ))
    }

    fn dns(&mut self, rec: &Record) -> Option<Event> {
        let h = &rec.hdr;
        let data = rec.field(F_DATA)?;
        let mut dns = parse_dns(data)?;
        let destination = rec
            .field(F_SOCKADDR)
            .and_then(parse_sockaddr)
            .or_else(|| {
                let si = rec.field(F_SOCK).filter(|b| b.len() >= 48)?;
                let family = u16::from_ne_bytes([si[0], si[1]]);
                let rport = u16::from_ne_bytes([si[8], si[9]]);
                let ip = if family == 2 {
                    IpAddr::V4(Ipv4Addr::new(si[32], si[33], si[34], si[35]))
                } else {
                    let a: [u8; 16] = si[32..48].try_into().ok()?;
                    IpAddr::V6(Ipv6Addr::from(a))
                };
                Some((ip, rport))
            })
            .map(|(ip, port)| Endpoint {
                ip: Some(ip),
                port: Some(port),
                domain: None,
            })
            .unwrap_or_default();
        if dns.kind.is_empty() {
            dns.kind = "query".into();
        }
        let process = self.process_of(h);
        Some(self.event(
            h,
            Payload::Dns(DnsEvent {
                dns,
                destination,
                process,
            }),
        ))
    }
}

/// AF_INET / AF_INET6 sockaddr bytes (as the process passed them).
fn parse_sockaddr(b: &[u8]) -> Option<(IpAddr, u16)> {
    let fam = u16::from_ne_bytes([*b.first()?, *b.get(1)?]);
    let port = u16::from_be_bytes([*b.get(2)?, *b.get(3)?]);
    match fam {
        2 => {
            let a = b.get(4..8)?;
            Some((IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])), port))
        }
        10 => {
            let a: [u8; 16] = b.get(8..24)?.try_into().ok()?;
            Some((IpAddr::V6(Ipv6Addr::from(a)), port))
        }
        _ => None,
    }
}

/// A DNS message (query or answer) with the `simple-dns` parser.
pub(crate) fn parse_dns(data: &[u8]) -> Option<Dns> {
    use simple_dns::{Packet, rdata::RData};
    let pkt = Packet::parse(data).ok()?;
    let q = pkt.questions.first()?;
    let is_answer = data.get(2).is_some_and(|b| b & 0x80 != 0);
    let mut dns = Dns {
        kind: if is_answer { "answer" } else { "query" }.into(),
        question: DnsQuestion {
            name: q.qname.to_string(),
            kind: format!("{:?}", q.qtype),
        },
        ..Dns::default()
    };
    if is_answer {
        dns.response_code = Some(format!("{:?}", pkt.rcode()).to_uppercase());
        for a in &pkt.answers {
            let (kind, data, ip) = match &a.rdata {
                RData::A(x) => {
                    let ip = Ipv4Addr::from(x.address);
                    ("A", ip.to_string(), Some(IpAddr::V4(ip)))
                }
                RData::AAAA(x) => {
                    let ip = Ipv6Addr::from(x.address);
                    ("AAAA", ip.to_string(), Some(IpAddr::V6(ip)))
                }
                RData::CNAME(x) => ("CNAME", x.0.to_string(), None),
                other => ("OTHER", format!("{other:?}"), None),
            };
            if let Some(ip) = ip {
                dns.resolved_ip.push(ip);
            }
            dns.answers.push(DnsAnswer {
                name: a.name.to_string(),
                kind: kind.into(),
                data,
            });
        }
    }
    Some(dns)
}

/// `OsStr` from raw bytes (Unix paths are bytes, not UTF-8).
trait FromBytesCompat {
    fn from_bytes_compat(b: &[u8]) -> &Self;
}
impl FromBytesCompat for std::ffi::OsStr {
    fn from_bytes_compat(b: &[u8]) -> &Self {
        std::os::unix::ffi::OsStrExt::from_bytes(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids() {
        let id = "a".repeat(64);
        assert_eq!(
            container_id(&format!("docker-{id}.scope")),
            Some(id.clone())
        );
        assert_eq!(container_id("user@0.service"), None);
    }

    #[test]
    fn dns_garbage_is_rejected() {
        assert!(parse_dns(&[1, 2, 3]).is_none());
    }
}
