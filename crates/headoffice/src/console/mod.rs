//! The head office console: a browser's way to what the command line does, on its own HTTPS
//! listener. Admin accounts and the console's tables are in [`store`].

pub mod store;
