//! The collector's transport: TCP, TLS (`tls`: the certificate swapped on
//! SIGHUP, node certificates verified) and HTTP/1 connections with
//! deadlines against slow clients (`listen`, `deadline`). What a connection proved
//! reaches the API as a `Peer` in each request.

pub mod deadline;
pub mod listen;
pub mod tls;
