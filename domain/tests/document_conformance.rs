//! Environment documents: importing a Flagsmith environment document and evaluating it must
//! give what a Flagsmith SDK (6.3.0, engine 11.1.1) gives when it evaluates the same document
//! locally, for the environment's flags and for each of 60 identities per document. The model
//! must also read the older document of `engine-test-data` and write documents back unchanged.
//! See `shared/reference/flagsmith/conformance/SOURCE` for where the data comes from.

use domain::aggregate::Aggregate;
use domain::document::{DocumentSource, render};
use domain::environment::Environment;
use domain::identity::IdentityOverrides;
use domain::project::Project;
use std::path::PathBuf;

use domain::evaluation::{EvaluationResult, evaluate, evaluate_for_identity};
use domain::flagsmith::{EnvironmentDocument, IDENTITY_OVERRIDES_SEGMENT_NAME, identity_context};
use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::Value;

mod reference;
use reference::reference_dir;

/// One seed file, read straight from the text (not through a `Value`, whose maps are sorted)
/// so that trait order survives.
#[derive(Deserialize)]
struct Seed {
    environment_document: Value,
    environment_result: Value,
    identities: Vec<SeedIdentity>,
}

#[derive(Deserialize)]
struct SeedIdentity {
    identifier: String,
    #[serde(default)]
    traits: IndexMap<String, Value>,
    result: Value,
}

fn read_json(path: &PathBuf) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn seed_documents() -> Vec<(String, Seed)> {
    let dir = reference_dir().join("conformance/documents");
    (1..=8)
        .map(|seed| {
            let name = format!("seed-{seed}.json");
            let path = dir.join(&name);
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            let seed: Seed = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{name} does not parse: {e}"));
            (name, seed)
        })
        .collect()
}

/// The SDK keys identity-override segments by a per-process hash, so their order among
/// themselves is not significant: sort them within the slots they occupy.
fn normalised(result: &Value) -> Value {
    let mut result = result.clone();
    if let Some(segments) = result.get_mut("segments").and_then(Value::as_array_mut) {
        let is_override = |s: &Value| s["name"] == IDENTITY_OVERRIDES_SEGMENT_NAME;
        let slots: Vec<usize> = (0..segments.len())
            .filter(|&i| is_override(&segments[i]))
            .collect();
        let mut overrides: Vec<Value> = slots.iter().map(|&i| segments[i].clone()).collect();
        overrides.sort_by_key(|s| s.to_string());
        for (slot, value) in slots.into_iter().zip(overrides) {
            segments[slot] = value;
        }
    }
    result
}

fn as_json(result: &EvaluationResult) -> Value {
    serde_json::to_value(result).expect("result serialises")
}

/// Evaluates `document` for the environment and for each of the seed's identities, recording
/// every difference from the Flagsmith SDK's results in `failures`; returns how many it checked.
fn check_document(
    name: &str,
    document: &EnvironmentDocument,
    data: &Seed,
    failures: &mut Vec<String>,
) -> usize {
    let mut checked = 0;
    let context = document.to_evaluation_context();

    // The environment's own flags: no identity, no segments (what /api/v1/flags/ serves).
    let mut environment_only = context.clone();
    environment_only.segments.clear();
    let actual = as_json(&evaluate(&environment_only));
    checked += 1;
    if actual != data.environment_result {
        failures.push(format!(
            "{name} environment:\n  expected {}\n  actual   {actual}",
            data.environment_result
        ));
    }

    assert_eq!(data.identities.len(), 60, "{name}: expected 60 identities");
    for identity in &data.identities {
        let identifier = identity.identifier.as_str();
        let identity_context = identity_context(identifier, identity.traits.clone());
        let actual = normalised(&as_json(&evaluate_for_identity(
            &context,
            Some(&identity_context),
        )));
        let expected = normalised(&identity.result);
        checked += 1;
        if actual != expected {
            failures.push(format!(
                "{name} identity {identifier}:\n  expected {expected}\n  actual   {actual}"
            ));
        }
    }
    checked
}

#[test]
fn every_document_evaluates_as_the_flagsmith_sdk_does() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for (name, data) in seed_documents() {
        let document: EnvironmentDocument =
            match serde_json::from_value(data.environment_document.clone()) {
                Ok(document) => document,
                Err(e) => {
                    failures.push(format!("{name}: document does not parse: {e}"));
                    continue;
                }
            };
        checked += check_document(&name, &document, &data, &mut failures);
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} document evaluations differ from the Flagsmith SDK:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(checked, 8 * (1 + 60));
    println!("{checked} passed, 0 failed");
}

/// The document flaglog serves for an imported environment (imported as events, folded into
/// the aggregates, rendered back) evaluates exactly as the original does in Flagsmith's SDK.
#[test]
fn imported_and_rendered_documents_evaluate_as_the_originals() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for (name, data) in seed_documents() {
        let original: EnvironmentDocument =
            serde_json::from_value(data.environment_document.clone()).expect("document parses");
        let plan = domain::import::plan(&Default::default(), &original, "hash".into(), &mut |i| {
            format!("reference-of-{i}")
        })
        .unwrap_or_else(|e| panic!("{name}: import refused: {e}"));
        let project = Project::from_events(&plan.project_events);
        let environment = Environment::from_events(&plan.environment_events);
        let identities: Vec<(String, IdentityOverrides)> = plan
            .identity_events
            .iter()
            .map(|(reference, events)| {
                let identifier = plan.identifiers[reference].clone();
                (identifier, IdentityOverrides::from_events(events))
            })
            .collect();
        let rendered = render(DocumentSource {
            organisation_name: "org",
            project: &project,
            environment: &environment,
            identity_overrides: &mut identities.iter().map(|(i, o)| (i.as_str(), o)),
            updated_at: "2026-11-25T00:00:00Z".into(),
        });
        checked += check_document(&name, &rendered, &data, &mut failures);
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} evaluations of rendered documents differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(checked, 8 * (1 + 60));
}

#[test]
fn documents_serialise_back_to_the_same_json() {
    for (name, data) in seed_documents() {
        let original = &data.environment_document;
        let document: EnvironmentDocument =
            serde_json::from_value(original.clone()).expect("document parses");
        let written = serde_json::to_value(&document).expect("document serialises");
        assert_eq!(&written, original, "{name} changed on a round trip");
    }
}

#[test]
fn the_legacy_document_parses_and_keeps_its_hashing_ids() {
    let data = read_json(&reference_dir().join("conformance/legacy-document.json"));
    let document: EnvironmentDocument =
        serde_json::from_value(data["environment"].clone()).expect("legacy document parses");
    assert_eq!(document.name, None, "the legacy document has no name");
    assert_eq!(document.api_key, "n9fbf9h3v4fFgH3U3ngWhb");

    // Writing it back and reading it again loses nothing.
    let written = serde_json::to_value(&document).expect("serialises");
    let reread: EnvironmentDocument = serde_json::from_value(written).expect("re-parses");
    assert_eq!(reread, document);

    // Every id evaluation hashes on survives into the context.
    let context = document.to_evaluation_context();
    let original = &data["environment"];
    for state in original["feature_states"]
        .as_array()
        .expect("feature states")
    {
        let name = state["feature"]["name"].as_str().expect("feature name");
        let feature = &context.features[name];
        assert_eq!(feature.key, state["django_id"].to_string(), "{name}");
        let mv = state["multivariate_feature_state_values"]
            .as_array()
            .expect("mv values");
        let mut ids: Vec<i64> = mv
            .iter()
            .map(|v| v["id"].as_i64().expect("mv id"))
            .collect();
        let mut priorities: Vec<String> = feature
            .variants
            .iter()
            .map(|v| serde_json::to_string(&v.priority).expect("priority"))
            .collect();
        ids.sort();
        priorities.sort();
        let mut expected: Vec<String> = ids.iter().map(i64::to_string).collect();
        expected.sort();
        assert_eq!(priorities, expected, "{name}");
    }
    for segment in original["project"]["segments"]
        .as_array()
        .expect("segments")
    {
        let key = segment["id"].to_string();
        assert_eq!(context.segments[&key].key, key);
    }
}

/// `mv_feature` for each identity of the legacy document, as the Flagsmith SDK 6.3.0 evaluates
/// the document offline (computed with the SDK; 75 of them differ from the recorded responses).
const LEGACY_MV_FEATURE: &str = "
identity_in_two_segments bar
54463d93-392f-493a-90b5-a1d3afe60f4b foo
7765d342-16c5-4c1c-a461-459d39f65b85 bar
ce99d7bb-2fbd-4fb3-8c4d-0f4a11c5a9aa foo
7fb675cf-91fc-439e-8e5f-896bbaa46319 bar
f0ca10b8-7088-4336-ae8c-5332e91f1554 baz
ef981b6d-22d8-4daa-ab2d-f3f26db80a86 baz
a2f85378-ea82-44c0-8998-be477402379c foo
64ebc978-1f6a-4c22-8f5b-8b0f83478ef1 foo
2db1db6a-2dab-4416-8510-b2a99db4f05a bar
9f7d2eb7-e01c-4bec-9738-5eaeaa6bf776 bar
e5af06dd-d3a1-4f53-9185-8989b6eaa848 foo
81b634c1-fde0-4d32-af2b-2ddd08d5dee6 foo
dbcc4f61-44c2-4117-a5fd-16237b66f46d foo
388b793f-5843-46c9-af6b-a942b52527b2 bar
3719f827-9c23-4956-b82a-7c2f5102479f foo
db0436cb-ede2-42e4-b2d5-65af13e0852a bar
397cd01d-c6a1-451c-8795-4c9686c22a3b bar
32fd6b46-69d0-4123-8e35-ca4401e8bc3e bar
31f5d2d7-3736-478c-a887-e77c16cc8dfd bar
15ef44aa-34b5-4366-a201-c80e33d9f169 bar
2d6d8b94-504c-437e-afd2-c84cc4e72b8b foo
20e6204b-e396-4d4b-a861-bb136c276ac2 baz
c8159d13-3b99-4355-84df-c8e541d55384 foo
42c798b6-1a36-4cf3-8df0-b6347020323a baz
170effbe-4388-49a5-9872-700688b628b9 baz
042b3a46-4575-419a-8a2f-62baa3226668 baz
83295382-6d39-4db1-ac66-1ebb6e98b70e bar
3debf4d7-3aff-4a8e-98fe-35d3add7f9fb bar
fc300e2a-b1b8-4408-8830-676e47abaf2c foo
56a8c68b-5015-47dd-97ee-0d727eb16266 bar
8e660bf8-cffa-46e3-878a-111627965710 foo
269c4565-50fa-4e4d-9d1b-e349545c9b1b foo
fe0b7a97-f9f9-4ec9-b1d8-142939493321 baz
efb574f7-091b-45fa-800d-ebec477efb51 foo
82cd7c27-6ae9-471e-9b8a-d9829383b489 baz
727ae8b6-f421-453c-9310-408150fbe28c baz
b3305fe0-77ac-4a1b-995e-94c413c686d0 baz
c99e2bda-f55d-4964-bdd2-80ecfd00297d bar
67476160-7c89-4d5c-bc1a-22ef4a8b2168 bar
b1cc98db-4e99-4f2c-a364-ef6382864188 baz
11586d45-02f1-48ac-b640-741447251909 bar
9515c224-5adc-4e44-bc39-21942779c323 foo
dc6b85e3-e03b-4019-8b6d-97b1d7d25492 foo
70f674c4-0474-46aa-ac39-0d7a373fafca foo
85457200-feeb-468a-91ac-e6397254429a baz
46e87d76-34ca-410d-ac4c-67400770c398 foo
ff74f26a-e832-465b-a165-375b1f70905a foo
c2ff801e-e145-411d-ba68-9dd2b9871bfe bar
5fd8e83e-bd87-42e7-8c2a-fd31960feb72 bar
2dbbc953-31b3-4bf4-9f63-a09bd37baf78 foo
2af98d3d-be2f-4bee-b7ae-83c53e1b2811 baz
b21bd1e2-bb87-4135-aca7-e30f465de632 bar
96fbbd8f-b5f4-4267-a2db-9f6848dcb20a baz
b8f06d73-0430-438d-b788-d91851449908 foo
430f2a5c-dc93-497f-be0c-859687126d95 bar
c3483e1f-ac4e-4e1e-b398-bedde811f441 foo
65e8ea3f-6f3f-4eee-8ad5-30c7a7c7bfe4 bar
cbaa7fae-9453-448a-bff1-d571be7c8a6b bar
3ecde417-838e-4469-90a9-d7e925200b51 baz
555bb037-cc46-47de-b0fa-4bcab906f5e7 foo
57fd428e-b41c-4e5f-b47d-de9faed376e3 bar
933949d7-b731-4f3a-a2dc-3d83d0beb1ea bar
a78cf315-d2d8-4d04-b075-e9aba7421706 foo
0d0eb3b4-aab5-4a2e-b82a-47e84c57c64d bar
7edcfe01-784c-4951-8c22-5f84f0569381 foo
c334969d-25bd-4ea2-9cd3-634fecdc542d baz
28501e08-e978-4336-9ddd-d90d87983ab3 bar
1b33fc3f-3c0e-480c-acce-1937779c743b baz
2269ea5c-4509-4b7e-acd8-1f7763837464 foo
a4bc3ba0-7366-4bf2-b309-37baf2d0f45f baz
1969664e-a236-46e7-91af-84dca50a313b foo
7137c59d-0bc0-43d2-b1ad-492b0a03aa85 bar
f8fe67d7-958e-452c-a4d4-8249c8b9369c baz
d2a57b07-3ee1-4b0a-8cd9-e572d14635ce bar
65190952-1717-454b-bef2-b38ea62837c7 bar
fb098dba-4be6-4117-b95a-fd930c1598b0 foo
3e06036d-fa99-4b46-a843-9bd5b1cdf171 bar
29f66219-8344-4df4-a294-92efb44db0c5 bar
1ccf1600-ca87-47f0-8cd9-225f9f8389a6 foo
4f5a88b9-2b1b-4c0a-9f9f-a3fbeda05dfb baz
742956df-236e-4cc9-8b55-634a7b1da4af baz
923649a9-5850-4227-a965-32d34ebf9769 baz
233de9e2-df63-49ca-9f5a-dca000db568d baz
2b051612-8a49-4e04-9500-5daedb8fec88 foo
d73a7a70-a8b4-4f98-978a-ebd08cbf2542 foo
d9b9b9e5-36aa-406e-bda6-71cb99be60f5 foo
560cdbac-dfd9-4536-b65b-6654d575058a baz
be3348ec-6fd9-4b6d-a86a-fd69600855b2 foo
0cfd0d72-4de4-4ed7-9cfb-d80dc3dacead foo
93f06180-cee7-428e-8385-1206895e4313 foo
18edb157-34cc-4896-aa35-76a7ee68fe68 baz
e7656d90-7da5-4ce1-b647-36cd977d58fa foo
d5a54a43-625b-4878-b3fa-120a2bfdd86e baz
23edd289-5188-4af0-b0bf-64c42f73f2f4 baz
41f0b1f5-93a1-43c0-afb7-bce9dc20aac0 foo
d3f16e64-9cf8-477c-a09b-7b60723c1694 foo
957d39a5-6e97-4026-9d94-be68aa97bf1b bar
53273d70-2f37-4c43-8979-e0426f7ac375 foo
4ab15967-c00b-4a6b-8da6-0a9ef67683fd foo
2448af3b-bf5c-493b-9bce-13be5d6e697a foo
";

/// The legacy document's recorded responses came from an engine that hashed multivariate
/// allocation on identities' database ids; every current SDK hashes on the identity key, and so
/// does flaglog. So `mv_feature` is checked against the current SDK's own evaluation, and every
/// other feature against the recorded responses.
#[test]
fn the_legacy_document_evaluates_as_recorded_and_as_the_current_sdk() {
    let expected_mv: std::collections::HashMap<&str, &str> = LEGACY_MV_FEATURE
        .lines()
        .filter_map(|line| line.split_once(' '))
        .collect();
    assert_eq!(expected_mv.len(), 101);
    let data = read_json(&reference_dir().join("conformance/legacy-document.json"));
    let document: EnvironmentDocument =
        serde_json::from_value(data["environment"].clone()).expect("legacy document parses");
    let context = document.to_evaluation_context();
    let cases = data["identities_and_responses"].as_array().expect("cases");
    assert_eq!(cases.len(), 101);
    let mut failures = Vec::new();
    for case in cases {
        let identity = &case["identity"];
        let identifier = identity["identifier"].as_str().expect("identifier");
        let traits = identity["identity_traits"]
            .as_array()
            .expect("traits")
            .iter()
            .map(|t| {
                (
                    t["trait_key"].as_str().expect("key").to_owned(),
                    t["trait_value"].clone(),
                )
            });
        let result = evaluate_for_identity(&context, Some(&identity_context(identifier, traits)));
        for flag in case["response"]["flags"].as_array().expect("flags") {
            let name = flag["feature"]["name"].as_str().expect("name");
            let actual = &result.flags[name];
            if name == "mv_feature" {
                let expected = expected_mv.get(identifier).copied().unwrap_or("<missing>");
                if actual.value != expected {
                    failures.push(format!(
                        "{identifier} mv_feature: expected {expected}, got {}",
                        actual.value
                    ));
                }
                continue;
            }
            if actual.enabled != flag["enabled"] || actual.value != flag["feature_state_value"] {
                failures.push(format!(
                    "{identifier} {name}: expected {} {}, got {} {}",
                    flag["enabled"], flag["feature_state_value"], actual.enabled, actual.value
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
