//! flatten's integration tests, one binary: the rules, properties, and the COPY round trip.

mod copy_roundtrip;
mod properties;
mod rules;
