//! iCalendar in: `POST /v1/calendar/import` creates or updates the caller's meetings from a
//! `text/calendar` file (`platform::ical::read`), one meeting per series or single event.
//!
//! - **Idempotent by `UID`.** A `UID` this product wrote (`<meeting id>@…`) names that meeting
//!   when the caller organizes it (or is an admin); any other `UID` maps to the meeting id
//!   `UUIDv5(caller, UID)`, so importing the same file again updates instead of duplicating.
//! - **Never half a meeting.** Each meeting is one atomic command decision (schedule or
//!   changes, with its occurrences): a refused occurrence refuses its meeting, which is
//!   reported with its line; the other meetings go on.
//! - **Attendees by e-mail.** An address of an active user becomes that attendee; others are
//!   left out with a warning. The importer organizes every meeting it creates.
//! - **Bounded.** 1 MiB (413), 1,000 events, one import at a time per user, one command of
//!   the caller's rate per ten meetings, and each created meeting counts against the
//!   organizer's meetings per day.

use std::collections::{BTreeMap, HashMap};

use axum::body::Body;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use domain::{
    normalize_email, AttendeeSpec, Meeting, MeetingCommand, MeetingStatus, ScheduleMeeting,
};
use platform::auth::AuthUser;
use platform::http::{ApiError, Result};
use platform::ical::{self, ImportProblem, ImportedMeeting};
use platform::store::{AggregateState, Position};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::by_caller;
use crate::executor::{Answer, CommandMeta};
use crate::AppState;

/// Largest calendar file accepted.
pub const MAX_IMPORT_BYTES: usize = 1024 * 1024;

/// Namespace of the meeting ids made from foreign `UID`s (with the importer's id).
const IMPORT_NAMESPACE: Uuid = Uuid::from_u128(0x6d65_6574_696e_6773_2d69_6d70_6f72_7431);

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/calendar/import", post(import))
}

/// What an import did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportResult {
    /// Meetings created.
    pub created: Vec<Uuid>,
    /// Meetings changed to match the file.
    pub updated: Vec<Uuid>,
    /// Meetings already as the file has them (extension).
    pub unchanged: Vec<Uuid>,
    /// Components refused, each with its `UID` (when it has one), the line its component
    /// starts on, and why; nothing of them was written.
    pub errors: Vec<ImportIssue>,
    /// What was read but left out: attendees who are no users here, other component kinds,
    /// cancelled events not imported, meetings the caller attends (extension).
    pub warnings: Vec<ImportIssue>,
    /// Position of the last change written, for `X-Min-Position` on queries.
    pub position: String,
}

/// One remark on a component.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportIssue {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    pub message: String,
}

impl From<ImportProblem> for ImportIssue {
    fn from(problem: ImportProblem) -> Self {
        Self {
            uid: problem.uid,
            line: problem.line,
            message: problem.message,
        }
    }
}

/// Import meetings from an iCalendar file (`Content-Type: text/calendar`): 200 with what
/// was created, updated and refused, even when some components failed.
#[utoipa::path(post, path = "/v1/calendar/import", tag = "calendar", security(("bearer" = [])),
    request_body(content = String, content_type = "text/calendar", description = "an RFC 5545 VCALENDAR, at most 1 MiB and 1,000 events"),
    responses((status = 200, body = ImportResult),
        (status = 401, body = platform::http::Problem),
        (status = 413, description = "over 1 MiB, or over 1,000 events", body = platform::http::Problem),
        (status = 415, description = "not text/calendar", body = platform::http::Problem),
        (status = 422, description = "not an iCalendar file (no VCALENDAR)", body = platform::http::Problem),
        (status = 429, description = "the caller's commands are used up, or an import of theirs is running", body = platform::http::Problem)))]
pub async fn import(
    State(state): State<AppState>,
    caller: AuthUser,
    meta: CommandMeta,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<ImportResult>> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/calendar"))
    {
        return Err(ApiError::UnsupportedMediaType(
            "expected Content-Type text/calendar".into(),
        ));
    }
    let bytes = axum::body::to_bytes(body, MAX_IMPORT_BYTES)
        .await
        .map_err(|_| ApiError::PayloadTooLarge {
            limit: MAX_IMPORT_BYTES,
        })?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| ApiError::invalid("", "the calendar must be UTF-8 text"))?;
    let calendar = ical::read(text).map_err(|error| match error {
        too_many @ ical::FileError::TooManyEvents(_) => {
            ApiError::TooManyParts(too_many.to_string())
        }
        other => ApiError::invalid("", other.to_string()),
    })?;
    let _turn = state
        .limits
        .import(caller.user_id, calendar.meetings.len())?;

    // Each meeting on its own: the request's Idempotency-Key and If-Match name no meeting.
    let meta = CommandMeta {
        idempotency_key: None,
        if_match: None,
        ..meta
    };
    let mut importer = Importer {
        state: &state,
        caller: &caller,
        meta: &meta,
        users: HashMap::new(),
        result: ImportResult {
            created: vec![],
            updated: vec![],
            unchanged: vec![],
            errors: calendar.errors.into_iter().map(Into::into).collect(),
            warnings: calendar.warnings.into_iter().map(Into::into).collect(),
            position: Position::START.to_string(),
        },
        last: None,
    };
    for meeting in calendar.meetings {
        importer.meeting(meeting).await?;
    }
    let mut result = importer.result;
    if let Some(last) = importer.last {
        result.position = last.to_string();
    }
    result.errors.sort_by_key(|e| e.line);
    result.warnings.sort_by_key(|e| e.line);
    Ok(Json(result))
}

/// One import on its way through the file's meetings.
struct Importer<'a> {
    state: &'a AppState,
    caller: &'a AuthUser,
    meta: &'a CommandMeta,
    /// Address → active user, asked once per import.
    users: HashMap<String, Option<Uuid>>,
    result: ImportResult,
    last: Option<Position>,
}

/// What became of one meeting of the file.
enum Done {
    Written {
        id: Uuid,
        created: bool,
        position: Position,
    },
    Unchanged(Uuid),
    Skipped(String),
}

impl Importer<'_> {
    /// Imports one meeting; its refusal is recorded as an error of its component. Only an
    /// outage (503) or a bug ends the whole import.
    async fn meeting(&mut self, meeting: ImportedMeeting) -> Result<()> {
        let (uid, line) = (meeting.uid.clone(), meeting.line);
        let issue = |message: String| ImportIssue {
            uid: Some(uid.clone()),
            line: Some(line),
            message,
        };
        match self.write(meeting).await {
            Ok(Done::Written {
                id,
                created,
                position,
            }) => {
                self.last = Some(self.last.map_or(position, |last| last.max(position)));
                match created {
                    true => self.result.created.push(id),
                    false => self.result.updated.push(id),
                }
            }
            Ok(Done::Unchanged(id)) => self.result.unchanged.push(id),
            Ok(Done::Skipped(why)) => self.result.warnings.push(issue(why)),
            Err(error @ (ApiError::Unavailable { .. } | ApiError::Internal(_))) => {
                return Err(error)
            }
            Err(ApiError::Validation { detail, errors }) => {
                let fields: Vec<String> = errors
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect();
                self.result
                    .errors
                    .push(issue(format!("{detail}: {}", fields.join("; "))));
            }
            Err(other) => self.result.errors.push(issue(other.to_string())),
        }
        Ok(())
    }

    async fn write(&mut self, meeting: ImportedMeeting) -> Result<Done> {
        let Some((id, current)) = self.target(&meeting.uid).await? else {
            return Ok(Done::Skipped(
                "you attend this meeting here already: it is in your calendar".into(),
            ));
        };
        let attendees = self.attendees(&meeting).await?;
        let actor = self.caller.actor();
        let fingerprint = (
            "/v1/calendar/import",
            serde_json::json!({"uid": meeting.uid}),
        );
        let created = !current.aggregate.exists();
        let request = if created {
            if meeting.cancelled {
                return Ok(Done::Skipped("cancelled: not imported".into()));
            }
            self.state.limits.schedule(self.caller.user_id)?;
            let mut commands = vec![MeetingCommand::Schedule(ScheduleMeeting {
                meeting_id: id,
                actor,
                title: meeting.title.clone(),
                description: meeting.description.clone(),
                starts_at: meeting.starts_at,
                ends_at: meeting.ends_at,
                time_zone: meeting.time_zone.clone(),
                location: meeting.location.clone(),
                attendees,
                recurrence: meeting.recurrence.clone(),
            })];
            commands.extend(occurrence_commands(&meeting, &BTreeMap::new(), actor));
            by_caller(self.caller, self.meta, id, fingerprint, commands)
                .creating(format!("/v1/meetings/{id}"))
        } else {
            let commands = changes(&current.aggregate, &meeting, attendees, actor);
            if commands.is_empty() {
                return Ok(Done::Unchanged(id));
            }
            by_caller(self.caller, self.meta, id, fingerprint, commands)
        };
        let services = &self.state.meeting_services;
        let outcome = match self
            .state
            .executor
            .execute_for_outcome::<Meeting>(services, request.charged())
            .await?
        {
            Answer::Committed(outcome) => outcome,
            // The meetings' requests carry no idempotency key: nothing to replay.
            Answer::Replayed(_) => {
                return Err(ApiError::Internal(anyhow::anyhow!(
                    "BUG: an import's command was replayed"
                )))
            }
        };
        if outcome.version == current.version {
            return Ok(Done::Unchanged(id));
        }
        Ok(Done::Written {
            id,
            created,
            position: outcome.position,
        })
    }

    /// The meeting a `UID` names for the caller, as it stands; `None` when it is a meeting of
    /// this product the caller attends (it is in their calendar already).
    async fn target(&self, uid: &str) -> Result<Option<(Uuid, AggregateState<Meeting>)>> {
        let ours = uid
            .split_once('@')
            .and_then(|(id, _)| Uuid::parse_str(id).ok());
        if let Some(id) = ours {
            let state = self.state.executor.load::<Meeting>(id).await?;
            let meeting = &state.aggregate;
            if meeting.exists() {
                if meeting.organizer_id() == self.caller.user_id || self.caller.actor().is_admin() {
                    return Ok(Some((id, state)));
                }
                if meeting.is_attendee(self.caller.user_id) {
                    return Ok(None);
                }
            }
        }
        let name = format!("{}\n{uid}", self.caller.user_id);
        let id = Uuid::new_v5(&IMPORT_NAMESPACE, name.as_bytes());
        Ok(Some((id, self.state.executor.load::<Meeting>(id).await?)))
    }

    /// The file's attendees who are active users here (the caller aside); the others are
    /// warned about.
    async fn attendees(&mut self, meeting: &ImportedMeeting) -> Result<Vec<AttendeeSpec>> {
        let mut found = vec![];
        for (email, optional) in &meeting.attendees {
            let user = match self.users.get(email) {
                Some(user) => *user,
                None => {
                    let account = self
                        .state
                        .executor
                        .store
                        .account_by_email(&normalize_email(email))
                        .await?;
                    let user = account.filter(|a| a.active).map(|a| a.user_id);
                    self.users.insert(email.clone(), user);
                    user
                }
            };
            match user {
                Some(id) if id == self.caller.user_id => {}
                Some(id) if found.iter().any(|a: &AttendeeSpec| a.user_id == id) => {}
                Some(id) => found.push(AttendeeSpec {
                    user_id: id,
                    optional: *optional,
                }),
                None => self.result.warnings.push(ImportIssue {
                    uid: Some(meeting.uid.clone()),
                    line: Some(meeting.line),
                    message: format!("{email} is no user here: left out"),
                }),
            }
        }
        Ok(found)
    }
}

/// The commands that make `current` what the file says; empty when it is already.
fn changes(
    current: &Meeting,
    file: &ImportedMeeting,
    attendees: Vec<AttendeeSpec>,
    actor: domain::Actor,
) -> Vec<MeetingCommand> {
    if file.cancelled {
        return match current.status() {
            MeetingStatus::Cancelled | MeetingStatus::Ended => vec![],
            _ => vec![MeetingCommand::Cancel {
                actor,
                reason: None,
            }],
        };
    }
    let mut commands = vec![];
    let details_same = current.title() == file.title
        && current.description() == file.description.as_deref()
        && current.location() == file.location.as_deref()
        && current.time_zone() == file.time_zone;
    if !details_same {
        commands.push(MeetingCommand::UpdateDetails {
            actor,
            title: Some(file.title.clone()),
            description: Some(file.description.clone()),
            location: Some(file.location.clone()),
            time_zone: Some(file.time_zone.clone()),
        });
    }
    let moved = current.starts_at() != file.starts_at || current.ends_at() != file.ends_at;
    let mut changed_now = current.occurrence_changes().clone();
    if moved {
        // Off the old rule first: the new start need not be an occurrence of it.
        if current.recurrence().is_some() {
            commands.push(MeetingCommand::ChangeRecurrence {
                actor,
                recurrence: None,
            });
        }
        commands.push(MeetingCommand::Reschedule {
            actor,
            starts_at: Some(file.starts_at),
            ends_at: Some(file.ends_at),
        });
        changed_now.clear();
    }
    if moved || current.recurrence() != file.recurrence.as_ref() {
        if current.recurrence() != file.recurrence.as_ref() {
            changed_now.clear();
        }
        commands.push(MeetingCommand::ChangeRecurrence {
            actor,
            recurrence: file.recurrence.clone(),
        });
    }
    commands.extend(occurrence_commands(file, &changed_now, actor));
    for attendee in current.attendees() {
        if !attendees.iter().any(|a| a.user_id == attendee.user_id) {
            commands.push(MeetingCommand::RemoveAttendee {
                actor,
                user_id: attendee.user_id,
            });
        }
    }
    for attendee in attendees {
        if !current.is_attendee(attendee.user_id) {
            commands.push(MeetingCommand::Invite { actor, attendee });
        }
    }
    commands
}

/// Commands that put the file's changed occurrences in place, and the ones it does not have
/// (in `now`) back where the rule has them.
fn occurrence_commands(
    file: &ImportedMeeting,
    now: &BTreeMap<DateTime<Utc>, domain::OccurrenceChange>,
    actor: domain::Actor,
) -> Vec<MeetingCommand> {
    let length = file.ends_at - file.starts_at;
    let mut commands = vec![];
    for (original, change) in now {
        if !file.occurrences.contains_key(original) {
            commands.push(MeetingCommand::ChangeOccurrence {
                actor,
                occurrence: *original,
                starts_at: Some(*original),
                ends_at: Some(*original + length),
                cancelled: change.cancelled.then_some(false),
            });
        }
    }
    for (original, wanted) in &file.occurrences {
        let current = now.get(original);
        if current.is_some_and(|c| {
            c.cancelled == wanted.cancelled
                && (c.cancelled || (c.starts_at, c.ends_at) == (wanted.starts_at, wanted.ends_at))
        }) {
            continue;
        }
        commands.push(if wanted.cancelled {
            MeetingCommand::ChangeOccurrence {
                actor,
                occurrence: *original,
                starts_at: None,
                ends_at: None,
                cancelled: Some(true),
            }
        } else {
            MeetingCommand::ChangeOccurrence {
                actor,
                occurrence: *original,
                starts_at: Some(wanted.starts_at),
                ends_at: Some(wanted.ends_at),
                cancelled: current.is_some_and(|c| c.cancelled).then_some(false),
            }
        });
    }
    commands
}
