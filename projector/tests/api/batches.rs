//! Batches across deliveries: a burst is embedded a batch at a time (one
//! embedding call per batch, each text once, the next batch's texts while
//! the batch before it is written), the read models end equal to the fold,
//! and every delivery is acknowledged once applied. (Metrics are not
//! asserted: the recorder is global to the test process, shared by every
//! test's projector.)

use embeddings::{EmbedError, Embedder};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use test_kit::broker::rabbitmqctl;
use test_kit::embedder::local_embedder;
use test_kit::stack::{Options, spawn_projector_stack};

/// The local model, counting the calls made to it and the texts sent.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn Embedder>,
    calls: AtomicUsize,
    texts: AtomicUsize,
}

#[async_trait::async_trait]
impl Embedder for Counting {
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }

    fn dimension(&self) -> usize {
        self.inner.dimension()
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.texts.fetch_add(texts.len(), Ordering::SeqCst);
        self.inner.embed(texts).await
    }
}

#[tokio::test]
async fn a_burst_is_embedded_in_a_few_calls_each_text_once_and_every_delivery_is_acknowledged() {
    // No relay: the burst is the deliveries this test publishes at once.
    let mut stack = spawn_projector_stack(Options {
        relay: false,
        projector: false,
    })
    .await;
    // Every memory, then a revision of each, then another: a memory's
    // events lie more than a batch apart, so each is embedded in its own
    // batch, some ahead of the write of the batch before (which holds the
    // memory's previous event).
    let (memories, revisions) = (120, 2);
    let mut ids = Vec::new();
    for i in 0..memories {
        ids.push(stack.note("alice", format!("burst note {i}")).await);
    }
    for r in 0..revisions {
        for (i, id) in ids.iter().enumerate() {
            stack
                .revise(
                    "alice",
                    *id,
                    json!({"content": format!("burst note {i}, revision {r}")}),
                )
                .await;
        }
    }
    let texts = memories * (1 + revisions);
    let bodies = stack.stored_bodies().await;
    assert_eq!(bodies.len(), texts);

    let counting = Arc::new(Counting {
        inner: local_embedder().await,
        calls: AtomicUsize::new(0),
        texts: AtomicUsize::new(0),
    });
    stack.start_projector_with(counting.clone()).await;
    for projection in ["search", "documents"] {
        stack.inject(projection, &bodies).await;
    }
    stack.wait_until_verified().await;

    // Batches formed across deliveries: far fewer calls than events, and
    // each text embedded once (what was embedded ahead of a batch's turn
    // was found in the cache in its turn).
    let calls = counting.calls.load(Ordering::SeqCst);
    assert_eq!(counting.texts.load(Ordering::SeqCst), texts);
    assert!(
        calls * 8 <= texts,
        "{calls} embedding calls for {texts} events"
    );
    // Acknowledged once applied: nothing left ready or unacknowledged.
    let queues = stack.queue_names();
    stack
        .eventually("every delivery is acknowledged", || async {
            let listing = rabbitmqctl(&["list_queues", "name", "messages"]).await;
            queues.iter().all(|queue| {
                listing.lines().any(|line| {
                    line.split_whitespace().collect::<Vec<_>>() == [queue.as_str(), "0"]
                })
            })
        })
        .await;
}
