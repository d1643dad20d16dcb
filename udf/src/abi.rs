//! The batch ABI between Quiver (the host) and a function module (the guest),
//! version 1.
//!
//! A guest is a core WebAssembly module (32-bit memory) that any toolchain can
//! produce: Rust (`wasm32-unknown-unknown`, see the `quiver-udf-guest` SDK
//! under `udf/guest`), C or Zig (`--target=wasm32-freestanding`, exporting the
//! functions below), AssemblyScript, or hand-written WAT. The host hands the
//! guest a whole batch of rows at once and receives a whole output column:
//! there is no per-row call across the boundary.
//!
//! # Imports
//!
//! None. Quiver defines no host functions and no WASI: a module that imports
//! anything (a function, a memory, a table or a global) is rejected by
//! `CREATE FUNCTION`. A guest has no clock, no files, no network, no
//! randomness; all it sees is its own memory and its arguments.
//!
//! # Exports
//!
//! | export | type | meaning |
//! |---|---|---|
//! | `memory` | memory (32-bit) | the guest's linear memory |
//! | `quiver_abi_version` | `() -> i32` | must return [`ABI_VERSION`] (1) |
//! | `quiver_alloc` | `(size: i32, align: i32) -> i32` | a pointer to `size` free bytes aligned to `align`, or 0 when out of memory |
//! | *symbol* | `(batch: i32) -> i32` | the SQL function: takes a batch pointer, returns a column pointer |
//! | `quiver_panic_message` (optional) | `() -> i32` | after a trap: a pointer to two u32, the address and length of a UTF-8 message (length 0 = none) |
//!
//! *symbol* is the SQL function's name unless `CREATE FUNCTION … WITH (symbol
//! = 'export_name')` names another export, so one module can hold several
//! functions.
//!
//! # One call
//!
//! For each batch of rows the host
//! 1. takes a fresh instance of the module (instances come from a pool; the
//!    memory of a returned instance is reset, so nothing a guest stores
//!    survives to the next call, whoever makes it);
//! 2. calls `quiver_alloc(total, 8)` once and writes the batch into that
//!    region: the header, the column descriptors, then each column's
//!    buffers, every buffer 8-byte aligned;
//! 3. calls *symbol*`(batch)`; the guest reads its arguments in place and
//!    returns a pointer to an output column descriptor (buffers it allocated
//!    itself, anywhere in its memory; it never needs to free anything);
//! 4. validates and copies the output column out, then drops the instance.
//!
//! The arguments of one call must fit in the function's `memory_limit`, and so
//! must a scalar result repeated for every row (SQLSTATE 53200 otherwise).
//!
//! All integers are little-endian. Pointers are byte offsets into the guest's
//! memory, as `u32`.
//!
//! # Batch (at `batch`)
//!
//! | offset | type | field |
//! |---|---|---|
//! | 0 | u32 | `abi_version` = 1 |
//! | 4 | u32 | `num_rows` |
//! | 8 | u32 | `num_columns` (the SQL arguments, in order) |
//! | 12 | u32 | reserved, 0 |
//! | 16 | [`COLUMN_SIZE`] × `num_columns` | the column descriptors |
//!
//! # Column descriptor (32 bytes, input and output alike)
//!
//! | offset | type | field |
//! |---|---|---|
//! | 0 | u32 | `type`: see [`TYPE_BOOL`] … [`TYPE_VECTOR`], or [`TYPE_ERROR`] (output only) |
//! | 4 | u32 | `flags`: bit 0 ([`FLAG_SCALAR`]) = one value that holds for every row |
//! | 8 | u32 | `len`: number of values (`num_rows`, or 1 when scalar) |
//! | 12 | u32 | `validity`: pointer to `len` bytes, 1 = value present, 0 = NULL; 0 = no NULLs |
//! | 16 | u32 | `offsets`: text and vector only, pointer to `len + 1` u32 offsets into `values` (bytes for text, f32 elements for vector); 0 otherwise |
//! | 20 | u32 | `values`: pointer to the values |
//! | 24 | u32 | `values_len`: size of `values` in bytes |
//! | 28 | u32 | reserved, 0 |
//!
//! Value layouts, by type:
//!
//! | type | SQL types | `values` |
//! |---|---|---|
//! | 1 bool | `bool` | one byte per value, 0 or 1 |
//! | 2 int64 | `int2`, `int4`, `int8` | one i64 per value |
//! | 3 float64 | `float4`, `float8` | one f64 per value |
//! | 4 text | `text`, `varchar` | UTF-8 bytes; value *i* is `values[offsets[i]..offsets[i+1]]` |
//! | 5 vector | `vector`, `vector(n)` | f32 elements; value *i* is `values[offsets[i]..offsets[i+1]]` |
//!
//! A NULL value still occupies its slot (any bytes; an empty range for text
//! and vector). The host passes text as valid UTF-8.
//!
//! # Output
//!
//! The returned pointer names a column descriptor of the function's declared
//! return type with `len` = `num_rows` (or `len` = 1 with [`FLAG_SCALAR`] for
//! one value for every row). Offsets must start at 0 or above, never
//! decrease, and end within `values_len`; text must be valid UTF-8. Anything
//! else — a null or out-of-bounds pointer, a wrong type, a wrong length —
//! fails the query with SQLSTATE 39000 and the host reads nothing more.
//!
//! To fail the query with its own message, the guest returns a descriptor of
//! type [`TYPE_ERROR`] whose `values`/`values_len` hold a UTF-8 message: the
//! query fails with SQLSTATE 38000 and that message.
//!
//! # Limits
//!
//! Each call runs under the function's `timeout_ms` (default 1000, at most
//! 60000; the guest is interrupted a few milliseconds past it, SQLSTATE 57014) and
//! `memory_limit` (default 64 MiB of linear memory, at most 1 GiB; growing past
//! it fails the query with SQLSTATE 53200). The wasm stack is 512 KiB (a
//! deeper recursion fails with 54001); tables are limited to
//! [`MAX_TABLE_ELEMENTS`] elements. A trap (`unreachable`, a bad memory
//! access, a Rust panic) fails the query with SQLSTATE 38000; when the
//! module exports `quiver_panic_message`, its message is the error's.

/// The ABI version a module must report from `quiver_abi_version`.
pub const ABI_VERSION: u32 = 1;

/// Size of the batch header, before the column descriptors.
pub const HEADER_SIZE: usize = 16;
/// Size of one column descriptor.
pub const COLUMN_SIZE: usize = 32;

pub const TYPE_BOOL: u32 = 1;
pub const TYPE_INT64: u32 = 2;
pub const TYPE_FLOAT64: u32 = 3;
pub const TYPE_TEXT: u32 = 4;
pub const TYPE_VECTOR: u32 = 5;
/// Output only: the guest failed; `values` holds a UTF-8 message.
pub const TYPE_ERROR: u32 = 255;

/// Column flag: one value that holds for every row.
pub const FLAG_SCALAR: u32 = 1;

/// Export names.
pub const EXPORT_MEMORY: &str = "memory";
pub const EXPORT_ALLOC: &str = "quiver_alloc";
pub const EXPORT_VERSION: &str = "quiver_abi_version";
pub const EXPORT_PANIC_MESSAGE: &str = "quiver_panic_message";

/// Most elements a guest's table may hold.
pub const MAX_TABLE_ELEMENTS: usize = 100_000;
/// The wasm stack a guest call may use.
pub const MAX_WASM_STACK: usize = 512 * 1024;
