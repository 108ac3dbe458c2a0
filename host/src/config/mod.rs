//! The gateway's configuration: a directory of TOML files.
//!
//! - `gateway.toml`: server, plugin directories and limits, routing defaults, upstream timeouts,
//!   the response cache.
//! - `providers.toml`: one table per provider: which adapter component serves it, where its key
//!   and base URL come from, and non-secret settings handed to the adapter.
//! - `models.toml`: the model catalog: provider, context window, pricing, quality, capabilities.
//! - `tasks.toml` (optional): labelled example prompts per task class for the embedding
//!   classifier; without it requests are classified by keywords.
//!
//! Loading is strict (unknown fields are errors, so typos do not silently fall back to
//! defaults) and every problem names the file, the field and what is wrong.

mod accounting;
mod cache;
mod env;
mod model;
mod tasks;

pub use accounting::{Budget, BudgetSettings, KeyBudget, LedgerSettings, Rate, RateLimitSettings};
pub use cache::CacheSettings;
pub use env::{Override, Target as OverrideTarget};
pub use model::{Capabilities, ModelConfig, TaskClass};
pub use tasks::{MIN_EXAMPLES_PER_CLASS, TaskExamples};

use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const GATEWAY_FILE: &str = "gateway.toml";
pub const PROVIDERS_FILE: &str = "providers.toml";
pub const MODELS_FILE: &str = "models.toml";
pub const TASKS_FILE: &str = "tasks.toml";

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The directory the files were read from; relative paths inside are resolved against it.
    pub dir: PathBuf,
    pub gateway: GatewaySettings,
    pub providers: BTreeMap<String, ProviderConfig>,
    pub models: Vec<ModelConfig>,
    /// `None` when there is no `tasks.toml`.
    pub tasks: Option<TaskExamples>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewaySettings {
    pub server: ServerSettings,
    pub plugins: PluginSettings,
    pub routing: RoutingSettings,
    pub upstream: UpstreamSettings,
    pub mcp: McpSettings,
    pub ledger: LedgerSettings,
    pub budgets: BudgetSettings,
    pub rate_limits: RateLimitSettings,
    pub cache: CacheSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address and port to listen on; `$PORT`, when set, replaces the port.
    pub listen: String,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Longest a request may take end to end, in milliseconds.
    pub request_timeout_ms: u64,
    /// After SIGTERM, how long requests in flight may take to finish before they are cut, in
    /// milliseconds. Cloud Run kills the container 10 s after SIGTERM.
    pub shutdown_grace_ms: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: "0.0.0.0:8080".into(),
            max_body_bytes: 4 * 1024 * 1024,
            request_timeout_ms: 300_000,
            shutdown_grace_ms: 8_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginSettings {
    /// Where provider adapter components (`*.wasm`) are loaded from and watched.
    pub provider_dir: PathBuf,
    /// Where routing policy components (`*.wasm`) are loaded from and watched.
    pub policy_dir: PathBuf,
    /// The longest one plugin call may run before it is interrupted, in milliseconds.
    pub call_timeout_ms: u64,
    /// The most linear memory one plugin instance may use, in MiB.
    pub memory_limit_mib: u64,
}

impl Default for PluginSettings {
    fn default() -> Self {
        PluginSettings {
            provider_dir: PathBuf::from("../plugins/dist"),
            policy_dir: PathBuf::from("../policies/dist"),
            call_timeout_ms: 250,
            memory_limit_mib: 64,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingSettings {
    /// The policy component (file stem in the policy directory) used when a request names none.
    pub default_policy: String,
    /// The most upstream attempts (across fallback candidates) for one request.
    pub max_attempts: u32,
    /// Consecutive failures that open a model's or provider's circuit.
    pub circuit_failure_threshold: u32,
    /// How long an open circuit stays open before one probe is let through.
    pub circuit_open_ms: u64,
    /// First pause before retrying the chain again; doubles each round, with jitter.
    pub backoff_base_ms: u64,
    /// The longest pause between rounds.
    pub backoff_max_ms: u64,
}

impl Default for RoutingSettings {
    fn default() -> Self {
        RoutingSettings {
            default_policy: "balanced".into(),
            max_attempts: 3,
            circuit_failure_threshold: 5,
            circuit_open_ms: 30_000,
            backoff_base_ms: 100,
            backoff_max_ms: 2_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamSettings {
    pub connect_timeout_ms: u64,
    /// Streams: the longest wait for the stream to start, and the longest silence inside it.
    pub first_byte_timeout_ms: u64,
    /// Longest a whole upstream call may take.
    pub total_timeout_ms: u64,
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        UpstreamSettings {
            connect_timeout_ms: 5_000,
            first_byte_timeout_ms: 60_000,
            total_timeout_ms: 300_000,
        }
    }
}

/// The Streamable HTTP MCP endpoint (`/mcp`): protection against DNS rebinding.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct McpSettings {
    /// `Host` header values accepted (hostname or `host:port`); `"*"` accepts any, for
    /// deployments behind a proxy that checks the host itself (Cloud Run does).
    pub allowed_hosts: Vec<String>,
    /// Browser `Origin`s accepted (scheme://host[:port|:*]); requests without an Origin
    /// (every non-browser client) pass.
    pub allowed_origins: Vec<String>,
}

impl Default for McpSettings {
    fn default() -> Self {
        McpSettings {
            allowed_hosts: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            allowed_origins: vec![
                "http://localhost:*".into(),
                "http://127.0.0.1:*".into(),
                "https://localhost:*".into(),
            ],
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// The adapter component serving this provider (file stem in the provider directory).
    pub adapter: String,
    /// The base URL; the variable named by `base_url_env` wins when set, the adapter's default
    /// applies when neither is given.
    pub base_url: Option<String>,
    /// An environment variable that overrides `base_url`.
    pub base_url_env: Option<String>,
    /// The environment variable holding the API key. Keys are never written in config files.
    pub api_key_env: Option<String>,
    /// Whether the provider can only be used with a key. Defaults to what the adapter's auth
    /// scheme says; set false for local servers (Ollama, vLLM) that take none.
    pub api_key_required: Option<bool>,
    /// Set to false to keep the provider out of routing without deleting it.
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    /// Non-secret settings handed to the adapter on every call.
    #[serde(default)]
    pub settings: BTreeMap<String, toml::Value>,
}

fn enabled_by_default() -> bool {
    true
}

impl ProviderConfig {
    /// Settings as the adapter receives them: every value as text.
    pub fn settings_for_adapter(&self) -> Vec<(String, String)> {
        self.settings
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), text)
            })
            .collect()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelsFile {
    #[serde(default)]
    models: Vec<ModelConfig>,
}

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigProblem {
    pub file: PathBuf,
    /// The field's path, e.g. `models[3].provider` or `server.listen`.
    pub field: String,
    pub problem: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: {}",
            self.file.display(),
            self.field,
            self.problem
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read the configuration: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", file.display())]
    Parse { file: PathBuf, message: String },
    #[error("invalid configuration:\n{}", problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid { problems: Vec<ConfigProblem> },
}

impl Config {
    /// Reads and validates the configuration in `path` (a directory, or its `gateway.toml`).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let dir = if path.is_file() {
            path.parent().unwrap_or(Path::new(".")).to_path_buf()
        } else {
            path.to_path_buf()
        };
        if !dir.is_dir() {
            return Err(ConfigError::Read {
                path: dir,
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such configuration directory",
                ),
            });
        }
        let overrides = env::overrides(std::env::vars());
        if !overrides.is_empty() {
            let names: Vec<&str> = overrides.iter().map(|o| o.variable.as_str()).collect();
            tracing::info!(variables = ?names, "configuration overrides from the environment");
        }
        let gateway: GatewaySettings = parse_file(
            &dir.join(GATEWAY_FILE),
            true,
            &overrides,
            Some(env::Target::Gateway),
        )?;
        let providers: BTreeMap<String, ProviderConfig> = parse_file(
            &dir.join(PROVIDERS_FILE),
            true,
            &overrides,
            Some(env::Target::Providers),
        )?;
        let models: ModelsFile = parse_file(&dir.join(MODELS_FILE), true, &[], None)?;
        let tasks_file = dir.join(TASKS_FILE);
        let tasks: Option<TaskExamples> = if tasks_file.exists() {
            Some(parse_file(&tasks_file, true, &[], None)?)
        } else {
            None
        };
        let config = Config {
            dir,
            gateway,
            providers,
            models: models.models,
            tasks,
        };
        let problems = config.problems();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid { problems })
        }
    }

    pub fn provider_dir(&self) -> PathBuf {
        self.dir.join(&self.gateway.plugins.provider_dir)
    }

    pub fn policy_dir(&self) -> PathBuf {
        self.dir.join(&self.gateway.plugins.policy_dir)
    }

    pub fn model(&self, id: &str) -> Option<&ModelConfig> {
        self.models.iter().find(|m| m.id == id)
    }

    /// Every semantic problem, so one run of `config check` shows them all.
    fn problems(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        let gateway_file = self.dir.join(GATEWAY_FILE);
        let providers_file = self.dir.join(PROVIDERS_FILE);
        let models_file = self.dir.join(MODELS_FILE);
        let tasks_file = self.dir.join(TASKS_FILE);
        let mut problem = |file: &Path, field: String, text: String| {
            problems.push(ConfigProblem {
                file: file.to_path_buf(),
                field,
                problem: text,
            })
        };

        let g = &self.gateway;
        if g.server.listen.parse::<SocketAddr>().is_err() {
            problem(
                &gateway_file,
                "server.listen".into(),
                format!(
                    "'{}' is not an address and port such as 0.0.0.0:8080",
                    g.server.listen
                ),
            );
        }
        if g.server.max_body_bytes < 1024 {
            problem(
                &gateway_file,
                "server.max_body_bytes".into(),
                "must be at least 1024".into(),
            );
        }
        if g.plugins.call_timeout_ms == 0 {
            problem(
                &gateway_file,
                "plugins.call_timeout_ms".into(),
                "must be greater than 0".into(),
            );
        }
        if !(1..=4096).contains(&g.plugins.memory_limit_mib) {
            problem(
                &gateway_file,
                "plugins.memory_limit_mib".into(),
                "must be between 1 and 4096".into(),
            );
        }
        if g.routing.default_policy.trim().is_empty() {
            problem(
                &gateway_file,
                "routing.default_policy".into(),
                "must name a policy component".into(),
            );
        }
        if g.routing.circuit_failure_threshold == 0 {
            problem(
                &gateway_file,
                "routing.circuit_failure_threshold".into(),
                "must be at least 1".into(),
            );
        }
        for (field, text) in g.cache.problems() {
            problem(&gateway_file, field.into(), text.into());
        }
        if g.routing.backoff_base_ms > g.routing.backoff_max_ms {
            problem(
                &gateway_file,
                "routing.backoff_base_ms".into(),
                "must not exceed routing.backoff_max_ms".into(),
            );
        }
        if g.routing.max_attempts == 0 {
            problem(
                &gateway_file,
                "routing.max_attempts".into(),
                "must be at least 1".into(),
            );
        }
        for (name, value) in [
            ("upstream.connect_timeout_ms", g.upstream.connect_timeout_ms),
            (
                "upstream.first_byte_timeout_ms",
                g.upstream.first_byte_timeout_ms,
            ),
            ("upstream.total_timeout_ms", g.upstream.total_timeout_ms),
        ] {
            if value == 0 {
                problem(&gateway_file, name.into(), "must be greater than 0".into());
            }
        }

        for (field, text) in accounting::problems(&g.ledger, &g.budgets, &g.rate_limits) {
            problem(&gateway_file, field, text);
        }
        for id in g.rate_limits.providers.keys() {
            if !self.providers.contains_key(id) {
                problem(
                    &gateway_file,
                    format!("rate_limits.providers.{id}"),
                    format!("'{id}' is not defined in {PROVIDERS_FILE}"),
                );
            }
        }
        for id in g.rate_limits.models.keys() {
            if self.model(id).is_none() {
                problem(
                    &gateway_file,
                    format!("rate_limits.models.\"{id}\""),
                    format!("'{id}' is not a model in {MODELS_FILE}"),
                );
            }
        }

        for (id, p) in &self.providers {
            if !is_identifier(id) {
                problem(
                    &providers_file,
                    id.clone(),
                    "provider ids may only hold lower-case letters, digits, '-' and '_'".into(),
                );
            }
            if p.adapter.trim().is_empty() {
                problem(
                    &providers_file,
                    format!("{id}.adapter"),
                    "must name an adapter component".into(),
                );
            }
            if let Some(url) = &p.base_url
                && let Err(why) = check_base_url(url)
            {
                problem(&providers_file, format!("{id}.base_url"), why);
            }
            for (field, var) in [
                ("api_key_env", &p.api_key_env),
                ("base_url_env", &p.base_url_env),
            ] {
                if let Some(var) = var
                    && !is_env_name(var)
                {
                    problem(
                        &providers_file,
                        format!("{id}.{field}"),
                        format!("'{var}' is not an environment variable name"),
                    );
                }
            }
        }

        let mut seen = HashSet::new();
        for (i, m) in self.models.iter().enumerate() {
            let at = |field: &str| format!("models[{i}] ({}).{field}", m.id);
            if !seen.insert(m.id.as_str()) {
                problem(&models_file, at("id"), "is defined more than once".into());
            }
            if m.id == "auto" || m.id.trim().is_empty() {
                problem(
                    &models_file,
                    at("id"),
                    "must be a non-empty name other than 'auto'".into(),
                );
            }
            if !self.providers.contains_key(&m.provider) {
                problem(
                    &models_file,
                    at("provider"),
                    format!(
                        "'{}' is not defined in {PROVIDERS_FILE} (defined: {})",
                        m.provider,
                        self.providers
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
            for p in m.problems() {
                problem(&models_file, at(p.0), p.1);
            }
            for fallback in &m.fallbacks {
                if fallback == &m.id {
                    problem(
                        &models_file,
                        at("fallbacks"),
                        "lists the model itself".into(),
                    );
                } else if !self.models.iter().any(|other| &other.id == fallback) {
                    problem(
                        &models_file,
                        at("fallbacks"),
                        format!("'{fallback}' is not a model in the catalog"),
                    );
                }
            }
        }
        if let Some(tasks) = &self.tasks {
            for (field, text) in tasks.problems() {
                problem(&tasks_file, field, text);
            }
        }
        problems
    }
}

/// Parses one file, with the environment's overrides for it (`AIGW_*__*`) applied on top.
fn parse_file<T: serde::de::DeserializeOwned>(
    path: &Path,
    required: bool,
    overrides: &[Override],
    target: Option<env::Target>,
) -> Result<T, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => String::new(),
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let parse_error = |message: String| ConfigError::Parse {
        file: path.to_path_buf(),
        message: message.trim_end().to_string(),
    };
    let relevant = target.is_some_and(|t| overrides.iter().any(|o| o.target == t));
    let Some(target) = target.filter(|_| relevant) else {
        // Straight from the text, so errors point at a line and column.
        return toml::from_str(&text).map_err(|e| parse_error(e.to_string()));
    };
    let mut table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| parse_error(e.to_string()))?;
    let applied = env::apply(&mut table, overrides, target).map_err(parse_error)?;
    T::deserialize(toml::Value::Table(table)).map_err(|e| {
        let mut message = e.to_string();
        if !applied.is_empty() {
            message.push_str(&format!(
                " (with environment overrides {})",
                applied.join(", ")
            ));
        }
        parse_error(message)
    })
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Base URLs must be absolute http(s) URLs without a query, so the adapter's path appends cleanly.
pub fn check_base_url(url: &str) -> Result<(), String> {
    if url.starts_with(crate::providers::simulated::SCHEME) {
        return Ok(());
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("'{url}' is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("'{url}' must start with http:// or https://"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!("'{url}' must not have a query or fragment"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    fn valid_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            GATEWAY_FILE,
            "[server]\nlisten = \"127.0.0.1:0\"\n",
        );
        write(
            dir.path(),
            PROVIDERS_FILE,
            "[openai]\nadapter = \"openai\"\napi_key_env = \"OPENAI_API_KEY\"\n",
        );
        write(
            dir.path(),
            MODELS_FILE,
            r#"
[[models]]
id = "gpt-5-mini"
provider = "openai"
context_window = 400000
max_output_tokens = 128000
input_per_mtok = 0.25
cached_input_per_mtok = 0.025
output_per_mtok = 2.0
quality = 0.8
"#,
        );
        dir
    }

    #[test]
    fn loads_a_valid_directory() {
        let dir = valid_dir();
        let config = Config::load(dir.path()).unwrap();
        assert_eq!(config.models.len(), 1);
        assert_eq!(config.gateway.routing.default_policy, "balanced");
        assert_eq!(config.provider_dir(), dir.path().join("../plugins/dist"));
    }

    #[test]
    fn unknown_field_names_file_and_field() {
        let dir = valid_dir();
        write(
            dir.path(),
            GATEWAY_FILE,
            "[server]\nlisten_adress = \"x\"\n",
        );
        let err = Config::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("gateway.toml"), "{err}");
        assert!(err.contains("listen_adress"), "{err}");
    }

    #[test]
    fn semantic_problems_name_file_field_and_problem() {
        let dir = valid_dir();
        write(
            dir.path(),
            MODELS_FILE,
            r#"
[[models]]
id = "m"
provider = "opnai"
context_window = 1000
max_output_tokens = 2000
input_per_mtok = -1.0
output_per_mtok = 1.0
quality = 1.5
fallbacks = ["nope"]
"#,
        );
        let err = Config::load(dir.path()).unwrap_err();
        let ConfigError::Invalid { problems } = &err else {
            panic!("expected semantic problems, got {err}");
        };
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert!(fields.contains(&"models[0] (m).provider"), "{fields:?}");
        assert!(fields.contains(&"models[0] (m).quality"), "{fields:?}");
        assert!(
            fields.contains(&"models[0] (m).input_per_mtok"),
            "{fields:?}"
        );
        assert!(
            fields.contains(&"models[0] (m).max_output_tokens"),
            "{fields:?}"
        );
        assert!(fields.contains(&"models[0] (m).fallbacks"), "{fields:?}");
        assert!(err.to_string().contains("models.toml"));
        assert!(err.to_string().contains("'opnai' is not defined"));
    }

    #[test]
    fn limits_and_budgets_are_checked_against_the_catalog() {
        let dir = valid_dir();
        write(
            dir.path(),
            GATEWAY_FILE,
            r#"
[budgets.keys.team-a]
daily_usd = -1.0
team = "nobody"

[rate_limits]
adaptive_decrease = 1.5

[rate_limits.providers.opnai]
requests_per_minute = 10

[rate_limits.models."gpt-5-mini"]
requests_per_minute = 0
"#,
        );
        let err = Config::load(dir.path()).unwrap_err();
        let ConfigError::Invalid { problems } = &err else {
            panic!("expected semantic problems, got {err}");
        };
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        for expected in [
            "budgets.keys.team-a.daily_usd",
            "budgets.keys.team-a.team",
            "rate_limits.adaptive_decrease",
            "rate_limits.providers.opnai",
            "rate_limits.models.\"gpt-5-mini\".requests_per_minute",
        ] {
            assert!(
                fields.contains(&expected),
                "{expected} missing from {fields:?}"
            );
        }
        // Unknown fields in the new sections are errors like everywhere else.
        write(
            dir.path(),
            GATEWAY_FILE,
            "[budgets.keys.a]
daily = 1.0
",
        );
        let err = Config::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("daily"), "{err}");
    }

    #[test]
    fn task_examples_are_optional_and_strict() {
        let dir = valid_dir();
        assert!(Config::load(dir.path()).unwrap().tasks.is_none());

        write(
            dir.path(),
            TASKS_FILE,
            "[examples]\ncode = [\"a\", \"b\", \"c\"]\npoetry = [\"x\"]\n",
        );
        let err = Config::load(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("tasks.toml") && err.contains("poetry"),
            "{err}"
        );

        write(
            dir.path(),
            TASKS_FILE,
            "[examples]\ncode = [\"a\", \" \"]\n",
        );
        let err = Config::load(dir.path()).unwrap_err();
        let ConfigError::Invalid { problems } = &err else {
            panic!("expected semantic problems, got {err}");
        };
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert!(fields.contains(&"examples.code"), "{fields:?}");
        assert!(fields.contains(&"examples.code[1]"), "{fields:?}");
        assert!(fields.contains(&"examples.chat"), "{fields:?}");
    }

    #[test]
    fn the_bundled_task_examples_load() {
        let bundled = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
        let config = Config::load(&bundled).unwrap();
        let tasks = config.tasks.expect("config/tasks.toml is bundled");
        for class in TaskClass::ALL {
            assert!(tasks.examples[&class].len() >= 15, "{}", class.as_str());
        }
    }

    #[test]
    fn bad_listen_address_is_reported() {
        let dir = valid_dir();
        write(
            dir.path(),
            GATEWAY_FILE,
            "[server]\nlisten = \"localhost\"\n",
        );
        let err = Config::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("server.listen"), "{err}");
    }
}
