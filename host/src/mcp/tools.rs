//! The MCP tools. Descriptions are written for the model that calls them: what the tool does,
//! when to use it, and what each argument changes.

use super::GatewayMcp;
use super::ab_test::{self, AbTestArgs, AbTestReport};
use super::catalog::{self, ModelEntry};
use crate::api::unified::{UnifiedRequest, text_message};
use crate::ledger::{ReportRange, UsageReport};
use crate::pipeline::{
    CompletionInput, CompletionSummary, CostEstimate, ProviderStatus, Readiness,
};
use crate::routing::Requirements;
use rmcp::handler::server::wrapper::{Json, Parameters};
use rmcp::model::{ProgressNotificationParam, ProgressToken};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, tool, tool_router};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// How often a waiting `unified_completion` tells the client it is still working.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UnifiedCompletionArgs {
    /// The user's message. Give either `prompt` or `messages`.
    pub prompt: Option<String>,
    /// A conversation, oldest first, instead of `prompt`.
    pub messages: Option<Vec<MessageArg>>,
    /// Instructions for the model, sent as a system message before everything else.
    pub system: Option<String>,
    /// A model id from `list_models`, or "auto" (the default) to let the routing policy pick
    /// the best model for the task and requirements.
    pub model: Option<String>,
    /// Upper bound on generated tokens.
    #[schemars(range(min = 1))]
    pub max_tokens: Option<u32>,
    /// Sampling temperature, 0 to 2; lower is more deterministic.
    #[schemars(range(min = 0.0, max = 2.0))]
    pub temperature: Option<f32>,
    /// What the route must satisfy (cost, latency, quality, providers). Only for "auto".
    pub requirements: Option<Requirements>,
    /// A routing policy to rank models with instead of the default: "balanced", "cost",
    /// "latency", "quality", or a custom one loaded by the operator.
    pub policy: Option<String>,
    /// Response cache controls: {"enabled": false} for a fresh answer, {"semantic": false} to
    /// accept only an identical earlier request, {"threshold": 0.9} for a stricter match.
    pub cache: Option<crate::cache::CacheControls>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageArg {
    pub role: MessageRole,
    pub content: String,
}

#[derive(Debug, Clone, Copy, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MessageRole {
    System,
    User,
    Assistant,
}

impl MessageRole {
    fn as_str(self) -> &'static str {
        match self {
            MessageRole::System => "system",
            MessageRole::User => "user",
            MessageRole::Assistant => "assistant",
        }
    }
}

impl UnifiedCompletionArgs {
    fn into_input(self, key_id: Option<String>) -> Result<CompletionInput, String> {
        UnifiedRequest {
            prompt: self.prompt,
            messages: self.messages.map(|list| {
                list.into_iter()
                    .map(|m| text_message(m.role.as_str(), m.content))
                    .collect()
            }),
            system: self.system,
            model: self.model,
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            requirements: self.requirements,
            policy: self.policy,
            cache: self.cache,
        }
        .into_chat()
        .and_then(|chat| chat.into_input(key_id))
        .map_err(|e| match e.param {
            Some(param) => format!("{} (argument: {param})", e.message),
            None => e.message,
        })
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UsageMetricsArgs {
    /// The window to report on: "1h", "24h" (the default), "7d" or "30d".
    pub range: Option<String>,
    /// Only this provider's traffic (for example "openai").
    pub provider: Option<String>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct CostEstimates {
    /// One entry per model the router would consider for the request, best-ranked first.
    pub candidates: Vec<CostEstimate>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListModelsArgs {
    /// Only models of this provider (for example "anthropic").
    pub provider: Option<String>,
    /// Only models specialised in this task class: code, math, reasoning, creative,
    /// summarization, translation, extraction or chat.
    pub task: Option<String>,
    /// Only models that accept tool definitions.
    #[serde(default)]
    pub needs_tools: bool,
    /// Only models that accept images.
    #[serde(default)]
    pub needs_vision: bool,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ModelList {
    pub models: Vec<ModelEntry>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ProviderStatusList {
    pub providers: Vec<ProviderStatus>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct HealthReport {
    /// "ok" when ready with at least one usable provider, "degraded" when ready but every
    /// provider is unusable or backing off, "unavailable" when not ready.
    pub status: &'static str,
    pub version: &'static str,
    pub readiness: Readiness,
    pub usable_providers: usize,
    pub providers: Vec<ProviderStatus>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OptimizationGoal {
    /// Unambiguous wording and structure.
    #[default]
    Clarity,
    /// The fewest tokens that keep the meaning.
    Brevity,
    /// Concrete constraints, format and success criteria.
    Specificity,
    /// Room for original, varied answers.
    Creativity,
}

impl OptimizationGoal {
    fn as_str(self) -> &'static str {
        match self {
            OptimizationGoal::Clarity => "clarity",
            OptimizationGoal::Brevity => "brevity",
            OptimizationGoal::Specificity => "specificity",
            OptimizationGoal::Creativity => "creativity",
        }
    }

    fn instruction(self) -> &'static str {
        match self {
            OptimizationGoal::Clarity => {
                "Make it unambiguous: one clear request, well-ordered context, defined terms."
            }
            OptimizationGoal::Brevity => {
                "Make it as short as possible without losing any requirement or fact."
            }
            OptimizationGoal::Specificity => {
                "Make it specific: state the expected output format, length, audience, \
                 constraints and what a good answer must contain."
            }
            OptimizationGoal::Creativity => {
                "Invite an original answer: open the constraints that limit creativity, keep \
                 the hard requirements, and ask for vivid, non-generic output."
            }
        }
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OptimizePromptArgs {
    /// The prompt to rewrite.
    pub prompt: String,
    /// What to optimise for; defaults to clarity.
    #[serde(default)]
    pub goal: OptimizationGoal,
    /// The model that rewrites; defaults to "auto" with a low-cost requirement.
    pub model: Option<String>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct OptimizedPrompt {
    pub goal: &'static str,
    pub original: String,
    pub optimized: String,
    /// Tokens of each version (o200k tokenizer).
    pub original_tokens: u64,
    pub optimized_tokens: u64,
    /// The model that did the rewrite and what it cost.
    pub model: String,
    pub provider: String,
    pub cost_usd: f64,
}

#[tool_router(vis = "pub(super)")]
impl GatewayMcp {
    #[tool(
        description = "Answer a prompt or conversation with an LLM chosen by the gateway. \
        With model \"auto\" (the default) the routing policy ranks every model that can serve \
        the request by task fit, quality, cost, latency and live provider health, and fails \
        over along that ranking if a provider errors. Returns the answer text plus the model \
        and provider that produced it, tokens, cost in USD, latency, whether it came from the \
        cache, and the routing reason. Sends progress notifications while waiting.",
        annotations(read_only_hint = false, open_world_hint = true)
    )]
    async fn unified_completion(
        &self,
        Parameters(args): Parameters<UnifiedCompletionArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<Json<CompletionSummary>, String> {
        let input = args.into_input(self.caller_key_id(&ctx))?;
        let progress = ctx.meta.get_progress_token();
        let completion = self.gateway.complete(input);
        let result = with_progress(&ctx, progress, completion).await?;
        match result {
            Ok(completion) => Ok(Json(completion.summary())),
            Err(error) => {
                let message = error.to_string();
                self.warn_client(&ctx, &message).await;
                Err(message)
            }
        }
    }

    #[tool(
        description = "Show each configured provider: whether it can be used (and why not: \
        no API key, adapter not loaded), circuit-breaker state, back-off, recent success rate \
        and latency, and its models. Use it when completions fail or to see what is available.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn get_provider_status(&self) -> Json<ProviderStatusList> {
        Json(ProviderStatusList {
            providers: self.gateway.provider_status(),
        })
    }

    #[tool(
        description = "Estimate what a request would cost before sending it: for each model \
        the router would consider (best-ranked first), the prompt's tokens, the output limit, \
        the input cost and the worst-case total in USD if the whole output limit is used. \
        Takes the same arguments as unified_completion; nothing is sent to a provider.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn estimate_cost(
        &self,
        Parameters(args): Parameters<UnifiedCompletionArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<Json<CostEstimates>, String> {
        let input = args.into_input(self.caller_key_id(&ctx))?;
        let candidates = self
            .gateway
            .estimate_cost(&input)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Json(CostEstimates { candidates }))
    }

    #[tool(
        description = "Report usage and spend from the gateway's ledger over the last hour, \
        day, week or month: requests, tokens, cost in USD, breakdowns by provider, model, API \
        key and task, latency and time-to-first-token percentiles, cache hit rate and money \
        saved, projected monthly spend, and recommendations for cheaper models that meet the \
        quality floor of the traffic.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn get_usage_metrics(
        &self,
        Parameters(args): Parameters<UsageMetricsArgs>,
    ) -> Result<Json<UsageReport>, String> {
        let text = args.range.as_deref().unwrap_or("24h");
        let range = ReportRange::parse(text)
            .ok_or_else(|| format!("range '{text}' is not one of 1h, 24h, 7d, 30d"))?;
        let provider = args.provider.as_deref().filter(|p| !p.is_empty());
        self.gateway
            .usage_report(range, provider)
            .await
            .map(Json)
            .map_err(|e| e.to_string())
    }

    #[tool(
        description = "List the models the gateway can route to, with context window, quality \
        score (0-1), task specialties, capabilities (tools, vision, JSON mode, streaming) and \
        prices in USD per million tokens. Filter by provider, task class or capability.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn list_models(
        &self,
        Parameters(args): Parameters<ListModelsArgs>,
    ) -> Result<Json<ModelList>, String> {
        let task = match args.task.as_deref() {
            None => None,
            Some(name) => Some(
                serde_json::from_value::<crate::config::TaskClass>(serde_json::json!(name))
                    .map_err(|_| {
                        format!(
                            "task '{name}' is not one of code, math, reasoning, creative, \
                             summarization, translation, extraction, chat"
                        )
                    })?,
            ),
        };
        let state = self.gateway.config();
        let models = state
            .config
            .models
            .iter()
            .filter(|m| args.provider.as_ref().is_none_or(|p| &m.provider == p))
            .filter(|m| task.is_none_or(|t| m.specialties.contains(&t)))
            .filter(|m| !args.needs_tools || m.capabilities.tools)
            .filter(|m| !args.needs_vision || m.capabilities.vision)
            .map(catalog::entry)
            .collect();
        Ok(Json(ModelList { models }))
    }

    #[tool(
        description = "Check the gateway itself: ready or not, loaded provider adapters and \
        routing policies, component load errors, and how many providers can take requests now.",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    async fn health_check(&self) -> Json<HealthReport> {
        let readiness = self.gateway.readiness();
        let providers = self.gateway.provider_status();
        let usable_providers = providers
            .iter()
            .filter(|p| p.unavailable.is_none() && p.backing_off.is_none())
            .count();
        let status = match (readiness.ready, usable_providers) {
            (false, _) => "unavailable",
            (true, 0) => "degraded",
            (true, _) => "ok",
        };
        Json(HealthReport {
            status,
            version: env!("CARGO_PKG_VERSION"),
            readiness,
            usable_providers,
            providers,
        })
    }

    #[tool(
        description = "Rewrite a prompt to work better with LLMs, for one goal: clarity, \
        brevity, specificity or creativity. The rewrite keeps the intent, facts, names and \
        numbers of the original. Runs on a cheap capable model through the gateway and \
        returns both versions with their token counts and what the rewrite cost.",
        annotations(read_only_hint = false, open_world_hint = true)
    )]
    async fn optimize_prompt(
        &self,
        Parameters(args): Parameters<OptimizePromptArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<Json<OptimizedPrompt>, String> {
        if args.prompt.trim().is_empty() {
            return Err("prompt is empty: give the prompt to rewrite".into());
        }
        let goal = args.goal;
        let system = format!(
            "You rewrite prompts for large language models. Goal: {}. {} Keep the original \
             intent, language, facts, names, numbers and hard constraints. Reply with the \
             rewritten prompt only: no preamble, no quotes, no commentary.",
            goal.as_str(),
            goal.instruction()
        );
        let requirements = args.model.is_none().then(|| Requirements {
            low_cost: true,
            ..Requirements::default()
        });
        let input = UnifiedCompletionArgs {
            prompt: Some(format!("Rewrite this prompt:\n\n{}", args.prompt)),
            messages: None,
            system: Some(system),
            model: args.model,
            max_tokens: None,
            temperature: Some(0.2),
            requirements,
            policy: None,
            cache: None,
        }
        .into_input(self.caller_key_id(&ctx))?;
        let completion = self
            .gateway
            .complete(input)
            .await
            .map_err(|e| e.to_string())?;
        let summary = completion.summary();
        let optimized = summary.text.trim().to_string();
        if optimized.is_empty() {
            return Err(format!(
                "{} returned an empty rewrite; try another model",
                summary.model
            ));
        }
        Ok(Json(OptimizedPrompt {
            goal: goal.as_str(),
            original_tokens: crate::tokens::count_text(&args.prompt),
            optimized_tokens: crate::tokens::count_text(&optimized),
            original: args.prompt,
            optimized,
            model: summary.model,
            provider: summary.provider,
            cost_usd: summary.cost_usd,
        }))
    }

    #[tool(
        description = "A/B test: run two prompts on one model, or one prompt on two models, N \
        times each concurrently, and compare success rate, latency (median), cost and tokens. \
        Optionally a judge model reads one answer of each and says which is better. Returns \
        per-variant statistics, a sample answer of each, the winner and why.",
        annotations(read_only_hint = false, open_world_hint = true)
    )]
    async fn run_ab_test(
        &self,
        Parameters(args): Parameters<AbTestArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<Json<AbTestReport>, String> {
        let key_id = self.caller_key_id(&ctx);
        ab_test::run(&self.gateway, args, key_id).await.map(Json)
    }
}

/// Awaits `work`, telling the client it started and then every second that it is still
/// waiting (if it asked for progress), and giving up if the client cancels the request.
async fn with_progress<T>(
    ctx: &RequestContext<RoleServer>,
    token: Option<ProgressToken>,
    work: impl Future<Output = T>,
) -> Result<T, String> {
    let started = Instant::now();
    let notify = async |step: u32, message: String| {
        let Some(token) = &token else { return };
        let param =
            ProgressNotificationParam::new(token.clone(), f64::from(step)).with_message(message);
        if let Err(e) = ctx.peer.notify_progress(param).await {
            tracing::debug!("cannot send a progress notification: {e}");
        }
    };
    notify(0, "routing the request".into()).await;
    let mut work = std::pin::pin!(work);
    let mut ticks = tokio::time::interval_at(
        tokio::time::Instant::now() + PROGRESS_INTERVAL,
        PROGRESS_INTERVAL,
    );
    let mut step = 0u32;
    loop {
        tokio::select! {
            result = &mut work => return Ok(result),
            () = ctx.ct.cancelled() => return Err("the request was cancelled".into()),
            _ = ticks.tick() => {
                step += 1;
                let waited = started.elapsed().as_secs();
                notify(step, format!("waiting for the model ({waited}s)")).await;
            }
        }
    }
}
