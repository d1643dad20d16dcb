use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, DictionaryArray,
    FixedSizeListArray, Float32Array, Float64Array, Int8Array, Int32Array, Int64Array, ListArray,
    StringArray, StringViewArray, TimestampNanosecondArray, TimestampSecondArray, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Float32Type, Int32Type};
use arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;
use pgwire::api::portal::Format;
use pgwire::api::results::FieldFormat;
use pgwire::error::ErrorInfo;
use quiver_sql::VECTOR_TYPE_OID;

use super::*;

fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    RecordBatch::try_from_iter(columns).unwrap()
}

/// Encodes a one-column batch and returns each row's value.
fn values_of(array: ArrayRef, format: FieldFormat) -> Vec<Option<Vec<u8>>> {
    let rows = encode_batch(&batch(vec![("c", array)]), &[format], &[]).unwrap();
    rows.iter()
        .map(|r| {
            assert_eq!(r.field_count, 1);
            split_row(r).pop().unwrap()
        })
        .collect()
}

fn texts(array: ArrayRef) -> Vec<Option<String>> {
    values_of(array, FieldFormat::Text)
        .into_iter()
        .map(|v| v.map(|b| String::from_utf8(b).unwrap()))
        .collect()
}

fn s(v: &str) -> Option<String> {
    Some(v.to_owned())
}

fn vectors_fixed() -> ArrayRef {
    Arc::new(
        FixedSizeListArray::from_iter_primitive::<Float32Type, _, _>(
            vec![
                Some(vec![Some(1.0), Some(2.5), Some(-0.25)]),
                None,
                Some(vec![Some(0.1), Some(0.0), Some(-3.0)]),
            ],
            3,
        ),
    )
}

#[test]
fn text_format_scalars() {
    assert_eq!(
        texts(Arc::new(Int32Array::from(vec![Some(1), None, Some(-7)]))),
        vec![s("1"), None, s("-7")]
    );
    assert_eq!(
        texts(Arc::new(BooleanArray::from(vec![
            Some(true),
            Some(false),
            None
        ]))),
        vec![s("t"), s("f"), None]
    );
    assert_eq!(
        texts(Arc::new(Float64Array::from(vec![
            1.5,
            f64::NAN,
            f64::NEG_INFINITY
        ]))),
        vec![s("1.5"), s("NaN"), s("-Infinity")]
    );
    assert_eq!(
        texts(Arc::new(StringArray::from(vec![Some("héllo"), None]))),
        vec![s("héllo"), None]
    );
    assert_eq!(
        texts(Arc::new(StringViewArray::from(vec![
            "a view string longer than 12"
        ]))),
        vec![s("a view string longer than 12")]
    );
    assert_eq!(
        texts(Arc::new(UInt64Array::from(vec![u64::MAX]))),
        vec![s("18446744073709551615")]
    );
    assert_eq!(
        texts(Arc::new(Int8Array::from(vec![b'b' as i8]))),
        vec![s("b")]
    );
    assert_eq!(
        texts(Arc::new(BinaryArray::from(vec![&b"\x00\xffA"[..]]))),
        vec![s("\\x00ff41")]
    );
}

#[test]
fn text_format_dates_timestamps_decimals() {
    assert_eq!(
        texts(Arc::new(Date32Array::from(vec![19_723]))),
        vec![s("2024-01-01")]
    );
    assert_eq!(
        texts(Arc::new(TimestampSecondArray::from(vec![1_704_164_645]))),
        vec![s("2024-01-02 03:04:05")]
    );
    let tz = TimestampNanosecondArray::from(vec![1_704_164_645_250_000_000]).with_timezone("UTC");
    assert_eq!(texts(Arc::new(tz)), vec![s("2024-01-02 03:04:05.25+00")]);
    let dec = Decimal128Array::from(vec![Some(12_345), Some(-5), None])
        .with_precision_and_scale(10, 2)
        .unwrap();
    assert_eq!(texts(Arc::new(dec)), vec![s("123.45"), s("-0.05"), None]);
}

#[test]
fn vectors_in_text_format() {
    assert_eq!(
        texts(vectors_fixed()),
        vec![s("[1,2.5,-0.25]"), None, s("[0.1,0,-3]")]
    );
    let list = ListArray::from_iter_primitive::<Float32Type, _, _>(vec![
        Some(vec![Some(1.0)]),
        Some(vec![]),
    ]);
    assert_eq!(texts(Arc::new(list)), vec![s("[1]"), s("[]")]);
}

#[test]
fn vectors_in_binary_format() {
    let values = values_of(vectors_fixed(), FieldFormat::Binary);
    let mut expected = vec![0, 3, 0, 0];
    for v in [1.0f32, 2.5, -0.25] {
        expected.extend_from_slice(&v.to_be_bytes());
    }
    assert_eq!(values[0].as_deref(), Some(&expected[..]));
    assert_eq!(values[1], None);
}

#[test]
fn vectors_with_null_elements_are_errors() {
    let list = FixedSizeListArray::from_iter_primitive::<Float32Type, _, _>(
        vec![Some(vec![Some(1.0), None])],
        2,
    );
    let err = encode_batch(&batch(vec![("v", Arc::new(list) as ArrayRef)]), &[], &[]).unwrap_err();
    assert_eq!(err.code, StatusCode::DataException);
}

#[test]
fn binary_format_scalars() {
    assert_eq!(
        values_of(Arc::new(Int64Array::from(vec![-2])), FieldFormat::Binary),
        vec![Some((-2i64).to_be_bytes().to_vec())]
    );
    assert_eq!(
        values_of(Arc::new(Int8Array::from(vec![5])), FieldFormat::Binary),
        vec![Some(vec![5u8])]
    );
    assert_eq!(
        values_of(Arc::new(Float32Array::from(vec![0.5])), FieldFormat::Binary),
        vec![Some(0.5f32.to_be_bytes().to_vec())]
    );
    assert_eq!(
        values_of(
            Arc::new(BooleanArray::from(vec![true])),
            FieldFormat::Binary
        ),
        vec![Some(vec![1])]
    );
    // 2000-01-01 is day 0 for Postgres
    assert_eq!(
        values_of(
            Arc::new(Date32Array::from(vec![10_958])),
            FieldFormat::Binary
        ),
        vec![Some(1i32.to_be_bytes().to_vec())]
    );
    assert_eq!(
        values_of(
            Arc::new(TimestampSecondArray::from(vec![946_684_801])),
            FieldFormat::Binary
        ),
        vec![Some(1_000_000i64.to_be_bytes().to_vec())]
    );
    let dec = Decimal128Array::from(vec![125])
        .with_precision_and_scale(5, 1)
        .unwrap();
    // 12.5: ndigits 2, weight 0, positive, dscale 1, digits 12 5000
    assert_eq!(
        values_of(Arc::new(dec), FieldFormat::Binary),
        vec![Some(vec![0, 2, 0, 0, 0, 0, 0, 1, 0, 12, 0x13, 0x88])]
    );
}

#[test]
fn dictionaries_are_decoded() {
    let dict: DictionaryArray<Int32Type> = vec!["a", "b", "a"].into_iter().collect();
    assert_eq!(texts(Arc::new(dict)), vec![s("a"), s("b"), s("a")]);
}

#[test]
fn mixed_formats_per_column() {
    let b = batch(vec![
        ("id", Arc::new(Int32Array::from(vec![7])) as ArrayRef),
        ("name", Arc::new(StringArray::from(vec!["x"]))),
    ]);
    let rows = encode_batch(&b, &[FieldFormat::Binary, FieldFormat::Text], &[]).unwrap();
    assert_eq!(
        split_row(&rows[0]),
        vec![Some(7i32.to_be_bytes().to_vec()), Some(b"x".to_vec())]
    );
}

#[test]
fn field_infos_carry_types_and_formats() {
    let schema = Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new(
            "embedding",
            DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float32, true)), 3),
            true,
        ),
    ]);
    let fields = field_infos(&schema, &[FieldFormat::Binary]);
    assert_eq!(fields[0].name(), "id");
    assert_eq!(fields[0].datatype().oid(), 20);
    assert_eq!(fields[0].format(), FieldFormat::Binary);
    assert_eq!(fields[0].type_size(), 8);
    assert_eq!(fields[1].datatype().oid(), VECTOR_TYPE_OID);
    assert_eq!(fields[1].format(), FieldFormat::Text);
}

#[test]
fn result_format_codes_are_checked() {
    assert_eq!(
        result_formats(&Format::UnifiedBinary, 2).unwrap(),
        vec![FieldFormat::Binary; 2]
    );
    assert_eq!(
        result_formats(&Format::Individual(vec![1, 0]), 2).unwrap(),
        vec![FieldFormat::Binary, FieldFormat::Text]
    );
    let err = ErrorInfo::from(result_formats(&Format::Individual(vec![1, 0]), 3).unwrap_err());
    assert_eq!(err.code, "08P01");
}

#[tokio::test]
async fn stream_errors_become_error_items() {
    let schema = Arc::new(Schema::new(vec![Field::new("a", DataType::Int32, false)]));
    let good = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![Arc::new(Int32Array::from(vec![1, 2]))],
    )
    .unwrap();
    let items = vec![
        Ok(good),
        Err(DataFusionError::ResourcesExhausted("memory pool".into())),
    ];
    let batches: SendableRecordBatchStream = Box::pin(RecordBatchStreamAdapter::new(
        Arc::clone(&schema),
        futures::stream::iter(items),
    ));
    let out: Vec<_> = row_stream(batches, &schema, vec![FieldFormat::Text])
        .collect()
        .await;
    assert_eq!(out.len(), 3);
    assert!(out[0].is_ok() && out[1].is_ok());
    let err = match out.into_iter().nth(2) {
        Some(Err(e)) => ErrorInfo::from(e),
        _ => panic!("expected an error item"),
    };
    assert_eq!(err.code, "53200");
}

#[test]
fn uuid_and_jsonb_have_their_binary_forms() {
    let uuid = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
    let b = batch(vec![
        ("u", Arc::new(StringArray::from(vec![uuid])) as ArrayRef),
        (
            "j",
            Arc::new(StringArray::from(vec![r#"{"a": 1}"#])) as ArrayRef,
        ),
    ]);
    let formats = [FieldFormat::Binary, FieldFormat::Binary];
    let rows = encode_batch(&b, &formats, &[WireType::Uuid, WireType::Jsonb]).unwrap();
    let fields = split_row(&rows[0]);
    let u = fields[0].as_ref().expect("uuid");
    assert_eq!(u.len(), 16);
    assert_eq!(&u[..4], &[0xa0, 0xee, 0xbc, 0x99]);
    assert_eq!(fields[1].as_deref(), Some(&b"\x01{\"a\": 1}"[..]));
    // As text both are their strings.
    let rows = encode_batch(&b, &[], &[WireType::Uuid, WireType::Jsonb]).unwrap();
    assert_eq!(split_row(&rows[0])[0].as_deref(), Some(uuid.as_bytes()));
}

#[test]
fn arrays_are_postgres_arrays_in_both_formats() {
    let mut b = arrow::array::ListBuilder::new(arrow::array::StringBuilder::new());
    b.values().append_value("a");
    b.values().append_value("b c");
    b.values().append_null();
    b.values().append_value("");
    b.values().append_value("q\"x");
    b.append(true);
    b.append(true);
    b.append(false);
    let list = Arc::new(b.finish()) as ArrayRef;
    let text = values_of(list.clone(), FieldFormat::Text);
    assert_eq!(
        text[0].as_deref(),
        Some(&br#"{a,"b c",NULL,"","q\"x"}"#[..])
    );
    assert_eq!(text[1].as_deref(), Some(&b"{}"[..]));
    assert_eq!(text[2], None);
    let binary = values_of(list, FieldFormat::Binary);
    let v = binary[0].as_deref().expect("array");
    // ndim 1, has NULLs, text elements, 5 of them from 1.
    assert_eq!(
        &v[..20],
        &[0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 25, 0, 0, 0, 5, 0, 0, 0, 1]
    );
    assert_eq!(&v[20..25], &[0, 0, 0, 1, b'a']);
    let empty = binary[1].as_deref().expect("empty array");
    assert_eq!(empty, &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 25]);
}
