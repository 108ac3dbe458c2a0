//! `aigw-bench classify`: accuracy of task classification on a labelled prompt set, for the
//! embedding classifier (nearest centroid over `config/tasks.toml`) and the keyword fallback
//! side by side, through the same `TaskClassifier` the gateway uses. Writes `bench/CLASSIFY.md`
//! plus JSON.
//!
//! The evaluation prompts never tune anything: the one free parameter (how much keyword
//! evidence to add to the embedding's similarities, `KEYWORD_WEIGHT`) is chosen by
//! leave-one-out over the config's own examples, which this command reports too.

use ai_gateway::cache::Embedder;
use ai_gateway::config::{Config, TaskClass};
use ai_gateway::routing::centroid::Centroids;
use ai_gateway::routing::task_classifier::{
    KEYWORD_WEIGHT, TaskClassifier, TaskSource, TaskVerdict, classify_embedded,
};
use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Keyword weights tried for the combined classifier (0 is the embedding alone).
const KEYWORD_WEIGHTS: &[f32] = &[0.0, 0.02, 0.05, 0.1, 0.2];

#[derive(Debug, Clone, clap::Args)]
pub struct ClassifyArgs {
    /// The labelled evaluation set [default: tests/fixtures/routing/task-classification.json].
    #[arg(long)]
    pub prompts: Option<PathBuf>,
    /// The config directory whose tasks.toml supplies the examples [default: config].
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The embedding model (what `.ci/setup` fetches) [default: $AIGW_MODEL_DIR or data/models].
    #[arg(long)]
    pub model_dir: Option<PathBuf>,
    /// The Markdown report [default: bench/CLASSIFY.md]; JSON goes beside it.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Deserialize)]
struct PromptSet {
    prompts: Vec<Labelled>,
}

#[derive(Deserialize)]
struct Labelled {
    label: TaskClass,
    prompt: String,
}

/// One classifier's results over the set.
#[derive(Debug, Serialize)]
struct Scored {
    name: String,
    correct: usize,
    total: usize,
    /// Per true class: (correct, total).
    per_class: Vec<(TaskClass, usize, usize)>,
    /// `confusion[true][predicted]`, in `TaskClass::ALL` order.
    confusion: Vec<Vec<usize>>,
    /// Mean confidence of right and of wrong answers.
    mean_confidence_right: f32,
    mean_confidence_wrong: f32,
}

impl Scored {
    fn new(name: &str, outcomes: &[(TaskClass, TaskClass, f32)]) -> Self {
        let index = |c: TaskClass| TaskClass::ALL.iter().position(|x| *x == c).unwrap_or(0);
        let mut confusion = vec![vec![0usize; TaskClass::ALL.len()]; TaskClass::ALL.len()];
        let (mut right, mut wrong) = (Vec::new(), Vec::new());
        for (truth, predicted, confidence) in outcomes {
            confusion[index(*truth)][index(*predicted)] += 1;
            if truth == predicted {
                right.push(*confidence);
            } else {
                wrong.push(*confidence);
            }
        }
        let mean = |v: &[f32]| {
            if v.is_empty() {
                0.0
            } else {
                v.iter().sum::<f32>() / v.len() as f32
            }
        };
        Scored {
            name: name.into(),
            correct: right.len(),
            total: outcomes.len(),
            per_class: TaskClass::ALL
                .iter()
                .map(|c| {
                    let row = &confusion[index(*c)];
                    (*c, row[index(*c)], row.iter().sum())
                })
                .collect(),
            confusion,
            mean_confidence_right: mean(&right),
            mean_confidence_wrong: mean(&wrong),
        }
    }

    fn accuracy(&self) -> f64 {
        percent(self.correct, self.total)
    }
}

fn percent(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

async fn embed_all(embedder: &Embedder, texts: &[&str]) -> anyhow::Result<Vec<Vec<f32>>> {
    let mut out = Vec::with_capacity(texts.len());
    for batch in texts.chunks(16) {
        out.extend(
            embedder
                .embed_many(batch.iter().map(|t| t.to_string()).collect())
                .await?,
        );
    }
    Ok(out)
}

/// Leave-one-out accuracy over the config examples: each example is classified by centroids
/// built from all the others.
fn leave_one_out(labelled: &[(TaskClass, &str)], embeddings: &[Vec<f32>], weight: f32) -> f64 {
    let mut correct = 0;
    for (held_out, ((truth, text), embedding)) in labelled.iter().zip(embeddings).enumerate() {
        let rest = labelled
            .iter()
            .zip(embeddings)
            .enumerate()
            .filter(|(i, _)| *i != held_out)
            .map(|(_, ((class, _), e))| (*class, e.as_slice()));
        let Ok(centroids) = Centroids::from_labelled(rest) else {
            continue;
        };
        if classify_embedded(&centroids, text, embedding, weight).task == *truth {
            correct += 1;
        }
    }
    percent(correct, labelled.len())
}

#[derive(Serialize)]
struct Report {
    prompts: usize,
    examples: usize,
    /// Leave-one-out accuracy on the config examples per keyword weight.
    tuning: Vec<(f32, f64)>,
    chosen_weight: f32,
    results: Vec<Scored>,
    embed_ms_per_prompt: f64,
    misclassified: Vec<(String, TaskClass, TaskClass, f32)>,
}

pub async fn run(args: ClassifyArgs, repo: &Path) -> anyhow::Result<()> {
    let prompts_path = args
        .prompts
        .clone()
        .unwrap_or_else(|| repo.join("tests/fixtures/routing/task-classification.json"));
    let config_dir = args.config.clone().unwrap_or_else(|| repo.join("config"));
    let model_dir = args
        .model_dir
        .clone()
        .or_else(|| std::env::var_os("AIGW_MODEL_DIR").map(PathBuf::from))
        .unwrap_or_else(|| repo.join("data/models"));
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| repo.join("bench/CLASSIFY.md"));
    let set: PromptSet = serde_json::from_slice(
        &std::fs::read(&prompts_path)
            .with_context(|| format!("reading {}", prompts_path.display()))?,
    )
    .with_context(|| format!("parsing {}", prompts_path.display()))?;
    let config = Config::load(&config_dir)?;
    let Some(tasks) = config.tasks.as_ref() else {
        bail!("{} has no tasks.toml", config_dir.display());
    };
    let examples: Vec<(TaskClass, &str)> = tasks.labelled().collect();
    let shared: Vec<&str> = set
        .prompts
        .iter()
        .filter(|p| examples.iter().any(|(_, e)| e.trim() == p.prompt.trim()))
        .map(|p| p.prompt.as_str())
        .collect();
    if !shared.is_empty() {
        bail!("the evaluation set repeats config examples: {shared:?}");
    }
    let embedder = Embedder::load(&model_dir, 1)
        .with_context(|| format!("loading the embedding model from {}", model_dir.display()))?;

    eprintln!(
        "[classify] tuning on {} config examples (leave-one-out)",
        examples.len()
    );
    let example_texts: Vec<&str> = examples.iter().map(|(_, t)| *t).collect();
    let example_embeddings = embed_all(&embedder, &example_texts).await?;
    let tuning: Vec<(f32, f64)> = KEYWORD_WEIGHTS
        .iter()
        .map(|w| (*w, leave_one_out(&examples, &example_embeddings, *w)))
        .collect();
    // The smallest weight among the best: keywords only where they measurably help.
    let chosen_weight = tuning
        .iter()
        .fold((0.0_f32, f64::MIN), |best, (w, acc)| {
            if *acc > best.1 + 1e-9 {
                (*w, *acc)
            } else {
                best
            }
        })
        .0;

    eprintln!(
        "[classify] classifying {} evaluation prompts",
        set.prompts.len()
    );
    let classifier = TaskClassifier::new(Some(embedder.clone()));
    classifier.train(Some(tasks)).await?;
    let centroids = classifier
        .centroids()
        .context("the classifier has no centroids after training")?;
    let texts: Vec<&str> = set.prompts.iter().map(|p| p.prompt.as_str()).collect();
    let started = Instant::now();
    let embeddings = embed_all(&embedder, &texts).await?;
    let embed_ms_per_prompt = started.elapsed().as_secs_f64() * 1000.0 / texts.len() as f64;

    let mut by_embedding = Vec::new();
    let mut by_keywords = Vec::new();
    let mut by_gateway = Vec::new();
    let mut misclassified = Vec::new();
    for (prompt, embedding) in set.prompts.iter().zip(&embeddings) {
        let alone = classify_embedded(&centroids, &prompt.prompt, embedding, 0.0);
        by_embedding.push((prompt.label, alone.task, alone.confidence));
        let keyword = TaskVerdict::by_keywords(&prompt.prompt);
        by_keywords.push((prompt.label, keyword.task, keyword.confidence));
        // What the gateway answers for this prompt, cache embedding handed in as on a miss.
        let verdict = classifier.classify(&prompt.prompt, Some(embedding)).await;
        if verdict.source != TaskSource::Embedding {
            bail!("'{}' was not classified by embedding", prompt.prompt);
        }
        by_gateway.push((prompt.label, verdict.task, verdict.confidence));
        if verdict.task != prompt.label {
            misclassified.push((
                prompt.prompt.clone(),
                prompt.label,
                verdict.task,
                verdict.confidence,
            ));
        }
    }
    let results = vec![
        Scored::new(
            &format!("gateway: embedding + keywords (weight {KEYWORD_WEIGHT})"),
            &by_gateway,
        ),
        Scored::new("embedding alone (nearest centroid)", &by_embedding),
        Scored::new("keywords alone (the fallback)", &by_keywords),
    ];
    for r in &results {
        eprintln!(
            "[classify] {}: {}/{} = {:.1}%",
            r.name,
            r.correct,
            r.total,
            r.accuracy()
        );
    }
    let report = Report {
        prompts: set.prompts.len(),
        examples: examples.len(),
        tuning,
        chosen_weight,
        results,
        embed_ms_per_prompt,
        misclassified,
    };
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, render(&report)).with_context(|| format!("writing {}", out.display()))?;
    let json = out.with_extension("json");
    std::fs::write(&json, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("writing {}", json.display()))?;
    eprintln!("[classify] wrote {} and {}", out.display(), json.display());
    Ok(())
}

fn render(report: &Report) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Task classification accuracy\n");
    let _ = writeln!(
        md,
        "Measured by `cargo run --release -p aigw-bench -- classify` (needs the embedding model \
         that `.ci/setup` fetches). {} labelled prompts from \
         `tests/fixtures/routing/task-classification.json`, classified by the gateway's \
         `TaskClassifier` trained on the {} examples in `config/tasks.toml` (no prompt is in \
         both; the run refuses to start if one is).\n",
        report.prompts, report.examples
    );
    let _ = writeln!(md, "## Overall\n");
    let _ = writeln!(
        md,
        "| classifier | correct | accuracy | mean confidence (right / wrong) |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|");
    for r in &report.results {
        let _ = writeln!(
            md,
            "| {} | {}/{} | {:.1}% | {:.2} / {:.2} |",
            r.name,
            r.correct,
            r.total,
            r.accuracy(),
            r.mean_confidence_right,
            r.mean_confidence_wrong
        );
    }
    let _ = writeln!(
        md,
        "\nEmbedding cost: {:.1} ms per prompt (batches of 16, one thread); on the request path \
         the semantic cache's embedding of the prompt is reused, so classification adds no \
         model run when the cache embedded the prompt.\n",
        report.embed_ms_per_prompt
    );
    let _ = writeln!(md, "## Per class (recall)\n");
    let _ = write!(md, "| class |");
    for r in &report.results {
        let _ = write!(md, " {} |", r.name);
    }
    let _ = writeln!(md);
    let _ = write!(md, "|---|");
    for _ in &report.results {
        let _ = write!(md, "---:|");
    }
    let _ = writeln!(md);
    for (i, class) in TaskClass::ALL.iter().enumerate() {
        let _ = write!(md, "| {} |", class.as_str());
        for r in &report.results {
            let (_, right, total) = r.per_class[i];
            let _ = write!(md, " {right}/{total} ({:.0}%) |", percent(right, total));
        }
        let _ = writeln!(md);
    }
    for r in report
        .results
        .iter()
        .filter(|r| !r.name.starts_with("embedding alone"))
    {
        let _ = writeln!(
            md,
            "\n## Confusion matrix: {}\n\nRows are the true class, columns the prediction.\n",
            r.name
        );
        let _ = write!(md, "| true \\ predicted |");
        for class in TaskClass::ALL {
            let _ = write!(md, " {} |", class.as_str());
        }
        let _ = writeln!(md);
        let _ = writeln!(md, "|---|{}", "---:|".repeat(TaskClass::ALL.len()));
        for (i, class) in TaskClass::ALL.iter().enumerate() {
            let _ = write!(md, "| **{}** |", class.as_str());
            for (j, count) in r.confusion[i].iter().enumerate() {
                if i == j {
                    let _ = write!(md, " **{count}** |");
                } else if *count == 0 {
                    let _ = write!(md, " · |");
                } else {
                    let _ = write!(md, " {count} |");
                }
            }
            let _ = writeln!(md);
        }
    }
    let _ = writeln!(
        md,
        "\n## Combining with keywords\n\nThe combined classifier adds `weight × (the class's \
         share of keyword cue hits)` to each centroid similarity. The weight is chosen by \
         leave-one-out accuracy over the config examples (each example classified by centroids \
         of all the others), never on the evaluation set:\n"
    );
    let _ = writeln!(
        md,
        "| keyword weight | leave-one-out accuracy on examples |"
    );
    let _ = writeln!(md, "|---:|---:|");
    for (weight, accuracy) in &report.tuning {
        let _ = writeln!(md, "| {weight} | {accuracy:.1}% |");
    }
    let _ = writeln!(
        md,
        "\nBest: {} (the smallest weight with the best leave-one-out accuracy); the gateway \
         uses `KEYWORD_WEIGHT` = {KEYWORD_WEIGHT}{}.\n",
        report.chosen_weight,
        if (report.chosen_weight - KEYWORD_WEIGHT).abs() > f32::EPSILON {
            " — they differ: update `KEYWORD_WEIGHT` in host/src/routing/task_classifier.rs"
        } else {
            ""
        }
    );
    let _ = writeln!(
        md,
        "## Misclassified by the gateway's classifier ({})\n",
        report.misclassified.len()
    );
    let _ = writeln!(md, "| prompt | true | predicted | confidence |");
    let _ = writeln!(md, "|---|---|---|---:|");
    for (prompt, truth, predicted, confidence) in &report.misclassified {
        let mut shown: String = prompt.chars().take(90).collect();
        if shown.len() < prompt.len() {
            shown.push('…');
        }
        let _ = writeln!(
            md,
            "| {} | {} | {} | {confidence:.2} |",
            shown.replace('|', "\\|").replace('\n', " "),
            truth.as_str(),
            predicted.as_str()
        );
    }
    md
}
