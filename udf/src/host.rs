//! The wasmtime host: one process-wide engine (pooling allocator, epoch
//! interruption), compiled functions, and the call sequence of [`crate::abi`].

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arrow_array::{Array, ArrayRef};
use wasmtime::{
    Config, Engine, ExternType, InstanceAllocationStrategy, InstancePre, Linker, Module, OptLevel,
    PoolingAllocationConfig, ResourceLimiter, Store, Trap, TypedFunc, ValType,
};

use crate::ValueType;
use crate::abi::{self, ABI_VERSION, EXPORT_ALLOC, EXPORT_MEMORY, EXPORT_VERSION};
use crate::error::UdfError;
use crate::layout::{self, Decode};

/// How often the engine's epoch advances: a guest is interrupted at most one
/// tick (plus the time to reach its next loop back-edge or call) after its deadline.
const EPOCH_TICK: Duration = Duration::from_millis(5);
/// Instance slots in the pool: the most guest calls that can run at once.
const POOL_SLOTS: usize = 128;
/// The largest `memory_limit` a function may ask for.
pub const MAX_MEMORY_LIMIT: u64 = 1 << 30;
/// The default `memory_limit`.
pub const DEFAULT_MEMORY_LIMIT: u64 = 64 << 20;
/// The default `timeout_ms`.
pub const DEFAULT_TIMEOUT_MS: u64 = 1000;

/// What a function may use per call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes of linear memory.
    pub memory_bytes: u64,
    /// Most milliseconds per call (one batch).
    pub timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: DEFAULT_MEMORY_LIMIT,
            timeout_ms: DEFAULT_TIMEOUT_MS,
        }
    }
}

/// The SQL-facing signature of a function: its export and ABI types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSpec {
    /// Name shown in errors.
    pub name: String,
    /// The export called per batch.
    pub symbol: String,
    pub args: Vec<ValueType>,
    pub ret: ValueType,
}

/// One argument of a call: a column, or a one-value array that holds for every row.
#[derive(Clone, Copy)]
pub struct Arg<'a> {
    pub array: &'a dyn Array,
    pub scalar: bool,
}

struct Runtime {
    engine: Engine,
    linker: Linker<GuestState>,
    active: AtomicUsize,
}

static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();

fn runtime() -> Result<&'static Runtime, UdfError> {
    RUNTIME
        .get_or_init(|| {
            let mut pool = PoolingAllocationConfig::new();
            pool.total_core_instances(POOL_SLOTS as u32)
                .total_memories(POOL_SLOTS as u32)
                .total_tables(POOL_SLOTS as u32)
                .max_memories_per_module(1)
                .max_tables_per_module(1)
                .table_elements(abi::MAX_TABLE_ELEMENTS)
                .max_memory_size(MAX_MEMORY_LIMIT as usize)
                // Returned memories and tables are reset with madvise, not by
                // zeroing only the pages PAGEMAP_SCAN reports dirty: 2.5x faster
                // per call, but wasmtime 48 skips dirty pages that are swapped
                // out, and one call's data must never reach the next.
                .pagemap_scan(wasmtime::Enabled::No)
                .linear_memory_keep_resident(0)
                .table_keep_resident(0);
            let mut config = Config::new();
            config
                .epoch_interruption(true)
                .max_wasm_stack(abi::MAX_WASM_STACK)
                .cranelift_opt_level(OptLevel::Speed)
                .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
            let engine = Engine::new(&config).map_err(|e| format!("{e:#}"))?;
            let ticker = engine.clone();
            std::thread::Builder::new()
                .name("quiver-wasm-epoch".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(EPOCH_TICK);
                        ticker.increment_epoch();
                    }
                })
                .map_err(|e| e.to_string())?;
            Ok(Runtime {
                linker: Linker::new(&engine),
                engine,
                active: AtomicUsize::new(0),
            })
        })
        .as_ref()
        .map_err(|e| UdfError::Runtime(e.clone()))
}

/// Per-instance state: the limits the resource limiter enforces, and which one tripped.
struct GuestState {
    memory_limit: usize,
    exceeded: Option<String>,
}

impl ResourceLimiter for GuestState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            self.exceeded = Some(format!(
                "memory limit of {} (asked for {})",
                human_bytes(self.memory_limit as u64),
                human_bytes(desired as u64)
            ));
            wasmtime::bail!("memory limit exceeded");
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > abi::MAX_TABLE_ELEMENTS {
            self.exceeded = Some(format!(
                "table limit of {} elements (asked for {desired})",
                abi::MAX_TABLE_ELEMENTS
            ));
            wasmtime::bail!("table limit exceeded");
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        1
    }
    fn tables(&self) -> usize {
        1
    }
    fn memories(&self) -> usize {
        1
    }
}

/// Bytes as Postgres prints sizes ("64 MB").
pub fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 && n % (1 << 30) == 0 => format!("{} GB", n >> 30),
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} kB", n >> 10),
        n => format!("{n} bytes"),
    }
}

/// A compiled function module, ready to be instantiated per call. Cheap to share.
pub struct WasmFunction {
    pre: InstancePre<GuestState>,
    spec: FunctionSpec,
    limits: Limits,
}

/// The guest's own account of a trap, through the optional
/// `quiver_panic_message` export (the Rust SDK records panic messages there).
fn panic_message(
    instance: &wasmtime::Instance,
    store: &mut Store<GuestState>,
    memory: &wasmtime::Memory,
) -> Option<String> {
    let f: TypedFunc<(), i32> = instance
        .get_typed_func(&mut *store, abi::EXPORT_PANIC_MESSAGE)
        .ok()?;
    store.set_epoch_deadline(2);
    let at = f.call(&mut *store, ()).ok()? as u32 as usize;
    let data = memory.data(&*store);
    let word = |i: usize| -> Option<usize> {
        let b = data.get(at + 4 * i..at + 4 * i + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let (ptr, len) = (word(0)?, word(1)?);
    if len == 0 {
        return None;
    }
    let text = data.get(ptr..ptr.checked_add(len.min(2000))?)?;
    Some(format!("panicked: {}", String::from_utf8_lossy(text)))
}

/// A slot in the instance pool, released on drop.
struct Slot(&'static Runtime);

impl Slot {
    fn take(rt: &'static Runtime) -> Result<Slot, UdfError> {
        let n = rt.active.fetch_add(1, Ordering::AcqRel);
        if n >= POOL_SLOTS {
            rt.active.fetch_sub(1, Ordering::AcqRel);
            return Err(UdfError::Busy(n));
        }
        Ok(Slot(rt))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

fn check_func(
    module: &Module,
    name: &str,
    params: &[ValType],
    results: &[ValType],
) -> Result<(), String> {
    let Some(ext) = module.get_export(name) else {
        return Err(format!("the module does not export the function `{name}`"));
    };
    let ExternType::Func(f) = ext else {
        return Err(format!("the export `{name}` is not a function"));
    };
    let ps: Vec<ValType> = f.params().collect();
    let rs: Vec<ValType> = f.results().collect();
    let same = |a: &[ValType], b: &[ValType]| {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| ValType::eq(x, y))
    };
    if !same(&ps, params) || !same(&rs, results) {
        return Err(format!(
            "the export `{name}` has type ({}) -> ({}), the ABI needs ({}) -> ({})",
            list(&ps),
            list(&rs),
            list(params),
            list(results)
        ));
    }
    Ok(())
}

fn list(types: &[ValType]) -> String {
    types
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl WasmFunction {
    /// Validates and compiles a module (binary, or WAT text) for one function,
    /// and checks its exports against the ABI. With `trial_run`, also
    /// instantiates it once (start function, initial memory within the limit,
    /// `quiver_abi_version`): CREATE FUNCTION does; reloading a module already
    /// checked that way after a restart need not.
    pub fn compile(
        source: &[u8],
        spec: FunctionSpec,
        limits: Limits,
        trial_run: bool,
    ) -> Result<WasmFunction, UdfError> {
        let rt = runtime()?;
        let invalid = UdfError::InvalidModule;
        if limits.memory_bytes > MAX_MEMORY_LIMIT || limits.memory_bytes < 1 << 16 {
            return Err(invalid(format!(
                "memory_limit must be between 64 kB and {}",
                human_bytes(MAX_MEMORY_LIMIT)
            )));
        }
        let looks_like_wat = source
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| *b == b'(' || *b == b';');
        if !source.starts_with(b"\0asm") && !looks_like_wat {
            return Err(invalid(
                "not a WebAssembly module: expected a binary module (starting with \\0asm) or WAT text".into(),
            ));
        }
        let module = Module::new(&rt.engine, source).map_err(|e| invalid(format!("{e:#}")))?;
        if let Some(imp) = module.imports().next() {
            return Err(invalid(format!(
                "the module imports `{}.{}`; Quiver provides no host functions (no WASI): a function module must import nothing",
                imp.module(),
                imp.name()
            )));
        }
        match module.get_export(EXPORT_MEMORY) {
            Some(ExternType::Memory(m)) if !m.is_64() => {}
            Some(ExternType::Memory(_)) => {
                return Err(invalid(
                    "the exported memory is 64-bit; the ABI needs a 32-bit memory".into(),
                ));
            }
            _ => {
                return Err(invalid(format!(
                    "the module does not export its memory as `{EXPORT_MEMORY}`"
                )));
            }
        }
        check_func(&module, EXPORT_VERSION, &[], &[ValType::I32]).map_err(invalid)?;
        check_func(
            &module,
            EXPORT_ALLOC,
            &[ValType::I32, ValType::I32],
            &[ValType::I32],
        )
        .map_err(invalid)?;
        check_func(&module, &spec.symbol, &[ValType::I32], &[ValType::I32]).map_err(invalid)?;
        let pre = rt
            .linker
            .instantiate_pre(&module)
            .map_err(|e| invalid(format!("{e:#}")))?;
        let f = WasmFunction { pre, spec, limits };
        if !trial_run {
            return Ok(f);
        }
        // A trial run: start function, initial memory within the limit, ABI version.
        let _slot = Slot::take(rt)?;
        let mut store = f.store(rt);
        let version = f
            .pre
            .instantiate(&mut store)
            .and_then(|i| {
                let v: TypedFunc<(), i32> = i.get_typed_func(&mut store, EXPORT_VERSION)?;
                v.call(&mut store, ())
            })
            .map_err(|e| {
                invalid(format!(
                    "instantiating it failed: {}",
                    f.classify(&store, e)
                ))
            })?;
        if version as u32 != ABI_VERSION {
            return Err(invalid(format!(
                "`{EXPORT_VERSION}` returned {version}; this Quiver speaks ABI version {ABI_VERSION}"
            )));
        }
        Ok(f)
    }

    pub fn spec(&self) -> &FunctionSpec {
        &self.spec
    }

    fn store(&self, rt: &Runtime) -> Store<GuestState> {
        let mut store = Store::new(
            &rt.engine,
            GuestState {
                memory_limit: self.limits.memory_bytes as usize,
                exceeded: None,
            },
        );
        store.limiter(|s| s as &mut dyn ResourceLimiter);
        let ticks = self
            .limits
            .timeout_ms
            .div_ceil(EPOCH_TICK.as_millis() as u64)
            + 1;
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();
        store
    }

    /// The error a failed guest call stands for.
    fn classify(&self, store: &Store<GuestState>, e: wasmtime::Error) -> UdfError {
        let function = self.spec.name.clone();
        if let Some(what) = &store.data().exceeded {
            return UdfError::ResourceLimit {
                function,
                what: what.clone(),
            };
        }
        match e.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => UdfError::Timeout {
                function,
                timeout_ms: self.limits.timeout_ms,
            },
            Some(Trap::StackOverflow) => UdfError::StackOverflow { function },
            Some(Trap::AllocationTooLarge) => UdfError::ResourceLimit {
                function,
                what: format!("memory limit of {}", human_bytes(self.limits.memory_bytes)),
            },
            Some(t) => UdfError::Trap {
                function,
                message: t.to_string(),
            },
            None => UdfError::Trap {
                function,
                message: format!("{e:#}"),
            },
        }
    }

    fn layout_error(&self, e: Decode, output: bool) -> UdfError {
        let function = self.spec.name.clone();
        match e {
            Decode::GuestError(message) => UdfError::Guest { function, message },
            Decode::Invalid(message) if output => UdfError::BadOutput { function, message },
            Decode::Invalid(message) => UdfError::BadArgument(message),
            Decode::TooLarge(detail) => UdfError::ResourceLimit {
                function,
                what: format!(
                    "memory limit of {}: {detail}",
                    human_bytes(self.limits.memory_bytes)
                ),
            },
        }
    }

    /// Runs the function over one batch of `num_rows` rows.
    pub fn call(&self, args: &[Arg<'_>], num_rows: usize) -> Result<ArrayRef, UdfError> {
        let function = &self.spec.name;
        if args.len() != self.spec.args.len() {
            return Err(UdfError::BadArgument(format!(
                "function {function} takes {} arguments, got {}",
                self.spec.args.len(),
                args.len()
            )));
        }
        for (i, (a, t)) in args.iter().zip(&self.spec.args).enumerate() {
            if ValueType::of(a.array.data_type()) != Some(*t) {
                return Err(UdfError::BadArgument(format!(
                    "argument {} of function {function} must be {t}, got {}",
                    i + 1,
                    a.array.data_type()
                )));
            }
        }
        let max_bytes = self.limits.memory_bytes as usize;
        let mut image = layout::encode(args, &self.spec.args, num_rows, max_bytes)
            .map_err(|e| self.layout_error(e, false))?;
        let rt = runtime()?;
        let _slot = Slot::take(rt)?;
        let mut store = self.store(rt);
        let bad = |message: String| UdfError::BadOutput {
            function: function.clone(),
            message,
        };
        let instance = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| self.classify(&store, e))?;
        let memory = instance
            .get_memory(&mut store, EXPORT_MEMORY)
            .ok_or_else(|| bad("the instance has no memory".into()))?;
        let alloc: TypedFunc<(i32, i32), i32> = instance
            .get_typed_func(&mut store, EXPORT_ALLOC)
            .map_err(|e| bad(e.to_string()))?;
        let entry: TypedFunc<i32, i32> = instance
            .get_typed_func(&mut store, &self.spec.symbol)
            .map_err(|e| bad(e.to_string()))?;
        let size = image.bytes.len() as u32;
        let base = alloc
            .call(&mut store, (size as i32, 8))
            .map_err(|e| self.classify(&store, e))? as u32;
        if base == 0 {
            return Err(UdfError::ResourceLimit {
                function: function.clone(),
                what: format!(
                    "memory: quiver_alloc could not provide {} for the batch",
                    human_bytes(size as u64)
                ),
            });
        }
        if !base.is_multiple_of(8)
            || (base as usize).saturating_add(size as usize) > memory.data_size(&store)
        {
            return Err(bad(format!(
                "quiver_alloc returned {base:#x}, not an 8-aligned region of {size} bytes inside its memory"
            )));
        }
        image.rebase(base).map_err(UdfError::BadArgument)?;
        memory
            .write(&mut store, base as usize, &image.bytes)
            .map_err(|e| bad(e.to_string()))?;
        let out = match entry.call(&mut store, base as i32) {
            Ok(out) => out as u32,
            Err(e) => {
                let mut err = self.classify(&store, e);
                if let UdfError::Trap { message, .. } = &mut err
                    && let Some(panic) = panic_message(&instance, &mut store, &memory)
                {
                    *message = panic;
                }
                return Err(err);
            }
        };
        layout::decode(memory.data(&store), out, self.spec.ret, num_rows, max_bytes)
            .map_err(|e| self.layout_error(e, true))
    }
}
