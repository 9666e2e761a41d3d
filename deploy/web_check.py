#!/usr/bin/env python3
"""End-to-end check of Second Brain's web app in a real browser: headless
Chromium driven over WebDriver (Selenium, Debian's chromium-driver), with
axe-core's accessibility audit on every page in both themes.

    SB_WEB_CHECK_TOKEN_A=… SB_WEB_CHECK_TOKEN_B=… \\
    SB_WEB_CHECK_AXE=web/node_modules/axe-core/axe.min.js \\
    SB_WEB_CHECK_OUTPUT=/tmp/web-check \\
        deploy/web_check.py http://127.0.0.1:8090

The base URL is Caddy serving web/dist and proxying /v1/* to the services
(compose/Caddyfile), as a deployment serves it; the tokens are two
different users' bearer tokens, from the environment (on a command line
`ps` would show them). It follows one memory through its life (docs/web.md,
"Tests"), finding its way by the ids the app keeps for it (#search-q,
#memory-body, #asof-slider, …) and waiting for `main[data-ready="true"]`,
which the app sets once a page has loaded its data:

 1. headers: CSP without 'unsafe-inline', nosniff, `/v1` is no-store,
    index.html has no inline script or style;
 2. sign in as A by pasting the token (a wrong one is refused first);
 3. capture a Markdown memory holding hostile HTML into a new session;
 4. its page renders the Markdown and none of the hostile HTML;
 5. search as you type finds it, marked; ↓ and Enter open it;
 6-8. the memory list, the session list and the session's timeline show it;
 9. edit it: version 2 with the new text;
10. a stale edit (the API changed it meanwhile) is refused, nothing lost;
11. history: events with actor, time and a diff; the as-of slider;
12. the same pages at phone size (390×844);
13. user B sees nothing of it (page, search, list, history);
14-17. A tags, deletes, restores and erases it (confirm dialog each time):
    search forgets it, its history keeps who/when and no content;
18. an unknown memory's page says not found.

axe-core runs on each page in the light and the dark theme (#theme-toggle);
any violation of impact serious or critical fails the page, and so does
a CSP violation or an uncaught error in the browser's console. Every step
saves a screenshot NN-step.png (NN-step-FAILED.png when it failed) into
SB_WEB_CHECK_OUTPUT; a failed step prints the browser's console. Prints one
line per step and a summary; exits 1 if any step failed.

Needs the packages in deploy/web-check-requirements.txt (hash-pinned),
/usr/bin/chromium and /usr/bin/chromedriver (Debian's chromium and
chromium-driver). Selenium Manager is never used, so nothing is downloaded.
`deploy/api-check --web-python <venv>/bin/python` runs this against a fresh
stack; `stack test` does that.
"""

from __future__ import annotations

import argparse
import html.parser
import json
import os
import re
import secrets
import string
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Callable

from selenium import webdriver
from selenium.common.exceptions import (
    ElementNotInteractableException,
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
    WebDriverException,
)
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.ui import WebDriverWait

TIMEOUT = float(os.environ.get("SB_WEB_CHECK_TIMEOUT", "20"))
DESKTOP = (1280, 900)
PHONE = (390, 844)
BLOCKING_IMPACTS = ("serious", "critical")


class StepFailed(Exception):
    """A check a step cannot go on without."""


def word(prefix: str) -> str:
    """A word no other note holds: letters only, so every tokenizer keeps it whole."""
    return prefix + "".join(secrets.choice(string.ascii_lowercase) for _ in range(10)) + "q"


class Words:
    """The unique words of the memory under test; none may outlive its erasure."""

    def __init__(self) -> None:
        self.key = word("wc")          # in title and every version: what we search for
        self.first = word("first")     # only in version 1
        self.second = word("second")   # only in version 2 (the browser's edit)
        self.api = word("api")         # only in version 3 (the API's concurrent edit)
        self.stale = word("stale")     # typed in the browser, refused as stale
        self.tag = word("tag")
        self.later = word("later")     # a tag added from the memory page

    def all(self) -> list[str]:
        return [self.key, self.first, self.second, self.api, self.stale, self.tag, self.later]

    def title(self) -> str:
        return f"Trip notes {self.key}"

    def content(self, marker: str) -> str:
        return "\n".join([
            f"## Packing list {self.key}",
            "",
            f"The draft says {marker}.",
            "",
            "- tent",
            "- **bold stove**",
            "- [map](https://example.org/map)",
            "",
            "| item | weight |",
            "|:-----|-------:|",
            "| tent | 2 kg |",
            "",
            "<script>window.__pwned=1</script>",
            '<img src=x onerror="window.__pwned=1">',
            "[click](javascript:window.__pwned=1)",
        ])


class ScriptTags(html.parser.HTMLParser):
    """What a strict CSP would block in a page: inline scripts, styles and handlers."""

    def __init__(self) -> None:
        super().__init__()
        self.inline: list[str] = []
        self._open: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "script" and "src" not in names:
            self.inline.append("<script> without src")
        if tag == "style":
            self.inline.append("<style>")
        if "style" in names:
            self.inline.append(f"<{tag} style=…>")
        if any(name.startswith("on") for name in names):
            self.inline.append(f"<{tag} on…=> handler")
        self._open = tag

    def handle_endtag(self, tag: str) -> None:
        self._open = None

    def handle_data(self, data: str) -> None:
        if self._open == "script" and data.strip():
            self.inline.append("<script> with a body")


class Api:
    """The HTTP API through the same origin as the app (Caddy)."""

    def __init__(self, base: str) -> None:
        self.base = base

    def call(self, method: str, path: str, token: str | None = None, body: dict | None = None,
             headers: dict | None = None) -> tuple[int, dict[str, str], bytes]:
        data = json.dumps(body).encode() if body is not None else None
        sent = {"Accept": "application/json", **(headers or {})}
        if token:
            sent["Authorization"] = f"Bearer {token}"
        if data is not None:
            sent["Content-Type"] = "application/json"
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=sent)
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
        except urllib.error.HTTPError as error:
            return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()

    def json(self, method: str, path: str, token: str, body: dict | None = None,
             headers: dict | None = None) -> tuple[int, dict]:
        status, _, raw = self.call(method, path, token, body, headers)
        try:
            return status, json.loads(raw or b"{}")
        except ValueError:
            return status, {"raw": raw[:200].decode(errors="replace")}


class Journey:
    """The browser, the steps, and what each found."""

    def __init__(self, base: str, token_a: str, token_b: str, axe_source: str, out: Path,
                 chromium: str, chromedriver: str) -> None:
        self.base = base.rstrip("/")
        self.tokens = {"A": token_a, "B": token_b}
        self.axe_source = axe_source
        self.out = out
        self.api = Api(self.base)
        self.words = Words()
        self.memory_id: str | None = None
        self.version = 0               # the memory's version, as the API last confirmed it
        self.session_id: str | None = None
        self.step_no = 0
        self.step_label = ""
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.results: list[tuple[str, bool]] = []
        self.audits = 0
        self.profile = tempfile.TemporaryDirectory(prefix="sb-web-check-chromium-")
        self.driver = self._start(chromium, chromedriver)
        self.viewport(*DESKTOP)

    # ---- browser -----------------------------------------------------------

    def _start(self, chromium: str, chromedriver: str) -> webdriver.Chrome:
        options = Options()
        options.binary_location = chromium
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", f"--user-data-dir={self.profile.name}",
                     f"--window-size={DESKTOP[0]},{DESKTOP[1]}"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        # An explicit driver path: Selenium Manager (which downloads) never runs.
        service = Service(executable_path=chromedriver, log_output=str(self.out / "chromedriver.log"))
        driver = webdriver.Chrome(service=service, options=options)
        driver.set_page_load_timeout(60)
        driver.set_script_timeout(120)
        return driver

    def viewport(self, width: int, height: int) -> None:
        """The page's viewport at `width`×`height` CSS pixels (the window is a little larger)."""
        self.driver.set_window_size(width, height)
        extra = self.js("return [outerWidth - innerWidth, outerHeight - innerHeight]")
        if any(extra):
            self.driver.set_window_size(width + extra[0], height + extra[1])

    def phone(self, on: bool) -> None:
        """A phone's viewport (DevTools' device emulation: a window cannot be
        made narrower than 500 px), or back to the window's."""
        if on:
            self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
                "width": PHONE[0], "height": PHONE[1], "deviceScaleFactor": 2, "mobile": True})
        else:
            self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            self.profile.cleanup()

    def js(self, script: str, *args: object):
        return self.driver.execute_script(script, *args)

    def until(self, condition: Callable[[], object], what: str, timeout: float = TIMEOUT):
        """Polls `condition` until it answers something truthy, or fails the step."""
        wait = WebDriverWait(self.driver, timeout, poll_frequency=0.05,
                             ignored_exceptions=(NoSuchElementException, StaleElementReferenceException))
        try:
            return wait.until(lambda _driver: condition())
        except TimeoutException:
            raise StepFailed(f"timed out after {timeout:.0f} s waiting for {what} "
                             f"(at {self.js('return location.pathname + location.search')})") from None

    def poll(self, condition: Callable[[], object], what: str, timeout: float = TIMEOUT):
        """Polls the API (outside the browser) until `condition` holds, or fails the step."""
        deadline = time.monotonic() + timeout
        while True:
            answer = condition()
            if answer:
                return answer
            if time.monotonic() > deadline:
                raise StepFailed(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(0.1)

    def path(self) -> str:
        return self.js("return location.pathname")

    def ready(self, path: str | None = None, timeout: float = TIMEOUT) -> None:
        """The page at `path` (a regex on location.pathname) has loaded its data."""
        def loaded() -> bool:
            if path is not None and not re.fullmatch(path, self.path()):
                return False
            return bool(self.driver.find_elements(By.CSS_SELECTOR, 'main[data-ready="true"]'))
        self.until(loaded, f'main[data-ready="true"]' + (f" at {path}" if path else ""), timeout)

    def go(self, path: str, expect: str | None = None, timeout: float = TIMEOUT) -> None:
        self.driver.get(self.base + path)
        self.ready(expect if expect is not None else re.escape(path.split("?")[0]), timeout)

    def find(self, css: str):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str) -> list:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def has(self, css: str) -> bool:
        return bool(self.driver.find_elements(By.CSS_SELECTOR, css))

    def wait_for(self, css: str, timeout: float = TIMEOUT):
        return self.until(lambda: self.find(css), css, timeout)

    def text(self, css: str) -> str:
        return self.find(css).text

    def page_text(self) -> str:
        return self.js("return document.body.innerText")

    def click(self, css: str) -> None:
        self.wait_for(css).click()

    def shot(self, name: str) -> None:
        try:
            self.driver.save_screenshot(str(self.out / f"{name}.png"))
        except WebDriverException as error:
            self.note(f"screenshot {name} failed: {error.msg}")

    def console(self) -> list[dict]:
        try:
            return self.driver.get_log("browser")
        except WebDriverException:
            return []

    # ---- checks ------------------------------------------------------------

    def check(self, ok: bool, what: str, detail: object = "") -> bool:
        """A check the step goes on after: recorded, and the step fails at its end."""
        if not ok:
            self.problems.append(what + (f": {detail}" if detail != "" else ""))
        return ok

    def require(self, ok: bool, what: str, detail: object = "") -> None:
        if not ok:
            raise StepFailed(what + (f": {detail}" if detail != "" else ""))

    def note(self, text: str) -> None:
        self.notes.append(text)

    def not_pwned(self) -> None:
        """No note's HTML ran: nothing set window.__pwned, no inline script in the DOM."""
        state = self.js("""
            return {
              pwned: typeof window.__pwned !== 'undefined',
              inline: Array.from(document.querySelectorAll('script:not([src])')).length,
              handlers: Array.from(document.querySelectorAll('main *, dialog *'))
                .filter(e => Array.from(e.attributes).some(a => a.name.toLowerCase().startsWith('on'))).length,
              jsLinks: Array.from(document.querySelectorAll('[href], [src], [action], [formaction]'))
                .filter(e => ['href', 'src', 'action', 'formaction'].some(n => /^\\s*javascript:/i.test(e.getAttribute(n) || ''))).length,
            };""")
        self.check(not state["pwned"], "window.__pwned is undefined (no note HTML ran)")
        self.check(state["inline"] == 0, "no inline <script> element in the page", state["inline"])
        self.check(state["handlers"] == 0, "no on…= handler attribute inside <main>", state["handlers"])
        self.check(state["jsLinks"] == 0, "no javascript: URL in the page", state["jsLinks"])

    # ---- theme and axe -----------------------------------------------------

    def set_theme(self, theme: str) -> None:
        """Clicks #theme-toggle until the saved theme is `theme` (a toggle has two or three states)."""
        for _ in range(4):
            if self.js("return localStorage.getItem('sb.theme')") == theme:
                return
            toggle = self.wait_for("#theme-toggle")
            try:
                toggle.click()
            except ElementNotInteractableException:
                # Out of reach at this size (a menu, perhaps): the axe run still
                # wants the theme; say so rather than fail the page for it.
                self.note(f"{self.step_label}: #theme-toggle is not clickable at "
                          f"{self.js('return innerWidth')} px; clicked it from script")
                self.js("arguments[0].click()", toggle)
        self.require(self.js("return localStorage.getItem('sb.theme')") == theme,
                     f"#theme-toggle reaches the {theme} theme (localStorage sb.theme)",
                     self.js("return localStorage.getItem('sb.theme')"))

    def settle(self) -> None:
        """Transitions over (axe measures colours) and a frame painted."""
        self.until(lambda: self.js("""
            return document.getAnimations().every(a => a.playState !== 'running'
              || (a.effect && a.effect.getTiming().iterations === Infinity));"""), "CSS transitions to end")
        self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "requestAnimationFrame(() => requestAnimationFrame(() => done(true)));")

    def axe(self) -> list[dict]:
        if not self.js("return typeof window.axe !== 'undefined'"):
            # WebDriver's script runs outside the page's CSP: injecting axe
            # needs no 'unsafe-inline' from the app.
            self.js(self.axe_source)
        result = self.driver.execute_async_script("""
            const done = arguments[arguments.length - 1];
            axe.run(document, {resultTypes: ['violations']})
              .then(r => done({violations: r.violations.map(v => ({
                  id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
                  nodes: v.nodes.map(n => ({target: n.target, summary: n.failureSummary}))}))}))
              .catch(e => done({error: String(e && e.stack || e)}));""")
        self.require("error" not in result, "axe.run finished", result.get("error"))
        return result["violations"]

    def audit(self, page: str, open_: Callable[[], None] | None = None,
              close: Callable[[], None] | None = None) -> None:
        """axe on this page in the light and the dark theme. `open_`/`close`
        put up and take down what is audited (a modal dialog makes the
        theme toggle inert, so the theme changes while it is closed)."""
        for theme in ("light", "dark"):
            self.set_theme(theme)
            if open_:
                open_()
            self.settle()
            violations = self.axe()
            self.audits += 1
            blocking = [v for v in violations if v.get("impact") in BLOCKING_IMPACTS]
            self.check(not blocking, f"axe: {page} ({theme}) has no serious or critical violation",
                       "".join(describe(v) for v in blocking))
            minor = sorted({f"{v['id']} ({v.get('impact')})" for v in violations if v not in blocking})
            if minor:
                self.note(f"axe: {page} ({theme}) minor: {', '.join(minor)}")
            if theme == "dark":
                self.shot(f"{self.step_label}-{slug(page)}-dark")
            if close:
                close()
        self.set_theme("light")

    # ---- steps -------------------------------------------------------------

    def step(self, name: str, action: Callable[[], None], needs: tuple[str, ...] = (),
             browser: bool = True) -> bool:
        self.step_no += 1
        self.step_label = f"{self.step_no:02d}-{name}"
        missing = [what for what in needs if getattr(self, what) is None]
        if missing:
            print(f"  skip  {self.step_label} (needs {', '.join(missing)}, from a failed step)", flush=True)
            self.results.append((self.step_label, False))
            return False
        self.problems = []
        started = time.monotonic()
        try:
            action()
        except StepFailed as error:
            self.problems.append(str(error))
        except WebDriverException as error:
            self.problems.append(f"WebDriver: {error.msg or error!r}")
        except Exception as error:  # noqa: BLE001  (any failure is this step's)
            self.problems.append("".join(traceback.format_exception_only(error)).strip())
            traceback.print_exc()
        logs = self.console() if browser else []
        # A CSP violation (markup the policy blocked) or an uncaught error,
        # each kind once, however often it was logged.
        console = counted(logs)
        for (_, text), count in console.items():
            if "Content Security Policy" in text or "Uncaught" in text:
                self.problems.append(f"console ({count}×): {shorten(text)}")
        ok = not self.problems
        if browser:
            self.shot(self.step_label + ("" if ok else "-FAILED"))
        took = time.monotonic() - started
        print(f"  {'ok  ' if ok else 'FAIL'}  {self.step_label} ({took:.1f} s)", flush=True)
        for problem in self.problems:
            print(f"          - {problem}", flush=True)
        if not ok and browser:
            print(f"          browser console ({len(logs)} entries since the last step):", flush=True)
            for (level, text), count in list(console.items())[-40:]:
                print(f"            [{level}]{f' ({count}×)' if count > 1 else ''} {shorten(text)}", flush=True)
        self.results.append((self.step_label, ok))
        return ok

    def run(self) -> None:
        self.step("headers", self.headers, browser=False)
        self.step("sign-in", self.sign_in_first)
        self.step("capture", self.capture, needs=())
        self.step("memory-page", self.memory_page, needs=("memory_id",))
        self.step("search", self.search, needs=("memory_id",))
        self.step("memory-list", self.memory_list, needs=("memory_id",))
        self.step("session-list", self.session_list, needs=("session_id",))
        self.step("session-timeline", self.session_timeline, needs=("session_id", "memory_id"))
        self.step("edit", self.edit, needs=("memory_id",))
        self.step("stale-edit", self.stale_edit, needs=("memory_id",))
        self.step("history", self.history, needs=("memory_id",))
        self.step("phone", self.phone_pass, needs=("memory_id",))
        self.step("other-user", self.other_user, needs=("memory_id",))
        self.step("tag", self.tag, needs=("memory_id",))
        self.step("delete-restore", self.delete_restore, needs=("memory_id",))
        self.step("erase", self.erase, needs=("memory_id",))
        self.step("erased-history", self.erased_history, needs=("memory_id",))
        self.step("not-found", self.not_found)

    # i. headers, through urllib ---------------------------------------------

    def headers(self) -> None:
        status, headers, body = self.api.call("GET", "/")
        self.require(status == 200, "GET / answers 200", status)
        csp = headers.get("content-security-policy", "")
        self.check(bool(csp), "GET / sends a Content-Security-Policy")
        self.check("'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp,
                   "the CSP allows no 'unsafe-inline' or 'unsafe-eval'", csp)
        self.check(re.search(r"(^|;)\s*script-src\s+'self'\s*(;|$)", csp) is not None
                   or "default-src 'self'" in csp, "the CSP's scripts are this origin's only", csp)
        self.check(headers.get("x-content-type-options") == "nosniff", "GET / sends nosniff",
                   headers.get("x-content-type-options"))
        parser = ScriptTags()
        parser.feed(body.decode(errors="replace"))
        self.check(not parser.inline, "index.html has no inline script, style or handler", parser.inline)
        self.check(b"<script" in body, "index.html loads a script")

        status, headers, _ = self.api.call("GET", "/v1/memories?limit=1", self.tokens["A"])
        self.check(status == 200, "GET /v1/memories through the proxy answers 200", status)
        self.check("no-store" in headers.get("cache-control", ""), "/v1 answers Cache-Control: no-store",
                   headers.get("cache-control"))
        self.check(headers.get("x-content-type-options") == "nosniff", "/v1 answers nosniff",
                   headers.get("x-content-type-options"))
        self.check(bool(headers.get("content-security-policy")), "/v1 answers with the CSP too")

        # A deep link is the app's page (it routes in the browser).
        status, headers, deep = self.api.call("GET", f"/memories/{uuid.uuid4()}/history")
        self.check(status == 200 and deep == body, "a deep link answers index.html", status)

    # a. sign in ---------------------------------------------------------------

    def sign_in(self, who: str) -> None:
        self.go("/signin")
        box = self.wait_for("#signin-token")
        box.clear()
        box.send_keys(self.tokens[who])
        self.click("#signin-submit")
        self.ready("/")
        self.require(self.js("return sessionStorage.getItem('sb.token')") == self.tokens[who],
                     f"the token of {who} is kept in sessionStorage sb.token")

    def sign_out(self) -> None:
        self.click("#signout")
        self.ready("/signin")
        self.check(self.js("return sessionStorage.getItem('sb.token')") is None,
                   "signing out forgets sessionStorage sb.token")

    def sign_in_first(self) -> None:
        self.driver.get(self.base + "/")
        self.ready("/signin")   # signed out, the app asks for a credential first
        self.check(bool(self.all("label[for='signin-token']"))
                   and "API key or JWT" in self.text("label[for='signin-token']"),
                   'the token box is labelled "API key or JWT"')
        self.audit("sign-in")
        box = self.find("#signin-token")
        box.send_keys("not-a-real-token")
        self.click("#signin-submit")
        error = self.wait_for("#signin-error")
        self.until(lambda: error.text.strip(), "#signin-error to say why")
        self.check(self.js("const e = arguments[0]; return e.getAttribute('role') === 'alert' "
                           "|| !!e.closest('[role=alert]') || !!e.querySelector('[role=alert]')", error),
                   "#signin-error is (in) a role=alert")
        self.check(self.path() == "/signin", "a refused token stays on /signin", self.path())
        self.check(self.js("return sessionStorage.getItem('sb.token')") is None,
                   "a refused token is not kept")
        box = self.find("#signin-token")
        box.clear()
        box.send_keys(self.tokens["A"])
        self.click("#signin-submit")
        self.ready("/")
        self.require(self.js("return sessionStorage.getItem('sb.token')") == self.tokens["A"],
                     "the token is kept in sessionStorage sb.token")
        self.check(self.js("return Object.keys(localStorage).every(k => !localStorage.getItem(k)"
                           ".includes(arguments[0]))", self.tokens["A"]),
                   "the token is not in localStorage")
        for nav in ("#nav-search", "#nav-memories", "#nav-sessions", "#nav-capture", "#theme-toggle", "#signout"):
            self.check(self.has(nav), f"the header has {nav}")

    # b. capture ---------------------------------------------------------------

    def capture(self) -> None:
        status, session = self.api.json("POST", "/v1/sessions", self.tokens["A"], {"title": "Web check trip"})
        self.require(status in (200, 201) and "id" in session, "POST /v1/sessions through the proxy", (status, session))
        self.session_id = session["id"]
        # The page lists sessions from the read side's list, which may come
        # a moment after the session's own document: poll the list itself.
        self.poll(lambda: any(item.get("id") == self.session_id for item in
                              self.api.json("GET", "/v1/sessions?limit=50", self.tokens["A"])[1].get("items", [])),
                  "the new session in GET /v1/sessions")
        self.go(f"/new?session={self.session_id}", expect="/new")
        self.wait_for("#memory-form")
        self.audit("capture")
        w = self.words
        self.find("#memory-title").send_keys(w.title())
        self.find("#memory-content").send_keys(w.content(w.first))
        self.find("#memory-tags").send_keys(w.tag)
        select = Select(self.find("#memory-session"))
        self.until(lambda: any(o.get_attribute("value") == self.session_id for o in select.options),
                   "the new session among #memory-session's options")
        self.check(select.first_selected_option.get_attribute("value") == self.session_id,
                   "/new?session=<id> preselects that session in #memory-session",
                   select.first_selected_option.get_attribute("value"))
        select.select_by_value(self.session_id)
        self.click("#memory-save")
        self.ready(r"/memories/[0-9a-fA-F-]{36}")
        self.memory_id = self.path().rsplit("/", 1)[1]
        status, memory = self.api.json("GET", f"/v1/memories/{self.memory_id}?min_version=1", self.tokens["A"])
        self.require(status == 200, "the captured memory reads back through the API", (status, memory))
        self.version = memory["version"]
        self.check(memory.get("content") == w.content(w.first), "the API holds the content as typed",
                   memory.get("content"))
        self.check(memory.get("title") == w.title(), "the API holds the title", memory.get("title"))
        self.check(memory.get("session_id") == self.session_id, "the memory is in the new session",
                   memory.get("session_id"))
        self.check(w.tag in (memory.get("tags") or []), "the tag was kept", memory.get("tags"))

    # b. the memory page: Markdown rendered, hostile HTML inert ------------------

    def memory_page(self) -> None:
        if not re.fullmatch(rf"/memories/{self.memory_id}", self.path()):
            self.go(f"/memories/{self.memory_id}")
        w = self.words
        self.check(self.text("h1#memory-heading") == w.title(), "h1#memory-heading is the title",
                   self.text("h1#memory-heading"))
        body = "#memory-body"
        self.check(self.has(f"{body} h2") and w.key in self.text(f"{body} h2"),
                   "## renders as an <h2> in #memory-body")
        self.check(self.has(f"{body} strong") and self.text(f"{body} strong") == "bold stove",
                   "**bold** renders as <strong>")
        self.check(len(self.all(f"{body} li")) == 3, "the list renders as three <li>", len(self.all(f"{body} li")))
        self.check(len(self.all(f"{body} table td")) == 2, "the table renders as a <table>", len(self.all(f"{body} td")))
        self.check(self.has(f'{body} a[href="https://example.org/map"]'), "the link renders as <a href>")
        rel = (self.find(f'{body} a[href="https://example.org/map"]').get_attribute("rel") or "").split() \
            if self.has(f'{body} a[href="https://example.org/map"]') else []
        self.check("noopener" in rel, 'a link elsewhere has rel="noopener" (docs/web.md)', rel)
        self.check(not self.has(f"{body} script, {body} img[onerror], {body} iframe, {body} object, {body} embed"),
                   "no <script>, <img onerror>, <iframe>, <object> or <embed> in #memory-body")
        self.check(not self.has(f'{body} a[href^="javascript:" i]'), "no javascript: href in #memory-body")
        text = self.text(body)
        self.check("<script>window.__pwned=1</script>" in text, "raw HTML shows as text (escaped)", text[-200:])
        self.check(re.search(r"\bVersion 1\b", self.text("#memory-version")) is not None,
                   '#memory-version says "Version 1"', self.text("#memory-version"))
        self.check(w.tag in self.text("ul#memory-tags"), "ul#memory-tags lists the tag")
        for css in ("a#memory-edit-link", "a#memory-history-link", "button#memory-delete", "button#memory-erase",
                    "button#memory-move", "form#tag-form", "input#tag-input"):
            self.check(self.has(css), f"the memory page has {css}")
        self.check(not self.has("button#memory-restore"), "a live memory offers no #memory-restore")
        self.not_pwned()
        self.audit("memory page")

    # c. search as you type, keyboard -------------------------------------------

    def hit_link(self) -> str:
        return f'#search-results li.hit a.hit-link[href="/memories/{self.memory_id}"]'

    def search(self) -> None:
        self.go("/")
        box = self.wait_for("input#search-q")
        self.check(box.get_attribute("type") == "search", "#search-q is type=search")
        for css in ("select#search-mode", "input#search-tag", "select#search-session",
                    'input#search-from[type="date"]', 'input#search-to[type="date"]', "ul#search-results"):
            self.check(self.has(css), f"the search page has {css}")
        modes = [o.get_attribute("value") for o in Select(self.find("#search-mode")).options]
        self.check(sorted(modes) == ["hybrid", "keyword", "semantic"], "#search-mode offers hybrid|keyword|semantic",
                   modes)
        box.click()
        for char in self.words.key:
            box.send_keys(char)
        self.wait_for(self.hit_link(), timeout=TIMEOUT * 2)
        self.ready("/")
        hit = f'#search-results li.hit:has(a.hit-link[href="/memories/{self.memory_id}"])'
        marks = [m.text.lower() for m in self.all(f"{hit} .hit-snippet mark")]
        self.check(self.words.key in marks, "the hit's .hit-snippet has <mark> around the word", marks)
        status = self.find("#search-status")
        self.check(status.get_attribute("aria-live") == "polite", "#search-status is aria-live=polite")
        self.until(lambda: status.text.strip(), "#search-status to say how many")
        self.check(re.search(r"\b1\b", status.text) is not None, "#search-status counts the one hit", status.text)
        self.until(lambda: f"q={self.words.key}" in self.js("return location.search"), "the URL to hold q=<word>")
        painted = self.until(lambda: self.js("""
            const e = performance.getEntriesByName('sb:search-painted', 'measure')
              .filter(m => m.detail && m.detail.q === arguments[0]);
            return e.length ? {hits: e[e.length - 1].detail.hits, ms: e[e.length - 1].duration} : null;""",
                                             self.words.key), "a sb:search-painted measure for the word")
        self.check(painted["hits"] >= 1, "sb:search-painted records the hits", painted)
        self.not_pwned()
        self.audit("search with results")

        # Keyboard: ↓ from the box to the first hit, Enter opens it.
        box = self.find("input#search-q")
        box.click()
        box.send_keys(Keys.ARROW_DOWN)
        self.until(lambda: self.js("const f = document.querySelector('#search-results li.hit');"
                                   "return !!f && f.contains(document.activeElement)"),
                   "ArrowDown to focus the first hit")
        self.driver.switch_to.active_element.send_keys(Keys.ENTER)
        self.ready(f"/memories/{self.memory_id}")
        self.wait_for("h1#memory-heading")

    # the lists ---------------------------------------------------------------

    def memory_list(self) -> None:
        self.go("/memories")
        self.until(lambda: self.has(f'main a[href="/memories/{self.memory_id}"]'), "the memory in /memories")
        self.check(len(self.all("main h1")) == 1, "the page has one <h1>")
        self.not_pwned()
        self.audit("memory list")

    def session_list(self) -> None:
        self.go("/sessions")
        self.until(lambda: self.has(f'main a[href="/sessions/{self.session_id}"]'), "the session in /sessions")
        self.audit("sessions list")

    def session_timeline(self) -> None:
        self.click(f'main a[href="/sessions/{self.session_id}"]')
        self.ready(f"/sessions/{self.session_id}")
        self.until(lambda: self.has(f'main a[href="/memories/{self.memory_id}"]'), "the memory in the timeline")
        self.not_pwned()
        self.audit("session timeline")

    # d. edit -----------------------------------------------------------------

    def open_edit(self) -> None:
        self.go(f"/memories/{self.memory_id}")
        self.click("a#memory-edit-link")
        self.ready(f"/memories/{self.memory_id}/edit")
        self.wait_for("form#memory-form textarea#memory-content")

    def edit(self) -> None:
        w = self.words
        self.open_edit()
        content = self.find("#memory-content")
        self.check(content.get_attribute("value") == w.content(w.first), "#memory-content holds the current text")
        self.check(self.find("#memory-title").get_attribute("value") == w.title(), "#memory-title holds the title")
        self.audit("edit")
        content = self.find("#memory-content")
        content.clear()
        content.send_keys(w.content(w.second))
        self.click("#memory-save")
        self.ready(f"/memories/{self.memory_id}")
        self.until(lambda: re.search(r"\bVersion 2\b", self.text("#memory-version")), '"Version 2"')
        self.version = 2
        self.check(w.second in self.text("#memory-body"), "the memory page shows the new text")
        self.check(w.first not in self.text("#memory-body"), "the old text is gone from the page")
        self.not_pwned()

    # e. a stale edit ----------------------------------------------------------

    def stale_edit(self) -> None:
        w = self.words
        self.open_edit()
        content = self.find("#memory-content")
        content.clear()
        content.send_keys(w.content(w.stale))
        # Meanwhile, elsewhere: the API changes the memory (version 3).
        status, written = self.api.json("PATCH", f"/v1/memories/{self.memory_id}", self.tokens["A"],
                                        {"content": w.content(w.api)}, {"If-Match": '"2"'})
        self.require(status == 200 and written.get("version") == 3, "the API's edit to version 3", (status, written))
        self.version = 3
        self.click("#memory-save")
        error = self.wait_for("#form-error")
        self.until(lambda: error.is_displayed() and error.text.strip(), "#form-error to show")
        self.check("changed" in error.text.lower(), '#form-error mentions "changed"', error.text)
        self.check(self.js("const e = arguments[0]; return e.getAttribute('role') === 'alert' "
                           "|| !!e.closest('[role=alert]') || !!e.querySelector('[role=alert]')", error),
                   "#form-error is (in) a role=alert")
        self.check(bool(error.find_elements(By.CSS_SELECTOR, "a, button")), "#form-error offers a link or button to reload")
        self.check(re.fullmatch(rf"/memories/{self.memory_id}/edit", self.path()) is not None,
                   "the edit page stays open", self.path())
        self.check(w.stale in (self.find("#memory-content").get_attribute("value") or ""),
                   "the typed text is still in #memory-content")
        status, memory = self.api.json("GET", f"/v1/memories/{self.memory_id}?min_version=3", self.tokens["A"])
        self.check(status == 200 and memory.get("version") == 3, "nothing was written after version 3",
                   (status, memory.get("version")))
        self.check(w.api in memory.get("content", "") and w.stale not in memory.get("content", ""),
                   "the API's text stands, the stale one was not saved")
        self.audit("edit conflict")

    # f. history ---------------------------------------------------------------

    def history_events(self) -> dict[int, dict]:
        return {int(e["version"]): e for e in self.js("""
            return Array.from(document.querySelectorAll('ol#history-events > li.history-event')).map(li => ({
              version: li.getAttribute('data-version'),
              type: (li.querySelector('.event-type') || {}).textContent || '',
              actor: (li.querySelector('.event-actor') || {}).textContent || '',
              time: (li.querySelector('time.event-time') || {getAttribute: () => ''}).getAttribute('datetime') || '',
              ins: li.querySelectorAll('.event-diff ins').length,
              del: li.querySelectorAll('.event-diff del').length,
              diff: (li.querySelector('.event-diff') || {}).textContent || '',
            }));""") if str(e["version"]).isdigit()}

    def check_events(self, events: dict[int, dict], versions: range) -> None:
        self.check(sorted(events) == list(versions), f"ol#history-events lists versions {versions.start}…{versions.stop - 1}",
                   sorted(events))
        for version, event in sorted(events.items()):
            self.check(event["type"].strip() != "", f"event {version} has its .event-type")
            self.check(event["actor"].strip() != "", f"event {version} has its .event-actor")
            self.check(re.match(r"\d{4}-\d{2}-\d{2}T", event["time"]) is not None,
                       f"event {version} has time.event-time[datetime]", event["time"])

    def history(self) -> None:
        w = self.words
        self.go(f"/memories/{self.memory_id}")
        self.click("a#memory-history-link")
        self.ready(f"/memories/{self.memory_id}/history")
        events = self.until(lambda: self.history_events() or None, "li.history-event items")
        self.check_events(events, range(1, 4))
        revised = events.get(2, {})
        self.check(revised.get("ins", 0) > 0 and revised.get("del", 0) > 0,
                   "version 2's .event-diff has <ins> and <del>", revised)
        self.check(w.first in revised.get("diff", "") and w.second in revised.get("diff", ""),
                   "version 2's diff shows the old and the new word")
        slider = self.wait_for("input#asof-slider")
        self.check(slider.get_attribute("type") == "range", "#asof-slider is type=range")
        self.check((slider.get_attribute("min"), slider.get_attribute("max")) == ("1", "3"),
                   "#asof-slider runs from 1 to the latest version",
                   (slider.get_attribute("min"), slider.get_attribute("max")))
        self.check(self.has('input#asof-time[type="datetime-local"]'), "input#asof-time is datetime-local")
        self.check(self.has("#asof-label"), "the history page has #asof-label")
        self.js("arguments[0].focus()", slider)
        slider.send_keys(Keys.HOME)
        self.until(lambda: w.first in self.text("#asof-view"), "#asof-view to show version 1's text")
        self.check(slider.get_attribute("value") == "1", "Home moves #asof-slider to 1", slider.get_attribute("value"))
        self.check(self.has("#asof-view h2, #asof-view strong"), "#asof-view renders the Markdown")
        self.not_pwned()
        self.audit("history")
        slider = self.find("input#asof-slider")
        self.js("arguments[0].focus()", slider)
        slider.send_keys(Keys.END)
        self.until(lambda: w.api in self.text("#asof-view"), "#asof-view to show version 3's text (End)")

    # the phone-sized pass ------------------------------------------------------

    def fits(self, page: str) -> None:
        scroll, inner = self.js("return [document.documentElement.scrollWidth, window.innerWidth]")
        # A page wider than the phone is zoomed out to fit (innerWidth grows) or scrolls sideways.
        self.check(inner == PHONE[0] and scroll <= inner, f"{page} fits a {PHONE[0]} px wide phone",
                   f"innerWidth {inner}, scrollWidth {scroll}")

    def phone_pass(self) -> None:
        self.phone(True)
        try:
            self.go(f"/?q={self.words.key}", expect="/")
            self.wait_for(self.hit_link())
            self.fits("search")
            self.shot(f"{self.step_label}-search")
            self.audit("search (phone)")
            self.go(f"/memories/{self.memory_id}")
            self.wait_for("#memory-body")
            self.fits("the memory page")
            self.shot(f"{self.step_label}-memory")
            self.audit("memory page (phone)")
            self.go(f"/memories/{self.memory_id}/history")
            self.wait_for("ol#history-events li.history-event")
            self.fits("history")
            self.shot(f"{self.step_label}-history")
            self.audit("history (phone)")
        finally:
            self.phone(False)

    # g. another user ----------------------------------------------------------

    def search_misses(self, who: str) -> None:
        """A fresh search page for the word: done (ready), and without the memory."""
        self.go(f"/?q={self.words.key}", expect="/", timeout=TIMEOUT * 2)
        self.until(lambda: self.find("#search-status").text.strip(), "#search-status after the search")
        self.check(not self.has(f'#search-results a[href="/memories/{self.memory_id}"]'),
                   f"searching the word as {who} does not find the memory")
        self.check(self.words.key not in self.text("#search-results"), f"no hit as {who} mentions the word")

    def other_user(self) -> None:
        self.sign_out()
        self.sign_in("B")
        self.go(f"/memories/{self.memory_id}")
        self.check(self.has("#not-found"), "user B gets #not-found on A's memory page")
        self.check(self.words.key not in self.page_text(), "user B's page shows nothing of the memory")
        self.go(f"/memories/{self.memory_id}/history")
        self.check(self.has("#not-found"), "user B gets #not-found on A's memory history")
        self.check(self.words.key not in self.page_text(), "user B's history page shows nothing of it")
        self.search_misses("B")
        self.go("/memories")
        self.check(not self.has(f'a[href="/memories/{self.memory_id}"]'), "user B's /memories does not list it")
        self.check(self.words.key not in self.page_text(), "user B's /memories shows nothing of it")

    # h. back as A: tag, delete, restore, erase ----------------------------------

    def tag(self) -> None:
        self.sign_out()
        self.sign_in("A")
        self.go(f"/memories/{self.memory_id}")
        box = self.wait_for("form#tag-form input#tag-input")
        box.send_keys(self.words.later)
        box.send_keys(Keys.ENTER)
        self.until(lambda: self.words.later in self.text("ul#memory-tags"), "the new tag in ul#memory-tags")
        self.ready(f"/memories/{self.memory_id}")
        status, memory = self.api.json("GET", f"/v1/memories/{self.memory_id}?min_version={self.version + 1}",
                                       self.tokens["A"])
        self.require(status == 200 and self.words.later in memory.get("tags", []), "the API holds the new tag",
                     (status, memory.get("tags")))
        self.version = memory["version"]

    def open_confirm(self, button: str) -> None:
        self.click(button)
        self.wait_for("dialog#confirm[open]")
        self.until(lambda: self.text("#confirm-text").strip(), "#confirm-text")
        self.require(self.has("dialog#confirm button#confirm-ok") and self.has("dialog#confirm button#confirm-cancel"),
                     "the dialog has #confirm-ok and #confirm-cancel")

    def cancel_confirm(self) -> None:
        self.click("#confirm-cancel")
        self.until(lambda: not self.has("dialog#confirm[open]"), "the dialog to close on #confirm-cancel")

    def delete_restore(self) -> None:
        if not re.fullmatch(f"/memories/{self.memory_id}", self.path()):
            self.go(f"/memories/{self.memory_id}")
        # Audited open in both themes, then cancelled: cancel changes nothing.
        self.audit("confirm dialog open", open_=lambda: self.open_confirm("button#memory-delete"),
                   close=self.cancel_confirm)
        self.check(self.has("button#memory-delete"), "#confirm-cancel leaves the memory as it was")
        self.open_confirm("button#memory-delete")
        self.shot(f"{self.step_label}-confirm-delete")
        self.click("#confirm-ok")
        status, memory = self.api.json(
            "GET", f"/v1/memories/{self.memory_id}?include_deleted=true&min_version={self.version + 1}",
            self.tokens["A"])
        self.require(status == 200 and memory.get("status") == "deleted", "the API reads it deleted",
                     (status, memory.get("status")))
        self.version = memory["version"]
        status, _ = self.api.json("GET", f"/v1/memories/{self.memory_id}", self.tokens["A"])
        self.check(status == 404, "the API no longer reads the deleted memory (without include_deleted)", status)
        self.until(lambda: self.has("button#memory-restore") and self.has('main[data-ready="true"]'),
                   f"button#memory-restore on the deleted memory's page (the API says status {memory.get('status')!r})")
        self.check(not self.has("button#memory-delete"), "a deleted memory offers #memory-restore, not #memory-delete")
        self.check(self.words.key in self.text("h1#memory-heading"), "a deleted memory's page still shows it")
        self.click("button#memory-restore")
        self.until(lambda: self.has("dialog#confirm[open]") or self.has("button#memory-delete"),
                   "a confirm dialog or the restored page")
        if self.has("dialog#confirm[open]"):
            self.click("#confirm-ok")
        self.wait_for("button#memory-delete")
        self.ready(f"/memories/{self.memory_id}")
        status, memory = self.api.json("GET", f"/v1/memories/{self.memory_id}?min_version={self.version + 1}",
                                       self.tokens["A"])
        self.require(status == 200 and memory.get("status") == "active", "the API reads it restored",
                     (status, memory.get("status")))
        self.version = memory["version"]

    def erase(self) -> None:
        if not re.fullmatch(f"/memories/{self.memory_id}", self.path()):
            self.go(f"/memories/{self.memory_id}")
        self.open_confirm("button#memory-erase")
        text = " ".join(self.text("#confirm-text").lower().split())
        self.check(re.search(r"permanent|cannot be undone|can't be undone|for good|irreversibl", text) is not None
                   and "every version" in text,
                   "the erase dialog says it permanently removes the content from every version", text)
        self.shot(f"{self.step_label}-confirm-erase")
        self.cancel_confirm()
        self.audit("erase confirm dialog", open_=lambda: self.open_confirm("button#memory-erase"),
                   close=self.cancel_confirm)
        self.open_confirm("button#memory-erase")
        self.click("#confirm-ok")
        self.until(lambda: self.has("#not-found") or "erased" in self.find("main").text.lower(),
                   "#not-found or an erased message")
        status, history = self.api.json("GET", f"/v1/memories/{self.memory_id}/history?limit=1000", self.tokens["A"])
        types = [item.get("type") for item in history.get("items", [])]
        self.require(status == 200 and types[-1:] == ["MemoryErased"], "the API's history ends with MemoryErased",
                     (status, types))
        self.version = history["items"][-1]["version"]
        status, _ = self.api.json("GET", f"/v1/memories/{self.memory_id}?include_deleted=true", self.tokens["A"])
        self.check(status in (404, 410), "the API reads nothing of the erased memory", status)
        self.search_misses("A after the erase")
        self.go(f"/memories/{self.memory_id}")
        self.check(self.has("#not-found") or "erased" in self.text("main").lower(),
                   "the erased memory's page shows #not-found (or says erased)")
        self.check_forgotten("the erased memory's page")

    def check_forgotten(self, page: str) -> None:
        text = self.page_text()
        source = self.driver.page_source
        for w in self.words.all():
            self.check(w not in text, f"{page} text holds no word of the memory", w)
            self.check(w not in source, f"{page} HTML holds no word of the memory", w)

    def erased_history(self) -> None:
        self.go(f"/memories/{self.memory_id}/history")
        events = self.until(lambda: self.history_events() or None, "li.history-event items")
        # captured, revised ×2, tagged, deleted, restored, erased
        self.check_events(events, range(1, self.version + 1))
        self.check(self.has("#asof-view") and "erased" in self.text("#asof-view").lower(), "#asof-view says erased",
                   self.text("#asof-view") if self.has("#asof-view") else "no #asof-view")
        self.check_forgotten("the erased memory's history")
        self.not_pwned()

    # the not-found page --------------------------------------------------------

    def not_found(self) -> None:
        self.go(f"/memories/{uuid.uuid4()}")
        self.check(self.has("#not-found"), "an unknown memory's page shows #not-found")
        self.check(len(self.all("main h1")) == 1, "the not-found page has one <h1>")
        self.audit("not-found")
        self.go("/no/such/page")
        self.check(self.has("#not-found"), "an unknown address shows #not-found")


def describe(violation: dict) -> str:
    nodes = "".join(f"\n              {' '.join(map(str, n['target']))}"
                    + (f"\n                {n['summary'].splitlines()[1].strip()}"
                       if n.get("summary") and len(n["summary"].splitlines()) > 1 else "")
                    for n in violation["nodes"][:8])
    more = f"\n              … {len(violation['nodes']) - 8} more" if len(violation["nodes"]) > 8 else ""
    return f"\n            {violation['id']} [{violation.get('impact')}] {violation.get('help')}{nodes}{more}"


def counted(logs: list[dict]) -> dict[tuple[str, str], int]:
    """Console entries, each message once with how often it was logged (a
    CSP report's hash differs by the blocked text; it is left out)."""
    counts: dict[tuple[str, str], int] = {}
    for entry in logs:
        key = (entry.get("level", ""), re.sub(r"'(sha256|nonce)-[^']*'", "'…'", entry.get("message", "")))
        counts[key] = counts.get(key, 0) + 1
    return counts


def shorten(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="the web app's origin, e.g. http://127.0.0.1:8090")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    args = parser.parse_args()
    token_a = os.environ.get("SB_WEB_CHECK_TOKEN_A", "")
    token_b = os.environ.get("SB_WEB_CHECK_TOKEN_B", "")
    if not token_a or not token_b:
        parser.error("SB_WEB_CHECK_TOKEN_A and SB_WEB_CHECK_TOKEN_B name two users' bearer tokens")
    if token_a == token_b:
        parser.error("the two tokens must be two users'")
    axe_path = Path(os.environ.get("SB_WEB_CHECK_AXE", "web/node_modules/axe-core/axe.min.js"))
    if not axe_path.is_file():
        parser.error(f"no axe-core at {axe_path} (SB_WEB_CHECK_AXE; `cd web && npm ci` installs it)")
    out = Path(os.environ.get("SB_WEB_CHECK_OUTPUT") or tempfile.mkdtemp(prefix="sb-web-check-"))
    out.mkdir(parents=True, exist_ok=True)
    for binary in (args.chromium, args.chromedriver):
        if not os.access(binary, os.X_OK):
            parser.error(f"{binary} is missing (Debian: apt-get install chromium chromium-driver)")

    print(f"web end-to-end check against {args.url} (screenshots in {out})", flush=True)
    try:
        journey = Journey(args.url, token_a, token_b, axe_path.read_text(), out, args.chromium, args.chromedriver)
    except WebDriverException as error:
        print(f"could not start {args.chromium} through {args.chromedriver}: {error.msg} "
              f"(its log: {out / 'chromedriver.log'})")
        return 1
    try:
        journey.run()
    finally:
        journey.close()
    for note in journey.notes:
        print(f"  note  {note}")
    failed = [label for label, ok in journey.results if not ok]
    print(f"{len(journey.results) - len(failed)} steps passed, {len(failed)} failed"
          + (f" ({', '.join(failed)})" if failed else "")
          + f"; axe ran {journey.audits} times (light and dark); screenshots in {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
