//! Records the commit the binary was built from, for `--version` (operators asking "which
//! build is this?" get an answer that names the code, not only the crate version).

use std::process::Command;

fn main() {
    // A build without the repository (a Docker build, whose context leaves .git out) is
    // told the commit instead.
    let given = std::env::var("CP_GIT_COMMIT")
        .ok()
        .filter(|s| !s.trim().is_empty());
    let commit = given
        .or_else(|| {
            Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()
                .filter(|o| o.status.success())
                .and_then(|o| String::from_utf8(o.stdout).ok())
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "unknown commit".into());
    println!("cargo:rustc-env=CP_GIT_COMMIT={commit}");
    // A new commit (or checkout) changes HEAD or the ref it points at.
    println!("cargo:rerun-if-changed=../.git/HEAD");
    println!("cargo:rerun-if-changed=../.git/refs/heads");
    println!("cargo:rerun-if-env-changed=CP_GIT_COMMIT");
}
