use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// Sigma's `logsource`: which rules may look at an event. Typed events use
/// static names (no allocation per event); log records carry what their
/// reader derived (e.g. Sysmon EventID 1 -> `windows` / `process_creation`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct LogSource {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product: Option<Cow<'static, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<Cow<'static, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<Cow<'static, str>>,
}

impl LogSource {
    pub const fn new(
        product: Option<&'static str>,
        category: Option<&'static str>,
        service: Option<&'static str>,
    ) -> Self {
        const fn c(s: Option<&'static str>) -> Option<Cow<'static, str>> {
            match s {
                Some(s) => Some(Cow::Borrowed(s)),
                None => None,
            }
        }
        LogSource {
            product: c(product),
            category: c(category),
            service: c(service),
        }
    }

    /// A Linux event of the given Sigma category.
    pub const fn linux(category: &'static str) -> Self {
        Self::new(Some("linux"), Some(category), None)
    }

    pub fn is_empty(&self) -> bool {
        self.product.is_none() && self.category.is_none() && self.service.is_none()
    }
}

impl std::fmt::Display for LogSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = [
            ("product", &self.product),
            ("category", &self.category),
            ("service", &self.service),
        ]
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
        .collect();
        if parts.is_empty() {
            f.write_str("(none)")
        } else {
            f.write_str(&parts.join(","))
        }
    }
}
