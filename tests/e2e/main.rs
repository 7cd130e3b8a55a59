//! End-to-end tests: the real `sealbox` and `sealbox-headoffice` binaries, real SQLCipher files,
//! the real OS keychain (Secret Service in the session `cargo xtask test` sets up).

mod batch;
mod crash;
mod crm;
mod enrolment;
mod faults;
mod input;
mod kiosk;
mod lifecycle;
mod manual;
mod model;
mod pin;
mod postgres;
mod recovery;
mod store;
mod summaries;
mod sync;
mod traces;
mod wal;
