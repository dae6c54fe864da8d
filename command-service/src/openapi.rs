//! `GET /v1/openapi.json`: the OpenAPI document, generated from the handlers' annotations so it
//! cannot drift from the code.

use axum::Router;
use utoipa::OpenApi;

use platform::openapi::BearerAuth;

use crate::routes::{auth, meetings, users};
use crate::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "meetings — command API",
        version = "1",
        description = "Commands on users and meetings, and authentication. Errors are RFC 9457 \
            problem+json with a request_id. Mutating requests accept If-Match and Idempotency-Key."
    ),
    paths(
        auth::register, auth::login, auth::refresh, auth::logout,
        users::change_profile, users::change_password, users::change_role, users::deactivate,
        meetings::schedule, meetings::update, meetings::invite, meetings::remove_attendee,
        meetings::respond, meetings::cancel, meetings::start, meetings::end,
        meetings::post_message,
    ),
    components(schemas(
        platform::http::Problem, platform::http::error::ProblemFieldError,
        crate::executor::CommandBody,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Registration, login and sessions"),
        (name = "users", description = "User profile and administration"),
        (name = "meetings", description = "Scheduling and running meetings"),
    )
)]
pub struct ApiDoc;

pub fn router() -> Router<AppState> {
    platform::openapi::router(ApiDoc::openapi())
}
