//! Postgres restarts under load, on a throwaway cluster of the test's own:
//! once Postgres answers again, no request fails on either service, and the
//! relay and projector carry on.

use reqwest::{Method, StatusCode};
use serde_json::json;
use service_kit::auth::{ApiKeyStore, UserId};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use test_kit::pg_cluster::{Shutdown, ThrowawayPostgres};
use test_kit::poll::DEADLINE;
use test_kit::stack::{Stack, spawn_query_stack_on};
use tokio::time::Instant;
use uuid::Uuid;

const USER: &str = "restart-user";

/// One kind of request the load sends, each through another path to Postgres.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Command service: a creation (append on a fresh stream), JWT.
    Capture,
    /// Command service: load, decide, append on a busy stream, JWT.
    Tag,
    /// Command service: a creation authenticated by an API key.
    CaptureWithKey,
    /// Query service: a list from the read database, JWT.
    List,
    /// Query service: history from the event store, JWT.
    History,
    /// Query service: a list authenticated by an API key (looked up in the
    /// event store while the key cache is bypassed after a restart).
    ListWithKey,
    /// Query service: a document by id.
    ById,
}

const KINDS: [Kind; 7] = [
    Kind::Capture,
    Kind::Tag,
    Kind::CaptureWithKey,
    Kind::List,
    Kind::History,
    Kind::ListWithKey,
    Kind::ById,
];

#[derive(Debug, Clone)]
struct Outcome {
    kind: Kind,
    started: Instant,
    ended: Instant,
    status: StatusCode,
    content_type: Option<String>,
    // Read only through Debug, when an assertion prints the outcome.
    #[allow(dead_code)]
    body: String,
}

#[derive(Clone)]
struct Target {
    command: String,
    query: String,
    jwt: String,
    api_key: String,
    memory: Uuid,
}

async fn send(client: &reqwest::Client, target: &Target, kind: Kind, n: u64) -> Outcome {
    let started = Instant::now();
    let (method, url, credential, body) = match kind {
        Kind::Capture => (
            Method::POST,
            format!("{}/v1/memories", target.command),
            &target.jwt,
            Some(json!({ "content": format!("captured under load {n}") })),
        ),
        Kind::Tag => (
            Method::POST,
            format!("{}/v1/memories/{}/tags", target.command, target.memory),
            &target.jwt,
            Some(json!({ "tags": [format!("t{}", n % 50)] })),
        ),
        Kind::CaptureWithKey => (
            Method::POST,
            format!("{}/v1/memories", target.command),
            &target.api_key,
            Some(json!({ "content": format!("captured with a key {n}") })),
        ),
        Kind::List => (
            Method::GET,
            format!("{}/v1/memories?limit=5", target.query),
            &target.jwt,
            None,
        ),
        Kind::History => (
            Method::GET,
            format!("{}/v1/memories/{}/history", target.query, target.memory),
            &target.jwt,
            None,
        ),
        Kind::ListWithKey => (
            Method::GET,
            format!("{}/v1/memories?limit=5", target.query),
            &target.api_key,
            None,
        ),
        Kind::ById => (
            Method::GET,
            format!("{}/v1/memories/{}", target.query, target.memory),
            &target.jwt,
            None,
        ),
    };
    let mut request = client
        .request(method, url)
        .bearer_auth(credential)
        .timeout(Duration::from_secs(30));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let (status, content_type, body) = match request.send().await {
        Ok(response) => {
            let status = response.status();
            let content_type = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            (
                status,
                content_type,
                response.text().await.unwrap_or_default(),
            )
        }
        // No answer at all: the worst failure; never expected.
        Err(error) => (StatusCode::IM_A_TEAPOT, None, format!("no answer: {error}")),
    };
    Outcome {
        kind,
        started,
        ended: Instant::now(),
        status,
        content_type,
        body,
    }
}

/// Workers sending every kind of request in turn until stopped.
struct Load {
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(target: &Target, workers: usize) -> Self {
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..workers)
            .map(|worker| {
                let (target, outcomes, stop) = (target.clone(), outcomes.clone(), stop.clone());
                tokio::spawn(async move {
                    let client = reqwest::Client::new();
                    let mut n = worker as u64 * 1_000_000;
                    while !stop.load(Ordering::Relaxed) {
                        let kind = KINDS[(n % KINDS.len() as u64) as usize];
                        let outcome = send(&client, &target, kind, n).await;
                        outcomes.lock().unwrap().push(outcome);
                        n += 1;
                    }
                })
            })
            .collect();
        Self {
            outcomes,
            stop,
            workers,
        }
    }

    /// Polls until every kind has `n` answers to requests sent after `since`.
    async fn wait_for_answers_since(&self, since: Instant, n: usize) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let enough = {
                let outcomes = self.outcomes.lock().unwrap();
                KINDS.iter().all(|kind| {
                    outcomes
                        .iter()
                        .filter(|o| o.kind == *kind && o.started >= since)
                        .count()
                        >= n
                })
            };
            if enough {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the load stalled after Postgres came back"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::Relaxed);
        for worker in self.workers {
            worker.await.unwrap();
        }
        Arc::try_unwrap(self.outcomes)
            .map(|m| m.into_inner().unwrap())
            .unwrap_or_else(|shared| shared.lock().unwrap().clone())
    }
}

/// Every kind of request, four of each, all at once.
async fn burst(target: &Target) -> Vec<Outcome> {
    let client = reqwest::Client::new();
    let requests = (0..4u64).flat_map(|round| {
        KINDS
            .into_iter()
            .map(move |kind| (kind, 9_000_000 + round * 10 + kind as u64))
    });
    futures::future::join_all(requests.map(|(kind, n)| send(&client, target, kind, n))).await
}

fn succeeded(outcome: &Outcome) -> bool {
    outcome.status.is_success()
}

async fn setup(stack: &Stack) -> Target {
    let (_, api_key) = ApiKeyStore::new(stack.event_pool.clone())
        .create(&UserId::parse(USER).unwrap(), "restarts")
        .await
        .unwrap();
    let memory = stack
        .capture(USER, json!({ "content": "the memory every read asks for" }))
        .await;
    let target = Target {
        command: stack.command.clone(),
        query: stack.query().to_owned(),
        jwt: stack.token(USER),
        api_key,
        memory,
    };
    wait_until_readable(stack, memory).await;
    target
}

/// Polls the query service until the projector has made `id` readable.
async fn wait_until_readable(stack: &Stack, id: Uuid) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (status, _) = stack.get(&format!("/v1/memories/{id}"), USER).await;
        if status == StatusCode::OK {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "memory {id} never became readable: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_request_fails_once_postgres_is_back_from_a_fast_or_an_immediate_restart() {
    let cluster = ThrowawayPostgres::start().await;
    let stack = spawn_query_stack_on(&cluster.admin_url(), &[]).await;
    let target = setup(&stack).await;

    let load = Load::start(&target, 4);
    load.wait_for_answers_since(Instant::now(), 2).await;
    // Each restart: from the moment it is asked for until Postgres answers a
    // new connection again, requests may fail, and then only cleanly.
    let mut outages = Vec::new();
    for mode in [Shutdown::Fast, Shutdown::Immediate] {
        let began = Instant::now();
        cluster.restart(mode).await;
        cluster.wait_until_answering().await;
        let back = Instant::now();
        outages.push((mode, began, back));
        load.wait_for_answers_since(back, 3).await;
    }
    let outcomes = load.stop().await;

    let overlaps = |o: &Outcome| {
        outages
            .iter()
            .any(|(_, began, back)| o.started < *back && o.ended > *began)
    };
    let failed_outside: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| !overlaps(o) && !succeeded(o))
        .collect();
    assert!(
        failed_outside.is_empty(),
        "{} of {} requests outside the outages failed, e.g. {:#?}",
        failed_outside.len(),
        outcomes.len(),
        &failed_outside[..failed_outside.len().min(5)]
    );
    for (mode, _, back) in &outages {
        for kind in KINDS {
            assert!(
                outcomes
                    .iter()
                    .any(|o| o.kind == kind && o.started >= *back && succeeded(o)),
                "no {kind:?} succeeded after the {mode:?} restart"
            );
        }
    }
    // During an outage a request may fail, but only as a clean 503 problem.
    for failed in outcomes.iter().filter(|o| !succeeded(o)) {
        assert_eq!(
            (failed.status, failed.content_type.as_deref()),
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Some("application/problem+json")
            ),
            "{failed:#?}"
        );
    }

    // The case first found: an immediate restart while idle, then requests
    // on pools that hold only connections the restart killed, several of
    // them at once (a burst first, so that each pool holds several).
    burst(&target).await;
    cluster.restart(Shutdown::Immediate).await;
    cluster.wait_until_answering().await;
    for outcome in burst(&target).await {
        assert!(succeeded(&outcome), "after an idle restart: {outcome:#?}");
    }

    // The relay and the projector carried on through all three restarts.
    let late = stack
        .capture(USER, json!({ "content": "captured after the restarts" }))
        .await;
    wait_until_readable(&stack, late).await;
}
