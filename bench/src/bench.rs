//! The benchmark itself: build, start the mock, then each section in turn, then the report.
//! A section that fails is reported as such and the others still run.

use crate::cli::{RunArgs, Section};
use crate::load::{self, Limits, RunResult, Saturation, Schedule, Watch, Workload};
use crate::mock::MockArgs;
use crate::procs::{self, ChildProc, Machine};
use crate::report::{
    CACHE_BASELINE, CacheOn, CacheRun, ColdStartRow, ContextSwitches, HotReload, LadderMemory,
    LiteLlmInfo, Memory, Profile, Report, SectionError, Settings, Soak, Swap, TargetPair, Verdict,
    fmt_rate, same_rate,
};
use crate::servers::{
    self, FIXED_MODEL, GatewayConfig, GatewayProc, LiteLlm, LiteLlmSettings, MockServer, Setup,
};
use crate::stats::{self, Percentiles};
use anyhow::{Context, bail};
use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static STARTED: OnceLock<Instant> = OnceLock::new();

/// A progress line on stderr, prefixed with the time since the harness started.
macro_rules! progress {
    ($($arg:tt)*) => {{
        let t = STARTED.get().map_or(0, |s| s.elapsed().as_secs());
        eprintln!("[bench {:>2}m{:02}s] {}", t / 60, t % 60, format!($($arg)*));
    }};
}

const PROMPT: &str = "Summarize in one sentence why an open-loop load generator shows \
                      queueing delays that a closed-loop one hides.";

/// A chat request body for `model`.
fn body(model: &str, stream: bool) -> Bytes {
    body_with_prompt(model, PROMPT, stream)
}

/// A chat request body for `model` asking `prompt`.
fn body_with_prompt(model: &str, prompt: &str, stream: bool) -> Bytes {
    let mut value = serde_json::json!({
        "model": model,
        "messages": [
            {"role": "system", "content": "You are a concise assistant."},
            {"role": "user", "content": prompt},
        ],
        "max_tokens": 64,
    });
    if stream {
        value["stream"] = true.into();
        value["stream_options"] = serde_json::json!({"include_usage": true});
    }
    Bytes::from(value.to_string())
}

struct Ctx {
    args: RunArgs,
    repo: PathBuf,
    gateway_bin: PathBuf,
    mock: MockServer,
    limits: Limits,
    report: Report,
    /// Process groups of other servers running beside the one measured (LiteLLM during the
    /// sweep): a run starts only once they are quiet too, so one server's leftover work (a
    /// saturated LiteLLM still answering its backlog) is not measured against the next.
    bystanders: Vec<i32>,
}

impl Ctx {
    fn saturation(&self, stream: bool) -> Saturation {
        let a = &self.args;
        let stream_time = if stream {
            a.mock_chunk_interval_ms * a.mock_chunks as u64
        } else {
            0
        };
        Saturation {
            max_p99_ms: a.saturation_p99_ms + (a.mock_delay_ms + stream_time) as f64,
            min_success: 0.99,
            min_throughput_ratio: 0.95,
        }
    }

    fn schedule(&self, rate: f64) -> Schedule {
        Schedule::new(
            rate,
            Duration::from_secs_f64(self.args.warmup),
            Duration::from_secs_f64(self.args.duration),
            self.limits,
        )
    }

    /// One measured run at `rate` against `url`; waits for quiet afterwards.
    async fn measure(
        &mut self,
        target: &str,
        url: &str,
        model: &str,
        stream: bool,
        rate: f64,
        server: Option<i32>,
    ) -> anyhow::Result<RunResult> {
        let bodies = vec![(body(model, stream), stream)];
        self.measure_bodies(target, url, bodies, stream, rate, server)
            .await
    }

    /// As `measure`, sending `bodies` in turn.
    async fn measure_bodies(
        &mut self,
        target: &str,
        url: &str,
        bodies: Vec<(Bytes, bool)>,
        stream: bool,
        rate: f64,
        server: Option<i32>,
    ) -> anyhow::Result<RunResult> {
        let result = self
            .measure_unrecorded(target, "", url, bodies, stream, rate, server)
            .await?;
        self.report.runs.push(result.clone());
        Ok(result)
    }

    /// One measured run, left out of the report's run table (the caller keeps what it needs);
    /// `tag` tells its samples file apart from the table's run of the same target and rate.
    #[allow(clippy::too_many_arguments)]
    async fn measure_unrecorded(
        &mut self,
        target: &str,
        tag: &str,
        url: &str,
        bodies: Vec<(Bytes, bool)>,
        stream: bool,
        rate: f64,
        server: Option<i32>,
    ) -> anyhow::Result<RunResult> {
        let workload = Workload {
            url: url.parse().context("target URL")?,
            bodies,
            record_model: false,
        };
        let watch = Watch {
            server,
            mock: Some(self.mock.proc.pid),
            rss_every: Some(Duration::from_millis(250)),
        };
        let raw = load::run(workload, self.schedule(rate), watch).await;
        let result = load::summarize(target, stream, &raw, self.saturation(stream));
        progress!("{}{tag}", describe(&result));
        if let Some(dir) = &self.args.samples_dir {
            let kind = if stream { "stream" } else { "plain" };
            let tag = tag.replace(|c: char| !c.is_ascii_alphanumeric(), "-");
            let path = dir.join(format!(
                "{target}-{kind}-{rate}{}.csv",
                tag.trim_end_matches('-')
            ));
            if let Err(e) = load::write_samples(&path, &raw) {
                progress!("cannot write {}: {e:#}", path.display());
            }
        }
        let mut quiet: Vec<i32> = server.into_iter().collect();
        quiet.push(self.mock.proc.pid);
        quiet.extend(self.bystanders.iter().filter(|&&pid| Some(pid) != server));
        settle(&quiet).await;
        Ok(result)
    }
}

fn describe(r: &RunResult) -> String {
    let l = r.latency_ms;
    format!(
        "{:>5}/s {:<10} {:<13}: ok {}/{}, p50 {} p90 {} p99 {} ms{}{}{}",
        fmt_rate(r.rate),
        if r.stream { "stream" } else { "non-stream" },
        r.target,
        r.ok,
        r.sent,
        l.map_or("-".into(), |l| format!("{:.2}", l.p50)),
        l.map_or("-".into(), |l| format!("{:.2}", l.p90)),
        l.map_or("-".into(), |l| format!("{:.2}", l.p99)),
        r.ttft_ms
            .map_or(String::new(), |t| format!(", ttft p50 {:.2} ms", t.p50)),
        r.server_cores
            .map_or(String::new(), |c| format!(", server {c:.2} cores")),
        r.saturation_reason
            .as_ref()
            .map_or(String::new(), |s| format!(" [SATURATED: {s}]")),
    )
}

/// Waits (at most 10 s) until the given process groups use under 0.1 core together.
async fn settle(groups: &[i32]) {
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..40 {
        let before: f64 = groups.iter().map(|&g| procs::group_cpu_seconds(g)).sum();
        tokio::time::sleep(Duration::from_millis(250)).await;
        let after: f64 = groups.iter().map(|&g| procs::group_cpu_seconds(g)).sum();
        if (after - before) / 0.25 < 0.1 {
            return;
        }
    }
}

pub async fn run(mut args: RunArgs) -> anyhow::Result<()> {
    let _ = STARTED.set(Instant::now());
    args.apply_quick();
    validate(&args)?;
    procs::install_signal_handler()?;
    let fd_limit = procs::raise_fd_limit();
    let started = Instant::now();
    let repo = repo_root();
    let machine = Machine::collect(&repo);
    progress!(
        "{} x {}, load average {} (other work on this machine makes the figures noisy)",
        machine.nproc,
        machine.cpu_model,
        machine.loadavg_start
    );
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| repo.join("BENCHMARKS.md"));
    let json = args
        .json
        .clone()
        .unwrap_or_else(|| out.with_extension("json"));

    let target_dir = target_dir()?;
    if !args.no_build {
        build(&repo, &target_dir)?;
    }
    let gateway_bin = args
        .gateway_bin
        .clone()
        .unwrap_or_else(|| target_dir.join("release/ai-gateway"));
    anyhow::ensure!(
        gateway_bin.is_file(),
        "{} does not exist: build it with `cargo build --release -p ai-gateway` or drop --no-build",
        gateway_bin.display()
    );
    // The run uses a private copy: a rebuild by someone else mid-run cannot change the binary
    // under test, and `perf` can still resolve its symbols.
    let bin_dir = procs::scratch("aigw-bench-bin-")?;
    let gateway_copy = bin_dir.path().join("ai-gateway");
    std::fs::copy(&gateway_bin, &gateway_copy)
        .with_context(|| format!("copying {}", gateway_bin.display()))?;
    let built = std::fs::metadata(&gateway_bin)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or_else(String::new, |d| procs::format_utc(d.as_secs()));

    let workers = args.litellm_workers.unwrap_or(machine.nproc);
    let settings = Settings {
        rates: args.rates.clone(),
        duration_s: args.duration,
        warmup_s: args.warmup,
        request_timeout_s: args.request_timeout,
        max_inflight: args.max_inflight,
        saturation: Saturation {
            max_p99_ms: args.saturation_p99_ms + args.mock_delay_ms as f64,
            min_success: 0.99,
            min_throughput_ratio: 0.95,
        },
        target_rate: args.target_rate,
        target_repeats: args.target_repeats,
        mock_delay_ms: args.mock_delay_ms,
        mock_chunks: args.mock_chunks,
        mock_chunk_interval_ms: args.mock_chunk_interval_ms,
        mock_threads: args.mock_threads,
        soak_seconds: args.soak_seconds,
        soak_rate: args.soak_rate,
        reload_rate: args.reload_rate,
        cold_start_trials: args.cold_start_trials,
        fd_limit,
        cache_hit_rates: args.cache_hit_rates.clone(),
        cache_new_prompt_rates: args.cache_new_prompt_rates.clone(),
    };
    let command = std::iter::once("aigw-bench".to_string())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    let report = Report {
        tool: "aigw-bench".into(),
        command,
        machine,
        settings,
        gateway_bin: format!("{} (built {built}; run from a copy)", gateway_bin.display()),
        litellm: LiteLlmInfo {
            status: "not run".into(),
            spec: args.litellm_spec.clone(),
            workers,
            ..LiteLlmInfo::default()
        },
        runs: Vec::new(),
        overhead: Vec::new(),
        target_pairs: Vec::new(),
        saturation: Vec::new(),
        memory: Memory::default(),
        soak: None,
        cold_start: Vec::new(),
        hot_reload: None,
        cache_on: None,
        profiles: Vec::new(),
        targets: Vec::new(),
        skipped: Vec::new(),
        errors: Vec::new(),
        elapsed_s: 0.0,
    };

    let mock = MockServer::start(&MockArgs {
        listen: "127.0.0.1:0".parse()?,
        delay_ms: args.mock_delay_ms,
        chunks: args.mock_chunks,
        chunk_interval_ms: args.mock_chunk_interval_ms,
        threads: args.mock_threads,
        lifetime_secs: 6 * 3600,
    })?;
    progress!("mock upstream on {}", mock.origin);
    let mut ctx = Ctx {
        args,
        repo,
        gateway_bin: gateway_copy,
        mock,
        limits: Limits {
            request_timeout: Duration::from_secs(1),
            max_inflight: 1,
        },
        report,
        bystanders: Vec::new(),
    };
    ctx.limits = Limits {
        request_timeout: Duration::from_secs_f64(ctx.args.request_timeout),
        max_inflight: ctx.args.max_inflight,
    };

    // LiteLLM's installation comes first: it may take minutes, and a failure is reported.
    let mut litellm_version = None;
    let litellm_settings = LiteLlmSettings {
        venv: ctx
            .args
            .litellm_venv
            .clone()
            .unwrap_or_else(|| home().join(".cache/ai-gateway/bench-venv")),
        spec: ctx.args.litellm_spec.clone(),
        workers,
    };
    if ctx.args.no_litellm {
        ctx.report.litellm.status = "skipped".into();
        ctx.report.litellm.reason = Some("--no-litellm was given".into());
    } else if ctx.args.wants(Section::Litellm) && ctx.args.wants(Section::Sweep) {
        match servers::install_litellm(&litellm_settings) {
            Ok(version) => litellm_version = Some(version),
            Err(e) => {
                progress!("LiteLLM cannot be installed: {e:#}");
                ctx.report.litellm.status = "failed".into();
                ctx.report.litellm.reason = Some(format!("installation failed: {e:#}"));
            }
        }
    }

    if ctx.args.wants(Section::ColdStart) {
        let result = cold_start(&mut ctx).await;
        record(&mut ctx, "cold start", result);
    }
    if ctx.args.wants(Section::Sweep) {
        let result = sweep(&mut ctx, litellm_version, &litellm_settings).await;
        record(&mut ctx, "sweep", result);
    }
    if ctx.args.wants(Section::Cache) {
        let result = cache_on(&mut ctx).await;
        record(&mut ctx, "cache on", result);
    }
    if ctx.args.wants(Section::Soak) {
        let result = soak(&mut ctx).await;
        record(&mut ctx, "soak", result);
    }
    if ctx.args.wants(Section::Reload) {
        let result = hot_reload(&mut ctx).await;
        record(&mut ctx, "hot reload", result);
    }

    drop(ctx.mock);
    drop(bin_dir);
    let mut report = ctx.report;
    report.machine.loadavg_end = procs::loadavg();
    report.elapsed_s = started.elapsed().as_secs_f64();
    report.derive();
    report.targets = verdicts(&report);
    report.write(&out, &json)?;
    progress!("wrote {} and {}", out.display(), json.display());
    for v in &report.targets {
        progress!(
            "target {}: {} -> {}",
            v.target,
            v.measured,
            match v.met {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "not measured",
            }
        );
    }
    Ok(())
}

fn record(ctx: &mut Ctx, section: &str, result: anyhow::Result<()>) {
    if let Err(e) = result {
        progress!("section '{section}' failed: {e:#}");
        ctx.report.errors.push(SectionError {
            section: section.to_string(),
            error: format!("{e:#}"),
        });
    }
}

fn validate(args: &RunArgs) -> anyhow::Result<()> {
    let rates_ok = |r: &[f64]| {
        r.iter()
            .all(|&r| r.is_finite() && r > 0.0 && r <= 100_000.0)
    };
    anyhow::ensure!(
        !args.rates.is_empty() && rates_ok(&args.rates) && rates_ok(&args.litellm_low_rates),
        "rates must be positive and at most 100000/s"
    );
    anyhow::ensure!(
        args.duration > 0.0
            && args.duration <= 3600.0
            && args.warmup >= 0.0
            && args.warmup <= 600.0,
        "--duration must be in (0, 3600] s and --warmup in [0, 600] s"
    );
    anyhow::ensure!(
        (1..=24 * 3600).contains(&args.soak_seconds),
        "--soak-seconds must be between 1 and 86400"
    );
    anyhow::ensure!(
        args.request_timeout > 0.0 && args.request_timeout <= 300.0,
        "--request-timeout must be in (0, 300] s"
    );
    anyhow::ensure!(
        args.max_inflight >= 1 && args.cold_start_trials <= 100,
        "--max-inflight must be at least 1 and --cold-start-trials at most 100"
    );
    anyhow::ensure!(
        args.soak_rate > 0.0 && args.reload_rate > 0.0,
        "--soak-rate and --reload-rate must be positive"
    );
    Ok(())
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ has a parent")
        .to_path_buf()
}

fn home() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from)
}

/// The cargo target directory this binary was built into (`<target>/release/aigw-bench`).
fn target_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating this binary")?;
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .context("this binary is not inside a cargo target directory")
}

/// `.ci/setup --test` (components and test guests) and `cargo build --release -p ai-gateway`,
/// both into the target directory this binary lives in.
fn build(repo: &Path, target_dir: &Path) -> anyhow::Result<()> {
    progress!(
        "building components (.ci/setup --test) and the gateway (cargo build --release -p \
         ai-gateway) into {}",
        target_dir.display()
    );
    let mut setup = Command::new(repo.join(".ci/setup"));
    setup
        .arg("--test")
        .current_dir(repo)
        .env("CARGO_TARGET_DIR", target_dir);
    procs::run_bounded(".ci/setup --test", setup, Duration::from_secs(3600))?;
    let mut cargo = Command::new("cargo");
    cargo
        .args(["build", "--release", "-p", "ai-gateway"])
        .current_dir(repo)
        .env("CARGO_TARGET_DIR", target_dir);
    procs::run_bounded(
        "cargo build --release -p ai-gateway",
        cargo,
        Duration::from_secs(3600),
    )?;
    progress!("build done");
    Ok(())
}

/// Sends one request of each kind and checks the answers, so a broken setup fails loudly
/// instead of producing a table of errors.
async fn smoke(url: &str, kinds: &[(&str, bool)]) -> anyhow::Result<()> {
    let client = load::client();
    for &(model, stream) in kinds {
        let payload = body(model, stream);
        let text = std::str::from_utf8(&payload)?;
        let (status, answer) =
            servers::post_json(&client, url, text, Duration::from_secs(30)).await?;
        let answer = String::from_utf8_lossy(&answer);
        if status != 200
            || !answer.contains("tok0")
            || (stream && !answer.trim_end().ends_with("data: [DONE]"))
        {
            bail!(
                "{url} answered a {} request for {model} with {status}: {}",
                if stream { "streaming" } else { "plain" },
                answer.chars().take(600).collect::<String>()
            );
        }
    }
    Ok(())
}

const ALL_KINDS: [(&str, bool); 4] = [
    ("auto", false),
    (FIXED_MODEL, false),
    ("auto", true),
    (FIXED_MODEL, true),
];

async fn start_litellm(
    ctx: &mut Ctx,
    version: String,
    settings: &LiteLlmSettings,
) -> Option<LiteLlm> {
    progress!(
        "starting LiteLLM {version} with {} workers",
        settings.workers
    );
    let l = match LiteLlm::start(settings, &ctx.mock.base_url()).await {
        Ok(l) => l,
        Err(e) => {
            progress!("LiteLLM did not start: {e:#}");
            ctx.report.litellm.status = "failed".into();
            ctx.report.litellm.reason = Some(format!("{e:#}"));
            return None;
        }
    };
    if let Err(e) = smoke(&l.chat_url(), &[(FIXED_MODEL, false), (FIXED_MODEL, true)]).await {
        ctx.report.litellm.status = "failed".into();
        ctx.report.litellm.reason = Some(format!(
            "LiteLLM started but did not answer correctly: {e:#}\nits output:\n{}\n{}",
            l.proc.stdout_tail(15),
            l.proc.stderr_tail(25)
        ));
        return None;
    }
    ctx.report.litellm.status = "ran".into();
    ctx.report.litellm.version = Some(version);
    ctx.report.litellm.command = Some(format!(
        "litellm --config config.yaml --host 127.0.0.1 --port <free port> --num_workers {} \
         --telemetry False",
        settings.workers
    ));
    progress!("LiteLLM ready at {}", l.base);
    Some(l)
}

/// Where a path is measured: its label, URL, model and the process group to watch.
struct Endpoint {
    target: &'static str,
    url: String,
    model: &'static str,
    pid: Option<i32>,
}

async fn sweep(
    ctx: &mut Ctx,
    litellm_version: Option<String>,
    litellm_settings: &LiteLlmSettings,
) -> anyhow::Result<()> {
    smoke(
        &format!("{}/chat/completions", ctx.mock.base_url()),
        &[(FIXED_MODEL, false), (FIXED_MODEL, true)],
    )
    .await?;
    let litellm = match litellm_version {
        Some(version) => start_litellm(ctx, version, litellm_settings).await,
        None => None,
    };
    ctx.bystanders = litellm.iter().map(|l| l.proc.pid).collect();
    settle(&ctx.bystanders).await;
    let result = sweep_modes(ctx, litellm.as_ref()).await;
    ctx.bystanders.clear();
    result
}

/// The sweep's non-streaming then streaming ladders, with LiteLLM (when it runs) beside them.
async fn sweep_modes(ctx: &mut Ctx, litellm: Option<&LiteLlm>) -> anyhow::Result<()> {
    // Non-streaming first, then streaming, each on a fresh gateway: memory a gateway takes
    // while overloaded is not handed back, and would otherwise show in every later run.
    for stream in [false, true] {
        let config = GatewayConfig::write(&ctx.repo, &ctx.mock.base_url(), Setup::Bench)?;
        let data = procs::scratch("aigw-bench-data-")?;
        let gateway =
            GatewayProc::start(&ctx.gateway_bin, config.path(), data.path(), "warn").await?;
        if !stream {
            let mem = &mut ctx.report.memory;
            mem.idle_after_start_mib = gateway.rss_mib();
            mem.idle_settled_mib = gateway.settled_rss_mib().await;
            let before = procs::group_cpu_seconds(gateway.pid());
            tokio::time::sleep(Duration::from_secs(3)).await;
            mem.idle_cores = Some((procs::group_cpu_seconds(gateway.pid()) - before) / 3.0);
            progress!(
                "gateway ready in {:.0} ms, idle RSS {:.1} MiB right after ready, {:.1} MiB \
                 settled, idle CPU {:.3} cores",
                gateway.ready_after.as_secs_f64() * 1000.0,
                mem.idle_after_start_mib.unwrap_or(0.0),
                mem.idle_settled_mib.unwrap_or(0.0),
                mem.idle_cores.unwrap_or(0.0),
            );
            smoke(&gateway.chat_url(), &ALL_KINDS).await?;
        }
        let first_run = ctx.report.runs.len();
        ladder(ctx, &gateway, litellm, stream).await?;
        if !stream {
            let fixed = Endpoint {
                target: "gateway-fixed",
                url: gateway.chat_url(),
                model: FIXED_MODEL,
                pid: Some(gateway.pid()),
            };
            let auto = Endpoint {
                target: "gateway-auto",
                url: gateway.chat_url(),
                model: "auto",
                pid: Some(gateway.pid()),
            };
            refine(ctx, &auto, &[&fixed]).await?;
            target_pairs(ctx, &gateway).await?;
            if let Some(l) = litellm {
                let ll = Endpoint {
                    target: "litellm",
                    url: l.chat_url(),
                    model: FIXED_MODEL,
                    pid: Some(l.proc.pid),
                };
                refine(ctx, &ll, &[&fixed]).await?;
            }
        }
        let runs = &ctx.report.runs[first_run..];
        let rss = |sustained_only: bool| {
            runs.iter()
                .filter(|r| r.target.starts_with("gateway"))
                .filter(|r| !sustained_only || !r.saturated)
                .filter_map(|r| r.rss_max_mib)
                .reduce(f64::max)
        };
        let (max_sustained_mib, max_mib) = (rss(true), rss(false));
        tokio::time::sleep(Duration::from_secs(3)).await;
        ctx.report.memory.ladders.push(LadderMemory {
            mode: if stream { "streaming" } else { "non-streaming" }.into(),
            max_sustained_mib,
            max_mib,
            idle_after_mib: gateway.rss_mib(),
            hwm_mib: procs::hwm_kib(gateway.pid()).map(|k| k as f64 / 1024.0),
        });
        if ctx.args.wants(Section::Profile) {
            let label = if stream {
                "gateway, model auto, streaming"
            } else {
                "gateway, model auto, non-streaming"
            };
            // The target rate, or the highest rate below it the gateway kept up with.
            let lowest = ctx.args.rates.iter().cloned().fold(f64::INFINITY, f64::min);
            let rate = ctx
                .report
                .runs
                .iter()
                .filter(|r| r.target == "gateway-auto" && r.stream == stream && !r.saturated)
                .map(|r| r.rate)
                .filter(|&r| r <= ctx.args.target_rate)
                .reduce(f64::max)
                .unwrap_or(lowest.min(ctx.args.target_rate));
            match profile(ctx, &gateway, label, rate, stream).await {
                Ok(p) => ctx.report.profiles.push(p),
                Err(e) => record(ctx, "profile", Err(e)),
            }
        }
    }
    Ok(())
}

/// Repeats the added-latency target's pair (direct, then the gateway with `model: "auto"`,
/// non-streaming, at the target rate) so that its verdict rests on the median pair: a 10 s
/// run's p99 is its 1% slowest requests, which a single burst of other work on this shared
/// machine can fill.
async fn target_pairs(ctx: &mut Ctx, gateway: &GatewayProc) -> anyhow::Result<()> {
    let rate = ctx.args.target_rate;
    let (Some(direct), Some(through)) = (
        ctx.report.direct(rate, false),
        ctx.report.run("gateway-auto", rate, false),
    ) else {
        return Ok(());
    };
    let Some(first) = TargetPair::of(direct, through) else {
        return Ok(());
    };
    let saturated = first.saturated;
    ctx.report.target_pairs = vec![first];
    if saturated {
        // Repeating a run the gateway could not keep up with only measures its backlog.
        return Ok(());
    }
    let direct_url = format!("{}/chat/completions", ctx.mock.base_url());
    let repeats = ctx.args.target_repeats;
    for i in 1..=repeats {
        let tag = format!(" (target pair {} of {})", i + 1, repeats + 1);
        let d = ctx
            .measure_unrecorded(
                "direct",
                &tag,
                &direct_url,
                vec![(body(FIXED_MODEL, false), false)],
                false,
                rate,
                None,
            )
            .await?;
        let g = ctx
            .measure_unrecorded(
                "gateway-auto",
                &tag,
                &gateway.chat_url(),
                vec![(body("auto", false), false)],
                false,
                rate,
                Some(gateway.pid()),
            )
            .await?;
        if let Some(pair) = TargetPair::of(&d, &g) {
            ctx.report.target_pairs.push(pair);
        }
    }
    Ok(())
}

/// The response cache on: a repeated prompt at the hit rates (streaming and not), then a new
/// prompt per request at the new-prompt rates, each next to a direct run at the same rate.
async fn cache_on(ctx: &mut Ctx) -> anyhow::Result<()> {
    let model_dir = std::env::var_os("AIGW_MODEL_DIR")
        .map_or_else(|| ctx.repo.join("data/models"), PathBuf::from);
    let semantic_tier = model_dir.join("model.onnx").is_file();
    if !semantic_tier {
        progress!(
            "cache on: no embedding model in {} (run .ci/setup): exact tier only",
            model_dir.display()
        );
    }
    let config = GatewayConfig::write(&ctx.repo, &ctx.mock.base_url(), Setup::CacheOn)?;
    let data = procs::scratch("aigw-bench-data-")?;
    let gateway = GatewayProc::start_with_model(
        &ctx.gateway_bin,
        config.path(),
        data.path(),
        "warn",
        Some(&model_dir),
    )
    .await?;
    smoke(&gateway.chat_url(), &ALL_KINDS).await?;
    let direct = format!("{}/chat/completions", ctx.mock.base_url());
    let mut cache = CacheOn {
        semantic_tier,
        runs: Vec::new(),
    };

    let mut hit_rates = ctx.args.cache_hit_rates.clone();
    hit_rates.sort_by(f64::total_cmp);
    for stream in [false, true] {
        for &rate in &hit_rates {
            let bodies = vec![(body("auto", stream), stream)];
            let (run, counts) =
                cache_run(ctx, &gateway, &direct, "cache-hit", bodies, stream, rate).await?;
            cache.runs.push(counts);
            if run.saturated {
                break;
            }
        }
    }

    let mut new_rates = ctx.args.cache_new_prompt_rates.clone();
    new_rates.sort_by(f64::total_cmp);
    let seconds = ctx.args.warmup + ctx.args.duration;
    let per_run = |rate: f64| (rate * seconds * 1.1).ceil() as usize;
    let needed: usize = new_rates.iter().map(|&r| per_run(r)).sum();
    let mut prompts = new_prompts(&ctx.repo, needed)?.into_iter();
    for &rate in &new_rates {
        // Prompts are never reused across runs, so a run never hits what an earlier one stored.
        let bodies: Vec<(Bytes, bool)> = prompts
            .by_ref()
            .take(per_run(rate))
            .map(|prompt| (body_with_prompt("auto", &prompt, false), false))
            .collect();
        if bodies.len() < per_run(rate) {
            progress!("cache on: out of distinct prompts at {rate}/s");
            break;
        }
        let (run, counts) = cache_run(
            ctx,
            &gateway,
            &direct,
            "cache-new-prompt",
            bodies,
            false,
            rate,
        )
        .await?;
        cache.runs.push(counts);
        if run.saturated {
            break;
        }
    }
    ctx.report.cache_on = Some(cache);
    Ok(())
}

/// One cache-on run next to its direct baseline, with the cache's counts over it.
async fn cache_run(
    ctx: &mut Ctx,
    gateway: &GatewayProc,
    direct: &str,
    target: &str,
    bodies: Vec<(Bytes, bool)>,
    stream: bool,
    rate: f64,
) -> anyhow::Result<(RunResult, CacheRun)> {
    ctx.measure(CACHE_BASELINE, direct, FIXED_MODEL, stream, rate, None)
        .await?;
    let before = cache_counters(gateway).await;
    let run = ctx
        .measure_bodies(
            target,
            &gateway.chat_url(),
            bodies,
            stream,
            rate,
            Some(gateway.pid()),
        )
        .await?;
    let after = cache_counters(gateway).await;
    let delta = |name: &str| {
        after
            .get(name)
            .copied()
            .unwrap_or(0)
            .saturating_sub(before.get(name).copied().unwrap_or(0))
    };
    let counts = CacheRun {
        target: target.to_string(),
        stream,
        rate,
        exact_hits: delta("exact"),
        semantic_hits: delta("semantic"),
        misses: delta("miss"),
        embedded: delta("embedded"),
    };
    progress!(
        "   cache: {} exact hits, {} semantic hits, {} misses, {} prompts embedded",
        counts.exact_hits,
        counts.semantic_hits,
        counts.misses,
        counts.embedded
    );
    Ok((run, counts))
}

/// The gateway's cache lookups by result, and its prompts embedded (`embedded`).
async fn cache_counters(gateway: &GatewayProc) -> std::collections::BTreeMap<String, u64> {
    let text = gateway.metrics_text().await;
    let mut counts = std::collections::BTreeMap::new();
    for line in text.lines() {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let key = if let Some(labels) = name.strip_prefix("aigw_cache_lookups_total{") {
            labels
                .split_once("result=\"")
                .and_then(|(_, rest)| rest.split_once('"'))
                .map(|(result, _)| result.to_string())
        } else if name == "aigw_cache_embeddings_total" {
            Some("embedded".to_string())
        } else {
            None
        };
        if let Some(key) = key {
            counts.insert(key, value as u64);
        }
    }
    counts
}

/// `count` distinct prompts cut from the repository's prompt fixtures, shuffled so that
/// neighbouring requests do not share words.
fn new_prompts(repo: &Path, count: usize) -> anyhow::Result<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Labelled {
        prompts: Vec<Prompt>,
    }
    #[derive(serde::Deserialize)]
    struct Prompt {
        prompt: String,
    }
    #[derive(serde::Deserialize)]
    struct Negatives {
        pairs: Vec<Negative>,
    }
    #[derive(serde::Deserialize)]
    struct Negative {
        stored: String,
        lookup: String,
    }
    let read = |path: &str| -> anyhow::Result<Vec<u8>> {
        std::fs::read(repo.join(path)).with_context(|| format!("reading {path}"))
    };
    let labelled: Labelled =
        serde_json::from_slice(&read("tests/fixtures/routing/task-classification.json")?)?;
    let negatives: Negatives =
        serde_json::from_slice(&read("tests/fixtures/cache/hard-negatives.json")?)?;
    let a: Vec<&str> = labelled.prompts.iter().map(|p| p.prompt.as_str()).collect();
    let b: Vec<&str> = negatives.pairs.iter().map(|p| p.stored.as_str()).collect();
    let c: Vec<&str> = negatives.pairs.iter().map(|p| p.lookup.as_str()).collect();
    let mut corpus = crate::semantic_cache::large_corpus(&a, &b, &c, &[], count);
    // A fixed permutation (multiplying by a prime that does not divide the length) spreads
    // the word windows of one prompt across the run.
    let n = corpus.len();
    if n > 1 {
        let step = [7919usize, 104_729, 1_299_709]
            .into_iter()
            .find(|p| !n.is_multiple_of(*p))
            .unwrap_or(1);
        let mut spread: Vec<Option<String>> = corpus.drain(..).map(Some).collect();
        corpus = (0..n)
            .filter_map(|i| spread[(i * step) % n].take())
            .collect();
    }
    Ok(corpus)
}

/// One mode's rates: LiteLLM's low rates (direct, gateway with a fixed model, LiteLLM), then
/// the main rates (direct, gateway auto, gateway fixed, LiteLLM), each path until it saturates;
/// then, non-streaming, further rates while the gateway keeps up.
async fn ladder(
    ctx: &mut Ctx,
    gateway: &GatewayProc,
    litellm: Option<&LiteLlm>,
    stream: bool,
) -> anyhow::Result<()> {
    let direct = format!("{}/chat/completions", ctx.mock.base_url());
    let gw = |target: &'static str, model: &'static str| Endpoint {
        target,
        url: gateway.chat_url(),
        model,
        pid: Some(gateway.pid()),
    };
    let ll = litellm.map(|l| Endpoint {
        target: "litellm",
        url: l.chat_url(),
        model: FIXED_MODEL,
        pid: Some(l.proc.pid),
    });
    let mut rates = ctx.args.rates.clone();
    rates.sort_by(f64::total_cmp);
    rates.dedup_by(|a, b| same_rate(*a, *b));
    let mut low: Vec<f64> = ctx
        .args
        .litellm_low_rates
        .iter()
        .cloned()
        .filter(|&r| r < rates[0])
        .collect();
    low.sort_by(f64::total_cmp);
    low.dedup_by(|a, b| same_rate(*a, *b));
    // target -> the rate it first saturated at; it is not pushed harder after that.
    let mut saturated_at: std::collections::BTreeMap<&str, f64> = Default::default();
    let schedule = low
        .iter()
        .map(|&r| (r, true))
        .chain(rates.iter().map(|&r| (r, false)));
    for (rate, is_low) in schedule {
        let mut paths: Vec<Endpoint> = Vec::new();
        if is_low {
            if ll.is_none() {
                continue;
            }
        } else {
            paths.push(gw("gateway-auto", "auto"));
        }
        paths.push(gw("gateway-fixed", FIXED_MODEL));
        if let Some(l) = &ll {
            paths.push(Endpoint {
                target: l.target,
                url: l.url.clone(),
                model: l.model,
                pid: l.pid,
            });
        }
        paths.retain(|p| match saturated_at.get(p.target) {
            Some(&at) => {
                ctx.report.skipped.push(crate::report::Skipped {
                    target: p.target.to_string(),
                    stream,
                    rate,
                    saturated_at: at,
                });
                false
            }
            None => true,
        });
        // Below the main rates, only LiteLLM's limit is sought.
        if paths.is_empty() || (is_low && !paths.iter().any(|p| p.target == "litellm")) {
            continue;
        }
        ctx.measure("direct", &direct, FIXED_MODEL, stream, rate, None)
            .await?;
        for p in paths {
            let r = ctx
                .measure(p.target, &p.url, p.model, stream, rate, p.pid)
                .await?;
            if r.saturated {
                saturated_at.insert(p.target, rate);
            }
        }
    }
    // Past the listed rates while the gateway keeps up (non-streaming, policy in the path).
    if !stream {
        let mut rate = *rates.last().unwrap_or(&1000.0);
        for _ in 0..ctx.args.extend_rates {
            if saturated_at.contains_key("gateway-auto") {
                break;
            }
            rate = ((rate * 1.5) / 50.0).round() * 50.0;
            progress!("the gateway kept up: trying {rate}/s");
            ctx.measure("direct", &direct, FIXED_MODEL, false, rate, None)
                .await?;
            for p in [gw("gateway-auto", "auto"), gw("gateway-fixed", FIXED_MODEL)] {
                let r = ctx
                    .measure(p.target, &p.url, p.model, false, rate, p.pid)
                    .await?;
                if r.saturated {
                    saturated_at.insert(p.target, rate);
                }
            }
        }
    }
    Ok(())
}

/// Narrows a path's saturation bracket (the highest rate it kept up with, the lowest it did
/// not) by bisection, non-streaming, with a direct baseline and `also` at each new rate.
async fn refine(ctx: &mut Ctx, path: &Endpoint, also: &[&Endpoint]) -> anyhow::Result<()> {
    let direct = format!("{}/chat/completions", ctx.mock.base_url());
    for _ in 0..ctx.args.refine_steps {
        let Some(row) = ({
            ctx.report.derive();
            ctx.report.saturation_of(path.target, false).cloned()
        }) else {
            break;
        };
        let (Some(lo), Some(hi)) = (row.highest_sustained_rate, row.first_saturated_rate) else {
            break;
        };
        // Fine enough that LiteLLM's limit (hundreds per second) is not a coarse bracket.
        let step = if hi <= 200.0 {
            5.0
        } else if hi <= 1000.0 {
            10.0
        } else {
            50.0
        };
        let mid = ((lo + hi) / 2.0 / step).round() * step;
        if mid <= lo || mid >= hi {
            break;
        }
        progress!(
            "{} kept up at {lo}/s but not at {hi}/s: trying {mid}/s",
            path.target
        );
        ctx.measure("direct", &direct, FIXED_MODEL, false, mid, None)
            .await?;
        for p in also {
            ctx.measure(p.target, &p.url, p.model, false, mid, p.pid)
                .await?;
        }
        ctx.measure(path.target, &path.url, path.model, false, mid, path.pid)
            .await?;
    }
    Ok(())
}

/// A flat `perf` profile of the gateway under load.
async fn profile(
    ctx: &mut Ctx,
    gateway: &GatewayProc,
    label: &str,
    rate: f64,
    stream: bool,
) -> anyhow::Result<Profile> {
    let version = Command::new("perf").arg("--version").output();
    if !version.is_ok_and(|o| o.status.success()) {
        bail!("`perf` is not installed (apt-get install linux-perf), so no profile was taken");
    }
    let seconds = ctx.args.profile_seconds;
    let dir = procs::scratch("aigw-bench-perf-")?;
    let data = dir.path().join("perf.data");
    let mut record = Command::new("perf");
    record
        .args([
            "record",
            "-F",
            "499",
            "-p",
            &gateway.pid().to_string(),
            "-o",
        ])
        .arg(&data)
        .args(["--", "sleep", &seconds.to_string()]);
    progress!("profiling: {label} at {rate}/s for {seconds} s");
    let mut perf = ChildProc::spawn("perf record", record)?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let workload = Workload {
        url: gateway.chat_url().parse()?,
        bodies: vec![(body("auto", stream), stream)],
        record_model: false,
    };
    let schedule = Schedule::new(
        rate,
        Duration::ZERO,
        Duration::from_secs(seconds),
        ctx.limits,
    );
    let switches_before = procs::context_switches(gateway.pid());
    let raw = load::run(workload, schedule, Watch::default()).await;
    let switches_after = procs::context_switches(gateway.pid());
    let status = perf.wait_exit(Duration::from_secs(30)).await;
    if !status.is_some_and(|s| s.success()) {
        bail!(
            "perf record failed ({}): {}",
            perf.exit_status(),
            procs::last_lines(&perf.stderr_tail(20), 10)
        );
    }
    let ok = raw
        .samples
        .iter()
        .filter(|s| s.outcome == load::Outcome::Ok)
        .count();
    let report = |sort: &str| -> anyhow::Result<Vec<(f64, String)>> {
        let mut command = Command::new("perf");
        command
            .args([
                "report",
                "--stdio",
                "--no-children",
                "--sort",
                sort,
                "--percent-limit",
                "0",
                "-i",
            ])
            .arg(&data);
        let text = procs::run_bounded("perf report", command, Duration::from_secs(300))?;
        Ok(parse_perf(&text))
    };
    let by_dso = report("dso")?;
    let mut top_symbols = report("dso,symbol")?;
    let mut buckets: Vec<(f64, String)> = Vec::new();
    for (pct, symbol) in &top_symbols {
        let name = bucket(symbol);
        match buckets.iter_mut().find(|b| b.1 == name) {
            Some(b) => b.0 += pct,
            None => buckets.push((*pct, name.to_string())),
        }
    }
    buckets.sort_by(|a, b| b.0.total_cmp(&a.0));
    top_symbols.truncate(25);
    settle(&[gateway.pid(), ctx.mock.proc.pid]).await;
    Ok(Profile {
        label: label.to_string(),
        rate,
        seconds,
        samples_note: format!(
            "{ok} of {} requests succeeded during the profile; perf adds overhead, so this run's \
             latencies are not reported.",
            raw.samples.len()
        ),
        by_dso: by_dso.into_iter().filter(|d| d.0 >= 0.5).collect(),
        buckets,
        top_symbols,
        switches: (ok > 0).then(|| ContextSwitches {
            voluntary_per_request: switches_after.0.saturating_sub(switches_before.0) as f64
                / ok as f64,
            involuntary_per_request: switches_after.1.saturating_sub(switches_before.1) as f64
                / ok as f64,
            threads: switches_after.2,
        }),
    })
}

/// What part of the stack a profiled symbol (`<object> <symbol>`) belongs to.
fn bucket(symbol: &str) -> &'static str {
    let has = |needles: &[&str]| needles.iter().any(|n| symbol.contains(n));
    if symbol.starts_with("[kernel") {
        "kernel: scheduling, page faults, mmap/munmap, syscalls"
    } else if symbol.starts_with("[JIT]") {
        "guest WebAssembly (JIT-compiled components)"
    } else if has(&["tokens::", "regex", "fancy_regex", "bstr"]) {
        "token counter (o200k BPE and its split expression)"
    } else if has(&["wasmtime", "cranelift", "wasmparser", "wit_bindgen", "wasi"]) {
        "wasmtime: instantiation, stores, host calls"
    } else if has(&[
        "malloc",
        "free",
        "_int_",
        "unlink_chunk",
        "consolidate",
        "realloc",
        "calloc",
    ]) {
        "malloc/free"
    } else if has(&["tokio", "mio::", "epoll", "futex", "pthread"]) {
        "tokio runtime and threads"
    } else if has(&[
        "hyper", "h2::", "reqwest", "axum", "http::", "httparse", "tower",
    ]) {
        "HTTP (hyper, reqwest, axum)"
    } else if has(&["serde_json", "serde_path_to_error", "serde::"]) {
        "JSON"
    } else if has(&["tracing", "prometheus"]) {
        "logging and metrics"
    } else if has(&["ai_gateway"]) {
        "gateway code"
    } else if has(&["libc.so", "memmove", "memcpy", "memcmp", "memset"]) {
        "libc (memcpy and the like)"
    } else {
        "other"
    }
}

/// `  12.34%  ai-gateway  [.] symbol` lines of `perf report --stdio`.
fn parse_perf(text: &str) -> Vec<(f64, String)> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let (pct, rest) = line.split_once('%')?;
            let pct: f64 = pct.trim().parse().ok()?;
            // Drop the trailing IPC columns (`-  -`).
            let mut words: Vec<&str> = rest.split_whitespace().collect();
            while words.last() == Some(&"-") {
                words.pop();
            }
            let rest = words.join(" ");
            Some((pct, rest.replace("[.] ", "").replace("[k] ", "")))
        })
        .collect()
}

async fn soak(ctx: &mut Ctx) -> anyhow::Result<()> {
    let config = GatewayConfig::write(&ctx.repo, &ctx.mock.base_url(), Setup::Bench)?;
    let data = procs::scratch("aigw-bench-data-")?;
    let gateway = GatewayProc::start(&ctx.gateway_bin, config.path(), data.path(), "warn").await?;
    let idle = gateway.settled_rss_mib().await;
    if ctx.report.memory.idle_settled_mib.is_none() {
        ctx.report.memory.idle_settled_mib = idle;
    }
    let rate = ctx.args.soak_rate;
    let seconds = ctx.args.soak_seconds;
    progress!(
        "sustained run: {rate}/s for {seconds} s (mixed requests), idle RSS {:.1} MiB",
        idle.unwrap_or(0.0)
    );
    let workload = Workload {
        url: gateway.chat_url().parse()?,
        bodies: ALL_KINDS.iter().map(|&(m, s)| (body(m, s), s)).collect(),
        record_model: false,
    };
    let schedule = Schedule::new(
        rate,
        Duration::ZERO,
        Duration::from_secs(seconds),
        ctx.limits,
    );
    let watch = Watch {
        server: Some(gateway.pid()),
        mock: Some(ctx.mock.proc.pid),
        rss_every: Some(Duration::from_secs(1)),
    };
    let raw = load::run(workload, schedule, watch).await;
    let mut result = load::summarize("soak (mixed)", false, &raw, ctx.saturation(true));
    result.ttft_ms = None;
    progress!("{}", describe(&result));
    let series: Vec<(f64, f64)> = raw
        .rss
        .iter()
        .map(|&(t, kib)| (t, kib as f64 / 1024.0))
        .filter(|&(t, _)| t <= seconds as f64 + 0.5)
        .collect();
    let warmup = (seconds as f64 * 0.2).max(5.0).min(seconds as f64 / 2.0);
    let mean = |points: Vec<f64>| {
        (!points.is_empty()).then(|| points.iter().sum::<f64>() / points.len() as f64)
    };
    let after_warmup = mean(
        series
            .iter()
            .filter(|(t, _)| *t >= warmup && *t < warmup + 3.0)
            .map(|p| p.1)
            .collect(),
    );
    let end = mean(series.iter().rev().take(3).map(|p| p.1).collect());
    let slope = stats::slope(
        &series
            .iter()
            .filter(|(t, _)| *t >= warmup)
            .map(|&(t, m)| (t / 60.0, m))
            .collect::<Vec<_>>(),
    );
    let growth = after_warmup.zip(end).map(|(a, e)| e - a);
    let allowance = after_warmup.map_or(2.0, |a| (a * 0.02).max(2.0));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let soak = Soak {
        rate,
        seconds,
        warmup_s: warmup,
        rss_idle_start_mib: idle,
        rss_after_warmup_mib: after_warmup,
        rss_end_mib: end,
        rss_max_mib: series.iter().map(|p| p.1).reduce(f64::max),
        growth_mib: growth,
        slope_mib_per_min: slope,
        rss_idle_after_mib: gateway.rss_mib(),
        allowance_mib: allowance,
        // Growth past the allowance is growth. Within it, a short run whose trend would pass the
        // allowance over ten minutes cannot tell a leak from a slow warm-up: not judged.
        grows: growth.and_then(|g| {
            let projected = slope.unwrap_or(0.0) * 10.0;
            if g > allowance {
                Some(true)
            } else if seconds < 600 && projected > allowance {
                None
            } else {
                Some(false)
            }
        }),
        series,
        result,
    };
    progress!(
        "sustained run: RSS {:.1} MiB after warm-up, {:.1} MiB at the end, trend {:+.3} MiB/min",
        soak.rss_after_warmup_mib.unwrap_or(0.0),
        soak.rss_end_mib.unwrap_or(0.0),
        soak.slope_mib_per_min.unwrap_or(0.0)
    );
    ctx.report.soak = Some(soak);
    Ok(())
}

async fn cold_start(ctx: &mut Ctx) -> anyhow::Result<()> {
    let trials = ctx.args.cold_start_trials;
    let setups = [
        (Setup::Bench, "openai adapter + balanced policy"),
        (Setup::AllBundled, "all bundled: 3 adapters + 4 policies"),
    ];
    for (setup, name) in setups {
        let config = GatewayConfig::write(&ctx.repo, &ctx.mock.base_url(), setup)?;
        let warm = procs::scratch("aigw-bench-warm-")?;
        // A first, discarded start fills `warm` (and the page cache with the binary).
        drop(GatewayProc::start(&ctx.gateway_bin, config.path(), warm.path(), "warn").await?);
        let compiled_kib = dir_size(&warm.path().join("compiled")) / 1024;
        // (ready, listening, first request) per trial, for cold and warm.
        let mut cold = Vec::new();
        let mut hot = Vec::new();
        for _ in 0..trials {
            let fresh = procs::scratch("aigw-bench-cold-")?;
            cold.push(start_once(&ctx.gateway_bin, config.path(), fresh.path()).await?);
            hot.push(start_once(&ctx.gateway_bin, config.path(), warm.path()).await?);
        }
        for (cache, samples) in [("cold", cold), ("warm", hot)] {
            let ready: Vec<f64> = samples.iter().map(|s| s.0).collect();
            let row = ColdStartRow {
                setup: name.to_string(),
                cache: cache.to_string(),
                ready_median_ms: stats::median(&ready),
                ready_min_ms: ready.iter().cloned().reduce(f64::min),
                ready_max_ms: ready.iter().cloned().reduce(f64::max),
                listening_median_ms: stats::median(
                    &samples.iter().map(|s| s.1).collect::<Vec<_>>(),
                ),
                first_request_median_ms: stats::median(
                    &samples.iter().filter_map(|s| s.2).collect::<Vec<_>>(),
                ),
                compiled_cache_kib: Some(compiled_kib),
                ready_ms: ready,
            };
            progress!(
                "cold start, {name}, {cache} cache: ready median {:.0} ms (min {:.0}, max {:.0})",
                row.ready_median_ms.unwrap_or(0.0),
                row.ready_min_ms.unwrap_or(0.0),
                row.ready_max_ms.unwrap_or(0.0)
            );
            ctx.report.cold_start.push(row);
        }
    }
    Ok(())
}

/// Starts a gateway, measures spawn-to-ready, sends one request, stops it.
async fn start_once(
    bin: &Path,
    config: &Path,
    data: &Path,
) -> anyhow::Result<(f64, f64, Option<f64>)> {
    let gateway = GatewayProc::start(bin, config, data, "warn").await?;
    let client = load::client();
    let payload = body("auto", false);
    let sent = Instant::now();
    let first = servers::post_json(
        &client,
        &gateway.chat_url(),
        std::str::from_utf8(&payload)?,
        Duration::from_secs(30),
    )
    .await
    .ok()
    .filter(|(status, _)| *status == 200)
    .map(|_| sent.elapsed().as_secs_f64() * 1000.0);
    Ok((
        gateway.ready_after.as_secs_f64() * 1000.0,
        gateway.listening_after.as_secs_f64() * 1000.0,
        first,
    ))
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

async fn hot_reload(ctx: &mut Ctx) -> anyhow::Result<()> {
    let config = GatewayConfig::write(&ctx.repo, &ctx.mock.base_url(), Setup::Reload)?;
    let data = procs::scratch("aigw-bench-data-")?;
    let gateway = GatewayProc::start(&ctx.gateway_bin, config.path(), data.path(), "warn").await?;
    let client = load::client();
    let payload = body("auto", false);
    let (status, _) = servers::post_json(
        &client,
        &gateway.chat_url(),
        std::str::from_utf8(&payload)?,
        Duration::from_secs(30),
    )
    .await?;
    anyhow::ensure!(status == 200, "the reload gateway answered {status}");

    let rate = ctx.args.reload_rate;
    // (seconds after start, component, the model it routes to)
    let plan = [
        (3.0, "tests/guests/dist/priciest.wasm", "pricey-model"),
        (7.0, "tests/guests/dist/cheapest.wasm", "cheap-model"),
        (11.0, "tests/guests/dist/priciest.wasm", "pricey-model"),
    ];
    let total = Duration::from_secs(14);
    let schedule = Schedule::new(rate, Duration::ZERO, total, ctx.limits);
    let workload = Workload {
        url: gateway.chat_url().parse()?,
        bodies: vec![(payload.clone(), false)],
        record_model: true,
    };
    progress!(
        "hot reload: {rate}/s of auto requests for {} s, three policy swaps",
        total.as_secs()
    );
    let policy_dir = config.policy_dir.clone();
    let repo = ctx.repo.clone();
    let swapper = async move {
        let mut done = Vec::new();
        for (at, component, _) in plan {
            tokio::time::sleep_until((schedule.start + Duration::from_secs_f64(at)).into()).await;
            let staging = policy_dir.join(".router.wasm.new");
            let target = policy_dir.join("router.wasm");
            let swapped = std::fs::copy(repo.join(component), &staging)
                .and_then(|_| std::fs::rename(&staging, &target));
            done.push(swapped.map(|_| schedule.start.elapsed()));
        }
        done
    };
    let watch = Watch {
        server: Some(gateway.pid()),
        mock: Some(ctx.mock.proc.pid),
        rss_every: None,
    };
    let (raw, swapped) = tokio::join!(load::run(workload, schedule, watch), swapper);
    let summary = load::summarize("reload", false, &raw, ctx.saturation(false));

    let mut swaps = Vec::new();
    for (i, ((_, component, model), when)) in plan.iter().zip(swapped).enumerate() {
        let at = when.with_context(|| format!("cannot swap in {component}"))?;
        let next = plan
            .get(i + 1)
            .map_or(total + ctx.limits.request_timeout, |p| {
                Duration::from_secs_f64(p.0)
            });
        let ok = |s: &&load::Sample| s.outcome == load::Outcome::Ok;
        let switched = raw
            .samples
            .iter()
            .filter(ok)
            .filter(|s| s.done() >= at && s.done() < next && s.model.as_deref() == Some(*model))
            .map(|s| s.done() - at)
            .min();
        let stragglers = switched.map_or(0, |sw| {
            raw.samples
                .iter()
                .filter(ok)
                .filter(|s| s.sched > at + sw && s.sched < next)
                .filter(|s| s.model.as_deref() != Some(*model))
                .count()
        });
        let near = |s: &&load::Sample| {
            s.sched + Duration::from_secs(1) >= at && s.sched <= at + Duration::from_secs(2)
        };
        let failures_near = raw
            .samples
            .iter()
            .filter(near)
            .filter(|s| s.outcome != load::Outcome::Ok)
            .count();
        let max_near = raw
            .samples
            .iter()
            .filter(near)
            .filter(ok)
            .map(|s| s.latency.as_secs_f64() * 1000.0)
            .reduce(f64::max);
        let swap = Swap {
            at_s: at.as_secs_f64(),
            component: component
                .rsplit('/')
                .next()
                .unwrap_or(component)
                .to_string(),
            expected_model: model.to_string(),
            switched_after_ms: switched.map(|d| d.as_secs_f64() * 1000.0),
            stragglers,
            failures_near,
            max_latency_near_ms: max_near,
        };
        progress!(
            "hot reload: {} at {:.2} s -> switched after {} ms, {} failed nearby",
            swap.component,
            swap.at_s,
            swap.switched_after_ms
                .map_or("never".into(), |v| format!("{v:.0}")),
            swap.failures_near
        );
        swaps.push(swap);
    }
    let metrics = gateway.metrics_text().await;
    let reload_metrics = metrics
        .lines()
        .filter(|l| l.starts_with("aigw_reloads_total"))
        .map(str::to_string)
        .collect();
    let mut all: Vec<u64> = raw
        .samples
        .iter()
        .filter(|s| s.outcome == load::Outcome::Ok)
        .map(|s| s.latency.as_micros() as u64)
        .collect();
    ctx.report.hot_reload = Some(HotReload {
        rate,
        swaps,
        sent: summary.sent,
        failed: summary.failed,
        failures: summary.failures.clone(),
        latency_ms: Percentiles::from_micros(&mut all),
        reload_metrics,
    });
    Ok(())
}

/// For a missed latency target: where the non-streaming profile says the CPU goes.
fn profile_summary(report: &Report, missed: bool) -> String {
    let Some(profile) = report
        .profiles
        .iter()
        .find(|p| p.label.contains("non-streaming"))
        .filter(|_| missed)
    else {
        return String::new();
    };
    let parts: Vec<String> = profile
        .buckets
        .iter()
        .take(4)
        .map(|(share, part)| format!("{part} {share:.0}%"))
        .collect();
    let switches = profile.switches.as_ref().map_or(String::new(), |c| {
        format!(
            "; {:.1} context switches per request ({:.1} of them preemptions)",
            c.voluntary_per_request + c.involuntary_per_request,
            c.involuntary_per_request
        )
    });
    format!(
        ". The profile at {}/s (see \"Where the gateway spends its CPU\"): {}{switches}",
        fmt_rate(profile.rate),
        parts.join(", ")
    )
}

/// The targets from the issue, judged against what this run measured.
fn p99_of(run: Option<&RunResult>) -> String {
    run.and_then(|r| r.latency_ms)
        .map_or("?".into(), |l| format!("{:.2} ms", l.p99))
}

/// Re-renders a run's report from its JSON: the same measurements, the current presentation.
pub fn render(args: &crate::cli::RenderArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.json)
        .with_context(|| format!("reading {}", args.json.display()))?;
    let mut report: Report = serde_json::from_str(&text)
        .with_context(|| format!("{} is not an aigw-bench report", args.json.display()))?;
    report.derive();
    report.targets = verdicts(&report);
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.json.with_extension("md"));
    report.write(&out, &args.json)?;
    eprintln!(
        "[bench] wrote {} and {}",
        out.display(),
        args.json.display()
    );
    Ok(())
}

/// The added p99 the latency target is judged on: the median of the side-by-side pairs when
/// there are several, else the sweep's single run.
fn judged_added_p99(pairs: &[TargetPair], single_run: f64) -> f64 {
    let values: Vec<f64> = pairs.iter().map(|p| p.added_p99_ms).collect();
    stats::median(&values)
        .filter(|_| values.len() > 1)
        .unwrap_or(single_run)
}

fn verdicts(report: &Report) -> Vec<Verdict> {
    let mut out = Vec::new();
    let rate = report.settings.target_rate;

    // 1. Added latency p99 < 1 ms at the target rate with a policy component in the path.
    let added = |rate: f64, stream: bool| {
        report
            .overhead
            .iter()
            .find(|o| o.target == "gateway-auto" && o.stream == stream && same_rate(o.rate, rate))
    };
    let target = format!(
        "added latency p99 < 1 ms at {}/s, `model: \"auto\"` (policy component in the path)",
        fmt_rate(rate)
    );
    out.push(match added(rate, false) {
        Some(o) => {
            // Judged on the median of the side-by-side pairs when there are several.
            let pairs = &report.target_pairs;
            let median = |f: fn(&TargetPair) -> f64| {
                let values: Vec<f64> = pairs.iter().map(f).collect();
                stats::median(&values)
            };
            let judged = judged_added_p99(pairs, o.p99_ms);
            let streaming = added(rate, true)
                .map_or(String::new(), |s| format!("; {:+.2} ms streaming", s.p99_ms));
            let measured = if pairs.len() > 1 {
                let each: Vec<String> = pairs
                    .iter()
                    .map(|p| format!("{:+.2}", p.added_p99_ms))
                    .collect();
                format!(
                    "{judged:+.2} ms non-streaming: the median of {} side-by-side pairs ({} ms; \
                     median p50 {:+.2}, p90 {:+.2}){streaming}",
                    pairs.len(),
                    each.join(", "),
                    median(|p| p.added_p50_ms).unwrap_or(o.p50_ms),
                    median(|p| p.added_p90_ms).unwrap_or(o.p90_ms),
                )
            } else {
                format!(
                    "{:+.2} ms non-streaming (p50 {:+.2}, p90 {:+.2}){streaming}",
                    o.p99_ms, o.p50_ms, o.p90_ms,
                )
            };
            // When the target rate saturated, what the gateway adds where it still keeps up.
            let sustained = report
                .saturation_of("gateway-auto", false)
                .and_then(|s| s.highest_sustained_rate)
                .filter(|&r| r < rate)
                .and_then(|r| added(r, false));
            Verdict {
                target,
                measured,
                met: Some(judged < 1.0 && !o.saturated),
                note: match (o.saturated, sustained) {
                                        (true, Some(s)) => format!(
                        "the gateway does not keep up with {}/s on this machine (the run \
                         saturated); at {}/s, the highest rate it sustained, it added p50 {:+.2}, \
                         p90 {:+.2}, p99 {:+.2} ms (p99 through the gateway {}, direct {}: a \
                         single slow burst on this shared machine moves either)",
                        fmt_rate(rate),
                        fmt_rate(s.rate),
                        s.p50_ms,
                        s.p90_ms,
                        s.p99_ms,
                        p99_of(report.run("gateway-auto", s.rate, false)),
                        p99_of(report.direct(s.rate, false)),
                    ),
                    (true, None) => format!(
                        "the gateway does not keep up with {}/s on this machine (the run saturated)",
                        fmt_rate(rate)
                    ),
                    (false, _) if judged >= 1.0 => {
                        format!("by {:.2} ms ({:.1}× the budget)", judged - 1.0, judged)
                    }
                    _ => String::new(),
                } + &profile_summary(report, judged >= 1.0 || o.saturated),
            }
        }
        None => Verdict {
            target,
            measured: "—".into(),
            met: None,
            note: format!("{}/s was not among the rates run", fmt_rate(rate)),
        },
    });

    // 2. Throughput >= 20x LiteLLM's where LiteLLM's p99 passes the threshold. Rates are
    // discrete, so each limit is a bracket: kept up at `lo`, not at `hi`.
    let target = "throughput ≥ 20× LiteLLM's (highest rate with p99 ≤ 100 ms and ≤ 1% failures, \
                  non-streaming)"
        .to_string();
    let gw = report.saturation_of("gateway-auto", false);
    let ll = report.saturation_of("litellm", false);
    out.push(match (gw, ll, report.litellm.status.as_str()) {
        (Some(gw), Some(ll), "ran") => {
            let show = |lo: Option<f64>, hi: Option<f64>| match (lo, hi) {
                (Some(lo), Some(hi)) => {
                    format!("kept up at {}/s, not at {}/s", fmt_rate(lo), fmt_rate(hi))
                }
                (Some(lo), None) => {
                    format!("kept up at every rate tried, up to {}/s", fmt_rate(lo))
                }
                (None, Some(hi)) => {
                    format!("saturated at the lowest rate tried, {}/s", fmt_rate(hi))
                }
                (None, None) => "no runs".into(),
            };
            let (gw_lo, gw_hi) = (gw.highest_sustained_rate, gw.first_saturated_rate);
            let (ll_lo, ll_hi) = (ll.highest_sustained_rate, ll.first_saturated_rate);
            // The true ratio lies between these two.
            let least = gw_lo.zip(ll_hi).map(|(g, l)| g / l);
            let most = gw_hi.zip(ll_lo).map(|(g, l)| g / l);
            let at_grid = gw_lo.zip(ll_lo).map(|(g, l)| g / l);
            let (met, note) = match (least, most) {
                (Some(least), _) if least >= 20.0 => (Some(true), String::new()),
                (_, Some(most)) if most < 20.0 => (
                    Some(false),
                    format!(
                        "the ratio is at most {most:.1}×: short of 20× by a factor of at least {:.2}",
                        20.0 / most
                    ),
                ),
                _ => (
                    None,
                    "the rate brackets straddle 20×: narrow them with more --refine-steps or \
                     finer --rates / --litellm-low-rates"
                        .to_string(),
                ),
            };
            Verdict {
                target,
                measured: format!(
                    "gateway: {}; LiteLLM: {}; ratio {}{}",
                    show(gw_lo, gw_hi),
                    show(ll_lo, ll_hi),
                    match (least, most) {
                        (Some(a), Some(b)) => format!("between {a:.1}× and {b:.1}×"),
                        (Some(a), None) => format!("at least {a:.1}×"),
                        (None, Some(b)) => format!("at most {b:.1}×"),
                        (None, None) => "unknown".into(),
                    },
                    at_grid.map_or(String::new(), |r| format!(
                        " ({r:.1}× between the highest rates each kept up with)"
                    )),
                ),
                met,
                note,
            }
        }
        _ => Verdict {
            target,
            measured: "—".into(),
            met: None,
            note: format!("LiteLLM {}: see [LiteLLM](#litellm)", report.litellm.status),
        },
    });

    // 3. Idle RSS < 80 MB.
    let idle = report
        .memory
        .idle_settled_mib
        .or(report.memory.idle_after_start_mib);
    out.push(Verdict {
        target: "idle RSS < 80 MB (settled after start-up)".into(),
        measured: idle.map_or("—".into(), |m| {
            format!("{m:.1} MiB ({:.1} MB)", m * 1.048_576)
        }),
        met: idle.map(|m| m * 1.048_576 < 80.0),
        note: idle
            .filter(|m| m * 1.048_576 >= 80.0)
            .map_or(String::new(), |m| {
                format!("by {:.1} MB", m * 1.048_576 - 80.0)
            }),
    });

    // 4. No memory growth over the sustained run.
    out.push(match &report.soak {
        Some(s) => Verdict {
            target: format!("no memory growth over the sustained run ({} s)", s.seconds),
            measured: format!(
                "{} MiB after warm-up → {} MiB at the end ({} MiB; trend {} MiB/min)",
                s.rss_after_warmup_mib
                    .map_or("?".into(), |v| format!("{v:.1}")),
                s.rss_end_mib.map_or("?".into(), |v| format!("{v:.1}")),
                s.growth_mib.map_or("?".into(), |v| format!("{v:+.1}")),
                s.slope_mib_per_min
                    .map_or("?".into(), |v| format!("{v:+.3}")),
            ),
            met: s.grows.map(|g| !g),
            note: match s.grows {
                Some(true) => format!(
                    "by {:.1} MiB over the {:.1} MiB allowed for allocator noise",
                    s.growth_mib.unwrap_or(0.0) - s.allowance_mib,
                    s.allowance_mib
                ),
                None => format!(
                    "within the {:.1} MiB allowance, but the trend would pass it within 10 \
                     minutes: this {} s run cannot tell a leak from a slow warm-up; run \
                     `--sections soak --soak-seconds 600`",
                    s.allowance_mib, s.seconds
                ),
                Some(false) => format!(
                    "{:.1} MiB allowed for allocator noise{}",
                    s.allowance_mib,
                    if s.seconds < 600 {
                        "; a short run: `--soak-seconds 600` for the 10-minute run"
                    } else {
                        ""
                    }
                ),
            },
        },
        None => Verdict {
            target: "no memory growth over the sustained run".into(),
            measured: "—".into(),
            met: None,
            note: "the soak section did not run".into(),
        },
    });

    // 5. Cold start to ready < 300 ms with the compiled-component cache warm.
    let warm = report
        .cold_start
        .iter()
        .find(|r| r.cache == "warm" && r.setup.starts_with("openai"));
    let cold = report
        .cold_start
        .iter()
        .find(|r| r.cache == "cold" && r.setup.starts_with("openai"));
    out.push(match warm.and_then(|w| w.ready_median_ms) {
        Some(w) => Verdict {
            target: "cold start to ready < 300 ms, compiled-component cache warm".into(),
            measured: format!(
                "median {w:.0} ms warm{}",
                cold.and_then(|c| c.ready_median_ms)
                    .map_or(String::new(), |c| format!(", {c:.0} ms without the cache"))
            ),
            met: Some(w < 300.0),
            note: if w < 300.0 {
                String::new()
            } else {
                format!("by {:.0} ms", w - 300.0)
            },
        },
        None => Verdict {
            target: "cold start to ready < 300 ms, compiled-component cache warm".into(),
            measured: "—".into(),
            met: None,
            note: "the cold-start section did not run".into(),
        },
    });

    // 6. Zero failed requests across a hot reload.
    out.push(match &report.hot_reload {
        Some(h) => Verdict {
            target: "zero failed requests across a hot reload".into(),
            measured: format!(
                "{} failed of {} at {}/s across {} swaps (switch after {} ms)",
                h.failed,
                h.sent,
                fmt_rate(h.rate),
                h.swaps.len(),
                h.swaps
                    .iter()
                    .map(|s| s
                        .switched_after_ms
                        .map_or("never".into(), |v| format!("{v:.0}")))
                    .collect::<Vec<_>>()
                    .join(" / ")
            ),
            met: Some(h.failed == 0 && h.swaps.iter().all(|s| s.switched_after_ms.is_some())),
            note: if h.swaps.iter().any(|s| s.switched_after_ms.is_none()) {
                "a swap never took effect".into()
            } else {
                String::new()
            },
        },
        None => Verdict {
            target: "zero failed requests across a hot reload".into(),
            measured: "—".into(),
            met: None,
            note: "the hot-reload section did not run".into(),
        },
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perf_report_lines_are_parsed() {
        let text = "# Samples: 2K\n#\n    12.50%  ai-gateway  [.] wasmtime::runtime::instantiate\n     3.10%  [kernel.kallsyms]  [k] do_syscall_64\n\n";
        let parsed = parse_perf(text);
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].0, 12.5);
        assert_eq!(parsed[0].1, "ai-gateway wasmtime::runtime::instantiate");
        assert_eq!(parsed[1].1, "[kernel.kallsyms] do_syscall_64");
        let ipc = "  9.82%  [kernel.kallsyms]  [k] finish_task_switch.isra.0   -      -   ";
        assert_eq!(
            parse_perf(ipc)[0].1,
            "[kernel.kallsyms] finish_task_switch.isra.0"
        );
        assert!(bucket("[kernel.kallsyms] finish_task_switch").starts_with("kernel"));
        assert_eq!(bucket("libc.so.6 _int_malloc"), "malloc/free");
        assert!(
            bucket("ai-gateway wasmtime::runtime::instance::Instance::new").starts_with("wasmtime")
        );
    }

    #[test]
    fn the_latency_target_rests_on_the_median_pair() {
        let pair = |added_p99_ms: f64| TargetPair {
            direct_p99_ms: 0.2,
            gateway_p99_ms: 0.2 + added_p99_ms,
            added_p50_ms: 0.2,
            added_p90_ms: 0.3,
            added_p99_ms,
            saturated: false,
        };
        let one_burst: Vec<TargetPair> = [0.4, 6.0, 0.5, 0.6, 0.5].map(pair).into();
        assert_eq!(judged_added_p99(&one_burst, 6.0), 0.5);
        let mostly_slow: Vec<TargetPair> = [1.4, 0.6, 1.5, 1.2, 0.5].map(pair).into();
        assert_eq!(judged_added_p99(&mostly_slow, 0.6), 1.2);
        assert_eq!(
            judged_added_p99(&[pair(0.4)], 0.9),
            0.9,
            "one run: the sweep's"
        );
        assert_eq!(judged_added_p99(&[], 0.9), 0.9);
    }

    #[test]
    fn request_bodies_are_openai_json() {
        let plain: serde_json::Value = serde_json::from_slice(&body("auto", false)).unwrap();
        assert_eq!(plain["model"], "auto");
        assert!(plain.get("stream").is_none());
        let streamed: serde_json::Value = serde_json::from_slice(&body("m", true)).unwrap();
        assert_eq!(streamed["stream"], true);
        assert_eq!(streamed["stream_options"]["include_usage"], true);
    }
}
