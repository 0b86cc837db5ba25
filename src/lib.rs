//! cgi-testbed: a classic CGI server (one process per request) and a FastCGI worker
//! pool for the same scripts, to measure what each model costs.

pub mod cgi;
pub mod cli;
pub mod config;
pub mod dispatch;
pub mod error;
pub mod event_loop;
pub mod fastcgi;
pub mod file_cache;
pub mod gateway;
pub mod handlers;
pub mod html;
pub mod http;
pub mod landing;
pub mod limits;
pub mod logger;
pub mod net;
pub mod options;
pub mod paths;
pub mod process;
pub mod proctree;
pub mod relay;
pub mod route;
pub mod script_log;
pub mod server;
pub mod sibling;
pub mod site;
pub mod spawn;
pub mod static_files;
pub mod stats;
pub mod status;
pub mod sys;
pub mod try_files;

pub use config::Config;
pub use server::{Handle, Running, Server};
