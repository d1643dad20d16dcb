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
