//! all-MiniLM-L6-v2 (or any sentence-transformers BERT with mean pooling)
//! in-process, with candle and tokenizers.
//!
//! What sentence-transformers does, reproduced: tokenise (lower-casing
//! WordPiece, `[CLS] … [SEP]`, truncated at 256 tokens, its `max_seq_length`
//! for this model), run BERT, average the last hidden states over the real
//! tokens (the attention mask), and L2-normalise.
//!
//! The shipped `tokenizer.json` pads every input to 128 tokens; padding is reset
//! to the longest input of each batch, which gives the same vectors (padding is
//! masked out) for a fraction of the work. Texts are sorted by length before
//! batching so that a batch's texts need little padding.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use crate::{EmbedError, Embedder};

/// sentence-transformers' `max_seq_length` for all-MiniLM-L6-v2: longer texts
/// are cut, as the original does.
pub const MAX_SEQUENCE_TOKENS: usize = 256;

/// The local embedder; cheap to share, as the model sits behind an [`Arc`].
pub struct LocalEmbedder {
    model: Arc<Model>,
    model_id: String,
    max_batch: usize,
}

struct Model {
    bert: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    dimension: usize,
}

impl fmt::Debug for LocalEmbedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalEmbedder")
            .field("model_id", &self.model_id)
            .field("dimension", &self.model.dimension)
            .field("max_batch", &self.max_batch)
            .finish_non_exhaustive()
    }
}

impl LocalEmbedder {
    /// Loads `config.json`, `tokenizer.json` and `model.safetensors` from
    /// `model_dir`. Blocking (it reads ~90 MB): call it off the async threads,
    /// as [`crate::build`] does.
    pub fn load(model_dir: &Path, model_name: &str, max_batch: usize) -> Result<Self, EmbedError> {
        let load_error = |what: &str, e: &dyn fmt::Display| EmbedError::ModelLoad {
            path: model_dir.to_owned(),
            reason: format!("{what}: {e}"),
        };
        let config = load_config(model_dir)?;

        let tokenizer = load_tokenizer(model_dir, config.max_position_embeddings)?;

        // Read into memory rather than mmap: mapping needs `unsafe`, which the
        // workspace forbids, and 90 MB read once at start-up costs ~0.1 s.
        let weights = std::fs::read(model_dir.join("model.safetensors"))
            .map_err(|e| load_error("model.safetensors", &e))?;
        let device = Device::Cpu;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)
            .map_err(|e| load_error("model.safetensors", &e))?;
        let bert = BertModel::load(vb, &config).map_err(|e| load_error("model.safetensors", &e))?;

        Ok(Self {
            model: Arc::new(Model {
                bert,
                tokenizer,
                device,
                dimension: config.hidden_size,
            }),
            model_id: format!("local/{model_name}"),
            max_batch: max_batch.max(1),
        })
    }

    /// [`Embedder::embed`] on the calling thread: for callers that are already
    /// off the async threads (benchmarks, batch jobs).
    pub fn embed_blocking(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        embed_in_batches(texts, self.max_batch, |refs| self.model.embed_batch(refs))
    }
}

#[async_trait::async_trait]
impl Embedder for LocalEmbedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dimension(&self) -> usize {
        self.model.dimension
    }

    #[tracing::instrument(skip_all, fields(model = %self.model_id, texts = texts.len()), err)]
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut out = vec![Vec::new(); texts.len()];
        // One blocking task per batch: a dropped call stops between batches.
        for batch in batches(texts, self.max_batch) {
            let inputs: Vec<String> = batch.iter().map(|&i| texts[i].clone()).collect();
            let model = Arc::clone(&self.model);
            let vectors = tokio::task::spawn_blocking(move || {
                let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
                model.embed_batch(&refs)
            })
            .await
            .map_err(|e| EmbedError::Inference(format!("embedding task failed: {e}")))??;
            for (i, v) in batch.iter().zip(vectors) {
                out[*i] = v;
            }
        }
        Ok(out)
    }
}

/// Loads `tokenizer.json` from `model_dir`, padding each batch to its longest
/// text and truncating at [`MAX_SEQUENCE_TOKENS`] (or the model's position
/// limit, if lower). Shared by both runtimes, so they see the same ids.
pub(crate) fn load_tokenizer(
    model_dir: &Path,
    max_positions: usize,
) -> Result<Tokenizer, EmbedError> {
    let load_error = |e: &dyn fmt::Display| EmbedError::ModelLoad {
        path: model_dir.to_owned(),
        reason: format!("tokenizer.json: {e}"),
    };
    let mut tokenizer =
        Tokenizer::from_file(model_dir.join("tokenizer.json")).map_err(|e| load_error(&e))?;
    let padding = PaddingParams {
        strategy: PaddingStrategy::BatchLongest,
        ..tokenizer.get_padding().cloned().unwrap_or_default()
    };
    tokenizer.with_padding(Some(padding));
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length: MAX_SEQUENCE_TOKENS.min(max_positions),
            ..TruncationParams::default()
        }))
        .map_err(|e| load_error(&e))?;
    Ok(tokenizer)
}

/// Reads and parses `config.json`, the BERT shape both runtimes need.
pub(crate) fn load_config(model_dir: &Path) -> Result<Config, EmbedError> {
    let load_error = |e: &dyn fmt::Display| EmbedError::ModelLoad {
        path: model_dir.to_owned(),
        reason: format!("config.json: {e}"),
    };
    let text =
        std::fs::read_to_string(model_dir.join("config.json")).map_err(|e| load_error(&e))?;
    serde_json::from_str(&text).map_err(|e| load_error(&e))
}

/// A batch of texts as the model takes it: `rows` × `len` ids and mask,
/// row-major, padded to the longest text.
pub(crate) struct Tokens {
    pub ids: Vec<u32>,
    pub mask: Vec<u32>,
    pub rows: usize,
    pub len: usize,
}

/// Tokenises a non-empty batch.
pub(crate) fn tokenize(tokenizer: &Tokenizer, texts: &[&str]) -> Result<Tokens, EmbedError> {
    let encodings = tokenizer
        .encode_batch(texts.to_vec(), true)
        .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
    let (rows, len) = (encodings.len(), encodings[0].get_ids().len());
    let mut ids = Vec::with_capacity(rows * len);
    let mut mask = Vec::with_capacity(rows * len);
    for encoding in &encodings {
        ids.extend_from_slice(encoding.get_ids());
        mask.extend_from_slice(encoding.get_attention_mask());
    }
    Ok(Tokens {
        ids,
        mask,
        rows,
        len,
    })
}

/// Runs `embed` on each batch of texts of similar length, one after another,
/// and returns the vectors in input order: the blocking path of both
/// runtimes.
pub(crate) fn embed_in_batches(
    texts: &[String],
    max_batch: usize,
    embed: impl Fn(&[&str]) -> Result<Vec<Vec<f32>>, EmbedError>,
) -> Result<Vec<Vec<f32>>, EmbedError> {
    let mut out = vec![Vec::new(); texts.len()];
    for batch in batches(texts, max_batch) {
        let refs: Vec<&str> = batch.iter().map(|&i| texts[i].as_str()).collect();
        for (i, v) in batch.iter().zip(embed(&refs)?) {
            out[*i] = v;
        }
    }
    Ok(out)
}

/// Input indices grouped into batches of at most `max_batch` texts of similar
/// length, so that a batch's texts need little padding.
pub(crate) fn batches(texts: &[String], max_batch: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|&i| texts[i].len());
    order.chunks(max_batch).map(<[usize]>::to_vec).collect()
}

impl Model {
    /// One forward pass: mean pooling over the attention mask, L2 norm.
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
        self.forward(ids, mask, (rows, len))
            .map_err(|e| EmbedError::Inference(e.to_string()))
    }

    fn forward(
        &self,
        ids: Vec<u32>,
        mask: Vec<u32>,
        shape: (usize, usize),
    ) -> candle_core::Result<Vec<Vec<f32>>> {
        let ids = Tensor::from_vec(ids, shape, &self.device)?;
        let mask = Tensor::from_vec(mask, shape, &self.device)?;
        let token_types = ids.zeros_like()?;
        let hidden = self.bert.forward(&ids, &token_types, Some(&mask))?; // (rows, len, dim)
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // (rows, len, 1)
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?; // (rows, dim)
        let counts = mask.sum(1)?.clamp(1e-9f32, f32::MAX)?; // (rows, 1)
        let mean = summed.broadcast_div(&counts)?;
        let norms = mean
            .sqr()?
            .sum_keepdim(1)?
            .sqrt()?
            .clamp(1e-12f32, f32::MAX)?;
        mean.broadcast_div(&norms)?.to_vec2::<f32>()
    }
}
