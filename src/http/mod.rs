//! Our small blocking HTTP/1.1 layer on httparse: request heads, body framing,
//! response heads, and the connection they travel on.

pub mod body;
pub mod conn;
pub mod head;
pub mod response;
