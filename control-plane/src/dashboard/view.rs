//! Shared view pieces: the frame-less pages, formatting, notices and the usage chart.

use askama::Template;
use chrono::{DateTime, Utc};

/// What every page's frame shows: who is signed in, the navigation, the CSRF token for
/// its forms, and a notice after an action.
pub struct Chrome {
    pub email: String,
    pub role: &'static str,
    pub csrf: String,
    pub nav: &'static str,
    pub notice: Option<String>,
    pub can_write: bool,
    pub is_owner: bool,
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub status: u16,
    pub title: String,
    pub message: String,
}

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub csrf: String,
    pub next: String,
    pub email: String,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "password.html")]
pub struct PasswordPage {
    pub chrome: Chrome,
    pub must_change: bool,
    pub error: Option<String>,
}

/// The sentence for a notice code from a redirect; unknown codes show nothing, so a link
/// cannot put words on the page.
pub fn notice_text(code: Option<&str>) -> Option<String> {
    let text = match code? {
        "password_changed" => "Your password is changed.",
        "created" => "Tenant created: it is being provisioned.",
        "suspended" => "Tenant suspended: its requests are refused from now on.",
        "resumed" => "Tenant resumed.",
        "maintenance_on" => {
            "Maintenance on: the tenant's requests are answered 503 (writes only, if reads are allowed) until you end it."
        }
        "maintenance_off" => "Maintenance ended: the tenant is served again.",
        "settings_saved" => "Settings saved; the tenant's app reads them from the next request.",
        "feature_saved" => "Feature saved; its routes follow from the next request.",
        "move_started" => {
            "Move started: the tenant serves reads only until its database is copied, checked and switched to the new server."
        }
        "deleting" => "Deletion started: the database, roles and files are being removed.",
        "domain_added" => "Domain added; it is served from the next request.",
        "domain_removed" => "Domain removed.",
        "domain_primary" => "Primary domain changed.",
        "subscription" => "Subscription updated; the plan's limits apply from the next request.",
        "plan_created" => "Plan created.",
        "plan_saved" => "Plan saved.",
        "server_added" => "Server added: new tenants may be placed on it from now on.",
        "server_saved" => "Server status saved.",
        "server_draining" => {
            "Server draining: it takes no new tenants, and its tenants are being moved off (two at a time)."
        }
        "operator_saved" => "Operator saved.",
        "backup_started" => "Backup started; it is listed below once it finishes.",
        "restore_started" => {
            "Restore started: the tenant is in maintenance (its requests are answered 503) until it finishes."
        }
        _ => return None,
    };
    Some(text.to_string())
}

/// `1.2 GB`, `340 kB`, or a dash for unknown.
pub fn bytes(n: Option<i64>) -> String {
    n.map_or_else(|| "–".into(), crate::views::human_bytes)
}

pub fn limit<T: std::fmt::Display>(n: Option<T>) -> String {
    n.map_or_else(|| "unlimited".into(), |n| n.to_string())
}

pub fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

pub fn when_opt(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "–".into(), when)
}

/// `3 min ago`, for recent events.
pub fn ago(t: DateTime<Utc>) -> String {
    let secs = (Utc::now() - t).num_seconds().max(0);
    match secs {
        0..60 => format!("{secs} s ago"),
        60..3600 => format!("{} min ago", secs / 60),
        3600..86400 => format!("{} h ago", secs / 3600),
        _ => format!("{} d ago", secs / 86400),
    }
}

pub fn money(cents: i32, currency: &str) -> String {
    format!("{}.{:02} {currency}", cents / 100, cents % 100)
}

/// A small two-line chart of sizes in bytes (inline SVG, no script): `a` (database) and
/// `b` (files) over the same points, each scaled to its own maximum so both shapes are
/// readable; each axis is labelled with its maximum, the time axis with its ends, and
/// every point carries its values (shown on hover).
pub type ChartPoint = (DateTime<Utc>, f64, f64);

pub fn chart(points: &[ChartPoint]) -> String {
    const W: f64 = 600.0;
    const H: f64 = 120.0;
    const TOP: f64 = 16.0;
    if points.len() < 2 {
        return String::new();
    }
    let max_a = points.iter().map(|p| p.1).fold(0.0, f64::max).max(1.0);
    let max_b = points.iter().map(|p| p.2).fold(0.0, f64::max).max(1.0);
    let step = W / (points.len() - 1) as f64;
    let y = |v: f64, max: f64| H - 4.0 - v / max * (H - 4.0 - TOP);
    let line = |f: &dyn Fn(&ChartPoint) -> f64, max: f64| {
        points
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{:.1},{:.1}", i as f64 * step, y(f(p), max)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let size = |v: f64| crate::views::human_bytes(v as i64);
    let dots: String = points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            format!(
                "<circle class=\"dot1\" cx=\"{x:.1}\" cy=\"{ya:.1}\" r=\"3\"><title>{t}: database {da}, files {fb}</title></circle>",
                x = i as f64 * step,
                ya = y(p.1, max_a),
                t = p.0.format("%Y-%m-%d %H:%M UTC"),
                da = size(p.1),
                fb = size(p.2),
            )
        })
        .collect();
    let time = |p: Option<&ChartPoint>| {
        p.map(|p| p.0.format("%m-%d %H:%M").to_string())
            .unwrap_or_default()
    };
    format!(
        "<svg class=\"chart\" viewBox=\"0 0 {W} {h}\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"database and file sizes over time\">\
         <line class=\"axis\" x1=\"0\" y1=\"{H}\" x2=\"{W}\" y2=\"{H}\"/>\
         <line class=\"grid\" x1=\"0\" y1=\"{TOP}\" x2=\"{W}\" y2=\"{TOP}\"/>\
         <text class=\"t1\" x=\"0\" y=\"11\">database, max {ma}</text>\
         <text class=\"t2\" x=\"{W}\" y=\"11\" text-anchor=\"end\">files, max {mb}</text>\
         <polyline class=\"line1\" points=\"{a}\"/><polyline class=\"line2\" points=\"{b}\"/>{dots}\
         <text x=\"0\" y=\"{ty}\">{first}</text><text x=\"{W}\" y=\"{ty}\" text-anchor=\"end\">{last}</text></svg>",
        h = H + 14.0,
        ty = H + 12.0,
        ma = size(max_a),
        mb = size(max_b),
        a = line(&|p| p.1, max_a),
        b = line(&|p| p.2, max_b),
        first = time(points.first()),
        last = time(points.last()),
    )
}

/// The run's progress as a bar of coloured segments (SVG: the CSP allows no inline styles).
pub fn progress_bar(counts: &[(String, i64)]) -> String {
    let total: i64 = counts.iter().map(|c| c.1).sum();
    if total == 0 {
        return String::new();
    }
    let mut x = 0.0;
    let mut rects = String::new();
    for state in [
        "succeeded",
        "would_apply",
        "failed",
        "running",
        "skipped",
        "pending",
    ] {
        let n = counts.iter().find(|c| c.0 == state).map_or(0, |c| c.1);
        if n == 0 {
            continue;
        }
        let w = n as f64 / total as f64 * 1000.0;
        rects.push_str(&format!(
            "<rect class=\"{state}\" x=\"{x:.1}\" y=\"0\" width=\"{w:.1}\" height=\"10\"><title>{state}: {n}</title></rect>"
        ));
        x += w;
    }
    format!(
        "<svg class=\"progress\" viewBox=\"0 0 1000 10\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"progress\">{rects}</svg>"
    )
}

/// A JSON object (run options, audit details) as labelled values, for a definition
/// list instead of raw JSON: `dry_run` becomes "dry run", lists are joined, nested
/// objects become `key: value` pairs, and null is a dash.
pub fn json_fields(value: &serde_json::Value) -> Vec<(String, String)> {
    match value.as_object() {
        Some(map) => map
            .iter()
            .map(|(k, v)| (k.replace('_', " "), json_value(v)))
            .collect(),
        None if value.is_null() => Vec::new(),
        None => vec![(String::new(), json_value(value))],
    }
}

fn json_value(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::Null => "–".into(),
        Value::Bool(true) => "yes".into(),
        Value::Bool(false) => "no".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) if items.is_empty() => "none".into(),
        Value::Array(items) => items.iter().map(json_value).collect::<Vec<_>>().join(", "),
        Value::Object(map) if map.is_empty() => "–".into(),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{}: {}", k.replace('_', " "), json_value(v)))
            .collect::<Vec<_>>()
            .join("; "),
    }
}
