// Every change to a memory, as the event store recorded it: who, when, and
// a diff of what changed; and the memory as it was at any version or time,
// replayed by the service (GET …/as-of).
import { diffWordsWithSpace, diffLines } from "diff";
import { ApiError, memoryAsOf, memoryHistory, type HistoryEntry } from "../api";
import { append, formatDateTime, h, time } from "../dom";
import { renderMarkdown } from "../markdown";
import { notFound, ready, type Route } from "../router";
import { errorText, message } from "../ui";

interface State {
  title: string | null;
  content: string;
  tags: string[];
  metadata: Record<string, unknown>;
  session_id: string | null;
  deleted: boolean;
}

const LABELS: Record<string, string> = {
  MemoryCaptured: "Captured",
  MemoryRevised: "Revised",
  MemoryTagged: "Tagged",
  MemoryUntagged: "Untagged",
  MemoryMetadataChanged: "Metadata replaced",
  MemoryMoved: "Moved",
  MemoryDeleted: "Deleted",
  MemoryRestored: "Restored",
  MemoryErased: "Erased",
};

/** The state after one event, folded as the service folds it. */
function apply(state: State, entry: HistoryEntry): State {
  const c = entry.changes ?? {};
  const next = { ...state, tags: [...state.tags] };
  switch (entry.type) {
    case "MemoryCaptured":
      next.content = typeof c.content === "string" ? c.content : "";
      next.title = typeof c.title === "string" ? c.title : null;
      next.tags = Array.isArray(c.tags) ? (c.tags as string[]) : [];
      next.metadata = (c.metadata as Record<string, unknown>) ?? {};
      next.session_id = (c.session_id as string | null) ?? null;
      break;
    case "MemoryRevised":
      if (typeof c.content === "string") next.content = c.content;
      if ("title" in c) next.title = (c.title as string | null) ?? null;
      break;
    case "MemoryTagged":
      for (const tag of (c.tags as string[]) ?? []) if (!next.tags.includes(tag)) next.tags.push(tag);
      break;
    case "MemoryUntagged":
      next.tags = next.tags.filter((tag) => !((c.tags as string[]) ?? []).includes(tag));
      break;
    case "MemoryMetadataChanged":
      next.metadata = (c.metadata as Record<string, unknown>) ?? {};
      break;
    case "MemoryMoved":
      next.session_id = (c.session_id as string | null) ?? null;
      break;
    case "MemoryDeleted":
      next.deleted = true;
      break;
    case "MemoryRestored":
      next.deleted = false;
      break;
  }
  return next;
}

/** Word-level diff of two texts as <del>/<ins>; lines for long texts. */
function textDiff(before: string, after: string): HTMLElement {
  const parts = before.length + after.length > 20000 ? diffLines(before, after) : diffWordsWithSpace(before, after);
  return h(
    "div",
    { class: "diff-text" },
    parts.map((part) =>
      part.added
        ? h("ins", {}, part.value)
        : part.removed
          ? h("del", {}, part.value)
          : h("span", {}, part.value.length > 400 ? part.value.slice(0, 180) + " … " + part.value.slice(-180) : part.value),
    ),
  );
}

function changeList(before: State, after: State, entry: HistoryEntry): HTMLElement {
  const rows: HTMLElement[] = [];
  const row = (label: string, body: Node | string) => rows.push(h("div", { class: "diff-row" }, h("span", { class: "diff-field" }, label), body));
  if (entry.type === "MemoryErased") {
    row("Content", "Erased from every version.");
  }
  if (before.title !== after.title) row("Title", textDiff(before.title ?? "", after.title ?? ""));
  if (before.content !== after.content) row("Content", textDiff(before.content, after.content));
  const added = after.tags.filter((t) => !before.tags.includes(t));
  const removed = before.tags.filter((t) => !after.tags.includes(t));
  if (added.length || removed.length) {
    row("Tags", h("span", {}, added.map((t) => h("ins", { class: "tag" }, t)), removed.map((t) => h("del", { class: "tag" }, t))));
  }
  if (JSON.stringify(before.metadata) !== JSON.stringify(after.metadata)) {
    row("Metadata", textDiff(JSON.stringify(before.metadata, null, 1), JSON.stringify(after.metadata, null, 1)));
  }
  if (before.session_id !== after.session_id) {
    row("Session", after.session_id ? h("a", { href: `/sessions/${after.session_id}` }, "moved to a session") : "moved out of its session");
  }
  if (before.deleted !== after.deleted) row("State", after.deleted ? "deleted" : "restored");
  if (rows.length === 0) rows.push(h("p", { class: "hint" }, entry.type === "MemoryErased" ? "" : "No visible change."));
  return h("div", { class: "event-diff" }, rows);
}

export async function renderHistory({ main, params, signal }: Route): Promise<void> {
  const id = params.id!;
  let events: HistoryEntry[];
  try {
    events = await memoryHistory(id);
  } catch (error) {
    if (error instanceof ApiError && (error.status === 404 || error.status === 400)) {
      notFound(main, "No memory of yours has this address.");
    } else {
      main.appendChild(message("error", `Could not load the history: ${errorText(error)}`));
    }
    ready(main);
    return;
  }
  if (signal.aborted) return;
  document.title = "History · Second Brain";
  const erased = events.some((e) => e.type === "MemoryErased");

  // ---- the events, newest first, each with its diff
  let state: State = { title: null, content: "", tags: [], metadata: {}, session_id: null, deleted: false };
  const items: HTMLElement[] = [];
  for (const entry of events) {
    const next = apply(state, entry);
    items.push(
      h(
        "li",
        { class: "history-event", "data-version": entry.version },
        h(
          "div",
          { class: "event-head" },
          h("span", { class: "event-version" }, `v${entry.version}`),
          h("span", { class: "event-type" }, LABELS[entry.type] ?? entry.type),
          h("span", { class: "event-actor" }, `by ${entry.actor_id}`),
          time(entry.recorded_at),
        ),
        changeList(state, next, entry),
      ),
    );
    state = next;
  }
  items.reverse();
  for (const item of items) item.querySelector("time")?.classList.add("event-time");

  // ---- as of: a version on the slider, or a moment in time
  const latest = events.length ? events[events.length - 1]!.version : 1;
  const slider = h("input", {
    id: "asof-slider",
    type: "range",
    min: 1,
    max: latest,
    step: 1,
    value: latest,
    "aria-describedby": "asof-label",
  });
  const label = h("output", { id: "asof-label", for: "asof-slider" });
  const at = h("input", { id: "asof-time", type: "datetime-local", step: 1 });
  const view = h("article", { id: "asof-view", class: "markdown asof-view", "aria-live": "polite" });
  let sequence = 0;

  async function show(point: { version?: number; at?: string }, describe: string): Promise<void> {
    const mine = ++sequence;
    label.textContent = describe;
    try {
      const memory = await memoryAsOf(id, point);
      if (mine !== sequence || signal.aborted) return;
      view.replaceChildren(
        h("h3", {}, memory.title || "Untitled memory", memory.deleted ? " (deleted)" : ""),
        renderMarkdown(memory.content),
        memory.tags.length ? h("p", { class: "tags-line" }, "Tags: ", memory.tags.join(", ")) : "",
      );
    } catch (error) {
      if (mine !== sequence || signal.aborted) return;
      if (error instanceof ApiError && error.code === "memory_erased") {
        view.replaceChildren(message("info", "This memory was erased: no version of its content is kept."));
      } else if (error instanceof ApiError && error.code === "no_state_yet") {
        view.replaceChildren(message("info", "The memory did not exist yet at that time."));
      } else {
        view.replaceChildren(message("error", `Could not show that version: ${errorText(error)}`));
      }
    }
  }

  const versionText = (v: number) => {
    const entry = events.find((e) => e.version === v);
    return `Version ${v} of ${latest}${entry ? `, ${LABELS[entry.type] ?? entry.type}, ${formatDateTime(entry.recorded_at)}` : ""}`;
  };
  slider.addEventListener("input", () => {
    const v = Number(slider.value);
    at.value = "";
    void show({ version: v }, versionText(v));
  });
  at.addEventListener("change", () => {
    if (!at.value) return;
    const when = new Date(at.value);
    if (Number.isNaN(when.getTime())) return;
    void show({ at: when.toISOString() }, `As it was at ${formatDateTime(when.toISOString())}`);
  });

  append(main, [
    h(
      "div",
      { class: "page-head" },
      h("h1", {}, "History"),
      h("a", { class: "button", href: `/memories/${id}` }, erased ? "Back" : "Back to the memory"),
    ),
    erased ? message("info", "This memory was erased. The history keeps only what happened and when, none of its content.") : null,
    h(
      "section",
      { class: "asof card", "aria-labelledby": "asof-heading" },
      h("h2", { id: "asof-heading" }, "As of"),
      h("div", { class: "field" }, h("label", { for: "asof-slider" }, "Version"), slider, label),
      h("div", { class: "field" }, h("label", { for: "asof-time" }, "Or a moment in time"), at),
      view,
    ),
    h("h2", {}, `${events.length} change${events.length === 1 ? "" : "s"}`),
    h("ol", { id: "history-events", class: "history", reversed: true }, items),
  ]);
  await show({ version: latest }, versionText(latest));
  if (!signal.aborted) ready(main);
}
