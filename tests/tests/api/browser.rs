//! The dashboard driven by a real headless Chromium (through chromedriver): sign in,
//! create a tenant and see it become active, add a domain, suspend it, start a dry-run
//! migration and then a real one. Screenshots are saved under
//! `target/screenshots/` (or `$SCREENSHOT_DIR`) as test artifacts.
//!
//! Needs `chromium` and `chromium-driver` (Debian packages; `.ci/run` installs them).

use std::future::Future;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use fantoccini::error::{CmdError, ErrorStatus};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::helpers::{OPERATOR_PASSWORD, eventually, spawn_app_with};

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
    eventually("chromedriver to listen", || async {
        match http.get(format!("{}/status", driver.url)).send().await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(r.status().to_string()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    driver
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

/// Whether a WebDriver error only means "not yet": the page is between documents (a
/// form just submitted, a redirect, a refresh), its live part was just replaced, or what
/// the step waits for has not appeared yet.
fn not_yet(e: &CmdError) -> bool {
    match e {
        CmdError::Standard(w) => matches!(
            w.error,
            ErrorStatus::NoSuchElement
                | ErrorStatus::StaleElementReference
                | ErrorStatus::ElementNotInteractable
                | ErrorStatus::ElementClickIntercepted
                | ErrorStatus::NoSuchAlert
                // What chromedriver answers while a document is being replaced ("cannot
                // find context", "execution context was destroyed", a renderer slow to
                // answer on a loaded machine).
                | ErrorStatus::JavascriptError
                | ErrorStatus::UnknownError
                | ErrorStatus::Timeout
        ),
        _ => false,
    }
}

/// "Not there yet", with what the page shows instead.
fn missing(why: String) -> CmdError {
    CmdError::Standard(fantoccini::error::WebDriver::new(
        ErrorStatus::NoSuchElement,
        why,
    ))
}

/// Tries `step` again until it succeeds, for at most the harness's patience: every browser
/// step waits for the state it needs rather than act on the page as it happens to be.
/// Errors that only mean "not yet" ([`not_yet`]) are retried; any other fails the test.
async fn until<T, F, Fut>(what: &str, mut step: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, CmdError>>,
{
    eventually(what, || {
        let attempt = step();
        async move {
            match attempt.await {
                Ok(done) => Ok(done),
                Err(e) if not_yet(&e) => Err(e.to_string()),
                Err(e) => panic!("{what}: {e}"),
            }
        }
    })
    .await
}

/// What the element with this id says now, for failure messages.
async fn now_says(client: &Client, id: &str) -> String {
    match client.find(Locator::Id(id)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => "nothing: there is no such element".into(),
    }
}

/// Waits until `xpath` finds an element; `id` names the element whose text a failure
/// reports.
async fn wait_for_xpath(client: &Client, xpath: &str, id: &str, what: &str) {
    until(what, || async {
        match client.find(Locator::XPath(xpath)).await {
            Err(CmdError::Standard(w)) if w.error == ErrorStatus::NoSuchElement => Err(missing(
                format!("#{id} says {:?}", now_says(client, id).await),
            )),
            other => other.map(|_| ()),
        }
    })
    .await;
}

/// Waits until the element with this id says exactly `want`; the page may reload or
/// refresh its live part meanwhile.
async fn wait_for_text(client: &Client, id: &str, want: &str) {
    let xpath = format!("//*[@id='{id}'][normalize-space(.)='{want}']");
    wait_for_xpath(client, &xpath, id, &format!("#{id} to say {want:?}")).await;
}

/// Waits until the element with this id contains `needle` in its text.
async fn wait_for_contains(client: &Client, id: &str, needle: &str) {
    let xpath = format!("//*[@id='{id}'][contains(normalize-space(.), '{needle}')]");
    wait_for_xpath(client, &xpath, id, &format!("#{id} to show {needle:?}")).await;
}

/// Types `value` into the field, once the page shows it, and checks it holds the value.
async fn fill(client: &Client, css: &str, value: &str) {
    until(&format!("{css} to take {value:?}"), || async {
        let field = client.find(Locator::Css(css)).await?;
        field.clear().await?;
        field.send_keys(value).await?;
        match field.prop("value").await? {
            Some(held) if held == value => Ok(()),
            held => Err(missing(format!("the field holds {held:?}"))),
        }
    })
    .await;
}

/// Clicks the element, once the page shows it. Retried only while the click cannot have
/// happened (no element yet, or not clickable yet), so a click is never repeated.
async fn click(client: &Client, css: &str) {
    until(&format!("click {css}"), || async {
        let target = client.find(Locator::Css(css)).await?;
        match target.click().await {
            Ok(()) => Ok(()),
            Err(CmdError::Standard(w))
                if matches!(
                    w.error,
                    ErrorStatus::StaleElementReference
                        | ErrorStatus::ElementNotInteractable
                        | ErrorStatus::ElementClickIntercepted
                ) =>
            {
                Err(CmdError::Standard(w))
            }
            Err(e) => panic!("click {css}: {e}"),
        }
    })
    .await;
}

/// Accepts the confirmation the page asks, once it is asked.
async fn confirm(client: &Client) {
    until("the confirmation to be asked", || client.accept_alert()).await;
}

#[tokio::test]
async fn an_operator_runs_the_fleet_from_the_dashboard() {
    let migrations = tempfile::tempdir().expect("tempdir");
    std::fs::write(migrations.path().join(crate::helpers::microchip_file()), V2)
        .expect("migration");
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
                &control_plane::audit::Actor::cli(),
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
    wait_for_text(&client, "tenants-total", "3").await;
    screenshot(&client, "01-overview").await;

    // Creating a tenant; the page follows it until it is active.
    click(&client, "nav a[href='/owner/tenants']").await;
    click(&client, "#new-tenant").await;
    fill(&client, "#slug", "west-vets").await;
    fill(&client, "#name", "West Vets").await;
    click(&client, "#create").await;
    wait_for_text(&client, "tenant-status", "active").await;
    // The page was rendered from the owner database, and a tenant does not go back to
    // provisioning: one read says whether they agree.
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
    // The page reloads after the POST: wait for the new one, not read the old one.
    wait_for_contains(&client, "domains", "portal.west-vets.test").await;
    let status = app
        .get_on("portal.west-vets.test", "/api/v1/status", &[])
        .await
        .status();
    assert_eq!(status, 200, "the new domain does not reach the tenant");

    // Suspending, after confirming: the tenant is refused at once.
    click(&client, "#suspend").await;
    confirm(&client).await;
    wait_for_text(&client, "tenant-status", "suspended").await;
    let status = app
        .get_on("portal.west-vets.test", "/api/v1/status", &[])
        .await
        .status();
    assert_eq!(status, 403, "a suspended tenant is still served");

    // A dry run lists what would apply and changes nothing; the page shows the SQL first.
    click(&client, "nav a[href='/owner/migrations']").await;
    wait_for_contains(&client, "pending-migrations", "ADD COLUMN microchip").await;
    click(&client, "#start-run").await;
    wait_for_text(&client, "run-status", "dry_run").await;
    // The live part fills in as the run inspects each tenant: wait for every row.
    for slug in ["north-vets", "south-vets", "east-clinic"] {
        let row = format!(
            "//table[@id='run-tenants']//tr[td[1][normalize-space(.)='{slug}']]\
             [td[contains(., '{}')]]",
            crate::helpers::microchip_file().trim_end_matches(".sql")
        );
        wait_for_xpath(
            &client,
            &row,
            "run-tenants",
            &format!("the dry run to list the new migration as pending for {slug}"),
        )
        .await;
    }
    // Only once the dry run has finished does "it changed nothing" mean anything.
    wait_for_xpath(
        &client,
        "//*[@data-finished='true']//*[@id='run-status'][normalize-space(.)='dry_run']",
        "run-status",
        "the dry run to finish",
    )
    .await;
    let migrated = app
        .count(&format!(
            "SELECT count(*) FROM tenants WHERE schema_version = {} AND slug <> 'west-vets'",
            crate::helpers::next_version()
        ))
        .await;
    assert_eq!(migrated, 0, "a dry run migrated tenants");

    // The real run, watched live until it finishes.
    client
        .goto(&format!("{base}/owner/migrations"))
        .await
        .expect("goto");
    click(&client, "#dry-run").await;
    until("the dry-run box to be unchecked", || async {
        let checked = client
            .find(Locator::Id("dry-run"))
            .await?
            .is_selected()
            .await?;
        if checked {
            Err(missing("the dry-run box is still checked".into()))
        } else {
            Ok(())
        }
    })
    .await;
    fill(&client, "#start-migration input[name=canary]", "1").await;
    click(&client, "#start-run").await;
    wait_for_text(&client, "run-status", "succeeded").await;
    screenshot(&client, "03-migration-run").await;
    // A run is marked succeeded only after every tenant's new version is recorded: read
    // once, so that a run that says it is done too early fails here.
    let behind = app
        .count(&format!(
            "SELECT count(*) FROM tenants WHERE status IN ('active', 'suspended') AND schema_version <> {}",
            crate::helpers::next_version()
        ))
        .await;
    assert_eq!(behind, 0, "tenants left behind after the run");

    client.goto(&format!("{base}/owner")).await.expect("goto");
    screenshot(&client, "04-overview-after").await;

    // On a phone: every page fits 420 px, the navigation wraps, wide tables scroll inside
    // their panel instead of widening the page.
    client.set_window_size(420, 900).await.expect("resize");
    for path in [
        "/owner",
        "/owner/tenants",
        "/owner/migrations",
        "/owner/audit",
    ] {
        client.goto(&format!("{base}{path}")).await.expect("goto");
        eventually(&format!("{path} to fit a 420 px screen"), || async {
            let fits = client
                .execute(
                    "return document.readyState === 'complete' && \
                     document.documentElement.scrollWidth <= window.innerWidth + 1",
                    vec![],
                )
                .await
                .map_err(|e| e.to_string())?;
            if fits.as_bool() == Some(true) {
                Ok(())
            } else {
                Err(format!("{path} is wider than the screen"))
            }
        })
        .await;
    }
    screenshot(&client, "05-phone-audit").await;

    // The API docs, linked from the nav: Swagger UI runs from the binary's own files (the
    // browser reaches nothing else) and renders the owner API's document.
    click(&client, "nav a[href='/api/owner/docs/']").await;
    wait_for_xpath(
        &client,
        "//*[contains(@class, 'info')]//*[contains(@class, 'title')][contains(., 'control-plane owner API')]",
        "swagger-ui",
        "the docs UI to render the owner API's document",
    )
    .await;
    wait_for_xpath(
        &client,
        "//*[contains(@class, 'opblock-summary-path')][contains(., '/tenants/{id}/backups')]",
        "swagger-ui",
        "the docs UI to list the operations",
    )
    .await;
    screenshot(&client, "07-api-docs").await;

    // An idle session ends: the next page view lands on the login page, which says why.
    app.owner_client()
        .await
        .execute(
            "UPDATE owner_sessions SET last_seen_at = now() - interval '2 hours' \
             WHERE kind = 'dashboard'",
            &[],
        )
        .await
        .expect("age the session");
    client
        .goto(&format!("{base}/owner/tenants"))
        .await
        .expect("goto");
    wait_for_contains(&client, "login-notice", "Your session expired").await;
    screenshot(&client, "06-session-expired").await;
    client.close().await.expect("close browser");
}
