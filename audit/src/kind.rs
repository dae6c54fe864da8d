//! The aggregate types of the log, as the audit commands and routes name them.

use std::fmt;
use std::str::FromStr;

use cqrs_es::Aggregate;

/// `meeting` or `user`, as the `aggregate_type` column names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Meeting,
    User,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown aggregate type '{0}' (expected 'meeting' or 'user')")]
pub struct UnknownKind(pub String);

impl Kind {
    pub const ALL: [Kind; 2] = [Kind::Meeting, Kind::User];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Meeting => domain::Meeting::TYPE,
            Kind::User => domain::User::TYPE,
        }
    }
}

impl FromStr for Kind {
    type Err = UnknownKind;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Kind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| UnknownKind(text.to_string()))
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
