//! The dead-letter queue's declaration, with its length limit, and its
//! upgrade by `projector migrate` when it exists declared otherwise.
//!
//! The queue holds at most `SB_PROJECTOR_DEAD_LETTER_MAX_LENGTH` messages
//! and refuses the next (`x-overflow: reject-publish`: the broker nacks the
//! publish). The projector then keeps the delivery unacknowledged and waits,
//! as for any unavailable dependency, logging and counting it
//! (`projector_dead_letters_refused_total`) until an operator retries or
//! purges dead letters. `drop-head` was the alternative: nothing would ever
//! wait, but the broker would silently drop the *oldest* dead letters, the
//! first failures that parked their aggregates and explain the rest, while
//! their aggregates stayed parked. A full queue means something failed tens
//! of thousands of times; stalling loudly is the honest answer to that. No
//! byte limit: RabbitMQ's counts message bodies only, and a body here is a
//! reference of a few hundred bytes; the headers, error message included
//! ([`super::MAX_ERROR_BYTES`]), are bounded instead, so the length bounds
//! the size.
//!
//! RabbitMQ refuses to declare an existing queue with other arguments
//! (`PRECONDITION_FAILED`), and installations from before the limit have the
//! queue without one. The queue keeps its name (the operator's tools and
//! runbooks know it); a consumer that finds it declared otherwise uses it as
//! it is and warns. `migrate` declares it again: it moves every message into
//! a staging queue, `<queue>.migrating`, bound to the dead-letter exchange
//! meanwhile, deletes the queue, declares it with the limit, unbinds the
//! staging queue and moves the messages back, turning any whole message into
//! a reference on the way. A crash at any point leaves the messages in one
//! of the two queues, and the next `migrate` carries on from the staging
//! queue. The same path applies a changed limit. Moves are at least once: a
//! crash between a publish and its acknowledgement, or a dead letter
//! published while both queues are bound, can leave a duplicate, which a
//! retry skips like any duplicate.

use super::{Found, PublishError, converted, settled};
use crate::broker::ConsumerConfig;
use lapin::message::Delivery;
use lapin::options::{
    BasicGetOptions, BasicNackOptions, BasicPublishOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ExchangeKind};

/// What the queue does with a message past its limit.
pub const OVERFLOW: &str = "reject-publish";

/// The dead-letter queue's arguments.
pub fn arguments(max_length: u32) -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-max-length".into(),
        AMQPValue::LongLongInt(i64::from(max_length)),
    );
    arguments.insert("x-overflow".into(), AMQPValue::LongString(OVERFLOW.into()));
    arguments
}

/// The queue `migrate` keeps the dead letters in while it declares the
/// dead-letter queue again.
pub fn staging(config: &ConsumerConfig) -> String {
    format!("{}.migrating", config.dead_letter())
}

/// How the dead-letter queue was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Declared {
    /// Declared (or found) with the configured limit.
    AsConfigured,
    /// It exists with other arguments (no limit, or another one), and is
    /// used as it is until `projector migrate` declares it again.
    Otherwise,
}

fn is_code(error: &lapin::Error, code: u16) -> bool {
    matches!(error.kind(), lapin::ErrorKind::ProtocolError(e) if e.get_id() == code)
}

const NOT_FOUND: u16 = 404;
const PRECONDITION_FAILED: u16 = 406;

/// Declares the dead-letter exchange, the queue with its limit, and the
/// binding between them. On a channel of its own: a refused declaration
/// closes its channel.
pub async fn declare(
    connection: &Connection,
    config: &ConsumerConfig,
) -> Result<Declared, lapin::Error> {
    let name = config.dead_letter();
    let channel = connection.create_channel().await?;
    channel
        .exchange_declare(
            name.as_str().into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    let (declared, channel) = match channel
        .queue_declare(
            name.as_str().into(),
            QueueDeclareOptions::durable(),
            arguments(config.dead_letter_max_length),
        )
        .await
    {
        Ok(_) => (Declared::AsConfigured, channel),
        Err(error) if is_code(&error, PRECONDITION_FAILED) => {
            (Declared::Otherwise, connection.create_channel().await?)
        }
        Err(error) => return Err(error),
    };
    channel
        .queue_bind(
            name.as_str().into(),
            name.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let _ = channel.close(200, "declared".into()).await;
    Ok(declared)
}

/// The number of messages ready in `queue`, or `None` when it does not exist.
pub async fn ready(connection: &Connection, queue: &str) -> Result<Option<u32>, lapin::Error> {
    let channel = connection.create_channel().await?;
    let passive = QueueDeclareOptions {
        passive: true,
        durable: true,
        ..Default::default()
    };
    match channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
    {
        Ok(found) => {
            let _ = channel.close(200, "looked".into()).await;
            Ok(Some(found.message_count()))
        }
        Err(error) if is_code(&error, NOT_FOUND) => Ok(None),
        Err(error) => Err(error),
    }
}

/// What `migrate` did to the dead-letter queue.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// Whether the queue was declared again with the limit.
    pub redeclared: bool,
    /// Dead letters moved out and back while it was.
    pub moved: usize,
    /// Dead letters whose whole message became a reference (or fingerprint).
    pub converted: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error(transparent)]
    Broker(#[from] lapin::Error),
    #[error(
        "the dead-letter queue {queue} is full at SB_PROJECTOR_DEAD_LETTER_MAX_LENGTH={max_length}: \
         {left} dead letters are still in {staging}; raise the limit, or retry or purge dead \
         letters, then run `projector migrate` again"
    )]
    Full {
        queue: String,
        staging: String,
        max_length: u32,
        left: u32,
    },
    #[error(
        "the dead-letter queue {0} kept receiving dead letters while it was being emptied; run `projector migrate` again"
    )]
    Busy(String),
}

/// How often the queue is emptied again when dead letters arrive while it
/// is being deleted.
const EMPTYING_ROUNDS: usize = 5;

/// Declares the dead-letter queue with the configured limit, moving its
/// messages out and back when it exists declared otherwise, and turns every
/// whole message left in it into a reference.
pub async fn migrate(
    connection: &Connection,
    config: &ConsumerConfig,
) -> Result<Migration, MigrationError> {
    let queue = config.dead_letter();
    let staging = staging(config);
    let mut migration = Migration::default();
    let interrupted = ready(connection, &staging).await?.is_some();
    if declare(connection, config).await? == Declared::Otherwise {
        let channel = confirm_channel(connection).await?;
        channel
            .queue_declare(
                staging.as_str().into(),
                QueueDeclareOptions::durable(),
                FieldTable::default(),
            )
            .await?;
        // Bound while the queue is gone: a dead letter published meanwhile
        // by a projector of an earlier release (which does not publish
        // mandatory) lands here instead of nowhere. One published while both
        // are bound lands in both, a duplicate.
        channel
            .queue_bind(
                staging.as_str().into(),
                queue.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let (moved, converted) = empty_into(connection, &channel, &queue, &staging, config).await?;
        let _ = channel.close(200, "moved out".into()).await;
        migration.moved = moved;
        migration.converted = converted;
        if declare(connection, config).await? == Declared::Otherwise {
            // Declared in between by a projector with another limit.
            return Err(MigrationError::Busy(queue));
        }
        migration.redeclared = true;
    }
    if interrupted || migration.redeclared {
        let channel = confirm_channel(connection).await?;
        channel
            .queue_unbind(
                staging.as_str().into(),
                queue.as_str().into(),
                "".into(),
                FieldTable::default(),
            )
            .await?;
        let result = empty_into(connection, &channel, &staging, &queue, config).await;
        let _ = channel.close(200, "moved back".into()).await;
        let (back, converted) = result?;
        // What this run moved out was converted on the way; what an
        // interrupted run left may not have been.
        migration.moved = migration.moved.max(back);
        migration.converted += converted;
    }
    migration.converted += convert_in_place(connection, &queue).await?;
    Ok(migration)
}

/// Moves every message of `from` into `to` and deletes `from`, emptying it
/// again while dead letters still arrive; returns how many moved and how
/// many of them held a whole message.
async fn empty_into(
    connection: &Connection,
    channel: &Channel,
    from: &str,
    to: &str,
    config: &ConsumerConfig,
) -> Result<(usize, usize), MigrationError> {
    let (mut moved, mut converted) = (0, 0);
    for _ in 0..EMPTYING_ROUNDS {
        match move_all(channel, from, to).await {
            Ok((m, c)) => {
                moved += m;
                converted += c;
            }
            Err(error) => {
                let left = ready(connection, from).await?.unwrap_or(0);
                return Err(full_or_broker(error, config, left));
            }
        }
        if delete_if_empty(connection, from).await? {
            return Ok((moved, converted));
        }
    }
    Err(MigrationError::Busy(from.to_owned()))
}

fn full_or_broker(error: PublishError, config: &ConsumerConfig, left: u32) -> MigrationError {
    match error {
        PublishError::Broker(error) => MigrationError::Broker(error),
        PublishError::Refused(_) => MigrationError::Full {
            queue: config.dead_letter(),
            staging: staging(config),
            max_length: config.dead_letter_max_length,
            left,
        },
    }
}

async fn confirm_channel(connection: &Connection) -> Result<Channel, lapin::Error> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}

/// Deletes `queue` if it holds nothing; false if it does.
async fn delete_if_empty(connection: &Connection, queue: &str) -> Result<bool, lapin::Error> {
    let channel = connection.create_channel().await?;
    let options = QueueDeleteOptions {
        if_empty: true,
        ..Default::default()
    };
    match channel.queue_delete(queue.into(), options).await {
        Ok(_) => {
            let _ = channel.close(200, "deleted".into()).await;
            Ok(true)
        }
        Err(error) if is_code(&error, PRECONDITION_FAILED) => Ok(false),
        Err(error) => Err(error),
    }
}

/// Sends `delivery`, converted, to `queue`; acknowledges it once the broker
/// has it.
async fn forward(channel: &Channel, delivery: &Delivery, queue: &str) -> Result<(), PublishError> {
    let (properties, body) = converted(delivery);
    let confirmation = channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions {
                mandatory: true,
                ..BasicPublishOptions::default()
            },
            &body,
            properties,
        )
        .await?
        .await?;
    settled(confirmation)?;
    delivery
        .ack(lapin::options::BasicAckOptions::default())
        .await?;
    Ok(())
}

/// Moves every message of `from` to `to`, in order, converted; returns how
/// many moved and how many of them held a whole message. A message `to`
/// refuses goes back to the head of `from`.
async fn move_all(channel: &Channel, from: &str, to: &str) -> Result<(usize, usize), PublishError> {
    let (mut moved, mut converted) = (0, 0);
    while let Some(message) = channel
        .basic_get(from.into(), BasicGetOptions { no_ack: false })
        .await?
    {
        let delivery = message.delivery;
        let whole = Found::of(&delivery.data).held().is_whole();
        if let Err(error) = forward(channel, &delivery, to).await {
            if matches!(error, PublishError::Refused(_)) {
                delivery
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..Default::default()
                    })
                    .await?;
            }
            return Err(error);
        }
        moved += 1;
        converted += usize::from(whole);
    }
    Ok((moved, converted))
}

/// Turns every whole message in `queue` (from an older projector, or
/// dead-lettered by RabbitMQ itself) into a reference: it goes to the back
/// of the queue as one, and the original is acknowledged. The rest stay
/// where they were.
async fn convert_in_place(connection: &Connection, queue: &str) -> Result<usize, lapin::Error> {
    if ready(connection, queue).await?.unwrap_or(0) == 0 {
        return Ok(0);
    }
    let channel = confirm_channel(connection).await?;
    // Everything is taken unacknowledged first: what is put back at the end
    // is not taken again, and what is not acknowledged returns, in place,
    // when the channel closes.
    let mut taken = Vec::new();
    while let Some(message) = channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: false })
        .await?
    {
        taken.push(message.delivery);
    }
    let mut converted = 0;
    for delivery in &taken {
        if !Found::of(&delivery.data).held().is_whole() {
            continue;
        }
        match forward(&channel, delivery, queue).await {
            Ok(()) => converted += 1,
            Err(PublishError::Broker(error)) => return Err(error),
            // Full: the rest keep their message until the next `migrate`.
            Err(PublishError::Refused(_)) => break,
        }
    }
    let _ = channel.close(200, "converted".into()).await;
    Ok(converted)
}
