//! The CLI's tenant commands, run in-process against a test's owner database.

use clap::Parser;
use control_plane::cli::Cli;

use crate::helpers::spawn_app;

#[tokio::test]
async fn cli_creates_suspends_and_deletes_tenants_without_the_server() {
    let app = spawn_app().await;
    let config = app.state.config.as_ref().clone();
    let run = |args: &[&str]| {
        let config = config.clone();
        let mut argv = vec!["control-plane"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).expect("parse");
        async move { cli.run(config).await }
    };
    run(&[
        "tenants",
        "create",
        "--slug",
        "cli-made",
        "--name",
        "From CLI",
        "--plan",
        "pro",
        "--domain",
        "cli.example.org",
        "--json",
    ])
    .await
    .expect("create");
    assert_eq!(app.count("SELECT count(*) FROM tenants WHERE slug = 'cli-made' AND status = 'active' AND plan_code = 'pro'").await, 1);
    assert_eq!(app.tenant_dirs(), ["cli-made"]);
    run(&["tenants", "suspend", "cli-made"])
        .await
        .expect("suspend");
    assert_eq!(
        app.count("SELECT count(*) FROM tenants WHERE slug = 'cli-made' AND status = 'suspended'")
            .await,
        1
    );
    run(&["tenants", "resume", "cli-made", "--json"])
        .await
        .expect("resume");
    run(&["tenants", "list", "--json"]).await.expect("list");
    assert!(
        run(&["tenants", "create", "--slug", "cli-made", "--name", "Dup"])
            .await
            .is_err(),
        "duplicate slug"
    );
    run(&["tenants", "delete", "cli-made", "--json"])
        .await
        .expect("delete");
    assert_eq!(
        app.count("SELECT count(*) FROM tenants WHERE slug = 'cli-made' AND status = 'deleted'")
            .await,
        1
    );
    assert!(app.tenant_dirs().is_empty());
    assert!(
        run(&["tenants", "show", "cli-made"]).await.is_err(),
        "deleted tenants are not shown by slug"
    );
    let cli_audit = app
        .count("SELECT count(*) FROM audit_log WHERE actor = 'cli'")
        .await;
    assert!(cli_audit >= 4, "cli actions audited: {cli_audit}");
}
