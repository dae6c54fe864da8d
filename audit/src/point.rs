//! A point in the event log as operators name it: an RFC 3339 time or a global position.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use platform::store::{Position, StoredEvent};

/// `--at`, `--from`, `--to`: a time (events recorded at or before it) or a position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Point {
    Time(DateTime<Utc>),
    Position(Position),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "'{0}' is neither an RFC 3339 time (2026-12-02T09:30:00Z) nor a position (32 hexadecimal digits)"
)]
pub struct InvalidPoint(pub String);

impl FromStr for Point {
    type Err = InvalidPoint;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Ok(position) = text.parse::<Position>() {
            return Ok(Point::Position(position));
        }
        DateTime::parse_from_rfc3339(text)
            .map(|time| Point::Time(time.with_timezone(&Utc)))
            .map_err(|_| InvalidPoint(text.to_string()))
    }
}

impl fmt::Display for Point {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Point::Time(time) => write!(f, "{}", time.to_rfc3339()),
            Point::Position(position) => write!(f, "{position}"),
        }
    }
}

impl Point {
    /// Whether `event` happened at or before this point.
    pub fn includes(&self, event: &StoredEvent) -> bool {
        match self {
            Point::Time(time) => event.recorded_at <= *time,
            Point::Position(position) => event.position <= *position,
        }
    }

    /// SQL condition on the `events` table: at or after (`from`) / at or before (`to`) this
    /// point. Only numbers and a formatted time are spliced in, never caller text.
    pub fn sql(&self, at_or_after: bool) -> String {
        let op = if at_or_after { ">=" } else { "<=" };
        match self {
            Point::Time(time) => format!(
                "recorded_at {op} '{}'::timestamptz",
                time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
            ),
            Point::Position(position) => format!(
                "(transaction_id, id) {op} ('{}'::xid8, {})",
                position.transaction_id, position.id
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_positions_parse_and_anything_else_is_refused() {
        assert_eq!(
            "2026-12-02T10:00:00+01:00".parse::<Point>().unwrap(),
            Point::Time("2026-12-02T09:00:00Z".parse().unwrap())
        );
        let position = "000000000000002a0000000000000007";
        assert_eq!(
            position.parse::<Point>().unwrap(),
            Point::Position(position.parse().unwrap())
        );
        for bad in ["", "yesterday", "2026-12-02", "'; DROP TABLE events; --"] {
            assert!(bad.parse::<Point>().is_err(), "{bad}");
        }
        assert_eq!(
            Point::Position(position.parse().unwrap()).sql(true),
            "(transaction_id, id) >= ('42'::xid8, 7)"
        );
    }
}
