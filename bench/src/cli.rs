//! Command-line flags.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "aigw-bench",
    version,
    about = "Benchmarks the ai-gateway against a mock upstream (and LiteLLM) on loopback and \
             writes a Markdown report plus JSON",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run only the mock upstream (prints `listening on http://ADDR`).
    Mock(crate::mock::MockArgs),
    /// Render the Markdown report again from a run's JSON (no measuring).
    Render(RenderArgs),
    /// Measure the response cache (accuracy, false hits, latency, large-index search) and
    /// write bench/CACHE.md plus JSON.
    Cache(crate::semantic_cache::CacheArgs),
    /// Measure task classification accuracy (embedding vs keywords) on the labelled prompt set
    /// and write bench/CLASSIFY.md plus JSON.
    Classify(crate::classify::ClassifyArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct RenderArgs {
    /// The JSON a run wrote.
    #[arg(long, default_value = "BENCHMARKS.json")]
    pub json: PathBuf,
    /// The Markdown report [default: the JSON's path with a .md extension].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Section {
    /// Overhead and time to first token at each rate (gateway and direct to the mock).
    Sweep,
    /// The same rates through LiteLLM (needs `sweep`).
    Litellm,
    /// Process start to `/ready`, with and without the compiled-component cache.
    ColdStart,
    /// Swapping the default policy component under load.
    Reload,
    /// Resident memory over a sustained run.
    Soak,
    /// A `perf` profile of the gateway under load, when `perf` works here.
    Profile,
    /// The response cache on: a repeated prompt (hits) and a new prompt per request.
    Cache,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The Markdown report [default: BENCHMARKS.md at the repository root].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The JSON results [default: the report's path with a .json extension].
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Offered rates (requests/s), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "250,500,1000,2000,4000")]
    pub rates: Vec<f64>,
    /// Rates of the cache-on runs with a repeated prompt (every request after the first is an
    /// exact-tier hit), streaming and not.
    #[arg(long, value_delimiter = ',', default_value = "1000,2000")]
    pub cache_hit_rates: Vec<f64>,
    /// Rates of the cache-on runs with a new prompt per request (each one embedded for the
    /// semantic tier), non-streaming.
    #[arg(long, value_delimiter = ',', default_value = "25,50,100,200,400")]
    pub cache_new_prompt_rates: Vec<f64>,
    /// Measured seconds per run.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds sent before each run's measurement starts (connections, pools, caches).
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// While the gateway keeps up at the highest rate, try up to this many more rates (x1.5
    /// each), non-streaming, to find where it saturates. 0 disables.
    #[arg(long, default_value_t = 3)]
    pub extend_rates: usize,
    /// Bisection steps that narrow where the gateway (`model: "auto"`) and LiteLLM saturate,
    /// non-streaming, between the last rate each kept up with and the first it did not.
    #[arg(long, default_value_t = 4)]
    pub refine_steps: usize,
    /// The rate the overhead target is judged at.
    #[arg(long, default_value_t = 2000.0)]
    pub target_rate: f64,
    /// More side-by-side pairs (direct, then the gateway with `model: "auto"`, non-streaming)
    /// at the target rate after the sweep's own: the added-latency target is judged on the
    /// median pair, as one 10 s run's p99 is set by its few slowest moments.
    #[arg(long, default_value_t = 4)]
    pub target_repeats: usize,
    /// A run is saturated when its p99 exceeds this (ms, plus the mock's delay), when more
    /// than 1% of requests fail, or when under 95% of the offered rate is served.
    #[arg(long, default_value_t = 100.0)]
    pub saturation_p99_ms: f64,
    /// Per-request deadline, seconds (counted as a timeout past it).
    #[arg(long, default_value_t = 10.0)]
    pub request_timeout: f64,
    /// Requests in flight at most; the schedule drops (and counts) requests past it.
    #[arg(long, default_value_t = 2000)]
    pub max_inflight: usize,

    /// Seconds of the sustained (soak) run that measures memory growth (600 for the 10-minute run).
    #[arg(long, default_value_t = 60)]
    pub soak_seconds: u64,
    /// Rate of the soak run: a mix of auto/fixed and streaming/non-streaming requests (half
    /// of them streams), kept below saturation so growth is not just a growing queue.
    #[arg(long, default_value_t = 300.0)]
    pub soak_rate: f64,
    /// Rate of the load kept up while the policy component is swapped.
    #[arg(long, default_value_t = 500.0)]
    pub reload_rate: f64,
    /// Gateway starts per cold-start variant.
    #[arg(long, default_value_t = 5)]
    pub cold_start_trials: usize,
    /// Seconds of load per `perf` profile.
    #[arg(long, default_value_t = 5)]
    pub profile_seconds: u64,

    /// The mock's delay before answering, ms.
    #[arg(long, default_value_t = 0)]
    pub mock_delay_ms: u64,
    /// Content tokens (stream chunks) per mock completion.
    #[arg(long, default_value_t = 16)]
    pub mock_chunks: usize,
    /// Pause between the mock's stream chunks, ms.
    #[arg(long, default_value_t = 0)]
    pub mock_chunk_interval_ms: u64,
    /// The mock's tokio worker threads.
    #[arg(long, default_value_t = 1)]
    pub mock_threads: usize,

    /// Skip LiteLLM entirely.
    #[arg(long)]
    pub no_litellm: bool,
    /// What pip installs (newer releases require a certifi release this registry lacks).
    #[arg(long, default_value = "litellm[proxy]==1.102.4")]
    pub litellm_spec: String,
    /// The virtualenv LiteLLM is installed into [default: ~/.cache/ai-gateway/bench-venv].
    #[arg(long)]
    pub litellm_venv: Option<PathBuf>,
    /// LiteLLM worker processes [default: the number of CPUs, like the gateway's threads].
    #[arg(long)]
    pub litellm_workers: Option<usize>,
    /// Rates below `--rates` tried on LiteLLM (with a direct baseline) to find where its p99
    /// passes the saturation threshold.
    #[arg(long, value_delimiter = ',', default_value = "25,50,100")]
    pub litellm_low_rates: Vec<f64>,

    /// Do not run `.ci/setup --test` and `cargo build --release -p ai-gateway` first.
    #[arg(long)]
    pub no_build: bool,
    /// The gateway binary [default: ai-gateway beside this binary, in the same target dir].
    #[arg(long)]
    pub gateway_bin: Option<PathBuf>,
    /// Sections to run, comma-separated [default: all].
    #[arg(long, value_delimiter = ',')]
    pub sections: Vec<Section>,
    /// Also write the per-request samples of every rate run (sweep, target pairs, cache on)
    /// here, one CSV per run, to look into where a tail comes from (a stall shows as a cluster
    /// in time, queueing as a spread).
    #[arg(long)]
    pub samples_dir: Option<PathBuf>,
    /// A one-minute smoke configuration: rates 200,1000 for 3 s, soak 10 s, 2 cold starts.
    #[arg(long)]
    pub quick: bool,
}

impl RunArgs {
    pub fn apply_quick(&mut self) {
        if self.quick {
            self.rates = vec![200.0, 1000.0];
            self.duration = 3.0;
            self.warmup = 1.0;
            self.extend_rates = 0;
            self.refine_steps = 0;
            self.soak_seconds = 10;
            self.soak_rate = 300.0;
            self.reload_rate = 200.0;
            self.cold_start_trials = 2;
            self.profile_seconds = 2;
            self.litellm_low_rates = vec![50.0];
            self.target_rate = 1000.0;
            self.target_repeats = 1;
        }
    }

    pub fn wants(&self, section: Section) -> bool {
        self.sections.is_empty() || self.sections.contains(&section)
    }
}
