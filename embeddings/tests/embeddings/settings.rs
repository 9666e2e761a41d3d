//! The settings as a service reads them: flattened into its own struct, from
//! `SB_*` variables through the `config` crate, as `service_kit::settings` does.

use std::time::Duration;

use embeddings::{
    EmbedError, EmbedderConfig, EmbeddingProvider, EmbeddingSettings, LocalRuntime, RuntimeChoice,
};
use secrecy::ExposeSecret;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct ServiceSettings {
    service_name: String,
    #[serde(flatten)]
    embedding: EmbeddingSettings,
}

fn read(vars: &[(&str, &str)]) -> ServiceSettings {
    let vars = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .chain([("SB_SERVICE_NAME".to_owned(), "projector".to_owned())])
        .collect();
    let settings: ServiceSettings = config::Config::builder()
        .add_source(config::Environment::with_prefix("SB").source(Some(vars)))
        .build()
        .unwrap()
        .try_deserialize()
        .unwrap();
    assert_eq!(settings.service_name, "projector");
    settings
}

#[test]
fn the_defaults_choose_the_local_model_which_needs_its_directory() {
    let settings = read(&[]).embedding;
    assert_eq!(settings.embedding_provider, EmbeddingProvider::Local);
    assert_eq!(settings.embedding_max_batch, 32);
    assert_eq!(settings.openai_timeout_seconds, 30);
    assert_eq!(settings.openai_max_retries, 5);
    let err = settings.to_config().unwrap_err();
    assert!(err.to_string().contains("SB_EMBEDDING_MODEL_DIR"), "{err}");

    let settings = read(&[("SB_EMBEDDING_MODEL_DIR", "/models/minilm")]).embedding;
    assert_eq!(settings.embedding_runtime, RuntimeChoice::Candle);
    match settings.to_config().unwrap() {
        EmbedderConfig::Local {
            model_dir,
            model_name,
            max_batch,
            runtime,
        } => {
            assert_eq!(model_dir.to_str(), Some("/models/minilm"));
            assert_eq!(model_name, "all-MiniLM-L6-v2");
            assert_eq!(max_batch, 32);
            assert_eq!(runtime, LocalRuntime::Candle);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_onnx_runtime_needs_its_graph_and_library() {
    let settings = read(&[
        ("SB_EMBEDDING_MODEL_DIR", "/models/minilm"),
        ("SB_EMBEDDING_RUNTIME", "onnx"),
        ("SB_EMBEDDING_ONNX_GRAPH", "/models/minilm.onnx"),
        ("SB_ONNXRUNTIME_LIBRARY", "/opt/ort/libonnxruntime.so"),
    ])
    .embedding;
    match settings.to_config().unwrap() {
        EmbedderConfig::Local {
            runtime:
                LocalRuntime::Onnx {
                    graph,
                    library,
                    sessions,
                },
            ..
        } => {
            assert_eq!(graph.to_str(), Some("/models/minilm.onnx"));
            assert_eq!(library.to_str(), Some("/opt/ort/libonnxruntime.so"));
            assert!((1..=4).contains(&sessions), "{sessions}");
        }
        other => panic!("{other:?}"),
    }

    for (missing, vars) in [
        (
            "EMBEDDING_ONNX_GRAPH",
            [("SB_ONNXRUNTIME_LIBRARY", "/opt/ort/libonnxruntime.so")],
        ),
        (
            "ONNXRUNTIME_LIBRARY",
            [("SB_EMBEDDING_ONNX_GRAPH", "/models/minilm.onnx")],
        ),
    ] {
        let mut all = vec![
            ("SB_EMBEDDING_MODEL_DIR", "/models/minilm"),
            ("SB_EMBEDDING_RUNTIME", "onnx"),
        ];
        all.extend(vars);
        let err = read(&all).embedding.to_config().unwrap_err();
        assert!(
            matches!(err, EmbedError::Config { name, .. } if name == missing),
            "{err:?}"
        );
    }
}

#[test]
fn openai_settings_are_read_from_flattened_variables() {
    let settings = read(&[
        ("SB_EMBEDDING_PROVIDER", "openai"),
        ("SB_EMBEDDING_MAX_BATCH", "64"),
        ("SB_OPENAI_BASE_URL", "https://api.openai.com/v1"),
        ("SB_OPENAI_MODEL", "text-embedding-3-small"),
        ("SB_OPENAI_API_KEY", "sk-secret"),
        ("SB_OPENAI_DIMENSIONS", "384"),
        ("SB_OPENAI_TIMEOUT_SECONDS", "7"),
        ("SB_OPENAI_MAX_RETRIES", "2"),
        ("SB_OPENAI_MAX_INPUT_CHARS", "2000"),
    ])
    .embedding;
    assert!(!format!("{settings:?}").contains("sk-secret"));
    match settings.to_config().unwrap() {
        EmbedderConfig::OpenAi {
            base_url,
            model,
            api_key,
            dimensions,
            max_batch,
            timeout,
            max_retries,
            max_input_chars,
        } => {
            assert_eq!(base_url.as_str(), "https://api.openai.com/v1");
            assert_eq!(model, "text-embedding-3-small");
            assert_eq!(api_key.unwrap().expose_secret(), "sk-secret");
            assert_eq!(dimensions, Some(384));
            assert_eq!(max_batch, 64);
            assert_eq!(timeout, Duration::from_secs(7));
            assert_eq!(max_retries, 2);
            assert_eq!(max_input_chars, 2000);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn openai_requires_a_base_url_and_a_model() {
    let no_url = read(&[
        ("SB_EMBEDDING_PROVIDER", "openai"),
        ("SB_OPENAI_MODEL", "m"),
    ])
    .embedding;
    let err = no_url.to_config().unwrap_err();
    assert!(
        matches!(
            err,
            EmbedError::Config {
                name: "OPENAI_BASE_URL",
                ..
            }
        ),
        "{err:?}"
    );

    let no_model = read(&[
        ("SB_EMBEDDING_PROVIDER", "openai"),
        ("SB_OPENAI_BASE_URL", "http://127.0.0.1:11434"),
    ])
    .embedding;
    let err = no_model.to_config().unwrap_err();
    assert!(
        matches!(
            err,
            EmbedError::Config {
                name: "OPENAI_MODEL",
                ..
            }
        ),
        "{err:?}"
    );

    let bad_url = read(&[
        ("SB_EMBEDDING_PROVIDER", "openai"),
        ("SB_OPENAI_BASE_URL", "ftp://example.com"),
        ("SB_OPENAI_MODEL", "m"),
    ])
    .embedding;
    assert!(bad_url.to_config().is_err());
}

#[test]
fn an_empty_dimensions_variable_means_unset_and_zero_batches_are_rejected() {
    let settings = read(&[
        ("SB_EMBEDDING_PROVIDER", "openai"),
        ("SB_OPENAI_BASE_URL", "http://127.0.0.1:11434"),
        ("SB_OPENAI_MODEL", "nomic-embed-text"),
        ("SB_OPENAI_DIMENSIONS", ""),
    ])
    .embedding;
    assert_eq!(settings.openai_dimensions, None);

    let zero = read(&[
        ("SB_EMBEDDING_MODEL_DIR", "/m"),
        ("SB_EMBEDDING_MAX_BATCH", "0"),
    ])
    .embedding;
    assert!(zero.to_config().is_err());
}

#[test]
fn openai_inputs_are_cut_at_8191_characters_unless_set_and_never_at_zero() {
    let openai = [
        ("SB_EMBEDDING_PROVIDER", "openai"),
        ("SB_OPENAI_BASE_URL", "http://127.0.0.1:11434"),
        ("SB_OPENAI_MODEL", "nomic-embed-text"),
    ];
    let default = read(&openai).embedding.to_config().unwrap();
    assert!(
        matches!(
            default,
            EmbedderConfig::OpenAi {
                max_input_chars: 8191,
                ..
            }
        ),
        "{default:?}"
    );
    let mut zero = openai.to_vec();
    zero.push(("SB_OPENAI_MAX_INPUT_CHARS", "0"));
    let err = read(&zero).embedding.to_config().unwrap_err();
    assert!(
        matches!(
            err,
            EmbedError::Config {
                name: "OPENAI_MAX_INPUT_CHARS",
                ..
            }
        ),
        "{err:?}"
    );
}
