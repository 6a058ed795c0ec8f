//! One installation, one key, one storage root: a process whose key or storage root is
//! not the installation's refuses to start, and says what differs and how to fix it.

use crate::support::{OwnerDb, random_key, run, stderr};

#[test]
fn a_cli_run_from_another_directory_is_refused_instead_of_making_a_second_key() {
    let db = OwnerDb::new();
    let url = db.url();
    let prefix = db.prefix();
    let first = tempfile::tempdir().expect("tempdir");
    let other = tempfile::tempdir().expect("tempdir");
    let base = [
        ("DATABASE_URL", url.as_str()),
        ("CP_TENANT_DB_PREFIX", prefix.as_str()),
    ];

    // The first start, in dev mode, generates ./data/master.key and records it.
    let out = run(first.path(), &base, &["tenants", "list"]);
    assert!(out.status.success(), "first start: {}", stderr(&out));
    let key_file = first.path().join("data/master.key");
    assert!(key_file.is_file(), "no dev key generated");
    let err = stderr(&out);
    assert!(
        err.contains(&key_file.canonicalize().expect("abs").display().to_string()),
        "the generated key's absolute path is not logged: {err}"
    );

    // From another directory: refused, and no second key is made.
    let out = run(other.path(), &base, &["tenants", "list"]);
    assert!(!out.status.success(), "a second key was accepted");
    let err = stderr(&out);
    assert!(err.contains("master key"), "{err}");
    assert!(
        err.contains(
            &first
                .path()
                .canonicalize()
                .expect("abs")
                .display()
                .to_string()
        ),
        "the message does not say where the installation's key is: {err}"
    );
    assert!(
        !other.path().join("data/master.key").exists(),
        "a second key was generated"
    );

    // The right key but another storage root: refused, naming the recorded root.
    let key_path = key_file.display().to_string();
    let with_key = [base[0], base[1], ("CP_MASTER_KEY_FILE", key_path.as_str())];
    let out = run(other.path(), &with_key, &["tenants", "list"]);
    assert!(!out.status.success(), "another storage root was accepted");
    let err = stderr(&out);
    let recorded_root = first
        .path()
        .join("data/storage")
        .canonicalize()
        .expect("root");
    assert!(
        err.contains(&format!("CP_STORAGE_ROOT={}", recorded_root.display())),
        "{err}"
    );

    // Pointing at the installation's data directory works from anywhere.
    let data_dir = first.path().join("data").display().to_string();
    let right = [base[0], base[1], ("CP_DATA_DIR", data_dir.as_str())];
    let out = run(other.path(), &right, &["tenants", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // A different key, even with the right storage root: refused.
    let wrong_key = random_key();
    let root = recorded_root.display().to_string();
    let wrong = [
        base[0],
        base[1],
        ("CP_MASTER_KEY", wrong_key.as_str()),
        ("CP_STORAGE_ROOT", root.as_str()),
    ];
    let out = run(other.path(), &wrong, &["tenants", "list"]);
    assert!(!out.status.success(), "a wrong key was accepted");
    let err = stderr(&out);
    assert!(err.contains("master key version 1 is not the key"), "{err}");
    assert!(!err.contains(&wrong_key), "the key was printed");
}

#[test]
fn a_moved_storage_root_can_be_adopted_on_purpose() {
    let db = OwnerDb::new();
    let url = db.url();
    let prefix = db.prefix();
    let dir = tempfile::tempdir().expect("tempdir");
    let key = random_key();
    let old_root = dir.path().join("old").display().to_string();
    let new_root = dir.path().join("new").display().to_string();
    let vars = |root: &str| {
        vec![
            ("DATABASE_URL", url.clone()),
            ("CP_TENANT_DB_PREFIX", prefix.clone()),
            ("CP_MASTER_KEY", key.clone()),
            ("CP_STORAGE_ROOT", root.to_string()),
        ]
    };
    let as_env = |v: &Vec<(&'static str, String)>| -> Vec<(&'static str, String)> { v.clone() };
    let run_with = |root: &str, args: &[&str]| {
        let v = as_env(&vars(root));
        let env: Vec<(&str, &str)> = v.iter().map(|(k, v)| (*k, v.as_str())).collect();
        run(dir.path(), &env, args)
    };
    assert!(run_with(&old_root, &["tenants", "list"]).status.success());
    assert!(!run_with(&new_root, &["tenants", "list"]).status.success());
    let out = run_with(&new_root, &["installation", "adopt-storage-root"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run_with(&new_root, &["tenants", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!run_with(&old_root, &["tenants", "list"]).status.success());
}
