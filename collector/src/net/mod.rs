//! The collector's transport: TCP, TLS (`tls`: the certificate swapped on
//! SIGHUP; `trust`: the client CA and CRLs node certificates are verified
//! against, also swapped on SIGHUP) and HTTP/1 connections with deadlines
//! against slow clients (`listen`, `deadline`). What a connection proved
//! reaches the API as a `Peer` in each request.

pub mod deadline;
pub mod listen;
pub mod tls;
pub mod trust;
