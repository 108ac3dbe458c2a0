//! `run_ab_test`: two variants (two prompts, or one prompt on two models) run N times each,
//! concurrently, through the gateway; compared on success, latency, cost and tokens, and
//! optionally by a judge model.

use crate::api::unified::UnifiedRequest;
use crate::pipeline::{CompletionSummary, Gateway};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

const DEFAULT_RUNS: u32 = 3;
const MAX_RUNS: u32 = 10;
/// Cost or latency differences below this fraction are called a tie.
const TIE_MARGIN: f64 = 0.05;
/// How much of each answer the judge sees.
const JUDGE_EXCERPT_CHARS: usize = 4000;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AbTestArgs {
    /// Variant A's prompt (and the only prompt when comparing two models).
    pub prompt_a: String,
    /// Variant B's prompt, to compare two prompts. Leave out to compare two models.
    pub prompt_b: Option<String>,
    /// Variant A's model id, or "auto" (the default).
    pub model_a: Option<String>,
    /// Variant B's model id; defaults to model_a. Required, and different from model_a,
    /// when comparing two models on one prompt.
    pub model_b: Option<String>,
    /// Runs per variant, 1 to 10 (default 3). Runs execute concurrently.
    #[schemars(range(min = 1, max = 10))]
    pub runs: Option<u32>,
    /// A system message sent with every run.
    pub system: Option<String>,
    #[schemars(range(min = 1))]
    pub max_tokens: Option<u32>,
    #[schemars(range(min = 0.0, max = 2.0))]
    pub temperature: Option<f32>,
    /// A model (or "auto") that reads one answer of each variant and says which is better.
    pub judge_model: Option<String>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct AbTestReport {
    pub runs_per_variant: u32,
    pub a: VariantStats,
    pub b: VariantStats,
    /// "a", "b" or "tie".
    pub winner: &'static str,
    pub reason: String,
    pub judge: Option<JudgeVerdict>,
    /// Everything the test spent, judge included.
    pub total_cost_usd: f64,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct VariantStats {
    pub prompt: String,
    pub model: String,
    pub succeeded: u32,
    pub failed: u32,
    pub latency_ms_p50: Option<u64>,
    pub latency_ms_max: Option<u64>,
    pub mean_cost_usd: Option<f64>,
    pub mean_input_tokens: Option<f64>,
    pub mean_output_tokens: Option<f64>,
    /// The models that answered (with "auto" these may differ between runs).
    pub answered_by: Vec<String>,
    /// The first successful answer.
    pub sample_output: Option<String>,
    /// Distinct error messages of failed runs.
    pub errors: Vec<String>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct JudgeVerdict {
    pub model: String,
    /// "a", "b", or "unclear" when the judge's answer could not be read.
    pub preferred: &'static str,
    pub explanation: String,
    pub cost_usd: f64,
}

struct Variant {
    prompt: String,
    model: String,
}

pub async fn run(
    gateway: &Arc<Gateway>,
    args: AbTestArgs,
    key_id: Option<String>,
) -> Result<AbTestReport, String> {
    let runs = args.runs.unwrap_or(DEFAULT_RUNS);
    if !(1..=MAX_RUNS).contains(&runs) {
        return Err(format!("runs must be 1 to {MAX_RUNS}, got {runs}"));
    }
    let (a, b) = variants(&args)?;
    let request = |variant: &Variant| UnifiedRequest {
        prompt: Some(variant.prompt.clone()),
        messages: None,
        system: args.system.clone(),
        model: Some(variant.model.clone()),
        max_tokens: args.max_tokens,
        temperature: args.temperature,
        requirements: None,
        policy: None,
        // Every run must reach a model: served from the cache, repeats would measure nothing.
        cache: Some(no_cache()),
    };
    // Validate both variants before spending anything.
    let input_a = to_input(request(&a), key_id.clone())?;
    let input_b = to_input(request(&b), key_id.clone())?;

    let calls = (0..runs)
        .map(|_| (0, input_a.clone()))
        .chain((0..runs).map(|_| (1, input_b.clone())))
        .map(|(variant, input)| async move {
            (
                variant,
                gateway
                    .complete(input)
                    .await
                    .map(|c| c.summary())
                    .map_err(|e| e.to_string()),
            )
        });
    let results = futures::future::join_all(calls).await;
    let (mut results_a, mut results_b) = (Vec::new(), Vec::new());
    for (variant, result) in results {
        if variant == 0 {
            results_a.push(result);
        } else {
            results_b.push(result);
        }
    }
    let stats_a = stats(&a, &results_a);
    let stats_b = stats(&b, &results_b);
    let mut total_cost_usd = sum_cost(&results_a) + sum_cost(&results_b);

    let judge = match (
        &args.judge_model,
        &stats_a.sample_output,
        &stats_b.sample_output,
    ) {
        (Some(judge_model), Some(out_a), Some(out_b)) => {
            let task = match &args.prompt_b {
                Some(prompt_b) => format!(
                    "Answer A was asked: {}\nAnswer B was asked: {prompt_b}",
                    args.prompt_a
                ),
                None => args.prompt_a.clone(),
            };
            let verdict = judge(gateway, judge_model, &task, out_a, out_b, key_id).await?;
            total_cost_usd += verdict.cost_usd;
            Some(verdict)
        }
        _ => None,
    };
    let (winner, reason) = decide(&stats_a, &stats_b, judge.as_ref());
    Ok(AbTestReport {
        runs_per_variant: runs,
        a: stats_a,
        b: stats_b,
        winner,
        reason,
        judge,
        total_cost_usd,
    })
}

fn variants(args: &AbTestArgs) -> Result<(Variant, Variant), String> {
    if args.prompt_a.trim().is_empty() {
        return Err("prompt_a is empty".into());
    }
    let model_a = args.model_a.clone().unwrap_or_else(|| "auto".into());
    match &args.prompt_b {
        Some(prompt_b) if prompt_b.trim().is_empty() => Err("prompt_b is empty".into()),
        Some(prompt_b) => Ok((
            Variant {
                prompt: args.prompt_a.clone(),
                model: model_a.clone(),
            },
            Variant {
                prompt: prompt_b.clone(),
                model: args.model_b.clone().unwrap_or(model_a),
            },
        )),
        None => match &args.model_b {
            Some(model_b) if *model_b != model_a => Ok((
                Variant {
                    prompt: args.prompt_a.clone(),
                    model: model_a,
                },
                Variant {
                    prompt: args.prompt_a.clone(),
                    model: model_b.clone(),
                },
            )),
            _ => Err(
                "nothing to compare: give prompt_b to compare two prompts, or model_a and a \
                 different model_b to compare two models on prompt_a"
                    .into(),
            ),
        },
    }
}

fn no_cache() -> crate::cache::CacheControls {
    crate::cache::CacheControls {
        enabled: Some(false),
        ..Default::default()
    }
}

fn to_input(
    request: UnifiedRequest,
    key_id: Option<String>,
) -> Result<crate::pipeline::CompletionInput, String> {
    request
        .into_chat()
        .and_then(|chat| chat.into_input(key_id))
        .map_err(|e| e.message)
}

fn stats(variant: &Variant, results: &[Result<CompletionSummary, String>]) -> VariantStats {
    let ok: Vec<&CompletionSummary> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    let mut errors: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().err().cloned())
        .collect();
    errors.sort();
    errors.dedup();
    let mut latencies: Vec<u64> = ok.iter().map(|s| s.latency_ms).collect();
    latencies.sort_unstable();
    let mean = |f: &dyn Fn(&CompletionSummary) -> f64| {
        (!ok.is_empty()).then(|| ok.iter().map(|s| f(s)).sum::<f64>() / ok.len() as f64)
    };
    let mut answered_by: Vec<String> = ok.iter().map(|s| s.model.clone()).collect();
    answered_by.sort();
    answered_by.dedup();
    VariantStats {
        prompt: variant.prompt.clone(),
        model: variant.model.clone(),
        succeeded: count(ok.len()),
        failed: count(results.len() - ok.len()),
        latency_ms_p50: latencies.get(latencies.len() / 2).copied(),
        latency_ms_max: latencies.last().copied(),
        mean_cost_usd: mean(&|s| s.cost_usd),
        mean_input_tokens: mean(&|s| s.tokens.input as f64),
        mean_output_tokens: mean(&|s| s.tokens.output as f64),
        answered_by,
        sample_output: ok.first().map(|s| s.text.clone()),
        errors,
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn sum_cost(results: &[Result<CompletionSummary, String>]) -> f64 {
    results.iter().flatten().map(|s| s.cost_usd).sum()
}

async fn judge(
    gateway: &Arc<Gateway>,
    model: &str,
    task: &str,
    answer_a: &str,
    answer_b: &str,
    key_id: Option<String>,
) -> Result<JudgeVerdict, String> {
    let excerpt = |text: &str| text.chars().take(JUDGE_EXCERPT_CHARS).collect::<String>();
    let prompt = format!(
        "Two answers to the same task follow. Decide which one answers it better: correct, \
         complete, clear and concise.\n\nTask:\n{task}\n\nAnswer A:\n{}\n\nAnswer B:\n{}\n\n\
         Reply with the letter A or B on the first line, then one sentence saying why.",
        excerpt(answer_a),
        excerpt(answer_b),
    );
    let input = to_input(
        UnifiedRequest {
            prompt: Some(prompt),
            messages: None,
            system: Some("You are a strict, impartial evaluator of LLM answers.".into()),
            model: Some(model.to_string()),
            max_tokens: Some(200),
            temperature: Some(0.0),
            requirements: None,
            policy: None,
            cache: Some(no_cache()),
        },
        key_id,
    )?;
    let summary = gateway
        .complete(input)
        .await
        .map_err(|e| format!("the judge model failed: {e}"))?
        .summary();
    let text = summary.text.trim();
    let first = text
        .chars()
        .find(|c| c.is_ascii_alphabetic())
        .map(|c| c.to_ascii_uppercase());
    let preferred = match first {
        Some('A') => "a",
        Some('B') => "b",
        _ => "unclear",
    };
    let explanation = text
        .lines()
        .skip(1)
        .collect::<Vec<_>>()
        .join(" ")
        .trim()
        .to_string();
    Ok(JudgeVerdict {
        model: summary.model,
        preferred,
        explanation: if explanation.is_empty() {
            text.to_string()
        } else {
            explanation
        },
        cost_usd: summary.cost_usd,
    })
}

/// The winner: the judge's preference if there is one, else reliability, then cost, then
/// latency, each only when the difference is beyond noise.
fn decide(
    a: &VariantStats,
    b: &VariantStats,
    judge: Option<&JudgeVerdict>,
) -> (&'static str, String) {
    if a.succeeded == 0 && b.succeeded == 0 {
        return ("tie", "every run of both variants failed".into());
    }
    if a.succeeded != b.succeeded {
        let (winner, more, fewer) = if a.succeeded > b.succeeded {
            ("a", a, b)
        } else {
            ("b", b, a)
        };
        return (
            winner,
            format!(
                "{} of {} runs succeeded against {}",
                more.succeeded,
                more.succeeded + more.failed,
                fewer.succeeded
            ),
        );
    }
    if let Some(verdict) = judge
        && verdict.preferred != "unclear"
    {
        return (
            verdict.preferred,
            format!(
                "the judge ({}) preferred {}: {}",
                verdict.model,
                verdict.preferred.to_uppercase(),
                verdict.explanation
            ),
        );
    }
    if let (Some(cost_a), Some(cost_b)) = (a.mean_cost_usd, b.mean_cost_usd)
        && relative_gap(cost_a, cost_b) > TIE_MARGIN
    {
        let (winner, low, high) = if cost_a < cost_b {
            ("a", cost_a, cost_b)
        } else {
            ("b", cost_b, cost_a)
        };
        return (
            winner,
            format!(
                "same success rate; {} is cheaper: ${low:.6} against ${high:.6} per run \
                 (no judge model was asked about quality)",
                winner.to_uppercase()
            ),
        );
    }
    if let (Some(lat_a), Some(lat_b)) = (a.latency_ms_p50, b.latency_ms_p50)
        && relative_gap(lat_a as f64, lat_b as f64) > TIE_MARGIN
    {
        let (winner, low, high) = if lat_a < lat_b {
            ("a", lat_a, lat_b)
        } else {
            ("b", lat_b, lat_a)
        };
        return (
            winner,
            format!(
                "same success rate and cost; {} is faster: median {low} ms against {high} ms",
                winner.to_uppercase()
            ),
        );
    }
    (
        "tie",
        "success rate, cost and latency are within 5% of each other".into(),
    )
}

fn relative_gap(x: f64, y: f64) -> f64 {
    let larger = x.max(y);
    if larger <= 0.0 {
        0.0
    } else {
        (x - y).abs() / larger
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variant(succeeded: u32, cost: f64, latency: u64) -> VariantStats {
        VariantStats {
            prompt: "p".into(),
            model: "m".into(),
            succeeded,
            failed: 3 - succeeded,
            latency_ms_p50: Some(latency),
            latency_ms_max: Some(latency),
            mean_cost_usd: Some(cost),
            mean_input_tokens: Some(10.0),
            mean_output_tokens: Some(10.0),
            answered_by: vec!["m".into()],
            sample_output: Some("x".into()),
            errors: Vec::new(),
        }
    }

    #[test]
    fn reliability_beats_cost_and_the_judge_beats_cost() {
        assert_eq!(
            decide(&variant(3, 1.0, 100), &variant(2, 0.1, 10), None).0,
            "a"
        );
        let judge = JudgeVerdict {
            model: "j".into(),
            preferred: "b",
            explanation: "more complete".into(),
            cost_usd: 0.0,
        };
        assert_eq!(
            decide(&variant(3, 0.1, 100), &variant(3, 1.0, 100), Some(&judge)).0,
            "b"
        );
        assert_eq!(
            decide(&variant(3, 0.1, 100), &variant(3, 1.0, 100), None).0,
            "a"
        );
        assert_eq!(
            decide(&variant(3, 1.0, 300), &variant(3, 1.01, 100), None).0,
            "b"
        );
        assert_eq!(
            decide(&variant(3, 1.0, 100), &variant(3, 1.01, 101), None).0,
            "tie"
        );
    }

    #[test]
    fn two_models_on_one_prompt_must_differ() {
        let args = |model_b: Option<&str>| AbTestArgs {
            prompt_a: "hi".into(),
            prompt_b: None,
            model_a: Some("x".into()),
            model_b: model_b.map(str::to_string),
            runs: None,
            system: None,
            max_tokens: None,
            temperature: None,
            judge_model: None,
        };
        assert!(variants(&args(None)).is_err());
        assert!(variants(&args(Some("x"))).is_err());
        let (a, b) = variants(&args(Some("y"))).unwrap();
        assert_eq!((a.model.as_str(), b.model.as_str()), ("x", "y"));
    }
}
