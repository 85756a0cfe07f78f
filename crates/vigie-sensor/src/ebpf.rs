//! Loads the BPF programs (libbpf-rs skeleton), fills their maps from the
//! configuration, attaches them and pumps the ring buffer into events.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::mem::MaybeUninit;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Link, MapCore, MapFlags, RingBufferBuilder, TracepointCategory};
use vigie_event::{HealthAction, Host};

use crate::decode::Decoder;
use crate::skel::VigieSkelBuilder;
use crate::syscalls;
use crate::{Batcher, EventSink, SensorConfig, health};

const KIND_NAMES: [&str; 7] = [
    "unknown", "exec", "fork", "exit", "syscall", "write", "create",
];

/// How long a record may wait in the kernel buffer on a quiet host (the
/// kernel wakes the reader early once a batch worth reading is waiting).
const POLL_EVERY: Duration = Duration::from_millis(20);

/// Mounts tracefs when absent (libbpf finds tracepoint ids there).
fn ensure_tracefs() {
    if std::path::Path::new("/sys/kernel/tracing/events").exists() {
        return;
    }
    // SAFETY: constant NUL-terminated strings.
    let _ = unsafe {
        libc::mount(
            c"tracefs".as_ptr(),
            c"/sys/kernel/tracing".as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
}

/// Runs the eBPF sensor until `stop`; `ready` gets the load result.
pub(crate) fn run(
    cfg: SensorConfig,
    netns: Option<u32>,
    host: Host,
    tx: EventSink,
    stop: Arc<AtomicBool>,
    ready: std::sync::mpsc::Sender<Result<()>>,
) -> Result<()> {
    let mut storage = MaybeUninit::uninit();
    let loaded = load(&cfg, netns, &mut storage);
    let (skel, links, missing) = match loaded {
        Ok(x) => x,
        Err(e) => {
            let msg = format!("{e:#}");
            let _ = ready.send(Err(e));
            anyhow::bail!(msg);
        }
    };
    pump(cfg, netns, host, tx, stop, skel, links, missing, ready)
}

type Loaded<'a> = (crate::skel::VigieSkel<'a>, Vec<Link>, Vec<String>);

fn load<'a>(
    cfg: &SensorConfig,
    netns: Option<u32>,
    storage: &'a mut MaybeUninit<libbpf_rs::OpenObject>,
) -> Result<Loaded<'a>> {
    ensure_tracefs();
    let mut open = VigieSkelBuilder::default()
        .open(storage)
        .context("open BPF object")?;
    let ncpu = libbpf_rs::num_possible_cpus().context("count CPUs")? as u32;
    open.maps.scratch.set_max_entries(ncpu.max(1))?;
    let rb = cfg.ring_buffer_mb.clamp(1, 1024) * 1024 * 1024;
    open.maps.events.set_max_entries(rb.next_power_of_two())?;
    let skel = open
        .load()
        .context("load BPF programs (needs root and BTF)")?;

    // Configuration.
    let mut c = [0u8; 16];
    c[0..4].copy_from_slice(&cfg.arg_max.clamp(64, 4095).to_ne_bytes());
    c[4..8].copy_from_slice(&std::process::id().to_ne_bytes());
    c[8..12].copy_from_slice(&u32::from(cfg.ignore_self).to_ne_bytes());
    // Other namespaces' syscalls are dropped in the kernel (exec/fork/exit
    // still come up for the process table).
    c[12..16].copy_from_slice(&netns.unwrap_or(0).to_ne_bytes());
    skel.maps
        .cfg
        .update(&0u32.to_ne_bytes(), &c, MapFlags::ANY)?;
    // The agent's own file and network activity is noise.
    if cfg.ignore_self {
        skel.maps
            .muted
            .update(&std::process::id().to_ne_bytes(), &[1], MapFlags::ANY)?;
    }
    for p in &cfg.noise_paths {
        let b = p.as_bytes();
        if b.is_empty() || b.len() > 128 {
            tracing::warn!(path = %p, "noise path ignored (empty or over 128 bytes)");
            continue;
        }
        let mut k = vec![0u8; 4 + 128];
        k[0..4].copy_from_slice(&((b.len() * 8) as u32).to_ne_bytes());
        k[4..4 + b.len()].copy_from_slice(b);
        skel.maps.noise_paths.update(&k, &[1], MapFlags::ANY)?;
    }
    for e in &cfg.noise_executables {
        let b = e.as_bytes();
        if b.is_empty() || b.len() >= 128 {
            tracing::warn!(exe = %e, "noise executable ignored (empty or 128 bytes or more)");
            continue;
        }
        let mut k = vec![0u8; 128];
        k[..b.len()].copy_from_slice(b);
        skel.maps.noise_exes.update(&k, &[1], MapFlags::ANY)?;
    }
    let specs = syscalls::specs(cfg.file_events, cfg.network_events, cfg.dns_events);
    for s in &specs {
        skel.maps
            .sc_specs
            .update(&s.nr.to_ne_bytes(), &s.to_bytes(), MapFlags::ANY)?;
    }

    // Attach.
    let mut links: Vec<Link> = Vec::new();
    links.push(skel.progs.handle_exec.attach().context("attach exec")?);
    links.push(skel.progs.handle_fork.attach().context("attach fork")?);
    links.push(skel.progs.handle_exit.attach().context("attach exit")?);
    let mut missing = Vec::new();
    // Exit only: the program reads the arguments from the registers the
    // task entered with (vigie.bpf.c, syscall_args).
    for s in &specs {
        let tp = format!("sys_exit_{}", s.name);
        match skel
            .progs
            .handle_sys_exit
            .attach_tracepoint(TracepointCategory::Syscalls, &tp)
        {
            Ok(l) => links.push(l),
            Err(_) => missing.push(tp),
        }
    }
    if cfg.file_events {
        links.push(skel.progs.handle_write.attach()?);
        links.push(skel.progs.handle_close.attach()?);
        for name in [
            "sys_enter_pwrite64",
            "sys_enter_writev",
            "sys_enter_pwritev",
            "sys_enter_pwritev2",
        ] {
            match skel
                .progs
                .handle_writev
                .attach_tracepoint(TracepointCategory::Syscalls, name)
            {
                Ok(l) => links.push(l),
                Err(_) => missing.push(name.to_string()),
            }
        }
    }
    if !missing.is_empty() {
        tracing::warn!(?missing, "tracepoints not available on this kernel");
    }
    Ok((skel, links, missing))
}

/// Detaches every probe. Each tracepoint link takes about 70 ms to close
/// (the kernel waits for an RCU grace period per link): one after the other,
/// the ~90 links took 6.5 s, and stopping the agent with them. Closed from
/// several threads, the waits overlap.
fn detach(links: Vec<Link>) {
    const THREADS: usize = 16;
    let per = links.len().div_ceil(THREADS).max(1);
    let mut chunks: Vec<Vec<Link>> = Vec::new();
    let mut it = links.into_iter().peekable();
    while it.peek().is_some() {
        chunks.push(it.by_ref().take(per).collect());
    }
    std::thread::scope(|s| {
        for chunk in chunks {
            // A thread that cannot start drops its links here instead.
            if let Err(e) = std::thread::Builder::new().spawn_scoped(s, move || drop(chunk)) {
                tracing::debug!("detaching probes on this thread: {e}");
            }
        }
    });
}

#[allow(clippy::too_many_arguments)]
fn pump(
    cfg: SensorConfig,
    netns: Option<u32>,
    host: Host,
    tx: EventSink,
    stop: Arc<AtomicBool>,
    skel: crate::skel::VigieSkel<'_>,
    links: Vec<Link>,
    missing: Vec<String>,
    ready: std::sync::mpsc::Sender<Result<()>>,
) -> Result<()> {
    let mut links = Some(links);
    // Shared with the ring buffer callback (same thread).
    let out = Rc::new(RefCell::new(
        Batcher::new(tx).with_content_sampling(cfg.content_sampling),
    ));
    let decoder = Rc::new(RefCell::new(
        Decoder::new(host.clone(), cfg.max_hash_mb * 1024 * 1024).with_scope(netns),
    ));
    // Seed after attaching: a process started in between is seen by both.
    {
        let mut d = decoder.borrow_mut();
        let clock = d.clock;
        d.table.seed_from_proc(&clock);
        let mut counters = BTreeMap::new();
        counters.insert("processes_seeded".into(), d.table.len() as u64);
        counters.insert("tracepoints_missing".into(), missing.len() as u64);
        let msg = match netns {
            Some(ns) => {
                counters.insert("scope_netns".into(), ns.into());
                format!("eBPF sensor started (scope: network namespace net:[{ns}])")
            }
            None => "eBPF sensor started".into(),
        };
        let _ = out.borrow_mut().send_now(health(
            &host,
            "ebpf",
            HealthAction::SensorStart,
            msg,
            counters,
        ));
    }
    // Ready only now: whatever the caller does next, the table knows the
    // processes that existed before (they may exit before we read events).
    let _ = ready.send(Ok(()));

    let malformed = Rc::new(RefCell::new(0u64));
    let gone = Rc::new(AtomicBool::new(false));
    let mut builder = RingBufferBuilder::new();
    {
        let decoder = decoder.clone();
        let out = out.clone();
        let malformed = malformed.clone();
        let gone = gone.clone();
        builder.add(&skel.maps.events, move |data: &[u8]| {
            match decoder.borrow_mut().decode(data) {
                Ok(Some(ev)) => {
                    if out.borrow_mut().push(ev).is_err() {
                        gone.store(true, Ordering::Relaxed);
                        return -1;
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    *malformed.borrow_mut() += 1;
                    tracing::debug!("{e}");
                }
            }
            0
        })?;
    }
    let ring = builder.build()?;

    let mut last_lost = [0u64; 7];
    let mut last_malformed = 0u64;
    let mut last_check = Instant::now();
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        if stopping {
            // Detach first: under a storm the probes would refill the buffer
            // as fast as we drain it, and the drain would never end. Then
            // drain what the kernel already produced, and report a last time.
            if let Some(l) = links.take() {
                detach(l);
            }
            let _ = ring.consume();
        } else {
            // The kernel wakes us only when much is waiting (WAKEUP_BYTES
            // in vigie.bpf.c): read what is there after each wait.
            let _ = ring.poll(POLL_EVERY);
            let _ = ring.consume();
        }
        // The kernel buffer is empty (or we stop): hand over what we have.
        if out.borrow_mut().flush().is_err() {
            gone.store(true, Ordering::Relaxed);
        }
        if gone.load(Ordering::Relaxed) {
            return Ok(());
        }
        if stopping || last_check.elapsed() >= Duration::from_secs(1) {
            last_check = Instant::now();
            let mut lost = [0u64; 7];
            for (i, slot) in lost.iter_mut().enumerate() {
                if let Ok(Some(per_cpu)) = skel
                    .maps
                    .lost
                    .lookup_percpu(&(i as u32).to_ne_bytes(), MapFlags::ANY)
                {
                    *slot = per_cpu
                        .iter()
                        .filter_map(|v| {
                            v.get(..8)
                                .map(|b| u64::from_ne_bytes(b.try_into().expect("8")))
                        })
                        .sum();
                }
            }
            let m = *malformed.borrow();
            if lost != last_lost || m != last_malformed {
                let mut counters = BTreeMap::new();
                let mut total = 0;
                for (i, n) in lost.iter().enumerate() {
                    if *n > 0 {
                        counters.insert(format!("lost.{}", KIND_NAMES[i]), *n);
                        total += n;
                    }
                }
                counters.insert("lost.total".into(), total);
                counters.insert("malformed".into(), m);
                let new = total - last_lost.iter().sum::<u64>();
                let msg = format!(
                    "{new} events lost since the last report (ring buffer full), {total} in all"
                );
                tracing::warn!("{msg}");
                if out
                    .borrow_mut()
                    .send_now(health(
                        &host,
                        "ebpf",
                        HealthAction::EventsLost,
                        msg,
                        counters,
                    ))
                    .is_err()
                {
                    return Ok(());
                }
                last_lost = lost;
                last_malformed = m;
            }
        }
        if stopping {
            return Ok(());
        }
    }
}
