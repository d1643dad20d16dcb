//! PostgreSQL's advisory locks (`pg_advisory_lock` and friends), which
//! migration tools and job queues take: application-defined keys, locked
//! per session (until unlocked or the session ends) or per transaction
//! (until COMMIT / ROLLBACK, or the statement's end outside a block).
//! Session locks nest: a key locked twice is unlocked twice.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, Int64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};

/// Every session's advisory locks (one per database).
#[derive(Debug, Default)]
pub struct AdvisoryLocks {
    /// Key → holder session and how many times it holds it.
    held: Mutex<HashMap<i64, (u64, u32)>>,
    released: Condvar,
    next_session: AtomicU64,
}

impl AdvisoryLocks {
    fn lock(&self) -> MutexGuard<'_, HashMap<i64, (u64, u32)>> {
        match self.held.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// A new session's handle.
    pub fn session(self: &Arc<Self>) -> Arc<SessionLocks> {
        Arc::new(SessionLocks {
            locks: self.clone(),
            id: self.next_session.fetch_add(1, Ordering::Relaxed) + 1,
            xact: Mutex::new(Vec::new()),
        })
    }
}

/// One session's view of the advisory locks; dropping it releases them.
#[derive(Debug)]
pub struct SessionLocks {
    locks: Arc<AdvisoryLocks>,
    id: u64,
    /// Keys locked for the current transaction (released at its end).
    xact: Mutex<Vec<i64>>,
}

impl SessionLocks {
    /// Takes `key`, waiting (when `wait`) while another session holds it.
    fn acquire(&self, key: i64, wait: bool) -> bool {
        let mut held = self.locks.lock();
        loop {
            match held.get_mut(&key) {
                None => {
                    held.insert(key, (self.id, 1));
                    return true;
                }
                Some((owner, n)) if *owner == self.id => {
                    *n += 1;
                    return true;
                }
                Some(_) if !wait => return false,
                Some(_) => {
                    held = match self.locks.released.wait(held) {
                        Ok(g) => g,
                        Err(p) => p.into_inner(),
                    };
                }
            }
        }
    }

    fn release(&self, key: i64) -> bool {
        let mut held = self.locks.lock();
        match held.get_mut(&key) {
            Some((owner, n)) if *owner == self.id => {
                *n -= 1;
                if *n == 0 {
                    held.remove(&key);
                    self.locks.released.notify_all();
                }
                true
            }
            _ => false,
        }
    }

    fn release_all(&self) {
        let mut held = self.locks.lock();
        held.retain(|_, (owner, _)| *owner != self.id);
        self.locks.released.notify_all();
    }

    /// The transaction (or, outside a block, the statement) ended: its
    /// `pg_advisory_xact_lock` keys are released.
    pub fn end_transaction(&self) {
        let keys = std::mem::take(&mut *match self.xact.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        });
        for k in keys {
            self.release(k);
        }
    }
}

impl Drop for SessionLocks {
    fn drop(&mut self) {
        self.release_all();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Lock,
    TryLock,
    XactLock,
    TryXactLock,
    Unlock,
    UnlockAll,
}

#[derive(Debug)]
struct AdvisoryUdf {
    name: &'static str,
    kind: Kind,
    signature: Signature,
    session: Arc<SessionLocks>,
}

impl PartialEq for AdvisoryUdf {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && Arc::ptr_eq(&self.session, &other.session)
    }
}

impl Eq for AdvisoryUdf {}

impl std::hash::Hash for AdvisoryUdf {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

/// The key of row `row`: one bigint, or two integers as PostgreSQL combines them.
fn keys(args: &[ArrayRef], rows: usize) -> datafusion::error::Result<Vec<Option<i64>>> {
    let ints: Vec<Int64Array> = args
        .iter()
        .map(|a| {
            let c = cast(a, &DataType::Int64)?;
            Ok(c.as_any()
                .downcast_ref::<Int64Array>()
                .cloned()
                .unwrap_or_else(|| Int64Array::from(vec![None; rows])))
        })
        .collect::<datafusion::error::Result<_>>()?;
    Ok((0..rows)
        .map(|r| match ints.as_slice() {
            [k] => k.is_valid(r).then(|| k.value(r)),
            [a, b] => (a.is_valid(r) && b.is_valid(r))
                .then(|| (a.value(r) << 32) | (b.value(r) & 0xffff_ffff)),
            _ => None,
        })
        .collect())
}

impl ScalarUDFImpl for AdvisoryUdf {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(match self.kind {
            Kind::Lock | Kind::XactLock | Kind::UnlockAll => DataType::Utf8,
            _ => DataType::Boolean,
        })
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        if self.kind == Kind::UnlockAll {
            self.session.release_all();
            return Ok(ColumnarValue::Array(Arc::new(
                datafusion::arrow::array::StringArray::from(vec![Some(""); rows]),
            )));
        }
        let mut out = Vec::with_capacity(rows);
        for key in keys(&arrays, rows)? {
            let Some(key) = key else {
                out.push(None);
                continue;
            };
            let got = match self.kind {
                // Waiting blocks this thread: leave the async workers to others.
                Kind::Lock | Kind::XactLock => {
                    tokio::task::block_in_place(|| self.session.acquire(key, true))
                }
                Kind::TryLock | Kind::TryXactLock => self.session.acquire(key, false),
                Kind::Unlock => self.session.release(key),
                Kind::UnlockAll => true,
            };
            if got && matches!(self.kind, Kind::XactLock | Kind::TryXactLock) {
                match self.session.xact.lock() {
                    Ok(mut g) => g.push(key),
                    Err(p) => p.into_inner().push(key),
                }
            }
            out.push(Some(got));
        }
        Ok(ColumnarValue::Array(match self.kind {
            Kind::Lock | Kind::XactLock => Arc::new(datafusion::arrow::array::StringArray::from(
                out.iter().map(|g| g.map(|_| "")).collect::<Vec<_>>(),
            )) as ArrayRef,
            _ => Arc::new(BooleanArray::from(out)),
        }))
    }
}

/// The advisory-lock functions of one session.
pub fn udfs(session: &Arc<SessionLocks>) -> Vec<ScalarUDF> {
    let keyed = || {
        Signature::one_of(
            vec![TypeSignature::Any(1), TypeSignature::Any(2)],
            Volatility::Volatile,
        )
    };
    [
        ("pg_advisory_lock", Kind::Lock),
        ("pg_try_advisory_lock", Kind::TryLock),
        ("pg_advisory_xact_lock", Kind::XactLock),
        ("pg_try_advisory_xact_lock", Kind::TryXactLock),
        ("pg_advisory_unlock", Kind::Unlock),
        ("pg_advisory_unlock_all", Kind::UnlockAll),
    ]
    .into_iter()
    .map(|(name, kind)| {
        let signature = if kind == Kind::UnlockAll {
            Signature::nullary(Volatility::Volatile)
        } else {
            keyed()
        };
        ScalarUDF::new_from_impl(AdvisoryUdf {
            name,
            kind,
            signature,
            session: session.clone(),
        })
    })
    .collect()
}
