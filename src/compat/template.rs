//! The Prometheus Adapter's `<<` `>>` Go templates (`metricsQuery`, `resources.template`), rendered as Go's
//! `text/template` renders them for the subset those templates use
//! (the Prometheus Adapter's docs/config.md and its naming and resource code). Pure.
//!
//! Supported: text; `<<.Field>>`, `<<.>>`, `<<$var>>`, string literals; `index X "key"` (or an integer
//! index), `len X`; `if` / `else` / `end`; `range [$i[, $v] :=] X` with `else`; `<<-` and `->>` trimming.
//! Anything else (other functions, pipelines, comments) is a parse error, so `check-config` reports it before
//! a request ever renders it.

use std::collections::BTreeMap;
use std::fmt;

/// A value a template can print or iterate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A string.
    Str(String),
    /// A list of strings, printed as Go prints a slice: `[a b]`.
    List(Vec<String>),
    /// A map of strings, printed as Go prints a map: `map[a:x b:y]`, keys sorted.
    Map(BTreeMap<String, String>),
    /// An integer (a `range` index, `len`).
    Int(i64),
}

impl Value {
    fn truthy(&self) -> bool {
        match self {
            Value::Str(s) => !s.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::Map(m) => !m.is_empty(),
            Value::Int(i) => *i != 0,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => f.write_str(s),
            Value::List(l) => write!(f, "[{}]", l.join(" ")),
            Value::Map(m) => {
                let pairs: Vec<String> = m.iter().map(|(k, v)| format!("{k}:{v}")).collect();
                write!(f, "map[{}]", pairs.join(" "))
            }
            Value::Int(i) => write!(f, "{i}"),
        }
    }
}

/// Why a template does not parse or render.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The template text is malformed or uses something unsupported.
    #[error("template: {0}")]
    Parse(String),
    /// Rendering failed (an unknown field, indexing a non-collection).
    #[error("template: executing: {0}")]
    Render(String),
}

fn parse_error(message: impl Into<String>) -> TemplateError {
    TemplateError::Parse(message.into())
}

/// An operand.
#[derive(Debug, Clone, PartialEq)]
enum Term {
    Dot,
    Field(String),
    RootField(String),
    Var(String),
    Literal(String),
    Number(i64),
}

/// An expression: a term, or a supported function applied to terms.
#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Term(Term),
    Index(Term, Vec<Term>),
    Len(Term),
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Print(Expr),
    If {
        condition: Expr,
        then: Vec<Node>,
        otherwise: Vec<Node>,
    },
    Range {
        index: Option<String>,
        value: Option<String>,
        over: Expr,
        body: Vec<Node>,
        otherwise: Vec<Node>,
    },
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    nodes: Vec<Node>,
}

/// The values a template is rendered with: its fields (`.Name`).
pub type Data = BTreeMap<&'static str, Value>;

enum Token {
    Text(String),
    Action(String),
}

fn tokenize(text: &str) -> Result<Vec<Token>, TemplateError> {
    let mut tokens = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("<<") {
        let mut before = &rest[..start];
        let mut action = &rest[start + 2..];
        if let Some(trimmed) = action.strip_prefix("- ") {
            before = before.trim_end();
            action = trimmed;
        }
        let end = action
            .find(">>")
            .ok_or_else(|| parse_error("unclosed action (missing >>)"))?;
        let mut inner = &action[..end];
        let mut after = &action[end + 2..];
        if let Some(trimmed) = inner.strip_suffix(" -") {
            inner = trimmed;
            after = after.trim_start();
        }
        if !before.is_empty() {
            tokens.push(Token::Text(before.to_owned()));
        }
        tokens.push(Token::Action(inner.trim().to_owned()));
        rest = after;
    }
    if !rest.is_empty() {
        tokens.push(Token::Text(rest.to_owned()));
    }
    Ok(tokens)
}

fn words(action: &str) -> Result<Vec<String>, TemplateError> {
    let mut words = Vec::new();
    let mut chars = action.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' {
            chars.next();
            let mut literal = String::from('"');
            loop {
                match chars.next() {
                    None => return Err(parse_error("unterminated quoted string")),
                    Some('\\') => match chars.next() {
                        Some('n') => literal.push('\n'),
                        Some('t') => literal.push('\t'),
                        Some(other) => literal.push(other),
                        None => return Err(parse_error("unterminated quoted string")),
                    },
                    Some('"') => break,
                    Some(other) => literal.push(other),
                }
            }
            words.push(literal);
        } else if c == ',' {
            chars.next();
            words.push(",".to_owned());
        } else {
            let mut word = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() || c == ',' || c == '"' {
                    break;
                }
                word.push(c);
                chars.next();
            }
            words.push(word);
        }
    }
    Ok(words)
}

fn term(word: &str) -> Result<Term, TemplateError> {
    if word == "." {
        Ok(Term::Dot)
    } else if let Some(field) = word.strip_prefix('.') {
        if field.is_empty() || !field.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(parse_error(format!("unsupported field reference {word:?}")));
        }
        Ok(Term::Field(field.to_owned()))
    } else if let Some(field) = word.strip_prefix("$.") {
        // `$` is the data the template was called with: `$.Series` inside a `range` still means the root's.
        term(&format!(".{field}")).map(|t| match t {
            Term::Field(f) => Term::RootField(f),
            other => other,
        })
    } else if word.starts_with('$') {
        Ok(Term::Var(word.to_owned()))
    } else if let Some(literal) = word.strip_prefix('"') {
        Ok(Term::Literal(literal.to_owned()))
    } else if let Ok(number) = word.parse() {
        Ok(Term::Number(number))
    } else {
        Err(parse_error(format!(
            "function {word:?} not supported (only index and len)"
        )))
    }
}

fn expr(words: &[String]) -> Result<Expr, TemplateError> {
    match words {
        [] => Err(parse_error("missing value for command")),
        [single] => Ok(Expr::Term(term(single)?)),
        [f, target, keys @ ..] if f == "index" && !keys.is_empty() => Ok(Expr::Index(
            term(target)?,
            keys.iter().map(|k| term(k)).collect::<Result<_, _>>()?,
        )),
        [f, target] if f == "len" => Ok(Expr::Len(term(target)?)),
        [f, ..] if f.contains('|') || words.iter().any(|w| w == "|") => {
            Err(parse_error("pipelines are not supported"))
        }
        [f, ..] => Err(parse_error(format!(
            "function {f:?} not supported (only index and len)"
        ))),
    }
}

/// Where a nested block ended.
enum Stop {
    End,
    Else,
    Eof,
}

fn parse_block(tokens: &mut std::vec::IntoIter<Token>) -> Result<(Vec<Node>, Stop), TemplateError> {
    let mut nodes = Vec::new();
    while let Some(token) = tokens.next() {
        let action = match token {
            Token::Text(text) => {
                nodes.push(Node::Text(text));
                continue;
            }
            Token::Action(action) => action,
        };
        if action.starts_with("/*") {
            return Err(parse_error("comments are not supported"));
        }
        let w = words(&action)?;
        match w.first().map(String::as_str) {
            Some("end") => return Ok((nodes, Stop::End)),
            Some("else") if w.len() == 1 => return Ok((nodes, Stop::Else)),
            Some("else") => return Err(parse_error("else if is not supported")),
            Some("if") => {
                let condition = expr(&w[1..])?;
                let (then, otherwise) = parse_branches(tokens, "if")?;
                nodes.push(Node::If {
                    condition,
                    then,
                    otherwise,
                });
            }
            Some("range") => {
                let rest = &w[1..];
                let (index, value, over) = match rest {
                    [i, comma, v, assign, over @ ..] if comma == "," && assign == ":=" => {
                        (Some(i.clone()), Some(v.clone()), over)
                    }
                    [v, assign, over @ ..] if assign == ":=" => (None, Some(v.clone()), over),
                    over => (None, None, over),
                };
                for var in index.iter().chain(&value) {
                    if !var.starts_with('$') {
                        return Err(parse_error(format!(
                            "range variable {var:?} must start with $"
                        )));
                    }
                }
                let over = expr(over)?;
                let (body, otherwise) = parse_branches(tokens, "range")?;
                nodes.push(Node::Range {
                    index,
                    value,
                    over,
                    body,
                    otherwise,
                });
            }
            Some("with" | "define" | "template" | "block" | "break" | "continue") => {
                return Err(parse_error(format!("{action:?} is not supported")));
            }
            _ => nodes.push(Node::Print(expr(&w)?)),
        }
    }
    Ok((nodes, Stop::Eof))
}

fn parse_branches(
    tokens: &mut std::vec::IntoIter<Token>,
    what: &str,
) -> Result<(Vec<Node>, Vec<Node>), TemplateError> {
    match parse_block(tokens)? {
        (then, Stop::End) => Ok((then, Vec::new())),
        (then, Stop::Else) => match parse_block(tokens)? {
            (otherwise, Stop::End) => Ok((then, otherwise)),
            _ => Err(parse_error(format!("unexpected EOF in {what}"))),
        },
        (_, Stop::Eof) => Err(parse_error(format!("unexpected EOF in {what}"))),
    }
}

impl std::str::FromStr for Template {
    type Err = TemplateError;

    fn from_str(text: &str) -> Result<Self, TemplateError> {
        let mut tokens = tokenize(text)?.into_iter();
        match parse_block(&mut tokens)? {
            (nodes, Stop::Eof) => Ok(Self { nodes }),
            (_, Stop::End) => Err(parse_error("unexpected {{end}}")),
            (_, Stop::Else) => Err(parse_error("unexpected {{else}}")),
        }
    }
}

struct Scope<'a> {
    data: &'a Data,
    /// `None` while `.` is the data itself; inside `range`, the current element.
    dot: Option<Value>,
    vars: Vec<(String, Value)>,
}

impl Scope<'_> {
    fn term(&self, term: &Term) -> Result<Value, TemplateError> {
        Ok(match term {
            Term::Dot => self
                .dot
                .clone()
                .ok_or_else(|| TemplateError::Render("can't print the whole data".into()))?,
            Term::Field(name) if self.dot.is_some() => {
                return Err(TemplateError::Render(format!(
                    "can't evaluate field {name} inside range (use $.{name})"
                )));
            }
            Term::Field(name) | Term::RootField(name) => self
                .data
                .get(name.as_str())
                .cloned()
                .ok_or_else(|| TemplateError::Render(format!("can't evaluate field {name}")))?,
            Term::Var(name) => self
                .vars
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .ok_or_else(|| TemplateError::Render(format!("undefined variable {name}")))?,
            Term::Literal(s) => Value::Str(s.clone()),
            Term::Number(n) => Value::Int(*n),
        })
    }

    fn expr(&self, expr: &Expr) -> Result<Value, TemplateError> {
        match expr {
            Expr::Term(t) => self.term(t),
            Expr::Len(t) => Ok(Value::Int(match self.term(t)? {
                Value::Str(s) => s.len() as i64,
                Value::List(l) => l.len() as i64,
                Value::Map(m) => m.len() as i64,
                Value::Int(_) => return Err(TemplateError::Render("len of an integer".into())),
            })),
            Expr::Index(target, keys) => {
                let mut value = self.term(target)?;
                for key in keys {
                    value = match (value, self.term(key)?) {
                        // A missing key gives the zero value, as Go's index does for maps.
                        (Value::Map(m), Value::Str(k)) => {
                            Value::Str(m.get(&k).cloned().unwrap_or_default())
                        }
                        (Value::List(l), Value::Int(i)) => {
                            let found = usize::try_from(i).ok().and_then(|i| l.get(i).cloned());
                            Value::Str(found.ok_or_else(|| {
                                TemplateError::Render(format!("index out of range: {i}"))
                            })?)
                        }
                        (other, key) => {
                            return Err(TemplateError::Render(format!(
                                "cannot index {other} with {key}"
                            )));
                        }
                    };
                }
                Ok(value)
            }
        }
    }

    fn render(&mut self, nodes: &[Node], out: &mut String) -> Result<(), TemplateError> {
        for node in nodes {
            match node {
                Node::Text(text) => out.push_str(text),
                Node::Print(expr) => out.push_str(&self.expr(expr)?.to_string()),
                Node::If {
                    condition,
                    then,
                    otherwise,
                } => {
                    let branch = if self.expr(condition)?.truthy() {
                        then
                    } else {
                        otherwise
                    };
                    self.render(branch, out)?;
                }
                Node::Range {
                    index,
                    value,
                    over,
                    body,
                    otherwise,
                } => {
                    let items: Vec<(Value, Value)> = match self.expr(over)? {
                        Value::List(l) => l
                            .into_iter()
                            .enumerate()
                            .map(|(i, v)| (Value::Int(i as i64), Value::Str(v)))
                            .collect(),
                        Value::Map(m) => m
                            .into_iter()
                            .map(|(k, v)| (Value::Str(k), Value::Str(v)))
                            .collect(),
                        Value::Int(n) => (0..n).map(|i| (Value::Int(i), Value::Int(i))).collect(),
                        Value::Str(_) => {
                            return Err(TemplateError::Render(
                                "range can't iterate over a string".into(),
                            ));
                        }
                    };
                    if items.is_empty() {
                        self.render(otherwise, out)?;
                        continue;
                    }
                    let saved_dot = self.dot.clone();
                    let depth = self.vars.len();
                    for (i, v) in items {
                        self.vars.truncate(depth);
                        match (index, value) {
                            (Some(index), Some(value)) => {
                                self.vars.push((index.clone(), i));
                                self.vars.push((value.clone(), v.clone()));
                            }
                            (None, Some(value)) => self.vars.push((value.clone(), v.clone())),
                            _ => {}
                        }
                        self.dot = Some(v);
                        self.render(body, out)?;
                    }
                    self.vars.truncate(depth);
                    self.dot = saved_dot;
                }
            }
        }
        Ok(())
    }
}

impl Template {
    /// Renders with `data` as the fields of `.`.
    pub fn render(&self, data: &Data) -> Result<String, TemplateError> {
        let mut scope = Scope {
            data,
            dot: None,
            vars: Vec::new(),
        };
        let mut out = String::new();
        scope.render(&self.nodes, &mut out)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
