//! One identity evaluation: the work behind every `POST /api/v1/identities/` (a borrowed
//! `Evaluation`) and every OFREP request (the owned `EvaluationResult` made from it), on a
//! conformance document (40 features, 26 segments with every operator, identity overrides, flag
//! dependencies), with the evaluation context built once per document as the server does.

use criterion::{Criterion, criterion_group, criterion_main};
use domain::evaluation::{evaluate_for_identity, evaluation};
use domain::flagsmith::{EnvironmentDocument, identity_context};
use serde_json::Value;

fn seed_document() -> (EnvironmentDocument, Vec<(String, Value)>) {
    let dir = std::env::var("FLAGLOG_REFERENCE_DIR").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/reference/flagsmith"
        )
        .to_string()
    });
    let path = format!("{dir}/conformance/documents/seed-1.json");
    let mut data: Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}")))
            .expect("seed is JSON");
    let document = serde_json::from_value(data["environment_document"].take()).expect("document");
    let identity = &data["identities"][0];
    let traits = identity["traits"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    (document, traits)
}

fn identity_evaluation(c: &mut Criterion) {
    let (document, traits) = seed_document();
    let context = document.to_evaluation_context();
    c.bench_function("evaluate one identity (40 features, 26 segments)", |b| {
        b.iter(|| {
            let who = identity_context("bench-user", traits.clone());
            std::hint::black_box(evaluation(&context, Some(&who)).flags.len())
        })
    });
    c.bench_function("evaluate one identity into an owned result", |b| {
        b.iter(|| {
            let who = identity_context("bench-user", traits.clone());
            std::hint::black_box(evaluate_for_identity(&context, Some(&who)))
        })
    });
    c.bench_function("build the evaluation context of a document", |b| {
        b.iter(|| std::hint::black_box(document.to_evaluation_context()))
    });
}

criterion_group!(benches, identity_evaluation);
criterion_main!(benches);
