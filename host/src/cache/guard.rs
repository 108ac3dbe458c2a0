//! The false-hit guard: after the nearest neighbour passes the similarity threshold, reject it
//! when the two prompts differ in something small that flips the answer. Sentence embeddings
//! barely move for "enable" versus "disable", "15%" versus "25%" or "USD to EUR" versus "EUR to
//! USD", so these checks are lexical: numbers, negation, opposite words, a named entity or
//! term of measure (unit, language, currency) swapped for another in the same place, and words
//! swapped around a directional word ("from A to B", "A than B").
//!
//! Negation and direction are only judged between near-duplicates (most content words shared):
//! a heavy rewording expresses them in too many ways ("doesn't have" / "in the absence of") for
//! a word list, and its closeness in embedding space already comes from meaning, not wording.

use std::collections::BTreeSet;

/// Why a candidate was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conflict {
    Numbers,
    Negation,
    Opposites,
    Terms,
    Direction,
}

impl Conflict {
    pub fn as_str(self) -> &'static str {
        match self {
            Conflict::Numbers => "numbers",
            Conflict::Negation => "negation",
            Conflict::Opposites => "opposites",
            Conflict::Terms => "terms",
            Conflict::Direction => "direction",
        }
    }
}

/// The first meaning-flipping difference between the two prompts, if any.
pub fn conflict(query: &str, candidate: &str) -> Option<Conflict> {
    let a = Features::of(query);
    let b = Features::of(candidate);
    let near_duplicates = overlap(&a, &b) >= NEAR_DUPLICATE_OVERLAP;
    if a.numbers != b.numbers {
        return Some(Conflict::Numbers);
    }
    if near_duplicates && a.negated != b.negated {
        return Some(Conflict::Negation);
    }
    if opposed(&a.stems, &b.stems) {
        return Some(Conflict::Opposites);
    }
    if substituted(&a, &b) {
        return Some(Conflict::Terms);
    }
    if near_duplicates {
        let theirs = directed_pairs(&b.sequence);
        let swapped = directed_pairs(&a.sequence).into_iter().any(|(x, y)| {
            x != y && theirs.contains(&(y.clone(), x.clone())) && !theirs.contains(&(x, y))
        });
        if swapped {
            return Some(Conflict::Direction);
        }
    }
    None
}

/// The share of content words two prompts have in common above which they are near-duplicates.
const NEAR_DUPLICATE_OVERLAP: f64 = 0.5;

/// Words too common to carry meaning on their own.
const STOP_WORDS: &[&str] = &[
    "the", "a", "an", "this", "that", "these", "those", "my", "your", "its", "their", "our", "of",
    "i", "you", "we", "it", "is", "are", "was", "be", "do", "does", "did", "how", "what", "which",
    "who", "can", "could", "should", "would", "will", "from", "to", "into", "than", "and", "or",
    "in", "on", "for", "with", "me", "please", "some", "any", "all", "there", "here", "as", "by",
    "at", "about",
];

fn content_words(sequence: &[String]) -> BTreeSet<&str> {
    sequence
        .iter()
        .map(String::as_str)
        .filter(|w| !STOP_WORDS.contains(w))
        .collect()
}

/// Jaccard overlap of the content words.
fn overlap(a: &Features, b: &Features) -> f64 {
    let (x, y) = (content_words(&a.sequence), content_words(&b.sequence));
    let union = x.union(&y).count().max(1);
    x.intersection(&y).count() as f64 / union as f64
}

/// Whether a term one side names and the other never mentions stands where the other side has
/// such a term of its own (the same word before or after it): "capital of Australia" /
/// "capital of Austria". A term only one side names is an addition, which paraphrases make.
fn substituted(a: &Features, b: &Features) -> bool {
    let unmatched = |x: &Features, y: &Features| -> Vec<usize> {
        x.terms
            .iter()
            .filter(|(term, _)| !mentioned(term, &y.words))
            .map(|(_, position)| *position)
            .collect()
    };
    let (ours, theirs) = (unmatched(a, b), unmatched(b, a));
    let neighbour = |sequence: &[String], at: usize, offset: isize| {
        at.checked_add_signed(offset)
            .and_then(|i| sequence.get(i))
            .cloned()
    };
    ours.iter().any(|&p| {
        theirs.iter().any(|&q| {
            [-1, 1].iter().any(|&offset| {
                let mine = neighbour(&a.sequence, p, offset);
                mine.is_some() && mine == neighbour(&b.sequence, q, offset)
            })
        })
    })
}

/// Whether `words` has `term`, or a word it is a prefix of or that is a prefix of it (a typo,
/// "Python" / "Pythonic").
fn mentioned(term: &str, words: &BTreeSet<String>) -> bool {
    words
        .iter()
        .any(|w| w.starts_with(term) || (w.len() >= 4 && term.starts_with(w.as_str())))
}

/// (word before, word after) around each directional word, content words within three
/// positions, stemmed: "from checking to savings" gives (checking, savings).
fn directed_pairs(sequence: &[String]) -> BTreeSet<(String, String)> {
    let content =
        |w: &&String| !STOP_WORDS.contains(&w.as_str()) && !DIRECTIONAL.contains(&w.as_str());
    let mut pairs = BTreeSet::new();
    for (i, word) in sequence.iter().enumerate() {
        if !DIRECTIONAL.contains(&word.as_str()) {
            continue;
        }
        let before = &sequence[i.saturating_sub(3)..i];
        let after = &sequence[i + 1..(i + 4).min(sequence.len())];
        for left in before.iter().filter(content) {
            for right in after.iter().filter(content) {
                pairs.insert((stem(left), stem(right)));
            }
        }
    }
    pairs
}

/// Words whose stems, one on each side, mean opposite things.
const OPPOSITES: &[(&str, &str)] = &[
    ("enabl", "disabl"),
    ("buy", "sell"),
    ("increas", "decreas"),
    ("ascend", "descend"),
    ("advantag", "disadvantag"),
    ("add", "remov"),
    ("encrypt", "decrypt"),
    ("open", "clos"),
    ("upload", "download"),
    ("maximum", "minimum"),
    ("max", "min"),
    ("gain", "los"),
    ("start", "stop"),
    ("push", "pull"),
    ("largest", "smallest"),
    ("biggest", "smallest"),
    ("highest", "lowest"),
    ("longest", "shortest"),
    ("import", "export"),
    ("accept", "declin"),
    ("accept", "reject"),
    ("allow", "deny"),
    ("allow", "block"),
    ("speed up", "slow down"),
    ("compres", "decompres"),
    ("benefit", "risk"),
    ("lock", "unlock"),
    ("serializ", "deserializ"),
    ("mount", "unmount"),
    ("warmest", "coldest"),
    ("hottest", "coldest"),
    ("first", "last"),
    ("install", "uninstall"),
    ("rent", "buy"),
    ("read-only", "editabl"),
    ("healthy", "unhealthy"),
    ("uppercas", "lowercas"),
    ("upper", "lower"),
    ("for", "against"),
    ("pro", "con"),
    ("befor", "after"),
    ("abov", "below"),
    ("mor", "les"),
    ("mor", "fewer"),
    ("win", "los"),
    ("tru", "fals"),
    ("includ", "exclud"),
    ("connect", "disconnect"),
    ("appear", "disappear"),
    ("agre", "disagre"),
    ("lik", "dislik"),
    ("hid", "show"),
    ("left", "right"),
    ("north", "south"),
    ("east", "west"),
    ("up", "down"),
    ("succes", "failur"),
    ("pas", "fail"),
    ("valid", "invalid"),
    ("legal", "illegal"),
    ("possibl", "impossibl"),
    ("saf", "unsaf"),
    ("early", "lat"),
    ("cheap", "expensiv"),
    ("strong", "weak"),
    ("positiv", "negativ"),
    ("inbound", "outbound"),
    ("incoming", "outgoing"),
    ("credit", "debit"),
    ("borrow", "lend"),
    ("send", "receiv"),
    ("wak", "sleep"),
    ("join", "leav"),
    ("login", "logout"),
    ("sign in", "sign out"),
    ("subscrib", "unsubscrib"),
    ("follow", "unfollow"),
    ("zoom in", "zoom out"),
];

const NEGATIONS: &[&str] = &[
    "not", "no", "never", "none", "nothing", "nobody", "neither", "nor", "without", "cannot",
];

/// Words after which the order of the terms matters ("from A to B", "A beat B").
const DIRECTIONAL: &[&str] = &[
    "to", "into", "from", "than", "vs", "versus", "beat", "beats", "owe", "owes", "over",
];

/// Terms of measure: a different one on each side changes the answer.
const MEASURE_TERMS: &[&str] = &[
    // units
    "gram",
    "kilogram",
    "kg",
    "ounce",
    "pound",
    "lb",
    "ton",
    "tonne",
    "meter",
    "metre",
    "kilometer",
    "kilometre",
    "km",
    "centimeter",
    "cm",
    "millimeter",
    "mm",
    "mile",
    "feet",
    "foot",
    "inch",
    "yard",
    "liter",
    "litre",
    "milliliter",
    "ml",
    "gallon",
    "cup",
    "teaspoon",
    "tablespoon",
    "celsius",
    "fahrenheit",
    "kelvin",
    "byte",
    "kilobyte",
    "megabyte",
    "gigabyte",
    "terabyte",
    "kb",
    "mb",
    "gb",
    "tb",
    "second",
    "millisecond",
    "minute",
    "hour",
    "day",
    "week",
    "month",
    "year",
    "psi",
    "bar",
    "pascal",
    "watt",
    "kilowatt",
    "volt",
    "amp",
    "calorie",
    "joule",
    "acre",
    "hectare",
    // currencies
    "dollar",
    "euro",
    "yen",
    "yuan",
    "rupee",
    "usd",
    "eur",
    "gbp",
    "jpy",
    "cny",
    "bitcoin",
    // languages
    "english",
    "french",
    "german",
    "spanish",
    "italian",
    "portuguese",
    "dutch",
    "swedish",
    "norwegian",
    "danish",
    "finnish",
    "polish",
    "russian",
    "ukrainian",
    "greek",
    "turkish",
    "arabic",
    "hebrew",
    "hindi",
    "bengali",
    "urdu",
    "chinese",
    "mandarin",
    "cantonese",
    "japanese",
    "korean",
    "vietnamese",
    "thai",
    "indonesian",
    "malay",
    "swahili",
];

const NUMBER_WORDS: &[(&str, u64)] = &[
    ("zero", 0),
    ("two", 2),
    ("three", 3),
    ("four", 4),
    ("five", 5),
    ("six", 6),
    ("seven", 7),
    ("eight", 8),
    ("nine", 9),
    ("ten", 10),
    ("eleven", 11),
    ("twelve", 12),
    ("thirteen", 13),
    ("fourteen", 14),
    ("fifteen", 15),
    ("sixteen", 16),
    ("seventeen", 17),
    ("eighteen", 18),
    ("nineteen", 19),
    ("twenty", 20),
    ("thirty", 30),
    ("forty", 40),
    ("fifty", 50),
    ("sixty", 60),
    ("seventy", 70),
    ("eighty", 80),
    ("ninety", 90),
];

/// What the guard compares.
#[derive(Debug, Default)]
struct Features {
    /// Every token, lower-cased, in order.
    sequence: Vec<String>,
    /// Every word, lower-cased, for "does the other side mention it at all".
    words: BTreeSet<String>,
    stems: BTreeSet<String>,
    numbers: BTreeSet<String>,
    negated: bool,
    /// Named entities and terms of measure, lower-cased, with their first position.
    terms: Vec<(String, usize)>,
}

impl Features {
    fn of(text: &str) -> Self {
        let tokens = tokenize(text);
        let mut features = Features::default();
        let mut pending_number: Option<u64> = None;
        let mut sentence_start = true;
        for (position, token) in tokens.iter().enumerate() {
            let word = token.text.to_lowercase();
            let next = tokens.get(position + 1).map(|t| t.text.to_lowercase());
            // "one" is a pronoun as often as a number, and "thousands" alone is no count: a
            // multiplier counts after a number word, "one" only before a multiplier.
            match (number_word(&word), multiplier(&word), pending_number) {
                (Some(n), _, pending) => pending_number = Some(pending.unwrap_or(0) + n),
                (None, Some(m), Some(pending)) => pending_number = Some(pending.saturating_mul(m)),
                (None, None, pending)
                    if word == "one" && next.as_deref().and_then(multiplier).is_some() =>
                {
                    pending_number = Some(pending.unwrap_or(0) + 1);
                }
                (None, Some(_), None) | (None, None, None) => {}
                (None, None, Some(n)) => {
                    features.numbers.insert(n.to_string());
                    pending_number = None;
                }
            }
            if token.numeric {
                features.numbers.insert(word.replace(',', ""));
                sentence_start = false;
                continue;
            }
            if NEGATIONS.contains(&word.as_str())
                || word.ends_with("n't")
                || word.starts_with("non-")
                || word.starts_with("no-")
            {
                features.negated = true;
            }
            let stem = stem(&word);
            let entity = !sentence_start && token.capitalised;
            if (entity || is_measure_term(&word)) && !features.terms.iter().any(|(t, _)| *t == word)
            {
                features.terms.push((word.clone(), position));
            }
            features.stems.insert(stem);
            features.words.insert(word);
            sentence_start = token.ends_sentence;
        }
        if let Some(n) = pending_number {
            features.numbers.insert(n.to_string());
        }
        features.sequence = tokens.iter().map(|t| t.text.to_lowercase()).collect();
        // Bigrams, for opposites written as two words ("zoom in", "sign out").
        for pair in features.sequence.windows(2) {
            features.stems.insert(format!("{} {}", pair[0], pair[1]));
        }
        features
    }
}

fn multiplier(word: &str) -> Option<u64> {
    match word {
        "hundred" => Some(100),
        "thousand" => Some(1_000),
        "million" => Some(1_000_000),
        "billion" => Some(1_000_000_000),
        _ => None,
    }
}

/// A unit, currency or language, singular or plural.
fn is_measure_term(word: &str) -> bool {
    [Some(word), word.strip_suffix('s'), word.strip_suffix("es")]
        .into_iter()
        .flatten()
        .any(|w| MEASURE_TERMS.contains(&w))
}

fn number_word(word: &str) -> Option<u64> {
    NUMBER_WORDS
        .iter()
        .find(|(w, _)| *w == word)
        .map(|(_, n)| *n)
}

/// Whether one side has one word of an opposite pair, the other side the other word, and
/// neither has both.
fn opposed(a: &BTreeSet<String>, b: &BTreeSet<String>) -> bool {
    let has = |set: &BTreeSet<String>, stem: &str| set.contains(stem);
    OPPOSITES.iter().any(|(x, y)| {
        let (ax, ay, bx, by) = (has(a, x), has(a, y), has(b, x), has(b, y));
        (ax && !ay && by && !bx) || (ay && !ax && bx && !by)
    }) || prefixed_opposite(a, b)
        || prefixed_opposite(b, a)
}

/// "unlock" versus "lock", "disconnect" versus "connect", "decrypt" versus "crypt".
fn prefixed_opposite(a: &BTreeSet<String>, b: &BTreeSet<String>) -> bool {
    a.iter().any(|stem| {
        ["un", "dis", "de", "non"]
            .iter()
            .filter_map(|prefix| stem.strip_prefix(prefix))
            .any(|base| base.len() >= 4 && b.contains(base) && !a.contains(base))
    })
}

/// A crude English stemmer: enough to make "enabled", "enables" and "enabling" one word.
fn stem(word: &str) -> String {
    for suffix in ["ing", "ed", "es", "e", "s"] {
        if let Some(base) = word.strip_suffix(suffix)
            && base.len() >= 3
        {
            return base.to_string();
        }
    }
    word.to_string()
}

struct Token {
    text: String,
    numeric: bool,
    capitalised: bool,
    ends_sentence: bool,
}

/// Words (letters, digits, inner apostrophes and hyphens) and numbers (digits with inner `.`,
/// `,` or `:`, such as 3.8, 300,000 or 9:00).
fn tokenize(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens: Vec<Token> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, '.' | '?' | '!' | '\n') {
            if let Some(last) = tokens.last_mut() {
                last.ends_sentence = true;
            }
            i += 1;
            continue;
        }
        if !c.is_alphanumeric() {
            i += 1;
            continue;
        }
        let start = i;
        let mut numeric = c.is_ascii_digit();
        while i < chars.len() {
            let here = chars[i];
            let next = chars.get(i + 1).copied();
            let joins = match here {
                _ if here.is_alphanumeric() => true,
                '.' | ',' | ':' => {
                    numeric
                        && i > start
                        && chars[i - 1].is_ascii_digit()
                        && next.is_some_and(|n| n.is_ascii_digit())
                }
                '\'' | '\u{2019}' | '-' => next.is_some_and(char::is_alphabetic) && !numeric,
                _ => false,
            };
            if !joins {
                break;
            }
            i += 1;
        }
        let text: String = chars[start..i]
            .iter()
            .map(|c| if *c == '\u{2019}' { '\'' } else { *c })
            .collect();
        // "0x8007", "3rd" and "v2" are identifiers and ordinals: numbers for the guard.
        numeric = numeric || text.chars().any(|c| c.is_ascii_digit());
        let capitalised = text.chars().next().is_some_and(char::is_uppercase);
        tokens.push(Token {
            text,
            numeric,
            capitalised,
            ends_sentence: false,
        });
    }
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paraphrases_pass() {
        for (a, b) in [
            (
                "How do I enable dark mode?",
                "What is the way to turn on dark mode? How can I enable it",
            ),
            (
                "There are thousands of datasets in over 100 languages in the Hub.",
                "The Hub has thousands of datasets in more than one hundred languages.",
            ),
            (
                "Can't I reset it?",
                "Is it not possible for me to reset it?",
            ),
            ("Explain Rust ownership.", "Explain ownership in Rust."),
            (
                "It loads archives in non-streaming mode.",
                "Archives are loaded and unpacked, with no streaming involved.",
            ),
            ("It does not exist.", "No, it doesn't exist."),
            (
                "A builder for several thousand files.",
                "A builder for thousands of files, at once.",
            ),
        ] {
            assert_eq!(conflict(a, b), None, "{a} / {b}");
        }
    }

    #[test]
    fn meaning_flips_are_caught() {
        for (a, b, why) in [
            (
                "What is 15% of 80?",
                "What is 25% of 80?",
                Conflict::Numbers,
            ),
            (
                "Give me two ideas.",
                "Give me four ideas.",
                Conflict::Numbers,
            ),
            ("Is it safe?", "Is it not safe?", Conflict::Negation),
            (
                "Why does it compile?",
                "Why doesn't it compile?",
                Conflict::Negation,
            ),
            (
                "How do I enable 2FA?",
                "How do I disable 2FA?",
                Conflict::Opposites,
            ),
            (
                "How do I lock the screen?",
                "How do I unlock the screen?",
                Conflict::Opposites,
            ),
            (
                "What is the capital of Australia?",
                "What is the capital of Austria?",
                Conflict::Terms,
            ),
            (
                "Translate it into French.",
                "Translate it into German.",
                Conflict::Terms,
            ),
            (
                "Convert 5 km to miles.",
                "Convert 5 miles to km.",
                Conflict::Direction,
            ),
            (
                "Flights from London to Paris",
                "Flights from Paris to London",
                Conflict::Direction,
            ),
        ] {
            assert_eq!(conflict(a, b), Some(why), "{a} / {b}");
        }
    }
}
