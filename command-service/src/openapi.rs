//! `GET /v1/openapi.json`: the OpenAPI document, generated from the handlers' annotations so it
//! cannot drift from the code.

use axum::Router;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::{ObjectBuilder, RefOr, Schema, Type};
use utoipa::{Modify, OpenApi};

use platform::openapi::{
    operations_mut, BearerAuth, NotNullParameters, OptionalBodies, ProblemResponses,
};

use crate::routes::{auth, import, meetings, series, users};
use crate::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "meetings — command API",
        version = "1",
        description = "Commands on users and meetings, and authentication. Errors are RFC 9457 \
            problem+json with a request_id. Commands accept If-Match and Idempotency-Key and \
            answer {id, version, position} with ETag: \"<version>\"; pass the position as \
            X-Min-Position to the query API to read your own write. Every command counts \
            against its caller's limits (429 with Retry-After)."
    ),
    paths(
        auth::register, auth::login, auth::refresh, auth::logout, auth::jwks,
        users::change_profile, users::change_password, users::change_role, users::deactivate,
        meetings::schedule, meetings::update, meetings::invite, meetings::remove_attendee,
        meetings::respond, meetings::cancel, meetings::start, meetings::end,
        meetings::post_message, series::change_occurrence, series::split, import::import,
    ),
    components(schemas(
        platform::http::Problem, platform::http::error::ProblemFieldError,
        crate::executor::CommandBody,
    )),
    modifiers(
        &BearerAuth, &OptionalBodies, &NotNullParameters, &CommandAnswers, &ProblemResponses,
        &SomethingToChange,
    ),
    tags(
        (name = "auth", description = "Registration, login and sessions"),
        (name = "users", description = "User profile and administration"),
        (name = "meetings", description = "Scheduling and running meetings"),
    )
)]
pub struct ApiDoc;

/// Documents what the executor does for every command (an operation that takes
/// `Idempotency-Key`), so the handlers need not repeat it: `ETag` (and `Location` on 201) on
/// success, `Idempotent-Replayed` on a replay, 409 for a concurrent change or a key in use,
/// 412 for a stale `If-Match`, 429 for the caller's command limit.
struct CommandAnswers;

impl Modify for CommandAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for operation in operations_mut(item) {
                if takes_idempotency_key(operation) {
                    complete(operation);
                }
            }
        }
    }
}

fn takes_idempotency_key(operation: &Operation) -> bool {
    operation.parameters.iter().flatten().any(|parameter| {
        parameter.parameter_in == ParameterIn::Header && parameter.name == "Idempotency-Key"
    })
}

fn complete(operation: &mut Operation) {
    let responses = &mut operation.responses.responses;
    for (status, description) in [
        (
            "409",
            "Conflicts with the current state, or another request with the same \
             Idempotency-Key is still running",
        ),
        (
            "412",
            "`If-Match` names a version that is not the current one",
        ),
        (
            "429",
            "Throttled: the caller's commands (or a quota of this command) are used up; retry \
             after `Retry-After` seconds",
        ),
    ] {
        responses
            .entry(status.to_string())
            .or_insert_with(|| ResponseBuilder::new().description(description).into());
    }
    for (status, response) in responses.iter_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        if !status.starts_with('2') {
            continue;
        }
        let string = || ObjectBuilder::new().schema_type(Type::String);
        let headers = &mut response.headers;
        headers.entry("ETag".into()).or_insert_with(|| {
            HeaderBuilder::new()
                .schema(string().pattern(Some("^\"[0-9]+\"$")))
                .description(Some(
                    "`\"<version>\"`: the aggregate's version after the command, for If-Match",
                ))
                .build()
        });
        headers
            .entry("Idempotent-Replayed".into())
            .or_insert_with(|| {
                HeaderBuilder::new()
                    .schema(string().enum_values(Some(["true"])))
                    .description(Some(
                        "`true` when this is the recorded answer to an earlier request with \
                         the same Idempotency-Key",
                    ))
                    .build()
            });
        if status == "201" {
            headers.entry("Location".into()).or_insert_with(|| {
                HeaderBuilder::new()
                    .schema(string())
                    .description(Some("Path of the created resource"))
                    .build()
            });
        }
    }
}

/// `PATCH /v1/meetings/{id}` with no field is 422 ("nothing to change"): its body has at
/// least one property. (Set here: `#[schema(min_properties)]` of utoipa 5.5 writes
/// `maxProperties`.)
struct SomethingToChange;

impl Modify for SomethingToChange {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let schemas = openapi.components.as_mut().map(|c| &mut c.schemas);
        if let Some(RefOr::T(Schema::Object(body))) =
            schemas.and_then(|s| s.get_mut("UpdateMeetingRequest"))
        {
            body.min_properties = Some(1);
        }
    }
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
