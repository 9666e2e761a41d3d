//! One Redis connection per HTTP worker thread for reads by id, and its
//! document cache: opened on first use, forgotten once lost.

use super::cache::DocumentCache;
use super::{DocumentError, Documents};
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, mpsc};

/// One HTTP worker's connection for reads by id, and its document cache.
pub(super) struct Worker {
    /// Tells this connection from the one that may replace it: a read keeps
    /// what it found only in the cache of the connection it read through,
    /// since Redis tracks the key for that connection alone.
    id: u64,
    connection: MultiplexedConnection,
    cache: Option<DocumentCache>,
}

/// Numbers the workers' connections.
static NEXT_WORKER_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

thread_local! {
    /// One multiplexed Redis connection (and document cache) per HTTP worker
    /// thread and server, opened on first use. Its I/O task runs on the
    /// worker's own runtime, so a read by id costs no hop to another thread
    /// and back; through the shared connection every read woke a task on the
    /// main runtime twice.
    static WORKERS: RefCell<HashMap<usize, Worker>> = RefCell::new(HashMap::new());
}

impl Documents {
    /// Which server's connection a thread holds: this `Documents` and its
    /// clones, told apart by their shared cache's address.
    pub(super) fn worker_key(&self) -> usize {
        Arc::as_ptr(&self.generation) as usize
    }

    /// This thread's connection and its id, opened on first use and again
    /// once lost.
    pub(super) async fn worker_connection(
        &self,
    ) -> Result<(u64, MultiplexedConnection), DocumentError> {
        if let Some(current) = self.live_worker() {
            return Ok(current);
        }
        let worker = self.open_worker().await?;
        // Another read on this thread may have opened one meanwhile: keep
        // the first, so that no read's cache goes with a connection that
        // Redis no longer tracks its keys for.
        if let Some(current) = self.live_worker() {
            return Ok(current);
        }
        let current = (worker.id, worker.connection.clone());
        WORKERS.with(|w| w.borrow_mut().insert(self.worker_key(), worker));
        Ok(current)
    }

    /// This thread's connection, unless there is none or it is known lost.
    pub(super) fn live_worker(&self) -> Option<(u64, MultiplexedConnection)> {
        WORKERS.with(|w| {
            let mut workers = w.borrow_mut();
            let worker = workers.get_mut(&self.worker_key())?;
            let lost = worker.cache.as_mut().is_some_and(|c| {
                c.take_in_pushes();
                c.lost
            });
            (!lost).then(|| (worker.id, worker.connection.clone()))
        })
    }

    pub(super) async fn open_worker(&self) -> Result<Worker, DocumentError> {
        let Some(capacity) = self.cache_size else {
            let connection = self.client.get_multiplexed_async_connection().await?;
            return Ok(Worker {
                id: NEXT_WORKER_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                connection,
                cache: None,
            });
        };
        let (sender, pushes) = mpsc::channel();
        let config = AsyncConnectionConfig::new().set_push_sender(sender);
        let mut connection = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        redis::cmd("CLIENT")
            .arg("TRACKING")
            .arg("ON")
            .exec_async(&mut connection)
            .await?;
        Ok(Worker {
            id: NEXT_WORKER_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            connection,
            cache: Some(DocumentCache::new(capacity, pushes, &self.keys)),
        })
    }

    /// Runs `f` on the document cache of this thread's connection `id`, if
    /// that connection is still the thread's and has a cache.
    pub(super) fn with_cache<R>(
        &self,
        id: u64,
        f: impl FnOnce(&mut DocumentCache) -> R,
    ) -> Option<R> {
        let key = self.worker_key();
        WORKERS.with(|w| {
            let mut workers = w.borrow_mut();
            let worker = workers.get_mut(&key).filter(|worker| worker.id == id)?;
            worker.cache.as_mut().map(f)
        })
    }

    /// Forgets this thread's connection `id` after a connection error, so
    /// the next read opens a new one (a multiplexed connection does not
    /// reconnect by itself); a newer one is left alone.
    pub(super) fn drop_worker_connection(&self, id: u64, error: &redis::RedisError) {
        if error.is_io_error() || error.is_connection_dropped() || error.is_connection_refusal() {
            let key = self.worker_key();
            WORKERS.with(|w| {
                let mut workers = w.borrow_mut();
                if workers.get(&key).is_some_and(|worker| worker.id == id) {
                    workers.remove(&key);
                }
            });
        }
    }
}
