// Search as you type, across meaning and words. The URL holds the query and
// filters, so a search can be bookmarked and Back returns to it.
import { listSessions, search, type Hit, type Mode, type SearchFilters, type Session } from "../api";
import { h, time } from "../dom";
import { renderSnippet } from "../markdown";
import { ready, type Route } from "../router";
import { errorText, message } from "../ui";

const MODES: [Mode, string][] = [
  ["hybrid", "Meaning + words"],
  ["keyword", "Words only"],
  ["semantic", "Meaning only"],
];

// Typing pauses this long before a search goes out: short enough to feel
// instant, long enough not to send one request per keystroke of a fast typist.
const DEBOUNCE_MS = 120;

export function renderSearch({ main, query, signal }: Route): void {
  document.title = "Search · Second Brain";
  const q = h("input", {
    id: "search-q",
    type: "search",
    name: "q",
    autocomplete: "off",
    placeholder: "What are you looking for?",
    "aria-describedby": "search-keys",
    "aria-controls": "search-results",
    value: query.get("q") ?? "",
  });
  const mode = h("select", { id: "search-mode", name: "mode" }, MODES.map(([value, label]) => h("option", { value }, label)));
  mode.value = (MODES.find(([m]) => m === query.get("mode"))?.[0] ?? "hybrid") as string;
  const tag = h("input", { id: "search-tag", name: "tag", type: "text", autocomplete: "off", value: query.get("tag") ?? "" });
  const session = h("select", { id: "search-session", name: "session" }, h("option", { value: "" }, "Any session"));
  const from = h("input", { id: "search-from", name: "from", type: "date", value: query.get("from") ?? "" });
  const to = h("input", { id: "search-to", name: "to", type: "date", value: query.get("to") ?? "" });
  const status = h("p", { id: "search-status", class: "search-status", role: "status", "aria-live": "polite" });
  const results = h("ul", { id: "search-results", class: "hits", "aria-label": "Results" });

  const field = (id: string, label: string, control: HTMLElement) =>
    h("div", { class: "field" }, h("label", { for: id }, label), control);
  const form = h(
    "form",
    { id: "search-form", role: "search", class: "search-form" },
    h("label", { for: "search-q", class: "visually-hidden" }, "Search your memories"),
    q,
    h(
      "div",
      { class: "filters" },
      field("search-mode", "Mode", mode),
      field("search-tag", "Tag", tag),
      field("search-session", "Session", session),
      field("search-from", "Created from", from),
      field("search-to", "Created until", to),
    ),
    h("p", { id: "search-keys", class: "hint" }, "Results appear as you type. ↓ and ↑ move through them, Enter opens one."),
  );
  main.append(h("h1", { class: "visually-hidden" }, "Search"), form, status, results);

  let sequence = 0;
  let inflight: AbortController | null = null;
  let timer: number | undefined;
  signal.addEventListener("abort", () => {
    inflight?.abort();
    clearTimeout(timer);
  });

  function filters(): SearchFilters {
    return {
      mode: mode.value as Mode,
      tag: tag.value.trim() || undefined,
      session: session.value || undefined,
      from: from.value || undefined,
      to: to.value || undefined,
    };
  }

  function syncUrl(): void {
    const params = new URLSearchParams();
    if (q.value.trim()) params.set("q", q.value.trim());
    const f = filters();
    if (f.mode !== "hybrid") params.set("mode", f.mode);
    if (f.tag) params.set("tag", f.tag);
    if (f.session) params.set("session", f.session);
    if (f.from) params.set("from", f.from);
    if (f.to) params.set("to", f.to);
    const url = "/" + (params.toString() ? `?${params}` : "");
    // replaceState: each keystroke is not a page of its own in Back.
    if (url !== location.pathname + location.search) history.replaceState(null, "", url);
  }

  async function run(startedAt: number): Promise<void> {
    const text = q.value.trim();
    inflight?.abort();
    const mine = ++sequence;
    if (!text) {
      syncUrl();
      results.replaceChildren();
      status.textContent = "";
      ready(main);
      return;
    }
    const controller = new AbortController();
    inflight = controller;
    status.textContent = "Searching…";
    try {
      const hits = await search(text, filters(), controller.signal);
      if (mine !== sequence || signal.aborted) return;
      show(hits, text);
      status.textContent = hits.length === 0 ? "No memories match." : `${hits.length} result${hits.length === 1 ? "" : "s"}`;
      ready(main);
      // Keystroke → results painted: the frame after this one has painted
      // them (docs/benchmarks.md measures this from the browser).
      requestAnimationFrame(() =>
        setTimeout(() => {
          performance.measure("sb:search-painted", { start: startedAt, end: performance.now(), detail: { q: text, hits: hits.length } });
          // The URL follows once the results are on screen: a URL change
          // costs the browser work that should not delay the request.
          if (mine === sequence) syncUrl();
        }, 0),
      );
    } catch (error) {
      if ((error as Error).name === "AbortError" || mine !== sequence) return;
      syncUrl();
      results.replaceChildren();
      status.replaceChildren(message("error", `Search failed: ${errorText(error)}`));
      ready(main);
    }
  }

  function show(hits: Hit[], text: string): void {
    results.replaceChildren(
      ...hits.map((hit) =>
        h(
          "li",
          { class: "hit" },
          h(
            "a",
            { class: "hit-link", href: `/memories/${hit.id}` },
            h("span", { class: "hit-title" }, hit.title || firstWords(hit.snippet) || "Untitled"),
            h("span", { class: "hit-snippet" }, renderSnippet(hit.snippet)),
            h("span", { class: "hit-meta" }, time(hit.occurred_at ?? hit.created_at)),
          ),
        ),
      ),
    );
    results.setAttribute("aria-label", `Results for ${text}`);
  }

  function schedule(event: Event): void {
    main.removeAttribute("data-ready");
    const startedAt = event.timeStamp;
    clearTimeout(timer);
    timer = window.setTimeout(() => void run(startedAt), DEBOUNCE_MS);
  }

  q.addEventListener("input", schedule);
  for (const control of [mode, tag, session, from, to]) control.addEventListener("change", (e) => void run(e.timeStamp));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    clearTimeout(timer);
    void run(event.timeStamp);
  });

  // Keyboard: ↓ from the box to the first hit, ↓/↑ between hits, Escape back.
  main.addEventListener("keydown", (event) => {
    const links = Array.from(results.querySelectorAll<HTMLAnchorElement>("a.hit-link"));
    const index = links.indexOf(document.activeElement as HTMLAnchorElement);
    if (event.key === "ArrowDown" && (document.activeElement === q || index >= 0)) {
      event.preventDefault();
      links[Math.min(index + 1, links.length - 1)]?.focus();
    } else if (event.key === "ArrowUp" && index >= 0) {
      event.preventDefault();
      if (index === 0) q.focus();
      else links[index - 1]?.focus();
    } else if (event.key === "Escape" && index >= 0) {
      q.focus();
    }
  });

  // The session filter lists the caller's sessions, newest first.
  void listSessions(null)
    .then((page) => {
      for (const s of page.items as Session[]) session.appendChild(h("option", { value: s.id }, s.title));
      const wanted = query.get("session");
      if (wanted) session.value = wanted;
    })
    .catch(() => {
      /* the filter stays "Any session"; searching still works */
    });

  q.focus();
  if (q.value.trim()) void run(performance.now());
  else ready(main);
}

function firstWords(snippet: string): string {
  const text = snippet.replace(/<\/?mark>/g, "").replace(/&[a-z#0-9]+;/gi, " ");
  return text.length > 80 ? text.slice(0, 80) + "…" : text;
}

