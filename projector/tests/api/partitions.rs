//! Projectors scaled out by partition: the relay splits the events by
//! aggregate over P routing-key suffixes, each projector consumes its
//! partition's queues, and together they build read models equal to the fold.

use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use projector::settings::Settings;
use projector::startup::Application as ProjectorApp;
use serde_json::json;
use test_kit::broker::{self, rabbitmq_url};
use test_kit::embedder::local_embedder;
use test_kit::stack::{Options, spawn_projector_stack};

const PARTITIONS: u32 = 2;

#[tokio::test]
async fn two_projectors_on_two_partitions_build_read_models_equal_to_the_fold() {
    let stack = spawn_projector_stack(Options {
        relay: false,
        projector: false,
    })
    .await;
    // One projector per partition; their consumers declare their queues.
    let mut projectors = Vec::new();
    for partition in 0..PARTITIONS {
        let mut vars = stack.projector_vars.clone();
        vars.push(("SB_PROJECTOR_PARTITIONS".to_owned(), PARTITIONS.to_string()));
        vars.push(("SB_PROJECTOR_PARTITION".to_owned(), partition.to_string()));
        let settings: Settings = service_kit::settings::from_vars(vars).unwrap();
        settings.validate().unwrap();
        let app = ProjectorApp::build(&settings, local_embedder().await)
            .await
            .unwrap();
        projectors.push(tokio::spawn(app.run_until_stopped()));
    }
    // Every partition's queues must exist before the relay publishes: a
    // message routed to one read model's queue but not yet the other's would
    // reach only the first (`projector migrate` declares them all up front).
    let connection = Connection::connect(&rabbitmq_url(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let queue_of = |partition: u32, projection: &str| {
        format!("{}.{projection}.p{partition}", stack.queue_prefix)
    };
    let passive = || QueueDeclareOptions {
        passive: true,
        durable: true,
        ..Default::default()
    };
    for partition in 0..PARTITIONS {
        for projection in ["search", "documents"] {
            let queue = queue_of(partition, projection);
            stack
                .eventually(&format!("queue {queue}"), || async {
                    // A failed passive declare closes the channel: use a fresh one.
                    let probe = connection.create_channel().await.unwrap();
                    probe
                        .queue_declare(queue.as_str().into(), passive(), FieldTable::default())
                        .await
                        .is_ok()
                })
                .await;
        }
    }
    let relay = broker::spawn_relay(broker::relay_config(
        &stack.events_url,
        &stack.exchange,
        format!("sbt_{} partitioned relay", stack.tag),
        64,
        PARTITIONS,
    ));

    let session = stack.start_session("alice", "Split").await;
    for i in 0..20 {
        let id = stack
            .capture(
                "alice",
                json!({"content": format!("partitioned {i}"), "session_id": session}),
            )
            .await;
        stack.add_tags("alice", id, json!(["split"])).await;
    }
    // Every event reached the read models through one partition or the other
    // (the relay holds any event whose partition has no queue yet).
    stack.wait_until_verified().await;

    // Each partition has its own queues, each with its one consumer.
    for partition in 0..PARTITIONS {
        for projection in ["search", "documents"] {
            let queue = queue_of(partition, projection);
            let declared = channel
                .queue_declare(queue.as_str().into(), passive(), FieldTable::default())
                .await
                .unwrap();
            assert_eq!(declared.consumer_count(), 1, "{queue}");
        }
    }
    relay.shutdown().await;
    for projector in projectors {
        projector.abort();
    }
    for partition in 0..PARTITIONS {
        for projection in ["search", "documents"] {
            let queue = queue_of(partition, projection);
            let _ = channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
    }
    connection.close(200, "done".into()).await.ok();
}
