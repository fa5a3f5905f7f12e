#!/usr/bin/env python3
"""Seeded, realistic Claude Code transcript corpus generator (stdlib + orjson).

    python bench/gen_corpus.py --out DIR --sessions N --target-bytes B --seed S [--jobs J]

Writes a Claude Code config tree:

    DIR/projects/<encoded-project-dir>/<session-uuid>.jsonl
    DIR/projects/<enc>/<session-uuid>/subagents/agent-a<16hex|7hex>.jsonl   (Task sub-agents)
    DIR/projects/<enc>/<session-uuid>/subagents/agent-acompact-<6hex>.jsonl (compaction calls)
    DIR/manifest.json                                                       (ground truth)

What is generated (shapes follow shared/reference/claude-code-formats.md section 1 and the
marot/spotter samples):

* 20-50 projects (fewer when --sessions is smaller) with realistic ``cwd`` paths, including a
  >200-char path (hash-suffixed folder name), a non-ASCII path and two cwds that encode to the
  same folder name.
* line types: user (prompts, tool results with ``toolUseResult``, compact summaries, meta lines),
  assistant (one line per content block; a streamed response spans 1-4 lines sharing
  ``message.id``/``requestId``, identical input/cache counts, ``output_tokens`` non-decreasing
  with the last line holding the max), progress (hook_progress, bash_progress, agent_progress
  embedding copies of sub-agent messages *with usage*), system (compact_boundary with
  ``compactMetadata.trigger``/``preTokens`` [+ ``postTokens`` on newer versions], local_command,
  turn_duration, stop_hook_summary, api_error), file-history-snapshot, queue-operation, summary.
* models: claude-opus-4-6, claude-sonnet-4-5-20250929, claude-opus-4-7, claude-haiku-4-5-20251001
  and ``<synthetic>`` (API-error lines, zero usage, no requestId).
* context grows across a session (cache_read = previous prompt), cache expiry after idle gaps,
  auto/manual compactions drop it.
* sidechain sub-agent files (``isSidechain: true``, parent ``sessionId``, ``agentId``).
* resumed sessions: a new file (new session uuid) that starts with a verbatim byte copy of the
  first k turns of an older session's main file (same message ids / requestIds / sessionId),
  as Claude Code <= 2.0 did on ``--resume``, then continues with new lines.
* a small fraction of malformed lines: truncated JSON (prefix copies of the previous line),
  invalid UTF-8 (never on assistant lines), NUL runs, blank / whitespace-only lines.
  Every file ends with ``\\n`` unless ``--partial-tail-fraction`` > 0.

Deterministic for a given (seed, sessions, target-bytes, end-date, options), independent of --jobs.

manifest.json ground truth, per session id (the main file's name):

* ``tokens.ccusage``: what ``ccusage claude session --json`` 20.0.24 reports for the row
  (projectPath=<enc>, sessionId=<uuid>).  Rule (verified against the binary, see
  /work/tools/ccusage-notes.md): every line with a top-level ``message.usage`` object is an
  entry (``type`` is not checked; progress lines never qualify); entries with both
  ``message.id`` and ``requestId`` are de-duplicated *globally* (all files, all projects) on
  (message.id, requestId); files are processed in full-path byte order; a later duplicate
  replaces the kept one only if its input+output+cache_creation+cache_read total is strictly
  larger (non-sidechain beats sidechain), so verbatim resumed copies go to the file whose path
  sorts first; cache_creation = sum of ``usage.cache_creation.ephemeral_*`` when that object is
  present, else ``cache_creation_input_tokens``; rows are attributed by *path*: main file
  ``<enc>/<uuid>.jsonl`` and everything under ``<enc>/<uuid>/subagents/`` belong to <uuid>.
* ``tokens.max_output``: top-level ``type == "assistant"`` lines only (main + sub-agent files,
  never progress copies), ``<synthetic>`` skipped, grouped globally by (message.id, requestId);
  a group counts once, with ``output_tokens = max`` over its lines, input/cache from its lines
  (identical within a group), cache_creation = max(flat, sum(nested)); a group is attributed to
  the session whose file it was first written to (the original session), so resumed copies
  never count again.
* ``tokens.session_local``: like max_output but de-duplicated per session only (a resumed file's
  copied prefix counts for the resumed session too).
* ``tokens_by_model`` (ccusage / max_output, ``<synthetic>`` left out like ccusage does),
  ``ccusage_first_activity`` / ``ccusage_last_activity`` / ``ccusage_row_expected`` (ccusage
  omits rows whose total is 0: resume parents whose copied turns all went to the resumed file).
* compaction counts/metadata, malformed line counts by kind, line-type counts, files, bytes.

Usage edge cases that are present on purpose: ~0.3% of responses carry a truncated usage with
no cache fields, ~0.5% (versions < 2.1.152) have ``cache_creation_input_tokens: 0`` while the
nested ``cache_creation`` holds the real count, ~30% of new-version sessions use the 1h cache
TTL (``ephemeral_1h_input_tokens``), Task results carry ``toolUseResult.usage`` on user lines.
Corpus size lands within a few % of --target-bytes (tiny per-session budgets overshoot more).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import orjson

GENERATOR_VERSION = 1
DUMP = orjson.dumps
NL = orjson.OPT_APPEND_NEWLINE

# ----------------------------------------------------------------------------- constants

OPUS46 = "claude-opus-4-6"
OPUS47 = "claude-opus-4-7"
SONNET45 = "claude-sonnet-4-5-20250929"
HAIKU45 = "claude-haiku-4-5-20251001"
SYNTH = "<synthetic>"

OLD_VERSIONS = ["1.0.72", "1.0.88", "2.0.14", "2.0.37", "2.0.76"]
NEW_VERSIONS = ["2.1.20", "2.1.39", "2.1.87", "2.1.150", "2.1.275"]

# bytes of one "turn" at content scale 1.0 (measured; used to pick the number of turns)
NOMINAL_TURN_BYTES = 45_000
CHARS_PER_TOKEN = 3.6

B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
HEX = "0123456789abcdef"

WORDS = (  # noqa: SIM905
    "the a to of and in is it for that this with on be as are not can we by from or if at an "
    "function value return error file path test config module class method request response "
    "session token cache context model output input update handler server client build check "
    "should would could need make sure look let me now first then also because when which "
    "data parse line read write list map string number field type struct schema index query "
    "async await import export const let var def self None True False nil ok err fmt log "
    "user agent tool result command status message event stream buffer chunk batch retry "
    "timeout deadline worker queue job task pipeline deploy release version branch commit "
    "merge diff patch refactor rename extract inline remove add fix bug issue failing passes "
    "coverage assert expect mock fixture snapshot benchmark latency memory allocation leak "
    "directory permission encoding unicode utf8 json jsonl yaml toml csv sql migration table "
    "column row key lock mutex channel thread process signal socket port host address route "
    "middleware template render component state props hook effect reducer store selector"
).split()
IDENTS = (  # noqa: SIM905
    "load_config parse_line read_transcript SessionStore TokenCounter compute_usage "
    "handle_event fetchUser renderPage useSession buildIndex flushBuffer open_file "
    "write_manifest validate_schema MessageRouter retry_with_backoff ContextWindow "
    "compact_history encode_project_dir iter_lines dedupe_entries aggregate_daily "
    "PricingTable CacheEntry handleRequest startServer createClient DbPool migrate_up "
    "run_tests main init setup teardown"
).split()
SPECIAL = ["→", "é", "—", "✓", "…", "日本語", "Grüße", "🙂", "±", "µs", "ü", "≥", "•", "½"]
FILE_EXT = ["py", "ts", "tsx", "rs", "go", "ex", "md", "json", "toml", "sql", "js", "yaml"]

API_ERROR_TEXT = (
    'API Error: 529 {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
)
EDIT_RESULT_TAIL = "Here's the result of running `cat -n` on a snippet of the edited file:\n"
TODO_RESULT = (
    "Todos have been modified successfully. Ensure that you continue to use the todo list to "
    "track your progress."
)
AGENT_ID_TAIL = "(for resuming to continue this agent's work if needed)"
COMPACT_STDOUT = (
    "<local-command-stdout>Compacted (ctrl+o to see full summary)</local-command-stdout>"
)
SUMMARY_REQUEST = "Your task is to create a detailed summary of the conversation so far. "
COMPACT_SUMMARY_HEAD = (
    "This session is being continued from a previous conversation that ran out of context. "
    "The conversation is summarized below:\n"
)

RULES = {
    "ccusage": (
        "ccusage 20.0.24 `claude session --json`: entries = lines with top-level message.usage "
        "(type not checked; progress lines never qualify; lines failing strict JSON/UTF-8 parse "
        "skipped); global de-dup on (message.id, requestId) across all files, files in full-path "
        "byte order, a later duplicate replaces only if input+output+cache_creation+cache_read is "
        "strictly larger (non-sidechain preferred); cache_creation = "
        "sum(usage.cache_creation.ephemeral_*) when present else cache_creation_input_tokens; "
        "row = (project dir, session from path: <enc>/<uuid>.jsonl and <enc>/<uuid>/subagents/*); "
        "rows with zero total are omitted"
    ),
    "max_output": (
        "top-level type=='assistant' lines of main+subagent files, <synthetic> skipped, global "
        "groups by (message.id, requestId), output=max over the group, input/cache from the group, "
        "cache_creation=max(flat, sum(nested)); group attributed to the session it was first "
        "written by (resumed copies do not count again)"
    ),
    "session_local": (
        "as max_output but de-duplicated within a session only (resumed copies count for the "
        "resumed session as well)"
    ),
    "malformed": (
        "lines that are blank/whitespace-only or fail strict JSON (incl. UTF-8) parsing; kinds: "
        "truncated_json, blank, invalid_utf8, nul_bytes, partial_tail"
    ),
}


def local_command(name: str, args: str) -> str:
    return (
        f"<command-name>/{name}</command-name>\n            <command-message>{name}"
        f"</command-message>\n            <command-args>{args}</command-args>"
    )


def _vt(v: str) -> tuple:
    return tuple(int(x) for x in v.split("."))


def iso(ms: int) -> str:
    s, r = divmod(ms, 1000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(s))}.{r:03d}Z"


def parse_iso(s: str) -> int:
    s = s.rstrip("Z")
    frac = 0
    if "." in s:
        s, f = s.split(".", 1)
        frac = int((f + "000")[:3])
    return int(time.mktime(time.strptime(s, "%Y-%m-%dT%H:%M:%S")) - time.timezone) * 1000 + frac


# --------------------------------------------------------------- project-dir encoding (ref 1.2)


def _java_hash_utf16(s: str) -> int:
    h = 0
    units = s.encode("utf-16-le")
    for i in range(0, len(units), 2):
        h = (h * 31 + (units[i] | (units[i + 1] << 8))) & 0xFFFFFFFF
    return h - (1 << 32) if h >= (1 << 31) else h


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


def encode_project_dir(path: str) -> str:
    parts = []
    for ch in path:
        if ch.isascii() and ch.isalnum():
            parts.append(ch)
        else:
            parts.append("--" if ord(ch) > 0xFFFF else "-")
    enc = "".join(parts)
    if len(enc) <= 200:
        return enc
    return enc[:200] + "-" + _base36(abs(_java_hash_utf16(path)))


# ----------------------------------------------------------------------------- text pools


def build_pools(seed: int):
    r = random.Random(f"{seed}/pool")
    out = []
    total = 0
    while total < 1_200_000:
        k = r.random()
        if k < 0.35:
            ind = "    " * r.randint(0, 3)
            f = r.choice(IDENTS)
            args = ", ".join(r.choice(WORDS) for _ in range(r.randint(0, 3)))
            form = r.randint(0, 4)
            if form == 0:
                line = f"{ind}def {f}({args}):"
            elif form == 1:
                line = f"{ind}{r.choice(WORDS)} = {f}({args})"
            elif form == 2:
                word, op = r.choice(WORDS), r.choice(["==", "!=", "<", ">="])
                line = f"{ind}if {word} {op} {r.randint(0, 4096)}:"
            elif form == 3:
                line = f'{ind}return {f}({args}) {{ {r.choice(WORDS)}: "{r.choice(WORDS)}" }}'
            else:
                line = f"{ind}// {' '.join(r.choice(WORDS) for _ in range(r.randint(3, 10)))}"
        elif k < 0.88:
            n = r.randint(5, 22)
            line = " ".join(r.choice(WORDS) for _ in range(n))
            line = line[0].upper() + line[1:] + r.choice([".", ".", ":", "?", "!"])
        else:
            line = (
                f"{r.choice(['src', 'lib', 'tests', 'app'])}/{r.choice(IDENTS)}."
                f"{r.choice(FILE_EXT)}:{r.randint(1, 900)}:{r.randint(1, 80)} "
                f"{r.choice(['warning', 'error', 'note', 'info'])}: "
                f"{' '.join(r.choice(WORDS) for _ in range(r.randint(3, 9)))} "
                f"({r.randint(1, 999)}ms)"
            )
        if r.random() < 0.04:
            line += " " + r.choice(SPECIAL)
        if r.random() < 0.01:
            line += ' "quoted\\path\ttab"'
        out.append(line)
        total += len(line) + 1
    text = "\n".join(out)
    b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    sig = "".join(r.choice(b64) for _ in range(200_000))
    return text, sig


# ----------------------------------------------------------------------------- plan


def make_projects(rng: random.Random, n: int):
    users = ["dev", "marco", "alice", "sam"]
    user = rng.choice(users)
    home = f"/home/{user}"
    names = [
        "spotter",
        "contextd",
        "billing-api",
        "web-app",
        "infra",
        "dotfiles",
        "ml-pipeline",
        "docs-site",
        "mobile",
        "auth-service",
        "cli-tool",
        "data-lake",
        "scheduler",
        "gateway",
        "search",
        "notebooks",
        "payments",
        "frontend",
        "backend",
        "analytics",
        "edge-proxy",
        "sdk-python",
        "sdk-go",
        "design-system",
        "monorepo",
        "etl",
        "chatbot",
        "game-engine",
        "compiler",
        "kernel-mod",
        "blog",
        "wiki",
        "crm",
        "inventory",
        "reports",
        "exporter",
        "importer",
        "sandbox",
        "playground",
        "experiments",
        "prototype",
        "legacy-app",
        "migration-tool",
        "observability",
        "alerts",
        "feature-flags",
        "terraform",
        "ansible",
        "k8s-manifests",
        "helm-charts",
    ]
    rng.shuffle(names)
    specials = [
        f"{home}/projects/spotter-worktrees/spotter-dov",
        f"{home}/My Projects/site.v2",
        f"{home}/projets/café-app",
        f"{home}/work/acme/backend/services/billing_v2",
        f"{home}/work/acme/"
        + "/".join([f"very-long-directory-name-segment-{i:02d}" for i in range(6)])
        + "/app",
        f"{home}/src/my.app",
        f"{home}/src/my-app",  # encodes to the same folder as my.app
        "/srv/checkouts/infra",
        "/workspaces/devcontainer-demo",
    ]
    # ordinary project paths, then the special ones spread over the popularity ranks
    paths = []
    for i in range(n):
        base = rng.choice(
            [
                f"{home}/projects",
                f"{home}/work/acme",
                f"{home}/code",
                f"{home}/src/github.com/{user}",
            ]
        )
        paths.append(f"{base}/{names[i % len(names)]}" + ("" if i < len(names) else f"-{i}"))
    priority = [
        specials[5],
        specials[6],
        specials[4],
        specials[2],
        specials[1],
        specials[0],
        specials[3],
        specials[7],
        specials[8],
    ]  # collision pair first, then long path, non-ASCII, ...
    slots = list(range(1, n, 2)) + list(range(0, n, 2))
    for sp, slot in zip(priority, slots, strict=False):
        paths[slot] = sp

    def branch():
        return f"{rng.choice(['feat', 'fix', 'chore'])}/{rng.choice(WORDS)}-{rng.randint(1, 999)}"

    def src_file():
        top = rng.choice(["src", "lib", "tests", "app", "pkg"])
        return f"{top}/{rng.choice(IDENTS)}.{rng.choice(FILE_EXT)}"

    return [
        {
            "cwd": p,
            "enc": encode_project_dir(p),
            "branches": ["main"] + [branch() for _ in range(rng.randint(0, 3))],
            "files": [src_file() for _ in range(rng.randint(8, 40))],
            "subdirs": [rng.choice(["src", "lib", "tests", "docs", "scripts"]) for _ in range(3)],
        }
        for p in paths
    ]


def make_plan(args):
    rng = random.Random(f"{args.seed}/plan")
    n = args.sessions
    nproj = max(1, min(rng.randint(20, 50), n))
    projects = make_projects(rng, nproj)
    pweights = [1.0 / (i + 1) ** 0.9 for i in range(nproj)]
    end_ms = parse_iso(args.end_date)
    span = 30 * 86400 * 1000

    n_resumed = round(n * 0.06)
    if n >= 10:
        n_resumed = max(1, n_resumed)
    n_base = n - n_resumed

    sessions = []
    for i in range(n):
        old = rng.random() < 0.28
        version = rng.choice(OLD_VERSIONS if old else NEW_VERSIONS)
        vt = _vt(version)
        if old:
            model = rng.choices([SONNET45, OPUS46, HAIKU45], [0.7, 0.22, 0.08])[0]
        else:
            model = rng.choices([OPUS46, SONNET45, OPUS47, HAIKU45], [0.42, 0.25, 0.27, 0.06])[0]
        if model == OPUS47 or (model in (OPUS46, SONNET45) and not old and rng.random() < 0.1):
            window = 1_000_000
        else:
            window = 200_000
        if window == 1_000_000:
            threshold = 967_000
        elif vt <= (2, 1, 20):
            threshold = 155_000
        else:
            threshold = 167_000
        sessions.append(
            {
                "idx": i,
                "sid": None,  # filled below (uuid from plan rng)
                "project": rng.choices(range(nproj), pweights)[0],
                "version": version,
                "model": model,
                "window": window,
                "threshold": threshold,
                "ttl1h": (not old) and rng.random() < 0.3,
                "hooks": rng.choices([0, 1, 2, 3, 4], [0.45, 0.2, 0.15, 0.1, 0.1])[0],
                "thinking": rng.random() < 0.6,
                "weight": math.exp(rng.gauss(0.0, 1.0)),
                "start_ms": end_ms - span + int(rng.random() * span * 0.93),
                "resume_of": None,
                "switch_model": rng.random() < 0.1,
                "partial_tail": False,
            }
        )
        sessions[-1]["sid"] = _uuid(rng)
    # resumed sessions: the last n_resumed plan entries resume an older-version base session
    base_old = [s for s in sessions[:n_base] if _vt(s["version"]) < (2, 1, 0)]
    if not base_old and n_base:
        base_old = sessions[:n_base]
    for s in sessions[n_base:]:
        parent = rng.choice(base_old)
        s["resume_of"] = parent["idx"]
        s["project"] = parent["project"]
        s["version"] = (
            parent["version"]
            if rng.random() < 0.6
            else rng.choice(
                OLD_VERSIONS[OLD_VERSIONS.index(parent["version"]) :]
                if parent["version"] in OLD_VERSIONS
                else OLD_VERSIONS
            )
        )
        s["model"] = parent["model"]
        s["window"] = parent["window"]
        s["threshold"] = parent["threshold"]
        s["ttl1h"] = False
        s["weight"] *= 0.5
    for s in sessions:
        s["partial_tail"] = rng.random() < args.partial_tail_fraction
    return projects, sessions


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"


# ----------------------------------------------------------------------------- worker

_W = {}


def init_worker(seed, out_dir, projects, malformed_rate):
    text, sig = build_pools(seed)
    _W.update(
        seed=seed, out=out_dir, projects=projects, text=text, sig=sig, malformed_rate=malformed_rate
    )


class AgentState:
    __slots__ = ("P", "calls", "force_cr", "last_ms", "last_out", "model", "sys", "ttl_ms")

    def __init__(self, sys_tokens, ttl_ms, model):
        self.P = 0
        self.last_out = 0
        self.last_ms = -(10**15)
        self.sys = sys_tokens
        self.ttl_ms = ttl_ms
        self.force_cr = None
        self.model = model
        self.calls = 0


class Sink:
    """One output file of a session."""

    __slots__ = ("fh", "lines", "off", "path", "side")

    def __init__(self, path, side):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.fh = open(path, "wb", buffering=1 << 20)  # noqa: SIM115 (closed by the generator)
        self.off = 0
        self.lines = 0
        self.path = path
        self.side = side


def _add(acc, model, vals):
    a = acc.get(model)
    if a is None:
        acc[model] = list(vals)
    else:
        for i in range(4):
            a[i] += vals[i]


class SessionGen:
    def __init__(self, plan, budget, parent_info=None):
        self.plan = plan
        self.rng = random.Random(f"{_W['seed']}/session/{plan['idx']}")
        self.text = _W["text"]
        self.ntext = len(self.text)
        self.sigpool = _W["sig"]
        self.proj = _W["projects"][plan["project"]]
        self.sid = plan["sid"]
        self.version = plan["version"]
        self.vt = _vt(self.version)
        self.new = self.vt >= (2, 1, 0)
        self.subdirs_ok = self.vt >= (2, 1, 2)
        self.agent_progress = (2, 1, 2) <= self.vt <= (2, 1, 87)
        self.nested_cc = self.vt >= (2, 0, 0)
        self.newer = self.vt >= (2, 1, 87)
        self.newest = self.vt >= (2, 1, 150)
        self.branch = self.rng.choice(self.proj["branches"])
        self.cwd = self.proj["cwd"]
        self.slug = None
        self.budget = budget
        self.written = 0
        self.malformed_rate = _W["malformed_rate"]
        self.out_root = _W["out"]
        self.proj_dir = os.path.join(self.out_root, "projects", self.proj["enc"])
        self.main_path = os.path.join(self.proj_dir, self.sid + ".jsonl")
        self.now = plan["start_ms"]
        self.parent_uuid = None
        self.ttl_ms = 3_600_000 if plan["ttl1h"] else 300_000
        self.st = AgentState(self.rng.randint(11_000, 19_000), self.ttl_ms, plan["model"])
        self.scale = 1.0
        # accounting
        self.segments = []
        self.seg = None
        self.sub_usage = {}
        self.sub_ts = [None, None]
        self.sub_files = []
        self.line_types = {}
        self.malformed = {}
        self.compactions = []
        self.models = set()
        self.first_ts = None
        self.last_ts = None
        self.parent_info = parent_info

    # ------------------------------------------------------------------ primitives
    def txt(self, n):
        n = int(n)
        if n <= 0:
            return ""
        if n >= self.ntext - 1:
            reps = n // self.ntext + 1
            return (self.text * reps)[:n]
        o = self.rng.randrange(self.ntext - n)
        return self.text[o : o + n]

    def sz(self, median, sigma=0.9, lo=1, hi=200_000):
        """logical size (chars at scale 1)."""
        v = median * math.exp(self.rng.gauss(0.0, sigma))
        return max(lo, min(hi, v))

    def scaled(self, logical):
        return max(1, int(logical * self.scale))

    def uuid(self):
        return _uuid(self.rng)

    def msg_id(self):
        return "msg_01" + "".join(self.rng.choices(B58, k=22))

    def req_id(self):
        return "req_011C" + "".join(self.rng.choices(B58, k=20))

    def toolu(self):
        return "toolu_01" + "".join(self.rng.choices(B58, k=22))

    def hexs(self, n):
        return "".join(self.rng.choices(HEX, k=n))

    def tick(self, lo, hi):
        self.now += self.rng.randint(lo, hi)
        return self.now

    def ts(self):
        return iso(self.now)

    def base(self, side=False, agent_id=None, parent=None):
        d = {"parentUuid": parent, "isSidechain": side, "userType": "external"}
        if self.newer:
            d["entrypoint"] = "cli"
        d["cwd"] = self.cwd
        d["sessionId"] = self.sid
        d["version"] = self.version
        d["gitBranch"] = self.branch
        if agent_id is not None:
            d["agentId"] = agent_id
        if self.slug is not None:
            d["slug"] = self.slug
        return d

    def emit(self, sink, d, kind):
        b = DUMP(d, option=NL)
        sink.fh.write(b)
        n = len(b)
        sink.off += n
        sink.lines += 1
        self.written += n
        self.line_types[kind] = self.line_types.get(kind, 0) + 1
        if sink is self.main and self.seg is not None:
            self.seg["lines"] += 1
        if self.malformed_rate and self.rng.random() < self.malformed_rate:
            self.emit_malformed(sink, b, kind)
        return b

    def emit_malformed(self, sink, last, kind):
        r = self.rng.random()
        if r < 0.5:
            cut = self.rng.randint(1, max(1, len(last) - 3))
            bad, mk = last[:cut] + b"\n", "truncated_json"
        elif r < 0.72:
            bad, mk = self.rng.choice([b"\n", b"  \n", b"\t\n", b"\r\n"]), "blank"
        elif r < 0.95 and kind != "assistant":
            body = bytearray(last[:-1])
            pos = [i for i in range(1, len(body), max(1, len(body) // 64)) if 97 <= body[i] <= 122]
            if not pos:
                return
            i = self.rng.choice(pos)
            body[i : i + 1] = self.rng.choice([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xfe"])
            bad, mk = bytes(body) + b"\n", "invalid_utf8"
        else:
            bad, mk = b"\x00" * self.rng.randint(1, 64) + b"\n", "nul_bytes"
        sink.fh.write(bad)
        sink.off += len(bad)
        sink.lines += 1
        self.written += len(bad)
        self.malformed[mk] = self.malformed.get(mk, 0) + 1
        if sink is self.main and self.seg is not None:
            self.seg["lines"] += 1
            self.seg["malformed"][mk] = self.seg["malformed"].get(mk, 0) + 1

    def note_ts(self):
        if self.first_ts is None:
            self.first_ts = self.now
        self.last_ts = self.now

    # ------------------------------------------------------------------ segments
    def new_segment(self):
        self.close_segment()
        self.seg = {
            "lines": 0,
            "malformed": {},
            "compact": {"auto": 0, "manual": 0},
            "usage": {},
            "ts": [None, None],
        }

    def close_segment(self):
        if self.seg is not None:
            self.seg["off_end"] = self.main.off
            self.seg["last_uuid"] = self.parent_uuid
            self.seg["P"] = self.st.P
            self.seg["last_out"] = self.st.last_out
            self.seg["model"] = self.st.model
            self.seg["end_ms"] = self.now
            self.seg["cwd"] = self.cwd
            self.seg["slug"] = self.slug
            self.segments.append(self.seg)
            self.seg = None

    def account(self, side, model, vals, ts_ms):
        """record one API response group (values = [in, out, cc, cr]); ts = ccusage-kept line ts"""
        if side:
            _add(self.sub_usage, model, vals)
            t = self.sub_ts
        else:
            _add(self.seg["usage"], model, vals)
            t = self.seg["ts"]
        if t[0] is None or ts_ms < t[0]:
            t[0] = ts_ms
        if t[1] is None or ts_ms > t[1]:
            t[1] = ts_ms
        if model != SYNTH:
            self.models.add(model)

    # ------------------------------------------------------------------ API call
    def api_call(self, sink, st, delta, blocks, *, side=False, agent_id=None, progress=None):
        """Emit one streamed API response (1-4 assistant lines).

        blocks: content blocks, each carrying its logical output tokens in block['_tok'].
        Returns (uuid of the last line, final usage)."""
        rng = self.rng
        prompt = int(st.P + st.last_out + delta)
        warm = (self.now - st.last_ms) <= st.ttl_ms and st.calls > 0
        if st.force_cr is not None:
            cr = min(st.force_cr, prompt)
            st.force_cr = None
        elif warm:
            cr = st.P
        elif st.calls == 0:
            cr = int(st.sys * rng.uniform(0.5, 0.95)) if rng.random() < 0.7 else 0
        else:
            cr = min(st.sys, prompt) if rng.random() < 0.5 else 0
        inp = rng.randint(1, 12)
        cc = max(0, prompt - cr - inp)
        out_final = max(1, int(sum(b.pop("_tok") for b in blocks) + rng.randint(0, 60)))
        st.P = prompt
        st.last_out = out_final
        st.calls += 1
        model = st.model
        mid = self.msg_id()
        rid = self.req_id()
        style = "normal"
        x = rng.random()
        if x < 0.003:
            style = "nocache"
        elif x < 0.008 and self.nested_cc and self.vt < (2, 1, 152):
            style = "flat0"
        nlines = len(blocks)
        if nlines > 1 and rng.random() < 0.5:
            early = min(out_final, rng.randint(1, 30))
        else:
            early = out_final
        kept_ts = None
        geo = rng.choice(["global", "not_available"]) if self.new else None
        last_uuid = None
        for li, blk in enumerate(blocks):
            self.tick(150, 2500)
            out = out_final if li == nlines - 1 else early
            if kept_ts is None and out == out_final:
                kept_ts = self.now
            u = self.usage_obj(inp, out, cc, cr, style=style, geo=geo, final=(li == nlines - 1))
            msg = {
                "model": model,
                "id": mid,
                "type": "message",
                "role": "assistant",
                "content": [blk],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": u,
            }
            if li == nlines - 1 and rng.random() < 0.25:
                msg["stop_reason"] = "tool_use" if blk.get("type") == "tool_use" else "end_turn"
            d = self.base(side, agent_id, self.parent_uuid if not side else progress["parent"])
            d["message"] = msg
            d["requestId"] = rid
            d["type"] = "assistant"
            u_id = self.uuid()
            d["uuid"] = u_id
            d["timestamp"] = self.ts()
            if self.newest:
                d["apiBlockIndex"] = li
            self.emit(sink, d, "assistant")
            self.note_ts()
            if side:
                progress["parent"] = u_id
                if progress.get("copy"):
                    self.agent_progress_line(
                        {
                            "type": "assistant",
                            "timestamp": d["timestamp"],
                            "message": msg,
                            "requestId": rid,
                            "uuid": u_id,
                        },
                        progress,
                    )
            else:
                self.parent_uuid = u_id
            last_uuid = u_id
        st.last_ms = self.now
        flat = 0 if style == "flat0" else cc
        vals = (inp, out_final, 0, 0) if style == "nocache" else (inp, out_final, max(flat, cc), cr)
        self.account(side, model, vals, kept_ts)
        return last_uuid, {
            "input_tokens": inp,
            "cache_creation_input_tokens": cc,
            "cache_read_input_tokens": cr,
            "output_tokens": out_final,
        }

    def usage_obj(self, inp, out, cc, cr, *, style, geo, final):
        if style == "nocache":
            return {"input_tokens": inp, "output_tokens": out, "service_tier": "standard"}
        u = {
            "input_tokens": inp,
            "cache_creation_input_tokens": 0 if style == "flat0" else cc,
            "cache_read_input_tokens": cr,
        }
        if self.nested_cc:
            if self.plan["ttl1h"]:
                u["cache_creation"] = {
                    "ephemeral_5m_input_tokens": 0,
                    "ephemeral_1h_input_tokens": cc,
                }
            else:
                u["cache_creation"] = {
                    "ephemeral_5m_input_tokens": cc,
                    "ephemeral_1h_input_tokens": 0,
                }
        u["output_tokens"] = out
        if final and self.newer:
            u["server_tool_use"] = {"web_search_requests": 0, "web_fetch_requests": 0}
        u["service_tier"] = "standard"
        if geo is not None:
            u["inference_geo"] = geo
        if final and self.newest:
            it = {
                "input_tokens": inp,
                "output_tokens": out,
                "cache_read_input_tokens": cr,
                "cache_creation_input_tokens": cc,
                "type": "message",
            }
            u["iterations"] = [it]
        return u

    def synthetic_error(self):
        """API error: system api_error retries and sometimes a <synthetic> assistant line."""
        rng = self.rng
        for attempt in range(rng.randint(1, 3)):
            self.tick(500, 8000)
            d = self.base(False, None, self.parent_uuid)
            d.update(
                {
                    "type": "system",
                    "subtype": "api_error",
                    "level": "error",
                    "error": {"status": rng.choice([529, 500, 429]), "message": "Overloaded"},
                    "retryInMs": 1000 * (attempt + 1),
                    "retryAttempt": attempt + 1,
                    "maxRetries": 10,
                    "timestamp": self.ts(),
                    "uuid": self.uuid(),
                }
            )
            self.parent_uuid = d["uuid"]
            self.emit(self.main, d, "system")
        if rng.random() < 0.6:
            self.tick(100, 1000)
            d = self.base(False, None, self.parent_uuid)
            d["message"] = {
                "id": self.uuid(),
                "model": SYNTH,
                "role": "assistant",
                "stop_reason": "stop_sequence",
                "stop_sequence": "",
                "type": "message",
                "usage": {
                    "input_tokens": 0,
                    "output_tokens": 0,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 0,
                    "server_tool_use": {"web_search_requests": 0},
                    "service_tier": None,
                    "cache_creation": {
                        "ephemeral_1h_input_tokens": 0,
                        "ephemeral_5m_input_tokens": 0,
                    },
                },
                "content": [
                    {
                        "type": "text",
                        "text": API_ERROR_TEXT,
                    }
                ],
            }
            d["type"] = "assistant"
            d["uuid"] = self.uuid()
            d["timestamp"] = self.ts()
            d["isApiErrorMessage"] = True
            self.parent_uuid = d["uuid"]
            self.emit(self.main, d, "assistant")
            self.account(False, SYNTH, (0, 0, 0, 0), self.now)
            return True
        return False

    # ------------------------------------------------------------------ progress lines
    def hook_progress(self, event, name, tool_use_id):
        for k in range(self.plan["hooks"]):
            self.tick(5, 400)
            d = self.base(False, None, self.parent_uuid)
            d["type"] = "progress"
            d["data"] = {
                "type": "hook_progress",
                "hookEvent": event,
                "hookName": name,
                "command": [
                    "~/.claude/hooks/notify.sh",
                    "bun run ./dist/guard.js",
                    "uv run hooks/lint.py",
                    "${CLAUDE_PLUGIN_ROOT}/hooks/stop-hook.sh",
                ][k % 4],
            }
            d["parentToolUseID"] = tool_use_id
            d["toolUseID"] = tool_use_id
            d["timestamp"] = self.ts()
            d["uuid"] = self.uuid()
            self.parent_uuid = d["uuid"]
            self.emit(self.main, d, "progress")

    def agent_progress_line(self, inner, progress):
        if not self.agent_progress:
            return
        d = self.base(False, None, self.parent_uuid)
        d["type"] = "progress"
        d["data"] = {
            "message": inner,
            "normalizedMessages": [],
            "type": "agent_progress",
            "prompt": progress["prompt"],
            "agentId": progress["agent_id"],
        }
        d["toolUseID"] = progress["tool_use_id_msg"]
        d["parentToolUseID"] = progress["tool_use_id"]
        d["uuid"] = self.uuid()
        d["timestamp"] = inner["timestamp"]
        self.parent_uuid = d["uuid"]
        self.emit(self.main, d, "progress")

    # ------------------------------------------------------------------ tools
    def make_tool(self, name, sub=False):
        """returns (tool_use block incl _tok, result_logical_chars, result-builder info)"""
        rng = self.rng
        f = rng.choice(self.proj["files"])
        fpath = f"{self.proj['cwd']}/{f}"
        tid = self.toolu()
        if name == "Read":
            inp = {"file_path": fpath}
            if rng.random() < 0.2:
                inp.update({"offset": rng.randint(1, 400), "limit": rng.choice([100, 200, 500])})
            res = self.sz(4000, 1.0, 80, 80_000)
        elif name == "Bash":
            cmd = rng.choice(
                [
                    "npm test",
                    "pytest -x -q",
                    "git status",
                    "git diff --stat",
                    "ls -la",
                    "cargo build 2>&1 | tail -50",
                    "make lint",
                    "rg -n TODO src",
                    "go test ./...",
                    f"cat {f}",
                    "docker ps",
                    "uv run pytest tests/",
                    "mix test",
                ]
            )
            inp = {
                "command": cmd,
                "description": " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6))),
            }
            if rng.random() < 0.2:
                inp["timeout"] = rng.choice([30000, 120000, 600000])
            res = self.sz(900, 1.3, 0, 40_000)
        elif name == "Edit":
            old = self.txt(self.scaled(self.sz(400, 0.8, 10, 6000)))
            new = self.txt(self.scaled(self.sz(500, 0.8, 10, 8000)))
            inp = {"file_path": fpath, "old_string": old, "new_string": new}
            if rng.random() < 0.1:
                inp["replace_all"] = False
            res = self.sz(600, 0.6, 100, 4000)
        elif name == "Write":
            content = self.txt(self.scaled(self.sz(3000, 0.9, 50, 40_000)))
            inp = {"file_path": fpath, "content": content}
            res = 120
        elif name == "Grep":
            inp = {
                "pattern": rng.choice(IDENTS),
                "path": self.proj["cwd"],
                "output_mode": rng.choice(["content", "files_with_matches"]),
            }
            res = self.sz(1200, 1.0, 20, 30_000)
        elif name == "Glob":
            inp = {"pattern": f"**/*.{rng.choice(FILE_EXT)}"}
            res = self.sz(400, 0.8, 10, 10_000)
        elif name == "TodoWrite":
            inp = {
                "todos": [
                    {
                        "content": " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 9))),
                        "status": rng.choice(["pending", "in_progress", "completed"]),
                        "activeForm": " ".join(rng.choice(WORDS) for _ in range(3)),
                    }
                    for _ in range(rng.randint(2, 7))
                ]
            }
            res = 180
        elif name == "WebFetch":
            inp = {
                "url": f"https://docs.example.org/{rng.choice(WORDS)}/{rng.choice(WORDS)}",
                "prompt": "Summarize",
            }
            res = self.sz(3000, 0.7, 200, 20_000)
        else:  # Task
            inp = {
                "description": " ".join(rng.choice(WORDS) for _ in range(3)),
                "prompt": self.txt(self.scaled(self.sz(700, 0.6, 100, 5000))),
                "subagent_type": rng.choice(["Explore", "general-purpose", "Plan"]),
            }
            res = 0
        tok = sum(len(v) if isinstance(v, str) else 20 for v in inp.values()) / CHARS_PER_TOKEN + 15
        blk = {"type": "tool_use", "id": tid, "name": name, "input": inp}
        if self.new:
            blk["caller"] = {"type": "direct"}
        blk["_tok"] = tok
        return blk, res

    def tool_result_line(
        self, sink, blk, res_logical, *, side=False, agent_id=None, parent=None, task=None
    ):
        """User line carrying a tool_result + toolUseResult.

        Returns (uuid, model-visible tokens, the line dict)."""
        rng = self.rng
        name = blk["name"]
        content = self.txt(self.scaled(res_logical)) if res_logical else ""
        is_error = rng.random() < 0.04
        tur = None
        if name == "Read":
            numbered = content
            tur = {
                "type": "text",
                "file": {
                    "filePath": blk["input"]["file_path"],
                    "content": content,
                    "numLines": content.count("\n") + 1,
                    "startLine": 1,
                    "totalLines": content.count("\n") + 1 + rng.randint(0, 300),
                },
            }
            content = numbered
        elif name == "Bash":
            tur = {
                "stdout": content,
                "stderr": "",
                "interrupted": False,
                "isImage": False,
                "noOutputExpected": False,
            }
        elif name == "Edit":
            orig = self.txt(self.scaled(self.sz(6000, 1.0, 200, 80_000)))
            tur = {
                "filePath": blk["input"]["file_path"],
                "oldString": blk["input"]["old_string"],
                "newString": blk["input"]["new_string"],
                "originalFile": orig,
                "structuredPatch": [
                    {
                        "oldStart": rng.randint(1, 500),
                        "oldLines": 5,
                        "newStart": 1,
                        "newLines": 6,
                        "lines": content.split("\n")[:12],
                    }
                ],
                "userModified": False,
                "replaceAll": False,
            }
            content = (
                f"The file {blk['input']['file_path']} has been updated. {EDIT_RESULT_TAIL}"
                + content
            )
        elif name == "Write":
            content = f"File created successfully at: {blk['input']['file_path']}"
            tur = {
                "type": "create",
                "filePath": blk["input"]["file_path"],
                "content": blk["input"]["content"],
                "structuredPatch": [],
            }
        elif name == "Grep":
            tur = {
                "mode": blk["input"]["output_mode"],
                "numFiles": rng.randint(1, 30),
                "filenames": [],
                "content": content,
                "numLines": content.count("\n") + 1,
            }
        elif name == "Glob":
            tur = {
                "filenames": content.split("\n")[:50],
                "durationMs": rng.randint(2, 90),
                "numFiles": 50,
                "truncated": False,
            }
        elif name == "TodoWrite":
            content = TODO_RESULT
            tur = {"oldTodos": [], "newTodos": blk["input"]["todos"]}
        elif name == "WebFetch":
            tur = {
                "bytes": len(content) * 3,
                "code": 200,
                "codeText": "OK",
                "result": content,
                "durationMs": rng.randint(300, 9000),
                "url": blk["input"]["url"],
            }
        elif name == "Task":
            tur, content, task_logical = task
        if is_error and name in ("Bash", "Read", "Edit"):
            content = (
                "<tool_use_error>"
                + " ".join(rng.choice(WORDS) for _ in range(8))
                + "</tool_use_error>"
            )
            tur = "Error: " + content
        d = self.base(side, agent_id, parent)
        d["type"] = "user"
        d["message"] = {
            "role": "user",
            "content": [
                {
                    "tool_use_id": blk["id"],
                    "type": "tool_result",
                    "content": content,
                    "is_error": is_error,
                }
            ],
        }
        d["uuid"] = self.uuid()
        d["timestamp"] = self.ts()
        if tur is not None:
            d["toolUseResult"] = tur
        d["sourceToolAssistantUUID"] = parent
        self.emit(sink, d, "user")
        vis = res_logical if name != "Task" else task_logical
        if name == "Edit":
            vis += 150
        return d["uuid"], vis / CHARS_PER_TOKEN + 8, d

    def pick_tool(self, sub=False):
        rng = self.rng
        if sub:
            return rng.choices(["Read", "Grep", "Glob", "Bash"], [0.5, 0.25, 0.15, 0.1])[0]
        names = ["Read", "Bash", "Edit", "Grep", "Glob", "Write", "TodoWrite", "WebFetch", "Task"]
        w = [0.30, 0.25, 0.15, 0.08, 0.05, 0.04, 0.05, 0.02, 0.035 if self.subdirs_ok else 0.0]
        return rng.choices(names, w)[0]

    def assistant_blocks(self, tools, final, sub=False):
        rng = self.rng
        blocks = []
        if self.plan["thinking"] and not sub and rng.random() < 0.45:
            lg = self.sz(700, 0.9, 40, 12_000)
            blocks.append(
                {
                    "type": "thinking",
                    "thinking": self.txt(self.scaled(lg)),
                    "signature": self._sig(),
                    "_tok": lg / CHARS_PER_TOKEN,
                }
            )
        if final or rng.random() < 0.55:
            lg = self.sz(1400 if final else 250, 1.0, 2, 20_000)
            blocks.append(
                {"type": "text", "text": self.txt(self.scaled(lg)), "_tok": lg / CHARS_PER_TOKEN}
            )
        blocks.extend(tools)
        if len(blocks) > 4:
            extra = blocks[4:]
            blocks = blocks[:4]
            blocks[-1]["_tok"] += sum(b["_tok"] for b in extra)
        if not blocks:
            lg = self.sz(300, 1.0, 2, 5000)
            blocks.append(
                {"type": "text", "text": self.txt(self.scaled(lg)), "_tok": lg / CHARS_PER_TOKEN}
            )
        return blocks

    def _sig(self):
        n = self.scaled(self.rng.randint(300, 1600))
        n = min(n, len(self.sigpool) - 1)
        o = self.rng.randrange(len(self.sigpool) - n)
        return "Er" + self.sigpool[o : o + n]

    # ------------------------------------------------------------------ sub-agent
    def run_subagent(self, task_blk):
        rng = self.rng
        kind = task_blk["input"]["subagent_type"]
        agent_id = "a" + self.hexs(7 if self.vt <= (2, 1, 39) else 16)
        path = os.path.join(self.proj_dir, self.sid, "subagents", f"agent-{agent_id}.jsonl")
        sink = Sink(path, True)
        self.sub_files.append(sink)
        model = HAIKU45 if kind == "Explore" else self.st.model
        st = AgentState(rng.randint(6_000, 14_000), 300_000, model)
        prompt = task_blk["input"]["prompt"]
        progress = {
            "parent": None,
            "prompt": prompt,
            "agent_id": agent_id,
            "tool_use_id": task_blk["id"],
            "tool_use_id_msg": "agent_msg_" + self.msg_id()[4:],
            "copy": self.agent_progress,
        }
        self.tick(50, 400)
        d = self.base(True, agent_id, None)
        d["type"] = "user"
        d["message"] = {"role": "user", "content": prompt}
        d["uuid"] = self.uuid()
        d["timestamp"] = self.ts()
        self.emit(sink, d, "user")
        progress["parent"] = d["uuid"]
        self.agent_progress_line(
            {
                "type": "user",
                "message": d["message"],
                "uuid": d["uuid"],
                "timestamp": d["timestamp"],
            },
            progress,
        )
        delta = st.sys + len(prompt) / CHARS_PER_TOKEN
        rounds = rng.randint(2, 18)
        tool_calls = 0
        last_usage = None
        for r in range(rounds):
            final = r == rounds - 1 or self.written >= self.budget
            tools = (
                []
                if final
                else [
                    self.make_tool(self.pick_tool(True), True)
                    for _ in range(rng.choice([1, 1, 1, 2, 3]))
                ]
            )
            blocks = self.assistant_blocks([t[0] for t in tools], final, sub=True)
            last, last_usage = self.api_call(
                sink, st, delta, blocks, side=True, agent_id=agent_id, progress=progress
            )
            if final:
                answer = blocks[-1].get("text", "")
                break
            delta = 0
            for blk, res in tools:
                tool_calls += 1
                self.tick(20, 3000)
                uid, vis, ud = self.tool_result_line(
                    sink, blk, res, side=True, agent_id=agent_id, parent=last
                )
                progress["parent"] = uid
                delta += vis
                if progress["copy"] and rng.random() < 0.5:
                    self.agent_progress_line(
                        {
                            "type": "user",
                            "message": ud["message"],
                            "uuid": uid,
                            "timestamp": ud["timestamp"],
                        },
                        progress,
                    )
        sink.fh.close()
        ans_logical = max(50, len(answer) / max(self.scale, 1e-6))
        result = {
            "status": "completed",
            "prompt": prompt,
            "agentId": agent_id,
            "content": [{"type": "text", "text": answer}],
            "totalDurationMs": rng.randint(5_000, 400_000),
            "totalTokens": sum(last_usage.values()),
            "totalToolUseCount": tool_calls,
            "usage": dict(
                last_usage,
                service_tier="standard",
                cache_creation={
                    "ephemeral_1h_input_tokens": 0,
                    "ephemeral_5m_input_tokens": last_usage["cache_creation_input_tokens"],
                },
            ),
        }
        content = [
            {"type": "text", "text": answer},
            {
                "type": "text",
                "text": f"agentId: {agent_id} {AGENT_ID_TAIL}",
            },
        ]
        return result, content, ans_logical + 40

    # ------------------------------------------------------------------ compaction
    def compact(self, trigger):
        rng = self.rng
        st = self.st
        pre = st.P + st.last_out
        summary_tokens = rng.randint(2_500, 9_000)
        if trigger == "manual":
            self.tick(1000, 30_000)
            for content in [
                local_command("compact", ""),
                COMPACT_STDOUT,
            ]:
                d = self.base(False, None, self.parent_uuid)
                d.update(
                    {
                        "type": "system",
                        "subtype": "local_command",
                        "content": content,
                        "level": "info",
                        "timestamp": self.ts(),
                        "uuid": self.uuid(),
                        "isMeta": False,
                    }
                )
                self.parent_uuid = d["uuid"]
                self.emit(self.main, d, "system")
        start = self.now
        if self.subdirs_ok:
            cid = "acompact-" + self.hexs(6)
            sink = Sink(
                os.path.join(self.proj_dir, self.sid, "subagents", f"agent-{cid}.jsonl"), True
            )
            self.sub_files.append(sink)
            par = self.parent_uuid
            for _ in range(rng.randint(0, 3)):
                self.tick(10, 200)
                d = self.base(True, cid, par)
                d.update(
                    {
                        "type": "user",
                        "message": {
                            "role": "user",
                            "content": "<system-reminder>\n"
                            + self.txt(self.scaled(self.sz(900, 0.8, 50, 6000)))
                            + "\n</system-reminder>",
                        },
                        "isMeta": True,
                        "uuid": self.uuid(),
                        "timestamp": self.ts(),
                    }
                )
                par = d["uuid"]
                self.emit(sink, d, "user")
            self.tick(10, 200)
            d = self.base(True, cid, par)
            d.update(
                {
                    "type": "user",
                    "message": {
                        "role": "user",
                        "content": SUMMARY_REQUEST + self.txt(self.scaled(8500)),
                    },
                    "uuid": self.uuid(),
                    "timestamp": self.ts(),
                }
            )
            self.emit(sink, d, "user")
            cst = AgentState(st.sys, st.ttl_ms, st.model)
            # the summarisation request re-reads the cached conversation
            cst.P, cst.last_out, cst.last_ms, cst.calls = st.P, st.last_out, st.last_ms, st.calls
            slog = summary_tokens * CHARS_PER_TOKEN
            blocks = [{"type": "text", "text": self.txt(self.scaled(slog)), "_tok": summary_tokens}]
            if rng.random() < 0.5:
                blocks.insert(0, {"type": "text", "text": "\n\n", "_tok": 0})
            self.api_call(
                sink,
                cst,
                2_400,
                blocks,
                side=True,
                agent_id=cid,
                progress={"parent": d["uuid"], "copy": False},
            )
            sink.fh.close()
        else:
            self.tick(20_000, 90_000)
        self.tick(5, 50)
        post = st.sys + summary_tokens + rng.randint(1_000, 12_000)
        meta = {"trigger": trigger, "preTokens": pre}
        if self.newer:
            meta["postTokens"] = post
            meta["cumulativeDroppedTokens"] = (
                sum(c[1] - (c[2] or 0) for c in self.compactions) + pre - post
            )
            meta["durationMs"] = self.now - start
        d = {
            "parentUuid": None,
            "logicalParentUuid": self.parent_uuid,
            "isSidechain": False,
            "userType": "external",
        }
        d.update(
            {
                k: v
                for k, v in self.base().items()
                if k not in ("parentUuid", "isSidechain", "userType")
            }
        )
        d.update(
            {
                "type": "system",
                "subtype": "compact_boundary",
                "content": "Conversation compacted",
                "isMeta": False,
                "timestamp": self.ts(),
                "uuid": self.uuid(),
                "level": "info",
                "compactMetadata": meta,
            }
        )
        self.parent_uuid = d["uuid"]
        self.emit(self.main, d, "system")
        self.seg["compact"][trigger] += 1
        self.compactions.append([trigger, pre, post if self.newer else None, self.ts()])
        d = self.base(False, None, self.parent_uuid)
        d.update(
            {
                "type": "user",
                "message": {
                    "role": "user",
                    "content": COMPACT_SUMMARY_HEAD
                    + self.txt(self.scaled(summary_tokens * CHARS_PER_TOKEN)),
                },
                "isVisibleInTranscriptOnly": True,
                "isCompactSummary": True,
                "uuid": self.uuid(),
                "timestamp": self.ts(),
            }
        )
        self.parent_uuid = d["uuid"]
        self.emit(self.main, d, "user")
        st.P = post
        st.last_out = 0
        st.force_cr = st.sys

    # ------------------------------------------------------------------ one turn
    def turn(self, t):
        rng = self.rng
        st = self.st
        # user think time / idle
        if t > 0:
            x = rng.random()
            if x < 0.03:
                self.tick(3_600_000, 20 * 3_600_000)
            elif x < 0.18:
                self.tick(300_000, 3_000_000)
            else:
                self.tick(4_000, 240_000)
        if t > 0 and rng.random() < 0.03:  # the live cwd wanders into a subdirectory and back
            root = self.proj["cwd"]
            self.cwd = root if self.cwd != root else f"{root}/{rng.choice(self.proj['subdirs'])}"
        if self.plan["switch_model"] and t == self.switch_at:
            newm = rng.choice([m for m in (OPUS46, SONNET45, OPUS47, HAIKU45) if m != st.model])
            for content in [
                local_command("model", newm),
                f"<local-command-stdout>Set model to \x1b[1m{newm}\x1b[22m</local-command-stdout>",
            ]:
                d = self.base(False, None, self.parent_uuid)
                d.update(
                    {
                        "type": "system",
                        "subtype": "local_command",
                        "content": content,
                        "level": "info",
                        "timestamp": self.ts(),
                        "uuid": self.uuid(),
                        "isMeta": False,
                    }
                )
                self.parent_uuid = d["uuid"]
                self.emit(self.main, d, "system")
            st.model = newm
        if rng.random() < 0.03:
            for content in [
                "<command-name>/context</command-name>",
                "<local-command-stdout>Context Usage\n"
                + self.txt(self.scaled(600))
                + "</local-command-stdout>",
            ]:
                d = self.base(False, None, self.parent_uuid)
                d.update(
                    {
                        "type": "system",
                        "subtype": "local_command",
                        "content": content,
                        "level": "info",
                        "timestamp": self.ts(),
                        "uuid": self.uuid(),
                        "isMeta": False,
                    }
                )
                self.parent_uuid = d["uuid"]
                self.emit(self.main, d, "system")
        # compaction before the next query
        ctx = st.P + st.last_out
        if ctx >= self.plan["threshold"]:
            self.compact("auto")
        elif ctx > 60_000 and rng.random() < 0.02:
            self.compact("manual")
        # the prompt
        prompt_uuid = self.uuid()
        if self.new or self.vt >= (1, 0, 80):
            d = {
                "type": "file-history-snapshot",
                "messageId": prompt_uuid,
                "snapshot": {
                    "messageId": prompt_uuid,
                    "trackedFileBackups": {
                        f: {
                            "backupFileName": f"{self.hexs(16)}@v{k + 1}",
                            "version": k + 1,
                            "backupTime": self.ts(),
                        }
                        for k, f in enumerate(
                            rng.sample(
                                self.proj["files"], min(len(self.proj["files"]), rng.randint(0, 4))
                            )
                        )
                    },
                    "timestamp": self.ts(),
                },
                "isSnapshotUpdate": False,
            }
            self.emit(self.main, d, "file-history-snapshot")
        if rng.random() < 0.05:
            qc = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 30)))
            for op in ("enqueue", "dequeue") if rng.random() < 0.7 else ("enqueue", "remove"):
                self.tick(10, 5000)
                self.emit(
                    self.main,
                    {
                        "type": "queue-operation",
                        "operation": op,
                        "timestamp": self.ts(),
                        "sessionId": self.sid,
                        **({"content": qc} if op == "enqueue" else {}),
                    },
                    "queue-operation",
                )
        self.tick(10, 500)
        lg = self.sz(260, 1.2, 5, 12_000)
        text = self.txt(self.scaled(lg))
        d = self.base(False, None, self.parent_uuid)
        d["type"] = "user"
        d["message"] = {
            "role": "user",
            "content": text if rng.random() < 0.8 else [{"type": "text", "text": text}],
        }
        d["uuid"] = prompt_uuid
        d["timestamp"] = self.ts()
        if self.new:
            d["thinkingMetadata"] = {"maxThinkingTokens": 31999 if self.plan["thinking"] else 0}
            d["todos"] = []
            d["permissionMode"] = rng.choice(["default", "acceptEdits", "bypassPermissions"])
        if self.newer:
            d["promptId"] = self.uuid()
        self.parent_uuid = prompt_uuid
        self.emit(self.main, d, "user")
        self.hook_progress("UserPromptSubmit", "UserPromptSubmit", self.uuid())
        turn_start = self.now
        delta = lg / CHARS_PER_TOKEN + (0 if st.calls else st.sys)
        if st.calls == 0:
            delta += rng.randint(2_000, 8_000)  # CLAUDE.md / env context
        rounds = 1 + min(29, int(rng.expovariate(1 / 3.8)))
        for r in range(rounds):
            final = r == rounds - 1 or self.written >= self.budget
            if rng.random() < 0.004:
                self.synthetic_error()
            n_tools = 0 if final else rng.choices([1, 2, 3], [0.8, 0.15, 0.05])[0]
            tools = [self.make_tool(self.pick_tool()) for _ in range(n_tools)]
            blocks = self.assistant_blocks([tb for tb, _ in tools], final)
            last, _u = self.api_call(self.main, st, delta, blocks)
            if self.slug is None and self.new:
                self.slug = "-".join(rng.choice(WORDS) for _ in range(3))
            if final:
                break
            delta = 0
            for blk, res in tools:
                self.hook_progress("PreToolUse", f"PreToolUse:{blk['name']}", blk["id"])
                task = None
                if blk["name"] == "Task":
                    task = self.run_subagent(blk)
                elif blk["name"] == "Bash" and rng.random() < 0.4:
                    full = ""
                    for k in range(rng.randint(1, 5)):
                        self.tick(1000, 6000)
                        chunk = self.txt(self.scaled(self.sz(150, 0.6, 10, 2000)))
                        full = (full + "\n" + chunk)[-self.scaled(5000) :]
                        d = self.base(False, None, self.parent_uuid)
                        d["type"] = "progress"
                        d["data"] = {
                            "type": "bash_progress",
                            "output": chunk,
                            "fullOutput": full,
                            "elapsedTimeSeconds": k + 1,
                            "totalLines": full.count("\n") + 1,
                            "timeoutMs": blk["input"].get("timeout", 120000),
                        }
                        d["toolUseID"] = f"bash-progress-{k}"
                        d["parentToolUseID"] = blk["id"]
                        d["uuid"] = self.uuid()
                        d["timestamp"] = self.ts()
                        self.parent_uuid = d["uuid"]
                        self.emit(self.main, d, "progress")
                else:
                    self.tick(5, 4000 if blk["name"] != "Bash" else 45_000)
                self.hook_progress("PostToolUse", f"PostToolUse:{blk['name']}", blk["id"])
                uid, vis, _ = self.tool_result_line(self.main, blk, res, parent=last, task=task)
                self.parent_uuid = uid
                delta += vis
                if blk["name"] in ("Edit", "Write") and (self.new or self.vt >= (1, 0, 80)):
                    d = {
                        "type": "file-history-snapshot",
                        "messageId": prompt_uuid,
                        "snapshot": {
                            "messageId": prompt_uuid,
                            "trackedFileBackups": {
                                blk["input"]["file_path"]: {
                                    "backupFileName": f"{self.hexs(16)}@v1",
                                    "version": 1,
                                    "backupTime": self.ts(),
                                }
                            },
                            "timestamp": self.ts(),
                        },
                        "isSnapshotUpdate": True,
                    }
                    self.emit(self.main, d, "file-history-snapshot")
        if self.plan["hooks"] and self.new:
            self.tick(20, 3000)
            d = self.base(False, None, self.parent_uuid)
            d.update(
                {
                    "type": "system",
                    "subtype": "stop_hook_summary",
                    "hookCount": self.plan["hooks"],
                    "hookInfos": [{"command": "~/.claude/hooks/notify.sh"}] * self.plan["hooks"],
                    "hookErrors": [],
                    "preventedContinuation": False,
                    "stopReason": "",
                    "hasOutput": True,
                    "level": "suggestion",
                    "timestamp": self.ts(),
                    "uuid": self.uuid(),
                    "toolUseID": self.uuid(),
                }
            )
            self.parent_uuid = d["uuid"]
            self.emit(self.main, d, "system")
        if self.new and rng.random() < 0.5:
            d = self.base(False, None, self.parent_uuid)
            d.update(
                {
                    "type": "system",
                    "subtype": "turn_duration",
                    "durationMs": self.now - turn_start,
                    "timestamp": self.ts(),
                    "uuid": self.uuid(),
                    "isMeta": False,
                }
            )
            self.parent_uuid = d["uuid"]
            self.emit(self.main, d, "system")

    # ------------------------------------------------------------------ driver
    def run(self):
        rng = self.rng
        plan = self.plan
        self.main = Sink(self.main_path, False)
        n_turns = max(1, min(800, round(self.budget / NOMINAL_TURN_BYTES)))
        self.scale = scale0 = max(0.02, min(40.0, self.budget / (n_turns * NOMINAL_TURN_BYTES)))
        self.switch_at = rng.randint(1, max(1, n_turns - 1)) if plan["switch_model"] else -1
        copied = None
        if self.parent_info is not None:
            copied = self.copy_parent()
        self.new_segment()
        if copied is None:
            if not self.new and rng.random() < 0.4:
                for _ in range(rng.randint(1, 3)):
                    self.emit(
                        self.main,
                        {
                            "type": "summary",
                            "summary": " ".join(
                                rng.choice(WORDS) for _ in range(rng.randint(3, 9))
                            ).capitalize(),
                            "leafUuid": self.uuid(),
                        },
                        "summary",
                    )
            if self.new:
                self.hook_progress("SessionStart", "SessionStart:startup", self.uuid())
        # turns until the byte budget is used up (the turn that crosses it is the last one)
        t_max = max(3, 3 * n_turns)
        t = 0
        while True:
            if t > 0:
                self.new_segment()
            self.turn(t)
            t += 1
            if self.written >= self.budget or t >= t_max:
                break
            # feedback on the content scale so that ~n_turns turns fill the budget
            want = self.budget * min(t, n_turns - 1 if n_turns > 1 else 1) / n_turns
            ratio = want / max(1, self.written)
            self.scale = max(
                0.25 * scale0, min(2.0 * scale0, self.scale * max(0.7, min(1.4, ratio)))
            )
        self.close_segment()
        if plan["partial_tail"]:
            last = DUMP(
                self.base(False, None, self.parent_uuid)
                | {
                    "type": "progress",
                    "data": {
                        "type": "hook_progress",
                        "hookEvent": "Stop",
                        "hookName": "Stop",
                        "command": "x",
                    },
                    "timestamp": self.ts(),
                    "uuid": self.uuid(),
                }
            )
            cut = rng.randint(5, len(last) - 2)
            self.main.fh.write(last[:cut])
            self.main.off += cut
            self.written += cut
            self.main.lines += 1
            self.malformed["partial_tail"] = self.malformed.get("partial_tail", 0) + 1
        self.main.fh.close()
        return self.result(copied)

    def copy_parent(self):
        """resumed session: summary lines + verbatim copy of the parent's first k segments."""
        pi = self.parent_info
        rng = self.rng
        k = pi["k"]
        seg = pi["segments"][k - 1]
        # summary lines written at the top of a resumed file by old builds
        for _ in range(rng.randint(0, 2)):
            self.emit(
                self.main,
                {
                    "type": "summary",
                    "summary": " ".join(
                        rng.choice(WORDS) for _ in range(rng.randint(3, 9))
                    ).capitalize(),
                    "leafUuid": seg["last_uuid"],
                },
                "summary",
            )
        nbytes = seg["off_end"]
        with open(pi["path"], "rb") as src:
            left = nbytes
            while left:
                chunk = src.read(min(left, 1 << 20))
                if not chunk:
                    raise RuntimeError("parent file shorter than expected")
                self.main.fh.write(chunk)
                left -= len(chunk)
        self.main.off += nbytes
        self.written += nbytes
        nl = sum(s["lines"] for s in pi["segments"][:k])
        self.main.lines += nl
        for s in pi["segments"][:k]:
            for mk, c in s["malformed"].items():
                self.malformed[mk] = self.malformed.get(mk, 0) + c
        # continue the conversation where the copy ends
        self.parent_uuid = seg["last_uuid"]
        self.st.P = seg["P"]
        self.st.last_out = seg["last_out"]
        self.st.model = seg["model"]
        self.st.calls = 1
        self.st.last_ms = seg["end_ms"]
        self.cwd = seg["cwd"]
        self.now = max(self.now, pi["last_ms"] + rng.randint(3_600_000, 5 * 86_400_000))
        copied_compact = {
            "auto": sum(s["compact"]["auto"] for s in pi["segments"][:k]),
            "manual": sum(s["compact"]["manual"] for s in pi["segments"][:k]),
        }
        return {"k": k, "bytes": nbytes, "lines": nl, "compact": copied_compact}

    def result(self, copied):
        files = [
            {
                "path": os.path.relpath(self.main.path, self.out_root),
                "bytes": self.main.off,
                "lines": self.main.lines,
            }
        ]
        files.extend(
            {"path": os.path.relpath(s.path, self.out_root), "bytes": s.off, "lines": s.lines}
            for s in self.sub_files
        )
        segs = [
            {
                k: s[k]
                for k in (
                    "off_end",
                    "lines",
                    "malformed",
                    "compact",
                    "usage",
                    "ts",
                    "last_uuid",
                    "P",
                    "last_out",
                    "model",
                    "end_ms",
                    "cwd",
                )
            }
            for s in self.segments
        ]
        return {
            "idx": self.plan["idx"],
            "sid": self.sid,
            "files": files,
            "segments": segs,
            "sub_usage": self.sub_usage,
            "sub_ts": self.sub_ts,
            "line_types": self.line_types,
            "malformed": self.malformed,
            "compactions": self.compactions,
            "models": sorted(self.models),
            "first_ms": self.first_ts,
            "last_ms": self.now,
            "written": self.written,
            "copied": copied,
            "main_path": self.main.path,
        }


def gen_session(job):
    plan, budget, parent_info = job
    g = SessionGen(plan, budget, parent_info)
    return g.run()


# ----------------------------------------------------------------------------- manifest


def _tok(acc):
    t = [0, 0, 0, 0]
    for v in acc.values():
        for i in range(4):
            t[i] += v[i]
    return {
        "input": t[0],
        "output": t[1],
        "cache_creation": t[2],
        "cache_read": t[3],
        "total": sum(t),
    }


def _by_model(acc):
    return {
        m: {"input": v[0], "output": v[1], "cache_creation": v[2], "cache_read": v[3]}
        for m, v in sorted(acc.items())
        if m != SYNTH
    }


def _merge(dst, src):
    for m, v in src.items():
        _add(dst, m, v)


def build_manifest(args, projects, plan, results, elapsed):
    by_idx = {r["idx"]: r for r in results}
    resumers = {}
    for p in plan:
        if p["resume_of"] is not None:
            resumers.setdefault(p["resume_of"], []).append(p["idx"])
    cc_usage = {p["idx"]: {} for p in plan}
    cc_ts = {p["idx"]: [None, None] for p in plan}
    mo_usage = {p["idx"]: {} for p in plan}
    loc_usage = {p["idx"]: {} for p in plan}

    def ts_merge(dst, src):
        if src[0] is not None and (dst[0] is None or src[0] < dst[0]):
            dst[0] = src[0]
        if src[1] is not None and (dst[1] is None or src[1] > dst[1]):
            dst[1] = src[1]

    for p in plan:
        r = by_idx[p["idx"]]
        i = p["idx"]
        # own (non-copied) segments + sub-agent files
        _merge(mo_usage[i], r["sub_usage"])
        _merge(loc_usage[i], r["sub_usage"])
        _merge(cc_usage[i], r["sub_usage"])
        ts_merge(cc_ts[i], r["sub_ts"])
        for t, s in enumerate(r["segments"]):
            _merge(mo_usage[i], s["usage"])
            _merge(loc_usage[i], s["usage"])
            holders = [i]
            for j in resumers.get(i, []):
                if by_idx[j]["copied"]["k"] > t:
                    holders.append(j)
                    _merge(loc_usage[j], s["usage"])
            # ccusage: verbatim duplicates tie -> the file whose path sorts first keeps them
            win = min(holders, key=lambda h: by_idx[h]["files"][0]["path"].encode("utf-8"))
            _merge(cc_usage[win], s["usage"])
            ts_merge(cc_ts[win], s["ts"])
    sessions = {}
    totals = {"ccusage": {}, "max_output": {}, "session_local": {}}
    for p in plan:
        i = p["idx"]
        r = by_idx[i]
        proj = projects[p["project"]]
        lt = r["line_types"]
        mal = r["malformed"]
        copied = r["copied"]
        own_compact = {"auto": 0, "manual": 0}
        for s in r["segments"]:
            own_compact["auto"] += s["compact"]["auto"]
            own_compact["manual"] += s["compact"]["manual"]
        cp_compact = copied["compact"] if copied else {"auto": 0, "manual": 0}
        ccu = _tok(cc_usage[i])
        sessions[r["sid"]] = {
            "project_dir": proj["enc"],
            "cwd": proj["cwd"],
            "version": p["version"],
            "main_file": r["files"][0]["path"],
            "files": r["files"],
            "bytes": sum(f["bytes"] for f in r["files"]),
            "lines": sum(f["lines"] for f in r["files"]),
            "subagent_files": len(r["files"]) - 1,
            "resumed_from": plan[p["resume_of"]]["sid"] if p["resume_of"] is not None else None,
            "copied_turns": copied["k"] if copied else 0,
            "copied_lines": copied["lines"] if copied else 0,
            "copied_bytes": copied["bytes"] if copied else 0,
            "first_timestamp": iso(r["first_ms"]) if r["first_ms"] is not None else None,
            "last_timestamp": iso(r["last_ms"]),
            "models": r["models"],
            "line_types_written": dict(sorted(lt.items())),
            "compact_boundaries": own_compact["auto"]
            + own_compact["manual"]
            + cp_compact["auto"]
            + cp_compact["manual"],
            "compact_boundaries_by_trigger": {
                "auto": own_compact["auto"] + cp_compact["auto"],
                "manual": own_compact["manual"] + cp_compact["manual"],
            },
            "compact_boundaries_copied": cp_compact["auto"] + cp_compact["manual"],
            "compactions": [
                {"trigger": c[0], "preTokens": c[1], "postTokens": c[2], "timestamp": c[3]}
                for c in r["compactions"]
            ],
            "malformed_lines": sum(mal.values()),
            "malformed_by_kind": dict(sorted(mal.items())),
            "tokens": {
                "ccusage": ccu,
                "max_output": _tok(mo_usage[i]),
                "session_local": _tok(loc_usage[i]),
            },
            "tokens_by_model": {
                "ccusage": _by_model(cc_usage[i]),
                "max_output": _by_model(mo_usage[i]),
            },
            "ccusage_row_expected": ccu["total"] > 0,
            "ccusage_first_activity": iso(cc_ts[i][0]) if cc_ts[i][0] is not None else None,
            "ccusage_last_activity": iso(cc_ts[i][1]) if cc_ts[i][1] is not None else None,
        }
        _merge(totals["ccusage"], cc_usage[i])
        _merge(totals["max_output"], mo_usage[i])
        _merge(totals["session_local"], loc_usage[i])
    all_bytes = sum(s["bytes"] for s in sessions.values())
    return {
        "generator": "bench/gen_corpus.py",
        "generator_version": GENERATOR_VERSION,
        "args": {
            "sessions": args.sessions,
            "target_bytes": args.target_bytes,
            "seed": args.seed,
            "end_date": args.end_date,
            "malformed_rate": args.malformed_rate,
            "partial_tail_fraction": args.partial_tail_fraction,
        },
        "rules": RULES,
        "projects": [{"cwd": p["cwd"], "dir": p["enc"]} for p in projects],
        "totals": {
            "sessions": len(sessions),
            "files": sum(len(s["files"]) for s in sessions.values()),
            "bytes": all_bytes,
            "lines": sum(s["lines"] for s in sessions.values()),
            "malformed_lines": sum(s["malformed_lines"] for s in sessions.values()),
            "compact_boundaries_written": sum(
                s["compact_boundaries"] - s["compact_boundaries_copied"] for s in sessions.values()
            ),
            "resumed_sessions": sum(1 for s in sessions.values() if s["resumed_from"]),
            "ccusage_rows_expected": sum(1 for s in sessions.values() if s["ccusage_row_expected"]),
            "tokens": {k: _tok(v) for k, v in totals.items()},
        },
        "sessions": dict(sorted(sessions.items())),
    }


# ----------------------------------------------------------------------------- main


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--out", required=True, help="output config dir (gets projects/ and manifest.json)"
    )
    ap.add_argument(
        "--sessions", type=int, default=20, help="number of main session files (default 20)"
    )
    ap.add_argument(
        "--target-bytes",
        type=lambda s: int(float(s)),
        default=None,
        help="approximate total corpus size in bytes, e.g. 1.5e9 (default 1.5 MB per session)",
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--jobs", type=int, default=min(2, os.cpu_count() or 1), help="worker processes (default 2)"
    )
    ap.add_argument(
        "--end-date",
        default="2026-11-20T00:00:00.000Z",
        help="timestamps span the 30 days before this",
    )
    ap.add_argument(
        "--malformed-rate",
        type=float,
        default=0.0008,
        help="probability of a malformed line after each written line (default 0.0008)",
    )
    ap.add_argument(
        "--partial-tail-fraction",
        type=float,
        default=0.0,
        help="fraction of main files ending with a partial line and no newline (default 0)",
    )
    ap.add_argument("--force", action="store_true", help="delete an existing DIR/projects first")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    if args.sessions < 1:
        ap.error("--sessions must be >= 1")
    if args.target_bytes is None:
        args.target_bytes = args.sessions * 1_500_000
    out = os.path.abspath(args.out)
    pdir = os.path.join(out, "projects")
    if os.path.exists(pdir):
        if not args.force:
            ap.error(f"{pdir} exists (use --force to replace it)")
        shutil.rmtree(pdir)
    os.makedirs(pdir, exist_ok=True)
    t0 = time.time()
    projects, plan = make_plan(args)
    base = [p for p in plan if p["resume_of"] is None]
    resumed = [p for p in plan if p["resume_of"] is not None]
    # byte budgets: base sessions share the target minus an allowance for resumed files
    wsum = sum(p["weight"] for p in plan) or 1.0
    allowance = sum(p["weight"] for p in resumed) / wsum
    parent_share = sum(plan[p["resume_of"]]["weight"] for p in resumed) / wsum
    base_target = args.target_bytes * max(0.3, 1.0 - allowance - 0.7 * parent_share)
    bsum = sum(p["weight"] for p in base) or 1.0
    results = []
    log = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr, flush=True))
    jobs = max(1, args.jobs)
    init = (args.seed, out, projects, args.malformed_rate)
    if jobs == 1:
        init_worker(*init)
        mapper = map
        ex = None
    else:
        ex = ProcessPoolExecutor(jobs, initializer=init_worker, initargs=init)
        mapper = lambda f, it: ex.map(f, it, chunksize=1)  # noqa: E731
    try:
        order = sorted(base, key=lambda p: -p["weight"])  # big ones first for load balance
        work = [(p, max(4_000, int(base_target * p["weight"] / bsum)), None) for p in order]
        for done, r in enumerate(mapper(gen_session, work), 1):
            results.append(r)
            if done % 100 == 0:
                log(f"  {done}/{len(plan)} sessions, {time.time() - t0:.1f}s")
        by_idx = {r["idx"]: r for r in results}
        written = sum(r["written"] for r in results)
        work2 = []
        rrng = random.Random(f"{args.seed}/resume")
        copies = []
        for p in resumed:
            par = by_idx[p["resume_of"]]
            nseg = len(par["segments"])
            k = nseg if rrng.random() < 0.6 else rrng.randint(1, nseg)
            copies.append(k)
        copy_bytes = sum(
            by_idx[p["resume_of"]]["segments"][k - 1]["off_end"]
            for p, k in zip(resumed, copies, strict=True)
        )
        remaining = max(0, args.target_bytes - written - copy_bytes)
        rsum = sum(p["weight"] for p in resumed) or 1.0
        for p, k in zip(resumed, copies, strict=True):
            par = by_idx[p["resume_of"]]
            pinfo = {
                "k": k,
                "segments": par["segments"],
                "path": par["main_path"],
                "last_ms": par["last_ms"],
            }
            work2.append((p, max(4_000, int(remaining * p["weight"] / rsum)), pinfo))
        results.extend(mapper(gen_session, work2))
    finally:
        if ex is not None:
            ex.shutdown()
    elapsed = time.time() - t0
    manifest = build_manifest(args, projects, plan, results, elapsed)
    with open(os.path.join(out, "manifest.json"), "wb") as f:
        f.write(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    tot = manifest["totals"]
    log(
        f"wrote {tot['sessions']} sessions, {tot['files']} files, {tot['bytes'] / 1e6:.1f} MB, "
        f"{tot['lines']} lines ({tot['malformed_lines']} malformed) in {elapsed:.1f}s -> {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
