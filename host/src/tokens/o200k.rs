//! OpenAI's `o200k_base` byte-pair encoding, held compactly.
//!
//! The ranks are OpenAI's own `o200k_base.tiktoken` (one base64 token and its rank per line,
//! `host/assets/`). `tiktoken-rs` keeps them as two hash maps and a sorted list of owned byte
//! vectors: about 45 MB resident, more than half of the gateway's idle memory. Counting needs
//! neither decoding nor special tokens, so here every token's bytes sit back to back in one
//! arena, indexed by a hash table of ranks: about 4 MB. The merge rule is tiktoken's (always
//! merge the adjacent pair with the lowest rank, leftmost first), and a test checks the counts
//! against `tiktoken-rs` on a few thousand texts.

use base64::Engine;
use fancy_regex::Regex;
use hashbrown::HashTable;
use std::hash::BuildHasher;

/// `o200k_base.tiktoken` as published by OpenAI (SHA-256 446a9538…1a2d).
const RANKS: &str = include_str!("../../assets/o200k_base.tiktoken");

/// How `o200k_base` splits text into pieces before merging; the same expression tiktoken uses.
const PIECES: &str = concat!(
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    "|",
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    "|",
    r"\p{N}{1,3}",
    "|",
    r" ?[^\s\p{L}\p{N}]+[\r\n/]*",
    "|",
    r"\s*[\r\n]+",
    "|",
    r"\s+(?!\S)",
    "|",
    r"\s+",
);

type Rank = u32;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("line {line} of o200k_base.tiktoken is malformed")]
    Malformed { line: usize },
    #[error("line {line} of o200k_base.tiktoken has rank {rank}, expected the line's index")]
    RankOutOfOrder { line: usize, rank: u64 },
    #[error("the o200k_base split expression does not compile: {0}")]
    Pattern(#[from] Box<fancy_regex::Error>),
}

/// Why a text could not be counted exactly.
#[derive(Debug, thiserror::Error)]
#[error("the o200k_base split expression failed on this text: {0}")]
pub struct SplitError(#[from] Box<fancy_regex::Error>);

pub struct Encoding {
    /// Every token's bytes, in rank order, back to back.
    arena: Vec<u8>,
    /// Token `r` is `arena[starts[r]..starts[r + 1]]`.
    starts: Vec<u32>,
    /// Ranks, hashed by their token's bytes.
    index: HashTable<Rank>,
    hasher: rustc_hash::FxBuildHasher,
    pieces: Regex,
}

impl Encoding {
    pub fn load() -> Result<Self, LoadError> {
        let lines = RANKS.lines().count();
        let mut arena = Vec::with_capacity(RANKS.len() * 3 / 4);
        let mut starts = Vec::with_capacity(lines + 1);
        for (line, text) in RANKS.lines().enumerate() {
            let (token, rank) = text
                .split_once(' ')
                .ok_or(LoadError::Malformed { line: line + 1 })?;
            let rank: u64 = rank
                .parse()
                .map_err(|_| LoadError::Malformed { line: line + 1 })?;
            // Ranks are the line numbers, so a token's rank is its position in the arena.
            if rank != line as u64 {
                return Err(LoadError::RankOutOfOrder {
                    line: line + 1,
                    rank,
                });
            }
            starts.push(arena.len() as u32);
            base64::engine::general_purpose::STANDARD
                .decode_vec(token, &mut arena)
                .map_err(|_| LoadError::Malformed { line: line + 1 })?;
        }
        // The arena is smaller than the 3.5 MB file it is decoded from: u32 offsets suffice.
        starts.push(arena.len() as u32);
        arena.shrink_to_fit();

        let hasher = rustc_hash::FxBuildHasher;
        let mut index = HashTable::with_capacity(lines);
        for rank in 0..lines as Rank {
            let bytes = token_bytes(&arena, &starts, rank);
            index.insert_unique(hasher.hash_one(bytes), rank, |&r| {
                hasher.hash_one(token_bytes(&arena, &starts, r))
            });
        }
        let pieces = Regex::new(PIECES).map_err(Box::new)?;
        Ok(Self {
            arena,
            starts,
            index,
            hasher,
            pieces,
        })
    }

    /// Tokens in `text`, special-token markers counted as ordinary text (as `encode_ordinary`).
    pub fn count(&self, text: &str) -> Result<usize, SplitError> {
        let mut tokens = 0;
        for piece in self.pieces.find_iter(text) {
            tokens += self.count_piece(piece.map_err(Box::new)?.as_str().as_bytes());
        }
        Ok(tokens)
    }

    fn rank(&self, bytes: &[u8]) -> Option<Rank> {
        self.index
            .find(self.hasher.hash_one(bytes), |&rank| {
                token_bytes(&self.arena, &self.starts, rank) == bytes
            })
            .copied()
    }

    /// Tokens one piece merges into.
    fn count_piece(&self, piece: &[u8]) -> usize {
        if piece.len() <= 1 || self.rank(piece).is_some() {
            return usize::from(!piece.is_empty());
        }
        // `parts[i]` is where the i-th current part starts, and the rank of merging it with the
        // next part (`Rank::MAX`: that merge is not a token). The last entry marks the end.
        let pair_rank = |parts: &[(usize, Rank)], i: usize| -> Rank {
            match parts.get(i + 2) {
                Some(&(end, _)) => self.rank(&piece[parts[i].0..end]).unwrap_or(Rank::MAX),
                None => Rank::MAX,
            }
        };
        let mut parts: Vec<(usize, Rank)> = (0..=piece.len()).map(|i| (i, Rank::MAX)).collect();
        for i in 0..piece.len() - 1 {
            parts[i].1 = pair_rank(&parts, i);
        }
        // The lowest rank wins; among equals, the leftmost (`min_by_key` keeps the first).
        let lowest = |parts: &[(usize, Rank)]| {
            parts[..parts.len() - 1]
                .iter()
                .enumerate()
                .map(|(i, &(_, rank))| (i, rank))
                .min_by_key(|&(_, rank)| rank)
                .filter(|&(_, rank)| rank != Rank::MAX)
        };
        while let Some((best, _)) = lowest(&parts) {
            parts.remove(best + 1);
            parts[best].1 = pair_rank(&parts, best);
            if best > 0 {
                parts[best - 1].1 = pair_rank(&parts, best - 1);
            }
        }
        parts.len() - 1
    }
}

fn token_bytes<'a>(arena: &'a [u8], starts: &[u32], rank: Rank) -> &'a [u8] {
    let rank = rank as usize;
    &arena[starts[rank] as usize..starts[rank + 1] as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Varied text: prose, Markdown tables, Rust, JSON, TOML, and scripts other than Latin.
    fn corpus() -> Vec<String> {
        let files = [
            include_str!("../../../README.md"),
            include_str!("../../../BENCHMARKS.md"),
            include_str!("../pipeline/mod.rs"),
            include_str!("../../../config/models.toml"),
            include_str!("../../../tests/fixtures/routing/task-classification.json"),
            include_str!("../../../tests/fixtures/cache/hard-negatives.json"),
        ];
        let mut texts: Vec<String> = files
            .iter()
            .flat_map(|file| file.split("\n\n").chain(file.lines()))
            .filter(|text| !text.trim().is_empty())
            .map(str::to_string)
            .collect();
        texts.extend(files.iter().map(|file| file.to_string()));
        texts.extend(
            [
                "Hello, world! I'M sure they'LL say it's fine, won't they? We'd've.",
                "1234567890 3.14159 -42 1e-9 0x1F 2026-11-22T02:05:54Z",
                "日本語のテキストを数えます。東京は晴れです。",
                "中文分词测试：今天天气很好，我们去公园散步吧。",
                "Привет, мир! Как дела? Ёжик в тумане.",
                "مرحبا بالعالم، كيف حالك اليوم؟",
                "नमस्ते दुनिया, आप कैसे हैं?",
                "emoji 🎉🚀👩‍👩‍👧‍👦 and ZWJ sequences 🏳️‍🌈, accents: café naïve Ærøskøbing",
                "tabs\tand\r\nwindows\r\n\r\nline   endings   \n\n\n   trailing   ",
                "<|endoftext|> <|im_start|>user special markers as plain text<|im_end|>",
                "  leading spaces, ALLCAPS WORDS, camelCaseIdentifiers and snake_case_names",
                "https://example.com/a/b?c=d&e=f#g /usr/local/bin//// \\server\\share",
            ]
            .map(str::to_string),
        );
        texts
    }

    #[test]
    fn counts_match_tiktoken() {
        let encoding = Encoding::load().expect("the bundled ranks load");
        let reference = tiktoken_rs::o200k_base().expect("tiktoken-rs loads o200k_base");
        let texts = corpus();
        assert!(texts.len() > 1000, "{} texts", texts.len());
        for text in &texts {
            let expected = reference.encode_ordinary(text).len();
            let counted = encoding.count(text).expect("splits");
            assert_eq!(counted, expected, "{text:?}");
        }
    }

    #[test]
    fn loads_every_rank() {
        let encoding = Encoding::load().expect("the bundled ranks load");
        assert_eq!(encoding.starts.len() - 1, 199_998);
        assert_eq!(encoding.rank(b"!"), Some(0));
        assert_eq!(encoding.rank(b"not a single token at all"), None);
    }
}
