// The operator page. No inline script (the CSP allows only this file), no HTML built from
// strings: every value reaches the page as text, bidi controls made visible, long values shortened.
"use strict";

const BODY = document.body.dataset;
const REFRESH_MS = parseInt(BODY.refreshMs, 10) || 3000;
const MODES = JSON.parse(BODY.modes || "[]");
const KINDS = JSON.parse(BODY.kinds || "{}");
const CHART_MS = 60000;
const MAX_CHARS = 240;
const BIDI = /[\u061C\u200E\u200F\u202A-\u202E\u2066-\u2069]/g;
const watching = {};   // consumer -> job id shown in its job panel
const filters = {};    // consumer -> {state, errorType, key}
let chartsAt = 0;

// ---- text ---------------------------------------------------------------------------------
function clean(value) {
  if (value === null || value === undefined) return "";
  const text = typeof value === "string" ? value : (typeof value === "object" ? JSON.stringify(value) : String(value));
  return text.replace(BIDI, ch => "\u27e6U+" + ch.charCodeAt(0).toString(16).toUpperCase().padStart(4, "0") + "\u27e7");
}
function short(value, max) {
  const text = clean(value);
  const limit = max || MAX_CHARS;
  return text.length > limit ? text.slice(0, limit) + "\u2026" : text;
}
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}
function val(value, max) {  // a value cell: shortened text, the whole (cleaned) value on hover
  const text = clean(value);
  return el("span", {class: "val", title: text.length > (max || MAX_CHARS) ? text : null}, short(value, max));
}
function fmtAge(s) {
  if (s === null || s === undefined) return "no data";
  if (s < 120) return Math.round(s) + " s";
  if (s < 7200) return Math.round(s / 60) + " min";
  if (s < 172800) return (s / 3600).toFixed(1) + " h";
  return (s / 86400).toFixed(1) + " days";
}
function num(v, missing) {
  return v === null || v === undefined ? (missing || "no data") : String(v);
}
function errorText(e) { return "error: " + clean(e && e.message ? e.message : e); }

async function getJSON(url, opts) {
  const r = await fetch(url, opts);
  let body = null;
  try { body = await r.json(); } catch (e) { throw new Error(r.status + " " + r.statusText); }
  if (r.status === 428) return {needsConfirmation: true, ...body};
  if (!r.ok) throw new Error(body && body.error ? body.error : r.status + " " + r.statusText);
  return body;
}
function postJSON(url, body) {
  return getJSON(url, {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body || {})});
}

// ---- a consumer's card ---------------------------------------------------------------------------
function card(c) {
  let sec = document.getElementById("sec-" + c.name);
  if (sec) return sec;
  const n = c.name;
  filters[n] = filters[n] || {state: "", errorType: "", key: ""};
  const modeSel = el("select", {id: "mode-" + n}, el("option", {value: ""}, "default (" + c.reprocessMode + ")"),
    ...MODES.map(m => el("option", {value: m}, m)));
  const stateSel = el("select", {id: "filter-state-" + n, onchange: () => { filters[n].state = stateSel.value; loadFailures(n); }},
    el("option", {value: ""}, "any state"), ...["captured", "retrying", "parked", "handled"].map(s => el("option", {value: s}, s)));
  const typeIn = el("input", {id: "filter-type-" + n, placeholder: "error type", class: "filter",
    onchange: () => { filters[n].errorType = typeIn.value.trim(); loadFailures(n); }});
  const keyIn = el("input", {id: "filter-key-" + n, placeholder: "key contains", class: "filter",
    onchange: () => { filters[n].key = keyIn.value.trim(); loadFailures(n); }});
  sec = el("section", {class: "consumer", id: "sec-" + n},
    el("h2", {}, n, " ", el("span", {id: "badge-" + n, class: "badge badge-unknown", "data-badge": "unknown"}, "…")),
    el("p", {class: "muted"}, c.description),
    el("ul", {id: "reasons-" + n, class: "reasons"}),
    el("ul", {id: "unknown-" + n, class: "unknown"}),
    el("div", {class: "grid"},
      el("table", {class: "facts", id: "facts-" + n}, el("tbody")),
      el("div", {class: "charts", id: "charts-" + n})),
    el("div", {class: "actions"},
      el("label", {}, "mode ", modeSel), " ",
      el("label", {}, "max ", el("input", {id: "max-" + n, type: "number", min: "1", placeholder: "all", class: "small"})), " ",
      el("button", {id: "preview-" + n, onclick: () => preview(n)}, "Preview (dry run)"),
      el("button", {id: "reprocess-" + n, onclick: () => ask(n, "drain")}, "Reprocess"),
      el("button", {id: "redrive-" + n, onclick: () => ask(n, "redrive")}, "Redrive parked")),
    el("div", {class: "actions", id: "backfill-row-" + n},
      el("label", {}, "segments ", el("input", {id: "bf-segments-" + n, type: "number", min: "1", max: "1000", placeholder: "1", class: "small"})), " ",
      el("label", {}, "rate ", el("input", {id: "bf-rate-" + n, type: "number", min: "1", placeholder: "unlimited", class: "small",
        title: "read capacity units per second for the whole backfill"})), " ",
      el("label", {}, el("input", {id: "bf-dry-" + n, type: "checkbox"}), " dry run"), " ",
      el("button", {id: "backfill-" + n, onclick: () => ask(n, "backfill")}, "Backfill from the table")),
    el("div", {class: "actions", id: "rewind-row-" + n},
      el("label", {}, "since ", el("input", {id: "rw-since-" + n, placeholder: "10m or 2026-11-29T17:00:00Z", class: "filter"})), " ",
      el("label", {}, "until ", el("input", {id: "rw-until-" + n, placeholder: "now", class: "filter"})), " ",
      el("label", {}, "window ", el("input", {id: "rw-window-" + n, placeholder: "15m", class: "small"})), " ",
      el("label", {}, "mode ", el("select", {id: "rw-mode-" + n}, el("option", {value: ""}, "default (" + c.reprocessMode + ")"),
        ...MODES.map(m => el("option", {value: m}, m)))), " ",
      el("label", {}, el("input", {id: "rw-dry-" + n, type: "checkbox"}), " dry run"), " ",
      el("button", {id: "rewind-" + n, onclick: () => ask(n, "rewind")}, "Rewind the stream")),
    el("div", {id: "confirm-" + n, class: "confirm", hidden: ""},
      el("p", {id: "confirm-text-" + n}),
      el("button", {id: "confirm-yes-" + n, class: "danger"}, "Confirm"), " ",
      el("button", {id: "confirm-no-" + n}, "Cancel")),
    el("div", {id: "job-" + n, class: "job"}),
    el("h3", {}, "Failures (from the ledger)"),
    el("div", {class: "filters"}, stateSel, " ", typeIn, " ", keyIn),
    el("div", {id: "failures-" + n}, "loading…"));
  document.getElementById("details").append(sec);
  return sec;
}

const BADGE_TEXT = {ok: "OK", degraded: "degraded", dropping: "dropping", blocked: "blocked", unknown: "unknown"};

function render(c) {
  card(c);
  const n = c.name, st = c.status || {};
  const badge = document.getElementById("badge-" + n);
  badge.textContent = BADGE_TEXT[st.badge] || clean(st.badge);
  badge.className = "badge badge-" + (st.badge || "unknown");
  badge.dataset.badge = st.badge || "unknown";
  document.getElementById("reasons-" + n).replaceChildren(...(st.reasons || []).map(r => el("li", {}, val(r, 400))));
  document.getElementById("unknown-" + n).replaceChildren(...(st.unknown || []).map(r => el("li", {}, val(r, 400))));

  const f = c.failures || {}, p = c.parking || {}, m = c.mapping || {}, L = c.ledger || {};
  const rows = [];
  const row = (label, ...value) => rows.push(el("tr", {}, el("th", {}, label), el("td", {}, ...value)));
  row("policy", c.policy, el("span", {class: "muted"}, " (" + clean(c.policySource) + ")"));
  const mappingText = [m.state, m.status].filter(Boolean).join(" / ") || "unknown";
  row("mapping", mappingText, el("span", {class: "muted"}, m.source ? " " + clean(m.source) +
      (m.ageSeconds !== undefined && m.ageSeconds !== null ? ", state " + fmtAge(m.ageSeconds) + " old" : "") : ""),
      m.error ? el("div", {class: "warn"}, "error: ", val(m.error)) : null, m.note ? el("div", {class: "muted"}, val(m.note)) : null);
  row("lag (iterator age)", c.lagSeconds === null || c.lagSeconds === undefined ? "no data" : fmtAge(c.lagSeconds),
      m.stale && c.lagSeconds !== null && c.lagSeconds !== undefined ?
        el("span", {class: "warn", id: "lag-stale-" + n}, " as of " + fmtAge(m.ageSeconds) + " ago (stale)") : null);
  row("failure queue", f.exists === false ? "no queue" : (f.error ? el("span", {class: "warn"}, "error: ", val(f.error)) :
      el("span", {id: "depth-" + n, "data-depth": String(f.visible)}, num(f.visible) + " visible, " + num(f.inFlight) + " in flight")));
  if (L.error) row("failure ledger", el("span", {class: "warn"}, "error: ", val(L.error)));
  else {
    const types = Object.entries(L.openByErrorType || {}).map(([t, k]) => clean(t) + " \u00d7" + k).join(", ");
    row("open failures", el("span", {id: "open-" + n, "data-open": String(L.open)}, num(L.open)),
        types ? el("span", {id: "types-" + n}, " : " + types) : null,
        el("span", {class: "muted"}, " (ledger, read " + fmtAge(L.ageSeconds) + " ago)"));
    row("parked", el("span", {id: "parked-" + n, "data-parked": String((L.counts || {}).parked)}, num((L.counts || {}).parked)),
        p.error ? el("span", {class: "warn"}, " queue error: ", val(p.error)) : el("span", {class: "muted"}, " (" + (p.exists === false ? "no parking queue" : num(p.visible) + " in the parking queue") + ")"),
        el("span", {class: "muted"}, " \u00b7 handled so far " + num((L.counts || {}).handled)));
    row("oldest failure", c.oldestFailure && c.oldestFailure.capturedAt ? fmtAge(c.oldestFailure.ageSeconds) + " old" : "none open");
  }
  const b = c.blocking;
  if (b) {
    const attempts = b.attempts + (b.maxRetryAttempts !== null && b.maxRetryAttempts !== undefined ? " of " + (b.maxRetryAttempts + 1) : "");
    row(b.state === "blocked" ? "blocked on" : "last blocked on",
        el("div", {id: "blocking-" + n}, el("code", {}, short(b.errorType) + ": " + short(b.errorMessage))),
        el("div", {class: "muted"}, "record " + clean(b.sequenceNumber) + " " + short(b.keys, 120)),
        el("div", {}, "failed invocations: ", el("b", {id: "attempts-" + n}, attempts),
          b.agesOutAt ? " \u00b7 ages out at " + clean(b.agesOutAt) : "",
          b.lastFailedAgeSeconds !== null && b.lastFailedAgeSeconds !== undefined ? " \u00b7 last failed " + fmtAge(b.lastFailedAgeSeconds) + " ago" : "",
          b.resolvedAt ? " \u00b7 resolved at " + clean(b.resolvedAt) : ""));
  }
  const cb = c.circuit;
  if (cb) {
    const open = cb.state === "open" || cb.state === "half-open";
    row("sink circuit", el("b", {id: "circuit-" + n, "data-circuit": clean(cb.state), class: open ? "warn" : null}, clean(cb.state)),
        cb.since ? " since " + clean(cb.since) : "", cb.nextProbeAt ? " \u00b7 next probe " + clean(cb.nextProbeAt) : "",
        el("span", {class: "muted"}, " (circuit table, read " + fmtAge(cb.ageSeconds) + " ago)"),
        open && cb.reason ? el("div", {}, el("code", {}, short(cb.reason))) : null,
        open && cb.whileOpen ? el("div", {id: "circuit-effect-" + n}, val(cb.whileOpen, 300)) : null,
        cb.note ? el("div", {class: "muted"}, val(cb.note, 300)) : null,
        cb.error ? el("div", {class: "warn"}, "error: ", val(cb.error)) : null);
  }
  if (c.drops) row("dropped", el("span", {id: "dropped-" + n, "data-dropped": String(c.drops.last3h)},
      num(c.drops.recent) + " in the latest batch, " + num(c.drops.last3h) + " in the last 3 h"));
  const alarms = c.alarms || {};
  const firing = ["iteratorAge", "errors", "failureQueueDepth", "failureQueueAge", "parkingDepth"]
    .filter(k => alarms[k]).map(k => k + " " + alarms[k].state);
  row("alarms", (alarms.source || "") + ": " + (firing.join(", ") || "none found"),
      alarms.error ? el("div", {class: "warn"}, "error: ", val(alarms.error)) : null);
  document.querySelector("#facts-" + n + " tbody").replaceChildren(...rows);
  if (c.job && !watching[n]) { watching[n] = c.job.jobId; pollJob(n, c.job.jobId); }
}

// ---- charts (a few lines of SVG) -------------------------------------------------------------------
const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}
function chart(id, title, lines, from, to) {
  const W = 180, H = 44, t0 = Date.parse(from), t1 = Date.parse(to);
  const all = lines.flatMap(l => l.points.map(p => p[1]));
  const max = Math.max(1, ...all);
  const box = svg("svg", {id, class: "chart", viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img"});
  box.append(svg("rect", {x: 0, y: 0, width: W, height: H, class: "frame"}));
  for (const line of lines) {
    const pts = line.points.map(([t, v]) => {
      const x = t1 > t0 ? ((Date.parse(t) - t0) / (t1 - t0)) * (W - 2) + 1 : 1;
      return Math.max(1, Math.min(W - 1, x)).toFixed(1) + "," + (H - 2 - (v / max) * (H - 6)).toFixed(1);
    });
    box.append(svg("polyline", {points: pts.join(" "), class: "line " + line.cls, "data-points": String(pts.length)}));
  }
  const label = svg("title", {});
  label.textContent = title;
  box.append(label);
  const latest = lines.map(l => l.name + " " + (l.points.length ? l.points[l.points.length - 1][1] : "no data")).join(", ");
  return el("figure", {class: "chart-box"}, box,
    el("figcaption", {}, title, el("br"), el("span", {class: "muted"}, "max " + (all.length ? Math.max(...all) : "no data") + "; latest " + latest)));
}
async function loadCharts(n) {
  const box = document.getElementById("charts-" + n);
  try {
    const d = await getJSON("/consumers/" + encodeURIComponent(n) + "/charts");
    const s = d.series || {};
    box.replaceChildren(
      chart("chart-" + n + "-iteratorAge", "iterator age (s), 3 h", [{name: "age", cls: "a", points: s.iteratorAgeSeconds || []}], d.from, d.to),
      chart("chart-" + n + "-depth", "failure-queue depth, 3 h", [{name: "depth", cls: "b", points: s.failureQueueDepth || []}], d.from, d.to),
      chart("chart-" + n + "-records", "handled / failed per minute", [
        {name: "handled", cls: "ok", points: s.handled || []}, {name: "failed", cls: "bad", points: s.failed || []}], d.from, d.to));
    if (d.error || d.note) box.append(el("p", {class: d.error ? "warn" : "muted"}, d.error ? "error: " : "", val(d.error || d.note)));
  } catch (e) { box.replaceChildren(el("p", {class: "warn"}, errorText(e))); }
}

// ---- failures from the ledger ------------------------------------------------------------------------
async function loadFailures(n) {
  const box = document.getElementById("failures-" + n);
  const q = new URLSearchParams({limit: "20"});
  for (const [k, v] of Object.entries(filters[n] || {})) if (v) q.set(k, v);
  try {
    const d = await getJSON("/consumers/" + encodeURIComponent(n) + "/failures?" + q);
    if (d.error) { box.replaceChildren(el("p", {class: "warn"}, "error: ", val(d.error))); return; }
    if (!d.items.length) { box.replaceChildren(el("p", {class: "muted"}, "no failures match (ledger read at " + clean(d.readAt) + ")")); return; }
    const head = ["captured", "state", "error", "message", "keys", "sequence", "attempts", "park reason / note", "settled by"];
    const t = el("table", {class: "failures"}, el("thead", {}, el("tr", {}, ...head.map(h => el("th", {}, h)))));
    const tb = el("tbody");
    for (const i of d.items) tb.append(el("tr", {class: "state-" + clean(i.state)},
      el("td", {}, val(i.capturedAt)), el("td", {}, val(i.state)), el("td", {}, val(i.errorType)),
      el("td", {class: "msg"}, val(i.errorMessage)), el("td", {}, el("code", {}, val(i.keysText))),
      el("td", {}, val(i.sequenceNumber)), el("td", {class: "num"}, val(i.attempts)),
      el("td", {class: "msg"}, val(i.parkReason || i.settledNote)), el("td", {}, val(i.settledBy))));
    t.append(tb);
    box.replaceChildren(t, el("p", {class: "muted"}, d.items.length + " shown" + (d.next ? " (more in the ledger)" : "") +
      "; read at " + clean(d.readAt)));
  } catch (e) { box.replaceChildren(el("p", {class: "warn"}, errorText(e))); }
}

// ---- jobs --------------------------------------------------------------------------------------------
const CHECKPOINTED = ["backfill", "rewind"];  // their confirmation fixes the request (a rewind's times)
function value(id) { return document.getElementById(id).value.trim(); }
function requestFor(n, kind, dryRun) {
  if (kind === "redrive") return {};
  if (kind === "backfill") {
    const body = {dryRun: document.getElementById("bf-dry-" + n).checked};
    const segments = parseInt(value("bf-segments-" + n), 10), rate = parseFloat(value("bf-rate-" + n));
    if (!isNaN(segments)) body.segments = segments;
    if (!isNaN(rate)) body.rate = rate;
    return body;
  }
  if (kind === "rewind") {
    const body = {dryRun: document.getElementById("rw-dry-" + n).checked};
    for (const [field, id] of [["since", "rw-since-"], ["until", "rw-until-"], ["window", "rw-window-"], ["mode", "rw-mode-"]]) {
      const v = value(id + n);
      if (v) body[field] = v;
    }
    return body;
  }
  const body = {dryRun: !!dryRun};
  const mode = document.getElementById("mode-" + n).value;
  const max = parseInt(document.getElementById("max-" + n).value, 10);
  if (mode) body.mode = mode;
  if (!isNaN(max)) body.max = max;
  return body;
}
function jobUrl(n, kind) {
  return kind === "drain" ? "/consumers/" + encodeURIComponent(n) + "/reprocess" :
         kind === "redrive" ? "/consumers/" + encodeURIComponent(n) + "/redrive" :
         "/consumers/" + encodeURIComponent(n) + "/jobs/" + encodeURIComponent(kind);
}
async function preview(n) {
  const out = document.getElementById("job-" + n);
  out.replaceChildren(el("p", {}, "preview starting…"));
  try { started(n, await postJSON(jobUrl(n, "drain"), requestFor(n, "drain", true))); }
  catch (e) { out.replaceChildren(el("p", {class: "warn"}, errorText(e))); }
}
async function ask(n, kind) {  // the confirmation: ask the API what would run, show the count
  const out = document.getElementById("job-" + n);
  const body = requestFor(n, kind, false);
  try {
    const plan = await postJSON(jobUrl(n, kind), body);
    if (!plan.needsConfirmation) { started(n, plan); return; }
    const c = plan.confirm || {};
    const box = document.getElementById("confirm-" + n);
    const count = c.count === null || c.count === undefined ? "an unknown number of" : c.count;
    document.getElementById("confirm-text-" + n).textContent = clean(
      (KINDS[kind] || kind) + " " + count + " " + (c.what || "") + " of " + n +
      (body.mode && kind === "drain" ? " (" + body.mode + " mode)" : "") + "?" +
      (c.countError ? (CHECKPOINTED.includes(kind) ? " (" + c.countError + ")" : " (count not readable: " + c.countError + ")") : ""));
    box.dataset.count = String(c.count);
    box.hidden = false;
    const yes = document.getElementById("confirm-yes-" + n), no = document.getElementById("confirm-no-" + n);
    yes.disabled = !(c.count > 0);
    yes.onclick = async () => {
      box.hidden = true;
      const confirmed = CHECKPOINTED.includes(kind) ? {...(c.request || body), confirmCount: c.count} : {...body, confirmCount: c.count};
      try { started(n, await postJSON(jobUrl(n, kind), confirmed)); }
      catch (e) { out.replaceChildren(el("p", {class: "warn"}, errorText(e))); }
    };
    no.onclick = () => { box.hidden = true; out.replaceChildren(el("p", {class: "muted"}, "not started")); };
  } catch (e) { out.replaceChildren(el("p", {class: "warn"}, errorText(e))); }
}
function started(n, job) {
  watching[n] = job.jobId;
  pollJob(n, job.jobId);
  loadHistory();
}
function progressText(j) {
  const p = j.progress || {};
  if (p.total === null || p.total === undefined) return num(p.done, "0") + " done";
  let t = num(p.done, "0") + " of " + p.total + (j.kind === "rewind" ? " windows" : "");
  if (p.etaSeconds !== null && p.etaSeconds !== undefined && (j.status === "running" || j.status === "submitted")) t += ", about " + fmtAge(p.etaSeconds) + " left";
  return t;
}
function summaryText(j) {
  const s = j.summary;
  if (!s) return "";
  if (s.kind === "redrive") return "moved " + s.moved + " of " + s.taken + " back to the failure queue" + (s.left ? ", " + s.left + " left in parking" : "");
  if (CHECKPOINTED.includes(s.kind)) {
    if (s.status === "planned") {
      const e = s.estimate || {};
      return "would read about " + num(e.items, "?") + " items (" + num(e.readCapacityUnits, "?") + " read units" +
        (e.secondsAtRate ? ", " + fmtAge(e.secondsAtRate) + " at the rate" : "") + ")";
    }
    let t = (s.dry_run ? "would run " : "taken ") + num(s.taken, "0");
    if (!s.dry_run) t += ", handled " + num(s.handled, "0") + ", captured to the failure queue " + num(s.captured, "0");
    const parts = Object.entries(s.part_status || {}).map(([k, v]) => v + " " + k).join(", ");
    const kinds = Object.entries(s.by_event || {}).map(([k, v]) => k + " \u00d7" + v).join(", ");
    return t + (parts ? "; parts: " + parts : "") + (kinds ? "; by event: " + kinds : "");
  }
  let t = (s.dry_run ? "would reprocess " : "taken ") + s.taken;
  if (!s.dry_run) t += ", succeeded " + s.succeeded + ", still failing " + s.still_failing + ", parked " + s.parked;
  const types = Object.entries(s.by_error_type || {}).map(([k, v]) => k + " \u00d7" + v).join(", ");
  return t + (types ? "; by error type: " + types : "");
}
const FINAL = ["succeeded", "finished-with-failures", "cancelled", "failed"];
async function pollJob(n, id) {
  const out = document.getElementById("job-" + n);
  if (!out || watching[n] !== id) return;
  try {
    const j = await getJSON("/jobs/" + encodeURIComponent(id));
    const running = !FINAL.includes(j.status);
    const pct = (j.progress || {}).percent;
    out.dataset.status = j.status;
    out.replaceChildren(
      el("div", {}, el("b", {}, clean(j.title || j.kind) + (j.request && j.request.dryRun ? " (preview)" : "") + " "),
        el("span", {id: "job-status-" + n, class: "status-" + clean(j.status)}, clean(j.status)),
        el("span", {class: "muted"}, " job " + clean(id).slice(-8))),
      el("div", {id: "job-progress-" + n}, progressText(j),
        pct !== undefined ? el("progress", {max: "100", value: String(pct)}) : null),
      j.stoppedBy ? el("div", {id: "job-stopped-" + n}, "stopped because: ", val(j.stoppedBy)) : null,
      el("div", {id: "job-summary-" + n}, summaryText(j)),
      el("div", {class: "muted", id: "job-caller-" + n}, "started by ", val((j.caller || {}).display || "unknown"),
        " at " + clean(j.createdAt) + (j.confirmedCount ? ", confirmed " + j.confirmedCount : "")),
      j.cancelRequested ? el("div", {class: "muted"}, "cancel asked by ", val(((j.cancelRequested || {}).by || {}).display)) : null,
      j.error ? el("div", {class: "warn"}, "error: ", val(j.error)) : null,
      j.note ? el("div", {class: "muted"}, val(j.note)) : null,
      running ? el("button", {id: "job-cancel-" + n, class: "danger", onclick: () => cancelJob(n, id)}, "Cancel job") : null);
    if (running) setTimeout(() => pollJob(n, id), j.runner === "lambda" ? 3000 : 700);
    else { refresh(); loadHistory(); }
  } catch (e) { out.replaceChildren(el("p", {class: "warn"}, errorText(e))); }
}
async function cancelJob(n, id) {
  try { await postJSON("/jobs/" + encodeURIComponent(id) + "/cancel", {}); }
  catch (e) { document.getElementById("job-" + n).append(el("p", {class: "warn"}, errorText(e))); }
}
async function loadHistory() {
  const tbody = document.querySelector("#history tbody");
  const note = document.getElementById("history-note");
  try {
    const d = await getJSON("/jobs");
    note.textContent = clean(d.error || d.note || (d.stored ? "kept in " + d.stored : ""));
    tbody.replaceChildren(...d.jobs.map(j => el("tr", {"data-job": clean(j.jobId), class: "status-" + clean(j.status)},
      el("td", {}, val(j.createdAt)), el("td", {}, clean(j.title || j.kind) + (j.request && j.request.dryRun ? " (preview)" : "")),
      el("td", {}, val(j.consumer)), el("td", {}, val(j.status)), el("td", {class: "num"}, progressText(j)),
      el("td", {}, val(j.stoppedBy || "")), el("td", {}, val((j.caller || {}).display || "")))));
  } catch (e) { note.textContent = errorText(e); }
}

// ---- the refresh ---------------------------------------------------------------------------------------
async function refresh() {
  try {
    const data = await getJSON("/consumers");
    for (const c of data.consumers) { render(c); loadFailures(c.name); }
    if (Date.now() - chartsAt > CHART_MS) { chartsAt = Date.now(); for (const c of data.consumers) loadCharts(c.name); }
    document.getElementById("updated").textContent = new Date().toLocaleTimeString();
    document.getElementById("status").textContent = "";
  } catch (e) {
    document.getElementById("status").textContent = "refresh failed: " + clean(e.message) +
      " (showing the last answer, from " + document.getElementById("updated").textContent + ")";
  }
}

refresh();
loadHistory();
setInterval(refresh, REFRESH_MS);
setInterval(loadHistory, Math.max(REFRESH_MS, 5000));
