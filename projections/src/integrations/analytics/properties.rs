//! An identity's flags as the properties object most vendors record (feature name to value,
//! or to whether it is enabled), written by copying: the environment's own states are written
//! once per version of it ([`ServedFeatures`]), and each identity's object is that text copied
//! up to each flag in which it differs (the flag's key included), with its value written in
//! place. Writing it flag by flag was most of the analytics worker's CPU with 200 features.

use std::sync::OnceLock;

use domain::document::TYPICAL_VALUE_BYTES;

use super::{Served, ServedFeature, ServedIdentity};

/// The listing's features (index for index) as identity analytics name them, with their own
/// states' properties written when a vendor first asks for them.
#[derive(Debug, Default)]
pub struct ServedFeatures {
    features: Vec<ServedFeature>,
    /// [`OwnProperties`] by (disabled flags hidden, truthy values), each made once.
    own: [OnceLock<OwnProperties>; 4],
}

impl ServedFeatures {
    pub fn features(&self) -> &[ServedFeature] {
        &self.features
    }

    fn own_properties(&self, hide_disabled: bool, truthy: bool) -> &OwnProperties {
        let slot = usize::from(hide_disabled) * 2 + usize::from(truthy);
        self.own[slot].get_or_init(|| OwnProperties::of(&self.features, hide_disabled, truthy))
    }
}

impl FromIterator<ServedFeature> for ServedFeatures {
    fn from_iter<I: IntoIterator<Item = ServedFeature>>(features: I) -> Self {
        ServedFeatures {
            features: features.into_iter().collect(),
            own: Default::default(),
        }
    }
}

/// Equal when the features are: what is written from them follows.
impl PartialEq for ServedFeatures {
    fn eq(&self, other: &Self) -> bool {
        self.features == other.features
    }
}

/// Every listed feature's entry in its own state, each after a comma (`,"name":value`), and
/// where each feature's entry lies in that text.
#[derive(Debug)]
struct OwnProperties {
    text: Vec<u8>,
    /// By feature index: its entry, or for a feature without one, an empty entry where the
    /// next one begins.
    entries: Vec<Entry>,
}

/// A feature's entry in [`OwnProperties::text`]: `start` at its comma, `key_end` after its
/// key's `:`, `end` after its value.
#[derive(Debug, Clone, Copy)]
struct Entry {
    start: usize,
    key_end: usize,
    end: usize,
}

impl OwnProperties {
    fn of(features: &[ServedFeature], hide_disabled: bool, truthy: bool) -> Self {
        let mut text = Vec::new();
        let mut entries = Vec::with_capacity(features.len());
        for feature in features {
            let listed = feature
                .own
                .as_ref()
                .map(|(enabled, _)| *enabled)
                .filter(|enabled| !hide_disabled || *enabled);
            let start = text.len();
            let mut key_end = start;
            if let Some(enabled) = listed {
                text.push(b',');
                text.extend_from_slice(feature.key_json.as_bytes());
                key_end = text.len();
                Served {
                    feature,
                    enabled,
                    changed_json: None,
                }
                .write_value(&mut text, truthy);
            }
            entries.push(Entry {
                start,
                key_end,
                end: text.len(),
            });
        }
        // An entry left empty sits where the next one begins.
        let mut next_start = text.len();
        for entry in entries.iter_mut().rev() {
            if entry.end == entry.start {
                *entry = Entry {
                    start: next_start,
                    key_end: next_start,
                    end: next_start,
                };
            }
            next_start = entry.start;
        }
        OwnProperties { text, entries }
    }
}

impl ServedIdentity {
    /// Writes the flags as served ([`ServedIdentity::flags`]) as a JSON object of feature
    /// name to what the vendor records: the value when the flag is enabled and has one
    /// (`truthy`: a value Python calls true), otherwise whether it is enabled.
    ///
    /// The own states' text is copied up to each changed flag's value (its key included),
    /// the changed value written, and the copy resumes after the own value: two copies per
    /// changed flag. Every entry begins with a comma, and the first one becomes the `{`.
    pub fn write_properties(&self, out: &mut Vec<u8>, truthy: bool) {
        let features = self.features.features();
        let own = self.features.own_properties(self.hide_disabled, truthy);
        // The own states' text and room for the changed values (the batch's body is reserved
        // for all its identities after the first: this is for the first, without a pass over
        // the changed values to size them).
        out.reserve(own.text.len() + self.changed.len() * TYPICAL_VALUE_BYTES + 256);
        let begin = out.len();
        let mut copied = 0;
        let mut next = 0;
        for changed in self.changed.iter() {
            // In the listing's order, each once, as `flags` reads them.
            let (Some(feature), Some(entry)) =
                (features.get(changed.index), own.entries.get(changed.index))
            else {
                continue;
            };
            if changed.index < next {
                continue;
            }
            let flag = Served {
                feature,
                enabled: changed.enabled,
                changed_json: Some(changed.value_json),
            };
            let shown = !self.hide_disabled || changed.enabled;
            if shown && entry.key_end > entry.start {
                out.extend_from_slice(own.text.get(copied..entry.key_end).unwrap_or_default());
            } else {
                out.extend_from_slice(own.text.get(copied..entry.start).unwrap_or_default());
                if shown {
                    out.push(b',');
                    out.extend_from_slice(feature.key_json.as_bytes());
                }
            }
            if shown {
                flag.write_value(out, truthy);
            }
            copied = entry.end;
            next = changed.index + 1;
        }
        out.extend_from_slice(own.text.get(copied..).unwrap_or_default());
        match out.get_mut(begin) {
            Some(comma) => *comma = b'{',
            None => out.push(b'{'),
        }
        out.push(b'}');
    }
}

impl Served<'_> {
    /// What the vendor records of this flag.
    fn write_value(&self, out: &mut Vec<u8>, truthy: bool) {
        let has_value = if truthy {
            self.has_truthy_value()
        } else {
            self.has_value()
        };
        if self.enabled && has_value {
            out.extend_from_slice(self.value_json());
        } else {
            out.extend_from_slice(if self.enabled { b"true" } else { b"false" });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use domain::document::ChangedFlags;
    use serde_json::{Value, json};
    use time::OffsetDateTime;

    use super::*;

    /// The properties written flag by flag from [`ServedIdentity::flags`], as they were before
    /// they were copied in runs.
    fn flag_by_flag(served: &ServedIdentity, truthy: bool) -> String {
        let entries: Vec<String> = served
            .flags()
            .map(|flag| {
                let has_value = if truthy {
                    flag.has_truthy_value()
                } else {
                    flag.has_value()
                };
                let value = if flag.enabled && has_value {
                    String::from_utf8_lossy(flag.value_json()).into_owned()
                } else {
                    flag.enabled.to_string()
                };
                format!("{}{value}", flag.feature.key_json)
            })
            .collect();
        format!("{{{}}}", entries.join(","))
    }

    /// Features whose own states cover every case: enabled with a value, with a falsy value,
    /// with none, disabled, and never listed (no own state).
    fn features() -> Arc<ServedFeatures> {
        let own = [
            Some((true, json!("blue"))),
            Some((true, json!(0))),
            Some((false, json!("x"))),
            None,
            Some((true, Value::Null)),
            Some((false, Value::Null)),
            Some((true, json!({"a": [1]}))),
            Some((true, json!(""))),
        ];
        Arc::new(
            own.into_iter()
                .enumerate()
                .map(|(i, own)| {
                    ServedFeature::new(i as i64, format!("f\"{i}"), "STANDARD".into(), own)
                })
                .collect(),
        )
    }

    fn served(features: &Arc<ServedFeatures>, hide: bool, changed: &[usize]) -> ServedIdentity {
        let mut noted = ChangedFlags::default();
        for &index in changed {
            // Alternately enabled with a value, disabled, and enabled with a falsy value.
            match index % 3 {
                0 => noted.push(index, true, &json!("changed")),
                1 => noted.push(index, false, &Value::Null),
                _ => noted.push(index, true, &json!(false)),
            }
        }
        ServedIdentity {
            environment_id: 1,
            identifier: "someone".into(),
            context: None,
            features: features.clone(),
            hide_disabled: hide,
            changed: noted,
            served_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    /// Copying the own states in runs writes exactly what writing each flag wrote, whichever
    /// flags differ (none, the first, the last, neighbours, one never listed, all of them; an
    /// index out of order or out of range is passed over as `flags` passes it over), with
    /// disabled flags hidden or not, for both rules of what a vendor records.
    #[test]
    fn properties_copied_in_runs_are_the_flags_written_one_by_one() {
        let features = features();
        let cases: [&[usize]; 10] = [
            &[],
            &[0],
            &[7],
            &[2, 3],
            &[3],
            &[0, 1, 2, 3, 4, 5, 6, 7],
            &[1, 4, 6],
            &[5, 2],
            &[4, 4],
            &[6, 9],
        ];
        for hide in [false, true] {
            for truthy in [false, true] {
                for changed in cases {
                    let served = served(&features, hide, changed);
                    let mut out = Vec::new();
                    served.write_properties(&mut out, truthy);
                    let written = String::from_utf8(out).expect("UTF-8");
                    assert_eq!(
                        written,
                        flag_by_flag(&served, truthy),
                        "hide {hide}, truthy {truthy}, changed {changed:?}"
                    );
                    let parsed: Value = serde_json::from_str(&written).expect("a JSON object");
                    assert!(parsed.is_object());
                }
            }
        }
    }
}
