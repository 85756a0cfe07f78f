//! Quarantine and restore keep bytes, owner, mode and timestamps.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use vigie_event::{Outcome, Payload};
use vigie_respond::{Cause, Responder};

#[test]
fn quarantine_restore_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let r = Responder::open(&tmp.path().join("state")).unwrap();
    let victim = tmp.path().join("payload.bin");
    let bytes: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&victim, &bytes).unwrap();
    let is_root = nix::unistd::geteuid().is_root();
    if is_root {
        std::os::unix::fs::chown(&victim, Some(1234), Some(5678)).unwrap();
    }
    // After chown: chown clears the setuid bit.
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o4751)).unwrap();
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        &victim,
        &nix::sys::time::TimeSpec::new(1_000_000_000, 123_456_789),
        &nix::sys::time::TimeSpec::new(1_100_000_000, 987_654_321),
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
    let before = std::fs::metadata(&victim).unwrap();

    let ev = r.quarantine(&victim, &Cause::user()).unwrap();
    let Payload::Response(resp) = &ev.payload else {
        panic!("not a response event")
    };
    assert_eq!(resp.outcome, Outcome::Success, "{}", resp.response.detail);
    assert!(!victim.exists(), "original still there");
    let q = vigie_respond::quarantine::list(r.state()).unwrap();
    assert_eq!(q.len(), 1);
    let data = r.state().join("quarantine").join(&q[0].id).join("data");
    assert_eq!(
        std::fs::metadata(&data).unwrap().permissions().mode() & 0o7777,
        0
    );
    assert_eq!(
        resp.response.undo.as_deref(),
        Some(&*format!("vigie agent restore {}", q[0].id))
    );

    // Nothing is overwritten: a new file at the path blocks the restore.
    std::fs::write(&victim, b"new").unwrap();
    assert!(r.restore(&q[0].id, &Cause::user()).is_err());
    std::fs::remove_file(&victim).unwrap();

    r.restore(&q[0].id, &Cause::user()).unwrap();
    let after = std::fs::metadata(&victim).unwrap();
    assert_eq!(std::fs::read(&victim).unwrap(), bytes);
    assert_eq!(after.mode() & 0o7777, 0o4751);
    assert_eq!((after.uid(), after.gid()), (before.uid(), before.gid()));
    assert_eq!(
        (after.mtime(), after.mtime_nsec()),
        (1_100_000_000, 987_654_321)
    );
    assert_eq!(
        (after.atime(), after.atime_nsec()),
        (1_000_000_000, 123_456_789)
    );
    assert!(
        vigie_respond::quarantine::list(r.state())
            .unwrap()
            .is_empty()
    );
    assert!(r.restore("not-an-id", &Cause::user()).is_err());
    assert!(
        r.quarantine(tmp.path(), &Cause::user()).is_err(),
        "a directory"
    );

    // A file with another hard link: quarantined, but reported as incomplete.
    let linked = tmp.path().join("linked");
    let other = tmp.path().join("other-name");
    std::fs::write(&linked, b"x").unwrap();
    std::fs::hard_link(&linked, &other).unwrap();
    let ev = r.quarantine(&linked, &Cause::user()).unwrap();
    let Payload::Response(resp) = &ev.payload else {
        panic!()
    };
    assert_eq!(resp.outcome, Outcome::Failure);
    assert!(
        resp.response.detail.contains("hard link"),
        "{}",
        resp.response.detail
    );
}
