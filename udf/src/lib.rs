//! quiver-udf: the WebAssembly host for user functions (re-rankers, scoring).
//!
//! This crate will own the wasmtime engine, the module registry, the Arrow
//! batch ABI between host and guest, fuel/epoch deadlines and the memory
//! limiter; it must never give a guest ambient host access (no WASI, no files,
//! no network). It is part of the layout from the start so that the
//! dependency direction `sql → udf` is fixed; it has no code yet and the
//! server exposes no `LANGUAGE wasm` functions until it does.
