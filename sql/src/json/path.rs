//! SQL/JSON path expressions (`jsonpath`), the part RAG stores and ORMs
//! send: `$.a.b`, `$.a[0]`, `$.a[*]`, `$.*`, `$var`, filters `? (@.x > 1)`,
//! comparisons (`== != <> < <= > >=`), `&&`, `||`, `!`, `exists (…)`,
//! `starts with`, `is unknown`, and the methods `.size()`, `.type()`,
//! `.double()`. Lax mode (the default): arrays are unwrapped by member
//! accessors and comparisons, a missing key yields nothing. Arithmetic and
//! `like_regex` are refused (0A000) rather than read wrongly.

use serde_json::Value;

use super::{JsonError, json_eq};

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Dollar(Option<String>),
    At,
    Dot,
    Ident(String),
    Str(String),
    Num(f64),
    LBracket,
    RBracket,
    LParen,
    RParen,
    Star,
    Comma,
    Question,
    Op(&'static str),
}

fn tokenize(s: &str) -> Result<Vec<Tok>, JsonError> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let ident_end = |mut j: usize| {
        while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
            j += 1;
        }
        j
    };
    while i < b.len() {
        let c = b[i];
        let two = s.get(i..i + 2).unwrap_or("");
        match c {
            c if c.is_ascii_whitespace() => i += 1,
            b'$' => {
                let end = ident_end(i + 1);
                out.push(Tok::Dollar(
                    (end > i + 1).then(|| s[i + 1..end].to_string()),
                ));
                i = end;
            }
            b'@' => {
                out.push(Tok::At);
                i += 1;
            }
            b'.' if !b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                out.push(Tok::Dot);
                i += 1;
            }
            b'[' | b']' | b'(' | b')' | b'*' | b',' | b'?' => {
                out.push(match c {
                    b'[' => Tok::LBracket,
                    b']' => Tok::RBracket,
                    b'(' => Tok::LParen,
                    b')' => Tok::RParen,
                    b'*' => Tok::Star,
                    b',' => Tok::Comma,
                    _ => Tok::Question,
                });
                i += 1;
            }
            b'"' => {
                let mut j = i + 1;
                let mut escaped = false;
                while j < b.len() && (escaped || b[j] != b'"') {
                    escaped = !escaped && b[j] == b'\\';
                    j += 1;
                }
                if j >= b.len() {
                    return Err(syntax("unterminated string"));
                }
                let text: String =
                    serde_json::from_str(&s[i..=j]).map_err(|_| syntax("bad string literal"))?;
                out.push(Tok::Str(text));
                i = j + 1;
            }
            b'0'..=b'9' | b'.' | b'-' => {
                let mut j = i + 1;
                while j < b.len()
                    && (b[j].is_ascii_digit()
                        || b[j] == b'.'
                        || b[j] == b'e'
                        || b[j] == b'E'
                        || ((b[j] == b'+' || b[j] == b'-') && matches!(b[j - 1], b'e' | b'E')))
                {
                    j += 1;
                }
                let n = s[i..j]
                    .parse::<f64>()
                    .map_err(|_| syntax(&format!("bad number {}", &s[i..j])))?;
                out.push(Tok::Num(n));
                i = j;
            }
            _ if ["==", "!=", "<>", "<=", ">=", "&&", "||"].contains(&two) => {
                out.push(Tok::Op(match two {
                    "==" => "==",
                    "!=" | "<>" => "!=",
                    "<=" => "<=",
                    ">=" => ">=",
                    "&&" => "&&",
                    _ => "||",
                }));
                i += 2;
            }
            b'<' | b'>' | b'!' => {
                out.push(Tok::Op(match c {
                    b'<' => "<",
                    b'>' => ">",
                    _ => "!",
                }));
                i += 1;
            }
            b'+' | b'/' | b'%' => {
                return Err(JsonError::unsupported(
                    "arithmetic in jsonpath expressions is not supported",
                ));
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let end = ident_end(i);
                out.push(Tok::Ident(s[i..end].to_string()));
                i = end;
            }
            _ => return Err(syntax(&format!("unexpected character {:?}", c as char))),
        }
    }
    Ok(out)
}

fn syntax(what: &str) -> JsonError {
    JsonError::syntax(format!("syntax error in jsonpath: {what}"))
}

#[derive(Debug, Clone, PartialEq)]
enum Start {
    Root,
    Var(String),
    Current,
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    AnyKey,
    AnyIndex,
    /// Subscripts; `None` is `last`.
    Index(Vec<Option<i64>>),
    Filter(Box<Expr>),
    Method(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Path(Start, Vec<Step>),
    Lit(Value),
    Cmp(&'static str, Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Exists(Box<Expr>),
    StartsWith(Box<Expr>, Box<Expr>),
    IsUnknown(Box<Expr>),
}

impl Expr {
    fn is_predicate(&self) -> bool {
        !matches!(self, Expr::Path(..) | Expr::Lit(_))
    }
}

/// A parsed path expression.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath {
    expr: Expr,
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn eat(&mut self, t: &Tok) -> bool {
        if self.peek() == Some(t) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_word(&mut self, w: &str) -> bool {
        if matches!(self.peek(), Some(Tok::Ident(x)) if x.eq_ignore_ascii_case(w)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, t: &Tok) -> Result<(), JsonError> {
        if self.eat(t) {
            Ok(())
        } else {
            Err(syntax(&format!("expected {t:?}")))
        }
    }

    fn or(&mut self) -> Result<Expr, JsonError> {
        let mut e = self.and()?;
        while self.eat(&Tok::Op("||")) {
            e = Expr::Or(Box::new(e), Box::new(self.and()?));
        }
        Ok(e)
    }

    fn and(&mut self) -> Result<Expr, JsonError> {
        let mut e = self.unary()?;
        while self.eat(&Tok::Op("&&")) {
            e = Expr::And(Box::new(e), Box::new(self.unary()?));
        }
        Ok(e)
    }

    fn unary(&mut self) -> Result<Expr, JsonError> {
        if self.eat(&Tok::Op("!")) {
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        let e = self.comparison()?;
        if self.eat_word("is") {
            if !self.eat_word("unknown") {
                return Err(syntax("expected UNKNOWN after IS"));
            }
            if !e.is_predicate() {
                return Err(syntax("IS UNKNOWN needs a predicate"));
            }
            return Ok(Expr::IsUnknown(Box::new(e)));
        }
        Ok(e)
    }

    fn comparison(&mut self) -> Result<Expr, JsonError> {
        let left = self.primary()?;
        if let Some(Tok::Op(op)) = self.peek().cloned()
            && op != "&&"
            && op != "||"
            && op != "!"
        {
            self.pos += 1;
            let right = self.primary()?;
            return Ok(Expr::Cmp(op, Box::new(left), Box::new(right)));
        }
        if self.eat_word("starts") {
            if !self.eat_word("with") {
                return Err(syntax("expected WITH after STARTS"));
            }
            let right = self.primary()?;
            return Ok(Expr::StartsWith(Box::new(left), Box::new(right)));
        }
        if matches!(self.peek(), Some(Tok::Ident(w)) if w.eq_ignore_ascii_case("like_regex")) {
            return Err(JsonError::unsupported("like_regex is not supported"));
        }
        Ok(left)
    }

    fn primary(&mut self) -> Result<Expr, JsonError> {
        match self.next() {
            Some(Tok::LParen) => {
                let e = self.or()?;
                self.expect(&Tok::RParen)?;
                Ok(e)
            }
            Some(Tok::Dollar(None)) => Ok(Expr::Path(Start::Root, self.steps()?)),
            Some(Tok::Dollar(Some(v))) => Ok(Expr::Path(Start::Var(v), self.steps()?)),
            Some(Tok::At) => Ok(Expr::Path(Start::Current, self.steps()?)),
            Some(Tok::Str(s)) => Ok(Expr::Lit(Value::String(s))),
            Some(Tok::Num(n)) => Ok(Expr::Lit(number(n))),
            Some(Tok::Ident(w)) => match w.to_ascii_lowercase().as_str() {
                "true" => Ok(Expr::Lit(Value::Bool(true))),
                "false" => Ok(Expr::Lit(Value::Bool(false))),
                "null" => Ok(Expr::Lit(Value::Null)),
                "exists" => {
                    self.expect(&Tok::LParen)?;
                    let e = self.or()?;
                    self.expect(&Tok::RParen)?;
                    Ok(Expr::Exists(Box::new(e)))
                }
                other => Err(syntax(&format!("unexpected word {other}"))),
            },
            other => Err(syntax(&format!("unexpected {other:?}"))),
        }
    }

    fn steps(&mut self) -> Result<Vec<Step>, JsonError> {
        let mut steps = Vec::new();
        loop {
            if self.eat(&Tok::Dot) {
                match self.next() {
                    Some(Tok::Star) => steps.push(Step::AnyKey),
                    Some(Tok::Str(k)) => steps.push(Step::Key(k)),
                    Some(Tok::Ident(k)) => {
                        if self.eat(&Tok::LParen) {
                            self.expect(&Tok::RParen)?;
                            let m = k.to_ascii_lowercase();
                            if !["size", "type", "double"].contains(&m.as_str()) {
                                return Err(JsonError::unsupported(format!(
                                    "jsonpath method .{m}() is not supported"
                                )));
                            }
                            steps.push(Step::Method(m));
                        } else {
                            steps.push(Step::Key(k));
                        }
                    }
                    other => return Err(syntax(&format!("unexpected {other:?} after '.'"))),
                }
            } else if self.eat(&Tok::LBracket) {
                if self.eat(&Tok::Star) {
                    self.expect(&Tok::RBracket)?;
                    steps.push(Step::AnyIndex);
                    continue;
                }
                let mut subs = Vec::new();
                loop {
                    match self.next() {
                        Some(Tok::Num(n)) if n.fract() == 0.0 => subs.push(Some(n as i64)),
                        Some(Tok::Ident(w)) if w.eq_ignore_ascii_case("last") => subs.push(None),
                        other => {
                            return Err(syntax(&format!("unsupported subscript {other:?}")));
                        }
                    }
                    if self.eat(&Tok::RBracket) {
                        break;
                    }
                    self.expect(&Tok::Comma)?;
                }
                steps.push(Step::Index(subs));
            } else if self.eat(&Tok::Question) {
                self.expect(&Tok::LParen)?;
                let e = self.or()?;
                self.expect(&Tok::RParen)?;
                steps.push(Step::Filter(Box::new(e)));
            } else {
                return Ok(steps);
            }
        }
    }
}

fn number(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        Value::from(n as i64)
    } else {
        serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}

impl JsonPath {
    pub fn parse(text: &str) -> Result<JsonPath, JsonError> {
        let mut toks = tokenize(text)?;
        // `lax` is the default mode; `strict` is read as lax.
        if matches!(toks.first(), Some(Tok::Ident(w)) if w.eq_ignore_ascii_case("lax") || w.eq_ignore_ascii_case("strict"))
        {
            toks.remove(0);
        }
        let mut p = Parser { toks, pos: 0 };
        let expr = p.or()?;
        if p.pos < p.toks.len() {
            return Err(syntax(&format!("unexpected {:?}", p.toks[p.pos])));
        }
        Ok(JsonPath { expr })
    }

    /// `jsonb_path_match`: the predicate's truth (`None` = unknown).
    pub fn matches(&self, doc: &Value, vars: &Value) -> Result<Option<bool>, JsonError> {
        let cx = Cx { root: doc, vars };
        if self.expr.is_predicate() {
            return cx.pred(&self.expr, doc);
        }
        match cx.items(&self.expr, doc)?.as_slice() {
            [Value::Bool(b)] => Ok(Some(*b)),
            [Value::Null] => Ok(None),
            _ => Err(JsonError::new(
                super::SINGLETON_REQUIRED,
                "single boolean result is expected",
            )),
        }
    }

    /// `jsonb_path_exists`: whether the path yields any item.
    pub fn exists(&self, doc: &Value, vars: &Value) -> Result<Option<bool>, JsonError> {
        let cx = Cx { root: doc, vars };
        if self.expr.is_predicate() {
            // A predicate yields one item: its truth.
            return Ok(Some(true));
        }
        Ok(Some(!cx.items(&self.expr, doc)?.is_empty()))
    }
}

struct Cx<'a> {
    root: &'a Value,
    vars: &'a Value,
}

fn unwrap(items: Vec<Value>) -> Vec<Value> {
    items
        .into_iter()
        .flat_map(|v| match v {
            Value::Array(a) => a,
            other => vec![other],
        })
        .collect()
}

impl Cx<'_> {
    fn items(&self, e: &Expr, current: &Value) -> Result<Vec<Value>, JsonError> {
        match e {
            Expr::Lit(v) => Ok(vec![v.clone()]),
            Expr::Path(start, steps) => {
                let first = match start {
                    Start::Root => self.root.clone(),
                    Start::Current => current.clone(),
                    Start::Var(name) => self.vars.get(name).cloned().ok_or_else(|| {
                        JsonError::new(
                            super::UNDEFINED_OBJECT,
                            format!("could not find jsonpath variable \"{name}\""),
                        )
                    })?,
                };
                let mut items = vec![first];
                for step in steps {
                    items = self.step(step, items)?;
                }
                Ok(items)
            }
            pred => Ok(match self.pred(pred, current)? {
                Some(b) => vec![Value::Bool(b)],
                None => vec![Value::Null],
            }),
        }
    }

    fn step(&self, step: &Step, items: Vec<Value>) -> Result<Vec<Value>, JsonError> {
        let mut out = Vec::new();
        for item in items {
            match step {
                Step::Key(k) => match item {
                    Value::Object(mut m) => out.extend(m.remove(k)),
                    Value::Array(a) => {
                        for v in a {
                            if let Value::Object(mut m) = v {
                                out.extend(m.remove(k));
                            }
                        }
                    }
                    _ => {}
                },
                Step::AnyKey => match item {
                    Value::Object(m) => out.extend(m.into_iter().map(|(_, v)| v)),
                    Value::Array(a) => {
                        for v in a {
                            if let Value::Object(m) = v {
                                out.extend(m.into_iter().map(|(_, v)| v));
                            }
                        }
                    }
                    _ => {}
                },
                Step::AnyIndex => match item {
                    Value::Array(a) => out.extend(a),
                    other => out.push(other),
                },
                Step::Index(subs) => {
                    let a = match item {
                        Value::Array(a) => a,
                        other => vec![other],
                    };
                    for s in subs {
                        let i = match s {
                            Some(i) => *i,
                            None => a.len() as i64 - 1,
                        };
                        if let Some(v) = usize::try_from(i).ok().and_then(|i| a.get(i)) {
                            out.push(v.clone());
                        }
                    }
                }
                Step::Filter(pred) => {
                    let candidates = match item {
                        Value::Array(a) => a,
                        other => vec![other],
                    };
                    for c in candidates {
                        if self.pred(pred, &c)? == Some(true) {
                            out.push(c);
                        }
                    }
                }
                Step::Method(m) => out.push(match (m.as_str(), item) {
                    ("size", Value::Array(a)) => Value::from(a.len()),
                    ("size", _) => Value::from(1),
                    ("type", v) => Value::String(super::type_name(&v).into()),
                    ("double", Value::Number(n)) => Value::Number(n),
                    ("double", Value::String(s)) => s
                        .trim()
                        .parse::<f64>()
                        .ok()
                        .and_then(serde_json::Number::from_f64)
                        .map(Value::Number)
                        .ok_or_else(|| {
                            JsonError::new(
                                super::NON_NUMERIC,
                                format!("string argument of jsonpath item method .double() is not a valid representation of a double precision number: {s}"),
                            )
                        })?,
                    (_, v) => {
                        return Err(JsonError::new(
                            super::NON_NUMERIC,
                            format!(
                                "jsonpath item method .{m}() can only be applied to a string or numeric value, not {}",
                                super::type_name(&v)
                            ),
                        ));
                    }
                }),
            }
        }
        Ok(out)
    }

    /// The items of a predicate's operand; `None` when evaluating it fails
    /// (the predicate is then unknown), an error for a missing variable.
    fn operand(&self, e: &Expr, current: &Value) -> Result<Option<Vec<Value>>, JsonError> {
        match self.items(e, current) {
            Ok(items) => Ok(Some(items)),
            Err(err) if err.code == super::UNDEFINED_OBJECT => Err(err),
            Err(_) => Ok(None),
        }
    }

    /// Three-valued truth of a predicate (`None` = unknown).
    fn pred(&self, e: &Expr, current: &Value) -> Result<Option<bool>, JsonError> {
        Ok(match e {
            Expr::And(a, b) => match (self.pred(a, current)?, self.pred(b, current)?) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            },
            Expr::Or(a, b) => match (self.pred(a, current)?, self.pred(b, current)?) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            },
            Expr::Not(a) => self.pred(a, current)?.map(|b| !b),
            Expr::IsUnknown(a) => Some(self.pred(a, current)?.is_none()),
            Expr::Exists(a) => match self.items(a, current) {
                Ok(items) => Some(!items.is_empty()),
                Err(_) => None,
            },
            Expr::Cmp(op, a, b) => {
                let (Some(left), Some(right)) =
                    (self.operand(a, current)?, self.operand(b, current)?)
                else {
                    return Ok(None);
                };
                let (left, right) = (unwrap(left), unwrap(right));
                let mut unknown = false;
                for l in &left {
                    for r in &right {
                        match compare(op, l, r) {
                            Some(true) => return Ok(Some(true)),
                            Some(false) => {}
                            None => unknown = true,
                        }
                    }
                }
                if unknown { None } else { Some(false) }
            }
            Expr::StartsWith(a, b) => {
                let (Some(left), Some(right)) =
                    (self.operand(a, current)?, self.operand(b, current)?)
                else {
                    return Ok(None);
                };
                let [Value::String(prefix)] = right.as_slice() else {
                    return Ok(None);
                };
                let mut unknown = false;
                for l in unwrap(left) {
                    match l {
                        Value::String(s) if s.starts_with(prefix.as_str()) => {
                            return Ok(Some(true));
                        }
                        Value::String(_) => {}
                        _ => unknown = true,
                    }
                }
                if unknown { None } else { Some(false) }
            }
            Expr::Path(..) | Expr::Lit(_) => {
                return Err(JsonError::syntax(
                    "syntax error in jsonpath: a filter needs a predicate",
                ));
            }
        })
    }
}

/// One comparison of two items: `None` when they cannot be compared
/// (different types, or arrays and objects).
fn compare(op: &str, l: &Value, r: &Value) -> Option<bool> {
    use std::cmp::Ordering;
    let ord = match (l, r) {
        (Value::Null, Value::Null) => Ordering::Equal,
        // null compares only as "not equal" with anything else.
        (Value::Null, _) | (_, Value::Null) => {
            return Some(op == "!=");
        }
        (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
        (Value::Number(a), Value::Number(b)) => a
            .as_f64()
            .partial_cmp(&b.as_f64())
            .unwrap_or(Ordering::Equal),
        (Value::String(a), Value::String(b)) => a.as_bytes().cmp(b.as_bytes()),
        (Value::Array(_) | Value::Object(_), _) | (_, Value::Array(_) | Value::Object(_)) => {
            return if json_eq(l, r) && op == "==" {
                Some(true)
            } else {
                None
            };
        }
        _ => return None,
    };
    Some(match op {
        "==" => ord == Ordering::Equal,
        "!=" => ord != Ordering::Equal,
        "<" => ord == Ordering::Less,
        "<=" => ord != Ordering::Greater,
        ">" => ord == Ordering::Greater,
        _ => ord != Ordering::Less,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn m(path: &str, doc: Value, vars: Value) -> Option<bool> {
        JsonPath::parse(path)
            .expect("parses")
            .matches(&doc, &vars)
            .expect("evaluates")
    }

    #[test]
    fn comparisons_with_variables_as_langchain_sends_them() {
        let doc = json!({"topic": "art", "year": 2021, "tags": ["a", "b"], "n": null});
        let v = |x: Value| json!({ "value": x });
        assert_eq!(
            m("$.topic == $value", doc.clone(), v(json!("art"))),
            Some(true)
        );
        assert_eq!(
            m("$.topic != $value", doc.clone(), v(json!("art"))),
            Some(false)
        );
        assert_eq!(
            m("$.year >= $value", doc.clone(), v(json!(2021))),
            Some(true)
        );
        assert_eq!(
            m("$.year < $value", doc.clone(), v(json!(2000.5))),
            Some(false)
        );
        // A missing key compares to nothing: false, not unknown.
        assert_eq!(
            m("$.missing == $value", doc.clone(), v(json!(1))),
            Some(false)
        );
        // Arrays are unwrapped (lax): any element may match.
        assert_eq!(
            m("$.tags == $value", doc.clone(), v(json!("b"))),
            Some(true)
        );
        // Mismatched types are unknown.
        assert_eq!(m("$.topic > $value", doc.clone(), v(json!(3))), None);
        assert_eq!(m("$.n == null", doc.clone(), json!({})), Some(true));
        assert_eq!(
            m(
                "$.year > 2000 && $.topic starts with \"ar\"",
                doc.clone(),
                json!({})
            ),
            Some(true)
        );
        assert_eq!(
            m(
                "!($.year > 2000) || $.tags[last] == \"b\"",
                doc.clone(),
                json!({})
            ),
            Some(true)
        );
        assert_eq!(
            m("exists($.tags[*] ? (@ == \"a\"))", doc.clone(), json!({})),
            Some(true)
        );
        assert_eq!(m("$.tags.size() == 2", doc.clone(), json!({})), Some(true));
        assert_eq!(m("$.year.type() == \"number\"", doc, json!({})), Some(true));
    }

    #[test]
    fn bad_paths_are_errors() {
        assert!(JsonPath::parse("$.a ==").is_err());
        assert!(JsonPath::parse("$.a + 1 == 2").is_err());
        assert!(JsonPath::parse("$.a like_regex \"x\"").is_err());
        let p = JsonPath::parse("$.a == $missing").expect("parses");
        assert!(p.matches(&json!({"a": 1}), &json!({})).is_err());
        let p = JsonPath::parse("$.a").expect("parses");
        assert!(p.matches(&json!({"a": 1}), &json!({})).is_err());
        assert_eq!(
            p.matches(&json!({"a": true}), &json!({})).ok(),
            Some(Some(true))
        );
    }
}
