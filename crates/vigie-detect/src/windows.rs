//! The Sigma logsource of a Windows event record.
//!
//! Sysmon events map to Sigma categories by EventID; other channels map to
//! the Sigma `service` that SigmaHQ's Windows rules name (the channel names
//! are those of SigmaHQ's Windows taxonomy and pySigma's Windows pipeline).

use std::borrow::Cow;

use serde_json::{Map, Value};
use vigie_event::LogSource;

const SYSMON_CHANNEL: &str = "microsoft-windows-sysmon/operational";
const SYSMON_PROVIDER: &str = "microsoft-windows-sysmon";

/// Channel (lowercase) → Sigma service.
const CHANNEL_SERVICES: &[(&str, &str)] = &[
    ("security", "security"),
    ("system", "system"),
    ("application", "application"),
    ("windows powershell", "powershell-classic"),
    ("microsoft-windows-powershell/operational", "powershell"),
    ("powershellcore/operational", "powershell"),
    (
        "microsoft-windows-taskscheduler/operational",
        "taskscheduler",
    ),
    ("microsoft-windows-wmi-activity/operational", "wmi"),
    (
        "microsoft-windows-windows defender/operational",
        "windefend",
    ),
    ("microsoft-windows-bits-client/operational", "bits-client"),
    (
        "microsoft-windows-codeintegrity/operational",
        "codeintegrity-operational",
    ),
    (
        "microsoft-windows-dns client events/operational",
        "dns-client",
    ),
    ("microsoft-windows-dns-client/operational", "dns-client"),
    ("dns server", "dns-server"),
    ("microsoft-windows-dns-server/audit", "dns-server-audit"),
    (
        "microsoft-windows-dns-server/analytical",
        "dns-server-analytic",
    ),
    (
        "microsoft-windows-windows firewall with advanced security/firewall",
        "firewall-as",
    ),
    ("microsoft-windows-ntlm/operational", "ntlm"),
    ("microsoft-windows-applocker/exe and dll", "applocker"),
    ("microsoft-windows-applocker/msi and script", "applocker"),
    (
        "microsoft-windows-applocker/packaged app-deployment",
        "applocker",
    ),
    (
        "microsoft-windows-applocker/packaged app-execution",
        "applocker",
    ),
    (
        "microsoft-windows-appxdeploymentserver/operational",
        "appxdeployment-server",
    ),
    (
        "microsoft-windows-appxpackaging/operational",
        "appxpackaging-om",
    ),
    (
        "microsoft-windows-appmodel-runtime/admin",
        "appmodel-runtime",
    ),
    ("microsoft-windows-capi2/operational", "capi2"),
    (
        "microsoft-windows-certificateservicesclient-lifecycle-system/operational",
        "certificateservicesclient-lifecycle-system",
    ),
    (
        "microsoft-windows-diagnosis-scripted/operational",
        "diagnosis-scripted",
    ),
    (
        "microsoft-windows-driverframeworks-usermode/operational",
        "driver-framework",
    ),
    (
        "microsoft-iis-configuration/operational",
        "iis-configuration",
    ),
    ("microsoft-windows-ldap-client/debug", "ldap"),
    ("microsoft-windows-lsa/operational", "lsa-server"),
    ("microsoft-servicebus-client", "microsoft-servicebus-client"),
    ("msexchange management", "msexchange-management"),
    ("openssh/operational", "openssh"),
    ("microsoft-windows-printservice/admin", "printservice-admin"),
    (
        "microsoft-windows-printservice/operational",
        "printservice-operational",
    ),
    (
        "microsoft-windows-security-mitigations/kernel mode",
        "security-mitigations",
    ),
    (
        "microsoft-windows-security-mitigations/user mode",
        "security-mitigations",
    ),
    ("microsoft-windows-shell-core/operational", "shell-core"),
    (
        "microsoft-windows-smbclient/connectivity",
        "smbclient-connectivity",
    ),
    ("microsoft-windows-smbclient/security", "smbclient-security"),
    (
        "microsoft-windows-smbserver/connectivity",
        "smbserver-connectivity",
    ),
    (
        "microsoft-windows-terminalservices-localsessionmanager/operational",
        "terminalservices-localsessionmanager",
    ),
    ("microsoft-windows-dhcp-server/operational", "dhcp"),
    (
        "microsoft-windows-bitlocker/bitlocker management",
        "bitlocker",
    ),
    ("microsoft-windows-vhdmp/operational", "vhdmp"),
];

/// Provider (lowercase) → Sigma service, for records without a channel.
const PROVIDER_SERVICES: &[(&str, &str)] = &[
    ("microsoft-windows-security-auditing", "security"),
    ("microsoft-windows-powershell", "powershell"),
    ("powershell", "powershell-classic"),
    ("microsoft-windows-windows defender", "windefend"),
    ("microsoft-windows-taskscheduler", "taskscheduler"),
    ("microsoft-windows-wmi-activity", "wmi"),
    ("microsoft-windows-bits-client", "bits-client"),
    (
        "microsoft-windows-codeintegrity",
        "codeintegrity-operational",
    ),
];

/// The Sigma category of a Sysmon event, by EventID.
fn sysmon_category(event_id: u64, fields: &Map<String, Value>) -> Option<&'static str> {
    Some(match event_id {
        1 => "process_creation",
        2 => "file_change",
        3 => "network_connection",
        4 | 16 => "sysmon_status",
        5 => "process_termination",
        6 => "driver_load",
        7 => "image_load",
        8 => "create_remote_thread",
        9 => "raw_access_thread",
        10 => "process_access",
        11 => "file_event",
        12 => {
            // Object created or deleted: Sysmon tells which in EventType.
            let deleted = fields
                .get("EventType")
                .and_then(Value::as_str)
                .is_some_and(|t| t.to_ascii_lowercase().starts_with("delete"));
            if deleted {
                "registry_delete"
            } else {
                "registry_add"
            }
        }
        13 => "registry_set",
        14 => "registry_rename",
        15 => "create_stream_hash",
        17 | 18 => "pipe_created",
        19..=21 => "wmi_event",
        22 => "dns_query",
        23 => "file_delete",
        24 => "clipboard_change",
        25 => "process_tampering",
        26 => "file_delete_detected",
        27 => "file_block_executable",
        28 => "file_block_shredding",
        29 => "file_executable_detected",
        255 => "sysmon_error",
        _ => return None,
    })
}

/// Categories a rule may name that also cover an event of `category`:
/// SigmaHQ's umbrella categories.
pub(crate) fn umbrella_categories(category: &str) -> &'static [&'static str] {
    match category {
        "registry_add" | "registry_delete" | "registry_set" | "registry_rename" => {
            &["registry_event"]
        }
        "file_delete_detected" => &["file_delete"],
        _ => &[],
    }
}

fn event_id(fields: &Map<String, Value>) -> Option<u64> {
    match fields.get("EventID")? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        // Some renderings keep the qualifiers: {"#text": 4688, "Qualifiers": ..}
        Value::Object(o) => match o.get("#text").or_else(|| o.get("Value"))? {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        },
        _ => None,
    }
}

fn lookup(table: &[(&str, &'static str)], key: &str) -> Option<&'static str> {
    table
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| *v)
}

/// The Sigma logsource of a flattened Windows event record: `Event.System`
/// scalars (`EventID`, `Channel`, `Provider_Name`, ...) and `EventData`
/// values as top-level keys.
///
/// * Sysmon (channel `Microsoft-Windows-Sysmon/Operational` or provider
///   `Microsoft-Windows-Sysmon`): product `windows`, service `sysmon`, and the
///   category of its EventID (1 `process_creation`, 3 `network_connection`,
///   11 `file_event`, 12/13/14 `registry_add`/`registry_delete`,
///   `registry_set`, `registry_rename`, 22 `dns_query`, ...). Rules on
///   SigmaHQ's umbrella category `registry_event` see all registry events.
/// * PowerShell Operational 4104 / 4103: service `powershell` with category
///   `ps_script` / `ps_module`; Windows PowerShell 400 / 600 / 800:
///   `powershell-classic` with `ps_classic_start` /
///   `ps_classic_provider_start` / `ps_classic_script`.
/// * Other channels: product `windows` and their Sigma service (`Security` →
///   `security`, `System` → `system`, ...). Security 4688 stays
///   `service: security`, which is what SigmaHQ's builtin rules expect.
/// * Anything else: product `windows` only.
pub fn windows_logsource(fields: &Map<String, Value>) -> LogSource {
    let channel = fields.get("Channel").and_then(Value::as_str).unwrap_or("");
    let provider = fields
        .get("Provider_Name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let id = event_id(fields);
    let windows = Some(Cow::Borrowed("windows"));

    if channel.eq_ignore_ascii_case(SYSMON_CHANNEL)
        || provider.eq_ignore_ascii_case(SYSMON_PROVIDER)
    {
        return LogSource {
            product: windows,
            category: id
                .and_then(|id| sysmon_category(id, fields))
                .map(Cow::Borrowed),
            service: Some(Cow::Borrowed("sysmon")),
        };
    }

    let service = if channel.is_empty() {
        lookup(PROVIDER_SERVICES, provider)
    } else {
        lookup(CHANNEL_SERVICES, channel)
    };
    let category = match (service, id) {
        (Some("powershell"), Some(4104)) => Some("ps_script"),
        (Some("powershell"), Some(4103)) => Some("ps_module"),
        (Some("powershell-classic"), Some(400)) => Some("ps_classic_start"),
        (Some("powershell-classic"), Some(600)) => Some("ps_classic_provider_start"),
        (Some("powershell-classic"), Some(800)) => Some("ps_classic_script"),
        _ => None,
    };
    LogSource {
        product: windows,
        category: category.map(Cow::Borrowed),
        service: service.map(Cow::Borrowed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ls(v: Value) -> LogSource {
        let Value::Object(map) = v else {
            unreachable!()
        };
        windows_logsource(&map)
    }

    #[test]
    fn sysmon_by_event_id() {
        let l = ls(json!({"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 1}));
        assert_eq!(l.category.as_deref(), Some("process_creation"));
        assert_eq!(l.service.as_deref(), Some("sysmon"));
        assert_eq!(l.product.as_deref(), Some("windows"));
        let l = ls(json!({"Provider_Name": "Microsoft-Windows-Sysmon", "EventID": "13"}));
        assert_eq!(l.category.as_deref(), Some("registry_set"));
        let l = ls(
            json!({"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 12,
                          "EventType": "DeleteKey"}),
        );
        assert_eq!(l.category.as_deref(), Some("registry_delete"));
        let l = ls(
            json!({"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 12,
                          "EventType": "CreateKey"}),
        );
        assert_eq!(l.category.as_deref(), Some("registry_add"));
        let l = ls(json!({"Channel": "Microsoft-Windows-Sysmon/Operational", "EventID": 9999}));
        assert_eq!(l.category, None);
        assert_eq!(l.service.as_deref(), Some("sysmon"));
    }

    #[test]
    fn channels_to_services() {
        let l = ls(json!({"Channel": "Security", "EventID": 4688}));
        assert_eq!(l.service.as_deref(), Some("security"));
        assert_eq!(l.category, None);
        let l = ls(json!({"Channel": "Microsoft-Windows-PowerShell/Operational", "EventID": 4104}));
        assert_eq!(l.service.as_deref(), Some("powershell"));
        assert_eq!(l.category.as_deref(), Some("ps_script"));
        let l = ls(json!({"Channel": "Windows PowerShell", "EventID": 400}));
        assert_eq!(l.service.as_deref(), Some("powershell-classic"));
        assert_eq!(l.category.as_deref(), Some("ps_classic_start"));
        let l = ls(json!({"Channel": "Microsoft-Windows-Windows Defender/Operational"}));
        assert_eq!(l.service.as_deref(), Some("windefend"));
        let l = ls(json!({"Channel": "Some/Unknown"}));
        assert_eq!(l.service, None);
        assert_eq!(l.product.as_deref(), Some("windows"));
    }

    #[test]
    fn umbrellas() {
        assert_eq!(umbrella_categories("registry_set"), &["registry_event"]);
        assert_eq!(
            umbrella_categories("file_delete_detected"),
            &["file_delete"]
        );
        assert!(umbrella_categories("process_creation").is_empty());
    }
}
