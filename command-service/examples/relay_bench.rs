//! Relay publish rate beside a raw lapin publish-with-confirms loop, in one
//! run, on the same broker, with the same messages and the same confirm window.
//!
//! 1. Creates a fresh event-store database and bulk-inserts N valid
//!    `MemoryCaptured` events (1,000 per transaction).
//! 2. Each round: (a) publishes N copies of the relay's own message for one of
//!    those events (same body, properties and headers) to a fresh durable topic
//!    exchange bound to a durable queue, keeping `window` confirms in flight
//!    (a sliding window); (b) starts a relay with `batch_size = window / 2`
//!    (it keeps two batches in flight, so at most `window` unconfirmed) from an
//!    empty checkpoint on its own fresh exchange and queue, and times it until
//!    its checkpoint reaches the last event.
//! 3. Prints both rates and their ratio, then drops everything it created.
//!
//! Run with `bench/relay-throughput` (release build).

use anyhow::{Context, ensure};
use clap::Parser;
use command_service::relay::{self, RelayConfig, message_for};
use command_service::startup::MIGRATOR;
use event_log::store::Position;
use event_schema::StoredEvent;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind, PublisherConfirm};
use secrecy::SecretString;
use sqlx::{Connection as _, PgConnection, PgPool};
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use uuid::Uuid;

#[derive(Debug, Parser)]
struct Args {
    /// Events (and raw messages) per measurement.
    #[arg(long, default_value_t = 50_000)]
    events: i64,
    /// Confirms in flight, at most: the raw loop's sliding window, and twice
    /// the relay's batch size (it keeps two batches in flight).
    #[arg(long, default_value_t = 256)]
    window: usize,
    /// Measurement rounds (raw then relay, each round).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    #[arg(
        long,
        env = "SB_TEST_PG_ADMIN_URL",
        default_value = "postgres://postgres@127.0.0.1:5433/postgres"
    )]
    pg_admin_url: String,
    #[arg(
        long,
        env = "SB_TEST_RABBITMQ_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    amqp_url: String,
}

fn database_url(admin: &str, name: &str) -> String {
    let base = admin.rsplit_once('/').map_or(admin, |(base, _)| base);
    format!("{base}/{name}")
}

/// A durable topic exchange bound with `#` to a durable queue of the same name.
async fn declare(channel: &Channel, name: &str) -> anyhow::Result<()> {
    channel
        .exchange_declare(
            name.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_declare(
            name.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            name.into(),
            name.into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

/// Deletes the queue and exchange; returns how many messages the queue held.
async fn drop_topology(channel: &Channel, name: &str) -> anyhow::Result<u32> {
    let count = channel
        .queue_delete(name.into(), QueueDeleteOptions::default())
        .await?;
    channel
        .exchange_delete(name.into(), ExchangeDeleteOptions::default())
        .await?;
    Ok(count)
}

async fn insert_events(pool: &PgPool, count: i64) -> anyhow::Result<()> {
    let chunk = 1_000;
    let mut start = 1;
    while start <= count {
        let end = (start + chunk - 1).min(count);
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type,
                                 event_version, payload, metadata)
             SELECT 'Memory', gen_random_uuid()::text, 1, 'MemoryCaptured', '2',
                    jsonb_build_object('MemoryCaptured', jsonb_build_object(
                        'content', 'Benchmark memory ' || g || ':' || repeat(' remember this', 24),
                        'title', NULL, 'tags', jsonb_build_array('bench', 'relay'),
                        'metadata', '{}'::jsonb, 'session_id', NULL, 'occurred_at', NULL)),
                    jsonb_build_object('owner_id', 'bench-user', 'actor_id', 'bench-user',
                        'correlation_id', gen_random_uuid()::text,
                        'request_id', gen_random_uuid()::text,
                        'causation_id', gen_random_uuid()::text)
               FROM generate_series($1::bigint, $2::bigint) AS g",
        )
        .bind(start)
        .bind(end)
        .execute(pool)
        .await?;
        start = end + 1;
    }
    Ok(())
}

/// The first event in the store, as the relay reads it.
async fn sample_event(pool: &PgPool) -> anyhow::Result<StoredEvent> {
    let first = event_log::store::committed_after(pool, Position::default(), 1).await?;
    first
        .into_iter()
        .next()
        .map(|committed| committed.event)
        .ok_or_else(|| anyhow::anyhow!("the event store holds no committed event"))
}

/// The raw loop: N publishes of one message, `window` confirms in flight.
async fn raw_rate(args: &Args, event: &StoredEvent) -> anyhow::Result<f64> {
    let connection = Connection::connect(&args.amqp_url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let name = format!("bench_raw_{}", Uuid::new_v4().simple());
    declare(&channel, &name).await?;
    let message = message_for(event, 1)?;
    let mut in_flight: VecDeque<PublisherConfirm> = VecDeque::with_capacity(args.window);
    let started = Instant::now();
    for _ in 0..args.events {
        if in_flight.len() == args.window
            && let Some(oldest) = in_flight.pop_front()
        {
            ensure!(oldest.await?.is_ack(), "nack");
        }
        in_flight.push_back(
            channel
                .basic_publish(
                    name.as_str().into(),
                    message.routing_key.clone(),
                    BasicPublishOptions::default(),
                    &message.body,
                    message.properties.clone(),
                )
                .await?,
        );
    }
    for confirm in in_flight {
        ensure!(confirm.await?.is_ack(), "nack");
    }
    let elapsed = started.elapsed();
    let queued = drop_topology(&channel, &name).await?;
    ensure!(
        i64::from(queued) == args.events,
        "raw: queue held {queued}, not {}",
        args.events
    );
    connection.close(200, "done".into()).await?;
    Ok(args.events as f64 / elapsed.as_secs_f64())
}

/// A relay from an empty checkpoint over the N stored events.
async fn relay_rate(args: &Args, url: &str, pool: &PgPool) -> anyhow::Result<f64> {
    let connection = Connection::connect(&args.amqp_url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    let name = format!("bench_relay_{}", Uuid::new_v4().simple());
    declare(&channel, &name).await?;
    let last: i64 = sqlx::query_scalar(
        "SELECT global_position FROM events ORDER BY transaction_id DESC, global_position DESC LIMIT 1",
    )
    .fetch_one(pool)
    .await?;
    let config = RelayConfig {
        name: name.clone(),
        event_store_url: SecretString::from(url.to_owned()),
        rabbitmq_url: SecretString::from(args.amqp_url.clone()),
        exchange: name.clone(),
        batch_size: (args.window / 2).max(1),
        poll_interval: Duration::from_secs(1),
        standby_retry: Duration::from_secs(1),
        connection_name: format!("relay bench {name}"),
        partitions: 1,
    };
    let started = Instant::now();
    let handle = relay::spawn(config);
    loop {
        let at: Option<i64> =
            sqlx::query_scalar("SELECT global_position FROM relay_checkpoints WHERE name = $1")
                .bind(&name)
                .fetch_optional(pool)
                .await?;
        if at == Some(last) {
            break;
        }
        ensure!(
            started.elapsed() < Duration::from_secs(600),
            "the relay did not finish"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = started.elapsed();
    handle.shutdown().await;
    let queued = drop_topology(&channel, &name).await?;
    ensure!(
        i64::from(queued) == args.events,
        "relay: queue held {queued}, not {}",
        args.events
    );
    connection.close(200, "done".into()).await?;
    Ok(args.events as f64 / elapsed.as_secs_f64())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let database = format!("relay_bench_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&args.pg_admin_url)
        .await
        .context("connecting to the Postgres admin URL")?;
    sqlx::query(&format!(r#"CREATE DATABASE "{database}""#))
        .execute(&mut admin)
        .await?;
    let url = database_url(&args.pg_admin_url, &database);
    let result = async {
        let pool = PgPool::connect(&url).await?;
        MIGRATOR.run(&pool).await?;
        let started = Instant::now();
        insert_events(&pool, args.events).await?;
        let event = sample_event(&pool).await?;
        let body = message_for(&event, 1)?.body.len();
        println!(
            "inserted {} events in {:.1} s; message body {body} B; window {}",
            args.events,
            started.elapsed().as_secs_f64(),
            args.window
        );
        let mut raws = Vec::new();
        let mut relays = Vec::new();
        for round in 1..=args.rounds {
            let raw = raw_rate(&args, &event).await?;
            let relayed = relay_rate(&args, &url, &pool).await?;
            println!(
                "round {round}: raw lapin {raw:>8.0} msg/s   relay {relayed:>8.0} events/s   ratio {:.2}",
                relayed / raw
            );
            raws.push(raw);
            relays.push(relayed);
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        println!(
            "mean:    raw lapin {:>8.0} msg/s   relay {:>8.0} events/s   ratio {:.2} (target >= 0.80)",
            mean(&raws),
            mean(&relays),
            mean(&relays) / mean(&raws)
        );
        pool.close().await;
        anyhow::Ok(())
    }
    .await;
    sqlx::query(&format!(
        r#"DROP DATABASE IF EXISTS "{database}" WITH (FORCE)"#
    ))
    .execute(&mut admin)
    .await?;
    result
}
