//! The embedded backend's functions under their former name: callers (and tests) that work on a
//! `rusqlite::Connection` to `headoffice.db` keep working. New code goes through
//! [`crate::store::Store`].

pub use crate::store::sqlite::*;
