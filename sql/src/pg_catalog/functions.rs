//! The functions psql, drivers and tools call on the catalog:
//! `format_type`, `pg_get_userbyid`, `pg_table_is_visible`,
//! `pg_get_indexdef`, `current_schema()`, `current_database()`, the
//! `reg*` conversions the `::regclass` casts become ([`crate::compat`]),
//! and the rest of the helpers psql's meta-commands call. Each is also
//! reachable as `pg_catalog.name` (the rewrite drops the schema).
//!
//! Arguments are taken loosely, as PostgreSQL's unknown-typed literals are:
//! an oid may come as an oid column, an integer or a string literal
//! (`WHERE c.oid = '16483'`-style), and is cast here.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Int32Array, Int64Array, ListArray, ListBuilder, StringArray,
    StringBuilder, UInt32Array, new_null_array,
};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::format::DEFAULT_CAST_OPTIONS;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TypeSignature, Volatility,
};

use super::{
    CatalogContext, PG_CATALOG_NS, PUBLIC_NS, SUPERUSER_OID, Snapshot, quote_ident, types,
};
use crate::error::{SqlError, StatusCode};

type Body = dyn Fn(&[ArrayRef], &[FieldRef], usize) -> DfResult<ArrayRef> + Send + Sync;

/// A function computed over whole columns (the catalog helpers, the JSON
/// functions): the body gets the arguments as arrays with their fields,
/// and the result's field carries `pg_type` in its metadata when set.
struct Helper {
    name: &'static str,
    signature: Signature,
    returns: DataType,
    pg_type: Option<&'static str>,
    body: Arc<Body>,
}

/// A [`Helper`] with its signature, result type and Postgres result type.
pub(crate) fn column_function(
    name: &'static str,
    signature: Signature,
    returns: DataType,
    pg_type: Option<&'static str>,
    body: impl Fn(&[ArrayRef], &[FieldRef], usize) -> DfResult<ArrayRef> + Send + Sync + 'static,
) -> ScalarUDF {
    ScalarUDF::new_from_impl(Helper {
        name,
        signature,
        returns,
        pg_type,
        body: Arc::new(body),
    })
}

impl std::fmt::Debug for Helper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Helper").field("name", &self.name).finish()
    }
}

impl PartialEq for Helper {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Helper {}

impl std::hash::Hash for Helper {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ScalarUDFImpl for Helper {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(self.returns.clone())
    }

    fn return_field_from_args(&self, _args: ReturnFieldArgs) -> DfResult<FieldRef> {
        let f = Field::new(self.name, self.returns.clone(), true);
        Ok(Arc::new(match self.pg_type {
            Some(t) => f.with_metadata(quiver_engine::schema::pg_type_metadata(t)),
            None => f,
        }))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let n = args.number_rows;
        let arrays = args
            .args
            .iter()
            .map(|a| a.to_array(n))
            .collect::<DfResult<Vec<_>>>()?;
        Ok(ColumnarValue::Array((self.body)(
            &arrays,
            &args.arg_fields,
            n,
        )?))
    }
}

/// A built-in aggregate of PostgreSQL that DataFusion has too, as `pg_proc`
/// and `pg_aggregate` show it (PostgreSQL's ids: tools match them).
#[derive(Debug, Clone, Copy)]
pub struct BuiltinAggregate {
    pub oid: u32,
    pub name: &'static str,
    pub arg: u32,
    pub returns: u32,
}

const FLOAT8: u32 = 701;

pub const BUILTIN_AGGREGATES: &[BuiltinAggregate] = &[
    BuiltinAggregate {
        oid: 2105,
        name: "avg",
        arg: FLOAT8,
        returns: FLOAT8,
    },
    BuiltinAggregate {
        oid: 2147,
        name: "count",
        arg: 2276,
        returns: 20,
    },
    BuiltinAggregate {
        oid: 2120,
        name: "max",
        arg: FLOAT8,
        returns: FLOAT8,
    },
    BuiltinAggregate {
        oid: 2136,
        name: "min",
        arg: FLOAT8,
        returns: FLOAT8,
    },
    BuiltinAggregate {
        oid: 2158,
        name: "stddev",
        arg: FLOAT8,
        returns: FLOAT8,
    },
    BuiltinAggregate {
        oid: 2728,
        name: "stddev_pop",
        arg: FLOAT8,
        returns: FLOAT8,
    },
    BuiltinAggregate {
        oid: 2716,
        name: "stddev_samp",
        arg: FLOAT8,
        returns: FLOAT8,
    },
    BuiltinAggregate {
        oid: 2111,
        name: "sum",
        arg: FLOAT8,
        returns: FLOAT8,
    },
    BuiltinAggregate {
        oid: 2722,
        name: "var_pop",
        arg: FLOAT8,
        returns: FLOAT8,
    },
    BuiltinAggregate {
        oid: 2645,
        name: "var_samp",
        arg: FLOAT8,
        returns: FLOAT8,
    },
    BuiltinAggregate {
        oid: 2152,
        name: "variance",
        arg: FLOAT8,
        returns: FLOAT8,
    },
];

/// A helper taking any of `arities` arguments of any type.
fn helper(
    name: &'static str,
    arities: &[usize],
    returns: DataType,
    body: impl Fn(&[ArrayRef], usize) -> DfResult<ArrayRef> + Send + Sync + 'static,
) -> ScalarUDF {
    let signature = if arities == [0] {
        Signature::nullary(Volatility::Stable)
    } else {
        Signature::one_of(
            arities
                .iter()
                .map(|n| {
                    if *n == 0 {
                        TypeSignature::Nullary
                    } else {
                        TypeSignature::Any(*n)
                    }
                })
                .collect(),
            Volatility::Stable,
        )
    };
    column_function(name, signature, returns, None, move |a, _, n| body(a, n))
}

fn safe_cast(a: &ArrayRef, to: &DataType) -> DfResult<ArrayRef> {
    let options = CastOptions {
        safe: true,
        ..DEFAULT_CAST_OPTIONS
    };
    Ok(cast_with_options(a, to, &options)?)
}

/// An argument as oids (a value that is no oid reads as NULL).
fn oids(a: &ArrayRef) -> DfResult<Vec<Option<u32>>> {
    let c = safe_cast(a, &DataType::UInt32)?;
    Ok(c.as_any()
        .downcast_ref::<UInt32Array>()
        .map(|x| x.iter().collect())
        .unwrap_or_else(|| vec![None; a.len()]))
}

fn ints(a: &ArrayRef) -> DfResult<Vec<Option<i64>>> {
    let c = safe_cast(a, &DataType::Int64)?;
    Ok(c.as_any()
        .downcast_ref::<Int64Array>()
        .map(|x| x.iter().collect())
        .unwrap_or_else(|| vec![None; a.len()]))
}

fn texts(a: &ArrayRef) -> DfResult<Vec<Option<String>>> {
    let c = safe_cast(a, &DataType::Utf8)?;
    Ok(c.as_any()
        .downcast_ref::<StringArray>()
        .map(|x| x.iter().map(|v| v.map(str::to_string)).collect())
        .unwrap_or_else(|| vec![None; a.len()]))
}

fn arg(args: &[ArrayRef], i: usize) -> DfResult<&ArrayRef> {
    args.get(i)
        .ok_or_else(|| DataFusionError::Internal(format!("argument {} is missing", i + 1)))
}

fn text_out(values: Vec<Option<String>>) -> ArrayRef {
    Arc::new(StringArray::from(values))
}

fn bool_out(values: Vec<Option<bool>>) -> ArrayRef {
    Arc::new(BooleanArray::from(values))
}

fn oid_out(values: Vec<Option<u32>>) -> ArrayRef {
    Arc::new(UInt32Array::from(values))
}

fn user_error(code: StatusCode, message: String) -> DataFusionError {
    DataFusionError::External(Box::new(SqlError::new(code, message)))
}

/// Splits `schema.name` / `"Quoted"` / `name` as PostgreSQL reads a
/// qualified name: unquoted parts fold to lower case.
fn qualified_name(text: &str) -> (Option<String>, String) {
    let mut parts = ident_parts(text);
    let name = parts.pop().unwrap_or_default();
    (parts.pop(), name)
}

/// The parts of a dotted name, each unquoted or folded to lower case
/// (`parse_ident`).
fn ident_parts(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut was_quoted = false;
    let mut chars = text.trim().chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => {
                quoted = !quoted;
                was_quoted = true;
            }
            '.' if !quoted => {
                parts.push(std::mem::take(&mut cur));
                was_quoted = false;
            }
            c if quoted || was_quoted => cur.push(c),
            c => cur.push(c.to_ascii_lowercase()),
        }
    }
    parts.push(cur);
    parts
}

/// The namespace id of a schema name.
fn namespace_oid(name: &str) -> Option<u32> {
    match name {
        "pg_catalog" => Some(PG_CATALOG_NS),
        "public" => Some(PUBLIC_NS),
        "information_schema" => Some(super::INFORMATION_SCHEMA_NS),
        _ => None,
    }
}

fn namespace_name(oid: u32) -> Option<&'static str> {
    match oid {
        PG_CATALOG_NS => Some("pg_catalog"),
        PUBLIC_NS => Some("public"),
        super::INFORMATION_SCHEMA_NS => Some("information_schema"),
        _ => None,
    }
}

/// The relation a `regclass` literal names: `docs`, `public.docs`,
/// `pg_catalog.pg_class`, or its id as digits.
fn lookup_relation(snap: &Snapshot, text: &str) -> Option<u32> {
    if let Ok(oid) = text.trim().parse::<u32>() {
        return Some(oid);
    }
    let (schema, name) = qualified_name(text);
    let ns = match schema {
        Some(s) => Some(namespace_oid(&s)?),
        None => None,
    };
    let rels = snap.relations();
    // Unqualified: pg_catalog comes first on the search path, then public.
    [PG_CATALOG_NS, PUBLIC_NS]
        .into_iter()
        .filter(|n| ns.is_none_or(|want| want == *n))
        .find_map(|n| {
            rels.iter()
                .find(|r| r.namespace == n && r.name == name)
                .map(|r| r.oid)
        })
}

/// `pg_partition_ancestors(rel)` in FROM: the relation and its ancestors,
/// column `relid` — the relation alone, as Quiver has no partitions (psql's
/// `\d` lists a table's foreign keys with it).
/// `generate_series(a, b [, step])` in FROM with PostgreSQL's integer
/// arguments: an `integer` or `smallint` (`array_upper(…)`, `n::int`) is
/// taken as a bigint, which DataFusion's own function (wrapped) requires.
#[derive(Debug)]
pub struct GenerateSeries {
    pub inner: Arc<dyn datafusion::catalog::TableFunctionImpl>,
}

impl datafusion::catalog::TableFunctionImpl for GenerateSeries {
    fn call_with_args(
        &self,
        args: datafusion::catalog::TableFunctionArgs,
    ) -> DfResult<Arc<dyn datafusion::catalog::TableProvider>> {
        use datafusion::common::ScalarValue as S;
        use datafusion::logical_expr::Expr;
        let exprs: Vec<Expr> = args
            .exprs()
            .iter()
            .map(|e| match e {
                Expr::Literal(v, m) => {
                    let wide = match v {
                        S::Int8(x) => Some(S::Int64(x.map(i64::from))),
                        S::Int16(x) => Some(S::Int64(x.map(i64::from))),
                        S::Int32(x) => Some(S::Int64(x.map(i64::from))),
                        S::UInt8(x) => Some(S::Int64(x.map(i64::from))),
                        S::UInt16(x) => Some(S::Int64(x.map(i64::from))),
                        S::UInt32(x) => Some(S::Int64(x.map(i64::from))),
                        _ => None,
                    };
                    Expr::Literal(wide.unwrap_or_else(|| v.clone()), m.clone())
                }
                other => other.clone(),
            })
            .collect();
        self.inner
            .call_with_args(datafusion::catalog::TableFunctionArgs::new(
                &exprs,
                args.session(),
            ))
    }
}

#[derive(Debug)]
pub struct PartitionAncestors {
    pub ctx: CatalogContext,
}

impl datafusion::catalog::TableFunctionImpl for PartitionAncestors {
    fn call(
        &self,
        args: &[datafusion::logical_expr::Expr],
    ) -> DfResult<Arc<dyn datafusion::catalog::TableProvider>> {
        use datafusion::logical_expr::Expr;
        let text = match args {
            [Expr::Literal(v, _)] if !v.is_null() => v.to_string(),
            _ => {
                return Err(user_error(
                    StatusCode::FeatureNotSupported,
                    "pg_partition_ancestors takes one constant relation".into(),
                ));
            }
        };
        let oid = lookup_relation(&self.ctx.snapshot(), &text);
        let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(vec![Field::new(
            "relid",
            DataType::UInt32,
            false,
        )]));
        let batch = datafusion::arrow::array::RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(UInt32Array::from_iter_values(oid))],
        )?;
        Ok(Arc::new(datafusion::datasource::MemTable::try_new(
            schema,
            vec![vec![batch]],
        )?))
    }
}

/// `pg_get_keywords()`: the key words of Quiver's SQL parser (sqlparser's
/// PostgreSQL dialect), those it will not take as a column alias marked
/// reserved (`R`), the others unreserved (`U`).
#[derive(Debug)]
pub struct Keywords;

impl datafusion::catalog::TableFunctionImpl for Keywords {
    fn call(
        &self,
        args: &[datafusion::logical_expr::Expr],
    ) -> DfResult<Arc<dyn datafusion::catalog::TableProvider>> {
        use datafusion::sql::sqlparser::keywords::{
            ALL_KEYWORDS, ALL_KEYWORDS_INDEX, RESERVED_FOR_COLUMN_ALIAS,
        };
        if !args.is_empty() {
            return Err(user_error(
                StatusCode::UndefinedFunction,
                "function pg_get_keywords takes no arguments".into(),
            ));
        }
        let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(
            ["word", "catcode", "barelabel", "catdesc", "baredesc"]
                .into_iter()
                .map(|n| {
                    let t = if n == "barelabel" {
                        DataType::Boolean
                    } else {
                        DataType::Utf8
                    };
                    Field::new(n, t, false)
                })
                .collect::<Vec<_>>(),
        ));
        let reserved: Vec<bool> = ALL_KEYWORDS_INDEX
            .iter()
            .map(|k| RESERVED_FOR_COLUMN_ALIAS.contains(k))
            .collect();
        let words = ALL_KEYWORDS.iter().map(|w| Some(w.to_ascii_lowercase()));
        let code = |r: &bool| Some(if *r { "R" } else { "U" });
        let desc = |r: &bool| Some(if *r { "reserved" } else { "unreserved" });
        let label = |r: &bool| {
            Some(if *r {
                "requires AS"
            } else {
                "can be bare label"
            })
        };
        let batch = datafusion::arrow::array::RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from_iter(words)) as ArrayRef,
                Arc::new(StringArray::from_iter(reserved.iter().map(code))),
                Arc::new(BooleanArray::from_iter(reserved.iter().map(|r| Some(!r)))),
                Arc::new(StringArray::from_iter(reserved.iter().map(desc))),
                Arc::new(StringArray::from_iter(reserved.iter().map(label))),
            ],
        )?;
        Ok(Arc::new(datafusion::datasource::MemTable::try_new(
            schema,
            vec![vec![batch]],
        )?))
    }
}

/// The catalog helper functions of one session.
pub fn udfs(ctx: CatalogContext) -> Vec<ScalarUDF> {
    let mut out = Vec::new();
    out.push(helper("format_type", &[2], DataType::Utf8, |a, _| {
        let t = oids(arg(a, 0)?)?;
        let m = ints(arg(a, 1)?)?;
        Ok(text_out(
            t.iter()
                .zip(m)
                .map(|(t, m)| t.map(|t| types::format_type(t, m.map(|m| m as i32))))
                .collect(),
        ))
    }));
    let c = ctx.clone();
    out.push(helper(
        "pg_get_userbyid",
        &[1],
        DataType::Utf8,
        move |a, _| {
            let user = c.identity().user;
            Ok(text_out(
                oids(arg(a, 0)?)?
                    .into_iter()
                    .map(|o| {
                        o.map(|o| {
                            if o == SUPERUSER_OID {
                                user.clone()
                            } else {
                                format!("unknown (OID={o})")
                            }
                        })
                    })
                    .collect(),
            ))
        },
    ));
    let c = ctx.clone();
    out.push(helper(
        "pg_table_is_visible",
        &[1],
        DataType::Boolean,
        move |a, _| {
            let rels = c.snapshot().relations();
            Ok(bool_out(
                oids(arg(a, 0)?)?
                    .into_iter()
                    .map(|o| {
                        o.map(|o| {
                            rels.iter().any(|r| {
                                r.oid == o
                                    && (r.namespace == PUBLIC_NS || r.namespace == PG_CATALOG_NS)
                            })
                        })
                    })
                    .collect(),
            ))
        },
    ));
    out.push(helper(
        "pg_type_is_visible",
        &[1],
        DataType::Boolean,
        |a, _| {
            Ok(bool_out(
                oids(arg(a, 0)?)?
                    .into_iter()
                    .map(|o| o.map(|o| types::by_oid(o).is_some()))
                    .collect(),
            ))
        },
    ));
    let c = ctx.clone();
    out.push(helper(
        "pg_function_is_visible",
        &[1],
        DataType::Boolean,
        move |a, _| {
            let fns = c.engine.functions();
            Ok(bool_out(
                oids(arg(a, 0)?)?
                    .into_iter()
                    .map(|o| o.map(|o| fns.iter().any(|f| f.oid == o)))
                    .collect(),
            ))
        },
    ));
    type Describe = fn(&quiver_engine::function::FunctionDef) -> String;
    let describe: [(&'static str, Describe); 3] = [
        ("pg_get_function_result", |d| d.returns.clone()),
        ("pg_get_function_arguments", |d| d.argument_list()),
        ("pg_get_function_identity_arguments", |d| d.argument_list()),
    ];
    for (name, f) in describe {
        let c = ctx.clone();
        out.push(helper(name, &[1], DataType::Utf8, move |a, _| {
            let fns = c.engine.functions();
            Ok(text_out(
                oids(arg(a, 0)?)?
                    .into_iter()
                    .map(|o| o.and_then(|o| fns.iter().find(|d| d.oid == o)).map(f))
                    .collect(),
            ))
        }));
    }
    // User functions are WebAssembly, none has an SQL body.
    out.push(helper(
        "pg_get_function_sqlbody",
        &[1],
        DataType::Utf8,
        |a, _| Ok(new_null_array(&DataType::Utf8, arg(a, 0)?.len())),
    ));
    // The expression text is kept as written: it is its own "decompiled" form.
    out.push(helper("pg_get_expr", &[2, 3], DataType::Utf8, |a, _| {
        Ok(text_out(texts(arg(a, 0)?)?))
    }));
    let c = ctx.clone();
    out.push(helper(
        "pg_get_indexdef",
        &[1, 3],
        DataType::Utf8,
        move |a, n| {
            let snap = c.snapshot();
            let constraints = snap.constraints();
            let cols = match a.get(1) {
                Some(x) => ints(x)?,
                None => vec![Some(0); n],
            };
            Ok(text_out(
                oids(arg(a, 0)?)?
                    .into_iter()
                    .zip(cols)
                    .map(|(o, col)| {
                        let Some(index) = snap.catalog.indexes.values().find(|i| Some(i.oid) == o)
                        else {
                            // The unique index standing for a key constraint.
                            let k = constraints
                                .iter()
                                .find(|k| k.index_oid != 0 && Some(k.index_oid) == o)?;
                            return match col {
                                Some(0) | None => k.index_definition.clone(),
                                Some(i) => snap
                                    .catalog
                                    .tables
                                    .values()
                                    .find(|t| t.oid == k.table_oid)
                                    .and_then(|t| {
                                        let n = *k.columns.get(usize::try_from(i - 1).ok()?)?;
                                        t.columns.get((n - 1) as usize)
                                    })
                                    .map(|c| quote_ident(&c.name)),
                            };
                        };
                        match col {
                            Some(0) | None => Some(snap.index_definition(index)),
                            Some(1) => Some(quote_ident(&index.column)),
                            Some(_) => Some(String::new()),
                        }
                    })
                    .collect(),
            ))
        },
    ));
    let c = ctx.clone();
    out.push(helper(
        "pg_get_constraintdef",
        &[1, 2],
        DataType::Utf8,
        move |a, _| {
            let all = c.snapshot().constraints();
            Ok(text_out(
                oids(arg(a, 0)?)?
                    .into_iter()
                    .map(|o| {
                        o.and_then(|o| all.iter().find(|k| k.oid == o))
                            .map(|k| k.definition.clone())
                    })
                    .collect(),
            ))
        },
    ));
    // `pg_array_in(x)`: a text array whether `x` is one or is its text
    // form (`'{a,"b c"}'`, as drivers send a list parameter untyped).
    out.push(helper(
        "pg_array_in",
        &[1],
        DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
        |a, n| {
            let x = arg(a, 0)?;
            match x.data_type() {
                DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => {
                    let texts = texts(x)?;
                    crate::copy::text_arrays(texts.iter().map(|t| t.as_deref()))
                        .map_err(|e| DataFusionError::External(Box::new(e)))
                }
                DataType::Null => Ok(new_null_array(
                    &DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                    n,
                )),
                _ => Ok(cast_with_options(
                    x,
                    &DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                    &DEFAULT_CAST_OPTIONS,
                )?),
            }
        },
    ));
    // `_pg_expandarray(a)`: per array, the list of records (x: a[i], n: i)
    // that `information_schema._pg_expandarray` returns as a set (the
    // compatibility rewrite unnests it).
    out.push(helper(
        "_pg_expandarray",
        &[1],
        expanded_array_type(),
        |a, n| expand_arrays(arg(a, 0)?, n),
    ));
    // A view's query, by oid or name (as PostgreSQL prints it: a leading
    // space, a closing semicolon).
    let c = ctx.clone();
    out.push(helper(
        "pg_get_viewdef",
        &[1, 2],
        DataType::Utf8,
        move |a, _| {
            let views = c.snapshot().catalog.views;
            let by_oid = oids(arg(a, 0)?)?;
            let by_name = texts(arg(a, 0)?)?;
            Ok(text_out(
                by_oid
                    .into_iter()
                    .zip(by_name)
                    .map(|(o, n)| {
                        views
                            .values()
                            .find(|v| {
                                Some(v.oid) == o
                                    || n.as_deref().is_some_and(|n| qualified_name(n).1 == v.name)
                            })
                            .map(|v| format!(" {};", v.query))
                    })
                    .collect(),
            ))
        },
    ));
    // The sequence of a serial / identity column (`public.t_id_seq`), NULL
    // for other columns.
    let c = ctx.clone();
    out.push(helper(
        "pg_get_serial_sequence",
        &[2],
        DataType::Utf8,
        move |a, _| {
            let snap = c.snapshot();
            let tables = texts(arg(a, 0)?)?;
            let columns = texts(arg(a, 1)?)?;
            Ok(text_out(
                tables
                    .into_iter()
                    .zip(columns)
                    .map(|(t, col)| {
                        let (_, table) = qualified_name(&t?);
                        let col = col?;
                        let def = snap.catalog.tables.get(&table)?;
                        def.column(&col).filter(|c| c.serial).map(|_| {
                            format!("public.{}", quote_ident(&format!("{table}_{col}_seq")))
                        })
                    })
                    .collect(),
            ))
        },
    ));
    // No triggers exist (pg_trigger is empty): nothing to describe.
    out.push(helper(
        "pg_get_triggerdef",
        &[1, 2],
        DataType::Utf8,
        |a, _| Ok(new_null_array(&DataType::Utf8, arg(a, 0)?.len())),
    ));
    out.push(helper(
        "pg_get_statisticsobjdef_columns",
        &[1],
        DataType::Utf8,
        |a, _| Ok(new_null_array(&DataType::Utf8, arg(a, 0)?.len())),
    ));
    out.push(helper(
        "pg_encoding_to_char",
        &[1],
        DataType::Utf8,
        |a, _| {
            Ok(text_out(
                ints(arg(a, 0)?)?
                    .into_iter()
                    .map(|e| {
                        e.map(|e| match e {
                            0 => "SQL_ASCII".to_string(),
                            6 => "UTF8".to_string(),
                            _ => String::new(),
                        })
                    })
                    .collect(),
            ))
        },
    ));
    // No comments are stored yet.
    for (name, arities) in [
        ("obj_description", &[1usize, 2][..]),
        ("col_description", &[2][..]),
        ("shobj_description", &[2][..]),
    ] {
        out.push(helper(name, arities, DataType::Utf8, |a, _| {
            Ok(new_null_array(&DataType::Utf8, arg(a, 0)?.len()))
        }));
    }
    out.push(helper(
        "pg_relation_is_publishable",
        &[1],
        DataType::Boolean,
        |a, _| {
            Ok(bool_out(
                oids(arg(a, 0)?)?
                    .into_iter()
                    .map(|o| o.map(|_| false))
                    .collect(),
            ))
        },
    ));
    // `'docs'::regclass`: the relation's id, an error when there is none.
    let c = ctx.clone();
    out.push(helper("regclassin", &[1], DataType::UInt32, move |a, _| {
        let snap = c.snapshot();
        let mut ids = Vec::new();
        for t in texts(arg(a, 0)?)? {
            ids.push(match t {
                None => None,
                Some(t) => Some(lookup_relation(&snap, &t).ok_or_else(|| {
                    user_error(
                        StatusCode::UndefinedTable,
                        format!("relation \"{t}\" does not exist"),
                    )
                })?),
            });
        }
        Ok(oid_out(ids))
    }));
    // pg_partition_ancestors in a select list: the relation itself (Quiver
    // has no partitions).
    for name in ["to_regclass", "pg_partition_ancestors"] {
        let c = ctx.clone();
        out.push(helper(name, &[1], DataType::UInt32, move |a, _| {
            let snap = c.snapshot();
            Ok(oid_out(
                texts(arg(a, 0)?)?
                    .into_iter()
                    .map(|t| t.and_then(|t| lookup_relation(&snap, &t)))
                    .collect(),
            ))
        }));
    }
    // `c.oid::regclass`: the relation's name (its id when there is none).
    let c = ctx.clone();
    out.push(helper("regclassout", &[1], DataType::Utf8, move |a, _| {
        let rels = c.snapshot().relations();
        Ok(text_out(
            oids(arg(a, 0)?)?
                .into_iter()
                .map(|o| {
                    o.map(|o| match rels.iter().find(|r| r.oid == o) {
                        Some(r) => quote_ident(&r.name),
                        None if o == 0 => "-".to_string(),
                        None => o.to_string(),
                    })
                })
                .collect(),
        ))
    }));
    out.push(helper("regtypein", &[1], DataType::UInt32, |a, _| {
        let mut ids = Vec::new();
        for t in texts(arg(a, 0)?)? {
            ids.push(match t {
                None => None,
                Some(t) => Some(match t.trim().parse::<u32>() {
                    Ok(oid) => oid,
                    Err(_) => types::by_name(&t).map(|ty| ty.oid).ok_or_else(|| {
                        user_error(
                            StatusCode::UndefinedObject,
                            format!("type \"{t}\" does not exist"),
                        )
                    })?,
                }),
            });
        }
        Ok(oid_out(ids))
    }));
    // `to_regtype('vector')`: the type's id, NULL when there is none (what
    // psycopg's `TypeInfo.fetch` and so pgvector's `register_vector` ask).
    out.push(helper("to_regtype", &[1], DataType::UInt32, |a, _| {
        Ok(oid_out(
            texts(arg(a, 0)?)?
                .into_iter()
                .map(|t| t.and_then(|t| types::by_name(&t).map(|ty| ty.oid)))
                .collect(),
        ))
    }));
    out.push(helper("regtypeout", &[1], DataType::Utf8, |a, _| {
        Ok(text_out(
            oids(arg(a, 0)?)?
                .into_iter()
                .map(|o| {
                    o.map(|o| match types::by_oid(o) {
                        Some(_) => types::format_type(o, None),
                        None if o == 0 => "-".to_string(),
                        None => o.to_string(),
                    })
                })
                .collect(),
        ))
    }));
    out.push(helper("regnamespacein", &[1], DataType::UInt32, |a, _| {
        let mut ids = Vec::new();
        for t in texts(arg(a, 0)?)? {
            ids.push(match t {
                None => None,
                Some(t) => {
                    let (_, name) = qualified_name(&t);
                    Some(namespace_oid(&name).ok_or_else(|| {
                        user_error(
                            StatusCode::UndefinedObject,
                            format!("schema \"{t}\" does not exist"),
                        )
                    })?)
                }
            });
        }
        Ok(oid_out(ids))
    }));
    out.push(helper("regnamespaceout", &[1], DataType::Utf8, |a, _| {
        Ok(text_out(
            oids(arg(a, 0)?)?
                .into_iter()
                .map(|o| o.map(|o| namespace_name(o).map_or_else(|| o.to_string(), str::to_string)))
                .collect(),
        ))
    }));
    // `'pg_catalog.array_in'::regproc`: the function's bare name, which is
    // what pg_type's typinput / typoutput columns hold (pgJDBC compares them).
    out.push(helper("regprocin", &[1], DataType::Utf8, |a, _| {
        Ok(text_out(
            texts(arg(a, 0)?)?
                .into_iter()
                .map(|t| {
                    t.map(|t| {
                        let t = t.trim();
                        let t = t.split('(').next().unwrap_or(t);
                        t.strip_prefix("pg_catalog.")
                            .unwrap_or(t)
                            .trim_matches('"')
                            .to_string()
                    })
                })
                .collect(),
        ))
    }));
    let c = ctx.clone();
    out.push(helper("regprocout", &[1], DataType::Utf8, move |a, _| {
        let fns = c.engine.functions();
        Ok(text_out(
            oids(arg(a, 0)?)?
                .into_iter()
                .map(|o| {
                    o.map(|o| match fns.iter().find(|f| f.oid == o) {
                        Some(f) => quote_ident(&f.name),
                        None if o == 0 => "-".to_string(),
                        None => o.to_string(),
                    })
                })
                .collect(),
        ))
    }));
    let c = ctx.clone();
    out.push(helper("regroleout", &[1], DataType::Utf8, move |a, _| {
        let user = c.identity().user;
        Ok(text_out(
            oids(arg(a, 0)?)?
                .into_iter()
                .map(|o| {
                    o.map(|o| {
                        if o == SUPERUSER_OID {
                            user.clone()
                        } else {
                            o.to_string()
                        }
                    })
                })
                .collect(),
        ))
    }));
    out.push(helper("current_schema", &[0], DataType::Utf8, |_, n| {
        Ok(text_out(vec![Some("public".to_string()); n]))
    }));
    out.push(helper(
        "current_schemas",
        &[1],
        DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
        |a, n| {
            let implicit = safe_cast(arg(a, 0)?, &DataType::Boolean)?;
            let implicit = implicit.as_any().downcast_ref::<BooleanArray>();
            let mut b = datafusion::arrow::array::ListBuilder::new(
                datafusion::arrow::array::StringBuilder::new(),
            );
            for i in 0..n {
                if implicit.is_some_and(|x| x.is_valid(i) && x.value(i)) {
                    b.values().append_value("pg_catalog");
                }
                b.values().append_value("public");
                b.append(true);
            }
            let list: ListArray = b.finish();
            Ok(Arc::new(list) as ArrayRef)
        },
    ));
    for name in ["current_database", "current_catalog"] {
        let c = ctx.clone();
        out.push(helper(name, &[0], DataType::Utf8, move |_, n| {
            Ok(text_out(vec![Some(c.identity().database); n]))
        }));
    }
    for name in ["current_user", "session_user", "current_role"] {
        let c = ctx.clone();
        out.push(helper(name, &[0], DataType::Utf8, move |_, n| {
            Ok(text_out(vec![Some(c.identity().user); n]))
        }));
    }
    let c = ctx.clone();
    out.push(helper(
        "pg_backend_pid",
        &[0],
        DataType::Int32,
        move |_, n| Ok(Arc::new(Int32Array::from(vec![c.identity().pid; n])) as ArrayRef),
    ));
    // pg_cancel_backend(pid) / pg_terminate_backend(pid [, timeout]): true
    // when a session has that pid. Volatile: each call acts (never folded,
    // never answered from the result cache).
    for (name, arities, terminate) in [
        ("pg_cancel_backend", &[1usize][..], false),
        ("pg_terminate_backend", &[1, 2][..], true),
    ] {
        let c = ctx.clone();
        let signature = Signature::one_of(
            arities.iter().map(|n| TypeSignature::Any(*n)).collect(),
            Volatility::Volatile,
        );
        out.push(column_function(
            name,
            signature,
            DataType::Boolean,
            None,
            move |a, _, _| {
                let pids = safe_cast(arg(a, 0)?, &DataType::Int32)?;
                let pids = pids
                    .as_any()
                    .downcast_ref::<Int32Array>()
                    .map(|x| x.iter().collect::<Vec<_>>())
                    .unwrap_or_default();
                Ok(bool_out(
                    pids.into_iter()
                        .map(|pid| {
                            pid.map(|pid| match terminate {
                                true => c.activity.terminate(pid),
                                false => c.activity.cancel(pid),
                            })
                        })
                        .collect(),
                ))
            },
        ));
    }
    // quiver_stat_statements_reset(): forgets every entry of the view.
    let c = ctx.clone();
    out.push(column_function(
        "quiver_stat_statements_reset",
        Signature::nullary(Volatility::Volatile),
        DataType::Boolean,
        None,
        move |_, _, n| {
            c.statements.reset();
            Ok(bool_out(vec![Some(true); n]))
        },
    ));
    out.push(helper(
        "pg_is_in_recovery",
        &[0],
        DataType::Boolean,
        |_, n| Ok(bool_out(vec![Some(false); n])),
    ));
    // One role, the superuser: every privilege is held.
    for (name, arities) in [
        ("has_table_privilege", &[2usize, 3][..]),
        ("has_schema_privilege", &[2, 3][..]),
        ("has_database_privilege", &[2, 3][..]),
        ("has_column_privilege", &[3, 4][..]),
        ("has_function_privilege", &[2, 3][..]),
        ("has_sequence_privilege", &[2, 3][..]),
        ("has_any_column_privilege", &[2, 3][..]),
    ] {
        out.push(helper(name, arities, DataType::Boolean, |a, _| {
            let first = arg(a, 0)?;
            Ok(bool_out(
                (0..first.len())
                    .map(|i| (!first.is_null(i)).then_some(true))
                    .collect(),
            ))
        }));
    }
    out.push(helper("quote_ident", &[1], DataType::Utf8, |a, _| {
        Ok(text_out(
            texts(arg(a, 0)?)?
                .into_iter()
                .map(|t| t.map(|t| quote_ident(&t)))
                .collect(),
        ))
    }));
    // The bounds of a one-dimensional array (Quiver's arrays are): it
    // starts at 1 and ends at its length; NULL when empty or another dimension.
    for (name, bound) in [
        ("array_upper", (|len| len) as fn(i32) -> i32),
        ("array_lower", |_| 1),
    ] {
        out.push(helper(name, &[2], DataType::Int32, move |a, _| {
            let list = arg(a, 0)?;
            let dims = ints(arg(a, 1)?)?;
            let bounds: Vec<Option<i32>> = match list.as_any().downcast_ref::<ListArray>() {
                Some(l) => (0..l.len())
                    .map(|i| {
                        let len = l.value_length(i);
                        (l.is_valid(i) && dims[i] == Some(1) && len > 0).then(|| bound(len))
                    })
                    .collect(),
                None => vec![None; list.len()],
            };
            Ok(Arc::new(Int32Array::from(bounds)) as ArrayRef)
        }));
    }
    out.push(helper("parse_ident", &[1, 2], utf8_list(), |a, _| {
        let mut b = ListBuilder::new(StringBuilder::new());
        for t in texts(arg(a, 0)?)? {
            match t {
                Some(t) => {
                    for part in ident_parts(&t) {
                        b.values().append_value(part);
                    }
                    b.append(true);
                }
                None => b.append(false),
            }
        }
        Ok(Arc::new(b.finish()) as ArrayRef)
    }));
    // No partitioned tables, no tablespaces but the default one.
    out.push(helper("pg_get_partkeydef", &[1], DataType::Utf8, |a, _| {
        Ok(new_null_array(&DataType::Utf8, arg(a, 0)?.len()))
    }));
    out.push(helper(
        "pg_tablespace_location",
        &[1],
        DataType::Utf8,
        |a, _| {
            let n = arg(a, 0)?.len();
            Ok(text_out(vec![Some(String::new()); n]))
        },
    ));
    // A table's size: the bytes of its data files, from its manifest, and
    // of the rows still in its log (a vector index's files are not counted;
    // an index's own size is NULL).
    for (name, arities) in [
        ("pg_relation_size", &[1usize, 2][..]),
        ("pg_table_size", &[1][..]),
        ("pg_total_relation_size", &[1][..]),
    ] {
        let c = ctx.clone();
        out.push(helper(name, arities, DataType::Int64, move |a, _| {
            let snap = c.snapshot();
            let rel = arg(a, 0)?;
            let ids = if rel.data_type() == &DataType::Utf8 {
                texts(rel)?
                    .into_iter()
                    .map(|t| t.and_then(|t| lookup_relation(&snap, &t)))
                    .collect()
            } else {
                oids(rel)?
            };
            let sizes: Vec<Option<i64>> = ids
                .into_iter()
                .map(|oid| {
                    let def = snap.table_by_oid(oid?)?;
                    let table = c.engine.table(&def.name).ok()?;
                    Some(table.stats().bytes() as i64)
                })
                .collect();
            Ok(Arc::new(Int64Array::from(sizes)) as ArrayRef)
        }));
    }
    // The database's size: its tables' sizes.
    let c = ctx.clone();
    out.push(helper(
        "pg_database_size",
        &[1],
        DataType::Int64,
        move |a, _| {
            let snap = c.snapshot();
            let db = arg(a, 0)?;
            let names: Vec<Option<String>> = if matches!(
                db.data_type(),
                DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
            ) {
                texts(db)?
            } else {
                // An unknown database oid is NULL, as in PostgreSQL.
                oids(db)?
                    .into_iter()
                    .map(|o| {
                        (o == Some(super::DATABASE_OID)).then(|| snap.identity.database.clone())
                    })
                    .collect()
            };
            let mut total = None;
            let mut sizes = Vec::with_capacity(names.len());
            for name in names {
                sizes.push(match name {
                    None => None,
                    Some(n) if n == snap.identity.database => {
                        Some(*total.get_or_insert_with(|| {
                            snap.catalog
                                .tables
                                .values()
                                .filter_map(|t| c.engine.table(&t.name).ok())
                                .map(|t| t.stats().bytes() as i64)
                                .sum::<i64>()
                        }))
                    }
                    Some(n) => {
                        return Err(user_error(
                            StatusCode::InvalidCatalogName,
                            format!("database \"{n}\" does not exist"),
                        ));
                    }
                });
            }
            Ok(Arc::new(Int64Array::from(sizes)) as ArrayRef)
        },
    ));
    out.push(helper("pg_size_pretty", &[1], DataType::Utf8, |a, _| {
        Ok(text_out(
            ints(arg(a, 0)?)?
                .into_iter()
                .map(|v| v.map(size_pretty))
                .collect(),
        ))
    }));
    let c = ctx.clone();
    out.push(helper(
        "pg_describe_object",
        &[3],
        DataType::Utf8,
        move |a, _| {
            let snap = c.snapshot();
            let (classes, objects, subs) =
                (oids(arg(a, 0)?)?, oids(arg(a, 1)?)?, ints(arg(a, 2)?)?);
            Ok(text_out(
                (0..classes.len())
                    .map(|i| describe_object(&snap, classes[i]?, objects[i]?, subs[i].unwrap_or(0)))
                    .collect(),
            ))
        },
    ));
    // Scan counts are not kept.
    out.push(helper(
        "pg_stat_get_numscans",
        &[1],
        DataType::Int64,
        |a, _| Ok(new_null_array(&DataType::Int64, arg(a, 0)?.len())),
    ));
    out.push(helper(
        "format",
        &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
        DataType::Utf8,
        |a, n| {
            let columns = a.iter().map(texts).collect::<DfResult<Vec<_>>>()?;
            let mut out = Vec::with_capacity(n);
            for row in 0..n {
                let values: Vec<Option<&str>> = columns.iter().map(|c| c[row].as_deref()).collect();
                out.push(match values.first() {
                    Some(Some(f)) => Some(
                        format_text(f, &values[1..])
                            .map_err(|m| user_error(StatusCode::InvalidParameterValue, m))?,
                    ),
                    _ => None,
                });
            }
            Ok(text_out(out))
        },
    ));
    out
}

/// `pg_size_pretty(bytes)` as PostgreSQL writes it: bytes below 10 kB, then
/// kB, MB, GB, TB, PB, each below 20 × 1024 of its unit, rounded half away
/// from zero.
fn size_pretty(bytes: i64) -> String {
    const UNITS: [(&str, i64, bool, u32); 6] = [
        ("bytes", 10 * 1024, false, 0),
        ("kB", 20 * 1024 - 1, true, 10),
        ("MB", 20 * 1024 - 1, true, 20),
        ("GB", 20 * 1024 - 1, true, 30),
        ("TB", 20 * 1024 - 1, true, 40),
        ("PB", 20 * 1024 - 1, true, 50),
    ];
    let half_rounded = |x: i64| (x + if x < 0 { -1 } else { 1 }) / 2;
    let mut size = bytes;
    for (i, (name, limit, round, bits)) in UNITS.iter().enumerate() {
        let next = UNITS.get(i + 1);
        if next.is_none() || size.unsigned_abs() < *limit as u64 {
            let size = if *round { half_rounded(size) } else { size };
            return format!("{size} {name}");
        }
        if let Some((_, _, next_round, next_bits)) = next {
            // One bit less when the next unit rounds by halves.
            let shift = next_bits - bits - u32::from(*next_round) + u32::from(*round);
            size /= 1i64 << shift;
        }
    }
    format!("{bytes} bytes")
}

/// `pg_describe_object(classid, objid, objsubid)`: what an object is, as
/// PostgreSQL words it (`table docs`, `column id of table docs`, `type
/// vector`, …); NULL for an object Quiver does not have.
fn describe_object(snap: &Snapshot, class: u32, oid: u32, sub: i64) -> Option<String> {
    match class {
        1259 => {
            let rel = snap.relations().into_iter().find(|r| r.oid == oid)?;
            let kind = match rel.kind {
                'i' => "index",
                'v' => "view",
                'S' => "sequence",
                _ => "table",
            };
            match usize::try_from(sub).ok().filter(|s| *s > 0) {
                Some(n) => {
                    let col = rel.columns.get(n - 1)?;
                    Some(format!("column {} of {kind} {}", col.name, rel.name))
                }
                None => Some(format!("{kind} {}", rel.name)),
            }
        }
        1247 => Some(format!("type {}", types::by_oid(oid)?.name)),
        2615 => Some(format!("schema {}", super::namespace_name(oid))),
        3079 if oid == super::VECTOR_EXTENSION_OID => Some("extension vector".into()),
        2616 => {
            let (kind, name) = super::opclass_by_oid(oid)?;
            Some(format!(
                "operator class {name} for access method {}",
                kind.name()
            ))
        }
        1255 => {
            let f = snap.functions.iter().find(|f| f.oid == oid)?;
            Some(format!("function {}({})", f.name, f.args.join(", ")))
        }
        _ => None,
    }
}

/// PostgreSQL's `format(fmt, args…)`: `%s` (the value as text, NULL as
/// nothing), `%I` (an identifier, quoted where needed), `%L` (a literal,
/// NULL as `NULL`), `%%`, and `%n$…` to name the argument.
fn format_text(fmt: &str, args: &[Option<&str>]) -> Result<String, String> {
    let mut out = String::new();
    let mut next = 0;
    let mut chars = fmt.chars().peekable();
    while let Some(ch) = chars.next() {
        if ch != '%' {
            out.push(ch);
            continue;
        }
        if chars.peek() == Some(&'%') {
            chars.next();
            out.push('%');
            continue;
        }
        let mut digits = String::new();
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            digits.push(*d);
            chars.next();
        }
        let index = if digits.is_empty() {
            next
        } else if chars.next_if_eq(&'$').is_some() {
            digits
                .parse::<usize>()
                .map_err(|e| e.to_string())?
                .saturating_sub(1)
        } else {
            return Err("format widths are not supported".into());
        };
        let kind = chars.next().ok_or("unterminated format() type specifier")?;
        let value = *args.get(index).ok_or("too few arguments for format()")?;
        next = index + 1;
        match kind {
            's' => out.push_str(value.unwrap_or("")),
            'I' => out.push_str(&quote_ident(
                value.ok_or("null values cannot be formatted as an SQL identifier")?,
            )),
            'L' => match value {
                Some(v) => {
                    out.push('\'');
                    out.push_str(&v.replace('\'', "''"));
                    out.push('\'');
                }
                None => out.push_str("NULL"),
            },
            other => return Err(format!("unrecognized format() type specifier \"{other}\"")),
        }
    }
    Ok(out)
}

fn utf8_list() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

/// `current_setting(name [, missing_ok])` and `set_config(name, value,
/// is_local)` over one session's settings (`is_local` is taken as false:
/// the value lasts for the session).
pub fn settings_udfs(conf: &Arc<crate::settings::SessionSettings>) -> Vec<ScalarUDF> {
    let c = conf.clone();
    let current = helper("current_setting", &[1, 2], DataType::Utf8, move |a, _| {
        let names = texts(arg(a, 0)?)?;
        let missing_ok = match a.get(1) {
            Some(m) => texts(m)?
                .into_iter()
                .map(|v| v.is_some_and(|v| v == "true" || v == "t"))
                .collect(),
            None => vec![false; names.len()],
        };
        let mut out = Vec::with_capacity(names.len());
        for (name, ok) in names.into_iter().zip(missing_ok) {
            out.push(match name {
                None => None,
                Some(n) => match c.show(&n) {
                    Ok(v) => Some(v),
                    Err(_) if ok => None,
                    Err(e) => return Err(DataFusionError::External(Box::new(e))),
                },
            });
        }
        Ok(text_out(out))
    });
    let c = conf.clone();
    let set = helper("set_config", &[3], DataType::Utf8, move |a, _| {
        let names = texts(arg(a, 0)?)?;
        let values = texts(arg(a, 1)?)?;
        let mut out = Vec::with_capacity(names.len());
        for (name, value) in names.into_iter().zip(values) {
            let (Some(name), Some(value)) = (name, value) else {
                out.push(None);
                continue;
            };
            c.with(|s| s.set(&name, &value))
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            out.push(Some(value));
        }
        Ok(text_out(out))
    });
    vec![current, set]
}

/// The type of `_pg_expandarray`'s result: a list of (x bigint, n integer).
fn expanded_array_type() -> DataType {
    DataType::List(Arc::new(Field::new(
        "item",
        DataType::Struct(expanded_fields()),
        true,
    )))
}

fn expanded_fields() -> datafusion::arrow::datatypes::Fields {
    datafusion::arrow::datatypes::Fields::from(vec![
        Field::new("x", DataType::Int64, true),
        Field::new("n", DataType::Int32, false),
    ])
}

/// Each array of `a` (NULL: no records) as its records (a[i], i).
fn expand_arrays(a: &ArrayRef, rows: usize) -> DfResult<ArrayRef> {
    use datafusion::arrow::array::{AsArray, StructArray};
    use datafusion::arrow::buffer::OffsetBuffer;
    let list_type = DataType::List(Arc::new(Field::new("item", DataType::Int64, true)));
    let lists = match a.data_type() {
        DataType::Null => return Ok(new_null_array(&expanded_array_type(), rows)),
        _ => cast_with_options(a, &list_type, &DEFAULT_CAST_OPTIONS)?,
    };
    let lists = lists.as_list::<i32>();
    let values = lists.values().clone();
    let mut n: Vec<i32> = Vec::with_capacity(values.len());
    let mut lengths = Vec::with_capacity(lists.len());
    for i in 0..lists.len() {
        let len = if lists.is_null(i) {
            0
        } else {
            lists.value_length(i) as usize
        };
        n.extend(1..=len as i32);
        lengths.push(len);
    }
    // The values of NULL lists are not records.
    let keep: Vec<bool> = (0..lists.len())
        .flat_map(|i| {
            let (start, end) = (
                lists.value_offsets()[i] as usize,
                lists.value_offsets()[i + 1] as usize,
            );
            std::iter::repeat_n(!lists.is_null(i), end - start)
        })
        .collect();
    let values = datafusion::arrow::compute::filter(
        &values.slice(lists.value_offsets()[0] as usize, keep.len()),
        &BooleanArray::from(keep),
    )?;
    let records = StructArray::try_new(
        expanded_fields(),
        vec![values, Arc::new(Int32Array::from(n)) as ArrayRef],
        None,
    )?;
    Ok(Arc::new(ListArray::try_new(
        Arc::new(Field::new(
            "item",
            DataType::Struct(expanded_fields()),
            true,
        )),
        OffsetBuffer::from_lengths(lengths),
        Arc::new(records),
        lists.nulls().cloned(),
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_reads_postgres_specifiers() {
        let f = |fmt: &str, args: &[Option<&str>]| format_text(fmt, args);
        assert_eq!(f("%s", &[Some("x")]).as_deref(), Ok("x"));
        assert_eq!(
            f("%I.%I", &[Some("public"), Some("My T")]).as_deref(),
            Ok("public.\"My T\"")
        );
        assert_eq!(
            f("%L and %L", &[Some("it's"), None]).as_deref(),
            Ok("'it''s' and NULL")
        );
        assert_eq!(
            f("%2$s %1$s %%", &[Some("a"), Some("b")]).as_deref(),
            Ok("b a %")
        );
        assert_eq!(f("[%s]", &[None]).as_deref(), Ok("[]"));
        assert!(f("%s %s", &[Some("a")]).is_err());
        assert!(f("%I", &[None]).is_err());
        assert!(f("%x", &[Some("a")]).is_err());
        assert_eq!(ident_parts("public.\"My\"\"T\""), vec!["public", "My\"T"]);
    }

    #[test]
    fn qualified_names_fold_as_postgres_folds_them() {
        assert_eq!(qualified_name("docs"), (None, "docs".into()));
        assert_eq!(qualified_name("Docs"), (None, "docs".into()));
        assert_eq!(qualified_name("\"Docs\""), (None, "Docs".into()));
        assert_eq!(
            qualified_name("public.\"My\"\"T\""),
            (Some("public".into()), "My\"T".into())
        );
        assert_eq!(
            qualified_name("pg_catalog.pg_class"),
            (Some("pg_catalog".into()), "pg_class".into())
        );
    }
}
