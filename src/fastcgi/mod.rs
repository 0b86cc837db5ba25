//! FastCGI: the wire format and the application side for dual-mode Rust programs.

pub mod app;
pub mod record;
