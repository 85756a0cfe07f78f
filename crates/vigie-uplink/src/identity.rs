//! The agent's identity on disk: `STATE/identity.json` (manager URL, host id,
//! organisation), `STATE/ca.der`, `STATE/agent.der` and `STATE/agent.key`
//! (PKCS#8, mode 0600). The private key is made here and never leaves.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use vigie_proto::pb;

use crate::tls;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Identity {
    pub manager_url: String,
    pub host_id: String,
    pub org: String,
    #[serde(skip)]
    pub ca_der: Vec<u8>,
    #[serde(skip)]
    pub cert_der: Vec<u8>,
    #[serde(skip)]
    pub key_der: Vec<u8>,
}

fn file(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

impl Identity {
    /// Whether `state_dir` holds a saved identity.
    pub fn exists(state_dir: &Path) -> bool {
        file(state_dir, "identity.json").exists()
    }

    pub fn load(state_dir: &Path) -> Result<Identity> {
        let path = file(state_dir, "identity.json");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {} (enrol first with --manager URL --enroll-token TOKEN)",
                path.display()
            )
        })?;
        let mut id: Identity = serde_json::from_str(&text)
            .with_context(|| format!("{} is corrupt", path.display()))?;
        let read = |n: &str| {
            let p = file(state_dir, n);
            std::fs::read(&p).with_context(|| format!("reading {}", p.display()))
        };
        id.ca_der = read("ca.der")?;
        id.cert_der = read("agent.der")?;
        id.key_der = read("agent.key")?;
        Ok(id)
    }

    pub fn save(&self, state_dir: &Path) -> Result<()> {
        std::fs::create_dir_all(state_dir)
            .with_context(|| format!("creating {}", state_dir.display()))?;
        write_private(&file(state_dir, "agent.key"), &self.key_der)?;
        write_atomic(&file(state_dir, "agent.der"), &self.cert_der)?;
        write_atomic(&file(state_dir, "ca.der"), &self.ca_der)?;
        // identity.json last: its presence means the identity is complete.
        write_atomic(
            &file(state_dir, "identity.json"),
            serde_json::to_string_pretty(self)?.as_bytes(),
        )
    }

    /// SHA-256 of the agent's certificate (how the manager knows it).
    pub fn fingerprint(&self) -> String {
        tls::fingerprint(&self.cert_der)
    }
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, data).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// An enrolment token: `SECRET.CA_SHA256_HEX`. The secret proves the agent
/// may enrol; the fingerprint lets the agent check it talks to the right
/// manager before it has the CA.
pub struct Token<'a> {
    pub secret: &'a str,
    pub ca_fingerprint: &'a str,
}

pub fn parse_token(token: &str) -> Result<Token<'_>> {
    let token = token.trim();
    match token.rsplit_once('.') {
        Some((secret, fp)) if !secret.is_empty() && fp.len() == 64 => Ok(Token {
            secret,
            ca_fingerprint: fp,
        }),
        _ => bail!(
            "malformed enrolment token (expected SECRET.FINGERPRINT, as printed by `vigie manager token create`)"
        ),
    }
}

/// Enrol with the manager: make a key pair, send a CSR with the one-time
/// token, save the certificate the manager returns.
pub async fn enroll(
    manager_url: &str,
    token: &str,
    state_dir: &Path,
    facts: pb::HostFacts,
    mark: Option<u32>,
    release_secret: Vec<u8>,
) -> Result<Identity> {
    let token = parse_token(token)?;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, facts.hostname.clone());
    let csr = params.serialize_request(&key)?;
    let config = tls::pinned_config(token.ca_fingerprint)?;
    let channel = tls::channel_marked(manager_url, config, mark).await?;
    let mut client = pb::agent_service_client::AgentServiceClient::new(channel);
    let reply = client
        .enroll(pb::EnrollRequest {
            token: token.secret.to_string(),
            csr_der: csr.der().to_vec(),
            facts: Some(facts),
            release_secret,
        })
        .await
        .map_err(|s| anyhow::anyhow!("the manager refused enrolment: {}", s.message()))?
        .into_inner();
    let identity = Identity {
        manager_url: manager_url.to_string(),
        host_id: reply.host_id,
        org: reply.org,
        ca_der: reply.ca_der,
        cert_der: reply.cert_der,
        key_der: key.serialize_der(),
    };
    identity.save(state_dir)?;
    Ok(identity)
}
