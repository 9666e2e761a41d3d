//! The MCP handler: how to reach the services, whose call each one is, and
//! the twelve tools.
//!
//! Each call builds a [`Client`] with the caller's token over one shared
//! connection pool, so nothing but the pool and each caller's last write
//! outlives a call. Each successful memory write is remembered per caller
//! ([`LastWrites`]) and the caller's next `recall` or `list_memories` passes
//! it as `wait_for` (and `get_memory` of that note as `min_version`): the
//! read waits until the read side holds that write, so a note is found the
//! moment `remember` has answered (read your writes).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, Extensions, Implementation,
    ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, ServerHandler, tool, tool_handler, tool_router};
use second_brain_client::{Client, ListOptions, NewMemory, NewSession, Search, Written};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use tracing::Instrument;

use crate::answers::{HistoryAnswer, PageAnswer, RecallAnswer, WriteAnswer};
use crate::args::{
    GetMemoryArgs, ListMemoriesArgs, ListSessionsArgs, MemoryHistoryArgs, MemoryIdArgs, RecallArgs,
    RememberArgs, SessionIdArgs, StartSessionArgs, TagMemoryArgs, UpdateMemoryArgs,
};
use crate::callers::Credentials;
use crate::callers::{CallerKey, LastWrites};
use crate::error::ToolError;

/// What agents are told about the server as a whole, at `initialize`.
const INSTRUCTIONS: &str = "Second Brain is the user's long-term memory. \
Use `remember` to save anything worth keeping (facts, decisions, preferences, \
what happened), `recall` to look things up before answering from your own \
knowledge, and `get_memory`/`list_memories` to read notes in full. Every note \
has an id and a version; pass the version back as `expected_version` to \
`update_memory` so no concurrent change is overwritten. `forget_memory` is \
undone by `restore_memory`. Sessions group the notes of one conversation or \
project. Errors come back as JSON with a `code` (e.g. not_found, \
version_mismatch, validation_failed, unauthorized) and a `detail`.";

/// How to reach the command and query services: their base URLs and one
/// connection pool for every caller.
#[derive(Debug, Clone)]
pub struct Services {
    command: String,
    query: String,
    http: reqwest::Client,
}

impl Services {
    /// The limit on one request to a service. A `recall` waiting for the
    /// caller's last write waits up to the query service's consistency
    /// timeout (5 s by default) inside one request.
    const TIMEOUT: Duration = Duration::from_secs(30);

    /// Fails on a base URL the client cannot use, so a typo stops the
    /// server at start rather than failing every call.
    pub fn new(
        command: impl Into<String>,
        query: impl Into<String>,
    ) -> Result<Self, ServicesError> {
        let http = reqwest::Client::builder()
            .timeout(Self::TIMEOUT)
            .user_agent(concat!("second-brain-mcp/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ServicesError::Http)?;
        let services = Self {
            command: command.into(),
            query: query.into(),
            http,
        };
        services.client(None).map_err(ServicesError::Url)?;
        Ok(services)
    }

    /// A client that sends `token` (none at all without one).
    fn client(&self, token: Option<&SecretString>) -> Result<Client, second_brain_client::Error> {
        let mut builder = Client::builder(self.command.clone(), self.query.clone())
            .http_client(self.http.clone());
        if let Some(token) = token {
            builder = builder.token(token.expose_secret());
        }
        builder.build()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServicesError {
    #[error("the HTTP client could not be built")]
    Http(#[source] reqwest::Error),
    #[error("a service URL is not usable")]
    Url(#[source] second_brain_client::Error),
}

/// The MCP server handler. Cheap to clone: the streamable HTTP transport
/// makes one per request.
#[derive(Clone)]
pub struct SecondBrain {
    services: Services,
    credentials: Credentials,
    last_writes: Arc<LastWrites>,
    tool_router: ToolRouter<Self>,
}

impl std::fmt::Debug for SecondBrain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecondBrain")
            .field("services", &self.services)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

/// One call's caller: a client with its token, and the key of its last
/// write (none without a token: the services refuse such calls anyway).
struct Caller {
    client: Client,
    key: Option<CallerKey>,
}

impl SecondBrain {
    pub fn new(services: Services, credentials: Credentials) -> Self {
        Self {
            services,
            credentials,
            last_writes: Arc::new(LastWrites::default()),
            tool_router: Self::tool_router(),
        }
    }

    fn caller(&self, extensions: &Extensions) -> Result<Caller, ToolError> {
        let token = self.credentials.token(extensions);
        Ok(Caller {
            client: self.services.client(token.as_ref())?,
            key: token.as_ref().map(CallerKey::of),
        })
    }

    /// Notes a memory write for the caller's next recall, and answers it.
    /// Session writes are not noted: the search index holds no sessions.
    fn wrote(&self, caller: &Caller, written: Written) -> Result<CallToolResult, ToolError> {
        if let Some(key) = caller.key {
            self.last_writes.record(key, written);
        }
        answer(&WriteAnswer::from(written))
    }

    fn last_write(&self, caller: &Caller) -> Option<Written> {
        caller.key.and_then(|key| self.last_writes.last(key))
    }
}

/// A successful result: the answer as structured content and as JSON text.
fn answer(value: &impl Serialize) -> Result<CallToolResult, ToolError> {
    let value = serde_json::to_value(value).map_err(ToolError::Encode)?;
    Ok(CallToolResult::structured(value))
}

#[tool_router]
impl SecondBrain {
    #[tool(
        description = "Save a note to the user's Second Brain. Use it for anything worth \
        remembering later: facts, decisions, preferences, events. Answers the new note's \
        `id` and `version`. A `recall` right after finds it.",
        annotations(
            title = "Remember",
            read_only_hint = false,
            destructive_hint = false,
            open_world_hint = false
        )
    )]
    async fn remember(
        &self,
        Parameters(args): Parameters<RememberArgs>,
        extensions: Extensions,
    ) -> Result<CallToolResult, ToolError> {
        let caller = self.caller(&extensions)?;
        let written = caller.client.create_memory(&NewMemory::from(args)).await?;
        self.wrote(&caller, written)
    }

    #[tool(
        description = "Search the user's notes by meaning and words. Use it before \
        answering anything the user may have told you before. Answers up to `k` hits, \
        best first, each with its `id`, `title`, a `snippet` (matched words in \
        <mark>…</mark>) and a `score`; `get_memory` gives a hit's full text. Sees \
        your own latest write at once.",
        annotations(title = "Recall", read_only_hint = true, open_world_hint = false)
    )]
    async fn recall(
        &self,
        Parameters(args): Parameters<RecallArgs>,
        extensions: Extensions,
    ) -> Result<CallToolResult, ToolError> {
        let caller = self.caller(&extensions)?;
        let search = Search {
            wait_for: self.last_write(&caller),
            ..Search::from(args)
        };
        let results = caller.client.search(&search).await?;
        answer(&RecallAnswer::from(results))
    }

    #[tool(
        description = "Read one note in full by its `id`: content, title, tags, metadata, \
        session, times, status and `version`.",
        annotations(title = "Get a note", read_only_hint = true, open_world_hint = false)
    )]
    async fn get_memory(
        &self,
        Parameters(args): Parameters<GetMemoryArgs>,
        extensions: Extensions,
    ) -> Result<CallToolResult, ToolError> {
        let caller = self.caller(&extensions)?;
        // The caller's own last write to this note is what it must see
        // (a forget included: a deleted note is shown deleted at once).
        let min_version = self
            .last_write(&caller)
            .filter(|written| written.id == args.id)
            .map(|written| written.version);
        let memory = if args.include_deleted {
            caller
                .client
                .get_memory_including_deleted(args.id, min_version)
                .await?
        } else {
            caller.client.get_memory(args.id, min_version).await?
        };
        answer(&memory)
    }

    #[tool(
        description = "List the user's notes, newest first, optionally filtered by \
        session, tags and time. Answers `items` (full notes) and a `next_cursor` to \
        pass back as `cursor` for the next page. Shows your own latest write at \
        once.",
        annotations(title = "List notes", read_only_hint = true, open_world_hint = false)
    )]
    async fn list_memories(
        &self,
        Parameters(args): Parameters<ListMemoriesArgs>,
        extensions: Extensions,
    ) -> Result<CallToolResult, ToolError> {
        let caller = self.caller(&extensions)?;
        let options = ListOptions {
            wait_for: self.last_write(&caller),
            ..ListOptions::from(args)
        };
        let page = caller.client.list_memories(&options).await?;
        answer(&PageAnswer::from(page))
    }

    #[tool(
        description = "Change a note's content and/or title (or remove its title). Pass \
        the `version` you last saw as `expected_version`: if the note changed since, \
        nothing is written and the error's code is `version_mismatch` (read it again \
        and retry). Answers the note's new `version`.",
        annotations(
            title = "Update a note",
            read_only_hint = false,
            destructive_hint = true,
            open_world_hint = false
        )
    )]
    async fn update_memory(
        &self,
        Parameters(args): Parameters<UpdateMemoryArgs>,
        extensions: Extensions,
    ) -> Result<CallToolResult, ToolError> {
        let update = args.parse()?;
        let caller = self.caller(&extensions)?;
        let written = caller
            .client
            .update_memory(update.id, &update.edit, update.if_match)
            .await?;
        self.wrote(&caller, written)
    }

    #[tool(
        description = "Add and/or remove tags of a note (tags are stored lower-cased). \
        Adds first, then removes. Answers the note's new `version`.",
        annotations(
            title = "Tag a note",
            read_only_hint = false,
            destructive_hint = false,
            open_world_hint = false
        )
    )]
    async fn tag_memory(
        &self,
        Parameters(args): Parameters<TagMemoryArgs>,
        extensions: Extensions,
    ) -> Result<CallToolResult, ToolError> {
        let args = args.check()?;
        let caller = self.caller(&extensions)?;
        let mut last = None;
        if !args.add.is_empty() {
            let written = caller.client.add_tags(args.id, &args.add).await?;
            last = Some(self.wrote(&caller, written)?);
        }
        if !args.remove.is_empty() {
            let written = caller.client.remove_tags(args.id, &args.remove).await?;
            last = Some(self.wrote(&caller, written)?);
        }
        last.ok_or_else(|| ToolError::bad_argument("add", "nothing to change"))
    }

    #[tool(
        description = "Forget (delete) a note: it no longer shows in `recall` or lists. \
        Reversible: `restore_memory` brings it back, and its history is kept. Answers \
        the note's new `version`.",
        annotations(
            title = "Forget a note",
            read_only_hint = false,
            destructive_hint = true,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn forget_memory(
        &self,
        Parameters(args): Parameters<MemoryIdArgs>,
        extensions: Extensions,
    ) -> Result<CallToolResult, ToolError> {
        let caller = self.caller(&extensions)?;
        let written = caller.client.delete_memory(args.id).await?;
        self.wrote(&caller, written)
    }

    #[tool(
        description = "Bring back a note that `forget_memory` deleted. Answers the note's \
        new `version`.",
        annotations(
            title = "Restore a note",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn restore_memory(
        &self,
        Parameters(args): Parameters<MemoryIdArgs>,
        extensions: Extensions,
    ) -> Result<CallToolResult, ToolError> {
        let caller = self.caller(&extensions)?;
        let written = caller.client.restore_memory(args.id).await?;
        self.wrote(&caller, written)
    }

    #[tool(
        description = "Every change ever made to a note, oldest first: each with its \
        `version`, `type` (e.g. MemoryCaptured, MemoryRevised), when, by whom, and what \
        changed. Page with `after` = the previous answer's `next_after`.",
        annotations(title = "Note history", read_only_hint = true, open_world_hint = false)
    )]
    async fn memory_history(
        &self,
        Parameters(args): Parameters<MemoryHistoryArgs>,
        extensions: Extensions,
    ) -> Result<CallToolResult, ToolError> {
        let caller = self.caller(&extensions)?;
        let page = caller
            .client
            .memory_history(args.id, args.after, args.limit)
            .await?;
        answer(&HistoryAnswer::from(page))
    }

    #[tool(
        description = "Start a session: a named group for the notes of one conversation, \
        task or project. Pass its `id` as `session_id` to `remember`, `recall` and \
        `list_memories`. Answers the session's `id` and `version`.",
        annotations(
            title = "Start a session",
            read_only_hint = false,
            destructive_hint = false,
            open_world_hint = false
        )
    )]
    async fn start_session(
        &self,
        Parameters(args): Parameters<StartSessionArgs>,
        extensions: Extensions,
    ) -> Result<CallToolResult, ToolError> {
        let caller = self.caller(&extensions)?;
        let written = caller
            .client
            .create_session(&NewSession::from(args))
            .await?;
        answer(&WriteAnswer::from(written))
    }

    #[tool(
        description = "End a session when its conversation or task is over. Its notes \
        stay. Answers the session's new `version`.",
        annotations(
            title = "End a session",
            read_only_hint = false,
            destructive_hint = false,
            idempotent_hint = true,
            open_world_hint = false
        )
    )]
    async fn end_session(
        &self,
        Parameters(args): Parameters<SessionIdArgs>,
        extensions: Extensions,
    ) -> Result<CallToolResult, ToolError> {
        let caller = self.caller(&extensions)?;
        let written = caller.client.end_session(args.id).await?;
        answer(&WriteAnswer::from(written))
    }

    #[tool(
        description = "List the user's sessions, latest started first, optionally only \
        `open` or `ended` ones. Answers `items` (each with `id`, `title`, `status`, \
        `version`, times) and a `next_cursor` for the next page.",
        annotations(
            title = "List sessions",
            read_only_hint = true,
            open_world_hint = false
        )
    )]
    async fn list_sessions(
        &self,
        Parameters(args): Parameters<ListSessionsArgs>,
        extensions: Extensions,
    ) -> Result<CallToolResult, ToolError> {
        let caller = self.caller(&extensions)?;
        let (status, options) = args.parse();
        let page = caller.client.list_sessions(status, &options).await?;
        answer(&PageAnswer::from(page))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for SecondBrain {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "second-brain",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(INSTRUCTIONS)
    }

    /// Every call in one span with its outcome logged; and arguments that
    /// do not fit the schema (rmcp answers those with an error result of
    /// its own, without structured content) get the same `bad_argument`
    /// body as the tools' own refusals.
    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, rmcp::ErrorData> {
        let tool = request.name.clone();
        let span = tracing::info_span!("tool_call", %tool);
        let started = Instant::now();
        let context = ToolCallContext::new(self, request, context);
        let response = self
            .tool_router
            .call(context)
            .instrument(span.clone())
            .await;
        let response = match response {
            Ok(CallToolResponse::Complete(result)) => {
                Ok(CallToolResponse::Complete(schema_refusal(result)))
            }
            other => other,
        };
        let _entered = span.enter();
        let elapsed_seconds = started.elapsed().as_secs_f64();
        match &response {
            Ok(CallToolResponse::Complete(result)) if result.is_error == Some(true) => {
                let code = result
                    .structured_content
                    .as_ref()
                    .and_then(|body| body.get("code"))
                    .and_then(|code| code.as_str())
                    .unwrap_or("");
                tracing::info!(elapsed_seconds, code, "tool call refused");
            }
            Ok(_) => tracing::info!(elapsed_seconds, "tool call answered"),
            Err(error) => {
                tracing::info!(elapsed_seconds, code = %error.code.0, message = %error.message, "tool call failed")
            }
        }
        response
    }
}

/// rmcp's own error result for arguments that do not deserialise (the
/// only error result without structured content) as a `bad_argument`.
fn schema_refusal(result: CallToolResult) -> CallToolResult {
    if result.is_error != Some(true) || result.structured_content.is_some() {
        return result;
    }
    let message = result
        .content
        .iter()
        .filter_map(|content| content.as_text())
        .map(|text| text.text.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    ToolError::Arguments(message).into_result()
}
