"""
C{GET /status}: a small live status page for operators, and its JSON.

    GET /status                  self-contained HTML (inline CSS and JS, nothing
                                 fetched from elsewhere) that polls the JSON below
    GET /status?format=json      backends (health, usage, capacity, objects,
                                 request counters), virtual buckets (usage and
                                 quota, as of the last usage refresh), the
                                 strategy, client request counters, the drains,
                                 the rebalance (state, moved, target) and the
                                 objects short of copies per replicated bucket
                                 (the census's last sweep); the page turns
                                 counters into rates

Who may see it:

  - when C{token_fn()} returns a token (the service passes C{api.token} while
    the admin API is enabled): a request with C{Authorization: Bearer <token>},
    or a browser that opened C{/status?token=<token>} once.  That visit is
    answered with a redirect to C{/status} that sets an HttpOnly, SameSite=Strict
    cookie holding an HMAC of the token (never the token itself, so the cookie
    cannot drive the admin API), which keeps the token out of the address bar,
    the history and the Referer of later requests;
  - with no token: only clients connecting from the loopback interface (an SSH
    tunnel, or a reverse proxy on the same host that adds its own access
    control).  C{X-Forwarded-For} is deliberately not trusted.

The page shows what C{/health} shows plus request rates, and never a secret.

Over 500 lines: the page's HTML, CSS and script are inline (nothing fetched
from elsewhere) beside the JSON they render.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import ipaddress
import json
import secrets
import time
from collections.abc import Callable
from typing import Any, Optional

from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.samples import Sample
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request

from s3balance.config.units import format_size
from s3balance.metrics import Metrics, bearer_token_matches, reported_buckets
from s3balance.ops.drain import drain_document

__all__ = ["COOKIE_NAME", "StatusResource", "cookie_value", "status_document"]

log = Logger()

COOKIE_NAME = b"s3balance_status"
REFRESH_SECONDS = 2


def cookie_value(token: str) -> str:
    """What the browser cookie holds for C{token}: an HMAC, so it is useless elsewhere."""
    return hmac.new(token.encode("utf-8"), b"s3balance status page", hashlib.sha256).hexdigest()


def _samples(metric: MetricWrapperBase) -> list[Sample]:
    return [sample for family in metric.collect() for sample in family.samples]


def _counters(metrics: Optional[Metrics]) -> tuple[Optional[dict], dict[str, dict[str, float]]]:
    """(client request counters, per-backend request counters) from a L{Metrics}, or (None, {})."""
    if metrics is None:
        return None, {}
    total = errors = 0.0
    for sample in _samples(metrics.requests):
        if sample.name.endswith("_total"):
            total += sample.value
            if sample.labels.get("status", "").startswith("5"):
                errors += sample.value
    in_flight = sum(sample.value for sample in _samples(metrics.in_flight))
    backends: dict[str, dict[str, float]] = {}
    for sample in _samples(metrics.backend_duration):
        if sample.name.endswith("_count"):
            entry = backends.setdefault(sample.labels["backend"], {"requests": 0.0, "errors": 0.0})
            entry["requests"] += sample.value
    for sample in _samples(metrics.backend_errors):
        if sample.name.endswith("_total"):
            entry = backends.setdefault(sample.labels["backend"], {"requests": 0.0, "errors": 0.0})
            entry["errors"] += sample.value
    return {"total": total, "errors": errors, "in_flight": in_flight}, backends


def rebalance_summary(gateway: Any, watcher: Any) -> Optional[dict[str, Any]]:
    """
    The rebalance as the watcher last read it: its state (None: never
    started), what moved, the bytes left, its margin and progress, and each
    backend's fraction against its target; None without a watcher.
    """
    if watcher is None:
        return None
    from s3balance.ops.rebalance import Balance, members_of, rebalance_document

    document = rebalance_document(
        watcher.record, Balance(members_of(gateway.pool)), gateway.config.balancer.drain_rate
    )
    keys = ("state", "margin", "balanced", "spread", "objects", "bytes", "rate", "eta_seconds", "progress",
            "last_error", "backends", "mode")
    return {key: document.get(key) for key in keys}


def status_document(
    gateway: Any,
    now: Callable[[], float] = time.time,
    job_pauses: Any = None,
    rebalance: Any = None,
    replicas: Any = None,
) -> dict[str, Any]:
    """
    The JSON of C{/status?format=json}, read from the gateway's live objects
    (and the L{PauseWatcher}'s, the L{RebalanceWatcher}'s and the
    L{ReplicaCensus}'s snapshots: no query runs for a request).
    """
    pool = gateway.pool
    requests, backend_counters = _counters(getattr(gateway, "metrics", None))
    disabled = getattr(pool, "disabled", ())
    drains = dict(getattr(pool, "drains", {}))
    backends = []
    for name in pool.names():
        backend = pool.get(name)
        if backend is None:
            continue
        config = backend.config
        used, objects = pool.usage(name)
        health = pool.health(name)
        counters = backend_counters.get(name, {"requests": 0.0, "errors": 0.0})
        backends.append(
            {
                "name": name,
                "up": bool(health.up),
                "enabled": bool(config.enabled and name not in disabled),
                "writable": bool(pool.writable(name)) if hasattr(pool, "writable") else None,
                # Up, but refusing new objects after write errors (its objects still read).
                "read_only": bool(health.up and not health.writable),
                "last_error": health.last_error,
                "used_bytes": used,
                "reserved_bytes": pool.reserved(name),
                "max_size": config.max_size,
                "objects": objects,
                "weight": config.weight,
                "requests": counters["requests"] if requests is not None else None,
                "errors": counters["errors"] if requests is not None else None,
                # Its drain's state (draining, paused, done: no new objects), or None.
                "drain": drains[name].state if name in drains else None,
            }
        )
    buckets = [
        {
            "name": row.bucket,
            "used_bytes": row.used_bytes,
            "objects": row.object_count,
            "reserved_bytes": row.reserved_bytes,
            "quota_bytes": row.quota_bytes,
            "quota_objects": row.quota_objects,
            "quota_origin": row.quota_origin,
        }
        for row in reported_buckets(getattr(gateway, "bucket_usage", []))
    ]
    up = sum(1 for entry in backends if entry["up"])
    writable = bool(pool.candidates(0))
    # As /health: the metadata database answers, or nothing works (store/probe.py).
    probe = getattr(getattr(gateway, "store", None), "probe", None)
    database = probe.state() if probe is not None else {"up": True, "error": None}
    return {
        "time": now(),
        "status": (
            "down"
            if not database["up"]
            else "ok"
            if up == len(backends) and not any(entry["read_only"] for entry in backends)
            else ("degraded" if writable else "down")
        ),
        "strategy": gateway.strategy.name,
        "backends": backends,
        # As the drain watcher last read them (s3balance.ops.drain), by backend.
        "drains": [
            drain_document(drains[name], gateway.config.balancer.drain_rate) for name in sorted(drains)
        ],
        "buckets": buckets,
        "database": database,
        "requests": requests,
        # The cluster-wide jobs an operator paused (s3balance.ops.pauses), as this daemon last read them.
        "paused_jobs": sorted(job_pauses.paused) if job_pauses is not None else [],
        # s3balance.ops.rebalance, as this daemon's watcher last read it (None: no watcher).
        "rebalance": rebalance_summary(gateway, rebalance),
        # s3balance.ops.replica_census: per bucket wanting more than one copy, its last complete sweep.
        "replicas": replicas.buckets() if replicas is not None else [],
    }


def _size(value: Optional[float]) -> str:
    return "unlimited" if value is None else format_size(float(value))


def _row(entry: dict) -> str:
    """One backend's table row as the server renders it first (the script re-renders it alike)."""
    state = "up" if entry["up"] else "down"
    if entry["up"] and not entry["enabled"]:
        state = "disabled"
    elif entry["up"] and entry.get("drain"):
        state = "drained" if entry["drain"] == "done" else "draining"
    elif entry.get("read_only"):
        state = "read-only"
    capacity = entry["max_size"]
    percent = min(100.0, 100.0 * entry["used_bytes"] / capacity) if capacity else 0.0
    usage = f"{_size(entry['used_bytes'])} / {_size(capacity)}"
    error = html.escape(entry["last_error"] or "")
    return (
        f'<tr><td class="name">{html.escape(entry["name"])}</td>'
        f'<td><span class="state {state}" title="{error}">{state}</span></td>'
        f'<td><div class="bar"><div style="width:{percent:.1f}%"></div></div>'
        f'<span class="small">{html.escape(usage)}</span></td>'
        f'<td class="num">{entry["objects"]}</td><td class="num">-</td><td class="num">-</td></tr>'
    )


def _quota_text(used: float, limit: Optional[float], size: bool) -> str:
    shown = _size(used) if size else str(int(used))
    if limit is None:
        return shown
    return f"{shown} / {_size(limit) if size else int(limit)}"


def _bucket_row(entry: dict) -> str:
    """One virtual bucket's row: usage against its quota (the script re-renders it alike)."""
    quota = entry["quota_bytes"]
    percent = min(100.0, 100.0 * entry["used_bytes"] / quota) if quota else 0.0
    return (
        f'<tr><td class="name">{html.escape(entry["name"])}</td>'
        f'<td><div class="bar"><div style="width:{percent:.1f}%"></div></div>'
        f'<span class="small">{html.escape(_quota_text(entry["used_bytes"], quota, True))}</span></td>'
        f'<td class="num">{html.escape(_quota_text(entry["objects"], entry["quota_objects"], False))}</td>'
        f'<td>{html.escape(entry["quota_origin"] or "none")}</td></tr>'
    )


def _duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _drain_row(entry: dict) -> str:
    """One drain's row: state, progress bar, objects, rate, ETA (the script re-renders it alike)."""
    percent = 100.0 * entry["progress"]
    seen = entry["bytes"]["moved"] + entry["bytes"]["remaining"]
    rate = "-" if entry["rate"] is None else f"{_size(entry['rate'])}/s"
    return (
        f'<tr><td class="name">{html.escape(entry["backend"])}</td>'
        f'<td><span class="state {html.escape(entry["state"])}">{html.escape(entry["state"])}</span></td>'
        f'<td><div class="bar"><div style="width:{percent:.1f}%"></div></div>'
        f'<span class="small">{percent:.1f}% of {html.escape(_size(seen))}</span></td>'
        f'<td class="num">{entry["objects"]["moved"]} / {entry["objects"]["total"]}</td>'
        f'<td class="num">{html.escape(rate)}</td><td class="num">{_duration(entry["eta_seconds"])}</td>'
        f'<td>{html.escape(_drain_note(entry))}</td></tr>'
    )


def _drain_note(entry: dict) -> str:
    """The blocked objects and why, then the last error."""
    blocked = entry["objects"].get("blocked")
    notes = [f"{blocked} blocked: {entry.get('blocked_reason')}"] if blocked else []
    return "; ".join([*notes, *([entry["last_error"]] if entry["last_error"] else [])])


def _rebalance_row(entry: Optional[dict]) -> str:
    """The rebalance's row: state, progress, what moved, the spread against the margin (the script re-renders it alike)."""
    if entry is None:
        return ""
    state = entry["state"] or "none"
    progress = 100.0 * (entry.get("progress") or 0.0)
    moved = entry.get("objects") or {}
    size = entry.get("bytes") or {}
    target = f"spread {100 * entry['spread']:.1f}% within {100 * entry['margin']:.1f}% ({entry['mode']})"
    if entry["balanced"]:
        target += ": balanced"
    label = f"{progress:.1f}%, ETA {_duration(entry.get('eta_seconds'))}" if entry["state"] else ""
    return (
        f'<tr><td><span class="state {html.escape(state)}">{html.escape(state)}</span></td>'
        f'<td><div class="bar"><div style="width:{progress:.1f}%"></div></div>'
        f'<span class="small">{html.escape(label)}</span></td>'
        f'<td class="num">{moved.get("moved", "-")}</td>'
        f'<td class="num">{html.escape(_size(size["moved"]) + " (" + _size(size["remaining"]) + " left)") if size else "-"}</td>'
        f'<td>{html.escape(target)}</td><td>{html.escape(entry.get("last_error") or "")}</td></tr>'
    )


def _replica_row(entry: dict) -> str:
    """A replicated bucket's row: copies wanted, objects short of them, when the census counted."""
    when = time.strftime("%H:%M:%S", time.localtime(entry["as_of"]))
    return (
        f'<tr><td class="name">{html.escape(entry["bucket"])}</td><td class="num">{entry["replicas"]}</td>'
        f'<td class="num">{entry["under_replicated"]}</td><td>{when}</td></tr>'
    )


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>s3balance status</title>
<style nonce="{nonce}">
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; background: #fafafa; }}
h1 {{ font-size: 20px; margin: 0 0 .3em; }}
.summary span {{ margin-right: 1.5em; }}
table {{ border-collapse: collapse; margin-top: 1em; min-width: 60em; background: #fff; }}
th, td {{ padding: .4em .8em; border-bottom: 1px solid #ddd; text-align: left; }}
th {{ background: #eee; }}
.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
.state {{ padding: .1em .6em; border-radius: .8em; color: #fff; }}
.up, .ok {{ background: #2e7d32; }} .down {{ background: #c62828; }}
.disabled, .degraded, .read-only {{ background: #ef6c00; }}
.draining, .paused, .drained, .done, .blocked, .running {{ background: #6a1b9a; }}
.bar {{ width: 14em; height: .8em; background: #e0e0e0; border-radius: .4em; overflow: hidden; }}
.bar div {{ height: 100%; background: #1565c0; }}
.small {{ font-size: 12px; color: #555; }}
#stale {{ color: #c62828; }}
</style></head>
<body>
<h1>s3balance</h1>
<div class="summary">
<span>status <b id="status" class="state {status}">{status}</b></span>
<span>strategy <b id="strategy">{strategy}</b></span>
<span>requests <b id="rate">-</b>/s</span>
<span>5xx <b id="errors">-</b>/s</span>
<span>in flight <b id="inflight">-</b></span>
<span>paused jobs <b id="paused-jobs">{paused_jobs}</b></span>
<span class="small" id="updated"></span> <span class="small" id="stale"></span>
</div>
<table><thead><tr><th>backend</th><th>health</th><th>used / capacity</th><th class="num">objects</th>
<th class="num">requests/s</th><th class="num">errors/s</th></tr></thead>
<tbody id="backends">{rows}</tbody></table>
<table><thead><tr><th>virtual bucket</th><th>used / quota</th><th class="num">objects / quota</th>
<th>quota set by</th></tr></thead>
<tbody id="buckets">{bucket_rows}</tbody></table>
<table id="drain-table"{drains_hidden}><thead><tr><th>drain</th><th>state</th><th>progress</th>
<th class="num">objects moved / total</th><th class="num">rate</th><th class="num">ETA</th><th>blocked, last error</th></tr></thead>
<tbody id="drains">{drain_rows}</tbody></table>
<table id="rebalance-table"><thead><tr><th>rebalance</th><th>progress</th>
<th class="num">objects moved</th><th class="num">bytes moved</th><th>target</th><th>last error</th></tr></thead>
<tbody id="rebalance">{rebalance_row}</tbody></table>
<table id="replica-table"{replicas_hidden}><thead><tr><th>replicated bucket</th><th class="num">copies wanted</th>
<th class="num">objects short of copies</th><th>as of</th></tr></thead>
<tbody id="replicas">{replica_rows}</tbody></table>
<p class="small">Refreshed every {refresh} s from <code>?format=json</code>.</p>
<script nonce="{nonce}">
"use strict";
let previous = {initial};
function size(v) {{
  if (v === null || v === undefined) return "unlimited";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"]; let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {{ v /= 1024; i++; }}
  return i === 0 ? v.toFixed(0) + " B" : v.toFixed(1) + " " + units[i];
}}
function duration(s) {{
  if (s === null || s === undefined) return "-";
  const h = Math.floor(s / 3600), m = Math.floor(s % 3600 / 60), r = Math.floor(s % 60);
  return (h ? h + "h" : "") + (h || m ? String(m).padStart(h ? 2 : 1, "0") + "m" : "") + String(r).padStart(h || m ? 2 : 1, "0") + "s";
}}
function rate(now, before, dt) {{
  if (now === null || before === null || before === undefined || dt <= 0) return "-";
  return Math.max(0, (now - before) / dt).toFixed(2);
}}
function cell(row, text, cls) {{
  const td = document.createElement("td"); td.textContent = text;
  if (cls) td.className = cls; row.appendChild(td); return td;
}}
function render(doc, old) {{
  const dt = old ? doc.time - old.time : 0;
  const st = document.getElementById("status");
  st.textContent = doc.status; st.className = "state " + doc.status;
  document.getElementById("strategy").textContent = doc.strategy;
  const req = doc.requests, oldReq = old && old.requests;
  document.getElementById("rate").textContent = req && oldReq ? rate(req.total, oldReq.total, dt) : "-";
  document.getElementById("errors").textContent = req && oldReq ? rate(req.errors, oldReq.errors, dt) : "-";
  document.getElementById("inflight").textContent = req ? req.in_flight : "metrics disabled";
  document.getElementById("paused-jobs").textContent = (doc.paused_jobs || []).join(", ") || "none";
  const before = {{}};
  if (old) for (const b of old.backends) before[b.name] = b;
  const body = document.getElementById("backends");
  body.replaceChildren();
  for (const b of doc.backends) {{
    const row = document.createElement("tr"); const o = before[b.name] || {{}};
    cell(row, b.name, "name");
    const state = !b.up ? "down" : (!b.enabled ? "disabled" : (b.drain ? (b.drain === "done" ? "drained" : "draining")
      : (b.read_only ? "read-only" : "up")));
    const badge = document.createElement("span"); badge.className = "state " + state;
    badge.textContent = state; badge.title = b.last_error || "";
    row.appendChild(document.createElement("td")).appendChild(badge);
    const usage = row.appendChild(document.createElement("td"));
    const bar = usage.appendChild(document.createElement("div")); bar.className = "bar";
    const fill = bar.appendChild(document.createElement("div"));
    fill.style.width = (b.max_size ? Math.min(100, 100 * b.used_bytes / b.max_size) : 0) + "%";
    const label = usage.appendChild(document.createElement("span")); label.className = "small";
    label.textContent = size(b.used_bytes) + " / " + size(b.max_size);
    cell(row, String(b.objects), "num");
    cell(row, rate(b.requests, o.requests, dt), "num");
    cell(row, rate(b.errors, o.errors, dt), "num");
    body.appendChild(row);
  }}
  const buckets = document.getElementById("buckets");
  buckets.replaceChildren();
  for (const v of doc.buckets || []) {{
    const row = document.createElement("tr");
    cell(row, v.name, "name");
    const usage = row.appendChild(document.createElement("td"));
    const bar = usage.appendChild(document.createElement("div")); bar.className = "bar";
    const fill = bar.appendChild(document.createElement("div"));
    fill.style.width = (v.quota_bytes ? Math.min(100, 100 * v.used_bytes / v.quota_bytes) : 0) + "%";
    const label = usage.appendChild(document.createElement("span")); label.className = "small";
    label.textContent = size(v.used_bytes) + (v.quota_bytes === null ? "" : " / " + size(v.quota_bytes));
    cell(row, String(v.objects) + (v.quota_objects === null ? "" : " / " + v.quota_objects), "num");
    cell(row, v.quota_origin || "none");
    buckets.appendChild(row);
  }}
  const drains = document.getElementById("drains");
  drains.replaceChildren();
  document.getElementById("drain-table").hidden = !(doc.drains || []).length;
  for (const d of doc.drains || []) {{
    const row = document.createElement("tr");
    cell(row, d.backend, "name");
    const badge = document.createElement("span"); badge.className = "state " + d.state; badge.textContent = d.state;
    row.appendChild(document.createElement("td")).appendChild(badge);
    const progress = row.appendChild(document.createElement("td"));
    const bar = progress.appendChild(document.createElement("div")); bar.className = "bar";
    bar.appendChild(document.createElement("div")).style.width = (100 * d.progress).toFixed(1) + "%";
    const label = progress.appendChild(document.createElement("span")); label.className = "small";
    label.textContent = (100 * d.progress).toFixed(1) + "% of " + size(d.bytes.moved + d.bytes.remaining);
    cell(row, d.objects.moved + " / " + d.objects.total, "num");
    cell(row, d.rate === null ? "-" : size(d.rate) + "/s", "num");
    cell(row, duration(d.eta_seconds), "num");
    const notes = d.objects.blocked ? [d.objects.blocked + " blocked: " + d.blocked_reason] : [];
    if (d.last_error) notes.push(d.last_error);
    cell(row, notes.join("; "));
    drains.appendChild(row);
  }}
  const rebalance = document.getElementById("rebalance");
  rebalance.replaceChildren();
  const r = doc.rebalance;
  if (r) {{
    const row = document.createElement("tr");
    const badge = document.createElement("span"); badge.className = "state " + (r.state || "none");
    badge.textContent = r.state || "none";
    row.appendChild(document.createElement("td")).appendChild(badge);
    const progress = row.appendChild(document.createElement("td"));
    const bar = progress.appendChild(document.createElement("div")); bar.className = "bar";
    bar.appendChild(document.createElement("div")).style.width = (100 * (r.progress || 0)).toFixed(1) + "%";
    const label = progress.appendChild(document.createElement("span")); label.className = "small";
    label.textContent = r.state ? (100 * r.progress).toFixed(1) + "%, ETA " + duration(r.eta_seconds) : "";
    cell(row, r.objects ? String(r.objects.moved) : "-", "num");
    cell(row, r.bytes ? size(r.bytes.moved) + " (" + size(r.bytes.remaining) + " left)" : "-", "num");
    cell(row, "spread " + (100 * r.spread).toFixed(1) + "% within " + (100 * r.margin).toFixed(1) + "% (" + r.mode + ")"
      + (r.balanced ? ": balanced" : ""));
    cell(row, r.last_error || "");
    rebalance.appendChild(row);
  }}
  const replicas = document.getElementById("replicas");
  replicas.replaceChildren();
  document.getElementById("replica-table").hidden = !(doc.replicas || []).length;
  for (const c of doc.replicas || []) {{
    const row = document.createElement("tr");
    cell(row, c.bucket, "name");
    cell(row, String(c.replicas), "num");
    cell(row, String(c.under_replicated), "num");
    cell(row, new Date(c.as_of * 1000).toLocaleTimeString());
    replicas.appendChild(row);
  }}
  document.getElementById("updated").textContent = "updated " + new Date(doc.time * 1000).toLocaleTimeString();
}}
async function poll() {{
  try {{
    const answer = await fetch(location.pathname + "?format=json", {{credentials: "same-origin", cache: "no-store"}});
    if (!answer.ok) throw new Error("HTTP " + answer.status);
    const doc = await answer.json();
    render(doc, previous); previous = doc;
    document.getElementById("stale").textContent = "";
  }} catch (e) {{
    document.getElementById("stale").textContent = "cannot refresh: " + e.message;
  }}
}}
render(previous, null);
poll();
setInterval(poll, {refresh_ms});
</script>
</body></html>
"""


def _script_json(document: dict) -> str:
    # Inside <script>, "</" could close the element early; JSON allows "<\/".
    return json.dumps(document).replace("</", "<\\/")


def render_page(document: dict, nonce: str) -> bytes:
    return PAGE.format(
        nonce=nonce,
        status=html.escape(document["status"]),
        strategy=html.escape(document["strategy"]),
        paused_jobs=html.escape(", ".join(document.get("paused_jobs", [])) or "none"),
        rows="".join(_row(entry) for entry in document["backends"]),
        bucket_rows="".join(_bucket_row(entry) for entry in document["buckets"]),
        drain_rows="".join(_drain_row(entry) for entry in document.get("drains", [])),
        drains_hidden="" if document.get("drains") else " hidden",
        rebalance_row=_rebalance_row(document.get("rebalance")),
        replica_rows="".join(_replica_row(entry) for entry in document.get("replicas", [])),
        replicas_hidden="" if document.get("replicas") else " hidden",
        initial=_script_json(document),
        refresh=REFRESH_SECONDS,
        refresh_ms=REFRESH_SECONDS * 1000,
    ).encode("utf-8")


def _is_loopback(request: Request) -> bool:
    host = getattr(request.getClientAddress(), "host", None)
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class StatusResource(Resource):
    """
    @param gateway: the L{s3balance.s3.gateway.Gateway} (its pool, strategy and
        metrics are read at each request, so a reload shows at once).
    @param token_fn: returns the token to require, or "" for loopback-only access.
    """

    isLeaf = True

    def __init__(self, gateway: Any, token_fn: Callable[[], str], now: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.gateway = gateway
        self.token_fn = token_fn
        self.now = now
        # The daemon's s3balance.ops.pauses.PauseWatcher (set by the service): the paused jobs;
        # its RebalanceWatcher and ReplicaCensus: the rebalance, the objects short of copies.
        self.job_pauses: Any = None
        self.rebalance: Any = None
        self.replicas: Any = None

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"referrer-policy", b"no-referrer")
        request.setHeader(b"x-content-type-options", b"nosniff")
        token = self.token_fn()
        query_token = _arg(request, b"token")
        if token:
            if query_token is not None:
                return self._login(request, token, query_token)
            if not (bearer_token_matches(request, token) or self._cookie_matches(request, token)):
                return self._refuse(
                    request,
                    401,
                    "a valid token is required: Authorization: Bearer <api.token>, or open /status?token=<api.token> once",
                )
        elif not _is_loopback(request):
            return self._refuse(
                request,
                403,
                "the status page is served only to loopback clients unless the admin API (api.token) is enabled",
            )
        document = status_document(self.gateway, self.now, self.job_pauses, self.rebalance, self.replicas)
        if _arg(request, b"format") == "json":
            request.setHeader(b"content-type", b"application/json")
            return json.dumps(document, sort_keys=True).encode("utf-8")
        nonce = secrets.token_urlsafe(16)
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        request.setHeader(
            b"content-security-policy",
            (
                f"default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; "
                "connect-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
            ).encode("ascii"),
        )
        return render_page(document, nonce)

    def render_HEAD(self, request: Request) -> bytes:
        return self.render_GET(request)

    def _cookie_matches(self, request: Request, token: str) -> bool:
        given = request.getCookie(COOKIE_NAME)
        return given is not None and hmac.compare_digest(given, cookie_value(token).encode("ascii"))

    def _login(self, request: Request, token: str, given: str) -> bytes:
        if not hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8")):
            log.warn(
                "status page: refused a wrong token from {client}",
                client=getattr(request.getClientAddress(), "host", "?"),
            )
            return self._refuse(request, 401, "wrong token")
        path = request.uri.split(b"?", 1)[0]
        request.addCookie(
            COOKIE_NAME,
            cookie_value(token).encode("ascii"),
            path=path,
            httpOnly=True,
            secure=request.isSecure(),
            sameSite="strict",
        )
        request.setResponseCode(303)
        request.setHeader(b"location", path)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"signed in; see " + path + b"\n"

    def _refuse(self, request: Request, status: int, message: str) -> bytes:
        request.setResponseCode(status)
        if status == 401:
            request.setHeader(b"www-authenticate", b'Bearer realm="s3balance status"')
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(
            {"error": "unauthorized" if status == 401 else "forbidden", "message": message}
        ).encode()


def _arg(request: Any, name: bytes) -> Optional[str]:  # Twisted types Request.args as None
    values = (request.args or {}).get(name)
    return values[0].decode("utf-8", "replace") if values else None
