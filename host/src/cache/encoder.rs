//! The sentence encoder itself: all-MiniLM-L6-v2 (int8 ONNX) run by ONNX Runtime, loaded at run
//! time from the library `.ci/setup` unpacks into the model directory. Synchronous; the
//! `Embedder` runs it on its own thread.

use ort::session::Session;
use ort::value::Tensor;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use tokenizers::Tokenizer;
use tokenizers::utils::truncation::TruncationParams;

/// Dimensions of an all-MiniLM-L6-v2 embedding.
pub const DIMENSIONS: usize = 384;
/// The model's longest input; the shipped tokenizer would cut at 128.
const MAX_TOKENS: usize = 256;

/// The three files the encoder needs, by name inside the model directory.
pub const RUNTIME_LIBRARY: &str = "libonnxruntime.so.1.31.1";
pub const MODEL_FILE: &str = "model.onnx";
pub const TOKENIZER_FILE: &str = "tokenizer.json";

#[derive(Debug, thiserror::Error)]
pub enum EncoderError {
    #[error("{} is missing (run .ci/setup, or point AIGW_MODEL_DIR at the model directory)", .0.display())]
    Missing(PathBuf),
    #[error("cannot load ONNX Runtime from {}: {message}", path.display())]
    Runtime { path: PathBuf, message: String },
    #[error("cannot load the tokenizer: {0}")]
    Tokenizer(String),
    #[error("cannot load the model: {0}")]
    Model(String),
    #[error("cannot tokenize the text: {0}")]
    Tokenize(String),
    #[error("the model failed: {0}")]
    Inference(String),
}

pub struct Encoder {
    session: Session,
    tokenizer: Tokenizer,
}

/// ONNX Runtime can be loaded once per process; every encoder shares it.
static RUNTIME: OnceLock<Result<ort::environment::Environment, String>> = OnceLock::new();

fn runtime(library: &Path) -> Result<&'static ort::environment::Environment, EncoderError> {
    RUNTIME
        .get_or_init(|| {
            ort::init_from(library)
                .map_err(|e| e.to_string())?
                .with_name("aigw-cache")
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|message| EncoderError::Runtime {
            path: library.to_path_buf(),
            message: message.clone(),
        })
}

impl Encoder {
    /// Loads the runtime, model and tokenizer from `dir`. `threads` is ONNX Runtime's intra-op
    /// thread count.
    pub fn load(dir: &Path, threads: usize) -> Result<Self, EncoderError> {
        let [library, model, tokenizer] =
            [RUNTIME_LIBRARY, MODEL_FILE, TOKENIZER_FILE].map(|name| dir.join(name));
        // ort panics instead of failing when the library cannot be opened: check first.
        for file in [&library, &model, &tokenizer] {
            if !file.is_file() {
                return Err(EncoderError::Missing(file.clone()));
            }
        }
        let environment = runtime(&library)?;
        let mut tokenizer =
            Tokenizer::from_file(&tokenizer).map_err(|e| EncoderError::Tokenizer(e.to_string()))?;
        // Padding every input to 128 tokens would make a five-word prompt cost 128 tokens;
        // a batch is padded to its longest member below instead.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..TruncationParams::default()
            }))
            .map_err(|e| EncoderError::Tokenizer(e.to_string()))?;
        let session = Session::builder(environment)
            .and_then(|b| Ok(b.with_intra_threads(threads)?))
            .and_then(|b| Ok(b.with_inter_threads(1)?))
            .and_then(|mut b| b.commit_from_file(&model))
            .map_err(|e| EncoderError::Model(e.to_string()))?;
        Ok(Encoder { session, tokenizer })
    }

    /// Embeds each text: mean of the token vectors over the attention mask, L2-normalised.
    pub fn encode(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EncoderError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encodings = texts
            .iter()
            .map(|text| self.tokenizer.encode(*text, true))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| EncoderError::Tokenize(e.to_string()))?;
        let batch = encodings.len();
        let seq = encodings
            .iter()
            .map(|e| e.get_ids().len())
            .max()
            .unwrap_or(0)
            .max(1);
        let mut ids = vec![0i64; batch * seq];
        let mut mask = vec![0i64; batch * seq];
        let mut types = vec![0i64; batch * seq];
        for (row, encoding) in encodings.iter().enumerate() {
            let at = row * seq;
            for (i, ((&id, &m), &t)) in encoding
                .get_ids()
                .iter()
                .zip(encoding.get_attention_mask())
                .zip(encoding.get_type_ids())
                .enumerate()
            {
                ids[at + i] = i64::from(id);
                mask[at + i] = i64::from(m);
                types[at + i] = i64::from(t);
            }
        }
        let shape = [batch, seq];
        let tensor = |data: &Vec<i64>| {
            Tensor::from_array((shape, data.clone()))
                .map_err(|e| EncoderError::Inference(e.to_string()))
        };
        let inputs = ort::inputs![
            "input_ids" => tensor(&ids)?,
            "attention_mask" => tensor(&mask)?,
            "token_type_ids" => tensor(&types)?,
        ];
        let outputs = self
            .session
            .run(inputs)
            .map_err(|e| EncoderError::Inference(e.to_string()))?;
        let (out_shape, hidden) = outputs["last_hidden_state"]
            .try_extract_tensor::<f32>()
            .map_err(|e| EncoderError::Inference(e.to_string()))?;
        let expected = [batch, seq, DIMENSIONS].map(|d| i64::try_from(d).unwrap_or(i64::MAX));
        if out_shape[..] != expected[..] {
            return Err(EncoderError::Inference(format!(
                "last_hidden_state has shape {out_shape:?}, expected {expected:?}"
            )));
        }
        Ok((0..batch)
            .map(|row| {
                mean_pool(
                    &hidden[row * seq * DIMENSIONS..][..seq * DIMENSIONS],
                    &mask[row * seq..][..seq],
                )
            })
            .collect())
    }
}

/// The mean of the unmasked token vectors, scaled to unit length.
fn mean_pool(hidden: &[f32], mask: &[i64]) -> Vec<f32> {
    let mut sum = vec![0f32; DIMENSIONS];
    let mut count = 0f32;
    for (token, _) in hidden
        .chunks_exact(DIMENSIONS)
        .zip(mask)
        .filter(|(_, m)| **m != 0)
    {
        for (s, v) in sum.iter_mut().zip(token) {
            *s += v;
        }
        count += 1.0;
    }
    let count = count.max(1.0);
    sum.iter_mut().for_each(|s| *s /= count);
    normalise(&mut sum);
    sum
}

pub fn normalise(vector: &mut [f32]) {
    let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        vector.iter_mut().for_each(|v| *v /= norm);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_ignores_padding_and_normalises() {
        let mut hidden = vec![0f32; 3 * DIMENSIONS];
        hidden[0] = 1.0;
        hidden[DIMENSIONS + 1] = 1.0;
        // A padded position with a large value that must not count.
        hidden[2 * DIMENSIONS + 2] = 100.0;
        let pooled = mean_pool(&hidden, &[1, 1, 0]);
        let half = 1.0 / 2f32.sqrt();
        assert!((pooled[0] - half).abs() < 1e-6 && (pooled[1] - half).abs() < 1e-6);
        assert_eq!(pooled[2], 0.0);
    }
}
