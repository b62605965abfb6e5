//! Every error is JSON `{"error": {"type", "message"}}` with the status that says whose fault it is.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use xiaoguan_assist::AssistError;

/// The body of every error response.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// invalid_request, unauthorized, forbidden, not_found, payload_too_large, over_limit,
    /// unsupported_media_type, overloaded, unavailable, internal_error
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self { status, kind, message: message.into(), retry_after: None }
    }
    pub fn bad_request(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", m)
    }
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", m)
    }
    pub fn unauthorized(m: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", m)
    }
    pub fn forbidden(m: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", m)
    }
    pub fn unavailable(m: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m)
    }
    pub fn busy(retry_after: u64) -> Self {
        Self { retry_after: Some(retry_after), ..Self::new(StatusCode::TOO_MANY_REQUESTS, "overloaded", "the generator queue is full; retry later") }
    }
    /// 429 with Retry-After, for a reason of its own.
    pub fn busy_with(retry_after: u64, m: impl Into<String>) -> Self {
        Self { retry_after: Some(retry_after), ..Self::new(StatusCode::TOO_MANY_REQUESTS, "overloaded", m) }
    }
    /// A file over one of the readers' limits (named in the message).
    pub fn over_limit(m: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "over_limit", m)
    }
    /// The knowledge base's ingest queue is full.
    pub fn queue_full(kb: &str, retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "overloaded", format!("the ingest queue of knowledge base '{kb}' is full; retry later"))
        }
    }
    pub fn internal(m: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", m)
    }
}

impl From<AssistError> for ApiError {
    fn from(e: AssistError) -> Self {
        match &e {
            AssistError::NotFound(_) => ApiError::not_found(e.to_string()),
            // The vector store's server is away: the service stays up and retries by itself.
            AssistError::Kb(k) if k.is_unavailable() => {
                tracing::warn!(error = %e, "vector store unavailable");
                ApiError { retry_after: Some(5), ..ApiError::unavailable(e.to_string()) }
            }
            AssistError::Kb(xiaoguan_kb::KbError::Busy(m)) => ApiError::new(StatusCode::CONFLICT, "conflict", m.clone()),
            _ if e.is_user_error() => ApiError::bad_request(e.to_string()),
            _ => {
                tracing::error!(error = %e, "request failed");
                ApiError::internal(e.to_string())
            }
        }
    }
}

impl From<xiaoguan_kb::KbError> for ApiError {
    fn from(e: xiaoguan_kb::KbError) -> Self {
        AssistError::from(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(json!({"error": {"type": self.kind, "message": self.message}}))).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

/// JSON bodies whose rejections (malformed JSON, wrong types, wrong content type) are JSON errors too.
pub struct Json<T>(pub T);

impl<S, T> axum::extract::FromRequest<S> for Json<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(rej) => {
                let status = rej.status();
                let kind = if status == StatusCode::PAYLOAD_TOO_LARGE { "payload_too_large" } else { "invalid_request" };
                let status = if status.is_client_error() { status } else { StatusCode::BAD_REQUEST };
                Err(ApiError::new(status, kind, rej.body_text()))
            }
        }
    }
}

fn rejected(status: StatusCode, text: String) -> ApiError {
    let kind = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        _ => "invalid_request",
    };
    let status = if status.is_client_error() { status } else { StatusCode::BAD_REQUEST };
    ApiError::new(status, kind, text)
}

/// Query strings whose rejections are JSON errors.
pub struct Query<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for Query<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state).await.map(|q| Query(q.0)).map_err(|r| rejected(r.status(), r.body_text()))
    }
}

/// Path parameters whose rejections (bad percent-encoding) are JSON errors.
pub struct Path<T>(pub T);

impl<S, T> axum::extract::FromRequestParts<S> for Path<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state).await.map(|p| Path(p.0)).map_err(|r| rejected(r.status(), r.body_text()))
    }
}

/// A raw body whose rejections (over the body limit) are JSON errors.
pub struct RawBody(pub axum::body::Bytes);

impl<S> axum::extract::FromRequest<S> for RawBody
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::body::Bytes::from_request(req, state).await.map(RawBody).map_err(|r| rejected(r.status(), r.body_text()))
    }
}

/// An optional count that JSON may write as `84` or `84.0` (a JSON Schema integer allows both):
/// a fraction or a negative number is refused.
pub fn opt_count<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    use serde::Deserialize;
    match Option::<serde_json::Number>::deserialize(d)? {
        None => Ok(None),
        Some(n) => {
            if let Some(u) = n.as_u64() {
                return usize::try_from(u).map(Some).map_err(serde::de::Error::custom);
            }
            match n.as_f64() {
                Some(f) if f >= 0.0 && f.fract() == 0.0 && f <= usize::MAX as f64 => Ok(Some(f as usize)),
                _ => Err(serde::de::Error::custom(format!("expected a count (a whole number ≥ 0), got {n}"))),
            }
        }
    }
}

/// An optional whole number that may arrive as `12` or `12.0` (JSON does not tell them apart).
pub fn opt_whole<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    use serde::Deserialize;
    match Option::<serde_json::Number>::deserialize(d)? {
        None => Ok(None),
        Some(n) => {
            if let Some(i) = n.as_i64() {
                return Ok(Some(i));
            }
            match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() <= 9.0e15 => Ok(Some(f as i64)),
                _ => Err(serde::de::Error::custom(format!("expected a whole number, got {n}"))),
            }
        }
    }
}

impl From<xiaoguan_tickets::StoreError> for ApiError {
    fn from(e: xiaoguan_tickets::StoreError) -> Self {
        match e {
            xiaoguan_tickets::StoreError::InvalidInput(m) => ApiError::bad_request(m),
            xiaoguan_tickets::StoreError::Database(m) => {
                tracing::error!(error = %m, "ticket store failed");
                ApiError::internal(format!("ticket store: {m}"))
            }
        }
    }
}
