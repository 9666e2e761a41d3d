//! Rebuild when a migration is added or changed: `sqlx::migrate!` embeds
//! `migrations/read-model` at compile time, and without this cargo would not
//! notice a new file there and keep the old set.
fn main() {
    println!("cargo:rerun-if-changed=../migrations/read-model");
}
