//! Must show #3: a real slapd started by the test, users bound by LDAP.

mod common;
use common::*;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use test_support::free_port;
use vigie_radius::ldap::{Ldap, LdapConfig};
use vigie_radius::{CodeTransport, admin};

/// A private slapd on a loopback port, killed on drop (before its folder goes).
struct Slapd {
    _child: KillOnDrop,
    url: String,
    _dir: tempfile::TempDir,
}

fn slapd() -> Slapd {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("db")).unwrap();
    let conf = format!(
        "include /etc/ldap/schema/core.schema\n\
         include /etc/ldap/schema/cosine.schema\n\
         include /etc/ldap/schema/inetorgperson.schema\n\
         modulepath /usr/lib/ldap\n\
         moduleload back_mdb\n\
         pidfile {d}/slapd.pid\n\
         database mdb\n\
         maxsize 10485760\n\
         suffix \"dc=example,dc=org\"\n\
         rootdn \"cn=admin,dc=example,dc=org\"\n\
         rootpw adminpw\n\
         directory {d}/db\n",
        d = d.display()
    );
    std::fs::write(d.join("slapd.conf"), conf).unwrap();
    let port = free_port();
    let url = format!("ldap://127.0.0.1:{port}");
    let child = Command::new("slapd")
        .args([
            "-f",
            d.join("slapd.conf").to_str().unwrap(),
            "-h",
            &format!("{url}/"),
            "-d",
            "0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("slapd (package slapd) must be installed");
    let s = Slapd {
        _child: KillOnDrop(child),
        url,
        _dir: dir,
    };
    // Wait until it answers, then load users.
    let ldif = "dn: dc=example,dc=org\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n\
dn: ou=people,dc=example,dc=org\nobjectClass: organizationalUnit\nou: people\n\n\
dn: uid=alice,ou=people,dc=example,dc=org\nobjectClass: inetOrgPerson\nuid: alice\ncn: Alice\nsn: A\nuserPassword: alice-ldap-pw\n\n\
dn: uid=bob,ou=people,dc=example,dc=org\nobjectClass: inetOrgPerson\nuid: bob\ncn: Bob\nsn: B\nuserPassword: bob-ldap-pw\n";
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        use std::io::Write;
        let mut add = Command::new("ldapadd")
            .args([
                "-x",
                "-H",
                &s.url,
                "-D",
                "cn=admin,dc=example,dc=org",
                "-w",
                "adminpw",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ldapadd (package ldap-utils) must be installed");
        add.stdin
            .take()
            .unwrap()
            .write_all(ldif.as_bytes())
            .unwrap();
        if add.wait().unwrap().success() {
            return s;
        }
        assert!(std::time::Instant::now() < deadline, "slapd did not start");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn cfg(url: &str) -> LdapConfig {
    LdapConfig {
        url: url.to_string(),
        starttls: false,
        bind_template: "uid={user},ou=people,dc=example,dc=org".into(),
        timeout: Duration::from_secs(5),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldap_bind_first_factor() {
    let slapd = slapd();
    let ldap = Ldap::new(cfg(&slapd.url));
    assert!(ldap.bind("alice", b"alice-ldap-pw").await.unwrap());
    assert!(!ldap.bind("alice", b"wrong").await.unwrap());
    // empty password: an unauthenticated bind would succeed, we refuse it
    assert!(!ldap.bind("alice", b"").await.unwrap());
    // DN injection is escaped
    assert_eq!(
        ldap.bind_name("x,ou=evil"),
        "uid=x\\2cou\\3devil,ou=people,dc=example,dc=org"
    );

    // Through the RADIUS server with radclient
    let f = fixture_with(
        CodeTransport::Append,
        true,
        common::config(),
        Some(Arc::new(Ldap::new(cfg(&slapd.url)))),
    )
    .await;
    admin::add_user(&f.store, "test", "alice", None)
        .await
        .unwrap();
    let e = admin::enroll(
        &f.store,
        &f.key(),
        "test",
        "alice",
        vigie_radius::totp::Algorithm::SHA1,
        6,
        "Vigie",
    )
    .await
    .unwrap();
    let req = |pw: &str| {
        format!("User-Name = \"alice\", User-Password = \"{pw}\", Message-Authenticator = 0x00")
    };
    let out = f
        .radclient(&req(&format!(
            "alice-ldap-pw{}",
            oathtool(&e.secret_base32, 0)
        )))
        .await;
    assert!(accepted(&out), "{out}");
    let out = f
        .radclient(&req(&format!(
            "bob-ldap-pw{}",
            oathtool(&e.secret_base32, 1)
        )))
        .await;
    assert!(rejected(&out), "{out}");
    // empty password + code
    let out = f
        .radclient(&req(&oathtool(&e.secret_base32, 1).to_string()))
        .await;
    assert!(rejected(&out), "{out}");
}
