//! Text: Keras's `Tokenizer` and `text_to_word_sequence`.

use super::{invalid, Result};
use std::collections::{BTreeSet, HashMap};

/// Keras's default `filters`: punctuation, tab and newline (not the apostrophe).
pub const DEFAULT_FILTERS: &str = "!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n";

/// Splits a text into words like `keras.preprocessing.text.text_to_word_sequence`:
/// lower-case (if `lower`, Unicode-aware like Python's `str.lower`), replace every
/// character of `filters` by `split`, split on `split`, drop empty pieces.
///
/// Errors on an empty `split` (Python raises `ValueError: empty separator`).
pub fn text_to_word_sequence(
    text: &str,
    filters: &str,
    lower: bool,
    split: &str,
) -> Result<Vec<String>> {
    if split.is_empty() {
        return Err(invalid(
            "text_to_word_sequence",
            "empty split separator; use \" \" (the Keras default)",
        ));
    }
    Ok(words(text, filters, lower, split))
}

fn words(text: &str, filters: &str, lower: bool, split: &str) -> Vec<String> {
    let lowered;
    let text = if lower {
        lowered = text.to_lowercase();
        &lowered
    } else {
        text
    };
    let mut translated = String::with_capacity(text.len());
    for c in text.chars() {
        if filters.contains(c) {
            translated.push_str(split);
        } else {
            translated.push(c);
        }
    }
    translated
        .split(split)
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A word tokenizer with the semantics of `keras.preprocessing.text.Tokenizer` (word level).
///
/// `fit_on_texts` counts words; `word_index` ranks them by descending count, ties broken by
/// first appearance (Keras sorts its insertion-ordered `word_counts` with a stable sort), with
/// indices from 1 (0 is left for padding) and the `oov_token`, if any, at index 1.
/// `texts_to_sequences` maps words to indices, keeping only indices `< num_words` when
/// `num_words` is set (`Some(0)` counts as unset, as in Keras) and mapping unknown or dropped
/// words to the OOV index when there is an `oov_token` (otherwise they are skipped).
///
/// ```
/// use kiln_layers::preprocessing::Tokenizer;
/// let mut t = Tokenizer::new().with_oov_token("<OOV>");
/// t.fit_on_texts(&["I love my dog", "I love my cat", "You love my dog!"]);
/// assert_eq!(t.word_index()["love"], 2);
/// assert_eq!(t.texts_to_sequences(&["i really love my dog"]), vec![vec![4, 1, 2, 3, 5]]);
/// ```
#[derive(Clone, Debug)]
pub struct Tokenizer {
    num_words: Option<usize>,
    filters: String,
    lower: bool,
    split: String,
    oov_token: Option<String>,
    document_count: usize,
    /// Words in first-appearance order with their counts (Keras's `OrderedDict`).
    counts: Vec<(String, usize)>,
    position: HashMap<String, usize>,
    docs: HashMap<String, usize>,
    word_index: HashMap<String, usize>,
    index_word: HashMap<usize, String>,
}

impl Default for Tokenizer {
    fn default() -> Self {
        Tokenizer {
            num_words: None,
            filters: DEFAULT_FILTERS.to_owned(),
            lower: true,
            split: " ".to_owned(),
            oov_token: None,
            document_count: 0,
            counts: Vec::new(),
            position: HashMap::new(),
            docs: HashMap::new(),
            word_index: HashMap::new(),
            index_word: HashMap::new(),
        }
    }
}

impl Tokenizer {
    /// A tokenizer with Keras's defaults: all words, [`DEFAULT_FILTERS`], lower-casing,
    /// split on `' '`, no OOV token.
    pub fn new() -> Self {
        Self::default()
    }
    /// Keep only word indices `< num_words` (the most frequent words, and the OOV token) in
    /// `texts_to_sequences`.
    pub fn with_num_words(mut self, num_words: usize) -> Self {
        self.num_words = Some(num_words);
        self
    }
    /// Characters replaced by the separator before splitting.
    pub fn with_filters(mut self, filters: &str) -> Self {
        self.filters = filters.to_owned();
        self
    }
    /// Whether texts are lower-cased.
    pub fn with_lower(mut self, lower: bool) -> Self {
        self.lower = lower;
        self
    }
    /// The word separator; errors if empty.
    pub fn with_split(mut self, split: &str) -> Result<Self> {
        if split.is_empty() {
            return Err(invalid(
                "Tokenizer",
                "empty split separator; use \" \" (the Keras default)",
            ));
        }
        self.split = split.to_owned();
        Ok(self)
    }
    /// The out-of-vocabulary token, given index 1.
    pub fn with_oov_token(mut self, token: &str) -> Self {
        self.oov_token = Some(token.to_owned());
        self
    }

    /// `num_words` as configured.
    pub fn num_words(&self) -> Option<usize> {
        self.num_words
    }
    /// The filter characters.
    pub fn filters(&self) -> &str {
        &self.filters
    }
    /// Whether texts are lower-cased.
    pub fn lower(&self) -> bool {
        self.lower
    }
    /// The separator.
    pub fn split(&self) -> &str {
        &self.split
    }
    /// The OOV token, if any.
    pub fn oov_token(&self) -> Option<&str> {
        self.oov_token.as_deref()
    }

    /// Splits one text the way this tokenizer does.
    pub fn tokenize(&self, text: &str) -> Vec<String> {
        words(text, &self.filters, self.lower, &self.split)
    }

    /// Updates the vocabulary from `texts` (cumulative over calls, like Keras) and rebuilds
    /// `word_index`.
    pub fn fit_on_texts<S: AsRef<str>>(&mut self, texts: &[S]) {
        for text in texts {
            self.document_count += 1;
            let seq = self.tokenize(text.as_ref());
            let mut seen = BTreeSet::new();
            for w in seq {
                match self.position.get(&w) {
                    Some(&p) => self.counts[p].1 += 1,
                    None => {
                        self.position.insert(w.clone(), self.counts.len());
                        self.counts.push((w.clone(), 1));
                    }
                }
                seen.insert(w);
            }
            for w in seen {
                *self.docs.entry(w).or_insert(0) += 1;
            }
        }
        let mut ranked: Vec<&(String, usize)> = self.counts.iter().collect();
        // Stable: ties keep first-appearance order.
        ranked.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
        let vocab = self
            .oov_token
            .iter()
            .chain(ranked.into_iter().map(|(w, _)| w));
        self.word_index.clear();
        for (i, w) in vocab.enumerate() {
            // `dict(zip(...))`: a repeated word (an OOV token that is also a word) keeps its
            // last index, as in Keras.
            self.word_index.insert(w.clone(), i + 1);
        }
        self.index_word = self
            .word_index
            .iter()
            .map(|(w, &i)| (i, w.clone()))
            .collect();
    }

    /// Maps each text to its word indices (see the type's documentation for `num_words`
    /// and the OOV token). Before any fit, every text maps to an empty sequence.
    pub fn texts_to_sequences<S: AsRef<str>>(&self, texts: &[S]) -> Vec<Vec<i32>> {
        let limit = self.num_words.filter(|&n| n > 0);
        let oov = self
            .oov_token
            .as_ref()
            .and_then(|t| self.word_index.get(t).copied());
        texts
            .iter()
            .map(|text| {
                self.tokenize(text.as_ref())
                    .iter()
                    .filter_map(|w| match self.word_index.get(w) {
                        Some(&i) if limit.is_some_and(|n| i >= n) => oov,
                        Some(&i) => Some(i),
                        None => oov,
                    })
                    .map(|i| i32::try_from(i).unwrap_or(i32::MAX))
                    .collect()
            })
            .collect()
    }

    /// Maps index sequences back to space-joined words (Keras `sequences_to_texts`): indices
    /// `>= num_words` and unknown indices become the OOV token if there is one, else they
    /// are dropped.
    pub fn sequences_to_texts<S: AsRef<[i32]>>(&self, seqs: &[S]) -> Vec<String> {
        let limit = self.num_words.filter(|&n| n > 0);
        let oov = self
            .oov_token
            .as_ref()
            .and_then(|t| self.word_index.get(t))
            .and_then(|i| self.index_word.get(i))
            .map(String::as_str);
        seqs.iter()
            .map(|s| {
                let words: Vec<&str> = s
                    .as_ref()
                    .iter()
                    .filter_map(|&i| {
                        let word = usize::try_from(i)
                            .ok()
                            .and_then(|i| self.index_word.get(&i).map(|w| (i, w)));
                        match word {
                            Some((i, _)) if limit.is_some_and(|n| i >= n) => oov,
                            Some((_, w)) => Some(w.as_str()),
                            None => oov,
                        }
                    })
                    .collect();
                words.join(" ")
            })
            .collect()
    }

    /// Word → index (from 1), over every word seen (not cut at `num_words`, as in Keras).
    pub fn word_index(&self) -> &HashMap<String, usize> {
        &self.word_index
    }
    /// Index → word.
    pub fn index_word(&self) -> &HashMap<usize, String> {
        &self.index_word
    }
    /// Word counts in first-appearance order (Keras's `OrderedDict` `word_counts`).
    pub fn word_counts(&self) -> &[(String, usize)] {
        &self.counts
    }
    /// Number of fitted documents containing each word.
    pub fn word_docs(&self) -> &HashMap<String, usize> {
        &self.docs
    }
    /// Number of texts fitted so far.
    pub fn document_count(&self) -> usize {
        self.document_count
    }
    /// The vocabulary size to give an `Embedding` layer: `num_words` if set, else
    /// `word_index().len() + 1` (index 0 is padding).
    pub fn vocab_size(&self) -> usize {
        match self.num_words.filter(|&n| n > 0) {
            Some(n) => n,
            None => self.word_index.len() + 1,
        }
    }
}
