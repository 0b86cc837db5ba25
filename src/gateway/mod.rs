//! The CGI contract both models share: the request as meta-variables, and the
//! script's answer as a parsed response.

pub mod env;
pub mod response;
pub mod vars;
