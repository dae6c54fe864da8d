//! Our own extractors, so every rejection speaks problem+json with a request id.
//!
//! `ApiJson` checks the content type, enforces the body limit, and tells malformed JSON (400)
//! from well-formed JSON with wrong or unknown fields (422, with the field's path).

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::ApiError;

/// Largest accepted request body (docs/api.md: 64 KiB).
pub const BODY_LIMIT: usize = 64 * 1024;

/// JSON body extractor. An empty body is read as `{}` when `T` accepts that (commands whose body
/// is optional, like cancel), so clients may omit it.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = request
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("").to_owned());
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(body_rejection)?;
        if bytes.len() > BODY_LIMIT {
            return Err(ApiError::PayloadTooLarge { limit: BODY_LIMIT });
        }
        if bytes.iter().all(u8::is_ascii_whitespace) && content_type.is_none() {
            return parse(b"{}").map(ApiJson);
        }
        match content_type.as_deref() {
            Some(ct) if is_json(ct) => {}
            Some(ct) => {
                return Err(ApiError::UnsupportedMediaType(format!(
                    "expected Content-Type application/json, got `{ct}`"
                )))
            }
            None => {
                return Err(ApiError::UnsupportedMediaType(
                    "expected Content-Type application/json".into(),
                ))
            }
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return parse(b"{}").map(ApiJson);
        }
        parse(&bytes).map(ApiJson)
    }
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        use serde_json::error::Category;
        match inner.classify() {
            Category::Syntax | Category::Eof | Category::Io => {
                ApiError::BadRequest(format!("malformed JSON: {inner}"))
            }
            Category::Data => {
                let field = if path == "." { String::new() } else { path };
                // serde's message ends in " at line X column Y"; the field path says more.
                let message = inner.to_string();
                let message = message
                    .rsplit_once(" at line ")
                    .map_or(message.as_str(), |(m, _)| m)
                    .to_string();
                ApiError::invalid(field, message)
            }
        }
    })?;
    deserializer
        .end()
        .map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))?;
    Ok(value)
}

fn body_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge { limit: BODY_LIMIT }
    } else {
        ApiError::BadRequest(format!("cannot read the request body: {rejection}"))
    }
}

/// Path extractor: a malformed id in the path is a 400 with a readable message.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| ApiPath(value))
            .map_err(|rejection: PathRejection| {
                ApiError::BadRequest(format!("invalid path parameter: {}", rejection.body_text()))
            })
    }
}

/// Query-string extractor with problem+json rejections (422: the values are wrong).
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| ApiQuery(value))
            .map_err(|rejection: QueryRejection| ApiError::invalid("query", rejection.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        title: String,
        count: Option<u32>,
    }

    fn status_of(bytes: &[u8]) -> u16 {
        parse::<Body>(bytes).unwrap_err().status().as_u16()
    }

    #[test]
    fn malformed_json_is_400_and_wrong_shapes_are_422() {
        assert_eq!(status_of(b"{\"title\": "), 400);
        assert_eq!(status_of(b"{title: 1}"), 400);
        assert_eq!(status_of(b"{\"title\": \"x\"} trailing"), 400);
        assert_eq!(status_of(b"{\"title\": 5}"), 422);
        assert_eq!(status_of(b"{\"title\": \"x\", \"extra\": 1}"), 422);
        assert_eq!(status_of(b"{}"), 422);
    }

    #[test]
    fn data_errors_name_the_field() {
        match parse::<Body>(b"{\"title\": \"x\", \"count\": \"three\"}") {
            Err(ApiError::Validation { errors, .. }) => assert_eq!(errors[0].field, "count"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn json_content_types_include_suffixes_and_parameters() {
        assert!(is_json("application/json"));
        assert!(is_json("application/json; charset=utf-8"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/x-www-form-urlencoded"));
    }
}
