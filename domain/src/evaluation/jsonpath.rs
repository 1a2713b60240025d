//! JSONPath (RFC 9535) queries for condition properties such as `$.identity.identifier` or
//! `$.flags.NAME.enabled`.
//!
//! Flagsmith evaluates these with a full RFC 9535 implementation against the context as a JSON
//! document and takes the first node found. flaglog parses the same syntax but walks its typed
//! context directly (see `engine.rs`), so that a condition does not serialise the context, and so
//! that `$.flags.NAME` can resolve a flag on demand. Supported: child and descendant (`..`)
//! segments with name selectors (shorthand and quoted), wildcards, indices, slices, several
//! selectors in one bracket. Not supported: filter selectors (`?...`); a query using one finds
//! nothing.

/// One selector of a segment.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Selector {
    Name(String),
    Index(i64),
    Wildcard,
    Slice {
        start: Option<i64>,
        end: Option<i64>,
        step: Option<i64>,
    },
}

/// One segment of a query: its selectors apply to the node's children, or (descendant) to the
/// node and every node below it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Segment {
    pub(crate) descendant: bool,
    pub(crate) selectors: Vec<Selector>,
}

/// A parsed query: the segments after `$`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Query {
    pub(crate) segments: Vec<Segment>,
}

/// Why a query cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueryError {
    /// Not RFC 9535 syntax (Flagsmith then reads the property as a plain trait name).
    Syntax,
    /// Valid, but uses filters, which flaglog does not evaluate.
    Unsupported,
}

/// RFC 9535 bounds integers to the I-JSON exact range.
const MAX_INT: i64 = (1 << 53) - 1;

impl Query {
    pub(crate) fn parse(text: &str) -> Result<Query, QueryError> {
        let mut parser = Parser {
            chars: text.chars().collect(),
            pos: 0,
        };
        parser.query()
    }
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn peek_at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.pos + offset).copied()
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t' | '\n' | '\r')) {
            self.pos += 1;
        }
    }

    fn query(&mut self) -> Result<Query, QueryError> {
        if !self.eat('$') {
            return Err(QueryError::Syntax);
        }
        let mut segments = Vec::new();
        let mut unsupported = false;
        loop {
            let before_blanks = self.pos;
            self.skip_blanks();
            match self.peek() {
                None => {
                    // Blanks may only separate segments, not trail the query.
                    if self.pos != before_blanks {
                        return Err(QueryError::Syntax);
                    }
                    break;
                }
                Some('.') if self.peek_at(1) == Some('.') => {
                    self.pos += 2;
                    let selectors = if self.peek() == Some('[') {
                        self.bracketed(&mut unsupported)?
                    } else if self.eat('*') {
                        vec![Selector::Wildcard]
                    } else {
                        vec![Selector::Name(self.member_name()?)]
                    };
                    segments.push(Segment {
                        descendant: true,
                        selectors,
                    });
                }
                Some('.') => {
                    self.pos += 1;
                    let selector = if self.eat('*') {
                        Selector::Wildcard
                    } else {
                        Selector::Name(self.member_name()?)
                    };
                    segments.push(Segment {
                        descendant: false,
                        selectors: vec![selector],
                    });
                }
                Some('[') => {
                    let selectors = self.bracketed(&mut unsupported)?;
                    segments.push(Segment {
                        descendant: false,
                        selectors,
                    });
                }
                Some(_) => return Err(QueryError::Syntax),
            }
        }
        if unsupported {
            Err(QueryError::Unsupported)
        } else {
            Ok(Query { segments })
        }
    }

    /// `member-name-shorthand`: a letter, `_` or non-ASCII, then those or digits.
    fn member_name(&mut self) -> Result<String, QueryError> {
        let is_first = |c: char| c.is_ascii_alphabetic() || c == '_' || !c.is_ascii();
        let mut name = String::new();
        match self.peek() {
            Some(c) if is_first(c) => {
                name.push(c);
                self.pos += 1;
            }
            _ => return Err(QueryError::Syntax),
        }
        while let Some(c) = self.peek() {
            if is_first(c) || c.is_ascii_digit() {
                name.push(c);
                self.pos += 1;
            } else {
                break;
            }
        }
        Ok(name)
    }

    fn bracketed(&mut self, unsupported: &mut bool) -> Result<Vec<Selector>, QueryError> {
        self.pos += 1; // '['
        let mut selectors = Vec::new();
        loop {
            self.skip_blanks();
            match self.peek() {
                Some('\'' | '"') => selectors.push(Selector::Name(self.string_literal()?)),
                Some('*') => {
                    self.pos += 1;
                    selectors.push(Selector::Wildcard);
                }
                Some('?') => {
                    // A filter: skip to the closing bracket at depth zero, outside strings.
                    *unsupported = true;
                    self.skip_filter()?;
                }
                Some(c) if c == '-' || c == ':' || c.is_ascii_digit() => {
                    selectors.push(self.index_or_slice()?);
                }
                _ => return Err(QueryError::Syntax),
            }
            self.skip_blanks();
            if self.eat(',') {
                continue;
            }
            if self.eat(']') {
                return Ok(selectors);
            }
            return Err(QueryError::Syntax);
        }
    }

    fn skip_filter(&mut self) -> Result<(), QueryError> {
        let mut depth = 0usize;
        while let Some(c) = self.peek() {
            match c {
                '\'' | '"' => {
                    self.string_literal()?;
                    continue;
                }
                '[' | '(' => depth += 1,
                ')' => depth = depth.checked_sub(1).ok_or(QueryError::Syntax)?,
                ']' if depth == 0 => return Ok(()),
                ']' => depth -= 1,
                ',' if depth == 0 => return Ok(()),
                _ => {}
            }
            self.pos += 1;
        }
        Err(QueryError::Syntax)
    }

    fn string_literal(&mut self) -> Result<String, QueryError> {
        let quote = self.peek().ok_or(QueryError::Syntax)?;
        self.pos += 1;
        let mut out = String::new();
        loop {
            let c = self.peek().ok_or(QueryError::Syntax)?;
            self.pos += 1;
            match c {
                c if c == quote => return Ok(out),
                '\\' => {
                    let escaped = self.peek().ok_or(QueryError::Syntax)?;
                    self.pos += 1;
                    match escaped {
                        'b' => out.push('\u{8}'),
                        'f' => out.push('\u{c}'),
                        'n' => out.push('\n'),
                        'r' => out.push('\r'),
                        't' => out.push('\t'),
                        '/' => out.push('/'),
                        '\\' => out.push('\\'),
                        'u' => out.push(self.unicode_escape()?),
                        c if c == quote => out.push(c),
                        _ => return Err(QueryError::Syntax),
                    }
                }
                c if (c as u32) < 0x20 => return Err(QueryError::Syntax),
                c => out.push(c),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, QueryError> {
        let mut value = 0u32;
        for _ in 0..4 {
            let digit = self
                .peek()
                .and_then(|c| c.to_digit(16))
                .ok_or(QueryError::Syntax)?;
            value = value * 16 + digit;
            self.pos += 1;
        }
        Ok(value)
    }

    fn unicode_escape(&mut self) -> Result<char, QueryError> {
        let high = self.hex4()?;
        if (0xD800..0xDC00).contains(&high) {
            if !(self.eat('\\') && self.eat('u')) {
                return Err(QueryError::Syntax);
            }
            let low = self.hex4()?;
            if !(0xDC00..0xE000).contains(&low) {
                return Err(QueryError::Syntax);
            }
            let code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
            return char::from_u32(code).ok_or(QueryError::Syntax);
        }
        char::from_u32(high).ok_or(QueryError::Syntax)
    }

    fn integer(&mut self) -> Result<Option<i64>, QueryError> {
        let start = self.pos;
        let negative = self.eat('-');
        let digits_start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        let digits: String = self.chars[digits_start..self.pos].iter().collect();
        if digits.is_empty() {
            return if negative {
                Err(QueryError::Syntax)
            } else {
                self.pos = start;
                Ok(None)
            };
        }
        if (digits.len() > 1 && digits.starts_with('0')) || (negative && digits == "0") {
            return Err(QueryError::Syntax);
        }
        let magnitude: i64 = digits.parse().map_err(|_| QueryError::Syntax)?;
        if magnitude > MAX_INT {
            return Err(QueryError::Syntax);
        }
        Ok(Some(if negative { -magnitude } else { magnitude }))
    }

    fn index_or_slice(&mut self) -> Result<Selector, QueryError> {
        let start = self.integer()?;
        self.skip_blanks();
        if !self.eat(':') {
            return start.map(Selector::Index).ok_or(QueryError::Syntax);
        }
        self.skip_blanks();
        let end = self.integer()?;
        self.skip_blanks();
        let step = if self.eat(':') {
            self.skip_blanks();
            self.integer()?
        } else {
            None
        };
        Ok(Selector::Slice { start, end, step })
    }
}

/// The indices a slice selects from an array of `len` elements, in selection order (RFC 9535).
pub(crate) fn slice_indices(
    len: usize,
    start: Option<i64>,
    end: Option<i64>,
    step: Option<i64>,
) -> Vec<usize> {
    let step = step.unwrap_or(1);
    if step == 0 {
        return Vec::new();
    }
    let len = len as i64;
    let normalize = |i: i64| if i >= 0 { i } else { len + i };
    let mut out = Vec::new();
    if step > 0 {
        let lower = normalize(start.unwrap_or(0)).clamp(0, len);
        let upper = normalize(end.unwrap_or(len)).clamp(0, len);
        let mut i = lower;
        while i < upper {
            out.push(i as usize);
            i += step;
        }
    } else {
        let upper = normalize(start.unwrap_or(len - 1)).clamp(-1, len - 1);
        let lower = end.map_or(-1, |e| normalize(e).clamp(-1, len - 1));
        let mut i = upper;
        while i > lower {
            out.push(i as usize);
            i += step;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(query: &str) -> Vec<Vec<Selector>> {
        let segments = Query::parse(query).expect("valid query").segments;
        assert!(segments.iter().all(|segment| !segment.descendant));
        segments
            .into_iter()
            .map(|segment| segment.selectors)
            .collect()
    }

    #[test]
    fn parses_the_paths_flagsmith_segments_use() {
        assert_eq!(
            names("$.identity.identifier"),
            vec![
                vec![Selector::Name("identity".into())],
                vec![Selector::Name("identifier".into())]
            ]
        );
        assert_eq!(
            names("$.identity.traits['[$the.size$]']")[2],
            vec![Selector::Name("[$the.size$]".into())]
        );
        assert_eq!(
            names("$.identity.traits.サイズ")[2],
            vec![Selector::Name("サイズ".into())]
        );
        assert_eq!(
            names("$.a[0, -1, 1:3, ::-1, \"b\\u00e9\"]")[1],
            vec![
                Selector::Index(0),
                Selector::Index(-1),
                Selector::Slice {
                    start: Some(1),
                    end: Some(3),
                    step: None
                },
                Selector::Slice {
                    start: None,
                    end: None,
                    step: Some(-1)
                },
                Selector::Name("bé".into()),
            ]
        );
    }

    #[test]
    fn rejects_what_rfc_9535_rejects() {
        for bad in [
            "$.  i am not\" a valid jsonpath",
            "$.",
            "$.1abc",
            "$[01]",
            "$[-0]",
            "$['unterminated",
            "$.a ",
            "identity",
        ] {
            assert_eq!(Query::parse(bad), Err(QueryError::Syntax), "{bad}");
        }
        assert_eq!(
            Query::parse("$.a[?@.b == 'x']"),
            Err(QueryError::Unsupported)
        );
        assert_eq!(
            Query::parse("$..a[?@.b == 'x']"),
            Err(QueryError::Unsupported)
        );
        assert_eq!(Query::parse("$..."), Err(QueryError::Syntax));
    }

    #[test]
    fn descendant_segments_parse() {
        let query = Query::parse("$..plan[0]").expect("valid query");
        assert_eq!(
            query.segments,
            vec![
                Segment {
                    descendant: true,
                    selectors: vec![Selector::Name("plan".into())]
                },
                Segment {
                    descendant: false,
                    selectors: vec![Selector::Index(0)]
                },
            ]
        );
    }

    #[test]
    fn slices_select_like_rfc_9535() {
        assert_eq!(slice_indices(5, Some(1), Some(3), None), vec![1, 2]);
        assert_eq!(slice_indices(5, None, None, Some(-1)), vec![4, 3, 2, 1, 0]);
        assert_eq!(slice_indices(5, Some(-2), None, None), vec![3, 4]);
        assert_eq!(slice_indices(5, None, None, Some(0)), Vec::<usize>::new());
        assert_eq!(slice_indices(5, Some(1), Some(10), Some(2)), vec![1, 3]);
    }
}
