//! Python `re` patterns, rewritten for the Rust regex engine (`fancy-regex`).
//!
//! REGEX conditions were written for Flagsmith, whose engine uses Python's `re`. The two syntaxes
//! agree on almost everything; where they disagree, a pattern would silently match different
//! values here than in a Flagsmith SDK. This rewrite closes the gaps that realistic patterns hit:
//!
//! - `$` also matches before a final newline in Python (unless in multi-line mode);
//! - `\Z` is Rust's `\z`; `\xhh`, `\uhhhh`, `\Uhhhhhhhh` and octal escapes have other spellings;
//! - inside a character class, `[`, `&&`, `--` and `~~` are plain characters in Python but set
//!   syntax in Rust (`[[:alpha:]]` is a POSIX class there, three literals and a `]` in Python);
//! - `{` that does not start a valid repetition is a literal in Python, an error in Rust;
//! - escapes Python rejects (`\p`, `\h`, `\G`, `\z`, ...) make the pattern invalid, as there.
//!
//! `None` means Python would reject the pattern, or it uses `\N{NAME}` (which would need the
//! Unicode name table): the condition then never matches. The one other known difference is a
//! quantified look-around (`(?=a)*`), which Python accepts and `fancy-regex` refuses.

use std::fmt::Write;

/// Translates a Python pattern into an equivalent `fancy-regex` pattern.
pub(crate) fn translate(pattern: &str) -> Option<String> {
    let chars: Vec<char> = pattern.chars().collect();
    let multiline = global_flags(&chars).contains('m');
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' => {
                i = escape(&chars, i + 1, false, &mut out)?;
                continue;
            }
            '[' => {
                i = class(&chars, i + 1, &mut out)?;
                continue;
            }
            '$' if !multiline => out.push_str(r"(?=\n?\z)"),
            '{' => match repetition(&chars, i) {
                Some((end, text)) => {
                    out.push_str(&text);
                    i = end;
                    continue;
                }
                None => out.push_str(r"\{"),
            },
            '}' => out.push_str(r"\}"),
            _ => out.push(c),
        }
        i += 1;
    }
    Some(out)
}

/// The flags of a leading `(?flags)` group, where Python allows global flags.
fn global_flags(chars: &[char]) -> String {
    if chars.len() > 2 && chars[0] == '(' && chars[1] == '?' {
        let flags: String = chars[2..]
            .iter()
            .take_while(|c| c.is_ascii_alphabetic())
            .collect();
        if chars.get(2 + flags.len()) == Some(&')') {
            return flags;
        }
    }
    String::new()
}

/// A literal character, spelled so that no Rust regex syntax can read it as anything else.
fn literal(c: char, out: &mut String) {
    if c.is_alphanumeric() || c == ' ' || c == '_' {
        out.push(c);
    } else {
        let _ = write!(out, "\\x{{{:x}}}", c as u32);
    }
}

/// `{m}`, `{m,}`, `{,n}`, `{m,n}` at `start` (possibly followed by `?`), as Rust writes it.
fn repetition(chars: &[char], start: usize) -> Option<(usize, String)> {
    let close = chars[start..].iter().position(|c| *c == '}')? + start;
    let inner: String = chars[start + 1..close].iter().collect();
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let text = match inner.split_once(',') {
        None if !inner.is_empty() && digits(&inner) => format!("{{{inner}}}"),
        Some((low, high))
            if digits(low) && digits(high) && !(low.is_empty() && high.is_empty()) =>
        {
            let low = if low.is_empty() { "0" } else { low };
            format!("{{{low},{high}}}")
        }
        _ => return None,
    };
    Some((close + 1, text))
}

/// Reads `count` hex digits at `at`.
fn hex(chars: &[char], at: usize, count: usize) -> Option<u32> {
    let digits: String = chars.get(at..at + count)?.iter().collect();
    if digits.len() != count || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(&digits, 16).ok()
}

/// Translates the escape whose letter is at `at` (just after the backslash); returns the index
/// after it.
fn escape(chars: &[char], at: usize, in_class: bool, out: &mut String) -> Option<usize> {
    let c = *chars.get(at)?;
    let next = at + 1;
    match c {
        'd' | 'D' | 's' | 'S' | 'w' | 'W' => {
            out.push('\\');
            out.push(c);
            Some(next)
        }
        'A' | 'b' | 'B' if !in_class => {
            out.push('\\');
            out.push(c);
            Some(next)
        }
        'Z' if !in_class => {
            out.push_str(r"\z");
            Some(next)
        }
        'b' => {
            literal('\u{8}', out);
            Some(next)
        }
        'a' | 'f' | 'n' | 'r' | 't' | 'v' => {
            let value = match c {
                'a' => '\u{7}',
                'f' => '\u{c}',
                'n' => '\n',
                'r' => '\r',
                't' => '\t',
                _ => '\u{b}',
            };
            literal(value, out);
            Some(next)
        }
        'x' | 'u' | 'U' => {
            let count = match c {
                'x' => 2,
                'u' => 4,
                _ => 8,
            };
            literal(char::from_u32(hex(chars, next, count)?)?, out);
            Some(next + count)
        }
        '0'..='7' if c == '0' || in_class || is_three_octal(chars, at) => {
            let digits: String = chars[at..]
                .iter()
                .take(3)
                .take_while(|d| d.is_digit(8))
                .collect();
            let value = u32::from_str_radix(&digits, 8)
                .ok()
                .filter(|v| *v <= 0o377)?;
            literal(char::from_u32(value)?, out);
            Some(at + digits.len())
        }
        '1'..='9' if !in_class => {
            // A group reference, one or two digits.
            let mut end = next;
            if chars.get(next).is_some_and(char::is_ascii_digit) {
                end += 1;
            }
            out.push('\\');
            out.extend(&chars[at..end]);
            Some(end)
        }
        c if c.is_ascii_alphanumeric() => None,
        c => {
            literal(c, out);
            Some(next)
        }
    }
}

fn is_three_octal(chars: &[char], at: usize) -> bool {
    chars
        .get(at..at + 3)
        .is_some_and(|digits| digits.iter().all(|d| d.is_digit(8)))
}

/// Translates a character class whose content starts at `at`; returns the index after its `]`.
fn class(chars: &[char], at: usize, out: &mut String) -> Option<usize> {
    out.push('[');
    let mut i = at;
    if chars.get(i) == Some(&'^') {
        out.push('^');
        i += 1;
    }
    let first = i;
    loop {
        if *chars.get(i)? == ']' && i > first {
            out.push(']');
            return Some(i + 1);
        }
        let (low, next) = class_member(chars, i)?;
        out.push_str(&low);
        i = next;
        // `x-y` is a range unless the '-' is the last character of the class.
        if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|c| *c != ']') {
            let (high, next) = class_member(chars, i + 1)?;
            out.push('-');
            out.push_str(&high);
            i = next;
        }
    }
}

/// One member of a class (a character or an escape), translated; and the index after it.
fn class_member(chars: &[char], at: usize) -> Option<(String, usize)> {
    let mut text = String::new();
    let next = if *chars.get(at)? == '\\' {
        escape(chars, at + 1, true, &mut text)?
    } else {
        literal(chars[at], &mut text);
        at + 1
    };
    Some((text, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, value: &str) -> Option<bool> {
        let translated = translate(pattern)?;
        let regex = fancy_regex::Regex::new(&format!(r"\A(?:{translated})")).ok()?;
        regex.is_match(value).ok()
    }

    #[test]
    fn dollar_also_matches_before_a_final_newline() {
        assert_eq!(matches("foo$", "foo\n"), Some(true));
        assert_eq!(matches("foo$", "foo\nx"), Some(false));
        assert_eq!(matches(r"foo\Z", "foo\n"), Some(false));
        assert_eq!(matches("(?m)^b$", "b\nc"), Some(true));
    }

    #[test]
    fn classes_have_no_set_syntax() {
        assert_eq!(matches("[[:alpha:]]+", "foo"), Some(false));
        assert_eq!(matches("[[:alpha:]]+", ":]"), Some(true));
        assert_eq!(matches("[a-z&&[^b]]", "&]"), Some(true));
        assert_eq!(matches("[a-z&&[^b]]", "a"), Some(false));
        assert_eq!(matches("[]a]", "]"), Some(true));
        assert_eq!(matches("[a-]", "-"), Some(true));
        // Python rejects a range from a category.
        assert_eq!(matches(r"[\d-z]", "-"), None);
        assert_eq!(matches("[^a]", "b"), Some(true));
        assert_eq!(matches("[a-z-0]", "-"), Some(true));
        assert_eq!(matches("[a-z-0]", "0"), Some(true));
        assert_eq!(matches("[a-z-0]", "5"), Some(false));
        assert_eq!(matches(r"[\x41-\x43]", "B"), Some(true));
        assert_eq!(matches(r"[\b]", "\u{8}"), Some(true));
    }

    #[test]
    fn escapes_are_read_as_python_reads_them() {
        assert_eq!(matches(r"\x41", "A"), Some(true));
        assert_eq!(matches(r"\u00e9", "é"), Some(true));
        assert_eq!(matches(r"\101", "A"), Some(true));
        assert_eq!(matches(r"\0", "\0"), Some(true));
        assert_eq!(matches(r"(a)\1", "aa"), Some(true));
        assert_eq!(matches(r"\-\/\'", "-/'"), Some(true));
        for rejected in [
            r"\p{L}",
            r"\h",
            r"\G",
            r"\K",
            r"\z",
            r"\Qa\E",
            r"\x4",
            r"\N{DIGIT ONE}",
        ] {
            assert_eq!(translate(rejected), None, "{rejected}");
        }
    }

    #[test]
    fn braces_that_are_not_repetitions_are_literal() {
        assert_eq!(matches("a{2}", "aa"), Some(true));
        assert_eq!(matches("a{,2}b", "ab"), Some(true));
        assert_eq!(matches("a{x}", "a{x}"), Some(true));
        assert_eq!(matches("{}", "{}"), Some(true));
    }
}
