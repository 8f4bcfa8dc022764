//! TLS for every component, from certificates in cert-manager's layout: `ca.crt` (the trust
//! bundle: one or more CA certificates), `tls.crt` (the certificate, intermediates may follow),
//! `tls.key` (its private key). rustls on ring, no openssl.
//!
//! * [`material`]: the three PEM files and what they parse to.
//! * [`check`]: whether a set can be used — for what ([`check::Usage`]) and under which names, at
//!   a given time. Pure: the operator decides from it (a condition naming the Secret, nothing
//!   restarted) before any process would fail a handshake.
//! * [`config`]: rustls client and server configs from a parsed set (mutual TLS: a server asks
//!   for client certificates and checks them against the same bundle).
//! * [`reload`]: a set read from files and rebuilt whenever their content changes, as TiKV does:
//!   each new connection uses what the files hold then; established ones keep theirs.
//! * [`net`]: glue for tonic (a TLS connector for channels, a TLS incoming stream for servers)
//!   and hyper servers.
//! * [`validity`]: a certificate's notBefore and notAfter.

#![warn(missing_docs)]

pub mod check;
pub mod config;
pub mod material;
pub mod net;
pub mod reload;
pub mod validity;

pub use check::{Summary, Usage, check};
pub use material::{CA, CERT, KEY, Material, Parsed, Problem};
pub use reload::{LoadError, Paths, Reloading};
