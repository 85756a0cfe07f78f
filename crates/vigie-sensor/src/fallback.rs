//! Fallback sensor (degraded mode), for hosts where eBPF cannot load:
//! process exec/fork/exit from the netlink proc connector, file writes from
//! fanotify `FAN_CLOSE_WRITE` on the root mount (notification only: no
//! permission events, so it can never block the host). Details of an exec
//! come from /proc and may be missing for processes that exit at once.
//! With a network-namespace scope, each process's namespace is read from
//! /proc/PID/ns/net: best effort (a process gone before we look is not
//! reported).
//!
//! Hand-written over libc: no maintained crate covers the proc connector,
//! and the fanotify part is a dozen lines.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use anyhow::{Context, Result, bail};
use vigie_event::{
    Event, File, FileAction, FileEvent, HealthAction, Host, Payload, Process, ProcessAction,
    ProcessEvent, ProcessSummary,
};

use crate::content::ContentSampler;
use crate::process::{Clock, ProcessTable, entity_id, netns_at, netns_of};
use crate::raw::bytes_to_string;
use crate::{EventSink, SensorConfig, health};

const NETLINK_CONNECTOR: i32 = 11;
const CN_IDX_PROC: u32 = 1;
const PROC_CN_MCAST_LISTEN: u32 = 1;
const PROC_EVENT_FORK: u32 = 0x1;
const PROC_EVENT_EXEC: u32 = 0x2;
const PROC_EVENT_EXIT: u32 = 0x8000_0000;

/// The proc connector answers only in the initial network namespace
/// (elsewhere its listen request is refused): an agent started in another
/// one (`ip netns exec`) opens its socket from a thread that entered the
/// initial one; the socket stays there, the rest of the agent does not
/// move. Candidates: the process's main thread, pid 1 (not always readable,
/// e.g. in a sandbox), then the ancestors, which started `ip netns exec`.
fn proc_socket_in_init_netns() -> Result<i32> {
    let here = match proc_socket() {
        Ok(fd) => return Ok(fd),
        Err(e) => e,
    };
    let mut candidates = vec!["/proc/self/ns/net".to_string(), "/proc/1/ns/net".into()];
    let mut pid = std::os::unix::process::parent_id();
    while pid > 1 && candidates.len() < 34 {
        candidates.push(format!("/proc/{pid}/ns/net"));
        pid = parent_of(pid).unwrap_or(0);
    }
    let mut tried = vec![netns_at("/proc/thread-self/ns/net")];
    for path in candidates {
        let ns = netns_at(&path);
        if ns.is_none() || tried.contains(&ns) {
            continue;
        }
        tried.push(ns);
        let opened = std::thread::spawn(move || {
            let f = std::fs::File::open(&path).with_context(|| format!("open {path}"))?;
            // SAFETY: a valid namespace fd; only this short-lived thread moves.
            if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                bail!("setns {path}: {}", std::io::Error::last_os_error());
            }
            proc_socket()
        })
        .join();
        if let Ok(Ok(fd)) = opened {
            return Ok(fd);
        }
    }
    Err(here.context(
        "the proc connector answers only in the initial network namespace, \
         and no process leading there could be entered",
    ))
}

/// Parent pid from /proc/PID/stat (comm may hold ')': fields follow the last).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn proc_socket() -> Result<i32> {
    // SAFETY: plain syscalls on values we own; errors are checked.
    unsafe {
        let fd = libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            NETLINK_CONNECTOR,
        );
        if fd < 0 {
            bail!("proc connector socket: {}", std::io::Error::last_os_error());
        }
        let mut sa: libc::sockaddr_nl = std::mem::zeroed();
        sa.nl_family = libc::AF_NETLINK as u16;
        sa.nl_groups = CN_IDX_PROC;
        sa.nl_pid = 0;
        if libc::bind(
            fd,
            &sa as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        ) < 0
        {
            let e = std::io::Error::last_os_error();
            libc::close(fd);
            bail!("proc connector bind: {e}");
        }
        // nlmsghdr (16) + cn_msg (20) + op (4)
        let mut msg = [0u8; 40];
        msg[0..4].copy_from_slice(&40u32.to_ne_bytes());
        msg[4..6].copy_from_slice(&(libc::NLMSG_DONE as u16).to_ne_bytes());
        msg[12..16].copy_from_slice(&std::process::id().to_ne_bytes());
        msg[16..20].copy_from_slice(&CN_IDX_PROC.to_ne_bytes()); // id.idx
        msg[20..24].copy_from_slice(&1u32.to_ne_bytes()); // id.val = CN_VAL_PROC
        msg[32..34].copy_from_slice(&4u16.to_ne_bytes()); // len
        msg[36..40].copy_from_slice(&PROC_CN_MCAST_LISTEN.to_ne_bytes());
        if libc::send(fd, msg.as_ptr() as *const _, msg.len(), 0) < 0 {
            let e = std::io::Error::last_os_error();
            libc::close(fd);
            bail!("proc connector listen: {e}");
        }
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 200_000,
        };
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &tv as *const _ as *const _,
            std::mem::size_of::<libc::timeval>() as u32,
        );
        Ok(fd)
    }
}

fn fanotify_fd() -> Result<i32> {
    // SAFETY: plain syscalls; errors are checked.
    unsafe {
        let fd = libc::fanotify_init(
            libc::FAN_CLASS_NOTIF | libc::FAN_CLOEXEC | libc::FAN_NONBLOCK,
            // The descriptors are read by content sampling: O_NOATIME keeps
            // those reads invisible, as for the files it opens itself.
            (libc::O_RDONLY | libc::O_LARGEFILE | libc::O_NOATIME) as u32,
        );
        if fd < 0 {
            bail!("fanotify_init: {}", std::io::Error::last_os_error());
        }
        // The root filesystem as a whole, whatever mount (namespace) the
        // writer goes through: `ip netns exec`, containers and services
        // with private mounts each have their own copy of "/". Kernels
        // before 4.20 only know mount marks.
        let mark = |how| {
            libc::fanotify_mark(
                fd,
                libc::FAN_MARK_ADD | how,
                libc::FAN_CLOSE_WRITE,
                libc::AT_FDCWD,
                c"/".as_ptr(),
            )
        };
        if mark(libc::FAN_MARK_FILESYSTEM) < 0 && mark(libc::FAN_MARK_MOUNT) < 0 {
            let e = std::io::Error::last_os_error();
            libc::close(fd);
            bail!("fanotify_mark /: {e}");
        }
        Ok(fd)
    }
}

fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(o..o + 4)?.try_into().ok()?))
}

pub(crate) fn start(
    cfg: SensorConfig,
    netns: Option<u32>,
    host: Host,
    tx: EventSink,
    stop: Arc<AtomicBool>,
    why: String,
) -> Result<JoinHandle<Result<()>>> {
    let nl = proc_socket_in_init_netns().context("fallback sensor")?;
    // Out of scope: another namespace, or one we could not read (gone).
    let in_scope = move |ns: Option<u32>| netns.is_none() || ns == netns;
    let fan = if cfg.file_events {
        Some(fanotify_fd().context("fallback sensor")?)
    } else {
        None
    };
    let _ = tx.send_one(health(&host, "fallback", HealthAction::Degraded, format!("degraded mode: fallback sensor (proc connector + fanotify) because {why}; no network, DNS or kernel events"), BTreeMap::new()));
    if let Some(fan) = fan {
        let (tx, stop, host) = (tx.clone(), stop.clone(), host.clone());
        let me = std::process::id() as i32;
        let ignore_self = cfg.ignore_self;
        std::thread::Builder::new()
            .name("vigie-fanotify".into())
            .spawn(move || {
                let clock = Clock::new();
                let table = ProcessTable::new();
                let mut sampler = cfg.content_sampling.then(ContentSampler::new);
                let mut buf = vec![0u8; 64 * 1024];
                while !stop.load(Ordering::Relaxed) {
                    let mut pfd = libc::pollfd {
                        fd: fan,
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: valid pollfd; buffer sized as passed.
                    let n = unsafe {
                        if libc::poll(&mut pfd, 1, 200) <= 0 {
                            continue;
                        }
                        libc::read(fan, buf.as_mut_ptr() as *mut _, buf.len())
                    };
                    if n <= 0 {
                        continue;
                    }
                    let mut o = 0usize;
                    while o + 24 <= n as usize {
                        let len = u32_at(&buf, o).unwrap_or(0) as usize;
                        let fd = u32_at(&buf, o + 16).unwrap_or(0) as i32;
                        let pid = u32_at(&buf, o + 20).unwrap_or(0) as i32;
                        if len < 24 {
                            break;
                        }
                        if fd >= 0 {
                            // SAFETY: fanotify opened this fd for us; it is
                            // ours to read and close (on drop).
                            let opened = unsafe { std::fs::File::from_raw_fd(fd) };
                            let path = std::fs::read_link(format!("/proc/self/fd/{fd}"))
                                .map(|p| bytes_to_string(p.as_os_str().as_encoded_bytes()))
                                .unwrap_or_default();
                            let own = ignore_self && pid == me;
                            let noise =
                                cfg.noise_paths.iter().any(|p| path.starts_with(p.as_str()));
                            // Checked first: no /proc reads for other hosts.
                            let scoped = netns.is_none() || in_scope(netns_of(pid as u32));
                            if !own && !noise && scoped {
                                let process = table
                                    .read_proc(pid as u32, &clock)
                                    .map(|(p, _, _)| p)
                                    .unwrap_or(Process {
                                        pid: pid as u32,
                                        ..Process::default()
                                    });
                                let mut file = File::at(path);
                                if let Some(s) = sampler.as_mut() {
                                    s.fill_open(&opened, &mut file);
                                }
                                let ev = Event::new(
                                    chrono::Utc::now(),
                                    host.clone(),
                                    Payload::File(FileEvent {
                                        action: FileAction::Write,
                                        file,
                                        process,
                                    }),
                                );
                                if tx.send_one(ev).is_err() {
                                    return;
                                }
                            }
                        }
                        o += len;
                    }
                }
                // SAFETY: our fd.
                unsafe { libc::close(fan) };
            })?;
    }
    let t = std::thread::Builder::new()
        .name("vigie-proc-connector".into())
        .spawn(move || {
            let clock = Clock::new();
            let mut table = ProcessTable::new();
            table.seed_from_proc(&clock);
            let mut buf = vec![0u8; 8192];
            while !stop.load(Ordering::Relaxed) {
                // SAFETY: buffer sized as passed.
                let n = unsafe { libc::recv(nl, buf.as_mut_ptr() as *mut _, buf.len(), 0) };
                if n < 36 + 16 {
                    continue;
                }
                let b = &buf[..n as usize];
                let ev = &b[36..]; // after nlmsghdr + cn_msg
                let (Some(what), Some(pid), Some(tgid)) =
                    (u32_at(ev, 0), u32_at(ev, 16), u32_at(ev, 20))
                else {
                    continue;
                };
                let out = match what {
                    PROC_EVENT_EXEC => {
                        let Some((mut p, ticks, ppid)) = table.read_proc(tgid, &clock) else {
                            continue;
                        };
                        table.insert(p.clone(), ticks, ppid);
                        let (parent, ancestors) = table.ancestry(ppid, None);
                        p.parent = Some(parent.unwrap_or_else(|| {
                            Arc::new(ProcessSummary {
                                pid: ppid,
                                ..ProcessSummary::default()
                            })
                        }));
                        p.vigie.ancestors = ancestors;
                        Some((ProcessAction::Exec, p))
                    }
                    PROC_EVENT_FORK => {
                        // fork: parent_pid, parent_tgid, child_pid, child_tgid
                        let (Some(cpid), Some(ctgid)) = (u32_at(ev, 24), u32_at(ev, 28)) else {
                            continue;
                        };
                        if cpid != ctgid {
                            continue;
                        } // a thread
                        let Some((p, ticks, ppid)) = table.read_proc(ctgid, &clock) else {
                            continue;
                        };
                        table.insert(p.clone(), ticks, ppid);
                        Some((ProcessAction::Fork, p))
                    }
                    PROC_EVENT_EXIT if pid == tgid => {
                        let code = u32_at(ev, 24).unwrap_or(0) as i32;
                        let p = table.get_any(tgid).unwrap_or(Process {
                            pid: tgid,
                            entity_id: entity_id(tgid, 0),
                            ..Process::default()
                        });
                        let mut p = p;
                        if code & 0x7f != 0 {
                            p.vigie.exit_signal = Some(code & 0x7f)
                        } else {
                            p.exit_code = Some((code >> 8) & 0xff)
                        }
                        table.remove(tgid);
                        Some((ProcessAction::Exit, p))
                    }
                    _ => None,
                };
                if let Some((action, process)) = out.filter(|(_, p)| in_scope(p.vigie.netns)) {
                    let e = Event::new(
                        chrono::Utc::now(),
                        host.clone(),
                        Payload::Process(ProcessEvent {
                            action,
                            process,
                            target: None,
                            error: None,
                        }),
                    );
                    if tx.send_one(e).is_err() {
                        break;
                    }
                }
            }
            // SAFETY: our fd.
            unsafe { libc::close(nl) };
            Ok(())
        })?;
    Ok(t)
}
