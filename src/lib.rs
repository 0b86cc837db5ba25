//! cgi-testbed: a classic CGI server (one process per request) and a FastCGI worker
//! pool for the same scripts, to measure what each model costs.

pub mod cgi;
pub mod cli;
pub mod config;
pub mod dispatch;
pub mod error;
pub mod fastcgi;
pub mod gateway;
pub mod http;
pub mod limits;
pub mod logger;
pub mod relay;
pub mod route;
pub mod script_log;
pub mod server;
pub mod sys;

pub use config::Config;
pub use server::{Handle, Running, Server};
