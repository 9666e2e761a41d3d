//! What a test leaves on the shared servers, removed when it ends: its
//! databases, queues, exchanges and Redis keys.

/// Removes what it lists when dropped. `Drop` cannot be async, so a
/// short-lived thread with its own runtime does the work, and the test waits
/// for it (runs do not pile up databases).
#[derive(Debug, Default)]
pub struct Teardown {
    /// The admin URL of the server the databases are on.
    pub admin: String,
    pub databases: Vec<String>,
    pub queues: Vec<String>,
    pub exchanges: Vec<String>,
    /// A Redis key prefix whose keys go (none when empty).
    pub key_prefix: String,
}

impl Drop for Teardown {
    fn drop(&mut self) {
        let admin = std::mem::take(&mut self.admin);
        let databases = std::mem::take(&mut self.databases);
        let queues = std::mem::take(&mut self.queues);
        let exchanges = std::mem::take(&mut self.exchanges);
        let key_prefix = std::mem::take(&mut self.key_prefix);
        let handle = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                crate::db::drop_databases(&admin, &databases).await;
                if !queues.is_empty() || !exchanges.is_empty() {
                    crate::broker::delete(&queues, &exchanges).await;
                }
                if !key_prefix.is_empty() {
                    crate::redis::remove_prefix(&key_prefix).await;
                }
            });
        });
        let _ = handle.join();
    }
}
