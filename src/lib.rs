//! cgi-testbed: a classic CGI server (one process per request) and a FastCGI worker
//! pool for the same scripts, to measure what each model costs.

pub mod cgi;
pub mod cli;
pub mod config;
pub mod dispatch;
pub mod error;
pub mod fastcgi;
pub mod gateway;
pub mod html;
pub mod http;
pub mod landing;
pub mod limits;
pub mod logger;
pub mod proctree;
pub mod reactor;
pub mod relay;
pub mod route;
pub mod script_log;
pub mod server;
pub mod sibling;
pub mod site;
pub mod static_files;
pub mod status;
pub mod sys;
pub mod try_files;

pub use config::Config;
pub use server::{Handle, Running, Server};
