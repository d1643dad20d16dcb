//! The byte layout of [`crate::abi`]: writing a batch of arguments into a
//! guest region and reading an output column back, checking every pointer
//! and length the guest hands over.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef, BooleanArray, Float32Array, Float64Array, Int64Array};
use arrow_array::{ListArray, StringArray};
use arrow_buffer::{Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field};

use crate::ValueType;
use crate::abi::{
    ABI_VERSION, COLUMN_SIZE, FLAG_SCALAR, HEADER_SIZE, TYPE_ERROR, TYPE_TEXT, TYPE_VECTOR,
};
use crate::host::Arg;

/// A batch laid out with pointers relative to the start of its region; the
/// host patches them once the guest has allocated the region.
pub(crate) struct Image {
    pub bytes: Vec<u8>,
    pointer_fields: Vec<usize>,
}

impl Image {
    /// Turns region-relative pointers into guest addresses.
    pub fn rebase(&mut self, base: u32) -> Result<(), String> {
        for &at in &self.pointer_fields {
            let rel = read_u32(&self.bytes, at).unwrap_or(0);
            if rel != 0 {
                let abs = rel
                    .checked_add(base)
                    .ok_or("the batch does not fit in 32-bit guest memory")?;
                self.bytes[at..at + 4].copy_from_slice(&abs.to_le_bytes());
            }
        }
        Ok(())
    }
}

fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn align8(buf: &mut Vec<u8>) {
    buf.resize(buf.len().next_multiple_of(8), 0);
}

/// Lays out the arguments of one call.
pub(crate) fn encode(
    args: &[Arg<'_>],
    types: &[ValueType],
    num_rows: usize,
    max_bytes: usize,
) -> Result<Image, Decode> {
    // Checked before each column is written: the host never builds more
    // than the guest could hold.
    let check = |buf: &Vec<u8>, more: usize| -> Result<(), Decode> {
        if buf.len().saturating_add(more) > max_bytes {
            return Err(Decode::TooLarge(format!(
                "the arguments need more than {max_bytes} bytes of guest memory"
            )));
        }
        Ok(())
    };
    let n = args.len();
    let mut buf = vec![0u8; HEADER_SIZE + COLUMN_SIZE * n];
    put_u32(&mut buf, 0, ABI_VERSION);
    put_u32(&mut buf, 4, to_u32(num_rows)?);
    put_u32(&mut buf, 8, to_u32(n)?);
    let mut pointer_fields = Vec::with_capacity(3 * n);
    for (i, (arg, ty)) in args.iter().zip(types).enumerate() {
        let array = arg.array;
        let len = if arg.scalar {
            1.min(array.len())
        } else {
            array.len()
        };
        if !arg.scalar && len != num_rows {
            return Err(Decode::Invalid(format!(
                "argument {} has {len} values for {num_rows} rows",
                i + 1
            )));
        }
        check(&buf, 24 + 13 * len)?;
        let validity = if array.null_count() > 0 {
            align8(&mut buf);
            let at = buf.len();
            buf.extend((0..len).map(|r| u8::from(array.is_valid(r))));
            at
        } else {
            0
        };
        let mut offsets = 0;
        align8(&mut buf);
        let values;
        match ty {
            ValueType::Bool => {
                values = buf.len();
                let a = array.as_boolean();
                buf.extend((0..len).map(|r| u8::from(a.value(r))));
            }
            ValueType::Int64 => {
                values = buf.len();
                for v in &array.as_primitive::<Int64Type>().values()[..len] {
                    buf.extend_from_slice(&v.to_le_bytes());
                }
            }
            ValueType::Float64 => {
                values = buf.len();
                for v in &array.as_primitive::<Float64Type>().values()[..len] {
                    buf.extend_from_slice(&v.to_le_bytes());
                }
            }
            ValueType::Text => {
                offsets = buf.len();
                buf.resize(offsets + 4 * (len + 1), 0);
                align8(&mut buf);
                values = buf.len();
                let text_bytes: usize = match array.data_type() {
                    DataType::Utf8 => {
                        let o = array.as_string::<i32>().value_offsets();
                        (o[len] - o[0]) as usize
                    }
                    DataType::LargeUtf8 => {
                        let o = array.as_string::<i64>().value_offsets();
                        (o[len] - o[0]) as usize
                    }
                    _ => {
                        let a = array.as_string_view();
                        (0..len).map(|r| a.value(r).len()).sum()
                    }
                };
                check(&buf, text_bytes)?;
                let put = |buf: &mut Vec<u8>, r: usize, s: &str| -> Result<(), Decode> {
                    buf.extend_from_slice(s.as_bytes());
                    let end = to_u32(buf.len() - values)?;
                    put_u32(buf, offsets + 4 * (r + 1), end);
                    Ok(())
                };
                match array.data_type() {
                    DataType::Utf8 => {
                        let a = array.as_string::<i32>();
                        for r in 0..len {
                            put(&mut buf, r, if a.is_valid(r) { a.value(r) } else { "" })?;
                        }
                    }
                    DataType::LargeUtf8 => {
                        let a = array.as_string::<i64>();
                        for r in 0..len {
                            put(&mut buf, r, if a.is_valid(r) { a.value(r) } else { "" })?;
                        }
                    }
                    _ => {
                        let a = array.as_string_view();
                        for r in 0..len {
                            put(&mut buf, r, if a.is_valid(r) { a.value(r) } else { "" })?;
                        }
                    }
                }
            }
            ValueType::Vector => {
                offsets = buf.len();
                buf.resize(offsets + 4 * (len + 1), 0);
                align8(&mut buf);
                values = buf.len();
                let (child, ranges): (&ArrayRef, Vec<(usize, usize)>) = match array.data_type() {
                    DataType::FixedSizeList(_, _) => {
                        let a = array.as_fixed_size_list();
                        let d = a.value_length() as usize;
                        let ranges = (0..len)
                            .map(|r| {
                                let s = a.value_offset(r) as usize;
                                if a.is_valid(r) { (s, s + d) } else { (s, s) }
                            })
                            .collect();
                        (a.values(), ranges)
                    }
                    DataType::List(_) => {
                        let a = array.as_list::<i32>();
                        let o = a.value_offsets();
                        let ranges = (0..len)
                            .map(|r| {
                                let s = o[r] as usize;
                                if a.is_valid(r) {
                                    (s, o[r + 1] as usize)
                                } else {
                                    (s, s)
                                }
                            })
                            .collect();
                        (a.values(), ranges)
                    }
                    _ => {
                        let a = array.as_list::<i64>();
                        let o = a.value_offsets();
                        let ranges = (0..len)
                            .map(|r| {
                                let s = o[r] as usize;
                                if a.is_valid(r) {
                                    (s, o[r + 1] as usize)
                                } else {
                                    (s, s)
                                }
                            })
                            .collect();
                        (a.values(), ranges)
                    }
                };
                check(&buf, 4 * ranges.iter().map(|(s, e)| e - s).sum::<usize>())?;
                let floats = child.as_primitive::<Float32Type>().values();
                let mut elements = 0usize;
                for (r, (s, e)) in ranges.into_iter().enumerate() {
                    for v in &floats[s..e] {
                        buf.extend_from_slice(&v.to_le_bytes());
                    }
                    elements += e - s;
                    put_u32(&mut buf, offsets + 4 * (r + 1), to_u32(elements)?);
                }
            }
        }
        let values_len = buf.len() - values;
        let d = HEADER_SIZE + COLUMN_SIZE * i;
        put_u32(&mut buf, d, ty.code());
        put_u32(&mut buf, d + 4, if arg.scalar { FLAG_SCALAR } else { 0 });
        put_u32(&mut buf, d + 8, to_u32(len)?);
        put_u32(&mut buf, d + 12, to_u32(validity)?);
        put_u32(&mut buf, d + 16, to_u32(offsets)?);
        put_u32(&mut buf, d + 20, to_u32(values)?);
        put_u32(&mut buf, d + 24, to_u32(values_len)?);
        pointer_fields.extend([d + 12, d + 16, d + 20]);
    }
    align8(&mut buf);
    to_u32(buf.len())?;
    Ok(Image {
        bytes: buf,
        pointer_fields,
    })
}

fn to_u32(n: usize) -> Result<u32, Decode> {
    u32::try_from(n)
        .map_err(|_| Decode::TooLarge("the batch does not fit in 32-bit guest memory".into()))
}

fn read_u32(mem: &[u8], at: usize) -> Option<u32> {
    let b = mem.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// `len` bytes at guest pointer `ptr`, or an error naming `what`.
fn region<'m>(mem: &'m [u8], ptr: u32, len: usize, what: &str) -> Result<&'m [u8], String> {
    let start = ptr as usize;
    start
        .checked_add(len)
        .and_then(|end| mem.get(start..end))
        .ok_or_else(|| {
            format!(
                "{what} at {ptr:#x} (+{len} bytes) is outside the guest's memory of {} bytes",
                mem.len()
            )
        })
}

/// What laying out a batch or reading an output column found wrong.
pub(crate) enum Decode {
    /// The guest returned a `TYPE_ERROR` column with this message.
    GuestError(String),
    /// The guest broke the ABI (or, encoding, an argument cannot be passed).
    Invalid(String),
    /// The batch or the result would exceed the function's memory limit.
    TooLarge(String),
}

impl From<String> for Decode {
    fn from(s: String) -> Self {
        Decode::Invalid(s)
    }
}

/// Reads and checks the output column at `ptr`, expanding a scalar to `num_rows`.
pub(crate) fn decode(
    mem: &[u8],
    ptr: u32,
    ret: ValueType,
    num_rows: usize,
    max_bytes: usize,
) -> Result<ArrayRef, Decode> {
    if ptr == 0 {
        return Err(Decode::Invalid("a null column pointer".into()));
    }
    let d = region(mem, ptr, COLUMN_SIZE, "the output column descriptor")?;
    let field = |i: usize| read_u32(d, 4 * i).unwrap_or(0);
    let (ty, flags, len, validity, offsets, values, values_len) = (
        field(0),
        field(1),
        field(2) as usize,
        field(3),
        field(4),
        field(5),
        field(6) as usize,
    );
    let values_bytes = region(mem, values, values_len, "the output values")?;
    if ty == TYPE_ERROR {
        let msg = String::from_utf8_lossy(&values_bytes[..values_len.min(2000)]).into_owned();
        return Err(Decode::GuestError(msg));
    }
    if ty != ret.code() {
        return Err(Decode::Invalid(format!(
            "an output column of type code {ty}, expected {} ({ret})",
            ret.code()
        )));
    }
    let scalar = flags & FLAG_SCALAR != 0;
    let expected = if scalar { 1 } else { num_rows };
    if len != expected {
        return Err(Decode::Invalid(format!(
            "{len} values for {num_rows} rows{}",
            if scalar { " (a scalar has 1)" } else { "" }
        )));
    }
    let nulls = if validity != 0 {
        let v = region(mem, validity, len, "the output validity bytes")?;
        Some(NullBuffer::from(
            v.iter().map(|b| *b != 0).collect::<Vec<_>>(),
        ))
    } else {
        None
    };
    let fixed = |width: usize| -> Result<&[u8], String> {
        values_bytes
            .get(..len * width)
            .ok_or_else(|| format!("{values_len} value bytes for {len} values of {width} bytes"))
    };
    let array: ArrayRef = match ret {
        ValueType::Bool => {
            let v = fixed(1)?;
            Arc::new(BooleanArray::new(
                v.iter().map(|b| *b != 0).collect(),
                nulls,
            ))
        }
        ValueType::Int64 => {
            let v = fixed(8)?;
            let vals: Vec<i64> = v
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect();
            Arc::new(Int64Array::new(ScalarBuffer::from(vals), nulls))
        }
        ValueType::Float64 => {
            let v = fixed(8)?;
            let vals: Vec<f64> = v
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .collect();
            Arc::new(Float64Array::new(ScalarBuffer::from(vals), nulls))
        }
        ValueType::Text | ValueType::Vector => {
            let unit = if ret.code() == TYPE_TEXT { 1 } else { 4 };
            debug_assert!(ret.code() == TYPE_TEXT || ret.code() == TYPE_VECTOR);
            let raw = region(mem, offsets, 4 * (len + 1), "the output offsets")?;
            let offs: Vec<u32> = raw
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            let (first, last) = (offs[0] as usize, offs[len] as usize);
            if offs.windows(2).any(|w| w[1] < w[0]) {
                return Err(Decode::Invalid("output offsets decrease".into()));
            }
            if last * unit > values_len || last > i32::MAX as usize {
                return Err(Decode::Invalid(format!(
                    "output offsets end at {last}, past the {values_len} value bytes"
                )));
            }
            let rebased = OffsetBuffer::new(ScalarBuffer::from(
                offs.iter()
                    .map(|o| (*o as usize - first) as i32)
                    .collect::<Vec<i32>>(),
            ));
            let data = &values_bytes[first * unit..last * unit];
            if ret == ValueType::Text {
                Arc::new(
                    StringArray::try_new(rebased, Buffer::from(data), nulls)
                        .map_err(|e| Decode::Invalid(format!("output text: {e}")))?,
                )
            } else {
                let floats: Vec<f32> = data
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                Arc::new(
                    ListArray::try_new(
                        Arc::new(Field::new("item", DataType::Float32, true)),
                        rebased,
                        Arc::new(Float32Array::from(floats)),
                        nulls,
                    )
                    .map_err(|e| Decode::Invalid(format!("output vectors: {e}")))?,
                )
            }
        }
    };
    if scalar && num_rows != 1 {
        let one = array
            .to_data()
            .get_slice_memory_size()
            .unwrap_or(usize::MAX);
        if one.saturating_mul(num_rows) > max_bytes {
            return Err(Decode::TooLarge(format!(
                "its one result repeated for {num_rows} rows needs more than {max_bytes} bytes"
            )));
        }
        let idx = arrow_array::UInt32Array::from(vec![0u32; num_rows]);
        return arrow_select_take(&array, &idx).map_err(Decode::Invalid);
    }
    Ok(array)
}

fn arrow_select_take(array: &ArrayRef, idx: &arrow_array::UInt32Array) -> Result<ArrayRef, String> {
    arrow_select::take::take(array.as_ref(), idx, None).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;

    /// A guest memory holding one output column descriptor at 64 and its buffers.
    fn memory(ty: u32, flags: u32, len: u32, offsets: &[u32], values: &[u8]) -> Vec<u8> {
        let mut mem = vec![0u8; 4096];
        let words = [
            ty,
            flags,
            len,
            0,
            if offsets.is_empty() { 0 } else { 256 },
            1024,
            values.len() as u32,
            0,
        ];
        for (i, w) in words.iter().enumerate() {
            put_u32(&mut mem, 64 + 4 * i, *w);
        }
        for (i, o) in offsets.iter().enumerate() {
            put_u32(&mut mem, 256 + 4 * i, *o);
        }
        mem[1024..1024 + values.len()].copy_from_slice(values);
        mem
    }

    fn invalid(r: Result<ArrayRef, Decode>) -> String {
        match r {
            Err(Decode::Invalid(m)) => m,
            Err(Decode::GuestError(m) | Decode::TooLarge(m)) => panic!("other error {m}"),
            Ok(a) => panic!("accepted {a:?}"),
        }
    }

    #[test]
    fn reads_text_and_expands_scalars() {
        let mem = memory(TYPE_TEXT, 0, 2, &[0, 2, 5], b"hiyou");
        let a = decode(&mem, 64, ValueType::Text, 2, 1 << 20)
            .ok()
            .expect("text");
        assert_eq!(a.as_string::<i32>().value(1), "you");
        let mem = memory(
            crate::abi::TYPE_FLOAT64,
            FLAG_SCALAR,
            1,
            &[],
            &2.5f64.to_le_bytes(),
        );
        let a = decode(&mem, 64, ValueType::Float64, 3, 1 << 20)
            .ok()
            .expect("scalar");
        assert_eq!(
            a.as_primitive::<Float64Type>().values().as_ref(),
            &[2.5, 2.5, 2.5]
        );
    }

    #[test]
    fn rejects_what_breaks_the_abi() {
        let text = |offsets: &[u32], values: &[u8]| memory(TYPE_TEXT, 0, 2, offsets, values);
        assert!(
            invalid(decode(
                &text(&[0, 3, 2], b"abc"),
                64,
                ValueType::Text,
                2,
                1 << 20
            ))
            .contains("decrease")
        );
        assert!(
            invalid(decode(
                &text(&[0, 1, 9], b"abc"),
                64,
                ValueType::Text,
                2,
                1 << 20
            ))
            .contains("past")
        );
        assert!(
            invalid(decode(
                &text(&[0, 1, 2], &[0xff, 0xfe]),
                64,
                ValueType::Text,
                2,
                1 << 20
            ))
            .contains("text")
        );
        assert!(
            invalid(decode(
                &text(&[0, 1, 2], b"ab"),
                64,
                ValueType::Text,
                3,
                1 << 20
            ))
            .contains("2 values for 3 rows")
        );
        assert!(
            invalid(decode(
                &text(&[0, 1, 2], b"ab"),
                64,
                ValueType::Float64,
                2,
                1 << 20
            ))
            .contains("type code")
        );
        assert!(
            invalid(decode(
                &text(&[0, 1, 2], b"ab"),
                4090,
                ValueType::Text,
                2,
                1 << 20
            ))
            .contains("outside")
        );
        assert!(
            invalid(decode(
                &text(&[0, 1, 2], b"ab"),
                0,
                ValueType::Text,
                2,
                1 << 20
            ))
            .contains("null")
        );
        let floats = memory(crate::abi::TYPE_FLOAT64, 0, 3, &[], &[0u8; 16]);
        assert!(
            invalid(decode(&floats, 64, ValueType::Float64, 3, 1 << 20)).contains("16 value bytes")
        );
        let mem = memory(TYPE_ERROR, 0, 0, &[], b"nope");
        assert!(
            matches!(decode(&mem, 64, ValueType::Text, 1, 1 << 20), Err(Decode::GuestError(m)) if m == "nope")
        );
    }

    #[test]
    fn lays_out_columns_with_rebased_pointers() {
        let texts = StringArray::from(vec![Some("ab"), None, Some("c")]);
        let query = StringArray::from(vec!["q"]);
        let args = [
            Arg {
                array: &texts,
                scalar: false,
            },
            Arg {
                array: &query,
                scalar: true,
            },
        ];
        let mut image = encode(&args, &[ValueType::Text, ValueType::Text], 3, 1 << 20)
            .ok()
            .expect("encode");
        image.rebase(4096).expect("rebase");
        let b = &image.bytes;
        let word = |at: usize| read_u32(b, at).expect("word");
        assert_eq!((word(0), word(4), word(8)), (1, 3, 2));
        // column 0: text, 3 values, validity present, offsets 0,2,2,3
        assert_eq!((word(16), word(20), word(24)), (TYPE_TEXT, 0, 3));
        let (validity, offsets, values) = (word(28) - 4096, word(32) - 4096, word(36) - 4096);
        assert_eq!(&b[validity as usize..validity as usize + 3], &[1, 0, 1]);
        let offs: Vec<u32> = (0..4).map(|i| word(offsets as usize + 4 * i)).collect();
        assert_eq!(offs, vec![0, 2, 2, 3]);
        assert_eq!(&b[values as usize..values as usize + 3], b"abc");
        assert!(values % 8 == 0 && offsets % 8 == 0);
        // column 1: a scalar
        assert_eq!(
            (word(48), word(52), word(56), word(60)),
            (TYPE_TEXT, FLAG_SCALAR, 1, 0)
        );
    }
}
