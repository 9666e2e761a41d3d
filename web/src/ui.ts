// Pieces every page uses: the confirmation dialog, status messages,
// infinite scroll, and read-your-writes navigation.
import { ApiError } from "./api";
import { clear, h } from "./dom";

/**
 * Asks before an action that changes or removes something. Resolves true
 * only when the person confirms; Escape, Cancel or a click outside cancel.
 */
export function confirmAction(options: { title: string; text: string[]; confirm: string; danger?: boolean }): Promise<boolean> {
  document.getElementById("confirm")?.remove();
  const ok = h("button", { id: "confirm-ok", type: "submit", value: "ok", class: options.danger ? "danger" : "primary" }, options.confirm);
  const cancel = h("button", { id: "confirm-cancel", type: "submit", value: "cancel", formnovalidate: true }, "Cancel");
  const dialog = h(
    "dialog",
    { id: "confirm", "aria-labelledby": "confirm-title", "aria-describedby": "confirm-text" },
    h(
      "form",
      { method: "dialog" },
      h("h2", { id: "confirm-title" }, options.title),
      h("div", { id: "confirm-text" }, options.text.map((line) => h("p", {}, line))),
      h("div", { class: "actions" }, cancel, ok),
    ),
  );
  document.body.appendChild(dialog);
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "ok");
      dialog.remove();
    });
    dialog.showModal();
    // The safe choice has the focus: Enter alone never erases.
    cancel.focus();
  });
}

/** A message region; `role=alert` for errors so screen readers say them. */
export function message(kind: "error" | "info", text: string | Node, id?: string): HTMLElement {
  return h("p", { id, class: `message ${kind}`, role: kind === "error" ? "alert" : "status" }, text);
}

export function errorText(error: unknown): string {
  if (error instanceof ApiError) return error.describe();
  return (error as Error)?.message ?? String(error);
}

/**
 * Loads pages of a cursor list into `list` as the person scrolls: the next
 * page is fetched when the sentinel below the list comes into view, and a
 * "Load more" button does the same for keyboards and for when the observer
 * cannot help.
 */
export function infiniteList<T>(options: {
  list: HTMLElement;
  load: (cursor: string | null) => Promise<{ items: T[]; next_cursor: string | null }>;
  item: (value: T) => HTMLElement;
  empty: string;
  signal: AbortSignal;
  onFirstPage?: () => void;
}): HTMLElement {
  const status = h("p", { class: "list-status", role: "status" });
  const more = h("button", { type: "button", class: "load-more", hidden: true }, "Load more");
  const sentinel = h("div", { class: "sentinel", "aria-hidden": "true" });
  const footer = h("div", { class: "list-footer" }, status, more, sentinel);
  let cursor: string | null = null;
  let loading = false;
  let done = false;
  let first = true;
  let count = 0;

  const observer = new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting)) void next();
  }, { rootMargin: "400px" });
  options.signal.addEventListener("abort", () => observer.disconnect());

  async function next(): Promise<void> {
    if (loading || done || options.signal.aborted) return;
    loading = true;
    more.disabled = true;
    status.textContent = "Loading…";
    try {
      const page = await options.load(cursor);
      if (options.signal.aborted) return;
      for (const value of page.items) options.list.appendChild(options.item(value));
      count += page.items.length;
      cursor = page.next_cursor;
      done = !cursor;
      status.textContent = done ? (count === 0 ? options.empty : `${count} shown, that is all.`) : `${count} shown`;
      more.hidden = done;
    } catch (error) {
      status.textContent = "";
      clear(status);
      status.appendChild(message("error", `Could not load: ${errorText(error)}`));
      more.hidden = false;
    } finally {
      loading = false;
      more.disabled = false;
      if (first) {
        first = false;
        options.onFirstPage?.();
      }
    }
    // Keep filling while the sentinel is still visible (a tall screen).
    if (!done && !options.signal.aborted) {
      const rect = sentinel.getBoundingClientRect();
      if (rect.top < window.innerHeight + 400) void next();
    }
  }

  more.addEventListener("click", () => void next());
  queueMicrotask(() => {
    observer.observe(sentinel);
    void next();
  });
  return footer;
}

/** Splits "a, b ,c" into tags, dropping empties. */
export function parseTags(text: string): string[] {
  return text
    .split(",")
    .map((t) => t.trim())
    .filter((t) => t.length > 0);
}
