use std::time::Duration;

use embeddings::{EmbedError, EmbedderConfig, Url};
use secrecy::SecretString;

use crate::fake_openai::{self, Behaviour, DEFAULT_DIMENSION, FakeOpenAi, KEY, MODEL, fake_vector};

fn config(server: &FakeOpenAi) -> EmbedderConfig {
    EmbedderConfig::OpenAi {
        base_url: Url::parse(&server.base_url).unwrap(),
        model: MODEL.to_owned(),
        api_key: Some(SecretString::from(KEY)),
        dimensions: Some(DEFAULT_DIMENSION),
        max_batch: 32,
        timeout: Duration::from_secs(5),
        max_retries: 5,
        max_input_chars: embeddings::openai::DEFAULT_MAX_INPUT_CHARS,
    }
}

fn with(config: EmbedderConfig, change: impl FnOnce(&mut EmbedderConfig)) -> EmbedderConfig {
    let mut config = config;
    change(&mut config);
    config
}

fn texts(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("text number {i}")).collect()
}

fn normalised(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

#[tokio::test]
async fn vectors_come_back_in_input_order_and_normalised() {
    let server = fake_openai::spawn(Behaviour::default());
    let embedder = embeddings::build(&config(&server)).await.unwrap();
    let inputs = texts(5);

    let vectors = embedder.embed(&inputs).await.unwrap();

    assert_eq!(vectors.len(), 5);
    for (text, vector) in inputs.iter().zip(&vectors) {
        let expected = normalised(fake_vector(text, DEFAULT_DIMENSION));
        for (a, b) in vector.iter().zip(&expected) {
            assert!((a - b).abs() < 1e-6, "{text}: {vector:?} vs {expected:?}");
        }
    }
    assert_eq!(embedder.dimension(), DEFAULT_DIMENSION);
    assert_eq!(embedder.model_id(), "openai/fake-embed@8");
    assert_eq!(server.requested_dimensions(), vec![Some(8)]);
}

#[tokio::test]
async fn requests_are_split_at_max_batch() {
    let server = fake_openai::spawn(Behaviour::default());
    let config = with(config(&server), |c| {
        if let EmbedderConfig::OpenAi { max_batch, .. } = c {
            *max_batch = 2;
        }
    });
    let embedder = embeddings::build(&config).await.unwrap();
    let inputs = texts(5);

    let vectors = embedder.embed(&inputs).await.unwrap();

    assert_eq!(server.batch_sizes(), vec![2, 2, 1]);
    let expected = normalised(fake_vector(&inputs[4], DEFAULT_DIMENSION));
    assert!((vectors[4][0] - expected[0]).abs() < 1e-6);
}

#[tokio::test]
async fn rate_limited_requests_are_retried_after_the_retry_after_delay() {
    let server = fake_openai::spawn(Behaviour {
        rate_limited_calls: 3,
        ..Behaviour::default()
    });
    let embedder = embeddings::build(&config(&server)).await.unwrap();

    let started = std::time::Instant::now();
    let vectors = embedder.embed(&texts(2)).await.unwrap();

    assert_eq!(vectors.len(), 2);
    assert_eq!(server.calls(), 4);
    // `Retry-After: 0` is honoured instead of the exponential backoff
    // (0.25 + 0.5 + 1 s at least half of it).
    assert!(
        started.elapsed() < Duration::from_millis(800),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_server_error_is_retried() {
    let server = fake_openai::spawn(Behaviour {
        failing_calls: 1,
        ..Behaviour::default()
    });
    let embedder = embeddings::build(&config(&server)).await.unwrap();

    let vectors = embedder.embed(&texts(3)).await.unwrap();

    assert_eq!(vectors.len(), 3);
    assert_eq!(server.calls(), 2);
}

#[tokio::test]
async fn retries_stop_after_max_retries() {
    let server = fake_openai::spawn(Behaviour {
        rate_limited_calls: usize::MAX,
        ..Behaviour::default()
    });
    let config = with(config(&server), |c| {
        if let EmbedderConfig::OpenAi { max_retries, .. } = c {
            *max_retries = 2;
        }
    });
    let embedder = embeddings::build(&config).await.unwrap();

    let err = embedder.embed(&texts(1)).await.unwrap_err();

    assert_eq!(server.calls(), 3);
    match err {
        EmbedError::RetriesExhausted { attempts: 3, last } => {
            assert!(
                matches!(*last, EmbedError::Http { status: 429, .. }),
                "{last:?}"
            );
        }
        other => panic!("expected RetriesExhausted, got {other:?}"),
    }
}

#[tokio::test]
async fn a_bad_request_fails_at_once_without_retry() {
    let server = fake_openai::spawn(Behaviour {
        bad_request: true,
        ..Behaviour::default()
    });
    let embedder = embeddings::build(&config(&server)).await.unwrap();

    let err = embedder.embed(&texts(1)).await.unwrap_err();

    assert_eq!(server.calls(), 1);
    match &err {
        EmbedError::Http { status: 400, body } => assert!(body.contains("maximum context length")),
        other => panic!("expected a 400, got {other:?}"),
    }
    assert!(err.rejects_input());
}

#[tokio::test]
async fn a_413_or_422_for_one_input_rejects_that_input_at_once() {
    for status in [413, 422] {
        let server = fake_openai::spawn(Behaviour {
            refuse_inputs_containing: Some(("REFUSE-ME".to_owned(), status)),
            ..Behaviour::default()
        });
        let embedder = embeddings::build(&config(&server)).await.unwrap();

        let err = embedder
            .embed(&["a fine text".to_owned(), "REFUSE-ME please".to_owned()])
            .await
            .unwrap_err();

        assert_eq!(server.calls(), 1, "{status}: not retried");
        assert!(
            matches!(err, EmbedError::Http { status: s, .. } if s == status),
            "{err:?}"
        );
        assert!(err.rejects_input(), "{status}");
        // The other texts are fine on their own.
        assert_eq!(embedder.embed(&texts(2)).await.unwrap().len(), 2);
    }
}

#[tokio::test]
async fn long_inputs_are_cut_to_the_limit_before_they_are_sent() {
    let server = fake_openai::spawn(Behaviour::default());
    let config = with(config(&server), |c| {
        if let EmbedderConfig::OpenAi {
            max_input_chars, ..
        } = c
        {
            *max_input_chars = 50;
        }
    });
    let embedder = embeddings::build(&config).await.unwrap();
    let long = "é".repeat(120);
    let inputs = vec!["short".to_owned(), long.clone()];

    let vectors = embedder.embed(&inputs).await.unwrap();

    assert_eq!(server.input_chars(), vec![5, 50]);
    // The vector is the one of the text's first 50 characters.
    let cut: String = long.chars().take(50).collect();
    let expected = normalised(fake_vector(&cut, DEFAULT_DIMENSION));
    for (a, b) in vectors[1].iter().zip(&expected) {
        assert!((a - b).abs() < 1e-6);
    }
}

#[tokio::test]
async fn a_wrong_key_fails_without_the_key_in_the_error() {
    let server = fake_openai::spawn(Behaviour::default());
    let config = with(config(&server), |c| {
        if let EmbedderConfig::OpenAi { api_key, .. } = c {
            *api_key = Some(SecretString::from("sk-wrong-key"));
        }
    });
    let embedder = embeddings::build(&config).await.unwrap();

    let err = embedder.embed(&texts(1)).await.unwrap_err();

    assert!(
        matches!(err, EmbedError::Http { status: 401, .. }),
        "{err:?}"
    );
    // Configuration, not the input's fault.
    assert!(!err.rejects_input());
    assert_eq!(server.calls(), 1);
    assert!(!format!("{err} {err:?} {embedder:?}").contains("sk-wrong-key"));
}

#[tokio::test]
async fn without_a_configured_dimension_one_probe_discovers_it() {
    let server = fake_openai::spawn(Behaviour::default());
    let config = with(config(&server), |c| {
        if let EmbedderConfig::OpenAi { dimensions, .. } = c {
            *dimensions = None;
        }
    });

    let embedder = embeddings::build(&config).await.unwrap();

    assert_eq!(server.calls(), 1);
    assert_eq!(server.requested_dimensions(), vec![None]);
    assert_eq!(embedder.dimension(), DEFAULT_DIMENSION);
    assert_eq!(embedder.model_id(), "openai/fake-embed@8");
    assert_eq!(
        embedder.embed(&texts(2)).await.unwrap()[1].len(),
        DEFAULT_DIMENSION
    );
}

#[tokio::test]
async fn a_server_answering_another_dimension_is_an_error() {
    let server = fake_openai::spawn(Behaviour {
        ignore_requested_dimensions: Some(4),
        ..Behaviour::default()
    });
    let embedder = embeddings::build(&config(&server)).await.unwrap();

    let err = embedder.embed(&texts(1)).await.unwrap_err();

    assert!(
        matches!(
            err,
            EmbedError::DimensionMismatch {
                expected: 8,
                actual: 4
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_slow_answer_times_out_and_is_retried() {
    let server = fake_openai::spawn(Behaviour {
        first_call_delay: Some(Duration::from_secs(2)),
        ..Behaviour::default()
    });
    let config = with(config(&server), |c| {
        if let EmbedderConfig::OpenAi { timeout, .. } = c {
            *timeout = Duration::from_millis(300);
        }
    });
    let embedder = embeddings::build(&config).await.unwrap();

    let vectors = embedder.embed(&texts(1)).await.unwrap();

    assert_eq!(vectors.len(), 1);
    assert_eq!(server.calls(), 2);
}

#[tokio::test]
async fn an_unreachable_server_is_retried_then_reported() {
    // A port that was free a moment ago and has nothing listening on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = EmbedderConfig::OpenAi {
        base_url: Url::parse(&format!("http://127.0.0.1:{port}/v1")).unwrap(),
        model: MODEL.to_owned(),
        api_key: None,
        dimensions: Some(DEFAULT_DIMENSION),
        max_batch: 32,
        timeout: Duration::from_secs(2),
        max_retries: 1,
        max_input_chars: 100,
    };
    let embedder = embeddings::build(&config).await.unwrap();

    let err = embedder.embed(&texts(1)).await.unwrap_err();

    assert!(!err.rejects_input());
    match err {
        EmbedError::RetriesExhausted { attempts: 2, last } => {
            assert!(matches!(*last, EmbedError::Transport(_)), "{last:?}");
        }
        other => panic!("expected RetriesExhausted, got {other:?}"),
    }
}
