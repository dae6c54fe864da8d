//! `GET /v1/openapi.json`: the OpenAPI document, generated from the handlers' annotations so it
//! cannot drift from the code.

use axum::Router;
use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::{ObjectBuilder, RefOr, Required, Type};
use utoipa::{Modify, OpenApi};

use platform::openapi::schemas::POSITION_PATTERN;
use platform::openapi::{operations_mut, BearerAuth, NotNullParameters, ProblemResponses};

use crate::routes::{admin, calendar, changes, ical, invitations, meetings, users};
use crate::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "meetings — query API",
        version = "1",
        description = "Reads of the read models: profiles, the user directory, meetings, chat \
            history, agenda, free/busy, find-times and the change feed. Every query accepts \
            X-Min-Position (read-your-writes): it waits, bounded (default 2 s), until the read \
            models include that position, else 503 with Retry-After. Lists take limit (1–500, \
            default 50; larger is 422) and an opaque cursor (base64url of the last sort key; \
            pass next_cursor back unchanged, a malformed one is 422). Errors are RFC 9457 \
            problem+json with a request_id."
    ),
    paths(
        users::me, users::user, users::directory,
        meetings::get_one, meetings::list, meetings::messages,
        calendar::agenda, calendar::freebusy, calendar::find_times,
        ical::meeting_ics, ical::feed, ical::rotate, ical::feed_ics, invitations::invitation,
        changes::changes,
        admin::history,
    ),
    components(schemas(
        platform::http::Problem, platform::http::error::ProblemFieldError,
        platform::openapi::schemas::Instant, platform::openapi::schemas::OptionalInstant,
        platform::openapi::schemas::OptionalPosition, crate::params::SearchText,
        crate::routes::meetings::StatusFilter,
    )),
    modifiers(&BearerAuth, &MinPositionHeader, &ProblemResponses, &NotNullParameters),
    tags(
        (name = "users", description = "Profile and directory"),
        (name = "meetings", description = "Meetings and their chat"),
        (name = "calendar", description = "Agenda, free/busy and finding times"),
        (name = "changes", description = "The caller's change feed"),
        (name = "admin", description = "Administrators only: the audit trail"),
    )
)]
pub struct ApiDoc;

/// Documents `X-Min-Position` (and its 400/422/503 answers) on every query operation, since a
/// middleware, not the handlers, implements it.
struct MinPositionHeader;

impl Modify for MinPositionHeader {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let parameter = ParameterBuilder::new()
            .name("X-Min-Position")
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(
                "Wait (bounded, default 2 s) until the read models include this position (the \
                 `position` of a command response). 400 when malformed; 422 when past the \
                 newest stored event (a position the API never handed out); 503 with \
                 Retry-After: 1 when the wait runs out.",
            ))
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(POSITION_PATTERN)),
            ))
            .example(Some("0000000000000309000000000000002a".into()))
            .build();
        for item in openapi.paths.paths.values_mut() {
            for operation in operations_mut(item) {
                operation
                    .parameters
                    .get_or_insert_with(Vec::new)
                    .push(parameter.clone());
                for (status, why) in [
                    ("400", "X-Min-Position is not a position"),
                    ("422", "X-Min-Position is past the newest event"),
                    ("503", "X-Min-Position was not reached in time, or the database is unavailable; retry after `Retry-After` seconds"),
                ] {
                    let response = operation
                        .responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| ResponseBuilder::new().into());
                    if let RefOr::T(response) = response {
                        response.description = match response.description.as_str() {
                            "" => capitalized(why),
                            given => format!("{given}; or {why}"),
                        };
                    }
                }
            }
        }
    }
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

pub fn router() -> Router<AppState> {
    platform::openapi::router(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reference_of_the_document_names_a_component() {
        let dangling = platform::openapi::dangling_references(&ApiDoc::openapi());
        assert!(dangling.is_empty(), "{dangling:?}");
    }
}
