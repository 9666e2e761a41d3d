//! RabbitMQ: the queues of the projections and the loop that feeds each
//! projection its deliveries.
//!
//! Topology (declared idempotently on every connect; the names are the
//! broker contract's, [`event_log::broker`]):
//! - the relay's durable topic exchange;
//! - per projection, a durable queue `<prefix>.<projection>` bound with `#`,
//!   dead-lettering to the fanout exchange `<prefix>.dead_letter`, whose queue
//!   of the same name keeps references to what could not be projected, up to
//!   a length limit (see [`crate::dead_letters::queue`]);
//! - or, with `SB_PROJECTOR_PARTITIONS` = P > 1, per projection P queues
//!   `<prefix>.<projection>.p<i>` bound with `#.p<i>`: the relay (with
//!   `SB_RELAY_PARTITIONS` = P) suffixes each routing key with the partition
//!   of the event's aggregate, so each aggregate's events stay in one queue,
//!   in order, and P projectors (partition 0..P-1) share the load.
//!
//! Deliveries are acknowledged only after the read-model write committed;
//! a crash before that redelivers them, and the projections skip duplicates.
//!
//! Failures are settled by kind ([`ProjectionError`]). A batch that fails is
//! applied again one event at a time, to find the event at fault. Poison is
//! dead-lettered at once. A transient failure is an attempt: counted in the
//! [`Ledger`] before it starts, retried with backoff once the projection's
//! dependencies answer again, and dead-lettered after `max_attempts` (a
//! database connection that drops during the same event every time included;
//! one that drops once and then succeeds dead-letters nothing). An
//! unavailable dependency is waited for and counts nothing. A dead-lettered
//! event parks its aggregate: its later events go to the dead-letter queue
//! behind it, never applied out of order, while other aggregates flow on.
//! A dead letter the full dead-letter queue refuses is waited for like an
//! unavailable dependency: the delivery stays unacknowledged. Error messages
//! are redacted of the events' texts as soon as they are made
//! ([`crate::redact`]). See [`crate::dead_letters`].

use crate::dead_letters::queue::Declared;
use crate::dead_letters::{
    AggregateKey, Failure, Ledger, ParkedAt, PublishError, Reason, aggregate_key, publish,
};
use crate::projection::{Applied, Projection, ProjectionError};
use crate::redact::Redactor;
use event_log::broker::Queues;
use event_schema::StoredEvent;
use futures::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use service_kit::http::ReadinessCheck;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Where and how a projection consumes.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub url: SecretString,
    pub exchange: String,
    pub queue_prefix: String,
    pub prefetch: u16,
    pub batch_size: usize,
    /// How long a batch that is not full waits for more deliveries after
    /// its first, when no batch is in flight.
    pub batch_window: Duration,
    pub max_attempts: u32,
    /// The most messages the dead-letter queue holds.
    pub dead_letter_max_length: u32,
    /// How many partitions the events are split into, and which one this
    /// projector consumes.
    pub partitions: u32,
    pub partition: u32,
}

impl ConsumerConfig {
    /// This partition's queues, named by the broker contract.
    fn queues(&self) -> Queues<'_> {
        Queues {
            prefix: &self.queue_prefix,
            partitions: self.partitions,
            partition: self.partition,
        }
    }

    pub fn queue(&self, projection: &str) -> String {
        self.queues().projection(projection)
    }

    /// The binding key of this partition's queues.
    pub fn binding_key(&self) -> String {
        self.queues().binding_key()
    }

    /// The same consumer for another partition.
    #[must_use]
    pub fn for_partition(&self, partition: u32) -> Self {
        Self {
            partition,
            ..self.clone()
        }
    }

    pub fn dead_letter(&self) -> String {
        self.queues().dead_letter()
    }
}

/// Declares the exchange, the dead-letter exchange and queue, and the
/// projection's queue with its binding; says how the dead-letter queue was
/// found.
pub async fn declare(
    connection: &Connection,
    channel: &Channel,
    config: &ConsumerConfig,
    projection: &str,
) -> Result<Declared, lapin::Error> {
    let declared = crate::dead_letters::queue::declare(connection, config).await?;
    channel
        .exchange_declare(
            config.exchange.as_str().into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    let dead_letter = config.dead_letter();
    let queue = config.queue(projection);
    // RabbitMQ's own dead-lettering stays as the queues were declared (a
    // declaration cannot change): the projector never rejects a delivery,
    // so only an operator's policy (a message TTL, say) would use it, and
    // `projector migrate` turns what it leaves into references.
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(dead_letter.as_str().into()),
    );
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions::durable(),
            arguments,
        )
        .await?;
    channel
        .queue_bind(
            queue.as_str().into(),
            config.exchange.as_str().into(),
            config.binding_key().as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(declared)
}

/// What a consumer needs to settle failures: where attempts and parked
/// aggregates are kept, and what must answer before an event is tried again.
#[derive(Clone)]
pub struct Settlement {
    pub ledger: Ledger,
    /// The projection's dependencies (databases, Redis): an attempt is made
    /// only once they all answer, so an outage is waited out, not counted.
    pub dependencies: Dependencies,
}

/// What must answer before an event is tried again.
pub type Dependencies = Vec<Arc<dyn ReadinessCheck>>;

impl std::fmt::Debug for Settlement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settlement")
            .field("ledger", &self.ledger)
            .field(
                "dependencies",
                &self
                    .dependencies
                    .iter()
                    .map(|d| d.name())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Why a consumer stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error(transparent)]
    Fatal(ProjectionError),
}

/// Consumes for `projection` until `shutdown` turns true, reconnecting with
/// backoff whenever the broker goes away. Returns only on shutdown or on a
/// fatal projection error (a misconfiguration no retry can fix).
pub async fn run(
    projection: Arc<dyn Projection>,
    config: ConsumerConfig,
    settlement: Settlement,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ConsumerError> {
    let name = projection.name();
    let mut failures = 0u32;
    while !*shutdown.borrow() {
        let mut consumer = Consumer {
            projection: &*projection,
            config: &config,
            settlement: &settlement,
            parked: HashMap::new(),
            shutdown: shutdown.clone(),
        };
        match consumer.consume().await {
            Ok(()) => return Ok(()),
            Err(Stop::Fatal(error)) => {
                tracing::error!(projection = name, %error, "projection stopped");
                return Err(ConsumerError::Fatal(error));
            }
            Err(Stop::Broker(error)) => {
                failures += 1;
                metrics::counter!("projector_broker_errors_total", "projection" => name)
                    .increment(1);
                let wait = backoff(failures);
                tracing::warn!(projection = name, %error, retry_in_ms = wait.as_millis() as u64, "broker connection lost");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }
    Ok(())
}

enum Stop {
    Fatal(ProjectionError),
    Broker(lapin::Error),
}

impl From<lapin::Error> for Stop {
    fn from(error: lapin::Error) -> Self {
        Self::Broker(error)
    }
}

fn backoff(failures: u32) -> Duration {
    let ceiling_ms = (100u64 << failures.min(7)).min(10_000);
    Duration::from_millis(rand::rng().random_range(ceiling_ms / 2..=ceiling_ms))
}

/// How often the parked set is read again from the table: `dead-letters
/// retry` and `purge` un-park from another process.
const PARKED_REFRESH: Duration = Duration::from_secs(15);

/// One connection's worth of consuming for one projection.
struct Consumer<'a> {
    projection: &'a dyn Projection,
    config: &'a ConsumerConfig,
    settlement: &'a Settlement,
    /// The aggregates parked in this projection. Only a consumer of the
    /// aggregate's queue parks it, so this set misses no park; an entry may
    /// be stale (un-parked by a command since), which is checked before an
    /// event is dead-lettered behind it.
    parked: HashMap<AggregateKey, ParkedAt>,
    shutdown: watch::Receiver<bool>,
}

/// A delivery and its event.
type Item = (Delivery, StoredEvent);

/// A consumer's connection, its channels and its deliveries.
struct Opened {
    connection: Connection,
    /// The consuming channel: kept open for as long as its deliveries run.
    channel: Channel,
    /// Confirm mode, for dead letters.
    dead_letters: Channel,
    consumer: lapin::Consumer,
}

/// What the consumer does next.
enum Next {
    Batch(Vec<Delivery>),
    /// Read the parked set again.
    Refresh,
    Stop,
}

/// Forms batches from a consumer's deliveries.
struct Gather<'a> {
    deliveries: &'a mut lapin::Consumer,
    shutdown: &'a mut watch::Receiver<bool>,
    refresh: &'a mut tokio::time::Interval,
    size: usize,
    window: Duration,
}

impl Gather<'_> {
    /// Waits for a delivery, then gathers more until the batch is full, or
    /// until both the window has passed and the batch `in_flight` (if any)
    /// is settled: under load batches fill up (one transaction, one
    /// embedding call), when idle an event waits at most the window.
    async fn next(
        &mut self,
        in_flight: Option<tokio::sync::oneshot::Receiver<()>>,
    ) -> Result<Next, Stop> {
        let first = tokio::select! {
            next = self.deliveries.next() => next,
            _ = self.shutdown.changed() => return Ok(Next::Stop),
            _ = self.refresh.tick() => return Ok(Next::Refresh),
        };
        let Some(first) = first else {
            return Err(closed());
        };
        let mut batch = vec![first?];
        let deadline = tokio::time::Instant::now() + self.window;
        let mut in_flight = in_flight;
        while batch.len() < self.size {
            // What has already arrived joins at once.
            match self.deliveries.next().now_or_never() {
                Some(Some(delivery)) => {
                    batch.push(delivery?);
                    continue;
                }
                // Closed: this batch goes, the next wait finds out.
                Some(None) => break,
                None => {}
            }
            let window_open = tokio::time::Instant::now() < deadline;
            if in_flight.is_none() && !window_open {
                break;
            }
            tokio::select! {
                next = self.deliveries.next() => match next {
                    Some(delivery) => batch.push(delivery?),
                    None => break,
                },
                _ = settled(&mut in_flight) => in_flight = None,
                _ = tokio::time::sleep_until(deadline), if window_open => {}
                // Unacknowledged, the batch comes back after a restart.
                _ = self.shutdown.changed() => return Ok(Next::Stop),
            }
        }
        Ok(Next::Batch(batch))
    }
}

/// Resolves once the batch in flight is settled; never without one.
async fn settled(in_flight: &mut Option<tokio::sync::oneshot::Receiver<()>>) {
    match in_flight {
        Some(receiver) => {
            let _ = receiver.await;
        }
        None => std::future::pending().await,
    }
}

fn closed() -> Stop {
    Stop::Broker(lapin::Error::from(
        lapin::ErrorKind::InvalidConnectionState(lapin::ConnectionState::Closed),
    ))
}

/// A batch's events refused as poison while they were prepared: applying
/// exactly these events would be refused again (an embedding provider that
/// refuses a text refuses it every time), so the batch's turn takes this
/// failure instead of asking again.
struct Refused {
    events: Vec<uuid::Uuid>,
    error: ProjectionError,
}

impl Refused {
    /// The failure, if `events` are the ones prepared.
    fn of(self, events: &[StoredEvent]) -> Option<ProjectionError> {
        let same = self.events.len() == events.len()
            && self
                .events
                .iter()
                .zip(events)
                .all(|(id, e)| *id == e.event_id);
        same.then_some(self.error)
    }
}

/// Lets the projection prepare a batch ahead of its turn. A body that is no
/// event is left to the batch's own settling, and so is a failure: the
/// batch's turn settles it by its kind (a poison refusal is handed over, see
/// [`Refused`]).
async fn prepare(projection: &dyn Projection, batch: &[Delivery]) -> Option<Refused> {
    let events: Vec<StoredEvent> = batch
        .iter()
        .filter_map(|delivery| serde_json::from_slice(&delivery.data).ok())
        .collect();
    match projection.prepare(&events).await {
        Ok(()) => None,
        Err(error) => {
            let error = error.redacted(&Redactor::of_events(&events));
            tracing::debug!(projection = projection.name(), %error, "preparing a batch ahead failed; its turn settles it");
            matches!(error, ProjectionError::Poison(_)).then(|| Refused {
                events: events.iter().map(|e| e.event_id).collect(),
                error,
            })
        }
    }
}

impl Consumer<'_> {
    fn name(&self) -> &'static str {
        self.projection.name()
    }

    fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Connects, declares the topology, opens the dead-letter channel and
    /// starts consuming the projection's queue; `None` on shutdown.
    async fn open(&mut self) -> Result<Option<Opened>, Stop> {
        let name = self.name();
        let config = self.config;
        // Named after its queue, so an operator (or a test) can pick this
        // connection out among the broker's.
        let properties = ConnectionProperties::default()
            .with_connection_name(config.queue(name).as_str().into());
        let connection = Connection::connect(config.url.expose_secret(), properties).await?;
        let channel = connection.create_channel().await?;
        channel
            .basic_qos(config.prefetch, BasicQosOptions::default())
            .await?;
        if declare(&connection, &channel, config, name).await? == Declared::Otherwise {
            tracing::warn!(
                projection = name,
                queue = %config.dead_letter(),
                max_length = config.dead_letter_max_length,
                "the dead-letter queue exists without this length limit (declared by an earlier \
                 release, or with another SB_PROJECTOR_DEAD_LETTER_MAX_LENGTH) and is used as it \
                 is; run `projector migrate` to apply the limit"
            );
        }
        // Dead letters go out on their own channel, in confirm mode: a
        // delivery is acknowledged only once its dead letter is safe.
        let dead_letters = connection.create_channel().await?;
        dead_letters
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        if !self.refresh_parked().await {
            return Ok(None);
        }
        let consumer = channel
            .basic_consume(
                config.queue(name).as_str().into(),
                format!("projector.{name}").as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        tracing::info!(projection = name, queue = %config.queue(name), parked = self.parked.len(), "consuming");
        Ok(Some(Opened {
            connection,
            channel,
            dead_letters,
            consumer,
        }))
    }

    async fn consume(&mut self) -> Result<(), Stop> {
        let Some(Opened {
            connection,
            channel: _channel,
            dead_letters,
            mut consumer,
        }) = self.open().await?
        else {
            return Ok(());
        };
        let config = self.config;
        let mut refresh = tokio::time::interval(PARKED_REFRESH);
        refresh.tick().await;
        let mut shutdown = self.shutdown.clone();
        let mut gather = Gather {
            deliveries: &mut consumer,
            shutdown: &mut shutdown,
            refresh: &mut refresh,
            size: config.batch_size,
            window: config.batch_window,
        };
        let mut next = gather.next(None).await?;
        let mut refused = None;
        loop {
            let batch = match next {
                Next::Stop => {
                    let _ = connection.close(200, "shutting down".into()).await;
                    return Ok(());
                }
                Next::Refresh => {
                    self.refresh_parked().await;
                    next = gather.next(None).await?;
                    refused = None;
                    continue;
                }
                Next::Batch(batch) => batch,
            };
            if self.stopping() {
                let _ = connection.close(200, "shutting down".into()).await;
                return Ok(());
            }
            // While this batch is applied, the next one gathers behind it
            // and, once full, is prepared (the search projection embeds its
            // texts): under load the embedder works while the read model is
            // written. The next batch is applied only after this one settled,
            // and acknowledged only after its own commit.
            let projection = self.projection;
            let (settled, in_flight) = tokio::sync::oneshot::channel::<()>();
            let applying = async {
                let handled = self.handle_batch(&dead_letters, batch, refused).await;
                let _ = settled.send(());
                handled
            };
            let ahead = async {
                let next = gather.next(Some(in_flight)).await?;
                let refused = match &next {
                    Next::Batch(batch) => prepare(projection, batch).await,
                    Next::Refresh | Next::Stop => None,
                };
                Ok::<_, Stop>((next, refused))
            };
            tokio::pin!(applying, ahead);
            (next, refused) = tokio::select! {
                handled = &mut applying => {
                    handled?;
                    ahead.await?
                }
                // The batch in flight always runs to its end.
                gathered = &mut ahead => {
                    applying.await?;
                    gathered?
                }
            };
        }
    }

    /// Reads the parked set again and sets the gauge; false on shutdown.
    async fn refresh_parked(&mut self) -> bool {
        let ledger = &self.settlement.ledger;
        let name = self.name();
        let Some(parked) = self
            .until_ok("reading the parked aggregates", || ledger.parked(name))
            .await
        else {
            return false;
        };
        self.parked = parked;
        metrics::gauge!("projector_parked_aggregates", "projection" => name)
            .set(self.parked.len() as f64);
        true
    }

    /// Applies a batch and settles every delivery in it: acknowledged once
    /// applied, or dead-lettered (and acknowledged) once it is undecodable,
    /// poison, out of attempts, or behind a parked event of its aggregate.
    async fn handle_batch(
        &mut self,
        dead_letters: &Channel,
        batch: Vec<Delivery>,
        refused: Option<Refused>,
    ) -> Result<(), Stop> {
        let Some(items) = self.decoded(dead_letters, batch).await? else {
            return Ok(());
        };
        let Some(fresh) = self.not_parked(dead_letters, items).await? else {
            return Ok(());
        };
        if fresh.is_empty() {
            return Ok(());
        }
        // A redelivery may be the one that brought the last projector down:
        // count its attempts from the start.
        if fresh.iter().any(|(delivery, _)| delivery.redelivered) {
            return self.one_by_one(dead_letters, fresh, None).await;
        }
        self.apply_batch(dead_letters, fresh, refused).await
    }

    /// The batch's events, the undecodable deliveries dead-lettered; `None`
    /// when the projector stopped meanwhile.
    async fn decoded(
        &mut self,
        dead_letters: &Channel,
        batch: Vec<Delivery>,
    ) -> Result<Option<Vec<Item>>, Stop> {
        let mut items: Vec<Item> = Vec::with_capacity(batch.len());
        for delivery in batch {
            match serde_json::from_slice::<StoredEvent>(&delivery.data) {
                Ok(event) => items.push((delivery, event)),
                Err(error) => {
                    // serde quotes what it could not take: not kept.
                    let failure = failure_now(
                        Reason::Undecodable,
                        "undecodable",
                        Redactor::default()
                            .redact(&format!("the message body is not an event: {error}")),
                        0,
                    );
                    self.dead_letter(dead_letters, &delivery, None, &failure)
                        .await?;
                    // Stopped while the dead-letter queue refused it: the
                    // batch's acknowledgement (multiple) must not cover it.
                    if self.stopping() {
                        return Ok(None);
                    }
                }
            }
        }
        Ok(Some(items))
    }

    /// The items whose aggregate is not parked, the others parked behind
    /// their aggregate's dead letter; `None` when the projector stopped or
    /// the ledger could not be read before it did.
    async fn not_parked(
        &mut self,
        dead_letters: &Channel,
        items: Vec<Item>,
    ) -> Result<Option<Vec<Item>>, Stop> {
        let mut fresh = Vec::with_capacity(items.len());
        for (delivery, event) in items {
            match self.parked_behind(&event).await {
                None => return Ok(None),
                Some(None) => fresh.push((delivery, event)),
                Some(Some(at)) => {
                    self.park_behind(dead_letters, &delivery, &event, at)
                        .await?;
                    if self.stopping() {
                        return Ok(None);
                    }
                }
            }
        }
        Ok(Some(fresh))
    }

    /// Applies `fresh` as one batch, waiting out unavailable dependencies;
    /// a batch that fails otherwise is settled one event at a time.
    async fn apply_batch(
        &mut self,
        dead_letters: &Channel,
        fresh: Vec<Item>,
        refused: Option<Refused>,
    ) -> Result<(), Stop> {
        let events: Vec<StoredEvent> = fresh.iter().map(|(_, event)| event.clone()).collect();
        let redactor = Redactor::of_events(&events);
        // How full batches run: the lever of throughput (one transaction and
        // one embedding call per batch).
        metrics::histogram!("projector_batch_events", "projection" => self.name())
            .record(events.len() as f64);
        let mut unavailable = 0u32;
        let mut refused = refused.and_then(|r| r.of(&events));
        loop {
            let result = match refused.take() {
                Some(error) => Err(error),
                None => self
                    .projection
                    .apply(&events)
                    .await
                    .map_err(|e| e.redacted(&redactor)),
            };
            match result {
                Ok(applied) => {
                    record(self.name(), applied, events.last());
                    if !self.unpark_erased(&events).await {
                        return Ok(());
                    }
                    if let Some((last, _)) = fresh.last() {
                        last.ack(BasicAckOptions { multiple: true }).await?;
                    }
                    return Ok(());
                }
                Err(ProjectionError::Fatal(e)) => {
                    return Err(Stop::Fatal(ProjectionError::Fatal(e)));
                }
                // No event is at fault: wait for the dependency, then try
                // the same batch again, however long the outage lasts.
                Err(error @ ProjectionError::Unavailable(_)) => {
                    unavailable += 1;
                    metrics::counter!("projector_transient_errors_total", "projection" => self.name()).increment(1);
                    if unavailable == 1 || unavailable.is_multiple_of(10) {
                        tracing::warn!(projection = self.name(), %error, failures = unavailable, "dependency unavailable; waiting");
                    }
                    if !self.pause(backoff(unavailable)).await || !self.dependencies_answer().await
                    {
                        return Ok(());
                    }
                }
                // An event alone in its batch has made its first attempt.
                Err(error @ ProjectionError::Transient(_)) if fresh.len() == 1 => {
                    return self.one_by_one(dead_letters, fresh, Some(error)).await;
                }
                Err(error @ ProjectionError::Poison(_)) if fresh.len() == 1 => {
                    let failure =
                        failure_now(Reason::Poison, error.kind(), error.message().to_owned(), 1);
                    let (delivery, event) = &fresh[0];
                    return self
                        .dead_letter_and_park(dead_letters, delivery, event, &failure)
                        .await;
                }
                // Which event failed is not known: find it by going one by one.
                Err(error) => {
                    tracing::info!(projection = self.name(), events = fresh.len(), kind = error.kind(), %error, "batch failed; applying its events one by one");
                    return self.one_by_one(dead_letters, fresh, None).await;
                }
            }
        }
    }

    async fn one_by_one(
        &mut self,
        dead_letters: &Channel,
        items: Vec<Item>,
        mut first_failure: Option<ProjectionError>,
    ) -> Result<(), Stop> {
        for (delivery, event) in items {
            if self.stopping() {
                // Left unacknowledged: the broker redelivers them.
                return Ok(());
            }
            // An earlier event of this batch may just have parked it.
            if let Some(&at) = self.parked.get(&aggregate_key(&event))
                && event.sequence >= at.sequence
                && !is_erase(&event)
            {
                self.park_behind(dead_letters, &delivery, &event, at)
                    .await?;
                continue;
            }
            self.settle_one(dead_letters, &delivery, &event, first_failure.take())
                .await?;
        }
        Ok(())
    }

    /// Tries one event until it is applied, dead-lettered, or the projector
    /// stops. Each try is counted in the ledger before it starts, and made
    /// only while the dependencies answer; transient failures back off.
    async fn settle_one(
        &mut self,
        dead_letters: &Channel,
        delivery: &Delivery,
        event: &StoredEvent,
        first_failure: Option<ProjectionError>,
    ) -> Result<(), Stop> {
        let name = self.name();
        let ledger = self.settlement.ledger.clone();
        let max = self.config.max_attempts;
        let mut failures = 0u32;
        if let Some(error) = first_failure {
            let Some(attempts) = self.count_failed(event, &error).await else {
                return Ok(());
            };
            failures = attempts;
        }
        loop {
            if failures > 0 && !self.pause(backoff(failures)).await {
                return Ok(());
            }
            if !self.dependencies_answer().await {
                return Ok(());
            }
            let attempt = match ledger.begin_attempt(name, event, max).await {
                Ok(Some(attempt)) => attempt,
                Ok(None) => return self.exhausted(dead_letters, delivery, event).await,
                Err(error) => {
                    tracing::warn!(projection = name, %error, "cannot count the attempt; waiting");
                    failures = failures.max(1);
                    continue;
                }
            };
            match self
                .projection
                .apply(std::slice::from_ref(event))
                .await
                .map_err(|e| e.redacted(&Redactor::of_events([event])))
            {
                Ok(applied) => return self.settle_applied(applied, delivery, event).await,
                Err(ProjectionError::Fatal(e)) => {
                    return Err(Stop::Fatal(ProjectionError::Fatal(e)));
                }
                Err(error @ ProjectionError::Poison(_)) => {
                    let failure = failure_now(
                        Reason::Poison,
                        error.kind(),
                        error.message().to_owned(),
                        attempt,
                    );
                    return self
                        .dead_letter_and_park(dead_letters, delivery, event, &failure)
                        .await;
                }
                Err(error @ ProjectionError::Unavailable(_)) => {
                    // Not this event's fault: take the attempt back and wait.
                    metrics::counter!("projector_transient_errors_total", "projection" => name)
                        .increment(1);
                    tracing::warn!(projection = name, %error, "dependency unavailable; waiting");
                    if let Err(error) = ledger.uncount(name, event).await {
                        tracing::warn!(projection = name, %error, "cannot take back an attempt");
                    }
                    failures = failures.max(1) + 1;
                }
                Err(error @ ProjectionError::Transient(_)) => {
                    if !self.record_failed(event, &error, attempt).await {
                        return Ok(());
                    }
                    // No pause before the ledger says the attempts ran out.
                    failures = if attempt >= max { 0 } else { attempt };
                }
            }
        }
    }

    /// Records a transient failure of `event`'s attempt `attempt` in the
    /// ledger; false when the projector stopped first. The database may be
    /// what just failed: this waits for it, so the reason is on record when
    /// the attempts run out.
    async fn record_failed(
        &mut self,
        event: &StoredEvent,
        error: &ProjectionError,
        attempt: u32,
    ) -> bool {
        let name = self.name();
        let max = self.config.max_attempts;
        metrics::counter!("projector_transient_errors_total", "projection" => name).increment(1);
        tracing::warn!(projection = name, attempt, max, kind = error.kind(), %error, event_id = %event.event_id, "event failed");
        let ledger = self.settlement.ledger.clone();
        self.until_ok("recording a failed attempt", || {
            ledger.fail(name, event, error.kind(), error.message())
        })
        .await
        .is_some()
    }

    /// Counts the failed first attempt an event made in its batch; the
    /// attempts so far, or `None` when the projector stopped first.
    async fn count_failed(&mut self, event: &StoredEvent, error: &ProjectionError) -> Option<u32> {
        let name = self.name();
        let ledger = self.settlement.ledger.clone();
        let attempts = self
            .until_ok("counting a failed attempt", || {
                ledger.count_failed(name, event, error.kind(), error.message())
            })
            .await?;
        let max = self.config.max_attempts;
        tracing::warn!(projection = name, attempt = attempts, max, kind = error.kind(), %error, event_id = %event.event_id, "event failed");
        Some(attempts)
    }

    /// Acknowledges an event applied on its own, once its attempts are
    /// cleared and, for an erasure, its aggregate unparked.
    async fn settle_applied(
        &mut self,
        applied: Applied,
        delivery: &Delivery,
        event: &StoredEvent,
    ) -> Result<(), Stop> {
        let name = self.name();
        record(name, applied, Some(event));
        if let Err(error) = self.settlement.ledger.clear(name, event).await {
            // Harmless: a later redelivery is a duplicate, and the row goes
            // when the event is next settled.
            tracing::warn!(projection = name, %error, "cannot clear the attempts of an applied event");
        }
        if !self.unpark_erased(std::slice::from_ref(event)).await {
            return Ok(());
        }
        delivery.ack(BasicAckOptions::default()).await?;
        Ok(())
    }

    /// Dead-letters an event whose attempts ran out, with the last error.
    async fn exhausted(
        &mut self,
        dead_letters: &Channel,
        delivery: &Delivery,
        event: &StoredEvent,
    ) -> Result<(), Stop> {
        let ledger = self.settlement.ledger.clone();
        let name = self.name();
        let Some(attempts) = self
            .until_ok("reading the attempts", || ledger.attempts(name, event))
            .await
        else {
            return Ok(());
        };
        let failure = match attempts {
            Some(attempts) => attempts.exhausted(),
            // Cleared in between (a retry's un-park raced us): try afresh.
            None => return Ok(()),
        };
        self.dead_letter_and_park(dead_letters, delivery, event, &failure)
            .await
    }

    /// Publishes the dead letter, then parks the aggregate, then
    /// acknowledges: a crash in between leaves the delivery to come back,
    /// and the count or the park settles it again.
    async fn dead_letter_and_park(
        &mut self,
        dead_letters: &Channel,
        delivery: &Delivery,
        event: &StoredEvent,
        failure: &Failure,
    ) -> Result<(), Stop> {
        let name = self.name();
        if !self
            .publish_dead_letter(dead_letters, delivery, Some(event), failure)
            .await?
        {
            return Ok(());
        }
        let ledger = self.settlement.ledger.clone();
        let Some(at) = self
            .until_ok("parking the aggregate", || {
                ledger.park(name, event, failure)
            })
            .await
        else {
            return Ok(());
        };
        self.parked.insert(aggregate_key(event), at);
        metrics::gauge!("projector_parked_aggregates", "projection" => name)
            .set(self.parked.len() as f64);
        delivery.ack(BasicAckOptions::default()).await?;
        self.dead_lettered(delivery, Some(event), failure);
        Ok(())
    }

    /// Whether the event must wait behind a parked event of its aggregate:
    /// `Some(Some(at))` parked, `Some(None)` free, `None` on shutdown.
    async fn parked_behind(&mut self, event: &StoredEvent) -> Option<Option<ParkedAt>> {
        let key = aggregate_key(event);
        let Some(&at) = self.parked.get(&key) else {
            return Some(None);
        };
        // Earlier events (duplicates) go through: they change nothing. An
        // erase goes through too (see [`is_erase`]).
        if event.sequence < at.sequence || is_erase(event) {
            return Some(None);
        }
        let ledger = self.settlement.ledger.clone();
        let name = self.name();
        let current = self
            .until_ok("checking a parked aggregate", || {
                ledger.parked_one(name, &key)
            })
            .await?;
        match current {
            Some(at) => {
                self.parked.insert(key, at);
                Some(Some(at).filter(|at| event.sequence >= at.sequence))
            }
            None => {
                self.parked.remove(&key);
                metrics::gauge!("projector_parked_aggregates", "projection" => name)
                    .set(self.parked.len() as f64);
                Some(None)
            }
        }
    }

    /// Ends the park of every memory an applied erase among `events` removed
    /// from this projection: nothing of it is left to apply. Its dead letters
    /// stay (references, no text), and a retry finds them applied. False on
    /// shutdown.
    async fn unpark_erased(&mut self, events: &[StoredEvent]) -> bool {
        let name = self.name();
        let ledger = self.settlement.ledger.clone();
        for event in events.iter().filter(|e| is_erase(e)) {
            let key = aggregate_key(event);
            if !self.parked.contains_key(&key) {
                continue;
            }
            if self
                .until_ok("un-parking an erased memory", || {
                    ledger.unpark_in(name, &key)
                })
                .await
                .is_none()
            {
                return false;
            }
            self.parked.remove(&key);
            metrics::gauge!("projector_parked_aggregates", "projection" => name)
                .set(self.parked.len() as f64);
            tracing::info!(projection = name, aggregate_id = %event.aggregate_id, "an erase ended the park of its memory");
        }
        true
    }

    /// Dead-letters an event of a parked aggregate, or drops the parked
    /// event itself when it comes back (it is already in the queue: it was
    /// dead-lettered, then the projector stopped before acknowledging).
    async fn park_behind(
        &mut self,
        dead_letters: &Channel,
        delivery: &Delivery,
        event: &StoredEvent,
        at: ParkedAt,
    ) -> Result<(), Stop> {
        if event.event_id == at.event_id {
            delivery.ack(BasicAckOptions::default()).await?;
            return Ok(());
        }
        let mut failure = failure_now(
            Reason::ParkedBehind,
            "parked",
            format!("parked behind sequence {}", at.sequence),
            0,
        );
        failure.parked_behind = Some(at.sequence);
        if !self
            .publish_dead_letter(dead_letters, delivery, Some(event), &failure)
            .await?
        {
            return Ok(());
        }
        delivery.ack(BasicAckOptions::default()).await?;
        self.dead_lettered(delivery, Some(event), &failure);
        Ok(())
    }

    /// Dead-letters a delivery that parks nothing (its body is no event).
    async fn dead_letter(
        &mut self,
        dead_letters: &Channel,
        delivery: &Delivery,
        event: Option<&StoredEvent>,
        failure: &Failure,
    ) -> Result<(), Stop> {
        if !self
            .publish_dead_letter(dead_letters, delivery, event, failure)
            .await?
        {
            return Ok(());
        }
        delivery.ack(BasicAckOptions::default()).await?;
        self.dead_lettered(delivery, event, failure);
        Ok(())
    }

    /// Publishes a dead letter, waiting with backoff while the dead-letter
    /// queue refuses it (full, or being declared again by `migrate`). The
    /// delivery stays unacknowledged meanwhile, so nothing is lost, and the
    /// projection waits as for an outage, loudly. False on shutdown.
    async fn publish_dead_letter(
        &mut self,
        dead_letters: &Channel,
        delivery: &Delivery,
        event: Option<&StoredEvent>,
        failure: &Failure,
    ) -> Result<bool, Stop> {
        let name = self.name();
        let mut refusals = 0u32;
        loop {
            match publish(dead_letters, self.config, name, delivery, event, failure).await {
                Ok(()) => {
                    if refusals > 0 {
                        tracing::info!(
                            projection = name,
                            refusals,
                            "the dead-letter queue takes dead letters again"
                        );
                    }
                    return Ok(true);
                }
                Err(PublishError::Broker(error)) => return Err(Stop::Broker(error)),
                Err(PublishError::Refused(why)) => {
                    refusals += 1;
                    metrics::counter!("projector_dead_letters_refused_total", "projection" => name)
                        .increment(1);
                    if refusals == 1 || refusals.is_multiple_of(10) {
                        tracing::error!(
                            projection = name,
                            queue = %self.config.dead_letter(),
                            why,
                            refusals,
                            "a dead letter was refused; this projection waits until `projector \
                             dead-letters retry` or `purge` makes room"
                        );
                    }
                    if !self.pause(backoff(refusals)).await {
                        return Ok(false);
                    }
                }
            }
        }
    }

    fn dead_lettered(&self, delivery: &Delivery, event: Option<&StoredEvent>, failure: &Failure) {
        let name = self.name();
        metrics::counter!("projector_dead_letters_total", "projection" => name, "reason" => failure.reason.as_str())
            .increment(1);
        metrics::counter!("events_projected_total", "projection" => name, "outcome" => "dead_lettered")
            .increment(1);
        tracing::error!(
            projection = name,
            reason = failure.reason.as_str(),
            error_kind = %failure.error_kind,
            error = %failure.error,
            attempts = failure.attempts,
            aggregate_type = event.map_or("", |e| e.aggregate_type.as_str()),
            aggregate_id = event.map_or("", |e| e.aggregate_id.as_str()),
            sequence = event.map_or(0, |e| e.sequence),
            routing_key = delivery.routing_key.as_str(),
            "event dead-lettered"
        );
    }

    /// Waits until every dependency answers; false on shutdown.
    async fn dependencies_answer(&mut self) -> bool {
        let mut failures = 0u32;
        loop {
            let mut down = None;
            for dependency in &self.settlement.dependencies {
                if let Err(error) = dependency.check().await {
                    down = Some((dependency.name(), error));
                    break;
                }
            }
            let Some((dependency, error)) = down else {
                return true;
            };
            failures += 1;
            if failures == 1 || failures.is_multiple_of(10) {
                tracing::warn!(projection = self.name(), dependency, %error, "waiting for a dependency before trying again");
            }
            if !self.pause(backoff(failures)).await {
                return false;
            }
        }
    }

    /// Retries `operation` with backoff until it succeeds; `None` on
    /// shutdown. For the ledger's own reads and writes, which must not be
    /// skipped: the database they need is the one being waited for.
    async fn until_ok<T, F, Fut>(&mut self, what: &'static str, mut operation: F) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
    {
        let mut failures = 0u32;
        loop {
            match operation().await {
                Ok(value) => return Some(value),
                Err(error) => {
                    failures += 1;
                    if failures == 1 || failures.is_multiple_of(10) {
                        tracing::warn!(projection = self.name(), what, %error, failures, "the read database failed; retrying");
                    }
                    if !self.pause(backoff(failures)).await {
                        return None;
                    }
                }
            }
        }
    }

    /// Sleeps, unless shutdown is asked first; false on shutdown.
    async fn pause(&mut self, wait: Duration) -> bool {
        if self.stopping() {
            return false;
        }
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(wait) => true,
            _ = shutdown.changed() => !self.stopping(),
        }
    }
}

/// Whether `event` erases a memory. An erase is never held behind a park: it
/// must reach every read model whatever failed before it, and it can. The
/// events it skips are filled in from the store, where the erase has
/// redacted them, and an erased memory needs nothing of them (no text to
/// embed or index). One that still fails is settled like any event.
fn is_erase(event: &StoredEvent) -> bool {
    event.aggregate_type == event_schema::memory::AGGREGATE_TYPE
        && event.event_type == event_schema::MemoryEvent::MemoryErased {}.event_type()
}

fn failure_now(reason: Reason, kind: &str, error: String, attempts: u32) -> Failure {
    let now = chrono::Utc::now();
    Failure {
        reason,
        error_kind: kind.to_owned(),
        error,
        attempts,
        first_failed_at: now,
        last_failed_at: now,
        parked_behind: None,
    }
}

fn record(name: &'static str, applied: Applied, last: Option<&StoredEvent>) {
    metrics::counter!("events_projected_total", "projection" => name, "outcome" => "applied")
        .increment(applied.applied);
    metrics::counter!("events_projected_total", "projection" => name, "outcome" => "duplicate")
        .increment(applied.duplicates);
    metrics::counter!("events_projected_total", "projection" => name, "outcome" => "gap_filled")
        .increment(applied.gap_filled);
    if let Some(last) = last {
        let lag = (chrono::Utc::now() - last.recorded_at)
            .num_milliseconds()
            .max(0) as f64
            / 1000.0;
        metrics::gauge!("projection_lag_seconds", "projection" => name).set(lag);
    }
}
