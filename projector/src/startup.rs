//! Building and running the projector: connections, read-model generation
//! check, one consumer per projection, and the health and metrics endpoints.

use crate::broker::{self, ConsumerConfig, ConsumerError, Dependencies, Settlement};
use crate::context::ContextWorker;
use crate::dead_letters::Ledger;
use crate::embedding_cache::CachedEmbedder;
use crate::indexer::VectorIndexer;
use crate::projection::Projection;
use crate::projection::documents::DocumentProjection;
use crate::projection::search::{Deferral, SearchProjection, ensure_generation};
use crate::settings::Settings;
use crate::source::EventSource;
use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use embeddings::Embedder;
use read_model::documents::Keys;
use redis::aio::ConnectionManager;
use secrecy::ExposeSecret;
use service_kit::http::{
    Readiness, ReadinessCheck, health_routes, metrics_route, not_found, observe_requests,
    problem_fallback,
};
use service_kit::redis::RedisCheck;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub fn pool(url: &secrecy::SecretString, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_lazy(url.expose_secret())
}

/// The connections and projections a projector process works with.
#[derive(Debug, Clone)]
pub struct Parts {
    pub read_pool: PgPool,
    pub events: EventSource,
    pub redis: ConnectionManager,
    pub keys: Keys,
    pub search: Arc<SearchProjection>,
    pub documents: Arc<DocumentProjection>,
    pub context: Arc<ContextWorker>,
    pub indexer: Arc<VectorIndexer>,
}

impl Parts {
    pub async fn connect(settings: &Settings, embedder: Arc<dyn Embedder>) -> anyhow::Result<Self> {
        let read_pool = pool(&settings.read_database_url, 8)?;
        let events = EventSource::new(pool(&settings.event_store_url, 4)?);
        let redis = service_kit::redis::connect(&settings.redis_url).await?;
        let keys = Keys::new(settings.redis_key_prefix.clone());
        let raw_embedder = embedder.clone();
        let embedder = CachedEmbedder::new(embedder, read_pool.clone());
        let mut search = SearchProjection::new(read_pool.clone(), events.clone(), embedder);
        if settings.projector_pending_vectors_max > 0 {
            search = search.with_deferral(Deferral {
                full_batch: settings.projector_batch_size,
                max_pending: settings.projector_pending_vectors_max,
            });
        }
        let search = Arc::new(search);
        let indexer = Arc::new(VectorIndexer::new(read_pool.clone(), search.activity()));
        let context = Arc::new(ContextWorker::new(
            read_pool.clone(),
            raw_embedder,
            search.activity(),
        ));
        let documents = Arc::new(DocumentProjection::new(
            redis.clone(),
            keys.clone(),
            events.clone(),
        ));
        Ok(Self {
            read_pool,
            events,
            redis,
            keys,
            search,
            documents,
            context,
            indexer,
        })
    }
}

/// A running projector: consumers plus the HTTP endpoints.
pub struct Application {
    port: u16,
    server: Server,
    handle: ServerHandle,
    consumers: Vec<JoinHandle<Result<(), ConsumerError>>>,
    /// The idle-time workers: the indexer, and partition 0's context worker.
    workers: Vec<JoinHandle<()>>,
    shutdown: watch::Sender<bool>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Checks (or creates) the read model's generation for this embedder,
    /// starts a consumer per projection and binds the HTTP listener.
    pub async fn build(settings: &Settings, embedder: Arc<dyn Embedder>) -> anyhow::Result<Self> {
        let (model, dimension) = (embedder.model_id().to_owned(), embedder.dimension());
        let parts = Parts::connect(settings, embedder).await?;
        ensure_generation(&parts.read_pool, &model, dimension).await?;

        let config = ConsumerConfig {
            url: settings.rabbitmq_url.clone(),
            exchange: settings.rabbitmq_exchange.clone(),
            queue_prefix: settings.projector_queue_prefix.clone(),
            prefetch: settings.projector_prefetch,
            batch_size: settings.projector_batch_size,
            batch_window: Duration::from_millis(settings.projector_batch_window_ms),
            max_attempts: settings.projector_max_attempts,
            dead_letter_max_length: settings.projector_dead_letter_max_length,
            partitions: settings.projector_partitions,
            partition: settings.projector_partition,
        };
        let (shutdown, stopped) = watch::channel(false);
        let ledger = Ledger::new(parts.read_pool.clone());
        let read: Arc<dyn ReadinessCheck> = Arc::new(parts.read_pool.clone());
        let events: Arc<dyn ReadinessCheck> = Arc::new(parts.events.pool().clone());
        let redis: Arc<dyn ReadinessCheck> = Arc::new(RedisCheck(parts.redis.clone()));
        // Each projection waits for what it writes and reads (the read
        // database also keeps every projection's attempts and parks).
        let projections: [(Arc<dyn Projection>, Dependencies); 2] = [
            (parts.search.clone(), vec![read.clone(), events.clone()]),
            (parts.documents.clone(), vec![read, events, redis]),
        ];
        let consumers = projections
            .into_iter()
            .map(|(projection, dependencies)| {
                let settlement = Settlement {
                    ledger: ledger.clone(),
                    dependencies,
                };
                tokio::spawn(broker::run(
                    projection,
                    config.clone(),
                    settlement,
                    stopped.clone(),
                ))
            })
            .collect();

        // Every projector indexes (pending rows are taken with SKIP LOCKED,
        // so several share the work); one context worker for all
        // partitions' memories: partition 0's.
        let mut workers = vec![{
            let indexer = parts.indexer.clone();
            let stopped = stopped.clone();
            tokio::spawn(async move { indexer.run(stopped).await })
        }];
        if settings.projector_context_vectors && settings.projector_partition == 0 {
            let worker = parts.context.clone();
            let stopped = stopped.clone();
            workers.push(tokio::spawn(async move { worker.run(stopped).await }));
        }

        let listener = TcpListener::bind(settings.projector_http_addr)?;
        let port = listener.local_addr()?.port();
        let readiness = web::Data::new(
            Readiness::new(Duration::from_secs(2))
                .with(parts.read_pool.clone())
                .with(parts.events.pool().clone())
                .with(RedisCheck(parts.redis.clone())),
        );
        let server = HttpServer::new(move || {
            App::new()
                .wrap(problem_fallback())
                .wrap(from_fn(observe_requests))
                .app_data(readiness.clone())
                .configure(health_routes)
                .configure(metrics_route)
                .default_service(web::to(not_found))
        })
        .shutdown_timeout(20)
        .listen(listener)?
        .run();
        let handle = server.handle();
        Ok(Self {
            port,
            server,
            handle,
            consumers,
            workers,
            shutdown,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs until SIGTERM/ctrl-c (the HTTP server's signal handling) or until
    /// a consumer stops on a fatal error; then stops the consumers after their
    /// batch in flight and returns.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Self {
            server,
            handle,
            consumers,
            workers,
            shutdown,
            ..
        } = self;
        let mut consumers = futures::future::select_all(consumers);
        let fatal = tokio::select! {
            served = server => { served?; None }
            (first, _, _) = &mut consumers => Some(first),
        };
        let _ = shutdown.send(true);
        if let Some(first) = fatal {
            handle.stop(true).await;
            let _ = shutdown.send(true);
            match first {
                Ok(Ok(())) => {}
                Ok(Err(error)) => return Err(error.into()),
                Err(join) => return Err(anyhow::anyhow!("a consumer panicked: {join}")),
            }
        }
        for consumer in consumers.into_inner() {
            match consumer.await {
                Ok(Err(error)) => return Err(error.into()),
                Err(join) => return Err(anyhow::anyhow!("a consumer panicked: {join}")),
                Ok(Ok(())) => {}
            }
        }
        for worker in workers {
            // Each stops at the shutdown signal, between two of its steps.
            let _ = worker.await;
        }
        Ok(())
    }
}
