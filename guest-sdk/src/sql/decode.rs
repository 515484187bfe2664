//! Rows into `serde` types by column name, without a detour through JSON:
//! SQLite has no boolean, so an integer column must decode into `bool`,
//! and an error must say which column it was about.

use std::fmt;

use serde::de::value::StrDeserializer;
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, Visitor};

use super::Value;

/// A decoding error, naming the column when one is at fault.
#[derive(Debug)]
pub(crate) struct DecodeError(String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

impl de::Error for DecodeError {
    fn custom<T: fmt::Display>(message: T) -> Self {
        DecodeError(message.to_string())
    }
}

/// One row as a map from column name to value.
pub(crate) struct RowDeserializer<'a> {
    columns: &'a [String],
    values: &'a [Value],
    next: usize,
}

impl<'a> RowDeserializer<'a> {
    pub(crate) fn new(columns: &'a [String], values: &'a [Value]) -> Self {
        RowDeserializer {
            columns,
            values,
            next: 0,
        }
    }
}

impl<'de> de::Deserializer<'de> for RowDeserializer<'_> {
    type Error = DecodeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        visitor.visit_map(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

impl<'de> MapAccess<'de> for RowDeserializer<'_> {
    type Error = DecodeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DecodeError> {
        let Some(column) = self.columns.get(self.next) else {
            return Ok(None);
        };
        if self.next >= self.values.len() {
            return Ok(None);
        }
        let key: StrDeserializer<'_, DecodeError> = column.as_str().into_deserializer();
        seed.deserialize(key).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, DecodeError> {
        let index = self.next;
        self.next += 1;
        let column = self.columns.get(index).map_or("?", String::as_str);
        let value = self
            .values
            .get(index)
            .ok_or_else(|| DecodeError(format!("column `{column}`: no value")))?;
        seed.deserialize(ValueDeserializer(value))
            .map_err(|e| DecodeError(format!("column `{column}`: {e}")))
    }
}

/// One SQLite value.
struct ValueDeserializer<'a>(&'a Value);

impl<'de> de::Deserializer<'de> for ValueDeserializer<'_> {
    type Error = DecodeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Integer(i) => visitor.visit_i64(*i),
            Value::Real(f) => visitor.visit_f64(*f),
            Value::Text(s) => visitor.visit_str(s),
            Value::Blob(b) => visitor.visit_seq(de::value::SeqDeserializer::new(b.iter().copied())),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.0 {
            Value::Integer(i) => visitor.visit_bool(*i != 0),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.0 {
            Value::Integer(i) => visitor.visit_f64(*i as f64),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DecodeError> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DecodeError> {
        visitor.visit_newtype_struct(self)
    }

    serde::forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 char str string
        bytes byte_buf unit unit_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}
