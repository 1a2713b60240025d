//! The words of the audit history's summaries (`audit_words`: each lowercase word with the first
//! position it appeared at), so that a free-text search for text no summary contains answers
//! without reading every row, and one for text that first appeared late reads only the rows
//! since.
//!
//! A summary that contains the searched text contains each of its words, in their place: the
//! words inside it whole, the first one at the end of a summary word, the last at the start of
//! one (or whole, where the text begins or ends with a space), a text without spaces inside one
//! word. [`earliest`] checks that against the vocabulary: no such word means no row matches,
//! and a row that matches comes at or after each word's first appearance. Only texts of ASCII
//! characters are checked (the databases' `LOWER` and Rust's agree on those); others are left
//! to the scan.
//!
//! The projection writes each word once: it remembers the words it wrote (once their batch
//! committed), and the rest go in with `ON CONFLICT DO NOTHING`, so a word seen again after a
//! restart keeps its first position.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use sqlx::AnyPool;

use crate::Error;

/// The words of `summary`, as the search compares them.
fn words(summary: &str) -> impl Iterator<Item = String> + '_ {
    summary.split_whitespace().map(str::to_lowercase)
}

/// Words already in `audit_words`, shared with the writes that put them there.
#[derive(Clone, Default)]
pub struct Known(Arc<Mutex<HashSet<String>>>);

impl Known {
    /// The words of `summaries` (each with its position) not known to be stored, each with the
    /// first position it has in them.
    pub fn new_words<'a>(
        &self,
        summaries: impl Iterator<Item = (&'a str, u64)>,
    ) -> BTreeMap<String, u64> {
        let known = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut new = BTreeMap::new();
        for (summary, position) in summaries {
            for word in words(summary) {
                if !known.contains(&word) {
                    new.entry(word).or_insert(position);
                }
            }
        }
        new
    }

    /// Remembers `words` as stored (after their batch committed).
    pub fn stored(&self, words: impl Iterator<Item = String>) {
        let mut known = self.0.lock().unwrap_or_else(|e| e.into_inner());
        known.extend(words);
    }
}

/// Rows per INSERT statement (two parameters each).
const ROWS_PER_STATEMENT: usize = 500;

pub async fn write(
    tx: &mut sqlx::AnyConnection,
    words: &BTreeMap<String, u64>,
) -> Result<(), Error> {
    let all: Vec<(&String, &u64)> = words.iter().collect();
    for chunk in all.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO audit_words (word, first_position) VALUES {} \
             ON CONFLICT (word) DO NOTHING",
            super::placeholders(chunk.len(), 2)
        );
        let mut statement = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (word, position) in chunk {
            statement = statement.bind((*word).clone()).bind(**position as i64);
        }
        statement.execute(&mut *tx).await?;
    }
    Ok(())
}

/// How one word of a searched text must appear in a summary word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Whole,
    Start,
    End,
    Inside,
}

/// The words of `text` (lowercase), each with how it must appear; `None` for a text this check
/// leaves to the scan (empty, or not ASCII).
fn placed(text: &str) -> Option<Vec<(String, Place)>> {
    if !text.is_ascii() {
        return None;
    }
    let text = text.to_lowercase();
    let words: Vec<&str> = text.split_whitespace().collect();
    let last = words.len().checked_sub(1)?;
    let (open_start, open_end) = (
        text.starts_with(|c: char| c.is_whitespace()),
        text.ends_with(|c: char| c.is_whitespace()),
    );
    Some(
        words
            .iter()
            .enumerate()
            .map(|(i, word)| {
                let begins = i > 0 || open_start;
                let ends = i < last || open_end;
                let place = match (begins, ends) {
                    (true, true) => Place::Whole,
                    (true, false) => Place::Start,
                    (false, true) => Place::End,
                    (false, false) => Place::Inside,
                };
                (word.to_string(), place)
            })
            .collect(),
    )
}

/// `LIKE` pattern for `word` in `place`, its own `%`, `_` and `\` taken literally.
fn pattern(word: &str, place: Place) -> String {
    let mut escaped = String::new();
    for c in word.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    match place {
        Place::Whole => escaped,
        Place::Start => format!("{escaped}%"),
        Place::End => format!("%{escaped}"),
        Place::Inside => format!("%{escaped}%"),
    }
}

/// What the vocabulary says of a search for `text`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Earliest {
    /// The vocabulary cannot tell (the text is not checked).
    Unknown,
    /// No summary contains the text.
    Nowhere,
    /// A summary that contains it is at or after this position.
    From(u64),
}

pub async fn earliest(pool: &AnyPool, text: &str) -> Result<Earliest, Error> {
    let Some(words) = placed(text) else {
        return Ok(Earliest::Unknown);
    };
    let mut from = 0;
    for (word, place) in words {
        let first: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(first_position) FROM audit_words WHERE word LIKE $1 ESCAPE '\\'",
        )
        .bind(pattern(&word, place))
        .fetch_one(pool)
        .await?;
        match first {
            None => return Ok(Earliest::Nowhere),
            Some(position) => from = from.max(position as u64),
        }
    }
    Ok(Earliest::From(from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_word_is_placed_where_a_summary_must_hold_it() {
        assert_eq!(
            placed("ENABLED `checkout"),
            Some(vec![
                ("enabled".to_string(), Place::End),
                ("`checkout".to_string(), Place::Start)
            ])
        );
        assert_eq!(
            placed(" in production "),
            Some(vec![
                ("in".to_string(), Place::Whole),
                ("production".to_string(), Place::Whole)
            ])
        );
        assert_eq!(
            placed("a b c").map(|w| w.iter().map(|(_, p)| *p).collect::<Vec<_>>()),
            Some(vec![Place::End, Place::Whole, Place::Start])
        );
        assert_eq!(placed("check"), Some(vec![("check".into(), Place::Inside)]));
        assert_eq!(placed("   "), None);
        assert_eq!(placed("überall"), None);
        assert_eq!(pattern("a_b%", Place::Inside), "%a\\_b\\%%");
    }

    #[test]
    fn only_words_not_yet_stored_are_new_each_with_its_first_position() {
        let known = Known::default();
        let new = known.new_words([("Ada enabled `x`", 3), ("ada disabled `x`", 4)].into_iter());
        assert_eq!(new.get("ada"), Some(&3));
        assert_eq!(new.get("disabled"), Some(&4));
        assert_eq!(new.len(), 4);
        known.stored(new.into_keys());
        let new = known.new_words([("ada renamed `y`", 9)].into_iter());
        assert_eq!(new.keys().collect::<Vec<_>>(), vec!["`y`", "renamed"]);
    }
}
