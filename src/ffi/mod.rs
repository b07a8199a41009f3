//! The C ABI of libfactory (placeholder; see issue 3).
#![allow(unsafe_code)]
