//! User function definitions as the catalog keeps them. The engine stores a
//! function's module bytes and its declared signature; compiling and calling
//! it is the udf crate's job.

use serde::{Deserialize, Serialize};

/// How SQL calls a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FunctionKind {
    /// Row-wise: `f(a, b)`, evaluated batch by batch.
    Scalar,
    /// Over a whole partition: `f(a, b) OVER (…)`.
    Window,
}

/// What a function promises about its result, as PostgreSQL's
/// `IMMUTABLE | STABLE | VOLATILE` (`pg_proc.provolatile`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FunctionVolatility {
    /// Same arguments, same result, always: may be folded at planning and
    /// evaluated inside a vector search before its top k.
    Immutable,
    /// Same result within one statement: evaluated inside a vector search too.
    Stable,
    /// Anything else (PostgreSQL's default): never folded, and refused as the
    /// filter of a vector search, which would have to apply it after the top k.
    #[default]
    Volatile,
}

impl FunctionVolatility {
    /// `pg_proc.provolatile`: `i`, `s` or `v`.
    pub fn code(self) -> &'static str {
        match self {
            FunctionVolatility::Immutable => "i",
            FunctionVolatility::Stable => "s",
            FunctionVolatility::Volatile => "v",
        }
    }
}

/// A `CREATE FUNCTION … LANGUAGE wasm` definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionDef {
    pub name: String,
    /// The function's OID in `pg_catalog.pg_proc`.
    pub oid: u32,
    /// Argument type names (`int8`, `float8`, `text`, `bool`, `vector`).
    pub args: Vec<String>,
    /// Argument names as written at CREATE ("" for an unnamed argument).
    #[serde(default)]
    pub arg_names: Vec<String>,
    pub returns: String,
    pub kind: FunctionKind,
    /// Catalogs written before volatility was kept read as volatile.
    #[serde(default)]
    pub volatility: FunctionVolatility,
    /// The module export called per batch.
    pub symbol: String,
    pub memory_limit: u64,
    pub timeout_ms: u64,
    /// The module as given (binary or WAT), under `<data_dir>/functions/`.
    pub module_file: String,
}

impl FunctionDef {
    /// The argument list as `\df` shows it: `doc text, query text`.
    pub fn argument_list(&self) -> String {
        self.args
            .iter()
            .enumerate()
            .map(
                |(i, t)| match self.arg_names.get(i).filter(|n| !n.is_empty()) {
                    Some(n) => format!("{n} {t}"),
                    None => t.clone(),
                },
            )
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// OIDs of user functions start here (above Postgres' built-in range).
pub const FIRST_FUNCTION_OID: u32 = 90_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_definition_without_volatility_reads_as_volatile() {
        // As catalogs written before volatility was kept store a function.
        let old = r#"{"name":"f","oid":16400,"args":["float8"],"returns":"float8",
            "kind":"scalar","symbol":"f","memory_limit":1,"timeout_ms":1,"module_file":"f.wasm"}"#;
        let def: FunctionDef = serde_json::from_str(old).expect("old definition");
        assert_eq!(def.volatility, FunctionVolatility::Volatile);
        let new = serde_json::to_string(&FunctionDef {
            volatility: FunctionVolatility::Immutable,
            ..def
        })
        .expect("serialize");
        assert!(new.contains(r#""volatility":"immutable""#), "{new}");
    }
}
