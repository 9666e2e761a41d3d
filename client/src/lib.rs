//! A typed async client for Second Brain's two services.
//!
//! ```no_run
//! # async fn demo() -> Result<(), second_brain_client::Error> {
//! use second_brain_client::{Client, NewMemory, Search};
//!
//! let client = Client::builder("http://127.0.0.1:8080", "http://127.0.0.1:8081")
//!     .token(std::env::var("SB_API_KEY").unwrap_or_default())
//!     .build()?;
//! let written = client.create_memory(&NewMemory::new("The boiler code is 4471")).await?;
//! // Read your write: the query side answers once it holds that version.
//! let memory = client.get_memory(written.id, Some(written.version)).await?;
//! let hits = client.search(&Search::new("boiler")).await?;
//! # let _ = (memory, hits);
//! # Ok(()) }
//! ```
//!
//! Written by hand rather than generated from the OpenAPI documents
//! (ADR 18): the part a generator cannot write is most of this crate
//! (idempotency keys kept across retries, `Retry-After`, `If-Match`,
//! `min_version`, problem codes as a type), and the documents' paths are
//! checked against the client's in its tests, so the two cannot drift apart
//! unnoticed.

mod error;
mod retry;
mod types;

use std::time::Duration;

use reqwest::header::{HeaderMap, IF_MATCH};
use reqwest::{Method, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use uuid::Uuid;

pub use error::{Error, Problem};
pub use retry::RetryPolicy;
pub use types::*;

/// Every operation of both OpenAPI documents, as `(method, path)`, that this
/// client has a method for; the tests hold it equal to the documents.
pub const OPERATIONS: &[(&str, &str)] = &[
    ("POST", "/v1/memories"),
    ("PATCH", "/v1/memories/{id}"),
    ("POST", "/v1/memories/{id}/tags"),
    ("POST", "/v1/memories/{id}/tags/remove"),
    ("PUT", "/v1/memories/{id}/metadata"),
    ("POST", "/v1/memories/{id}/move"),
    ("DELETE", "/v1/memories/{id}"),
    ("POST", "/v1/memories/{id}/restore"),
    ("POST", "/v1/memories/{id}/erase"),
    ("POST", "/v1/sessions"),
    ("PATCH", "/v1/sessions/{id}"),
    ("POST", "/v1/sessions/{id}/end"),
    ("POST", "/v1/sessions/{id}/reopen"),
    ("GET", "/v1/memories/{id}"),
    ("GET", "/v1/memories"),
    ("GET", "/v1/sessions/{id}"),
    ("GET", "/v1/sessions"),
    ("GET", "/v1/sessions/{id}/timeline"),
    ("GET", "/v1/search"),
    ("GET", "/v1/memories/{id}/history"),
    ("GET", "/v1/sessions/{id}/history"),
    ("GET", "/v1/memories/{id}/as-of"),
    ("GET", "/v1/sessions/{id}/as-of"),
];

/// The header the command service replays a first answer by.
const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Set on an answer replayed for a key already used.
const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    command: Url,
    query: Url,
    token: Option<String>,
    retry: RetryPolicy,
}

#[derive(Debug)]
pub struct ClientBuilder {
    command: String,
    query: String,
    token: Option<String>,
    retry: RetryPolicy,
    timeout: Duration,
    http: Option<reqwest::Client>,
}

impl ClientBuilder {
    /// An API key (`sbk_…`) or a JWT, sent as `Authorization: Bearer`.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        let token = token.into();
        self.token = (!token.is_empty()).then_some(token);
        self
    }

    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The limit on one attempt (default 30 s: a `min_version` read waits up
    /// to the service's consistency timeout, 5 s by default).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// A `reqwest::Client` of the caller's (proxies, TLS roots, pools).
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    pub fn build(self) -> Result<Client, Error> {
        let http = match self.http {
            Some(http) => http,
            None => reqwest::Client::builder()
                .timeout(self.timeout)
                .user_agent(concat!("second-brain-client/", env!("CARGO_PKG_VERSION")))
                .build()?,
        };
        Ok(Client {
            http,
            command: base(&self.command)?,
            query: base(&self.query)?,
            token: self.token,
            retry: self.retry,
        })
    }
}

/// A base URL that paths join under (`http://host/prefix` keeps `prefix`).
fn base(url: &str) -> Result<Url, Error> {
    let with_slash = if url.ends_with('/') {
        url.to_owned()
    } else {
        format!("{url}/")
    };
    let parsed = Url::parse(&with_slash).map_err(|_| Error::BaseUrl(url.to_owned()))?;
    if parsed.cannot_be_a_base() || !matches!(parsed.scheme(), "http" | "https") {
        return Err(Error::BaseUrl(url.to_owned()));
    }
    Ok(parsed)
}

/// Which service a call goes to.
#[derive(Debug, Clone, Copy)]
enum Service {
    Command,
    Query,
}

/// One logical call: everything needed to send it again unchanged.
#[derive(Debug)]
struct Call {
    service: Service,
    method: Method,
    path: String,
    query: Vec<(&'static str, String)>,
    body: Option<Value>,
    if_match: Option<u64>,
}

impl Call {
    fn new(service: Service, method: Method, path: String) -> Self {
        Self {
            service,
            method,
            path,
            query: Vec::new(),
            body: None,
            if_match: None,
        }
    }

    fn body(mut self, body: &impl Serialize) -> Result<Self, Error> {
        let value = serde_json::to_value(body).map_err(|e| Error::Decode {
            url: self.path.clone(),
            message: format!("the request does not serialise: {e}"),
        })?;
        self.body = Some(value);
        Ok(self)
    }

    fn query(mut self, pairs: impl IntoIterator<Item = (&'static str, String)>) -> Self {
        self.query.extend(pairs);
        self
    }
}

impl Client {
    /// A client of the command service at `command` and the query service at
    /// `query` (the same origin twice behind the proxy).
    pub fn builder(command: impl Into<String>, query: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            command: command.into(),
            query: query.into(),
            token: None,
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(30),
            http: None,
        }
    }

    // ---- commands ----

    pub async fn create_memory(&self, memory: &NewMemory) -> Result<Written, Error> {
        self.command(Method::POST, "v1/memories".into(), Some(memory), None)
            .await
    }

    /// [`Self::create_memory`] under an `Idempotency-Key` of the caller's
    /// (1–255 visible ASCII): the same key and memory answer the first
    /// result forever, with [`Written::replayed`] set, so an import run
    /// twice creates nothing new. The same key with another memory is 422
    /// `idempotency_key_reused`.
    pub async fn create_memory_with_key(
        &self,
        memory: &NewMemory,
        key: &str,
    ) -> Result<Written, Error> {
        self.command_with_key(
            Method::POST,
            "v1/memories".into(),
            Some(memory),
            None,
            key.to_owned(),
        )
        .await
    }

    /// Revises content and/or title; `if_match` refuses (412
    /// `version_mismatch`) unless the memory is still at that version.
    pub async fn update_memory(
        &self,
        id: Uuid,
        edit: &MemoryEdit,
        if_match: Option<u64>,
    ) -> Result<Written, Error> {
        self.command(
            Method::PATCH,
            format!("v1/memories/{id}"),
            Some(edit),
            if_match,
        )
        .await
    }

    pub async fn add_tags(&self, id: Uuid, tags: &[String]) -> Result<Written, Error> {
        let body = json!({ "tags": tags });
        self.command(
            Method::POST,
            format!("v1/memories/{id}/tags"),
            Some(&body),
            None,
        )
        .await
    }

    pub async fn remove_tags(&self, id: Uuid, tags: &[String]) -> Result<Written, Error> {
        let body = json!({ "tags": tags });
        let path = format!("v1/memories/{id}/tags/remove");
        self.command(Method::POST, path, Some(&body), None).await
    }

    /// Replaces the memory's metadata.
    pub async fn set_metadata(
        &self,
        id: Uuid,
        metadata: &Map<String, Value>,
    ) -> Result<Written, Error> {
        let body = json!({ "metadata": metadata });
        self.command(
            Method::PUT,
            format!("v1/memories/{id}/metadata"),
            Some(&body),
            None,
        )
        .await
    }

    /// Into a session, or out of any with `None`.
    pub async fn move_memory(&self, id: Uuid, session_id: Option<Uuid>) -> Result<Written, Error> {
        let body = json!({ "session_id": session_id });
        self.command(
            Method::POST,
            format!("v1/memories/{id}/move"),
            Some(&body),
            None,
        )
        .await
    }

    /// Deletes (restorable; history keeps everything).
    pub async fn delete_memory(&self, id: Uuid) -> Result<Written, Error> {
        self.command::<()>(Method::DELETE, format!("v1/memories/{id}"), None, None)
            .await
    }

    pub async fn restore_memory(&self, id: Uuid) -> Result<Written, Error> {
        self.command::<()>(
            Method::POST,
            format!("v1/memories/{id}/restore"),
            None,
            None,
        )
        .await
    }

    /// Erases for good: content, title, tags and metadata leave every store;
    /// history keeps only the shape of the events.
    pub async fn erase_memory(&self, id: Uuid) -> Result<Written, Error> {
        self.command::<()>(Method::POST, format!("v1/memories/{id}/erase"), None, None)
            .await
    }

    /// [`Self::create_session`] under a key of the caller's, as
    /// [`Self::create_memory_with_key`].
    pub async fn create_session_with_key(
        &self,
        session: &NewSession,
        key: &str,
    ) -> Result<Written, Error> {
        self.command_with_key(
            Method::POST,
            "v1/sessions".into(),
            Some(session),
            None,
            key.to_owned(),
        )
        .await
    }

    pub async fn create_session(&self, session: &NewSession) -> Result<Written, Error> {
        self.command(Method::POST, "v1/sessions".into(), Some(session), None)
            .await
    }

    pub async fn rename_session(&self, id: Uuid, title: &str) -> Result<Written, Error> {
        let body = json!({ "title": title });
        self.command(
            Method::PATCH,
            format!("v1/sessions/{id}"),
            Some(&body),
            None,
        )
        .await
    }

    pub async fn end_session(&self, id: Uuid) -> Result<Written, Error> {
        self.command::<()>(Method::POST, format!("v1/sessions/{id}/end"), None, None)
            .await
    }

    pub async fn reopen_session(&self, id: Uuid) -> Result<Written, Error> {
        self.command::<()>(Method::POST, format!("v1/sessions/{id}/reopen"), None, None)
            .await
    }

    // ---- queries ----

    /// The memory; with `min_version`, once the read side holds that version
    /// (503 `not_yet_consistent` after the service's wait, retried here).
    pub async fn get_memory(&self, id: Uuid, min_version: Option<u64>) -> Result<Memory, Error> {
        self.document(format!("v1/memories/{id}"), min_version)
            .await
    }

    /// A deleted memory too (a restore's candidate).
    /// [`Self::get_memory`] that also answers a deleted memory.
    pub async fn get_memory_including_deleted(
        &self,
        id: Uuid,
        min_version: Option<u64>,
    ) -> Result<Memory, Error> {
        let call = Call::new(Service::Query, Method::GET, format!("v1/memories/{id}"))
            .query([("include_deleted", "true".to_owned())])
            .query(min_version.map(|v| ("min_version", v.to_string())));
        self.send(call, None).await
    }

    pub async fn list_memories(&self, options: &ListOptions) -> Result<Page<Memory>, Error> {
        let call = Call::new(Service::Query, Method::GET, "v1/memories".into())
            .query(options.filters.pairs())
            .query(page_pairs(
                options.order,
                options.limit,
                options.cursor.as_deref(),
            ))
            .query(
                options
                    .include_deleted
                    .then(|| ("include_deleted", "true".to_owned())),
            )
            .query(wait_pairs(options.wait_for));
        self.send(call, None).await
    }

    pub async fn get_session(&self, id: Uuid, min_version: Option<u64>) -> Result<Session, Error> {
        self.document(format!("v1/sessions/{id}"), min_version)
            .await
    }

    /// Sessions by start time; `status` is `open` or `ended`.
    pub async fn list_sessions(
        &self,
        status: Option<SessionStatus>,
        options: &SessionListOptions,
    ) -> Result<Page<Session>, Error> {
        let status = status.map(|s| {
            let name = match s {
                SessionStatus::Open => "open",
                SessionStatus::Ended => "ended",
            };
            ("status", name.to_owned())
        });
        let call = Call::new(Service::Query, Method::GET, "v1/sessions".into())
            .query(status)
            .query(page_pairs(
                options.order,
                options.limit,
                options.cursor.as_deref(),
            ));
        self.send(call, None).await
    }

    /// The session's active memories in the order they happened.
    pub async fn timeline(
        &self,
        id: Uuid,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<Page<Memory>, Error> {
        let call = Call::new(
            Service::Query,
            Method::GET,
            format!("v1/sessions/{id}/timeline"),
        )
        .query(page_pairs(None, limit, cursor));
        self.send(call, None).await
    }

    pub async fn search(&self, search: &Search) -> Result<SearchResults, Error> {
        let mut pairs = vec![
            ("q", search.q.clone()),
            ("mode", search.mode.as_str().to_owned()),
        ];
        if let Some(k) = search.k {
            pairs.push(("k", k.to_string()));
        }
        if search.explain {
            pairs.push(("explain", "true".to_owned()));
        }
        let call = Call::new(Service::Query, Method::GET, "v1/search".into())
            .query(pairs)
            .query(wait_pairs(search.wait_for))
            .query(search.filters.pairs());
        self.send(call, None).await
    }

    /// The memory's events from version `after` on (exclusive).
    pub async fn memory_history(
        &self,
        id: Uuid,
        after: Option<u64>,
        limit: Option<u32>,
    ) -> Result<HistoryPage, Error> {
        self.history(format!("v1/memories/{id}/history"), after, limit)
            .await
    }

    pub async fn session_history(
        &self,
        id: Uuid,
        after: Option<u64>,
        limit: Option<u32>,
    ) -> Result<HistoryPage, Error> {
        self.history(format!("v1/sessions/{id}/history"), after, limit)
            .await
    }

    /// The memory as it was (404 `no_state_yet` before it existed, 410
    /// `memory_erased` once erased).
    pub async fn memory_as_of(&self, id: Uuid, point: PointInTime) -> Result<Memory, Error> {
        self.as_of(format!("v1/memories/{id}/as-of"), point).await
    }

    pub async fn session_as_of(&self, id: Uuid, point: PointInTime) -> Result<Session, Error> {
        self.as_of(format!("v1/sessions/{id}/as-of"), point).await
    }

    /// A document by id, once the read side holds `min_version` if given.
    async fn document<T: DeserializeOwned>(
        &self,
        path: String,
        min_version: Option<u64>,
    ) -> Result<T, Error> {
        let call = Call::new(Service::Query, Method::GET, path)
            .query(min_version.map(|v| ("min_version", v.to_string())));
        self.send(call, None).await
    }

    async fn history(
        &self,
        path: String,
        after: Option<u64>,
        limit: Option<u32>,
    ) -> Result<HistoryPage, Error> {
        let call = Call::new(Service::Query, Method::GET, path)
            .query(after.map(|a| ("after", a.to_string())))
            .query(limit.map(|l| ("limit", l.to_string())));
        self.send(call, None).await
    }

    async fn as_of<T: DeserializeOwned>(
        &self,
        path: String,
        point: PointInTime,
    ) -> Result<T, Error> {
        let call = Call::new(Service::Query, Method::GET, path)
            .query(point.version.map(|v| ("version", v.to_string())))
            .query(point.at.map(|at| ("at", at.to_rfc3339())));
        self.send(call, None).await
    }

    // ---- the wire ----

    /// A command: a fresh `Idempotency-Key` per logical call, the same on
    /// every retry of it.
    async fn command<B: Serialize>(
        &self,
        method: Method,
        path: String,
        body: Option<&B>,
        if_match: Option<u64>,
    ) -> Result<Written, Error> {
        self.command_with_key(method, path, body, if_match, Uuid::new_v4().to_string())
            .await
    }

    async fn command_with_key<B: Serialize>(
        &self,
        method: Method,
        path: String,
        body: Option<&B>,
        if_match: Option<u64>,
        key: String,
    ) -> Result<Written, Error> {
        let mut call = Call::new(Service::Command, method, path);
        if let Some(body) = body {
            call = call.body(body)?;
        }
        call.if_match = if_match;
        let (body, headers, url) = self.exchange(&call, Some(&key)).await?;
        let mut written: Written = decode(&body, &url)?;
        written.replayed = headers
            .get(IDEMPOTENT_REPLAYED)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
        Ok(written)
    }

    async fn send<T: DeserializeOwned>(
        &self,
        call: Call,
        idempotency_key: Option<String>,
    ) -> Result<T, Error> {
        let (body, _, url) = self.exchange(&call, idempotency_key.as_deref()).await?;
        decode(&body, &url)
    }

    /// Sends `call` until it succeeds or may not be retried: the success's
    /// body and headers, or the problem.
    async fn exchange(
        &self,
        call: &Call,
        idempotency_key: Option<&str>,
    ) -> Result<(Vec<u8>, HeaderMap, Url), Error> {
        let mut url = match call.service {
            Service::Command => self.command.join(&call.path),
            Service::Query => self.query.join(&call.path),
        }
        .map_err(|_| Error::BaseUrl(call.path.clone()))?;
        if !call.query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(call.query.iter().map(|(k, v)| (*k, v)));
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self.http.request(call.method.clone(), url.clone());
            if let Some(token) = &self.token {
                request = request.bearer_auth(token);
            }
            if let Some(key) = idempotency_key {
                request = request.header(IDEMPOTENCY_KEY, key);
            }
            if let Some(version) = call.if_match {
                request = request.header(IF_MATCH, format!("\"{version}\""));
            }
            if let Some(body) = &call.body {
                request = request.json(body);
            }
            let response = match request.send().await {
                Ok(response) => response,
                Err(error) => match self.retry.after_transport(attempt, &error) {
                    Some(wait) => {
                        tracing::debug!(%url, attempt, ?wait, %error, "retrying after a transport error");
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    None => return Err(error.into()),
                },
            };
            let status = response.status();
            if status.is_success() {
                // The body first: a connection lost inside it is a transport
                // failure, retried with the same idempotency key (the write
                // may have committed), not a body that failed to parse.
                let headers = response.headers().clone();
                let body = match response.bytes().await {
                    Ok(body) => body,
                    Err(error) => match self.retry.after_transport(attempt, &error) {
                        Some(wait) => {
                            tokio::time::sleep(wait).await;
                            continue;
                        }
                        None => return Err(error.into()),
                    },
                };
                return Ok((body.to_vec(), headers, url));
            }
            if let Some(wait) = self.retry.after_status(attempt, status, response.headers()) {
                tracing::debug!(%url, attempt, ?wait, %status, "retrying");
                tokio::time::sleep(wait).await;
                continue;
            }
            return Err(Error::Problem(Box::new(problem(status, response).await)));
        }
    }
}

fn decode<T: DeserializeOwned>(body: &[u8], url: &Url) -> Result<T, Error> {
    serde_json::from_slice::<T>(body).map_err(|e| Error::Decode {
        url: url.to_string(),
        message: e.to_string(),
    })
}

/// Read your writes in a list or search: wait for this memory write.
fn wait_pairs(written: Option<Written>) -> Option<(&'static str, String)> {
    written.map(|w| ("wait_for", format!("{}@{}", w.id, w.version)))
}

/// A list's place and size: `order`, `limit`, `cursor` as given.
fn page_pairs(
    order: Option<Order>,
    limit: Option<u32>,
    cursor: Option<&str>,
) -> Vec<(&'static str, String)> {
    let order = order.map(|o| match o {
        Order::Asc => ("order", "asc".to_owned()),
        Order::Desc => ("order", "desc".to_owned()),
    });
    let limit = limit.map(|l| ("limit", l.to_string()));
    let cursor = cursor.map(|c| ("cursor", c.to_owned()));
    order.into_iter().chain(limit).chain(cursor).collect()
}

/// The answer as a [`Problem`]; a body that is not one (a proxy's HTML page)
/// keeps the status and says what came instead.
async fn problem(status: StatusCode, response: reqwest::Response) -> Problem {
    let text = response.text().await.unwrap_or_default();
    match serde_json::from_str::<Problem>(&text) {
        Ok(mut p) if !p.code.is_empty() => {
            p.status = status.as_u16();
            p
        }
        _ => Problem {
            status: status.as_u16(),
            code: format!("http_{}", status.as_u16()),
            title: status.canonical_reason().unwrap_or("").to_owned(),
            detail: Some(text.chars().take(200).collect()),
            kind: None,
            errors: None,
        },
    }
}
