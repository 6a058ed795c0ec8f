//! Text PostgreSQL will not store: it refuses the NUL character in every text value (and
//! in jsonb). Input carrying one is the client's mistake and is refused at the edge, with
//! a 4xx; the checks here are shared by the tenant API and the owner API, and
//! [`is_refused_text`] lets the one place errors become responses recognise anything
//! that slipped past them.

use tokio_postgres::error::SqlState;

/// What a client is told when its input holds a NUL character.
pub const NUL_MESSAGE: &str = "text may not contain the NUL character (\\u0000)";

/// Whether well-formed JSON text holds a NUL character. JSON can carry one only as the
/// escape `\u0000` (a raw control character is a syntax error), and a backslash outside
/// a string is a syntax error too, so walking the escapes is exact. Call it on JSON that
/// has parsed.
pub fn json_has_nul(json: &[u8]) -> bool {
    let mut i = 0;
    while i < json.len() {
        if json[i] == b'\\' {
            if json.get(i + 1..i + 6) == Some(b"u0000".as_slice()) {
                return true;
            }
            // Skip the escaped character, so `\\u0000` (a backslash, then text) is not one.
            i += 2;
        } else {
            i += 1;
        }
    }
    false
}

/// Whether urlencoded text (a query string or a form body) decodes to a NUL character
/// anywhere: `%00`, or a raw NUL byte (which a URI cannot hold, but a body can).
pub fn urlencoded_has_nul(encoded: &[u8]) -> bool {
    encoded.contains(&0) || encoded.windows(3).any(|w| w == b"%00")
}

/// PostgreSQL refused a text value: `character_not_in_repertoire` (NUL in a text
/// parameter: "invalid byte sequence for encoding") or `untranslatable_character` (the
/// `\u0000` escape in jsonb, or text converted from it).
pub fn is_refused_text(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::CHARACTER_NOT_IN_REPERTOIRE
            || *c == SqlState::UNTRANSLATABLE_CHARACTER
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_escapes_are_found_and_escaped_backslashes_are_not() {
        assert!(json_has_nul(br#"{"a":"x\u0000y"}"#));
        assert!(json_has_nul(br#"{"a\u0000":1}"#));
        assert!(json_has_nul(br#"["\\\u0000"]"#));
        assert!(!json_has_nul(br#"{"a":"x\\u0000y"}"#));
        assert!(!json_has_nul(br#"{"a":"\u0001\u0020"}"#));
        assert!(!json_has_nul(br#"{"a":"\"u0000"}"#));
        assert!(!json_has_nul(b"{}"));
    }

    #[test]
    fn encoded_nuls_are_found() {
        assert!(urlencoded_has_nul(b"species=dog%00"));
        assert!(urlencoded_has_nul(b"email=a\0b"));
        assert!(!urlencoded_has_nul(b"species=100%2500"));
        assert!(!urlencoded_has_nul(b"species=dog"));
    }
}
