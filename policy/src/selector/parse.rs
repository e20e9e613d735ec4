//! Tokenizer and recursive-descent parser, following Calico's tokenizer and
//! parser decision for decision so that the same strings are accepted.
//!
//! Every position handed to `&src[..]` slicing is either 0, the end, or just
//! past an ASCII byte (identifier characters, operators, quotes), so it is
//! always a character boundary.

use super::{Node, SelectorError};

/// Calico's `MaxLabelLength`.
const MAX_LABEL_LEN: usize = 512;

/// Parentheses nesting limit. Calico has none; here a selector comes from
/// cluster objects anyone with policy rights can write, and the parser, the
/// evaluator and `Drop` all recurse once per level.
const MAX_DEPTH: usize = 128;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tok<'a> {
    Label(&'a str),
    Str(&'a str),
    LBrace,
    RBrace,
    Comma,
    Eq,
    Ne,
    In,
    NotIn,
    Not,
    Contains,
    StartsWith,
    EndsWith,
    All,
    Global,
    Has(&'a str),
    LParen,
    RParen,
    And,
    Or,
    Eof,
}

impl std::fmt::Display for Tok<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tok::Label(l) => write!(f, "label '{l}'"),
            Tok::Str(s) => {
                f.write_str("string ")?;
                super::write_quoted(f, s)
            }
            Tok::LBrace => f.write_str("'{'"),
            Tok::RBrace => f.write_str("'}'"),
            Tok::Comma => f.write_str("','"),
            Tok::Eq => f.write_str("'=='"),
            Tok::Ne => f.write_str("'!='"),
            Tok::In => f.write_str("'in'"),
            Tok::NotIn => f.write_str("'not in'"),
            Tok::Not => f.write_str("'!'"),
            Tok::Contains => f.write_str("'contains'"),
            Tok::StartsWith => f.write_str("'starts with'"),
            Tok::EndsWith => f.write_str("'ends with'"),
            Tok::All => f.write_str("'all()'"),
            Tok::Global => f.write_str("'global()'"),
            Tok::Has(l) => write!(f, "'has({l})'"),
            Tok::LParen => f.write_str("'('"),
            Tok::RParen => f.write_str("')'"),
            Tok::And => f.write_str("'&&'"),
            Tok::Or => f.write_str("'||'"),
            Tok::Eof => f.write_str("end of selector"),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Token<'a> {
    tok: Tok<'a>,
    at: usize,
}

fn error(input: &str, message: impl Into<String>, offset: usize) -> SelectorError {
    SelectorError {
        input: input.to_owned(),
        message: message.into(),
        offset,
    }
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'/' | b'-')
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    fn peek(&self) -> Option<u8> {
        self.src.as_bytes().get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, s: &str) -> bool {
        let found = self.rest().starts_with(s);
        if found {
            self.pos += s.len();
        }
        found
    }

    /// An operator word (or words, any spaces or none between them, as in
    /// `starts with` or `startswith`) that is not the start of a longer
    /// identifier: `a instance` is not `a in stance`.
    fn eat_words(&mut self, words: &[&str]) -> bool {
        let start = self.pos;
        for (i, w) in words.iter().enumerate() {
            if i > 0 {
                self.skip_ws();
            }
            if !self.eat(w) {
                self.pos = start;
                return false;
            }
        }
        if self.peek().is_some_and(is_ident_byte) {
            self.pos = start;
            return false;
        }
        true
    }

    /// A label name; `what` describes the context for the error when there
    /// is none.
    fn ident(&mut self, what: &str) -> Result<&'a str, SelectorError> {
        let start = self.pos;
        let len = self
            .rest()
            .bytes()
            .position(|b| !is_ident_byte(b))
            .unwrap_or(self.rest().len());
        if len == 0 {
            let msg = match self.rest().chars().next() {
                Some(c) => format!("{what}, found {c:?}"),
                None => format!("{what}, found end of selector"),
            };
            return Err(error(self.src, msg, start));
        }
        if len > MAX_LABEL_LEN {
            return Err(error(
                self.src,
                format!("label of {len} bytes is longer than the {MAX_LABEL_LEN} allowed"),
                start,
            ));
        }
        self.pos += len;
        Ok(&self.src[start..self.pos])
    }

    /// `all(`, `global(` or `has(x` has been read: the `)` must follow.
    fn close_paren(&mut self, what: &str) -> Result<(), SelectorError> {
        self.skip_ws();
        if self.eat(")") {
            Ok(())
        } else {
            Err(error(
                self.src,
                format!("expected ')' to close '{what}'"),
                self.pos,
            ))
        }
    }

    fn next(&mut self, prev: Option<Tok<'a>>) -> Result<Token<'a>, SelectorError> {
        self.skip_ws();
        let at = self.pos;
        let Some(b) = self.peek() else {
            return Ok(Token { tok: Tok::Eof, at });
        };
        let tok = match b {
            b'(' | b')' | b'{' | b'}' | b',' => {
                self.pos += 1;
                match b {
                    b'(' => Tok::LParen,
                    b')' => Tok::RParen,
                    b'{' => Tok::LBrace,
                    b'}' => Tok::RBrace,
                    _ => Tok::Comma,
                }
            }
            b'"' | b'\'' => {
                let body = &self.src[at + 1..];
                let Some(len) = body.bytes().position(|c| c == b) else {
                    return Err(error(
                        self.src,
                        format!("unterminated string: no closing {:?}", b as char),
                        at,
                    ));
                };
                self.pos = at + 1 + len + 1;
                Tok::Str(&body[..len])
            }
            b'=' if self.eat("==") => Tok::Eq,
            b'=' => return Err(error(self.src, "expected '=='", at)),
            b'!' if self.eat("!=") => Tok::Ne,
            b'!' => {
                self.pos += 1;
                Tok::Not
            }
            b'&' if self.eat("&&") => Tok::And,
            b'&' => return Err(error(self.src, "expected '&&'", at)),
            b'|' if self.eat("||") => Tok::Or,
            b'|' => return Err(error(self.src, "expected '||'", at)),
            _ => {
                if let Some(Tok::Label(label)) = prev {
                    // Right after a label only an operator may follow, which
                    // is what lets a label be called `contains` or `in`.
                    if self.eat_words(&["contains"]) {
                        Tok::Contains
                    } else if self.eat_words(&["starts", "with"]) {
                        Tok::StartsWith
                    } else if self.eat_words(&["ends", "with"]) {
                        Tok::EndsWith
                    } else if self.eat_words(&["not", "in"]) {
                        Tok::NotIn
                    } else if self.eat_words(&["in"]) {
                        Tok::In
                    } else {
                        return Err(error(
                            self.src,
                            format!("expected an operator after label '{label}'"),
                            at,
                        ));
                    }
                } else if self.eat("has(") {
                    self.skip_ws();
                    let label = self.ident("expected a label name in 'has('")?;
                    self.close_paren("has(")?;
                    Tok::Has(label)
                } else if self.eat("all(") {
                    self.close_paren("all(")?;
                    Tok::All
                } else if self.eat("global(") {
                    self.close_paren("global(")?;
                    Tok::Global
                } else {
                    Tok::Label(self.ident("unexpected character")?)
                }
            }
        };
        Ok(Token { tok, at })
    }
}

fn tokenize(src: &str) -> Result<Vec<Token<'_>>, SelectorError> {
    let mut lexer = Lexer { src, pos: 0 };
    let mut tokens: Vec<Token<'_>> = Vec::new();
    loop {
        let t = lexer.next(tokens.last().map(|t| t.tok))?;
        tokens.push(t);
        if t.tok == Tok::Eof {
            return Ok(tokens);
        }
    }
}

pub(super) fn parse(src: &str) -> Result<Node, SelectorError> {
    let tokens = tokenize(src)?;
    let mut p = Parser {
        src,
        tokens,
        pos: 0,
        depth: 0,
    };
    if p.peek().tok == Tok::Eof {
        return Ok(Node::All);
    }
    let node = p.or()?;
    let t = p.peek();
    if t.tok != Tok::Eof {
        return Err(p.error(
            format!("unexpected {} after a complete expression", t.tok),
            t.at,
        ));
    }
    Ok(node)
}

struct Parser<'a> {
    src: &'a str,
    /// Always ends with `Eof`, and `pos` never moves past it.
    tokens: Vec<Token<'a>>,
    pos: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Token<'a> {
        match self.tokens.get(self.pos) {
            Some(t) => *t,
            None => Token {
                tok: Tok::Eof,
                at: self.src.len(),
            },
        }
    }

    fn bump(&mut self) -> Token<'a> {
        let t = self.peek();
        if t.tok != Tok::Eof {
            self.pos += 1;
        }
        t
    }

    fn error(&self, message: impl Into<String>, offset: usize) -> SelectorError {
        error(self.src, message, offset)
    }

    fn or(&mut self) -> Result<Node, SelectorError> {
        let mut nodes = vec![self.and()?];
        while self.peek().tok == Tok::Or {
            self.bump();
            nodes.push(self.and()?);
        }
        Ok(single_or(nodes, Node::Or))
    }

    fn and(&mut self) -> Result<Node, SelectorError> {
        let mut nodes = vec![self.op()?];
        while self.peek().tok == Tok::And {
            self.bump();
            nodes.push(self.op()?);
        }
        Ok(single_or(nodes, Node::And))
    }

    /// One possibly negated operation. Like Calico, a run of `!` collapses
    /// to one negation or none, so `!!has(a)` is `has(a)`.
    fn op(&mut self) -> Result<Node, SelectorError> {
        let mut negated = false;
        while self.peek().tok == Tok::Not {
            self.bump();
            negated = !negated;
        }
        let t = self.bump();
        let node = match t.tok {
            Tok::Has(label) => Node::Has(label.to_owned()),
            Tok::All => Node::All,
            Tok::Global => Node::Global,
            Tok::Label(label) => self.label_op(label)?,
            Tok::LParen => {
                if self.depth >= MAX_DEPTH {
                    return Err(self.error(
                        format!("parentheses nested more than {MAX_DEPTH} deep"),
                        t.at,
                    ));
                }
                self.depth += 1;
                let inner = self.or()?;
                self.depth -= 1;
                let close = self.bump();
                if close.tok != Tok::RParen {
                    return Err(self.error(
                        format!(
                            "expected ')' to close the '(' at offset {}, found {}",
                            t.at, close.tok
                        ),
                        close.at,
                    ));
                }
                inner
            }
            other => {
                return Err(self.error(format!("expected an expression, found {other}"), t.at));
            }
        };
        Ok(if negated {
            Node::Not(Box::new(node))
        } else {
            node
        })
    }

    fn label_op(&mut self, label: &str) -> Result<Node, SelectorError> {
        let key = label.to_owned();
        let op = self.bump();
        let make: fn(String, String) -> Node = match op.tok {
            Tok::Eq => Node::Eq,
            Tok::Ne => Node::Ne,
            Tok::Contains => Node::Contains,
            Tok::StartsWith => Node::StartsWith,
            Tok::EndsWith => Node::EndsWith,
            Tok::In | Tok::NotIn => {
                let set = self.set(op.tok)?;
                return Ok(if op.tok == Tok::In {
                    Node::In(key, set)
                } else {
                    Node::NotIn(key, set)
                });
            }
            other => {
                return Err(self.error(
                    format!("expected an operator after label '{label}', found {other}"),
                    op.at,
                ));
            }
        };
        let value = self.bump();
        match value.tok {
            Tok::Str(v) => Ok(make(key, v.to_owned())),
            other => Err(self.error(
                format!("expected a quoted string after {}, found {other}", op.tok),
                value.at,
            )),
        }
    }

    /// `{ "a", 'b' }` after `in` or `not in`. As in Calico, `{}` and a
    /// trailing comma are accepted.
    fn set(&mut self, op: Tok<'a>) -> Result<Vec<String>, SelectorError> {
        let open = self.bump();
        if open.tok != Tok::LBrace {
            return Err(self.error(
                format!("expected '{{' after {op}, found {}", open.tok),
                open.at,
            ));
        }
        let mut members = Vec::new();
        loop {
            let t = self.bump();
            match t.tok {
                Tok::RBrace => break,
                Tok::Str(v) => {
                    members.push(v.to_owned());
                    let after = self.bump();
                    match after.tok {
                        Tok::Comma => {}
                        Tok::RBrace => break,
                        other => {
                            return Err(self.error(
                                format!("expected ',' or '}}' in set, found {other}"),
                                after.at,
                            ));
                        }
                    }
                }
                other => {
                    return Err(self.error(
                        format!("expected a quoted string or '}}' in set, found {other}"),
                        t.at,
                    ));
                }
            }
        }
        members.sort_unstable();
        members.dedup();
        Ok(members)
    }
}

/// A one-element chain is just its element, as in Calico, so `(a == "b")`
/// prints without parentheses.
fn single_or(mut nodes: Vec<Node>, chain: fn(Vec<Node>) -> Node) -> Node {
    if nodes.len() == 1 {
        if let Some(n) = nodes.pop() {
            return n;
        }
    }
    chain(nodes)
}
