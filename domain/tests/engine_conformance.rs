//! Flagsmith's engine test cases: every one of the 199 contexts of `Flagsmith/engine-test-data`
//! must evaluate to exactly the result Flagsmith's own engine (11.1.1) gives. See
//! `shared/reference/flagsmith/conformance/SOURCE` for where the data comes from.

use std::path::PathBuf;

use domain::evaluation::{EvaluationContext, evaluate};
use serde::Deserialize;
use serde_json::Value;

mod reference;
use reference::reference_dir;

/// One case file. The context is read straight from the text (not through a `Value`, whose maps
/// are sorted) because the order of segments in it is significant.
#[derive(Deserialize)]
struct Case {
    context: EvaluationContext,
    result: Value,
}

#[test]
fn every_engine_case_matches_flagsmith() {
    let cases_dir = reference_dir().join("conformance/engine-cases");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&cases_dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", cases_dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 199, "expected Flagsmith's 199 engine cases");

    let mut failures = Vec::new();
    for path in &files {
        let name = path
            .file_name()
            .expect("file name")
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(path).expect("readable case");
        let case: Case = match serde_json::from_str(&text) {
            Ok(case) => case,
            Err(e) => {
                failures.push(format!("{name}: case does not parse: {e}"));
                continue;
            }
        };
        let actual = serde_json::to_value(evaluate(&case.context)).expect("result serialises");
        let expected = &case.result;
        if &actual != expected {
            failures.push(format!(
                "{name}:\n  expected {expected}\n  actual   {actual}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} engine cases differ from Flagsmith:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
    println!("{} passed, 0 failed", files.len());
}
