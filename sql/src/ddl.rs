//! DDL: CREATE/DROP TABLE, CREATE/DROP INDEX (Quiver and pgvector syntax),
//! OPTIMIZE TABLE and REINDEX.

use std::collections::BTreeMap;

use datafusion::sql::sqlparser::ast::{
    self, BinaryOperator, ColumnOption, CreateIndex, CreateTable, DataType, Expr, Ident,
    ObjectName, Value,
};
use quiver_engine::distance::Metric;
use quiver_engine::index::{IndexDef, IndexKind, allowed_params};
use quiver_engine::schema::{
    ColumnDef, ColumnType, ForeignKeyDef, RefAction, ShardMethod, ShardingDef, UniqueDef,
};
use quiver_engine::{Engine, Tier};

use crate::error::Result;
use crate::sql_err;

/// An identifier as PostgreSQL names it: folded to lower case unless it was
/// double-quoted (`Items` is `items`, `"Items"` stays `Items`).
pub fn ident_name(i: &Ident) -> String {
    match i.quote_style {
        Some(_) => i.value.clone(),
        None => i.value.to_lowercase(),
    }
}

/// A bare (unqualified) object name, case-folded as [`ident_name`];
/// `public.x` is accepted as `x`.
pub fn object_name(n: &ObjectName) -> Result<String> {
    let parts: Vec<String> =
        n.0.iter()
            .filter_map(|p| p.as_ident().map(ident_name))
            .collect();
    match parts.as_slice() {
        [name] => Ok(name.clone()),
        [schema, name] if schema == "public" => Ok(name.clone()),
        _ => sql_err!(
            FeatureNotSupported,
            "schema-qualified name {n} is not supported; Quiver has one schema, public"
        ),
    }
}

fn column_type(t: &DataType) -> Result<ColumnType> {
    use DataType as D;
    Ok(match t {
        D::SmallInt(_) | D::Int2(_) => ColumnType::Int16,
        D::Int(_) | D::Integer(_) | D::Int4(_) => ColumnType::Int32,
        D::BigInt(_) | D::Int8(_) => ColumnType::Int64,
        D::Real | D::Float4 => ColumnType::Float32,
        D::Float(_) | D::Double(_) | D::DoublePrecision | D::Float8 => ColumnType::Float64,
        D::Boolean | D::Bool => ColumnType::Bool,
        D::Varchar(Some(len)) | D::CharVarying(Some(len)) | D::CharacterVarying(Some(len)) => {
            match len {
                ast::CharacterLength::IntegerLength { length, .. }
                    if (1..=10_485_760).contains(length) =>
                {
                    ColumnType::Varchar(*length as u32)
                }
                ast::CharacterLength::Max => ColumnType::Text,
                _ => {
                    return sql_err!(
                        InvalidParameterValue,
                        "length for type varchar must be between 1 and 10485760"
                    );
                }
            }
        }
        D::Text
        | D::Varchar(None)
        | D::CharVarying(None)
        | D::CharacterVarying(None)
        | D::String(_)
        | D::Char(_)
        | D::Character(_) => ColumnType::Text,
        D::Timestamp(_, ast::TimezoneInfo::None | ast::TimezoneInfo::WithoutTimeZone) => {
            ColumnType::Timestamp
        }
        D::Timestamp(_, ast::TimezoneInfo::WithTimeZone | ast::TimezoneInfo::Tz) => {
            ColumnType::TimestampTz
        }
        D::Date => ColumnType::Date,
        D::Time(_, ast::TimezoneInfo::None | ast::TimezoneInfo::WithoutTimeZone) => {
            ColumnType::Time
        }
        D::Bytea => ColumnType::Bytea,
        D::Numeric(info) | D::Decimal(info) | D::Dec(info) => numeric_type(info)?,
        D::Array(
            ast::ArrayElemTypeDef::SquareBracket(inner, _)
            | ast::ArrayElemTypeDef::AngleBracket(inner)
            | ast::ArrayElemTypeDef::Parenthesis(inner),
        ) => match column_type(inner)? {
            ColumnType::Text | ColumnType::Varchar(_) => ColumnType::TextArray,
            other => {
                return sql_err!(
                    FeatureNotSupported,
                    "arrays of {other:?} are not supported (text[] is)"
                );
            }
        },
        D::Uuid => ColumnType::Uuid,
        D::JSON => ColumnType::Json,
        D::JSONB => ColumnType::Jsonb,
        D::Custom(name, args) if name.to_string().eq_ignore_ascii_case("vector") => {
            let dim = match args.as_slice() {
                [] => return Ok(ColumnType::VectorAny),
                [d] => d.parse::<u32>().ok().filter(|d| (1..=16_000).contains(d)),
                _ => None,
            };
            match dim {
                Some(d) => ColumnType::Vector(d),
                None => {
                    return sql_err!(
                        InvalidParameterValue,
                        "vector needs a dimension from 1 to 16000, as in vector(384)"
                    );
                }
            }
        }
        other => return sql_err!(FeatureNotSupported, "type {other} is not supported"),
    })
}

/// `numeric`, `numeric(p)`, `numeric(p, s)`.
fn numeric_type(info: &ast::ExactNumberInfo) -> Result<ColumnType> {
    let (precision, scale) = match *info {
        ast::ExactNumberInfo::None => return Ok(ColumnType::NumericAny),
        ast::ExactNumberInfo::Precision(p) => (p, 0),
        ast::ExactNumberInfo::PrecisionAndScale(p, s) => (p, s),
    };
    if !(1..=1000).contains(&precision) {
        return sql_err!(
            InvalidParameterValue,
            "NUMERIC precision {precision} must be between 1 and 1000"
        );
    }
    if !(-1000..=1000).contains(&scale) {
        return sql_err!(
            InvalidParameterValue,
            "NUMERIC scale {scale} must be between -1000 and 1000"
        );
    }
    if precision > 76 {
        return sql_err!(
            FeatureNotSupported,
            "NUMERIC precision {precision} is not supported: Quiver stores at most 76 digits"
        );
    }
    if !(0..=precision as i64).contains(&scale) {
        return sql_err!(
            FeatureNotSupported,
            "NUMERIC scale {scale} is not supported: Quiver needs a scale between 0 and the precision ({precision})"
        );
    }
    Ok(ColumnType::Numeric(precision as u8, scale as i8))
}

/// `serial`, `bigserial`, `smallserial`: the integer type they stand for.
fn serial_type(t: &DataType) -> Option<ColumnType> {
    let DataType::Custom(name, args) = t else {
        return None;
    };
    if !args.is_empty() {
        return None;
    }
    match name.to_string().to_ascii_lowercase().as_str() {
        "serial" | "serial4" => Some(ColumnType::Int32),
        "bigserial" | "serial8" => Some(ColumnType::Int64),
        "smallserial" | "serial2" => Some(ColumnType::Int16),
        _ => None,
    }
}

/// The column names of a constraint's column list.
pub(crate) fn constraint_columns(columns: &[ast::IndexColumn]) -> Result<Vec<String>> {
    columns
        .iter()
        .map(|c| match &c.column.expr {
            Expr::Identifier(i) => Ok(ident_name(i)),
            other => sql_err!(
                FeatureNotSupported,
                "a constraint on the expression {other} is not supported (columns only)"
            ),
        })
        .collect()
}

/// A column as `CREATE TABLE` or `ALTER TABLE … ADD COLUMN` declares it.
pub(crate) struct ParsedColumn {
    pub def: ColumnDef,
    /// Its `PRIMARY KEY` / `UNIQUE` options: (constraint name, primary).
    pub keys: Vec<(Option<String>, bool)>,
    /// Its `REFERENCES` options.
    pub foreign: Vec<ast::ForeignKeyConstraint>,
    /// Its `CHECK` options: (constraint name, condition).
    pub checks: Vec<(Option<String>, ast::Expr)>,
}

pub(crate) fn column(c: &ast::ColumnDef) -> Result<ParsedColumn> {
    let col = ident_name(&c.name);
    let (ty, mut serial) = match serial_type(&c.data_type) {
        Some(ty) => (ty, true),
        None => (column_type(&c.data_type)?, false),
    };
    let mut def = ColumnDef::new(col.clone(), ty, true);
    let mut keys = Vec::new();
    let mut foreign = Vec::new();
    let mut checks = Vec::new();
    for o in &c.options {
        match &o.option {
            ColumnOption::NotNull => def.nullable = false,
            ColumnOption::Null => {}
            ColumnOption::Default(e) => def.default = Some(e.to_string()),
            ColumnOption::PrimaryKey(_) => {
                def.nullable = false;
                keys.push((o.name.as_ref().map(ident_name), true));
            }
            ColumnOption::Unique(_) => keys.push((o.name.as_ref().map(ident_name), false)),
            // GENERATED { ALWAYS | BY DEFAULT } AS IDENTITY
            ColumnOption::Generated {
                generation_expr: None,
                ..
            }
            | ColumnOption::Identity(_) => serial = true,
            ColumnOption::ForeignKey(fk) => {
                let mut fk = fk.clone();
                if fk.columns.is_empty() {
                    fk.columns = vec![c.name.clone()];
                }
                if fk.name.is_none() {
                    fk.name = o.name.clone();
                }
                foreign.push(fk);
            }
            ColumnOption::Check(check) => {
                let name = o.name.as_ref().or(check.name.as_ref()).map(ident_name);
                checks.push((name, check.expr.as_ref().clone()));
            }
            ColumnOption::Comment(_) | ColumnOption::Collation(_) => {}
            other => {
                return sql_err!(
                    FeatureNotSupported,
                    "column option {other} is not supported"
                );
            }
        }
    }
    if serial {
        if !matches!(
            ty,
            ColumnType::Int16 | ColumnType::Int32 | ColumnType::Int64
        ) {
            return sql_err!(
                InvalidParameterValue,
                "identity column type must be smallint, integer, or bigint"
            );
        }
        def.serial = true;
        def.nullable = false;
    }
    Ok(ParsedColumn {
        def,
        keys,
        foreign,
        checks,
    })
}

pub async fn create_table(s: &crate::session::Session, ct: &CreateTable) -> Result<String> {
    let engine = s.engine();
    let name = object_name(&ct.name)?;
    if ct.query.is_some() {
        return sql_err!(
            FeatureNotSupported,
            "CREATE TABLE … AS is not supported yet"
        );
    }
    if ct.columns.is_empty() {
        return sql_err!(SyntaxError, "a table needs at least one column");
    }
    let mut columns = Vec::new();
    // (constraint name, columns, primary)
    let mut unique: Vec<(Option<String>, Vec<String>, bool)> = Vec::new();
    let mut foreign: Vec<ast::ForeignKeyConstraint> = Vec::new();
    let mut checks: Vec<(Option<String>, ast::Expr)> = Vec::new();
    for c in &ct.columns {
        let parsed = column(c)?;
        for (constraint, primary) in parsed.keys {
            unique.push((constraint, vec![parsed.def.name.clone()], primary));
        }
        foreign.extend(parsed.foreign);
        checks.extend(parsed.checks);
        columns.push(parsed.def);
    }
    for constraint in &ct.constraints {
        match constraint {
            ast::TableConstraint::PrimaryKey(pk) => {
                let cols = constraint_columns(&pk.columns)?;
                for c in &cols {
                    if let Some(d) = columns.iter_mut().find(|d| &d.name == c) {
                        d.nullable = false;
                    }
                }
                unique.push((pk.name.as_ref().map(ident_name), cols, true));
            }
            ast::TableConstraint::Unique(u) => {
                unique.push((
                    u.name.as_ref().map(ident_name),
                    constraint_columns(&u.columns)?,
                    false,
                ));
            }
            ast::TableConstraint::ForeignKey(fk) => foreign.push(fk.clone()),
            ast::TableConstraint::Check(c) => {
                checks.push((c.name.as_ref().map(ident_name), c.expr.as_ref().clone()));
            }
            other => {
                return sql_err!(FeatureNotSupported, "constraint {other} is not supported");
            }
        }
    }
    if unique.iter().filter(|(_, _, primary)| *primary).count() > 1 {
        return sql_err!(
            InvalidTableDefinition,
            "multiple primary keys for table \"{name}\" are not allowed"
        );
    }
    let mut defs: Vec<UniqueDef> = Vec::new();
    for (constraint, cols, primary) in unique {
        for c in &cols {
            if !columns.iter().any(|d| &d.name == c) {
                return sql_err!(
                    UndefinedColumn,
                    "column \"{c}\" named in key does not exist"
                );
            }
        }
        let name = constraint.unwrap_or_else(|| key_name(&name, &cols, primary));
        if !defs.iter().any(|d| d.columns == cols) {
            defs.push(UniqueDef {
                name,
                columns: cols,
                primary,
            });
        }
    }
    let foreign_keys = foreign
        .iter()
        .map(|fk| foreign_key(engine, &name, &columns, &defs, fk))
        .collect::<Result<Vec<_>>>()?;
    let taken: Vec<String> = defs
        .iter()
        .map(|d| d.name.clone())
        .chain(foreign_keys.iter().map(|f| f.name.clone()))
        .collect();
    let checks = crate::checks::for_new_table(s, &name, &columns, &checks, &taken)?;
    let (sharding, tier) = table_options(&ct.table_options, &columns)?;
    let tier = tier.unwrap_or_else(|| engine.default_tier());
    engine
        .create_table(
            &name,
            columns,
            defs,
            foreign_keys,
            checks,
            sharding,
            tier,
            ct.if_not_exists,
        )
        .await?;
    Ok("CREATE TABLE".into())
}

/// `CREATE TABLE … WITH (shards = N, sharding = 'hash', shard_key = col,
/// vnodes = V, tier = 'hot' | 'cold')`: how the table's rows are split
/// over shards (`None`: one), and the tier its shards live on (`None`: not
/// given, the data directory's default).
fn table_options(
    options: &ast::CreateTableOptions,
    columns: &[ColumnDef],
) -> Result<(Option<ShardingDef>, Option<Tier>)> {
    let with = match options {
        ast::CreateTableOptions::None => return Ok((None, None)),
        ast::CreateTableOptions::With(w) => w,
        other => {
            return sql_err!(
                FeatureNotSupported,
                "table options {other} are not supported"
            );
        }
    };
    let options = ShardingOptions::parse(with)?;
    let tier = options.tier()?;
    let shards = options.shards()?.unwrap_or(1);
    let vnodes = options
        .vnodes()?
        .unwrap_or(quiver_engine::ring::DEFAULT_VNODES);
    let method = options.method()?;
    if method == ShardMethod::Hash && options.0.contains_key("train_rows") {
        return sql_err!(
            InvalidParameterValue,
            "table option \"train_rows\" is for sharding = 'ivf'"
        );
    }
    if method == ShardMethod::Hash
        && shards == 1
        && !options.0.contains_key("shard_key")
        && !options.0.contains_key("vnodes")
    {
        return Ok((None, tier));
    }
    let key = match (options.key(columns), method) {
        (Some(k), _) => k,
        (None, ShardMethod::Hash) => columns[0].name.clone(),
        // The first vector column.
        (None, ShardMethod::Ivf) => match columns.iter().find(|c| c.ty.vector_dim().is_some()) {
            Some(c) => c.name.clone(),
            None => {
                return sql_err!(
                    InvalidTableDefinition,
                    "sharding = 'ivf' needs a vector(n) column to place rows by"
                );
            }
        },
    };
    let train_rows = match method {
        ShardMethod::Hash => 0,
        ShardMethod::Ivf => match options.0.get("train_rows") {
            None => quiver_engine::ivf::default_train_rows(shards),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if n >= 1 => n,
                _ => {
                    return sql_err!(
                        InvalidParameterValue,
                        "invalid value for table option \"train_rows\": \"{v}\" (a positive integer)"
                    );
                }
            },
        },
    };
    let sharding = ShardingDef {
        shards,
        key,
        vnodes,
        moving_from: None,
        dirs: Vec::new(),
        method,
        centroids: None,
        train_rows,
    };
    Ok((Some(sharding), tier))
}

/// The options of `CREATE TABLE … WITH (…)` or `ALTER TABLE … SET (…)`:
/// `shards`, `sharding`, `shard_key`, `vnodes`, `tier`.
pub(crate) struct ShardingOptions(pub(crate) BTreeMap<String, String>);

impl ShardingOptions {
    pub(crate) fn parse(with: &[ast::SqlOption]) -> Result<ShardingOptions> {
        let mut exprs = Vec::with_capacity(with.len());
        for o in with {
            match o {
                ast::SqlOption::KeyValue { key, value } => exprs.push(Expr::BinaryOp {
                    left: Box::new(Expr::Identifier(key.clone())),
                    op: BinaryOperator::Eq,
                    right: Box::new(value.clone()),
                }),
                other => {
                    return sql_err!(
                        SyntaxError,
                        "table options are written key = value, got {other}"
                    );
                }
            }
        }
        let options = with_options(&exprs)?;
        for key in options.keys() {
            if ![
                "shards",
                "sharding",
                "shard_key",
                "vnodes",
                "train_rows",
                "tier",
            ]
            .contains(&key.as_str())
            {
                return sql_err!(
                    InvalidParameterValue,
                    "unrecognized parameter \"{key}\" (table options: shards, sharding, shard_key, vnodes, train_rows, tier)"
                );
            }
        }
        let options = ShardingOptions(options);
        options.method()?;
        Ok(options)
    }

    /// `sharding`: `hash` (the default) or `ivf`.
    pub(crate) fn method(&self) -> Result<ShardMethod> {
        match self
            .0
            .get("sharding")
            .map(|s| s.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("hash") => Ok(ShardMethod::Hash),
            Some("ivf") => Ok(ShardMethod::Ivf),
            Some(other) => sql_err!(
                InvalidParameterValue,
                "invalid value for table option \"sharding\": \"{other}\" (hash or ivf)"
            ),
        }
    }

    /// `tier`, when given: `hot` (local disk) or `cold` (object storage).
    pub(crate) fn tier(&self) -> Result<Option<Tier>> {
        match self.0.get("tier") {
            None => Ok(None),
            Some(v) => match Tier::parse(v) {
                Some(t) => Ok(Some(t)),
                None => sql_err!(
                    InvalidParameterValue,
                    "invalid value for table option \"tier\": \"{v}\" (hot or cold)"
                ),
            },
        }
    }

    /// `shards`, when given (1 to 1,024).
    pub(crate) fn shards(&self) -> Result<Option<u32>> {
        self.number("shards", quiver_engine::ring::MAX_SHARDS)
    }

    /// `vnodes`, when given (1 to 1,000).
    pub(crate) fn vnodes(&self) -> Result<Option<u32>> {
        self.number("vnodes", quiver_engine::ring::MAX_VNODES)
    }

    /// A whole-number option from 1 to `max`, when given.
    fn number(&self, key: &str, max: u32) -> Result<Option<u32>> {
        match self.0.get(key) {
            None => Ok(None),
            Some(v) => match v.parse::<u32>() {
                Ok(n) if (1..=max).contains(&n) => Ok(Some(n)),
                _ => sql_err!(
                    InvalidParameterValue,
                    "invalid value for table option \"{key}\": \"{v}\" (an integer from 1 to {max})"
                ),
            },
        }
    }

    /// The `shard_key` given: as written when a column has that name, else
    /// folded as an unquoted name is.
    pub(crate) fn key(&self, columns: &[ColumnDef]) -> Option<String> {
        self.0
            .get("shard_key")
            .map(|k| match columns.iter().any(|c| &c.name == k) {
                true => k.clone(),
                false => k.to_lowercase(),
            })
    }
}

/// PostgreSQL's name for a key of table `table`: `docs_pkey`, `docs_email_key`.
pub(crate) fn key_name(table: &str, columns: &[String], primary: bool) -> String {
    if primary {
        format!("{table}_pkey")
    } else {
        format!("{table}_{}_key", columns.join("_"))
    }
}

/// A `REFERENCES` / `FOREIGN KEY` of table `name` (whose columns and keys
/// are given, for a table referencing itself): the referenced columns must
/// be the referenced table's primary key or a unique constraint (42830).
pub(crate) fn foreign_key(
    engine: &Engine,
    name: &str,
    columns: &[ColumnDef],
    keys: &[UniqueDef],
    fk: &ast::ForeignKeyConstraint,
) -> Result<ForeignKeyDef> {
    let table = object_name(&fk.foreign_table)?;
    let cols: Vec<String> = fk.columns.iter().map(ident_name).collect();
    for c in &cols {
        if !columns.iter().any(|d| &d.name == c) {
            return sql_err!(
                UndefinedColumn,
                "column \"{c}\" referenced in foreign key constraint does not exist"
            );
        }
    }
    let (ref_columns, ref_keys): (Vec<ColumnDef>, Vec<UniqueDef>) = if table == name {
        (columns.to_vec(), keys.to_vec())
    } else {
        let t = engine.table(&table)?;
        (t.def.columns.clone(), t.def.unique.clone())
    };
    let mut referred: Vec<String> = fk.referred_columns.iter().map(ident_name).collect();
    if referred.is_empty() {
        match ref_keys.iter().find(|k| k.primary) {
            Some(pk) => referred = pk.columns.clone(),
            None => {
                return sql_err!(
                    InvalidForeignKey,
                    "there is no primary key for referenced table \"{table}\""
                );
            }
        }
    }
    if referred.len() != cols.len() {
        return sql_err!(
            InvalidForeignKey,
            "number of referencing and referenced columns for foreign key disagree"
        );
    }
    let mut sorted = referred.clone();
    sorted.sort();
    if !ref_keys.iter().any(|k| {
        let mut kc = k.columns.clone();
        kc.sort();
        kc == sorted
    }) {
        return sql_err!(
            InvalidForeignKey,
            "there is no unique constraint matching given keys for referenced table \"{table}\""
        );
    }
    for (c, r) in cols.iter().zip(&referred) {
        let ty = |defs: &[ColumnDef], n: &str| defs.iter().find(|d| d.name == n).map(|d| d.ty);
        let (a, b) = (ty(columns, c), ty(&ref_columns, r));
        let comparable = match (a, b) {
            (Some(a), Some(b)) => a.arrow_type() == b.arrow_type(),
            _ => false,
        };
        if !comparable {
            return sql_err!(
                DatatypeMismatch,
                "foreign key constraint cannot be implemented: key columns \"{c}\" and \"{r}\" are of incompatible types"
            );
        }
    }
    let on_delete = match fk.on_delete {
        None | Some(ast::ReferentialAction::NoAction) => RefAction::NoAction,
        Some(ast::ReferentialAction::Restrict) => RefAction::Restrict,
        Some(ast::ReferentialAction::Cascade) => RefAction::Cascade,
        Some(ast::ReferentialAction::SetNull) => RefAction::SetNull,
        Some(ast::ReferentialAction::SetDefault) => {
            return sql_err!(
                FeatureNotSupported,
                "ON DELETE SET DEFAULT is not supported"
            );
        }
    };
    if matches!(
        fk.on_update,
        Some(
            ast::ReferentialAction::Cascade
                | ast::ReferentialAction::SetNull
                | ast::ReferentialAction::SetDefault
        )
    ) {
        return sql_err!(
            FeatureNotSupported,
            "ON UPDATE CASCADE / SET NULL / SET DEFAULT are not supported (updates of referenced keys are refused while referenced)"
        );
    }
    Ok(ForeignKeyDef {
        name: fk
            .name
            .as_ref()
            .map(ident_name)
            .unwrap_or_else(|| format!("{name}_{}_fkey", cols.join("_"))),
        columns: cols,
        table,
        ref_columns: referred,
        on_delete,
    })
}

/// `WITH (key = value, …)` as strings.
fn with_options(with: &[Expr]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for e in with {
        let Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } = e
        else {
            return sql_err!(
                SyntaxError,
                "index options are written key = value, got {e}"
            );
        };
        let key = match left.as_ref() {
            Expr::Identifier(i) => i.value.to_ascii_lowercase(),
            other => return sql_err!(SyntaxError, "bad index option name {other}"),
        };
        let value = match right.as_ref() {
            Expr::Value(v) => match &v.value {
                Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
                Value::Number(n, _) => n.clone(),
                Value::Boolean(b) => b.to_string(),
                other => other.to_string(),
            },
            Expr::Identifier(i) => i.value.clone(),
            other => return sql_err!(SyntaxError, "bad value for index option {key}: {other}"),
        };
        out.insert(key, value);
    }
    Ok(out)
}

/// pgvector operator class → metric.
fn opclass_metric(opclass: &str) -> Result<Metric> {
    match opclass.to_ascii_lowercase().as_str() {
        "vector_l2_ops" => Ok(Metric::L2),
        "vector_cosine_ops" => Ok(Metric::Cosine),
        "vector_ip_ops" => Ok(Metric::Dot),
        other => sql_err!(
            UndefinedObject,
            "operator class \"{other}\" does not exist for Quiver's vector indexes (use vector_l2_ops, vector_cosine_ops or vector_ip_ops)"
        ),
    }
}

/// For an index Quiver does not build — GIN, GiST, SP-GiST, BRIN (as ORMs
/// and RAG stores put on jsonb metadata) and indexes on expressions — the
/// warning that says so (the statement succeeds, as schema migrations need;
/// filters on those columns are answered by scanning). `None` for an index
/// Quiver builds.
pub fn unbuilt_index(engine: &Engine, ci: &CreateIndex) -> Result<Option<String>> {
    let table = object_name(&ci.table_name)?;
    engine.table(&table)?;
    let method = ci
        .using
        .as_ref()
        .map(|u| u.to_string().to_ascii_lowercase());
    let name = ci
        .name
        .as_ref()
        .map_or_else(|| "(unnamed)".to_string(), ToString::to_string);
    if let Some(m @ ("gin" | "gist" | "spgist" | "brin")) = method.as_deref() {
        return Ok(Some(format!(
            "index {name} was not built: Quiver has no {m} indexes; filters on its columns scan the table"
        )));
    }
    if let Some(c) = ci
        .columns
        .iter()
        .find(|c| !matches!(c.column.expr, Expr::Identifier(_)))
    {
        return Ok(Some(format!(
            "index {name} was not built: Quiver does not index expressions ({}); filters on it scan the table",
            c.column.expr
        )));
    }
    Ok(None)
}

pub async fn create_index(engine: &Engine, ci: &CreateIndex) -> Result<String> {
    let table = object_name(&ci.table_name)?;
    let t = engine.table(&table)?;
    if ci.columns.len() != 1 {
        return sql_err!(FeatureNotSupported, "an index covers exactly one column");
    }
    let col_expr = &ci.columns[0].column.expr;
    let Expr::Identifier(col) = col_expr else {
        return sql_err!(
            FeatureNotSupported,
            "expression indexes are not supported ({col_expr})"
        );
    };
    let column = ident_name(col);
    let Some(coldef) = t.def.column(&column) else {
        return sql_err!(UndefinedColumn, "column \"{column}\" does not exist");
    };
    let is_vector = coldef.ty.vector_dim().is_some();
    let mut params = with_options(&ci.with)?;
    let method = ci
        .using
        .as_ref()
        .map(|u| u.to_string().to_ascii_lowercase());
    let opclass = ci.columns[0].operator_class.as_ref().map(|o| o.to_string());
    // pgvector's methods map onto Lance indexes.
    let (kind, mut metric) = match method.as_deref() {
        Some("hnsw") => {
            params.insert(
                "num_partitions".into(),
                params
                    .get("num_partitions")
                    .cloned()
                    .unwrap_or_else(|| "1".into()),
            );
            (IndexKind::IvfHnswSq, None)
        }
        Some("ivfflat") => {
            if let Some(l) = params.remove("lists") {
                params.insert("num_partitions".into(), l);
            }
            (IndexKind::IvfFlat, None)
        }
        Some(m) => match IndexKind::parse(m) {
            Some(k) => (k, None),
            None => {
                return sql_err!(
                    UndefinedObject,
                    "access method \"{m}\" does not exist (use ivf_pq, ivf_hnsw_sq, ivf_hnsw_pq, ivf_flat, hnsw, ivfflat, btree or bitmap)"
                );
            }
        },
        None if is_vector => (IndexKind::IvfHnswSq, None),
        None => (IndexKind::BTree, None),
    };
    if let Some(op) = &opclass {
        metric = Some(opclass_metric(op)?);
    }
    if let Some(m) = params
        .remove("metric")
        .or_else(|| params.remove("distance_type"))
    {
        match Metric::parse(&m) {
            Some(m) if m != Metric::L1 => metric = Some(m),
            _ => {
                return sql_err!(
                    InvalidParameterValue,
                    "invalid metric '{m}' (use l2, cosine or dot)"
                );
            }
        }
    }
    // As pgvector: its methods have operator classes for `vector` only (42704).
    if kind.is_vector() && !is_vector {
        return sql_err!(
            UndefinedObject,
            "the type of column \"{column}\" has no default operator class for access method \"{}\" (it needs vector(n))",
            kind.name()
        );
    }
    if !kind.is_vector() && is_vector {
        return sql_err!(
            DatatypeMismatch,
            "column \"{column}\" is a vector column; use USING ivf_hnsw_sq, ivf_pq, ivf_flat, hnsw or ivfflat"
        );
    }
    let allowed = allowed_params(kind);
    if let Some(bad) = params.keys().find(|k| !allowed.contains(&k.as_str())) {
        return sql_err!(
            InvalidParameterValue,
            "unrecognized parameter \"{bad}\" for a {} index (allowed: metric{}{})",
            kind.name(),
            if allowed.is_empty() { "" } else { ", " },
            allowed.join(", ")
        );
    }
    let name = match &ci.name {
        Some(n) => object_name(n)?,
        None => format!("{table}_{column}_idx"),
    };
    let def = IndexDef {
        name,
        oid: 0,
        table,
        column,
        kind,
        metric: if kind.is_vector() {
            Some(metric.unwrap_or(Metric::L2))
        } else {
            None
        },
        params,
    };
    engine.create_index(def, ci.if_not_exists).await?;
    Ok("CREATE INDEX".into())
}

pub async fn drop(
    engine: &Engine,
    object_type: &ast::ObjectType,
    names: &[ObjectName],
    if_exists: bool,
    cascade: bool,
) -> Result<String> {
    if matches!(object_type, ast::ObjectType::Table) {
        let dropping: Vec<String> = names.iter().map(object_name).collect::<Result<_>>()?;
        let catalog = engine.catalog();
        if let Some(view) = dropping.iter().find(|n| catalog.views.contains_key(*n)) {
            return sql_err!(WrongObjectType, "\"{view}\" is not a table (use DROP VIEW)");
        }
        // The views on them go first (with CASCADE; else 2BP01).
        let with_views = Engine::with_dependent_views(&catalog, dropping.clone(), cascade)?;
        let views: Vec<String> = with_views
            .into_iter()
            .filter(|n| catalog.views.contains_key(n))
            .collect();
        if !views.is_empty() {
            engine.drop_views(&views, true, true).await?;
        }
        for (other, def) in engine.catalog().tables.iter() {
            if dropping.contains(other) {
                continue;
            }
            if let Some(fk) = def
                .foreign_keys
                .iter()
                .find(|f| dropping.contains(&f.table))
            {
                return sql_err!(
                    DependentObjectsStillExist,
                    "cannot drop table {} because other objects depend on it: constraint {} on table {other} depends on table {}; drop {other} first",
                    fk.table,
                    fk.name,
                    fk.table
                );
            }
        }
    }
    for n in names {
        let name = object_name(n)?;
        match object_type {
            ast::ObjectType::Table => {
                engine.drop_table(&name, if_exists).await?;
            }
            ast::ObjectType::Index => {
                engine.drop_index(&name, if_exists).await?;
            }
            other => return sql_err!(FeatureNotSupported, "DROP {other} is not supported"),
        }
    }
    Ok(match object_type {
        ast::ObjectType::Table => "DROP TABLE".into(),
        _ => "DROP INDEX".into(),
    })
}

/// `REINDEX INDEX name` or `REINDEX TABLE name`.
pub async fn reindex(engine: &Engine, is_table: bool, name: &str) -> Result<String> {
    let defs: Vec<IndexDef> = if is_table {
        engine.table(name)?;
        engine.indexes_of(name)
    } else {
        match engine.catalog().indexes.get(name) {
            Some(d) => vec![d.clone()],
            None => return sql_err!(UndefinedObject, "index \"{name}\" does not exist"),
        }
    };
    engine.reindex(&defs).await?;
    Ok("REINDEX".into())
}
