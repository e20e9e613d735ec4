use std::collections::{BTreeMap, HashMap};

use super::{Labels, Selector, SelectorError};

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn canon(s: &str) -> String {
    Selector::parse(s)
        .unwrap_or_else(|e| panic!("{s:?}: {e}"))
        .canonical()
}

fn err(s: &str) -> SelectorError {
    match Selector::parse(s) {
        Ok(sel) => panic!("{s:?} accepted as {:?}", sel.canonical()),
        Err(e) => e,
    }
}

#[test]
fn and_binds_tighter_than_or() {
    let s = Selector::parse("a == '1' || b == '2' && c == '3'").unwrap();
    assert_eq!(s.canonical(), r#"(a == "1" || (b == "2" && c == "3"))"#);
    assert!(s.matches(&labels(&[("a", "1")])));
    assert!(s.matches(&labels(&[("b", "2"), ("c", "3")])));
    assert!(!s.matches(&labels(&[("b", "2")])));

    let s = Selector::parse("a == '1' && b == '2' || c == '3'").unwrap();
    assert_eq!(s.canonical(), r#"((a == "1" && b == "2") || c == "3")"#);
    assert!(s.matches(&labels(&[("c", "3")])));
}

#[test]
fn not_binds_tightest() {
    let s = Selector::parse("!a == 'x' && b == 'y'").unwrap();
    assert_eq!(s.canonical(), r#"(!a == "x" && b == "y")"#);
    assert!(s.matches(&labels(&[("b", "y")])));
    assert!(!s.matches(&labels(&[("a", "x"), ("b", "y")])));

    let s = Selector::parse("!(a == 'x' && b == 'y')").unwrap();
    assert_eq!(s.canonical(), r#"!(a == "x" && b == "y")"#);
    assert!(s.matches(&labels(&[("a", "x")])));
    assert!(!s.matches(&labels(&[("a", "x"), ("b", "y")])));
}

#[test]
fn chains_stay_flat_and_parentheses_nest() {
    assert_eq!(
        canon("has(a) && has(b) && has(c)"),
        "(has(a) && has(b) && has(c))"
    );
    assert_eq!(
        canon("(has(a) && has(b)) && has(c)"),
        "((has(a) && has(b)) && has(c))"
    );
    assert_eq!(canon("((has(a)))"), "has(a)");
    assert_eq!(canon("(all())"), "all()");
}

#[test]
fn runs_of_not_collapse() {
    assert_eq!(canon("!!has(a)"), "has(a)");
    assert_eq!(canon("! ! !has(a)"), "!has(a)");
    // Only a run directly in front of an operand collapses, as in Calico;
    // a `!` outside parentheses stays, so this canonical form is not a
    // fixed point: reparsing `!!a == "b"` gives `a == "b"`.
    assert_eq!(canon("!(!a == 'b')"), r#"!!a == "b""#);
    assert_eq!(canon(r#"!!a == "b""#), r#"a == "b""#);
}

#[test]
fn both_quote_styles() {
    let single = Selector::parse("a == 'x'").unwrap();
    let double = Selector::parse(r#"a == "x""#).unwrap();
    assert_eq!(single, double);
    assert_eq!(single.canonical(), r#"a == "x""#);

    // A value holding one quote character is printed in the other.
    assert_eq!(canon(r#"a == '"'"#), r#"a == '"'"#);
    assert_eq!(canon(r#"a == "'""#), r#"a == "'""#);
    assert_eq!(canon(r#"a in {'"', "'"}"#), r#"a in {'"', "'"}"#);

    let s = Selector::parse(r#"a in {"'", '"', "c"}"#).unwrap();
    assert!(s.matches(&labels(&[("a", "\"")])));
    assert!(s.matches(&labels(&[("a", "'")])));
    assert!(!s.matches(&labels(&[("a", "d")])));
}

#[test]
fn operators() {
    let l = labels(&[("app", "web-frontend"), ("tier", "")]);
    let yes = [
        "app == 'web-frontend'",
        "app != 'web'",
        "missing != 'x'",
        "app contains 'front'",
        "app contains ''",
        "app starts with 'web'",
        "app startswith 'web'",
        "app ends with 'end'",
        "app endswith 'end'",
        "app in {'a', 'web-frontend'}",
        "app not in {'a'}",
        "missing not in {'a'}",
        "missing not in {}",
        "has(tier)",
        "tier == ''",
        "!has(missing)",
        "all()",
        "global()",
        "",
    ];
    let no = [
        "app == 'web'",
        "app != 'web-frontend'",
        "missing == ''",
        "missing contains ''",
        "missing starts with ''",
        "app in {}",
        "missing in {''}",
        "app not in {'web-frontend'}",
        "has(missing)",
        "!all()",
    ];
    for s in yes {
        assert!(
            Selector::parse(s).unwrap().matches(&l),
            "{s:?} should match"
        );
    }
    for s in no {
        assert!(
            !Selector::parse(s).unwrap().matches(&l),
            "{s:?} should not match"
        );
    }
}

#[test]
fn sets_are_sorted_and_deduplicated() {
    assert_eq!(
        canon("a in {'z', 'x', 'z', 'a'}"),
        r#"a in {"a", "x", "z"}"#
    );
    assert_eq!(canon("a not in {'b','a'}"), r#"a not in {"a", "b"}"#);
    // Bytewise order, as Go sorts strings.
    assert_eq!(canon("a in {'b', 'B', '_'}"), r#"a in {"B", "_", "b"}"#);
    assert_eq!(canon("a in {}"), "a in {}");
    // Calico accepts a trailing comma.
    assert_eq!(canon("a in {'x',}"), r#"a in {"x"}"#);
}

#[test]
fn operator_words_need_a_boundary() {
    // A label may be named like an operator...
    assert_eq!(
        canon("contains contains 'contains'"),
        r#"contains contains "contains""#
    );
    assert_eq!(canon("in in {'in'}"), r#"in in {"in"}"#);
    assert_eq!(canon("all == 'x'"), r#"all == "x""#);
    // ...but an operator cannot run into the following word.
    err("a instance {'x'}");
    err("a containsx 'x'");
    // No space is needed before punctuation.
    assert_eq!(
        canon(r#"a notin{"x"}||b in{"y"}&&c!="z""#),
        r#"(a not in {"x"} || (b in {"y"} && c != "z"))"#
    );
}

#[test]
fn label_syntax() {
    assert_eq!(
        canon("has(calico/k8s_NS-.1/role)"),
        "has(calico/k8s_NS-.1/role)"
    );
    assert_eq!(
        canon("projectcalico.org/namespace == 'kube-system' && k8s-app=='kube-dns'"),
        r#"(projectcalico.org/namespace == "kube-system" && k8s-app == "kube-dns")"#
    );
    assert_eq!(canon("has( a )"), "has(a)");
    assert_eq!(canon("all( )"), "all()");
    let max = "k".repeat(512);
    assert_eq!(canon(&format!("has({max})")), format!("has({max})"));
    let e = err(&format!("{max}k == 'x'"));
    assert_eq!(e.offset, 0);
    assert!(e.message.contains("513"), "{e}");
}

#[test]
fn whitespace_is_spaces_and_tabs_only() {
    assert_eq!(canon("\ta\t==\t'b'\t"), r#"a == "b""#);
    let e = err("a == 'b'\n");
    assert_eq!(e.offset, 8);
    let e = err("a == 'b' &&\nhas(c)");
    assert_eq!(e.offset, 11);
}

#[test]
fn error_offsets() {
    let cases: &[(&str, usize, &str)] = &[
        ("b", 1, "expected an operator after label 'b'"),
        ("a b", 2, "expected an operator after label 'a'"),
        ("a ", 2, "end of selector"),
        ("b == b", 5, "expected a quoted string after '=='"),
        ("'b1' == b", 0, "expected an expression, found string"),
        ("!", 1, "expected an expression, found end of selector"),
        ("foo == \"bar\" &", 13, "expected '&&'"),
        ("foo == \"bar\" |", 13, "expected '||'"),
        ("a = 'b'", 2, "expected '=='"),
        ("foo in \"\"", 7, "expected '{' after 'in'"),
        ("foo in {\"\", ||", 12, "expected a quoted string or '}'"),
        ("foo in {\"\" \"x\"}", 11, "expected ',' or '}'"),
        ("\"FOO", 0, "unterminated string"),
        ("a == 'FOO", 5, "unterminated string"),
        ("(", 1, "expected an expression, found end of selector"),
        (
            "(a == \"foo\"",
            11,
            "expected ')' to close the '(' at offset 0",
        ),
        (")", 0, "expected an expression, found ')'"),
        ("()", 1, "expected an expression, found ')'"),
        ("%", 0, "unexpected character, found '%'"),
        ("a == \"b\" && %", 12, "unexpected character"),
        ("has(foo) &&", 11, "end of selector"),
        (
            "has(foo) has(bar)",
            9,
            "unexpected 'has(bar)' after a complete expression",
        ),
        ("has()", 4, "expected a label name in 'has('"),
        ("has(a b)", 6, "expected ')' to close 'has('"),
        ("all(x)", 4, "expected ')' to close 'all('"),
        ("a == 'x' && é", 12, "unexpected character, found 'é'"),
    ];
    let mut failures = Vec::new();
    for &(input, offset, message) in cases {
        match Selector::parse(input) {
            Ok(s) => failures.push(format!("{input:?}: accepted as {s}")),
            Err(e) if e.offset != offset || !e.message.contains(message) => failures.push(format!(
                "{input:?}: want {message:?} at {offset}, got {e:?}"
            )),
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn error_display() {
    let e = err("a == ");
    assert_eq!(
        e.to_string(),
        "invalid selector 'a == ': expected a quoted string after '==', found end of selector at offset 5"
    );
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let ok = format!("{}has(a){}", "(".repeat(100), ")".repeat(100));
    assert_eq!(canon(&ok), "has(a)");
    let deep = format!("{}has(a){}", "(".repeat(100_000), ")".repeat(100_000));
    assert!(err(&deep).message.contains("nested"));
    let nots = format!("{}has(a)", "!".repeat(100_001));
    assert_eq!(canon(&nots), "!has(a)");
}

#[test]
fn non_ascii_values() {
    let s = Selector::parse("a == 'héllo' || b contains \"日本\"").unwrap();
    assert_eq!(s.canonical(), r#"(a == "héllo" || b contains "日本")"#);
    assert!(s.matches(&labels(&[("b", "x日本y")])));
}

#[test]
fn round_trip() {
    let inputs = [
        "",
        " all() ",
        " (all() )",
        "global()",
        "! (has( b)||! has(a ))",
        "! (a == \"b\"&&! c != \"d\")",
        "a == \"'\"",
        "a == '\"'",
        "a contains '\"'",
        "a startswith '\"'",
        "a endswith \"'\"",
        "a!='\"'",
        "a in {\"z\", \"z\", \"x\", \"y\", \"x\", \"a\"}",
        "a not in {\"'\", '\"', \"c\"}",
        "!a in {\"a\"}",
        "a == 'a1' && b != 'b1' || !has(c) && d starts with 'x'",
        "(a == 'a' || b == 'b') && (c == 'c' || !(d == 'd' && e ends with 'e'))",
    ];
    for input in inputs {
        let sel = Selector::parse(input).unwrap();
        let again = Selector::parse(&sel.canonical()).unwrap();
        assert_eq!(again, sel, "{input:?} -> {:?}", sel.canonical());
        assert_eq!(again.canonical(), sel.canonical());
        assert_eq!(again.unique_id(), sel.unique_id());
        assert_eq!(input.parse::<Selector>().unwrap(), sel);
    }
}

#[test]
fn unique_id_shape() {
    let a = Selector::parse("a == 'x' && has(b)").unwrap();
    let b = Selector::parse("(a==\"x\")&&has( b )").unwrap();
    let c = Selector::parse("has(b) && a == 'x'").unwrap();
    assert_eq!(a.unique_id(), b.unique_id());
    assert_ne!(a.unique_id(), c.unique_id());
    let id = a.unique_id();
    // 28 bytes of SHA-224 are 38 base64 characters without padding.
    assert_eq!(id.len(), 2 + 38, "{id}");
    assert!(id.starts_with("s:"));
    assert!(id[2..]
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
}

#[test]
fn all_and_global() {
    for s in ["", "  ", "all()", "(all())", "!!all()"] {
        let sel = Selector::parse(s).unwrap();
        assert!(sel.is_all(), "{s:?}");
        assert!(!sel.is_global(), "{s:?}");
        assert_eq!(sel, Selector::default());
    }
    for s in ["global()", " ( global( ) ) "] {
        let sel = Selector::parse(s).unwrap();
        assert!(sel.is_global(), "{s:?}");
        assert!(!sel.is_all(), "{s:?}");
        assert!(sel.matches(&labels(&[])));
        assert!(sel.matches(&labels(&[("a", "b")])));
    }
    for s in [
        "global() && has(a)",
        "!global()",
        "all() || has(a)",
        "has(a)",
    ] {
        let sel = Selector::parse(s).unwrap();
        assert!(!sel.is_all() && !sel.is_global(), "{s:?}");
    }
}

#[test]
fn label_sources() {
    let sel = Selector::parse("a == 'b'").unwrap();
    let mut h: HashMap<String, String> = HashMap::new();
    h.insert("a".into(), "b".into());
    assert!(sel.matches(&h));
    let d: &dyn Labels = &h;
    assert!(sel.matches(d));
    let boxed: Box<dyn Labels> = Box::new(labels(&[("a", "c")]));
    assert!(!sel.matches(boxed.as_ref()));
    assert!(sel.matches(&&h));
}

#[test]
fn serde_string_form() {
    let sel: Selector = serde_json::from_str(r#""a=='x'&&!has(b)""#).unwrap();
    assert_eq!(sel.canonical(), r#"(a == "x" && !has(b))"#);
    assert_eq!(
        serde_json::to_string(&sel).unwrap(),
        r#""(a == \"x\" && !has(b))""#
    );
    let back: Selector = serde_json::from_str(&serde_json::to_string(&sel).unwrap()).unwrap();
    assert_eq!(back, sel);

    let e = serde_json::from_str::<Selector>(r#""a == ""#).unwrap_err();
    assert!(
        e.to_string()
            .contains("invalid selector 'a == ': expected a quoted string"),
        "{e}"
    );
    assert!(serde_json::from_str::<Selector>("3").is_err());

    #[derive(serde::Deserialize)]
    struct Rule {
        selector: Selector,
    }
    let r: Rule = serde_yaml_ng::from_str("selector: role in {'db', 'cache'}\n").unwrap();
    assert_eq!(r.selector.canonical(), r#"role in {"cache", "db"}"#);
}
