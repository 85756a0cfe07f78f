//! test-support: fixtures shared by the integration tests of several crates.
//! [`PgCluster`] is a private PostgreSQL server for tests that must run
//! against the real database (`Drop` stops and deletes it); [`free_port`]
//! a loopback port nobody listens on; [`radius`] real RADIUS clients
//! (`radclient`, `oathtool`).

pub mod radius;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A private PostgreSQL cluster: initdb in a temp dir, `postgres` on a free
/// loopback port, run as the `postgres` user (tests run as root). Stopped
/// and deleted on drop.
pub struct PgCluster {
    /// The cluster's files, deleted (after `Drop::drop`) with this field.
    dir: tempfile::TempDir,
    child: Child,
    port: u16,
}

fn pg_bin(name: &str) -> PathBuf {
    let mut versions: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .expect(
            "PostgreSQL is installed (apt-get install postgresql; see scripts/apt-packages.txt)",
        )
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    versions.sort();
    versions
        .last()
        .expect("a PostgreSQL version")
        .join("bin")
        .join(name)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl PgCluster {
    pub fn start() -> PgCluster {
        let dir = tempfile::Builder::new()
            .prefix("vigie-pg-")
            .tempdir()
            .unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success());
        let out = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(pg_bin("initdb"))
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "-D"])
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let child = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(pg_bin("postgres"))
            .arg("-D")
            .arg(&data)
            .args([
                "-p",
                &port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
            ])
            .arg(format!("unix_socket_directories={}", dir.path().display()))
            .args(["-c", "fsync=off", "-c", "max_connections=200"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pg = PgCluster { dir, child, port };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                std::thread::sleep(Duration::from_millis(300));
                return pg;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("postgres did not start on port {port}");
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The postmaster's pid, from the first line of `postmaster.pid`.
    fn postmaster_pid(&self) -> Option<u32> {
        let pidfile = std::fs::read_to_string(self.dir.path().join("data/postmaster.pid")).ok()?;
        pidfile.lines().next()?.trim().parse().ok()
    }

    fn signal(pid: u32, sig: libc::c_int) {
        // SAFETY: kill(2) takes plain integers; a pid that is gone fails
        // with ESRCH, which changes nothing here.
        unsafe { libc::kill(pid as libc::pid_t, sig) };
    }

    /// Waits at most `tenths` × 100 ms for `runuser` (it exits with postgres).
    fn exited_within(&mut self, tenths: u32) -> bool {
        for _ in 0..tenths {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // A fast shutdown, asked of the postmaster itself: it disconnects
        // the clients still there and removes its shared memory. A SIGTERM
        // to runuser (passed on: a smart shutdown, which waits for every
        // client) did not end cleanly: each run of the agent's manager_e2e
        // left two /dev/shm/PostgreSQL.* segments behind.
        let postmaster = self.postmaster_pid();
        match postmaster {
            Some(pid) => Self::signal(pid, libc::SIGINT),
            None => Self::signal(self.child.id(), libc::SIGTERM),
        }
        if self.exited_within(100) {
            return;
        }
        // Immediate shutdown, then no more asking.
        if let Some(pid) = postmaster {
            Self::signal(pid, libc::SIGQUIT);
            if self.exited_within(30) {
                return;
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
