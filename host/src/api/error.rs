//! Every error the HTTP API returns, in OpenAI's shape:
//! `{"error": {"message", "type", "param", "code"}}`.

use crate::pipeline::{GatewayError, LimitError};
use crate::plugins::bindings::types::ErrorClass;
use crate::routing::RouteError;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub code: Option<String>,
    pub param: Option<String>,
    pub message: String,
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>, param: Option<&str>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            code: None,
            param: param.map(str::to_string),
            message: message.into(),
            retry_after_secs: None,
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            kind: "invalid_request_error",
            code: Some("not_found".into()),
            param: None,
            message: message.into(),
            retry_after_secs: None,
        }
    }
}

impl From<GatewayError> for ApiError {
    fn from(error: GatewayError) -> Self {
        let message = error.to_string();
        let mut api = ApiError {
            status: StatusCode::BAD_GATEWAY,
            kind: "upstream_error",
            code: Some(error.class_label().to_string()),
            param: None,
            message,
            retry_after_secs: None,
        };
        match error {
            GatewayError::InvalidRequest { param, .. } => {
                api.status = StatusCode::BAD_REQUEST;
                api.kind = "invalid_request_error";
                api.code = None;
                api.param = param;
            }
            GatewayError::Route(RouteError::UnknownModel { .. }) => {
                api.status = StatusCode::NOT_FOUND;
                api.kind = "invalid_request_error";
                api.code = Some("model_not_found".into());
                api.param = Some("model".into());
            }
            GatewayError::Route(RouteError::UnknownPolicy { .. }) => {
                api.status = StatusCode::BAD_REQUEST;
                api.kind = "invalid_request_error";
                api.code = Some("policy_not_found".into());
                api.param = Some("policy".into());
            }
            GatewayError::Route(RouteError::NoCandidate { .. }) => {
                api.status = StatusCode::SERVICE_UNAVAILABLE;
                api.kind = "no_route_error";
                api.code = Some("no_candidate".into());
            }
            GatewayError::Plugin { .. } => {
                api.kind = "plugin_error";
            }
            GatewayError::Internal(_) => {
                api.status = StatusCode::INTERNAL_SERVER_ERROR;
                api.kind = "internal_error";
            }
            // 402, not 429: retrying does not help until the window resets or the budget grows,
            // and SDKs retry 429s on their own.
            GatewayError::Limit(LimitError::Budget(_)) => {
                api.status = StatusCode::PAYMENT_REQUIRED;
                api.kind = "insufficient_quota";
            }
            GatewayError::Limit(LimitError::RateLimited(throttled)) => {
                api.status = StatusCode::TOO_MANY_REQUESTS;
                api.kind = "rate_limit_error";
                api.code = Some("rate_limit_exceeded".into());
                api.retry_after_secs =
                    Some(throttled.retry_after.as_secs_f64().ceil().max(1.0) as u64);
            }
            GatewayError::Unsupported { .. } => {
                api.status = StatusCode::BAD_REQUEST;
                api.kind = "invalid_request_error";
            }
            GatewayError::Upstream {
                class,
                retry_after_ms,
                ..
            } => {
                api.status = match class {
                    ErrorClass::RateLimited => StatusCode::TOO_MANY_REQUESTS,
                    ErrorClass::BadRequest
                    | ErrorClass::ContextTooLong
                    | ErrorClass::ContentFiltered => StatusCode::BAD_REQUEST,
                    ErrorClass::NotFound => StatusCode::NOT_FOUND,
                    ErrorClass::Timeout => StatusCode::GATEWAY_TIMEOUT,
                    ErrorClass::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
                    ErrorClass::Auth | ErrorClass::Server | ErrorClass::InvalidResponse => {
                        StatusCode::BAD_GATEWAY
                    }
                };
                if matches!(
                    class,
                    ErrorClass::BadRequest
                        | ErrorClass::ContextTooLong
                        | ErrorClass::ContentFiltered
                ) {
                    api.kind = "invalid_request_error";
                }
                api.retry_after_secs = retry_after_ms.map(|ms| ms.div_ceil(1000).max(1));
            }
        }
        api
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from(secs));
        }
        response
    }
}
