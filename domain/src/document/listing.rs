//! Listing an environment's flags for the SDK endpoints, fast: [`FlagListing`] keeps what the
//! listing needs of a document (features in order, the pre-serialised flags body and where each
//! flag sits in it) and writes an evaluation's flags mostly by copying from that body.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use super::{ApiFlag, ChangedFlags, FeatureRef, api_flags_of, hides_disabled_flags};
use crate::evaluation::{Evaluation, EvaluationContext, FeatureContext, Flag};
use crate::flagsmith::EnvironmentDocument;

/// What listing an environment's flags needs of its document, without the rest of it: the
/// features in document order, whether disabled flags are hidden, the environment's
/// pre-serialised flags body and where each feature's flag sits in it. Servers keep this next to
/// the evaluation context instead of the parsed document.
///
/// The listing holds the very body its spans were found in (a shared [`Bytes`], not a copy), so
/// there is no way to hand it another one: it can neither panic nor splice a foreign body.
///
/// Most flags of an identity are the environment's own: no segment override and no
/// multivariate split touched them. [`FlagListing::write_flags`] copies those from the body
/// instead of serialising them again. Of a flag that differs, only `enabled` and the value
/// depend on the identity: the rest of it (the feature, the ids) is copied from the body too.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagListing {
    pub environment_id: u64,
    pub hide_disabled: bool,
    /// In document order.
    pub features: Vec<ListedFeature>,
    /// The evaluation context the features' indices point into.
    context: Arc<EvaluationContext>,
    /// The flags body the features' spans point into.
    body: Bytes,
}

/// A feature as the listing keeps it; its name is the one of its context feature.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedFeature {
    pub id: i64,
    /// Borrowed for Flagsmith's two types: no heap for the usual case.
    pub feature_type: Cow<'static, str>,
    /// Where the feature is in the evaluation context's features.
    context_index: Option<usize>,
    /// Where the feature's flag is in the flags body (absent when it is hidden there).
    written: Option<Written>,
}

/// Where one feature's flag is in the flags body: all of it, and the parts of it that do not
/// depend on the flag's state, so that a flag with another state is written around them.
#[derive(Debug, Clone, PartialEq)]
struct Written {
    whole: Range<u32>,
    /// `"environment":…,"feature_state_value":`, between `{"enabled":B,` and the value, and
    /// what follows the value (`,"id":…}`); absent if the flag's bytes are not in that shape.
    around_value: Option<(Range<u32>, Range<u32>)>,
}

/// What [`FlagListing::write_flags`] did with the flags it wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlagsWritten {
    /// Copied whole from the flags body.
    pub copied: usize,
    /// Written with a state of their own around parts copied from the flags body.
    pub around_copied: usize,
    /// Serialised from scratch.
    pub serialised: usize,
}

/// The start of a flag's JSON, which holds its `enabled`.
fn enabled_head(enabled: bool) -> &'static [u8] {
    if enabled {
        b"{\"enabled\":true,"
    } else {
        b"{\"enabled\":false,"
    }
}

impl FlagListing {
    /// The listing of `document`, whose evaluation context is `context` and whose flags body
    /// (`GET /api/v1/flags/`, as [`environment_flags_body`] writes it) is `flags_body`, which
    /// the listing keeps. A body that is not that document's leaves every flag to be
    /// serialised, never copied wrongly.
    pub fn of(
        document: &EnvironmentDocument,
        context: Arc<EvaluationContext>,
        flags_body: Bytes,
    ) -> Self {
        let mut listing = FlagListing {
            environment_id: document.id as u64,
            hide_disabled: hides_disabled_flags(document),
            features: document
                .feature_states
                .iter()
                .map(|state| {
                    let feature = FeatureRef::of(&state.feature);
                    ListedFeature {
                        id: feature.id,
                        feature_type: match feature.feature_type {
                            "STANDARD" => Cow::Borrowed("STANDARD"),
                            "MULTIVARIATE" => Cow::Borrowed("MULTIVARIATE"),
                            other => Cow::Owned(other.to_owned()),
                        },
                        context_index: context.features.get_index_of(feature.name),
                        written: None,
                    }
                })
                .collect(),
            context,
            body: flags_body,
        };
        if let Some(written) = listing.find_written(&listing.context, &listing.body) {
            for (feature, written) in listing.features.iter_mut().zip(written) {
                feature.written = written;
            }
        }
        listing
    }

    /// Where each listed feature's flag is in `flags_body` ([`environment_flags_body`]: every
    /// feature in its default state), found by serialising the features' default flags one by
    /// one and checking each against the body; `None` if the body is not theirs.
    fn find_written(
        &self,
        context: &EvaluationContext,
        flags_body: &[u8],
    ) -> Option<Vec<Option<Written>>> {
        u32::try_from(flags_body.len()).ok()?;
        let mut found = Vec::with_capacity(self.features.len());
        let mut offset = 1;
        let mut scratch = Vec::new();
        for listed in &self.features {
            let Some((_, feature)) = self.feature_of(listed, context) else {
                found.push(None);
                continue;
            };
            if self.hide_disabled && !feature.enabled {
                found.push(None);
                continue;
            }
            scratch.clear();
            let flag = self.api_flag(listed, feature.enabled, &feature.value)?;
            serde_json::to_writer(&mut scratch, &flag).ok()?;
            let end = offset + scratch.len();
            if flags_body.get(offset..end)? != scratch.as_slice() {
                return None;
            }
            let around_value =
                self.around_value(listed, feature, &scratch)
                    .map(|(middle, tail)| {
                        let at =
                            |r: Range<usize>| (offset + r.start) as u32..(offset + r.end) as u32;
                        (at(middle), at(tail))
                    });
            found.push(Some(Written {
                whole: offset as u32..end as u32,
                around_value,
            }));
            offset = end + 1;
        }
        (flags_body.first() == Some(&b'[') && offset.max(2) == flags_body.len()).then_some(found)
    }

    /// In the bytes of a feature's default flag, the parts before and after the value (after
    /// the `enabled` head), if the flag is `head + middle + value + tail`; found by writing the
    /// flag with a marker for a value.
    fn around_value(
        &self,
        listed: &ListedFeature,
        feature: &FeatureContext,
        flag: &[u8],
    ) -> Option<(Range<usize>, Range<usize>)> {
        let marker = Value::String("\u{0}".into());
        let marked = serde_json::to_vec(&self.api_flag(listed, feature.enabled, &marker)?).ok()?;
        let marker_bytes = serde_json::to_vec(&marker).ok()?;
        let at = marked
            .windows(marker_bytes.len())
            .rposition(|w| w == marker_bytes.as_slice())?;
        let tail = &marked[at + marker_bytes.len()..];
        let value = serde_json::to_vec(&feature.value).ok()?;
        let head = enabled_head(feature.enabled);
        let middle_end = flag.len().checked_sub(tail.len() + value.len())?;
        let rebuilt = [head, &marked[head.len()..at], &value, tail].concat();
        (rebuilt == flag && marked.starts_with(head) && head.len() <= middle_end)
            .then_some((head.len()..middle_end, flag.len() - tail.len()..flag.len()))
    }

    /// The evaluation context this listing was made with.
    pub fn context(&self) -> &Arc<EvaluationContext> {
        &self.context
    }

    /// The flags body this listing was made with (and copies from).
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The bytes of a span of the body. Spans were checked against this very body when the
    /// listing was made, so this is always `Some`; it is checked all the same, and a flag
    /// whose span were missing would be serialised instead.
    fn span(&self, range: &Range<u32>) -> Option<&[u8]> {
        self.body.get(range.start as usize..range.end as usize)
    }

    /// A listed feature's name (none if its document feature is not in the context).
    fn name_of(&self, listed: &ListedFeature) -> Option<&str> {
        let (name, _) = self.context.features.get_index(listed.context_index?)?;
        Some(name)
    }

    /// A listed feature in a context: its index and its default state. In the listing's own
    /// context the index it recorded is right; in another, the feature is found by name.
    fn feature_of<'a>(
        &self,
        listed: &ListedFeature,
        context: &'a EvaluationContext,
    ) -> Option<(usize, &'a FeatureContext)> {
        if std::ptr::eq(context, Arc::as_ptr(&self.context)) {
            let i = listed.context_index?;
            return Some((i, context.features.get_index(i)?.1));
        }
        let (i, _, feature) = context.features.get_full(self.name_of(listed)?)?;
        Some((i, feature))
    }

    /// The flag of a listed feature in an evaluation, with the feature's default state.
    fn flag_of<'e, 'a>(
        &self,
        listed: &ListedFeature,
        evaluation: &'e Evaluation<'a>,
    ) -> Option<(&'e Flag<'a>, &'a FeatureContext)> {
        let (i, feature) = self.feature_of(listed, evaluation.context())?;
        Some((evaluation.flags.get(i)?, feature))
    }

    /// A listed feature's id, name and type (none for a feature the context lacks).
    pub fn feature_ref<'a>(&'a self, listed: &'a ListedFeature) -> Option<FeatureRef<'a>> {
        Some(FeatureRef {
            id: listed.id,
            name: self.name_of(listed)?,
            feature_type: &listed.feature_type,
        })
    }

    /// A listed feature's own state: whether it is enabled and its value when no segment
    /// override or multivariate split applies (none for a feature the context lacks, which is
    /// never listed).
    pub fn own_state(&self, listed: &ListedFeature) -> Option<(bool, &Value)> {
        self.feature_ref(listed)?;
        let feature = self.feature_of(listed, &self.context)?.1;
        Some((feature.enabled, &feature.value))
    }

    fn api_flag<'a>(
        &'a self,
        listed: &'a ListedFeature,
        enabled: bool,
        value: &'a Value,
    ) -> Option<ApiFlag<'a>> {
        Some(ApiFlag::new(
            self.feature_ref(listed)?,
            enabled,
            value,
            self.environment_id,
        ))
    }

    /// Appends the JSON array of the evaluation's flags to `out`: the bytes
    /// `serde_json::to_vec(&listing.api_flags(evaluation))` writes. Flags in their
    /// environment-wide state are copied from the listing's flags body, and the others are
    /// written around parts copied from it. With `changed`, the flags that are not in their
    /// feature's own state ([`Self::own_state`]: a segment override or a multivariate split
    /// chose them), listed or hidden, are noted there by the feature's index in
    /// [`Self::features`]: with the own states, what was listed.
    pub fn write_flags(
        &self,
        evaluation: &Evaluation<'_>,
        out: &mut Vec<u8>,
        mut changed: Option<&mut ChangedFlags>,
    ) -> serde_json::Result<FlagsWritten> {
        let mut counts = FlagsWritten::default();
        let mut first = true;
        out.push(b'[');
        for (index, listed) in self.features.iter().enumerate() {
            let Some((flag, feature)) = self.flag_of(listed, evaluation) else {
                continue;
            };
            let Some(feature_ref) = self.feature_ref(listed) else {
                continue;
            };
            let own_state = flag.is_default_state_of(feature);
            if self.hide_disabled && !flag.enabled() {
                if let Some(changed) = changed.as_deref_mut().filter(|_| !own_state) {
                    changed.push_hidden(index);
                }
                continue;
            }
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
            let whole = listed
                .written
                .as_ref()
                .filter(|_| own_state)
                .and_then(|written| self.span(&written.whole));
            let around = match &listed.written {
                Some(Written {
                    around_value: Some((middle, tail)),
                    ..
                }) => self.span(middle).zip(self.span(tail)),
                _ => None,
            };
            match (whole, around) {
                (Some(whole), _) => {
                    out.extend_from_slice(whole);
                    counts.copied += 1;
                }
                (None, Some((middle, tail))) => {
                    out.extend_from_slice(enabled_head(flag.enabled()));
                    out.extend_from_slice(middle);
                    let value_starts = out.len();
                    serde_json::to_writer(&mut *out, flag.value)?;
                    if let Some(changed) = changed.as_deref_mut().filter(|_| !own_state) {
                        changed.push_json(index, flag.enabled(), &out[value_starts..]);
                    }
                    out.extend_from_slice(tail);
                    counts.around_copied += 1;
                }
                (None, None) => {
                    let api_flag =
                        ApiFlag::new(feature_ref, flag.enabled(), flag.value, self.environment_id);
                    serde_json::to_writer(&mut *out, &api_flag)?;
                    if let Some(changed) = changed.as_deref_mut().filter(|_| !own_state) {
                        changed.push(index, flag.enabled(), flag.value);
                    }
                    counts.serialised += 1;
                }
            }
        }
        out.push(b']');
        Ok(counts)
    }

    /// [`api_flags_of`] with these features and setting.
    pub fn api_flags<'a>(&'a self, evaluation: &Evaluation<'a>) -> Vec<ApiFlag<'a>> {
        api_flags_of(
            self.environment_id,
            self.hide_disabled,
            self.features
                .iter()
                .filter_map(|listed| self.feature_ref(listed)),
            evaluation,
        )
    }

    /// Roughly the heap bytes this listing holds (its context and its body apart: both are
    /// usually shared).
    pub fn heap_size(&self) -> usize {
        self.features.capacity() * std::mem::size_of::<ListedFeature>()
            + self
                .features
                .iter()
                .map(|f| match &f.feature_type {
                    Cow::Owned(owned) => owned.capacity(),
                    Cow::Borrowed(_) => 0,
                })
                .sum::<usize>()
    }
}
