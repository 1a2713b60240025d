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
    /// The values' JSON, one after the other.
    values: String,
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
    /// The value as JSON (`null` for a flag left out of the answer, which has none written).
    pub value_json: &'a str,
}

impl ChangedFlags {
    /// Room for `flags` flags of values of about [`TYPICAL_VALUE_BYTES`] each, so that noting
    /// them does not grow the buffers as it goes.
    pub fn with_capacity(flags: usize) -> Self {
        ChangedFlags {
            flags: Vec::with_capacity(flags),
            values: String::with_capacity(flags * TYPICAL_VALUE_BYTES),
        }
    }

    /// Notes a flag whose value is `value`.
    pub fn push(&mut self, index: usize, enabled: bool, value: &Value) {
        let start = self.values.len();
        // Writing a `Value` into a `String` cannot fail.
        let json = serde_json::to_string(value).unwrap_or_else(|_| "null".to_string());
        self.values.push_str(&json);
        self.note(index, enabled, start);
    }

    /// Notes a flag whose value is already written as JSON (`json`: UTF-8, as serde_json
    /// writes it).
    pub(crate) fn push_json(&mut self, index: usize, enabled: bool, json: &[u8]) {
        let start = self.values.len();
        match std::str::from_utf8(json) {
            Ok(text) => self.values.push_str(text),
            Err(_) => self.values.push_str("null"),
        }
        self.note(index, enabled, start);
    }

    /// Notes a flag that was left out of the answer (a disabled flag where they are hidden).
    pub(crate) fn push_hidden(&mut self, index: usize) {
        let start = self.values.len();
        self.values.push_str("null");
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
                .unwrap_or("null"),
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
        let got: Vec<(usize, bool, &str)> = changed
            .iter()
            .map(|f| (f.index, f.enabled, f.value_json))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, true, "\"blue\""),
                (4, false, "{\"a\":[1,2]}"),
                (7, false, "null"),
                (9, true, "0.5"),
            ]
        );
        assert_eq!(changed.len(), 4);
    }
}
