//! The words of the audit history's summaries (`audit_words`, lowercase), so that a free-text
//! search for text no summary contains answers without reading every row.
//!
//! A summary that contains the searched text contains each of its words, in their place: the
//! words inside it whole, the first one at the end of a summary word, the last at the start of
//! one (or whole, where the text begins or ends with a space), a text without spaces inside one
//! word. [`may_hold`] checks that against the vocabulary. Only texts of ASCII characters are
//! checked (the databases' `LOWER` and Rust's agree on those); others are left to the scan.
//!
//! Long words of hexadecimal digits (identity references, one per identity, in backticks) are
//! not kept: the vocabulary stays as small as the names people search for, and a searched word
//! of nothing but hexadecimal digits and backticks, which could be part of one, is not checked.
//!
//! The projection writes each word once: it remembers the words it wrote (once their batch
//! committed), and the rest go in with `ON CONFLICT DO NOTHING`.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};

use sqlx::AnyPool;

use crate::Error;

/// Words this long or longer made of hexadecimal digits and backticks are not kept.
const LONGEST_KEPT_HEX: usize = 24;

/// Whether `word` is made of hexadecimal digits and backticks only.
fn hexadecimal(word: &str) -> bool {
    word.bytes().all(|b| b.is_ascii_hexdigit() || b == b'`')
}

/// The words of `summary` the vocabulary keeps, lowercase.
fn words(summary: &str) -> impl Iterator<Item = Cow<'_, str>> {
    summary
        .split_whitespace()
        .filter(|w| w.len() < LONGEST_KEPT_HEX || !hexadecimal(w))
        .map(|w| {
            if w.bytes().any(|b| b.is_ascii_uppercase() || !b.is_ascii()) {
                Cow::Owned(w.to_lowercase())
            } else {
                Cow::Borrowed(w)
            }
        })
}

/// Words already in `audit_words`, shared with the writes that put them there.
#[derive(Clone, Default)]
pub struct Known(Arc<Mutex<HashSet<String>>>);

impl Known {
    /// The words of `summaries` not known to be stored.
    pub fn new_words<'a>(&self, summaries: impl Iterator<Item = &'a str>) -> BTreeSet<String> {
        let known = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut new = BTreeSet::new();
        for summary in summaries {
            for word in words(summary) {
                if !known.contains(word.as_ref()) && !new.contains(word.as_ref()) {
                    new.insert(word.into_owned());
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

/// Rows per INSERT statement.
const ROWS_PER_STATEMENT: usize = 1000;

pub async fn write(tx: &mut sqlx::AnyConnection, words: &BTreeSet<String>) -> Result<(), Error> {
    let all: Vec<&String> = words.iter().collect();
    for chunk in all.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO audit_words (word) VALUES {} ON CONFLICT (word) DO NOTHING",
            super::placeholders(chunk.len(), 1)
        );
        let mut statement = sqlx::query(sqlx::AssertSqlSafe(sql));
        for word in chunk {
            statement = statement.bind((*word).clone());
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

/// Whether some summary may contain `text`: false only when the vocabulary shows none does.
pub async fn may_hold(pool: &AnyPool, text: &str) -> Result<bool, Error> {
    let Some(words) = placed(text) else {
        return Ok(true);
    };
    for (word, place) in words {
        if hexadecimal(&word) {
            continue;
        }
        let found: Option<String> = match place {
            Place::Whole => {
                sqlx::query_scalar("SELECT word FROM audit_words WHERE word = $1 LIMIT 1")
                    .bind(word)
            }
            _ => sqlx::query_scalar(
                "SELECT word FROM audit_words WHERE word LIKE $1 ESCAPE '\\' LIMIT 1",
            )
            .bind(pattern(&word, place)),
        }
        .fetch_optional(pool)
        .await?;
        if found.is_none() {
            return Ok(false);
        }
    }
    Ok(true)
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
    fn only_words_not_yet_stored_are_new_and_long_hexadecimal_ones_never() {
        let known = Known::default();
        let reference = "`0123456789abcdef0123456789abcdef`";
        let summary = format!("Ada overrode `x` for identity {reference}");
        let new = known.new_words([summary.as_str(), "ada disabled `x` #12"].into_iter());
        assert_eq!(
            new.iter().map(String::as_str).collect::<Vec<_>>(),
            vec![
                "#12", "`x`", "ada", "disabled", "for", "identity", "overrode"
            ]
        );
        known.stored(new.into_iter());
        let new = known.new_words(["ada renamed `y` `cafe`"].into_iter());
        assert_eq!(
            new.iter().map(String::as_str).collect::<Vec<_>>(),
            vec!["`cafe`", "`y`", "renamed"]
        );
        assert!(hexadecimal("`0af`") && !hexadecimal("`0ag`"));
    }
}
