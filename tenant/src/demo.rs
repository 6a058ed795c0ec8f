//! Sample rows for a demo tenant: two practices, ten patients, a few appointments.

use tokio_postgres::GenericClient;
use uuid::Uuid;

/// What [`seed`] wrote; all zero when the tenant already had practices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seeded {
    pub practices: usize,
    pub patients: usize,
    pub appointments: usize,
}

const PATIENTS: [(&str, &str, &str, &str); 10] = [
    ("Biscuit", "dog", "Beagle", "Ana Silva"),
    ("Miso", "cat", "Siamese", "Kenji Watanabe"),
    ("Pepper", "dog", "Border Collie", "Liam O'Brien"),
    ("Clover", "rabbit", "Holland Lop", "Sofia Rossi"),
    ("Nala", "cat", "Maine Coon", "Amara Okafor"),
    ("Rocky", "dog", "Boxer", "Jonas Berg"),
    ("Kiwi", "bird", "Budgerigar", "Priya Nair"),
    ("Daisy", "horse", "Haflinger", "Marie Dubois"),
    ("Tofu", "guinea pig", "Abyssinian", "Chen Wei"),
    ("Shadow", "cat", "Domestic Shorthair", "Fatima Haddad"),
];

/// Writes the sample rows, unless the tenant has practices already (so a second run, or
/// a tenant someone has been using, is left alone). Run it in a transaction: the table
/// lock that makes two concurrent runs seed once is held until the transaction ends.
/// `label` prefixes the practice names.
pub async fn seed(
    client: &impl GenericClient,
    label: &str,
) -> Result<Seeded, tokio_postgres::Error> {
    client
        .batch_execute("LOCK TABLE practices IN SHARE ROW EXCLUSIVE MODE")
        .await?;
    let existing: i64 = client
        .query_one("SELECT count(*) FROM practices", &[])
        .await?
        .get(0);
    if existing > 0 {
        return Ok(Seeded::default());
    }
    let practices = [
        (
            Uuid::now_v7(),
            format!("{label} — Main Street"),
            "1 Main Street",
        ),
        (
            Uuid::now_v7(),
            format!("{label} — Riverside"),
            "42 River Road",
        ),
    ];
    for (id, name, address) in &practices {
        client
            .execute(
                "INSERT INTO practices (id, name, address, phone) VALUES ($1, $2, $3, '+1 555 0100')",
                &[id, name, address],
            )
            .await?;
    }
    let mut patients = Vec::new();
    for (i, (name, species, breed, owner)) in PATIENTS.iter().enumerate() {
        let id = Uuid::now_v7();
        let practice = practices[i % practices.len()].0;
        let email = format!(
            "{}@example.com",
            owner.to_lowercase().replace([' ', '\''], ".")
        );
        client
            .execute(
                "INSERT INTO patients (id, practice_id, name, species, breed, owner_name, owner_email, date_of_birth) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, current_date - ($8::int * 200))",
                &[&id, &practice, name, species, breed, owner, &email, &(i as i32 + 1)],
            )
            .await?;
        patients.push((id, practice));
    }
    let reasons = [
        "Annual check-up",
        "Vaccination",
        "Dental cleaning",
        "Limping on the left leg",
    ];
    for (day, reason) in reasons.iter().enumerate() {
        let (patient, practice) = patients[day * 2];
        client
            .execute(
                "INSERT INTO appointments (id, practice_id, patient_id, starts_at, ends_at, reason) \
                 VALUES ($1, $2, $3, date_trunc('day', now()) + make_interval(days => $4, hours => 9), \
                         date_trunc('day', now()) + make_interval(days => $4, hours => 9, mins => 30), $5)",
                &[&Uuid::now_v7(), &practice, &patient, &(day as i32 + 1), reason],
            )
            .await?;
    }
    Ok(Seeded {
        practices: practices.len(),
        patients: patients.len(),
        appointments: reasons.len(),
    })
}
