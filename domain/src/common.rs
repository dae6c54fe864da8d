//! Building blocks shared by every aggregate: who acts ([`Actor`], [`Role`]),
//! how a command is refused ([`DomainError`], [`FieldError`]) and the input
//! validation helpers used by more than one aggregate.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Authorization role of a user; admins may act on other users' resources.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Regular user (the role every registration starts with).
    #[default]
    Member,
    /// Operator-level user allowed to manage others.
    Admin,
}

impl Role {
    /// The wire/storage name of the role, identical to its serde form.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Returned when a string names no known [`Role`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role '{0}' (expected 'member' or 'admin')")]
pub struct ParseRoleError(pub String);

impl FromStr for Role {
    type Err = ParseRoleError;

    /// Parses "member" / "admin" (surrounding whitespace and case ignored).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "member" => Ok(Role::Member),
            "admin" => Ok(Role::Admin),
            _ => Err(ParseRoleError(s.to_string())),
        }
    }
}

/// The authenticated principal issuing a command; every rule about "who may
/// do this" is decided from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Actor {
    /// Id of the acting user.
    pub user_id: Uuid,
    /// Role the acting user held when authenticated.
    pub role: Role,
}

impl Actor {
    /// Builds an actor from its parts.
    pub fn new(user_id: Uuid, role: Role) -> Self {
        Self { user_id, role }
    }

    /// Whether the actor may bypass ownership checks.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// The pseudo-actor used by the operator CLI: nil id with admin rights.
    pub fn operator() -> Self {
        Self {
            user_id: Uuid::nil(),
            role: Role::Admin,
        }
    }
}

/// One rejected input field, reported to API clients so they can point at it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// JSON name of the offending field (e.g. `attendees[3].user_id`).
    pub field: String,
    /// Human readable reason.
    pub message: String,
}

impl FieldError {
    /// Builds a field error.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Why a command was refused; each variant maps onto one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The input is malformed (HTTP 422); carries every bad field at once.
    #[error("invalid input")]
    Validation(Vec<FieldError>),
    /// The aggregate or addressed sub-resource does not exist or is not
    /// visible to the actor (HTTP 404).
    #[error("{0}")]
    NotFound(String),
    /// The actor can see the resource but may not do this (HTTP 403).
    #[error("{0}")]
    Forbidden(String),
    /// The current state forbids the command (HTTP 409).
    #[error("{0}")]
    Conflict(String),
    /// A dependency needed to decide is unavailable (HTTP 503).
    #[error("dependency unavailable: {0}")]
    Unavailable(String),
}

impl DomainError {
    /// Shorthand for a validation error on a single field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError::new(field, message).into()
    }

    /// Shorthand for [`DomainError::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        DomainError::NotFound(message.into())
    }

    /// Shorthand for [`DomainError::Forbidden`].
    pub fn forbidden(message: impl Into<String>) -> Self {
        DomainError::Forbidden(message.into())
    }

    /// Shorthand for [`DomainError::Conflict`].
    pub fn conflict(message: impl Into<String>) -> Self {
        DomainError::Conflict(message.into())
    }

    /// The field errors of a validation error (empty for other variants).
    pub fn field_errors(&self) -> &[FieldError] {
        match self {
            DomainError::Validation(errors) => errors,
            _ => &[],
        }
    }
}

impl From<FieldError> for DomainError {
    /// A single bad field: a validation error.
    fn from(error: FieldError) -> Self {
        DomainError::Validation(vec![error])
    }
}

/// Collects field errors so a command reports every bad field in one go.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Violations(Vec<FieldError>);

impl Violations {
    /// An empty collection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one field error.
    pub fn push(&mut self, error: FieldError) {
        self.0.push(error);
    }

    /// Records the error of `result`, if any, and hands back its value.
    pub fn check<T>(&mut self, result: Result<T, FieldError>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.0.push(error);
                None
            }
        }
    }

    /// The value a partial update leaves: `given` checked by `validate` (its error recorded),
    /// or `current` when nothing was given.
    pub fn update<I, T: Clone + Default>(
        &mut self,
        given: Option<I>,
        current: &T,
        validate: impl FnOnce(I) -> Result<T, FieldError>,
    ) -> T {
        match given {
            Some(value) => self.check(validate(value)).unwrap_or_default(),
            None => current.clone(),
        }
    }

    /// Whether nothing has been recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(())` when empty, else a [`DomainError::Validation`] with all errors.
    pub fn into_result(self) -> Result<(), DomainError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(DomainError::Validation(self.0))
        }
    }
}

/// `text` in double quotes for a one-line summary: at most 60 characters (then `…`), control
/// characters (line breaks included) shown as spaces.
pub fn quote_short(text: &str) -> String {
    const MAX: usize = 60;
    let mut out = String::from("\"");
    for (i, c) in text.chars().enumerate() {
        if i == MAX {
            out.push('…');
            break;
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validation::validate_text;

    #[test]
    fn role_parses_and_prints_its_wire_name() {
        assert_eq!("member".parse::<Role>(), Ok(Role::Member));
        assert_eq!(" Admin ".parse::<Role>(), Ok(Role::Admin));
        assert!("root".parse::<Role>().is_err());
        assert_eq!(Role::Admin.as_str(), "admin");
        assert_eq!(Role::Member.as_str(), "member");
        assert_eq!(serde_json::to_string(&Role::Admin).unwrap(), "\"admin\"");
        assert_eq!(Role::default(), Role::Member);
    }

    #[test]
    fn operator_is_a_nil_admin() {
        let op = Actor::operator();
        assert!(op.user_id.is_nil());
        assert!(op.is_admin());
        assert!(!Actor::new(Uuid::new_v4(), Role::Member).is_admin());
    }

    #[test]
    fn invalid_builds_a_single_field_validation_error() {
        assert_eq!(
            DomainError::invalid("title", "bad"),
            DomainError::Validation(vec![FieldError::new("title", "bad")])
        );
        assert_eq!(DomainError::invalid("a", "b").to_string(), "invalid input");
        assert_eq!(
            DomainError::Unavailable("db".into()).to_string(),
            "dependency unavailable: db"
        );
    }

    #[test]
    fn a_partial_update_keeps_what_is_not_given_and_checks_what_is() {
        let mut v = Violations::new();
        let current = "old".to_string();
        let trimmed = |s: &str| validate_text("name", s, 1, 5);
        assert_eq!(v.update(None, &current, trimmed), "old");
        assert_eq!(v.update(Some(" new "), &current, trimmed), "new");
        assert!(v.is_empty());
        assert_eq!(v.update(Some("too long"), &current, trimmed), "");
        assert_eq!(
            v.into_result(),
            Err(DomainError::invalid("name", "must be at most 5 characters"))
        );
    }

    #[test]
    fn violations_collect_every_error() {
        let mut v = Violations::new();
        assert_eq!(v.check(Ok::<_, FieldError>(1)), Some(1));
        v.check::<()>(Err(FieldError::new("a", "x")));
        v.push(FieldError::new("b", "y"));
        assert_eq!(
            v.into_result(),
            Err(DomainError::Validation(vec![
                FieldError::new("a", "x"),
                FieldError::new("b", "y")
            ]))
        );
        assert_eq!(Violations::new().into_result(), Ok(()));
    }

    #[test]
    fn quote_short_keeps_a_summary_on_one_bounded_line() {
        assert_eq!(quote_short("Stand-up"), "\"Stand-up\"");
        assert_eq!(quote_short("a\nb\tc"), "\"a b c\"");
        let long = "ü".repeat(100);
        assert_eq!(quote_short(&long), format!("\"{}…\"", "ü".repeat(60)));
    }
}
