//! A tenant's runtime role reaches its own rows and nothing else.

use crate::helpers::{connect_as, spawn_app};

#[tokio::test]
async fn runtime_role_reaches_only_its_own_database_and_only_rows() {
    let app = spawn_app().await;
    let a = app.create_tenant("alpha").await;
    let b = app.create_tenant("bravo").await;
    let a_db = a["db_name"].as_str().expect("db");
    let a_runtime = a["runtime_role"].as_str().expect("role");
    let a_owner = a["owner_role"].as_str().expect("role");
    let b_db = b["db_name"].as_str().expect("db");
    let template = format!("{}template", app.prefix);

    for role in [a_runtime, a_owner] {
        for db in [
            b_db,
            app.owner_db.as_str(),
            "postgres",
            "template1",
            template.as_str(),
        ] {
            let err = connect_as(role, db)
                .await
                .err()
                .unwrap_or_else(|| panic!("{role} connected to {db}"));
            let message = err
                .as_db_error()
                .map(|e| e.message().to_string())
                .unwrap_or_default();
            assert!(
                message.contains("permission denied"),
                "{role} -> {db}: {err}"
            );
        }
    }

    let own = connect_as(a_runtime, a_db)
        .await
        .expect("runtime role connects to its own database");
    // Rows: yes.
    own.execute(
        "INSERT INTO practices (id, name) VALUES ($1, 'Main street')",
        &[&uuid::Uuid::new_v4()],
    )
    .await
    .expect("insert a row");
    let n: i64 = own
        .query_one("SELECT count(*) FROM practices", &[])
        .await
        .expect("select")
        .get(0);
    assert_eq!(n, 1);
    // Schema: no.
    for ddl in [
        "CREATE TABLE sneaky (id int)",
        "ALTER TABLE practices ADD COLUMN sneaky int",
        "DROP TABLE practices",
        "CREATE TEMP TABLE sneaky (id int)",
        "CREATE SCHEMA sneaky",
        "DELETE FROM refinery_schema_history",
    ] {
        let ddl = ddl.replace("\"x\"", &format!("\"{a_db}\""));
        assert!(
            own.batch_execute(&ddl).await.is_err(),
            "runtime role could run: {ddl}"
        );
    }
    // Granting what it does not hold only draws a warning; the database stays closed.
    let _ = own
        .batch_execute(&format!("GRANT CONNECT ON DATABASE \"{a_db}\" TO PUBLIC"))
        .await;
    let public_connect: bool = crate::helpers::pg("postgres")
        .await
        .query_one(
            "SELECT has_database_privilege('public', $1, 'CONNECT')",
            &[&a_db],
        )
        .await
        .expect("acl")
        .get(0);
    assert!(
        !public_connect,
        "the runtime role opened its database to PUBLIC"
    );
    // The owner role manages the schema (it is what migrations run as).
    let owner = connect_as(a_owner, a_db)
        .await
        .expect("owner role connects");
    owner
        .batch_execute("CREATE TABLE owner_may (id int); DROP TABLE owner_may")
        .await
        .expect("owner DDL");
}
