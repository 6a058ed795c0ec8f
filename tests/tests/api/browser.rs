//! The dashboard driven by a real headless Chromium (through chromedriver): sign in,
//! create a tenant and see it become active, add a domain, suspend it, start a dry-run
//! migration and then a real one. Screenshots are saved under
//! `target/screenshots/` (or `$SCREENSHOT_DIR`) as test artifacts.
//!
//! Needs `chromium` and `chromium-driver` (Debian packages; `.ci/run` installs them).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::helpers::{OPERATOR_PASSWORD, spawn_app_with};

/// Longest the test waits for anything the browser shows (provisioning, a run).
const PATIENCE: Duration = Duration::from_secs(60);

const V2: &str = "ALTER TABLE patients ADD COLUMN microchip text;\n";

/// chromedriver on a free port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

async fn start_driver() -> Driver {
    let binary = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
    let port = free_port();
    let child = Command::new(&binary)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start {binary} ({e}): install chromium and chromium-driver (see README)")
        });
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    // chromedriver answers /status once it listens; poll it (bounded) rather than guess.
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if let Ok(r) = http.get(format!("{}/status", driver.url)).send().await
            && r.status().is_success()
        {
            return driver;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("chromedriver did not start listening on port {port}");
}

async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    let mut options = json!({
        "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1440,1000"],
    });
    if let Ok(binary) = std::env::var("CHROMIUM") {
        options["binary"] = json!(binary);
    } else if std::path::Path::new("/usr/bin/chromium").exists() {
        options["binary"] = json!("/usr/bin/chromium");
    }
    caps.insert("goog:chromeOptions".into(), options);
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("start a browser session")
}

fn screenshot_dir() -> PathBuf {
    std::env::var("SCREENSHOT_DIR").map_or_else(
        |_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots"),
        PathBuf::from,
    )
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("screenshot");
    let dir = screenshot_dir();
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
}

async fn text_of(client: &Client, css: &str) -> String {
    client
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .text()
        .await
        .expect("text")
}

/// Waits (bounded) until the element with this id says `want`; the page may reload or
/// refresh its live part meanwhile.
async fn wait_for_text(client: &Client, id: &str, want: &str) {
    let xpath = format!("//*[@id='{id}'][normalize-space(.)='{want}']");
    if let Err(e) = client
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::XPath(&xpath))
        .await
    {
        let now = match client.find(Locator::Id(id)).await {
            Ok(e) => e.text().await.unwrap_or_default(),
            Err(_) => "nothing".into(),
        };
        panic!("#{id} never said {want:?} (it says {now:?}): {e}");
    }
}

async fn fill(client: &Client, css: &str, value: &str) {
    let field = client.find(Locator::Css(css)).await.expect(css);
    field.clear().await.expect("clear");
    field.send_keys(value).await.expect("type");
}

async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .click()
        .await
        .expect("click");
}

#[tokio::test]
async fn an_operator_runs_the_fleet_from_the_dashboard() {
    let migrations = tempfile::tempdir().expect("tempdir");
    std::fs::write(migrations.path().join("V2__add_microchip.sql"), V2).expect("migration");
    let dir = migrations.path().to_path_buf();
    let app = spawn_app_with(move |c| c.tenant_migrations_dir = Some(dir)).await;
    // Some tenants born before the new migration existed, so there is a fleet to migrate.
    let before = app.services_with_dir(None).await;
    for slug in ["north-vets", "south-vets", "east-clinic"] {
        let t = before
            .provisioner
            .tenant_create(
                &control_plane::provisioning::CreateTenant {
                    slug: slug.into(),
                    name: format!("{} practice", slug.replace('-', " ")),
                    ..Default::default()
                },
                &control_plane::provisioning::Actor::cli(),
            )
            .await
            .expect("create");
        before.provisioner.drive(t.id).await.expect("drive");
    }
    drop(before);
    app.state
        .metering
        .sample_once()
        .await
        .expect("metering sample");

    let driver = start_driver().await;
    let client = browser(&driver).await;
    let base = &app.address;

    // Signing in: the dashboard sends us to the login page and back.
    client.goto(&format!("{base}/owner")).await.expect("goto");
    let url = client.current_url().await.expect("url");
    assert_eq!(url.path(), "/owner/login", "not sent to the login page");
    fill(&client, "#email", "owner@example.com").await;
    fill(&client, "#password", OPERATOR_PASSWORD).await;
    click(&client, "#sign-in").await;
    assert_eq!(text_of(&client, "#tenants-total").await, "3");
    screenshot(&client, "01-overview").await;

    // Creating a tenant; the page follows it until it is active.
    click(&client, "nav a[href='/owner/tenants']").await;
    click(&client, "#new-tenant").await;
    fill(&client, "#slug", "west-vets").await;
    fill(&client, "#name", "West Vets").await;
    click(&client, "#create").await;
    wait_for_text(&client, "tenant-status", "active").await;
    let active = app
        .count("SELECT count(*) FROM tenants WHERE slug = 'west-vets' AND status = 'active'")
        .await;
    assert_eq!(
        active, 1,
        "the page says active, the owner database does not"
    );
    screenshot(&client, "02-tenant-active").await;

    // Adding a domain: listed on the page, and served.
    fill(
        &client,
        "#add-domain input[name=domain]",
        "portal.west-vets.test",
    )
    .await;
    click(&client, "#add-domain-button").await;
    let domains = text_of(&client, "#domains").await;
    assert!(domains.contains("portal.west-vets.test"), "{domains}");
    let status = app
        .get_on("portal.west-vets.test", "/api/v1/status", &[])
        .await
        .status();
    assert_eq!(status, 200, "the new domain does not reach the tenant");

    // Suspending, after confirming: the tenant is refused at once.
    click(&client, "#suspend").await;
    client.accept_alert().await.expect("confirm the suspension");
    wait_for_text(&client, "tenant-status", "suspended").await;
    let status = app
        .get_on("portal.west-vets.test", "/api/v1/status", &[])
        .await
        .status();
    assert_eq!(status, 403, "a suspended tenant is still served");

    // A dry run lists what would apply and changes nothing.
    click(&client, "nav a[href='/owner/migrations']").await;
    click(&client, "#start-run").await;
    wait_for_text(&client, "run-status", "dry_run").await;
    let listed = "//table[@id='run-tenants']//td[contains(., 'V2__add_microchip')]";
    let pending = client
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::XPath(listed))
        .await;
    assert!(
        pending.is_ok(),
        "the dry run does not list the pending migration"
    );
    let rows = text_of(&client, "#run-tenants").await;
    for slug in ["north-vets", "south-vets", "east-clinic"] {
        assert!(
            rows.contains(slug),
            "{slug} missing from the dry run: {rows}"
        );
    }
    let migrated = app
        .count("SELECT count(*) FROM tenants WHERE schema_version = 2 AND slug <> 'west-vets'")
        .await;
    assert_eq!(migrated, 0, "a dry run migrated tenants");

    // The real run, watched live until it finishes.
    client
        .goto(&format!("{base}/owner/migrations"))
        .await
        .expect("goto");
    click(&client, "#dry-run").await;
    fill(&client, "#start-migration input[name=canary]", "1").await;
    click(&client, "#start-run").await;
    wait_for_text(&client, "run-status", "succeeded").await;
    screenshot(&client, "03-migration-run").await;
    let behind = app
        .count("SELECT count(*) FROM tenants WHERE status IN ('active', 'suspended') AND schema_version <> 2")
        .await;
    assert_eq!(behind, 0, "tenants left behind after the run");

    client.goto(&format!("{base}/owner")).await.expect("goto");
    screenshot(&client, "04-overview-after").await;
    client.close().await.expect("close browser");
}
