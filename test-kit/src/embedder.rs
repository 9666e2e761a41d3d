//! The embedders tests run: the local model, as the services read its
//! settings, and an OpenAI-compatible one against [`crate::fake_openai`].

use embeddings::Embedder;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

/// The local model, loaded once per test process.
pub async fn local_embedder() -> Arc<dyn Embedder> {
    static EMBEDDER: OnceCell<Arc<dyn Embedder>> = OnceCell::const_new();
    EMBEDDER
        .get_or_init(|| async {
            // As the services read it: the model directory, and the runtime
            // with its graph and library (`deploy/native/stack test` sets
            // all of them, choosing ONNX Runtime as the deployments do).
            let settings: embeddings::EmbeddingSettings = service_kit::settings::from_env()
                .expect("the SB_EMBEDDING_* variables are valid");
            assert!(
                settings.embedding_model_dir.is_some(),
                "SB_EMBEDDING_MODEL_DIR names the all-MiniLM-L6-v2 model (deploy/native/stack test sets it)"
            );
            embeddings::build(&settings.to_config().unwrap()).await.unwrap()
        })
        .await
        .clone()
}

/// An embedder of `dimension` against a fresh [`crate::fake_openai`] server.
pub async fn openai_embedder(dimension: usize) -> Arc<dyn Embedder> {
    let config = embeddings::EmbedderConfig::OpenAi {
        base_url: embeddings::Url::parse(&crate::fake_openai::fake_openai(dimension).await)
            .unwrap(),
        model: format!("fake-{dimension}"),
        api_key: None,
        dimensions: Some(dimension),
        max_batch: 64,
        timeout: Duration::from_secs(10),
        max_retries: 2,
        max_input_chars: embeddings::openai::DEFAULT_MAX_INPUT_CHARS,
    };
    embeddings::build(&config).await.unwrap()
}
