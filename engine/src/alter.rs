//! `ALTER TABLE`: what each change does to the catalog, and to the table's
//! Lance dataset.
//!
//! A change runs with the table taken out of service ([`Table::retire`]):
//! its writers done, its logged rows in Lance. The catalog and Lance are
//! then changed in an order that lets start-up finish or undo a change a
//! crash interrupted ([`reconcile_columns`]): a column is added to Lance
//! before the catalog names it, and dropped or renamed in the catalog
//! first. Either way the dataset and the catalog differ by at most one
//! column, and start-up makes the dataset agree with the catalog.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow_schema::Schema;
use datafusion::scalar::ScalarValue;
use lance::Dataset;
use lance::dataset::{BatchUDF, ColumnAlteration, NewColumnTransform};
use lance::index::DatasetIndexExt;

use crate::catalog::Catalog;
use crate::engine_err;
use crate::error::Result;
use crate::schema::{CheckDef, ColumnDef, ForeignKeyDef, TableDef, UniqueDef};

/// One change `ALTER TABLE` makes to a table.
#[derive(Debug, Clone)]
pub enum Alteration {
    /// `ADD COLUMN`: the rows already there get `fill` (NULL when `None`);
    /// `foreign_keys` are the column's `REFERENCES` (only with no fill,
    /// which no row can violate).
    AddColumn {
        column: ColumnDef,
        fill: Option<ScalarValue>,
        foreign_keys: Vec<ForeignKeyDef>,
    },
    /// `DROP COLUMN`, with its indexes and the keys it is part of; with
    /// `cascade`, also the foreign keys of other tables that reference it.
    DropColumn {
        column: String,
        cascade: bool,
    },
    RenameColumn {
        from: String,
        to: String,
    },
    RenameTable {
        to: String,
    },
    /// `ALTER COLUMN … SET DEFAULT` / `DROP DEFAULT`.
    SetDefault {
        column: String,
        default: Option<String>,
    },
    /// `ALTER COLUMN … DROP NOT NULL` / `SET NOT NULL` (checked on the rows).
    SetNullable {
        column: String,
        nullable: bool,
    },
    /// `ADD PRIMARY KEY` / `ADD UNIQUE` (checked on the rows; a primary
    /// key's columns become NOT NULL).
    AddKey(UniqueDef),
    /// `ADD FOREIGN KEY` (checked on the rows, against the referenced table's).
    AddForeignKey(ForeignKeyDef),
    /// `ADD CHECK`: recorded (the SQL layer checks the rows already there).
    AddCheck(CheckDef),
    /// `DROP CONSTRAINT`: a key or a foreign key; with `cascade`, the
    /// foreign keys that reference a dropped key go with it.
    DropConstraint {
        name: String,
        cascade: bool,
    },
}

impl Alteration {
    /// The table's name once the change is made.
    pub fn new_name<'a>(&'a self, name: &'a str) -> &'a str {
        match self {
            Alteration::RenameTable { to } => to,
            _ => name,
        }
    }
}

fn column_index(def: &TableDef, column: &str) -> Result<usize> {
    match def.columns.iter().position(|c| c.name == column) {
        Some(i) => Ok(i),
        None => engine_err!(
            ColumnNotFound,
            "column \"{column}\" of relation \"{}\" does not exist",
            def.name
        ),
    }
}

fn check_new_constraint(def: &TableDef, constraint: &str) -> Result<()> {
    if def.unique.iter().any(|u| u.name == constraint)
        || def.foreign_keys.iter().any(|f| f.name == constraint)
        || def.checks.iter().any(|c| c.name == constraint)
    {
        return engine_err!(
            IndexExists,
            "constraint \"{constraint}\" for relation \"{}\" already exists",
            def.name
        );
    }
    Ok(())
}

/// Which names [`rename_identifier`] renames.
#[derive(Clone, Copy, PartialEq)]
enum NameKind {
    /// A column: a name not followed by `.` or `(`.
    Column,
    /// A table qualifying a column: a name followed by `.`.
    Qualifier,
}

/// SQL text with the name `from` renamed `to` where it is a `kind` name: an
/// unquoted word as PostgreSQL folds it (to lower case), a quoted one as
/// written; literals and everything else are kept as written.
fn rename_identifier(sql: &str, from: &str, to: &str, kind: NameKind) -> Result<String> {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .with_unescape(false)
        .tokenize()
        .map_err(|e| {
            crate::error::EngineError::new(
                crate::error::ErrorKind::InvalidDefinition,
                format!("a check constraint did not parse: {e}"),
            )
        })?;
    let mut out = String::with_capacity(sql.len());
    for (i, t) in tokens.iter().enumerate() {
        let name_matches = match t {
            Token::Word(w) => match w.quote_style {
                None => w.value.to_lowercase() == from,
                Some('"') => w.value == from,
                Some(_) => false,
            },
            _ => false,
        };
        let next = tokens[i + 1..]
            .iter()
            .find(|t| !matches!(t, Token::Whitespace(_)));
        let position_matches = match next {
            Some(Token::Period) => kind == NameKind::Qualifier,
            Some(Token::LParen) => false,
            _ => kind == NameKind::Column,
        };
        if name_matches && position_matches {
            out.push('"');
            out.push_str(&to.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(&t.to_string());
        }
    }
    Ok(out)
}

fn check_new_column(def: &TableDef, column: &str) -> Result<()> {
    if def.column(column).is_some() {
        return engine_err!(
            ColumnExists,
            "column \"{column}\" of relation \"{}\" already exists",
            def.name
        );
    }
    Ok(())
}

fn rename_in(columns: &mut [String], from: &str, to: &str) {
    for c in columns.iter_mut().filter(|c| *c == from) {
        *c = to.to_string();
    }
}

/// The catalog once `change` is made to table `name` (which exists), or why
/// the change is refused. Nothing is written.
pub fn altered(catalog: &Catalog, name: &str, change: &Alteration) -> Result<Catalog> {
    let mut next = catalog.clone();
    let Some(mut def) = next.tables.remove(name) else {
        return engine_err!(TableNotFound, "relation \"{name}\" does not exist");
    };
    if let Some(view) = catalog.views_on(name).next() {
        match change {
            Alteration::DropColumn { column, .. } => {
                return engine_err!(
                    DependentObjects,
                    "cannot drop column {column} of table {name} because view {} depends on it",
                    view.name
                );
            }
            Alteration::RenameColumn { .. } | Alteration::RenameTable { .. } => {
                return engine_err!(
                    Unsupported,
                    "cannot rename: view {} depends on table {name} (drop the view, rename, create it again)",
                    view.name
                );
            }
            _ => {}
        }
    }
    match change {
        Alteration::AddColumn {
            column,
            fill,
            foreign_keys,
        } => {
            check_new_column(&def, &column.name)?;
            if fill.is_some() && !foreign_keys.is_empty() {
                return engine_err!(
                    Unsupported,
                    "a new column with both a DEFAULT and REFERENCES is not supported; add it, then set its default"
                );
            }
            def.columns.push(column.clone());
            def.foreign_keys.extend(foreign_keys.iter().cloned());
        }
        Alteration::DropColumn { column, cascade } => {
            let i = column_index(&def, column)?;
            if def.columns.len() == 1 {
                return engine_err!(
                    Unsupported,
                    "cannot drop column \"{column}\": it is the only column of table \"{name}\""
                );
            }
            for other in next.tables.values_mut() {
                let (hit, keep): (Vec<_>, Vec<_>) = other
                    .foreign_keys
                    .drain(..)
                    .partition(|fk| fk.table == name && fk.ref_columns.iter().any(|c| c == column));
                if let Some(fk) = hit.first()
                    && !cascade
                {
                    return engine_err!(
                        DependentObjects,
                        "cannot drop column {column} of table {name} because constraint {} on table {} depends on it (use DROP … CASCADE)",
                        fk.name,
                        other.name
                    );
                }
                other.foreign_keys = keep;
            }
            def.columns.remove(i);
            def.unique.retain(|u| !u.columns.contains(column));
            def.checks.retain(|c| !c.columns.contains(column));
            def.foreign_keys
                .retain(|fk| !fk.columns.contains(column) && !fk.ref_columns.contains(column));
            next.indexes
                .retain(|_, ix| !(ix.table == name && &ix.column == column));
        }
        Alteration::RenameColumn { from, to } => {
            let i = column_index(&def, from)?;
            check_new_column(&def, to)?;
            def.columns[i].name = to.clone();
            for u in &mut def.unique {
                rename_in(&mut u.columns, from, to);
            }
            for fk in &mut def.foreign_keys {
                rename_in(&mut fk.columns, from, to);
            }
            for c in def.checks.iter_mut().filter(|c| c.columns.contains(from)) {
                rename_in(&mut c.columns, from, to);
                c.expr = rename_identifier(&c.expr, from, to, NameKind::Column)?;
            }
            for other in next.tables.values_mut().chain(std::iter::once(&mut def)) {
                for fk in other.foreign_keys.iter_mut().filter(|fk| fk.table == name) {
                    rename_in(&mut fk.ref_columns, from, to);
                }
            }
            for ix in next.indexes.values_mut() {
                if ix.table == name && &ix.column == from {
                    ix.column = to.clone();
                }
            }
        }
        Alteration::RenameTable { to } => {
            if next.tables.contains_key(to) {
                return engine_err!(TableExists, "relation \"{to}\" already exists");
            }
            def.name = to.clone();
            // `t.col` in a check names the table anew.
            for c in &mut def.checks {
                c.expr = rename_identifier(&c.expr, name, to, NameKind::Qualifier)?;
            }
            for other in next.tables.values_mut().chain(std::iter::once(&mut def)) {
                for fk in other.foreign_keys.iter_mut().filter(|fk| fk.table == name) {
                    fk.table = to.clone();
                }
            }
            for ix in next.indexes.values_mut().filter(|ix| ix.table == name) {
                ix.table = to.clone();
            }
        }
        Alteration::SetDefault { column, default } => {
            let i = column_index(&def, column)?;
            def.columns[i].default = default.clone();
        }
        Alteration::AddKey(key) => {
            if key.primary && def.unique.iter().any(|u| u.primary) {
                return engine_err!(
                    InvalidDefinition,
                    "multiple primary keys for table \"{name}\" are not allowed"
                );
            }
            check_new_constraint(&def, &key.name)?;
            for c in &key.columns {
                let i = column_index(&def, c)?;
                if key.primary {
                    def.columns[i].nullable = false;
                }
            }
            def.unique.push(key.clone());
        }
        Alteration::AddForeignKey(fk) => {
            check_new_constraint(&def, &fk.name)?;
            def.foreign_keys.push(fk.clone());
        }
        Alteration::AddCheck(check) => {
            check_new_constraint(&def, &check.name)?;
            def.checks.push(check.clone());
        }
        Alteration::DropConstraint {
            name: constraint,
            cascade,
        } => {
            if let Some(i) = def.foreign_keys.iter().position(|f| &f.name == constraint) {
                def.foreign_keys.remove(i);
            } else if let Some(i) = def.checks.iter().position(|c| &c.name == constraint) {
                def.checks.remove(i);
            } else if let Some(i) = def.unique.iter().position(|u| &u.name == constraint) {
                let key = def.unique.remove(i);
                let mut columns = key.columns.clone();
                columns.sort();
                for other in next.tables.values_mut().chain(std::iter::once(&mut def)) {
                    let (hit, keep): (Vec<_>, Vec<_>) =
                        other.foreign_keys.drain(..).partition(|fk| {
                            let mut r = fk.ref_columns.clone();
                            r.sort();
                            fk.table == name && r == columns
                        });
                    if let Some(fk) = hit.first()
                        && !cascade
                    {
                        return engine_err!(
                            DependentObjects,
                            "cannot drop constraint {constraint} on table {name} because constraint {} on table {} depends on it (use DROP … CASCADE)",
                            fk.name,
                            other.name
                        );
                    }
                    other.foreign_keys = keep;
                }
            } else {
                return engine_err!(
                    IndexNotFound,
                    "constraint \"{constraint}\" of relation \"{name}\" does not exist"
                );
            }
        }
        Alteration::SetNullable { column, nullable } => {
            let i = column_index(&def, column)?;
            if *nullable
                && def
                    .unique
                    .iter()
                    .any(|u| u.primary && u.columns.contains(column))
            {
                return engine_err!(InvalidDefinition, "column \"{column}\" is in a primary key");
            }
            def.columns[i].nullable = *nullable;
        }
    }
    next.tables.insert(def.name.clone(), def);
    next.sequences = rekey_sequences(std::mem::take(&mut next.sequences), name, change);
    Ok(next)
}

/// Serial columns' sequence positions (keyed `table.column`) once `change`
/// is made to table `name`: renamed with the table or column, dropped with
/// the column.
pub fn rekey_sequences<V, M>(sequences: M, name: &str, change: &Alteration) -> M
where
    M: IntoIterator<Item = (String, V)> + FromIterator<(String, V)>,
{
    sequences
        .into_iter()
        .filter_map(|(key, v)| {
            let Some((table, column)) = key.split_once('.').filter(|(t, _)| *t == name) else {
                return Some((key, v));
            };
            match change {
                Alteration::RenameTable { to } => Some((format!("{to}.{column}"), v)),
                Alteration::RenameColumn { from, to } if from == column => {
                    Some((format!("{table}.{to}"), v))
                }
                Alteration::DropColumn { column: c, .. } if c == column => None,
                _ => Some((key, v)),
            }
        })
        .collect()
}

/// Adds `column` to the dataset, each existing row holding `fill` (a
/// metadata-only change when that is NULL). The Lance field is nullable
/// whatever the column says: the catalog's NOT NULL is what writes check.
pub async fn add_lance_column(
    ds: &mut Dataset,
    column: &ColumnDef,
    fill: Option<&ScalarValue>,
) -> Result<()> {
    let field = column.ty.field(&column.name, true);
    let schema = Arc::new(Schema::new(vec![field]));
    let transform = match fill {
        None => NewColumnTransform::AllNulls(schema),
        Some(value) => {
            let value = value.cast_to(&column.ty.arrow_type())?;
            let out = schema.clone();
            NewColumnTransform::BatchUDF(BatchUDF {
                mapper: Box::new(move |batch: &RecordBatch| {
                    let array = value
                        .to_array_of_size(batch.num_rows())
                        .map_err(|e| lance::Error::invalid_input(e.to_string()))?;
                    Ok(RecordBatch::try_new(out.clone(), vec![array])?)
                }),
                output_schema: schema,
                result_checkpoint: None,
            })
        }
    };
    // The UDF needs a column to read for the row count: the narrowest.
    let read = ds
        .schema()
        .fields
        .iter()
        .min_by_key(|f| f.data_type().primitive_width().unwrap_or(usize::MAX))
        .map(|f| vec![f.name.clone()]);
    ds.add_columns(transform, read, None).await?;
    Ok(())
}

/// Drops `column` from the dataset, with the Lance indexes on it.
pub async fn drop_lance_column(ds: &mut Dataset, column: &str) -> Result<()> {
    let Some(field) = ds.schema().field(column) else {
        return Ok(());
    };
    let id = field.id;
    for ix in ds.load_indices().await?.iter() {
        if ix.fields.contains(&id) && !ix.name.starts_with("__") {
            let name = ix.name.clone();
            ds.drop_index(&name).await?;
        }
    }
    ds.drop_columns(&[column]).await?;
    Ok(())
}

pub async fn rename_lance_column(ds: &mut Dataset, from: &str, to: &str) -> Result<()> {
    ds.alter_columns(&[ColumnAlteration::new(from.to_string()).rename(to.to_string())])
        .await?;
    Ok(())
}

/// Makes the dataset's column nullable (`DROP NOT NULL`): appends of rows
/// with NULLs in it must agree with its Lance field.
pub async fn set_lance_nullable(ds: &mut Dataset, column: &str) -> Result<()> {
    if ds.schema().field(column).is_some_and(|f| !f.nullable) {
        ds.alter_columns(&[ColumnAlteration::new(column.to_string()).set_nullable(true)])
            .await?;
    }
    Ok(())
}

/// The distinct keys of `columns` in the dataset's rows (rows with a NULL
/// in them apart, as no key holds them), with a row's key as text for
/// `stop`: the first key `stop` returns `true` for ends the scan and is
/// returned, shown as `(a, b)=(1, x)`.
async fn scan_keys(
    ds: &Dataset,
    columns: &[String],
    mut stop: impl FnMut(
        &mut std::collections::HashSet<arrow::row::OwnedRow>,
        arrow::row::OwnedRow,
    ) -> bool,
) -> Result<Option<String>> {
    use futures::TryStreamExt;
    let names: Vec<&str> = columns.iter().map(String::as_str).collect();
    let mut scan = ds.scan();
    scan.project(&names)?;
    let mut stream = scan.try_into_stream().await?;
    let mut seen = std::collections::HashSet::new();
    let mut converter: Option<arrow::row::RowConverter> = None;
    while let Some(batch) = stream.try_next().await? {
        let converter = match &mut converter {
            Some(c) => c,
            None => converter.insert(arrow::row::RowConverter::new(
                batch
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| arrow::row::SortField::new(f.data_type().clone()))
                    .collect(),
            )?),
        };
        let rows = converter.convert_columns(batch.columns())?;
        for i in 0..batch.num_rows() {
            if batch.columns().iter().any(|c| c.is_null(i)) {
                continue;
            }
            if stop(&mut seen, rows.row(i).owned()) {
                let values = batch
                    .columns()
                    .iter()
                    .map(|c| arrow::util::display::array_value_to_string(c, i))
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                return Ok(Some(format!(
                    "({})=({})",
                    names.join(", "),
                    values.join(", ")
                )));
            }
        }
    }
    Ok(None)
}

/// A key two rows of the dataset share in `columns` (see [`scan_keys`]).
pub async fn duplicate_key(ds: &Dataset, columns: &[String]) -> Result<Option<String>> {
    scan_keys(ds, columns, |seen, key| !seen.insert(key)).await
}

/// A key of `columns` in `child` that no row of `parent` has in
/// `ref_columns` (of the same types).
pub async fn missing_reference(
    child: &Dataset,
    columns: &[String],
    parent: &Dataset,
    ref_columns: &[String],
) -> Result<Option<String>> {
    let mut keys = std::collections::HashSet::new();
    scan_keys(parent, ref_columns, |_, key| {
        keys.insert(key);
        false
    })
    .await?;
    scan_keys(child, columns, |_, key| !keys.contains(&key)).await
}

/// Whether any row of the dataset holds NULL in `column`.
pub async fn has_nulls(ds: &Dataset, column: &str) -> Result<bool> {
    let col =
        datafusion::prelude::Expr::Column(datafusion::common::Column::new_unqualified(column));
    let mut scan = ds.scan();
    scan.project(&[column])?
        .filter_expr(col.is_null())
        .limit(Some(1), None)?;
    Ok(scan.try_into_batch().await?.num_rows() > 0)
}

/// Makes the dataset's columns the table's: what an interrupted
/// `ALTER TABLE` left (see the module comment) is finished or undone — a
/// column the catalog does not name is dropped, one renamed in the catalog
/// is renamed in Lance. Any other difference is refused: the table is not
/// opened rather than read wrongly.
pub async fn reconcile_columns(ds: &mut Dataset, def: &TableDef) -> Result<()> {
    let lance: Vec<String> = ds.schema().fields.iter().map(|f| f.name.clone()).collect();
    let ours: Vec<&str> = def.columns.iter().map(|c| c.name.as_str()).collect();
    if lance.iter().map(String::as_str).eq(ours.iter().copied()) {
        return Ok(());
    }
    let extra: Vec<&String> = lance
        .iter()
        .filter(|n| !ours.contains(&n.as_str()))
        .collect();
    let missing: Vec<&str> = ours
        .iter()
        .copied()
        .filter(|n| !lance.iter().any(|l| l == n))
        .collect();
    match (extra.as_slice(), missing.as_slice()) {
        ([extra], []) => {
            tracing::warn!(
                table = def.name,
                column = extra.as_str(),
                "dropping a column an interrupted ALTER TABLE left in Lance"
            );
            let extra = (*extra).clone();
            drop_lance_column(ds, &extra).await
        }
        ([from], [to]) => {
            tracing::warn!(
                table = def.name,
                from = from.as_str(),
                to,
                "finishing a column rename an interrupted ALTER TABLE left"
            );
            let from = (*from).clone();
            rename_lance_column(ds, &from, to).await
        }
        _ => engine_err!(
            Internal,
            "table {}: the dataset's columns {lance:?} do not match the catalog's {ours:?}",
            def.name
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{IndexDef, IndexKind};
    use crate::schema::{ColumnType, UniqueDef};

    fn catalog() -> Catalog {
        let mut c = Catalog::default();
        let mut docs = TableDef {
            tier: Default::default(),
            name: "docs".into(),
            oid: 1,
            dir: "docs-1.lance".into(),
            columns: vec![
                ColumnDef::new("id", ColumnType::Int64, false),
                ColumnDef::new("body", ColumnType::Text, true),
            ],
            unique: vec![UniqueDef {
                name: "docs_pkey".into(),
                columns: vec!["id".into()],
                primary: true,
            }],
            foreign_keys: vec![],
            checks: vec![CheckDef {
                name: "docs_id_check".into(),
                expr: "id > 0 AND \"id\" < 1000 AND body <> 'id'".into(),
                columns: vec!["id".into(), "body".into()],
            }],
            sharding: None,
        };
        docs.columns[0].serial = true;
        let notes = TableDef {
            tier: Default::default(),
            name: "notes".into(),
            oid: 2,
            dir: "notes-2.lance".into(),
            columns: vec![ColumnDef::new("doc", ColumnType::Int64, true)],
            unique: vec![],
            foreign_keys: vec![ForeignKeyDef {
                name: "notes_doc_fkey".into(),
                columns: vec!["doc".into()],
                table: "docs".into(),
                ref_columns: vec!["id".into()],
                on_delete: Default::default(),
            }],
            checks: vec![],
            sharding: None,
        };
        c.tables.insert("docs".into(), docs);
        c.tables.insert("notes".into(), notes);
        c.indexes.insert(
            "docs_body_idx".into(),
            IndexDef {
                name: "docs_body_idx".into(),
                oid: 3,
                table: "docs".into(),
                column: "body".into(),
                kind: IndexKind::BTree,
                metric: None,
                params: Default::default(),
            },
        );
        c.sequences.insert("docs.id".into(), 1025);
        c
    }

    #[test]
    fn renames_carry_keys_references_indexes_and_sequences() {
        let c = catalog();
        let to = |t: &str| Alteration::RenameTable { to: t.into() };
        let next = altered(&c, "docs", &to("papers")).expect("altered");
        assert!(!next.tables.contains_key("docs"));
        assert_eq!(next.tables["papers"].name, "papers");
        assert_eq!(next.tables["notes"].foreign_keys[0].table, "papers");
        assert_eq!(next.indexes["docs_body_idx"].table, "papers");
        assert_eq!(next.sequences.get("papers.id"), Some(&1025));
        assert!(altered(&c, "docs", &to("notes")).is_err());

        let rename = Alteration::RenameColumn {
            from: "id".into(),
            to: "key".into(),
        };
        let next = altered(&c, "docs", &rename).expect("altered");
        assert_eq!(next.tables["docs"].unique[0].columns, ["key"]);
        assert_eq!(next.tables["notes"].foreign_keys[0].ref_columns, ["key"]);
        assert_eq!(next.sequences.get("docs.key"), Some(&1025));
        assert!(!next.sequences.contains_key("docs.id"));
        // A check's text names the column anew (quoted or not; a string
        // that spells it is no column).
        let check = &next.tables["docs"].checks[0];
        assert_eq!(check.columns, ["key", "body"]);
        assert_eq!(
            check.expr,
            "\"key\" > 0 AND \"key\" < 1000 AND body <> 'id'"
        );
        // Escapes kept, case folded as PostgreSQL folds it, a function or a
        // qualifier of the same name left alone; a qualifier follows a
        // table's new name.
        let sql = "ID > 0 AND id(x) AND docs.id <> 'it''s' AND \"ID\" = 1";
        assert_eq!(
            rename_identifier(sql, "id", "key", NameKind::Column).expect("renamed"),
            "\"key\" > 0 AND id(x) AND docs.\"key\" <> 'it''s' AND \"ID\" = 1"
        );
        assert_eq!(
            rename_identifier("docs.id > 0", "docs", "papers", NameKind::Qualifier)
                .expect("renamed"),
            "\"papers\".id > 0"
        );
    }

    #[test]
    fn checks_are_added_once_and_dropped_by_name_or_with_their_column() {
        let c = catalog();
        let check = |name: &str| {
            Alteration::AddCheck(CheckDef {
                name: name.into(),
                expr: "body <> ''".into(),
                columns: vec!["body".into()],
            })
        };
        assert!(altered(&c, "docs", &check("docs_id_check")).is_err());
        assert!(altered(&c, "docs", &check("docs_pkey")).is_err());
        let next = altered(&c, "docs", &check("docs_body_check")).expect("altered");
        assert_eq!(next.tables["docs"].checks.len(), 2);
        let drop = Alteration::DropConstraint {
            name: "docs_id_check".into(),
            cascade: false,
        };
        let next = altered(&next, "docs", &drop).expect("altered");
        assert_eq!(next.tables["docs"].checks[0].name, "docs_body_check");
        let drop_body = Alteration::DropColumn {
            column: "body".into(),
            cascade: false,
        };
        let next = altered(&next, "docs", &drop_body).expect("altered");
        assert!(next.tables["docs"].checks.is_empty());
    }

    #[test]
    fn drop_column_takes_its_keys_and_indexes_and_needs_cascade_when_referenced() {
        let c = catalog();
        let drop = |column: &str, cascade| Alteration::DropColumn {
            column: column.into(),
            cascade,
        };
        let e = altered(&c, "docs", &drop("id", false)).expect_err("refused");
        assert_eq!(e.kind, crate::ErrorKind::DependentObjects);
        let next = altered(&c, "docs", &drop("id", true)).expect("altered");
        assert!(next.tables["docs"].unique.is_empty());
        assert!(next.tables["notes"].foreign_keys.is_empty());
        assert!(next.sequences.is_empty());
        let next = altered(&c, "docs", &drop("body", false)).expect("altered");
        assert!(next.indexes.is_empty());
        assert!(altered(&c, "notes", &drop("doc", false)).is_err());
        assert_eq!(
            altered(&c, "docs", &drop("nope", false))
                .expect_err("refused")
                .kind,
            crate::ErrorKind::ColumnNotFound
        );
    }

    #[test]
    fn add_column_refuses_a_taken_name_and_a_filled_reference() {
        let c = catalog();
        let add = |name: &str, fill: Option<ScalarValue>| Alteration::AddColumn {
            column: ColumnDef::new(name, ColumnType::Int64, true),
            fill,
            foreign_keys: vec![],
        };
        assert_eq!(
            altered(&c, "docs", &add("body", None))
                .expect_err("refused")
                .kind,
            crate::ErrorKind::ColumnExists
        );
        let next =
            altered(&c, "docs", &add("n", Some(ScalarValue::Int64(Some(1))))).expect("altered");
        assert_eq!(next.tables["docs"].columns.len(), 3);
        let mut with_fk = add("m", Some(ScalarValue::Int64(Some(1))));
        if let Alteration::AddColumn { foreign_keys, .. } = &mut with_fk {
            foreign_keys.push(c.tables["notes"].foreign_keys[0].clone());
        }
        assert!(altered(&c, "docs", &with_fk).is_err());
    }
}
