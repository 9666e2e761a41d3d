//! The local model run by ONNX Runtime instead of candle: the same vectors
//! (to float rounding) in about half the time on a CPU.
//!
//! - The graph is `embeddings/tools/export_onnx.py`'s: built from the same
//!   `config.json` and `model.safetensors` that [`crate::local`] reads, taking
//!   `input_ids` and `attention_mask` and returning the mean-pooled,
//!   L2-normalised `embedding`. Tokenisation is [`crate::local`]'s, so both
//!   runtimes see the same ids, and the model id is the same
//!   (`local/<name>`): switching runtime needs no re-embedding.
//! - ONNX Runtime is loaded at run time from a shared library (the
//!   `onnxruntime` wheel's `libonnxruntime.so`), once per process.
//! - A session runs one batch at a time, so the embedder keeps a small pool of
//!   sessions, each on one thread: concurrent queries run side by side, and
//!   one call's batches are spread over the pool.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::TensorRef;
use tokenizers::Tokenizer;

use crate::local::{Tokens, batches, load_config, load_tokenizer, tokenize};
use crate::{EmbedError, Embedder};

/// The graph's input and output names, as `export_onnx.py` writes them.
const INPUT_IDS: &str = "input_ids";
const ATTENTION_MASK: &str = "attention_mask";
const OUTPUT: &str = "embedding";

/// The local model on ONNX Runtime; cheap to share, as the model sits behind
/// an [`Arc`].
pub struct OnnxEmbedder {
    model: Arc<Model>,
    model_id: String,
    max_batch: usize,
}

struct Model {
    sessions: Vec<Mutex<Session>>,
    /// Where a caller waits when every session is busy, round robin.
    next: AtomicUsize,
    tokenizer: Tokenizer,
    dimension: usize,
}

impl fmt::Debug for OnnxEmbedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnnxEmbedder")
            .field("model_id", &self.model_id)
            .field("dimension", &self.model.dimension)
            .field("sessions", &self.model.sessions.len())
            .field("max_batch", &self.max_batch)
            .finish_non_exhaustive()
    }
}

/// The process's ONNX Runtime: loaded from one library file, once. A failed
/// load is not kept, so a corrected path can be tried again.
static RUNTIME: Mutex<Option<(PathBuf, Environment)>> = Mutex::new(None);

fn runtime(library: &Path) -> Result<Environment, EmbedError> {
    let error = |reason: String| EmbedError::ModelLoad {
        path: library.to_owned(),
        reason,
    };
    let mut loaded = RUNTIME.lock().unwrap_or_else(PoisonError::into_inner);
    match &*loaded {
        Some((path, environment)) if path == library => return Ok(environment.clone()),
        Some((path, _)) => {
            return Err(error(format!(
                "ONNX Runtime is already loaded in this process from {}; one library per process",
                path.display()
            )));
        }
        None => {}
    }
    let environment = ort::init_from(library)
        .map_err(|e| error(format!("loading ONNX Runtime: {e}")))?
        .with_name("second-brain")
        .build()
        .map_err(|e| error(format!("starting ONNX Runtime: {e}")))?;
    *loaded = Some((library.to_owned(), environment.clone()));
    Ok(environment)
}

impl OnnxEmbedder {
    /// Loads ONNX Runtime from `library` (once per process), `graph` into
    /// `sessions` sessions, and the tokenizer and shape from `model_dir`.
    /// Blocking (it reads ~90 MB per session): call it off the async threads,
    /// as [`crate::build`] does.
    pub fn load(
        model_dir: &Path,
        graph: &Path,
        library: &Path,
        model_name: &str,
        max_batch: usize,
        sessions: usize,
    ) -> Result<Self, EmbedError> {
        let config = load_config(model_dir)?;
        let tokenizer = load_tokenizer(model_dir, config.max_position_embeddings)?;
        let environment = runtime(library)?;
        let graph_error = |e: ort::Error| EmbedError::ModelLoad {
            path: graph.to_owned(),
            reason: e.to_string(),
        };
        if !graph.is_file() {
            return Err(EmbedError::ModelLoad {
                path: graph.to_owned(),
                reason: "no such file (embeddings/tools/export_onnx.py writes it)".to_owned(),
            });
        }
        let sessions = (0..sessions.max(1))
            .map(|_| {
                Session::builder(&environment)
                    .map_err(graph_error)?
                    .with_optimization_level(GraphOptimizationLevel::Level3)
                    .map_err(|e| graph_error(e.into()))?
                    // One thread per session: the pool is the parallelism, and
                    // for a query's few tokens a second thread costs more in
                    // hand-off than it saves.
                    .with_intra_threads(1)
                    .map_err(|e| graph_error(e.into()))?
                    .with_inter_threads(1)
                    .map_err(|e| graph_error(e.into()))?
                    .commit_from_file(graph)
                    .map(Mutex::new)
                    .map_err(graph_error)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let embedder = Self {
            model: Arc::new(Model {
                sessions,
                next: AtomicUsize::new(0),
                tokenizer,
                dimension: config.hidden_size,
            }),
            model_id: format!("local/{model_name}"),
            max_batch: max_batch.max(1),
        };
        // A graph that is not the model's (another export, another config)
        // fails here, at start-up, rather than on the first write.
        let probe = embedder.model.embed_batch(&["probe"])?;
        if probe.len() != 1 {
            return Err(EmbedError::ModelLoad {
                path: graph.to_owned(),
                reason: format!("the graph returned {} vectors for one text", probe.len()),
            });
        }
        Ok(embedder)
    }

    /// [`Embedder::embed`] on the calling thread: for callers that are already
    /// off the async threads (benchmarks, batch jobs).
    pub fn embed_blocking(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut out = vec![Vec::new(); texts.len()];
        for batch in batches(texts, self.max_batch) {
            let refs: Vec<&str> = batch.iter().map(|&i| texts[i].as_str()).collect();
            for (i, v) in batch.iter().zip(self.model.embed_batch(&refs)?) {
                out[*i] = v;
            }
        }
        Ok(out)
    }
}

#[async_trait::async_trait]
impl Embedder for OnnxEmbedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dimension(&self) -> usize {
        self.model.dimension
    }

    #[tracing::instrument(skip_all, fields(model = %self.model_id, texts = texts.len()), err)]
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut out = vec![Vec::new(); texts.len()];
        let batches = batches(texts, self.max_batch);
        // As many batches at once as there are sessions; a dropped call stops
        // between rounds.
        for round in batches.chunks(self.model.sessions.len()) {
            let tasks: Vec<_> = round
                .iter()
                .map(|batch| {
                    let inputs: Vec<String> = batch.iter().map(|&i| texts[i].clone()).collect();
                    let model = Arc::clone(&self.model);
                    tokio::task::spawn_blocking(move || {
                        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
                        model.embed_batch(&refs)
                    })
                })
                .collect();
            for (batch, task) in round.iter().zip(tasks) {
                let vectors = task
                    .await
                    .map_err(|e| EmbedError::Inference(format!("embedding task failed: {e}")))??;
                for (i, v) in batch.iter().zip(vectors) {
                    out[*i] = v;
                }
            }
        }
        Ok(out)
    }
}

impl Model {
    /// A free session if there is one, else the next in turn (waiting for it).
    /// A session whose run panicked is still usable: ONNX Runtime keeps no
    /// state between runs.
    fn session(&self) -> MutexGuard<'_, Session> {
        for session in &self.sessions {
            match session.try_lock() {
                Ok(guard) => return guard,
                Err(TryLockError::Poisoned(poisoned)) => return poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.sessions.len();
        self.sessions[i]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// One run: the graph pools and normalises, so its output is the vectors.
    fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let Tokens {
            ids,
            mask,
            rows,
            len,
        } = tokenize(&self.tokenizer, texts)?;
        let ids: Vec<i64> = ids.into_iter().map(i64::from).collect();
        let mask: Vec<i64> = mask.into_iter().map(i64::from).collect();
        let inference = |e: ort::Error| EmbedError::Inference(e.to_string());
        let inputs = ort::inputs![
            INPUT_IDS => TensorRef::from_array_view(([rows, len], &*ids)).map_err(inference)?,
            ATTENTION_MASK => TensorRef::from_array_view(([rows, len], &*mask)).map_err(inference)?,
        ];
        let mut session = self.session();
        let outputs = session.run(inputs).map_err(inference)?;
        let (shape, data) = outputs[OUTPUT]
            .try_extract_tensor::<f32>()
            .map_err(inference)?;
        let expected = [rows as i64, self.dimension as i64];
        if shape[..] != expected {
            return Err(EmbedError::Inference(format!(
                "the graph's output has shape {shape:?}, expected {expected:?}"
            )));
        }
        Ok(data.chunks(self.dimension).map(<[f32]>::to_vec).collect())
    }
}
