//! Nothing to link: this crate holds the template's tests (`tests/template.rs`).
