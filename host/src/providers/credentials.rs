//! Provider keys and base-URL overrides, read from the environment.

use crate::config::Config;
use std::collections::HashMap;
use std::fmt;

/// A credential. Its `Debug` and `Display` never show the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// The only way to read the value: at the point where it is put on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// What the environment supplies for each provider.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    keys: HashMap<String, Secret>,
    base_urls: HashMap<String, String>,
}

impl Credentials {
    /// Reads the variables each provider's config names. Missing or empty keys are not errors:
    /// the provider is listed as unconfigured.
    pub fn from_env(config: &Config) -> Self {
        Self::from_lookup(config, |name| std::env::var(name).ok())
    }

    pub fn from_lookup(config: &Config, lookup: impl Fn(&str) -> Option<String>) -> Self {
        let mut credentials = Credentials::default();
        for (id, provider) in &config.providers {
            let read = |var: &Option<String>| {
                var.as_deref()
                    .and_then(&lookup)
                    .map(|v| v.trim().to_string())
                    .filter(|v| !v.is_empty())
            };
            if let Some(key) = read(&provider.api_key_env) {
                credentials.keys.insert(id.clone(), Secret::new(key));
            }
            if let Some(url) = read(&provider.base_url_env) {
                match crate::config::check_base_url(&url) {
                    Ok(()) => {
                        credentials.base_urls.insert(id.clone(), url);
                    }
                    Err(why) => tracing::warn!(
                        provider = id,
                        variable = provider.base_url_env.as_deref().unwrap_or_default(),
                        "ignoring the base URL override: {why}"
                    ),
                }
            }
        }
        credentials
    }

    pub fn key(&self, provider: &str) -> Option<&Secret> {
        self.keys.get(provider)
    }

    pub fn base_url_override(&self, provider: &str) -> Option<&str> {
        self.base_urls.get(provider).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("sk-live-123".into());
        assert_eq!(format!("{s}"), "[redacted]");
        assert!(!format!("{s:?}").contains("sk-live"));
    }
}
