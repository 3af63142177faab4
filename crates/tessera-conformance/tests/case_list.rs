//! Guards the suite itself: every `pub async fn` case under `src/cases/`
//! must be listed, exactly once, in the macro of its own module, and
//! `conformance_suite!` must run every module's macro, or a backend would
//! never run the case.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const LIB: &str = include_str!("../src/lib.rs");

/// Every `.rs` file under `dir`, recursively.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read src/cases") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            out.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// Case module (`sessions` for `src/cases/sessions/create.rs` and for
/// `src/cases/events.rs`'s `events`) → the cases its files define.
fn defined_cases() -> BTreeMap<String, Vec<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cases");
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in sources(&root) {
        let rel = file.strip_prefix(&root).expect("under src/cases");
        let first = rel.components().next().expect("a path component");
        let module = Path::new(first.as_os_str())
            .file_stem()
            .expect("a file name")
            .to_string_lossy()
            .into_owned();
        if module == "mod" {
            continue;
        }
        let text = std::fs::read_to_string(&file).expect("read a case file");
        let cases = text
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix("pub async fn "))
            .map(|rest| {
                rest.split(['(', '<'])
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_owned()
            });
        out.entry(module).or_default().extend(cases);
    }
    out
}

/// Case module → the cases its macro lists, in order.
fn listed_cases() -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    let marker = "$crate::__cases! { ";
    let mut rest = LIB;
    while let Some(start) = rest.find(marker) {
        let body = &rest[start + marker.len()..];
        let module = body.split(';').next().expect("the module name").trim();
        let end = body.find('}').expect("end of a case list");
        let cases = body[..end]
            .lines()
            .skip(1)
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("//"))
            .map(|l| l.trim_end_matches(',').to_owned())
            .collect();
        assert!(
            out.insert(module.to_owned(), cases).is_none(),
            "two case lists for module {module}"
        );
        rest = &body[end..];
    }
    out
}

/// The capability macros `conformance_suite!` runs.
fn suite_macros() -> BTreeSet<String> {
    let start = LIB
        .find("macro_rules! conformance_suite {")
        .expect("conformance_suite! in lib.rs");
    let body = &LIB[start..];
    let end = body.find("\n}").expect("end of conformance_suite!");
    body[..end]
        .lines()
        .filter_map(|l| l.trim().strip_prefix("$crate::"))
        .filter_map(|l| l.strip_suffix("!(@complete $factory);"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_case_is_listed_in_its_modules_macro() {
    let defined = defined_cases();
    let listed = listed_cases();
    let total: usize = defined.values().map(Vec::len).sum();
    assert!(total >= 60, "parsed too few cases: {defined:?}");
    assert_eq!(
        defined.keys().collect::<Vec<_>>(),
        listed.keys().collect::<Vec<_>>(),
        "every case module has exactly one case list"
    );
    let mut seen = BTreeSet::new();
    for (module, cases) in &defined {
        let here: BTreeSet<&String> = cases.iter().collect();
        let there: BTreeSet<&String> = listed[module].iter().collect();
        assert_eq!(here.len(), cases.len(), "{module}: a case defined twice");
        assert_eq!(there.len(), listed[module].len(), "{module}: a case listed twice");
        let missing: Vec<_> = here.difference(&there).collect();
        let unknown: Vec<_> = there.difference(&here).collect();
        assert!(
            missing.is_empty(),
            "{module}: cases not run by its macro: {missing:?}"
        );
        assert!(
            unknown.is_empty(),
            "{module}: listed but not defined: {unknown:?}"
        );
        for c in cases {
            assert!(seen.insert(c.clone()), "case {c} is in two modules");
        }
    }
}

#[test]
fn the_full_suite_runs_every_modules_macro() {
    let listed = listed_cases();
    let run = suite_macros();
    for module in listed.keys() {
        let name = format!("{module}_cases");
        assert!(
            run.contains(&name),
            "conformance_suite! does not run {name}!: {run:?}"
        );
        assert!(
            LIB.contains(&format!("macro_rules! {name} {{")),
            "no macro {name}! for module {module}"
        );
    }
    assert_eq!(run.len(), listed.len(), "conformance_suite! runs {run:?}");
}
