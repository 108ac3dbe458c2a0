//! The model catalog and pricing as MCP sees them: the `list_models` tool's entries and the
//! `aigw://catalog/*` resources, all read from the live (hot-reloaded) config.

use crate::config::{Config, ModelConfig};
use rmcp::model::Resource;
use serde::Serialize;

pub const MODELS_URI: &str = "aigw://catalog/models";
pub const PRICING_URI: &str = "aigw://catalog/pricing";

/// A catalog model as `list_models` and the models resource describe it.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ModelEntry {
    pub id: String,
    pub provider: String,
    pub context_window: u64,
    pub max_output_tokens: u32,
    /// 0.0 to 1.0, from the catalog.
    pub quality: f32,
    /// Task classes the model is especially good at.
    pub specialties: Vec<&'static str>,
    pub tools: bool,
    pub vision: bool,
    pub json: bool,
    pub streaming: bool,
    /// Only used when another model fails over to it, never chosen by `auto` routing first.
    pub fallback_only: bool,
    pub pricing: ModelPricing,
}

/// USD per million tokens.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ModelPricing {
    pub input_per_mtok: f64,
    pub cached_input_per_mtok: f64,
    pub output_per_mtok: f64,
}

pub fn entry(model: &ModelConfig) -> ModelEntry {
    ModelEntry {
        id: model.id.clone(),
        provider: model.provider.clone(),
        context_window: model.context_window,
        max_output_tokens: model.max_output_tokens,
        quality: model.quality,
        specialties: model.specialties.iter().map(|t| t.as_str()).collect(),
        tools: model.capabilities.tools,
        vision: model.capabilities.vision,
        json: model.capabilities.json,
        streaming: model.capabilities.streaming,
        fallback_only: model.fallback_only,
        pricing: ModelPricing {
            input_per_mtok: model.input_per_mtok,
            cached_input_per_mtok: model.cached_input_per_mtok(),
            output_per_mtok: model.output_per_mtok,
        },
    }
}

pub fn resources() -> Vec<Resource> {
    vec![
        Resource::new(MODELS_URI, "model-catalog")
            .with_title("Model catalog")
            .with_description(
                "Every model the gateway can route to: provider, context window, quality, \
                 specialties, capabilities and prices",
            )
            .with_mime_type("application/json"),
        Resource::new(PRICING_URI, "pricing")
            .with_title("Pricing table")
            .with_description(
                "USD per million input, cached-input and output tokens for every model, as \
                 the gateway charges them in its ledger",
            )
            .with_mime_type("application/json"),
    ]
}

/// The JSON body of a resource, or `None` for an unknown URI.
pub fn read(uri: &str, config: &Config) -> Option<String> {
    let body = match uri {
        MODELS_URI => serde_json::json!({
            "models": config.models.iter().map(entry).collect::<Vec<_>>(),
        }),
        PRICING_URI => serde_json::json!({
            "currency": "USD",
            "unit": "per million tokens",
            "models": config
                .models
                .iter()
                .map(|m| (m.id.clone(), entry(m).pricing))
                .collect::<std::collections::BTreeMap<_, _>>(),
        }),
        _ => return None,
    };
    serde_json::to_string_pretty(&body).ok()
}
