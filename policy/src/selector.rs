//! Calico's selector language.
//!
//! The grammar, the matching rules, the canonical form and the unique id are
//! Calico's (`libcalico-go/lib/selector`), so that a policy written for Calico
//! selects the same endpoints here, and so that two selectors Calico would
//! share one IP set for also share one here.
//!
//! ```text
//! expr     := or
//! or       := and ( "||" and )*
//! and      := op ( "&&" op )*
//! op       := "!"* ( "(" or ")" | "all()" | "global()" | "has(" label ")"
//!                  | label ( "==" | "!=" | "contains" | "starts with"
//!                          | "ends with" ) string
//!                  | label ( "in" | "not in" ) "{" [ string ( "," string )* [","] ] "}" )
//! label    := [A-Za-z0-9_./-]{1,512}
//! string   := "'" [^']* "'" | '"' [^"]* '"'
//! ```
//!
//! Only spaces and tabs separate tokens (a newline is an error, as in
//! Calico). An empty selector is `all()`. Strings have no escapes: a value
//! holding `"` is written in single quotes and the other way round.

mod parse;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::BuildHasher;
use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::ser::{Serialize, Serializer};
use sha2::{Digest, Sha224};

/// Labels a selector is evaluated against.
pub trait Labels {
    /// The value of label `key`, or `None` when the label is absent (an
    /// absent label and an empty value are different things to a selector).
    fn get(&self, key: &str) -> Option<&str>;
}

impl Labels for BTreeMap<String, String> {
    fn get(&self, key: &str) -> Option<&str> {
        BTreeMap::get(self, key).map(String::as_str)
    }
}

impl<S: BuildHasher> Labels for HashMap<String, String, S> {
    fn get(&self, key: &str) -> Option<&str> {
        HashMap::get(self, key).map(String::as_str)
    }
}

impl<T: Labels + ?Sized> Labels for &T {
    fn get(&self, key: &str) -> Option<&str> {
        (**self).get(key)
    }
}

/// A parsed selector.
///
/// Equality and hashing are structural, which here is the same as comparing
/// canonical forms: `a == 'x'` and `a=="x"` are equal, while `a == "x" &&
/// b == "y"` and `b == "y" && a == "x"` are not (Calico gives them different
/// ids too).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Selector {
    root: Node,
}

/// The parse tree, shaped exactly as Calico's so that the canonical form
/// comes out the same: `&&` and `||` chains stay flat lists in source order,
/// parentheses leave no node of their own, and runs of `!` have already been
/// reduced to at most one `Not`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Node {
    All,
    Global,
    Has(String),
    Eq(String, String),
    Ne(String, String),
    Contains(String, String),
    StartsWith(String, String),
    EndsWith(String, String),
    /// Members sorted bytewise and deduplicated, for binary search and
    /// because Calico prints them that way.
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Not(Box<Node>),
    And(Vec<Node>),
    Or(Vec<Node>),
}

impl Node {
    fn eval<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        match self {
            // `global()` is true against any label set: see
            // `Selector::is_global` for what it means in a namespaceSelector.
            Node::All | Node::Global => true,
            Node::Has(k) => labels.get(k).is_some(),
            Node::Eq(k, v) => labels.get(k) == Some(v.as_str()),
            // An absent label is "not equal" and "not in": Calico's choice,
            // which makes `a != "x"` the exact negation of `a == "x"`.
            Node::Ne(k, v) => labels.get(k) != Some(v.as_str()),
            Node::Contains(k, v) => labels.get(k).is_some_and(|x| x.contains(v.as_str())),
            Node::StartsWith(k, v) => labels.get(k).is_some_and(|x| x.starts_with(v.as_str())),
            Node::EndsWith(k, v) => labels.get(k).is_some_and(|x| x.ends_with(v.as_str())),
            Node::In(k, set) => labels.get(k).is_some_and(|x| set_contains(set, x)),
            Node::NotIn(k, set) => !labels.get(k).is_some_and(|x| set_contains(set, x)),
            Node::Not(n) => !n.eval(labels),
            Node::And(ns) => ns.iter().all(|n| n.eval(labels)),
            Node::Or(ns) => ns.iter().any(|n| n.eval(labels)),
        }
    }

    /// Calico's `String()`: every `&&`/`||` chain in parentheses, `!` glued
    /// to its operand, values in double quotes unless they hold one.
    fn write<W: fmt::Write>(&self, w: &mut W) -> fmt::Result {
        match self {
            Node::All => w.write_str("all()"),
            Node::Global => w.write_str("global()"),
            Node::Has(k) => write!(w, "has({k})"),
            Node::Eq(k, v) => write_op(w, k, " == ", v),
            Node::Ne(k, v) => write_op(w, k, " != ", v),
            Node::Contains(k, v) => write_op(w, k, " contains ", v),
            Node::StartsWith(k, v) => write_op(w, k, " starts with ", v),
            Node::EndsWith(k, v) => write_op(w, k, " ends with ", v),
            Node::In(k, set) => write_set(w, k, " in {", set),
            Node::NotIn(k, set) => write_set(w, k, " not in {", set),
            Node::Not(n) => {
                w.write_char('!')?;
                n.write(w)
            }
            Node::And(ns) => write_chain(w, ns, " && "),
            Node::Or(ns) => write_chain(w, ns, " || "),
        }
    }
}

fn set_contains(set: &[String], value: &str) -> bool {
    set.binary_search_by(|m| m.as_str().cmp(value)).is_ok()
}

/// The parser never yields a value holding both quote characters, so one of
/// the two always round-trips.
fn write_quoted<W: fmt::Write>(w: &mut W, value: &str) -> fmt::Result {
    let q = if value.contains('"') { '\'' } else { '"' };
    w.write_char(q)?;
    w.write_str(value)?;
    w.write_char(q)
}

fn write_op<W: fmt::Write>(w: &mut W, key: &str, op: &str, value: &str) -> fmt::Result {
    w.write_str(key)?;
    w.write_str(op)?;
    write_quoted(w, value)
}

fn write_set<W: fmt::Write>(w: &mut W, key: &str, op: &str, set: &[String]) -> fmt::Result {
    w.write_str(key)?;
    w.write_str(op)?;
    for (i, m) in set.iter().enumerate() {
        if i > 0 {
            w.write_str(", ")?;
        }
        write_quoted(w, m)?;
    }
    w.write_char('}')
}

fn write_chain<W: fmt::Write>(w: &mut W, nodes: &[Node], sep: &str) -> fmt::Result {
    w.write_char('(')?;
    for (i, n) in nodes.iter().enumerate() {
        if i > 0 {
            w.write_str(sep)?;
        }
        n.write(w)?;
    }
    w.write_char(')')
}

impl Selector {
    /// Parses `s` with Calico's grammar. Whitespace-only input is `all()`.
    ///
    /// # Errors
    ///
    /// Anything Calico would reject, with the byte offset where parsing
    /// stopped; also parentheses nested deeper than 128.
    pub fn parse(s: &str) -> Result<Selector, SelectorError> {
        parse::parse(s).map(|root| Selector { root })
    }

    /// `all()`.
    #[must_use]
    pub fn all() -> Selector {
        Selector { root: Node::All }
    }

    /// Whether an entity with these labels is selected. Allocates nothing.
    #[must_use]
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        self.root.eval(labels)
    }

    /// Calico's canonical (`String()`) form, e.g. `(a == "b" && !has(c))`.
    #[must_use]
    pub fn canonical(&self) -> String {
        self.to_string()
    }

    /// Calico's id for this selector (`hash.MakeUniqueID("s", canonical)`):
    /// `"s:"` followed by the unpadded URL-safe base64 of the SHA-224 of
    /// `"s:" + canonical`. Calico names a selector's IP set after it.
    #[must_use]
    pub fn unique_id(&self) -> String {
        let mut h = Sha224::new();
        h.update(b"s:");
        h.update(self.canonical().as_bytes());
        format!("s:{}", URL_SAFE_NO_PAD.encode(h.finalize()))
    }

    /// True for `all()` and the empty selector (also written `(all())`,
    /// `!!all()`), which select every entity without looking at labels.
    /// Selectors that merely happen to match everything (`has(a) ||
    /// !has(a)`) are not recognised.
    #[must_use]
    pub fn is_all(&self) -> bool {
        self.root == Node::All
    }

    /// True when the selector is exactly `global()`.
    ///
    /// Against a label set `global()` is true, as in Calico's evaluator, so
    /// `matches` treats it like `all()`. Its meaning comes from where it is
    /// written: in a rule's `namespaceSelector` Calico rewrites every
    /// `global()` to `!has(projectcalico.org/namespace)` (and every `all()` to
    /// `has(projectcalico.org/namespace)`) before matching endpoints, so it
    /// selects only non-namespaced entities: host endpoints and global
    /// network sets. Code that turns a namespaceSelector into a set of
    /// endpoints must check this (or do the same rewrite) rather than
    /// evaluate the selector against namespace labels, where it would select
    /// every namespace.
    #[must_use]
    pub fn is_global(&self) -> bool {
        self.root == Node::Global
    }
}

impl Default for Selector {
    fn default() -> Self {
        Selector::all()
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.root.write(f)
    }
}

impl FromStr for Selector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Selector::parse(s)
    }
}

/// Written as its canonical form.
impl Serialize for Selector {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Read from a string, which must parse; the error says where it does not.
impl<'de> Deserialize<'de> for Selector {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SelectorVisitor;

        impl Visitor<'_> for SelectorVisitor {
            type Value = Selector;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a Calico selector string")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Selector, E> {
                Selector::parse(v).map_err(E::custom)
            }
        }

        deserializer.deserialize_str(SelectorVisitor)
    }
}

/// Why a selector did not parse, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid selector '{input}': {message} at offset {offset}")]
pub struct SelectorError {
    /// The selector as given.
    pub input: String,
    pub message: String,
    /// Byte offset into `input` of the token or character that could not be
    /// accepted; `input.len()` when the selector ended too early.
    pub offset: usize,
}
