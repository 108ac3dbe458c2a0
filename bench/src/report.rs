//! The results: one serializable structure, written as JSON and rendered as Markdown.

use crate::load::RunResult;
use crate::procs::Machine;
use crate::stats::{Percentiles, Quantile};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::Path;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    pub rates: Vec<f64>,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub request_timeout_s: f64,
    pub max_inflight: usize,
    pub saturation: crate::load::Saturation,
    pub target_rate: f64,
    #[serde(default)]
    pub target_repeats: usize,
    pub mock_delay_ms: u64,
    pub mock_chunks: usize,
    pub mock_chunk_interval_ms: u64,
    pub mock_threads: usize,
    pub soak_seconds: u64,
    pub soak_rate: f64,
    pub reload_rate: f64,
    pub cold_start_trials: usize,
    pub fd_limit: u64,
    #[serde(default)]
    pub cache_hit_rates: Vec<f64>,
    #[serde(default)]
    pub cache_new_prompt_rates: Vec<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct LiteLlmInfo {
    /// `ran`, `failed`, `skipped` or `not run`.
    pub status: String,
    pub spec: String,
    pub version: Option<String>,
    pub workers: usize,
    pub command: Option<String>,
    pub reason: Option<String>,
}

/// Latency the gateway (or LiteLLM) adds over the direct-to-mock run at the same rate and mode.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Overhead {
    pub target: String,
    pub stream: bool,
    pub rate: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub ttft_p50_ms: Option<f64>,
    pub ttft_p90_ms: Option<f64>,
    pub ttft_p99_ms: Option<f64>,
    pub saturated: bool,
}

/// One side-by-side pair at the target rate: direct to the mock, then through the gateway with
/// `model: "auto"`, non-streaming.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetPair {
    pub direct_p99_ms: f64,
    pub gateway_p99_ms: f64,
    pub added_p50_ms: f64,
    pub added_p90_ms: f64,
    pub added_p99_ms: f64,
    pub saturated: bool,
}

impl TargetPair {
    pub fn of(direct: &RunResult, gateway: &RunResult) -> Option<TargetPair> {
        let (d, g) = (direct.latency_ms?, gateway.latency_ms?);
        Some(TargetPair {
            direct_p99_ms: d.p99,
            gateway_p99_ms: g.p99,
            added_p50_ms: g.p50 - d.p50,
            added_p90_ms: g.p90 - d.p90,
            added_p99_ms: g.p99 - d.p99,
            saturated: gateway.saturated,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SaturationRow {
    pub target: String,
    pub stream: bool,
    /// The highest offered rate served without saturating (none: not even the lowest).
    pub highest_sustained_rate: Option<f64>,
    /// The lowest offered rate that saturated (none: never, within the rates tried).
    pub first_saturated_rate: Option<f64>,
    pub reason: Option<String>,
    /// The most successful responses per second seen in any run.
    pub max_achieved_rps: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Memory {
    /// Right after `/ready`, before any request.
    pub idle_after_start_mib: Option<f64>,
    /// Idle, once start-up work finished in the background (no request yet).
    pub idle_settled_mib: Option<f64>,
    /// CPU the idle gateway uses (cores), over 3 s.
    pub idle_cores: Option<f64>,
    /// One per sweep mode, each on a fresh gateway.
    pub ladders: Vec<LadderMemory>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LadderMemory {
    pub mode: String,
    /// The highest RSS sampled (every 250 ms) during runs that kept up.
    pub max_sustained_mib: Option<f64>,
    /// The same over every run, saturated (queueing) ones included.
    pub max_mib: Option<f64>,
    /// Three seconds after the mode's last run.
    pub idle_after_mib: Option<f64>,
    /// VmHWM at that point.
    pub hwm_mib: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Soak {
    pub rate: f64,
    pub seconds: u64,
    pub warmup_s: f64,
    pub result: RunResult,
    /// (seconds since the run's start, RSS MiB), one a second.
    pub series: Vec<(f64, f64)>,
    pub rss_idle_start_mib: Option<f64>,
    pub rss_after_warmup_mib: Option<f64>,
    pub rss_end_mib: Option<f64>,
    pub rss_max_mib: Option<f64>,
    pub growth_mib: Option<f64>,
    pub slope_mib_per_min: Option<f64>,
    pub rss_idle_after_mib: Option<f64>,
    /// Growth allowed before the run counts as growing (allocator noise).
    pub allowance_mib: f64,
    pub grows: Option<bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ColdStartRow {
    pub setup: String,
    /// `cold` (fresh data dir, components compiled) or `warm` (compiled-component cache).
    pub cache: String,
    pub ready_ms: Vec<f64>,
    pub ready_median_ms: Option<f64>,
    pub ready_min_ms: Option<f64>,
    pub ready_max_ms: Option<f64>,
    pub listening_median_ms: Option<f64>,
    pub first_request_median_ms: Option<f64>,
    pub compiled_cache_kib: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Swap {
    /// Seconds after the load started.
    pub at_s: f64,
    pub component: String,
    pub expected_model: String,
    /// From the rename to the first response routed by the new component.
    pub switched_after_ms: Option<f64>,
    /// Requests sent after the new version first answered that the old one still routed.
    pub stragglers: usize,
    /// Failed requests scheduled from 1 s before the swap to 2 s after it.
    pub failures_near: usize,
    /// The slowest successful request scheduled in that window.
    pub max_latency_near_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HotReload {
    pub rate: f64,
    pub swaps: Vec<Swap>,
    pub sent: usize,
    pub failed: usize,
    pub failures: std::collections::BTreeMap<String, usize>,
    pub latency_ms: Option<Percentiles>,
    pub reload_metrics: Vec<String>,
}

/// The cache-on runs: their latency rows are in `runs` (targets `cache-*`, against
/// `direct-cache`); this holds what the gateway's cache did during each.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct CacheOn {
    /// Whether the gateway had its embedding model (the semantic tier).
    pub semantic_tier: bool,
    pub runs: Vec<CacheRun>,
}

/// `aigw_cache_lookups_total` and `aigw_cache_embeddings_total` over one run, warm-up included.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CacheRun {
    pub target: String,
    pub stream: bool,
    pub rate: f64,
    pub exact_hits: u64,
    pub semantic_hits: u64,
    pub misses: u64,
    pub embedded: u64,
}

/// Targets of the cache-on runs and their baseline, kept out of the cache-off tables.
pub fn is_cache_run(target: &str) -> bool {
    target == CACHE_BASELINE || target.starts_with("cache-")
}

/// The direct-to-mock run measured next to each cache-on run.
pub const CACHE_BASELINE: &str = "direct-cache";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Profile {
    pub label: String,
    pub rate: f64,
    pub seconds: u64,
    pub samples_note: String,
    /// (percent of samples, shared object)
    pub by_dso: Vec<(f64, String)>,
    /// (percent of samples, part of the stack), from every symbol's samples.
    pub buckets: Vec<(f64, String)>,
    /// (percent of samples, shared object and symbol)
    pub top_symbols: Vec<(f64, String)>,
    /// The gateway's context switches during the profile (absent from older reports).
    #[serde(default)]
    pub switches: Option<ContextSwitches>,
}

/// A process's context switches per successful request over a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContextSwitches {
    pub voluntary_per_request: f64,
    pub involuntary_per_request: f64,
    pub threads: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Verdict {
    pub target: String,
    pub measured: String,
    /// None: not measured.
    pub met: Option<bool>,
    pub note: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SectionError {
    pub section: String,
    pub error: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub tool: String,
    pub command: String,
    pub machine: Machine,
    pub settings: Settings,
    pub gateway_bin: String,
    pub litellm: LiteLlmInfo,
    pub runs: Vec<RunResult>,
    pub overhead: Vec<Overhead>,
    /// The sweep's pair at the target rate, then its repeats: the target is judged on their median.
    #[serde(default)]
    pub target_pairs: Vec<TargetPair>,
    pub saturation: Vec<SaturationRow>,
    pub memory: Memory,
    pub soak: Option<Soak>,
    pub cold_start: Vec<ColdStartRow>,
    pub hot_reload: Option<HotReload>,
    #[serde(default)]
    pub cache_on: Option<CacheOn>,
    pub profiles: Vec<Profile>,
    pub targets: Vec<Verdict>,
    /// Runs left out because the same path had already saturated at a lower rate.
    pub skipped: Vec<Skipped>,
    pub errors: Vec<SectionError>,
    pub elapsed_s: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Skipped {
    pub target: String,
    pub stream: bool,
    pub rate: f64,
    pub saturated_at: f64,
}

impl Report {
    /// Runs in table order: by rate, then direct, gateway auto, gateway fixed, LiteLLM.
    pub fn sorted_runs(&self) -> Vec<&RunResult> {
        let rank = |t: &str| match t {
            "direct" => 0,
            "gateway-auto" => 1,
            "gateway-fixed" => 2,
            "litellm" => 3,
            _ => 4,
        };
        let mut runs: Vec<&RunResult> = self.runs.iter().collect();
        runs.sort_by(|a, b| {
            a.stream
                .cmp(&b.stream)
                .then(a.rate.total_cmp(&b.rate))
                .then(rank(&a.target).cmp(&rank(&b.target)))
        });
        runs
    }

    /// The direct-to-mock run at the same rate and mode.
    pub fn direct(&self, rate: f64, stream: bool) -> Option<&RunResult> {
        self.run("direct", rate, stream)
    }

    pub fn run(&self, target: &str, rate: f64, stream: bool) -> Option<&RunResult> {
        self.runs
            .iter()
            .find(|r| r.target == target && r.stream == stream && same_rate(r.rate, rate))
    }

    /// Fills `overhead` and `saturation` from `runs`.
    pub fn derive(&mut self) {
        let mut overhead = Vec::new();
        for run in &self.runs {
            if run.target == "direct" || run.target == CACHE_BASELINE {
                continue;
            }
            let baseline = if is_cache_run(&run.target) {
                self.run(CACHE_BASELINE, run.rate, run.stream)
            } else {
                self.direct(run.rate, run.stream)
            };
            let Some(direct) = baseline else {
                continue;
            };
            let (Some(l), Some(d)) = (run.latency_ms, direct.latency_ms) else {
                continue;
            };
            let ttft = |q: Quantile| match (run.ttft_ms, direct.ttft_ms) {
                (Some(a), Some(b)) => Some(a.at(q) - b.at(q)),
                _ => None,
            };
            overhead.push(Overhead {
                target: run.target.clone(),
                stream: run.stream,
                rate: run.rate,
                p50_ms: l.p50 - d.p50,
                p90_ms: l.p90 - d.p90,
                p99_ms: l.p99 - d.p99,
                ttft_p50_ms: ttft(Quantile::P50),
                ttft_p90_ms: ttft(Quantile::P90),
                ttft_p99_ms: ttft(Quantile::P99),
                saturated: run.saturated,
            });
        }
        self.overhead = overhead;

        let mut rows = Vec::new();
        for target in ["direct", "gateway-auto", "gateway-fixed", "litellm"] {
            for stream in [false, true] {
                let mut runs: Vec<&RunResult> = self
                    .runs
                    .iter()
                    .filter(|r| r.target == target && r.stream == stream)
                    .collect();
                if runs.is_empty() {
                    continue;
                }
                runs.sort_by(|a, b| a.rate.total_cmp(&b.rate));
                let first_saturated = runs.iter().find(|r| r.saturated);
                let highest_sustained = runs
                    .iter()
                    .filter(|r| !r.saturated)
                    .filter(|r| first_saturated.is_none_or(|s| r.rate < s.rate))
                    .map(|r| r.rate)
                    .next_back();
                rows.push(SaturationRow {
                    target: target.to_string(),
                    stream,
                    highest_sustained_rate: highest_sustained,
                    first_saturated_rate: first_saturated.map(|r| r.rate),
                    reason: first_saturated.and_then(|r| r.saturation_reason.clone()),
                    max_achieved_rps: runs.iter().map(|r| r.achieved_rps).fold(0.0, f64::max),
                });
            }
        }
        self.saturation = rows;
    }

    pub fn saturation_of(&self, target: &str, stream: bool) -> Option<&SaturationRow> {
        self.saturation
            .iter()
            .find(|r| r.target == target && r.stream == stream)
    }

    pub fn write(&self, markdown: &Path, json: &Path) -> anyhow::Result<()> {
        for path in [markdown, json] {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
        }
        std::fs::write(json, serde_json::to_string_pretty(self)? + "\n")?;
        std::fs::write(markdown, self.markdown(json))?;
        Ok(())
    }

    pub fn markdown(&self, json: &Path) -> String {
        let mut md = String::new();
        let m = &self.machine;
        let s = &self.settings;
        let _ = writeln!(md, "# Benchmarks\n");
        let _ = writeln!(
            md,
            "Generated by `{}` ({:.0} s). Machine-readable results: `{}`. How each number is \
             measured: [Method](#method).\n",
            self.command,
            self.elapsed_s,
            json.file_name().map_or_else(
                || json.display().to_string(),
                |n| n.to_string_lossy().into()
            ),
        );
        let _ = writeln!(md, "| | |\n| --- | --- |");
        let _ = writeln!(md, "| date | {} |", m.date_utc);
        let _ = writeln!(
            md,
            "| git commit | `{}`{} |",
            m.git_commit,
            if m.git_dirty {
                " (working tree has uncommitted changes)"
            } else {
                ""
            }
        );
        let _ = writeln!(md, "| CPU | {} |", m.cpu_model);
        let _ = writeln!(md, "| nproc | {} |", m.nproc);
        let _ = writeln!(md, "| memory | {:.1} GiB |", m.mem_total_gib);
        let _ = writeln!(md, "| kernel | {} |", m.kernel);
        let _ = writeln!(md, "| rustc | {} |", m.rustc);
        let _ = writeln!(
            md,
            "| load average (1, 5, 15 min) | {} at the start, {} at the end |",
            m.loadavg_start, m.loadavg_end
        );
        let _ = writeln!(md, "| gateway binary | `{}` |", self.gateway_bin);
        let _ = writeln!(
            md,
            "| LiteLLM | {} |",
            match (&self.litellm.version, self.litellm.status.as_str()) {
                (Some(v), "ran") => format!("{v} ({} workers)", self.litellm.workers),
                _ => format!("{}: see [LiteLLM](#litellm)", self.litellm.status),
            }
        );
        let _ = writeln!(
            md,
            "\n> Everything (load generator, mock upstream, gateway, LiteLLM) shares this \
             machine's {} cores, which other work may also be using (see the load average \
             above): figures from a shared machine are noisy. Compare numbers measured side by \
             side in one run, as the tables do, not across runs.\n",
            m.nproc
        );
        let _ = writeln!(
            md,
            "Settings: rates {} req/s, {} s measured after {} s of warm-up per run; mock \
             delay {} ms, {} tokens per completion, {} ms between stream chunks; request \
             deadline {} s; at most {} requests in flight; saturated = p99 over {} ms, over {:.0}% \
             failures, or under {:.0}% of the offered rate served.\n",
            join_rates(&s.rates),
            s.duration_s,
            s.warmup_s,
            s.mock_delay_ms,
            s.mock_chunks,
            s.mock_chunk_interval_ms,
            s.request_timeout_s,
            s.max_inflight,
            s.saturation.max_p99_ms,
            (1.0 - s.saturation.min_success) * 100.0,
            s.saturation.min_throughput_ratio * 100.0,
        );

        self.md_targets(&mut md);
        self.md_overhead(&mut md);
        self.md_saturation(&mut md);
        self.md_cache_on(&mut md);
        self.md_litellm(&mut md);
        self.md_memory(&mut md);
        self.md_cold_start(&mut md);
        self.md_reload(&mut md);
        self.md_profiles(&mut md);
        if !self.errors.is_empty() {
            let _ = writeln!(md, "## Sections that failed\n");
            for e in &self.errors {
                let _ = writeln!(md, "- **{}**: {}", e.section, one_line(&e.error));
            }
            md.push('\n');
        }
        md_method(&mut md, s);
        md
    }

    fn md_targets(&self, md: &mut String) {
        let _ = writeln!(md, "## Targets\n");
        let _ = writeln!(
            md,
            "| target | measured | verdict | note |\n| --- | --- | --- | --- |"
        );
        for v in &self.targets {
            let verdict = match v.met {
                Some(true) => "**met**",
                Some(false) => "**missed**",
                None => "not judged",
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                v.target, v.measured, verdict, v.note
            );
        }
        md.push('\n');
        if self.target_pairs.len() > 1 {
            let _ = writeln!(
                md,
                "The added-latency target is judged on the median of {} side-by-side pairs at \
                 {}/s (direct to the mock, then through the gateway with `model: \"auto\"`, \
                 non-streaming, on one gateway process): the sweep's own pair, then repeats. A \
                 run's p99 is its slowest 1%, {:.0} requests of a {} s run, which a few \
                 milliseconds of other work on this shared machine can fill; the median pair is \
                 what repeats.\n",
                self.target_pairs.len(),
                fmt_rate(self.settings.target_rate),
                self.settings.target_rate * self.settings.duration_s / 100.0,
                self.settings.duration_s,
            );
            let _ = writeln!(
                md,
                "| pair | direct p99 | gateway p99 | added p50 | added p90 | added p99 |\n\
                 | --- | --- | --- | --- | --- | --- |"
            );
            for (i, p) in self.target_pairs.iter().enumerate() {
                let _ = writeln!(
                    md,
                    "| {}{} | {:.2} | {:.2}{} | {:+.2} | {:+.2} | {:+.2} |",
                    i + 1,
                    if i == 0 { " (sweep)" } else { "" },
                    p.direct_p99_ms,
                    p.gateway_p99_ms,
                    if p.saturated { " (saturated)" } else { "" },
                    p.added_p50_ms,
                    p.added_p90_ms,
                    p.added_p99_ms,
                );
            }
            md.push('\n');
        }
    }

    fn md_overhead(&self, md: &mut String) {
        let _ = writeln!(md, "## Added latency\n");
        let _ = writeln!(
            md,
            "Each rate runs direct to the mock, then through the gateway with `model: \"auto\"` \
             (the `balanced` policy component ranks three models) and with a fixed model (no \
             policy call), back to back. Latency runs from a request's scheduled send time to \
             the end of its response body; **added** = gateway percentile − direct percentile at \
             the same rate. CPU is the gateway's user+system time per successful request; RSS \
             the gateway's highest VmRSS during the run. A saturated run is marked ⚠.\n"
        );
        for stream in [false, true] {
            let _ = writeln!(
                md,
                "### {}\n",
                if stream {
                    "Streaming (`\"stream\": true`)"
                } else {
                    "Non-streaming"
                }
            );
            let _ = writeln!(
                md,
                "| rate /s | path | served /s | failed | p50 ms | p90 ms | p99 ms | added p50 | added p90 | added p99 | CPU µs/req | RSS MiB | generator lag p99 ms |"
            );
            let _ = writeln!(
                md,
                "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
            );
            for run in self
                .sorted_runs()
                .into_iter()
                .filter(|r| r.stream == stream && !is_cache_run(&r.target))
            {
                let added = self.overhead.iter().find(|o| {
                    o.target == run.target && o.stream == stream && same_rate(o.rate, run.rate)
                });
                let lat = run.latency_ms;
                let _ = writeln!(
                    md,
                    "| {} | {}{} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    fmt_rate(run.rate),
                    run.target,
                    if run.saturated { " ⚠" } else { "" },
                    run.achieved_rps,
                    fmt_failed(run),
                    opt(lat.map(|l| l.p50)),
                    opt(lat.map(|l| l.p90)),
                    opt(lat.map(|l| l.p99)),
                    signed(added.map(|a| a.p50_ms)),
                    signed(added.map(|a| a.p90_ms)),
                    signed(added.map(|a| a.p99_ms)),
                    run.server_cpu_us_per_req
                        .map_or("".into(), |c| format!("{c:.0}")),
                    run.rss_max_mib.map_or("".into(), |r| format!("{r:.1}")),
                    opt(run.lag_ms.map(|l| l.p99)),
                );
            }
            let skipped: Vec<String> = self
                .skipped
                .iter()
                .filter(|k| k.stream == stream)
                .map(|k| {
                    format!(
                        "{} at {}/s (saturated at {}/s)",
                        k.target,
                        fmt_rate(k.rate),
                        fmt_rate(k.saturated_at)
                    )
                })
                .collect();
            if !skipped.is_empty() {
                let _ = writeln!(
                    md,
                    "\nNot run, because the path had already saturated at a lower rate: {}.",
                    skipped.join("; ")
                );
            }
            md.push('\n');
            if stream {
                let _ = writeln!(
                    md,
                    "Time to first token (scheduled send to the first content token, `tok0`, in \
                     the body):\n"
                );
                let _ = writeln!(
                    md,
                    "| rate /s | path | TTFT p50 ms | TTFT p90 ms | TTFT p99 ms | added p50 | added p90 | added p99 |"
                );
                let _ = writeln!(
                    md,
                    "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
                );
                for run in self
                    .sorted_runs()
                    .into_iter()
                    .filter(|r| r.stream && !is_cache_run(&r.target))
                {
                    let added = self.overhead.iter().find(|o| {
                        o.target == run.target && o.stream && same_rate(o.rate, run.rate)
                    });
                    let t = run.ttft_ms;
                    let _ = writeln!(
                        md,
                        "| {} | {}{} | {} | {} | {} | {} | {} | {} |",
                        fmt_rate(run.rate),
                        run.target,
                        if run.saturated { " ⚠" } else { "" },
                        opt(t.map(|l| l.p50)),
                        opt(t.map(|l| l.p90)),
                        opt(t.map(|l| l.p99)),
                        signed(added.and_then(|a| a.ttft_p50_ms)),
                        signed(added.and_then(|a| a.ttft_p90_ms)),
                        signed(added.and_then(|a| a.ttft_p99_ms)),
                    );
                }
                md.push('\n');
            }
        }
        let generator: Vec<String> = self
            .sorted_runs()
            .into_iter()
            .filter(|r| r.target == "direct")
            .map(|r| {
                format!(
                    "{}/s{}: {:.2} cores",
                    fmt_rate(r.rate),
                    if r.stream { " stream" } else { "" },
                    r.loadgen_cores
                )
            })
            .collect();
        if !generator.is_empty() {
            let _ = writeln!(
                md,
                "The load generator's own CPU in the direct runs (it is not the bottleneck while \
                 the direct p99 stays low and its lag small): {}.\n",
                generator.join(", ")
            );
        }
    }

    fn md_cache_on(&self, md: &mut String) {
        let Some(cache) = &self.cache_on else {
            return;
        };
        let _ = writeln!(md, "## Cache on\n");
        let _ = writeln!(
            md,
            "A fresh gateway with the response cache on (the bundled settings: exact tier, then \
             the semantic tier{}), `model: \"auto\"`. **cache-hit** repeats one prompt, so every \
             request after the first is answered by the exact tier without reaching the policy or \
             the mock; **cache-new-prompt** sends a prompt not sent before with each request \
             (distinct texts cut from the repository's prompt fixtures), non-streaming, so each \
             one is embedded for the semantic lookup, unless four prompts are already waiting \
             for the embedding model, in which case only the exact tier is consulted. A \
             direct-to-mock run at the same rate precedes each, and **added** is against it. The \
             lookup counts are the gateway's `aigw_cache_lookups_total` over the run, warm-up \
             included.\n",
            if cache.semantic_tier {
                ""
            } else {
                "; **off in this run: the embedding model was not found, run `.ci/setup`**"
            }
        );
        let _ = writeln!(
            md,
            "| rate /s | mode | path | served /s | failed | p50 ms | p99 ms | direct p50 | direct p99 | added p50 | added p99 | CPU µs/req | exact hits | semantic hits | misses | embedded |"
        );
        let _ = writeln!(
            md,
            "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        );
        for counts in &cache.runs {
            let Some(run) = self.run(&counts.target, counts.rate, counts.stream) else {
                continue;
            };
            let direct = self
                .run(CACHE_BASELINE, run.rate, run.stream)
                .and_then(|d| d.latency_ms);
            let added = self.overhead.iter().find(|o| {
                o.target == run.target && o.stream == run.stream && same_rate(o.rate, run.rate)
            });
            let lat = run.latency_ms;
            let _ = writeln!(
                md,
                "| {} | {} | {}{} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                fmt_rate(run.rate),
                if run.stream { "stream" } else { "non-stream" },
                run.target,
                if run.saturated { " ⚠" } else { "" },
                run.achieved_rps,
                fmt_failed(run),
                opt(lat.map(|l| l.p50)),
                opt(lat.map(|l| l.p99)),
                opt(direct.map(|l| l.p50)),
                opt(direct.map(|l| l.p99)),
                signed(added.map(|a| a.p50_ms)),
                signed(added.map(|a| a.p99_ms)),
                run.server_cpu_us_per_req
                    .map_or("".into(), |c| format!("{c:.0}")),
                counts.exact_hits,
                counts.semantic_hits,
                counts.misses,
                counts.embedded,
            );
        }
        md.push('\n');
    }

    fn md_saturation(&self, md: &mut String) {
        let _ = writeln!(md, "## Saturation\n");
        let _ = writeln!(
            md,
            "| path | mode | highest rate sustained /s | first saturated rate /s | why | most served /s |"
        );
        let _ = writeln!(md, "| --- | --- | ---: | ---: | --- | ---: |");
        for r in &self.saturation {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {:.0} |",
                r.target,
                if r.stream { "stream" } else { "non-stream" },
                r.highest_sustained_rate.map_or("none".into(), fmt_rate),
                r.first_saturated_rate
                    .map_or("not reached".into(), fmt_rate),
                r.reason.as_deref().unwrap_or(""),
                r.max_achieved_rps
            );
        }
        md.push('\n');
    }

    fn md_litellm(&self, md: &mut String) {
        let _ = writeln!(md, "## LiteLLM\n");
        let l = &self.litellm;
        match l.status.as_str() {
            "ran" => {
                let _ = writeln!(
                    md,
                    "LiteLLM {} (`pip install '{}'` into a virtualenv), started as `{}`, with one \
                     `openai/{}` model on the same mock. It ran at each rate until it saturated; \
                     the rows marked `litellm` in [Added latency](#added-latency) and \
                     [Saturation](#saturation) are its results, measured in the same run as the \
                     gateway's.\n",
                    l.version.as_deref().unwrap_or("?"),
                    l.spec,
                    l.command.as_deref().unwrap_or("litellm"),
                    crate::servers::FIXED_MODEL,
                );
                let _ = writeln!(
                    md,
                    "| rate /s | mode | LiteLLM p50 / p99 ms | gateway (fixed model) p50 / p99 ms | LiteLLM added p50 / p99 | gateway added p50 / p99 | added p50 ratio | LiteLLM CPU µs/req | gateway CPU µs/req | CPU ratio |"
                );
                let _ = writeln!(
                    md,
                    "| ---: | --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: |"
                );
                for run in self
                    .sorted_runs()
                    .into_iter()
                    .filter(|r| r.target == "litellm")
                {
                    let gw = self.run("gateway-fixed", run.rate, run.stream);
                    let added = |t: &str| {
                        self.overhead.iter().find(|o| {
                            o.target == t && o.stream == run.stream && same_rate(o.rate, run.rate)
                        })
                    };
                    let (ll_added, gw_added) = (added("litellm"), added("gateway-fixed"));
                    let fmt_added = |o: Option<&Overhead>| {
                        o.map(|o| {
                            format!("{} / {}", signed(Some(o.p50_ms)), signed(Some(o.p99_ms)))
                        })
                        .unwrap_or_default()
                    };
                    let pair = |r: Option<&RunResult>| {
                        r.and_then(|r| r.latency_ms)
                            .map(|l| format!("{:.2} / {:.2}", l.p50, l.p99))
                            .unwrap_or_default()
                    };
                    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
                        (Some(a), Some(b)) if b > 0.0 => format!("{:.0}×", a / b),
                        _ => String::new(),
                    };
                    let ll_cpu = run.server_cpu_us_per_req;
                    let gw_cpu = gw.and_then(|g| g.server_cpu_us_per_req);
                    let _ = writeln!(
                        md,
                        "| {} | {} | {}{} | {} | {} | {} | {} | {} | {} | {} |",
                        fmt_rate(run.rate),
                        if run.stream { "stream" } else { "non-stream" },
                        pair(Some(run)),
                        if run.saturated {
                            format!(" ⚠ {}", run.saturation_reason.as_deref().unwrap_or(""))
                        } else {
                            String::new()
                        },
                        pair(gw),
                        fmt_added(ll_added),
                        fmt_added(gw_added),
                        ratio(ll_added.map(|o| o.p50_ms), gw_added.map(|o| o.p50_ms)),
                        ll_cpu.map_or("".into(), |c| format!("{c:.0}")),
                        gw_cpu.map_or("".into(), |c| format!("{c:.0}")),
                        ratio(ll_cpu, gw_cpu),
                    );
                }
                let rss = |target: &str| {
                    self.runs
                        .iter()
                        .filter(|r| r.target == target)
                        .filter_map(|r| r.rss_max_mib)
                        .reduce(f64::max)
                };
                if let (Some(ll), Some(gw)) = (rss("litellm"), rss("gateway-fixed")) {
                    let _ = writeln!(
                        md,
                        "\nHighest RSS during these runs: LiteLLM {ll:.0} MiB (all its processes), \
                         gateway {gw:.0} MiB."
                    );
                }
                md.push('\n');
            }
            _ => {
                let _ = writeln!(
                    md,
                    "LiteLLM: **{}** (spec `{}`).{}\n",
                    l.status,
                    l.spec,
                    l.reason.as_deref().map_or(String::new(), |r| format!(
                        " Why:\n\n```\n{}\n```",
                        clip_lines(r.trim(), 300, 40)
                    ))
                );
            }
        }
    }

    fn md_memory(&self, md: &mut String) {
        let _ = writeln!(md, "## Memory\n");
        let mem = &self.memory;
        let _ = writeln!(
            md,
            "Resident memory (VmRSS from `/proc/<pid>/status`) of the gateway.\n"
        );
        let _ = writeln!(md, "| when | RSS MiB |\n| --- | ---: |");
        let row = |md: &mut String, what: &str, v: Option<f64>| {
            if let Some(v) = v {
                let _ = writeln!(md, "| {what} | {v:.1} |");
            }
        };
        row(
            md,
            "idle, right after `/ready` (no request yet)",
            mem.idle_after_start_mib,
        );
        row(
            md,
            "idle, settled: background start-up work (tokenizer tables) done, no request yet",
            mem.idle_settled_mib,
        );
        if let Some(soak) = &self.soak {
            row(
                md,
                &format!(
                    "under sustained load: highest during the {} s run at {}/s (below)",
                    soak.seconds,
                    fmt_rate(soak.rate)
                ),
                soak.rss_max_mib,
            );
        }
        for l in &self.memory.ladders {
            row(
                md,
                &format!("{} sweep: highest during runs that kept up", l.mode),
                l.max_sustained_mib,
            );
            row(
                md,
                &format!(
                    "{} sweep: highest during any run, saturated (queueing) ones included",
                    l.mode
                ),
                l.max_mib,
            );
            row(
                md,
                &format!("{} sweep: idle 3 s after its last run", l.mode),
                l.idle_after_mib,
            );
            row(md, &format!("{} sweep: peak (VmHWM)", l.mode), l.hwm_mib);
        }
        md.push('\n');
        if let Some(cores) = mem.idle_cores {
            let _ = writeln!(
                md,
                "Idle CPU (no requests, over 3 s): {cores:.3} cores. Each sweep mode ran on a \
                 fresh gateway; memory taken while a run was saturated (requests queueing) \
                 shows in the idle figure after it if the gateway does not hand it back.\n"
            );
        }
        if let Some(soak) = &self.soak {
            let r = &soak.result;
            let _ = writeln!(
                md,
                "### Sustained run\n\nA fresh gateway served {:.0} req/s for {} s (a round-robin mix \
                 of auto and fixed-model, streaming and non-streaming requests): {} sent, {} \
                 failed, p50 {} ms, p99 {} ms. RSS sampled every second; growth is measured \
                 after the first {:.0} s (pools, caches and connections filling up).\n",
                soak.rate,
                soak.seconds,
                r.sent,
                r.failed,
                opt(r.latency_ms.map(|l| l.p50)),
                opt(r.latency_ms.map(|l| l.p99)),
                soak.warmup_s,
            );
            let _ = writeln!(md, "| | MiB |\n| --- | ---: |");
            row(md, "idle before the run", soak.rss_idle_start_mib);
            row(md, "after warm-up", soak.rss_after_warmup_mib);
            row(md, "end of the run", soak.rss_end_mib);
            row(md, "highest", soak.rss_max_mib);
            row(
                md,
                "growth after warm-up (end − after warm-up)",
                soak.growth_mib,
            );
            if let Some(s) = soak.slope_mib_per_min {
                let _ = writeln!(
                    md,
                    "| trend after warm-up (least squares) | {s:+.3} MiB/min |"
                );
            }
            row(md, "idle, 5 s after the run", soak.rss_idle_after_mib);
            md.push('\n');
            let points: Vec<String> = soak
                .series
                .iter()
                .step_by((soak.series.len() / 12).max(1))
                .map(|(t, m)| format!("{t:.0} s: {m:.1}"))
                .collect();
            let _ = writeln!(md, "RSS over the run (MiB): {}.\n", points.join(", "));
        }
    }

    fn md_cold_start(&self, md: &mut String) {
        if self.cold_start.is_empty() {
            return;
        }
        let _ = writeln!(md, "## Cold start\n");
        let _ = writeln!(
            md,
            "Process spawn to the first `GET /ready` answering 200 (polled every 2 ms), each \
             start a new process; `cold` = fresh data directory (every component compiled by \
             Cranelift), `warm` = the data directory of an earlier start (compiled components \
             loaded from `<data-dir>/compiled`). Also: spawn to the `listening on` line, and \
             the first chat completion right after ready.\n"
        );
        let _ = writeln!(
            md,
            "| components | cache | ready median ms | min | max | all trials ms | listening median ms | first request ms | compiled cache KiB |"
        );
        let _ = writeln!(
            md,
            "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |"
        );
        for r in &self.cold_start {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                r.setup,
                r.cache,
                opt1(r.ready_median_ms),
                opt1(r.ready_min_ms),
                opt1(r.ready_max_ms),
                r.ready_ms
                    .iter()
                    .map(|v| format!("{v:.0}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                opt1(r.listening_median_ms),
                opt(r.first_request_median_ms),
                r.compiled_cache_kib.map_or("".into(), |k| k.to_string()),
            );
        }
        md.push('\n');
    }

    fn md_reload(&self, md: &mut String) {
        let Some(h) = &self.hot_reload else {
            return;
        };
        let _ = writeln!(md, "## Hot reload\n");
        let _ = writeln!(
            md,
            "The default policy `router.wasm` starts as the cheapest-first test policy; under a \
             steady {:.0} req/s of `model: \"auto\"` requests it is replaced by writing the new \
             component beside it and renaming it over (`tests/guests/dist/priciest.wasm`, then \
             back to `cheapest.wasm`, then `priciest.wasm` again: the first swap compiles, the \
             later ones find their compiled form cached). Switch time = rename to the first \
             response whose `x-gateway-model` shows the new policy's choice.\n",
            h.rate
        );
        let _ = writeln!(
            md,
            "| swap at | new component | switched after ms | old-policy responses after the switch | failed near the swap | slowest near the swap ms |"
        );
        let _ = writeln!(md, "| ---: | --- | ---: | ---: | ---: | ---: |");
        for s in &h.swaps {
            let _ = writeln!(
                md,
                "| {:.1} s | {} | {} | {} | {} | {} |",
                s.at_s,
                s.component,
                s.switched_after_ms
                    .map_or("never".into(), |v| format!("{v:.0}")),
                s.stragglers,
                s.failures_near,
                opt(s.max_latency_near_ms),
            );
        }
        let _ = writeln!(
            md,
            "\nWhole run: {} requests sent, **{} failed**{}; latency p50 {} ms, p99 {} ms, max {} ms.",
            h.sent,
            h.failed,
            if h.failures.is_empty() {
                String::new()
            } else {
                format!(
                    " ({})",
                    h.failures
                        .iter()
                        .map(|(k, v)| format!("{k}: {v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
            opt(h.latency_ms.map(|l| l.p50)),
            opt(h.latency_ms.map(|l| l.p99)),
            opt(h.latency_ms.map(|l| l.max)),
        );
        if !h.reload_metrics.is_empty() {
            let _ = writeln!(
                md,
                "The gateway's own count afterwards: `{}`.",
                h.reload_metrics.join("`, `")
            );
        }
        md.push('\n');
    }

    fn md_profiles(&self, md: &mut String) {
        if self.profiles.is_empty() {
            return;
        }
        let _ = writeln!(md, "## Where the gateway spends its CPU\n");
        let _ = writeln!(
            md,
            "`perf record -F 499 -p <gateway>` while the load generator sends the stated load \
             (flat profile: the share of samples in each function itself).\n"
        );
        for p in &self.profiles {
            let _ = writeln!(
                md,
                "### {} at {}/s for {} s\n\n{}\n",
                p.label,
                fmt_rate(p.rate),
                p.seconds,
                p.samples_note
            );
            if let Some(c) = &p.switches {
                let _ = writeln!(
                    md,
                    "Context switches of the gateway's {} threads, per request: {:.2} voluntary \
                     (a thread goes to sleep waiting for work or I/O, and is woken for the next \
                     event) and {:.2} involuntary (a thread preempted while it had work, by the \
                     load generator, the mock or another thread).\n",
                    c.threads, c.voluntary_per_request, c.involuntary_per_request
                );
            }
            if !p.by_dso.is_empty() {
                let _ = writeln!(
                    md,
                    "By object: {}.\n",
                    p.by_dso
                        .iter()
                        .map(|(pct, dso)| format!("{dso} {pct:.1}%"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            if !p.buckets.is_empty() {
                let _ = writeln!(md, "| % of CPU samples | part |\n| ---: | --- |");
                for (pct, name) in p.buckets.iter().filter(|b| b.0 >= 0.5) {
                    let _ = writeln!(md, "| {pct:.1} | {name} |");
                }
                md.push('\n');
            }
            let _ = writeln!(
                md,
                "Top functions:\n\n| % | object and function |\n| ---: | --- |"
            );
            for (pct, sym) in &p.top_symbols {
                let _ = writeln!(md, "| {pct:.1} | `{}` |", sym.replace('|', "\\|"));
            }
            md.push('\n');
        }
    }
}

fn md_method(md: &mut String, s: &Settings) {
    let _ = writeln!(md, "## Method\n");
    let _ = writeln!(
        md,
        "- **Mock upstream** (`aigw-bench mock`, hyper, {} tokio thread(s), its own process on \
         127.0.0.1): answers `POST /v1/chat/completions` in OpenAI's format with `{}` tokens \
         (`tok0 tok1 …`), after {} ms; streams as OpenAI does (role chunk, one chunk per token, \
         finish chunk, usage chunk when asked, `data: [DONE]`).",
        s.mock_threads, s.mock_chunks, s.mock_delay_ms
    );
    let _ = writeln!(
        md,
        "- **Load generator** (open loop): a dispatcher thread starts request *i* at \
         *start + i/rate* whatever happened to earlier requests, and hands it to a pooled \
         HTTP/1.1 client (hyper-util, keep-alive, one connection per concurrent request, opened \
         on demand). Latency is taken from the **scheduled** send time, so queueing anywhere \
         (including the generator's own lateness, reported as *generator lag*) counts. The \
         first {} s of each run are warm-up and not counted. Requests past a {} s deadline \
         count as timeouts; past {} in flight, as dropped. A response counts as successful \
         when it is 2xx, contains the mock's first token, and, for streams, ends with \
         `data: [DONE]`.",
        s.warmup_s, s.request_timeout_s, s.max_inflight
    );
    let repeats = if s.target_repeats > 0 {
        format!(
            " The added-latency target is judged on the median of {} side-by-side pairs \
             (direct, then gateway `auto`, non-streaming) at {}/s: the sweep's own pair and {} \
             repeats on the same gateway.",
            s.target_repeats + 1,
            fmt_rate(s.target_rate),
            s.target_repeats,
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        md,
        "- **Added latency**: for each rate and mode, the direct-to-mock run is the baseline; \
         added pN = gateway pN − direct pN. Percentiles are nearest-rank over the successful \
         requests of the measured window.{repeats}"
    );
    let _ = writeln!(
        md,
        "- **Order**: the non-streaming rates run first on one gateway, the streaming rates on a \
         fresh one. At each rate: direct, gateway with `model: \"auto\"`, gateway with a fixed \
         model, LiteLLM, back to back; below the main rates only direct, gateway (fixed) and \
         LiteLLM, to find LiteLLM's limit. A path that saturated is not run at higher rates. \
         Then the saturation bracket of the gateway (`auto`) and of LiteLLM, non-streaming, is \
         narrowed by bisection."
    );
    let _ = writeln!(
        md,
        "- **Gateway configuration**: written to a temp directory as the e2e tests do \
         (`listen = \"127.0.0.1:0\"`, copies of `plugins/dist/openai.wasm` and \
         `policies/dist/balanced.wasm`, one OpenAI-compatible provider whose `base_url` is the \
         mock, three models); `AIGW_LOG=warn`; fresh data directory."
    );
    let _ = writeln!(
        md,
        "- **CPU** per request: user+system ticks from `/proc/<pid>/stat` over the measured \
         window, divided by the successful requests. **Memory**: `VmRSS` from \
         `/proc/<pid>/status`."
    );
    let _ = writeln!(
        md,
        "- Between runs the harness waits (at most 10 s) until the gateway, LiteLLM and the mock \
         are idle again, so one run's backlog does not spill into the next."
    );
    let _ = writeln!(
        md,
        "- Every server listens on 127.0.0.1; every child process runs in its own process group \
         with a parent-death signal and is killed when the harness ends, fails or is \
         interrupted."
    );
}

pub fn same_rate(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

pub fn fmt_rate(rate: f64) -> String {
    if rate.fract() == 0.0 {
        format!("{rate:.0}")
    } else {
        format!("{rate:.1}")
    }
}

fn join_rates(rates: &[f64]) -> String {
    rates
        .iter()
        .map(|&r| fmt_rate(r))
        .collect::<Vec<_>>()
        .join(", ")
}

fn fmt_failed(run: &RunResult) -> String {
    if run.failed == 0 {
        "0".into()
    } else {
        format!(
            "{} ({})",
            run.failed,
            run.failures
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

fn opt(v: Option<f64>) -> String {
    v.map_or(String::new(), |v| format!("{v:.2}"))
}

fn opt1(v: Option<f64>) -> String {
    v.map_or(String::new(), |v| format!("{v:.0}"))
}

fn signed(v: Option<f64>) -> String {
    v.map_or(String::new(), |v| format!("{v:+.2}"))
}

/// At most `lines` lines of at most `width` characters each.
fn clip_lines(text: &str, width: usize, lines: usize) -> String {
    text.lines()
        .take(lines)
        .map(|l| {
            if l.chars().count() > width {
                format!("{}…", l.chars().take(width).collect::<String>())
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
