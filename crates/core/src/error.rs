//! Validation errors of the domain layer. Each names the offending field so the HTTP layers can
//! say exactly what to fix, and none carries internals.

/// A rule of the domain was broken by the caller's input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct DomainError {
    /// The input field the rule is about (`email`, `name`, `password`, ...).
    pub field: &'static str,
    /// What is wrong, in words meant for the person who sent it.
    pub message: String,
}

impl DomainError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}
