// Routing in the browser with the History API: every page of the app is a
// real URL (bookmark it, open it in a new tab), and the proxy answers any
// path that is not /v1/* or /assets/* with the app's one page.

export interface Route {
  params: Record<string, string>;
  query: URLSearchParams;
  main: HTMLElement;
  /** Aborted when the person leaves the page: stop its requests and timers. */
  signal: AbortSignal;
}

type Render = (route: Route) => void | Promise<void>;

interface Entry {
  pattern: RegExp;
  names: string[];
  render: Render;
  public: boolean;
}

const routes: Entry[] = [];
let current: AbortController | null = null;
let guard: (path: string, isPublic: boolean) => string | null = () => null;

export function route(path: string, render: Render, options: { public?: boolean } = {}): void {
  const names: string[] = [];
  const pattern = new RegExp(
    "^" +
      path.replace(/:([a-z]+)/g, (_, name: string) => {
        names.push(name);
        return "([^/]+)";
      }) +
      "/?$",
  );
  routes.push({ pattern, names, render, public: options.public ?? false });
}

/** Runs before every page: answers a path to go to instead, or null. */
export function setGuard(check: (path: string, isPublic: boolean) => string | null): void {
  guard = check;
}

export function navigate(url: string, options: { replace?: boolean } = {}): void {
  if (options.replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  void render();
}

/** Marks the page as loaded: tests and assistive tech wait on it. */
export function ready(main: HTMLElement): void {
  main.setAttribute("data-ready", "true");
  main.removeAttribute("aria-busy");
}

export async function render(): Promise<void> {
  const path = location.pathname;
  const main = document.getElementById("main") as HTMLElement;
  current?.abort();
  const controller = new AbortController();
  current = controller;
  const entry = routes.find((r) => r.pattern.test(path));
  const redirect = guard(path, entry?.public ?? false);
  if (redirect !== null && redirect !== path + location.search) {
    navigate(redirect, { replace: true });
    return;
  }
  main.removeAttribute("data-ready");
  main.setAttribute("aria-busy", "true");
  while (main.firstChild) main.removeChild(main.firstChild);
  window.dispatchEvent(new CustomEvent("sb:navigate", { detail: path }));
  if (!entry) {
    notFound(main, "There is no page at this address.");
    ready(main);
    return;
  }
  const match = entry.pattern.exec(path)!;
  const params: Record<string, string> = {};
  entry.names.forEach((name, i) => (params[name] = decodeURIComponent(match[i + 1]!)));
  try {
    await entry.render({ params, query: new URLSearchParams(location.search), main, signal: controller.signal });
  } catch (error) {
    if ((error as Error).name === "AbortError" || controller.signal.aborted) return;
    throw error;
  }
}

export function notFound(main: HTMLElement, text: string): void {
  const h1 = document.createElement("h1");
  h1.textContent = "Not found";
  const p = document.createElement("p");
  p.id = "not-found";
  p.textContent = text;
  main.append(h1, p);
}

export function start(): void {
  window.addEventListener("popstate", () => void render());
  // Same-origin links navigate in place; a modified click (new tab) or a
  // link elsewhere is the browser's.
  document.addEventListener("click", (event) => {
    if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) {
      return;
    }
    const link = (event.target as Element).closest("a");
    if (!link || link.target || link.hasAttribute("download")) return;
    const url = new URL(link.href, location.href);
    if (url.origin !== location.origin || url.pathname.startsWith("/v1/")) return;
    event.preventDefault();
    if (url.pathname + url.search !== location.pathname + location.search) navigate(url.pathname + url.search);
  });
  void render();
}
