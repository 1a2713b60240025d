//! The flags an identity was served that are not in their feature's own state, noted while
//! [`super::FlagListing::write_flags`] writes them: what identity analytics need besides the
//! environment's own states, with each value kept as the JSON the answer holds, so that
//! noting them costs a copy of a few bytes, not a second pass nor a clone of each value.

use std::ops::Range;

use serde_json::Value;

/// What [`ChangedFlags::with_capacity`] reserves per flag for its value's JSON.
pub const TYPICAL_VALUE_BYTES: usize = 16;

/// Flags in the order of the listing's features, each with its value as JSON text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangedFlags {
    flags: Vec<Noted>,
    /// The values' JSON (UTF-8, as serde_json writes it), one after the other.
    values: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Noted {
    index: u32,
    enabled: bool,
    value: Range<u32>,
}

/// One flag of [`ChangedFlags`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangedFlag<'a> {
    /// The feature's index in the listing's features.
    pub index: usize,
    pub enabled: bool,
    /// The value as JSON text (`null` for a flag left out of the answer, which has none
    /// written), as bytes: it is copied into requests, which are bytes.
    pub value_json: &'a [u8],
}

impl ChangedFlags {
    /// Room for `flags` flags of values of about [`TYPICAL_VALUE_BYTES`] each, so that noting
    /// them does not grow the buffers as it goes.
    pub fn with_capacity(flags: usize) -> Self {
        ChangedFlags {
            flags: Vec::with_capacity(flags),
            values: Vec::with_capacity(flags * TYPICAL_VALUE_BYTES),
        }
    }

    /// Notes a flag whose value is `value`.
    pub fn push(&mut self, index: usize, enabled: bool, value: &Value) {
        let start = self.values.len();
        if serde_json::to_writer(&mut self.values, value).is_err() {
            // Writing a `Value` into a `Vec` cannot fail; were it to, it has no value.
            self.values.truncate(start);
            self.values.extend_from_slice(b"null");
        }
        self.note(index, enabled, start);
    }

    /// Notes a flag whose value is already written as JSON (`json`: as serde_json writes it).
    pub(crate) fn push_json(&mut self, index: usize, enabled: bool, json: &[u8]) {
        let start = self.values.len();
        self.values.extend_from_slice(json);
        self.note(index, enabled, start);
    }

    /// Notes a flag that was left out of the answer (a disabled flag where they are hidden).
    pub(crate) fn push_hidden(&mut self, index: usize) {
        let start = self.values.len();
        self.values.extend_from_slice(b"null");
        self.note(index, false, start);
    }

    fn note(&mut self, index: usize, enabled: bool, start: usize) {
        self.flags.push(Noted {
            index: index as u32,
            enabled,
            value: start as u32..self.values.len() as u32,
        });
    }

    pub fn len(&self) -> usize {
        self.flags.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flags.is_empty()
    }

    /// The flags in the order noted (the listing's).
    pub fn iter(&self) -> impl Iterator<Item = ChangedFlag<'_>> + '_ {
        self.flags.iter().map(|noted| ChangedFlag {
            index: noted.index as usize,
            enabled: noted.enabled,
            value_json: self
                .values
                .get(noted.value.start as usize..noted.value.end as usize)
                .unwrap_or(b"null"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flags_come_back_in_order_with_their_values_as_json() {
        let mut changed = ChangedFlags::default();
        changed.push(1, true, &json!("blue"));
        changed.push_json(4, false, b"{\"a\":[1,2]}");
        changed.push_hidden(7);
        changed.push(9, true, &json!(0.5));
        let got: Vec<(usize, bool, &[u8])> = changed
            .iter()
            .map(|f| (f.index, f.enabled, f.value_json))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, true, &b"\"blue\""[..]),
                (4, false, b"{\"a\":[1,2]}"),
                (7, false, b"null"),
                (9, true, b"0.5"),
            ]
        );
        assert_eq!(changed.len(), 4);
    }
}
