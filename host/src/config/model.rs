//! One entry of the model catalog.

use serde::Deserialize;

/// The kinds of work the router distinguishes. Mirrors `task-class` in the WIT contract.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum TaskClass {
    Code,
    Math,
    Reasoning,
    Creative,
    Summarization,
    Translation,
    Extraction,
    Chat,
}

impl TaskClass {
    pub const ALL: [TaskClass; 8] = [
        TaskClass::Code,
        TaskClass::Math,
        TaskClass::Reasoning,
        TaskClass::Creative,
        TaskClass::Summarization,
        TaskClass::Translation,
        TaskClass::Extraction,
        TaskClass::Chat,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskClass::Code => "code",
            TaskClass::Math => "math",
            TaskClass::Reasoning => "reasoning",
            TaskClass::Creative => "creative",
            TaskClass::Summarization => "summarization",
            TaskClass::Translation => "translation",
            TaskClass::Extraction => "extraction",
            TaskClass::Chat => "chat",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Capabilities {
    /// Function / tool calling.
    pub tools: bool,
    /// Image inputs.
    pub vision: bool,
    /// JSON mode or structured output.
    pub json: bool,
    /// Streamed responses.
    pub streaming: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The name clients use (`gpt-5-mini`).
    pub id: String,
    /// The provider (a table in providers.toml) that serves it.
    pub provider: String,
    /// The provider's own id for the model, when it differs from `id`.
    pub upstream_id: Option<String>,
    /// Context window in tokens (prompt plus output).
    pub context_window: u64,
    /// The most output tokens the model can produce in one response.
    pub max_output_tokens: u32,
    /// USD per million uncached input tokens.
    pub input_per_mtok: f64,
    /// USD per million cached input tokens; the input price when absent.
    pub cached_input_per_mtok: Option<f64>,
    /// USD per million input tokens written to the provider's prompt cache; the input price when
    /// absent.
    pub cache_write_per_mtok: Option<f64>,
    /// USD per million output tokens.
    pub output_per_mtok: f64,
    /// Relative quality, 0.0 to 1.0, used by policies.
    pub quality: f32,
    #[serde(default)]
    pub specialties: Vec<TaskClass>,
    #[serde(default)]
    pub capabilities: Capabilities,
    /// Models to fail over to, in order, when a request names this model explicitly.
    #[serde(default)]
    pub fallbacks: Vec<String>,
    /// Routed to by `auto` only when no other model can serve the request (the simulated
    /// provider's models, so that real providers always win once they have keys).
    #[serde(default)]
    pub fallback_only: bool,
}

impl ModelConfig {
    pub fn upstream_id(&self) -> &str {
        self.upstream_id.as_deref().unwrap_or(&self.id)
    }

    pub fn cached_input_per_mtok(&self) -> f64 {
        self.cached_input_per_mtok.unwrap_or(self.input_per_mtok)
    }

    pub fn cache_write_per_mtok(&self) -> f64 {
        self.cache_write_per_mtok.unwrap_or(self.input_per_mtok)
    }

    /// Field-level problems as (field, problem) pairs.
    pub(super) fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if self.context_window == 0 {
            problems.push(("context_window", "must be greater than 0".into()));
        }
        if self.max_output_tokens == 0 {
            problems.push(("max_output_tokens", "must be greater than 0".into()));
        } else if u64::from(self.max_output_tokens) > self.context_window {
            problems.push((
                "max_output_tokens",
                format!(
                    "{} is larger than the context window ({})",
                    self.max_output_tokens, self.context_window
                ),
            ));
        }
        for (field, price) in [
            ("input_per_mtok", Some(self.input_per_mtok)),
            ("cached_input_per_mtok", self.cached_input_per_mtok),
            ("cache_write_per_mtok", self.cache_write_per_mtok),
            ("output_per_mtok", Some(self.output_per_mtok)),
        ] {
            if let Some(price) = price
                && !(price.is_finite() && price >= 0.0)
            {
                problems.push((field, format!("{price} is not a price (USD >= 0)")));
            }
        }
        if !(self.quality.is_finite() && (0.0..=1.0).contains(&self.quality)) {
            problems.push(("quality", format!("{} is outside 0.0 to 1.0", self.quality)));
        }
        problems
    }
}
