//! The `vector` type at the SQL level: its text form `[x,y,…]`, conversion of
//! values to vectors, and the pgvector functions behind the operators
//! `<->` (`l2_distance`), `<=>` (`cosine_distance`), `<#>`
//! (`negative_inner_product`) and `<+>` (`l1_distance`).

use std::borrow::Cow;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeListArray, Float32Array, Float64Array, Int32Array, ListArray,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, Float32Type};
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use quiver_engine::distance::Metric;

use crate::error::{Result, SqlError, StatusCode};
use crate::sql_err;

/// Parses pgvector's text form `[1, 2.5, -3e-2]`.
pub fn parse_vector(text: &str) -> Result<Vec<f32>> {
    let mut out = Vec::with_capacity(text.len() / 8 + 1);
    parse_vector_into(text, &mut out)?;
    Ok(out)
}

/// Parses pgvector's text form onto the end of `out` (COPY parses every
/// component of every row here, into one buffer for many rows).
pub fn parse_vector_into(text: &str, out: &mut Vec<f32>) -> Result<()> {
    let bad = || {
        SqlError::new(
            StatusCode::InvalidTextRepresentation,
            format!(
                "invalid input syntax for type vector: \"{}\"",
                truncate(text)
            ),
        )
    };
    let inner = text
        .trim()
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .ok_or_else(bad)?;
    if inner.trim().is_empty() {
        return sql_err!(DataException, "vector must have at least 1 dimension");
    }
    // Split at commas with memchr's vectorised search.
    let bytes = inner.as_bytes();
    let mut start = 0;
    let ends = memchr::memchr_iter(b',', bytes).chain(std::iter::once(bytes.len()));
    for end in ends {
        let p = &inner[start..end];
        start = end + 1;
        // Components rarely have spaces around them: trim only when the
        // plain parse fails.
        let v: f32 = match p.parse() {
            Ok(v) => v,
            Err(_) => p.trim().parse().map_err(|_| bad())?,
        };
        if v.is_nan() {
            return sql_err!(DataException, "NaN not allowed in vector");
        }
        if v.is_infinite() {
            return sql_err!(DataException, "infinite value not allowed in vector");
        }
        out.push(v);
    }
    Ok(())
}

/// Decodes pgvector's binary form (`int16 dim, int16 0, dim × float4`,
/// big-endian) onto the end of `out`; NaN and infinity are refused as in the
/// text form.
pub fn parse_vector_binary(bytes: &[u8], out: &mut Vec<f32>) -> Result<()> {
    let bad = || {
        SqlError::new(
            StatusCode::InvalidBinaryRepresentation,
            "incorrect binary data format for type vector",
        )
    };
    let (Some(dim), Some(rest)) = (bytes.get(..2), bytes.get(4..)) else {
        return Err(bad());
    };
    let dim = i16::from_be_bytes([dim[0], dim[1]]);
    if dim < 1 || rest.len() != dim as usize * 4 {
        return Err(bad());
    }
    out.reserve(dim as usize);
    for c in rest.chunks_exact(4) {
        let v = f32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        if v.is_nan() {
            return sql_err!(DataException, "NaN not allowed in vector");
        }
        if v.is_infinite() {
            return sql_err!(DataException, "infinite value not allowed in vector");
        }
        out.push(v);
    }
    Ok(())
}

fn truncate(s: &str) -> Cow<'_, str> {
    if s.len() <= 60 {
        return Cow::Borrowed(s);
    }
    let mut end = 60;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…", &s[..end]))
}

/// pgvector's text form of a vector.
pub fn format_vector(v: &[f32]) -> String {
    let mut s = String::with_capacity(v.len() * 10 + 2);
    s.push('[');
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&x.to_string());
    }
    s.push(']');
    s
}

/// The vectors of one function argument, row by row.
enum VecArg {
    Scalar(Option<Vec<f32>>),
    Rows(Vec<Option<Vec<f32>>>),
    Fixed(FixedSizeListArray),
}

impl VecArg {
    fn from(value: &ColumnarValue) -> Result<VecArg> {
        match value {
            ColumnarValue::Scalar(s) => {
                let arr = s.to_array_of_size(1)?;
                let mut rows = array_to_vectors(&arr)?;
                Ok(VecArg::Scalar(rows.pop().flatten()))
            }
            ColumnarValue::Array(a) => match a.data_type() {
                DataType::FixedSizeList(f, _) if f.data_type() == &DataType::Float32 => {
                    Ok(VecArg::Fixed(a.as_fixed_size_list().clone()))
                }
                _ => Ok(VecArg::Rows(array_to_vectors(a)?)),
            },
        }
    }

    fn get(&self, i: usize) -> Option<Cow<'_, [f32]>> {
        match self {
            VecArg::Scalar(v) => v.as_deref().map(Cow::Borrowed),
            VecArg::Rows(r) => r[i].as_deref().map(Cow::Borrowed),
            VecArg::Fixed(a) => {
                if a.is_null(i) {
                    return None;
                }
                let d = a.value_length() as usize;
                let vals = a.values().as_primitive::<Float32Type>().values();
                Some(Cow::Borrowed(&vals[i * d..(i + 1) * d]))
            }
        }
    }
}

/// A `List<Float32>` array of vectors (None = NULL).
pub fn vectors_to_list(rows: &[Option<Vec<f32>>]) -> datafusion::error::Result<ArrayRef> {
    let mut lengths = Vec::with_capacity(rows.len());
    let mut values = Vec::new();
    let mut valid = Vec::with_capacity(rows.len());
    for r in rows {
        lengths.push(r.as_ref().map_or(0, |v| v.len()));
        valid.push(r.is_some());
        if let Some(v) = r {
            values.extend_from_slice(v);
        }
    }
    let field = Arc::new(Field::new("item", DataType::Float32, true));
    Ok(Arc::new(ListArray::try_new(
        field,
        OffsetBuffer::from_lengths(lengths),
        Arc::new(Float32Array::from(values)),
        Some(valid.into()),
    )?))
}

/// Reads an array of vectors given as text, lists or fixed-size lists of numbers.
pub fn array_to_vectors(a: &ArrayRef) -> Result<Vec<Option<Vec<f32>>>> {
    let floats = |list: &dyn Array| -> Result<Vec<f32>> {
        let f = datafusion::arrow::compute::cast(list, &DataType::Float32)?;
        let f = f.as_primitive::<Float32Type>();
        if f.null_count() > 0 {
            return sql_err!(DataException, "a vector cannot contain NULL");
        }
        Ok(f.values().to_vec())
    };
    let mut out = Vec::with_capacity(a.len());
    match a.data_type() {
        DataType::Null => out.resize(a.len(), None),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let s = datafusion::arrow::compute::cast(a, &DataType::Utf8)?;
            for v in s.as_string::<i32>().iter() {
                out.push(v.map(parse_vector).transpose()?);
            }
        }
        DataType::FixedSizeList(..) => {
            let l = a.as_fixed_size_list();
            for i in 0..l.len() {
                out.push(if l.is_null(i) {
                    None
                } else {
                    Some(floats(l.value(i).as_ref())?)
                });
            }
        }
        DataType::List(_) => {
            let l = a.as_list::<i32>();
            for i in 0..l.len() {
                out.push(if l.is_null(i) {
                    None
                } else {
                    Some(floats(l.value(i).as_ref())?)
                });
            }
        }
        other => {
            return sql_err!(
                DatatypeMismatch,
                "cannot use a value of type {other} as a vector"
            );
        }
    }
    Ok(out)
}

/// The error for a vector of the wrong size, naming expected and received.
pub fn dimension_mismatch(dim: u32, got: usize, column: &str) -> SqlError {
    SqlError::new(
        StatusCode::DataException,
        format!("expected {dim} dimensions, not {got} (column \"{column}\" is vector({dim}))"),
    )
}

/// Builds a `vector(dim)` column (FixedSizeList<Float32>) from any vector-like array,
/// checking every dimension and component.
pub fn to_vector_column(a: &ArrayRef, dim: u32, column: &str) -> Result<ArrayRef> {
    let rows = array_to_vectors(a)?;
    let mut values = Vec::with_capacity(rows.len() * dim as usize);
    let mut valid = Vec::with_capacity(rows.len());
    for v in &rows {
        match v {
            Some(v) => {
                if v.len() != dim as usize {
                    return sql_err!(
                        DataException,
                        "expected {dim} dimensions, not {} (column \"{column}\" is vector({dim}))",
                        v.len()
                    );
                }
                if v.iter().any(|x| !x.is_finite()) {
                    return sql_err!(DataException, "NaN or infinite value not allowed in vector");
                }
                values.extend_from_slice(v);
                valid.push(true);
            }
            None => {
                values.extend(std::iter::repeat_n(0.0, dim as usize));
                valid.push(false);
            }
        }
    }
    let field = Arc::new(Field::new("item", DataType::Float32, true));
    let nulls = if valid.iter().all(|v| *v) {
        None
    } else {
        Some(valid.into())
    };
    Ok(Arc::new(FixedSizeListArray::try_new(
        field,
        dim as i32,
        Arc::new(Float32Array::from(values)),
        nulls,
    )?))
}

/// Builds a `vector` column without a dimension (List<Float32>) from any
/// vector-like array, checking every component.
pub fn to_vector_list(a: &ArrayRef) -> Result<ArrayRef> {
    let rows = array_to_vectors(a)?;
    if rows
        .iter()
        .flatten()
        .any(|v| v.is_empty() || v.iter().any(|x| !x.is_finite()))
    {
        return sql_err!(
            DataException,
            "a vector must have at least 1 dimension and no NaN or infinite value"
        );
    }
    Ok(vectors_to_list(&rows)?)
}

/// A vector as a `List<Float32>` scalar (what `'[..]'::vector` evaluates to).
pub fn vector_scalar(v: &[f32]) -> ScalarValue {
    let field = Arc::new(Field::new("item", DataType::Float32, true));
    let list = ListArray::new(
        field,
        OffsetBuffer::from_lengths([v.len()]),
        Arc::new(Float32Array::from(v.to_vec())),
        None,
    );
    ScalarValue::List(Arc::new(list))
}

fn ext(e: SqlError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// `to_vector(x)`: the target of `x::vector`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ToVector {
    signature: Signature,
}

impl ScalarUDFImpl for ToVector {
    fn name(&self) -> &str {
        "to_vector"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::List(Arc::new(Field::new(
            "item",
            DataType::Float32,
            true,
        ))))
    }
    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let arr = args.args[0].to_array(args.number_rows)?;
        let out = vectors_to_list(&array_to_vectors(&arr).map_err(ext)?)?;
        Ok(match &args.args[0] {
            ColumnarValue::Scalar(_) => {
                ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
            }
            ColumnarValue::Array(_) => ColumnarValue::Array(out),
        })
    }
}

/// What a vector function computes from its argument(s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum VecFn {
    Distance(Metric),
    Dims,
    Norm,
    /// pgvector's text form (`[1,2,3]`): what `v::text` gives.
    Text,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct VectorFunction {
    name: &'static str,
    f: VecFn,
    signature: Signature,
}

impl ScalarUDFImpl for VectorFunction {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(match self.f {
            VecFn::Dims => DataType::Int32,
            VecFn::Text => DataType::Utf8,
            _ => DataType::Float64,
        })
    }
    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let n = args.number_rows;
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let vals = args
            .args
            .iter()
            .map(VecArg::from)
            .collect::<Result<Vec<_>>>()
            .map_err(ext)?;
        let out: ArrayRef = match self.f {
            VecFn::Dims => Arc::new(
                (0..n)
                    .map(|i| vals[0].get(i).map(|v| v.len() as i32))
                    .collect::<Int32Array>(),
            ),
            VecFn::Norm => Arc::new(
                (0..n)
                    .map(|i| {
                        vals[0].get(i).map(|v| {
                            v.iter()
                                .map(|x| (*x as f64) * (*x as f64))
                                .sum::<f64>()
                                .sqrt()
                        })
                    })
                    .collect::<Float64Array>(),
            ),
            VecFn::Text => Arc::new(
                (0..n)
                    .map(|i| vals[0].get(i).map(|v| format_vector(&v)))
                    .collect::<datafusion::arrow::array::StringArray>(),
            ),
            VecFn::Distance(metric) => {
                let mut res = Vec::with_capacity(n);
                for i in 0..n {
                    res.push(match (vals[0].get(i), vals[1].get(i)) {
                        (Some(a), Some(b)) => {
                            if a.len() != b.len() {
                                return Err(ext(SqlError::new(
                                    StatusCode::DataException,
                                    format!(
                                        "different vector dimensions {} and {}",
                                        a.len(),
                                        b.len()
                                    ),
                                )));
                            }
                            Some(metric.distance(&a, &b) as f64)
                        }
                        _ => None,
                    });
                }
                Arc::new(Float64Array::from(res))
            }
        };
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(out)
        })
    }
}

/// `vector_out(v)`: a vector's text form; `v::text` is planned as it
/// ([`crate::compat::PgLiterals`]), Arrow having no cast from a list to text.
pub fn text_function() -> ScalarUDF {
    ScalarUDF::new_from_impl(VectorFunction {
        name: "vector_out",
        f: VecFn::Text,
        signature: Signature::any(1, Volatility::Immutable),
    })
}

/// The name of the distance function for a metric (the target of its operator).
pub fn distance_function(metric: Metric) -> &'static str {
    match metric {
        Metric::L2 => "l2_distance",
        Metric::Cosine => "cosine_distance",
        Metric::Dot => "negative_inner_product",
        Metric::L1 => "l1_distance",
    }
}

/// The metric computed by a distance function name.
pub fn function_metric(name: &str) -> Option<Metric> {
    [Metric::L2, Metric::Cosine, Metric::Dot, Metric::L1]
        .into_iter()
        .find(|m| distance_function(*m) == name)
}

/// A context of its own for SQL over rows held in memory (an upsert's
/// `EXCLUDED`, `RETURNING`, UPDATE's new rows), with the vector and JSON
/// functions.
pub fn scratch_context() -> datafusion::prelude::SessionContext {
    let ctx = crate::json::context(datafusion::prelude::SessionConfig::new(), Vec::new());
    for f in functions() {
        ctx.register_udf(f);
    }
    ctx
}

/// All vector functions, to register on a session.
pub fn functions() -> Vec<ScalarUDF> {
    let one = || Signature::any(1, Volatility::Immutable);
    let two = || Signature::any(2, Volatility::Immutable);
    let mut fns = vec![
        ScalarUDF::new_from_impl(ToVector { signature: one() }),
        ScalarUDF::new_from_impl(VectorFunction {
            name: "vector_dims",
            f: VecFn::Dims,
            signature: one(),
        }),
        ScalarUDF::new_from_impl(VectorFunction {
            name: "vector_norm",
            f: VecFn::Norm,
            signature: one(),
        }),
        text_function(),
    ];
    for m in [Metric::L2, Metric::Cosine, Metric::Dot, Metric::L1] {
        fns.push(ScalarUDF::new_from_impl(VectorFunction {
            name: distance_function(m),
            f: VecFn::Distance(m),
            signature: two(),
        }));
    }
    fns
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_vectors() {
        assert_eq!(
            parse_vector(" [1, 2.5,-3e-1] ").expect("ok"),
            vec![1.0, 2.5, -0.3]
        );
        assert_eq!(format_vector(&[1.0, 2.5, -0.25]), "[1,2.5,-0.25]");
        assert_eq!(
            parse_vector("[1,2").expect_err("bad").code,
            StatusCode::InvalidTextRepresentation
        );
        assert_eq!(
            parse_vector("[1,x]").expect_err("bad").code,
            StatusCode::InvalidTextRepresentation
        );
        assert_eq!(
            parse_vector("[1,NaN]").expect_err("nan").code,
            StatusCode::DataException
        );
        assert_eq!(
            parse_vector("[inf]").expect_err("inf").code,
            StatusCode::DataException
        );
        assert_eq!(
            parse_vector("[]").expect_err("empty").code,
            StatusCode::DataException
        );
    }
}
