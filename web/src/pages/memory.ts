// One memory: its content as Markdown, its tags and metadata, and every
// change one can make to it, each behind the confirmation it deserves.
import {
  addTags,
  ApiError,
  deleteMemory,
  eraseMemory,
  getMemory,
  listSessions,
  moveMemory,
  removeTags,
  restoreMemory,
  type Memory,
  type Written,
} from "../api";
import { append, h, time } from "../dom";
import { renderMarkdown } from "../markdown";
import { navigate, notFound, ready, type Route } from "../router";
import { confirmAction, errorText, message, parseTags } from "../ui";

/** Loads a memory at the version the last command returned, or later. */
export async function loadMemory(route: Route): Promise<Memory | null> {
  const { main, params, query } = route;
  try {
    const version = Number(query.get("v")) || undefined;
    return await getMemory(params.id!, version);
  } catch (error) {
    if (error instanceof ApiError && (error.status === 404 || error.status === 400)) {
      notFound(main, "No memory of yours has this address. It may never have existed, or it was erased.");
    } else {
      main.appendChild(message("error", `Could not load the memory: ${errorText(error)}`));
    }
    ready(main);
    return null;
  }
}

/** After a command: show the memory as of the version it returned. */
function reload(written: Written): void {
  navigate(`/memories/${written.id}?v=${written.version}`, { replace: true });
}

export async function renderMemory(route: Route): Promise<void> {
  const { main, signal } = route;
  const memory = await loadMemory(route);
  if (!memory || signal.aborted) return;
  document.title = `${memory.title || "Memory"} · Second Brain`;
  const status = h("div", { class: "action-status" });

  async function act(run: () => Promise<Written>, failure: string): Promise<void> {
    status.replaceChildren();
    try {
      reload(await run());
    } catch (error) {
      status.appendChild(message("error", `${failure}: ${errorText(error)}`));
    }
  }

  // ---- tags
  const tagList = h(
    "ul",
    { id: "memory-tags", class: "tags", "aria-label": "Tags" },
    memory.tags.map((tag) =>
      h(
        "li",
        {},
        h("a", { class: "tag", href: `/memories?tag=${encodeURIComponent(tag)}` }, tag),
        memory.deleted
          ? null
          : h(
              "button",
              {
                type: "button",
                class: "tag-remove",
                "aria-label": `Remove the tag ${tag}`,
                onclick: () => void act(() => removeTags(memory.id, [tag]), "Could not remove the tag"),
              },
              "×",
            ),
      ),
    ),
  );
  const tagInput = h("input", { id: "tag-input", name: "tags", type: "text", autocomplete: "off", placeholder: "tag, another" });
  const tagForm = h(
    "form",
    { id: "tag-form", class: "inline-form", "aria-label": "Add tags" },
    h("div", { class: "field" }, h("label", { for: "tag-input" }, "Add tags"), tagInput),
    h("button", { type: "submit" }, "Add"),
  );
  tagForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const tags = parseTags(tagInput.value);
    if (tags.length === 0) {
      status.replaceChildren(message("error", "Type a tag to add (separate several with commas)."));
      tagInput.focus();
      return;
    }
    void act(() => addTags(memory.id, tags), "Could not add the tags");
  });

  // ---- actions
  /** A button that asks first, then runs the command and shows its version. */
  const asking = (id: string, label: string, ask: { title: string; text: string; confirm: string }, run: () => Promise<Written>, primary = false) =>
    h(
      "button",
      {
        id,
        type: "button",
        class: primary ? "primary" : null,
        onclick: async () => {
          if (await confirmAction({ ...ask, text: [ask.text] })) await act(run, `Could not ${label.toLowerCase()}`);
        },
      },
      label,
    );
  const actions = h("div", { class: "actions", role: "group", "aria-label": "Actions" });
  if (!memory.deleted) {
    actions.append(
      h("a", { id: "memory-edit-link", class: "button primary", href: `/memories/${memory.id}/edit` }, "Edit"),
      h("button", { id: "memory-move", type: "button", onclick: () => void move(memory, act) }, "Move…"),
      asking(
        "memory-delete",
        "Delete",
        { title: "Delete this memory?", text: "It leaves your lists and search. You can restore it at any time: nothing is lost.", confirm: "Delete" },
        () => deleteMemory(memory.id),
      ),
    );
  } else {
    actions.append(
      asking(
        "memory-restore",
        "Restore",
        { title: "Restore this memory?", text: "It comes back to your lists and search as it was.", confirm: "Restore" },
        () => restoreMemory(memory.id),
        true,
      ),
    );
  }
  actions.append(
    h("a", { id: "memory-history-link", class: "button", href: `/memories/${memory.id}/history` }, "History"),
    h(
      "button",
      {
        id: "memory-erase",
        type: "button",
        class: "danger",
        onclick: async () => {
          const ok = await confirmAction({
            title: "Erase this memory for good?",
            text: [
              "Erasing removes its content, title, tags and metadata from every version, in the history too. It cannot be undone, and it is not in search or any list afterwards.",
              "The history keeps only that there was a memory: each change's kind, time and who made it.",
              "To hide it but keep it, delete it instead.",
            ],
            confirm: "Erase for good",
            danger: true,
          });
          if (!ok) return;
          status.replaceChildren();
          try {
            await eraseMemory(memory.id);
            navigate(`/memories?erased=1`, { replace: true });
          } catch (error) {
            status.appendChild(message("error", `Could not erase: ${errorText(error)}`));
          }
        },
      },
      "Erase…",
    ),
  );

  // ---- details
  const details = h(
    "dl",
    { class: "details" },
    h("dt", {}, "Version"),
    h("dd", { id: "memory-version" }, `Version ${memory.version}`),
    h("dt", {}, "Created"),
    h("dd", {}, time(memory.created_at)),
    memory.occurred_at ? [h("dt", {}, "Happened"), h("dd", {}, time(memory.occurred_at))] : null,
    h("dt", {}, "Updated"),
    h("dd", {}, time(memory.updated_at)),
    h("dt", {}, "Session"),
    h("dd", {}, memory.session_id ? h("a", { href: `/sessions/${memory.session_id}`, id: "memory-session" }, "Open the session") : "None"),
  );
  const metadata = Object.keys(memory.metadata ?? {}).length
    ? h("details", { class: "metadata" }, h("summary", {}, "Metadata"), h("pre", {}, JSON.stringify(memory.metadata, null, 2)))
    : null;

  append(main, [
    h("h1", { id: "memory-heading" }, memory.title || "Untitled memory"),
    memory.deleted ? message("info", "This memory is deleted: it is not in search or lists until you restore it.") : null,
    status,
    actions,
    h("article", { id: "memory-body", class: "markdown" }, renderMarkdown(memory.content)),
    h("section", { "aria-labelledby": "tags-heading", class: "tag-section" }, h("h2", { id: "tags-heading" }, "Tags"), tagList, memory.deleted ? null : tagForm),
    details,
    metadata,
  ]);
  ready(main);
}

async function move(memory: Memory, act: (run: () => Promise<Written>, failure: string) => Promise<void>): Promise<void> {
  const select = h("select", { id: "move-session", name: "session" }, h("option", { value: "" }, "No session"));
  try {
    const page = await listSessions(null);
    for (const s of page.items) select.appendChild(h("option", { value: s.id }, s.title));
  } catch {
    /* only "No session" to offer */
  }
  select.value = memory.session_id ?? "";
  document.getElementById("move-dialog")?.remove();
  const dialog = h(
    "dialog",
    { id: "move-dialog", "aria-labelledby": "move-title" },
    h(
      "form",
      { method: "dialog" },
      h("h2", { id: "move-title" }, "Move to a session"),
      h("div", { class: "field" }, h("label", { for: "move-session" }, "Session"), select),
      h(
        "div",
        { class: "actions" },
        h("button", { type: "submit", value: "cancel" }, "Cancel"),
        h("button", { type: "submit", value: "ok", class: "primary", id: "move-ok" }, "Move"),
      ),
    ),
  );
  document.body.appendChild(dialog);
  dialog.addEventListener("close", () => {
    const chosen = select.value || null;
    const ok = dialog.returnValue === "ok";
    dialog.remove();
    if (ok && chosen !== memory.session_id) void act(() => moveMemory(memory.id, chosen), "Could not move");
  });
  dialog.showModal();
  select.focus();
}
