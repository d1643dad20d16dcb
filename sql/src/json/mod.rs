//! `json`, `jsonb` and `uuid`: values, operators and functions.
//!
//! The three types are stored as text (Arrow Utf8) whose field metadata
//! names the type ([`quiver_engine::schema::PG_TYPE_KEY`]); DataFusion keeps
//! the metadata on column references, so results are described with their
//! Postgres type and [`JsonPlanner`] can give `->`, `->>`, `#>`, `#>>`,
//! `@>`, `<@`, `?`, `?|`, `?&` their JSON meaning. A `jsonb` value is kept
//! in PostgreSQL's normal form ([`normal_text`]); a `uuid` in its canonical
//! text (lower case, hyphenated), so that comparing texts compares values.
//!
//! Functions: the casts `json_in`, `jsonb_in`, `jsonpath_in`, `uuid_in`
//! (what `::json`, `::jsonb`, `::jsonpath`, `::uuid` become), the operator
//! functions, `jsonb_path_match`, `jsonb_path_exists`, `jsonb_exists`,
//! `jsonb_build_object` / `json_build_object`, `jsonb_build_array` /
//! `json_build_array`, `to_jsonb` / `to_json`, `jsonb_typeof` /
//! `json_typeof`, `jsonb_array_length` / `json_array_length`,
//! `jsonb_extract_path[_text]` / `json_extract_path[_text]`,
//! `jsonb_pretty`, `gen_random_uuid()`.

pub mod path;

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int32Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{
    Expr, ExprSchemable, ScalarUDF, Signature, TypeSignature, Volatility,
};
use datafusion::sql::sqlparser::ast::BinaryOperator;
use quiver_engine::schema::field_pg_type;
use serde_json::{Map, Value};

use crate::error::{SqlError, StatusCode};

pub(crate) type JsonError = SqlError;
pub(crate) const UNDEFINED_OBJECT: StatusCode = StatusCode::UndefinedObject;
pub(crate) const SINGLETON_REQUIRED: StatusCode = StatusCode::SingletonJsonItemRequired;
pub(crate) const NON_NUMERIC: StatusCode = StatusCode::InvalidParameterValue;

impl SqlError {
    pub(crate) fn syntax(message: impl Into<String>) -> SqlError {
        SqlError::new(StatusCode::SyntaxError, message)
    }

    pub(crate) fn unsupported(message: impl Into<String>) -> SqlError {
        SqlError::new(StatusCode::FeatureNotSupported, message)
    }
}

/// Parses JSON text (22P02 when it is not JSON).
pub fn parse(text: &str) -> Result<Value, SqlError> {
    serde_json::from_str(text).map_err(|e| {
        SqlError::new(
            StatusCode::InvalidTextRepresentation,
            format!("invalid input syntax for type json: {e}"),
        )
    })
}

/// A JSON value as PostgreSQL prints a `jsonb`: `{"a": 1, "bb": [1, 2]}`,
/// object keys ordered by length, then bytes.
pub fn normal_text(v: &Value) -> String {
    let mut out = String::new();
    write_normal(v, &mut out);
    out
}

fn write_normal(v: &Value, out: &mut String) {
    match v {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_normal(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push_str(": ");
                write_normal(&map[k], out);
            }
            out.push('}');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// `jsonb_typeof`'s name for a value.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Equality of JSON values, numbers compared by value (`1` = `1.0`).
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// `a @> b`: PostgreSQL's jsonb containment.
pub fn contains(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => y
            .iter()
            .all(|(k, w)| x.get(k).is_some_and(|v| contains(v, w))),
        (Value::Array(x), Value::Array(y)) => y.iter().all(|w| {
            x.iter().any(|v| match (v, w) {
                (Value::Array(_) | Value::Object(_), _) => contains(v, w),
                _ => json_eq(v, w),
            })
        }),
        // A top-level array contains a scalar it has as an element.
        (Value::Array(x), scalar) if !scalar.is_object() => x.iter().any(|v| json_eq(v, scalar)),
        (x, y) => json_eq(x, y),
    }
}

/// `j ? key`: a key of an object, a string element of an array, or the
/// string itself.
fn has_key(v: &Value, key: &str) -> bool {
    match v {
        Value::Object(m) => m.contains_key(key),
        Value::Array(a) => a.iter().any(|e| e.as_str() == Some(key)),
        Value::String(s) => s == key,
        _ => false,
    }
}

/// A uuid in canonical form (22P02 when the text is not one).
pub fn uuid_text(text: &str) -> Result<String, SqlError> {
    let bad = || {
        SqlError::new(
            StatusCode::InvalidTextRepresentation,
            format!("invalid input syntax for type uuid: \"{text}\""),
        )
    };
    let t = text.trim();
    let t = match t.strip_prefix('{') {
        Some(inner) => inner.strip_suffix('}').ok_or_else(bad)?,
        None => t,
    };
    // Hex digits, a hyphen allowed after any group of four (not first, last or doubled).
    let mut hex = String::with_capacity(32);
    let mut last_hyphen = true;
    for c in t.chars() {
        match c {
            '-' if !last_hyphen && hex.len().is_multiple_of(4) => last_hyphen = true,
            c if c.is_ascii_hexdigit() => {
                hex.push(c.to_ascii_lowercase());
                last_hyphen = false;
            }
            _ => return Err(bad()),
        }
    }
    if hex.len() != 32 || last_hyphen {
        return Err(bad());
    }
    let id = u128::from_str_radix(&hex, 16).map_err(|_| bad())?;
    Ok(uuid_from_bytes(&id.to_be_bytes()))
}

/// A uuid's 16 bytes (its binary form) in canonical text form.
pub fn uuid_from_bytes(id: &[u8; 16]) -> String {
    uuid::Uuid::from_bytes(*id).hyphenated().to_string()
}

/// A random (version 4) uuid, as `gen_random_uuid()` gives.
pub fn random_uuid() -> String {
    uuid::Uuid::new_v4().hyphenated().to_string()
}

/// Checks a value written to a `json` column, or brings one written to a
/// `jsonb` column to its normal form.
pub fn json_in(text: &str, binary: bool) -> Result<String, SqlError> {
    let v = parse(text)?;
    Ok(if binary {
        normal_text(&v)
    } else {
        text.to_string()
    })
}

// ---------------------------------------------------------------------------
// Functions

/// How many arguments a function takes.
enum Arity {
    Exactly(&'static [usize]),
    Any,
}

fn function(
    name: &'static str,
    arity: Arity,
    volatility: Volatility,
    returns: DataType,
    pg_type: Option<&'static str>,
    body: impl Fn(&[ArrayRef], &[FieldRef], usize) -> Result<ArrayRef, SqlError> + Send + Sync + 'static,
) -> ScalarUDF {
    let signature = match arity {
        Arity::Any => Signature::one_of(
            vec![TypeSignature::Nullary, TypeSignature::VariadicAny],
            volatility,
        ),
        Arity::Exactly([0]) => Signature::nullary(volatility),
        Arity::Exactly(ns) => Signature::one_of(
            ns.iter().map(|n| TypeSignature::Any(*n)).collect(),
            volatility,
        ),
    };
    crate::pg_catalog::functions::column_function(
        name,
        signature,
        returns,
        pg_type,
        move |a, f, n| body(a, f, n).map_err(|e| DataFusionError::External(Box::new(e))),
    )
}

fn texts(a: &ArrayRef) -> Result<Vec<Option<String>>, SqlError> {
    let c = datafusion::arrow::compute::cast(a, &DataType::Utf8)
        .map_err(|e| SqlError::new(StatusCode::DatatypeMismatch, e.to_string()))?;
    Ok(c.as_string::<i32>()
        .iter()
        .map(|v| v.map(str::to_string))
        .collect())
}

/// Each row's JSON document (NULL stays NULL).
fn docs(a: &ArrayRef) -> Result<Vec<Option<Value>>, SqlError> {
    texts(a)?
        .into_iter()
        .map(|t| t.map(|t| parse(&t)).transpose())
        .collect()
}

fn text_out(values: impl IntoIterator<Item = Option<String>>) -> ArrayRef {
    Arc::new(values.into_iter().collect::<StringArray>())
}

fn bool_out(values: impl IntoIterator<Item = Option<bool>>) -> ArrayRef {
    Arc::new(values.into_iter().collect::<BooleanArray>())
}

/// A key or index for `->` / `->>`.
enum Key {
    Name(String),
    Index(i64),
}

fn keys(a: &ArrayRef) -> Result<Vec<Option<Key>>, SqlError> {
    if a.data_type().is_integer() {
        let c = datafusion::arrow::compute::cast(a, &DataType::Int64)
            .map_err(|e| SqlError::new(StatusCode::DatatypeMismatch, e.to_string()))?;
        let ints = c.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        return Ok(ints.iter().map(|v| v.map(Key::Index)).collect());
    }
    Ok(texts(a)?.into_iter().map(|t| t.map(Key::Name)).collect())
}

fn get<'v>(v: &'v Value, key: &Key) -> Option<&'v Value> {
    match (v, key) {
        (Value::Object(m), Key::Name(k)) => m.get(k),
        (Value::Array(a), Key::Index(i)) => {
            let i = if *i < 0 { a.len() as i64 + i } else { *i };
            usize::try_from(i).ok().and_then(|i| a.get(i))
        }
        _ => None,
    }
}

/// `->>`'s text of a value: a string's own text, JSON text for the rest,
/// NULL for JSON null.
fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(normal_text(other)),
    }
}

/// A `text[]` argument: an array, or its text form `{a,b,"c d"}`.
fn text_arrays(a: &ArrayRef) -> Result<Vec<Option<Vec<String>>>, SqlError> {
    match a.data_type() {
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(..) => (0..a.len())
            .map(|i| {
                if a.is_null(i) {
                    return Ok(None);
                }
                let ScalarValue::List(l) = ScalarValue::try_from_array(
                    &datafusion::arrow::compute::cast(a, &DataType::new_list(DataType::Utf8, true))
                        .map_err(|e| SqlError::new(StatusCode::DatatypeMismatch, e.to_string()))?,
                    i,
                )
                .map_err(|e| SqlError::new(StatusCode::Internal, e.to_string()))?
                else {
                    return Ok(None);
                };
                Ok(Some(
                    texts(&l.value(0))?
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>(),
                ))
            })
            .collect(),
        _ => texts(a)?
            .into_iter()
            .map(|t| t.map(|t| parse_text_array(&t)).transpose())
            .collect(),
    }
}

/// `{a,b,"c d"}` as its elements (NULLs left out).
fn parse_text_array(t: &str) -> Result<Vec<String>, SqlError> {
    Ok(crate::copy::array_literal(t)?
        .into_iter()
        .flatten()
        .collect())
}

/// A SQL value as JSON (`to_jsonb`): text of a json-typed field is
/// parsed, other text is a string, lists are arrays.
fn to_json(value: &ScalarValue, field: Option<&Field>) -> Result<Value, SqlError> {
    if value.is_null() {
        return Ok(Value::Null);
    }
    let jsonish = field
        .and_then(field_pg_type)
        .is_some_and(|t| t == "json" || t == "jsonb");
    Ok(match value {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => {
            if jsonish {
                parse(s)?
            } else {
                Value::String(s.clone())
            }
        }
        ScalarValue::Boolean(Some(b)) => Value::Bool(*b),
        ScalarValue::Float32(Some(f)) => float(f64::from(*f))?,
        ScalarValue::Float64(Some(f)) => float(*f)?,
        ScalarValue::List(l) => {
            let items = l.value(0);
            let mut out = Vec::with_capacity(items.len());
            for i in 0..items.len() {
                let s = ScalarValue::try_from_array(&items, i)
                    .map_err(|e| SqlError::new(StatusCode::Internal, e.to_string()))?;
                out.push(to_json(&s, None)?);
            }
            Value::Array(out)
        }
        ScalarValue::FixedSizeList(l) => {
            let items = l.value(0);
            let mut out = Vec::with_capacity(items.len());
            for i in 0..items.len() {
                let s = ScalarValue::try_from_array(&items, i)
                    .map_err(|e| SqlError::new(StatusCode::Internal, e.to_string()))?;
                out.push(to_json(&s, None)?);
            }
            Value::Array(out)
        }
        v if v.data_type().is_integer() => match v.cast_to(&DataType::Int64) {
            Ok(ScalarValue::Int64(Some(i))) => Value::from(i),
            _ => Value::String(v.to_string()),
        },
        v if v.data_type().is_numeric() => match v.cast_to(&DataType::Float64) {
            Ok(ScalarValue::Float64(Some(f))) => float(f)?,
            _ => Value::String(v.to_string()),
        },
        other => Value::String(other.to_string()),
    })
}

fn float(f: f64) -> Result<Value, SqlError> {
    serde_json::Number::from_f64(f)
        .map(Value::Number)
        .ok_or_else(|| {
            SqlError::new(
                StatusCode::InvalidParameterValue,
                format!("{f} cannot be represented as JSON"),
            )
        })
}

/// The row-`row` values of all argument columns as JSON.
fn row_values(args: &[ArrayRef], fields: &[FieldRef], row: usize) -> Result<Vec<Value>, SqlError> {
    args.iter()
        .enumerate()
        .map(|(i, a)| {
            let s = ScalarValue::try_from_array(a, row)
                .map_err(|e| SqlError::new(StatusCode::Internal, e.to_string()))?;
            to_json(&s, fields.get(i).map(AsRef::as_ref))
        })
        .collect()
}

/// Runs `f` over rows of (document, argument) pairs; NULL in, NULL out.
fn per_doc<T>(
    args: &[ArrayRef],
    mut f: impl FnMut(&Value, usize) -> Result<Option<T>, SqlError>,
) -> Result<Vec<Option<T>>, SqlError> {
    docs(&args[0])?
        .into_iter()
        .enumerate()
        .map(|(row, d)| match d {
            None => Ok(None),
            Some(d) => f(&d, row),
        })
        .collect()
}

/// Reads a function's second argument, one value per row.
type ArgReader<A> = fn(&ArrayRef) -> Result<Vec<Option<A>>, SqlError>;

/// A function of a document and a per-row argument; NULL when either is
/// NULL. `out` builds the result column.
fn doc_function<A: 'static, T: 'static>(
    name: &'static str,
    returns: DataType,
    pg_type: Option<&'static str>,
    read: ArgReader<A>,
    f: impl Fn(&Value, &A) -> Option<T> + Send + Sync + 'static,
    out: fn(Vec<Option<T>>) -> ArrayRef,
) -> ScalarUDF {
    let imm = Volatility::Immutable;
    function(
        name,
        Arity::Exactly(&[2]),
        imm,
        returns,
        pg_type,
        move |a, _, _| {
            let arg = read(&a[1])?;
            Ok(out(per_doc(a, |d, row| {
                Ok(arg[row].as_ref().and_then(|x| f(d, x)))
            })?))
        },
    )
}

/// The operators giving text: `->`, `->>`, `#>`, `#>>`.
fn lookup<A: 'static>(
    name: &'static str,
    pg_type: Option<&'static str>,
    read: ArgReader<A>,
    f: fn(&Value, &A) -> Option<String>,
) -> ScalarUDF {
    doc_function(name, DataType::Utf8, pg_type, read, f, |v| text_out(v))
}

/// The tests of a document: `@>`, `<@`, `?`, `?|`, `?&`.
fn predicate<A: 'static>(
    name: &'static str,
    read: ArgReader<A>,
    test: fn(&Value, &A) -> bool,
) -> ScalarUDF {
    let f = move |d: &Value, x: &A| Some(test(d, x));
    doc_function(name, DataType::Boolean, None, read, f, |v| bool_out(v))
}

/// A type's input function (what a cast from text to it is): each value
/// checked and brought to its normal form.
fn input(
    name: &'static str,
    pg_type: &'static str,
    f: fn(&str) -> Result<String, SqlError>,
) -> ScalarUDF {
    let imm = Volatility::Immutable;
    function(
        name,
        Arity::Exactly(&[1]),
        imm,
        DataType::Utf8,
        Some(pg_type),
        move |a, _, _| {
            Ok(text_out(
                texts(&a[0])?
                    .into_iter()
                    .map(|t| t.map(|t| f(&t)).transpose())
                    .collect::<Result<Vec<_>, _>>()?,
            ))
        },
    )
}

/// The JSON and uuid functions.
pub fn udfs() -> Vec<ScalarUDF> {
    use Arity::{Any, Exactly};
    let imm = Volatility::Immutable;
    let utf8 = || DataType::Utf8;
    let mut out = vec![
        input("json_in", "json", |t| json_in(t, false)),
        input("jsonb_in", "jsonb", |t| json_in(t, true)),
        input("uuid_in", "uuid", uuid_text),
        function(
            "jsonpath_in",
            Exactly(&[1]),
            imm,
            utf8(),
            Some("jsonpath"),
            |a, _, _| {
                let t = texts(&a[0])?;
                for p in t.iter().flatten() {
                    path::JsonPath::parse(p)?;
                }
                Ok(text_out(t))
            },
        ),
        function(
            "gen_random_uuid",
            Exactly(&[0]),
            Volatility::Volatile,
            utf8(),
            Some("uuid"),
            |_, _, n| Ok(text_out((0..n).map(|_| Some(random_uuid())))),
        ),
        lookup("json_get", Some("jsonb"), keys, |d, k| {
            get(d, k).map(normal_text)
        }),
        lookup("json_get_text", None, keys, |d, k| {
            get(d, k).and_then(as_text)
        }),
        lookup("json_get_path", Some("jsonb"), text_arrays, |d, p| {
            at_path(d, p).map(normal_text)
        }),
        lookup("json_get_path_text", None, text_arrays, |d, p| {
            at_path(d, p).and_then(as_text)
        }),
        predicate("jsonb_contains", docs, contains),
        predicate("jsonb_contained", docs, |d, o| contains(o, d)),
        predicate("jsonb_exists", texts, |d, k| has_key(d, k)),
        predicate("jsonb_exists_any", text_arrays, |d, k| {
            k.iter().any(|k| has_key(d, k))
        }),
        predicate("jsonb_exists_all", text_arrays, |d, k| {
            k.iter().all(|k| has_key(d, k))
        }),
    ];
    for (name, exists) in [("jsonb_path_match", false), ("jsonb_path_exists", true)] {
        out.push(function(
            name,
            Exactly(&[2, 3, 4]),
            imm,
            DataType::Boolean,
            None,
            move |a, _, n| {
                let paths = texts(&a[1])?;
                let vars = match a.get(2) {
                    Some(v) => docs(v)?,
                    None => vec![Some(Value::Object(Map::new())); n],
                };
                let silent = match a.get(3) {
                    Some(s) => datafusion::arrow::compute::cast(s, &DataType::Boolean)
                        .map_err(|e| SqlError::new(StatusCode::DatatypeMismatch, e.to_string()))?
                        .as_boolean()
                        .iter()
                        .map(|b| b.unwrap_or(false))
                        .collect(),
                    None => vec![false; n],
                };
                let mut parsed: Option<(String, path::JsonPath)> = None;
                Ok(bool_out(per_doc(a, |d, row| {
                    let (Some(p), Some(v)) = (&paths[row], &vars[row]) else {
                        return Ok(None);
                    };
                    if parsed.as_ref().is_none_or(|(text, _)| text != p) {
                        parsed = Some((p.clone(), path::JsonPath::parse(p)?));
                    }
                    let Some((_, jp)) = parsed.as_ref() else {
                        return Ok(None);
                    };
                    let r = if exists {
                        jp.exists(d, v)
                    } else {
                        jp.matches(d, v)
                    };
                    match r {
                        Ok(b) => Ok(b),
                        Err(_) if silent[row] => Ok(None),
                        Err(e) => Err(e),
                    }
                })?))
            },
        ));
    }
    for (name, pg) in [
        ("jsonb_build_object", "jsonb"),
        ("json_build_object", "json"),
    ] {
        out.push(function(name, Any, imm, utf8(), Some(pg), |a, f, n| {
            if !a.len().is_multiple_of(2) {
                return Err(SqlError::new(
                    StatusCode::InvalidParameterValue,
                    "argument list must have even number of elements",
                ));
            }
            let mut rows = Vec::with_capacity(n);
            for row in 0..n {
                let values = row_values(a, f, row)?;
                let mut m = Map::new();
                for (i, pair) in values.chunks(2).enumerate() {
                    let key = match &pair[0] {
                        Value::Null => {
                            return Err(SqlError::new(
                                StatusCode::InvalidParameterValue,
                                format!("argument {}: key must not be null", 2 * i + 1),
                            ));
                        }
                        Value::String(s) => s.clone(),
                        other => normal_text(other),
                    };
                    m.insert(key, pair[1].clone());
                }
                rows.push(Some(normal_text(&Value::Object(m))));
            }
            Ok(text_out(rows))
        }));
    }
    for (name, pg) in [("jsonb_build_array", "jsonb"), ("json_build_array", "json")] {
        out.push(function(name, Any, imm, utf8(), Some(pg), |a, f, n| {
            Ok(text_out(
                (0..n)
                    .map(|row| Ok(Some(normal_text(&Value::Array(row_values(a, f, row)?)))))
                    .collect::<Result<Vec<_>, SqlError>>()?,
            ))
        }));
    }
    for (name, pg) in [("to_jsonb", "jsonb"), ("to_json", "json")] {
        out.push(function(
            name,
            Exactly(&[1]),
            imm,
            utf8(),
            Some(pg),
            |a, f, n| {
                Ok(text_out(
                    (0..n)
                        .map(|row| {
                            let v = row_values(a, f, row)?.remove(0);
                            Ok((!v.is_null() || !a[0].is_null(row)).then(|| normal_text(&v)))
                        })
                        .collect::<Result<Vec<_>, SqlError>>()?,
                ))
            },
        ));
    }
    for name in ["jsonb_typeof", "json_typeof"] {
        out.push(function(
            name,
            Exactly(&[1]),
            imm,
            utf8(),
            None,
            |a, _, _| {
                Ok(text_out(per_doc(a, |d, _| {
                    Ok(Some(type_name(d).to_string()))
                })?))
            },
        ));
    }
    for name in ["jsonb_array_length", "json_array_length"] {
        out.push(function(
            name,
            Exactly(&[1]),
            imm,
            DataType::Int32,
            None,
            |a, _, _| {
                let lens = per_doc(a, |d, _| match d {
                    Value::Array(items) => Ok(Some(items.len() as i32)),
                    other => Err(SqlError::new(
                        StatusCode::InvalidParameterValue,
                        format!("cannot get array length of a {}", type_name(other)),
                    )),
                })?;
                Ok(Arc::new(lens.into_iter().collect::<Int32Array>()) as ArrayRef)
            },
        ));
    }
    for (name, text) in [
        ("jsonb_extract_path", false),
        ("json_extract_path", false),
        ("jsonb_extract_path_text", true),
        ("json_extract_path_text", true),
    ] {
        let pg = (!text).then_some("jsonb");
        out.push(function(name, Any, imm, utf8(), pg, move |a, _, _| {
            if a.is_empty() {
                return Err(SqlError::new(
                    StatusCode::UndefinedFunction,
                    format!("function {name}() needs a document"),
                ));
            }
            let path: Vec<Vec<Option<String>>> =
                a[1..].iter().map(texts).collect::<Result<_, _>>()?;
            Ok(text_out(per_doc(a, |d, row| {
                let Some(p) = path
                    .iter()
                    .map(|p| p[row].clone())
                    .collect::<Option<Vec<_>>>()
                else {
                    return Ok(None);
                };
                let v = at_path(d, &p);
                Ok(if text {
                    v.and_then(as_text)
                } else {
                    v.map(normal_text)
                })
            })?))
        }));
    }
    out.push(function(
        "jsonb_pretty",
        Exactly(&[1]),
        imm,
        utf8(),
        None,
        |a, _, _| {
            Ok(text_out(per_doc(a, |d, _| {
                Ok(serde_json::to_string_pretty(d).ok())
            })?))
        },
    ));
    out
}

/// The value at a path of keys / array indexes (`#>`).
fn at_path<'v>(v: &'v Value, path: &[String]) -> Option<&'v Value> {
    let mut cur = v;
    for step in path {
        cur = match cur {
            Value::Object(m) => m.get(step)?,
            Value::Array(_) => get(cur, &Key::Index(step.parse().ok()?))?,
            _ => return None,
        };
    }
    Some(cur)
}

// ---------------------------------------------------------------------------
// Operators

/// A DataFusion context with DataFusion's own features, the analyzer rules
/// given (DataFusion's when empty), and the JSON functions and operators.
pub fn context(
    config: datafusion::prelude::SessionConfig,
    analyzer: Vec<Arc<dyn datafusion::optimizer::AnalyzerRule + Send + Sync>>,
) -> datafusion::prelude::SessionContext {
    let json = udfs();
    let mut builder = datafusion::execution::session_state::SessionStateBuilder::new()
        .with_config(config)
        .with_default_features();
    if !analyzer.is_empty() {
        builder = builder.with_analyzer_rules(analyzer);
    }
    // Before DataFusion's own planners, which read `@>` as array containment.
    if let Some(planners) = builder.expr_planners() {
        planners.insert(0, Arc::new(JsonPlanner::new(&json)));
    }
    let ctx = datafusion::prelude::SessionContext::new_with_state(builder.build());
    for f in json {
        ctx.register_udf(f);
    }
    ctx
}

/// Plans the JSON operators on json/jsonb operands, and compares a uuid
/// with text by its canonical form.
#[derive(Debug)]
pub struct JsonPlanner {
    udfs: std::collections::HashMap<&'static str, Arc<ScalarUDF>>,
}

impl JsonPlanner {
    pub fn new(udfs: &[ScalarUDF]) -> JsonPlanner {
        let mut map = std::collections::HashMap::new();
        for u in udfs {
            for name in [
                "json_get",
                "json_get_text",
                "json_get_path",
                "json_get_path_text",
                "jsonb_contains",
                "jsonb_contained",
                "jsonb_exists",
                "jsonb_exists_any",
                "jsonb_exists_all",
                "uuid_in",
            ] {
                if u.name() == name {
                    map.insert(name, Arc::new(u.clone()));
                }
            }
        }
        JsonPlanner { udfs: map }
    }

    fn call(&self, name: &str, args: Vec<Expr>) -> DfResult<Expr> {
        let f = self
            .udfs
            .get(name)
            .ok_or_else(|| DataFusionError::Internal(format!("{name} is not registered")))?;
        Ok(Expr::ScalarFunction(ScalarFunction::new_udf(
            f.clone(),
            args,
        )))
    }
}

fn pg_type_of(e: &Expr, schema: &DFSchema) -> Option<String> {
    let (_, field) = e.to_field(schema).ok()?;
    field_pg_type(&field).map(str::to_string)
}

fn is_text_literal(e: &Expr) -> bool {
    matches!(
        e,
        Expr::Literal(
            ScalarValue::Utf8(Some(_)) | ScalarValue::Utf8View(Some(_)),
            _
        )
    )
}

impl ExprPlanner for JsonPlanner {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> DfResult<PlannerResult<RawBinaryExpr>> {
        use BinaryOperator as B;
        let lt = pg_type_of(&expr.left, schema);
        let rt = pg_type_of(&expr.right, schema);
        let json = |t: &Option<String>| matches!(t.as_deref(), Some("json" | "jsonb"));
        let left_json = json(&lt) || is_text_literal(&expr.left);
        let name = match expr.op {
            B::Arrow if left_json => "json_get",
            B::LongArrow if left_json => "json_get_text",
            B::HashArrow if left_json => "json_get_path",
            B::HashLongArrow if left_json => "json_get_path_text",
            B::AtArrow if json(&lt) || json(&rt) => "jsonb_contains",
            B::ArrowAt if json(&lt) || json(&rt) => "jsonb_contained",
            B::Question if json(&lt) => "jsonb_exists",
            B::QuestionPipe if json(&lt) => "jsonb_exists_any",
            B::QuestionAnd if json(&lt) => "jsonb_exists_all",
            B::Eq | B::NotEq | B::Lt | B::LtEq | B::Gt | B::GtEq => {
                let uuid = |t: &Option<String>| t.as_deref() == Some("uuid");
                let RawBinaryExpr { op, left, right } = expr;
                // A uuid meets text by value: the text is read as a uuid.
                let (left, right) = match (uuid(&lt), uuid(&rt)) {
                    (true, false) if !matches!(right, Expr::Placeholder(_)) => {
                        (left, self.call("uuid_in", vec![right])?)
                    }
                    (false, true) if !matches!(left, Expr::Placeholder(_)) => {
                        (self.call("uuid_in", vec![left])?, right)
                    }
                    _ => (left, right),
                };
                return Ok(PlannerResult::Original(RawBinaryExpr { op, left, right }));
            }
            _ => return Ok(PlannerResult::Original(expr)),
        };
        Ok(PlannerResult::Planned(
            self.call(name, vec![expr.left, expr.right])?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn jsonb_prints_in_postgres_normal_form() {
        let v = parse(r#"{"bb": [1, {"z":null,"a":true}], "a": "x", "a": "y", "ccc": 1.5}"#)
            .expect("json");
        assert_eq!(
            normal_text(&v),
            r#"{"a": "y", "bb": [1, {"a": true, "z": null}], "ccc": 1.5}"#
        );
        assert!(parse("{bad").is_err());
    }

    #[test]
    fn containment_and_keys_follow_postgres() {
        let doc = json!({"a": 1, "tags": ["x", "y"], "o": {"p": [1, 2]}});
        assert!(contains(&doc, &json!({"a": 1.0})));
        assert!(contains(&doc, &json!({"tags": ["y"]})));
        assert!(contains(&doc, &json!({"o": {"p": [2]}})));
        assert!(!contains(&doc, &json!({"tags": ["z"]})));
        assert!(contains(&json!(["x", "y"]), &json!("x")));
        assert!(has_key(&doc, "tags"));
        assert!(has_key(&json!(["x"]), "x"));
        assert!(!has_key(&doc, "x"));
    }

    #[test]
    fn uuids_are_canonical() {
        let u = "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11";
        assert_eq!(
            uuid_text(u).expect("uuid"),
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
        );
        assert_eq!(
            uuid_text("{a0eebc999c0b4ef8bb6d6bb9bd380a11}").expect("uuid"),
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
        );
        assert!(uuid_text("a0eebc99").is_err());
        assert_ne!(random_uuid(), random_uuid());
    }

    #[test]
    fn text_arrays_parse_like_postgres() {
        assert_eq!(
            parse_text_array(r#"{a, "b c",d}"#).expect("array"),
            vec!["a", "b c", "d"]
        );
        assert!(parse_text_array("{}").expect("array").is_empty());
        assert!(parse_text_array("a,b").is_err());
    }
}
