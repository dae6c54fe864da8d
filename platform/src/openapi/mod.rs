//! What every service's OpenAPI document shares: the bearer scheme, the answers every operation
//! can give (problem+json errors, the request id, `Retry-After`), the schemas of checked values
//! ([`schemas`]) and the route serving the document.

pub mod schemas;

use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::SchemaType;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, ObjectBuilder, Ref, RefOr, Required, Response, Schema, Type,
};
use utoipa::Modify;

/// Declares the `bearer` (JWT) security scheme the operations refer to.
pub struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "An access token from POST /v1/auth/login or /v1/auth/refresh. A \
                         missing, malformed, expired or forged token is 401 with \
                         `WWW-Authenticate: Bearer`.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The operations of a path, mutably.
pub fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.patch,
    ]
    .into_iter()
    .flatten()
}

/// An optional request body (`request_body = Option<T>`, for commands that read a missing body
/// as `{}`) is documented by utoipa as "`T` or `null`"; but a JSON `null` is not `T` and is
/// refused (422). This leaves the body optional and its schema `T`.
pub struct OptionalBodies;

impl Modify for OptionalBodies {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for operation in operations_mut(item) {
                let Some(body) = &mut operation.request_body else {
                    continue;
                };
                if body.required == Some(Required::True) {
                    continue;
                }
                for content in body.content.values_mut() {
                    if let Some(RefOr::T(Schema::OneOf(one_of))) = &content.schema {
                        let not_null = one_of.items.iter().filter(|item| !is_null(item));
                        if let [only] = not_null.collect::<Vec<_>>()[..] {
                            content.schema = Some(only.clone());
                        }
                    }
                }
            }
        }
    }
}

/// A header or query parameter is text, never JSON `null`, but utoipa documents an
/// `Option<String>` parameter as "string or null". This leaves it "string" (optional).
pub struct NotNullParameters;

impl Modify for NotNullParameters {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for operation in operations_mut(item) {
                for parameter in operation.parameters.iter_mut().flatten() {
                    if let Some(RefOr::T(Schema::Object(object))) = &mut parameter.schema {
                        if let SchemaType::Array(types) = &object.schema_type {
                            let mut types = types.iter().filter(|t| **t != Type::Null);
                            if let (Some(only), None) = (types.next(), types.next()) {
                                object.schema_type = SchemaType::Type(only.clone());
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The `$ref`s of `openapi` that name no component (a schema type used only as a parameter's
/// `value_type` is not collected by utoipa: it must be listed in `components`).
pub fn dangling_references(openapi: &utoipa::openapi::OpenApi) -> Vec<String> {
    let document = serde_json::to_value(openapi).expect("BUG: a document serializes");
    let mut dangling = Vec::new();
    let mut stack = vec![&document];
    while let Some(value) = stack.pop() {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::String(target)) = map.get("$ref") {
                    let pointer = target.trim_start_matches('#');
                    if document.pointer(pointer).is_none() {
                        dangling.push(target.clone());
                    }
                }
                stack.extend(map.values());
            }
            serde_json::Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    dangling.sort();
    dangling.dedup();
    dangling
}

fn is_null(schema: &RefOr<Schema>) -> bool {
    matches!(schema, RefOr::T(Schema::Object(object))
        if object.schema_type == SchemaType::Type(Type::Null))
}

/// Media type of every error answer (RFC 9457).
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Completes the answers of every operation with what the shared HTTP layer does, so that the
/// handlers' annotations only name what is particular to them:
/// - every 4xx and 5xx answer is `application/problem+json` with the `Problem` schema;
/// - 400 (malformed JSON, path parameter or header), 422 (invalid values) and 503 (a
///   dependency is down, or the request was not answered in time) on every operation; 401 on
///   every operation that needs a token; 408, 413 and 415 on every operation with a body;
/// - `X-Request-Id` on every answer, `WWW-Authenticate` on 401, `Retry-After` on 429 and 503.
pub struct ProblemResponses;

impl Modify for ProblemResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for operation in operations_mut(item) {
                complete(operation);
            }
        }
    }
}

fn complete(operation: &mut Operation) {
    let has_body = operation.request_body.is_some();
    let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
    let shared: [(&str, bool, &str); 7] = [
        (
            "400",
            true,
            "Malformed request: JSON that does not parse, a path parameter or a header that \
             cannot be read",
        ),
        (
            "401",
            secured,
            "No bearer token, or one that is malformed, expired or not ours",
        ),
        (
            "408",
            has_body,
            "The request body did not arrive in time (MEETINGS_HTTP_REQUEST_TIMEOUT); the \
             connection is closed",
        ),
        ("413", has_body, "The request body exceeds 64 KiB"),
        (
            "415",
            has_body,
            "A body that is not `application/json` (or `application/*+json`)",
        ),
        (
            "422",
            true,
            "Invalid values: `errors` names each invalid field (a JSON path of the body, or the \
             parameter's name) with what is wrong",
        ),
        (
            "503",
            true,
            "A dependency (the database) is unavailable, or the request was not answered in \
             time; retry after `Retry-After` seconds",
        ),
    ];
    let responses = &mut operation.responses.responses;
    for (status, applies, description) in shared {
        if applies {
            responses
                .entry(status.to_string())
                .or_insert_with(|| ResponseBuilder::new().description(description).into());
        }
    }
    for (status, response) in responses.iter_mut() {
        if let RefOr::T(response) = response {
            complete_response(status, response);
        }
    }
}

fn complete_response(status: &str, response: &mut Response) {
    let error = status.starts_with('4') || status.starts_with('5');
    if error {
        let problem = ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Problem")))
            .build();
        response.content.clear();
        response.content.insert(PROBLEM_JSON.to_string(), problem);
        if response.description.is_empty() {
            response.description = default_description(status).to_string();
        }
    }
    let headers = &mut response.headers;
    headers.entry("X-Request-Id".into()).or_insert_with(|| {
        HeaderBuilder::new()
            .schema(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some("^[!-~]{1,128}$")),
            )
            .description(Some(
                "The client's X-Request-Id when it is 1–128 visible ASCII characters, else one \
                 the server made; it is in every log line and event of the request",
            ))
            .build()
    });
    match status {
        "401" => {
            headers.entry("WWW-Authenticate".into()).or_insert_with(|| {
                HeaderBuilder::new()
                    .schema(ObjectBuilder::new().schema_type(Type::String))
                    .description(Some("`Bearer realm=\"meetings\"`"))
                    .build()
            });
        }
        "429" | "503" => {
            headers.entry("Retry-After".into()).or_insert_with(|| {
                HeaderBuilder::new()
                    .schema(
                        ObjectBuilder::new()
                            .schema_type(Type::Integer)
                            .minimum(Some(0)),
                    )
                    .description(Some("Seconds to wait before trying again"))
                    .build()
            });
        }
        _ => {}
    }
}

fn default_description(status: &str) -> &'static str {
    match status {
        "403" => "Not allowed to do this",
        "404" => "Unknown, or not visible to the caller",
        "409" => "Conflicts with the current state",
        "412" => "`If-Match` names a version that is not the current one",
        "429" => "Throttled: retry after `Retry-After` seconds",
        _ => "Error",
    }
}

/// `GET /v1/openapi.json` answering `document` (built once, at start).
pub fn router<S: Clone + Send + Sync + 'static>(document: utoipa::openapi::OpenApi) -> Router<S> {
    let document = Json(document);
    Router::new().route(
        "/v1/openapi.json",
        get(move || {
            let document = document.clone();
            async move { document }
        }),
    )
}
