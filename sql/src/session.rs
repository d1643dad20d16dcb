//! The database and its sessions: statement dispatch, planning with
//! parameters bound, and the results handed to the wire.
//!
//! A statement is parsed once (kept by the wire for prepared statements) and
//! planned at each Execute with its parameters substituted as literals: the
//! `vector_search` arguments must be constants when DataFusion plans them.
//! The exception is a prepared search whose only parameter is the query
//! vector: it keeps a generic plan and binds the vector into it
//! ([`crate::generic`]).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::execution::context::{SessionConfig, SessionContext};
use datafusion::logical_expr::{LogicalPlan, ScalarUDF, Volatility, create_udf};
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::sql::sqlparser::ast::{self, Expr};
use quiver_engine::{Engine, EngineOptions};

use crate::dml;
use crate::error::Result;
use crate::functions::{FunctionDdl, FunctionRegistry, value_type};
use crate::generic::{self, GenericPlan, PlanKey};
use crate::pg_catalog::{CatalogContext, ClientIdentity, PgCatalogSchema};
use crate::rewrite::{rewrite_expressions, rewrite_knn};
use crate::settings::Settings;
use crate::sql_err;
pub use crate::statement::Statement;
use crate::statement::{StatementKind, parse};
use crate::tables::EngineSchema;
use crate::vector_search::VectorSearchFunction;
use crate::{ddl, vector};
use quiver_udf::ValueType;

/// The type OID Quiver reports for `vector` columns and values.
pub const VECTOR_TYPE_OID: u32 = 16385;

/// The pgvector version whose SQL Quiver speaks, as `pg_extension` lists
/// the built-in `vector` extension.
pub const VECTOR_EXTENSION_VERSION: &str = "0.8.0";

/// Quiver's version string, as `SELECT version()` shows it.
pub const VERSION: &str = concat!("PostgreSQL 16.0 (Quiver ", env!("CARGO_PKG_VERSION"), ")");

/// The shared database: engine, catalog, registries. One per process.
pub struct Database {
    pub engine: Arc<Engine>,
    /// User functions (LANGUAGE wasm), compiled once for all sessions.
    pub functions: Arc<FunctionRegistry>,
    /// Native functions an embedding program registered.
    native: Mutex<Vec<ScalarUDF>>,
    /// Every session's advisory locks.
    advisory: Arc<crate::advisory::AdvisoryLocks>,
    /// Rows of read-only queries ([`crate::result_cache`]).
    pub results: Arc<crate::result_cache::ResultCache>,
    /// What statements cost and the state of tables and caches, for `/metrics`.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The connected sessions (`pg_stat_activity`).
    pub activity: Arc<crate::activity::Activity>,
    /// What each normalized statement cost (`quiver_stat_statements`).
    pub statements: Arc<crate::stat_statements::StatStatements>,
    /// Settings every new session starts with (the server's config:
    /// `log_min_duration_statement`), before its client's start-up ones.
    session_defaults: Mutex<Vec<(String, String)>>,
}

impl Database {
    /// Opens (or creates) the data directory with default engine options.
    pub async fn open(data_dir: &Path) -> Result<Arc<Database>> {
        Self::open_with(data_dir, EngineOptions::default()).await
    }

    /// Opens (or creates) the data directory.
    pub async fn open_with(data_dir: &Path, options: EngineOptions) -> Result<Arc<Database>> {
        let engine = Engine::open_with(data_dir, options).await?;
        let results = Arc::new(crate::result_cache::ResultCache::new(
            engine.options().budget.result_bytes(),
            engine.options().result_ttl,
        ));
        let metrics = Arc::new(crate::metrics::Metrics::new(
            crate::metrics::DEFAULT_MAX_SHARD_SERIES,
        ));
        let functions = Arc::new(FunctionRegistry::new(engine.clone(), metrics.clone()));
        Ok(Arc::new(Database {
            results,
            metrics,
            functions,
            engine,
            activity: Default::default(),
            statements: Default::default(),
            session_defaults: Mutex::new(Vec::new()),
            native: Mutex::new(Vec::new()),
            advisory: Default::default(),
        }))
    }

    /// Adds a native (Rust) scalar function for an embedding program;
    /// sessions opened afterwards can call it.
    pub fn register_native_udf(&self, udf: ScalarUDF) {
        match self.native.lock() {
            Ok(mut g) => g.push(udf),
            Err(p) => p.into_inner().push(udf),
        }
    }

    /// A new session (one per client connection).
    pub fn new_session(self: &Arc<Self>) -> Session {
        let session = Session::new(self.clone());
        let defaults = match self.session_defaults.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        };
        if !defaults.is_empty() {
            session.set_startup_settings(defaults.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        }
        session
    }

    /// Makes `value` the default of setting `name` in sessions opened from
    /// now on (what RESET returns to); an unknown setting is an error.
    pub fn set_session_default(&self, name: &str, value: &str) -> Result<()> {
        // Checked on a settings object of its own: a name SET would refuse.
        crate::settings::SessionSettings::default().with(|s| s.set(name, value))?;
        let mut g = match self.session_defaults.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        g.retain(|(n, _)| n != name);
        g.push((name.to_string(), value.to_string()));
        Ok(())
    }
}

/// A bound parameter value as received from the client.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    Null,
    /// Text format, or any binary value the wire already decoded to text.
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// A one-dimensional array (`oid[]`, `text[]`, …), bound as `ARRAY[…]`.
    Array(Vec<ParamValue>),
}

/// Parameter values as one string for the result cache's key: texts
/// length-prefixed and copied as they are (a vector's 3 KB of text was
/// escaped by `Debug` on every cached read), so two different lists of
/// values never give the same string.
fn params_key(params: &[ParamValue]) -> String {
    fn push(out: &mut String, p: &ParamValue) {
        use std::fmt::Write;
        match p {
            ParamValue::Null => out.push('N'),
            ParamValue::Text(t) => {
                let _ = write!(out, "T{}:", t.len());
                out.push_str(t);
            }
            ParamValue::Int(i) => {
                let _ = write!(out, "I{i};");
            }
            ParamValue::Float(f) => {
                let _ = write!(out, "F{};", f.to_bits());
            }
            ParamValue::Bool(b) => out.push(if *b { 't' } else { 'f' }),
            ParamValue::Array(items) => {
                let _ = write!(out, "A{}[", items.len());
                for i in items {
                    push(out, i);
                }
                out.push(']');
            }
        }
    }
    let mut out = String::with_capacity(
        params
            .iter()
            .map(|p| match p {
                ParamValue::Text(t) => t.len() + 8,
                _ => 8,
            })
            .sum(),
    );
    for p in params {
        push(&mut out, p);
    }
    out
}

/// What Describe reports for a statement.
#[derive(Debug, Clone)]
pub struct Described {
    /// The type of each `$n` parameter (Arrow); `DataType::Utf8` when only text is known.
    /// A vector parameter is [`vector_parameter_type`].
    pub params: Vec<DataType>,
    /// The Postgres type of a text parameter that is not `text` (`uuid`,
    /// `json`, `jsonb`, `varchar`): compared with or written to a column of
    /// that type. Indexed as `params`; `None` elsewhere.
    pub param_pg_types: Vec<Option<&'static str>>,
    /// The result columns; `None` when the statement returns no rows.
    pub schema: Option<SchemaRef>,
}

/// The text types a parameter may be described as ([`Described::param_pg_types`]).
fn text_pg_type(name: &str) -> Option<&'static str> {
    ["uuid", "json", "jsonb", "varchar"]
        .into_iter()
        .find(|t| *t == name)
}

/// Format of a COPY stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CopyFormat {
    Text,
    Csv {
        header: bool,
        delimiter: u8,
    },
    /// PostgreSQL's binary format; `header`: the data starts with the file
    /// header (the first piece of a COPY does).
    Binary {
        header: bool,
    },
}

/// A `COPY t FROM STDIN` in progress: the wire collects the data, then calls
/// [`Session::copy_in`].
#[derive(Debug, Clone)]
pub struct CopyIn {
    pub table: String,
    pub columns: Vec<String>,
    pub format: CopyFormat,
}

/// The result of executing one statement.
pub enum Output {
    /// Rows: SELECT, SHOW, EXPLAIN, ... The tag is "SELECT n" once streamed.
    Rows {
        schema: SchemaRef,
        stream: SendableRecordBatchStream,
    },
    /// A command without rows, with its complete tag ("CREATE TABLE", "INSERT 0 3", "SET").
    Command { tag: String },
    /// COPY ... FROM STDIN: collect CopyData and call [`Session::copy_in`].
    CopyIn(CopyIn),
    /// COPY ... TO STDOUT: the encoded rows (each a full line) and the column count.
    CopyOut {
        columns: usize,
        format: CopyFormat,
        rows: Vec<Vec<u8>>,
    },
    /// An empty query string.
    Empty,
}

/// A NoticeResponse a statement sends before its result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// WARNING (01000) rather than NOTICE (00000).
    pub warning: bool,
    pub message: String,
}

/// One client's session: settings (search knobs) and the DataFusion context.
pub struct Session {
    pub(crate) db: Arc<Database>,
    pub(crate) ctx: SessionContext,
    /// Who is connected, as the catalog functions report it.
    identity: Arc<std::sync::RwLock<ClientIdentity>>,
    pub(crate) conf: Arc<crate::settings::SessionSettings>,
    /// The registry generation whose user functions `ctx` holds, and their names.
    functions_seen: Mutex<(u64, Vec<String>)>,
    /// Executions served by a generic plan.
    generic_runs: AtomicU64,
    /// The open transaction block, if any.
    pub(crate) txns: Arc<crate::transaction::Transactions>,
    /// This session's advisory locks (released when it ends).
    advisory: Arc<crate::advisory::SessionLocks>,
    /// Warnings for the client about the statement that ran
    /// ([`Session::take_notices`]).
    notices: Mutex<Vec<Notice>>,
    /// The running statement's deadline and cancel flag, for work that
    /// cannot be cut off at an await point (subplans).
    interrupt: Arc<crate::interrupt::Interrupt>,
    /// What the running statement's plans read, while its result may be
    /// cached ([`crate::result_cache`]).
    reads: Mutex<Option<crate::result_cache::StatementReads>>,
    /// The settings part of the result cache's key, and the settings
    /// generation it was made at.
    settings_key: Mutex<(u64, Arc<str>)>,
    /// 1 + the k of the vector searches the running statement planned; 0:
    /// none ([`Session::take_search_k`]).
    search_k: AtomicU64,
    /// This session in `pg_stat_activity`, once its client is known.
    backend: std::sync::OnceLock<crate::activity::BackendGuard>,
}

/// The k a [`Session::search_k`] value holds (1 + k; 0: no search).
fn search_k_of(noted: u64) -> Option<usize> {
    noted.checked_sub(1).map(|k| k as usize)
}

use crate::interrupt::statement_timeout;

/// A statement's rows, cut off with 57014 when `statement_timeout` passes
/// while they are still being computed.
struct DeadlineStream {
    schema: SchemaRef,
    inner: datafusion::execution::SendableRecordBatchStream,
    deadline: std::pin::Pin<Box<tokio::time::Sleep>>,
    expired: bool,
}

impl futures::Stream for DeadlineStream {
    type Item = datafusion::error::Result<RecordBatch>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        if self.expired {
            return Poll::Ready(None);
        }
        if let Poll::Ready(item) = self.inner.as_mut().poll_next(cx) {
            return Poll::Ready(item);
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.expired = true;
            return Poll::Ready(Some(Err(datafusion::error::DataFusionError::External(
                Box::new(statement_timeout()),
            ))));
        }
        Poll::Pending
    }
}

impl datafusion::physical_plan::RecordBatchStream for DeadlineStream {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

/// Where a session is, as ReadyForQuery reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionStatus {
    Idle,
    InBlock,
    Failed,
}

fn version_udf() -> ScalarUDF {
    let f = Arc::new(|_: &[datafusion::logical_expr::ColumnarValue]| {
        Ok(datafusion::logical_expr::ColumnarValue::Scalar(
            datafusion::common::ScalarValue::Utf8(Some(VERSION.to_string())),
        ))
    });
    create_udf("version", vec![], DataType::Utf8, Volatility::Stable, f)
}

/// Parameter types Postgres would take from the statement itself where
/// DataFusion's inference finds none: `$n::type` (scalar types), and a `$n`
/// passed straight to a user function (its declared argument type).
/// How [`Described`] reports a `vector` parameter (the wire gives it
/// pgvector's type).
pub fn vector_parameter_type() -> DataType {
    DataType::List(Arc::new(datafusion::arrow::datatypes::Field::new(
        "item",
        DataType::Float32,
        true,
    )))
}

/// The Arrow type of the elements of an array parameter type.
fn array_element_type(t: &ast::DataType) -> Option<DataType> {
    use ast::DataType as T;
    Some(match t {
        T::Text | T::Varchar(_) | T::CharacterVarying(_) | T::String(_) => DataType::Utf8,
        T::Float8 | T::DoublePrecision | T::Double(_) => DataType::Float64,
        T::BigInt(_) | T::Int8(_) => DataType::Int64,
        T::Int(_) | T::Integer(_) | T::Int4(_) => DataType::Int32,
        T::SmallInt(_) | T::Int2(_) => DataType::Int16,
        T::Bool | T::Boolean => DataType::Boolean,
        // `oid` as the compatibility rewrite leaves it.
        T::IntUnsigned(_) => DataType::UInt32,
        T::Custom(name, _) if name.to_string().eq_ignore_ascii_case("oid") => DataType::UInt32,
        T::Custom(name, _) if name.to_string().eq_ignore_ascii_case("name") => DataType::Utf8,
        _ => return None,
    })
}

fn explicit_parameter_types(s: &ast::Statement, engine: &Engine) -> Vec<(String, DataType)> {
    use ast::DataType as T;
    let placeholder = |e: &Expr| match e {
        Expr::Value(v) => match &v.value {
            ast::Value::Placeholder(p) => Some(p.clone()),
            _ => None,
        },
        _ => None,
    };
    let mut out = Vec::new();
    let _ = ast::visit_expressions(s, |e| {
        if let Expr::Cast {
            expr, data_type, ..
        } = e
            && let Some(p) = placeholder(expr)
        {
            let t = match data_type {
                T::Float8 | T::DoublePrecision | T::Double(_) | T::Float64 => {
                    Some(DataType::Float64)
                }
                T::Real | T::Float4 | T::Float32 => Some(DataType::Float32),
                T::BigInt(_) | T::Int8(_) | T::Int64 => Some(DataType::Int64),
                T::Int(_) | T::Integer(_) | T::Int4(_) | T::Int32 => Some(DataType::Int32),
                T::SmallInt(_) | T::Int2(_) | T::Int16 => Some(DataType::Int16),
                T::Bool | T::Boolean => Some(DataType::Boolean),
                // Types whose values drivers such as asyncpg encode from
                // their own objects (dates, decimals, timedeltas) only when
                // the parameter is described as that type.
                T::Date => Some(DataType::Date32),
                T::Time(_, ast::TimezoneInfo::None | ast::TimezoneInfo::WithoutTimeZone) => Some(
                    DataType::Time64(datafusion::arrow::datatypes::TimeUnit::Microsecond),
                ),
                T::Timestamp(_, tz) => Some(DataType::Timestamp(
                    datafusion::arrow::datatypes::TimeUnit::Microsecond,
                    match tz {
                        ast::TimezoneInfo::WithTimeZone | ast::TimezoneInfo::Tz => {
                            Some("UTC".into())
                        }
                        _ => None,
                    },
                )),
                T::Interval { .. } => Some(DataType::Interval(
                    datafusion::arrow::datatypes::IntervalUnit::MonthDayNano,
                )),
                T::Numeric(_) | T::Decimal(_) | T::Dec(_) => Some(DataType::Decimal128(
                    quiver_engine::schema::NUMERIC_ANY.0,
                    quiver_engine::schema::NUMERIC_ANY.1,
                )),
                // `$1::oid[]` (asyncpg's type introspection), `$1::text[]`, …
                T::Array(
                    ast::ArrayElemTypeDef::SquareBracket(inner, _)
                    | ast::ArrayElemTypeDef::AngleBracket(inner),
                ) => array_element_type(inner).map(|t| {
                    DataType::List(Arc::new(datafusion::arrow::datatypes::Field::new(
                        "item", t, true,
                    )))
                }),
                _ => None,
            };
            if let Some(t) = t {
                out.push((p, t));
            }
        }
        if let Expr::Function(f) = e
            && let [part] = f.name.0.as_slice()
            && let Some(id) = part.as_ident()
            && let Some(def) = engine.function(&match id.quote_style {
                Some(_) => id.value.clone(),
                None => id.value.to_ascii_lowercase(),
            })
            && let ast::FunctionArguments::List(list) = &f.args
        {
            for (i, a) in list.args.iter().enumerate() {
                if let ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(arg)) = a
                    && let Some(p) = placeholder(arg)
                    && let Some(t) = def
                        .args
                        .get(i)
                        .and_then(|t| value_type(std::slice::from_ref(t)))
                {
                    out.push((
                        p,
                        match t {
                            ValueType::Bool => DataType::Boolean,
                            ValueType::Int64 => DataType::Int64,
                            ValueType::Float64 => DataType::Float64,
                            // vectors travel as '[x,y]' text
                            ValueType::Text | ValueType::Vector => DataType::Utf8,
                        },
                    ));
                }
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    out
}

/// A one-column text result.
pub(crate) fn text_rows(column: &str, values: Vec<String>) -> Result<Output> {
    let schema = Arc::new(Schema::new(vec![Field::new(column, DataType::Utf8, true)]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(StringArray::from(values)) as ArrayRef],
    )?;
    Ok(Output::Rows {
        schema: schema.clone(),
        stream: Box::pin(MemoryStream::try_new(vec![batch], schema, None)?),
    })
}

impl Session {
    fn new(db: Arc<Database>) -> Session {
        let mut config = SessionConfig::new()
            .with_information_schema(false)
            .with_default_catalog_and_schema("datafusion", "public")
            .with_target_partitions(2);
        config.options_mut().sql_parser.dialect = datafusion::config::Dialect::PostgreSQL;
        // `1.5` is a numeric, as in PostgreSQL: exact, so that it is stored
        // in a numeric column as written (a float would round 2.675 to 2.67).
        config.options_mut().sql_parser.parse_float_as_decimal = true;
        // `now()` and `::timestamptz` are timestamps with a time zone, as in
        // PostgreSQL (Quiver's sessions run in UTC).
        config.options_mut().execution.time_zone = Some("UTC".into());
        let interrupt = Arc::new(crate::interrupt::Interrupt::default());
        let config = config.with_extension(interrupt.clone());
        // PostgreSQL's reading of untyped literals runs before type coercion.
        let mut analyzer: Vec<Arc<dyn datafusion::optimizer::AnalyzerRule + Send + Sync>> =
            vec![Arc::new(crate::compat::PgLiterals)];
        analyzer.extend(datafusion::optimizer::Analyzer::new().rules);
        let ctx = crate::json::context(config, analyzer);
        let identity = Arc::new(std::sync::RwLock::new(ClientIdentity::default()));
        let conf = Arc::new(crate::settings::SessionSettings::default());
        let catalog_ctx = CatalogContext {
            engine: db.engine.clone(),
            activity: db.activity.clone(),
            statements: db.statements.clone(),
            identity: identity.clone(),
            settings: conf.clone(),
        };
        let pg_catalog = Arc::new(PgCatalogSchema::new(catalog_ctx.clone()));
        let txns = Arc::new(crate::transaction::Transactions::default());
        if let Some(catalog) = ctx.catalog("datafusion") {
            let _ = catalog.register_schema(
                "public",
                Arc::new(EngineSchema {
                    engine: db.engine.clone(),
                    pg_catalog: Some(pg_catalog.clone()),
                    reads: txns.reads(),
                }),
            );
            let _ = catalog.register_schema("pg_catalog", pg_catalog);
            // DataFusion's information_schema (turned off above, as it would
            // shadow this one) with PostgreSQL's constraint views added.
            let _ = catalog.register_schema(
                "information_schema",
                Arc::new(crate::pg_catalog::InformationSchema::new(
                    catalog_ctx.clone(),
                    ctx.state().catalog_list().clone(),
                )),
            );
        }
        for f in vector::functions() {
            ctx.register_udf(f);
        }
        ctx.register_udf(version_udf());
        ctx.register_udaf(crate::single_value::udaf());
        for f in crate::pg_catalog::functions::udfs(catalog_ctx.clone()) {
            ctx.register_udf(f);
        }
        let native = match db.native.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        };
        for f in native {
            ctx.register_udf(f);
        }
        let advisory = db.advisory.session();
        for f in crate::advisory::udfs(&advisory) {
            ctx.register_udf(f);
        }
        for f in crate::pg_catalog::functions::settings_udfs(&conf) {
            ctx.register_udf(f);
        }
        if let Ok(series) = ctx.table_function("generate_series") {
            ctx.register_udtf(
                "generate_series",
                Arc::new(crate::pg_catalog::functions::GenerateSeries {
                    inner: series.function().clone(),
                }),
            );
        }
        ctx.register_udtf(
            "pg_get_keywords",
            Arc::new(crate::pg_catalog::functions::Keywords),
        );
        ctx.register_udtf(
            "pg_partition_ancestors",
            Arc::new(crate::pg_catalog::functions::PartitionAncestors {
                ctx: catalog_ctx.clone(),
            }),
        );
        ctx.register_udtf(
            "quiver_shards",
            Arc::new(crate::shard_stats::QuiverShards {
                engine: db.engine.clone(),
            }),
        );
        ctx.register_udtf(
            "quiver_progress",
            Arc::new(crate::progress_stats::QuiverProgress {
                engine: db.engine.clone(),
            }),
        );
        ctx.register_udtf(
            "quiver_caches",
            Arc::new(crate::cache_stats::QuiverCaches {
                engine: db.engine.clone(),
                results: db.results.clone(),
            }),
        );
        ctx.register_udtf(
            "vector_search",
            Arc::new(VectorSearchFunction {
                engine: db.engine.clone(),
                knobs: conf.knobs.clone(),
                reads: txns.reads(),
            }),
        );
        Session {
            db,
            ctx,
            identity,
            conf,
            advisory,
            functions_seen: Mutex::new((0, Vec::new())),
            generic_runs: AtomicU64::new(0),
            txns,
            notices: Mutex::new(Vec::new()),
            interrupt,
            reads: Mutex::new(None),
            settings_key: Mutex::new((u64::MAX, Arc::from(""))),
            search_k: AtomicU64::new(0),
            backend: std::sync::OnceLock::new(),
        }
    }

    /// Where statements' executions are summed (`quiver_stat_statements`).
    pub fn statement_stats(&self) -> &crate::stat_statements::StatStatements {
        &self.db.statements
    }

    /// `log_min_duration_statement`: statements that ran at least this
    /// long are logged.
    pub fn log_min_duration(&self) -> Option<std::time::Duration> {
        self.conf.log_min_duration()
    }

    /// This session as `pg_stat_activity` lists it (once its client is known).
    pub fn backend(&self) -> Option<Arc<crate::activity::Backend>> {
        self.backend.get().map(|g| g.backend.clone())
    }

    /// A statement, or a query string of several, starts: `text` is what
    /// `pg_stat_activity` shows.
    pub fn statement_began(&self, text: &str) {
        if let Some(g) = self.backend.get() {
            g.backend.began(text);
        }
    }

    /// The statement ended: the session is idle, or idle in its
    /// transaction block.
    pub fn statement_ended(&self) {
        if let Some(g) = self.backend.get() {
            g.backend
                .ended(crate::activity::idle_state(self.transaction_status()));
        }
    }

    /// The running statement's interrupt: a CancelRequest sets it, work
    /// that holds the statement's task reads it.
    pub fn interrupt(&self) -> Arc<crate::interrupt::Interrupt> {
        self.interrupt.clone()
    }

    /// Idle, in a transaction block, or in a failed one.
    pub fn transaction_status(&self) -> TransactionStatus {
        self.txns.status()
    }

    /// A statement failed after [`Session::execute`] returned (its rows
    /// failed while streaming): an open block becomes failed.
    pub async fn statement_failed(&self) {
        self.txns.statement_failed().await;
    }

    /// Appends rows to `table`: in an open transaction block, as its private
    /// version; else committed at once.
    pub(crate) async fn append(
        &self,
        table: &Arc<quiver_engine::table::Table>,
        batches: Vec<RecordBatch>,
    ) -> Result<u64> {
        if self.txns.is_open().await {
            // Written with the block's next statement that is not such an
            // INSERT (Session::execute_statement), or its COMMIT.
            return self
                .txns
                .write(table, async move |w| w.append_later(batches).await)
                .await;
        }
        Ok(table.append(batches).await?)
    }

    /// Writes an INSERT's rows: checked against the table's unique
    /// constraints ([`crate::constraints`]) with its constraint lock held;
    /// an `ON CONFLICT DO UPDATE` deletes the existing rows and appends their
    /// new versions in the same commit. The rows written, and how many.
    pub(crate) async fn insert_rows(
        &self,
        table: &Arc<quiver_engine::table::Table>,
        batches: Vec<RecordBatch>,
        on_conflict: &crate::constraints::OnConflict<'_>,
    ) -> Result<(u64, Vec<RecordBatch>)> {
        if table.def.unique.is_empty() {
            let n = self.append(table, batches.clone()).await?;
            return Ok((n, batches));
        }
        let in_block = self.txns.is_open().await;
        let guard = if in_block {
            // The block holds the table's constraint lock from now on.
            self.txns.take(table).await?;
            None
        } else {
            Some(table.constraint_guard().await)
        };
        let checked = crate::constraints::check(self, table, batches, on_conflict).await?;
        if let Some((_, rows)) = &checked.replace {
            crate::checks::check_rows(self, &table.def, std::slice::from_ref(rows))?;
        }
        let plain = checked.replace.is_none();
        let mut written = checked.append.clone();
        let n: u64 = written.iter().map(|b| b.num_rows() as u64).sum::<u64>()
            + checked
                .replace
                .as_ref()
                .map_or(0, |(_, r)| r.num_rows() as u64);
        if let Some((_, rows)) = &checked.replace {
            written.push(rows.clone());
        }
        let write = async move |w: &mut quiver_engine::txn::TxnWrites| {
            if let Some((filter, rows)) = checked.replace {
                w.delete(filter).await?;
                w.append(vec![rows]).await?;
            }
            w.append(checked.append).await
        };
        match guard {
            None => {
                self.txns.write(table, write).await?;
            }
            Some(g) if plain => {
                // No update: a plain append (the log's fast path for one row).
                table.append(written.clone()).await?;
                drop(g);
            }
            Some(g) => {
                // Delete and append publish together.
                let mut w = table.begin_writes(None, Some(g)).await?;
                write(&mut w).await?;
                w.commit().await?;
            }
        }
        Ok((n, written))
    }

    /// Deletes the rows of `table` matching `filter` (see [`Session::append`]).
    pub(crate) async fn delete_rows(
        &self,
        table: &Arc<quiver_engine::table::Table>,
        filter: datafusion::logical_expr::Expr,
    ) -> Result<u64> {
        if self.txns.is_open().await {
            return self
                .txns
                .write(table, async move |w| w.delete(filter).await)
                .await;
        }
        Ok(table.delete(filter).await?)
    }

    /// Deletes the rows of `table` matching `filter` and returns them (for
    /// `DELETE … RETURNING`), in one commit.
    pub(crate) async fn delete_returning(
        &self,
        table: &Arc<quiver_engine::table::Table>,
        filter: datafusion::logical_expr::Expr,
    ) -> Result<RecordBatch> {
        let delete = async |w: &mut quiver_engine::txn::TxnWrites| -> Result<RecordBatch> {
            let rows = w.scan(Some(filter.clone())).await?;
            if rows.num_rows() > 0 {
                w.delete(filter.clone()).await?;
            }
            Ok(rows)
        };
        if self.txns.is_open().await {
            return self.txns.write_sql(table, delete).await;
        }
        // A filter fixing the shard key takes that key's shard only.
        let mut w = table.begin_writes_for(Some(&filter), false).await?;
        let rows = delete(&mut w).await?;
        w.commit().await?;
        Ok(rows)
    }

    /// Updates the rows of `table` matching `filter`: each column in `sets`
    /// becomes its SQL expression over the row. The rows are read, their
    /// new versions computed (and checked against the table's constraints)
    /// and written in place of the old ones in one commit (in a block, its
    /// next private version).
    pub(crate) async fn update_rows(
        &self,
        table: &Arc<quiver_engine::table::Table>,
        filter: Option<datafusion::logical_expr::Expr>,
        sets: &std::collections::HashMap<usize, String>,
    ) -> Result<RecordBatch> {
        let update = async |w: &mut quiver_engine::txn::TxnWrites| -> Result<RecordBatch> {
            let old = w.scan(filter.clone()).await?;
            if old.num_rows() == 0 {
                return Ok(old);
            }
            let new = crate::constraints::project_rows(&table.def, old.clone(), None, sets).await?;
            crate::checks::check_rows(self, &table.def, std::slice::from_ref(&new))?;
            crate::constraints::check_replacement(self, table, &old, &new).await?;
            crate::references::check_inserted(self, &table.def, std::slice::from_ref(&new)).await?;
            crate::references::check_updated(self, &table.def, &old, &new).await?;
            w.delete(
                filter
                    .clone()
                    .unwrap_or(datafusion::logical_expr::lit(true)),
            )
            .await?;
            w.append(vec![new.clone()]).await?;
            Ok(new)
        };
        if self.txns.is_open().await {
            return self.txns.write_sql(table, update).await;
        }
        // A filter fixing the shard key takes that key's shard only, unless
        // the key itself is set (its rows may move to other shards).
        let moves_rows = table.shard_key().is_some_and(|k| sets.contains_key(&k));
        let mut w = table.begin_writes_for(filter.as_ref(), moves_rows).await?;
        let updated = update(&mut w).await?;
        w.commit().await?;
        Ok(updated)
    }

    /// Queues a warning for the client (sent as a NoticeResponse before
    /// the statement's result).
    pub(crate) fn notice(&self, message: String) {
        self.push_notice(Notice {
            warning: true,
            message,
        });
    }

    /// Queues a NOTICE (what PostgreSQL says when `IF [NOT] EXISTS` finds
    /// nothing to do).
    pub(crate) fn info(&self, message: String) {
        self.push_notice(Notice {
            warning: false,
            message,
        });
    }

    fn push_notice(&self, n: Notice) {
        match self.notices.lock() {
            Ok(mut g) => g.push(n),
            Err(p) => p.into_inner().push(n),
        }
    }

    /// The notices the last statements queued, oldest first.
    pub fn take_notices(&self) -> Vec<Notice> {
        match self.notices.lock() {
            Ok(mut g) => std::mem::take(&mut *g),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        }
    }

    /// Records who is connected (the start-up's user and database names and
    /// the backend process id the client was given), for `current_user`,
    /// `current_database()`, `pg_backend_pid()` and the catalog.
    /// The settings the client's start-up message gave (e.g.
    /// `application_name`): the session's defaults.
    pub fn set_startup_settings<'a>(&self, settings: impl IntoIterator<Item = (&'a str, &'a str)>) {
        let _ = self.with_settings(|s| {
            for (name, value) in settings {
                s.set_startup(name, value);
            }
            Ok(())
        });
    }

    /// Records who is connected (the start-up's user and database names,
    /// the backend process id the client was given) and lists the session
    /// in `pg_stat_activity` (`client`: its address).
    pub fn set_client(
        &self,
        user: &str,
        database: &str,
        pid: i32,
        client: Option<std::net::SocketAddr>,
    ) {
        {
            let mut id = match self.identity.write() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            if !user.is_empty() {
                id.user = user.to_string();
            }
            id.database = if database.is_empty() {
                id.user.clone()
            } else {
                database.to_string()
            };
            id.pid = pid;
        }
        if self.backend.get().is_none() {
            let _ = self.backend.set(self.db.activity.register(
                pid,
                self.identity.clone(),
                self.conf.clone(),
                self.interrupt.clone(),
                client,
            ));
        }
    }

    /// Makes the context hold the current user functions (after any CREATE or
    /// DROP FUNCTION, in this session or another).
    fn sync_functions(&self) {
        let generation = self.db.functions.generation();
        let mut seen = match self.functions_seen.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if seen.0 == generation {
            return;
        }
        for name in seen.1.drain(..) {
            self.ctx.deregister_udf(&name);
            self.ctx.deregister_udwf(&name);
        }
        let (scalars, windows, complete) = self.db.functions.udfs();
        for f in scalars {
            seen.1.push(f.name().to_string());
            self.ctx.register_udf(f);
        }
        for f in windows {
            seen.1.push(f.name().to_string());
            self.ctx.register_udwf(f);
        }
        // After a failed load (e.g. every instance slot busy), retry next statement.
        seen.0 = if complete { generation } else { 0 };
    }

    /// Whether `name` is a function Quiver or DataFusion provides (not a user function).
    fn is_builtin_function(&self, name: &str) -> bool {
        let user = match self.functions_seen.lock() {
            Ok(g) => g.1.iter().any(|n| n == name),
            Err(p) => p.into_inner().1.iter().any(|n| n == name),
        };
        if user {
            return false;
        }
        let state = self.ctx.state();
        state.scalar_functions().contains_key(name)
            || state.aggregate_functions().contains_key(name)
            || state.window_functions().contains_key(name)
            || name == "vector_search"
            || name == "quiver_shards"
            || name == "quiver_progress"
            || name == "quiver_caches"
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.db.engine
    }

    fn with_settings<T>(&self, f: impl FnOnce(&mut Settings) -> Result<T>) -> Result<T> {
        self.conf.with(f)
    }

    /// Splits and parses a query string (may hold several statements).
    /// Parameters `$n` are allowed and stay unbound.
    pub fn parse(&self, sql: &str) -> Result<Vec<Statement>> {
        parse(sql)
    }

    /// Parameter and result types of a statement. `declared` are the types the
    /// client declared at Parse (`None` = unspecified).
    pub async fn describe(
        &self,
        stmt: &Statement,
        declared: &[Option<DataType>],
    ) -> Result<Described> {
        let n = stmt.param_count().max(declared.len());
        let mut params: Vec<DataType> = (0..n)
            .map(|i| declared.get(i).cloned().flatten().unwrap_or(DataType::Utf8))
            .collect();
        let mut pg_types: Vec<Option<&'static str>> = vec![None; n];
        let mut schema = None;
        // Describing may run a query (to learn its columns): under this
        // message's own deadline, not the last statement's.
        self.start_deadline();
        self.sync_functions();
        if let StatementKind::Sql(s) = &stmt.kind {
            let original = s.as_ref();
            let mut s = s.as_ref().clone();
            crate::views::expand_statement(&mut s, self.engine())?;
            rewrite_expressions(&mut s, None)?;
            // EXPLAIN of a query: the parameters are the query's; the columns
            // are EXPLAIN's own (running it with NULL parameters would fail).
            let mut explain = false;
            if let ast::Statement::Explain { statement, .. } = &s
                && matches!(statement.as_ref(), ast::Statement::Query(_))
            {
                s = statement.as_ref().clone();
                explain = true;
            }
            match &mut s {
                ast::Statement::Query(q) => {
                    rewrite_knn(q, self.engine())?;
                    let explicit = explicit_parameter_types(&s, self.engine());
                    let vectors = crate::rewrite::vector_parameters(&s);
                    let per_row = crate::apply::projection_has_subquery(&s);
                    let plan = match self
                        .ctx
                        .state()
                        .statement_to_plan(datafusion::sql::parser::Statement::Statement(Box::new(
                            s,
                        )))
                        .await
                    {
                        Ok(plan) => plan,
                        // A select-list subquery DataFusion cannot plan runs
                        // per row ([`crate::apply`]); without parameters, the
                        // query runs to learn its columns.
                        Err(_) if per_row && n == 0 && !explain => {
                            if let Output::Rows { schema: sc, .. } = self.execute(stmt, &[]).await?
                            {
                                schema = Some(sc);
                            }
                            return Ok(Described {
                                params,
                                param_pg_types: pg_types,
                                schema,
                            });
                        }
                        Err(e) => return Err(e.into()),
                    };
                    schema = Some(if explain {
                        Arc::new(datafusion::arrow::datatypes::Schema::new(vec![
                            datafusion::arrow::datatypes::Field::new(
                                "plan_type",
                                DataType::Utf8,
                                false,
                            ),
                            datafusion::arrow::datatypes::Field::new("plan", DataType::Utf8, false),
                        ]))
                    } else {
                        let schema = Arc::new(plan.schema().as_arrow().clone());
                        let schema = crate::names::visible(schema);
                        match crate::names::output_names(original)
                            .or_else(|| crate::names::unmarked(&schema))
                        {
                            Some(names) => crate::names::rename_schema(&schema, &names),
                            None => schema,
                        }
                    });
                    for (name, field) in plan.get_parameter_fields()? {
                        if let Some(i) = name
                            .strip_prefix('$')
                            .and_then(|n| n.parse::<usize>().ok())
                            .and_then(|n| n.checked_sub(1))
                            && i < n
                            && declared.get(i).cloned().flatten().is_none()
                        {
                            pg_types[i] = field
                                .as_deref()
                                .and_then(crate::field_pg_type)
                                .and_then(text_pg_type);
                        }
                    }
                    let mut types = plan.get_parameter_types()?;
                    // A cast the statement writes on a parameter names its
                    // type where DataFusion's inference has none or text.
                    for (name, t) in explicit {
                        let slot = types.entry(name).or_insert(None);
                        if matches!(slot, None | Some(DataType::Utf8)) {
                            *slot = Some(t);
                        }
                    }
                    for (i, p) in params.iter_mut().enumerate() {
                        if declared.get(i).cloned().flatten().is_some() {
                            continue;
                        }
                        if vectors.contains(&i) {
                            *p = vector_parameter_type();
                        } else if let Some(Some(t)) = types.get(&format!("${}", i + 1))
                            && !matches!(t, DataType::FixedSizeList(..))
                            && !matches!(t, DataType::List(f) if f.data_type() == &DataType::Float32)
                        {
                            *p = t.clone();
                        }
                    }
                }
                ast::Statement::Insert(ins) => {
                    for (i, t, pg) in dml::insert_param_types(self.engine(), ins)? {
                        if i < params.len() && declared.get(i).cloned().flatten().is_none() {
                            params[i] = t;
                            pg_types[i] = pg;
                        }
                    }
                    schema = dml::returning_schema(self.engine(), &s).await?;
                }
                ast::Statement::Update(_) | ast::Statement::Delete(_) => {
                    schema = dml::returning_schema(self.engine(), &s).await?;
                }
                _ => {
                    if stmt.returns_rows() {
                        // SHOW, EXPLAIN: run to learn the columns (cheap, no side effects).
                        if let Output::Rows { schema: sc, .. } =
                            self.execute(stmt, &vec![ParamValue::Null; n]).await?
                        {
                            schema = Some(sc);
                        }
                    }
                }
            }
        }
        Ok(Described {
            params,
            param_pg_types: pg_types,
            schema,
        })
    }

    /// `statement_timeout` starts for the work about to run: its deadline
    /// is set in the session's interrupt; the timeout, if any.
    fn start_deadline(&self) -> Option<std::time::Duration> {
        let timeout = self.conf.statement_timeout();
        self.interrupt
            .begin(timeout.map(|limit| std::time::Instant::now() + limit));
        timeout
    }

    /// Executes a statement with its bound parameters.
    pub async fn execute(&self, stmt: &Statement, params: &[ParamValue]) -> Result<Output> {
        if !stmt.ends_transaction() {
            self.txns.check_usable().await?;
        }
        if self.txns.status() == TransactionStatus::Idle {
            // Outside a block a transaction-level advisory lock lasts for
            // its statement (released here, before the next one runs).
            self.advisory.end_transaction();
        }
        let timeout = self.start_deadline();
        let out = match timeout {
            None => self.execute_retrying(stmt, params).await,
            Some(limit) => {
                let deadline = tokio::time::Instant::now() + limit;
                match tokio::time::timeout_at(deadline, self.execute_retrying(stmt, params)).await {
                    Ok(Ok(Output::Rows { schema, stream })) => Ok(Output::Rows {
                        schema: schema.clone(),
                        stream: Box::pin(DeadlineStream {
                            schema,
                            inner: stream,
                            deadline: Box::pin(tokio::time::sleep_until(deadline)),
                            expired: false,
                        }),
                    }),
                    Ok(other) => other,
                    Err(_) => Err(statement_timeout()),
                }
            }
        };
        if out.is_err() {
            self.txns.statement_failed().await;
        }
        out
    }

    /// Runs a statement; one outside a transaction block that met a table
    /// being altered (40001: nothing of it was written) runs again once the
    /// ALTER is done, as PostgreSQL's writer would have waited for its lock.
    async fn execute_retrying(&self, stmt: &Statement, params: &[ParamValue]) -> Result<Output> {
        let mut tries = 0;
        loop {
            let out = Box::pin(self.execute_statement(stmt, params)).await;
            match &out {
                Err(e)
                    if e.code == crate::StatusCode::SerializationFailure
                        && tries < 3
                        && !self.txns.is_open().await =>
                {
                    tries += 1;
                    self.engine().ddl_done().await;
                }
                _ => return out,
            }
        }
    }

    async fn execute_statement(&self, stmt: &Statement, params: &[ParamValue]) -> Result<Output> {
        if !stmt.appends_only() {
            // A block's buffered appends are written before anything may read them.
            self.txns.flush_pending().await?;
        }
        if self.txns.holds_any().await && stmt.is_schema_change() {
            return sql_err!(
                ActiveTransaction,
                "schema statements cannot run in a transaction block that has written rows; COMMIT or ROLLBACK first"
            );
        }
        let s = match &stmt.kind {
            StatementKind::Optimize(t) => {
                let report = self.db.engine.optimize(t).await?;
                tracing::info!(table = %t, ?report, "OPTIMIZE");
                return Ok(Output::Command {
                    tag: "OPTIMIZE".into(),
                });
            }
            StatementKind::Reindex { table, name } => {
                return Ok(Output::Command {
                    tag: ddl::reindex(self.engine(), *table, name).await?,
                });
            }
            StatementKind::Function(FunctionDdl::Create(f)) => {
                let builtin = self.is_builtin_function(&f.name);
                let tag = self
                    .db
                    .functions
                    .create(f.as_ref().clone(), builtin)
                    .await?;
                self.sync_functions();
                return Ok(Output::Command { tag });
            }
            StatementKind::Function(FunctionDdl::Drop { names, if_exists }) => {
                let tag = self.db.functions.drop_functions(names, *if_exists).await;
                self.sync_functions();
                return Ok(Output::Command { tag: tag? });
            }
            StatementKind::Sql(s) => s,
        };
        self.sync_functions();
        if matches!(s.as_ref(), ast::Statement::Query(_)) {
            return self.execute_read(stmt, s, params).await;
        }
        let mut s = s.as_ref().clone();
        crate::views::expand_statement(&mut s, self.engine())?;
        rewrite_expressions(&mut s, Some(params))?;
        use ast::Statement as S;
        let tag = match &mut s {
            S::Explain { statement, .. } => {
                if let S::Query(q) = statement.as_mut() {
                    rewrite_knn(q, self.engine())?;
                    Box::pin(crate::subquery::inline_subqueries(self, q)).await?;
                }
                return self.query(s).await;
            }
            S::Insert(ins) => return dml::insert(self, ins).await,
            S::Update(u) => return dml::update(self, u).await,
            S::Delete(d) => return dml::delete(self, d).await,
            S::Copy {
                source,
                to,
                target,
                options,
                legacy_options,
                ..
            } => {
                return dml::copy(self, source, *to, target, options, legacy_options).await;
            }
            S::CreateTable(ct) => ddl::create_table(self, ct).await?,
            S::CreateView(cv) => crate::views::create_view(self, cv).await?,
            S::AlterTable(at) => crate::alter::alter_table(self, at).await?,
            S::CreateIndex(ci) => match ddl::unbuilt_index(self.engine(), ci)? {
                Some(warning) => {
                    self.notice(warning);
                    "CREATE INDEX".to_string()
                }
                None => ddl::create_index(self.engine(), ci).await?,
            },
            S::Drop {
                object_type: ast::ObjectType::View,
                if_exists,
                names,
                cascade,
                ..
            } => crate::views::drop_views(self.engine(), names, *if_exists, *cascade).await?,
            S::Drop {
                object_type,
                if_exists,
                names,
                cascade,
                ..
            } => ddl::drop(self.engine(), object_type, names, *if_exists, *cascade).await?,
            S::Set(set) => self.set(set)?,
            S::Reset(r) => {
                match &r.reset {
                    ast::Reset::ALL => self.with_settings(|s| {
                        s.reset_all();
                        Ok(())
                    })?,
                    ast::Reset::ConfigurationParameter(name) => {
                        self.with_settings(|s| s.reset(&name.to_string()))?
                    }
                }
                "RESET".into()
            }
            S::ShowVariable { variable } => {
                let words: Vec<String> = variable.iter().map(|i| i.value.clone()).collect();
                // PostgreSQL's multi-word forms (SQLAlchemy asks for the first).
                let name = match words.join(" ").to_ascii_lowercase().as_str() {
                    "transaction isolation level" => "transaction_isolation".to_string(),
                    "time zone" => "timezone".to_string(),
                    _ => words.join("."),
                };
                if name.eq_ignore_ascii_case("all") {
                    let all = self.with_settings(|s| Ok(s.all()))?;
                    return text_rows(
                        "setting",
                        all.into_iter().map(|(n, v)| format!("{n} = {v}")).collect(),
                    );
                }
                let v = self.with_settings(|s| s.show(&name))?;
                return text_rows(&name.to_ascii_lowercase(), vec![v]);
            }
            // Transaction blocks: crate::transaction.
            S::StartTransaction { .. } => self.txns.begin().await,
            S::Commit { .. } => {
                let tag = self.txns.commit().await;
                self.advisory.end_transaction();
                tag?
            }
            S::Rollback {
                savepoint: None, ..
            } => {
                let tag = self.txns.rollback().await;
                self.advisory.end_transaction();
                tag?
            }
            S::Rollback {
                savepoint: Some(name),
                ..
            } => self.txns.rollback_to(&crate::ddl::ident_name(name)).await?,
            S::Savepoint { name } => self.txns.savepoint(&crate::ddl::ident_name(name)).await?,
            S::ReleaseSavepoint { name } => {
                self.txns.release(&crate::ddl::ident_name(name)).await?
            }
            S::Discard { .. } => {
                if self.txns.is_open().await {
                    return sql_err!(
                        ActiveTransaction,
                        "DISCARD ALL cannot run inside a transaction block"
                    );
                }
                self.with_settings(|s| {
                    s.reset_all();
                    Ok(())
                })?;
                "DISCARD ALL".into()
            }
            S::Truncate(t) => {
                let names: Vec<String> = t
                    .table_names
                    .iter()
                    .map(|n| crate::ddl::object_name(&n.name))
                    .collect::<Result<_>>()?;
                for name in &names {
                    if let Some((child, fk)) = crate::references::referencing(self, name)
                        .into_iter()
                        .find(|(child, _)| !names.contains(&child.def.name))
                    {
                        return sql_err!(
                            FeatureNotSupported,
                            "cannot truncate a table referenced in a foreign key constraint: table \"{}\" references \"{name}\" ({}); truncate both together",
                            child.def.name,
                            fk.name
                        );
                    }
                }
                for target in &t.table_names {
                    let table = self
                        .engine()
                        .table(&crate::ddl::object_name(&target.name)?)?;
                    self.delete_rows(&table, datafusion::logical_expr::lit(true))
                        .await?;
                    if matches!(t.identity, Some(ast::TruncateIdentityOption::Restart)) {
                        self.engine().restart_sequences(&table.def.name).await?;
                    }
                }
                "TRUNCATE TABLE".into()
            }
            // The wire forgets the prepared statements (Connection::deallocate).
            S::Deallocate { name, .. } => {
                if name.quote_style.is_none() && name.value.eq_ignore_ascii_case("all") {
                    "DEALLOCATE ALL".into()
                } else {
                    "DEALLOCATE".into()
                }
            }
            S::CreateExtension(ext) => {
                let name = crate::ddl::ident_name(&ext.name);
                if name != "vector" {
                    return sql_err!(
                        FeatureNotSupported,
                        "extension \"{name}\" is not available (Quiver has the vector extension built in)"
                    );
                }
                "CREATE EXTENSION".into()
            }
            S::DropExtension(ext) => {
                for n in &ext.names {
                    let name = crate::ddl::ident_name(n);
                    if name == "vector" {
                        return sql_err!(
                            FeatureNotSupported,
                            "the vector extension is built into Quiver and cannot be dropped"
                        );
                    }
                    if !ext.if_exists {
                        return sql_err!(UndefinedObject, "extension \"{name}\" does not exist");
                    }
                }
                "DROP EXTENSION".into()
            }
            other => {
                let text = other.to_string();
                let head: String = text
                    .split_whitespace()
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" ");
                return sql_err!(FeatureNotSupported, "{head} is not supported by Quiver");
            }
        };
        Ok(Output::Command { tag })
    }

    /// Runs a query (SELECT, VALUES, …): from the result cache when it
    /// holds the rows, else as planned, keeping the rows when they may be
    /// cached ([`crate::result_cache`]).
    async fn execute_read(
        &self,
        stmt: &Statement,
        s: &ast::Statement,
        params: &[ParamValue],
    ) -> Result<Output> {
        let Some(key) = self.result_key(stmt, s, params).await else {
            return self.run_query(stmt, s, params).await;
        };
        let results = &self.db.results;
        if let Some((hit, search_k)) = results.get(&key) {
            self.note_search_k(search_k);
            return Ok(hit);
        }
        let before = crate::result_cache::Before::take(self.engine());
        self.set_reads(Some(Default::default()));
        let out = self.run_query(stmt, s, params).await;
        let reads = self.take_reads();
        let search_k = search_k_of(self.search_k.load(Ordering::Relaxed));
        Ok(results.keep(key, before, reads.unwrap_or_default(), search_k, out?))
    }

    /// The result cache's key for a query, `None` when its result is not
    /// to be cached or looked up: the cache is off (`[cache] result_share
    /// = 0`, `SET quiver.result_cache = off`), or the transaction block has
    /// written (it reads rows no other session sees).
    async fn result_key(
        &self,
        stmt: &Statement,
        s: &ast::Statement,
        params: &[ParamValue],
    ) -> Option<crate::result_cache::ResultKey> {
        if !self.db.results.enabled() || !self.conf.result_cache() || self.txns.holds_any().await {
            return None;
        }
        let settings = {
            let generation = self.conf.generation.load(Ordering::Acquire);
            let mut g = match self.settings_key.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            if g.0 != generation {
                *g = (generation, self.conf.result_key().into());
            }
            g.1.clone()
        };
        let user: Arc<str> = match self.identity.read() {
            Ok(id) => id.user.as_str().into(),
            Err(p) => p.into_inner().user.as_str().into(),
        };
        Some(crate::result_cache::ResultKey {
            statement: stmt.normalized(s),
            params: params_key(params),
            settings,
            user,
            catalog: self.engine().generation(),
            functions: self.db.functions.generation(),
        })
    }

    fn set_reads(&self, reads: Option<crate::result_cache::StatementReads>) {
        match self.reads.lock() {
            Ok(mut g) => *g = reads,
            Err(p) => *p.into_inner() = reads,
        }
    }

    fn take_reads(&self) -> Option<crate::result_cache::StatementReads> {
        match self.reads.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        }
    }

    /// Notes what a plan of the running statement reads, when its result
    /// may be cached ([`crate::result_cache::plan_reads`]).
    pub(crate) fn note_plan(&self, plan: &LogicalPlan) {
        self.note_search_k(crate::vector_search::plan_search_k(plan));
        self.with_reads(|r| r.add(crate::result_cache::plan_reads(plan).as_ref()));
    }

    /// Notes the k of a vector search the running statement planned.
    fn note_search_k(&self, k: Option<usize>) {
        if let Some(k) = k {
            self.search_k
                .fetch_max((k as u64).saturating_add(1), Ordering::Relaxed);
        }
    }

    /// The largest k of the vector searches the statement that ran last
    /// planned (`None`: it planned none), forgotten once asked: the
    /// metrics' k bucket.
    pub fn take_search_k(&self) -> Option<usize> {
        search_k_of(self.search_k.swap(0, Ordering::Relaxed))
    }

    /// The server's metrics.
    pub fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.db.metrics
    }

    /// Notes that the running statement's result is not to be cached.
    pub(crate) fn note_uncacheable(&self) {
        self.with_reads(|r| r.uncacheable = true);
    }

    fn with_reads(&self, f: impl FnOnce(&mut crate::result_cache::StatementReads)) {
        let mut g = match self.reads.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(reads) = g.as_mut() {
            f(reads);
        }
    }

    /// Plans and runs a query: through its generic plan when it has one.
    async fn run_query(
        &self,
        stmt: &Statement,
        s: &ast::Statement,
        params: &[ParamValue],
    ) -> Result<Output> {
        if !params.is_empty()
            && let Some(out) = self.execute_generic(stmt, s, params).await
        {
            return out;
        }
        let names = crate::names::output_names(s);
        let mut s = s.clone();
        crate::views::expand_statement(&mut s, self.engine())?;
        rewrite_expressions(&mut s, Some(params))?;
        if let ast::Statement::Query(q) = &mut s {
            rewrite_knn(q, self.engine())?;
            Box::pin(crate::subquery::inline_subqueries(self, q)).await?;
            Box::pin(crate::subquery::inline_select_list(self, q)).await;
        }
        let out = self.query(s).await?;
        Ok(crate::names::rename(out, names.as_deref()))
    }

    /// What a generic plan made now would be valid for.
    fn plan_key(&self) -> PlanKey {
        PlanKey {
            catalog: self.engine().generation(),
            functions: self.db.functions.generation(),
            settings: self.conf.generation.load(Ordering::Acquire),
        }
    }

    /// How many executions a generic plan has served in this session.
    pub fn generic_plan_runs(&self) -> u64 {
        self.generic_runs.load(Ordering::Relaxed)
    }

    /// Runs a prepared query through its generic plan (see [`crate::generic`]);
    /// `None` when it is to be planned with its parameters bound instead.
    async fn execute_generic(
        &self,
        stmt: &Statement,
        s: &ast::Statement,
        params: &[ParamValue],
    ) -> Option<Result<Output>> {
        let key = self.plan_key();
        let plan = match stmt.generic.get(key) {
            Some(plan) => plan,
            None => {
                // A planning error is the ordinary path's to report; nothing
                // is remembered, so the next execution tries again.
                let plan = self.generic_plan(s).await.ok()?.map(Arc::new);
                stmt.generic.set(key, plan.clone());
                plan
            }
        }?;
        let query = generic::query_vector(params.get(plan.param))?;
        self.generic_runs.fetch_add(1, Ordering::Relaxed);
        self.note_search_k(plan.search_k);
        self.with_reads(|r| r.add(plan.reads.as_ref()));
        let names = crate::names::output_names(s);
        Some(
            plan.execute(query)
                .map(|stream| {
                    crate::names::rename(
                        Output::Rows {
                            schema: plan.schema.clone(),
                            stream,
                        },
                        names.as_deref(),
                    )
                })
                .map_err(Into::into),
        )
    }

    /// Plans `s` with its query vector unbound, when it qualifies for a generic plan.
    async fn generic_plan(&self, s: &ast::Statement) -> Result<Option<GenericPlan>> {
        let mut s = s.clone();
        crate::views::expand_statement(&mut s, self.engine())?;
        rewrite_expressions(&mut s, None)?;
        if let ast::Statement::Query(q) = &mut s {
            rewrite_knn(q, self.engine())?;
        }
        let Some(param) = generic::vector_parameter(&s) else {
            return Ok(None);
        };
        let state = self.ctx.state();
        let plan = state
            .statement_to_plan(datafusion::sql::parser::Statement::Statement(Box::new(s)))
            .await?;
        crate::vector_search::check_post_filters(&plan)?;
        if generic::reads_clock(&plan) {
            return Ok(None);
        }
        let schema: SchemaRef = Arc::new(plan.schema().as_arrow().clone());
        let physical = state.create_physical_plan(&plan).await?;
        if !generic::reusable(&physical) {
            return Ok(None);
        }
        Ok(Some(GenericPlan {
            param,
            reads: crate::result_cache::plan_reads(&plan),
            search_k: crate::vector_search::plan_search_k(&plan),
            plan: physical,
            schema,
            task: state.task_ctx(),
        }))
    }

    /// Plans and runs a query (or EXPLAIN) with DataFusion.
    pub(crate) async fn query(&self, s: ast::Statement) -> Result<Output> {
        self.query_with(s, true).await
    }

    /// [`Session::query`]; `per_row`: a select-list subquery DataFusion
    /// cannot plan may run per outer row ([`crate::apply`]).
    pub(crate) async fn query_with(&self, s: ast::Statement, per_row: bool) -> Result<Output> {
        let state = self.ctx.state();
        let per_row = match &s {
            ast::Statement::Query(q) if per_row && crate::apply::projection_has_subquery(&s) => {
                Some(q.as_ref().clone())
            }
            _ => None,
        };
        let plan = match state
            .statement_to_plan(datafusion::sql::parser::Statement::Statement(Box::new(s)))
            .await
        {
            Ok(plan) => plan,
            // A correlated select-list subquery DataFusion cannot plan (e.g.
            // a table function over an outer column) may still run per row;
            // if that fails too, the planning error is the one to report.
            Err(e) => match &per_row {
                Some(q) => match Box::pin(crate::apply::run(self, q)).await {
                    Ok(out) => {
                        self.note_uncacheable();
                        return Ok(out);
                    }
                    Err(_) => return Err(e.into()),
                },
                None => return Err(e.into()),
            },
        };
        crate::vector_search::check_post_filters(&plan)?;
        self.note_plan(&plan);
        // A plain query runs on the state it was planned with: the context's
        // `execute_logical_plan` would copy the session state (every function
        // map) once more per statement.
        let df = match plan {
            LogicalPlan::Ddl(_) | LogicalPlan::Statement(_) => {
                self.ctx.execute_logical_plan(plan).await?
            }
            // Subqueries the optimizer leaves correlated run as subplans.
            plan if crate::subplan::has_subquery(&plan) => {
                let schema: SchemaRef = Arc::new(plan.schema().as_arrow().clone());
                let physical = crate::subplan::physical_plan(&state, &plan).await?;
                let stream = datafusion::physical_plan::execute_stream(physical, state.task_ctx())?;
                return Ok(Output::Rows { schema, stream });
            }
            plan => datafusion::dataframe::DataFrame::new(state, plan),
        };
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let stream = df.execute_stream().await?;
        Ok(Output::Rows { schema, stream })
    }

    fn set(&self, set: &ast::Set) -> Result<String> {
        let value_text = |v: &Expr| -> String {
            match v {
                Expr::Value(v) => match &v.value {
                    ast::Value::SingleQuotedString(s) | ast::Value::DoubleQuotedString(s) => {
                        s.clone()
                    }
                    other => other.to_string(),
                },
                Expr::Identifier(i) => i.value.clone(),
                other => other.to_string(),
            }
        };
        match set {
            ast::Set::SingleAssignment {
                variable, values, ..
            } => {
                let value = values.iter().map(value_text).collect::<Vec<_>>().join(", ");
                self.with_settings(|s| s.set(&variable.to_string(), &value))?;
            }
            ast::Set::SetTimeZone { value, .. } => {
                let v = value_text(value);
                self.with_settings(|s| s.set("timezone", &v))?;
            }
            ast::Set::SetNames { charset_name, .. } => {
                let v = charset_name.to_string();
                self.with_settings(|s| s.set("client_encoding", &v))?;
            }
            ast::Set::MultipleAssignments { assignments } => {
                for a in assignments {
                    let v = value_text(&a.value);
                    self.with_settings(|s| s.set(&a.name.to_string(), &v))?;
                }
            }
            ast::Set::SetTransaction { .. } => {}
            other => return sql_err!(FeatureNotSupported, "{other} is not supported"),
        }
        Ok("SET".into())
    }

    /// Loads the data of a finished COPY FROM STDIN; one atomic commit. Returns rows written.
    pub async fn copy_in(self: &Arc<Self>, copy: &CopyIn, data: Vec<u8>) -> Result<u64> {
        let mut load = self.copy_start(copy).await?;
        load.write(data).await?;
        load.finish().await
    }

    /// Starts loading a COPY FROM STDIN whose data comes in pieces: see [`CopyLoad`].
    pub async fn copy_start(self: &Arc<Self>, copy: &CopyIn) -> Result<CopyLoad> {
        let table = self.engine().table(&copy.table)?;
        let txns = self.txns.is_open().await.then(|| self.txns.clone());
        // Rows for a table with keys or foreign keys, or leaving out a column with a default
        // or a serial, are written as an INSERT's are, at the end.
        let omitted: Vec<usize> = (0..table.def.columns.len())
            .filter(|&i| !copy.columns.contains(&table.def.columns[i].name))
            .collect();
        let needs_insert = !table.def.unique.is_empty()
            || !table.def.foreign_keys.is_empty()
            || omitted.iter().any(|&i| {
                let c = &table.def.columns[i];
                c.serial || c.default.is_some()
            });
        let sink = if needs_insert {
            CopySink::Insert {
                omitted,
                rows: Vec::new(),
            }
        } else {
            match &txns {
                // The block holds the table's placement for the stream.
                Some(txns) => {
                    let t = table.clone();
                    CopySink::Stream(
                        txns.write(&table, async move |w| Ok(t.append_stream_in(w)))
                            .await?,
                    )
                }
                None => CopySink::Stream(table.append_stream().await),
            }
        };
        Ok(CopyLoad {
            session: self.clone(),
            def: table.def.clone(),
            sink,
            table,
            txns,
            copy: copy.clone(),
            started: false,
            ended: false,
        })
    }
}

/// A COPY FROM STDIN being loaded: each piece of complete records is decoded
/// and written to the table's data files as it arrives (memory holds one
/// piece, not the statement); [`CopyLoad::finish`] commits all of it as one
/// table version, so the COPY is atomic. Dropped unfinished, nothing is committed.
pub struct CopyLoad {
    session: Arc<Session>,
    copy: CopyIn,
    def: quiver_engine::schema::TableDef,
    sink: CopySink,
    table: Arc<quiver_engine::table::Table>,
    /// The session's transaction block, when the COPY runs in one.
    txns: Option<Arc<crate::transaction::Transactions>>,
    /// A piece was loaded (a CSV header is only in the first one).
    started: bool,
    /// The text format's end-of-data marker (`\.`) was seen: the rest is ignored.
    ended: bool,
}

/// Where a COPY's rows go.
enum CopySink {
    /// Written to data files as they come, committed at the end.
    Stream(quiver_engine::table::AppendStream),
    /// Kept, then written as an INSERT's rows are (defaults and serial
    /// values for the `omitted` columns, unique constraints checked).
    Insert {
        omitted: Vec<usize>,
        rows: Vec<RecordBatch>,
    },
}

impl CopyLoad {
    /// Loads `data`, which must end at a record boundary
    /// ([`crate::copy::RecordScan`]). The text is freed once decoded, before
    /// its rows are written.
    pub async fn write(&mut self, data: Vec<u8>) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        if self.ended {
            // Text: lines after `\.` are ignored, as PostgreSQL does; the
            // binary format's trailer must be the end.
            return match self.copy.format {
                CopyFormat::Binary { .. } => {
                    sql_err!(BadCopyFileFormat, "received copy data after EOF marker")
                }
                _ => Ok(()),
            };
        }
        // The header (CSV's column names, the binary format's signature) is
        // at the start of the first piece only.
        let format = match self.copy.format {
            CopyFormat::Csv { delimiter, .. } if self.started => CopyFormat::Csv {
                header: false,
                delimiter,
            },
            CopyFormat::Binary { .. } if self.started => CopyFormat::Binary { header: false },
            f => f,
        };
        self.started = true;
        // Decoding is CPU-bound (and parallel inside): keep it off the async workers' queue.
        let (batch, ended) = tokio::task::block_in_place(|| {
            crate::copy::decode(&self.def, &self.copy.columns, &data, &format)
        })?;
        drop(data);
        self.ended = ended;
        match &mut self.sink {
            CopySink::Stream(stream) => {
                let batch = crate::constraints::with_table_schema(&self.def, batch)?;
                crate::checks::check_rows(&self.session, &self.def, std::slice::from_ref(&batch))?;
                Ok(stream.write(batch).await?)
            }
            CopySink::Insert { rows, .. } => {
                rows.push(batch);
                Ok(())
            }
        }
    }

    /// Commits the rows loaded, as one version (in a transaction block, its
    /// next private version); their count.
    pub async fn finish(self) -> Result<u64> {
        match (self.sink, self.txns) {
            (CopySink::Stream(stream), Some(txns)) => {
                txns.write(&self.table, async move |w| stream.finish_in(w).await)
                    .await
            }
            (CopySink::Stream(stream), None) => Ok(stream.finish().await?),
            (CopySink::Insert { omitted, rows }, _) => {
                let session = self.session;
                let mut filled = Vec::with_capacity(rows.len());
                for b in rows {
                    filled.push(
                        crate::constraints::fill_defaults(&session, &self.def, &omitted, b).await?,
                    );
                }
                crate::checks::check_rows(&session, &self.def, &filled)?;
                crate::references::check_inserted(&session, &self.def, &filled).await?;
                let fail = crate::constraints::OnConflict::Fail;
                Ok(session.insert_rows(&self.table, filled, &fail).await?.0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Different lists of parameter values never share a result-cache key.
    #[test]
    fn params_key_tells_lists_apart() {
        let t = |s: &str| ParamValue::Text(s.into());
        let lists = vec![
            vec![],
            vec![ParamValue::Null],
            vec![t("")],
            vec![t("a"), t("b")],
            vec![t("ab")],
            vec![t("T1:a")],
            vec![t("a"), ParamValue::Null],
            vec![ParamValue::Int(1)],
            vec![t("1")],
            vec![ParamValue::Float(0.0)],
            vec![ParamValue::Float(-0.0)],
            vec![ParamValue::Bool(true)],
            vec![t("t")],
            vec![ParamValue::Array(vec![t("a"), t("b")])],
            vec![ParamValue::Array(vec![t("a")]), t("b")],
        ];
        let keys: std::collections::HashSet<String> = lists.iter().map(|l| params_key(l)).collect();
        assert_eq!(keys.len(), lists.len(), "{keys:?}");
        assert_eq!(params_key(&[t("[1,2]")]), params_key(&[t("[1,2]")]));
    }
}
