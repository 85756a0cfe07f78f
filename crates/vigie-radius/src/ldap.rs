//! First factor by LDAP / Active Directory bind (`ldap3`).
//!
//! The user's DN comes from a template: `uid={user},ou=people,dc=example,dc=org`
//! (OpenLDAP), `{user}@corp.example` (AD UPN) or `CORP\{user}` (AD
//! sAMAccountName). `{user}` is escaped as a DN value when the template is a DN.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use ldap3::{LdapConnAsync, LdapConnSettings};

use crate::server::PasswordBackend;

#[derive(Debug, Clone)]
pub struct LdapConfig {
    /// `ldap://host:389` or `ldaps://host:636`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS before binding.
    pub starttls: bool,
    /// Bind name template, containing `{user}`.
    pub bind_template: String,
    pub timeout: Duration,
}

pub struct Ldap {
    cfg: LdapConfig,
}

impl Ldap {
    pub fn new(cfg: LdapConfig) -> Ldap {
        Ldap { cfg }
    }

    /// The name to bind as for `user`.
    pub fn bind_name(&self, user: &str) -> String {
        let t = &self.cfg.bind_template;
        // A DN template (has "=") needs RFC 4514 escaping of the value so a
        // user name cannot change the DN's structure.
        let value = if t.contains('=') {
            ldap3::dn_escape(user).into_owned()
        } else {
            user.to_string()
        };
        t.replace("{user}", &value)
    }

    pub async fn bind(&self, user: &str, password: &[u8]) -> Result<bool, ldap3::LdapError> {
        // An empty password is an "unauthenticated bind" that many servers
        // accept (RFC 4513 §5.1.2): never let it through.
        if password.is_empty() || user.is_empty() {
            return Ok(false);
        }
        let Ok(password) = std::str::from_utf8(password) else {
            return Ok(false);
        };
        let settings = LdapConnSettings::new()
            .set_conn_timeout(self.cfg.timeout)
            .set_starttls(self.cfg.starttls);
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &self.cfg.url).await?;
        ldap3::drive!(conn);
        ldap.with_timeout(self.cfg.timeout);
        let res = ldap.simple_bind(&self.bind_name(user), password).await?;
        let ok = res.rc == 0;
        let _ = ldap.unbind().await;
        Ok(ok)
    }
}

impl PasswordBackend for Ldap {
    fn verify<'a>(
        &'a self,
        user: &'a str,
        password: &'a [u8],
    ) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>> {
        Box::pin(async move {
            match tokio::time::timeout(self.cfg.timeout * 2, self.bind(user, password)).await {
                Ok(Ok(ok)) => ok,
                Ok(Err(e)) => {
                    tracing::error!(url = %self.cfg.url, error = %e, "LDAP bind failed");
                    false
                }
                Err(_) => {
                    tracing::error!(url = %self.cfg.url, "LDAP bind timed out");
                    false
                }
            }
        })
    }
}
