//! End-to-end tests live in `tests/tests/*.rs`. This library only runs the README's code
//! blocks as doctests, so the README stays true.

#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
