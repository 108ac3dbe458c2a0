//! API-key authentication for every endpoint but `/health`.
//!
//! Keys come from the environment (`GATEWAY_API_KEYS`, comma-separated), never from config files.
//! An entry may be `id:key`, naming the caller for routing policies and budgets; a bare key gets
//! an id derived from its hash. Presented keys are compared against every configured key in
//! constant time, on SHA-256 digests so that not even the length leaks, and are never logged.

use super::ApiError;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;

pub const KEYS_ENV: &str = "GATEWAY_API_KEYS";

/// Paths that answer without a key: liveness must work for any probe.
const PUBLIC_PATHS: &[&str] = &["/health"];

/// The caller a request was authenticated as.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key_id: Option<String>,
}

#[derive(Default)]
pub struct ApiKeys {
    keys: Vec<(String, [u8; 32])>,
}

impl ApiKeys {
    pub fn from_env() -> Self {
        Self::parse(&std::env::var(KEYS_ENV).unwrap_or_default())
    }

    pub fn parse(text: &str) -> Self {
        let keys = text
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                let (id, key) = match entry.split_once(':') {
                    // An id is short and plain; anything else is a key that contains ':'.
                    Some((id, key))
                        if !id.is_empty()
                            && id.len() <= 64
                            && id
                                .chars()
                                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
                    {
                        (id.to_string(), key)
                    }
                    _ => {
                        let digest = Sha256::digest(entry.as_bytes());
                        (format!("key-{}", hex::encode(&digest[..4])), entry)
                    }
                };
                (id, Sha256::digest(key.as_bytes()).into())
            })
            .collect();
        ApiKeys { keys }
    }

    pub fn enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The id of the key that matches, checking every key so timing says nothing.
    fn identify(&self, presented: &str) -> Option<String> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for (id, key) in &self.keys {
            if bool::from(key.ct_eq(&digest)) {
                found = Some(id.clone());
            }
        }
        found
    }
}

pub async fn require_key(
    State(keys): State<Arc<ApiKeys>>,
    mut request: Request,
    next: Next,
) -> Response {
    if !keys.enabled() || PUBLIC_PATHS.contains(&request.uri().path()) {
        request.extensions_mut().insert(Caller { key_id: None });
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(presented) = presented.filter(|k| !k.is_empty()) else {
        return unauthorized(
            "missing API key: send the header `Authorization: Bearer <key>`",
            "missing_api_key",
        );
    };
    match keys.identify(presented) {
        Some(key_id) => {
            request.extensions_mut().insert(Caller {
                key_id: Some(key_id),
            });
            next.run(request).await
        }
        None => unauthorized(
            "invalid API key: check the key you send in `Authorization: Bearer <key>`",
            "invalid_api_key",
        ),
    }
}

fn unauthorized(message: &str, code: &str) -> Response {
    ApiError {
        status: StatusCode::UNAUTHORIZED,
        kind: "invalid_request_error",
        code: Some(code.into()),
        param: None,
        message: message.into(),
        retry_after_secs: None,
    }
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_with_and_without_ids() {
        let keys = ApiKeys::parse("team-a:sk-aaa, sk-bbb ,,weird:id:key-with-colons");
        assert_eq!(keys.identify("sk-aaa").as_deref(), Some("team-a"));
        assert!(keys.identify("sk-bbb").unwrap().starts_with("key-"));
        // Only the first ':' separates the id; the key may contain more.
        assert_eq!(
            keys.identify("id:key-with-colons").as_deref(),
            Some("weird")
        );
        assert_eq!(keys.identify("key-with-colons"), None);
        assert_eq!(keys.identify("sk-aa"), None);
        assert!(!ApiKeys::parse(" , ").enabled());
    }
}
