//! One module per group of subcommands.

pub mod lists;
pub mod login;
pub mod memories;
pub mod sessions;
pub mod transfer;

/// Items asked for per page when a command walks a list to its end.
pub const PAGE: u32 = 100;
