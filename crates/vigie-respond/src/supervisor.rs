//! Tamper handling where BPF LSM is refused: a supervisor runs the agent,
//! restarts it whenever it dies, and records every death that did not come
//! with the stop code as a tamper event. `vigie agent stop --code CODE`
//! ([`request_stop`]) is the clean way out, for admins, CI and tests.
//!
//! The hand-shake goes through the state directory: `agent.pid` (written by
//! the supervisor) names the process to stop; `stop.ok` (written by
//! [`request_stop`] after checking the code) tells the supervisor the exit
//! was authorised. The agent also dies with the supervisor (PDEATHSIG), so a
//! restarted supervisor (systemd `Restart=always`) never runs two agents.

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use vigie_event::{Event, Outcome};

use crate::events::{self, Cause};
use crate::release::{self, Purpose};
use crate::state::StateDir;

const PID_FILE: &str = "agent.pid";
const STOP_FILE: &str = "stop.ok";
/// A stop authorisation older than this is ignored.
const STOP_VALID: Duration = Duration::from_secs(60);

/// Run `cmd` until it exits after an authorised stop. Returns the events
/// recorded (tamper on each unauthorised exit). `max_restarts` bounds the
/// loop for tests; `None` means forever.
pub fn supervise(
    state: &StateDir,
    mut cmd: Command,
    max_restarts: Option<usize>,
    mut on_event: impl FnMut(&Event),
) -> Result<()> {
    let host = crate::state::this_host();
    // The child dies with us, so a supervisor restarted by systemd never
    // leaves an orphan agent behind.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
        });
    }
    let (lsm_on, lsm) = crate::bpf_lsm_available();
    tracing::info!("supervisor: {lsm}");
    if !lsm_on {
        tracing::info!("supervisor: every stop without the code is reported as tampering");
    }
    // agent.pid left behind: the previous supervisor was killed (or the
    // machine lost power) without an authorised stop.
    if state.read_optional(PID_FILE)?.is_some() && !stop_authorised(state)? {
        let ev = events::tamper(
            &host,
            "previous agent run ended without the stop code (supervisor killed or power lost)",
        );
        state.record(&ev)?;
        on_event(&ev);
    }
    state.remove(STOP_FILE)?;
    let mut restarts = 0usize;
    let mut backoff = Duration::from_millis(200);
    loop {
        let started = Instant::now();
        let mut child = cmd.spawn().context("cannot start the agent")?;
        state.write_atomic(PID_FILE, child.id().to_string().as_bytes(), 0o600)?;
        let status = child.wait().context("cannot wait for the agent")?;
        let _ = state.remove(PID_FILE);
        if stop_authorised(state)? {
            state.remove(STOP_FILE)?;
            let ev = events::response(
                &host,
                "stop",
                "agent",
                &Cause {
                    actor: "stop-code".into(),
                    ..Cause::default()
                },
                Outcome::Success,
                format!("agent stopped with the stop code ({})", describe(status)),
                Some("start the vigie service again".into()),
            );
            state.record(&ev)?;
            on_event(&ev);
            return Ok(());
        }
        let ev = events::tamper(
            &host,
            format!(
                "agent stopped without the stop code ({}); restarting",
                describe(status)
            ),
        );
        state.record(&ev)?;
        on_event(&ev);
        restarts += 1;
        if max_restarts.is_some_and(|m| restarts > m) {
            bail!("agent restarted {} times; giving up", restarts - 1);
        }
        // A crash loop should not eat the CPU; a long healthy run resets it.
        if started.elapsed() > Duration::from_secs(60) {
            backoff = Duration::from_millis(200);
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

fn describe(s: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (_, Some(sig)) => format!(
            "killed by signal {}",
            Signal::try_from(sig)
                .map(|s| s.as_str().to_string())
                .unwrap_or(sig.to_string())
        ),
        _ => "unknown status".into(),
    }
}

fn stop_authorised(state: &StateDir) -> Result<bool> {
    let Some(b) = state.read_optional(STOP_FILE)? else {
        return Ok(false);
    };
    let t: i64 = String::from_utf8_lossy(&b).trim().parse().unwrap_or(0);
    let age = chrono::Utc::now().timestamp() - t;
    Ok((0..=STOP_VALID.as_secs() as i64).contains(&age))
}

/// The pid of the supervised agent, if one runs.
pub fn agent_pid(state: &StateDir) -> Result<Option<i32>> {
    let Some(b) = state.read_optional(PID_FILE)? else {
        return Ok(None);
    };
    let pid: i32 = String::from_utf8_lossy(&b)
        .trim()
        .parse()
        .context("agent.pid is corrupt")?;
    Ok((pid > 1 && kill(Pid::from_raw(pid), None).is_ok()).then_some(pid))
}

/// `vigie agent stop --code CODE`: check the code, authorise the stop,
/// SIGTERM the agent and wait (up to `wait`) for it to exit.
pub fn request_stop(state: &StateDir, code: &str, wait: Duration) -> Result<Event> {
    let host = crate::state::this_host();
    let secret = state.secret()?;
    if !release::verify(&secret, Purpose::Stop, code) {
        let ev = events::tamper(&host, "agent stop refused: wrong or expired stop code");
        state.record(&ev)?;
        bail!("wrong or expired stop code; the agent keeps running");
    }
    let pid = agent_pid(state)?.context("no running agent found in this state directory")?;
    state.write_atomic(
        STOP_FILE,
        chrono::Utc::now().timestamp().to_string().as_bytes(),
        0o600,
    )?;
    kill(Pid::from_raw(pid), Signal::SIGTERM).context("cannot signal the agent")?;
    let t0 = Instant::now();
    while kill(Pid::from_raw(pid), None).is_ok() {
        if t0.elapsed() > wait {
            bail!("agent (pid {pid}) did not exit within {wait:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(events::response(
        &host,
        "stop",
        &format!("agent pid {pid}"),
        &Cause::user(),
        Outcome::Success,
        "stop code accepted; agent exited",
        Some("start the vigie service again".into()),
    ))
}
