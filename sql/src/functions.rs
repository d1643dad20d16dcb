//! User functions in WebAssembly: `CREATE [OR REPLACE] FUNCTION … LANGUAGE
//! wasm`, `DROP FUNCTION`, the registry of compiled functions shared by all
//! sessions, and their DataFusion scalar and window wrappers.
//!
//! ```sql
//! CREATE [OR REPLACE] FUNCTION name ( [argname] type [, …] ) RETURNS type
//!     LANGUAGE wasm [WINDOW] AS 'module' [, 'export']
//!     [WITH (memory_limit = '64MB', timeout_ms = 1000, symbol = 'export')]
//! DROP FUNCTION [IF EXISTS] name [ ( types ) ] [, …]
//! ```
//!
//! The module is bytea hex (`'\x0061736d…'`) or WAT text. Types: `bool`,
//! `int2`/`int4`/`int8` (passed as int8), `float4`/`float8` (as float8),
//! `text`/`varchar`, `vector`. A module is compiled once at CREATE (it is
//! rejected then if it is not valid or breaks the ABI) and the compiled code
//! is shared by every session; after a restart it is compiled again on first
//! use.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::function::{PartitionEvaluatorArgs, WindowUDFFieldArgs};
use datafusion::logical_expr::{
    ColumnarValue, PartitionEvaluator, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility, WindowUDF, WindowUDFImpl,
};
use quiver_engine::Engine;
use quiver_engine::function::{FunctionDef, FunctionKind, FunctionVolatility};
use quiver_udf::{Arg, FunctionSpec, Limits, UdfError, ValueType, WasmFunction};

use crate::error::{Result, SqlError, StatusCode};
use crate::sql_err;

impl From<UdfError> for SqlError {
    fn from(e: UdfError) -> Self {
        let code = match &e {
            UdfError::InvalidModule(_) => StatusCode::InvalidFunctionDefinition,
            UdfError::BadArgument(_) => StatusCode::DatatypeMismatch,
            UdfError::Timeout { .. } => StatusCode::QueryCanceled,
            UdfError::ResourceLimit { .. } => StatusCode::OutOfMemory,
            UdfError::StackOverflow { .. } => StatusCode::StackDepthExceeded,
            UdfError::Trap { .. } | UdfError::Guest { .. } => StatusCode::ExternalRoutineException,
            UdfError::BadOutput { .. } => StatusCode::ExternalRoutineInvocationException,
            UdfError::Busy(_) => StatusCode::InsufficientResources,
            UdfError::Runtime(_) => StatusCode::Internal,
        };
        SqlError::new(code, e.to_string())
    }
}

// ---------------------------------------------------------------------------
// Parsing

/// The longest `timeout_ms`: a call holds the thread running the query.
pub const MAX_TIMEOUT_MS: u64 = 60_000;
/// The longest function name, as Postgres' NAMEDATALEN - 1.
const MAX_NAME_LEN: usize = 63;

/// A parsed `CREATE FUNCTION`.
#[derive(Debug, Clone)]
pub struct CreateFunction {
    pub replace: bool,
    pub name: String,
    pub args: Vec<ValueType>,
    /// Argument names as written ("" when unnamed).
    pub arg_names: Vec<String>,
    pub returns: ValueType,
    pub kind: FunctionKind,
    pub volatility: FunctionVolatility,
    pub module: Vec<u8>,
    pub symbol: String,
    pub limits: Limits,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// An identifier or keyword, lower-cased unless it was double-quoted.
    Word(String),
    Str(String),
    Num(String),
    Punct(char),
}

fn tokenize(sql: &str) -> Result<Vec<Tok>> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            c if c.is_ascii_whitespace() => i += 1,
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i = sql[i + 2..].find("*/").map_or(b.len(), |e| i + 2 + e + 2);
            }
            b'\'' | b'e' | b'E' if c == b'\'' || b.get(i + 1) == Some(&b'\'') => {
                // 'text' (quotes doubled), or E'text' with backslash escapes (psql's :'var' form).
                let escapes = c != b'\'';
                let mut s = Vec::new();
                i += if escapes { 2 } else { 1 };
                loop {
                    match b.get(i) {
                        None => return sql_err!(SyntaxError, "unterminated quoted string"),
                        Some(b'\\') if escapes => {
                            let Some(&n) = b.get(i + 1) else {
                                return sql_err!(SyntaxError, "unterminated quoted string");
                            };
                            s.push(match n {
                                b'n' => b'\n',
                                b't' => b'\t',
                                b'r' => b'\r',
                                other => other,
                            });
                            i += 2;
                        }
                        Some(b'\'') if b.get(i + 1) == Some(&b'\'') => {
                            s.push(b'\'');
                            i += 2;
                        }
                        Some(b'\'') => {
                            i += 1;
                            break;
                        }
                        Some(x) => {
                            s.push(*x);
                            i += 1;
                        }
                    }
                }
                out.push(Tok::Str(String::from_utf8_lossy(&s).into_owned()));
            }
            b'$' => {
                let end = sql[i + 1..].find('$').map(|e| i + 1 + e).filter(|&e| {
                    sql[i + 1..e]
                        .chars()
                        .all(|c| c.is_alphanumeric() || c == '_')
                });
                let Some(end) = end else {
                    return sql_err!(SyntaxError, "syntax error at \"$\"");
                };
                let tag = &sql[i..=end];
                let Some(close) = sql[end + 1..].find(tag) else {
                    return sql_err!(SyntaxError, "unterminated dollar-quoted string");
                };
                out.push(Tok::Str(sql[end + 1..end + 1 + close].to_string()));
                i = end + 1 + close + tag.len();
            }
            b'"' => {
                let Some(close) = sql[i + 1..].find('"') else {
                    return sql_err!(SyntaxError, "unterminated quoted identifier");
                };
                out.push(Tok::Word(sql[i + 1..i + 1 + close].to_string()));
                i += close + 2;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'$')
                {
                    i += 1;
                }
                out.push(Tok::Word(sql[start..i].to_ascii_lowercase()));
            }
            c if c.is_ascii_digit() => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
                    i += 1;
                }
                out.push(Tok::Num(sql[start..i].to_string()));
            }
            b'(' | b')' | b',' | b'=' | b'.' | b';' => {
                out.push(Tok::Punct(c as char));
                i += 1;
            }
            _ => {
                let ch = sql[i..].chars().next().unwrap_or('?');
                return sql_err!(SyntaxError, "syntax error at or near \"{ch}\"");
            }
        }
    }
    Ok(out)
}

struct Cursor {
    toks: Vec<Tok>,
    at: usize,
}

impl Cursor {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.at).cloned();
        self.at += 1;
        t
    }
    fn word(&mut self, w: &str) -> bool {
        if self.peek() == Some(&Tok::Word(w.to_string())) {
            self.at += 1;
            true
        } else {
            false
        }
    }
    fn punct(&mut self, c: char) -> bool {
        if self.peek() == Some(&Tok::Punct(c)) {
            self.at += 1;
            true
        } else {
            false
        }
    }
    fn expect_word(&mut self, w: &str) -> Result<()> {
        if self.word(w) {
            Ok(())
        } else {
            sql_err!(
                SyntaxError,
                "syntax error: expected {}",
                w.to_ascii_uppercase()
            )
        }
    }
    fn expect_punct(&mut self, c: char) -> Result<()> {
        if self.punct(c) {
            Ok(())
        } else {
            sql_err!(SyntaxError, "syntax error: expected \"{c}\"")
        }
    }
    fn ident(&mut self) -> Result<String> {
        match self.next() {
            Some(Tok::Word(w)) => Ok(w),
            _ => sql_err!(SyntaxError, "syntax error: expected a name"),
        }
    }
    /// `name` or `schema.name` (only `public` holds functions).
    fn function_name(&mut self) -> Result<String> {
        let name = self.qualified_name()?;
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return sql_err!(
                SyntaxError,
                "a function name must have 1 to {MAX_NAME_LEN} bytes"
            );
        }
        Ok(name)
    }

    fn qualified_name(&mut self) -> Result<String> {
        let first = self.ident()?;
        if self.punct('.') {
            let name = self.ident()?;
            if first != "public" {
                return sql_err!(
                    FeatureNotSupported,
                    "functions live in schema public, not \"{first}\""
                );
            }
            return Ok(name);
        }
        Ok(first)
    }
    /// An argument list after its `(`, through the `)`: types and names ("" if unnamed).
    fn arg_list(&mut self) -> Result<(Vec<ValueType>, Vec<String>)> {
        let (mut args, mut names) = (Vec::new(), Vec::new());
        if self.punct(')') {
            return Ok((args, names));
        }
        loop {
            let mut words = self.type_words()?;
            if words.first().is_some_and(|w| w == "in") {
                words.remove(0);
            }
            if words
                .first()
                .is_some_and(|w| w == "out" || w == "inout" || w == "variadic")
            {
                return sql_err!(
                    FeatureNotSupported,
                    "{} arguments are not supported",
                    words[0].to_ascii_uppercase()
                );
            }
            let (name, ty) = match value_type(&words) {
                Some(t) => (String::new(), t),
                // The first word is the argument's name.
                None if words.len() > 1 => (
                    words[0].clone(),
                    value_type(&words[1..]).ok_or_else(|| unsupported_type(&words[1..]))?,
                ),
                None => return Err(unsupported_type(&words)),
            };
            args.push(ty);
            names.push(name);
            if self.punct(')') {
                return Ok((args, names));
            }
            self.expect_punct(',')?;
        }
    }

    /// The words of one type (and argument name), up to `,` or `)` at depth 0.
    fn type_words(&mut self) -> Result<Vec<String>> {
        let mut words = Vec::new();
        let mut depth = 0;
        loop {
            match self.peek() {
                None => return sql_err!(SyntaxError, "syntax error: unterminated argument list"),
                Some(Tok::Punct(',' | ')')) if depth == 0 => break,
                Some(Tok::Punct('(')) => depth += 1,
                Some(Tok::Punct(')')) => depth -= 1,
                Some(Tok::Word(w)) if depth == 0 => words.push(w.clone()),
                _ => {}
            }
            self.at += 1;
        }
        Ok(words)
    }
}

/// The ABI type of an SQL type name (its words, without a type modifier).
pub fn value_type(words: &[String]) -> Option<ValueType> {
    let name = words.join(" ");
    let name = name.strip_prefix("pg_catalog.").unwrap_or(&name);
    Some(match name {
        "bool" | "boolean" => ValueType::Bool,
        "int" | "integer" | "int2" | "int4" | "int8" | "smallint" | "bigint" => ValueType::Int64,
        "real" | "float" | "float4" | "float8" | "double precision" => ValueType::Float64,
        "text" | "varchar" | "character varying" => ValueType::Text,
        "vector" => ValueType::Vector,
        _ => return None,
    })
}

fn unsupported_type(words: &[String]) -> SqlError {
    SqlError::new(
        StatusCode::FeatureNotSupported,
        format!(
            "type \"{}\" is not supported for WebAssembly functions (bool, int2/int4/int8, float4/float8, text, vector)",
            words.join(" ")
        ),
    )
}

/// A size such as `'64MB'`, `'512 kB'`, `'1GB'` or a number of bytes.
fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let n: u64 = t[..split].parse().ok()?;
    let mult = match t[split..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1 << 10,
        "mb" => 1 << 20,
        "gb" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// The module bytes of an `AS` string: bytea hex (`\x…`) or WAT text.
fn module_bytes(body: &str) -> Result<Vec<u8>> {
    let Some(hex) = body.trim().strip_prefix("\\x") else {
        return Ok(body.as_bytes().to_vec());
    };
    let digits: Vec<u8> = hex.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return sql_err!(
            InvalidTextRepresentation,
            "invalid hexadecimal data: odd number of digits"
        );
    }
    let val = |c: u8| -> Result<u8> {
        match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            b'A'..=b'F' => Ok(c - b'A' + 10),
            _ => sql_err!(
                InvalidTextRepresentation,
                "invalid hexadecimal digit: \"{}\"",
                c as char
            ),
        }
    };
    digits
        .chunks_exact(2)
        .map(|p| Ok(val(p[0])? << 4 | val(p[1])?))
        .collect()
}

/// Whether a statement is `CREATE [OR REPLACE] FUNCTION` or `DROP FUNCTION`.
pub(crate) fn is_function_ddl(upper_words: &[String]) -> bool {
    let w: Vec<&str> = upper_words.iter().map(String::as_str).take(4).collect();
    matches!(
        w.as_slice(),
        ["CREATE", "FUNCTION", ..]
            | ["CREATE", "OR", "REPLACE", "FUNCTION"]
            | ["DROP", "FUNCTION", ..]
    )
}

/// A parsed function DDL statement.
#[derive(Debug, Clone)]
pub enum FunctionDdl {
    Create(Box<CreateFunction>),
    /// Each function's name and, when given, its argument types.
    Drop {
        names: Vec<(String, Option<Vec<ValueType>>)>,
        if_exists: bool,
    },
}

pub(crate) fn parse_function_ddl(sql: &str) -> Result<FunctionDdl> {
    let mut c = Cursor {
        toks: tokenize(sql)?,
        at: 0,
    };
    if c.word("drop") {
        c.expect_word("function")?;
        let if_exists = c.word("if") && {
            c.expect_word("exists")?;
            true
        };
        let mut names = Vec::new();
        loop {
            let name = c.function_name()?;
            let types = if c.punct('(') {
                Some(c.arg_list()?.0)
            } else {
                None
            };
            names.push((name, types));
            if !c.punct(',') {
                break;
            }
        }
        let _ = c.word("cascade") || c.word("restrict");
        c.punct(';');
        if c.peek().is_some() {
            return sql_err!(SyntaxError, "syntax error at end of DROP FUNCTION");
        }
        return Ok(FunctionDdl::Drop { names, if_exists });
    }
    c.expect_word("create")?;
    let replace = c.word("or") && {
        c.expect_word("replace")?;
        true
    };
    c.expect_word("function")?;
    let name = c.function_name()?;
    c.expect_punct('(')?;
    let (args, arg_names) = c.arg_list()?;
    c.expect_word("returns")?;
    let mut ret_words = Vec::new();
    while let Some(Tok::Word(w)) = c.peek() {
        if [
            "language",
            "as",
            "with",
            "window",
            "immutable",
            "stable",
            "volatile",
            "strict",
            "called",
            "parallel",
            "leakproof",
            "not",
            "returns",
            "security",
            "cost",
            "rows",
        ]
        .contains(&w.as_str())
            && !ret_words.is_empty()
        {
            break;
        }
        ret_words.push(w.clone());
        c.at += 1;
    }
    if c.punct('(') {
        while !c.punct(')') {
            if c.next().is_none() {
                return sql_err!(SyntaxError, "syntax error: unterminated type modifier");
            }
        }
    }
    if ret_words
        .first()
        .is_some_and(|w| w == "setof" || w == "table")
    {
        return sql_err!(
            FeatureNotSupported,
            "set-returning functions are not supported; a WebAssembly function returns one value per row"
        );
    }
    let returns = value_type(&ret_words).ok_or_else(|| unsupported_type(&ret_words))?;
    let (mut language, mut body, mut kind) = (None, None, FunctionKind::Scalar);
    let mut volatility = FunctionVolatility::Volatile;
    let mut symbol = None;
    let mut limits = Limits::default();
    while let Some(t) = c.next() {
        let Tok::Word(w) = t else {
            if t == Tok::Punct(';') && c.peek().is_none() {
                break;
            }
            return sql_err!(SyntaxError, "syntax error in CREATE FUNCTION near {t:?}");
        };
        match w.as_str() {
            "language" => language = Some(c.ident()?),
            "as" => {
                let Some(Tok::Str(s)) = c.next() else {
                    return sql_err!(SyntaxError, "syntax error: AS needs a quoted module");
                };
                body = Some(s);
                if c.punct(',') {
                    let Some(Tok::Str(s)) = c.next() else {
                        return sql_err!(SyntaxError, "syntax error: expected the export name");
                    };
                    symbol = Some(s);
                }
            }
            "window" => kind = FunctionKind::Window,
            "immutable" => volatility = FunctionVolatility::Immutable,
            "stable" => volatility = FunctionVolatility::Stable,
            "volatile" => volatility = FunctionVolatility::Volatile,
            "strict" | "leakproof" => {}
            "not" => c.expect_word("leakproof")?,
            "called" | "returns" => {
                // CALLED ON NULL INPUT / RETURNS NULL ON NULL INPUT
                while let Some(Tok::Word(x)) = c.peek() {
                    let done = x == "input";
                    c.at += 1;
                    if done {
                        break;
                    }
                }
            }
            "parallel" => {
                c.ident()?;
            }
            "with" => {
                c.expect_punct('(')?;
                loop {
                    let opt = c.ident()?;
                    c.expect_punct('=')?;
                    let value = match c.next() {
                        Some(Tok::Str(s) | Tok::Num(s) | Tok::Word(s)) => s,
                        _ => {
                            return sql_err!(
                                SyntaxError,
                                "syntax error: option {opt} needs a value"
                            );
                        }
                    };
                    match opt.as_str() {
                        "memory_limit" => {
                            limits.memory_bytes = parse_size(&value).ok_or_else(|| {
                                SqlError::new(
                                    StatusCode::InvalidParameterValue,
                                    format!("invalid memory_limit \"{value}\" (e.g. '64MB')"),
                                )
                            })?;
                        }
                        "timeout_ms" => {
                            limits.timeout_ms = value
                                .parse()
                                .ok()
                                .filter(|v| (1..=MAX_TIMEOUT_MS).contains(v))
                                .ok_or_else(|| {
                                    SqlError::new(
                                        StatusCode::InvalidParameterValue,
                                        format!("timeout_ms must be an integer from 1 to {MAX_TIMEOUT_MS}, got \"{value}\""),
                                    )
                                })?;
                        }
                        "symbol" => symbol = Some(value),
                        other => {
                            return sql_err!(
                                InvalidParameterValue,
                                "unrecognized function option \"{other}\" (memory_limit, timeout_ms, symbol)"
                            );
                        }
                    }
                    if c.punct(')') {
                        break;
                    }
                    c.expect_punct(',')?;
                }
            }
            other => {
                return sql_err!(
                    SyntaxError,
                    "syntax error at or near \"{other}\" in CREATE FUNCTION"
                );
            }
        }
    }
    match language.as_deref() {
        Some("wasm") => {}
        Some(other) => {
            return sql_err!(
                FeatureNotSupported,
                "LANGUAGE {other} is not supported: Quiver runs user functions as WebAssembly (LANGUAGE wasm)"
            );
        }
        None => {
            return sql_err!(
                InvalidFunctionDefinition,
                "no language specified (LANGUAGE wasm)"
            );
        }
    }
    let Some(body) = body else {
        return sql_err!(
            InvalidFunctionDefinition,
            "no function body specified (AS '<module>')"
        );
    };
    Ok(FunctionDdl::Create(Box::new(CreateFunction {
        replace,
        symbol: symbol.unwrap_or_else(|| name.clone()),
        name,
        args,
        arg_names,
        returns,
        kind,
        volatility,
        module: module_bytes(&body)?,
        limits,
    })))
}

// ---------------------------------------------------------------------------
// The registry

/// A compiled function and the definition it was compiled from.
struct Loaded {
    def: FunctionDef,
    func: Arc<WasmFunction>,
    /// Where its calls are counted and timed.
    metrics: Arc<crate::metrics::Metrics>,
}

/// The functions of a database, compiled once and shared by all sessions.
pub struct FunctionRegistry {
    engine: Arc<Engine>,
    metrics: Arc<crate::metrics::Metrics>,
    compiled: Mutex<HashMap<String, Arc<Loaded>>>,
    /// Bumped on every CREATE/DROP FUNCTION; sessions re-register when it moves.
    generation: AtomicU64,
}

fn spec_of(def: &FunctionDef) -> Result<FunctionSpec> {
    let ty = |name: &str| {
        value_type(&[name.to_string()]).ok_or_else(|| {
            SqlError::new(
                StatusCode::Internal,
                format!(
                    "function {} has an unknown type {name} in the catalog",
                    def.name
                ),
            )
        })
    };
    Ok(FunctionSpec {
        name: def.name.clone(),
        symbol: def.symbol.clone(),
        args: def.args.iter().map(|a| ty(a)).collect::<Result<_>>()?,
        ret: ty(&def.returns)?,
    })
}

fn compile(
    module: Vec<u8>,
    spec: FunctionSpec,
    limits: Limits,
    trial_run: bool,
) -> Result<WasmFunction> {
    Ok(WasmFunction::compile(&module, spec, limits, trial_run)?)
}

impl FunctionRegistry {
    pub fn new(engine: Arc<Engine>, metrics: Arc<crate::metrics::Metrics>) -> FunctionRegistry {
        FunctionRegistry {
            engine,
            metrics,
            compiled: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(1),
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Loaded>>> {
        match self.compiled.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// CREATE FUNCTION: compile and check the module, then store it.
    pub async fn create(&self, f: CreateFunction, builtin: bool) -> Result<String> {
        if builtin {
            return sql_err!(
                DuplicateFunction,
                "function \"{}\" already exists as a built-in function",
                f.name
            );
        }
        let def = FunctionDef {
            name: f.name.clone(),
            oid: 0,
            args: f.args.iter().map(|a| a.to_string()).collect(),
            arg_names: f.arg_names.clone(),
            returns: f.returns.to_string(),
            kind: f.kind,
            volatility: f.volatility,
            symbol: f.symbol.clone(),
            memory_limit: f.limits.memory_bytes,
            timeout_ms: f.limits.timeout_ms,
            module_file: String::new(),
        };
        // Checked again by the engine under its DDL lock; here to fail before compiling.
        match self.engine.function(&f.name) {
            Some(_) if !f.replace => {
                return sql_err!(
                    DuplicateFunction,
                    "function \"{}\" already exists (use CREATE OR REPLACE FUNCTION)",
                    f.name
                );
            }
            Some(old)
                if old.args != def.args || old.returns != def.returns || old.kind != def.kind =>
            {
                return sql_err!(
                    InvalidFunctionDefinition,
                    "cannot change the arguments, return type or kind of existing function {} ({}) RETURNS {}; use DROP FUNCTION first",
                    f.name,
                    old.args.join(", "),
                    old.returns
                );
            }
            _ => {}
        }
        let spec = spec_of(&def)?;
        let limits = f.limits;
        let module = f.module;
        // Compiling is CPU work (milliseconds to seconds): off the async workers.
        let (func, module) = tokio::task::spawn_blocking(move || {
            let func = compile(module.clone(), spec, limits, true);
            (func, module)
        })
        .await
        .map_err(|e| SqlError::new(StatusCode::Internal, e.to_string()))?;
        let func = Arc::new(func?);
        let def = self.engine.create_function(def, &module, f.replace).await?;
        let metrics = self.metrics.clone();
        self.cache()
            .insert(def.name.clone(), Arc::new(Loaded { def, func, metrics }));
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok("CREATE FUNCTION".into())
    }

    /// DROP FUNCTION.
    /// All named functions must exist (with the argument types given, if
    /// any) unless `if_exists`; nothing is dropped otherwise.
    pub async fn drop_functions(
        &self,
        names: &[(String, Option<Vec<ValueType>>)],
        if_exists: bool,
    ) -> Result<String> {
        let mut drop = Vec::new();
        for (name, types) in names {
            let found = self.engine.function(name).filter(|def| match types {
                None => true,
                Some(t) => t.iter().map(|v| v.to_string()).eq(def.args.iter().cloned()),
            });
            match (found, types) {
                (Some(_), _) => drop.push(name.clone()),
                (None, _) if if_exists => {}
                (None, Some(t)) => {
                    let list = t
                        .iter()
                        .map(|v| v.to_string())
                        .collect::<Vec<_>>()
                        .join(", ");
                    return sql_err!(UndefinedFunction, "function {name}({list}) does not exist");
                }
                (None, None) => {
                    return sql_err!(UndefinedFunction, "function {name} does not exist");
                }
            }
        }
        for name in drop {
            let dropped = self.engine.drop_function(&name, true).await;
            self.cache().remove(&name);
            self.generation.fetch_add(1, Ordering::AcqRel);
            dropped?;
            self.metrics.forget_function(&name);
        }
        Ok("DROP FUNCTION".into())
    }

    /// The compiled form of a definition, compiling it on first use after a restart.
    fn load(&self, def: &FunctionDef) -> Result<Arc<Loaded>> {
        if let Some(l) = self.cache().get(&def.name)
            && l.def == *def
        {
            return Ok(l.clone());
        }
        let module = self.engine.function_module(def)?;
        let limits = Limits {
            memory_bytes: def.memory_limit,
            timeout_ms: def.timeout_ms,
        };
        let func = Arc::new(compile(module, spec_of(def)?, limits, false)?);
        let loaded = Arc::new(Loaded {
            def: def.clone(),
            func,
            metrics: self.metrics.clone(),
        });
        self.cache().insert(def.name.clone(), loaded.clone());
        Ok(loaded)
    }

    /// The DataFusion functions for every user function (a function whose
    /// module does not load is left out, with a warning).
    /// The flag is false when some function did not load: the caller should
    /// try again at its next statement.
    pub fn udfs(&self) -> (Vec<ScalarUDF>, Vec<WindowUDF>, bool) {
        let (mut scalars, mut windows, mut complete) = (Vec::new(), Vec::new(), true);
        for def in self.engine.functions() {
            let loaded = match self.load(&def) {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(function = def.name, error = %e, "function module does not load");
                    complete = false;
                    continue;
                }
            };
            let w = WasmUdf::new(loaded);
            match def.kind {
                FunctionKind::Scalar => scalars.push(ScalarUDF::new_from_impl(w)),
                FunctionKind::Window => windows.push(WindowUDF::new_from_impl(w)),
            }
        }
        (scalars, windows, complete)
    }
}

// ---------------------------------------------------------------------------
// DataFusion wrappers

/// A user function as DataFusion sees it (scalar or window, by its definition).
#[derive(Clone)]
struct WasmUdf {
    loaded: Arc<Loaded>,
    signature: Signature,
}

impl std::fmt::Debug for WasmUdf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmUdf")
            .field("def", &self.loaded.def)
            .finish()
    }
}

impl PartialEq for WasmUdf {
    fn eq(&self, other: &Self) -> bool {
        self.loaded.def == other.loaded.def
    }
}

impl Eq for WasmUdf {}

impl Hash for WasmUdf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.loaded.def.name.hash(state);
        self.loaded.def.module_file.hash(state);
    }
}

fn external(e: impl Into<SqlError>) -> DataFusionError {
    DataFusionError::External(Box::new(e.into()))
}

impl WasmUdf {
    fn new(loaded: Arc<Loaded>) -> WasmUdf {
        // As declared; volatile (Postgres' default) is never folded at
        // planning and is called per batch. Immutable and stable functions
        // are pushed into a vector search's filter like built-in expressions.
        let volatility = match loaded.def.volatility {
            FunctionVolatility::Immutable => Volatility::Immutable,
            FunctionVolatility::Stable => Volatility::Stable,
            FunctionVolatility::Volatile => Volatility::Volatile,
        };
        let signature = if loaded.func.spec().args.is_empty() {
            Signature::nullary(volatility)
        } else {
            Signature::user_defined(volatility)
        };
        WasmUdf { loaded, signature }
    }

    fn name(&self) -> &str {
        &self.loaded.def.name
    }

    fn spec(&self) -> &FunctionSpec {
        self.loaded.func.spec()
    }

    /// The Arrow type each argument is coerced to.
    fn coerce(&self, arg_types: &[DataType]) -> datafusion::error::Result<Vec<DataType>> {
        let spec = self.spec();
        if arg_types.len() != spec.args.len() {
            return Err(external(SqlError::new(
                StatusCode::UndefinedFunction,
                format!(
                    "function {}({}) does not exist: {} takes {} argument{}",
                    self.name(),
                    arg_types
                        .iter()
                        .map(|t| t.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    self.name(),
                    spec.args.len(),
                    if spec.args.len() == 1 { "" } else { "s" }
                ),
            )));
        }
        arg_types
            .iter()
            .zip(&spec.args)
            .enumerate()
            .map(|(i, (t, want))| {
                let ok = match want {
                    // a list of floats, or '[x,y]' text (a literal, a parameter) or NULL
                    ValueType::Vector => {
                        ValueType::of(t) == Some(ValueType::Vector)
                            || matches!(
                                t,
                                DataType::Utf8
                                    | DataType::LargeUtf8
                                    | DataType::Utf8View
                                    | DataType::Null
                            )
                    }
                    ValueType::Text => true,
                    ValueType::Bool => matches!(t, DataType::Boolean | DataType::Null),
                    ValueType::Int64 | ValueType::Float64 => t.is_numeric() || *t == DataType::Null,
                };
                if !ok {
                    return Err(external(SqlError::new(
                        StatusCode::DatatypeMismatch,
                        format!(
                            "argument {} of function {} must be {want}, got {t}",
                            i + 1,
                            self.name()
                        ),
                    )));
                }
                Ok(match want {
                    ValueType::Vector if ValueType::of(t) == Some(ValueType::Vector) => t.clone(),
                    ValueType::Vector => DataType::Utf8,
                    ValueType::Text => DataType::Utf8,
                    other => other.data_type(),
                })
            })
            .collect()
    }

    fn call(
        &self,
        arrays: &[(ArrayRef, bool)],
        num_rows: usize,
    ) -> datafusion::error::Result<ArrayRef> {
        // Vectors given as text become vectors here (a malformed one is 22P02).
        let arrays = arrays
            .iter()
            .zip(&self.spec().args)
            .map(|((a, scalar), t)| {
                if *t == ValueType::Vector
                    && ValueType::of(a.data_type()) != Some(ValueType::Vector)
                {
                    let rows = crate::vector::array_to_vectors(a).map_err(external)?;
                    Ok((crate::vector::vectors_to_list(&rows)?, *scalar))
                } else {
                    Ok((a.clone(), *scalar))
                }
            })
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        let args: Vec<Arg<'_>> = arrays
            .iter()
            .map(|(a, scalar)| Arg {
                array: a.as_ref(),
                scalar: *scalar,
            })
            .collect();
        let started = std::time::Instant::now();
        let out = self.loaded.func.call(&args, num_rows);
        self.loaded
            .metrics
            .wasm_call(&self.loaded.def.name, started.elapsed(), out.as_ref().err());
        out.map_err(external)
    }
}

impl ScalarUDFImpl for WasmUdf {
    fn name(&self) -> &str {
        WasmUdf::name(self)
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(self.spec().ret.data_type())
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> datafusion::error::Result<Vec<DataType>> {
        self.coerce(arg_types)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let n = args.number_rows;
        let arrays = args
            .args
            .iter()
            .map(|a| match a {
                ColumnarValue::Array(a) => Ok((a.clone(), false)),
                ColumnarValue::Scalar(s) => Ok((s.to_array()?, true)),
            })
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        Ok(ColumnarValue::Array(self.call(&arrays, n)?))
    }
}

impl WindowUDFImpl for WasmUdf {
    fn name(&self) -> &str {
        WasmUdf::name(self)
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> datafusion::error::Result<Vec<DataType>> {
        self.coerce(arg_types)
    }

    fn partition_evaluator(
        &self,
        _args: PartitionEvaluatorArgs,
    ) -> datafusion::error::Result<Box<dyn PartitionEvaluator>> {
        Ok(Box::new(WholePartition(self.clone())))
    }

    fn field(&self, field_args: WindowUDFFieldArgs) -> datafusion::error::Result<FieldRef> {
        Ok(Arc::new(Field::new(
            field_args.name(),
            self.spec().ret.data_type(),
            true,
        )))
    }
}

/// Evaluates a window function over its whole partition in one guest call.
#[derive(Debug)]
struct WholePartition(WasmUdf);

impl PartitionEvaluator for WholePartition {
    fn evaluate_all(
        &mut self,
        values: &[ArrayRef],
        num_rows: usize,
    ) -> datafusion::error::Result<ArrayRef> {
        let arrays: Vec<(ArrayRef, bool)> = values.iter().map(|a| (a.clone(), false)).collect();
        self.0.call(&arrays, num_rows)
    }
}
