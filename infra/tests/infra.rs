//! Checks of the template, one binary: its grants, wiring and names, the RDS CA bundle, and each
//! role's policy enforced by moto.

mod iam;
mod rds_ca;
mod template;
