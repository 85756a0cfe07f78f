//! The typed events. Section structs (`Process`, `File`, `Endpoint`, ...) are
//! shaped like their ECS counterparts so that [`crate::ecs`] can serialise them
//! with serde as they are; what ECS has no field for lives under a `vigie`
//! object inside the section.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One thing that happened on one host.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Unique id (UUIDv7: sortable by creation time). The manager de-duplicates
    /// on it, so a re-sent event is stored once.
    pub id: Uuid,
    pub time: DateTime<Utc>,
    pub host: Host,
    /// Where the event was read from, for events that come from files.
    pub source: Option<SourceRef>,
    pub payload: Payload,
}

impl Event {
    /// A new event with a fresh id.
    pub fn new(time: DateTime<Utc>, host: Host, payload: Payload) -> Self {
        Event {
            id: Uuid::now_v7(),
            time,
            host,
            source: None,
            payload,
        }
    }

    /// The process this event is about or was caused by, if any.
    pub fn process(&self) -> Option<&Process> {
        match &self.payload {
            Payload::Process(e) => Some(&e.process),
            Payload::File(e) => Some(&e.process),
            Payload::Network(e) => Some(&e.process),
            Payload::Dns(e) => Some(&e.process),
            Payload::Kernel(e) => Some(&e.process),
            Payload::Authentication(_)
            | Payload::Health(_)
            | Payload::Response(_)
            | Payload::Log(_) => None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl Host {
    pub fn named(name: impl Into<String>) -> Self {
        Host {
            name: name.into(),
            id: None,
        }
    }
}

/// The file and record an event was read from (`vigie hunt`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRef {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_id: Option<u64>,
}

/// What happened. One variant per event family.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Process(ProcessEvent),
    File(FileEvent),
    Network(NetworkEvent),
    Dns(DnsEvent),
    Authentication(AuthEvent),
    Kernel(KernelEvent),
    /// The agent's own health: start, degraded mode, lost events.
    Health(HealthEvent),
    /// An action Vigie took (isolate, kill, quarantine...) and its outcome.
    Response(ResponseEvent),
    /// A record from a log file (EVTX, JSON) that has no typed form.
    Log(LogRecord),
}

// ---------------------------------------------------------------------------
// Processes

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessAction {
    /// A successful execve: the process now runs `process.executable`.
    Exec,
    /// fork/clone of a new process (not a thread).
    Fork,
    Exit,
    /// setuid/setgid/capset changed the process's credentials.
    CredentialChange,
    /// The process attached to another with ptrace.
    Ptrace,
    /// An execve that failed (`error` holds the errno).
    ExecFailed,
}

impl ProcessAction {
    pub const ALL: [ProcessAction; 6] = [
        ProcessAction::Exec,
        ProcessAction::Fork,
        ProcessAction::Exit,
        ProcessAction::CredentialChange,
        ProcessAction::Ptrace,
        ProcessAction::ExecFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProcessAction::Exec => "exec",
            ProcessAction::Fork => "fork",
            ProcessAction::Exit => "exit",
            ProcessAction::CredentialChange => "credential_change",
            ProcessAction::Ptrace => "ptrace",
            ProcessAction::ExecFailed => "exec_failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProcessEvent {
    pub action: ProcessAction,
    pub process: Process,
    /// For `Ptrace`: the traced process.
    pub target: Option<ProcessSummary>,
    /// For `ExecFailed`: the errno; for `Ptrace`: the request.
    pub error: Option<i32>,
}

/// A process as ECS describes it (`process.*`), with Vigie's extras.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Process {
    /// Unique for the host's lifetime: pid plus start time, so pid reuse never
    /// confuses ancestry.
    pub entity_id: String,
    pub pid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread: Option<Thread>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<DateTime<Utc>>,
    /// The short name (Linux `comm`).
    pub name: String,
    pub executable: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args_count: Option<u32>,
    pub command_line: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_directory: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Hash::is_empty")]
    pub hash: Hash,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub real_user: Option<User>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<Group>,
    /// Shared (`Arc`): every event of a process carries the same parent,
    /// which the sensor builds once instead of copying it into each event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<Arc<ProcessSummary>>,
    #[serde(skip_serializing_if = "ProcessExtra::is_empty")]
    pub vigie: ProcessExtra,
}

/// What ECS has no field for.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcessExtra {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ppid: Option<u32>,
    /// argv was longer than the sensor's limit and was cut.
    #[serde(skip_serializing_if = "is_false")]
    pub args_truncated: bool,
    /// Linux audit login uid (`loginuid`): who logged in, across su/sudo.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login_uid: Option<u32>,
    /// Script interpreter when the executable starts with `#!`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interpreter: Option<String>,
    /// The executable is an anonymous memory file (fileless execution).
    #[serde(skip_serializing_if = "is_false")]
    pub exe_memfd: bool,
    /// The executable was deleted from disk after it started.
    #[serde(skip_serializing_if = "is_false")]
    pub exe_deleted: bool,
    /// The executable lives on a world-writable temporary mount (/tmp, /dev/shm).
    #[serde(skip_serializing_if = "is_false")]
    pub exe_on_tmp: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    /// Inode of the process's network namespace (as in `/proc/PID/ns/net`,
    /// `net:[N]`): tells apart simulated or containerised hosts that share
    /// one kernel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns: Option<u32>,
    /// Exit signal, when the process was killed by one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_signal: Option<i32>,
    /// Ancestors beyond the parent, nearest first (grand-parent, ...).
    /// Shared like `Process::parent`.
    #[serde(skip_serializing_if = "no_ancestors")]
    pub ancestors: Arc<[ProcessSummary]>,
}

impl ProcessExtra {
    fn is_empty(&self) -> bool {
        *self == ProcessExtra::default()
    }
}

/// Derived equality, except that shared ancestors compare by pointer first.
/// std's `Arc` skips the contents when both point to the same allocation
/// only for sized types, never for a slice: the agent's writer compares
/// each event's process with the last one, and every event of a process
/// carries the same ancestors.
impl PartialEq for ProcessExtra {
    fn eq(&self, other: &Self) -> bool {
        // Exhaustive: a field added to the struct must be compared here.
        let ProcessExtra {
            ppid,
            args_truncated,
            login_uid,
            interpreter,
            exe_memfd,
            exe_deleted,
            exe_on_tmp,
            cgroup,
            container_id,
            netns,
            exit_signal,
            ancestors,
        } = self;
        *ppid == other.ppid
            && *args_truncated == other.args_truncated
            && *login_uid == other.login_uid
            && *interpreter == other.interpreter
            && *exe_memfd == other.exe_memfd
            && *exe_deleted == other.exe_deleted
            && *exe_on_tmp == other.exe_on_tmp
            && *cgroup == other.cgroup
            && *container_id == other.container_id
            && *netns == other.netns
            && *exit_signal == other.exit_signal
            && (Arc::ptr_eq(ancestors, &other.ancestors) || **ancestors == *other.ancestors)
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn no_ancestors(a: &Arc<[ProcessSummary]>) -> bool {
    a.is_empty()
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thread {
    pub id: u32,
}

/// A short description of a related process (parent, ancestor, ptrace target).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcessSummary {
    pub entity_id: String,
    pub pid: u32,
    pub name: String,
    pub executable: String,
    pub command_line: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
}

impl From<&Process> for ProcessSummary {
    fn from(p: &Process) -> Self {
        ProcessSummary {
            entity_id: p.entity_id.clone(),
            pid: p.pid,
            name: p.name.clone(),
            executable: p.executable.clone(),
            command_line: p.command_line.clone(),
            args: p.args.clone(),
            start: p.start,
            user: p.user.clone(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hash {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl Hash {
    pub fn is_empty(&self) -> bool {
        self.sha256.is_none()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct User {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
}

impl User {
    pub fn uid(uid: u32) -> Self {
        User {
            id: Some(uid.to_string()),
            ..User::default()
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Group {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

// ---------------------------------------------------------------------------
// Files

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileAction {
    Create,
    /// A file opened for writing was closed: one event per write session.
    Write,
    Rename,
    Delete,
    Chmod,
    Chown,
    Truncate,
}

impl FileAction {
    pub const ALL: [FileAction; 7] = [
        FileAction::Create,
        FileAction::Write,
        FileAction::Rename,
        FileAction::Delete,
        FileAction::Chmod,
        FileAction::Chown,
        FileAction::Truncate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FileAction::Create => "create",
            FileAction::Write => "write",
            FileAction::Rename => "rename",
            FileAction::Delete => "delete",
            FileAction::Chmod => "chmod",
            FileAction::Chown => "chown",
            FileAction::Truncate => "truncate",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FileEvent {
    pub action: FileAction,
    pub file: File,
    pub process: Process,
}

/// `file.*` in ECS. For a rename, `path` is the new name and
/// `vigie.original_path` the old one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct File {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extension: Option<String>,
    /// Octal permission string, as ECS has it ("4755").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inode: Option<String>,
    #[serde(skip_serializing_if = "Hash::is_empty")]
    pub hash: Hash,
    #[serde(skip_serializing_if = "FileExtra::is_empty")]
    pub vigie: FileExtra,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FileExtra {
    /// Rename: the path before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_path: Option<String>,
    /// chmod set the setuid or setgid bit.
    #[serde(skip_serializing_if = "is_false")]
    pub setuid: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub setgid: bool,
    /// Bytes written during the write session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_written: Option<u64>,
    /// Shannon entropy (bits per byte) of a sample of what was written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entropy: Option<f32>,
    /// Entropy of the same file (same inode) the last time the sensor
    /// sampled it, when it did: a jump from text to random-looking bytes is
    /// what encryption in place looks like.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_entropy: Option<f32>,
    /// The format the first bytes show ("pdf", "png", "zip", "gz", "elf"...),
    /// by magic number; absent when no known signature is there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// The format the same file showed when last sampled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_header: Option<String>,
}

impl FileExtra {
    fn is_empty(&self) -> bool {
        *self == FileExtra::default()
    }
}

impl File {
    /// A file known by its path; name and extension are derived from it.
    pub fn at(path: impl Into<String>) -> Self {
        let path = path.into();
        let name = path.rsplit('/').next().filter(|n| !n.is_empty());
        let extension = name
            .and_then(|n| n.rsplit_once('.'))
            .filter(|(stem, _)| !stem.is_empty())
            .map(|(_, ext)| ext.to_string());
        File {
            name: name.map(str::to_string),
            extension,
            path,
            ..File::default()
        }
    }
}

// ---------------------------------------------------------------------------
// Network

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkAction {
    Connect,
    Accept,
    Listen,
}

impl NetworkAction {
    pub const ALL: [NetworkAction; 3] = [
        NetworkAction::Connect,
        NetworkAction::Accept,
        NetworkAction::Listen,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NetworkAction::Connect => "connect",
            NetworkAction::Accept => "accept",
            NetworkAction::Listen => "listen",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NetworkEvent {
    pub action: NetworkAction,
    pub transport: Transport,
    /// Local side for connect, remote side for accept.
    pub source: Endpoint,
    pub destination: Endpoint,
    pub process: Process,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Endpoint {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<std::net::IpAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
}

impl Endpoint {
    pub fn is_empty(&self) -> bool {
        *self == Endpoint::default()
    }
}

// ---------------------------------------------------------------------------
// DNS

#[derive(Debug, Clone, PartialEq)]
pub struct DnsEvent {
    pub dns: Dns,
    /// The resolver the query went to.
    pub destination: Endpoint,
    pub process: Process,
}

/// `dns.*` in ECS.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Dns {
    /// "query" or "answer".
    #[serde(rename = "type")]
    pub kind: String,
    pub question: DnsQuestion,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<DnsAnswer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_code: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resolved_ip: Vec<std::net::IpAddr>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DnsQuestion {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DnsAnswer {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub data: String,
}

// ---------------------------------------------------------------------------
// Authentication (VPN logins through the RADIUS server, and others)

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Failure,
    Unknown,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuthEvent {
    pub outcome: Outcome,
    pub user: User,
    /// Where the person connects from (the VPN client's public address).
    pub source: Endpoint,
    pub auth: AuthDetails,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthDetails {
    /// "vpn", "console", "ssh"...
    pub service: String,
    /// The RADIUS client (VPN gateway) name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nas: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nas_ip: Option<std::net::IpAddr>,
    /// Why it failed, in words a person reads ("wrong password", "code reused"...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// "password", "totp", "challenge"...: the step that decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calling_station_id: Option<String>,
    /// Hour of the attempt (0-23) in the server's local time zone, so rules
    /// can flag logins outside working hours.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_hour: Option<u8>,
}

// ---------------------------------------------------------------------------
// Kernel integrity

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KernelAction {
    ModuleLoad,
    BpfLoad,
    Mount,
}

impl KernelAction {
    pub fn as_str(self) -> &'static str {
        match self {
            KernelAction::ModuleLoad => "module_load",
            KernelAction::BpfLoad => "bpf_load",
            KernelAction::Mount => "mount",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct KernelEvent {
    pub action: KernelAction,
    pub detail: KernelDetail,
    pub process: Process,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KernelDetail {
    /// Module name, BPF program name, or mount target.
    pub name: String,
    /// BPF program type, or filesystem type for a mount.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Mount source device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

// ---------------------------------------------------------------------------
// Agent health

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthAction {
    SensorStart,
    /// The full sensor could not load; a reduced one runs.
    Degraded,
    /// Events were lost (ring buffer full, spool bound reached...).
    EventsLost,
    /// A periodic report of counters.
    Heartbeat,
    /// Someone tampered with the agent or its protections.
    Tamper,
}

impl HealthAction {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthAction::SensorStart => "sensor_start",
            HealthAction::Degraded => "degraded",
            HealthAction::EventsLost => "events_lost",
            HealthAction::Heartbeat => "heartbeat",
            HealthAction::Tamper => "tamper",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthEvent {
    pub action: HealthAction,
    pub health: Health,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Health {
    pub message: String,
    /// The sensor in use: "ebpf", "fallback"...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sensor: Option<String>,
    /// Named counters (e.g. lost events per ring buffer).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub counters: std::collections::BTreeMap<String, u64>,
}

// ---------------------------------------------------------------------------
// Response actions

#[derive(Debug, Clone, PartialEq)]
pub struct ResponseEvent {
    pub outcome: Outcome,
    pub response: ResponseDetail,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResponseDetail {
    /// "isolate", "release", "kill", "quarantine", "restore", "block"...
    pub action: String,
    /// What was acted on: a pid, a path, the host.
    pub target: String,
    /// Who or what decided: "policy", "user:alice", "manager".
    pub actor: String,
    /// The alert that triggered it, for automatic actions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert_id: Option<String>,
    /// How the outcome was verified, or why it failed.
    pub detail: String,
    /// How to undo it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undo: Option<String>,
}

// ---------------------------------------------------------------------------
// Generic log records

/// A record read from a log file that has no typed form: an EVTX record
/// flattened to Sigma's field names (`EventID`, `Channel`, `Image`...), or a
/// JSON object as it was.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogRecord {
    pub logsource: crate::LogSource,
    pub fields: serde_json::Map<String, serde_json::Value>,
}
