//! `single_value(x)`: the aggregate a plain scalar subquery becomes, so that
//! DataFusion decorrelates it (it decorrelates only aggregated ones) while
//! PostgreSQL's meaning stays: the one row's value, NULL for no row, and
//! error 21000 for more than one.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Int64Array};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
};

use crate::error::{SqlError, StatusCode};

pub const NAME: &str = "single_value";

#[derive(Debug, PartialEq, Eq, Hash)]
struct SingleValue {
    signature: Signature,
}

/// The aggregate, for registering in a session.
pub fn udaf() -> AggregateUDF {
    AggregateUDF::new_from_impl(SingleValue {
        signature: Signature::any(1, Volatility::Immutable),
    })
}

impl AggregateUDFImpl for SingleValue {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types.first().cloned().unwrap_or(DataType::Null))
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(One {
            value: ScalarValue::try_from(args.return_field.data_type())?,
            rows: 0,
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(
                args.return_field
                    .as_ref()
                    .clone()
                    .with_name(format_state_name(args.name, "value"))
                    .with_nullable(true),
            ),
            Arc::new(Field::new(
                format_state_name(args.name, "rows"),
                DataType::Int64,
                false,
            )),
        ])
    }
}

#[derive(Debug)]
struct One {
    value: ScalarValue,
    rows: i64,
}

fn too_many() -> DataFusionError {
    DataFusionError::External(Box::new(SqlError::new(
        StatusCode::CardinalityViolation,
        "more than one row returned by a subquery used as an expression",
    )))
}

impl One {
    fn add(&mut self, value: ScalarValue, rows: i64) -> Result<()> {
        if rows == 0 {
            return Ok(());
        }
        self.rows += rows;
        if self.rows > 1 {
            return Err(too_many());
        }
        self.value = value;
        Ok(())
    }
}

impl Accumulator for One {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let Some(v) = values.first() else {
            return Ok(());
        };
        for i in 0..v.len() {
            self.add(ScalarValue::try_from_array(v, i)?, 1)?;
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(self.value.clone())
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.value.size()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![
            self.value.clone(),
            ScalarValue::Int64(Some(self.rows)),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let (Some(values), Some(rows)) = (states.first(), states.get(1)) else {
            return Ok(());
        };
        let rows = rows
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(|| DataFusionError::Internal("single_value: row counts".into()))?;
        for i in 0..values.len() {
            self.add(ScalarValue::try_from_array(values, i)?, rows.value(i))?;
        }
        Ok(())
    }
}
