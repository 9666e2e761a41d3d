// The app's shell: the header, the theme, and the pages by URL.
import { setUnauthorizedHandler } from "./api";
import { h } from "./dom";
import { navigate, route, setGuard, start } from "./router";
import { clearToken, token } from "./session";
import { renderSignIn } from "./pages/signin";
import { renderSearch } from "./pages/search";
import { renderMemoryList, renderSessionList, renderTimeline } from "./pages/lists";
import { renderMemory } from "./pages/memory";
import { renderCapture, renderEdit } from "./pages/edit";
import { renderHistory } from "./pages/history";

// ---- theme: the system's, until the person picks one ----------------------

type Theme = "light" | "dark";
const THEME_KEY = "sb.theme";

function systemTheme(): Theme {
  return matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

function currentTheme(): Theme {
  const saved = localStorage.getItem(THEME_KEY);
  return saved === "light" || saved === "dark" ? saved : systemTheme();
}

function applyTheme(theme: Theme, button?: HTMLButtonElement): void {
  document.documentElement.dataset.theme = theme;
  if (button) {
    const other = theme === "dark" ? "light" : "dark";
    button.setAttribute("aria-label", `Switch to the ${other} theme`);
    button.textContent = theme === "dark" ? "☀ Light" : "☾ Dark";
  }
}

// ---- header -------------------------------------------------------------

const NAV: [string, string, string][] = [
  ["nav-search", "/", "Search"],
  ["nav-memories", "/memories", "Memories"],
  ["nav-sessions", "/sessions", "Sessions"],
  ["nav-capture", "/new", "Capture"],
];

function header(): HTMLElement {
  const theme = h("button", { id: "theme-toggle", type: "button", class: "ghost" });
  applyTheme(currentTheme(), theme);
  theme.addEventListener("click", () => {
    const next: Theme = currentTheme() === "dark" ? "light" : "dark";
    localStorage.setItem(THEME_KEY, next);
    applyTheme(next, theme);
  });
  const signout = h("button", { id: "signout", type: "button", class: "ghost" }, "Sign out");
  signout.addEventListener("click", () => {
    clearToken();
    navigate("/signin");
  });
  const links = NAV.map(([id, href, label]) => h("li", {}, h("a", { id, href }, label)));
  const nav = h("nav", { "aria-label": "Main" }, h("ul", {}, links));
  const bar = h(
    "header",
    { class: "site-header" },
    h("a", { class: "brand", href: "/" }, "Second Brain"),
    nav,
    h("div", { class: "header-actions" }, theme, signout),
  );
  window.addEventListener("sb:navigate", (event) => {
    const path = (event as CustomEvent<string>).detail;
    const signedIn = token() !== null;
    nav.hidden = !signedIn;
    signout.hidden = !signedIn;
    for (const [id, href] of NAV) {
      const link = document.getElementById(id);
      const active = href === "/" ? path === "/" : path === href || path.startsWith(href + "/");
      if (active) link?.setAttribute("aria-current", "page");
      else link?.removeAttribute("aria-current");
    }
  });
  return bar;
}

// ---- start ----------------------------------------------------------------

function boot(): void {
  applyTheme(currentTheme());
  const app = document.getElementById("app")!;
  app.prepend(header());

  route("/signin", renderSignIn, { public: true });
  route("/", renderSearch);
  route("/memories", renderMemoryList);
  route("/new", renderCapture);
  route("/memories/:id", renderMemory);
  route("/memories/:id/edit", renderEdit);
  route("/memories/:id/history", renderHistory);
  route("/sessions", renderSessionList);
  route("/sessions/:id", renderTimeline);

  setGuard((path, isPublic) => {
    if (!isPublic && token() === null) {
      const next = path + location.search;
      return next === "/" ? "/signin" : `/signin?next=${encodeURIComponent(next)}`;
    }
    return null;
  });
  setUnauthorizedHandler(() => {
    const next = location.pathname + location.search;
    navigate(`/signin?expired=1&next=${encodeURIComponent(next)}`, { replace: true });
  });
  // "/" jumps to search from anywhere but a text field, as on most sites.
  document.addEventListener("keydown", (event) => {
    const target = event.target as HTMLElement;
    const typing = target.closest("input, textarea, select, [contenteditable]") !== null;
    if (event.key !== "/" || typing || event.ctrlKey || event.metaKey || event.altKey || token() === null) return;
    if (document.querySelector("dialog[open]")) return;
    event.preventDefault();
    const box = document.getElementById("search-q");
    if (box) box.focus();
    else navigate("/");
  });
  start();
}

boot();
