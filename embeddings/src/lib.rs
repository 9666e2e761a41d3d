//! Sentence embeddings for Second Brain: one trait, chosen by configuration.
//!
//! - [`Embedder`] is what the projector and the query service hold, as an
//!   `Arc<dyn Embedder>`: a stable [`Embedder::model_id`] (the embedding cache's
//!   key, stored beside every vector), a fixed [`Embedder::dimension`], and
//!   [`Embedder::embed`], which returns one L2-normalised vector per input, in
//!   order.
//! - [`local`]: all-MiniLM-L6-v2 run in-process with candle and tokenizers (the
//!   default; no network). Inference runs on tokio's blocking pool, never on the
//!   async threads.
//! - [`onnx`]: the same model, the same tokenizer and the same vectors, run by
//!   ONNX Runtime (loaded from a shared library at start-up), about twice as
//!   fast as candle on a CPU; what the deployments in this repository use.
//! - [`openai`]: any OpenAI-compatible `/v1/embeddings` endpoint (OpenAI, Ollama,
//!   vLLM, TEI), with batching, timeouts and retries with backoff.
//! - [`settings`]: the `SB_*` variables, as a struct a service flattens into its
//!   own settings, turned into an [`EmbedderConfig`] by
//!   [`EmbeddingSettings::to_config`]; [`build`] turns that into an embedder.

use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;

mod error;
pub mod local;
pub mod onnx;
pub mod openai;
pub mod settings;

pub use error::EmbedError;
pub use reqwest::Url;
pub use settings::{EmbeddingProvider, EmbeddingSettings, RuntimeChoice};

/// Turns texts into vectors.
#[async_trait::async_trait]
pub trait Embedder: Send + Sync + Debug {
    /// Stable id of model and provider, e.g. `local/all-MiniLM-L6-v2` or
    /// `openai/text-embedding-3-small@384`: the cache key, stored beside vectors.
    /// Two embedders with the same id give the same vector for the same text.
    fn model_id(&self) -> &str;

    /// Length of every vector [`Embedder::embed`] returns.
    fn dimension(&self) -> usize;

    /// One vector per input, in input order, each of length
    /// [`Embedder::dimension`] and L2-normalised (so a dot product is the
    /// cosine similarity). An empty slice gives an empty result.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError>;
}

/// Which embedder to build, validated; usually made by
/// [`EmbeddingSettings::to_config`].
#[derive(Debug, Clone)]
pub enum EmbedderConfig {
    /// A sentence-transformers BERT model in a directory holding `config.json`,
    /// `tokenizer.json` and `model.safetensors`.
    Local {
        model_dir: PathBuf,
        /// Names the weights in [`Embedder::model_id`] (`local/<model_name>`);
        /// change it whenever `model_dir` holds other weights, or cached
        /// vectors of the old model would be reused.
        model_name: String,
        /// Texts per forward pass.
        max_batch: usize,
        /// What runs the model.
        runtime: LocalRuntime,
    },
    /// An OpenAI-compatible embeddings endpoint.
    OpenAi {
        /// With or without a trailing `/v1`: see [`openai::endpoint`].
        base_url: Url,
        model: String,
        /// Sent as `Authorization: Bearer …` when set.
        api_key: Option<SecretString>,
        /// Sent as `dimensions` and checked on every response; when unset the
        /// dimension is discovered once, at [`build`], by embedding a probe.
        dimensions: Option<usize>,
        /// Texts per request.
        max_batch: usize,
        /// Per attempt, connecting included.
        timeout: Duration,
        /// Retries after the first attempt, on 429, 5xx and transport errors.
        max_retries: u32,
        /// Each input is cut to this many characters before it is sent, so a
        /// long text is embedded from its beginning instead of being refused
        /// by the provider: see [`openai::DEFAULT_MAX_INPUT_CHARS`].
        max_input_chars: usize,
    },
}

/// What runs the local model; both give the same vectors (to float rounding)
/// under the same model id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalRuntime {
    /// candle, from `model.safetensors`: needs nothing but the model directory.
    Candle,
    /// ONNX Runtime, on the graph `embeddings/tools/export_onnx.py` wrote from
    /// the same weights.
    Onnx {
        /// The exported `.onnx` file.
        graph: PathBuf,
        /// ONNX Runtime's shared library (`libonnxruntime.so`, 1.17 or later; tested with 1.30).
        library: PathBuf,
        /// Sessions in the pool: how many batches run at once.
        sessions: usize,
    },
}

/// Builds the configured embedder: loads the local model (on a blocking
/// thread), or, for OpenAI, builds the HTTP client and, when no dimension is
/// configured, asks the server once for it.
pub async fn build(config: &EmbedderConfig) -> Result<Arc<dyn Embedder>, EmbedError> {
    match config {
        EmbedderConfig::Local {
            model_dir,
            model_name,
            max_batch,
            runtime,
        } => {
            let (dir, name, batch) = (model_dir.clone(), model_name.clone(), *max_batch);
            let runtime = runtime.clone();
            let loaded = tokio::task::spawn_blocking(move || -> Result<Arc<dyn Embedder>, _> {
                Ok(match runtime {
                    LocalRuntime::Candle => {
                        Arc::new(local::LocalEmbedder::load(&dir, &name, batch)?)
                    }
                    LocalRuntime::Onnx {
                        graph,
                        library,
                        sessions,
                    } => Arc::new(onnx::OnnxEmbedder::load(
                        &dir, &graph, &library, &name, batch, sessions,
                    )?),
                })
            })
            .await
            .map_err(|e| EmbedError::ModelLoad {
                path: model_dir.clone(),
                reason: format!("loading task failed: {e}"),
            })??;
            Ok(loaded)
        }
        EmbedderConfig::OpenAi { .. } => Ok(Arc::new(openai::OpenAiEmbedder::new(config).await?)),
    }
}

/// Scales `v` to unit length; `false` (and `v` untouched) when it has no
/// length to scale.
pub(crate) fn l2_normalise(v: &mut [f32]) -> bool {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if !norm.is_finite() || norm == 0.0 {
        return false;
    }
    v.iter_mut().for_each(|x| *x /= norm);
    true
}
