//! End-to-end tests: the real `sealbox` and `sealbox-headoffice` binaries, real SQLCipher files,
//! the real OS keychain (Secret Service in the session `cargo xtask test` sets up).

mod batch;
mod console;
mod crash;
mod crm;
mod enrolment;
mod faults;
mod health;
mod input;
mod kiosk;
mod lifecycle;
mod manual;
mod model;
mod pin;
mod postgres;
mod promoter;
mod recovery;
mod scale;
mod staff_codes;
mod store;
mod summaries;
mod sync;
mod traces;
mod wal;
