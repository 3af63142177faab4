//! Guards the suite itself: every `pub async fn` case in `src/cases/` must be
//! listed in `conformance_suite!`, or a backend would never run it.
#![forbid(unsafe_code)]

use std::collections::BTreeSet;

const CASE_SOURCES: [&str; 5] = [
    include_str!("../src/cases/store.rs"),
    include_str!("../src/cases/domain.rs"),
    include_str!("../src/cases/concurrency.rs"),
    include_str!("../src/cases/tokens.rs"),
    include_str!("../src/cases/refresh.rs"),
];
const LIB: &str = include_str!("../src/lib.rs");

fn defined_cases() -> BTreeSet<String> {
    CASE_SOURCES
        .iter()
        .flat_map(|src| src.lines())
        .filter_map(|l| l.trim_start().strip_prefix("pub async fn "))
        .map(|rest| rest.split('(').next().unwrap_or_default().trim().to_owned())
        .collect()
}

fn listed_cases() -> BTreeSet<String> {
    let start = LIB
        .find("__conformance_cases! { $factory;")
        .expect("the case list in lib.rs");
    let body = &LIB[start..];
    let end = body.find('}').expect("end of the case list");
    body[..end]
        .lines()
        .skip(1)
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .map(|l| l.trim_end_matches(',').to_owned())
        .collect()
}

#[test]
fn every_case_is_listed_in_the_macro() {
    let defined = defined_cases();
    let listed = listed_cases();
    assert!(defined.len() >= 30, "parsed too few cases: {defined:?}");
    let missing: Vec<_> = defined.difference(&listed).collect();
    let unknown: Vec<_> = listed.difference(&defined).collect();
    assert!(
        missing.is_empty(),
        "cases not run by conformance_suite!: {missing:?}"
    );
    assert!(unknown.is_empty(), "listed but not defined: {unknown:?}");
}
