//! The manager's PKI, in `DATA/pki/`: a CA made at first start (`ca.pem`,
//! `ca.key`), the manager's server certificate signed by it (`server.pem`
//! holds the chain server + CA, `server.key`), and agent certificates signed
//! from the agents' CSRs at enrolment. Keys are ECDSA P-256, files 0600.
//! Several managers sharing one PostgreSQL database share this directory.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::CertificateSigningRequestDer;
use sha2::{Digest, Sha256};

/// Agent certificates are valid this long (renewal is future work).
pub const AGENT_CERT_DAYS: i64 = 825;

pub struct Pki {
    dir: PathBuf,
    pub ca_pem: String,
    pub ca_der: Vec<u8>,
    ca_key: KeyPair,
    /// The server chain (server certificate, then CA) and its key, PEM.
    pub server_chain_pem: String,
    pub server_key_pem: String,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn write_private(path: &Path, data: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(data.as_bytes())?;
    Ok(())
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(days);
}

fn random_serial(params: &mut CertificateParams) {
    let mut serial: [u8; 16] = rand::random();
    serial[0] &= 0x7f; // positive INTEGER
    params.serial_number = Some(rcgen::SerialNumber::from(serial.to_vec()));
}

/// SHA-256 of a DER certificate, lower-case hex.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

impl Pki {
    /// Load the PKI from `dir`, creating the CA and the server certificate
    /// on first start. `names` are the DNS names and IP addresses agents
    /// and browsers use to reach this manager.
    pub fn load_or_create(dir: &Path, names: &[String]) -> Result<Pki> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let ca_cert_path = dir.join("ca.pem");
        let ca_key_path = dir.join("ca.key");
        if !ca_cert_path.exists() {
            let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, "Vigie manager CA");
            dn.push(DnType::OrganizationName, "Vigie");
            params.distinguished_name = dn;
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            validity(&mut params, 3650);
            random_serial(&mut params);
            let cert = params.self_signed(&key)?;
            write_private(&ca_key_path, &key.serialize_pem())?;
            std::fs::write(&ca_cert_path, cert.pem())?;
            // A new CA invalidates any old server certificate.
            let _ = std::fs::remove_file(dir.join("server.pem"));
        }
        let ca_pem = std::fs::read_to_string(&ca_cert_path)
            .with_context(|| format!("reading {}", ca_cert_path.display()))?;
        let ca_key_pem = std::fs::read_to_string(&ca_key_path)
            .with_context(|| format!("reading {}", ca_key_path.display()))?;
        let ca_key = KeyPair::from_pem(&ca_key_pem).context("ca.key is not a valid key")?;
        let ca_der = rustls_pem_der(&ca_pem)?;
        let mut pki = Pki {
            dir: dir.to_path_buf(),
            ca_pem,
            ca_der,
            ca_key,
            server_chain_pem: String::new(),
            server_key_pem: String::new(),
        };
        pki.load_or_create_server(names)?;
        Ok(pki)
    }

    fn issuer(&self) -> Result<Issuer<'static, &KeyPair>> {
        Issuer::from_ca_cert_pem(&self.ca_pem, &self.ca_key).context("ca.pem is not a valid CA")
    }

    fn load_or_create_server(&mut self, names: &[String]) -> Result<()> {
        let chain = self.dir.join("server.pem");
        let key_path = self.dir.join("server.key");
        let names_path = self.dir.join("server.names");
        let wanted = names.join("\n");
        let same_names = std::fs::read_to_string(&names_path).is_ok_and(|n| n == wanted);
        if !chain.exists() || !key_path.exists() || !same_names {
            let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            params
                .distinguished_name
                .push(DnType::CommonName, "Vigie manager");
            for n in names {
                let san = match n.parse::<std::net::IpAddr>() {
                    Ok(ip) => SanType::IpAddress(ip),
                    Err(_) => SanType::DnsName(n.clone().try_into()?),
                };
                params.subject_alt_names.push(san);
            }
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            validity(&mut params, 825);
            random_serial(&mut params);
            let cert = params.signed_by(&key, &self.issuer()?)?;
            write_private(&key_path, &key.serialize_pem())?;
            std::fs::write(&chain, format!("{}{}", cert.pem(), self.ca_pem))?;
            std::fs::write(&names_path, &wanted)?;
        }
        self.server_chain_pem = std::fs::read_to_string(&chain)?;
        self.server_key_pem = std::fs::read_to_string(&key_path)?;
        Ok(())
    }

    /// SHA-256 of the CA certificate (pinned by enrolment tokens).
    pub fn ca_fingerprint(&self) -> String {
        fingerprint(&self.ca_der)
    }

    /// Sign an agent's CSR: the certificate names the host (CN) and its
    /// organisation (O); only the CSR's public key is used.
    pub fn sign_agent(&self, csr_der: &[u8], host_id: &str, org: &str) -> Result<(Vec<u8>, i64)> {
        if csr_der.len() > 16 * 1024 {
            bail!("certificate signing request too large");
        }
        let csr_der = CertificateSigningRequestDer::from(csr_der.to_vec());
        let mut csr = CertificateSigningRequestParams::from_der(&csr_der)
            .map_err(|e| anyhow::anyhow!("invalid certificate signing request: {e}"))?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, host_id);
        params
            .distinguished_name
            .push(DnType::OrganizationName, org);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        validity(&mut params, AGENT_CERT_DAYS);
        random_serial(&mut params);
        let not_after = params.not_after.unix_timestamp() * 1000;
        csr.params = params;
        let cert = csr.signed_by(&self.issuer()?)?;
        Ok((cert.der().to_vec(), not_after))
    }
}

fn rustls_pem_der(pem: &str) -> Result<Vec<u8>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    Ok(CertificateDer::from_pem_slice(pem.as_bytes())
        .context("ca.pem holds no certificate")?
        .to_vec())
}
