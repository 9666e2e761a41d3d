//! Rebuild when a migration is added or changed: `sqlx::migrate!` embeds
//! `migrations/event-store` at compile time, and without this cargo would not
//! notice a new file there and keep the old set.
fn main() {
    println!("cargo:rerun-if-changed=../migrations/event-store");
}
