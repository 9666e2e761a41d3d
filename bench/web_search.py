"""Keystroke → results painted in the web app, against the search request's own time.

Run by bench/web-search, which builds what this needs:

    <venv with Selenium>/bin/python bench/web_search.py --bin <dir with the service binaries>

In one run, on the native stack's Postgres, Redis and RabbitMQ: starts the
command service, the projector and the query service as processes on
databases, queues and a Redis key prefix of their own (deploy/api-check's
`Stack`, with this benchmark's names), and Caddy in front of them with
compose/Caddyfile serving a copy of web/dist; seeds BENCH_MEMORIES notes for
one user and waits until the read side lists them all; signs in through the
page in headless Chromium (Selenium, Debian's chromedriver) and types
queries one key at a time. For each query it reads the app's own
`sb:search-painted` measure (the last keystroke's input event → the frame
after the results were put in the DOM) and, as the baseline from the same
browser, the `/v1/search` request that answered it (Resource Timing), and a
bare fetch() of a fresh query of the same shape, sent after the same idle
spell. Prints the figures as a table and as one JSON line, and removes
everything it made, also on failure.

Environment (all optional): BENCH_MEMORIES (10000), BENCH_QUERIES (200, hybrid),
BENCH_MODE_QUERIES (BENCH_QUERIES / 4, each for keyword and semantic; 0 skips
them), BENCH_WARMUP (10), BENCH_KEY_GAP_MS (150), BENCH_SEED (20261201),
BENCH_SETTLE_TIMEOUT (seconds for the read side to catch up, 1800),
BENCH_KEEP=1 (keep the work directory with the services' and Caddy's logs).
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import importlib.util
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib.machinery import SourceFileLoader
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

ROOT = Path(__file__).resolve().parent.parent
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM = "/usr/bin/chromium"
# The app's debounce (web/src/pages/search.ts, DEBOUNCE_MS): part of every
# keystroke → painted time by design.
DEBOUNCE_MS = 120.0
SEEDERS = 16
PAGE = 200  # the list's largest page

# This benchmark's own databases, queues, exchange and keys (api-check's
# `Stack` reads these module names when it creates and drops them).
NAMES = {
    "EVENTS_DB": "sb_bench_web_events",
    "READ_DB": "sb_bench_web_read",
    "EXCHANGE": "sb-bench-web.events",
    "QUEUE_PREFIX": "sb-bench-web.projector",
    "REDIS_PREFIX": "sb-bench-web:",
}
RABBIT_PREFIX = "sb-bench-web."


def log(message: str) -> None:
    print(f"web-search: {message}", file=sys.stderr, flush=True)


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value else default


def load_api_check():
    """deploy/api-check as a module (no .py suffix), with this benchmark's names."""
    loader = SourceFileLoader("sb_api_check", str(ROOT / "deploy" / "api-check"))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    for name, value in NAMES.items():
        if not hasattr(module, name):
            raise SystemExit(f"deploy/api-check no longer defines {name}: this benchmark names its "
                             "databases, queues and keys through it; update bench/web_search.py")
        setattr(module, name, value)
    for name in ("Stack", "jwt", "snapshot_web_root"):
        if not hasattr(module, name):
            raise SystemExit(f"deploy/api-check no longer defines {name}; update bench/web_search.py")
    if not hasattr(module.Stack, "start_web"):
        raise SystemExit("deploy/api-check's Stack no longer has start_web; update bench/web_search.py")
    return module


# ---- the notes and the queries ------------------------------------------------

PEOPLE = ["Anna", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hugo", "Ines", "Jonas",
          "Keiko", "Liam", "Maya", "Nico", "Olga", "Priya", "Ravi", "Sofia", "Tom", "Yusuf",
          "Amara", "Bruno", "Camille", "Dmitri", "Esme", "Femi", "Gustav", "Hana", "Ivan", "Jada"]
CITIES = ["Lisbon", "Porto", "Kyoto", "Osaka", "Berlin", "Vienna", "Oslo", "Bergen", "Lyon",
          "Marseille", "Seville", "Valencia", "Krakow", "Prague", "Tallinn", "Reykjavik", "Dublin",
          "Edinburgh", "Montreal", "Vancouver", "Oaxaca", "Lima", "Hanoi", "Seoul", "Taipei", "Melbourne"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]

WORK = {
    "projects": ["billing migration", "search relaunch", "mobile onboarding", "data warehouse",
                 "pricing page", "quarterly planning", "incident review", "hiring loop",
                 "security audit", "customer interviews", "design system", "API deprecation"],
    "tasks": ["draft the proposal", "review the contract", "send the slides", "fix the flaky tests",
              "update the roadmap", "book the offsite", "write the postmortem", "ship the beta",
              "call the vendor", "estimate the budget", "clean up the backlog", "prepare the demo"],
    "moods": ["worried about the deadline", "happy with the progress", "unsure about scope",
              "pushing for a smaller first release", "keen to hire another engineer"],
}
TRAVEL = {
    "things": ["flight", "train", "ferry", "hotel", "hostel", "rental car", "museum tickets",
               "walking tour", "night bus", "guesthouse"],
    "places": ["old town", "harbour", "cathedral", "botanical garden", "night market", "castle",
               "riverside", "train station", "fish market", "hilltop viewpoint"],
    "tips": ["bring cash for the tram", "the bakery opens at seven", "book the sauna a day ahead",
             "the ferry is cheaper before nine", "tip is included in the bill",
             "the museum is free on Sundays"],
}
COOKING = {
    "dishes": ["sourdough", "ramen", "shakshuka", "risotto", "dal", "lasagne", "paella",
               "banana bread", "green curry", "gnocchi", "tacos", "pho", "focaccia", "tagine"],
    "ingredients": ["garlic", "ginger", "miso", "saffron", "chickpeas", "lemon zest", "parmesan",
                    "coriander", "smoked paprika", "tahini", "cardamom", "fennel", "anchovies",
                    "sumac", "buttermilk", "shallots"],
    "notes": ["too salty last time", "halve the chilli for the kids", "double the sauce",
              "rest the dough overnight", "use the cast iron pan", "freezes well"],
}
HEALTH = {
    "activities": ["run", "swim", "bike ride", "yoga class", "climbing session", "physio",
                   "dentist appointment", "blood test", "eye exam", "hike"],
    "body": ["knee", "lower back", "shoulder", "ankle", "wrist", "neck"],
    "feelings": ["sore", "fine", "stiff", "much better", "tired", "strong"],
    "meds": ["vitamin D", "ibuprofen", "magnesium", "iron tablets", "antihistamines"],
}
FRIENDS = {
    "hobbies": ["pottery", "chess", "jazz", "birdwatching", "bouldering", "gardening", "sailing",
                "origami", "woodworking", "astronomy"],
    "gifts": ["a fountain pen", "a cookbook", "concert tickets", "a wool scarf", "a board game",
              "a plant", "a vinyl record"],
    "allergies": ["peanuts", "shellfish", "gluten", "cats", "pollen"],
}
HOME = {
    "items": ["boiler service", "rent", "insurance renewal", "tax return", "bike repair", "router",
              "drill", "spare keys", "passport", "warranty", "winter tyres", "smoke alarm"],
    "places": ["the hall cupboard", "the blue box in the attic", "the kitchen drawer",
               "the garage shelf", "the desk", "the glovebox"],
}


def _date(rng: random.Random) -> str:
    return f"{rng.randint(1, 28)} {rng.choice(MONTHS)}"


def _work(rng: random.Random) -> tuple[str, str, list[str]]:
    person, other = rng.sample(PEOPLE, 2)
    project = rng.choice(WORK["projects"])
    lines = [
        f"Met {person} about the {project}; {person} will {rng.choice(WORK['tasks'])} by {rng.choice(DAYS)}.",
        f"{other} is {rng.choice(WORK['moods'])}.",
        f"Next check-in on {_date(rng)}: {rng.choice(WORK['tasks'])} first.",
        f"Open question for {other}: who owns the {rng.choice(WORK['projects'])} after the reorg?",
    ]
    return f"{project.capitalize()} with {person}", " ".join(lines[: rng.randint(1, 4)]), ["work", person.lower()]


def _travel(rng: random.Random) -> tuple[str, str, list[str]]:
    city = rng.choice(CITIES)
    thing = rng.choice(TRAVEL["things"])
    lines = [
        f"{thing.capitalize()} to {city} on {_date(rng)}, confirmation {rng.randint(100000, 999999)}.",
        f"Stay near the {rng.choice(TRAVEL['places'])}; {rng.choice(TRAVEL['tips'])}.",
        f"{rng.choice(PEOPLE)} recommended the {rng.choice(TRAVEL['places'])} in {city}.",
        f"Remember: {rng.choice(TRAVEL['tips'])}.",
    ]
    return f"{city} {thing}", " ".join(lines[: rng.randint(1, 4)]), ["travel", city.lower()]


def _cooking(rng: random.Random) -> tuple[str, str, list[str]]:
    dish = rng.choice(COOKING["dishes"])
    a, b, c = rng.sample(COOKING["ingredients"], 3)
    body = f"{dish.capitalize()}: {a}, {b} and {c}; {rng.choice(COOKING['notes'])}."
    if rng.random() < 0.4:
        body += f"\n\n- oven at {rng.choice([180, 200, 220, 240])} °C for {rng.randint(10, 60)} minutes\n- serves {rng.randint(2, 8)}"
    if rng.random() < 0.5:
        body += f" {rng.choice(PEOPLE)} loved it with extra {rng.choice(COOKING['ingredients'])}."
    return f"{dish.capitalize()} recipe", body, ["cooking", dish.split()[-1]]


def _health(rng: random.Random) -> tuple[str, str, list[str]]:
    activity = rng.choice(HEALTH["activities"])
    part = rng.choice(HEALTH["body"])
    lines = [
        f"{activity.capitalize()} on {rng.choice(DAYS)}: {rng.randint(2, 21)} km, {part} felt {rng.choice(HEALTH['feelings'])}.",
        f"Taking {rng.choice(HEALTH['meds'])} in the morning for two weeks.",
        f"Ask about the {part} at the {rng.choice(HEALTH['activities'])} on {_date(rng)}.",
    ]
    return f"{activity.capitalize()} log", " ".join(lines[: rng.randint(1, 3)]), ["health", part.split()[-1]]


def _friends(rng: random.Random) -> tuple[str, str, list[str]]:
    person = rng.choice(PEOPLE)
    lines = [
        f"{person}'s birthday is on {_date(rng)}; into {rng.choice(FRIENDS['hobbies'])} lately.",
        f"Gift idea for {person}: {rng.choice(FRIENDS['gifts'])}.",
        f"{person} is allergic to {rng.choice(FRIENDS['allergies'])}.",
        f"{person} moved to {rng.choice(CITIES)} and wants to meet up in {rng.choice(MONTHS)}.",
    ]
    rng.shuffle(lines)
    return f"About {person}", " ".join(lines[: rng.randint(1, 4)]), ["people", person.lower()]


def _home(rng: random.Random) -> tuple[str, str, list[str]]:
    item = rng.choice(HOME["items"])
    lines = [
        f"The {item} papers are in {rng.choice(HOME['places'])}.",
        f"{item.capitalize()} due on {_date(rng)}; {rng.choice(PEOPLE)} has the contact.",
        f"Paid {rng.randint(20, 900)} euros for the {item} in {rng.choice(MONTHS)}.",
    ]
    return item.capitalize(), " ".join(lines[: rng.randint(1, 3)]), ["home"]


TOPICS = [_work, _travel, _cooking, _health, _friends, _home]
SESSION_TITLES = ["Trip to Kyoto", "Q3 planning week", "Kitchen experiments", "Marathon training",
                  "Moving flat", "Conference in Berlin", "Family visit", "Hiring sprint"]


def memory(rng: random.Random, sessions: list[str]) -> dict:
    """One note: a title in about half, one to four sentences, tags, some in a session."""
    title, content, tags = rng.choice(TOPICS)(rng)
    body: dict = {"content": content, "tags": sorted(set(tags))}
    if rng.random() < 0.5:
        body["title"] = title
    if sessions and rng.random() < 0.25:
        body["session_id"] = rng.choice(sessions)
    if rng.random() < 0.3:
        body["occurred_at"] = f"20{rng.randint(24, 26)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(7, 21):02d}:00:00Z"
    return body


STOP_WORDS = {"the", "and", "for", "with", "about", "who", "after", "into", "than", "are", "opens"}


def _words(*pools: list[str]) -> list[str]:
    return sorted({word.lower() for pool in pools for phrase in pool for word in phrase.split()
                   if len(word) > 2 and word.lower() not in STOP_WORDS})


# What someone would type to find a note of each kind: its own words.
QUERY_WORDS = [
    _words(PEOPLE, *WORK.values()),
    _words(CITIES, *TRAVEL.values()),
    _words(*COOKING.values()),
    _words(*HEALTH.values(), DAYS),
    _words(PEOPLE, CITIES, *FRIENDS.values()),
    _words(*HOME.values()),
]


def queries(rng: random.Random, count: int) -> list[str]:
    """`count` distinct queries of 1–3 words from the notes' vocabulary. None is
    a prefix of another: typing one sends each of its prefixes, and the query
    service caches query embeddings, so no measured query is embedded twice."""
    chosen: list[str] = []
    attempts = 0
    while len(chosen) < count:
        attempts += 1
        if attempts > count * 200:
            raise SystemExit(f"could only make {len(chosen)} distinct queries; ask for fewer")
        words = rng.choices([1, 2, 3], weights=[3, 5, 2])[0]
        candidate = " ".join(rng.sample(rng.choice(QUERY_WORDS), words))
        if any(c.startswith(candidate) or candidate.startswith(c) for c in chosen):
            continue
        chosen.append(candidate)
    return chosen


# ---- seeding ----------------------------------------------------------------

class Api:
    """Requests to one service, a keep-alive connection per thread."""

    def __init__(self, addr: str, token: str) -> None:
        self.host, port = addr.rsplit(":", 1)
        self.port = int(port)
        self.token = token
        self.local = threading.local()

    def call(self, method: str, path: str, body: dict | None = None, key: str | None = None) -> tuple[int, dict]:
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if key:
            headers["Idempotency-Key"] = key
        for attempt in range(5):
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = self.local.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
            try:
                conn.request(method, path, body=data, headers=headers)
                response = conn.getresponse()
                raw = response.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                self.local.conn = None
                time.sleep(0.2 * (attempt + 1))
                continue
            # Retried with the same Idempotency-Key: a replay, never a second note.
            if response.status in (429, 502, 503) and attempt < 4:
                time.sleep(0.2 * (attempt + 1))
                continue
            return response.status, json.loads(raw) if raw else {}
        raise RuntimeError(f"{method} {path}: no answer after 5 attempts")


@dataclass
class Seeded:
    count: int
    write_s: float
    settle_s: float
    sessions: int


def seed(command: Api, query: Api, count: int, rng: random.Random, settle_timeout: float) -> Seeded:
    sessions = []
    for title in SESSION_TITLES:
        status, body = command.call("POST", "/v1/sessions", {"title": title}, key=str(uuid.uuid4()))
        if status != 201:
            raise SystemExit(f"POST /v1/sessions answered {status}: {body}")
        sessions.append(body["id"])
    bodies = [memory(rng, sessions) for _ in range(count)]

    def create(body: dict) -> dict:
        status, answer = command.call("POST", "/v1/memories", body, key=str(uuid.uuid4()))
        if status != 201:
            raise RuntimeError(f"POST /v1/memories answered {status}: {answer}")
        return answer

    log(f"seeding {count} memories ({SEEDERS} in flight, {len(sessions)} sessions)")
    started = time.monotonic()
    with ThreadPoolExecutor(SEEDERS) as pool:
        list(pool.map(create, bodies[:-1]))
    # The last one after the rest: the list waits for it below.
    last = create(bodies[-1])
    write_s = time.monotonic() - started
    log(f"seeded {count} memories in {write_s:.1f} s ({count / write_s:.0f}/s); waiting for the read side")
    wait_listed(query, last, count, started + write_s, settle_timeout)
    settle_s = time.monotonic() - started - write_s
    return Seeded(count, write_s, settle_s, len(sessions))


def wait_listed(query: Api, last: dict, count: int, since: float, timeout: float) -> None:
    """Until a list that waits for the last write answers, then until it holds all `count`."""
    deadline = since + timeout
    wait = urllib.parse.urlencode({"wait_for": f"{last['id']}@{last['version']}", "limit": 1})
    while True:
        status, body = query.call("GET", f"/v1/memories?{wait}")
        if status == 200:
            break
        if status != 503 or time.monotonic() > deadline:
            raise SystemExit(f"the read side did not reach the last write: {status} {body}")
        time.sleep(0.5)
    reported = time.monotonic()
    while True:
        listed = count_listed(query)
        if listed >= count:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"the read side lists {listed} of {count} memories after {timeout:.0f} s")
        if time.monotonic() - reported > 10:
            log(f"  the read side lists {listed} of {count}")
            reported = time.monotonic()
        time.sleep(1)


def count_listed(query: Api) -> int:
    total, cursor = 0, None
    while True:
        params = {"limit": PAGE, **({"cursor": cursor} if cursor else {})}
        status, body = query.call("GET", f"/v1/memories?{urllib.parse.urlencode(params)}")
        if status != 200:
            raise SystemExit(f"GET /v1/memories answered {status}: {body}")
        total += len(body["items"])
        cursor = body.get("next_cursor")
        if not cursor:
            return total


# ---- the browser -------------------------------------------------------------

def start_browser(profile: Path) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,900",
                 # A benchmark wants the page's timers and frames at full rate.
                 "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
                 "--disable-backgrounding-occluded-windows",
                 f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def sign_in(driver: webdriver.Chrome, base: str, token: str) -> None:
    driver.get(f"{base}/signin")
    wait = WebDriverWait(driver, 30)
    try:
        box = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "textarea#signin-token"))
        box.send_keys(token)
        driver.find_element(By.CSS_SELECTOR, "button#signin-submit").click()
        wait.until(lambda d: d.execute_script("return location.pathname") == "/"
                   and d.find_elements(By.CSS_SELECTOR, 'main[data-ready="true"] input#search-q'))
    except TimeoutException:
        raise SystemExit("the web app broke its contract: signing in through textarea#signin-token and "
                         "button#signin-submit did not reach '/' with main[data-ready=\"true\"] and "
                         f"input#search-q within 30 s (at {driver.current_url})") from None


# What one search left in the page: the app's measure for query `q` and the
# /v1/search request that answered it. Waits in the page (a PerformanceObserver)
# rather than polling over WebDriver, so nothing else runs on the page's main
# thread while it searches and paints.
AWAIT_MEASURE = """
const [q, done] = arguments;
function found() {
  const measures = performance.getEntriesByName('sb:search-painted')
    .filter((m) => m.detail && m.detail.q === q);
  if (!measures.length) return null;
  const m = measures[measures.length - 1];
  const requests = performance.getEntriesByType('resource').filter((r) =>
    r.name.includes('/v1/search') && new URL(r.name).searchParams.get('q') === q && r.startTime >= m.startTime);
  const r = requests[requests.length - 1];
  return {
    painted: m.duration, start: m.startTime, hits: m.detail.hits,
    request: r ? {url: r.name, start: r.startTime, duration: r.duration, end: r.responseEnd} : null,
  };
}
const now = found();
if (now) {
  done(now);
} else {
  const observer = new PerformanceObserver(() => {
    const later = found();
    if (later) {
      observer.disconnect();
      done(later);
    }
  });
  observer.observe({type: 'measure'});
}
"""

# The baseline from the same page: fetch() of the app's request URL with a
# fresh query (the same one again would find its embedding cached), read as
# the app reads it, sent `delay` ms after this script starts: with the
# debounce as the delay, the path (Chrome's network service, Caddy, the
# service, Postgres) has been as idle as for the app's own request, which
# goes out 120 ms after a key event.
DIRECT_FETCH = """
const [url, q, delay, done] = arguments;
const u = new URL(url);
u.searchParams.set('q', q);
const headers = {Accept: 'application/json', Authorization: 'Bearer ' + sessionStorage.getItem('sb.token')};
setTimeout(() => {
  const t0 = performance.now();
  fetch(u.toString(), {headers, credentials: 'omit', cache: 'no-store'})
    .then((r) => r.text().then((text) => {
      const ms = performance.now() - t0;
      done({status: r.status, ms, hits: r.ok ? JSON.parse(text).hits.length : 0});
    }))
    .catch((e) => done({error: String(e)}));
}, delay);
"""


@dataclass
class Sample:
    query: str
    painted: float
    api: float
    wait: float  # keystroke → the request went out (the debounce, and timer slop)
    render: float  # response's last byte → painted
    hits: int
    direct: float | None = None  # fetch() of a fresh query, after the debounce's idle


@dataclass
class Pass:
    mode: str
    samples: list[Sample] = field(default_factory=list)


class Typist:
    def __init__(self, driver: webdriver.Chrome, key_gap: float) -> None:
        self.driver = driver
        self.key_gap = key_gap
        self.box = driver.find_element(By.CSS_SELECTOR, "input#search-q")

    def set_mode(self, mode: str) -> None:
        self.empty_box()
        Select(self.driver.find_element(By.CSS_SELECTOR, "select#search-mode")).select_by_value(mode)
        time.sleep(0.3)

    def empty_box(self) -> None:
        # As a person would: select all, delete; the app empties its results.
        self.box.send_keys(Keys.CONTROL, "a")
        self.box.send_keys(Keys.BACKSPACE)
        time.sleep(self.key_gap)
        WebDriverWait(self.driver, 10).until(
            lambda d: not d.find_elements(By.CSS_SELECTOR, "ul#search-results > li.hit"))

    def search(self, query: str, fresh: str | None) -> Sample:
        self.empty_box()
        self.driver.execute_script("performance.clearMeasures('sb:search-painted'); performance.clearResourceTimings();")
        for i, key in enumerate(query):
            if i:
                time.sleep(self.key_gap)
            self.box.send_keys(key)
        # At once after the last key, before its search goes out: from here
        # the page only waits, so no WebDriver command runs in it (on these
        # two cores) while the request is answered and painted.
        try:
            found = self.driver.execute_async_script(AWAIT_MEASURE, query)
        except TimeoutException:
            status = self.driver.execute_script(
                "const s = document.getElementById('search-status'); return s ? s.textContent : null")
            names = self.driver.execute_script(
                "return performance.getEntriesByType('measure').map((m) => [m.name, m.detail])")
            raise SystemExit(
                f"the web app broke its contract: no PerformanceMeasure 'sb:search-painted' with detail.q == "
                f"{query!r} within 60 s of the last keystroke (#search-status: {status!r}; measures: {names})") from None
        for _ in range(20):  # the request's entry, should it land after the measure
            if found["request"] is not None:
                break
            time.sleep(0.05)
            found = self.driver.execute_async_script(AWAIT_MEASURE, query)
        request = found["request"]
        if request is None:
            raise SystemExit(f"no Resource Timing entry for /v1/search?q={query!r} after its measure")
        sample = Sample(
            query=query, painted=found["painted"], api=request["duration"],
            wait=request["start"] - found["start"],
            render=found["start"] + found["painted"] - request["end"],
            hits=found["hits"])
        if fresh is not None:
            sample.direct = self.fetch(request["url"], fresh, DEBOUNCE_MS)
        return sample

    def fetch(self, url: str, query: str, delay_ms: float) -> float:
        answer = self.driver.execute_async_script(DIRECT_FETCH, url, query, delay_ms)
        if "error" in answer or answer["status"] != 200:
            raise SystemExit(f"the direct fetch of /v1/search?q={query!r} failed: {answer}")
        return answer["ms"]


def run_pass(typist: Typist, mode: str, measured: list[str], fresh: list[str] | None) -> Pass:
    typist.set_mode(mode)
    result = Pass(mode)
    for i, query in enumerate(measured):
        result.samples.append(typist.search(query, fresh[i] if fresh else None))
        if (i + 1) % 25 == 0:
            log(f"  {mode}: {i + 1} of {len(measured)} queries")
    return result


def plan(seed: int, warmup: int, measured: int, per_mode: int) -> tuple[list[str], list[tuple]]:
    """The warm-up queries, then per mode its queries and, for hybrid, a
    fresh one per query for the direct fetch; all distinct, none a prefix
    of another."""
    counts = [("hybrid", measured)] + ([("keyword", per_mode), ("semantic", per_mode)] if per_mode else [])
    pool = iter(queries(random.Random(seed + 1), warmup + measured * 2 + per_mode * 2))
    warm = [next(pool) for _ in range(warmup)]
    planned = []
    for mode, n in counts:
        chosen = [next(pool) for _ in range(n)]
        fresh = [next(pool) for _ in range(n)] if mode == "hybrid" else None
        planned.append((mode, chosen, fresh))
    return warm, planned


def measure(typist: Typist, warm: list[str], planned: list[tuple], key_gap_ms: int) -> list[Pass]:
    log(f"warming up: {len(warm)} queries")
    typist.set_mode("hybrid")
    for query in warm:
        typist.search(query, None)
    passes = []
    for mode, chosen, fresh in planned:
        log(f"{mode}: {len(chosen)} queries, one key every {key_gap_ms} ms")
        passes.append(run_pass(typist, mode, chosen, fresh))
    return passes


# ---- figures -----------------------------------------------------------------

def percentile(values: list[float], p: float) -> float:
    """Nearest rank, as the other benchmarks report it."""
    ordered = sorted(values)
    rank = min(max(math.ceil(p * len(ordered)), 1), len(ordered))
    return ordered[rank - 1]


def summary(values: list[float]) -> dict:
    return {"p50": percentile(values, 0.50), "p95": percentile(values, 0.95),
            "p99": percentile(values, 0.99), "mean": sum(values) / len(values)}


def shipped(web_root: Path) -> dict:
    """Bytes of JavaScript and CSS the app ships, raw and gzip -9 per file
    (as `node build.mjs --size` counts them), from the build that was served."""
    sizes = {}
    for ext in ("js", "css"):
        files = sorted((web_root / "assets").glob(f"*.{ext}"))
        raw = [f.read_bytes() for f in files]
        sizes[f"{ext}_bytes"] = sum(len(b) for b in raw)
        sizes[f"{ext}_gzip_bytes"] = sum(len(gzip.compress(b, compresslevel=9)) for b in raw)
    return sizes


def report(config: dict, seeded: Seeded, passes: list[Pass], sizes: dict) -> dict:
    hybrid = passes[0]
    s = hybrid.samples
    painted = summary([x.painted for x in s])
    api = summary([x.api for x in s])
    direct = summary([x.direct for x in s])
    less_debounce = summary([x.painted - DEBOUNCE_MS for x in s])
    wait = summary([x.wait for x in s])
    render = summary([x.render for x in s])
    print()
    print(f"{seeded.count} memories ({seeded.sessions} sessions) seeded in {seeded.write_s:.1f} s "
          f"({seeded.count / seeded.write_s:.0f} creates/s), all listed {seeded.settle_s:.1f} s after the last write")
    print(f"JavaScript shipped: {sizes['js_bytes']:,} bytes, {sizes['js_gzip_bytes']:,} gzip; "
          f"CSS {sizes['css_bytes']:,} bytes, {sizes['css_gzip_bytes']:,} gzip")
    print(f"{len(s)} hybrid queries typed at {config['key_gap_ms']} ms a key (debounce {DEBOUNCE_MS:.0f} ms), "
          f"{sum(x.hits for x in s) / len(s):.1f} hits each, {sum(1 for x in s if x.hits == 0)} with none")
    print()
    print("| hybrid, ms | p50 | p95 | p99 | mean |\n| --- | ---: | ---: | ---: | ---: |")
    rows = [("keystroke → results painted", painted),
            (f"  less the {DEBOUNCE_MS:.0f} ms debounce", less_debounce),
            ("  keystroke → request sent", wait),
            ("  response's last byte → painted", render),
            ("baseline: the app's /v1/search request (Resource Timing)", api),
            (f"baseline: fetch() of a fresh query, {DEBOUNCE_MS:.0f} ms after a WebDriver call", direct)]
    for name, row in rows:
        print(f"| {name} | {row['p50']:.1f} | {row['p95']:.1f} | {row['p99']:.1f} | {row['mean']:.1f} |")
    print()
    ratios = {
        "painted_over_api_p50": painted["p50"] / api["p50"],
        "painted_over_api_p95": painted["p95"] / api["p95"],
        "painted_less_debounce_over_api_p50": less_debounce["p50"] / api["p50"],
        "painted_less_debounce_over_api_p95": less_debounce["p95"] / api["p95"],
        "api_over_direct_p50": api["p50"] / direct["p50"],
        "api_over_direct_p95": api["p95"] / direct["p95"],
    }
    print(f"painted / API: p50 {ratios['painted_over_api_p50']:.2f}x, p95 {ratios['painted_over_api_p95']:.2f}x; "
          f"less the debounce: p50 {ratios['painted_less_debounce_over_api_p50']:.2f}x, "
          f"p95 {ratios['painted_less_debounce_over_api_p95']:.2f}x; "
          f"the app's request / a bare fetch(): p50 {ratios['api_over_direct_p50']:.2f}x, "
          f"p95 {ratios['api_over_direct_p95']:.2f}x")
    modes = {}
    if len(passes) > 1:
        print()
        print("| mode | queries | painted p50 / p95 ms | API p50 / p95 ms | painted/API p50 | p95 |\n"
              "| --- | ---: | ---: | ---: | ---: | ---: |")
        for p in passes:
            pp = summary([x.painted for x in p.samples])
            pa = summary([x.api for x in p.samples])
            modes[p.mode] = {"queries": len(p.samples), "painted": pp, "api": pa,
                             "hits_mean": sum(x.hits for x in p.samples) / len(p.samples)}
            print(f"| {p.mode} | {len(p.samples)} | {pp['p50']:.1f} / {pp['p95']:.1f} | {pa['p50']:.1f} / {pa['p95']:.1f} "
                  f"| {pp['p50'] / pa['p50']:.2f} | {pp['p95'] / pa['p95']:.2f} |")
    result = {
        "bench": "web-search", **config,
        "memories": seeded.count, "seed_seconds": round(seeded.write_s, 2),
        "creates_per_second": round(seeded.count / seeded.write_s, 1),
        "settle_seconds": round(seeded.settle_s, 2), **sizes,
        "hybrid": {"queries": len(s), "painted": painted, "painted_less_debounce": less_debounce,
                   "keystroke_to_request": wait, "response_to_painted": render,
                   "api": api, "direct_fetch": direct,
                   "hits_mean": sum(x.hits for x in s) / len(s)},
        "ratios": ratios, "modes": modes,
    }
    print()
    print(json.dumps(round_floats(result), sort_keys=True))
    return result


def round_floats(value):
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: round_floats(v) for k, v in value.items()}
    return value


# ---- cleanup and main --------------------------------------------------------

def delete_exchanges() -> None:
    """The exchanges the services declared (api-check's `down` removes the queues)."""
    ctl = shutil.which("rabbitmqctl")
    if not ctl:
        return
    listed = subprocess.run([ctl, "list_exchanges", "-q", "name"], capture_output=True, text=True).stdout
    for name in listed.split():
        if name.startswith(RABBIT_PREFIX):
            erlang = f'rabbit_exchange:delete(rabbit_misc:r(<<"/">>, exchange, <<"{name}">>), false, <<"bench">>).'
            subprocess.run([ctl, "eval", erlang], capture_output=True, check=False)


def interrupted(signum, frame) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin", required=True, type=Path, help="directory with the three service binaries")
    args = parser.parse_args()
    memories = env_int("BENCH_MEMORIES", 10_000)
    measured = env_int("BENCH_QUERIES", 200)
    per_mode = env_int("BENCH_MODE_QUERIES", measured // 4)
    warmup = env_int("BENCH_WARMUP", 10)
    key_gap_ms = env_int("BENCH_KEY_GAP_MS", 150)
    seed_value = env_int("BENCH_SEED", 20261201)
    settle_timeout = env_int("BENCH_SETTLE_TIMEOUT", 1800)
    if memories < 1 or measured < 1:
        raise SystemExit("BENCH_MEMORIES and BENCH_QUERIES must be at least 1")
    if key_gap_ms <= DEBOUNCE_MS:
        log(f"note: a key gap of {key_gap_ms} ms is within the app's {DEBOUNCE_MS:.0f} ms debounce: "
            "only the last keystroke of a burst sends a search")
    # SIGTERM unwinds like ctrl-c, so the cleanup below runs.
    signal.signal(signal.SIGTERM, interrupted)

    warm, planned = plan(seed_value, warmup, measured, per_mode)
    api = load_api_check()
    workdir = Path(tempfile.mkdtemp(prefix="sb-bench-web-"))
    stack = api.Stack(args.bin, Path(os.environ["SB_PG_BIN_DIR"]), workdir)
    driver = None
    failed = True
    try:
        rng = random.Random(seed_value)
        log(f"starting the services on {NAMES['EVENTS_DB']}, {NAMES['READ_DB']}, "
            f"{NAMES['QUEUE_PREFIX']}.*, {NAMES['REDIS_PREFIX']}* (logs in {workdir})")
        stack.up()
        token = api.jwt(stack.secret, f"bench-web-{uuid.uuid4()}")
        seeded = seed(Api(stack.addrs["command"], token), Api(stack.addrs["query"], token),
                      memories, rng, settle_timeout)
        # A copy of web/dist: a build meanwhile changes neither the page nor the byte counts.
        web_root = api.snapshot_web_root(workdir / "web")
        base = stack.start_web(web_root)
        log(f"caddy serves the app at {base} (compose/Caddyfile); starting headless Chromium")
        driver = start_browser(workdir / "chromium-profile")
        driver.set_script_timeout(60)
        sign_in(driver, base, token)
        passes = measure(Typist(driver, key_gap_ms / 1000), warm, planned, key_gap_ms)
        config = {"profile": os.environ.get("BENCH_PROFILE", "release"), "key_gap_ms": key_gap_ms,
                  "warmup": warmup, "seed": seed_value}
        report(config, seeded, passes, shipped(web_root))
        failed = False
    except KeyboardInterrupt:
        log("interrupted")
    finally:
        if driver is not None:
            try:
                driver.quit()
            except WebDriverException:
                pass
        stack.down()  # the services and Caddy, the databases, queues and keys
        delete_exchanges()
        if failed or os.environ.get("BENCH_KEEP") == "1":
            log(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
