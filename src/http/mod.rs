//! Our small HTTP/1.1 layer on httparse: request heads, body framing, response heads
//! and framing, and the connection state machine (head → body → answer → keep-alive,
//! close or lingering close) with its deadlines, run in the event loop.

pub mod body;
pub mod conn;
pub mod connection;
pub mod exchange;
pub mod head;
pub mod response;
pub mod send;
