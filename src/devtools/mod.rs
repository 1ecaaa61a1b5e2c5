//! The development tools, not part of the gateway's request path: a fake of WeChat's server
//! API ([`mock_wechat`]), an upstream that answers with what it received ([`echo`]), and
//! [`demo`], which wires both to a gateway on loopback for `wxgate mock-wechat` and
//! `wxgate demo`.

pub mod demo;
pub mod echo;
pub mod mock_wechat;
