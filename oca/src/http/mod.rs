//! HTTP semantics as pure functions: byte ranges (RFC 9110 §14) and conditional requests
//! (RFC 9110 §13).

pub mod conditional;
pub mod range;
