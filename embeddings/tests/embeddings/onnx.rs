//! The ONNX Runtime embedder against the reference vector and against candle:
//! the same model under the same id must give the same vectors.

use std::path::PathBuf;
use std::sync::OnceLock;

use embeddings::onnx::OnnxEmbedder;
use embeddings::{EmbedError, Embedder, EmbedderConfig, LocalRuntime};

use crate::local::{
    assert_matches_the_reference, max_abs_diff, model as candle, model_dir, strings,
};

fn required(var: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => panic!(
            "{var} is not set: eval \"$(deploy/native/stack env)\" sets it to the graph \
             embeddings/tools/export_onnx.py wrote and the onnxruntime wheel's library"
        ),
    }
}

fn graph() -> PathBuf {
    required("SB_EMBEDDING_ONNX_GRAPH")
}

fn library() -> PathBuf {
    required("SB_ONNXRUNTIME_LIBRARY")
}

/// Two sessions, so that batches and calls run side by side.
fn onnx() -> &'static OnnxEmbedder {
    static MODEL: OnceLock<OnnxEmbedder> = OnceLock::new();
    MODEL.get_or_init(|| {
        OnnxEmbedder::load(
            &model_dir(),
            &graph(),
            &library(),
            "all-MiniLM-L6-v2",
            32,
            2,
        )
        .expect("the graph loads")
    })
}

#[tokio::test]
async fn one_sentence_matches_the_reference_vector_of_the_original_model() {
    assert_matches_the_reference(onnx()).await;
}

#[tokio::test]
async fn it_gives_candles_vectors_under_the_same_model_id() {
    let texts = strings(&[
        "",
        "short",
        "Remember the milk",
        "Ünïcödé, emoji 🎉 and CJK 東京 all tokenise",
        "A considerably longer note about a meeting with the architects on Tuesday, \
         where we went over the budget, the schedule and who calls the dentist",
        &"endless words ".repeat(300),
    ]);
    assert_eq!(onnx().model_id(), candle().model_id());
    assert_eq!(onnx().dimension(), 384);
    let ours = onnx().embed(&texts).await.unwrap();
    let theirs = candle().embed(&texts).await.unwrap();
    for ((text, a), b) in texts.iter().zip(&ours).zip(&theirs) {
        let diff = max_abs_diff(a, b);
        assert!(diff < 1e-5, "{text:.30?}: max abs difference {diff}");
        let norm = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{text:.30?}: norm {norm}");
    }
}

#[tokio::test]
async fn batches_spread_over_the_sessions_give_the_one_at_a_time_vectors_in_order() {
    let texts: Vec<String> = (0..40)
        .map(|i| {
            format!(
                "Note number {i}: {}",
                "words that make it longer ".repeat(i % 7)
            )
        })
        .collect();
    // Batches of 7 over 3 sessions: uneven batches, several rounds.
    let spread =
        OnnxEmbedder::load(&model_dir(), &graph(), &library(), "all-MiniLM-L6-v2", 7, 3).unwrap();
    let together = spread.embed(&texts).await.unwrap();
    assert_eq!(together.len(), texts.len());
    for (text, vector) in texts.iter().zip(&together) {
        let alone = onnx().embed_blocking(std::slice::from_ref(text)).unwrap();
        let diff = max_abs_diff(&alone[0], vector);
        assert!(diff < 1e-5, "{text:?}: {diff}");
    }
    assert!(spread.embed(&[]).await.unwrap().is_empty());
}

#[tokio::test]
async fn more_concurrent_calls_than_sessions_each_get_their_own_vector() {
    let embedder = embeddings::build(&EmbedderConfig::Local {
        model_dir: model_dir(),
        model_name: "all-MiniLM-L6-v2".to_owned(),
        max_batch: 8,
        runtime: LocalRuntime::Onnx {
            graph: graph(),
            library: library(),
            sessions: 2,
        },
    })
    .await
    .unwrap();
    let texts: Vec<String> = (0..8)
        .map(|i| {
            format!(
                "concurrent call number {i} about {}",
                ["cats", "tax", "rain", "jazz"][i % 4]
            )
        })
        .collect();
    let handles: Vec<_> = texts
        .iter()
        .map(|text| {
            let (embedder, text) = (embedder.clone(), text.clone());
            tokio::spawn(async move { embedder.embed(&[text]).await })
        })
        .collect();
    for (text, handle) in texts.iter().zip(handles) {
        let got = handle.await.unwrap().unwrap().remove(0);
        let alone = onnx().embed_blocking(std::slice::from_ref(text)).unwrap();
        assert!(max_abs_diff(&got, &alone[0]) < 1e-5, "{text}");
    }
}

#[tokio::test]
async fn a_missing_graph_or_library_is_a_load_error_naming_it() {
    let missing_graph = PathBuf::from("/nonexistent/model.onnx");
    let err = OnnxEmbedder::load(&model_dir(), &missing_graph, &library(), "x", 8, 1).unwrap_err();
    assert!(matches!(err, EmbedError::ModelLoad { .. }), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/model.onnx"), "{err}");

    // (The crate's unit tests cover a file that is not a library, in a
    // process where none is loaded yet.)
    let missing_library = PathBuf::from("/nonexistent/libonnxruntime.so");
    let err = OnnxEmbedder::load(&model_dir(), &graph(), &missing_library, "x", 8, 1).unwrap_err();
    assert!(matches!(err, EmbedError::ModelLoad { .. }), "{err:?}");
    assert!(
        err.to_string().contains("/nonexistent/libonnxruntime.so"),
        "{err}"
    );

    // Not a graph at all: the tokenizer file.
    let not_a_graph = model_dir().join("tokenizer.json");
    let err = OnnxEmbedder::load(&model_dir(), &not_a_graph, &library(), "x", 8, 1).unwrap_err();
    assert!(err.to_string().contains("tokenizer.json"), "{err}");
}

#[tokio::test]
async fn a_graph_beside_other_weights_is_refused() {
    // The same config and tokenizer, other weights: the graph's recorded
    // weights hash no longer matches, so its vectors would not be this
    // directory's model's.
    let other = std::env::temp_dir().join(format!("sb-other-weights-{}", std::process::id()));
    std::fs::create_dir_all(&other).unwrap();
    for file in ["config.json", "tokenizer.json"] {
        std::fs::copy(model_dir().join(file), other.join(file)).unwrap();
    }
    std::fs::write(other.join("model.safetensors"), b"other weights").unwrap();
    let err = OnnxEmbedder::load(&other, &graph(), &library(), "x", 8, 1).unwrap_err();
    std::fs::remove_dir_all(&other).unwrap();
    assert!(matches!(err, EmbedError::ModelLoad { .. }), "{err:?}");
    assert!(err.to_string().contains("other weights"), "{err}");
}
