// Capture a memory, or edit one. An edit names the version it started from
// (If-Match): when someone else changed the memory meanwhile, nothing is
// overwritten and the person is told, with their text kept.
import { ApiError, createMemory, editMemory, getMemory, getSession, listSessions, type Memory } from "../api";
import { h } from "../dom";
import { navigate, ready, type Route } from "../router";
import { errorText, message, parseTags } from "../ui";
import { loadMemory } from "./memory";

interface Form {
  form: HTMLFormElement;
  title: HTMLInputElement;
  content: HTMLTextAreaElement;
  errors: HTMLElement;
  save: HTMLButtonElement;
}

function memoryForm(memory: Memory | null, extra: HTMLElement[]): Form {
  const title = h("input", { id: "memory-title", name: "title", type: "text", maxlength: 500, autocomplete: "off", value: memory?.title ?? "" });
  const content = h("textarea", { id: "memory-content", name: "content", rows: 14, required: true, "aria-describedby": "content-help" });
  content.value = memory?.content ?? "";
  const errors = h("div", { class: "form-errors" });
  const save = h("button", { id: "memory-save", type: "submit", class: "primary" }, memory ? "Save" : "Capture");
  const form = h(
    "form",
    { id: "memory-form", class: "card", novalidate: true },
    h("div", { class: "field" }, h("label", { for: "memory-title" }, "Title (optional)"), title),
    h(
      "div",
      { class: "field" },
      h("label", { for: "memory-content" }, "Content"),
      content,
      h("p", { id: "content-help", class: "hint" }, "Markdown: **bold**, _italic_, lists, links, `code`. Ctrl+Enter saves."),
    ),
    extra,
    errors,
    h("div", { class: "actions" }, save),
  );
  guardUnsaved(form, [title, content]);
  content.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  return { form, title, content, errors, save };
}

/**
 * Asks before closing or reloading the tab while the form holds text that
 * is not saved. (Leaving within the app is the person's choice of link.)
 */
function guardUnsaved(form: HTMLFormElement, fields: (HTMLInputElement | HTMLTextAreaElement)[]): void {
  const initial = fields.map((f) => f.value);
  const dirty = () => fields.some((f, i) => f.value !== initial[i]);
  const onBeforeUnload = (event: BeforeUnloadEvent) => {
    if (!form.isConnected) {
      window.removeEventListener("beforeunload", onBeforeUnload);
      return;
    }
    if (dirty()) event.preventDefault();
  };
  window.addEventListener("beforeunload", onBeforeUnload);
  // A save navigates within the app, which ends the guard.
  window.addEventListener("sb:navigate", () => window.removeEventListener("beforeunload", onBeforeUnload), { once: true });
}

export function renderCapture({ main, query, signal }: Route): void {
  document.title = "Capture · Second Brain";
  const tags = h("input", { id: "memory-tags", name: "tags", type: "text", autocomplete: "off", "aria-describedby": "tags-help" });
  const session = h("select", { id: "memory-session", name: "session" }, h("option", { value: "" }, "No session"));
  const wanted = query.get("session");
  const f = memoryForm(null, [
    h("div", { class: "field" }, h("label", { for: "memory-tags" }, "Tags"), tags, h("p", { id: "tags-help", class: "hint" }, "Separate tags with commas.")),
    h("div", { class: "field" }, h("label", { for: "memory-session" }, "Session"), session),
  ]);
  f.form.addEventListener("submit", async (event) => {
    event.preventDefault();
    f.errors.replaceChildren();
    if (!f.content.value.trim()) {
      f.errors.appendChild(message("error", "Write something to remember.", "form-error"));
      f.content.focus();
      return;
    }
    f.save.disabled = true;
    try {
      const written = await createMemory({
        content: f.content.value,
        title: f.title.value.trim() || undefined,
        tags: parseTags(tags.value),
        session_id: session.value || undefined,
      });
      navigate(`/memories/${written.id}?v=${written.version}`);
    } catch (error) {
      f.errors.appendChild(message("error", `Not saved: ${errorText(error)}`, "form-error"));
    } finally {
      f.save.disabled = false;
    }
  });
  main.append(h("h1", {}, "Capture"), f.form);
  f.content.focus();
  void (async () => {
    try {
      const page = await listSessions(null);
      if (signal.aborted) return;
      for (const s of page.items) session.appendChild(h("option", { value: s.id }, s.title));
      // A session just started, or older than the first page, is asked for by id.
      if (wanted && !page.items.some((s) => s.id === wanted)) {
        const s = await getSession(wanted);
        if (signal.aborted) return;
        session.appendChild(h("option", { value: s.id }, s.title));
      }
    } catch {
      /* the session list stays as far as it got; capturing still works */
    }
    if (wanted && Array.from(session.options).some((o) => o.value === wanted)) session.value = wanted;
    ready(main);
  })();
}

export async function renderEdit(route: Route): Promise<void> {
  const { main, signal } = route;
  const memory = await loadMemory(route);
  if (!memory || signal.aborted) return;
  document.title = `Edit ${memory.title || "memory"} · Second Brain`;
  const f = memoryForm(memory, []);
  const base = memory.version;
  f.form.addEventListener("submit", async (event) => {
    event.preventDefault();
    f.errors.replaceChildren();
    if (!f.content.value.trim()) {
      f.errors.appendChild(message("error", "The content cannot be empty.", "form-error"));
      f.content.focus();
      return;
    }
    f.save.disabled = true;
    try {
      const written = await editMemory(memory.id, { content: f.content.value, title: f.title.value.trim() || null }, base);
      navigate(`/memories/${written.id}?v=${written.version}`);
    } catch (error) {
      if (error instanceof ApiError && error.status === 412) {
        const latest = await getMemory(memory.id).catch(() => null);
        const now = latest ? ` (it is at version ${latest.version} now; you started from version ${base})` : "";
        const reload = h("button", { type: "button", id: "conflict-reload" }, "Discard my edit and open the latest");
        reload.addEventListener("click", () => navigate(`/memories/${memory.id}/edit`, { replace: true }));
        f.errors.appendChild(
          message(
            "error",
            h(
              "span",
              {},
              `Not saved: this memory was changed elsewhere since you opened it${now}. Nothing was overwritten. Your text is still below: copy it, then `,
              reload,
              ".",
            ),
            "form-error",
          ),
        );
      } else {
        f.errors.appendChild(message("error", `Not saved: ${errorText(error)}`, "form-error"));
      }
    } finally {
      f.save.disabled = false;
    }
  });
  main.append(
    h("h1", {}, "Edit"),
    h("p", { class: "hint" }, `Editing version ${memory.version}. `, h("a", { href: `/memories/${memory.id}` }, "Cancel")),
    f.form,
  );
  f.content.focus();
  ready(main);
}
