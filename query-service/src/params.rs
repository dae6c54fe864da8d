//! Parsing of query parameters shared by the routes: page sizes, opaque cursors, times and
//! positions, each failing with a 422 that names the parameter.
//!
//! Query structs take raw strings and parse them here, so that an error says `limit` or `from`
//! rather than "failed to deserialize query string".

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use platform::http::ApiError;
use platform::openapi::schemas;
use platform::store::Position;
use serde::de::DeserializeOwned;
use serde::Serialize;

platform::schema_type!(
    /// A search text (`q`), see [`search`].
    SearchText => schemas::text(
        schemas::Lines::One,
        0,
        MAX_SEARCH_CHARS,
        "One line, at most 200 characters once trimmed; blank is the same as none.",
    )
);

/// Page size when `limit` is absent (docs/api.md "Lists").
pub const DEFAULT_LIMIT: i64 = 50;
/// Largest accepted `limit`; larger values are refused (422), not clamped, so a client never
/// silently gets fewer items per page than it asked for.
pub const MAX_LIMIT: i64 = 500;

/// `limit`: 1–500, default 50.
pub fn limit(raw: Option<&str>) -> Result<i64, ApiError> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_LIMIT);
    };
    match raw.trim().parse::<i64>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(ApiError::invalid(
            "limit",
            format!("must be an integer from 1 to {MAX_LIMIT}"),
        )),
    }
}

/// Opaque cursors: base64url (no padding) of the JSON of the last item's sort key. Clients must
/// not build them; they only pass back `next_cursor`.
pub fn encode_cursor<K: Serialize>(key: &K) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(key).expect("BUG: cursor keys serialize"))
}

/// Decodes a cursor made by [`encode_cursor`]; anything else is a 422 on `cursor`.
pub fn decode_cursor<K: DeserializeOwned>(raw: Option<&str>) -> Result<Option<K>, ApiError> {
    let Some(raw) = raw.filter(|r| !r.is_empty()) else {
        return Ok(None);
    };
    URL_SAFE_NO_PAD
        .decode(raw.trim())
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::invalid(
                "cursor",
                "is not a cursor returned by this endpoint (pass next_cursor back unchanged)",
            )
        })
}

/// An RFC 3339 time in a query parameter. A `+` of the offset that arrived as a space (the
/// query-string encoding of an unescaped `+`) is accepted.
pub fn time(field: &str, raw: &str) -> Result<DateTime<Utc>, ApiError> {
    let raw = raw.trim();
    DateTime::parse_from_rfc3339(raw)
        .or_else(|e| {
            if raw.contains(' ') {
                DateTime::parse_from_rfc3339(&raw.replace(' ', "+"))
            } else {
                Err(e)
            }
        })
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            ApiError::invalid(
                field,
                "must be an RFC 3339 time with offset, e.g. 2027-03-29T09:00:00Z",
            )
        })
        .and_then(|t| instant(field, t))
}

/// `at` if it lies in the years the system accepts (1900–9999), else a 422 on `field`.
pub fn instant(field: &str, at: DateTime<Utc>) -> Result<DateTime<Utc>, ApiError> {
    domain::validate_instant(field, at)
        .map(|()| at)
        .map_err(ApiError::from)
}

/// Longest accepted search text, in characters.
pub const MAX_SEARCH_CHARS: usize = 200;

/// A search text (`q`): trimmed, at most [`MAX_SEARCH_CHARS`], no control characters; `None`
/// when absent or blank.
pub fn search(field: &str, raw: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    domain::validate_text(field, raw, 0, MAX_SEARCH_CHARS)
        .map(|q| (!q.is_empty()).then_some(q))
        .map_err(ApiError::from)
}

/// An optional time parameter.
pub fn optional_time(field: &str, raw: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    raw.filter(|r| !r.is_empty())
        .map(|raw| time(field, raw))
        .transpose()
}

/// A required time parameter.
pub fn required_time(field: &str, raw: Option<&str>) -> Result<DateTime<Utc>, ApiError> {
    optional_time(field, raw)?.ok_or_else(|| ApiError::invalid(field, "is required"))
}

/// A global position in a query parameter (`after`).
pub fn position(field: &str, raw: Option<&str>) -> Result<Option<Position>, ApiError> {
    raw.filter(|r| !r.is_empty())
        .map(|raw| {
            raw.trim().parse::<Position>().map_err(|_| {
                ApiError::invalid(
                    field,
                    "must be a position (32 hexadecimal digits) as returned by the API",
                )
            })
        })
        .transpose()
}

/// Checks `from < to` and `to - from <= max`.
pub fn range(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    max: chrono::Duration,
) -> Result<(), ApiError> {
    instant("from", from)?;
    instant("to", to)?;
    if to <= from {
        return Err(ApiError::invalid("to", "must be after from"));
    }
    if to - from > max {
        return Err(ApiError::invalid(
            "to",
            format!(
                "the range from..to may span at most {} days",
                max.num_days()
            ),
        ));
    }
    Ok(())
}

/// Escapes `%`, `_` and `\` so user text matches literally inside a LIKE pattern.
pub fn like_escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_outside_1900_to_9999_are_refused_by_name() {
        assert!(time("from", "1900-01-01T00:00:00Z").is_ok());
        assert!(time("from", "9999-12-31T23:59:59+00:00").is_ok());
        for bad in [
            "1899-12-31T23:59:59Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59-01:00",
        ] {
            assert!(time("from", bad).is_err(), "{bad}");
        }
        let early = "1800-01-01T00:00:00Z".parse().unwrap();
        let late = "2026-01-01T00:00:00Z".parse().unwrap();
        assert!(range(early, late, chrono::Duration::days(1_000_000)).is_err());
    }

    #[test]
    fn search_text_is_trimmed_bounded_and_free_of_controls() {
        assert_eq!(search("q", Some(" ada ")).unwrap().as_deref(), Some("ada"));
        assert_eq!(search("q", Some("  ")).unwrap(), None);
        assert_eq!(search("q", None).unwrap(), None);
        assert!(search("q", Some("a\u{0}")).is_err());
        assert!(search("q", Some(&"a".repeat(MAX_SEARCH_CHARS + 1))).is_err());
    }

    #[test]
    fn limits_default_to_50_and_refuse_0_and_501() {
        assert_eq!(limit(None).unwrap(), 50);
        assert_eq!(limit(Some("500")).unwrap(), 500);
        assert!(limit(Some("0")).is_err());
        assert!(limit(Some("501")).is_err());
        assert!(limit(Some("ten")).is_err());
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let key = ("2027-01-01T00:00:00Z".to_string(), 7u32);
        let cursor = encode_cursor(&key);
        assert_eq!(
            decode_cursor::<(String, u32)>(Some(&cursor)).unwrap(),
            Some(key)
        );
        assert!(decode_cursor::<(String, u32)>(Some("not a cursor!")).is_err());
        assert!(decode_cursor::<(String, u32)>(Some(&encode_cursor(&"x"))).is_err());
        assert_eq!(decode_cursor::<(String, u32)>(None).unwrap(), None);
    }

    #[test]
    fn times_accept_offsets_and_a_plus_decoded_as_space() {
        let expected = time("from", "2027-03-29T07:00:00Z").unwrap();
        assert_eq!(time("from", "2027-03-29T09:00:00+02:00").unwrap(), expected);
        assert_eq!(time("from", "2027-03-29T09:00:00 02:00").unwrap(), expected);
        assert!(time("from", "2027-03-29").is_err());
    }

    #[test]
    fn like_patterns_are_escaped() {
        assert_eq!(like_escape(r"50%_a\b"), r"50\%\_a\\b");
    }
}
