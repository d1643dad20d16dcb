//! Placement of rows on a table's shards by a consistent-hash ring with
//! virtual nodes (`sharding = 'hash'`).
//!
//! Each shard owns `vnodes` points on a 64-bit ring, at the hash of
//! (shard, point number); a row belongs to the shard owning the first point at
//! or after the hash of its shard key, wrapping past the top. A point depends
//! only on its shard and number, so growing a table from N to M shards adds
//! the new shards' points and moves only the rows that now fall just before
//! one of them — about (M − N) / M of the rows, all to new shards — and
//! shrinking it moves only the rows of the shards removed.
//!
//! The hash of a key is xxh3-64 of a canonical byte form (integers of any
//! width as little-endian `i64`, text as UTF-8, …): it decides where stored
//! rows are, so it must not change between versions or platforms, and a key
//! written as `integer` and compared with a `bigint` literal lands on the
//! same shard. Pinned values in the tests guard both.

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Date64Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_schema::{DataType, TimeUnit};
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::engine_err;
use crate::error::Result;

/// Seed of key hashes (fixed forever: it places stored rows).
const KEY_SEED: u64 = 0x7175_6976_6572_6b31; // "quiverk1"
/// Seed of point positions (fixed forever, as [`KEY_SEED`]).
const POINT_SEED: u64 = 0x7175_6976_6572_7031; // "quiverp1"
/// The hash every NULL key has: NULL keys share one shard.
pub const NULL_KEY_HASH: u64 = 0;
/// Virtual nodes per shard unless the table says otherwise.
pub const DEFAULT_VNODES: u32 = 100;
/// Bounds of a table's shard and virtual-node counts (a ring of at most
/// 1,024 × 1,000 points: 12 MiB at most, searched in ~20 steps).
pub const MAX_SHARDS: u32 = 1024;
pub const MAX_VNODES: u32 = 1000;

/// A consistent-hash ring over shards `0..shards`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ring {
    shards: u32,
    vnodes: u32,
    /// (position, shard), sorted.
    points: Vec<(u64, u32)>,
}

impl Ring {
    /// The ring of `shards` shards with `vnodes` points each.
    pub fn new(shards: u32, vnodes: u32) -> Result<Ring> {
        if !(1..=MAX_SHARDS).contains(&shards) {
            return engine_err!(
                InvalidDefinition,
                "shards must be from 1 to {MAX_SHARDS}, not {shards}"
            );
        }
        if !(1..=MAX_VNODES).contains(&vnodes) {
            return engine_err!(
                InvalidDefinition,
                "virtual nodes per shard must be from 1 to {MAX_VNODES}, not {vnodes}"
            );
        }
        let mut points = Vec::with_capacity(shards as usize * vnodes as usize);
        for shard in 0..shards {
            for point in 0..vnodes {
                let mut id = [0u8; 8];
                id[..4].copy_from_slice(&shard.to_le_bytes());
                id[4..].copy_from_slice(&point.to_le_bytes());
                points.push((xxh3_64_with_seed(&id, POINT_SEED), shard));
            }
        }
        points.sort_unstable();
        Ok(Ring {
            shards,
            vnodes,
            points,
        })
    }

    pub fn shards(&self) -> u32 {
        self.shards
    }

    pub fn vnodes(&self) -> u32 {
        self.vnodes
    }

    /// The shard owning a key hash.
    pub fn owner(&self, hash: u64) -> u32 {
        let i = self.points.partition_point(|&(p, _)| p < hash);
        // Past the last point: the ring wraps to the first.
        self.points.get(i).unwrap_or(&self.points[0]).1
    }

    /// The shard of each row of a shard-key column.
    pub fn owners(&self, keys: &dyn Array) -> Result<Vec<u32>> {
        Ok(key_hashes(keys)?
            .into_iter()
            .map(|h| self.owner(h))
            .collect())
    }
}

/// The hash of a key given in its canonical byte form.
pub fn key_hash(canonical: &[u8]) -> u64 {
    xxh3_64_with_seed(canonical, KEY_SEED)
}

/// The hash of an integer key of any width (and of dates and timestamps,
/// whose canonical form is their integer).
pub fn int_key_hash(v: i64) -> u64 {
    key_hash(&v.to_le_bytes())
}

/// Whether a column of this type can be a shard key: [`key_hashes`]
/// hashes it (asked of an empty column, so the list of types is that one).
pub fn can_place(ty: &DataType) -> bool {
    key_hashes(arrow_array::new_empty_array(ty).as_ref()).is_ok()
}

/// The hash of each row's key ([`NULL_KEY_HASH`] for NULL).
pub fn key_hashes(keys: &dyn Array) -> Result<Vec<u64>> {
    macro_rules! ints {
        ($t:ty) => {{
            let a = keys.as_primitive::<$t>();
            each(keys, |i| int_key_hash(i64::from(a.value(i))))
        }};
    }
    Ok(match keys.data_type() {
        DataType::Int8 => ints!(Int8Type),
        DataType::Int16 => ints!(Int16Type),
        DataType::Int32 => ints!(Int32Type),
        DataType::Int64 => ints!(Int64Type),
        DataType::UInt8 => ints!(UInt8Type),
        DataType::UInt16 => ints!(UInt16Type),
        DataType::UInt32 => ints!(UInt32Type),
        DataType::UInt64 => {
            // Above i64::MAX: its own form (no signed key can equal it).
            let a = keys.as_primitive::<UInt64Type>();
            each(keys, |i| match i64::try_from(a.value(i)) {
                Ok(v) => int_key_hash(v),
                Err(_) => key_hash(&u128::from(a.value(i)).to_le_bytes()),
            })
        }
        DataType::Date32 => ints!(Date32Type),
        DataType::Date64 => ints!(Date64Type),
        DataType::Timestamp(unit, _) => match unit {
            TimeUnit::Second => ints!(TimestampSecondType),
            TimeUnit::Millisecond => ints!(TimestampMillisecondType),
            TimeUnit::Microsecond => ints!(TimestampMicrosecondType),
            TimeUnit::Nanosecond => ints!(TimestampNanosecondType),
        },
        DataType::Float32 => {
            let a = keys.as_primitive::<Float32Type>();
            each(keys, |i| float_key_hash(f64::from(a.value(i))))
        }
        DataType::Float64 => {
            let a = keys.as_primitive::<Float64Type>();
            each(keys, |i| float_key_hash(a.value(i)))
        }
        DataType::Boolean => {
            let a = keys.as_boolean();
            each(keys, |i| int_key_hash(i64::from(a.value(i))))
        }
        DataType::Utf8 => {
            let a = keys.as_string::<i32>();
            each(keys, |i| key_hash(a.value(i).as_bytes()))
        }
        DataType::LargeUtf8 => {
            let a = keys.as_string::<i64>();
            each(keys, |i| key_hash(a.value(i).as_bytes()))
        }
        DataType::Utf8View => {
            let a = keys.as_string_view();
            each(keys, |i| key_hash(a.value(i).as_bytes()))
        }
        DataType::Binary => {
            let a = keys.as_binary::<i32>();
            each(keys, |i| key_hash(a.value(i)))
        }
        DataType::FixedSizeBinary(_) => {
            let a = keys.as_fixed_size_binary();
            each(keys, |i| key_hash(a.value(i)))
        }
        other => return engine_err!(Unsupported, "a {other} column cannot be a shard key"),
    })
}

/// A float key: integral values hash as the integer (so `5.0` and `5` meet),
/// others by their bits, with -0.0 as 0.
fn float_key_hash(v: f64) -> u64 {
    // In range and integral: the exact integer (i64::MAX as f64 rounds up to 2^63).
    if v.fract() == 0.0 && v >= i64::MIN as f64 && v < i64::MAX as f64 {
        int_key_hash(v as i64)
    } else {
        key_hash(&v.to_bits().to_le_bytes())
    }
}

fn each(keys: &dyn Array, hash: impl Fn(usize) -> u64) -> Vec<u64> {
    (0..keys.len())
        .map(|i| {
            if keys.is_null(i) {
                NULL_KEY_HASH
            } else {
                hash(i)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Float64Array, Int32Array, Int64Array, StringArray};

    use super::*;

    fn keys(n: i64) -> Vec<u64> {
        (0..n).map(int_key_hash).collect()
    }

    #[test]
    fn hashes_and_placement_never_change() {
        // Stored rows are where these put them: a change here moves data.
        assert_eq!(key_hash(b"abc"), PINNED_ABC);
        assert_eq!(int_key_hash(5), PINNED_FIVE);
        let ring = Ring::new(4, DEFAULT_VNODES).expect("ring");
        let owners: Vec<u32> = keys(12).into_iter().map(|h| ring.owner(h)).collect();
        assert_eq!(owners, PINNED_OWNERS);
    }

    const PINNED_ABC: u64 = 10489030887132362878;
    const PINNED_FIVE: u64 = 17461819129074427154;
    const PINNED_OWNERS: [u32; 12] = [1, 2, 3, 2, 3, 1, 1, 1, 2, 1, 0, 2];

    #[test]
    fn shards_share_keys_evenly() {
        let ring = Ring::new(4, DEFAULT_VNODES).expect("ring");
        let mut counts = [0usize; 4];
        for h in keys(100_000) {
            counts[ring.owner(h) as usize] += 1;
        }
        for c in counts {
            let share = c as f64 / 100_000.0;
            assert!((0.18..0.32).contains(&share), "{counts:?}");
        }
    }

    #[test]
    fn resizing_moves_only_the_rows_whose_owner_changed() {
        let hashes = keys(100_000);
        let four = Ring::new(4, DEFAULT_VNODES).expect("ring");
        let five = Ring::new(5, DEFAULT_VNODES).expect("ring");
        let mut moved = 0;
        for &h in &hashes {
            let (before, after) = (four.owner(h), five.owner(h));
            // Growing 4 -> 5 moves rows to the new shard only; read the other
            // way, shrinking 5 -> 4 moves only the removed shard's rows.
            if before != after {
                assert_eq!(after, 4);
                moved += 1;
            }
        }
        // About (M - N) / M of them.
        let fraction = moved as f64 / hashes.len() as f64;
        assert!((0.14..0.26).contains(&fraction), "{fraction}");
    }

    #[test]
    fn a_key_has_one_hash_whatever_its_column_type() {
        let narrow: ArrayRef = Arc::new(Int32Array::from(vec![Some(7), None, Some(-3)]));
        let wide: ArrayRef = Arc::new(Int64Array::from(vec![Some(7), None, Some(-3)]));
        let float: ArrayRef = Arc::new(Float64Array::from(vec![Some(7.0), None, Some(-3.0)]));
        let h = key_hashes(&narrow).expect("hashes");
        assert_eq!(h, key_hashes(&wide).expect("hashes"));
        assert_eq!(h, key_hashes(&float).expect("hashes"));
        assert_eq!(h[1], NULL_KEY_HASH);
        assert_eq!(h[0], int_key_hash(7));
        let text: ArrayRef = Arc::new(StringArray::from(vec![Some("abc"), None]));
        assert_eq!(
            key_hashes(&text).expect("hashes"),
            vec![key_hash(b"abc"), NULL_KEY_HASH]
        );
        assert_ne!(float_key_hash(0.5), float_key_hash(-0.5));
        assert_eq!(float_key_hash(-0.0), int_key_hash(0));
    }

    #[test]
    fn bad_sizes_are_refused() {
        assert!(Ring::new(0, 10).is_err());
        assert!(Ring::new(MAX_SHARDS + 1, 10).is_err());
        assert!(Ring::new(2, 0).is_err());
        assert!(Ring::new(2, MAX_VNODES + 1).is_err());
        let one = Ring::new(1, 1).expect("ring");
        assert!(keys(100).into_iter().all(|h| one.owner(h) == 0));
    }

    /// The types a shard key can have are the ones keys are hashed for.
    #[test]
    fn placeable_types_are_the_hashed_ones() {
        for ty in [
            DataType::Int32,
            DataType::Utf8,
            DataType::Date32,
            DataType::Float64,
        ] {
            assert!(can_place(&ty), "{ty}");
        }
        let vector = crate::schema::vector_type(4);
        for ty in [vector, DataType::Decimal128(38, 10), DataType::Null] {
            assert!(!can_place(&ty), "{ty}");
        }
    }
}
