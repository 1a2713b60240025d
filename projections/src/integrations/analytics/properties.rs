//! An identity's flags as the properties object most vendors record (feature name to value,
//! or to whether it is enabled), written by copying: the environment's own states are written
//! once per version of it ([`ServedFeatures`]), and each identity's object is the runs of them
//! between the flags in which it differs, with those written in place. Writing it flag by flag
//! was most of the analytics worker's CPU with 200 features.

use std::sync::OnceLock;

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

/// Every listed feature's entry in its own state (`"name":value`, separated by commas), and
/// where the entries of each run of features begin and end.
#[derive(Debug)]
struct OwnProperties {
    text: Vec<u8>,
    /// `starts[i]`: where the first entry of a feature at index `i` or later begins (the
    /// text's end if none).
    starts: Vec<usize>,
    /// `ends[i]`: where the last entry of a feature before index `i` ends (0 if none).
    ends: Vec<usize>,
}

impl OwnProperties {
    fn of(features: &[ServedFeature], hide_disabled: bool, truthy: bool) -> Self {
        let mut text = Vec::new();
        let mut spans = Vec::with_capacity(features.len());
        for feature in features {
            let listed = feature
                .own
                .as_ref()
                .map(|(enabled, _)| *enabled)
                .filter(|enabled| !hide_disabled || *enabled);
            spans.push(listed.map(|enabled| {
                if !text.is_empty() {
                    text.push(b',');
                }
                let start = text.len();
                Served {
                    feature,
                    enabled,
                    changed_json: None,
                }
                .write_property(&mut text, truthy);
                (start, text.len())
            }));
        }
        let mut starts = vec![text.len(); features.len() + 1];
        for (i, span) in spans.iter().enumerate().rev() {
            starts[i] = span.map_or(starts[i + 1], |(start, _)| start);
        }
        let mut ends = vec![0; features.len() + 1];
        for (i, span) in spans.iter().enumerate() {
            ends[i + 1] = span.map_or(ends[i], |(_, end)| end);
        }
        OwnProperties { text, starts, ends }
    }

    /// The entries of the features at indexes `from..to`, with the commas between them.
    fn run(&self, from: usize, to: usize) -> &[u8] {
        let (start, end) = (self.starts[from], self.ends[to]);
        self.text.get(start..end).unwrap_or_default()
    }
}

impl ServedIdentity {
    /// Writes the flags as served ([`ServedIdentity::flags`]) as a JSON object of feature
    /// name to what the vendor records: the value when the flag is enabled and has one
    /// (`truthy`: a value Python calls true), otherwise whether it is enabled.
    pub fn write_properties(&self, out: &mut Vec<u8>, truthy: bool) {
        let features = self.features.features();
        let own = self.features.own_properties(self.hide_disabled, truthy);
        let mut first = true;
        let mut separate = |out: &mut Vec<u8>| {
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
        };
        out.push(b'{');
        let mut next = 0;
        for changed in self.changed.iter() {
            // In the listing's order, each once, as `flags` reads them.
            let Some(feature) = features
                .get(changed.index)
                .filter(|_| changed.index >= next)
            else {
                continue;
            };
            let run = own.run(next, changed.index);
            if !run.is_empty() {
                separate(out);
                out.extend_from_slice(run);
            }
            if !self.hide_disabled || changed.enabled {
                separate(out);
                Served {
                    feature,
                    enabled: changed.enabled,
                    changed_json: Some(changed.value_json),
                }
                .write_property(out, truthy);
            }
            next = changed.index + 1;
        }
        let run = own.run(next, features.len());
        if !run.is_empty() {
            separate(out);
            out.extend_from_slice(run);
        }
        out.push(b'}');
    }
}

impl Served<'_> {
    /// `"name":` and what the vendor records of this flag.
    fn write_property(&self, out: &mut Vec<u8>, truthy: bool) {
        out.extend_from_slice(self.name_json().as_bytes());
        out.push(b':');
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
                format!("{}:{value}", flag.name_json())
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
            traits: vec![],
            features: features.clone(),
            hide_disabled: hide,
            changed: noted,
            segments: vec![],
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
