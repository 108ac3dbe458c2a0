//! The open-loop load generator.
//!
//! A dispatcher thread sends request `i` at `start + i / rate` whatever happened to earlier
//! ones (no coordinated omission: a slow server cannot slow the schedule down), handing each to
//! the tokio runtime, where a pooled HTTP/1.1 client (hyper-util, one keep-alive connection per
//! concurrent request, opened on demand) sends it. Latency is measured from the request's
//! *scheduled* time to the end of its response body, so queueing anywhere, the generator's own
//! lateness included, shows; that lateness (`lag`) is recorded on its own to show the generator
//! kept up. Every request has a deadline, the number in flight is capped, and the whole run is
//! bounded in time.

use crate::procs;
use crate::stats::Percentiles;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A pooled HTTP/1.1 client: keep-alive, no idle cap, TCP_NODELAY.
pub fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(usize::MAX)
        .build(connector)
}

/// What to send: request bodies used round-robin, all to one URL.
#[derive(Clone)]
pub struct Workload {
    pub url: hyper::Uri,
    /// (JSON body, is it a streaming request)
    pub bodies: Vec<(Bytes, bool)>,
    /// Keep each response's `x-gateway-model` header.
    pub record_model: bool,
}

/// When and how long to send.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub start: Instant,
    pub rate: f64,
    /// Sent but left out of the statistics.
    pub warmup: Duration,
    pub duration: Duration,
    pub request_timeout: Duration,
    pub max_inflight: usize,
}

impl Schedule {
    pub fn new(rate: f64, warmup: Duration, duration: Duration, limits: Limits) -> Self {
        Schedule {
            start: Instant::now() + Duration::from_millis(20),
            rate,
            warmup,
            duration,
            request_timeout: limits.request_timeout,
            max_inflight: limits.max_inflight,
        }
    }

    fn total(&self) -> u64 {
        ((self.warmup + self.duration).as_secs_f64() * self.rate).round() as u64
    }

    pub fn end(&self) -> Instant {
        self.start + self.warmup + self.duration
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub request_timeout: Duration,
    pub max_inflight: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Ok,
    /// A non-2xx status.
    Status(u16),
    /// 2xx, but the body lacks the mock's content, or a stream lacks `data: [DONE]`.
    BadBody,
    /// Connection refused, reset, or a protocol error.
    Transport,
    Timeout,
    /// Not sent: too many requests already in flight.
    Dropped,
}

impl Outcome {
    pub fn label(&self) -> String {
        match self {
            Outcome::Ok => "ok".into(),
            Outcome::Status(s) => format!("http {s}"),
            Outcome::BadBody => "bad body".into(),
            Outcome::Transport => "transport error".into(),
            Outcome::Timeout => "timeout".into(),
            Outcome::Dropped => "dropped (in-flight cap)".into(),
        }
    }
}

/// One scheduled request.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Scheduled send time, from the schedule's start.
    pub sched: Duration,
    /// How late the generator actually started it.
    pub lag: Duration,
    /// Scheduled time to the end of the response (or the failure).
    pub latency: Duration,
    /// Scheduled time to the first content token (`tok0`), streams only.
    pub ttft: Option<Duration>,
    pub outcome: Outcome,
    pub model: Option<Arc<str>>,
}

impl Sample {
    pub fn done(&self) -> Duration {
        self.sched + self.latency
    }
}

/// What a run observed besides its samples.
pub struct RawRun {
    pub schedule: Schedule,
    pub samples: Vec<Sample>,
    /// (seconds since start, RSS KiB of the watched group)
    pub rss: Vec<(f64, u64)>,
    /// CPU seconds used during the measured window: watched group, the mock, this process.
    pub cpu_server: Option<f64>,
    pub cpu_mock: Option<f64>,
    pub cpu_loadgen: f64,
}

/// Processes to watch while the load runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Watch {
    /// The system under test's process group (gateway or LiteLLM).
    pub server: Option<i32>,
    pub mock: Option<i32>,
    pub rss_every: Option<Duration>,
}

struct Shared {
    client: HttpClient,
    workload: Workload,
    schedule: Schedule,
    inflight: AtomicUsize,
    samples: Mutex<Vec<Sample>>,
}

/// Runs one open-loop schedule to completion (bounded by its end plus the request timeout).
pub async fn run(workload: Workload, schedule: Schedule, watch: Watch) -> RawRun {
    let shared = Arc::new(Shared {
        client: client(),
        workload,
        schedule,
        inflight: AtomicUsize::new(0),
        samples: Mutex::new(Vec::with_capacity(schedule.total() as usize)),
    });
    let stop_sampling = Arc::new(AtomicBool::new(false));

    // The watched groups' processes, found once: finding them reads every process's
    // `/proc/<pid>/stat`, long enough to delay the responses this run is timing.
    let server_pids = watch.server.map(procs::group_pids);
    let mock_pids = watch.mock.map(procs::group_pids);

    // RSS sampler, on its own thread so that its reads never hold up the runtime's workers.
    let rss_task = {
        let stop = stop_sampling.clone();
        let pids = server_pids.clone();
        tokio::task::spawn_blocking(move || {
            let mut series = Vec::new();
            let (Some(pids), Some(every)) = (pids, watch.rss_every) else {
                return series;
            };
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let t = schedule.start.elapsed().as_secs_f64();
                series.push((t, procs::rss_kib_of(&pids)));
                next += every;
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            series
        })
    };
    // CPU over the measured window.
    let cpu_task = tokio::spawn(async move {
        let read = || {
            (
                server_pids.as_deref().map(procs::cpu_seconds),
                mock_pids.as_deref().map(procs::cpu_seconds),
                procs::self_cpu_seconds(),
            )
        };
        tokio::time::sleep_until((schedule.start + schedule.warmup).into()).await;
        let a = read();
        tokio::time::sleep_until(schedule.end().into()).await;
        let b = read();
        (
            a.0.zip(b.0).map(|(a, b)| b - a),
            a.1.zip(b.1).map(|(a, b)| b - a),
            b.2 - a.2,
        )
    });

    let handle = tokio::runtime::Handle::current();
    let dispatch = {
        let shared = shared.clone();
        tokio::task::spawn_blocking(move || dispatch(shared, handle))
    };
    let _ = dispatch.await;
    // Every request has its own deadline, so this ends; the bound is a second guard.
    let drain_deadline = Instant::now() + schedule.request_timeout + Duration::from_secs(2);
    while shared.inflight.load(Ordering::Acquire) > 0 && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (cpu_server, cpu_mock, cpu_loadgen) = cpu_task.await.unwrap_or((None, None, 0.0));
    stop_sampling.store(true, Ordering::Relaxed);
    let rss = rss_task.await.unwrap_or_default();
    let samples = std::mem::take(&mut *shared.samples.lock().unwrap());
    RawRun {
        schedule,
        samples,
        rss,
        cpu_server,
        cpu_mock,
        cpu_loadgen,
    }
}

fn dispatch(shared: Arc<Shared>, handle: tokio::runtime::Handle) {
    let schedule = shared.schedule;
    let period = 1.0 / schedule.rate;
    for i in 0..schedule.total() {
        let sched = Duration::from_secs_f64(i as f64 * period);
        let at = schedule.start + sched;
        let now = Instant::now();
        if at > now {
            std::thread::sleep(at - now);
        }
        if shared.inflight.load(Ordering::Acquire) >= schedule.max_inflight {
            shared.samples.lock().unwrap().push(Sample {
                sched,
                lag: Duration::ZERO,
                latency: Duration::ZERO,
                ttft: None,
                outcome: Outcome::Dropped,
                model: None,
            });
            continue;
        }
        shared.inflight.fetch_add(1, Ordering::AcqRel);
        handle.spawn(one_request(shared.clone(), i, sched, at));
    }
}

async fn one_request(shared: Arc<Shared>, i: u64, sched: Duration, at: Instant) {
    let started = Instant::now();
    let bodies = &shared.workload.bodies;
    let (body, stream) = &bodies[(i % bodies.len() as u64) as usize];
    let request = Request::post(shared.workload.url.clone())
        .header("content-type", "application/json")
        .body(Full::new(body.clone()))
        .expect("a valid request");
    let record_model = shared.workload.record_model;
    let exchange = async {
        let response = shared
            .client
            .request(request)
            .await
            .map_err(|_| Outcome::Transport)?;
        let status = response.status();
        let model = record_model
            .then(|| response.headers().get("x-gateway-model"))
            .flatten()
            .and_then(|v| v.to_str().ok())
            .map(Arc::<str>::from);
        let mut body = response.into_body();
        let mut buffer: Vec<u8> = Vec::with_capacity(4096);
        let mut ttft = None;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| Outcome::Transport)?;
            if let Some(data) = frame.data_ref() {
                let from = buffer.len().saturating_sub(4);
                buffer.extend_from_slice(data);
                if ttft.is_none() && contains(&buffer[from..], b"tok0") {
                    ttft = Some(Instant::now());
                }
            }
        }
        let end = Instant::now();
        let outcome = if !status.is_success() {
            Outcome::Status(status.as_u16())
        } else if ttft.is_none() || (*stream && !ends_with_done(&buffer)) {
            Outcome::BadBody
        } else {
            Outcome::Ok
        };
        Ok::<_, Outcome>((outcome, end, ttft, model))
    };
    let deadline = at + shared.schedule.request_timeout;
    let sample = match tokio::time::timeout_at(deadline.into(), exchange).await {
        Ok(Ok((outcome, end, ttft, model))) => Sample {
            sched,
            lag: started.saturating_duration_since(at),
            latency: end.saturating_duration_since(at),
            ttft: ttft
                .filter(|_| *stream)
                .map(|t| t.saturating_duration_since(at)),
            outcome,
            model,
        },
        Ok(Err(outcome)) => Sample {
            sched,
            lag: started.saturating_duration_since(at),
            latency: at.elapsed(),
            ttft: None,
            outcome,
            model: None,
        },
        Err(_) => Sample {
            sched,
            lag: started.saturating_duration_since(at),
            latency: at.elapsed(),
            ttft: None,
            outcome: Outcome::Timeout,
            model: None,
        },
    };
    shared.samples.lock().unwrap().push(sample);
    shared.inflight.fetch_sub(1, Ordering::AcqRel);
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn ends_with_done(body: &[u8]) -> bool {
    let trimmed = body
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(&body[..0], |end| &body[..=end]);
    trimmed.ends_with(b"data: [DONE]")
}

/// One measured run, summarized.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    /// `direct`, `gateway-auto`, `gateway-fixed`, `litellm`, `soak`, `reload`, ...
    pub target: String,
    pub stream: bool,
    pub rate: f64,
    pub duration_s: f64,
    pub sent: usize,
    pub ok: usize,
    pub failed: usize,
    pub failures: BTreeMap<String, usize>,
    /// Successful responses per second over the measured window.
    pub achieved_rps: f64,
    /// Scheduled send to end of body, successful requests only.
    pub latency_ms: Option<Percentiles>,
    /// Scheduled send to first content token (streams).
    pub ttft_ms: Option<Percentiles>,
    /// How late the generator started requests.
    pub lag_ms: Option<Percentiles>,
    /// CPU time of the server under test per successful request, in microseconds.
    pub server_cpu_us_per_req: Option<f64>,
    /// Cores the server under test used on average.
    pub server_cores: Option<f64>,
    pub mock_cores: Option<f64>,
    pub loadgen_cores: f64,
    pub rss_max_mib: Option<f64>,
    pub rss_last_mib: Option<f64>,
    pub saturated: bool,
    pub saturation_reason: Option<String>,
}

/// Thresholds that make a run count as saturated.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Saturation {
    pub max_p99_ms: f64,
    pub min_success: f64,
    pub min_throughput_ratio: f64,
}

/// Writes a run's samples as CSV: scheduled time, generator lag, latency and time to first
/// token (ms), and the outcome; warm-up samples included, marked by `sched_ms`.
pub fn write_samples(path: &std::path::Path, raw: &RawRun) -> anyhow::Result<()> {
    use std::fmt::Write as _;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut csv = String::from("sched_ms,lag_ms,latency_ms,ttft_ms,outcome\n");
    for s in &raw.samples {
        let ttft = s.ttft.map(|t| format!("{:.3}", ms(t))).unwrap_or_default();
        let _ = writeln!(
            csv,
            "{:.3},{:.3},{:.3},{ttft},{}",
            ms(s.sched),
            ms(s.lag),
            ms(s.latency),
            s.outcome.label()
        );
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, csv)?;
    Ok(())
}

pub fn summarize(target: &str, stream: bool, raw: &RawRun, saturation: Saturation) -> RunResult {
    let schedule = raw.schedule;
    let window = schedule.warmup..schedule.warmup + schedule.duration;
    let measured: Vec<&Sample> = raw
        .samples
        .iter()
        .filter(|s| window.contains(&s.sched))
        .collect();
    let mut failures = BTreeMap::new();
    let (mut latencies, mut ttfts, mut lags) = (Vec::new(), Vec::new(), Vec::new());
    for s in &measured {
        if s.outcome == Outcome::Ok {
            latencies.push(s.latency.as_micros() as u64);
            if let Some(t) = s.ttft {
                ttfts.push(t.as_micros() as u64);
            }
        } else {
            *failures.entry(s.outcome.label()).or_insert(0) += 1;
        }
        if s.outcome != Outcome::Dropped {
            lags.push(s.lag.as_micros() as u64);
        }
    }
    let ok = latencies.len();
    let sent = measured.len();
    let duration_s = schedule.duration.as_secs_f64();
    let latency_ms = Percentiles::from_micros(&mut latencies);
    let achieved_rps = ok as f64 / duration_s;
    let per_sec = |cpu: Option<f64>| cpu.map(|c| c / duration_s);
    let rss_in_window: Vec<u64> = raw
        .rss
        .iter()
        .filter(|(t, _)| *t >= schedule.warmup.as_secs_f64())
        .map(|&(_, kib)| kib)
        .collect();
    let mib = |kib: u64| kib as f64 / 1024.0;

    let success = if sent == 0 {
        0.0
    } else {
        ok as f64 / sent as f64
    };
    let saturation_reason = if success < saturation.min_success {
        Some(format!(
            "{:.1}% of requests failed",
            (1.0 - success) * 100.0
        ))
    } else if achieved_rps < saturation.min_throughput_ratio * schedule.rate {
        Some(format!(
            "served {achieved_rps:.0}/s of {:.0}/s offered",
            schedule.rate
        ))
    } else {
        latency_ms
            .filter(|l| l.p99 > saturation.max_p99_ms)
            .map(|l| format!("p99 {:.1} ms > {:.0} ms", l.p99, saturation.max_p99_ms))
    };
    RunResult {
        target: target.to_string(),
        stream,
        rate: schedule.rate,
        duration_s,
        sent,
        ok,
        failed: sent - ok,
        failures,
        achieved_rps,
        latency_ms,
        ttft_ms: Percentiles::from_micros(&mut ttfts),
        lag_ms: Percentiles::from_micros(&mut lags),
        server_cpu_us_per_req: raw
            .cpu_server
            .filter(|_| ok > 0)
            .map(|c| c * 1e6 / ok as f64),
        server_cores: per_sec(raw.cpu_server),
        mock_cores: per_sec(raw.cpu_mock),
        loadgen_cores: raw.cpu_loadgen / duration_s,
        rss_max_mib: rss_in_window.iter().max().map(|&k| mib(k)),
        rss_last_mib: rss_in_window.last().map(|&k| mib(k)),
        saturated: saturation_reason.is_some(),
        saturation_reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_detection_tolerates_trailing_whitespace() {
        assert!(ends_with_done(b"data: {}\n\ndata: [DONE]\n\n"));
        assert!(ends_with_done(b"data: [DONE]"));
        assert!(!ends_with_done(b"data: {\"error\":{}}\n\n"));
        assert!(!ends_with_done(b""));
        assert!(contains(b"xxtok0yy", b"tok0"));
        assert!(!contains(b"tok", b"tok0"));
    }

    fn sample(sched_ms: u64, latency_ms: u64, outcome: Outcome) -> Sample {
        Sample {
            sched: Duration::from_millis(sched_ms),
            lag: Duration::ZERO,
            latency: Duration::from_millis(latency_ms),
            ttft: None,
            outcome,
            model: None,
        }
    }

    #[test]
    fn summaries_count_only_the_measured_window() {
        let schedule = Schedule {
            start: Instant::now(),
            rate: 10.0,
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            max_inflight: 10,
        };
        let mut samples = vec![sample(500, 900, Outcome::Ok)]; // warm-up: ignored
        for i in 0..10 {
            samples.push(sample(1000 + i * 100, 1 + i, Outcome::Ok));
        }
        samples.push(sample(1950, 5, Outcome::Status(502)));
        let raw = RawRun {
            schedule,
            samples,
            rss: vec![(0.5, 1024), (1.5, 2048)],
            cpu_server: Some(0.5),
            cpu_mock: None,
            cpu_loadgen: 0.1,
        };
        let saturation = Saturation {
            max_p99_ms: 100.0,
            min_success: 0.99,
            min_throughput_ratio: 0.95,
        };
        let r = summarize("t", false, &raw, saturation);
        assert_eq!((r.sent, r.ok, r.failed), (11, 10, 1));
        assert_eq!(r.failures["http 502"], 1);
        assert_eq!(r.latency_ms.unwrap().max, 10.0);
        assert_eq!(r.rss_max_mib, Some(2.0));
        assert!(r.saturated, "one failure in 11 is over 1%");
        assert_eq!(r.server_cpu_us_per_req, Some(50_000.0));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.csv");
        write_samples(&path, &raw).unwrap();
        let csv = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], "sched_ms,lag_ms,latency_ms,ttft_ms,outcome");
        assert_eq!(
            lines.len(),
            1 + raw.samples.len(),
            "warm-up samples included"
        );
        assert_eq!(lines[1], "500.000,0.000,900.000,,ok");
        assert_eq!(lines[12], "1950.000,0.000,5.000,,http 502");
    }
}
