//! Local embedding throughput, for `bench/embedding-throughput`.
//!
//! Embeds N deterministic sentences of ~18 words through the async
//! [`Embedder::embed`] path (what the projector calls) at each batch size, after
//! a warm-up, and reports texts/s, on candle and, when its graph and library
//! are configured, on ONNX Runtime; batches of 1 also report the latency of
//! each call (what a search's query embedding costs). Then, as a baseline, the
//! tokenizer alone on the same texts (the part of the work that is not the
//! model).
//!
//! `SB_EMBEDDING_MODEL_DIR=… [SB_EMBEDDING_ONNX_GRAPH=… SB_ONNXRUNTIME_LIBRARY=…]
//!  throughput [sentences] [batch sizes, comma-separated] [rounds] [words per sentence]`

use std::path::PathBuf;
use std::time::Instant;

use embeddings::{EmbedderConfig, LocalRuntime};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer};

const WORDS: &[&str] = &[
    "meeting",
    "notes",
    "about",
    "the",
    "new",
    "project",
    "budget",
    "with",
    "Alice",
    "and",
    "Bob",
    "remember",
    "to",
    "call",
    "dentist",
    "on",
    "Tuesday",
    "morning",
    "before",
    "work",
    "buy",
    "milk",
    "bread",
    "coffee",
    "for",
    "weekend",
    "trip",
    "mountains",
    "read",
    "chapter",
    "three",
    "of",
    "book",
    "distributed",
    "systems",
    "idea",
    "blog",
    "post",
    "on",
    "embeddings",
    "vector",
    "search",
    "quarterly",
    "revenue",
    "grew",
    "five",
    "percent",
    "last",
    "year",
    "team",
];

/// `n` sentences of 14–22 words (or exactly `words`) from a fixed LCG: the
/// same texts every run.
fn sentences(n: usize, words: Option<usize>) -> Vec<String> {
    let mut state: u64 = 42;
    let mut next = move |bound: usize| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) as usize % bound
    };
    (0..n)
        .map(|_| {
            let len = words.unwrap_or_else(|| 14 + next(9));
            (0..len)
                .map(|_| WORDS[next(WORDS.len())])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.first().map_or(Ok(200), |a| a.parse())?;
    let batches: Vec<usize> = args
        .get(1)
        .map_or("1,32", String::as_str)
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let rounds: usize = args.get(2).map_or(Ok(1), |a| a.parse())?;
    let words: Option<usize> = args.get(3).map(|a| a.parse()).transpose()?;
    let dir = PathBuf::from(
        std::env::var_os("SB_EMBEDDING_MODEL_DIR").ok_or("SB_EMBEDDING_MODEL_DIR is not set")?,
    );
    let texts = sentences(n, words);
    let words: usize = texts.iter().map(|t| t.split(' ').count()).sum();
    println!(
        "texts={n} mean_words={:.1} rounds={rounds}",
        words as f64 / n as f64
    );

    let mut runtimes = vec![("candle", LocalRuntime::Candle)];
    if let (Some(graph), Some(library)) = (
        std::env::var_os("SB_EMBEDDING_ONNX_GRAPH"),
        std::env::var_os("SB_ONNXRUNTIME_LIBRARY"),
    ) {
        runtimes.push((
            "onnx",
            LocalRuntime::Onnx {
                graph: graph.into(),
                library: library.into(),
                sessions: embeddings::settings::default_sessions(),
            },
        ));
    }
    let tokio = tokio::runtime::Builder::new_multi_thread().build()?;
    for (name, runtime) in runtimes {
        for &batch in &batches {
            let started = Instant::now();
            let embedder = tokio.block_on(embeddings::build(&EmbedderConfig::Local {
                model_dir: dir.clone(),
                model_name: "all-MiniLM-L6-v2".to_owned(),
                max_batch: batch,
                runtime: runtime.clone(),
            }))?;
            let load = started.elapsed().as_secs_f64();
            tokio.block_on(embedder.embed(&texts[..batch.min(n)]))?; // warm-up
            for _ in 0..rounds {
                let mut calls = Vec::with_capacity(n);
                let started = Instant::now();
                let vectors = if batch == 1 {
                    // One call per text, timed each: a query's embedding.
                    let mut vectors = Vec::with_capacity(n);
                    for text in &texts {
                        let call = Instant::now();
                        vectors.extend(tokio.block_on(embedder.embed(std::slice::from_ref(text)))?);
                        calls.push(call.elapsed().as_secs_f64() * 1e3);
                    }
                    vectors
                } else {
                    tokio.block_on(embedder.embed(&texts))?
                };
                let seconds = started.elapsed().as_secs_f64();
                assert_eq!(vectors.len(), n);
                let latency = if calls.is_empty() {
                    String::new()
                } else {
                    calls.sort_by(f64::total_cmp);
                    let at = |q: f64| calls[((calls.len() - 1) as f64 * q).round() as usize];
                    format!(" call_ms_p50={:.2} call_ms_p95={:.2}", at(0.5), at(0.95))
                };
                println!(
                    "embed runtime={name} batch={batch} seconds={seconds:.3} texts_per_s={:.1}{latency} load_seconds={load:.2}",
                    n as f64 / seconds
                );
            }
        }
    }

    // Baseline: tokenisation alone, as the embedder configures it.
    let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))?;
    let padding = PaddingParams {
        strategy: PaddingStrategy::BatchLongest,
        ..tokenizer.get_padding().cloned().unwrap_or_default()
    };
    tokenizer.with_padding(Some(padding));
    let started = Instant::now();
    let mut tokens = 0;
    for chunk in texts.chunks(32) {
        tokens += tokenizer
            .encode_batch(chunk.to_vec(), true)?
            .iter()
            .map(|e| e.get_ids().len())
            .sum::<usize>();
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "tokenize batch=32 seconds={seconds:.4} texts_per_s={:.0} mean_tokens={:.1}",
        n as f64 / seconds,
        tokens as f64 / n as f64
    );
    Ok(())
}
