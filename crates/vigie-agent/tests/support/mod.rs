//! Shared by the agent's integration tests: the agent as a real process
//! (this test binary run again with the ignored `helper_agent_process`
//! test, which calls `vigie_agent::run`; CARGO_BIN_EXE of the `vigie`
//! binary is not available across crates), started inside a network
//! namespace with `ip netns exec`, killed on drop.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The body of each test binary's `helper_agent_process`: options come from
/// the environment the parent set.
pub fn helper_main() {
    let Ok(state) = std::env::var("VIGIE_STATE_DIR") else {
        return; // run by a plain `cargo test -- --ignored`: nothing to do
    };
    // Die with the test that started us, even if it is killed.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .try_init();
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let opts = vigie_agent::AgentOptions {
        config: var("VIGIE_TEST_CONFIG").map(PathBuf::from),
        state_dir: PathBuf::from(state),
        standalone: var("VIGIE_TEST_MANAGER").is_none(),
        manager: var("VIGIE_TEST_MANAGER"),
        enroll_token: var("VIGIE_TEST_TOKEN"),
        ..Default::default()
    };
    let code = vigie_agent::run(opts).expect("agent runs");
    assert_eq!(code, std::process::ExitCode::SUCCESS);
}

/// A running agent process; SIGTERM then SIGKILL on drop.
pub struct Agent {
    pub child: std::process::Child,
    pub state: PathBuf,
}

impl Agent {
    /// Start the agent in namespace `ns` with `config`, optionally enrolling
    /// with `manager` and `token`; waits until its probes are attached.
    pub fn start(ns: &str, state: &Path, config: &Path, manager: Option<(&str, &str)>) -> Agent {
        let exe = std::env::current_exe().unwrap();
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns])
            .arg(exe)
            .args([
                "--exact",
                "helper_agent_process",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("VIGIE_STATE_DIR", state)
            .env("VIGIE_TEST_CONFIG", config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some((url, token)) = manager {
            cmd.env("VIGIE_TEST_MANAGER", url)
                .env("VIGIE_TEST_TOKEN", token);
        }
        let child = cmd.spawn().expect("spawn the agent");
        let mut agent = Agent {
            child,
            state: state.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while !state.join("agent.ready").exists() {
            if let Ok(Some(st)) = agent.child.try_wait() {
                panic!("the agent exited before it was ready: {st}");
            }
            assert!(Instant::now() < deadline, "agent not ready in 120 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        agent
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        unsafe { libc::kill(pid, libc::SIGTERM) };
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A critical (or other `level`) Sigma rule matching any process whose
/// command line contains `marker`, in `dir`.
pub fn marker_rule(dir: &Path, marker: &str, level: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("trigger.yml"),
        format!(
            "title: Vigie test trigger {marker}\n\
             id: 3b0f4a52-9a1e-4c7e-8f41-{:012x}\n\
             status: test\n\
             description: A command line carrying the test's marker.\n\
             logsource:\n  product: linux\n  category: process_creation\n\
             detection:\n  selection:\n    CommandLine|contains: '{marker}'\n  condition: selection\n\
             level: {level}\n\
             tags:\n  - attack.execution\n  - attack.t1059.004\n",
            std::process::id()
        ),
    )
    .unwrap();
}

/// Wait until `pred` holds for the parsed JSON lines of `path`.
pub fn wait_lines(
    path: &Path,
    timeout: Duration,
    pred: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if pred(&lines) || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The response events (`event.kind` `action`... as vigie-event writes
/// them) with this action name.
pub fn actions<'a>(lines: &'a [serde_json::Value], action: &str) -> Vec<&'a serde_json::Value> {
    lines
        .iter()
        .filter(|l| response_action(l) == Some(action))
        .collect()
}

pub fn response_action(v: &serde_json::Value) -> Option<&str> {
    v["vigie"]["response"]["action"].as_str()
}
