//! Schemas of the values the domain checks where they enter (`domain::validation`): lengths,
//! characters, the shape of an e-mail address, time zones, the years of an instant, positions.
//! They are built from the domain's own limits, so a document says exactly what the server
//! accepts: a client generated from it, or a test that generates requests from it, sends
//! nothing that is refused for a reason the document does not state.
//!
//! Text is trimmed (Unicode `White_Space`) before it is checked, and the length limits count
//! characters of the trimmed text. The patterns therefore allow white space around the text
//! (tabs and line breaks too, since trimming removes them) and forbid, inside it, control
//! characters (one-line text) or the controls other than tab and line feed (long text; a
//! `\r\n` counts as a line feed), and the bidirectional overrides and isolates. Patterns are
//! ECMA-262 and read the same in Python and Rust.

use utoipa::openapi::schema::{
    AllOfBuilder, KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::RefOr;

/// What `str::trim` removes: the Unicode `White_Space` characters.
const WHITE_SPACE: &str =
    r"\t\n\u000B\u000C\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000";
/// The C0 and C1 control characters (`char::is_control`).
const CONTROLS: &str = r"\u0000-\u001F\u007F-\u009F";
/// The controls long text may not contain: all but tab and line feed.
const CONTROLS_BUT_TAB_AND_LF: &str = r"\u0000-\u0008\u000B-\u001F\u007F-\u009F";
/// Bidirectional embeddings, overrides and isolates.
const BIDI: &str = r"\u202A-\u202E\u2066-\u2069";

/// Whether text is one line (a name, a title) or may span lines (a description, a message).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    One,
    Many,
}

/// Longest text whose length a single pattern bounds: the validators schemathesis and others
/// use (Rust `regex`) refuse to compile a repetition of a character class much larger.
const MAX_BOUNDED_PATTERN: usize = 4_000;

/// The pattern of text that, trimmed (and with `\r\n` read as one line feed), has `min`
/// (0 or 1) to `max` characters of which none is forbidden; `max` is not checked when `None`.
pub fn text_pattern(lines: Lines, min: usize, max: Option<usize>) -> String {
    let (forbidden, element) = match lines {
        Lines::One => (CONTROLS, format!("[^{CONTROLS}{BIDI}]")),
        Lines::Many => (
            CONTROLS_BUT_TAB_AND_LF,
            format!(r"(?:[^{CONTROLS_BUT_TAB_AND_LF}{BIDI}]|\r\n)"),
        ),
    };
    let edge = format!("[^{forbidden}{BIDI}{WHITE_SPACE}]");
    trimmed(&edge, &element, min, max)
}

/// `^ws* (edge (element{0,max-2} edge)?)? ws*$`: text between white space that starts and
/// ends with an `edge` character, `min`..=`max` characters long.
fn trimmed(edge: &str, element: &str, min: usize, max: Option<usize>) -> String {
    let repeat = match max {
        Some(max) => format!("{{0,{}}}", max.saturating_sub(2)),
        None => "*".to_string(),
    };
    let text = format!("{edge}(?:{element}{repeat}{edge})?");
    let text = if min > 0 {
        text
    } else {
        format!("(?:{text})?")
    };
    format!("^[{WHITE_SPACE}]*{text}[{WHITE_SPACE}]*$")
}

/// A text schema: `min` (0 or 1) to `max` characters once trimmed, without forbidden
/// characters. The limit is the pattern's: `maxLength` would count the white space around
/// the text too, which the server trims before it counts.
pub fn text(lines: Lines, min: usize, max: usize, description: &str) -> Schema {
    let string = || ObjectBuilder::new().schema_type(Type::String);
    let schema = string()
        .min_length((min > 0).then_some(min))
        .description(Some(description));
    if max <= MAX_BOUNDED_PATTERN {
        return Schema::Object(
            schema
                .pattern(Some(text_pattern(lines, min, Some(max))))
                .build(),
        );
    }
    // Too long for one pattern: the characters in one, the length (of any characters) in
    // another.
    let length = trimmed(
        &format!("[^{WHITE_SPACE}]"),
        r"(?:\r\n|[\s\S])",
        min,
        Some(max),
    );
    Schema::AllOf(
        AllOfBuilder::new()
            .item(schema.pattern(Some(text_pattern(lines, min, None))))
            .item(string().pattern(Some(length)))
            .description(Some(description))
            .build(),
    )
}

/// `schema`, or an empty string, which the server reads as if the parameter were absent.
pub fn or_empty(schema: impl Into<RefOr<Schema>>) -> Schema {
    Schema::OneOf(
        OneOfBuilder::new()
            .item(schema)
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some([""]))
                    .description(Some("Empty: the same as leaving the parameter out.")),
            )
            .build(),
    )
}

/// Declares a schema type `$name` (a component of that name) whose schema is `$schema`, to
/// name in `value_type = $name` of a field or a parameter.
#[macro_export]
macro_rules! schema_type {
    ($(#[$doc:meta])* $name:ident => $schema:expr) => {
        $(#[$doc])*
        pub struct $name;

        impl ::utoipa::PartialSchema for $name {
            fn schema() -> ::utoipa::openapi::RefOr<::utoipa::openapi::Schema> {
                $schema.into()
            }
        }

        impl ::utoipa::ToSchema for $name {
            fn name() -> ::std::borrow::Cow<'static, str> {
                ::std::borrow::Cow::Borrowed(stringify!($name))
            }
        }
    };
}

use domain::meeting::{
    MAX_COMMENT_CHARS, MAX_DESCRIPTION_CHARS, MAX_LOCATION_CHARS, MAX_MESSAGE_CHARS,
    MAX_REASON_CHARS, MAX_TITLE_CHARS,
};
use domain::user::MAX_DISPLAY_NAME_CHARS;
use domain::{MAX_EMAIL_CHARS, MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS};

crate::schema_type!(
    /// A user's display name.
    DisplayName => text(Lines::One, 1, MAX_DISPLAY_NAME_CHARS,
        "Name shown to other users: one line, 1–100 characters once trimmed.")
);
crate::schema_type!(
    /// A meeting's title.
    Title => text(Lines::One, 1, MAX_TITLE_CHARS,
        "One line, 1–200 characters once trimmed.")
);
crate::schema_type!(
    /// A meeting's description.
    Description => text(Lines::Many, 0, MAX_DESCRIPTION_CHARS,
        "Up to 10 000 characters once trimmed; may span lines. Blank is the same as none.")
);
crate::schema_type!(
    /// A meeting's location.
    Location => text(Lines::One, 0, MAX_LOCATION_CHARS,
        "One line, up to 500 characters once trimmed. Blank is the same as none.")
);
crate::schema_type!(
    /// The comment of an answer to an invitation.
    Comment => text(Lines::Many, 0, MAX_COMMENT_CHARS,
        "Up to 1 000 characters once trimmed; may span lines. Blank is the same as none.")
);
crate::schema_type!(
    /// The reason of a cancellation.
    Reason => text(Lines::Many, 0, MAX_REASON_CHARS,
        "Up to 1 000 characters once trimmed; may span lines; shown to attendees. Blank is \
         the same as none.")
);
crate::schema_type!(
    /// A chat message.
    MessageText => text(Lines::Many, 1, MAX_MESSAGE_CHARS,
        "1–4 000 characters once trimmed; may span lines.")
);
crate::schema_type!(
    /// An e-mail address, as far as the server checks it.
    Email => email()
);
crate::schema_type!(
    /// A new password.
    Password => ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(MIN_PASSWORD_CHARS))
        .max_length(Some(MAX_PASSWORD_CHARS))
        .examples(["correct horse battery"])
        .description(Some(
            "8–128 characters. One of the 30 000 most common passwords (compared \
             case-insensitively) is refused with 422."
        ))
);
crate::schema_type!(
    /// An IANA time zone name.
    TimeZone => ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(domain::time_zone_names()))
        .examples(["Europe/Berlin"])
        .description(Some("An IANA time zone name (case matters), e.g. `Europe/Berlin`."))
);
crate::schema_type!(
    /// An instant the server accepts.
    Instant => instant()
);
crate::schema_type!(
    /// An optional time parameter: an [`Instant`], or empty (the same as leaving it out).
    OptionalInstant => or_empty(instant())
);
crate::schema_type!(
    /// An optional position parameter: a [`Position`], or empty (the same as leaving it out).
    OptionalPosition => or_empty(Position::schema())
);
crate::schema_type!(
    /// A global position.
    Position => ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(POSITION_PATTERN))
        .examples(["0000000000000309000000000000002a"])
        .description(Some(
            "A global position (opaque: 32 hexadecimal digits) as the API hands it out; \
             positions sort as strings in global order."
        ))
);

/// An e-mail address: the shape in one pattern, the length (254 once trimmed) in another.
fn email() -> Schema {
    let string = || ObjectBuilder::new().schema_type(Type::String);
    let part = format!("[^@{CONTROLS}{BIDI}{WHITE_SPACE}]");
    let shape = format!("^[{WHITE_SPACE}]*{part}+@{part}*\\.{part}*[{WHITE_SPACE}]*$");
    let length =
        format!("^[{WHITE_SPACE}]*[^{WHITE_SPACE}]{{3,{MAX_EMAIL_CHARS}}}[{WHITE_SPACE}]*$");
    Schema::AllOf(
        AllOfBuilder::new()
            .item(string().min_length(Some(3)).pattern(Some(shape)))
            .item(string().pattern(Some(length)))
            .examples(["ada@example.com"])
            .description(Some(
                "An e-mail address: at most 254 characters once trimmed, one `@` after a \
                 non-empty local part, a `.` in the domain, no white space or control \
                 characters. Compared case-insensitively.",
            ))
            .build(),
    )
}

/// What a position looks like: the transaction (16 hexadecimal digits), then the event's id
/// (16 more, a non-negative 64-bit number). Either case of hexadecimal digits is read.
pub const POSITION_PATTERN: &str = "^[0-9a-fA-F]{16}[0-7][0-9a-fA-F]{15}$";

/// An RFC 3339 time with offset in the years 1900–9999.
pub fn instant() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
        .pattern(Some("^(?:19[0-9]{2}|[2-9][0-9]{3})-"))
        .examples(["2027-03-29T09:00:00+02:00"])
        .description(Some(
            "RFC 3339 time with offset, from 1900-01-01T00:00:00Z to 9999-12-31T23:59:59Z.",
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The patterns say what `domain::validation` says (checked with the `regex` reading of
    /// the same ECMA-262 source that the documents publish).
    fn matches(pattern: &str, value: &str) -> bool {
        regex::Regex::new(pattern).unwrap().is_match(value)
    }

    #[test]
    fn text_patterns_accept_what_the_domain_accepts_and_refuse_the_rest() {
        let max = 12;
        let title = text_pattern(Lines::One, 1, Some(max));
        let location = text_pattern(Lines::One, 0, Some(max));
        let message = text_pattern(Lines::Many, 1, Some(max));
        let description = text_pattern(Lines::Many, 0, Some(max));
        let unbounded = text_pattern(Lines::Many, 0, None);
        let samples = [
            "Kick-off",
            " \t Kick-off \r\n",
            "a",
            "",
            "   ",
            "\u{b}\u{c}",
            "a\u{0}b",
            "a\nb",
            "a\tb",
            "a\r\nb",
            "a\rb",
            "a\u{85}b",
            "\u{85}a\u{85}",
            "a\u{202E}b",
            "שלום עולם",
            "👩\u{200D}💻 team",
            "line 1\r\n\tl 2",
            "\u{1c}a",
            "123456789012",
            "1234567890123",
            "\n\u{2000} 123456789012 \u{a0}",
            "1\r\n3\r\n5\r\n7\r\n9\r\n1\r\n",
            "1\r\n3\r\n5\r\n7\r\n9\r\n1\r\n3",
        ];
        for sample in samples {
            let one = domain::validate_text("f", sample, 1, max).is_ok();
            let optional_one = domain::validate_optional_text("f", Some(sample), max).is_ok();
            let many = domain::validate_long_text("f", sample, 1, max).is_ok();
            let optional_many = domain::validate_optional_long_text("f", Some(sample), max).is_ok();
            let any_length = domain::validate_optional_long_text("f", Some(sample), 99).is_ok();
            assert_eq!(matches(&title, sample), one, "title {sample:?}");
            assert_eq!(
                matches(&location, sample),
                optional_one,
                "location {sample:?}"
            );
            assert_eq!(matches(&message, sample), many, "message {sample:?}");
            assert_eq!(
                matches(&description, sample),
                optional_many,
                "description {sample:?}"
            );
            assert_eq!(
                matches(&unbounded, sample),
                any_length,
                "unbounded {sample:?}"
            );
        }
    }

    #[test]
    fn email_patterns_accept_what_the_domain_accepts_and_refuse_the_rest() {
        let Schema::AllOf(email) = email() else {
            panic!("an e-mail address is two patterns");
        };
        let patterns: Vec<String> = email
            .items
            .iter()
            .map(|item| match item {
                RefOr::T(Schema::Object(object)) => object.pattern.clone().unwrap(),
                _ => panic!("each part of an e-mail address is a pattern"),
            })
            .collect();
        let local = "a".repeat(MAX_EMAIL_CHARS - "@example.com".len());
        for sample in [
            "ada@example.com".to_string(),
            " Ada@Example.com\t".to_string(),
            "a@.".to_string(),
            "@example.com".to_string(),
            "ada@example".to_string(),
            "a@b@example.com".to_string(),
            "a da@example.com".to_string(),
            "a\u{0}@example.com".to_string(),
            format!("{local}@example.com"),
            format!(" {local}@example.com "),
            format!("{local}a@example.com"),
        ] {
            let accepted = domain::validate_email("email", &sample).is_ok();
            let matched = patterns.iter().all(|pattern| matches(pattern, &sample));
            assert_eq!(matched, accepted, "{sample:?}");
        }
    }

    #[test]
    fn positions_match_what_the_store_reads() {
        for (position, valid) in [
            ("0000000000000309000000000000002a", true),
            ("0000000000000309000000000000002A", true),
            ("ffffffffffffffff7fffffffffffffff", true),
            ("ffffffffffffffff8000000000000000", false),
            ("0000000000000309000000000000002", false),
        ] {
            assert_eq!(matches(POSITION_PATTERN, position), valid, "{position}");
            assert_eq!(
                position.parse::<crate::store::Position>().is_ok(),
                valid,
                "{position}"
            );
        }
    }
}
