//! `ALTER TABLE`: each operation of the statement becomes one
//! [`Alteration`] the engine makes (see `quiver_engine::alter`), in order.
//! Operations are not atomic together: a statement whose third operation
//! fails keeps the first two (PostgreSQL undoes them; README).

use std::ops::ControlFlow;

use datafusion::scalar::ScalarValue;
use datafusion::sql::sqlparser::ast::{
    self, AlterColumnOperation, AlterTableOperation, DropBehavior, Expr, RenameTableNameKind,
    visit_expressions,
};
use quiver_engine::alter::Alteration;
use quiver_engine::schema::UniqueDef;

use crate::ddl::{column, constraint_columns, foreign_key, ident_name, key_name, object_name};
use crate::error::Result;
use crate::session::Session;
use crate::sql_err;

/// Functions whose value differs per row: a DEFAULT calling one cannot be
/// evaluated once for the rows a new column is added to.
const VOLATILE: &[&str] = &[
    "random",
    "gen_random_uuid",
    "uuid_generate_v4",
    "nextval",
    "clock_timestamp",
    "timeofday",
];

fn is_volatile(expr: &str) -> Result<bool> {
    let e = datafusion::sql::sqlparser::parser::Parser::new(
        &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
    )
    .try_with_sql(expr)?
    .parse_expr()?;
    let mut volatile = false;
    let _ = visit_expressions(&e, |e| {
        if let Expr::Function(f) = e
            && let Some(name) = f.name.0.last().and_then(|p| p.as_ident())
            && VOLATILE.contains(&name.value.to_ascii_lowercase().as_str())
        {
            volatile = true;
        }
        ControlFlow::<()>::Continue(())
    });
    Ok(volatile)
}

pub async fn alter_table(s: &Session, at: &ast::AlterTable) -> Result<String> {
    let mut name = object_name(&at.name)?;
    let engine = s.engine();
    if at.if_exists && engine.table(&name).is_err() {
        s.info(format!("relation \"{name}\" does not exist, skipping"));
        return Ok("ALTER TABLE".into());
    }
    for op in &at.operations {
        if let AlterTableOperation::SetOptionsParens { options } = op {
            reshard(s, &name, options).await?;
            continue;
        }
        if let AlterTableOperation::AddConstraint {
            constraint: ast::TableConstraint::Check(c),
            ..
        } = op
        {
            add_check(s, &name, c.name.as_ref().map(ident_name), &c.expr, None).await?;
            continue;
        }
        let Some(change) = alteration(s, &name, op).await? else {
            continue;
        };
        engine.alter_table(&name, change.clone()).await?;
        name = change.new_name(&name).to_string();
        // The CHECK options of an added column; a check its rows break
        // takes the column away again.
        if let (
            AlterTableOperation::AddColumn { column_def, .. },
            Alteration::AddColumn { column: added, .. },
        ) = (op, &change)
        {
            for (check, expr) in column(column_def)?.checks {
                add_check(s, &name, check, &expr, Some(&added.name)).await?;
            }
        }
    }
    Ok("ALTER TABLE".into())
}

/// `SET (shards = M[, shard_key = col][, vnodes = V])`: moves the table's
/// rows to M shards online (`quiver_engine::reshard`); a NOTICE reports
/// how many rows moved.
async fn reshard(s: &Session, table: &str, options: &[ast::SqlOption]) -> Result<()> {
    let options = crate::ddl::ShardingOptions::parse(options)?;
    if let Some(tier) = options.tier()? {
        if options.0.len() > 1 {
            return sql_err!(
                FeatureNotSupported,
                "ALTER TABLE … SET (tier = …) cannot be combined with other table options"
            );
        }
        let r = s.db.engine.move_tier(table, tier).await?;
        if r.moved {
            s.info(format!(
                "moved {} shards ({} bytes) to the {} tier in {:.2} s",
                r.shards,
                r.bytes,
                tier.name(),
                r.elapsed.as_secs_f64()
            ));
        }
        return Ok(());
    }
    if options.method()? == quiver_engine::schema::ShardMethod::Ivf
        || options.0.contains_key("train_rows")
    {
        return sql_err!(
            FeatureNotSupported,
            "sharding = 'ivf' and train_rows are chosen by CREATE TABLE; ALTER TABLE moves a table between shard counts of the hash ring"
        );
    }
    let Some(shards) = options.shards()? else {
        return sql_err!(
            InvalidParameterValue,
            "ALTER TABLE … SET (…) needs shards = N (with shard_key and vnodes for a table of one shard)"
        );
    };
    let def = s.engine().table(table)?.def.clone();
    let change = quiver_engine::reshard::Reshard {
        shards,
        key: options.key(&def.columns),
        vnodes: options.vnodes()?,
    };
    let r = s.db.engine.reshard(table, change).await?;
    if r.from != r.to {
        s.info(format!(
            "moved {} of {} rows ({:.1} %) from {} to {} shards in {} steps, {:.2} s",
            r.moved,
            r.rows,
            r.moved_fraction() * 100.0,
            r.from,
            r.to,
            r.steps,
            r.elapsed.as_secs_f64()
        ));
    }
    Ok(())
}

/// `ADD CHECK`: recorded first, so that every write from then on is
/// checked, then checked on the rows already there (23514: the check is
/// dropped again, and `column`, the column added with it, if any). Also
/// undone when the statement is dropped mid-scan (a cancel, a timeout).
async fn add_check(
    s: &Session,
    table: &str,
    name: Option<String>,
    expr: &Expr,
    column: Option<&str>,
) -> Result<()> {
    use futures::TryStreamExt;
    let engine = s.engine();
    let def = engine.table(table)?.def.clone();
    let taken: Vec<String> = def
        .unique
        .iter()
        .map(|u| u.name.clone())
        .chain(def.foreign_keys.iter().map(|f| f.name.clone()))
        .chain(def.checks.iter().map(|c| c.name.clone()))
        .collect();
    let check = crate::checks::define(s, table, &def.columns, name, expr, &taken)?;
    let mut undo = UndoCheck {
        engine: Some(s.db.engine.clone()),
        table: table.to_string(),
        check: Some(check.name.clone()),
        column: column.map(str::to_string),
    };
    if let Err(e) = engine
        .alter_table(table, Alteration::AddCheck(check.clone()))
        .await
    {
        undo.check = None;
        undo.run().await;
        return Err(e.into());
    }
    let existing = async {
        let sql = format!("SELECT * FROM {}", crate::constraints::quoted(table));
        let stmt = datafusion::sql::sqlparser::parser::Parser::new(
            &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
        )
        .try_with_sql(&sql)?
        .parse_statement()?;
        let crate::session::Output::Rows { mut stream, .. } = s.query(stmt).await? else {
            return sql_err!(Internal, "a table scan returned no rows");
        };
        while let Some(batch) = stream.try_next().await? {
            crate::checks::check_existing(s, &def, &check, &[batch])?;
        }
        Ok(())
    };
    match existing.await {
        Ok(()) => {
            undo.engine = None;
            Ok(())
        }
        Err(e) => {
            undo.run().await;
            Err(e)
        }
    }
}

/// What an `ADD CHECK` whose rows were not all checked takes back: the
/// check (once recorded) and the column added with it. Dropped while still
/// holding the engine (the statement's future dropped mid-scan), it does
/// so in a task of its own.
struct UndoCheck {
    engine: Option<std::sync::Arc<quiver_engine::Engine>>,
    table: String,
    check: Option<String>,
    column: Option<String>,
}

impl UndoCheck {
    async fn run(&mut self) {
        if let Some(engine) = self.engine.take() {
            undo_check(
                &engine,
                &self.table,
                self.check.as_deref(),
                self.column.as_deref(),
            )
            .await;
        }
    }
}

impl Drop for UndoCheck {
    fn drop(&mut self) {
        let Some(engine) = self.engine.take() else {
            return;
        };
        let (table, check, column) = (
            std::mem::take(&mut self.table),
            self.check.take(),
            self.column.take(),
        );
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                undo_check(&engine, &table, check.as_deref(), column.as_deref()).await
            });
        }
    }
}

async fn undo_check(
    engine: &quiver_engine::Engine,
    table: &str,
    check: Option<&str>,
    column: Option<&str>,
) {
    let mut undo = Vec::new();
    if let Some(check) = check {
        undo.push(Alteration::DropConstraint {
            name: check.to_string(),
            cascade: false,
        });
    }
    if let Some(c) = column {
        undo.push(Alteration::DropColumn {
            column: c.to_string(),
            cascade: false,
        });
    }
    for change in undo {
        if let Err(e) = engine.alter_table(table, change).await {
            tracing::warn!(table, check, error = %e, "could not undo an ADD CHECK its rows refused");
        }
    }
}

/// The change one operation makes; `None` when there is nothing to do
/// (`IF [NOT] EXISTS` found it done; a notice says so).
async fn alteration(
    s: &Session,
    table: &str,
    op: &AlterTableOperation,
) -> Result<Option<Alteration>> {
    let engine = s.engine();
    let def = engine.table(table)?.def.clone();
    let missing_column = |c: &str| {
        sql_err!(
            UndefinedColumn,
            "column \"{c}\" of relation \"{table}\" does not exist"
        )
    };
    Ok(Some(match op {
        AlterTableOperation::AddColumn {
            if_not_exists,
            column_def,
            column_position,
            ..
        } => {
            if column_position.is_some() {
                return sql_err!(FeatureNotSupported, "column positions are not supported");
            }
            let parsed = column(column_def)?;
            if def.column(&parsed.def.name).is_some() && *if_not_exists {
                s.info(format!(
                    "column \"{}\" of relation \"{table}\" already exists, skipping",
                    parsed.def.name
                ));
                return Ok(None);
            }
            if !parsed.keys.is_empty() {
                return sql_err!(
                    FeatureNotSupported,
                    "ADD COLUMN with PRIMARY KEY or UNIQUE is not supported; create a new table with the key"
                );
            }
            let mut columns = def.columns.clone();
            columns.push(parsed.def.clone());
            let foreign_keys = parsed
                .foreign
                .iter()
                .map(|fk| foreign_key(engine, table, &columns, &def.unique, fk))
                .collect::<Result<Vec<_>>>()?;
            let fill = match &parsed.def.default {
                Some(expr) if !parsed.def.serial => {
                    let t = engine.table(table)?;
                    let has_rows = !t.is_empty().await.unwrap_or(false);
                    if has_rows && is_volatile(expr)? {
                        return sql_err!(
                            FeatureNotSupported,
                            "ADD COLUMN with a volatile DEFAULT ({expr}) on a table with rows is not supported: add the column, then UPDATE it"
                        );
                    }
                    let value = crate::constraints::evaluate_default(
                        s,
                        expr,
                        1,
                        parsed.def.ty,
                        &parsed.def.name,
                    )
                    .await?;
                    let value = ScalarValue::try_from_array(&value, 0)?;
                    (!value.is_null()).then_some(value)
                }
                _ => None,
            };
            Alteration::AddColumn {
                column: parsed.def,
                fill,
                foreign_keys,
            }
        }
        AlterTableOperation::DropColumn {
            column_names,
            if_exists,
            drop_behavior,
            ..
        } => {
            let [c] = column_names.as_slice() else {
                return sql_err!(FeatureNotSupported, "drop one column per DROP COLUMN");
            };
            let c = ident_name(c);
            if def.column(&c).is_none() {
                if *if_exists {
                    s.info(format!(
                        "column \"{c}\" of relation \"{table}\" does not exist, skipping"
                    ));
                    return Ok(None);
                }
                return missing_column(&c);
            }
            Alteration::DropColumn {
                column: c,
                cascade: matches!(drop_behavior, Some(DropBehavior::Cascade)),
            }
        }
        AlterTableOperation::RenameColumn {
            old_column_name,
            new_column_name,
        } => Alteration::RenameColumn {
            from: ident_name(old_column_name),
            to: ident_name(new_column_name),
        },
        AlterTableOperation::RenameTable { table_name } => {
            let (RenameTableNameKind::As(n) | RenameTableNameKind::To(n)) = table_name;
            Alteration::RenameTable {
                to: object_name(n)?,
            }
        }
        AlterTableOperation::AlterColumn { column_name, op } => {
            let column = ident_name(column_name);
            match op {
                AlterColumnOperation::SetNotNull => Alteration::SetNullable {
                    column,
                    nullable: false,
                },
                AlterColumnOperation::DropNotNull => Alteration::SetNullable {
                    column,
                    nullable: true,
                },
                AlterColumnOperation::SetDefault { value } => Alteration::SetDefault {
                    column,
                    default: Some(value.to_string()),
                },
                AlterColumnOperation::DropDefault => Alteration::SetDefault {
                    column,
                    default: None,
                },
                other => {
                    return sql_err!(
                        FeatureNotSupported,
                        "ALTER COLUMN … {other} is not supported"
                    );
                }
            }
        }
        AlterTableOperation::AddConstraint { constraint, .. } => match constraint {
            ast::TableConstraint::PrimaryKey(ast::PrimaryKeyConstraint {
                name, columns, ..
            })
            | ast::TableConstraint::Unique(ast::UniqueConstraint { name, columns, .. }) => {
                let primary = matches!(constraint, ast::TableConstraint::PrimaryKey(_));
                let columns = constraint_columns(columns)?;
                for c in &columns {
                    if def.column(c).is_none() {
                        return missing_column(c);
                    }
                }
                Alteration::AddKey(UniqueDef {
                    name: name
                        .as_ref()
                        .map(ident_name)
                        .unwrap_or_else(|| key_name(table, &columns, primary)),
                    columns,
                    primary,
                })
            }
            ast::TableConstraint::ForeignKey(fk) => Alteration::AddForeignKey(foreign_key(
                engine,
                table,
                &def.columns,
                &def.unique,
                fk,
            )?),
            other => {
                return sql_err!(FeatureNotSupported, "constraint {other} is not supported");
            }
        },
        AlterTableOperation::DropConstraint {
            if_exists,
            name,
            drop_behavior,
        } => {
            let name = ident_name(name);
            let known = def.unique.iter().any(|u| u.name == name)
                || def.foreign_keys.iter().any(|fk| fk.name == name)
                || def.checks.iter().any(|c| c.name == name);
            if !known && *if_exists {
                s.info(format!(
                    "constraint \"{name}\" of relation \"{table}\" does not exist, skipping"
                ));
                return Ok(None);
            }
            Alteration::DropConstraint {
                name,
                cascade: matches!(drop_behavior, Some(DropBehavior::Cascade)),
            }
        }
        other => {
            return sql_err!(
                FeatureNotSupported,
                "ALTER TABLE … {other} is not supported"
            );
        }
    }))
}
