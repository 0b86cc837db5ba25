//! `cgi-testbed report`: turns the classic claims about CGI and FastCGI into numbers
//! measured on this machine.

pub mod load;
pub mod sample;
