//! vigie-agent: the wiring of the endpoint agent, and nothing else.
//!
//! sensor ([`vigie_sensor::Sensor`]) → detection ([`vigie_detect::Engine`])
//! → response policy and actions ([`vigie_respond::ResponseService`]) →
//! outputs (ECS JSON lines) and, with a manager, the uplink
//! ([`vigie_uplink`]: on-disk spool, mutual-TLS stream, commands down).
//! No detection, sensing or response logic lives here.
//!
//! Main types: [`AgentConfig`] (one TOML file, documented defaults in
//! [`DEFAULT_CONFIG`]), [`AgentOptions`] (what `vigie agent` was given),
//! [`run`], [`status`] (what `vigie agent status` shows).

mod commands;
mod report;
mod run;
mod status;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use vigie_respond::policy::Policy;
use vigie_sensor::SensorConfig;

pub use commands::{POLICY_FILE, RULES_DIR, RULES_FILE};
pub use report::Reporter;
pub use run::{AgentOptions, Standalone, run, run_standalone};
pub use status::{AgentStatus, STATUS_FILE, Status, status, status_json, status_text};

/// The agent's configuration file, with every default documented. Printed
/// by `vigie agent --print-default-config`; a test checks it parses to
/// [`AgentConfig::default`].
pub const DEFAULT_CONFIG: &str = r#"# Vigie agent configuration. Every value shown is the default.

[detect]
# Folders of Sigma rules (searched recursively for .yml/.yaml). Command-line
# --rules options are added to these.
rules = []
# Load Vigie's built-in rule pack (embedded in the binary) as well.
builtin = true

[ransomware]
# The ransomware behaviour detector (docs/vigie-behaviour.md) runs on every
# event; its thresholds (encrypted_files = 10, corroborated_files = 5, ...)
# can be set here. It needs [sensor] content_sampling = true.

[canaries]
# Directories that get two canary files (a hidden one that sorts first, one
# that sorts last); any write, rename or deletion of them is a critical
# alert. Missing directories are skipped. Example: ["/srv/partage", "/home"]
dirs = []

[output]
# Where to write events, alerts and response actions as ECS JSON lines: a
# file path (appended), "-" for standard output, or "" for nowhere. Actions
# (kill, isolate, ... with their verified outcome) also go to the events
# output, and always to STATE/actions.jsonl.
events = ""
alerts = "-"
actions = "-"

[response]
# What the agent does by itself when an alert fires.
# "respond": act as the rules below say; "alert-only": never act.
mode = "respond"
# Host names never isolated automatically (e.g. the domain controller)...
protected_hosts = []
# ...unless also named here.
isolate_protected = []
# Process names or executable paths never killed.
protected_processes = []

# The rules: alerts of level >= min_level (and with one of the tags, if
# given) lead to these actions (kill, quarantine, isolate). Defaults:
# critical -> kill + isolate, high -> kill, the rest alert only. Why: with
# nobody watching at 3 a.m. the rare, specific critical rules (ransomware,
# credential dumping) must act alone; high rules fire more often with false
# positives, and killing one process is a narrow act, while cutting a town
# hall's workstation off the network on a false positive costs a day's work.
# Writing [[response.rules]] replaces these defaults.
[[response.rules]]
min_level = "critical"
actions = ["kill", "isolate"]

[[response.rules]]
min_level = "high"
actions = ["kill"]

[response.isolation]
# What stays reachable while the host is isolated (besides loopback, DHCP
# and the agent's own marked connection to its manager, which keeps working
# whatever the manager's address).
# Destinations: IP, CIDR, IP:port, [IPv6]:port or host:port.
allow = []
# The only DNS servers allowed; empty: the nameservers of /etc/resolv.conf.
resolvers = []
# Destinations that must be unreachable once isolated (self-check); empty:
# 203.0.113.1:443 and [2001:db8::1]:443.
probes = []
# The manager (host:port) checked reachable after isolating; empty: the
# manager the agent is enrolled with.
# manager = "vigie.example.org:8444"

[sensor]
# Bytes of argv copied per exec (64..4095); longer argv is cut and flagged
# process.vigie.args_truncated.
arg_max = 4095
# Kernel ring buffer size in MiB (rounded up to a power of two). Events that
# do not fit are counted and reported as health events, never silently lost.
# It counts twice in the agent's memory (RSS); raise it on very busy servers.
ring_buffer_mb = 8
# Event families.
file_events = true
network_events = true
dns_events = true
# Path prefixes whose file events are dropped in the kernel (absolute paths,
# at most 128 bytes each).
noise_paths = ["/proc/", "/sys/"]
# Executables (exact path) whose file/network events are dropped in the
# kernel; their exec and exit are still reported.
noise_executables = []
# Drop the agent's own file and network events (its outputs would feed back).
ignore_self = true
# Executables larger than this (MiB) are not hashed.
max_hash_mb = 256
# Run the fallback sensor (proc connector + fanotify) even if eBPF loads.
force_fallback = false
# When eBPF cannot load, run the fallback sensor (degraded mode) instead of
# failing.
fallback_on_failure = true
# Sample the first 64 KiB of files written or renamed (entropy, format) for
# the ransomware detector.
content_sampling = true
# Which processes this agent watches (and so may kill): "host", every
# process of the machine; or "netns", only those in the agent's own network
# namespace (the one it was started in, e.g. with `ip netns exec NS vigie
# agent ...`): one agent per container or simulated host sharing a kernel.
# Ancestry still crosses namespaces. The fallback sensor applies it best
# effort (namespace read from /proc).
scope = "host"
"#;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    pub detect: DetectConfig,
    pub output: OutputConfig,
    pub sensor: SensorConfig,
    pub response: Policy,
    pub ransomware: vigie_detect::behaviour::RansomwareConfig,
    pub canaries: vigie_detect::behaviour::CanaryOptions,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectConfig {
    pub rules: Vec<PathBuf>,
    /// Vigie's built-in rule pack, on by default: an agent with no rule
    /// folder configured still detects.
    pub builtin: bool,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            rules: Vec::new(),
            builtin: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutputConfig {
    pub events: String,
    pub alerts: String,
    pub actions: String,
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            events: String::new(),
            alerts: "-".into(),
            actions: "-".into(),
        }
    }
}

impl AgentConfig {
    /// Reads a TOML file; errors name the file and the bad key.
    pub fn load(path: &Path) -> Result<AgentConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read configuration {}", path.display()))?;
        let cfg: AgentConfig =
            toml::from_str(&text).with_context(|| format!("configuration {}", path.display()))?;
        cfg.response
            .isolation
            .validate()
            .with_context(|| format!("configuration {}: [response.isolation]", path.display()))?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_text_is_the_default() {
        let parsed: AgentConfig = toml::from_str(DEFAULT_CONFIG).unwrap();
        assert_eq!(parsed, AgentConfig::default());
    }

    #[test]
    fn scope_parses_and_rejects_unknown_values() {
        let c: AgentConfig = toml::from_str("[sensor]\nscope = \"netns\"\n").unwrap();
        assert_eq!(c.sensor.scope, vigie_sensor::Scope::Netns);
        let e = toml::from_str::<AgentConfig>("[sensor]\nscope = \"pid\"\n").unwrap_err();
        assert!(e.to_string().contains("netns"), "{e}");
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = toml::from_str::<AgentConfig>("[sensor]\narg_maxx = 1\n").unwrap_err();
        assert!(e.to_string().contains("arg_maxx"), "{e}");
    }
}
