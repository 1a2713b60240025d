//! Naming identities in audit rows. The history stores an identity's reference (the log holds
//! no identifier, see `domain::identity`); a row is shown with the identifier the reference
//! stands for, looked up when it is read, so an erased identity shows as one and its identifier
//! appears in no answer.

use std::collections::{BTreeMap, BTreeSet};

use crate::audit_history::AuditRow;
use domain::log::EventLog;

/// What a row shows for an identity whose identifier was erased.
pub const ERASED: &str = "erased identity";

/// Replaces each row's identity reference by its identifier, in the row and its summary, or
/// marks it erased.
pub async fn name_identities(
    log: &dyn EventLog,
    rows: &mut [AuditRow],
) -> Result<(), domain::log::LogError> {
    let mut wanted: BTreeMap<u64, BTreeSet<String>> = BTreeMap::new();
    for row in rows.iter() {
        if let (Some(environment), Some(reference)) = (row.environment_id, &row.identity) {
            wanted
                .entry(environment)
                .or_default()
                .insert(reference.clone());
        }
    }
    let mut names = BTreeMap::new();
    for (environment, references) in wanted {
        let references: Vec<String> = references.into_iter().collect();
        for (reference, identifier) in log.identifiers(environment, &references).await? {
            names.insert((environment, reference), identifier);
        }
    }
    for row in rows.iter_mut() {
        let (Some(environment), Some(reference)) = (row.environment_id, row.identity.take()) else {
            continue;
        };
        let named = format!("identity `{reference}`");
        let (identity, shown) = match names.get(&(environment, reference)) {
            Some(identifier) => (identifier.clone(), format!("identity `{identifier}`")),
            None => (ERASED.to_string(), format!("an {ERASED}")),
        };
        row.summary = row.summary.replace(&named, &shown);
        row.identity = Some(identity);
    }
    Ok(())
}
