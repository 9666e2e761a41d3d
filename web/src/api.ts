// The HTTP API, same origin: commands and reads both go to /v1/*, and the
// proxy in front sends each to its service (docs/web.md).
import { clearToken, forgetWrite, lastWrite, rememberWrite, token, type Written } from "./session";

export type { Written };

/** An RFC 9457 problem, as both services answer every error. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly title: string,
    readonly detail: string,
    readonly fields: { field?: string; code?: string; message?: string }[] = [],
  ) {
    super(detail || title);
  }

  /** One sentence for the person at the keyboard. */
  describe(): string {
    const fields = this.fields.map((f) => f.message || `${f.field}: ${f.code}`).filter(Boolean);
    const base = this.detail || this.title || `HTTP ${this.status}`;
    return fields.length ? `${base} (${fields.join("; ")})` : base;
  }
}

export interface Memory {
  id: string;
  version: number;
  content: string;
  title: string | null;
  tags: string[];
  metadata: Record<string, unknown>;
  session_id: string | null;
  occurred_at: string | null;
  created_at: string;
  updated_at: string;
  status: "active" | "deleted" | "erased";
  /** `status === "deleted"`, set as the document is read. */
  deleted: boolean;
}

/** The document as the service sends it, with `deleted` derived once. */
function memory(doc: Memory): Memory {
  doc.deleted = doc.status === "deleted";
  return doc;
}

function memories(page: Page<Memory>): Page<Memory> {
  page.items.forEach(memory);
  return page;
}

export interface Session {
  id: string;
  version: number;
  title: string;
  status: "open" | "ended";
  started_at: string;
  ended_at: string | null;
  metadata: Record<string, unknown>;
}

export interface Hit {
  id: string;
  session_id: string | null;
  occurred_at: string | null;
  created_at: string;
  title: string | null;
  snippet: string;
  score: number;
}

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

export interface HistoryEntry {
  event_id: string;
  version: number;
  type: string;
  schema_version: number;
  recorded_at: string;
  actor_id: string;
  correlation_id: string;
  changes: Record<string, unknown>;
}

export interface HistoryPage {
  items: HistoryEntry[];
  next_after: number | null;
}

export type Mode = "hybrid" | "keyword" | "semantic";

export interface SearchFilters {
  mode: Mode;
  tag?: string;
  session?: string;
  from?: string;
  to?: string;
}

let onUnauthorized: () => void = () => {};
export function setUnauthorizedHandler(handler: () => void): void {
  onUnauthorized = handler;
}

interface Call {
  method?: string;
  body?: unknown;
  ifMatch?: number;
  signal?: AbortSignal;
  credential?: string;
}

async function call<T>(path: string, options: Call = {}): Promise<{ body: T; headers: Headers }> {
  const credential = options.credential ?? token();
  const headers: Record<string, string> = { Accept: "application/json" };
  if (credential) headers.Authorization = `Bearer ${credential}`;
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  if (options.ifMatch !== undefined) headers["If-Match"] = `"${options.ifMatch}"`;
  // A retried command must not apply twice: every write carries a key of its own.
  if (options.method && options.method !== "GET") headers["Idempotency-Key"] = crypto.randomUUID();
  let response: Response;
  try {
    response = await fetch(path, {
      method: options.method ?? "GET",
      headers,
      body: options.body === undefined ? null : JSON.stringify(options.body),
      signal: options.signal ?? null,
      credentials: "omit",
      cache: "no-store",
    });
  } catch (error) {
    if ((error as Error).name === "AbortError") throw error;
    throw new ApiError(0, "network", "The service could not be reached", "Check your connection and try again.");
  }
  const text = await response.text();
  let parsed: unknown = null;
  if (text) {
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = null;
    }
  }
  if (!response.ok) {
    const problem = (parsed ?? {}) as Record<string, unknown>;
    const error = new ApiError(
      response.status,
      String(problem.code ?? "http_" + response.status),
      String(problem.title ?? response.statusText),
      String(problem.detail ?? ""),
      Array.isArray(problem.errors) ? (problem.errors as ApiError["fields"]) : [],
    );
    if (response.status === 401 && options.credential === undefined) {
      clearToken();
      onUnauthorized();
    }
    throw error;
  }
  return { body: parsed as T, headers: response.headers };
}

function query(params: Record<string, string | number | boolean | undefined | null>): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === "" || value === false) continue;
    search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

/** Checks a credential before it is kept: one small read with it. */
export async function verifyCredential(credential: string): Promise<void> {
  await call(`/v1/memories?limit=1`, { credential });
}

// ---- reads -------------------------------------------------------------

/** The caller's last write as `wait_for`, when it is a memory. */
function waitFor(): string | undefined {
  const written = lastWrite();
  return written ? `${written.id}@${written.version}` : undefined;
}

/**
 * A read that waits for the caller's last write, and, should the read side
 * not get there in time, answers without the wait rather than not at all.
 */
async function readingYourWrites<T>(read: (wait: string | undefined) => Promise<T>): Promise<T> {
  const wait = waitFor();
  try {
    return await read(wait);
  } catch (error) {
    if (wait && error instanceof ApiError && error.code === "not_yet_consistent") {
      forgetWrite();
      return read(undefined);
    }
    throw error;
  }
}

export function search(q: string, filters: SearchFilters, signal?: AbortSignal): Promise<Hit[]> {
  return readingYourWrites(async (wait) => {
    const { body } = await call<{ hits: Hit[] }>(
      "/v1/search" +
        query({
          q,
          mode: filters.mode,
          k: 20,
          tags_all: filters.tag,
          session: filters.session,
          created_after: filters.from ? new Date(`${filters.from}T00:00:00`).toISOString() : undefined,
          created_before: filters.to ? nextDay(filters.to) : undefined,
          wait_for: wait,
        }),
      { signal },
    );
    return body.hits;
  });
}

function nextDay(date: string): string {
  const day = new Date(`${date}T00:00:00`);
  day.setDate(day.getDate() + 1);
  return day.toISOString();
}

export function listMemories(options: { cursor?: string | null; tag?: string; session?: string; includeDeleted?: boolean }): Promise<Page<Memory>> {
  return readingYourWrites(async (wait) => {
    const { body } = await call<Page<Memory>>(
      "/v1/memories" +
        query({
          limit: 30,
          cursor: options.cursor,
          tags_all: options.tag,
          session: options.session,
          include_deleted: options.includeDeleted,
          wait_for: options.cursor ? undefined : wait,
        }),
    );
    return memories(body);
  });
}

export async function getMemory(id: string, minVersion?: number): Promise<Memory> {
  const { body } = await call<Memory>(
    `/v1/memories/${encodeURIComponent(id)}` + query({ include_deleted: true, min_version: minVersion }),
  );
  return memory(body);
}

export async function listSessions(cursor?: string | null): Promise<Page<Session>> {
  const { body } = await call<Page<Session>>("/v1/sessions" + query({ limit: 30, cursor }));
  return body;
}

export async function getSession(id: string, minVersion?: number): Promise<Session> {
  const { body } = await call<Session>(`/v1/sessions/${encodeURIComponent(id)}` + query({ min_version: minVersion }));
  return body;
}

export async function timeline(id: string, cursor?: string | null): Promise<Page<Memory>> {
  const { body } = await call<Page<Memory>>(
    `/v1/sessions/${encodeURIComponent(id)}/timeline` + query({ limit: 30, cursor }),
  );
  return memories(body);
}

export async function memoryHistory(id: string): Promise<HistoryEntry[]> {
  const items: HistoryEntry[] = [];
  let after: number | null = null;
  // A memory has few events; walk the pages to the end.
  for (;;) {
    const { body }: { body: HistoryPage } = await call<HistoryPage>(
      `/v1/memories/${encodeURIComponent(id)}/history` + query({ limit: 1000, after }),
    );
    items.push(...body.items);
    if (body.next_after === null || body.next_after === undefined || body.items.length === 0) return items;
    after = body.next_after;
  }
}

export async function memoryAsOf(id: string, point: { version?: number; at?: string }): Promise<Memory> {
  const { body } = await call<Memory>(
    `/v1/memories/${encodeURIComponent(id)}/as-of` + query({ version: point.version, at: point.at }),
  );
  return memory(body);
}

// ---- commands ----------------------------------------------------------

async function command(path: string, options: Call): Promise<Written> {
  const { body } = await call<Written>(path, options);
  rememberWrite(body);
  return body;
}

export interface NewMemory {
  content: string;
  title?: string;
  tags?: string[];
  session_id?: string;
}

export function createMemory(memory: NewMemory): Promise<Written> {
  return command("/v1/memories", { method: "POST", body: memory });
}

export function editMemory(id: string, edit: { content: string; title: string | null }, ifMatch: number): Promise<Written> {
  return command(`/v1/memories/${encodeURIComponent(id)}`, { method: "PATCH", body: edit, ifMatch });
}

export function addTags(id: string, tags: string[]): Promise<Written> {
  return command(`/v1/memories/${encodeURIComponent(id)}/tags`, { method: "POST", body: { tags } });
}

export function removeTags(id: string, tags: string[]): Promise<Written> {
  return command(`/v1/memories/${encodeURIComponent(id)}/tags/remove`, { method: "POST", body: { tags } });
}

export function moveMemory(id: string, sessionId: string | null): Promise<Written> {
  return command(`/v1/memories/${encodeURIComponent(id)}/move`, { method: "POST", body: { session_id: sessionId } });
}

export function deleteMemory(id: string): Promise<Written> {
  return command(`/v1/memories/${encodeURIComponent(id)}`, { method: "DELETE" });
}

export function restoreMemory(id: string): Promise<Written> {
  return command(`/v1/memories/${encodeURIComponent(id)}/restore`, { method: "POST" });
}

export function eraseMemory(id: string): Promise<Written> {
  return command(`/v1/memories/${encodeURIComponent(id)}/erase`, { method: "POST" });
}

export async function createSession(title: string): Promise<Written> {
  const { body } = await call<Written>("/v1/sessions", { method: "POST", body: { title } });
  return body;
}

export async function endSession(id: string): Promise<Written> {
  const { body } = await call<Written>(`/v1/sessions/${encodeURIComponent(id)}/end`, { method: "POST" });
  return body;
}

export async function reopenSession(id: string): Promise<Written> {
  const { body } = await call<Written>(`/v1/sessions/${encodeURIComponent(id)}/reopen`, { method: "POST" });
  return body;
}
