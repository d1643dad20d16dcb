//! PostgreSQL's text forms of time values, shared by the wire's results and
//! COPY TO: `time` (`17:30:15.25`) and `interval` (`1 day 02:03:00`).

use std::fmt::Write as _;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::compute::cast;

use crate::error::Result;

/// A `time` in PostgreSQL's text form: `HH:MM:SS`, with the fraction of a
/// second when there is one (`12:30:05.25`).
pub fn time_text(micros: i64) -> String {
    let mut text = String::with_capacity(15);
    push_time(&mut text, micros.unsigned_abs());
    text
}

/// An `interval` in PostgreSQL's text form (IntervalStyle `postgres`):
/// `1 year 2 mons 3 days 04:05:06.5`, `-1 days +02:00:00`, `00:00:00`.
pub fn interval_text(months: i32, days: i32, micros: i64) -> String {
    let mut text = String::new();
    let (mut is_zero, mut is_before) = (true, false);
    for (value, unit) in [
        (i64::from(months / 12), "year"),
        (i64::from(months % 12), "mon"),
        (i64::from(days), "day"),
    ] {
        if value == 0 {
            continue;
        }
        let _ = write!(
            text,
            "{}{}{value} {unit}{}",
            if is_zero { "" } else { " " },
            if is_before && value > 0 { "+" } else { "" },
            if value != 1 { "s" } else { "" }
        );
        is_before = value < 0;
        is_zero = false;
    }
    if is_zero || micros != 0 {
        text.push_str(if is_zero { "" } else { " " });
        text.push_str(if micros < 0 {
            "-"
        } else if is_before {
            "+"
        } else {
            ""
        });
        push_time(&mut text, micros.unsigned_abs());
    }
    text
}

/// Whether `micros` is a `time` PostgreSQL takes: 00:00:00 to 24:00:00.
pub fn valid_time(micros: i64) -> bool {
    (0..=86_400_000_000).contains(&micros)
}

/// Appends `HH:MM:SS[.ffffff]` (trailing zeros of the fraction dropped).
pub fn push_time(text: &mut String, micros: u64) {
    let secs = micros / 1_000_000;
    let frac = micros % 1_000_000;
    let _ = write!(
        text,
        "{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    if frac != 0 {
        let digits = format!("{frac:06}");
        text.push('.');
        text.push_str(digits.trim_end_matches('0'));
    }
}

/// A duration of `micros` as an interval's months, days and microseconds:
/// its whole 24 hours are days, as PostgreSQL's timestamp difference has them.
pub fn duration_parts(micros: i64) -> (i32, i32, i64) {
    const DAY: i64 = 86_400_000_000;
    let days = micros / DAY;
    (0, days as i32, micros - days * DAY)
}

/// The text of row `row` of an interval or duration column.
pub fn interval_value(col: &ArrayRef, row: usize) -> Result<String> {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::{
        DataType, DurationMicrosecondType, IntervalMonthDayNanoType, IntervalUnit, TimeUnit,
    };
    let one = col.slice(row, 1);
    let (months, days, micros) = if matches!(col.data_type(), DataType::Duration(_)) {
        let d = cast(&one, &DataType::Duration(TimeUnit::Microsecond))?;
        duration_parts(d.as_primitive::<DurationMicrosecondType>().value(0))
    } else {
        let i = cast(&one, &DataType::Interval(IntervalUnit::MonthDayNano))?;
        let v = i.as_primitive::<IntervalMonthDayNanoType>().value(0);
        (v.months, v.days, v.nanoseconds / 1_000)
    };
    Ok(interval_text(months, days, micros))
}

/// A decimal's text without trailing fractional zeros (`1.5000000000` is
/// `1.5`, `3.0000000000` `3`): how an unconstrained `numeric` is written.
pub fn trim_fraction(mut text: String) -> String {
    if text.contains('.') {
        let kept = text.trim_end_matches('0').trim_end_matches('.').len();
        text.truncate(kept);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_intervals_are_written_as_postgres_writes_them() {
        assert_eq!(time_text(0), "00:00:00");
        assert_eq!(time_text(63_015_250_000), "17:30:15.25");
        let hour = 3_600_000_000;
        assert_eq!(interval_text(0, 0, 0), "00:00:00");
        assert_eq!(
            interval_text(14, 3, 4 * hour + 5_500_000),
            "1 year 2 mons 3 days 04:00:05.5"
        );
        assert_eq!(interval_text(0, -1, 2 * hour), "-1 days +02:00:00");
        assert_eq!(interval_text(1, 1, 0), "1 mon 1 day");
        assert_eq!(interval_text(0, 0, -(30 * hour + 1)), "-30:00:00.000001");
        assert_eq!(interval_text(-13, 0, 0), "-1 years -1 mons");
    }
}
