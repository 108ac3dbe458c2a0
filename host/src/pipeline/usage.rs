//! Cost questions a client can ask before and after: what a request would cost on each
//! candidate, and what the traffic so far has cost.

use super::{CompletionInput, Gateway, GatewayError};
use crate::ledger::{ReportRange, UsageReport};

/// What a request would cost on one candidate model.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct CostEstimate {
    pub model: String,
    pub provider: String,
    /// The prompt's tokens, counted with the o200k tokenizer.
    pub input_tokens: u64,
    /// The output limit priced: the request's `max_tokens`, or what the gateway asks for.
    pub max_output_tokens: u32,
    pub input_cost_usd: f64,
    /// The cost if the whole output limit is used; most answers use far less.
    pub max_output_cost_usd: f64,
    pub max_total_cost_usd: f64,
}

impl Gateway {
    /// The cost of `input` on every candidate the router would consider, in its ranked order.
    /// The request is classified as it would be when sent, so the candidates match.
    pub async fn estimate_cost(
        &self,
        input: &CompletionInput,
    ) -> Result<Vec<CostEstimate>, GatewayError> {
        let task = self.classify_task(input, None).await;
        let (_, _, _, route, _, prompt_tokens) = self.route(input, task)?;
        let requested = input.request.sampling.max_output_tokens;
        Ok(route
            .chain
            .iter()
            .map(|model| {
                let output = requested
                    .unwrap_or(super::DEFAULT_MAX_OUTPUT_TOKENS)
                    .min(model.max_output_tokens);
                let input_cost = prompt_tokens as f64 * model.input_per_mtok / 1_000_000.0;
                let output_cost = f64::from(output) * model.output_per_mtok / 1_000_000.0;
                CostEstimate {
                    model: model.id.clone(),
                    provider: model.provider.clone(),
                    input_tokens: prompt_tokens,
                    max_output_tokens: output,
                    input_cost_usd: input_cost,
                    max_output_cost_usd: output_cost,
                    max_total_cost_usd: input_cost + output_cost,
                }
            })
            .collect())
    }

    /// Usage over `range` from the ledger, for one provider or all, with recommendations
    /// priced against the current catalog.
    pub async fn usage_report(
        &self,
        range: ReportRange,
        provider: Option<&str>,
    ) -> Result<UsageReport, GatewayError> {
        let catalog = self.config().config.models.clone();
        self.ledger
            .report(range, provider.map(str::to_string), catalog)
            .await
            .map_err(|e| GatewayError::Internal(e.to_string()))
    }

    /// Waits until every usage record made so far is in the ledger. Shutdown calls this once
    /// the server has stopped.
    pub async fn flush_ledger(&self) {
        if let Err(e) = self.ledger.flush().await {
            tracing::error!("usage records may be lost: {e}");
        }
    }
}
