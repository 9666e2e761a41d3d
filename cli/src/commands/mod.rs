//! One module per group of subcommands.

pub mod lists;
pub mod login;
pub mod memories;
pub mod sessions;
pub mod transfer;
