//! Schemathesis (PyPI) against both OpenAPI documents: it generates requests from each
//! document, valid and invalid, sends them to the real service, and fails on any 5xx, any
//! status the document does not list, and any answer its schema does not describe.
//!
//! Schemathesis is installed on first use into a virtual environment under the target
//! directory (`python3 -m venv`, then `pip install` of the pinned version), so the test
//! command stays `cargo test`. Set `SCHEMATHESIS` to an `st` binary to use another.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use tokio::sync::OnceCell;

use crate::helpers::{TestApp, spawn_app};

const VERSION: &str = "4.32.5";
/// Examples per operation: enough to reach every status an operation has, bounded so the
/// run takes a minute or two.
const MAX_EXAMPLES: &str = "8";

static INSTALLED: OnceCell<PathBuf> = OnceCell::const_new();

/// The `st` binary, installed once per target directory.
async fn schemathesis() -> &'static Path {
    INSTALLED
        .get_or_init(|| async {
            tokio::task::spawn_blocking(install)
                .await
                .expect("install task")
        })
        .await
}

fn install() -> PathBuf {
    if let Some(path) = std::env::var_os("SCHEMATHESIS") {
        return PathBuf::from(path);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let home = target.join(format!("schemathesis-{VERSION}"));
    let st = home.join("bin/st");
    // One installer at a time across test processes; the lock goes with the file.
    std::fs::create_dir_all(&target).expect("target dir");
    let lock = std::fs::File::create(target.join(format!("schemathesis-{VERSION}.lock")))
        .expect("lock file");
    lock.lock().expect("lock");
    // Written last: an environment without it was cut short and is made again.
    let installed = home.join(".installed");
    if installed.exists() {
        return st;
    }
    let _ = std::fs::remove_dir_all(&home);
    run(Command::new("python3").arg("-m").arg("venv").arg(&home));
    run(Command::new(home.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .arg(format!("schemathesis=={VERSION}")));
    std::fs::write(&installed, VERSION).expect("mark the install");
    st
}

fn run(command: &mut Command) {
    let output = command.output().expect("run a setup command");
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs schemathesis over the document at `document` (fetched from the service as `host`
/// sees it), against `base`, with `headers`, leaving out the operations the `excluded`
/// filters (schemathesis options and their values) name.
async fn check(
    app: &TestApp,
    host: &str,
    document: &str,
    base: &str,
    headers: &[String],
    excluded: &[(&str, &str)],
) {
    let response = app.get_on(host, document, &[]).await;
    assert_eq!(response.status(), 200, "{document} on {host}");
    let doc: Value = response.json().await.expect("document");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, doc.to_string()).expect("write document");
    let st = schemathesis().await.to_path_buf();
    let mut command = tokio::process::Command::new(st);
    command
        .arg("run")
        .arg(&file)
        .args(["--url", &format!("{}{base}", app.address)])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--seed", "1"])
        .args(["--phases", "examples,coverage,fuzzing"])
        // One worker: with two threads, CPython 3.11 now and then fails inside
        // schemathesis' own code ("AST constructor recursion depth mismatch"), a runtime
        // error that says nothing about the API.
        .args(["--workers", "1"])
        .args(["--request-timeout", "60"])
        .args(["--generation-database", "none"])
        .args(["--suppress-health-check", "all"])
        .args(["--no-color", "--output-truncate", "false"])
        .args(["--header", &format!("Host: {host}")])
        .current_dir(dir.path());
    for header in headers {
        command.args(["--header", header]);
    }
    for (filter, value) in excluded {
        command.args([filter, value]);
    }
    let output = command.output().await.expect("run schemathesis");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "schemathesis found problems with {document}:\n{report}"
    );
    // A run that tested nothing would pass too.
    assert!(
        report.contains("passed") && !report.contains("0 passed"),
        "schemathesis tested nothing:\n{report}"
    );
}

#[tokio::test]
async fn schemathesis_finds_nothing_wrong_with_the_owner_api() {
    let app = spawn_app().await;
    check(
        &app,
        "127.0.0.1",
        "/api/owner/openapi.json",
        "/api/owner",
        &[format!("Authorization: Bearer {}", app.token)],
        &[
            // Would end the session every later request uses.
            ("--exclude-path", "/auth/logout"),
            // Registering a server connects to whatever URL it is given.
            ("--exclude-operation-id", "post_servers"),
        ],
    )
    .await;
}

#[tokio::test]
async fn schemathesis_finds_nothing_wrong_with_the_tenant_api() {
    let app = spawn_app().await;
    // A plan with every feature, so no route is closed by the plan.
    let plan = app
        .post_json(
            "/api/owner/plans",
            Some(&app.token),
            &json!({ "code": "everything", "name": "Everything", "price_cents": 0,
                     "features": ["files", "integrations"] }),
        )
        .await;
    assert_eq!(plan.status(), 201);
    let (_, token) = app.tenant_with_admin("fuzzed", "everything").await;
    check(
        &app,
        "fuzzed.localhost",
        "/api/v1/openapi.json",
        "",
        &[format!("Authorization: Bearer {token}")],
        &[("--exclude-path", "/api/v1/auth/logout")],
    )
    .await;
}
