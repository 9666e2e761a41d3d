// Memory lists and session timelines, a page of the cursor at a time as the
// person scrolls (docs/query-api.md: a walk sees every item once).
import { createSession, endSession, getSession, listMemories, listSessions, reopenSession, timeline, type Memory, type Session, type Written } from "../api";
import { append, h, time } from "../dom";
import { plainText } from "../markdown";
import { navigate, notFound, ready, type Route } from "../router";
import { errorText, infiniteList, message } from "../ui";
import { ApiError } from "../api";

function memoryItem(memory: Memory): HTMLElement {
  const preview = plainText(memory.content, 240);
  return h(
    "li",
    { class: "memory-item" + (memory.deleted ? " deleted" : "") },
    h(
      "a",
      { href: `/memories/${memory.id}`, class: "item-link" },
      h("span", { class: "item-title" }, memory.title || "Untitled"),
      h("span", { class: "item-preview" }, preview),
    ),
    h(
      "span",
      { class: "item-meta" },
      time(memory.occurred_at ?? memory.created_at),
      memory.deleted ? h("span", { class: "badge" }, "deleted") : null,
      memory.tags.map((tag) => h("a", { class: "tag", href: `/memories?tag=${encodeURIComponent(tag)}` }, tag)),
    ),
  );
}

export function renderMemoryList({ main, query, signal }: Route): void {
  const tag = query.get("tag") ?? "";
  const includeDeleted = query.get("deleted") === "1";
  document.title = "Memories · Second Brain";
  const list = h("ul", { id: "memory-list", class: "items", "aria-label": "Memories" });
  const tagInput = h("input", { id: "list-tag", name: "tag", type: "text", value: tag, autocomplete: "off" });
  const deleted = h("input", { id: "list-deleted", name: "deleted", type: "checkbox", value: "1", checked: includeDeleted });
  const filter = h(
    "form",
    { class: "inline-form", "aria-label": "Filter memories" },
    h("div", { class: "field" }, h("label", { for: "list-tag" }, "Tag"), tagInput),
    h("div", { class: "field checkbox" }, deleted, h("label", { for: "list-deleted" }, "Show deleted")),
    h("button", { type: "submit" }, "Filter"),
  );
  filter.addEventListener("submit", (event) => {
    event.preventDefault();
    const params = new URLSearchParams();
    if (tagInput.value.trim()) params.set("tag", tagInput.value.trim());
    if (deleted.checked) params.set("deleted", "1");
    navigate("/memories" + (params.toString() ? `?${params}` : ""));
  });
  append(main, [
    h("div", { class: "page-head" }, h("h1", {}, tag ? `Memories tagged “${tag}”` : "Memories"), h("a", { class: "button primary", href: "/new" }, "Capture")),
    query.get("erased") ? message("info", "The memory was erased: its content is gone from every version.", "erased-notice") : null,
    filter,
    list,
    infiniteList<Memory>({
      list,
      signal,
      load: (cursor) => listMemories({ cursor, tag: tag || undefined, includeDeleted }),
      item: memoryItem,
      empty: tag ? "No memory has this tag." : "Nothing here yet: capture your first memory.",
      onFirstPage: () => ready(main),
    }),
  ]);
}

export function renderSessionList({ main, signal }: Route): void {
  document.title = "Sessions · Second Brain";
  const list = h("ul", { id: "session-list", class: "items", "aria-label": "Sessions" });
  const title = h("input", { id: "session-title", name: "title", type: "text", required: true, maxlength: 200, autocomplete: "off" });
  const errors = h("div");
  const form = h(
    "form",
    { id: "session-form", class: "inline-form", "aria-label": "New session" },
    h("div", { class: "field" }, h("label", { for: "session-title" }, "New session"), title),
    h("button", { type: "submit", class: "primary" }, "Start"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    errors.replaceChildren();
    if (!title.value.trim()) {
      errors.appendChild(message("error", "Give the session a title."));
      return;
    }
    try {
      const written = await createSession(title.value.trim());
      navigate(`/sessions/${written.id}?v=${written.version}`);
    } catch (error) {
      errors.appendChild(message("error", `Could not start the session: ${errorText(error)}`));
    }
  });
  main.append(
    h("h1", {}, "Sessions"),
    form,
    errors,
    list,
    infiniteList<Session>({
      list,
      signal,
      load: (cursor) => listSessions(cursor),
      item: (session) =>
        h(
          "li",
          { class: "memory-item" },
          h("a", { href: `/sessions/${session.id}`, class: "item-link" }, h("span", { class: "item-title" }, session.title)),
          h("span", { class: "item-meta" }, time(session.started_at), " ", h("span", { class: "badge" }, session.status)),
        ),
      empty: "No sessions yet.",
      onFirstPage: () => ready(main),
    }),
  );
}

export async function renderTimeline({ main, params, query, signal }: Route): Promise<void> {
  const id = params.id!;
  let session: Session;
  try {
    const version = Number(query.get("v")) || undefined;
    session = await getSession(id, version);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) notFound(main, "No session of yours has this address.");
    else main.appendChild(message("error", `Could not load the session: ${errorText(error)}`));
    ready(main);
    return;
  }
  if (signal.aborted) return;
  document.title = `${session.title} · Second Brain`;
  const list = h("ol", { id: "timeline", class: "items timeline", "aria-label": "Timeline" });
  const status = h("div");
  const toggle = async (run: () => Promise<Written>) => {
    status.replaceChildren();
    try {
      const written = await run();
      navigate(`/sessions/${written.id}?v=${written.version}`, { replace: true });
    } catch (error) {
      status.appendChild(message("error", `Could not change the session: ${errorText(error)}`));
    }
  };
  const open = session.status === "open";
  main.append(
    h(
      "div",
      { class: "page-head" },
      h("h1", {}, session.title),
      h(
        "div",
        { class: "actions" },
        h("a", { class: "button primary", href: `/new?session=${encodeURIComponent(id)}` }, "Capture here"),
        h(
          "button",
          { type: "button", id: "session-toggle", onclick: () => void toggle(() => (open ? endSession(id) : reopenSession(id))) },
          open ? "End session" : "Reopen",
        ),
      ),
    ),
    status,
    h("p", { class: "item-meta" }, `Started `, time(session.started_at), session.ended_at ? [" · ended ", time(session.ended_at)] : " · open"),
    list,
    infiniteList<Memory>({
      list,
      signal,
      load: (cursor) => timeline(id, cursor),
      item: memoryItem,
      empty: "No memories in this session yet.",
      onFirstPage: () => ready(main),
    }),
  );
}
