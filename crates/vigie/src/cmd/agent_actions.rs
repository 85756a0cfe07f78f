//! `vigie agent isolate|release|release-code|status|kill|quarantine|restore|
//! block|unblock|stop|supervise`: the response actions, mounted under
//! `vigie agent` by `cmd/agent.rs`. Each acts on the agent that owns the state
//! directory (`--state-dir`, else `VIGIE_STATE_DIR`, else
//! /var/lib/vigie/agent). Only argument parsing here; the work is in
//! `vigie-respond`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use vigie_respond::release::{self, Purpose};
use vigie_respond::{Cause, IsolationSpec, Responder, StateDir};

#[derive(Subcommand, Debug)]
pub enum AgentAction {
    /// Isolate this host from the network now.
    ///
    /// Everything is dropped (IPv4 and IPv6, in and out) except loopback, the
    /// agent's connection to its manager, DHCP, DNS to the resolvers given
    /// (default: the nameservers of /etc/resolv.conf) and the --allow list.
    /// Open connections are cut. The isolation survives restarts and reboots
    /// and is restored within a second if the table is deleted. Read it with
    /// `nft list table inet vigie`.
    ///
    /// Example: vigie agent isolate --allow 10.0.0.5:22 --allow 192.168.1.0/24 --reason "ransomware alert"
    Isolate(IsolateArgs),
    /// Release the isolation: needs the release code the manager shows (or
    /// `vigie agent release-code`), valid for the current and previous hour.
    ///
    /// Example: vigie agent release --code 12345678
    Release {
        /// The 8-digit release code.
        #[arg(long)]
        code: String,
    },
    /// Print the current release (or stop) code from a copy of the host's
    /// secret (the `secret` file of the agent's state directory). For the
    /// admin, on another machine; the manager will show it too.
    ///
    /// Example: vigie agent release-code --secret-file ./host42.secret
    ReleaseCode {
        /// File holding the host's secret (hex). Default: the state directory's.
        #[arg(long)]
        secret_file: Option<PathBuf>,
        /// What the code is for.
        #[arg(long = "for", value_enum, default_value_t = CodePurpose::Release)]
        purpose: CodePurpose,
    },
    /// Show the agent's state: running or not, sensor health, rules loaded,
    /// manager connection and spool, isolation state, quarantined files,
    /// the deny list and the last actions, read from the state directory.
    ///
    /// Example: vigie agent status --last 20
    Status {
        /// How many recent actions to show.
        #[arg(long, default_value_t = 10)]
        last: usize,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Kill a process and all its descendants, and check they died. Never
    /// kills pid 1, kernel threads, the agent or its ancestors, or a
    /// --protect'ed name or path.
    ///
    /// Example: vigie agent kill 4242 --reason "encrypting files"
    Kill {
        /// The root of the tree to kill.
        pid: i32,
        /// A process name or executable path never to kill (repeatable).
        #[arg(long)]
        protect: Vec<String>,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Move a file into quarantine (state directory, no permissions), with
    /// its owner, mode, times and SHA-256. Undo with `vigie agent restore ID`.
    ///
    /// Example: vigie agent quarantine /tmp/payload.elf
    Quarantine {
        path: PathBuf,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Put a quarantined file back exactly as it was (bytes, owner, mode,
    /// times). IDs are listed by `vigie agent status`.
    ///
    /// Example: vigie agent restore 0193c5e2-7f1a-7c3e-9b1d-2a4f5e6d7c8b
    Restore { id: String },
    /// Add a binary to the execution deny list, by SHA-256 or by path. The
    /// running agent picks the change up without restart. Refuses entries
    /// that would block the system (shells, init, the agent) unless --force.
    ///
    /// Example: vigie agent block --sha256 e3b0c442...  |  vigie agent block --path /tmp/x
    Block {
        #[arg(long, conflicts_with = "path", required_unless_present = "path")]
        sha256: Option<String>,
        #[arg(long)]
        path: Option<String>,
        /// Accept an entry that matches a system binary.
        #[arg(long)]
        force: bool,
    },
    /// Remove an entry (SHA-256 or path) from the deny list.
    ///
    /// Example: vigie agent unblock /tmp/x
    Unblock { entry: String },
    /// Stop the agent cleanly with the stop code (`release-code --for stop`).
    /// Any other stop is reported as tampering and the agent is restarted.
    ///
    /// Example: vigie agent stop --code 87654321
    Stop {
        #[arg(long)]
        code: String,
    },
    /// Run a command (the agent) under Vigie's supervisor: restarted at once
    /// whenever it exits without the stop code, each such exit recorded as a
    /// tamper event. Used by the systemd unit.
    ///
    /// Example: vigie agent supervise -- vigie agent run
    Supervise {
        /// The command and its arguments.
        #[arg(required = true, last = true)]
        command: Vec<String>,
    },
}

#[derive(Args, Debug)]
pub struct IsolateArgs {
    /// Allowed destination: IP, CIDR, IP:port, [IPv6]:port or host:port
    /// (repeatable).
    #[arg(long)]
    pub allow: Vec<String>,
    /// DNS server allowed while isolated (repeatable). Default: the
    /// nameservers in /etc/resolv.conf.
    #[arg(long)]
    pub resolver: Vec<std::net::IpAddr>,
    /// The manager, host:port, checked reachable after isolating.
    #[arg(long)]
    pub manager: Option<String>,
    /// Why (recorded with the action).
    #[arg(long)]
    pub reason: Option<String>,
    /// Start from the `[isolation]` section of this response policy (TOML);
    /// --allow, --resolver and --manager add to it.
    #[arg(long)]
    pub policy: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum CodePurpose {
    Release,
    Stop,
}

/// Run one action against the state directory `state_dir` (or the default).
pub fn run(action: AgentAction, state_dir: Option<&Path>) -> Result<ExitCode> {
    let dir = StateDir::resolve(state_dir);
    match action {
        AgentAction::Isolate(a) => {
            let r = Responder::open(&dir)?;
            let mut spec = match &a.policy {
                Some(p) => vigie_respond::policy::Policy::load(p)?.isolation,
                None => IsolationSpec::default(),
            };
            spec.allow.extend(a.allow);
            spec.resolvers.extend(a.resolver);
            if spec.resolvers.is_empty() {
                spec.resolvers = vigie_respond::isolation::system_resolvers();
            }
            if a.manager.is_some() {
                spec.manager = a.manager;
            }
            let ev = r.isolate(&spec, &Cause::user().with_reason(a.reason))?;
            Ok(report(&ev))
        }
        AgentAction::Release { code } => {
            let r = Responder::open(&dir)?;
            let ev = r.release_with_code(&code, &Cause::user())?;
            Ok(report(&ev))
        }
        AgentAction::ReleaseCode {
            secret_file,
            purpose,
        } => {
            let secret = match secret_file {
                Some(f) => {
                    let b = std::fs::read(&f)
                        .with_context(|| format!("cannot read {}", f.display()))?;
                    vigie_respond::state::decode_secret(&b)
                        .with_context(|| format!("{} is not a Vigie secret", f.display()))?
                }
                None => StateDir::open(&dir)?.secret()?,
            };
            let p = match purpose {
                CodePurpose::Release => Purpose::Release,
                CodePurpose::Stop => Purpose::Stop,
            };
            println!("{}", release::current_code(&secret, p));
            Ok(ExitCode::SUCCESS)
        }
        AgentAction::Status { last, json } => {
            let s = vigie_agent::status(&dir, last)?;
            if json {
                println!("{}", vigie_agent::status_json(&s));
            } else {
                print!("{}", vigie_agent::status_text(&s));
            }
            Ok(ExitCode::SUCCESS)
        }
        AgentAction::Kill {
            pid,
            protect,
            reason,
        } => {
            let r = Responder::open(&dir)?;
            let ev = r.kill(pid, &protect, &Cause::user().with_reason(reason))?;
            Ok(report(&ev))
        }
        AgentAction::Quarantine { path, reason } => {
            let r = Responder::open(&dir)?;
            let ev = r.quarantine(&path, &Cause::user().with_reason(reason))?;
            Ok(report(&ev))
        }
        AgentAction::Restore { id } => {
            let r = Responder::open(&dir)?;
            let ev = r.restore(&id, &Cause::user())?;
            Ok(report(&ev))
        }
        AgentAction::Block {
            sha256,
            path,
            force,
        } => {
            let r = Responder::open(&dir)?;
            let entry = match (sha256, path) {
                (Some(h), _) => vigie_respond::execblock::DenyEntry::Sha256(h),
                (None, Some(p)) => vigie_respond::execblock::DenyEntry::Path(p),
                (None, None) => anyhow::bail!("give --sha256 or --path"),
            };
            let ev = r.block(entry, force, &Cause::user())?;
            Ok(report(&ev))
        }
        AgentAction::Unblock { entry } => {
            let r = Responder::open(&dir)?;
            let ev = r.unblock(&entry, &Cause::user())?;
            Ok(report(&ev))
        }
        AgentAction::Stop { code } => {
            let state = StateDir::open(&dir)?;
            let ev =
                vigie_respond::supervisor::request_stop(&state, &code, Duration::from_secs(30))?;
            Ok(report(&ev))
        }
        AgentAction::Supervise { command } => {
            let state = StateDir::open(&dir)?;
            let mut cmd = std::process::Command::new(&command[0]);
            cmd.args(&command[1..]).env("VIGIE_STATE_DIR", &dir);
            vigie_respond::supervisor::supervise(&state, cmd, None, |_| {})?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Print the action's event in one line; exit 0 only for a verified success.
fn report(ev: &vigie_event::Event) -> ExitCode {
    println!("{}", vigie_respond::state::summary(ev));
    match &ev.payload {
        vigie_event::Payload::Response(r) if r.outcome == vigie_event::Outcome::Success => {
            ExitCode::SUCCESS
        }
        _ => ExitCode::from(2),
    }
}
