//! The embeddings crate's integration tests: the local model on the real
//! all-MiniLM-L6-v2 weights (`SB_EMBEDDING_MODEL_DIR` must point at them) on
//! both runtimes (`SB_EMBEDDING_ONNX_GRAPH` and `SB_ONNXRUNTIME_LIBRARY` for
//! ONNX Runtime; `deploy/native/stack env` sets all three), the
//! OpenAI provider against a real HTTP server speaking that API, and the
//! settings as a service reads them.

// A failed unwrap is a failed test, with its location; that is the point here.
#![allow(clippy::unwrap_used)]

mod fake_openai;
mod local;
mod onnx;
mod openai;
mod settings;
