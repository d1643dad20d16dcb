//! What can go wrong compiling or calling a function module.

/// A failure of a function module, by kind; the SQL layer picks the SQLSTATE.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UdfError {
    /// The module is not valid or does not follow the ABI (at CREATE FUNCTION).
    #[error("invalid function module: {0}")]
    InvalidModule(String),
    /// An argument the ABI cannot carry (host side).
    #[error("{0}")]
    BadArgument(String),
    /// The call ran past its deadline and was interrupted.
    #[error("function {function} was stopped after exceeding its time limit of {timeout_ms} ms")]
    Timeout { function: String, timeout_ms: u64 },
    /// The guest tried to grow its memory (or a table) past the limit.
    #[error("function {function} exceeded its {what}")]
    ResourceLimit { function: String, what: String },
    /// The guest's call stack overflowed.
    #[error("function {function} exhausted its stack (recursion too deep)")]
    StackOverflow { function: String },
    /// The guest trapped (unreachable, bad memory access, a panic).
    #[error("function {function} trapped: {message}")]
    Trap { function: String, message: String },
    /// The guest reported an error of its own.
    #[error("function {function} failed: {message}")]
    Guest { function: String, message: String },
    /// The guest broke the ABI (bad pointer, wrong length or type).
    #[error("function {function} returned an invalid result: {message}")]
    BadOutput { function: String, message: String },
    /// Every pooled instance slot is in use.
    #[error("too many WebAssembly function calls at once ({0} running); try again")]
    Busy(usize),
    /// The WebAssembly runtime itself failed.
    #[error("WebAssembly runtime error: {0}")]
    Runtime(String),
}
