//! How commands print: JSON for scripts, a human form otherwise.

/// Prints `value` as JSON, or the human form.
pub fn emit(json: bool, value: &serde_json::Value, human: impl FnOnce() -> String) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
    } else {
        println!("{}", human());
    }
}
