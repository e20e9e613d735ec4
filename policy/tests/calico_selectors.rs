//! Calico's own selector parser test cases, exported from
//! `libcalico-go/lib/selector/parser/parser_test.go` into
//! `tests/data/calico-selectors/calico-parser-test-cases.json` at the
//! repository root (its source and licence: `tests/data/README.md`). The
//! expected values are read at run time and never copied here, so the oracle
//! stays the only source of truth.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use policy::selector::{Labels, Selector};
use serde::Deserialize;

/// The oracle, in the repository's `tests/data/`. A missing file fails the
/// test (in [`load`]), never skips it.
fn oracle_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/data/calico-selectors/calico-parser-test-cases.json")
}

#[derive(Deserialize)]
struct Oracle {
    match_cases: Vec<MatchCase>,
    bad_selectors: Vec<String>,
    canonicalisation: Vec<Canonical>,
}

#[derive(Deserialize)]
struct MatchCase {
    sel: String,
    labels: BTreeMap<String, String>,
    #[serde(rename = "match")]
    matches: bool,
}

#[derive(Deserialize)]
struct Canonical {
    input: String,
    expected: String,
    expected_uid: Option<String>,
}

fn load() -> Oracle {
    let path = oracle_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

fn check(failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} failing case(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn match_cases() {
    let oracle = load();
    assert_eq!(oracle.match_cases.len(), 98, "match_cases count");
    let mut failures = Vec::new();
    for (i, c) in oracle.match_cases.iter().enumerate() {
        let sel = match Selector::parse(&c.sel) {
            Ok(s) => s,
            Err(e) => {
                failures.push(format!("match_cases[{i}] {:?}: rejected: {e}", c.sel));
                continue;
            }
        };
        let hash: HashMap<String, String> = c.labels.clone().into_iter().collect();
        let dynamic: &dyn Labels = &c.labels;
        let got = [
            sel.matches(&c.labels),
            sel.matches(&hash),
            sel.matches(dynamic),
        ];
        if got.iter().any(|&g| g != c.matches) {
            failures.push(format!(
                "match_cases[{i}] {:?} against {:?}: expected {}, got {got:?} (BTreeMap, HashMap, dyn)",
                c.sel, c.labels, c.matches
            ));
        }
        // The canonical form must select exactly what the original does.
        match Selector::parse(&sel.canonical()) {
            Ok(again) if again.matches(&c.labels) == c.matches => {}
            Ok(_) => failures.push(format!(
                "match_cases[{i}] {:?}: canonical {:?} matches differently",
                c.sel,
                sel.canonical()
            )),
            Err(e) => failures.push(format!(
                "match_cases[{i}] {:?}: canonical {:?} rejected: {e}",
                c.sel,
                sel.canonical()
            )),
        }
    }
    check(&failures);
}

#[test]
fn bad_selectors() {
    let oracle = load();
    assert_eq!(oracle.bad_selectors.len(), 26, "bad_selectors count");
    let mut failures = Vec::new();
    for (i, s) in oracle.bad_selectors.iter().enumerate() {
        match Selector::parse(s) {
            Ok(sel) => failures.push(format!(
                "bad_selectors[{i}] {s:?}: accepted as {:?}",
                sel.canonical()
            )),
            Err(e) => {
                if e.offset > s.len() || e.input != *s || e.message.is_empty() {
                    failures.push(format!("bad_selectors[{i}] {s:?}: malformed error {e:?}"));
                }
            }
        }
    }
    check(&failures);
}

#[test]
fn canonicalisation() {
    let oracle = load();
    assert_eq!(oracle.canonicalisation.len(), 17, "canonicalisation count");
    let mut failures = Vec::new();
    for (i, c) in oracle.canonicalisation.iter().enumerate() {
        let sel = match Selector::parse(&c.input) {
            Ok(s) => s,
            Err(e) => {
                failures.push(format!(
                    "canonicalisation[{i}] {:?}: rejected: {e}",
                    c.input
                ));
                continue;
            }
        };
        if sel.canonical() != c.expected {
            failures.push(format!(
                "canonicalisation[{i}] {:?}: expected {:?}, got {:?}",
                c.input,
                c.expected,
                sel.canonical()
            ));
        }
        if sel.to_string() != sel.canonical() {
            failures.push(format!(
                "canonicalisation[{i}] {:?}: Display {:?} differs from canonical",
                c.input,
                sel.to_string()
            ));
        }
        if let Some(uid) = c.expected_uid.as_deref().filter(|u| !u.is_empty()) {
            if sel.unique_id() != uid {
                failures.push(format!(
                    "canonicalisation[{i}] {:?}: expected uid {uid:?}, got {:?}",
                    c.input,
                    sel.unique_id()
                ));
            }
        }
        // Canonical forms are fixed points of parse + canonical.
        match Selector::parse(&c.expected) {
            Ok(again) if again == sel && again.canonical() == c.expected => {}
            Ok(again) => failures.push(format!(
                "canonicalisation[{i}] {:?}: reparsed as {:?}",
                c.expected,
                again.canonical()
            )),
            Err(e) => failures.push(format!(
                "canonicalisation[{i}] {:?}: expected form rejected: {e}",
                c.expected
            )),
        }
    }
    check(&failures);
}
