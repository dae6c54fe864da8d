//! Global positions: `(transaction_id, id)` of an event, as one opaque string.
//!
//! The string is 32 lower-case hex digits (16 for the xid8, 16 for the id), so positions sort
//! as strings in global order and a client can compare them without parsing.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    pub transaction_id: u64,
    pub id: i64,
}

impl Position {
    pub const START: Position = Position {
        transaction_id: 0,
        id: 0,
    };
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}{:016x}", self.transaction_id, self.id)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a position: expected 32 hexadecimal digits")]
pub struct InvalidPosition;

impl FromStr for Position {
    type Err = InvalidPosition;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(InvalidPosition);
        }
        let transaction_id = u64::from_str_radix(&text[..16], 16).map_err(|_| InvalidPosition)?;
        let id = u64::from_str_radix(&text[16..], 16).map_err(|_| InvalidPosition)?;
        Ok(Position {
            transaction_id,
            id: i64::try_from(id).map_err(|_| InvalidPosition)?,
        })
    }
}

impl Serialize for Position {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Position {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_sort_as_strings() {
        let a = Position {
            transaction_id: 9,
            id: 300,
        };
        let b = Position {
            transaction_id: 10,
            id: 2,
        };
        assert!(a < b);
        assert!(a.to_string() < b.to_string());
        assert_eq!(a.to_string().parse::<Position>(), Ok(a));
        assert_eq!(a.to_string().len(), 32);
    }

    #[test]
    fn malformed_positions_are_rejected() {
        assert!("".parse::<Position>().is_err());
        assert!("zz".repeat(16).parse::<Position>().is_err());
        assert!("0".repeat(31).parse::<Position>().is_err());
        assert!(
            "f".repeat(32).parse::<Position>().is_err(),
            "id overflows i64"
        );
    }
}
