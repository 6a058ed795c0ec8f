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
    let unknown = run(&["tenants", "show", "no-such-slug"])
        .await
        .expect_err("unknown tenant");
    assert!(
        unknown.to_string().contains("no tenant \"no-such-slug\""),
        "{unknown}"
    );
    let refused = run(&["tenants", "delete", "cli-made"])
        .await
        .expect_err("no terminal to confirm on, and no --yes");
    assert!(refused.to_string().contains("--yes"), "{refused}");
    assert_eq!(
        app.count("SELECT count(*) FROM tenants WHERE slug = 'cli-made' AND status = 'active'")
            .await,
        1,
        "nothing deleted"
    );
    run(&["tenants", "delete", "cli-made", "--yes", "--json"])
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
        .count("SELECT count(*) FROM audit_log WHERE actor LIKE 'cli:%@%'")
        .await;
    assert!(cli_audit >= 4, "cli actions audited: {cli_audit}");
}

/// Everything `demo` makes, as a comparable snapshot.
async fn demo_snapshot(app: &crate::helpers::TestApp) -> Vec<String> {
    let owner = app.owner_client().await;
    let mut out = Vec::new();
    for row in owner
        .query(
            "SELECT email, role, password_hash FROM owner_users WHERE email = 'demo@example.com'",
            &[],
        )
        .await
        .expect("operators")
    {
        out.push(format!(
            "operator {} {} {}",
            row.get::<_, String>(0),
            row.get::<_, String>(1),
            row.get::<_, String>(2)
        ));
    }
    let tenants = owner
        .query(
            "SELECT slug, status, plan_code, db_name, updated_at::text FROM tenants ORDER BY slug",
            &[],
        )
        .await
        .expect("tenants");
    for t in tenants {
        let db: String = t.get(3);
        let tenant_db = crate::helpers::pg(&db).await;
        let counts: (i64, i64, i64, i64) = {
            let r = tenant_db
                .query_one(
                    "SELECT (SELECT count(*) FROM practices), (SELECT count(*) FROM patients), \
                     (SELECT count(*) FROM appointments), \
                     (SELECT count(*) FROM users WHERE role = 'admin' AND NOT must_change_password)",
                    &[],
                )
                .await
                .expect("counts");
            (r.get(0), r.get(1), r.get(2), r.get(3))
        };
        out.push(format!(
            "tenant {} {} {} {} {counts:?}",
            t.get::<_, String>(0),
            t.get::<_, String>(1),
            t.get::<_, String>(2),
            t.get::<_, String>(4)
        ));
    }
    out.push(format!(
        "audit {}",
        app.count("SELECT count(*) FROM audit_log").await
    ));
    out
}

#[tokio::test]
async fn demo_creates_an_operator_and_three_seeded_tenants_and_a_second_run_changes_nothing() {
    let app = spawn_app().await;
    let config = app.state.config.as_ref().clone();
    let demo = |config: control_plane::Config| async move {
        Cli::try_parse_from(["control-plane", "demo"])
            .expect("parse")
            .run(config)
            .await
    };
    demo(config.clone()).await.expect("demo");
    let first = demo_snapshot(&app).await;
    assert!(
        first[0].starts_with("operator demo@example.com owner $argon2"),
        "{first:?}"
    );
    let tenants: Vec<&String> = first.iter().filter(|l| l.starts_with("tenant ")).collect();
    assert_eq!(tenants.len(), 3, "{first:?}");
    for (line, (slug, plan)) in tenants.iter().zip([
        ("demo-clinic", "starter"),
        ("demo-farm", "pro"),
        ("demo-vet", "free"),
    ]) {
        assert!(
            line.starts_with(&format!("tenant {slug} active {plan} ")),
            "{line}"
        );
        assert!(
            line.ends_with("(2, 10, 4, 1)"),
            "practices, patients, appointments, admin: {line}"
        );
    }
    assert_eq!(app.tenant_dirs(), ["demo-clinic", "demo-farm", "demo-vet"]);

    demo(config.clone()).await.expect("second demo");
    assert_eq!(
        demo_snapshot(&app).await,
        first,
        "a second run changes nothing"
    );

    let mut production = config;
    production.environment = control_plane::config::Environment::Production;
    let refused = demo(production).await.expect_err("refused in production");
    assert!(refused.to_string().contains("dev mode"), "{refused}");
}

#[tokio::test]
async fn cli_create_with_admin_email_makes_the_first_user_with_a_one_time_password() {
    let app = spawn_app().await;
    let config = app.state.config.as_ref().clone();
    let cli = Cli::try_parse_from([
        "control-plane",
        "tenants",
        "create",
        "--slug",
        "cli-admin",
        "--name",
        "CLI admin",
        "--admin-email",
        "First@Cli-Admin.example",
        "--json",
    ])
    .expect("parse");
    cli.run(config).await.expect("create");
    let db: String = app
        .owner_client()
        .await
        .query_one(
            "SELECT db_name FROM tenants WHERE slug = 'cli-admin' AND status = 'active' AND initial_admin IS NULL",
            &[],
        )
        .await
        .expect("an active tenant whose pending admin was consumed")
        .get(0);
    let row = crate::helpers::pg(&db)
        .await
        .query_one(
            "SELECT email, role, must_change_password, password_hash LIKE '$argon2%' FROM users",
            &[],
        )
        .await
        .expect("exactly one user");
    assert_eq!(row.get::<_, String>(0), "first@cli-admin.example");
    assert_eq!(row.get::<_, String>(1), "admin");
    assert!(
        row.get::<_, bool>(2),
        "a one-time password must be changed at first login"
    );
    assert!(row.get::<_, bool>(3), "the password is not an argon2 hash");
    // Without --admin-email, a password alone is refused by the parser.
    assert!(
        Cli::try_parse_from([
            "control-plane",
            "tenants",
            "create",
            "--slug",
            "x-y",
            "--name",
            "X",
            "--admin-password-stdin",
        ])
        .is_err()
    );
}

#[tokio::test]
async fn a_fleet_run_started_from_the_cli_is_audited() {
    let app = spawn_app().await;
    app.create_tenant("audited-run").await;
    let config = app.state.config.as_ref().clone();
    for (args, action) in [
        (
            vec!["control-plane", "migrate", "--dry-run"],
            "migration.dry_run",
        ),
        (vec!["control-plane", "migrate"], "migration.start"),
    ] {
        Cli::try_parse_from(args)
            .expect("parse")
            .run(config.clone())
            .await
            .expect("migrate");
        let audited = app
            .count(&format!(
                "SELECT count(*) FROM audit_log a JOIN migration_runs r ON r.id::text = a.target_id \
                 WHERE a.action = '{action}' AND a.actor LIKE 'cli:%@%'"
            ))
            .await;
        assert_eq!(audited, 1, "{action} from the CLI is not audited once");
    }
}

#[tokio::test]
async fn cli_puts_a_tenant_in_maintenance_and_ends_it() {
    let app = spawn_app().await;
    app.create_tenant("mended").await;
    let config = app.state.config.as_ref().clone();
    let run = |args: &[&str]| {
        let config = config.clone();
        let mut argv = vec!["control-plane", "tenants", "maintenance", "mended"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).expect("parse");
        async move { cli.run(config).await }
    };
    let held = "SELECT count(*) FROM tenants WHERE slug = 'mended' AND maintenance = 'operator' \
                AND maintenance_note = 'new disks' AND maintenance_reads";
    run(&["on", "--note", "new disks", "--allow-reads"])
        .await
        .expect("on");
    assert_eq!(app.count(held).await, 1);
    let err = run(&["off", "--note", "done"])
        .await
        .expect_err("a note goes with on");
    assert!(err.to_string().contains("go with `on`"), "{err}");
    assert_eq!(app.count(held).await, 1, "nothing changed");
    run(&["off"]).await.expect("off");
    assert_eq!(
        app.count("SELECT count(*) FROM tenants WHERE maintenance IS NOT NULL")
            .await,
        0
    );
    let refused =
        Cli::try_parse_from(["control-plane", "tenants", "maintenance", "mended", "maybe"])
            .expect_err("on or off");
    assert!(refused.to_string().contains("possible values"), "{refused}");
}

#[tokio::test]
async fn operators_are_listed_disabled_enabled_and_reset_from_the_cli() {
    let app = spawn_app().await;
    app.create_operator("helper@example.com", "admin").await;
    let helper = app
        .login("helper@example.com", crate::helpers::OPERATOR_PASSWORD)
        .await;
    let config = app.state.config.as_ref().clone();
    let run = |args: &[&str]| {
        let config = config.clone();
        let mut argv = vec!["control-plane", "operators"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).expect("parse");
        async move { cli.run(config).await }
    };
    run(&["list", "--json"]).await.expect("list");

    run(&["disable", "helper@example.com"])
        .await
        .expect("disable");
    assert_eq!(
        app.get("/api/owner/me", Some(&helper)).await.status(),
        401,
        "a disabled operator's sessions end at once"
    );
    run(&["enable", "helper@example.com"])
        .await
        .expect("enable");
    assert_eq!(
        app.count("SELECT count(*) FROM owner_users WHERE email = 'helper@example.com' AND status = 'active'")
            .await,
        1
    );
    let last = run(&["disable", "owner@example.com"])
        .await
        .expect_err("the last active owner");
    assert!(last.to_string().contains("last active owner"), "{last}");
    let unknown = run(&["disable", "nobody@example.com"])
        .await
        .expect_err("unknown operator");
    assert!(unknown.to_string().contains("no operator"), "{unknown}");

    // A locked-out owner gets a one-time password; the old sessions end.
    run(&["reset-password", "owner@example.com"])
        .await
        .expect("reset");
    assert_eq!(
        app.get("/api/owner/me", Some(&app.token)).await.status(),
        401
    );
    assert_eq!(
        app.count("SELECT count(*) FROM owner_users WHERE email = 'owner@example.com' AND must_change_password")
            .await,
        1
    );
    assert_eq!(
        app.count("SELECT count(*) FROM audit_log WHERE action = 'operator.password_reset' AND actor LIKE 'cli:%'")
            .await,
        1
    );
}

#[tokio::test]
async fn keys_are_rotated_rewrapped_and_retired_from_the_cli() {
    use base64::Engine;
    let key = |n: u8| base64::prelude::BASE64_STANDARD.encode([n; 32]);
    let spec = format!("1:{},2:{}", key(7), key(9));
    let app = crate::helpers::spawn_app_with(|c| {
        c.master_key = control_plane::config::MasterKeySource::Inline(secrecy::SecretString::from(
            spec.clone(),
        ))
    })
    .await;
    let config = app.state.config.as_ref().clone();
    let run = |args: &[&str]| {
        let config = config.clone();
        let mut argv = vec!["control-plane"];
        argv.extend_from_slice(args);
        let cli = Cli::try_parse_from(argv).expect("parse");
        async move { cli.run(config).await }
    };
    run(&["keys", "rotate", "--version", "1"])
        .await
        .expect("rotate to 1");
    // The serving process hears of it through the change feed.
    crate::helpers::eventually("the service seals with version 1", || async {
        match app.services.access.keyring().sealing_version() {
            1 => Ok(()),
            other => Err(other),
        }
    })
    .await;
    app.create_tenant("sealed").await;
    let version = || async {
        app.count("SELECT secret_key_version::bigint FROM tenants WHERE slug = 'sealed'")
            .await
    };
    assert_eq!(version().await, 1);
    run(&["keys", "status", "--json"]).await.expect("status");
    assert!(run(&["keys", "retire", "1"]).await.is_err(), "in use");
    run(&["keys", "rotate"]).await.expect("rotate");
    run(&["keys", "rewrap", "--json"]).await.expect("rewrap");
    assert_eq!(version().await, 2);
    run(&["keys", "retire", "1"]).await.expect("retire");
    assert_eq!(
        app.count(
            "SELECT count(*) FROM audit_log WHERE action LIKE 'keys.%' AND actor LIKE 'cli:%'"
        )
        .await,
        4,
        "two rotations, a rewrap, a retirement (the refused one changed nothing)"
    );
    assert_eq!(
        crate::helpers::status_on(&app, "sealed.localhost").await.0,
        200
    );
}
