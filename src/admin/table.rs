//! A console result: named, typed columns and rows of cells, turned into
//! `pgwire` responses in the text or binary format the client asked for.
//!
//! Types follow PgBouncer's: `text` for names and states, `int4` for small
//! counts, `numeric` for 64-bit counters (so its tools decode them alike).

use std::error::Error;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use futures::stream;
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse};
use pgwire::api::Type;
use pgwire::error::PgWireResult;
use pgwire::types::format::FormatOptions;
use pgwire::types::ToSqlText;
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql};

/// A column's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Int4,
    Int8,
    Numeric,
}

impl Kind {
    fn pg_type(self) -> Type {
        match self {
            Kind::Text => Type::TEXT,
            Kind::Int4 => Type::INT4,
            Kind::Int8 => Type::INT8,
            Kind::Numeric => Type::NUMERIC,
        }
    }
}

/// One value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Text(String),
    Int(i64),
    Null,
}

impl From<&str> for Cell {
    fn from(s: &str) -> Self {
        Cell::Text(s.to_owned())
    }
}

impl From<String> for Cell {
    fn from(s: String) -> Self {
        Cell::Text(s)
    }
}

impl From<Option<String>> for Cell {
    fn from(s: Option<String>) -> Self {
        s.map_or(Cell::Null, Cell::Text)
    }
}

macro_rules! int_cells {
    ($($t:ty),*) => {$(
        impl From<$t> for Cell {
            fn from(n: $t) -> Self {
                Cell::Int(i64::try_from(n).unwrap_or(i64::MAX))
            }
        }
    )*};
}
int_cells!(i32, i64, u32, u64, usize);

/// A result table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub columns: Vec<(&'static str, Kind)>,
    pub rows: Vec<Vec<Cell>>,
}

impl Table {
    pub fn new(columns: &[(&'static str, Kind)]) -> Self {
        Self {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<Cell>) {
        self.rows.push(row);
    }

    /// The columns as `pgwire` describes them, in `formats` (one for all,
    /// one per column, or none for text).
    pub fn schema(&self, formats: &[i16]) -> Vec<FieldInfo> {
        self.columns
            .iter()
            .enumerate()
            .map(|(i, (name, kind))| {
                let code = match formats {
                    [] => 0,
                    [one] => *one,
                    many => many.get(i).copied().unwrap_or(0),
                };
                let format = if code == 1 {
                    FieldFormat::Binary
                } else {
                    FieldFormat::Text
                };
                FieldInfo::new((*name).to_owned(), None, None, kind.pg_type(), format)
            })
            .collect()
    }

    /// The table as a query response.
    ///
    /// # Errors
    /// A value cannot be encoded as its column's type.
    pub fn response(&self, formats: &[i16]) -> PgWireResult<QueryResponse> {
        let schema = Arc::new(self.schema(formats));
        let options = FormatOptions::default();
        let mut rows = Vec::with_capacity(self.rows.len());
        let mut encoder = DataRowEncoder::new(schema.clone());
        for row in &self.rows {
            for (cell, field) in row.iter().zip(schema.iter()) {
                encoder.encode_field_with_type_and_format(
                    cell,
                    field.datatype(),
                    field.format(),
                    &options,
                )?;
            }
            rows.push(Ok(encoder.take_row()));
        }
        Ok(QueryResponse::new(schema, stream::iter(rows)))
    }
}

type BoxError = Box<dyn Error + Sync + Send>;

impl ToSql for Cell {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match (self, ty) {
            (Cell::Null, _) => return Ok(IsNull::Yes),
            (Cell::Text(s), _) => out.put_slice(s.as_bytes()),
            (Cell::Int(n), t) if *t == Type::INT4 => out.put_i32(i32::try_from(*n)?),
            (Cell::Int(n), t) if *t == Type::INT8 => out.put_i64(*n),
            (Cell::Int(n), t) if *t == Type::NUMERIC => numeric(*n, out),
            (Cell::Int(n), _) => out.put_slice(n.to_string().as_bytes()),
        }
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

impl ToSqlText for Cell {
    fn to_sql_text(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
        _options: &FormatOptions,
    ) -> Result<IsNull, BoxError> {
        match self {
            Cell::Null => return Ok(IsNull::Yes),
            Cell::Text(s) => out.put_slice(s.as_bytes()),
            Cell::Int(n) => out.put_slice(n.to_string().as_bytes()),
        }
        Ok(IsNull::No)
    }
}

/// An integer in `numeric`'s binary form: base-10000 digits, most
/// significant first, with the weight of the first.
fn numeric(n: i64, out: &mut BytesMut) {
    let mut rest = n.unsigned_abs();
    let mut digits = Vec::with_capacity(5);
    while rest > 0 {
        digits.push((rest % 10_000) as i16);
        rest /= 10_000;
    }
    digits.reverse();
    let ndigits = digits.len() as i16;
    out.put_i16(ndigits);
    out.put_i16(ndigits.saturating_sub(1).max(0));
    out.put_u16(if n < 0 { 0x4000 } else { 0 });
    out.put_u16(0);
    for d in digits {
        out.put_i16(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_binary_round_trips_through_postgres_types() {
        for n in [0i64, 7, 9_999, 10_000, 123_456_789, -42, i64::MAX] {
            let mut out = BytesMut::new();
            numeric(n, &mut out);
            let ndigits = i16::from_be_bytes([out[0], out[1]]);
            let weight = i16::from_be_bytes([out[2], out[3]]);
            let negative = out[4] == 0x40;
            let mut value: i128 = 0;
            for k in 0..ndigits as usize {
                let d = i16::from_be_bytes([out[8 + 2 * k], out[9 + 2 * k]]);
                value = value * 10_000 + i128::from(d);
            }
            if ndigits > 0 {
                assert_eq!(weight, ndigits - 1);
            }
            assert_eq!(if negative { -value } else { value }, i128::from(n));
        }
    }
}
