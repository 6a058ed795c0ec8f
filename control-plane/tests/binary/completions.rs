//! Commands that answer without touching any database: shell completions, and an
//! operator created with no password to read.

use crate::support::{run, stderr};

#[test]
fn completion_scripts_know_the_commands_and_refuse_an_unknown_shell() {
    let dir = tempfile::tempdir().expect("tempdir");
    for shell in ["bash", "zsh", "fish"] {
        let out = run(dir.path(), &[], &["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let script = String::from_utf8_lossy(&out.stdout);
        for word in ["tenants", "servers", "migrate", "maintenance"] {
            assert!(script.contains(word), "{shell} completes {word}");
        }
    }
    let out = run(dir.path(), &[], &["completions", "cmd-exe"]);
    assert_eq!(out.status.code(), Some(2), "clap's usage error");
    assert!(stderr(&out).contains("possible values"), "{}", stderr(&out));
}

#[test]
fn operators_create_with_nothing_on_stdin_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(
        dir.path(),
        &[],
        &["operators", "create", "--email", "ops@example.com"],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no password on stdin"),
        "{}",
        stderr(&out)
    );
}
