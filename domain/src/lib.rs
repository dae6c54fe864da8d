//! Pure domain model of the meetings backend.
//!
//! This crate holds the event-sourced aggregates ([`User`] and [`Meeting`]),
//! their commands and events, every business rule that decides whether a
//! command is accepted, and the upcasters that keep old stored events
//! readable. It performs no I/O of its own: the only outside dependency is the
//! [`UserDirectory`] port that the application implements.

pub mod common;
pub mod meeting;
pub mod upcasters;
pub mod user;
pub mod validation;

pub use common::*;
pub use meeting::{
    Attendee, AttendeeSpec, Invitee, Meeting, MeetingCommand, MeetingEvent, MeetingServices,
    MeetingStatus, Membership, MembershipError, Occurrence, OccurrenceChange, Recurrence,
    ResponseStatus, ScheduleMeeting, Series, SeriesChanges, UserDirectory,
};
pub use user::{validate_registration, User, UserCommand, UserEvent, Weekday, WorkingHours};
pub use validation::*;
