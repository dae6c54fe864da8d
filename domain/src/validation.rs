//! Checks of the values clients send, shared by every aggregate and by the edges that
//! refuse bad input before it costs anything (a query parameter, a password before it is
//! hashed): lengths, characters, e-mail shape, time zones, instants, common passwords.

use crate::common::FieldError;

/// Maximum length of an e-mail address (RFC 5321 path limit).
pub const MAX_EMAIL_CHARS: usize = 254;
/// Minimum password length, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Maximum password length, in characters.
pub const MAX_PASSWORD_CHARS: usize = 128;

/// Trims `tz` and checks it is an IANA time zone name (e.g. `Europe/Berlin`, `UTC`);
/// returns it trimmed.
pub fn validate_time_zone(field: &str, tz: &str) -> Result<String, FieldError> {
    let tz = tz.trim();
    tz.parse::<chrono_tz::Tz>()
        .map(|_| tz.to_string())
        .map_err(|_| FieldError::new(field, "must be an IANA time zone name"))
}

/// Every name [`validate_time_zone`] accepts (case matters), for documents that list them.
pub fn time_zone_names() -> impl Iterator<Item = &'static str> {
    chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name())
}

/// The case-insensitive uniqueness key of an e-mail address (trimmed, lowercased).
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Checks the shape of an e-mail address and returns it trimmed (original case).
///
/// Accepted: at most 254 characters, no whitespace, exactly one `@` with a
/// non-empty local part and a domain containing a `.`.
pub fn validate_email(field: &str, email: &str) -> Result<String, FieldError> {
    let email = email.trim();
    check_length(field, email, 1, MAX_EMAIL_CHARS)?;
    check_characters(field, email, Lines::One)?;
    let well_formed = !email.chars().any(char::is_whitespace)
        && email.matches('@').count() == 1
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'));
    if well_formed {
        Ok(email.to_string())
    } else {
        Err(FieldError::new(field, "must be a valid e-mail address"))
    }
}

/// Checks that a password has 8..=128 characters (counted as chars, not bytes) and is not
/// one of the 30,000 most common passwords (ASVS 6.2.4; `domain/data/README.md` says where
/// the list comes from), compared case-insensitively.
pub fn validate_password(field: &str, password: &str) -> Result<(), FieldError> {
    check_length(field, password, MIN_PASSWORD_CHARS, MAX_PASSWORD_CHARS)?;
    if is_common_password(password) {
        return Err(FieldError::new(
            field,
            "is one of the most commonly used passwords; choose another",
        ));
    }
    Ok(())
}

/// Whether `password`, lower-cased, is on the shipped list of common passwords.
pub fn is_common_password(password: &str) -> bool {
    static COMMON: std::sync::LazyLock<std::collections::HashSet<&'static str>> =
        std::sync::LazyLock::new(|| {
            include_str!("../data/common-passwords.txt")
                .lines()
                .collect()
        });
    COMMON.contains(password.to_lowercase().as_str())
}

/// Trims a one-line `value` (a title, a name) and checks it has `min..=max` characters and
/// no control or bidirectional-override character; returns the trimmed text.
pub fn validate_text(
    field: &str,
    value: &str,
    min: usize,
    max: usize,
) -> Result<String, FieldError> {
    let trimmed = value.trim();
    check_length(field, trimmed, min, max)?;
    check_characters(field, trimmed, Lines::One)?;
    Ok(trimmed.to_string())
}

/// Like [`validate_text`] for text that may span lines (a description, a message): newlines
/// and tabs are kept, `\r\n` becomes `\n`.
pub fn validate_long_text(
    field: &str,
    value: &str,
    min: usize,
    max: usize,
) -> Result<String, FieldError> {
    let normalized = value.trim().replace("\r\n", "\n");
    check_length(field, &normalized, min, max)?;
    check_characters(field, &normalized, Lines::Many)?;
    Ok(normalized)
}

/// Whether a text may span lines.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Lines {
    One,
    Many,
}

/// Refuses what no reader should get from another user's text: NUL (which PostgreSQL's
/// jsonb also refuses, so it would stop a projection), the other C0 and C1 controls
/// (newline and tab allowed in long text), and the bidirectional embeddings, overrides and
/// isolates that make text display differently from what it says (CVE-2021-42574).
fn check_characters(field: &str, value: &str, lines: Lines) -> Result<(), FieldError> {
    let allowed = |c: char| lines == Lines::Many && (c == '\n' || c == '\t');
    match value.chars().find(|&c| {
        (c.is_control() && !allowed(c))
            || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    }) {
        None => Ok(()),
        Some(c) if c.is_control() => Err(FieldError::new(
            field,
            format!(
                "must not contain control characters (found U+{:04X})",
                c as u32
            ),
        )),
        Some(c) => Err(FieldError::new(
            field,
            format!(
                "must not contain bidirectional override characters (found U+{:04X})",
                c as u32
            ),
        )),
    }
}

/// The instants a client may send, `[1900-01-01, 10000-01-01)` UTC: PostgreSQL, iCalendar
/// and JavaScript all represent them exactly, so a value in range cannot stop a projection.
pub fn instant_range() -> std::ops::Range<chrono::DateTime<chrono::Utc>> {
    use chrono::TimeZone;
    let earliest = chrono::Utc.with_ymd_and_hms(1900, 1, 1, 0, 0, 0);
    let end = chrono::Utc.with_ymd_and_hms(10_000, 1, 1, 0, 0, 0);
    earliest.single().expect("BUG: a valid date")..end.single().expect("BUG: a valid date")
}

/// Checks that `at` lies in the years 1900–9999 (see [`instant_range`]).
pub fn validate_instant(field: &str, at: chrono::DateTime<chrono::Utc>) -> Result<(), FieldError> {
    if instant_range().contains(&at) {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            "must be between 1900-01-01T00:00:00Z and 9999-12-31T23:59:59Z",
        ))
    }
}

/// Checks that `value` has `min..=max` characters (chars, not bytes); the one wording of
/// every length error.
fn check_length(field: &str, value: &str, min: usize, max: usize) -> Result<(), FieldError> {
    let len = value.chars().count();
    if len < min {
        if min <= 1 {
            Err(FieldError::new(field, "must not be empty"))
        } else {
            Err(FieldError::new(
                field,
                format!("must be at least {min} characters"),
            ))
        }
    } else if len > max {
        Err(FieldError::new(
            field,
            format!("must be at most {max} characters"),
        ))
    } else {
        Ok(())
    }
}

/// Trims an optional one-line text, checks it as [`validate_text`] does with at most `max`
/// characters and turns an empty result into `None`.
pub fn validate_optional_text(
    field: &str,
    value: Option<&str>,
    max: usize,
) -> Result<Option<String>, FieldError> {
    let text = value
        .map(|text| validate_text(field, text, 0, max))
        .transpose()?;
    Ok(text.filter(|text| !text.is_empty()))
}

/// [`validate_optional_text`] for text that may span lines ([`validate_long_text`]).
pub fn validate_optional_long_text(
    field: &str,
    value: Option<&str>,
    max: usize,
) -> Result<Option<String>, FieldError> {
    let text = value
        .map(|text| validate_long_text(field, text, 0, max))
        .transpose()?;
    Ok(text.filter(|text| !text.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_zone_validation_accepts_iana_names_only() {
        assert!(validate_time_zone("tz", "Europe/Berlin").is_ok());
        assert!(validate_time_zone("tz", "UTC").is_ok());
        assert_eq!(
            validate_time_zone("tz", "Mars/Olympus").unwrap_err().field,
            "tz"
        );
        assert!(validate_time_zone("tz", "").is_err());
    }

    #[test]
    fn normalize_email_trims_and_lowercases() {
        assert_eq!(normalize_email("  Alice@Example.COM "), "alice@example.com");
    }

    #[test]
    fn email_validation_accepts_plain_addresses_and_rejects_malformed_ones() {
        assert_eq!(
            validate_email("email", " Alice@Example.com ").unwrap(),
            "Alice@Example.com"
        );
        for bad in [
            "",
            "alice",
            "@example.com",
            "alice@example",
            "a@b@example.com",
            "al ice@example.com",
        ] {
            assert!(validate_email("email", bad).is_err(), "{bad:?} accepted");
        }
        let local = "a".repeat(254 - "@example.com".len());
        assert!(validate_email("email", &format!("{local}@example.com")).is_ok());
        assert!(validate_email("email", &format!("{local}a@example.com")).is_err());
    }

    #[test]
    fn password_validation_counts_characters_not_bytes() {
        assert!(validate_password("password", &"a".repeat(8)).is_ok());
        assert!(validate_password("password", &"a".repeat(7)).is_err());
        assert!(validate_password("password", &"a".repeat(128)).is_ok());
        assert!(validate_password("password", &"a".repeat(129)).is_err());
        // 8 multi-byte characters are 8 characters.
        assert!(validate_password("password", &"é".repeat(8)).is_ok());
    }

    #[test]
    fn the_most_common_passwords_are_refused_whatever_their_case() {
        for common in [
            "password",
            "12345678",
            "Iloveyou1",
            "QWERTYUIOP",
            "baseball",
        ] {
            let error = validate_password("password", common).unwrap_err();
            assert!(error.message.contains("commonly used"), "{common}: {error}");
        }
        assert!(validate_password("password", "correct horse battery staple").is_ok());
        assert!(include_str!("../data/common-passwords.txt").lines().count() >= 10_000);
    }

    #[test]
    fn one_line_text_refuses_controls_and_bidi_overrides() {
        for bad in [
            "a\u{0}b",
            "a\nb",
            "a\tb",
            "a\u{7f}b",
            "a\u{85}b",
            "a\u{9b}b",
            "a\u{202E}b",
            "a\u{2066}b",
        ] {
            let error = validate_text("title", bad, 1, 50).unwrap_err();
            assert_eq!(error.field, "title", "{bad:?}");
            assert!(error.message.contains("U+"), "{bad:?}: {}", error.message);
        }
        // Right-to-left scripts and emoji (with their joiners) are text, not controls.
        for good in ["שלום עולם", "مرحبا", "👩\u{200D}💻 team", "Zoë"] {
            assert_eq!(validate_text("title", good, 1, 50).unwrap(), good);
        }
        assert!(validate_email("email", "a\u{0}@example.com").is_err());
    }

    #[test]
    fn long_text_keeps_newlines_and_tabs_and_refuses_other_controls() {
        assert_eq!(
            validate_long_text("text", " line 1\r\n\tline 2 ", 1, 50).unwrap(),
            "line 1\n\tline 2"
        );
        for bad in ["a\u{0}b", "a\rb", "a\u{1b}[31mb", "a\u{202D}b"] {
            assert!(validate_long_text("text", bad, 1, 50).is_err(), "{bad:?}");
            assert!(
                validate_optional_long_text("text", Some(bad), 50).is_err(),
                "{bad:?}"
            );
        }
        assert_eq!(
            validate_optional_long_text("text", Some(" \n "), 50),
            Ok(None)
        );
    }

    #[test]
    fn instants_are_accepted_from_1900_to_the_end_of_9999() {
        use chrono::{TimeZone, Utc};
        let at = |y, mo, d, h, mi, s| Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap();
        assert!(validate_instant("at", at(1900, 1, 1, 0, 0, 0)).is_ok());
        assert!(validate_instant("at", at(9999, 12, 31, 23, 59, 59)).is_ok());
        for bad in [
            at(1899, 12, 31, 23, 59, 59),
            at(10_000, 1, 1, 0, 0, 0),
            at(-5000, 1, 1, 0, 0, 0),
        ] {
            assert_eq!(
                validate_instant("at", bad).unwrap_err().field,
                "at",
                "{bad}"
            );
        }
    }

    #[test]
    fn optional_text_becomes_none_when_blank() {
        assert_eq!(validate_optional_text("d", Some("   "), 5), Ok(None));
        assert_eq!(
            validate_optional_text("d", Some(" hi "), 5),
            Ok(Some("hi".into()))
        );
        assert!(validate_optional_text("d", Some("123456"), 5).is_err());
        assert_eq!(validate_optional_text("d", None, 5), Ok(None));
    }
}
