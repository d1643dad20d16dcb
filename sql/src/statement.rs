//! Splitting a query string into statements and parsing each one.
//!
//! Most statements are parsed by sqlparser's PostgreSQL dialect; Quiver's own
//! `OPTIMIZE TABLE t` and Postgres's `REINDEX { INDEX | TABLE } name` are
//! recognised here.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    self, Expr, Value, visit_expressions, visit_expressions_mut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use crate::error::Result;
use crate::sql_err;

/// One parsed SQL statement; cheap to clone; planned again at each Execute,
/// except a prepared vector search, whose generic plan it keeps (see
/// [`crate::generic`]; clones share it).
#[derive(Debug, Clone)]
pub struct Statement {
    pub(crate) kind: StatementKind,
    pub(crate) generic: std::sync::Arc<crate::generic::GenericSlot>,
    /// The statement printed back from its parse: the result cache's key
    /// ([`crate::result_cache`]); made once, clones share it.
    text: std::sync::Arc<std::sync::OnceLock<std::sync::Arc<str>>>,
    /// [`Statement::normalized_text`], made once, clones share it.
    stat_text: std::sync::Arc<std::sync::OnceLock<std::sync::Arc<str>>>,
}

/// `s` printed with its constants replaced by `$n`, numbered after the
/// highest parameter it has.
fn constants_as_parameters(s: &ast::Statement) -> String {
    let mut highest = 0;
    let _ = visit_expressions(s, |e| {
        if let Expr::Value(v) = e
            && let Value::Placeholder(p) = &v.value
            && let Some(n) = p.strip_prefix('$').and_then(|n| n.parse::<usize>().ok())
        {
            highest = highest.max(n);
        }
        ControlFlow::<()>::Continue(())
    });
    let mut s = s.clone();
    let mut next = highest;
    let _ = visit_expressions_mut(&mut s, |e| {
        if let Expr::Value(v) = e
            && !matches!(v.value, Value::Placeholder(_))
        {
            next += 1;
            *e = Expr::value(Value::Placeholder(format!("${next}")));
        }
        ControlFlow::<()>::Continue(())
    });
    s.to_string()
}

#[derive(Debug, Clone)]
pub(crate) enum StatementKind {
    Sql(Box<ast::Statement>),
    Optimize(String),
    Reindex { table: bool, name: String },
    Function(crate::functions::FunctionDdl),
}

impl Statement {
    /// The statement as parsed and printed back: equal for texts that
    /// differ only in spacing, comments or keyword case.
    pub(crate) fn normalized(&self, s: &ast::Statement) -> std::sync::Arc<str> {
        self.text.get_or_init(|| s.to_string().into()).clone()
    }

    /// `DEALLOCATE [PREPARE] name`: `Some(Some(name))`; `DEALLOCATE ALL`: `Some(None)`.
    pub fn deallocates(&self) -> Option<Option<String>> {
        match &self.kind {
            StatementKind::Sql(s) => match s.as_ref() {
                ast::Statement::Deallocate { name, .. } => Some(
                    (!(name.quote_style.is_none() && name.value.eq_ignore_ascii_case("all")))
                        .then(|| name.value.clone()),
                ),
                _ => None,
            },
            _ => None,
        }
    }

    /// `INSERT INTO t … VALUES (…)` that reads no table (no subquery, no
    /// RETURNING, no ON CONFLICT): in a transaction block its rows may wait
    /// to be written with the block's next statement.
    pub(crate) fn appends_only(&self) -> bool {
        let StatementKind::Sql(s) = &self.kind else {
            return false;
        };
        let ast::Statement::Insert(ins) = s.as_ref() else {
            return false;
        };
        let values = matches!(
            ins.source.as_deref().map(|q| q.body.as_ref()),
            Some(ast::SetExpr::Values(_))
        );
        let mut reads = false;
        let _ = visit_expressions(s.as_ref(), |e| {
            if matches!(
                e,
                Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. }
            ) {
                reads = true;
            }
            ControlFlow::<()>::Continue(())
        });
        values && !reads && ins.returning.is_none() && ins.on.is_none()
    }

    /// COMMIT, ROLLBACK (also to a savepoint): what a failed transaction
    /// block still accepts.
    pub fn ends_transaction(&self) -> bool {
        matches!(
            &self.kind,
            StatementKind::Sql(s) if matches!(
                s.as_ref(),
                ast::Statement::Commit { .. } | ast::Statement::Rollback { .. }
            )
        )
    }

    /// Statements that change the schema or rewrite a table outside the
    /// rows' versions (not transactional in Quiver).
    pub(crate) fn is_schema_change(&self) -> bool {
        match &self.kind {
            StatementKind::Sql(s) => matches!(
                s.as_ref(),
                ast::Statement::CreateIndex(_)
                    | ast::Statement::CreateTable(_)
                    | ast::Statement::CreateView(_)
                    | ast::Statement::Drop { .. }
                    | ast::Statement::AlterTable { .. }
            ),
            StatementKind::Optimize(_) | StatementKind::Reindex { .. } => true,
            StatementKind::Function(_) => false,
        }
    }

    fn new(kind: StatementKind) -> Statement {
        Statement {
            kind,
            generic: Default::default(),
            text: Default::default(),
            stat_text: Default::default(),
        }
    }

    /// The statement as `quiver_stat_statements` groups it: printed back
    /// from its parse with every constant (numbers, strings, vectors,
    /// booleans, NULL) replaced by a `$n` numbered after its own
    /// parameters, so executions that differ only in their constants share
    /// one entry; a function's module is left out.
    pub fn normalized_text(&self) -> std::sync::Arc<str> {
        self.stat_text
            .get_or_init(|| {
                use crate::functions::FunctionDdl;
                match &self.kind {
                    StatementKind::Sql(s) => constants_as_parameters(s),
                    StatementKind::Optimize(t) => format!("OPTIMIZE TABLE {t}"),
                    StatementKind::Reindex { table, name } => {
                        format!("REINDEX {} {name}", if *table { "TABLE" } else { "INDEX" })
                    }
                    StatementKind::Function(FunctionDdl::Create(f)) => {
                        format!("CREATE FUNCTION {}", f.name)
                    }
                    StatementKind::Function(FunctionDdl::Drop { names, .. }) => {
                        let names: Vec<&str> = names.iter().map(|(n, _)| n.as_str()).collect();
                        format!("DROP FUNCTION {}", names.join(", "))
                    }
                }
                .into()
            })
            .clone()
    }

    /// The command tag's first word(s) as Postgres prints them, e.g. "SELECT".
    pub fn kind(&self) -> &str {
        use ast::Statement as S;
        match &self.kind {
            StatementKind::Optimize(_) => "OPTIMIZE",
            StatementKind::Reindex { .. } => "REINDEX",
            StatementKind::Function(crate::functions::FunctionDdl::Create(_)) => "CREATE FUNCTION",
            StatementKind::Function(crate::functions::FunctionDdl::Drop { .. }) => "DROP FUNCTION",
            StatementKind::Sql(s) => match s.as_ref() {
                S::Query(_)
                | S::Explain { .. }
                | S::ShowVariable { .. }
                | S::ShowVariables { .. } => "SELECT",
                S::Insert(_) => "INSERT",
                S::Update(_) => "UPDATE",
                S::Delete(_) => "DELETE",
                S::Copy { .. } => "COPY",
                S::CreateTable(_) => "CREATE TABLE",
                S::CreateIndex(_) => "CREATE INDEX",
                S::AlterTable(_) => "ALTER TABLE",
                S::CreateView(_) => "CREATE VIEW",
                S::Drop { .. } => "DROP",
                S::Set(_) => "SET",
                S::Reset(_) => "RESET",
                S::StartTransaction { .. } => "BEGIN",
                S::Commit { .. } => "COMMIT",
                S::Rollback { .. } => "ROLLBACK",
                S::CreateExtension(_) => "CREATE EXTENSION",
                S::DropExtension(_) => "DROP EXTENSION",
                _ => "",
            },
        }
    }

    /// What kind of statement this is, as the metrics label it.
    pub fn class(&self) -> crate::metrics::StatementClass {
        use crate::metrics::{StatementClass as C, WriteKind as W};
        use ast::Statement as S;
        match &self.kind {
            StatementKind::Optimize(_)
            | StatementKind::Reindex { .. }
            | StatementKind::Function(_) => C::Ddl,
            StatementKind::Sql(s) => match s.as_ref() {
                S::Query(_) | S::Explain { .. } => C::Read,
                S::Insert(_) => C::Write(W::Insert),
                S::Update(_) => C::Write(W::Update),
                S::Delete(_) => C::Write(W::Delete),
                S::Merge(_) => C::Write(W::Other),
                S::Copy { to: false, .. } => C::Write(W::Copy),
                S::CreateTable(_)
                | S::CreateIndex(_)
                | S::AlterTable(_)
                | S::CreateView(_)
                | S::Drop { .. }
                | S::CreateExtension(_)
                | S::DropExtension(_)
                | S::Truncate(_) => C::Ddl,
                _ => C::Other,
            },
        }
    }

    /// Whether the statement returns rows.
    pub fn returns_rows(&self) -> bool {
        self.kind() == "SELECT"
    }

    /// The highest `$n` the statement uses.
    pub fn param_count(&self) -> usize {
        let StatementKind::Sql(s) = &self.kind else {
            return 0;
        };
        let mut max = 0;
        let _ = visit_expressions(s.as_ref(), |e| {
            if let Expr::Value(v) = e
                && let Value::Placeholder(p) = &v.value
                && let Some(n) = p.strip_prefix('$').and_then(|n| n.parse::<usize>().ok())
            {
                max = max.max(n);
            }
            ControlFlow::<()>::Continue(())
        });
        max
    }
}

/// Splits on `;` outside quotes, dollar quotes and comments.
fn split(sql: &str) -> Vec<&str> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"') => {
                i += 1;
                while i < b.len() {
                    if b[i] == q {
                        if i + 1 < b.len() && b[i + 1] == q {
                            i += 1;
                        } else {
                            break;
                        }
                    }
                    i += 1;
                }
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 1;
            }
            b'$' => {
                // $tag$ … $tag$ (but not $1 parameters)
                if let Some(end) = sql[i + 1..].find('$') {
                    let tag = &sql[i..i + end + 2];
                    if tag[1..tag.len() - 1]
                        .chars()
                        .all(|c| c.is_alphanumeric() || c == '_')
                        && !tag[1..].chars().next().is_some_and(|c| c.is_ascii_digit())
                        && let Some(close) = sql[i + tag.len()..].find(tag)
                    {
                        i += tag.len() + close + tag.len() - 1;
                    }
                }
            }
            b';' => {
                out.push(&sql[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.push(&sql[start..]);
    out
}

/// True when the text holds only whitespace and comments.
fn is_blank(s: &str) -> bool {
    s.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with("--")
    }) && !s.contains("/*")
}

fn words(s: &str) -> impl Iterator<Item = String> + '_ {
    s.split_whitespace().map(|w| w.to_string())
}

/// The text after any leading `--` and `/* */` comments.
fn without_leading_comments(mut s: &str) -> &str {
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix("--") {
            s = rest.find('\n').map_or("", |i| &rest[i + 1..]);
        } else if let Some(rest) = s.strip_prefix("/*") {
            s = rest.find("*/").map_or("", |i| &rest[i + 2..]);
        } else {
            return s;
        }
    }
}

fn bare_name(w: &str) -> String {
    let w = w.strip_prefix("public.").unwrap_or(w);
    if w.len() >= 2 && w.starts_with('"') && w.ends_with('"') {
        w[1..w.len() - 1].to_string()
    } else {
        w.to_ascii_lowercase()
    }
}

fn parse_one(text: &str) -> Result<Statement> {
    // Only the leading words decide; a function body can be megabytes long.
    let w: Vec<String> = words(without_leading_comments(text)).take(4).collect();
    let upper: Vec<String> = w.iter().map(|x| x.to_ascii_uppercase()).collect();
    if crate::functions::is_function_ddl(&upper) {
        return Ok(Statement::new(StatementKind::Function(
            crate::functions::parse_function_ddl(text)?,
        )));
    }
    match upper.first().map(String::as_str) {
        Some("OPTIMIZE") => {
            return match upper.as_slice() {
                [_, t, _] if t == "TABLE" => {
                    Ok(Statement::new(StatementKind::Optimize(bare_name(&w[2]))))
                }
                [_, _] => Ok(Statement::new(StatementKind::Optimize(bare_name(&w[1])))),
                _ => sql_err!(SyntaxError, "syntax error: expected OPTIMIZE TABLE name"),
            };
        }
        Some("REINDEX") => {
            return match upper.as_slice() {
                [_, what, _] if what == "INDEX" || what == "TABLE" => {
                    Ok(Statement::new(StatementKind::Reindex {
                        table: what == "TABLE",
                        name: bare_name(&w[2]),
                    }))
                }
                _ => sql_err!(
                    SyntaxError,
                    "syntax error: expected REINDEX INDEX name or REINDEX TABLE name"
                ),
            };
        }
        _ => {}
    }
    let mut stmts = Parser::parse_sql(&PostgreSqlDialect {}, text)?;
    match stmts.len() {
        1 => Ok(Statement::new(StatementKind::Sql(Box::new(
            stmts.remove(0),
        )))),
        _ => sql_err!(SyntaxError, "expected one statement"),
    }
}

/// Parses every statement of a query string; blank text gives none.
pub fn parse(sql: &str) -> Result<Vec<Statement>> {
    split(sql)
        .into_iter()
        .filter(|s| !is_blank(s))
        .map(parse_one)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_outside_quotes_and_comments() {
        assert_eq!(split("select 1; select ';' ; -- x;\nselect 2").len(), 3);
        assert_eq!(split("select $q$a;b$q$; select $1").len(), 2);
        assert_eq!(split("select $é$x$é$").len(), 1);
        assert_eq!(
            parse("-- a comment\n/* another */ DROP FUNCTION IF EXISTS f").expect("drop")[0].kind(),
            "DROP FUNCTION"
        );
        assert_eq!(parse("  ;  ; -- nothing").expect("blank").len(), 0);
        assert_eq!(
            parse("OPTIMIZE TABLE docs").expect("opt")[0].kind(),
            "OPTIMIZE"
        );
        assert_eq!(parse("select $2 + $1").expect("p")[0].param_count(), 2);
        assert!(parse("selec 1").is_err());
    }

    #[test]
    fn constants_become_parameters_after_the_statements_own() {
        let text = |sql: &str| parse(sql).expect("parse")[0].normalized_text().to_string();
        assert_eq!(
            text("SELECT id FROM t WHERE cat = 'a' AND n > 3 ORDER BY emb <-> '[1,2,3]' LIMIT 10"),
            "SELECT id FROM t WHERE cat = $1 AND n > $2 ORDER BY emb <-> $3 LIMIT $4"
        );
        assert_eq!(
            text("select id from t where id = $1 and cat = 'x'"),
            text("SELECT id FROM t WHERE id = $1 AND cat = 'y'")
        );
        assert!(text("SELECT id FROM t WHERE id = $1 AND cat = 'x'").ends_with("cat = $2"));
        assert_eq!(
            text("INSERT INTO t VALUES (1, NULL, true)"),
            "INSERT INTO t VALUES ($1, $2, $3)"
        );
        assert_eq!(text("OPTIMIZE TABLE docs"), "OPTIMIZE TABLE docs");
    }
}
