//! Flagsmith's conformance data (`shared/reference/flagsmith/conformance`, see its `SOURCE`),
//! shared by the domain's test suites.

use std::path::PathBuf;

use domain::flagsmith::EnvironmentDocument;
use serde_json::Value;

/// The conformance folder: `FLAGLOG_REFERENCE_DIR`, or `shared/` beside the repository. Missing
/// data fails the test: a conformance suite that silently skips proves nothing.
pub fn reference_dir() -> PathBuf {
    let dir = std::env::var_os("FLAGLOG_REFERENCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../shared/reference/flagsmith"
            ))
        });
    assert!(
        dir.join("conformance").is_dir(),
        "Flagsmith conformance data not found at {} (set FLAGLOG_REFERENCE_DIR to the folder \
         holding conformance/)",
        dir.display()
    );
    dir
}

/// Every conformance environment document (the seeds, then the legacy document), by file name.
#[allow(dead_code)] // not every suite reads them all
pub fn documents() -> Vec<(String, EnvironmentDocument)> {
    let dir = reference_dir().join("conformance");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("documents"))
        .unwrap_or_else(|e| panic!("conformance documents missing under {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files.push(dir.join("legacy-document.json"));
    files
        .into_iter()
        .map(|path| {
            let mut value: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            let wrapper = if value.get("environment_document").is_some() {
                "environment_document"
            } else {
                "environment"
            };
            let document = value[wrapper].take();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, serde_json::from_value(document).unwrap())
        })
        .collect()
}
