//! The attacker's foothold: a real `/bin/sh` on the file server (its
//! network namespace) in a private mount namespace, driven through its
//! standard input like a remote shell. Each command is followed by an
//! `echo` of a marker and `$?`, so the caller knows when it ended and how.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{ChildStdin, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::lab::{Netns, Proc, log_file};

pub struct Shell {
    stdin: ChildStdin,
    lines: Receiver<String>,
    n: u64,
    /// Mount points covered by a tmpfs in this shell's mount namespace.
    pub private: Vec<String>,
    // Last: stopped after its stdin is closed.
    proc: Proc,
}

impl Shell {
    pub fn start(ns: &Netns, logs: &Path) -> Result<Shell> {
        let mut cmd = ns.command_host("unshare", Some(super::FS_HOST));
        cmd.args(["--mount", "--propagation", "private", "/bin/sh"])
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file(logs, "foothold.err")?);
        let mut proc = Proc::spawn("foothold shell", cmd)?;
        let stdin = proc.child.stdin.take().context("shell stdin")?;
        let stdout = proc.child.stdout.take().context("shell stdout")?;
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Shell {
            stdin,
            lines,
            n: 0,
            private: Vec::new(),
            proc,
        })
    }

    pub fn pid(&self) -> u32 {
        self.proc.child.id()
    }

    /// Covers the persistence directories with tmpfs in this shell's mount
    /// namespace, and checks it took, before anything is written there:
    /// the real host's cron and systemd must never see the attacker's files.
    pub fn private_persistence_dirs(&mut self) -> Result<()> {
        let ssh = if Path::new("/root/.ssh").is_dir() {
            "/root/.ssh"
        } else {
            "/root"
        };
        for dir in ["/etc/cron.d", "/etc/systemd/system", ssh] {
            if !Path::new(dir).is_dir() {
                continue;
            }
            let (_, rc) = self.run_quiet(
                &format!("mount -t tmpfs -o mode=0755 vigie-seed {dir}"),
                Duration::from_secs(10),
            )?;
            if rc != 0 {
                bail!("cannot mount a tmpfs over {dir} in the foothold's mount namespace");
            }
            let mountinfo = std::fs::read_to_string(format!("/proc/{}/mountinfo", self.pid()))?;
            if !mountinfo
                .lines()
                .any(|l| l.split(' ').nth(4) == Some(dir) && l.contains(" - tmpfs "))
            {
                bail!("{dir} is not covered by a tmpfs in the foothold's mount namespace");
            }
            self.private.push(dir.to_string());
        }
        println!(
            "  private tmpfs over {} (seen by this shell only)",
            self.private.join(", ")
        );
        Ok(())
    }

    /// Runs one command line, printed as the attacker types it; returns its
    /// output and exit status.
    pub fn run(&mut self, cmd: &str, timeout: Duration) -> Result<(String, i32)> {
        println!("  attacker@srv-fichiers# {cmd}");
        self.run_quiet(cmd, timeout)
    }

    fn run_quiet(&mut self, cmd: &str, timeout: Duration) -> Result<(String, i32)> {
        self.n += 1;
        let marker = format!("__vigie_seed_done_{} ", self.n);
        writeln!(self.stdin, "{cmd}\necho \"{marker}$?\"").context("the foothold shell is gone")?;
        self.stdin.flush()?;
        let deadline = Instant::now() + timeout;
        let mut out = String::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self
                .lines
                .recv_timeout(left.min(Duration::from_millis(200)))
            {
                Ok(line) => {
                    if let Some(rc) = line.strip_prefix(&marker) {
                        return Ok((out, rc.trim().parse().unwrap_or(-1)));
                    }
                    out.push_str(&line);
                    out.push('\n');
                }
                Err(RecvTimeoutError::Timeout) => {
                    super::pause(Duration::ZERO)?;
                    if Instant::now() >= deadline {
                        bail!("`{cmd}` did not finish in {} s", timeout.as_secs());
                    }
                }
                Err(RecvTimeoutError::Disconnected) => bail!("the foothold shell exited"),
            }
        }
    }
}
