use serde_json::{Value, json};
use std::collections::HashSet;
use test_kit::http::ids;
use test_kit::stack::{Stack, spawn_query_stack};
use uuid::Uuid;

async fn hits(stack: &Stack, query: &str) -> Vec<Uuid> {
    let body = stack.get_ok(&format!("/v1/search?{query}"), "alice").await;
    ids(&body, "hits")
}

fn set(ids: &[Uuid]) -> HashSet<Uuid> {
    ids.iter().copied().collect()
}

#[tokio::test]
async fn the_three_modes_find_by_words_by_meaning_and_by_both() {
    let stack = spawn_query_stack().await;
    let cat = stack
        .capture("alice", json!({"title": "Pets", "content": "The cat sleeps on the warm windowsill every afternoon."}))
        .await;
    let invoice = stack
        .note(
            "alice",
            "Invoice INV-4471 from the plumber is due on Friday.",
        )
        .await;
    let deploy = stack
        .note(
            "alice",
            "We switched production to a blue green deployment last spring.",
        )
        .await;
    let green = stack
        .note("alice", "The garden is green and the sky is blue.")
        .await;
    stack.wait_until_verified().await;

    // Keyword: stemming ("sleeping" finds "sleeps"), exact identifiers,
    // phrases (the quoted phrase matches only where the words are adjacent),
    // and a typo of a rare word.
    assert_eq!(hits(&stack, "q=sleeping&mode=keyword").await, vec![cat]);
    assert_eq!(hits(&stack, "q=INV-4471&mode=keyword").await, vec![invoice]);
    assert_eq!(
        set(&hits(&stack, "q=blue%20green&mode=keyword").await),
        set(&[deploy, green])
    );
    assert_eq!(
        hits(&stack, "q=%22blue%20green%20deployment%22&mode=keyword").await,
        vec![deploy]
    );
    assert_eq!(
        hits(&stack, "q=plumbr&mode=keyword").await,
        vec![invoice],
        "typo"
    );

    // Semantic: no shared word, same meaning.
    let semantic = hits(
        &stack,
        "q=a%20kitten%20napping%20in%20the%20sun&mode=semantic",
    )
    .await;
    assert_eq!(semantic.first(), Some(&cat), "{semantic:?}");
    // Hybrid is the default, and finds both kinds.
    let hybrid = hits(&stack, "q=bill%20from%20the%20plumber").await;
    assert_eq!(hybrid.first(), Some(&invoice), "{hybrid:?}");
    let hybrid = hits(&stack, "q=kitten%20napping").await;
    assert_eq!(hybrid.first(), Some(&cat), "{hybrid:?}");
}

#[tokio::test]
async fn hits_carry_a_marked_escaped_snippet_and_explain_shows_each_ranking() {
    let stack = spawn_query_stack().await;
    let id = stack
        .capture(
            "alice",
            json!({"title": "Parsing", "content": "The parser fails when parsing HTML where a < b & c > d appears in fragments."}),
        )
        .await;
    stack.wait_until_verified().await;
    let body = stack
        .get_ok("/v1/search?q=parsing%20html&explain=true", "alice")
        .await;
    assert_eq!(body["mode"], "hybrid");
    let hit = &body["hits"][0];
    assert_eq!(hit["id"], id.to_string());
    assert_eq!(hit["title"], "Parsing");
    let snippet = hit["snippet"].as_str().unwrap();
    assert!(snippet.contains("<mark>parsing</mark>"), "{snippet}");
    assert!(snippet.contains("<mark>HTML</mark>"), "{snippet}");
    assert!(snippet.contains("a &lt; b &amp; c &gt; d"), "{snippet}");
    assert!(hit["score"].as_f64().unwrap() > 0.0);
    let explain = &hit["explain"];
    assert_eq!(explain["semantic"]["rank"], 1, "{explain}");
    assert_eq!(explain["keyword"]["rank"], 1, "{explain}");
    assert_eq!(explain["keyword"]["fuzzy"], false);
    let expected = 2.0 / 61.0;
    assert!(
        (hit["score"].as_f64().unwrap() - expected).abs() < 1e-9,
        "{hit}"
    );
    // Each ranking's share of the fused score.
    for leg in ["semantic", "keyword"] {
        let contribution = explain[leg]["contribution"].as_f64().unwrap();
        assert!((contribution - 1.0 / 61.0).abs() < 1e-9, "{explain}");
    }
    let alone = stack
        .get_ok(
            "/v1/search?q=parsing%20html&explain=true&mode=semantic",
            "alice",
        )
        .await;
    assert!(
        alone["hits"][0]["explain"]["semantic"]
            .get("contribution")
            .is_none(),
        "a single mode fuses nothing: {alone}"
    );

    let plain = stack.get_ok("/v1/search?q=parsing%20html", "alice").await;
    assert!(plain["hits"][0].get("explain").is_none());
}

#[tokio::test]
async fn k_bounds_the_hits() {
    let stack = spawn_query_stack().await;
    for i in 0..15 {
        stack
            .note("alice", format!("weekly review number {i}"))
            .await;
    }
    stack.wait_until_verified().await;
    for mode in ["semantic", "keyword", "hybrid"] {
        assert_eq!(
            hits(&stack, &format!("q=weekly%20review&mode={mode}"))
                .await
                .len(),
            10,
            "{mode}"
        );
        assert_eq!(
            hits(&stack, &format!("q=weekly%20review&mode={mode}&k=3"))
                .await
                .len(),
            3,
            "{mode}"
        );
        assert_eq!(
            hits(&stack, &format!("q=weekly%20review&mode={mode}&k=100"))
                .await
                .len(),
            15,
            "{mode}"
        );
    }
}

/// Three memories to filter: tomato seedlings (in a session, tags garden and
/// veg), roses (garden, flowers), soup (kitchen, revised last).
struct Filtered {
    stack: Stack,
    session: Uuid,
    tomatoes: Uuid,
    roses: Uuid,
    soup: Uuid,
    roses_created: String,
    soup_created: String,
    soup_updated: String,
}

async fn filtered() -> Filtered {
    let stack = spawn_query_stack().await;
    let session = stack.start_session("alice", "Garden").await;
    let tomatoes = stack
        .capture("alice", json!({"content": "Tomato seedlings need more light", "tags": ["garden", "veg"], "session_id": session}))
        .await;
    let roses = stack
        .capture(
            "alice",
            json!({"content": "Tomato feed works for roses too", "tags": ["garden", "flowers"]}),
        )
        .await;
    let soup = stack
        .capture(
            "alice",
            json!({"content": "Tomato soup with basil", "tags": ["kitchen"]}),
        )
        .await;
    stack.wait_until_verified().await;
    let stamp = |doc: &Value, field: &str| doc[field].as_str().unwrap().replace('+', "%2B");
    let roses_created = stamp(
        &stack
            .get_ok(&format!("/v1/memories/{roses}"), "alice")
            .await,
        "created_at",
    );
    let soup_created = stamp(
        &stack.get_ok(&format!("/v1/memories/{soup}"), "alice").await,
        "created_at",
    );
    stack
        .revise(
            "alice",
            soup,
            json!({"content": "Tomato soup with basil and cream"}),
        )
        .await;
    stack.wait_until_verified().await;
    let soup_updated = stamp(
        &stack.get_ok(&format!("/v1/memories/{soup}"), "alice").await,
        "updated_at",
    );
    Filtered {
        stack,
        session,
        tomatoes,
        roses,
        soup,
        roses_created,
        soup_created,
        soup_updated,
    }
}

impl Filtered {
    /// In every mode, the filter leaves exactly `expected` (without it, all three).
    async fn check(&self, filter: &str, expected: &[Uuid]) {
        for mode in ["semantic", "keyword", "hybrid"] {
            let all = hits(&self.stack, &format!("q=tomato&mode={mode}&k=50")).await;
            assert_eq!(
                set(&all),
                set(&[self.tomatoes, self.roses, self.soup]),
                "{mode} unfiltered"
            );
            let found = hits(&self.stack, &format!("q=tomato&mode={mode}&k=50&{filter}")).await;
            assert_eq!(set(&found), set(expected), "{mode} {filter}");
        }
    }
}

#[tokio::test]
async fn the_session_filter_narrows_every_mode() {
    let f = filtered().await;
    f.check(&format!("session={}", f.session), &[f.tomatoes])
        .await;
}

#[tokio::test]
async fn the_any_tag_filter_narrows_every_mode() {
    let f = filtered().await;
    f.check("tags_any=veg,flowers", &[f.tomatoes, f.roses])
        .await;
    f.check("tags_any=VEG", &[f.tomatoes]).await;
}

#[tokio::test]
async fn the_all_tags_filter_narrows_every_mode() {
    let f = filtered().await;
    f.check("tags_all=garden,flowers", &[f.roses]).await;
    f.check("tags_all=garden,kitchen", &[]).await;
}

#[tokio::test]
async fn the_created_range_narrows_every_mode() {
    let f = filtered().await;
    f.check(
        &format!("created_after={}", f.roses_created),
        &[f.roses, f.soup],
    )
    .await;
    f.check(
        &format!("created_before={}", f.soup_created),
        &[f.tomatoes, f.roses],
    )
    .await;
    f.check(
        &format!(
            "created_after={}&created_before={}",
            f.roses_created, f.soup_created
        ),
        &[f.roses],
    )
    .await;
}

#[tokio::test]
async fn the_updated_range_narrows_every_mode() {
    let f = filtered().await;
    f.check(&format!("updated_after={}", f.soup_updated), &[f.soup])
        .await;
    f.check(
        &format!("updated_before={}", f.soup_updated),
        &[f.tomatoes, f.roses],
    )
    .await;
}

/// A hit says where and when its memory belongs, so that a "when…"
/// question is answered from the hit itself: the session, when it happened
/// (as its writer said, or null) and when it was captured.
#[tokio::test]
async fn a_hit_carries_its_session_and_when_it_happened() {
    let stack = spawn_query_stack().await;
    let session = stack
        .start_session("alice", "Chat, 10 September 2025")
        .await;
    let dated = stack
        .capture(
            "alice",
            json!({
                "content": "Lena: I finally sat down at a potter's wheel last night",
                "session_id": session,
                "occurred_at": "2025-09-10T19:42:00Z",
            }),
        )
        .await;
    let undated = stack.note("alice", "Potter's wheels are heavy").await;
    stack.wait_until_verified().await;

    for mode in ["keyword", "semantic", "hybrid"] {
        let body = stack
            .get_ok(
                &format!("/v1/search?q=potter%27s%20wheel&mode={mode}"),
                "alice",
            )
            .await;
        let hit = |id: Uuid| {
            body["hits"]
                .as_array()
                .unwrap()
                .iter()
                .find(|hit| hit["id"] == json!(id))
                .unwrap_or_else(|| panic!("{mode}: no hit {id} in {body}"))
                .clone()
        };
        let (dated, undated) = (hit(dated), hit(undated));
        assert_eq!(dated["session_id"], json!(session), "{mode}");
        assert_eq!(
            dated["occurred_at"],
            json!("2025-09-10T19:42:00Z"),
            "{mode}"
        );
        assert_eq!(undated["session_id"], Value::Null, "{mode}");
        assert_eq!(undated["occurred_at"], Value::Null, "{mode}");
        assert!(undated["created_at"].is_string(), "{mode}: {undated}");
    }
}
