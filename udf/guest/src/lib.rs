//! quiver-udf-guest: write Quiver SQL functions in plain Rust.
//!
//! Build a `cdylib` for `wasm32-unknown-unknown`, load it with
//! `CREATE FUNCTION … LANGUAGE wasm AS '\x…'`, and call it from SQL. This crate
//! implements Quiver's batch ABI (documented in `quiver-udf`'s `abi` module):
//! it exports `quiver_abi_version` and `quiver_alloc`, reads the argument
//! columns in place from the batch the host wrote, and lays out the output
//! column. Your code sees typed values.
//!
//! A row-at-a-time function (`CREATE FUNCTION name(text, text) RETURNS float8`):
//!
//! ```ignore
//! quiver_udf_guest::scalar! {
//!     fn lexical_boost(doc: &str, query: &str) -> f64 {
//!         my_logic(doc, query)
//!     }
//! }
//! ```
//!
//! Arguments may be `bool`, `i64`, `f64`, `&str`, `&[f32]` (a `vector`), or an
//! `Option` of one of them to see NULLs; with a plain type a NULL argument
//! gives a NULL result without calling the body. The result may be any of
//! `bool`, `i64`, `f64`, `String`, `Vec<f32>`, an `Option` of one (None is
//! NULL), or a `Result<_, String>` (an `Err` fails the query with its message).
//!
//! A whole-set function (`CREATE FUNCTION … LANGUAGE wasm WINDOW`, called as
//! `f(…) OVER ()`), which sees every row of the partition at once:
//!
//! ```ignore
//! quiver_udf_guest::batch! {
//!     fn diversity_rank(batch: &Batch) -> Result<Output, String> {
//!         let emb = batch.column::<&[f32]>(0)?;
//!         let ranks: Vec<i64> = (0..batch.num_rows() as i64).collect();
//!         Output::of(ranks)
//!     }
//! }
//! ```
//!
//! Memory: every call runs in a fresh instance, so nothing needs freeing and
//! nothing survives between calls. A panic fails the query with its message.

use std::marker::PhantomData;

/// The ABI's layout and constants: the host's own definition (`udf/src/abi.rs`),
/// compiled into the guest too so the two cannot drift apart.
#[path = "../../src/abi.rs"]
pub mod abi;

/// A column descriptor, as the ABI lays it out (32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct RawColumn {
    pub ty: u32,
    pub flags: u32,
    pub len: u32,
    pub validity: u32,
    pub offsets: u32,
    pub values: u32,
    pub values_len: u32,
    pub reserved: u32,
}

#[repr(C)]
struct RawBatch {
    version: u32,
    num_rows: u32,
    num_columns: u32,
    reserved: u32,
}

#[unsafe(no_mangle)]
pub extern "C" fn quiver_abi_version() -> i32 {
    abi::ABI_VERSION as i32
}

#[unsafe(no_mangle)]
pub extern "C" fn quiver_alloc(size: i32, align: i32) -> i32 {
    let layout = match std::alloc::Layout::from_size_align(
        (size as u32 as usize).max(1),
        (align as u32 as usize).max(1),
    ) {
        Ok(l) => l,
        Err(_) => return 0,
    };
    // SAFETY: the layout has a non-zero size. The block is never freed: the
    // instance is dropped after the call.
    unsafe { std::alloc::alloc(layout) as usize as i32 }
}

/// The message of the last panic, as (pointer, length); read by the host after a trap.
static mut PANIC_MESSAGE: [u32; 2] = [0, 0];

#[unsafe(no_mangle)]
pub extern "C" fn quiver_panic_message() -> i32 {
    &raw const PANIC_MESSAGE as usize as i32
}

fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let text = info.to_string().into_bytes().leak();
        // SAFETY: a guest is single-threaded; the host reads this after the trap.
        unsafe {
            PANIC_MESSAGE = [text.as_ptr() as usize as u32, text.len() as u32];
        }
    }));
}

/// The arguments of one call: `num_rows` rows, one column per SQL argument.
pub struct Batch {
    num_rows: usize,
    columns: &'static [RawColumn],
}

impl Batch {
    /// Reads the batch the host wrote at `ptr`.
    ///
    /// # Safety
    /// `ptr` must be the batch pointer the host passed to the export.
    pub unsafe fn from_ptr(ptr: u32) -> Batch {
        // SAFETY: the host wrote a header and `num_columns` descriptors, 8-aligned.
        unsafe {
            let head = &*(ptr as usize as *const RawBatch);
            debug_assert_eq!(head.version, abi::ABI_VERSION);
            let cols = std::slice::from_raw_parts(
                (ptr as usize + std::mem::size_of::<RawBatch>()) as *const RawColumn,
                head.num_columns as usize,
            );
            Batch {
                num_rows: head.num_rows as usize,
                columns: cols,
            }
        }
    }

    pub fn num_rows(&self) -> usize {
        self.num_rows
    }

    pub fn num_columns(&self) -> usize {
        self.columns.len()
    }

    /// Argument `i` (0-based) as values of type `T`; an error if it has another type.
    pub fn column<'a, T: Arg<'a>>(&'a self, i: usize) -> Result<Column<'a, T>, String> {
        let raw = self
            .columns
            .get(i)
            .ok_or_else(|| format!("argument {} is missing", i + 1))?;
        if raw.ty != T::TYPE {
            return Err(format!(
                "argument {} has type code {}, the function reads type code {}",
                i + 1,
                raw.ty,
                T::TYPE
            ));
        }
        Ok(Column {
            raw,
            _t: PhantomData,
        })
    }
}

/// One argument column, read as `T`.
pub struct Column<'a, T> {
    raw: &'a RawColumn,
    _t: PhantomData<T>,
}

impl<'a, T: Arg<'a>> Column<'a, T> {
    /// The value at `row`; `None` for a NULL when `T` is not an `Option`,
    /// and for a row past the end.
    pub fn get(&self, row: usize) -> Option<T> {
        let slot = self.slot(row);
        if slot >= self.raw.len as usize {
            return None;
        }
        T::read(self.raw, slot)
    }

    fn slot(&self, row: usize) -> usize {
        if self.raw.flags & abi::FLAG_SCALAR != 0 {
            0
        } else {
            row
        }
    }
}

impl RawColumn {
    fn is_null(&self, i: usize) -> bool {
        // SAFETY: validity, when present, holds `len` bytes.
        self.validity != 0 && unsafe { *((self.validity as usize + i) as *const u8) == 0 }
    }

    /// # Safety
    /// The column must hold at least `i + 1` values of `size_of::<V>()` bytes.
    unsafe fn fixed<V: Copy>(&self, i: usize) -> V {
        // SAFETY: the host aligned `values` to 8 and wrote `len` values.
        unsafe { *((self.values as usize) as *const V).add(i) }
    }

    /// # Safety
    /// The column must be text or vector with `offsets` of `len + 1` entries.
    unsafe fn range(&self, i: usize) -> (usize, usize) {
        // SAFETY: the host wrote `len + 1` offsets.
        unsafe {
            let o = self.offsets as usize as *const u32;
            (*o.add(i) as usize, *o.add(i + 1) as usize)
        }
    }
}

/// A type an argument can be read as.
pub trait Arg<'a>: Sized {
    /// The ABI type code of the column.
    const TYPE: u32;
    /// The value in slot `i`, or `None` to skip the row (a NULL for a plain type).
    fn read(col: &'a RawColumn, i: usize) -> Option<Self>;
}

macro_rules! value_arg {
    ($t:ty, $code:expr, |$c:ident, $i:ident| $read:expr) => {
        impl<'a> Arg<'a> for $t {
            const TYPE: u32 = $code;
            fn read($c: &'a RawColumn, $i: usize) -> Option<Self> {
                if $c.is_null($i) {
                    return None;
                }
                // SAFETY: the host checked the type; `i` < len.
                Some(unsafe { $read })
            }
        }
        impl<'a> Arg<'a> for Option<$t> {
            const TYPE: u32 = $code;
            fn read(c: &'a RawColumn, i: usize) -> Option<Self> {
                Some(<$t as Arg<'a>>::read(c, i))
            }
        }
    };
}

value_arg!(bool, abi::TYPE_BOOL, |c, i| c.fixed::<u8>(i) != 0);
value_arg!(i64, abi::TYPE_INT64, |c, i| c.fixed::<i64>(i));
value_arg!(f64, abi::TYPE_FLOAT64, |c, i| c.fixed::<f64>(i));
value_arg!(&'a str, abi::TYPE_TEXT, |c, i| {
    let (s, e) = c.range(i);
    // The host passes valid UTF-8 (it comes from Arrow string arrays).
    std::str::from_utf8_unchecked(std::slice::from_raw_parts(
        (c.values as usize + s) as *const u8,
        e - s,
    ))
});
value_arg!(&'a [f32], abi::TYPE_VECTOR, |c, i| {
    let (s, e) = c.range(i);
    std::slice::from_raw_parts((c.values as usize as *const f32).add(s), e - s)
});

/// An output column being built.
pub struct Output {
    ty: u32,
    len: usize,
    validity: Vec<u8>,
    has_null: bool,
    offsets: Vec<u32>,
    values: Vec<u8>,
}

impl Output {
    pub fn new(ty: u32, capacity: usize) -> Output {
        let var = ty == abi::TYPE_TEXT || ty == abi::TYPE_VECTOR;
        Output {
            ty,
            len: 0,
            validity: Vec::with_capacity(capacity),
            has_null: false,
            offsets: if var { vec![0] } else { Vec::new() },
            values: Vec::with_capacity(capacity * 8),
        }
    }

    /// A column of the values' type (`R::TYPE`) holding `values`.
    pub fn of<R: Ret>(values: impl IntoIterator<Item = R>) -> Result<Output, String> {
        let mut out = Output::new(R::TYPE, 0);
        for v in values {
            v.push(&mut out)?;
        }
        Ok(out)
    }

    fn end_value(&mut self, valid: bool) {
        self.validity.push(valid as u8);
        self.has_null |= !valid;
        self.len += 1;
        if !self.offsets.is_empty() {
            let unit = if self.ty == abi::TYPE_VECTOR { 4 } else { 1 };
            self.offsets.push((self.values.len() / unit) as u32);
        }
    }

    /// Appends a NULL.
    pub fn push_null(&mut self) {
        let width = match self.ty {
            abi::TYPE_BOOL => 1,
            abi::TYPE_INT64 | abi::TYPE_FLOAT64 => 8,
            _ => 0,
        };
        self.values.extend(std::iter::repeat_n(0, width));
        self.end_value(false);
    }

    fn push_bytes(&mut self, bytes: &[u8]) {
        self.values.extend_from_slice(bytes);
        self.end_value(true);
    }

    /// Lays the column out in memory and returns its descriptor's address.
    pub fn finish(self) -> u32 {
        let values = self.values.leak();
        let raw = RawColumn {
            ty: self.ty,
            flags: 0,
            len: self.len as u32,
            validity: if self.has_null {
                self.validity.leak().as_ptr() as usize as u32
            } else {
                0
            },
            offsets: if self.offsets.is_empty() {
                0
            } else {
                self.offsets.leak().as_ptr() as usize as u32
            },
            values: values.as_ptr() as usize as u32,
            values_len: values.len() as u32,
            reserved: 0,
        };
        Box::leak(Box::new(raw)) as *const RawColumn as usize as u32
    }

    /// An error column: the query fails with `message`.
    pub fn error(message: &str) -> u32 {
        let mut out = Output::new(abi::TYPE_ERROR, 0);
        out.values.extend_from_slice(message.as_bytes());
        out.finish()
    }
}

/// A type a function can return.
pub trait Ret {
    const TYPE: u32;
    fn push(self, out: &mut Output) -> Result<(), String>;
}

impl Ret for bool {
    const TYPE: u32 = abi::TYPE_BOOL;
    fn push(self, out: &mut Output) -> Result<(), String> {
        out.push_bytes(&[self as u8]);
        Ok(())
    }
}
impl Ret for i64 {
    const TYPE: u32 = abi::TYPE_INT64;
    fn push(self, out: &mut Output) -> Result<(), String> {
        out.push_bytes(&self.to_le_bytes());
        Ok(())
    }
}
impl Ret for f64 {
    const TYPE: u32 = abi::TYPE_FLOAT64;
    fn push(self, out: &mut Output) -> Result<(), String> {
        out.push_bytes(&self.to_le_bytes());
        Ok(())
    }
}
impl Ret for String {
    const TYPE: u32 = abi::TYPE_TEXT;
    fn push(self, out: &mut Output) -> Result<(), String> {
        out.push_bytes(self.as_bytes());
        Ok(())
    }
}
impl Ret for Vec<f32> {
    const TYPE: u32 = abi::TYPE_VECTOR;
    fn push(self, out: &mut Output) -> Result<(), String> {
        for v in self {
            out.values.extend_from_slice(&v.to_le_bytes());
        }
        out.end_value(true);
        Ok(())
    }
}
impl<R: Ret> Ret for Option<R> {
    const TYPE: u32 = R::TYPE;
    fn push(self, out: &mut Output) -> Result<(), String> {
        match self {
            Some(v) => v.push(out),
            None => {
                out.push_null();
                Ok(())
            }
        }
    }
}
impl<R: Ret, E: std::fmt::Display> Ret for Result<R, E> {
    const TYPE: u32 = R::TYPE;
    fn push(self, out: &mut Output) -> Result<(), String> {
        match self {
            Ok(v) => v.push(out),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Runs a function body over the batch at `ptr` and returns the output
/// column's address (or an error column). Used by the macros: `ptr` must be
/// the batch pointer the host passed to the export.
#[doc(hidden)]
pub fn run(ptr: u32, body: impl FnOnce(&Batch) -> Result<Output, String>) -> u32 {
    install_panic_hook();
    // SAFETY: `ptr` is the batch pointer the host passed to the export.
    let batch = unsafe { Batch::from_ptr(ptr) };
    match body(&batch) {
        Ok(out) if out.len == batch.num_rows() => out.finish(),
        Ok(out) => Output::error(&format!(
            "the function produced {} values for {} rows",
            out.len,
            batch.num_rows()
        )),
        Err(message) => Output::error(&message),
    }
}

/// Exports a row-at-a-time SQL function; see the crate docs.
#[macro_export]
macro_rules! scalar {
    ($(#[$meta:meta])* fn $name:ident ( $($arg:ident : $ty:ty),* $(,)? ) -> $ret:ty $body:block) => {
        $(#[$meta])*
        #[unsafe(no_mangle)]
        pub extern "C" fn $name(batch: u32) -> u32 {
            $crate::run(batch, |__batch: &$crate::Batch| {
                let mut __i = 0usize;
                $(
                    let $arg = __batch.column::<$ty>(__i)?;
                    __i += 1;
                )*
                let _ = __i;
                let __n = __batch.num_rows();
                let mut __out = $crate::Output::new(<$ret as $crate::Ret>::TYPE, __n);
                for __row in 0..__n {
                    let __value = (|| -> Option<$ret> {
                        $( let $arg: $ty = $arg.get(__row)?; )*
                        Some($body)
                    })();
                    match __value {
                        Some(v) => $crate::Ret::push(v, &mut __out)?,
                        None => __out.push_null(),
                    }
                }
                Ok(__out)
            })
        }
    };
}

/// Exports a whole-batch SQL function (e.g. a window function); see the crate docs.
#[macro_export]
macro_rules! batch {
    ($(#[$meta:meta])* fn $name:ident ( $b:ident : &Batch ) -> Result<Output, String> $body:block) => {
        $(#[$meta])*
        #[unsafe(no_mangle)]
        pub extern "C" fn $name(batch: u32) -> u32 {
            $crate::run(batch, |$b: &$crate::Batch| -> Result<$crate::Output, String> { $body })
        }
    };
}
