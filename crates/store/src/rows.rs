//! Column encodings that differ between the backends. Timestamps are `timestamptz` in PostgreSQL
//! and INTEGER microseconds in SQLite (text timestamps do not sort reliably there), behind one
//! Rust type so each query is written once.

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgTypeInfo, PgValueRef};
use sqlx::sqlite::{SqliteTypeInfo, SqliteValueRef};
use sqlx::{Database, Decode, Encode, Postgres, Sqlite, Type};
use time::OffsetDateTime;

use opentrusty_core::Timestamp;

/// A UTC instant as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct DbTime(pub OffsetDateTime);

impl From<Timestamp> for DbTime {
    fn from(t: Timestamp) -> Self {
        DbTime(t)
    }
}

fn to_micros(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000) as i64
}

fn from_micros(m: i64) -> Result<OffsetDateTime, BoxDynError> {
    Ok(OffsetDateTime::from_unix_timestamp_nanos(
        i128::from(m) * 1_000,
    )?)
}

impl Type<Postgres> for DbTime {
    fn type_info() -> PgTypeInfo {
        <OffsetDateTime as Type<Postgres>>::type_info()
    }
}

impl Encode<'_, Postgres> for DbTime {
    fn encode_by_ref(
        &self,
        buf: &mut <Postgres as Database>::ArgumentBuffer,
    ) -> Result<IsNull, BoxDynError> {
        <OffsetDateTime as Encode<Postgres>>::encode_by_ref(&self.0, buf)
    }
}

impl<'r> Decode<'r, Postgres> for DbTime {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        let t = <OffsetDateTime as Decode<Postgres>>::decode(value)?;
        Ok(DbTime(t.to_offset(time::UtcOffset::UTC)))
    }
}

impl Type<Sqlite> for DbTime {
    fn type_info() -> SqliteTypeInfo {
        <i64 as Type<Sqlite>>::type_info()
    }
}

impl Encode<'_, Sqlite> for DbTime {
    fn encode_by_ref(
        &self,
        buf: &mut <Sqlite as Database>::ArgumentBuffer,
    ) -> Result<IsNull, BoxDynError> {
        <i64 as Encode<Sqlite>>::encode(to_micros(self.0), buf)
    }
}

impl<'r> Decode<'r, Sqlite> for DbTime {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(DbTime(from_micros(<i64 as Decode<Sqlite>>::decode(
            value,
        )?)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micros_round_trip() {
        let t = opentrusty_core::now();
        assert_eq!(from_micros(to_micros(t)).unwrap(), t);
    }
}

/// A value of the protocol vocabulary stored by its name (an enum of `opentrusty-core`).
pub(crate) trait Named: Sized {
    fn name(&self) -> &'static str;
    fn from_name(name: &str) -> Option<Self>;
}

macro_rules! named {
    ($($t:ty),*) => {$(
        impl Named for $t {
            fn name(&self) -> &'static str {
                self.as_str()
            }
            fn from_name(name: &str) -> Option<Self> {
                <$t>::parse(name)
            }
        }
    )*};
}

named!(
    opentrusty_core::client::TokenEndpointAuthMethod,
    opentrusty_core::client::AccessTokenFormat,
    opentrusty_core::signing::Algorithm,
    opentrusty_core::pkce::PkceMethod
);

/// A [`Named`] column: a stored name this binary does not know is a decode error, never a
/// default, so a row written by a later release (or by hand) cannot be read as something else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ByName<T>(pub T);

impl<DB: Database, T> Type<DB> for ByName<T>
where
    String: Type<DB>,
{
    fn type_info() -> DB::TypeInfo {
        <String as Type<DB>>::type_info()
    }

    fn compatible(ty: &DB::TypeInfo) -> bool {
        <String as Type<DB>>::compatible(ty)
    }
}

impl<'r, DB: Database, T: Named> Decode<'r, DB> for ByName<T>
where
    &'r str: Decode<'r, DB>,
{
    fn decode(value: <DB as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
        let name = <&str as Decode<DB>>::decode(value)?;
        T::from_name(name)
            .map(ByName)
            .ok_or_else(|| format!("{name:?} is not a value this release knows").into())
    }
}

impl<'q, DB: Database, T: Named> Encode<'q, DB> for ByName<T>
where
    &'static str: Encode<'q, DB>,
{
    fn encode_by_ref(
        &self,
        buf: &mut <DB as Database>::ArgumentBuffer,
    ) -> Result<IsNull, BoxDynError> {
        <&'static str as Encode<'q, DB>>::encode_by_ref(&self.0.name(), buf)
    }
}
