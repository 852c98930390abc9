//! Conversions between Rust values and terms (placeholder).
use super::term::Term;

/// Converts a Rust value into a term.
pub trait ToTerm {
    /// The term.
    fn to_term(&self) -> Term;
}

/// Converts a term into a Rust value.
pub trait FromTerm: Sized {
    /// The value, or why the term does not fit.
    fn from_term(term: &Term) -> Result<Self, ConversionError>;
}

/// A term did not have the shape a Rust type needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected}, found {found}")]
#[non_exhaustive]
pub struct ConversionError {
    /// What the type needed.
    pub expected: &'static str,
    /// The term found, in Erlang syntax (shortened).
    pub found: String,
}
