//! The pooled HTTP client that sends what adapters build.

use super::credentials::Secret;
use crate::config::UpstreamSettings;
use crate::plugins::bindings::adapter::AuthScheme;
use crate::plugins::bindings::types::{Header, HttpRequest, HttpResponse};
use std::time::Duration;

/// Where and how to send one provider's requests.
pub struct Endpoint<'a> {
    pub base_url: &'a str,
    pub auth: &'a AuthScheme,
    pub key: Option<&'a Secret>,
    pub static_headers: &'a [Header],
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("the adapter built an unusable request: {0}")]
    InvalidRequest(String),
    #[error("upstream did not answer in time: {0}")]
    Timeout(String),
    #[error("cannot reach upstream: {0}")]
    Connect(String),
    #[error("upstream connection failed: {0}")]
    Io(String),
}

/// Headers an adapter may not set: credentials are the host's business, framing is reqwest's.
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "x-goog-api-key",
    "api-key",
    "cookie",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
];

#[derive(Clone)]
pub struct UpstreamClient {
    client: reqwest::Client,
    total_timeout: Duration,
}

impl UpstreamClient {
    pub fn new(settings: &UpstreamSettings) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(settings.connect_timeout_ms))
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(64)
            // A redirect could carry a query-string key to another host.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("ai-gateway/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(UpstreamClient {
            client,
            total_timeout: Duration::from_millis(settings.total_timeout_ms),
        })
    }

    /// Sends a request and reads the whole response.
    pub async fn send(
        &self,
        endpoint: &Endpoint<'_>,
        request: HttpRequest,
    ) -> Result<HttpResponse, TransportError> {
        let response = self.open(endpoint, request).await?;
        read_response(response).await
    }

    /// Sends a request and returns as soon as the response head arrives, for streaming.
    pub async fn open(
        &self,
        endpoint: &Endpoint<'_>,
        request: HttpRequest,
    ) -> Result<reqwest::Response, TransportError> {
        if endpoint.base_url.starts_with(super::simulated::SCHEME) {
            return Ok(super::simulated::respond(&request));
        }
        let builder = self.prepare(endpoint, request)?;
        builder.send().await.map_err(transport_error)
    }

    fn prepare(
        &self,
        endpoint: &Endpoint<'_>,
        request: HttpRequest,
    ) -> Result<reqwest::RequestBuilder, TransportError> {
        let path = &request.path;
        // The adapter chooses the path, never the host: the base URL is the host's.
        if !path.starts_with('/') || path.starts_with("//") || path.contains('#') {
            return Err(TransportError::InvalidRequest(format!(
                "path '{path}' must start with a single '/'"
            )));
        }
        let url = format!("{}{}", endpoint.base_url.trim_end_matches('/'), path);
        let method = reqwest::Method::from_bytes(request.method.as_bytes()).map_err(|_| {
            TransportError::InvalidRequest(format!("'{}' is not an HTTP method", request.method))
        })?;
        let auth_header = match endpoint.auth {
            AuthScheme::Header(name) => Some(name.to_ascii_lowercase()),
            _ => None,
        };
        let mut builder = self
            .client
            .request(method, &url)
            .timeout(self.total_timeout);
        for header in endpoint.static_headers.iter().chain(&request.headers) {
            let name = header.name.to_ascii_lowercase();
            if RESERVED_HEADERS.contains(&name.as_str()) || auth_header.as_ref() == Some(&name) {
                tracing::debug!(
                    header = name,
                    "dropping a reserved header set by the adapter"
                );
                continue;
            }
            let value = reqwest::header::HeaderValue::from_str(&header.value).map_err(|_| {
                TransportError::InvalidRequest(format!("header '{name}' has an invalid value"))
            })?;
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                TransportError::InvalidRequest(format!("'{}' is not a header name", header.name))
            })?;
            builder = builder.header(name, value);
        }
        if let Some(key) = endpoint.key {
            builder = match endpoint.auth {
                AuthScheme::None => builder,
                AuthScheme::Bearer => builder.bearer_auth(key.expose()),
                AuthScheme::Header(name) => builder.header(name.as_str(), key.expose()),
                AuthScheme::Query(param) => builder.query(&[(param.as_str(), key.expose())]),
            };
        }
        Ok(builder.body(request.body))
    }
}

/// The largest non-streamed upstream response read; a larger one is refused, not buffered.
const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

/// Reads a whole response into the form adapters parse.
pub async fn read_response(
    mut response: reqwest::Response,
) -> Result<HttpResponse, TransportError> {
    let status = response.status().as_u16();
    let headers = response_headers(&response);
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(TransportError::Io(format!(
                "the upstream response exceeded {MAX_RESPONSE_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn response_headers(response: &reqwest::Response) -> Vec<Header> {
    response
        .headers()
        .iter()
        .filter_map(|(name, value)| {
            Some(Header {
                name: name.as_str().to_string(),
                value: value.to_str().ok()?.to_string(),
            })
        })
        .collect()
}

/// reqwest's errors carry the URL, which for query-key providers holds the key: strip it.
pub fn transport_error(error: reqwest::Error) -> TransportError {
    let (timeout, connect) = (error.is_timeout(), error.is_connect());
    let message = error.without_url().to_string();
    if timeout {
        TransportError::Timeout(message)
    } else if connect {
        TransportError::Connect(message)
    } else {
        TransportError::Io(message)
    }
}
