//! The `User` aggregate: registration, profile, password changes, roles and
//! deactivation of an account.
//!
//! Passwords are validated here but never stored in events; the application
//! keeps the password hash outside the event stream.

use chrono::NaiveTime;
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::common::{Actor, DomainError, FieldError, Role, Violations};
use crate::validation::{validate_email, validate_password, validate_text, validate_time_zone};

#[cfg(test)]
mod tests;

/// Current schema version of [`UserEvent::UserRegistered`]; v1.0 payloads are
/// upcast by [`crate::upcasters::upcasters`].
pub const USER_REGISTERED_VERSION: &str = "2.0";
/// Schema version of every other user event.
pub const USER_EVENT_VERSION: &str = "1.0";
/// Maximum length of a display name, in characters.
pub const MAX_DISPLAY_NAME_CHARS: usize = 100;
/// Time zone given to users who register without one.
pub const DEFAULT_TIME_ZONE: &str = "UTC";

/// Day of the week, as used in [`WorkingHours`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

impl From<Weekday> for chrono::Weekday {
    fn from(day: Weekday) -> Self {
        match day {
            Weekday::Mon => chrono::Weekday::Mon,
            Weekday::Tue => chrono::Weekday::Tue,
            Weekday::Wed => chrono::Weekday::Wed,
            Weekday::Thu => chrono::Weekday::Thu,
            Weekday::Fri => chrono::Weekday::Fri,
            Weekday::Sat => chrono::Weekday::Sat,
            Weekday::Sun => chrono::Weekday::Sun,
        }
    }
}

impl From<chrono::Weekday> for Weekday {
    fn from(day: chrono::Weekday) -> Self {
        match day {
            chrono::Weekday::Mon => Weekday::Mon,
            chrono::Weekday::Tue => Weekday::Tue,
            chrono::Weekday::Wed => Weekday::Wed,
            chrono::Weekday::Thu => Weekday::Thu,
            chrono::Weekday::Fri => Weekday::Fri,
            chrono::Weekday::Sat => Weekday::Sat,
            chrono::Weekday::Sun => Weekday::Sun,
        }
    }
}

/// When a user is usually available, so schedulers can pick sensible slots.
///
/// `start` and `end` are "HH:MM" (24 h) in the user's own time zone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkingHours {
    /// Working days; non-empty, no duplicates.
    pub days: Vec<Weekday>,
    /// First working minute, "HH:MM".
    pub start: String,
    /// End of the working day, "HH:MM", after `start`.
    pub end: String,
}

impl WorkingHours {
    /// Parses `start` as a time of day, if well formed.
    pub fn start_time(&self) -> Option<NaiveTime> {
        parse_hh_mm(&self.start)
    }

    /// Parses `end` as a time of day, if well formed.
    pub fn end_time(&self) -> Option<NaiveTime> {
        parse_hh_mm(&self.end)
    }

    /// Every problem with these working hours, with fields prefixed by `field`.
    pub fn validate(&self, field: &str) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if self.days.is_empty() {
            errors.push(FieldError::new(
                format!("{field}.days"),
                "must contain at least one day",
            ));
        }
        for (i, day) in self.days.iter().enumerate() {
            if self.days[..i].contains(day) {
                errors.push(FieldError::new(
                    format!("{field}.days[{i}]"),
                    "duplicate day",
                ));
            }
        }
        let start = self.start_time();
        let end = self.end_time();
        if start.is_none() {
            errors.push(FieldError::new(
                format!("{field}.start"),
                "must be a time of day as HH:MM",
            ));
        }
        if end.is_none() {
            errors.push(FieldError::new(
                format!("{field}.end"),
                "must be a time of day as HH:MM",
            ));
        }
        if let (Some(start), Some(end)) = (start, end) {
            if start >= end {
                errors.push(FieldError::new(
                    format!("{field}.end"),
                    "must be after start",
                ));
            }
        }
        errors
    }
}

/// A registration's values, checked and normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub email: String,
    pub display_name: String,
    pub time_zone: String,
}

/// Checks every field of a registration at once (all bad fields reported together). The
/// command side calls it before hashing the password, so an invalid request costs no
/// argon2 work; the aggregate calls it again when deciding.
pub fn validate_registration(
    email: &str,
    password: &str,
    display_name: &str,
    time_zone: Option<&str>,
) -> Result<Registration, DomainError> {
    let mut violations = Violations::new();
    let email = violations.check(validate_email("email", email));
    violations.check(validate_password("password", password));
    let display_name = violations.check(validate_display_name(display_name));
    let time_zone = violations.check(validate_time_zone(
        "time_zone",
        time_zone.unwrap_or(DEFAULT_TIME_ZONE),
    ));
    violations.into_result()?;
    Ok(Registration {
        email: email.expect("BUG: email validated"),
        display_name: display_name.expect("BUG: display name validated"),
        time_zone: time_zone.expect("BUG: time zone validated"),
    })
}

/// A display name, trimmed, 1..=100 characters.
fn validate_display_name(name: &str) -> Result<String, FieldError> {
    validate_text("display_name", name, 1, MAX_DISPLAY_NAME_CHARS)
}

fn parse_hh_mm(value: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(value, "%H:%M").ok()
}

/// Commands accepted by the [`User`] aggregate.
#[derive(Debug, Clone, PartialEq)]
pub enum UserCommand {
    /// Create the account (self-service sign-up or operator).
    Register {
        /// Id chosen by the application for the new user.
        user_id: Uuid,
        /// E-mail address; uniqueness is enforced by the application.
        email: String,
        /// Plain password, validated only; never part of an event.
        password: String,
        /// Name shown to other users.
        display_name: String,
        /// IANA time zone; `UTC` when absent.
        time_zone: Option<String>,
    },
    /// Change parts of one's own profile; `None` keeps a field as is.
    ChangeProfile {
        /// Who asks.
        actor: Actor,
        /// New display name.
        display_name: Option<String>,
        /// New IANA time zone.
        time_zone: Option<String>,
        /// `Some(None)` clears the working hours, `Some(Some(..))` sets them.
        working_hours: Option<Option<WorkingHours>>,
    },
    /// Change one's own password (validated only; the hash lives elsewhere).
    ChangePassword {
        /// Who asks.
        actor: Actor,
        /// The new plain password.
        new_password: String,
    },
    /// Grant or revoke admin rights (admins only).
    ChangeRole {
        /// Who asks.
        actor: Actor,
        /// The role to hold from now on.
        role: Role,
    },
    /// Close the account (the user themself or an admin).
    Deactivate {
        /// Who asks.
        actor: Actor,
    },
}

/// Facts recorded about a user. Serialized with serde's default external
/// tagging (`{"VariantName": {...}}`), which the event store relies on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum UserEvent {
    /// The account was created (schema [`USER_REGISTERED_VERSION`]).
    UserRegistered {
        /// Id of the new user.
        user_id: Uuid,
        /// E-mail address, trimmed, original case.
        email: String,
        /// Trimmed display name.
        display_name: String,
        /// IANA time zone.
        time_zone: String,
        /// Initial role (always member today).
        role: Role,
    },
    /// The profile changed; carries the full new profile.
    ProfileChanged {
        /// Display name after the change.
        display_name: String,
        /// Time zone after the change.
        time_zone: String,
        /// Working hours after the change.
        working_hours: Option<WorkingHours>,
    },
    /// The password was changed (the hash itself is stored elsewhere).
    PasswordChanged {},
    /// The user's role changed.
    RoleChanged {
        /// The new role.
        role: Role,
    },
    /// The account was closed.
    UserDeactivated {
        /// Who closed it.
        by: Uuid,
    },
}

impl DomainEvent for UserEvent {
    fn event_type(&self) -> String {
        match self {
            UserEvent::UserRegistered { .. } => "UserRegistered",
            UserEvent::ProfileChanged { .. } => "ProfileChanged",
            UserEvent::PasswordChanged {} => "PasswordChanged",
            UserEvent::RoleChanged { .. } => "RoleChanged",
            UserEvent::UserDeactivated { .. } => "UserDeactivated",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        match self {
            UserEvent::UserRegistered { .. } => USER_REGISTERED_VERSION,
            _ => USER_EVENT_VERSION,
        }
        .to_string()
    }
}

impl UserEvent {
    /// One line for an audit timeline (`meetings events history`).
    pub fn summary(&self) -> String {
        use crate::common::quote_short as q;
        match self {
            UserEvent::UserRegistered {
                email,
                display_name,
                time_zone,
                role,
                ..
            } => format!(
                "registered {} as {} ({time_zone}), role {role}",
                q(email),
                q(display_name)
            ),
            UserEvent::ProfileChanged {
                display_name,
                time_zone,
                working_hours,
            } => format!(
                "profile changed: name {}, time zone {time_zone}, working hours {}",
                q(display_name),
                if working_hours.is_some() {
                    "set"
                } else {
                    "none"
                }
            ),
            UserEvent::PasswordChanged {} => "password changed".to_string(),
            UserEvent::RoleChanged { role } => format!("role changed to {role}"),
            UserEvent::UserDeactivated { by } => format!("deactivated by {by}"),
        }
    }
}

/// A registered account, rebuilt from its [`UserEvent`]s.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct User {
    id: Option<Uuid>,
    email: String,
    display_name: String,
    time_zone: String,
    role: Role,
    active: bool,
    working_hours: Option<WorkingHours>,
}

impl User {
    /// Whether the user has been registered.
    pub fn exists(&self) -> bool {
        self.id.is_some()
    }

    /// The user's id, once registered.
    pub fn id(&self) -> Option<Uuid> {
        self.id
    }

    /// E-mail address as registered (trimmed, original case).
    pub fn email(&self) -> &str {
        &self.email
    }

    /// Name shown to other users.
    pub fn display_name(&self) -> &str {
        &self.display_name
    }

    /// IANA time zone of the user.
    pub fn time_zone(&self) -> &str {
        &self.time_zone
    }

    /// Current role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Registered and not deactivated.
    pub fn is_active(&self) -> bool {
        self.exists() && self.active
    }

    /// Working hours, if the user set any.
    pub fn working_hours(&self) -> Option<&WorkingHours> {
        self.working_hours.as_ref()
    }

    /// Existence check shared by every command but `Register`; yields the id.
    fn require_exists(&self) -> Result<Uuid, DomainError> {
        let id = self
            .id
            .ok_or_else(|| DomainError::not_found("user not found"))?;
        Ok(id)
    }

    /// The user themself may go on, on an active account; anybody else is told `refusal`.
    fn require_self(&self, actor: Actor, refusal: &str) -> Result<(), DomainError> {
        let id = self.require_exists()?;
        if actor.user_id != id {
            return Err(DomainError::forbidden(refusal));
        }
        self.require_not_deactivated()
    }

    fn require_not_deactivated(&self) -> Result<(), DomainError> {
        if self.active {
            Ok(())
        } else {
            Err(DomainError::conflict("user is deactivated"))
        }
    }

    fn register(
        &self,
        user_id: Uuid,
        email: &str,
        password: &str,
        display_name: &str,
        time_zone: Option<&str>,
    ) -> Result<Option<UserEvent>, DomainError> {
        if self.exists() {
            return Err(DomainError::conflict("user already exists"));
        }
        let registration = validate_registration(email, password, display_name, time_zone)?;
        Ok(Some(UserEvent::UserRegistered {
            user_id,
            email: registration.email,
            display_name: registration.display_name,
            time_zone: registration.time_zone,
            role: Role::Member,
        }))
    }

    fn change_profile(
        &self,
        actor: Actor,
        display_name: Option<&str>,
        time_zone: Option<&str>,
        working_hours: Option<Option<WorkingHours>>,
    ) -> Result<Option<UserEvent>, DomainError> {
        self.require_self(actor, "you can only change your own profile")?;

        let mut violations = Violations::new();
        let new_display_name =
            violations.update(display_name, &self.display_name, validate_display_name);
        let new_time_zone = violations.update(time_zone, &self.time_zone, |tz| {
            validate_time_zone("time_zone", tz)
        });
        let new_working_hours = match working_hours {
            Some(Some(hours)) => {
                for error in hours.validate("working_hours") {
                    violations.push(error);
                }
                Some(hours)
            }
            Some(None) => None,
            None => self.working_hours.clone(),
        };
        violations.into_result()?;

        if new_display_name == self.display_name
            && new_time_zone == self.time_zone
            && new_working_hours == self.working_hours
        {
            return Ok(None);
        }
        Ok(Some(UserEvent::ProfileChanged {
            display_name: new_display_name,
            time_zone: new_time_zone,
            working_hours: new_working_hours,
        }))
    }

    fn change_password(
        &self,
        actor: Actor,
        new_password: &str,
    ) -> Result<Option<UserEvent>, DomainError> {
        self.require_self(actor, "you can only change your own password")?;
        validate_password("new_password", new_password)?;
        Ok(Some(UserEvent::PasswordChanged {}))
    }

    fn change_role(&self, actor: Actor, role: Role) -> Result<Option<UserEvent>, DomainError> {
        self.require_exists()?;
        if !actor.is_admin() {
            return Err(DomainError::forbidden("only an admin can change roles"));
        }
        self.require_not_deactivated()?;
        if role == self.role {
            return Ok(None);
        }
        Ok(Some(UserEvent::RoleChanged { role }))
    }

    fn deactivate(&self, actor: Actor) -> Result<Option<UserEvent>, DomainError> {
        let id = self.require_exists()?;
        if actor.user_id != id && !actor.is_admin() {
            return Err(DomainError::forbidden(
                "only the user themself or an admin can deactivate an account",
            ));
        }
        self.require_not_deactivated()?;
        Ok(Some(UserEvent::UserDeactivated { by: actor.user_id }))
    }

    /// Decides `command` against the account as it stands: at most one event.
    fn decide(&self, command: UserCommand) -> Result<Option<UserEvent>, DomainError> {
        match command {
            UserCommand::Register {
                user_id,
                email,
                password,
                display_name,
                time_zone,
            } => self.register(
                user_id,
                &email,
                &password,
                &display_name,
                time_zone.as_deref(),
            ),
            UserCommand::ChangeProfile {
                actor,
                display_name,
                time_zone,
                working_hours,
            } => self.change_profile(
                actor,
                display_name.as_deref(),
                time_zone.as_deref(),
                working_hours,
            ),
            UserCommand::ChangePassword {
                actor,
                new_password,
            } => self.change_password(actor, &new_password),
            UserCommand::ChangeRole { actor, role } => self.change_role(actor, role),
            UserCommand::Deactivate { actor } => self.deactivate(actor),
        }
    }
}

impl Aggregate for User {
    const TYPE: &'static str = "user";
    type Command = UserCommand;
    type Event = UserEvent;
    type Error = DomainError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        if let Some(event) = self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            UserEvent::UserRegistered {
                user_id,
                email,
                display_name,
                time_zone,
                role,
            } => {
                self.id = Some(user_id);
                self.email = email;
                self.display_name = display_name;
                self.time_zone = time_zone;
                self.role = role;
                self.active = true;
                self.working_hours = None;
            }
            UserEvent::ProfileChanged {
                display_name,
                time_zone,
                working_hours,
            } => {
                self.display_name = display_name;
                self.time_zone = time_zone;
                self.working_hours = working_hours;
            }
            UserEvent::PasswordChanged {} => {}
            UserEvent::RoleChanged { role } => self.role = role,
            UserEvent::UserDeactivated { .. } => self.active = false,
        }
    }
}
