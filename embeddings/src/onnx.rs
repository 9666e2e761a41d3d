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
//!   one call's batches are spread over the pool. An async caller waits for a
//!   free session on a semaphore, not on a blocking thread.
//! - The graph records the SHA-256 of the weights it was exported from, and
//!   loading checks it against `model.safetensors`: a graph left over from
//!   other weights would otherwise give their vectors under this model's id.
//! - ONNX Runtime's CPU arena is off: it keeps each session's largest batch
//!   allocated for good (about 250 MB after 32 texts of 256 tokens, measured),
//!   where the allocator gives it back; the speed is the same.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use ort::environment::Environment;
use ort::ep;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::TensorRef;
use sha2::{Digest, Sha256};
use tokenizers::Tokenizer;
use tokio::sync::Semaphore;

use crate::local::{Tokens, batches, embed_in_batches, load_config, load_tokenizer, tokenize};
use crate::{EmbedError, Embedder};

/// The graph's input and output names, as `export_onnx.py` writes them.
const INPUT_IDS: &str = "input_ids";
const ATTENTION_MASK: &str = "attention_mask";
const OUTPUT: &str = "embedding";
/// The graph's metadata key holding the hex SHA-256 of `model.safetensors`.
const WEIGHTS_SHA256: &str = "second_brain.weights_sha256";

/// The local model on ONNX Runtime; cheap to share, as the model sits behind
/// an [`Arc`].
pub struct OnnxEmbedder {
    model: Arc<Model>,
    model_id: String,
    max_batch: usize,
}

struct Model {
    sessions: Vec<Mutex<Session>>,
    /// Indices of the sessions no one holds; [`Lease`] takes and returns one.
    free: Mutex<Vec<usize>>,
    freed: Condvar,
    /// One permit per session: async callers take one before they occupy a
    /// blocking thread, so that thread always finds a free session.
    permits: Arc<Semaphore>,
    tokenizer: Tokenizer,
    dimension: usize,
}

/// A session taken from the pool, returned when dropped.
struct Lease<'a> {
    model: &'a Model,
    index: usize,
    session: MutexGuard<'a, Session>,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let mut free = self
            .model
            .free
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        free.push(self.index);
        self.model.freed.notify_one();
    }
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
    // The same file under another name (a symlink, a relative path) is the
    // same library.
    let library =
        &std::fs::canonicalize(library).map_err(|e| error(format!("loading ONNX Runtime: {e}")))?;
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
        let count = sessions.max(1);
        let sessions = (0..count)
            .map(|_| {
                Session::builder(&environment)
                    .map_err(graph_error)?
                    .with_optimization_level(GraphOptimizationLevel::All)
                    .map_err(|e| graph_error(e.into()))?
                    // One thread per session: the pool is the parallelism, and
                    // for a query's few tokens a second thread costs more in
                    // hand-off than it saves.
                    .with_intra_threads(1)
                    .map_err(|e| graph_error(e.into()))?
                    .with_inter_threads(1)
                    .map_err(|e| graph_error(e.into()))?
                    .with_execution_providers([ep::CPU::default()
                        .with_arena_allocator(false)
                        .build()])
                    .map_err(|e| graph_error(e.into()))?
                    .commit_from_file(graph)
                    .map(Mutex::new)
                    .map_err(graph_error)
            })
            .collect::<Result<Vec<_>, _>>()?;
        check_weights(&sessions[0], graph, model_dir)?;
        let embedder = Self {
            model: Arc::new(Model {
                sessions,
                free: Mutex::new((0..count).collect()),
                freed: Condvar::new(),
                permits: Arc::new(Semaphore::new(count)),
                tokenizer,
                dimension: config.hidden_size,
            }),
            model_id: format!("local/{model_name}"),
            max_batch: max_batch.max(1),
        };
        // A graph of another shape fails here, at start-up, rather than on
        // the first write.
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
        embed_in_batches(texts, self.max_batch, |refs| self.model.embed_batch(refs))
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
        let per_batch = batch_size(texts.len(), self.max_batch, self.model.sessions.len());
        let batches = batches(texts, per_batch);
        // Each batch starts as soon as a session is free, so one call's
        // batches run side by side; a dropped call starts no more of them.
        let mut tasks = Vec::with_capacity(batches.len());
        for batch in &batches {
            let permit = Arc::clone(&self.model.permits)
                .acquire_owned()
                .await
                .map_err(|e| EmbedError::Inference(format!("session pool closed: {e}")))?;
            let inputs: Vec<String> = batch.iter().map(|&i| texts[i].clone()).collect();
            let model = Arc::clone(&self.model);
            tasks.push(tokio::task::spawn_blocking(move || {
                let _permit = permit;
                let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
                model.embed_batch(&refs)
            }));
        }
        let mut out = vec![Vec::new(); texts.len()];
        for (batch, task) in batches.iter().zip(tasks) {
            let vectors = task
                .await
                .map_err(|e| EmbedError::Inference(format!("embedding task failed: {e}")))??;
            for (i, v) in batch.iter().zip(vectors) {
                out[*i] = v;
            }
        }
        Ok(out)
    }
}

/// Texts per forward pass for a call of `n`: spread over the sessions (one
/// core each), at most `max_batch`. A call of 20 texts runs as two passes of
/// 10 side by side rather than one of 20 on one core while the other idles:
/// the projector's batches are that small at a moderate write rate, and
/// their latency is what a write waits for to become searchable.
fn batch_size(n: usize, max_batch: usize, sessions: usize) -> usize {
    n.div_ceil(sessions.max(1)).clamp(1, max_batch.max(1))
}

/// Fails unless the graph was exported from `model_dir`'s `model.safetensors`
/// (the exporter records its SHA-256 in the graph's metadata).
fn check_weights(
    session: &Mutex<Session>,
    graph: &Path,
    model_dir: &Path,
) -> Result<(), EmbedError> {
    let recorded = session
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .metadata()
        .ok()
        .and_then(|metadata| metadata.custom(WEIGHTS_SHA256));
    let Some(recorded) = recorded else {
        return Err(EmbedError::ModelLoad {
            path: graph.to_owned(),
            reason: format!(
                "no {WEIGHTS_SHA256} in the graph's metadata: export it with \
                 embeddings/tools/export_onnx.py"
            ),
        });
    };
    let weights_path = model_dir.join("model.safetensors");
    let weights = std::fs::read(&weights_path).map_err(|e| EmbedError::ModelLoad {
        path: weights_path.clone(),
        reason: e.to_string(),
    })?;
    let actual = hex(&Sha256::digest(&weights));
    if recorded != actual {
        return Err(EmbedError::ModelLoad {
            path: graph.to_owned(),
            reason: format!(
                "exported from other weights (SHA-256 {recorded}) than {} ({actual}): \
                 export it again from this model directory",
                weights_path.display()
            ),
        });
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Model {
    /// A free session, waiting for one if all are taken (only callers
    /// without a permit, such as [`OnnxEmbedder::embed_blocking`], can wait).
    /// A session whose run panicked is still usable: ONNX Runtime keeps no
    /// state between runs.
    fn lease(&self) -> Lease<'_> {
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        let index = loop {
            if let Some(index) = free.pop() {
                break index;
            }
            free = self
                .freed
                .wait(free)
                .unwrap_or_else(PoisonError::into_inner);
        };
        drop(free);
        Lease {
            model: self,
            index,
            session: self.sessions[index]
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        }
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
        let mut lease = self.lease();
        let outputs = lease.session.run(inputs).map_err(inference)?;
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_spread_over_the_sessions_up_to_the_largest_batch() {
        assert_eq!(batch_size(1, 32, 2), 1);
        assert_eq!(batch_size(3, 32, 2), 2);
        assert_eq!(batch_size(20, 32, 2), 10);
        assert_eq!(batch_size(64, 32, 2), 32);
        assert_eq!(batch_size(500, 32, 2), 32);
        assert_eq!(batch_size(20, 32, 1), 20);
        assert_eq!(batch_size(0, 32, 2), 1);
    }

    // Its own process (the crate's unit tests), where nothing has loaded
    // ONNX Runtime yet, so this is the load itself failing.
    #[test]
    fn a_library_that_cannot_be_loaded_is_an_error_naming_it_and_is_not_kept() {
        let dir = std::env::temp_dir().join(format!("sb-onnx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let not_a_library = dir.join("libonnxruntime.so");
        std::fs::write(&not_a_library, b"not a shared library").unwrap();
        for _ in 0..2 {
            let err = runtime(&not_a_library).unwrap_err();
            let text = err.to_string();
            assert!(text.contains("libonnxruntime.so"), "{text}");
            assert!(text.contains("loading ONNX Runtime"), "{text}");
        }
        assert!(RUNTIME.lock().unwrap().is_none());
        let missing = runtime(Path::new("/nonexistent/libonnxruntime.so")).unwrap_err();
        assert!(
            missing
                .to_string()
                .contains("/nonexistent/libonnxruntime.so")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
