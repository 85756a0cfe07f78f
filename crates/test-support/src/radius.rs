//! Real RADIUS clients for the tests: `radclient` (freeradius-utils) and
//! TOTP codes from `oathtool`. Blocking: call [`radclient`] from async code
//! through `tokio::task::spawn_blocking`.

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Send one request (`attrs`: radclient's input, e.g. `User-Name = "a",
/// User-Password = "pw123456", Message-Authenticator = 0x00`) of `kind`
/// ("auth", "acct", "status") with one try and a 1 s timeout; returns
/// radclient's stdout and stderr. A radclient that outlives 10 s is killed.
pub fn radclient(addr: SocketAddr, kind: &str, secret: &str, attrs: &str) -> String {
    radclient_with_timeout(addr, kind, secret, attrs, 1)
}

/// [`radclient`] with a timeout of `seconds` (e.g. for a server that delays
/// its rejects).
pub fn radclient_with_timeout(
    addr: SocketAddr,
    kind: &str,
    secret: &str,
    attrs: &str,
    seconds: u32,
) -> String {
    let timeout = seconds.to_string();
    let mut child = Command::new("radclient")
        .args([
            "-x",
            "-t",
            &timeout,
            "-r",
            "1",
            &addr.to_string(),
            kind,
            secret,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("radclient (freeradius-utils) must be installed");
    {
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin.write_all(attrs.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10 + u64::from(seconds));
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("radclient hung");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // Its output is a few lines: it fits in the pipes while it runs.
    let out = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A TOTP code from oathtool, `offset` steps (of 30 s) from now.
///
/// Never in the last 3 s of a step: the server accepts the steps next to
/// its own, so a code for the previous step (`offset` -1) asked for just
/// before a step ends is two steps old by the time a loaded machine checks
/// it, and a login the test expects to pass is refused. It waits for the
/// next step instead.
pub fn oathtool(secret_b32: &str, offset: i64) -> String {
    let since_epoch = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
    };
    let into_step = since_epoch().as_millis() % 30_000;
    if into_step >= 27_000 {
        std::thread::sleep(Duration::from_millis((30_000 - into_step) as u64 + 50));
    }
    let now = since_epoch().as_secs() as i64 + offset * 30;
    let out = Command::new("oathtool")
        .args(["--totp", "-b", "-N", &format!("@{now}"), secret_b32])
        .output()
        .expect("oathtool must be installed");
    assert!(out.status.success(), "oathtool failed: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

pub fn accepted(out: &str) -> bool {
    out.contains("Received Access-Accept")
}
pub fn rejected(out: &str) -> bool {
    out.contains("Received Access-Reject")
}
pub fn silent(out: &str) -> bool {
    !out.contains("Received ") && out.contains("No reply")
}
