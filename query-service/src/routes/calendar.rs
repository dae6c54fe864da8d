//! The caller's agenda, free/busy and find-times, all read from `rm_agenda` (one row per meeting
//! and participant, indexed by `(user_id, starts_at)`). A series is one row per participant
//! too, expanded here into its occurrences inside the asked range (`AgendaSeries`).
//!
//! Every range query bounds the index scan on both sides: `starts_at < to` and, because a
//! meeting lasts at most 24 hours (domain rule), `starts_at >= from - 24 h`; `ends_at > from`
//! then filters the few rows of that extra day. With the range itself bounded, a query reads
//! only the rows it returns plus at most one day's worth.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Duration, FixedOffset, Utc};
use domain::meeting::Occurrence;
use platform::auth::AuthUser;
use platform::http::{ApiError, ApiJson, ApiQuery, Result};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

mod render;

use render::{agenda_json, sorted, Entry};

use crate::params;
use crate::repository::{AgendaRow, AgendaRows};
use crate::slots::{self, Interval, LocalHours, Participant};
use crate::AppState;
use platform::openapi::schemas::Instant;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/me/agenda", get(agenda))
        .route("/v1/freebusy", post(freebusy))
        .route("/v1/find-times", post(find_times))
}

/// Longest range of one agenda request.
pub const MAX_AGENDA_DAYS: i64 = 366;
/// Longest range of one free/busy request.
pub const MAX_FREEBUSY_DAYS: i64 = 90;
/// Longest range of one find-times request (it evaluates every 15-minute slot of it).
pub const MAX_FIND_TIMES_DAYS: i64 = 31;
/// Most users in one free/busy or find-times request.
pub const MAX_USERS: usize = 100;
/// Most meetings and series one agenda request reads: a range holding more is refused (422)
/// and asked again shorter, so no answer is unbounded.
pub const MAX_AGENDA_ROWS: i64 = 5_000;
/// Most items (meetings and occurrences) one agenda answer lists: a year of 200 weekly series
/// is 10,400.
pub const MAX_AGENDA_ITEMS: i64 = 20_000;
/// Most busy meetings one free/busy or find-times request may cover, all users together.
pub const MAX_BUSY_ROWS: i64 = 20_000;
/// Longest meeting (domain rule), used as the lower index bound of range scans.
const MAX_MEETING_HOURS: i64 = 24;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AgendaQuery {
    /// Meetings that end after this time.
    #[param(value_type = Instant)]
    pub from: Option<String>,
    /// Meetings that start before this time: after `from`, at most 366 days later.
    #[param(value_type = Instant)]
    pub to: Option<String>,
}

/// One meeting, or one occurrence of a series, in the caller's agenda.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgendaItem {
    pub meeting_id: Uuid,
    #[serde(serialize_with = "platform::views::utc_time")]
    pub starts_at: DateTime<Utc>,
    #[serde(serialize_with = "platform::views::utc_time")]
    pub ends_at: DateTime<Utc>,
    pub title: String,
    /// `scheduled`, `in_progress`, `ended` or `cancelled` (cancelled meetings and cancelled
    /// occurrences stay listed).
    pub status: String,
    /// The caller's answer (`needs_action`, `accepted`, `declined`, `tentative`) — to this
    /// occurrence when they answered it alone; `null` when the caller organizes the meeting.
    pub my_response: Option<String>,
    /// Whether the caller organizes the meeting (extension of docs/api.md).
    pub is_organizer: bool,
    /// An occurrence of a series: its original start, which names it in
    /// `PATCH /v1/meetings/{id}/occurrences/{occurrence_start}` and in responses (extension
    /// of docs/api.md); absent for a single meeting.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "platform::views::optional_utc_time"
    )]
    pub occurrence: Option<DateTime<Utc>>,
}

/// The caller's agenda.
#[derive(Debug, Serialize, ToSchema)]
pub struct Agenda {
    pub items: Vec<AgendaItem>,
}

/// The agenda rows of `user_ids` that can overlap `[from, to)` (see the module's note), at
/// most `limit` + 1 single meetings and as many series per user.
async fn agenda_rows(
    state: &AppState,
    user_ids: &[Uuid],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    rows: AgendaRows,
    limit: i64,
) -> Result<Vec<AgendaRow>> {
    Ok(state
        .read_models
        .agenda_rows(
            user_ids,
            from,
            to,
            Duration::hours(MAX_MEETING_HOURS),
            rows,
            limit + 1,
        )
        .await?)
}

/// Expands the rows into the entries of `[from, to)`: a single meeting as it is, a series as
/// its occurrences in the window (each with the answer the row's person gave it). `Err` when
/// there are more than `limit`.
fn expand(
    rows: &[AgendaRow],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Entry<'_>>> {
    // Every series' occurrences first, so that the entries are allocated once: a year of a
    // calendar is ten thousand of them.
    let mut expanded: Vec<Option<Vec<Occurrence>>> = Vec::with_capacity(rows.len());
    let mut total = 0usize;
    for row in rows {
        let occurrences = match &row.series {
            None => {
                total += 1;
                None
            }
            Some(series) => {
                let occurrences = match series.series() {
                    Some(rule) => rule
                        .between(from, to, &series.changes)
                        .map_err(|_| too_many("to", limit))?,
                    None => Vec::new(),
                };
                total += occurrences.len();
                Some(occurrences)
            }
        };
        if total as i64 > limit {
            return Err(too_many("to", limit));
        }
        expanded.push(occurrences);
    }
    let mut entries = Vec::with_capacity(total);
    for (index, (row, occurrences)) in rows.iter().zip(expanded).enumerate() {
        let (Some(series), Some(occurrences)) = (&row.series, occurrences) else {
            entries.push(Entry {
                row,
                index,
                starts_at: row.starts_at,
                ends_at: row.ends_at,
                cancelled: false,
                response: row.my_response.as_deref(),
                occurrence: None,
            });
            continue;
        };
        for o in occurrences {
            let response = series.response_to(&o.original_start, row.my_response.as_deref());
            entries.push(Entry {
                row,
                index,
                starts_at: o.starts_at,
                ends_at: o.ends_at,
                cancelled: o.cancelled,
                response,
                occurrence: Some(o.original_start),
            });
        }
    }
    Ok(entries)
}

/// Meetings the caller organizes or attends that overlap `[from, to)`, ordered by start (then
/// meeting id), with every series expanded into its occurrences inside the range — each in
/// the series' own time zone, so a weekly 09:00 Berlin meeting stays at 09:00 there across
/// daylight-saving changes. Not paginated: the range is bounded instead (366 days, 5,000
/// meetings and series, 20,000 items).
#[utoipa::path(get, path = "/v1/me/agenda", tag = "calendar", security(("bearer" = [])), params(AgendaQuery),
    responses(
        (status = 200, body = Agenda),
        (status = 401, body = platform::http::Problem),
        (status = 422, description = "from/to missing or malformed or outside 1900–9999, to not after from, range over 366 days, over 5,000 meetings and series or 20,000 items (occurrences included) in it", body = platform::http::Problem)))]
pub async fn agenda(
    State(state): State<AppState>,
    caller: AuthUser,
    ApiQuery(query): ApiQuery<AgendaQuery>,
) -> Result<Response> {
    let from = params::required_time("from", query.from.as_deref())?;
    let to = params::required_time("to", query.to.as_deref())?;
    params::range(from, to, Duration::days(MAX_AGENDA_DAYS))?;
    let rows = agenda_rows(
        &state,
        &[caller.user_id],
        from,
        to,
        AgendaRows::All,
        MAX_AGENDA_ROWS,
    )
    .await?;
    if rows.len() as i64 > MAX_AGENDA_ROWS {
        return Err(too_many("to", MAX_AGENDA_ROWS));
    }
    let entries = expand(&rows, from, to, MAX_AGENDA_ITEMS)?;
    let order = sorted(&rows, &entries);
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        axum::body::Body::new(agenda_json(
            &rows,
            order.iter().map(|i| &entries[*i as usize]),
        )),
    )
        .into_response())
}

/// Busy intervals of `user_ids` overlapping `[from, to)`: meetings and occurrences not
/// cancelled that the user organizes or has not declined. Unmerged and unclipped.
async fn busy_rows(
    state: &AppState,
    user_ids: &[Uuid],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<BTreeMap<Uuid, Vec<Interval>>> {
    // A series declined as a whole may still have occurrences accepted one by one: the
    // series' answer is not filtered in SQL.
    let rows = agenda_rows(state, user_ids, from, to, AgendaRows::Busy, MAX_BUSY_ROWS).await?;
    if rows.len() as i64 > MAX_BUSY_ROWS {
        return Err(too_many("to", MAX_BUSY_ROWS));
    }
    let mut busy: BTreeMap<Uuid, Vec<Interval>> =
        user_ids.iter().map(|id| (*id, Vec::new())).collect();
    for entry in expand(&rows, from, to, MAX_BUSY_ROWS)? {
        if entry.status() == "cancelled" || entry.response == Some("declined") {
            continue;
        }
        busy.entry(entry.row.user_id)
            .or_default()
            .push(Interval::new(entry.starts_at, entry.ends_at));
    }
    Ok(busy)
}

/// The answer to a range that holds more than `max` meetings: ask again with a shorter one.
fn too_many(field: &str, max: i64) -> ApiError {
    ApiError::invalid(
        field,
        format!("the range holds more than {max} meetings; ask for a shorter range"),
    )
}

/// Checks the user list (1–100 ids) and drops duplicates, keeping the first occurrence.
fn user_list(user_ids: Vec<Uuid>) -> Result<Vec<Uuid>> {
    if user_ids.is_empty() {
        return Err(ApiError::invalid("user_ids", "must name at least one user"));
    }
    if user_ids.len() > MAX_USERS {
        return Err(ApiError::invalid(
            "user_ids",
            format!("at most {MAX_USERS} users per request"),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    Ok(user_ids.into_iter().filter(|id| seen.insert(*id)).collect())
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FreeBusyRequest {
    /// 1–100 user ids; duplicates are ignored.
    #[schema(min_items = 1, max_items = 100)]
    pub user_ids: Vec<Uuid>,
    #[schema(value_type = Instant)]
    pub from: DateTime<FixedOffset>,
    /// After `from`, at most 90 days later (422 otherwise).
    #[schema(value_type = Instant)]
    pub to: DateTime<FixedOffset>,
}

/// One busy interval, `[starts_at, ends_at)`.
#[derive(Debug, Serialize, ToSchema)]
pub struct BusyInterval {
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

/// Busy intervals per requested user.
#[derive(Debug, Serialize, ToSchema)]
pub struct FreeBusy {
    /// Every requested user id maps to its busy intervals (possibly none), sorted.
    #[schema(value_type = std::collections::HashMap<String, Vec<BusyInterval>>)]
    pub users: BTreeMap<Uuid, Vec<BusyInterval>>,
}

/// Free/busy of any users, like a shared calendar's: only intervals, never titles or other
/// details, so any authenticated user may ask about anyone. Busy means a meeting the user
/// organizes or attends that is not cancelled and that the user has not declined. Overlapping
/// and touching intervals are merged; intervals are clipped to `[from, to)`. Unknown ids get
/// an empty list (existence is not revealed here).
#[utoipa::path(post, path = "/v1/freebusy", tag = "calendar", security(("bearer" = [])), request_body = FreeBusyRequest,
    responses(
        (status = 200, body = FreeBusy),
        (status = 400, body = platform::http::Problem),
        (status = 401, body = platform::http::Problem),
        (status = 422, description = "no or over 100 users, to not after from, range over 90 days or outside 1900–9999, over 20,000 busy meetings in it", body = platform::http::Problem)))]
pub async fn freebusy(
    State(state): State<AppState>,
    _caller: AuthUser,
    ApiJson(body): ApiJson<FreeBusyRequest>,
) -> Result<Json<FreeBusy>> {
    let user_ids = user_list(body.user_ids)?;
    let (from, to) = (body.from.with_timezone(&Utc), body.to.with_timezone(&Utc));
    params::range(from, to, Duration::days(MAX_FREEBUSY_DAYS))?;
    let busy = busy_rows(&state, &user_ids, from, to).await?;
    let users = busy
        .into_iter()
        .map(|(id, intervals)| {
            let merged = slots::clip(slots::merge(intervals), from, to);
            let intervals = merged
                .into_iter()
                .map(|i| BusyInterval {
                    starts_at: i.start,
                    ends_at: i.end,
                })
                .collect();
            (id, intervals)
        })
        .collect();
    Ok(Json(FreeBusy { users }))
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FindTimesRequest {
    /// 1–100 user ids; duplicates are ignored.
    #[schema(min_items = 1, max_items = 100)]
    pub user_ids: Vec<Uuid>,
    /// Length of the meeting, 1–1440 minutes.
    #[schema(minimum = 1, maximum = 1440)]
    pub duration_minutes: i64,
    #[schema(value_type = Instant)]
    pub from: DateTime<FixedOffset>,
    /// After `from`, at most 31 days later (422 otherwise).
    #[schema(value_type = Instant)]
    pub to: DateTime<FixedOffset>,
    /// Only slots inside the working hours of every user who has set them (in each user's own
    /// time zone). Default false.
    #[serde(default)]
    pub working_hours_only: bool,
}

/// A candidate time.
#[derive(Debug, Serialize, ToSchema)]
pub struct Suggestion {
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// The requested users who are free then, in request order.
    pub available: Vec<Uuid>,
    /// Those of `available` for whom the slot lies inside their working hours, in their own
    /// time zone (users without working hours count as always at work). Extension.
    pub in_working_hours: Vec<Uuid>,
}

/// Suggested times, best first.
#[derive(Debug, Serialize, ToSchema)]
pub struct FindTimes {
    pub suggestions: Vec<Suggestion>,
}

/// Candidate slots of `duration_minutes` starting on the quarter-hour (UTC grid) within
/// `[from, to]`, ranked by how many of the users are free (all free first), then by how many
/// of those it suits inside their working hours in their own time zone, earlier first among
/// equals; at most 20, and never a slot where nobody is free. Users without working hours
/// count as always available; with `working_hours_only` a slot must lie within one working day
/// of every user who has working hours.
#[utoipa::path(post, path = "/v1/find-times", tag = "calendar", security(("bearer" = [])), request_body = FindTimesRequest,
    responses(
        (status = 200, body = FindTimes),
        (status = 400, body = platform::http::Problem),
        (status = 401, body = platform::http::Problem),
        (status = 422, description = "no or over 100 users, bad duration, to not after from, range over 31 days or outside 1900–9999, over 20,000 busy meetings in it", body = platform::http::Problem)))]
pub async fn find_times(
    State(state): State<AppState>,
    _caller: AuthUser,
    ApiJson(body): ApiJson<FindTimesRequest>,
) -> Result<Json<FindTimes>> {
    let user_ids = user_list(body.user_ids)?;
    if !(1..=1440).contains(&body.duration_minutes) {
        return Err(ApiError::invalid(
            "duration_minutes",
            "must be from 1 to 1440 minutes",
        ));
    }
    let (from, to) = (body.from.with_timezone(&Utc), body.to.with_timezone(&Utc));
    params::range(from, to, Duration::days(MAX_FIND_TIMES_DAYS))?;
    let mut busy = busy_rows(&state, &user_ids, from, to).await?;
    let profiles = state.read_models.working_hours(&user_ids).await?;
    let mut hours: BTreeMap<Uuid, LocalHours> = BTreeMap::new();
    for (id, time_zone, working_hours) in profiles {
        let Some(value) = working_hours.filter(|v| !v.is_null()) else {
            continue;
        };
        let parsed = serde_json::from_value::<domain::WorkingHours>(value)
            .ok()
            .and_then(|wh| LocalHours::from_profile(&time_zone, &wh));
        match parsed {
            Some(local) => {
                hours.insert(id, local);
            }
            None => {
                tracing::warn!(user_id = %id, "unreadable working hours; treating as always available")
            }
        }
    }
    let participants: Vec<Participant> = user_ids
        .iter()
        .map(|id| Participant {
            id: *id,
            busy: slots::merge(busy.remove(id).unwrap_or_default()),
            working_hours: hours.remove(id),
        })
        .collect();
    let suggestions = slots::find_times(
        &participants,
        Duration::minutes(body.duration_minutes),
        from,
        to,
        body.working_hours_only,
    );
    Ok(Json(FindTimes {
        suggestions: suggestions
            .into_iter()
            .map(|s| Suggestion {
                starts_at: s.starts_at,
                ends_at: s.ends_at,
                available: s.available,
                in_working_hours: s.in_working_hours,
            })
            .collect(),
    }))
}
