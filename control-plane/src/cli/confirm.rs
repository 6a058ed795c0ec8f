//! Asking the operator to type a tenant's slug before something that cannot be undone.

use std::io::{BufRead, IsTerminal, Write};

use crate::{Error, Result};

/// Asks the operator to type the tenant's slug to go on with `action` ("a restore
/// replaces the tenant's data"); refuses when nobody can answer (stdin is not a terminal:
/// `--yes` then) and when the answer is not the slug. `what` is shown first.
pub fn by_slug(slug: &str, what: &str, action: &str) -> Result<()> {
    if !std::io::stdin().is_terminal() {
        return Err(Error::BadRequest(format!(
            "{action}: confirm with --yes when not at a terminal"
        )));
    }
    eprint!("{what}\nType the tenant's slug ({slug}) to go on: ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Error::BadRequest(format!("cannot read the answer: {e}")))?;
    if line.trim() != slug {
        return Err(Error::BadRequest(
            "not confirmed; nothing was changed".into(),
        ));
    }
    Ok(())
}
