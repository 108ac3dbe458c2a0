//! `aigw-bench cache`: accuracy and speed of the gateway's response cache, measured through the
//! cache's own lookup path (exact key, embedding, ANN search, false-hit guard).
//!
//! - Paraphrase accuracy: store every `origin` of the paraphrase set, look up every `similar`;
//!   correct / wrong / missed at several thresholds, with and without the guard.
//! - Hard negatives: store one prompt of each pair, look up the other; any hit is a false hit.
//! - Lookup latency, one at a time and 8 concurrent.
//! - Search latency and recall with a large index of real embeddings, for several HNSW settings.

use crate::stats::Percentiles;
use ai_gateway::cache::{
    CacheControls, Embedder, IndexParams, Lookup, ResponseCache, StoredResponse, VectorIndex,
};
use ai_gateway::config::CacheSettings;
use ai_gateway::pipeline::CompletionInput;
use ai_gateway::plugins::bindings::types::{
    CompletionRequest, ContentPart, Message, Role, Sampling,
};
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Clone, clap::Args)]
pub struct CacheArgs {
    /// The paraphrase set [default: ../shared/fixtures/paraphrase-pairs.json].
    #[arg(long)]
    pub pairs: Option<PathBuf>,
    /// The hard-negative set [default: tests/fixtures/cache/hard-negatives.json].
    #[arg(long)]
    pub hard_negatives: Option<PathBuf>,
    /// The embedding model (what `.ci/setup` fetches) [default: $AIGW_MODEL_DIR or data/models].
    #[arg(long)]
    pub model_dir: Option<PathBuf>,
    /// Where generated embeddings for the large-index test are kept between runs.
    #[arg(long, default_value = "data/bench")]
    pub data_dir: PathBuf,
    /// Entries in the large index.
    #[arg(long, default_value_t = 100_000)]
    pub index_size: usize,
    /// The Markdown report [default: bench/CACHE.md].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Deserialize)]
struct Pair {
    origin: String,
    similar: String,
}

#[derive(Deserialize)]
struct HardNegatives {
    pairs: Vec<HardNegative>,
}

#[derive(Deserialize)]
struct HardNegative {
    category: String,
    stored: String,
    lookup: String,
}

#[derive(Debug, Serialize)]
struct Accuracy {
    threshold: f32,
    guard: bool,
    correct: usize,
    wrong: usize,
    /// Wrong hits on an entry whose prompt is the same text as the right one (the set repeats
    /// some origins).
    wrong_same_text: usize,
    missed: usize,
    hard_negatives_served: usize,
    hard_negatives_total: usize,
    /// Served hard negatives per category.
    hard_negatives_by_category: Vec<(String, usize)>,
}

#[derive(Debug, Serialize)]
struct LargeIndex {
    connectivity: usize,
    expansion_add: usize,
    expansion_search: usize,
    entries: usize,
    build_seconds: f64,
    search: Percentiles,
    recall_at_1: f64,
    recall_at_10: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    operating_threshold: f32,
    accuracy: Vec<Accuracy>,
    lookup_single_miss: Percentiles,
    lookup_single_exact: Percentiles,
    lookup_concurrent_8: Percentiles,
    concurrent_lookups_per_second: f64,
    /// Of the concurrent lookups, those that were embedded; the rest found the embedder's
    /// line of waiting prompts full and used the exact tier only.
    concurrent_embedded: usize,
    embedding_texts_per_second: f64,
    large_index_texts: String,
    large_index: Vec<LargeIndex>,
    exact_search_100k: Percentiles,
    /// /proc/loadavg when the latency measurements started and when the run ended: other
    /// work on the machine shows up in every latency here.
    loadavg_latency_start: String,
    loadavg_end: String,
}

const THRESHOLDS: &[f32] = &[0.75, 0.80, 0.85, 0.90, 0.95];
/// The most hard negatives (share of the set) a threshold may serve to be chosen.
const HARD_NEGATIVE_BUDGET: f64 = 0.05;
/// The correct paraphrase hits a threshold should reach to be chosen.
const CORRECT_TARGET: usize = 850;

fn input(text: &str) -> CompletionInput {
    CompletionInput {
        model: "auto".into(),
        request: CompletionRequest {
            model: String::new(),
            messages: vec![Message {
                role: Role::User,
                content: vec![ContentPart::Text(text.into())],
                name: None,
                tool_calls: Vec::new(),
                tool_call_id: None,
            }],
            tools: Vec::new(),
            tool_choice: None,
            response_format: None,
            sampling: Sampling {
                temperature: None,
                top_p: None,
                max_output_tokens: None,
                stop: Vec::new(),
                seed: None,
                presence_penalty: None,
                frequency_penalty: None,
            },
            stream: false,
            end_user: None,
        },
        policy: None,
        requirements: Default::default(),
        api_key_id: None,
        cache: CacheControls::default(),
    }
}

fn answer(label: String) -> StoredResponse {
    StoredResponse {
        text: label,
        tool_calls: Vec::new(),
        finish_reason: "stop".into(),
        usage: None,
    }
}

/// A cache holding `prompts`, each answered with its index.
async fn filled(
    embedder: &Embedder,
    prompts: &[&str],
    settings: &CacheSettings,
) -> anyhow::Result<ResponseCache> {
    let cache = ResponseCache::in_memory(Some(embedder.clone()));
    for (i, prompt) in prompts.iter().enumerate() {
        let pending = cache.pending_for(&input(prompt)).await?;
        cache.store(pending, answer(i.to_string()), "m", "p", 0.0, settings);
    }
    Ok(cache)
}

/// Which stored prompt each lookup was served (`None`: missed).
async fn served(
    cache: &ResponseCache,
    lookups: &[&str],
    settings: &CacheSettings,
) -> Vec<Option<usize>> {
    let mut out = Vec::with_capacity(lookups.len());
    for text in lookups {
        let (lookup, _) = cache.lookup(&input(text), settings).await;
        out.push(match lookup {
            Lookup::Hit(hit) => hit.response.text.parse().ok(),
            _ => None,
        });
    }
    out
}

pub async fn run(args: CacheArgs, repo: &Path) -> anyhow::Result<()> {
    let pairs_path = args
        .pairs
        .clone()
        .unwrap_or_else(|| repo.join("../shared/fixtures/paraphrase-pairs.json"));
    let negatives_path = args
        .hard_negatives
        .clone()
        .unwrap_or_else(|| repo.join("tests/fixtures/cache/hard-negatives.json"));
    let model_dir = args
        .model_dir
        .clone()
        .or_else(|| std::env::var_os("AIGW_MODEL_DIR").map(PathBuf::from))
        .unwrap_or_else(|| repo.join("data/models"));
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| repo.join("bench/CACHE.md"));
    let pairs: Vec<Pair> = serde_json::from_slice(
        &std::fs::read(&pairs_path).with_context(|| format!("reading {}", pairs_path.display()))?,
    )?;
    let negatives: HardNegatives = serde_json::from_slice(
        &std::fs::read(&negatives_path)
            .with_context(|| format!("reading {}", negatives_path.display()))?,
    )?;
    let embedder = Embedder::load(&model_dir, 1)
        .with_context(|| format!("loading the embedding model from {}", model_dir.display()))?;

    eprintln!("[cache] paraphrase and hard-negative accuracy");
    let mut settings = CacheSettings {
        guard: false,
        threshold: 0.0,
        ..CacheSettings::default()
    };
    let origins: Vec<&str> = pairs.iter().map(|p| p.origin.as_str()).collect();
    let similars: Vec<&str> = pairs.iter().map(|p| p.similar.as_str()).collect();
    let stored: Vec<&str> = negatives.pairs.iter().map(|p| p.stored.as_str()).collect();
    let lookups: Vec<&str> = negatives.pairs.iter().map(|p| p.lookup.as_str()).collect();
    let paraphrase_cache = filled(&embedder, &origins, &settings).await?;
    let negative_cache = filled(&embedder, &stored, &settings).await?;
    let mut accuracy = Vec::new();
    for &threshold in THRESHOLDS {
        for guard in [false, true] {
            settings.threshold = threshold;
            settings.guard = guard;
            let hits = served(&paraphrase_cache, &similars, &settings).await;
            let (mut correct, mut wrong, mut wrong_same_text, mut missed) = (0, 0, 0, 0);
            for (i, hit) in hits.iter().enumerate() {
                match hit {
                    Some(j) if *j == i => correct += 1,
                    Some(j) => {
                        wrong += 1;
                        if origins[*j].trim() == origins[i].trim() {
                            wrong_same_text += 1;
                        }
                    }
                    None => missed += 1,
                }
            }
            let negative_hits = served(&negative_cache, &lookups, &settings).await;
            let categories: BTreeSet<&str> = negatives
                .pairs
                .iter()
                .map(|p| p.category.as_str())
                .collect();
            let by_category = categories
                .iter()
                .map(|c| {
                    let n = negatives
                        .pairs
                        .iter()
                        .zip(&negative_hits)
                        .filter(|(p, hit)| p.category == *c && hit.is_some())
                        .count();
                    (c.to_string(), n)
                })
                .collect();
            let row = Accuracy {
                threshold,
                guard,
                correct,
                wrong,
                wrong_same_text,
                missed,
                hard_negatives_served: negative_hits.iter().filter(|h| h.is_some()).count(),
                hard_negatives_total: negatives.pairs.len(),
                hard_negatives_by_category: by_category,
            };
            eprintln!(
                "[cache] threshold {threshold:.2} guard {guard}: {correct} correct, {wrong} wrong, {missed} missed; hard negatives served {}/{}",
                row.hard_negatives_served, row.hard_negatives_total
            );
            accuracy.push(row);
        }
    }
    // With the guard on: the strictest threshold that still reaches the correct-hit target
    // within the hard-negative budget; failing that, the loosest one within the budget.
    let within_budget: Vec<&Accuracy> = accuracy
        .iter()
        .filter(|a| a.guard)
        .filter(|a| {
            (a.hard_negatives_served as f64) <= HARD_NEGATIVE_BUDGET * a.hard_negatives_total as f64
        })
        .collect();
    let operating = within_budget
        .iter()
        .filter(|a| a.correct >= CORRECT_TARGET)
        .map(|a| a.threshold)
        .reduce(f32::max)
        .or_else(|| within_budget.iter().map(|a| a.threshold).reduce(f32::min))
        .unwrap_or(0.95);
    settings.threshold = operating;
    settings.guard = true;

    eprintln!("[cache] lookup latency");
    let loadavg_latency_start = crate::procs::loadavg();
    let mut miss_samples = Vec::new();
    for text in &similars {
        let started = Instant::now();
        let _ = paraphrase_cache.lookup(&input(text), &settings).await;
        miss_samples.push(micros(started));
    }
    let mut exact_samples = Vec::new();
    for text in &origins {
        let started = Instant::now();
        let _ = paraphrase_cache.lookup(&input(text), &settings).await;
        exact_samples.push(micros(started));
    }
    let shared = Arc::new(paraphrase_cache);
    let texts: Arc<Vec<String>> = Arc::new(similars.iter().map(|s| s.to_string()).collect());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let (cache, texts, settings) = (shared.clone(), texts.clone(), settings.clone());
        tasks.push(tokio::spawn(async move {
            let (mut samples, mut embedded) = (Vec::new(), 0);
            for text in texts.iter().skip(worker).step_by(8) {
                let began = Instant::now();
                let (_, trace) = cache.lookup(&input(text), &settings).await;
                samples.push(micros(began));
                embedded += usize::from(trace.embedded);
            }
            (samples, embedded)
        }));
    }
    let (mut concurrent_samples, mut concurrent_embedded) = (Vec::new(), 0);
    for task in tasks {
        let (samples, embedded) = task.await?;
        concurrent_samples.extend(samples);
        concurrent_embedded += embedded;
    }
    let concurrent_rate = concurrent_samples.len() as f64 / started.elapsed().as_secs_f64();

    eprintln!("[cache] large index: {} entries", args.index_size);
    let corpus = large_corpus(&origins, &similars, &stored, &lookups, args.index_size);
    let (vectors, rate) = corpus_embeddings(&embedder, &corpus, &args.data_dir).await?;
    let query_texts: Vec<&str> = similars.iter().take(1000).copied().collect();
    let queries: Vec<Vec<f32>> = embedder
        .embed_many(query_texts.iter().map(|s| s.to_string()).collect())
        .await?;
    // The queries are in the corpus too; each search leaves its own entry out, so recall is
    // measured on finding the neighbours of a prompt the index has not seen.
    let own_ids: Vec<Option<u64>> = {
        let positions: std::collections::HashMap<&str, u64> = corpus
            .iter()
            .enumerate()
            .map(|(id, text)| (text.as_str(), id as u64))
            .collect();
        query_texts
            .iter()
            .map(|t| positions.get(t).copied())
            .collect()
    };
    let mut large = Vec::new();
    let mut exact_search = None;
    for (connectivity, expansion_add, expansion_search) in
        [(16, 128, 64), (16, 128, 128), (32, 128, 64), (32, 200, 128)]
    {
        let params = IndexParams {
            connectivity,
            expansion_add,
            expansion_search,
        };
        let index = VectorIndex::new(params)?;
        let started = Instant::now();
        for (id, vector) in vectors.iter().enumerate() {
            index.add(id as u64, vector)?;
        }
        let build_seconds = started.elapsed().as_secs_f64();
        let (mut samples, mut exact_samples, mut at1, mut at10) = (Vec::new(), Vec::new(), 0, 0);
        for (query, own) in queries.iter().zip(&own_ids) {
            let began = Instant::now();
            // As the cache searches: filtered (by scope), here leaving out only the query's
            // own entry.
            let found = index.search(query, 10, |id| Some(id) != *own)?;
            samples.push(micros(began));
            let began = Instant::now();
            let mut truth = index.exact_search(query, 11)?;
            exact_samples.push(micros(began));
            truth.retain(|n| Some(n.id) != *own);
            truth.truncate(10);
            if found.first().map(|n| n.id) == truth.first().map(|n| n.id) {
                at1 += 1;
            }
            at10 += truth
                .iter()
                .filter(|t| found.iter().any(|f| f.id == t.id))
                .count();
        }
        let row = LargeIndex {
            connectivity,
            expansion_add,
            expansion_search,
            entries: index.len(),
            build_seconds,
            search: Percentiles::from_micros(&mut samples).context("no samples")?,
            recall_at_1: at1 as f64 / queries.len() as f64,
            recall_at_10: at10 as f64 / (queries.len() * 10) as f64,
        };
        eprintln!(
            "[cache] M={connectivity} ef_add={expansion_add} ef_search={expansion_search}: build {build_seconds:.1}s, search p50 {:.3} ms, recall@1 {:.4}, recall@10 {:.4}",
            row.search.p50, row.recall_at_1, row.recall_at_10
        );
        large.push(row);
        exact_search
            .get_or_insert(Percentiles::from_micros(&mut exact_samples).context("no samples")?);
    }

    let report = Report {
        operating_threshold: operating,
        accuracy,
        lookup_single_miss: Percentiles::from_micros(&mut miss_samples).context("no samples")?,
        lookup_single_exact: Percentiles::from_micros(&mut exact_samples).context("no samples")?,
        lookup_concurrent_8: Percentiles::from_micros(&mut concurrent_samples)
            .context("no samples")?,
        concurrent_lookups_per_second: concurrent_rate,
        concurrent_embedded,
        embedding_texts_per_second: rate,
        large_index_texts: format!(
            "{} distinct texts: the {} prompts of the two fixture sets, then word windows (6 to 16 words) cut from them, then pairs of such windows joined",
            corpus.len(),
            origins.len() + similars.len() + stored.len() + lookups.len()
        ),
        large_index: large,
        exact_search_100k: exact_search.context("no index runs")?,
        loadavg_latency_start,
        loadavg_end: crate::procs::loadavg(),
    };
    let json_path = out.with_extension("json");
    std::fs::write(&json_path, serde_json::to_vec_pretty(&report)?)?;
    std::fs::write(&out, render(&report))?;
    eprintln!(
        "[cache] wrote {} and {}",
        out.display(),
        json_path.display()
    );
    Ok(())
}

fn micros(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// `size` distinct, realistic texts built from the fixtures: the prompts themselves, word
/// windows cut from them, then pairs of windows.
pub(crate) fn large_corpus(
    a: &[&str],
    b: &[&str],
    c: &[&str],
    d: &[&str],
    size: usize,
) -> Vec<String> {
    let prompts: Vec<&str> = a.iter().chain(b).chain(c).chain(d).copied().collect();
    let mut seen = BTreeSet::new();
    let mut corpus = Vec::with_capacity(size);
    let mut push = |text: String, corpus: &mut Vec<String>| {
        if corpus.len() < size && seen.insert(text.clone()) {
            corpus.push(text);
        }
    };
    for prompt in &prompts {
        push(prompt.to_string(), &mut corpus);
    }
    let words: Vec<Vec<&str>> = prompts
        .iter()
        .map(|p| p.split_whitespace().collect())
        .collect();
    let mut windows = Vec::new();
    for len in [6, 8, 10, 12, 16] {
        for w in &words {
            for start in (0..w.len().saturating_sub(len)).step_by(3) {
                windows.push(w[start..start + len].join(" "));
            }
        }
    }
    for window in &windows {
        push(window.clone(), &mut corpus);
    }
    // Deterministic pairing, spread across the list; each round pairs every window with a
    // different partner (the partner index depends on the round, not only on `i % n`).
    let n = windows.len().max(1);
    let mut i = 0usize;
    while corpus.len() < size && i < n * 8 {
        let (first, round) = (i % n, i / n);
        let second = (first * 7919 + 13 + round * 104_729) % n;
        if first != second {
            push(
                format!("{} {}", windows[first], windows[second]),
                &mut corpus,
            );
        }
        i += 1;
    }
    corpus
}

/// Embeddings of `corpus`, from the data directory when an earlier run left them there.
async fn corpus_embeddings(
    embedder: &Embedder,
    corpus: &[String],
    data_dir: &Path,
) -> anyhow::Result<(Vec<Vec<f32>>, f64)> {
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    for text in corpus {
        hash.update(text.as_bytes());
        hash.update([0]);
    }
    let name = format!("embeddings-{}.f32", &hex::encode(hash.finalize())[..16]);
    let path = data_dir.join(name);
    let dims = ai_gateway::cache::DIMENSIONS;
    // The rate is always measured, on the first 2000 texts, even when the rest is on disk.
    let sample: Vec<String> = corpus.iter().take(2000).cloned().collect();
    let started = Instant::now();
    for chunk in sample.chunks(16) {
        embedder.embed_many(chunk.to_vec()).await?;
    }
    let rate = sample.len() as f64 / started.elapsed().as_secs_f64();
    eprintln!("[cache] embedding rate: {rate:.0} texts/s (batches of 16, one thread)");
    if let Ok(bytes) = std::fs::read(&path)
        && bytes.len() == corpus.len() * dims * 4
    {
        let floats: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        return Ok((floats.chunks(dims).map(<[f32]>::to_vec).collect(), rate));
    }
    let mut vectors = Vec::with_capacity(corpus.len());
    let started = Instant::now();
    for chunk in corpus.chunks(16) {
        vectors.extend(embedder.embed_many(chunk.to_vec()).await?);
        if vectors.len() % 10_000 < 16 {
            eprintln!(
                "[cache] embedded {} / {} ({:.0} s)",
                vectors.len(),
                corpus.len(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    let bytes: Vec<u8> = vectors
        .iter()
        .flat_map(|v| v.iter().flat_map(|f| f.to_le_bytes()))
        .collect();
    std::fs::create_dir_all(data_dir)?;
    std::fs::write(&path, bytes)?;
    Ok((vectors, rate))
}

fn render(r: &Report) -> String {
    let mut md = String::new();
    md.push_str("# Response cache benchmark\n\n");
    md.push_str(
        "Reproduce: `.ci/setup` (fetches the model), then \
         `cargo run --release -p aigw-bench -- cache` (writes this file and `bench/CACHE.json`).\n\n",
    );
    md.push_str(&format!(
        "Operating threshold chosen from these numbers: **{:.2}** with the guard on (the \
         strictest threshold with at least {} correct paraphrase hits and at most {:.0}% of the \
         hard negatives served).\n\n",
        r.operating_threshold,
        CORRECT_TARGET,
        HARD_NEGATIVE_BUDGET * 100.0
    ));
    md.push_str(&format!(
        "Load average (1, 5, 15 min) when the latency measurements started: {}; at the end: {}. \
         The machine has 2 cores, and latencies move with whatever else runs on it.\n\n",
        r.loadavg_latency_start, r.loadavg_end
    ));
    md.push_str("## Paraphrase set and hard negatives\n\n");
    md.push_str("Paraphrase set: `../shared/fixtures/paraphrase-pairs.json` (999 pairs; every `origin` stored, every `similar` looked up). \
        \"Wrong (same text)\" counts wrong hits on an entry whose prompt is textually the same as the right origin: the set repeats some origins, and a repeated prompt replaces the earlier entry. \
        Hard negatives: `tests/fixtures/cache/hard-negatives.json` (one prompt of each pair stored, the other looked up; every hit is a false hit).\n\n");
    md.push_str("| threshold | guard | correct | wrong | wrong (same text) | missed | hard negatives served |\n");
    md.push_str("| --- | --- | ---: | ---: | ---: | ---: | ---: |\n");
    for a in &r.accuracy {
        md.push_str(&format!(
            "| {:.2} | {} | {} | {} | {} | {} | {} / {} ({:.1}%) |\n",
            a.threshold,
            if a.guard { "on" } else { "off" },
            a.correct,
            a.wrong,
            a.wrong_same_text,
            a.missed,
            a.hard_negatives_served,
            a.hard_negatives_total,
            100.0 * a.hard_negatives_served as f64 / a.hard_negatives_total as f64
        ));
    }
    md.push_str("\nHard negatives served, by category:\n\n| threshold | guard | ");
    if let Some(first) = r.accuracy.first() {
        for (c, _) in &first.hard_negatives_by_category {
            md.push_str(&format!("{c} | "));
        }
        md.push_str("\n| --- | --- |");
        for _ in &first.hard_negatives_by_category {
            md.push_str(" ---: |");
        }
        md.push('\n');
    }
    for a in &r.accuracy {
        md.push_str(&format!(
            "| {:.2} | {} | ",
            a.threshold,
            if a.guard { "on" } else { "off" }
        ));
        for (_, n) in &a.hard_negatives_by_category {
            md.push_str(&format!("{n} | "));
        }
        md.push('\n');
    }
    md.push_str("\n## Lookup latency\n\n");
    md.push_str("A lookup as the gateway makes it, at the operating threshold with the guard: exact-key check, then (on a miss) embedding of the prompt, filtered HNSW search and the guard. 999 paraphrase prompts over a cache of the 999 origins.\n\n");
    md.push_str("| case | p50 ms | p99 ms | max ms |\n| --- | ---: | ---: | ---: |\n");
    for (name, p) in [
        (
            "one at a time, semantic path (embedding + search + guard)",
            &r.lookup_single_miss,
        ),
        (
            "one at a time, exact hit (no embedding)",
            &r.lookup_single_exact,
        ),
        (
            "8 concurrent, semantic path unless the embedder's line is full",
            &r.lookup_concurrent_8,
        ),
    ] {
        md.push_str(&format!(
            "| {name} | {:.2} | {:.2} | {:.2} |\n",
            p.p50, p.p99, p.max
        ));
    }
    md.push_str(&format!(
        "\n8 concurrent lookups complete {:.0} lookups/s; {} of {} were embedded (waiting prompts are batched into one model run, and a prompt that finds four already waiting uses the exact tier only). \
         Embedding throughput in batches of 16 on one thread: {:.0} texts/s.\n",
        r.concurrent_lookups_per_second,
        r.concurrent_embedded,
        r.lookup_concurrent_8.count,
        r.embedding_texts_per_second
    ));
    md.push_str("\n## Search with a large index\n\n");
    md.push_str(&format!(
        "Index contents: {}. Every entry is a real embedding from the same model, computed once and kept in `data/bench/` for later runs. \
         Queries: 1000 paraphrase prompts; each search leaves the query's own entry out (the prompts are in the index too). \
         Recall is against exact (brute-force) search over the same index, also without the query's own entry.\n\n",
        r.large_index_texts
    ));
    md.push_str("| connectivity | expansion_add | expansion_search | entries | build s | search p50 ms | search p99 ms | recall@1 | recall@10 |\n");
    md.push_str("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for l in &r.large_index {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {:.1} | {:.3} | {:.3} | {:.4} | {:.4} |\n",
            l.connectivity,
            l.expansion_add,
            l.expansion_search,
            l.entries,
            l.build_seconds,
            l.search.p50,
            l.search.p99,
            l.recall_at_1,
            l.recall_at_10
        ));
    }
    md.push_str(&format!(
        "\nExact search over the same index for comparison: p50 {:.3} ms, p99 {:.3} ms.\n",
        r.exact_search_100k.p50, r.exact_search_100k.p99
    ));
    md
}
