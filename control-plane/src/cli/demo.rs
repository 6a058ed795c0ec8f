//! `control-plane demo`: a demo operator and three demo tenants with sample data, for a
//! first look. Dev mode only. Running it again creates whatever is missing and changes
//! nothing that exists (passwords are only ever printed when they are made).

use std::sync::Arc;

use owner::operators::OperatorRole;
use owner::tenants::{Tenant, TenantStatus};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use crate::audit::Actor;
use crate::auth::hash_password;
use crate::config::{Config, Environment};
use crate::provisioning::{CreateTenant, Faults};
use crate::secrets::random_password;
use crate::services::TenantRole;
use crate::wiring::Services;
use crate::{Error, Result};

pub const DEMO_OPERATOR: &str = "demo@example.com";
/// `(slug, name, plan)` of the demo tenants.
pub const DEMO_TENANTS: [(&str, &str, &str); 3] = [
    ("demo-vet", "Demo Veterinary Practice", "free"),
    ("demo-clinic", "Demo Animal Clinic", "starter"),
    ("demo-farm", "Demo Farm Vets", "pro"),
];

fn demo_password() -> SecretString {
    // Shorter than a database password: someone types this one.
    SecretString::from(random_password().expose_secret()[..20].to_string())
}

fn admin_email(slug: &str) -> String {
    format!("admin@{slug}.example.com")
}

/// What became of one demo tenant in this run.
struct DemoTenant {
    tenant: Tenant,
    /// Set only when the admin was made now.
    admin_password: Option<SecretString>,
    seeded: tenant::demo::Seeded,
}

pub async fn run(config: Config) -> Result<()> {
    if config.environment == Environment::Production {
        return Err(Error::BadRequest(
            "`demo` only runs in dev mode: it creates an operator and tenants with known data. \
             Unset CP_ENV (or set CP_ENV=dev) on a development installation."
                .into(),
        ));
    }
    let services = Services::init(config, Arc::new(Faults::default())).await?;
    let operator_password = ensure_operator(&services).await?;
    let mut tenants = Vec::new();
    for (slug, name, plan) in DEMO_TENANTS {
        tenants.push(ensure_tenant(&services, slug, name, plan).await?);
    }
    print_summary(&services.config, operator_password.as_ref(), &tenants);
    Ok(())
}

/// The demo operator's password if it was made now; `None` if it existed.
async fn ensure_operator(services: &Services) -> Result<Option<SecretString>> {
    let email = owner::Email::parse(DEMO_OPERATOR)?;
    let conn = services.owner.conn().await?;
    match owner::operators::operator_fetch_by_email(&**conn, &email).await {
        Ok(_) => return Ok(None),
        Err(owner::Error::NotFound) => {}
        Err(e) => return Err(e.into()),
    }
    let password = demo_password();
    let hash = hash_password(password.expose_secret())?;
    let operator = match owner::operators::operator_insert(
        &**conn,
        &email,
        &hash,
        OperatorRole::Owner,
    )
    .await
    {
        Ok(operator) => operator,
        // Another run made it between our look and our insert.
        Err(owner::Error::EmailTaken) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    crate::audit::record(
        &**conn,
        &crate::audit::Actor::cli(),
        "operator.create",
        crate::audit::Target("operator", &operator.id.to_string()),
        json!({ "email": operator.email, "role": operator.role, "demo": true }),
    )
    .await?;
    Ok(Some(password))
}

async fn ensure_tenant(
    services: &Services,
    slug: &str,
    name: &str,
    plan: &str,
) -> Result<DemoTenant> {
    let provisioner = &services.provisioner;
    let existing = {
        let conn = services.owner.conn().await?;
        match owner::tenants::tenant_fetch_by_slug(&**conn, slug).await {
            Ok(t) => Some(t),
            Err(owner::Error::NotFound) => None,
            Err(e) => return Err(e.into()),
        }
    };
    let (tenant, admin_password) = match existing {
        Some(t) => (t, None),
        None => {
            let password = demo_password();
            let request = CreateTenant {
                slug: slug.to_string(),
                name: name.to_string(),
                plan: Some(plan.to_string()),
                domains: Vec::new(),
                admin_email: Some(admin_email(slug)),
                admin_password: Some(password.clone()),
            };
            let created = provisioner.record_create(&request, &Actor::cli()).await?;
            (created.tenant, Some(password))
        }
    };
    // Finishes a tenant an interrupted run left part-way; a settled one is returned as is.
    let tenant = match tenant.status {
        TenantStatus::Provisioning => provisioner.drive(tenant.id).await?,
        _ => tenant,
    };
    // Only an active tenant is seeded, and only while it has no practices, so a demo
    // tenant someone has been using (or suspended) is left alone.
    let seeded = if tenant.status == TenantStatus::Active {
        let mut client = services
            .access
            .connect(&tenant, TenantRole::Runtime)
            .await?;
        let tx = client.transaction().await?;
        let seeded = tenant::demo::seed(&tx, name).await?;
        tx.commit().await?;
        seeded
    } else {
        tenant::demo::Seeded::default()
    };
    Ok(DemoTenant {
        tenant,
        admin_password,
        seeded,
    })
}

fn print_summary(
    config: &Config,
    operator_password: Option<&SecretString>,
    tenants: &[DemoTenant],
) {
    let port = config.listen.port();
    let owner_host = config
        .owner_hosts
        .first()
        .cloned()
        .unwrap_or_else(|| config.base_domain.clone());
    let base = |host: &str| format!("http://{host}:{port}");
    println!("Demo data is ready. Start the service (`control-plane serve`) if it is not running.");
    println!();
    println!("Dashboard: {}/owner", base(&owner_host));
    match operator_password {
        Some(pw) => println!(
            "  operator {DEMO_OPERATOR} (owner), password {} (shown once)",
            pw.expose_secret()
        ),
        None => {
            println!("  operator {DEMO_OPERATOR} already existed; its password was left unchanged")
        }
    }
    println!();
    println!("Tenants:");
    for t in tenants {
        let domain = format!("{}.{}", t.tenant.slug, config.base_domain);
        let state = if t.admin_password.is_some() {
            "created"
        } else {
            "already existed, left as it was"
        };
        println!(
            "  {} ({}, plan {}, {}): {}",
            t.tenant.slug,
            t.tenant.status.as_str(),
            t.tenant.plan_code,
            state,
            base(&domain)
        );
        match &t.admin_password {
            Some(pw) => println!(
                "    admin {}, password {} (shown once)",
                admin_email(&t.tenant.slug),
                pw.expose_secret()
            ),
            None => println!(
                "    admin {} (password as printed when it was created)",
                admin_email(&t.tenant.slug)
            ),
        }
        if t.seeded.patients > 0 {
            println!(
                "    sample data: {} practices, {} patients, {} appointments",
                t.seeded.practices, t.seeded.patients, t.seeded.appointments
            );
        }
    }
    let Some(first) = tenants.first() else {
        return;
    };
    let slug = &first.tenant.slug;
    let password = first
        .admin_password
        .as_ref()
        .map(|pw| pw.expose_secret().to_string())
        .unwrap_or_else(|| "<admin password>".into());
    let url = base(&format!("{slug}.{}", config.base_domain));
    println!();
    println!("Try it:");
    println!(
        "  TOKEN=$(curl -s {url}/api/v1/auth/login -H 'content-type: application/json' \\\n    -d '{{\"email\":\"{}\",\"password\":\"{password}\"}}' | jq -r .access_token)",
        admin_email(slug)
    );
    println!("  curl -s {url}/api/v1/patients -H \"authorization: Bearer $TOKEN\" | jq");
    let operator_password = operator_password
        .map(|pw| pw.expose_secret().to_string())
        .unwrap_or_else(|| "<operator password>".into());
    println!(
        "  OWNER_TOKEN=$(curl -s {}/api/owner/auth/login -H 'content-type: application/json' \\\n    -d '{{\"email\":\"{DEMO_OPERATOR}\",\"password\":\"{operator_password}\"}}' | jq -r .token)",
        base(&owner_host)
    );
    println!(
        "  curl -s {}/api/owner/tenants -H \"authorization: Bearer $OWNER_TOKEN\" | jq",
        base(&owner_host)
    );
}
