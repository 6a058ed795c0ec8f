//! `--version` names the build: the crate version and the commit it was built from.

use crate::support::run;

#[test]
fn version_names_the_crate_version_and_the_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(dir.path(), &[], &["--version"]);
    assert!(out.status.success());
    let printed = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown commit".into());
    assert_eq!(
        printed,
        format!("control-plane {} ({head})", env!("CARGO_PKG_VERSION"))
    );
}
