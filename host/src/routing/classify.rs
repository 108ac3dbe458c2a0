//! Task classification by keywords: cheap, deterministic, and always available. It reads the
//! last user message, where the request's intent is stated.

use crate::config::TaskClass;

/// Lower-case cues per class. A cue that is a phrase matches as a substring; a single word
/// matches whole words only, so "sum" does not fire on "summer".
const CUES: &[(TaskClass, &[&str])] = &[
    (
        TaskClass::Code,
        &[
            "code",
            "function",
            "bug",
            "compile",
            "compiler",
            "python",
            "rust",
            "javascript",
            "typescript",
            "java",
            "sql",
            "regex",
            "refactor",
            "stack trace",
            "exception",
            "unit test",
            "api endpoint",
            "debug",
            "implement",
            "script",
            "class",
            "```",
        ],
    ),
    (
        TaskClass::Math,
        &[
            "calculate",
            "solve",
            "equation",
            "integral",
            "derivative",
            "probability",
            "prove",
            "theorem",
            "algebra",
            "geometry",
            "percent",
            "sum of",
            "how many",
            "math",
            "matrix",
            "factor",
        ],
    ),
    (
        TaskClass::Reasoning,
        &[
            "why",
            "analyze",
            "analyse",
            "compare",
            "evaluate",
            "trade-off",
            "tradeoffs",
            "pros and cons",
            "reason",
            "explain the difference",
            "should i",
            "implications",
            "strategy",
            "critique",
        ],
    ),
    (
        TaskClass::Creative,
        &[
            "poem",
            "story",
            "haiku",
            "lyrics",
            "creative",
            "fiction",
            "imagine",
            "slogan",
            "novel",
            "character",
            "screenplay",
            "joke",
            "limerick",
        ],
    ),
    (
        TaskClass::Summarization,
        &[
            "summarize",
            "summarise",
            "summary",
            "tl;dr",
            "tldr",
            "key points",
            "condense",
            "shorten",
            "recap",
            "in brief",
            "main points",
        ],
    ),
    (
        TaskClass::Translation,
        &[
            "translate",
            "translation",
            "in french",
            "in spanish",
            "in german",
            "in japanese",
            "in chinese",
            "into english",
            "to english",
            "into french",
            "into spanish",
            "into german",
        ],
    ),
    (
        TaskClass::Extraction,
        &[
            "extract",
            "parse",
            "json",
            "fields",
            "structured",
            "table of",
            "list all",
            "named entities",
            "classify",
            "csv",
            "schema",
        ],
    ),
];

/// Cue hits per class that has any, in the order of `CUES`.
pub fn cue_hits(text: &str) -> Vec<(TaskClass, usize)> {
    let lower = text.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric() && c != '\'' && c != '-')
        .filter(|w| !w.is_empty())
        .collect();
    CUES.iter()
        .map(|(class, cues)| {
            let hits = cues
                .iter()
                .filter(|cue| {
                    if cue.contains(' ') || !cue.chars().all(char::is_alphanumeric) {
                        lower.contains(*cue)
                    } else {
                        words.contains(cue)
                    }
                })
                .count();
            (*class, hits)
        })
        .filter(|(_, hits)| *hits > 0)
        .collect()
}

/// Each class's share of all cue hits (summing to 1), or nothing when no cue matched.
pub fn cue_shares(text: &str) -> Vec<(TaskClass, f32)> {
    let hits = cue_hits(text);
    let total: usize = hits.iter().map(|(_, n)| n).sum();
    hits.into_iter()
        .map(|(class, n)| (class, n as f32 / total as f32))
        .collect()
}

/// The class and a confidence in 0..1: the share of cue hits that went to the winner, scaled
/// down when there is little evidence. No cue at all means `chat` with low confidence.
pub fn classify(text: &str) -> (TaskClass, f32) {
    let hits = cue_hits(text);
    let total: usize = hits.iter().map(|(_, n)| n).sum();
    // The first class with the most hits wins ties, as listed in `CUES`.
    let Some(best) = hits
        .iter()
        .copied()
        .reduce(|best, next| if next.1 > best.1 { next } else { best })
    else {
        return (TaskClass::Chat, 0.3);
    };
    let share = best.1 as f32 / total as f32;
    let evidence = (best.1 as f32 / 3.0).min(1.0);
    (best.0, (share * (0.5 + 0.5 * evidence)).clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_obvious_class() {
        assert_eq!(
            classify("Write a Python function that reverses a list").0,
            TaskClass::Code
        );
        assert_eq!(
            classify("Summarize this article in three key points").0,
            TaskClass::Summarization
        );
        assert_eq!(
            classify("Translate 'good morning' into French").0,
            TaskClass::Translation
        );
        assert_eq!(
            classify("Write a haiku about autumn").0,
            TaskClass::Creative
        );
        assert_eq!(classify("Solve the equation 2x + 3 = 7").0, TaskClass::Math);
        assert_eq!(classify("hello there!").0, TaskClass::Chat);
    }

    #[test]
    fn whole_words_only_for_single_word_cues() {
        assert_eq!(classify("what a lovely summer").0, TaskClass::Chat);
    }
}
