//! Field access by Sigma name or ECS path, without serialising the event.

use std::borrow::Cow;

use crate::model::*;
use crate::{LogSource, ecs};

/// A field's value, borrowed from the event where possible.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    Float(f64),
    Bool(bool),
    Null,
    List(Vec<FieldValue<'a>>),
    /// A value of a log record, as it was parsed.
    Json(&'a serde_json::Value),
}

impl<'a> FieldValue<'a> {
    fn str(s: &'a str) -> Self {
        FieldValue::Str(Cow::Borrowed(s))
    }

    fn opt_str(s: &'a Option<String>) -> Option<Self> {
        s.as_deref().map(FieldValue::str)
    }

    fn non_empty(s: &'a str) -> Option<Self> {
        (!s.is_empty()).then(|| FieldValue::str(s))
    }

    /// The value as text, the way rules compare it (numbers in decimal).
    pub fn to_text(&self) -> Option<Cow<'_, str>> {
        match self {
            FieldValue::Str(s) => Some(Cow::Borrowed(s)),
            FieldValue::Int(n) => Some(Cow::Owned(n.to_string())),
            FieldValue::Float(f) => Some(Cow::Owned(f.to_string())),
            FieldValue::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
            FieldValue::Json(serde_json::Value::String(s)) => Some(Cow::Borrowed(s)),
            FieldValue::Json(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => {
                Some(Cow::Owned(v.to_string()))
            }
            _ => None,
        }
    }
}

/// Read access to an event's fields, the way detection rules name them.
pub trait Fields {
    /// A field by Sigma name (`Image`) or ECS path (`process.executable`).
    /// `None` when the event has no such field.
    fn field(&self, name: &str) -> Option<FieldValue<'_>>;

    /// Which Sigma rules may look at this event.
    fn logsource(&self) -> LogSource;

    /// The string values a Sigma keyword search looks at: every string of
    /// a log record; of a typed event, what the event itself reports (see
    /// the implementation for [`Event`]).
    fn visit_strings(&self, visit: &mut dyn FnMut(&str));
}

/// One row of the Sigma ⇄ ECS mapping: a Sigma taxonomy field and the ECS
/// path Vigie's typed events store it under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigmaMapping {
    pub sigma: &'static str,
    pub ecs: &'static str,
    /// Where the rows differ from a plain copy.
    pub note: &'static str,
}

const fn m(sigma: &'static str, ecs: &'static str, note: &'static str) -> SigmaMapping {
    SigmaMapping { sigma, ecs, note }
}

/// The one table of Sigma field names and their ECS paths. `docs/fields.md`
/// is generated from it (a test keeps the two equal).
pub const SIGMA_ECS_MAPPING: &[SigmaMapping] = &[
    m("Image", "process.executable", ""),
    m("CommandLine", "process.command_line", ""),
    m("ProcessId", "process.pid", ""),
    m("ProcessGuid", "process.entity_id", "pid + start time"),
    m("CurrentDirectory", "process.working_directory", ""),
    m(
        "User",
        "user.name",
        "the acting process's user, or the user who logged in",
    ),
    m(
        "Hashes",
        "process.hash.sha256",
        "rendered as `SHA256=<hex>`, as Sysmon does",
    ),
    m("ParentImage", "process.parent.executable", ""),
    m("ParentCommandLine", "process.parent.command_line", ""),
    m("ParentProcessId", "process.parent.pid", ""),
    m("ParentProcessGuid", "process.parent.entity_id", ""),
    m("ParentUser", "process.parent.user.name", ""),
    m("TargetFilename", "file.path", "for a rename, the new path"),
    m(
        "SourceFilename",
        "file.vigie.original_path",
        "rename only: the old path",
    ),
    m("DestinationIp", "destination.ip", ""),
    m("DestinationPort", "destination.port", ""),
    m("DestinationHostname", "destination.domain", ""),
    m("SourceIp", "source.ip", ""),
    m("SourcePort", "source.port", ""),
    m("SourceHostname", "source.domain", ""),
    m(
        "Initiated",
        "network.direction",
        "`true` when the host initiated (egress), `false` otherwise",
    ),
    m("Protocol", "network.transport", "`tcp` or `udp`"),
    m("QueryName", "dns.question.name", ""),
    m("QueryType", "dns.question.type", ""),
    m(
        "QueryResults",
        "dns.resolved_ip",
        "addresses joined with `;`",
    ),
    m("QueryStatus", "dns.response_code", ""),
    m("Computer", "host.name", ""),
];

/// The ECS path of a Sigma field name, if Vigie maps it.
pub fn sigma_to_ecs(sigma: &str) -> Option<&'static str> {
    SIGMA_ECS_MAPPING
        .iter()
        .find(|row| row.sigma == sigma)
        .map(|row| row.ecs)
}

impl Fields for Event {
    fn field(&self, name: &str) -> Option<FieldValue<'_>> {
        if let Payload::Log(record) = &self.payload {
            return record_field(record, name);
        }
        // Sigma-only renderings first, then the table, then the name as ECS.
        match name {
            "Hashes" => {
                let sha = self.process()?.hash.sha256.as_deref()?;
                return Some(FieldValue::Str(Cow::Owned(format!("SHA256={sha}"))));
            }
            "Initiated" => {
                let Payload::Network(n) = &self.payload else {
                    return None;
                };
                return Some(FieldValue::str(if n.action == NetworkAction::Connect {
                    "true"
                } else {
                    "false"
                }));
            }
            "QueryResults" => {
                let Payload::Dns(d) = &self.payload else {
                    return None;
                };
                let ips: Vec<String> = d.dns.resolved_ip.iter().map(|ip| ip.to_string()).collect();
                return Some(FieldValue::Str(Cow::Owned(ips.join(";"))));
            }
            _ => {}
        }
        let path = sigma_to_ecs(name).unwrap_or(name);
        ecs_field(self, path)
    }

    fn logsource(&self) -> LogSource {
        match &self.payload {
            Payload::Process(p) => LogSource::linux(match p.action {
                ProcessAction::Exec => "process_creation",
                ProcessAction::Exit => "process_termination",
                ProcessAction::Fork => "process_fork",
                ProcessAction::CredentialChange => "process_credential_change",
                ProcessAction::Ptrace => "process_access",
                ProcessAction::ExecFailed => "process_exec_failed",
            }),
            Payload::File(f) => LogSource::linux(match f.action {
                FileAction::Create | FileAction::Write => "file_event",
                FileAction::Rename => "file_rename",
                FileAction::Delete => "file_delete",
                FileAction::Chmod | FileAction::Chown | FileAction::Truncate => "file_change",
            }),
            Payload::Network(_) => LogSource::linux("network_connection"),
            Payload::Dns(_) => LogSource::linux("dns_query"),
            Payload::Kernel(k) => LogSource::linux(match k.action {
                KernelAction::ModuleLoad => "driver_load",
                KernelAction::BpfLoad => "bpf_load",
                KernelAction::Mount => "mount",
            }),
            Payload::Authentication(_) => {
                LogSource::new(Some("vigie"), Some("authentication"), None)
            }
            Payload::Health(_) => LogSource::new(Some("vigie"), Some("agent_health"), None),
            Payload::Response(_) => LogSource::new(Some("vigie"), Some("response"), None),
            Payload::Log(r) => r.logsource.clone(),
        }
    }

    fn visit_strings(&self, visit: &mut dyn FnMut(&str)) {
        if let Payload::Log(record) = &self.payload {
            for value in record.fields.values() {
                visit_json_strings(value, visit, 0);
            }
            return;
        }
        // The acting process's strings only where the event brings them: an
        // exec (or a failed one). Every later event of the process carries the
        // same executable and command lines, so searching them again would
        // raise the exec's keyword alert once more per file written or
        // connection made, and keyword rules (SigmaHQ's `product: linux`
        // ones reach every Linux event) were about two fifths of the agent's
        // CPU in a file storm (docs/vigie-agent.md).
        if let Payload::Process(e) = &self.payload
            && matches!(e.action, ProcessAction::Exec | ProcessAction::ExecFailed)
        {
            let p = &e.process;
            visit(&p.executable);
            visit(&p.command_line);
            if let Some(parent) = &p.parent {
                visit(&parent.executable);
                visit(&parent.command_line);
            }
        }
        match &self.payload {
            Payload::File(f) => {
                visit(&f.file.path);
                if let Some(old) = &f.file.vigie.original_path {
                    visit(old);
                }
            }
            Payload::Dns(d) => visit(&d.dns.question.name),
            Payload::Authentication(a) => {
                if let Some(name) = &a.user.name {
                    visit(name);
                }
                if let Some(reason) = &a.auth.reason {
                    visit(reason);
                }
            }
            Payload::Kernel(k) => visit(&k.detail.name),
            Payload::Health(h) => visit(&h.health.message),
            Payload::Response(r) => {
                visit(&r.response.action);
                visit(&r.response.target);
            }
            Payload::Network(n) => {
                for domain in [&n.destination.domain, &n.source.domain]
                    .into_iter()
                    .flatten()
                {
                    visit(domain);
                }
            }
            Payload::Process(_) | Payload::Log(_) => {}
        }
    }
}

fn visit_json_strings(value: &serde_json::Value, visit: &mut dyn FnMut(&str), depth: usize) {
    // Hostile input can nest deeply; rules never look that far down.
    if depth > 32 {
        return;
    }
    match value {
        serde_json::Value::String(s) => visit(s),
        serde_json::Value::Array(items) => {
            for item in items {
                visit_json_strings(item, visit, depth + 1);
            }
        }
        serde_json::Value::Object(map) => {
            for item in map.values() {
                visit_json_strings(item, visit, depth + 1);
            }
        }
        _ => {}
    }
}

/// A log record's field: the key as it is, else a dotted path into nested
/// objects.
fn record_field<'a>(record: &'a LogRecord, name: &str) -> Option<FieldValue<'a>> {
    if let Some(v) = record.fields.get(name) {
        return Some(FieldValue::Json(v));
    }
    let mut parts = name.split('.');
    let mut current = record.fields.get(parts.next()?)?;
    for part in parts {
        current = match current {
            serde_json::Value::Object(map) => map.get(part)?,
            serde_json::Value::Array(items) => items.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(FieldValue::Json(current))
}

/// A typed event's field by ECS path.
fn ecs_field<'a>(event: &'a Event, path: &str) -> Option<FieldValue<'a>> {
    let (head, rest) = path.split_once('.').unwrap_or((path, ""));
    match (head, rest) {
        ("@timestamp", "") => Some(FieldValue::Str(Cow::Owned(event.time.to_rfc3339()))),
        ("event", "id") => Some(FieldValue::Str(Cow::Owned(event.id.to_string()))),
        ("event", "kind") => Some(FieldValue::str("event")),
        ("event", "action") => Some(FieldValue::str(ecs::action(&event.payload))),
        ("event", "dataset") => Some(FieldValue::str(ecs::dataset(&event.payload))),
        ("event", "category") => Some(str_list(ecs::categories(&event.payload))),
        ("event", "type") => Some(str_list(ecs::types(&event.payload))),
        ("event", "outcome") => ecs::outcome(&event.payload).map(|o| FieldValue::str(o.as_str())),
        ("host", "name") => Some(FieldValue::str(&event.host.name)),
        ("host", "id") => FieldValue::opt_str(&event.host.id),
        ("process", rest) => process_field(event.process()?, rest),
        ("user", rest) => match &event.payload {
            Payload::Authentication(a) => user_field(&a.user, rest),
            _ => user_field(event.process()?.user.as_ref()?, rest),
        },
        ("file", rest) => match &event.payload {
            Payload::File(f) => file_field(&f.file, rest),
            _ => None,
        },
        ("source", rest) => match &event.payload {
            Payload::Network(n) => endpoint_field(&n.source, rest),
            Payload::Authentication(a) => endpoint_field(&a.source, rest),
            _ => None,
        },
        ("destination", rest) => match &event.payload {
            Payload::Network(n) => endpoint_field(&n.destination, rest),
            Payload::Dns(d) => endpoint_field(&d.destination, rest),
            _ => None,
        },
        ("network", "transport") => match &event.payload {
            Payload::Network(n) => Some(FieldValue::str(n.transport.as_str())),
            Payload::Dns(_) => Some(FieldValue::str("udp")),
            _ => None,
        },
        ("network", "direction") => match &event.payload {
            Payload::Network(n) => Some(FieldValue::str(ecs::direction(n.action))),
            _ => None,
        },
        ("dns", rest) => match &event.payload {
            Payload::Dns(d) => dns_field(&d.dns, rest),
            _ => None,
        },
        ("vigie", rest) => vigie_field(event, rest),
        _ => None,
    }
}

fn str_list(items: &'static [&'static str]) -> FieldValue<'static> {
    FieldValue::List(items.iter().map(|s| FieldValue::str(s)).collect())
}

fn list<'a>(items: &'a [String]) -> FieldValue<'a> {
    FieldValue::List(items.iter().map(|s| FieldValue::str(s)).collect())
}

fn process_field<'a>(p: &'a Process, path: &str) -> Option<FieldValue<'a>> {
    let (head, rest) = path.split_once('.').unwrap_or((path, ""));
    match (head, rest) {
        ("parent", rest) => summary_field(p.parent.as_deref()?, rest),
        ("user", rest) => user_field(p.user.as_ref()?, rest),
        ("real_user", rest) => user_field(p.real_user.as_ref()?, rest),
        ("group", "id") => FieldValue::opt_str(&p.group.as_ref()?.id),
        ("group", "name") => FieldValue::opt_str(&p.group.as_ref()?.name),
        ("thread", "id") => Some(FieldValue::Int(p.thread.as_ref()?.id.into())),
        ("hash", "sha256") => FieldValue::opt_str(&p.hash.sha256),
        ("args_count", "") => Some(FieldValue::Int(
            p.args_count.unwrap_or(p.args.len() as u32).into(),
        )),
        ("working_directory", "") => FieldValue::opt_str(&p.working_directory),
        ("exit_code", "") => p.exit_code.map(|c| FieldValue::Int(c.into())),
        ("vigie", "ppid") => p.vigie.ppid.map(|v| FieldValue::Int(v.into())),
        ("vigie", "args_truncated") => Some(FieldValue::Bool(p.vigie.args_truncated)),
        ("vigie", "login_uid") => p.vigie.login_uid.map(|v| FieldValue::Int(v.into())),
        ("vigie", "interpreter") => FieldValue::opt_str(&p.vigie.interpreter),
        ("vigie", "exe_memfd") => Some(FieldValue::Bool(p.vigie.exe_memfd)),
        ("vigie", "exe_deleted") => Some(FieldValue::Bool(p.vigie.exe_deleted)),
        ("vigie", "exe_on_tmp") => Some(FieldValue::Bool(p.vigie.exe_on_tmp)),
        ("vigie", "cgroup") => FieldValue::opt_str(&p.vigie.cgroup),
        ("vigie", "container_id") => FieldValue::opt_str(&p.vigie.container_id),
        ("vigie", "netns") => p.vigie.netns.map(|v| FieldValue::Int(v.into())),
        ("vigie", "exit_signal") => p.vigie.exit_signal.map(|v| FieldValue::Int(v.into())),
        // The fields a summary shares with a full process.
        _ => summary_like(
            path,
            &p.entity_id,
            p.pid,
            &p.name,
            &p.executable,
            &p.command_line,
            &p.args,
            p.start,
        ),
    }
}

fn summary_field<'a>(s: &'a ProcessSummary, path: &str) -> Option<FieldValue<'a>> {
    match path.split_once('.') {
        Some(("user", rest)) => user_field(s.user.as_ref()?, rest),
        _ => summary_like(
            path,
            &s.entity_id,
            s.pid,
            &s.name,
            &s.executable,
            &s.command_line,
            &s.args,
            s.start,
        ),
    }
}

#[allow(clippy::too_many_arguments)]
fn summary_like<'a>(
    path: &str,
    entity_id: &'a str,
    pid: u32,
    name: &'a str,
    executable: &'a str,
    command_line: &'a str,
    args: &'a [String],
    start: Option<chrono::DateTime<chrono::Utc>>,
) -> Option<FieldValue<'a>> {
    match path {
        "entity_id" => FieldValue::non_empty(entity_id),
        "pid" => Some(FieldValue::Int(pid.into())),
        "name" => FieldValue::non_empty(name),
        "executable" => FieldValue::non_empty(executable),
        "command_line" => FieldValue::non_empty(command_line),
        "args" => Some(list(args)),
        "start" => start.map(|t| FieldValue::Str(Cow::Owned(t.to_rfc3339()))),
        _ => None,
    }
}

fn user_field<'a>(u: &'a User, path: &str) -> Option<FieldValue<'a>> {
    match path {
        "id" => FieldValue::opt_str(&u.id),
        "name" => FieldValue::opt_str(&u.name),
        "domain" => FieldValue::opt_str(&u.domain),
        _ => None,
    }
}

fn file_field<'a>(f: &'a File, path: &str) -> Option<FieldValue<'a>> {
    match path {
        "path" => Some(FieldValue::str(&f.path)),
        "name" => FieldValue::opt_str(&f.name),
        "extension" => FieldValue::opt_str(&f.extension),
        "mode" => FieldValue::opt_str(&f.mode),
        "uid" => FieldValue::opt_str(&f.uid),
        "gid" => FieldValue::opt_str(&f.gid),
        "inode" => FieldValue::opt_str(&f.inode),
        "size" => f.size.map(|s| FieldValue::Int(s as i64)),
        "hash.sha256" => FieldValue::opt_str(&f.hash.sha256),
        "vigie.original_path" => FieldValue::opt_str(&f.vigie.original_path),
        "vigie.setuid" => Some(FieldValue::Bool(f.vigie.setuid)),
        "vigie.setgid" => Some(FieldValue::Bool(f.vigie.setgid)),
        "vigie.bytes_written" => f.vigie.bytes_written.map(|b| FieldValue::Int(b as i64)),
        "vigie.entropy" => f.vigie.entropy.map(|e| FieldValue::Float(e.into())),
        "vigie.previous_entropy" => f
            .vigie
            .previous_entropy
            .map(|e| FieldValue::Float(e.into())),
        "vigie.header" => FieldValue::opt_str(&f.vigie.header),
        "vigie.previous_header" => FieldValue::opt_str(&f.vigie.previous_header),
        _ => None,
    }
}

fn endpoint_field<'a>(e: &'a Endpoint, path: &str) -> Option<FieldValue<'a>> {
    match path {
        "ip" => e.ip.map(|ip| FieldValue::Str(Cow::Owned(ip.to_string()))),
        "port" => e.port.map(|p| FieldValue::Int(p.into())),
        "domain" => FieldValue::opt_str(&e.domain),
        _ => None,
    }
}

fn dns_field<'a>(d: &'a Dns, path: &str) -> Option<FieldValue<'a>> {
    match path {
        "type" => FieldValue::non_empty(&d.kind),
        "question.name" => Some(FieldValue::str(&d.question.name)),
        "question.type" => FieldValue::non_empty(&d.question.kind),
        "response_code" => FieldValue::opt_str(&d.response_code),
        "resolved_ip" => Some(FieldValue::List(
            d.resolved_ip
                .iter()
                .map(|ip| FieldValue::Str(Cow::Owned(ip.to_string())))
                .collect(),
        )),
        _ => None,
    }
}

fn vigie_field<'a>(event: &'a Event, path: &str) -> Option<FieldValue<'a>> {
    match (path, &event.payload) {
        ("source.path", _) => Some(FieldValue::str(&event.source.as_ref()?.path)),
        ("source.record_id", _) => Some(FieldValue::Int(event.source.as_ref()?.record_id? as i64)),
        ("auth.service", Payload::Authentication(a)) => FieldValue::non_empty(&a.auth.service),
        ("auth.nas", Payload::Authentication(a)) => FieldValue::opt_str(&a.auth.nas),
        ("auth.reason", Payload::Authentication(a)) => FieldValue::opt_str(&a.auth.reason),
        ("auth.step", Payload::Authentication(a)) => FieldValue::opt_str(&a.auth.step),
        ("auth.calling_station_id", Payload::Authentication(a)) => {
            FieldValue::opt_str(&a.auth.calling_station_id)
        }
        ("auth.local_hour", Payload::Authentication(a)) => {
            Some(FieldValue::Int(i64::from(a.auth.local_hour?)))
        }
        ("kernel.name", Payload::Kernel(k)) => Some(FieldValue::str(&k.detail.name)),
        ("kernel.kind", Payload::Kernel(k)) => FieldValue::opt_str(&k.detail.kind),
        ("kernel.source", Payload::Kernel(k)) => FieldValue::opt_str(&k.detail.source),
        ("health.message", Payload::Health(h)) => Some(FieldValue::str(&h.health.message)),
        ("health.sensor", Payload::Health(h)) => FieldValue::opt_str(&h.health.sensor),
        ("response.action", Payload::Response(r)) => Some(FieldValue::str(&r.response.action)),
        ("response.target", Payload::Response(r)) => Some(FieldValue::str(&r.response.target)),
        ("response.actor", Payload::Response(r)) => Some(FieldValue::str(&r.response.actor)),
        _ => None,
    }
}
