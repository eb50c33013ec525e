// vitalstream central station: the browser side. Plain JavaScript, no build step.
// The server sends view models (dashboard/views.py); this file only draws them.
// Live changes arrive as server-sent events from /api/events: one stream per page, no polling.
"use strict";

const CSRF = document.querySelector('meta[name="csrf-token"]')?.content || "";
const PAGE = document.body.dataset.page;
const MAY_ACT = document.body.dataset.mayAct === "1";
const PRIORITY_RANK = { high: 0, medium: 1, low: 2 };
const BEAT_COLOURS = { N: "#9aa5b1", S: "#ff9800", V: "#ff5252", F: "#ce93d8", Q: "#4fc3f7", "": "#607080" };
const TRACE_COLOURS = { ecg: "#4caf50", ecg2: "#81c784", ppg: "#29b6f6", abp: "#ef5350", resp: "#ffee58" };
const TRACE_NAMES = { ecg: "ECG", ecg2: "ECG lead 2", ppg: "Pulse wave (PPG)", abp: "Arterial pressure", resp: "Respiration" };
const SNOOZE_CHOICES = [2, 5, 10, 15, 30];

// ------------------------------------------------------------------ small helpers
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k === "css") for (const [prop, val] of Object.entries(v)) node.style.setProperty(prop, val); // CSSOM: allowed by the CSP
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function fmtTime(ms) {
  if (ms === null || ms === undefined || ms === "") return "–";
  const d = new Date(Number(ms));
  const today = new Date();
  const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
  return d.toDateString() === today.toDateString() ? time : `${d.toLocaleDateString()} ${time}`;
}

function fmtAge(seconds) {
  if (!isFinite(seconds) || seconds < 0) return "–";
  if (seconds < 60) return `${Math.floor(seconds)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min`;
  return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`;
}

function num(v, digits = 0) {
  return v === null || v === undefined ? "–" : Number(v).toFixed(digits);
}

function patientUrl(pid) { return `/patients/${encodeURIComponent(pid)}`; }
function alertUrl(id) { return `/alerts/${encodeURIComponent(id)}`; }
function alarmUrl(id) { return `/device-alarms/${encodeURIComponent(id)}`; }

let serverOffsetMs = 0; // server clock - browser clock, from the board snapshot
function serverNow() { return Date.now() + serverOffsetMs; }

function toast(text, bad = false) {
  const t = document.getElementById("toast");
  if (!t) return;
  t.textContent = text;
  t.className = bad ? "show bad" : "show";
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.className = ""; }, 4000);
}

async function api(url, options = {}) {
  const opts = { credentials: "same-origin", headers: { Accept: "application/json" }, ...options };
  if (opts.method && opts.method !== "GET") {
    opts.headers = { ...opts.headers, "X-CSRF-Token": CSRF, "Content-Type": "application/json" };
  }
  const resp = await fetch(url, opts);
  if (resp.status === 401) {
    window.location.assign(`/login?next=${encodeURIComponent(window.location.pathname)}`);
    throw new Error("not logged in");
  }
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    const err = new Error(body.error || `HTTP ${resp.status}`);
    err.status = resp.status;
    throw err;
  }
  return body;
}

async function act(alertId, kind, minutes) {
  try {
    const body = kind === "snooze" ? JSON.stringify({ minutes }) : "{}";
    const r = await api(`/api/alerts/${encodeURIComponent(alertId)}/${kind}`, { method: "POST", body });
    const what = kind === "ack" ? "acknowledged" : `snoozed for ${minutes} min`;
    let msg = r.changed ? `${r.alert.type} ${what} (${r.by})` : "no change: already in effect or resolved";
    if (!r.published) msg += document.body.dataset.broker === "1"
      ? " · the worker was not told (Kafka unavailable); Redis has it" : "";
    toast(msg, !r.published && document.body.dataset.broker === "1");
    return r;
  } catch (e) {
    toast(`refused: ${e.message}`, true);
    return null;
  }
}

function actionButtons(alert, onDone) {
  if (!MAY_ACT || !alert.state || alert.state === "resolved") return null;
  const box = el("span", { class: "act" });
  if (alert.state !== "acknowledged") {
    box.append(el("button", {
      class: "ack", type: "button", "data-action": "ack", "data-alert-id": alert.alert_id,
      title: "Acknowledge (stops escalation; recorded with your name)",
      onclick: async (ev) => { ev.stopPropagation(); const r = await act(alert.alert_id, "ack"); if (r && onDone) onDone(r); },
    }, "Acknowledge"));
  }
  const select = el("select", { "aria-label": "snooze minutes", class: "snooze-min" },
    SNOOZE_CHOICES.map((m) => el("option", { value: m }, `${m} min`)));
  box.append(select, el("button", {
    class: "snooze", type: "button", "data-action": "snooze", "data-alert-id": alert.alert_id,
    title: "Silence for a while; it comes back if the condition is still there",
    onclick: async (ev) => { ev.stopPropagation(); const r = await act(alert.alert_id, "snooze", Number(select.value)); if (r && onDone) onDone(r); },
  }, "Snooze"));
  return box;
}

function stateWords(a) {
  const parts = [a.state];
  if (a.escalation_level) parts.push(`escalated ×${a.escalation_level}`);
  if (a.acked_by) parts.push(`ack ${a.acked_by} ${fmtTime(a.acked_ms)}`);
  if (a.state === "snoozed" && a.snoozed_until_ms) parts.push(`snoozed by ${a.snoozed_by || "?"} until ${fmtTime(a.snoozed_until_ms)}`);
  if (!a.condition_active && a.state !== "resolved") parts.push("condition over, awaiting acknowledgement");
  return parts.join(" · ");
}

function cmpOrder(a, b) {
  const x = a.order, y = b.order;
  for (let i = 0; i < x.length; i++) {
    if (x[i] < y[i]) return -1;
    if (x[i] > y[i]) return 1;
  }
  return 0;
}

// ---------------------------------------------------------------- live connection
function connectLive(handlers) {
  const conn = document.getElementById("conn");
  let source = null;
  let retryTimer = null;
  function setConn(state, text) { if (conn) { conn.dataset.state = state; conn.textContent = text; } }
  function open() {
    source = new EventSource("/api/events");
    source.addEventListener("board", (e) => { setConn("live", "live"); handlers.board(JSON.parse(e.data)); });
    source.addEventListener("alert", (e) => handlers.alert(JSON.parse(e.data)));
    source.addEventListener("tiles", (e) => handlers.tiles(JSON.parse(e.data)));
    source.addEventListener("resync", () => { source.close(); open(); });
    source.addEventListener("logout", () => window.location.assign("/login"));
    source.onerror = async () => {
      setConn("down", "reconnecting…");
      if (source.readyState === EventSource.CLOSED) {
        // The server refused the stream: logged out, or the server restarted.
        clearTimeout(retryTimer);
        retryTimer = setTimeout(async () => {
          try { await api("/api/me"); open(); } catch (e) { /* api() redirects on 401 */ }
        }, 2000);
      }
    };
  }
  open();
}

// ---------------------------------------------------------------------- the board
const board = { tiles: new Map(), alerts: new Map(), staleAfterS: 15 };

function tileNode(t) {
  const v = t.vitals || {};
  const node = el("a", {
    class: `tile tone-${t.tone}`, href: patientUrl(t.patient_id),
    dataset: { pid: t.patient_id, rank: String(t.rank), written: String(t.written_ms || "") },
  });
  node.style.order = String(t.rank);
  const head = el("div", { class: "tile-head" }, el("span", { class: "pid" }, t.patient_id),
    v.news2 !== null && v.news2 !== undefined ? el("span", { class: `news2 n${Math.min(3, v.news2 >= 7 ? 3 : v.news2 >= 5 ? 2 : v.news2 >= 1 ? 1 : 0)}`, title: "NEWS2 (partial)" }, `NEWS ${v.news2}`) : null);
  const bp = v.sys_mmhg !== null && v.sys_mmhg !== undefined
    ? el("span", { class: "v abp", title: "arterial pressure sys/dia (mean), mmHg" }, `${num(v.sys_mmhg)}/${num(v.dia_mmhg)}`, el("small", {}, ` (${num(v.map_mmhg)})`))
    : null;
  const nums = el("div", { class: "nums" },
    el("span", { class: "v hr", title: "heart rate (ECG), /min" }, el("small", {}, "HR "), num(v.hr_bpm)),
    el("span", { class: "v pr", title: `pulse rate (${v.pulse_source || "–"}), /min` }, el("small", {}, "PR "), num(v.pulse_bpm)),
    el("span", { class: "v rr", title: `breathing rate (${v.resp_source || "–"}), /min` }, el("small", {}, "RR "), num(v.resp_bpm)),
    bp);
  const q = el("div", { class: "quality", title: "signal quality" },
    ["ecg", "ppg", "resp", "abp"].filter((s) => v[`${s}_quality`] !== null && v[`${s}_quality`] !== undefined)
      .map((s) => el("span", { class: "q" }, s.toUpperCase(), el("i", { css: { "--q": `${Math.round(100 * v[`${s}_quality`])}%` } }))));
  const chips = el("div", { class: "chips" }, t.alerts.slice(0, 3).map((a) => el("span", {
    class: `chip prio-${a.priority} state-${a.state}${a.technical ? " technical" : ""}`,
    title: `${a.message} (${a.state})`, dataset: { alertId: a.alert_id },
  }, a.type.replace(/_/g, " "), a.escalation_level ? ` ↑${a.escalation_level}` : "")),
  t.alerts.length > 3 ? el("span", { class: "chip more" }, `+${t.alerts.length - 3}`) : null);
  const tech = el("div", { class: "tech" }, t.technical.join(" · "));
  node.append(head, nums, q, chips, tech);
  return node;
}

function placeTile(node) {
  const container = document.getElementById("board") || document.getElementById("patient-tile");
  const pid = node.dataset.pid;
  const old = board.tiles.get(pid);
  if (old && old.isConnected) { old.replaceWith(node); }
  else {
    // Insert in patient-id order; the CSS order property puts alarming tiles first.
    const after = [...container.children].find((c) => c.dataset.pid.localeCompare(pid, undefined, { numeric: true }) > 0);
    container.insertBefore(node, after || null);
  }
  board.tiles.set(pid, node);
  applyFilter(node);
}

function applyFilter(node) {
  const f = document.getElementById("filter");
  const text = f ? f.value.trim().toLowerCase() : "";
  node.hidden = text !== "" && !node.dataset.pid.toLowerCase().includes(text);
}

function markStale() {
  const now = serverNow();
  for (const node of board.tiles.values()) {
    const written = Number(node.dataset.written);
    const stale = !written || (now - written) / 1000 > board.staleAfterS;
    node.classList.toggle("stale", stale);
    const tech = node.querySelector(".tech");
    if (!tech) continue;
    let badge = tech.querySelector(".nodata");
    if (stale) {
      const words = written ? `no data ${fmtAge((now - written) / 1000)}` : "no vitals yet";
      if (!badge) { badge = el("span", { class: "nodata" }); tech.prepend(badge); }
      const others = (tech.textContent || "").replace(badge.textContent, "").trim();
      badge.textContent = words + (others ? " · " : "");
    } else if (badge) badge.remove();
  }
}

function alertItem(a) {
  const age = a.created_wall_ms ? (serverNow() - a.created_wall_ms) / 1000 : NaN;
  return el("li", {
    class: `alert prio-${a.priority} state-${a.state}${a.technical ? " technical" : ""}`,
    dataset: { alertId: a.alert_id, state: a.state, pid: a.patient_id, created: String(a.created_wall_ms || "") },
  },
  el("div", { class: "a-head" },
    el("span", { class: "prio" }, a.priority.toUpperCase()),
    el("a", { href: alertUrl(a.alert_id), class: "a-type" }, a.type.replace(/_/g, " ")),
    el("a", { href: patientUrl(a.patient_id), class: "a-pid" }, a.patient_id),
    el("span", { class: "age", title: "waiting since first raised" }, fmtAge(age))),
  el("div", { class: "a-msg" }, a.message),
  el("div", { class: "a-state" }, stateWords(a)),
  actionButtons(a));
}

function renderAlertList() {
  const list = document.getElementById("alert-list");
  if (!list) return;
  const alerts = [...board.alerts.values()].sort(cmpOrder);
  list.replaceChildren(...alerts.map(alertItem));
  if (!alerts.length) list.append(el("li", { class: "empty" }, "No open alarms."));
}

function renderCounts(counts) {
  const c = document.getElementById("counts");
  if (!c) return;
  const open = [...board.alerts.values()].filter((a) => a.unacknowledged);
  const by = { high: 0, medium: 0, low: 0 };
  for (const a of open) by[a.priority] = (by[a.priority] || 0) + 1;
  c.replaceChildren(
    el("span", { class: "cnt high" }, `${by.high} high`),
    el("span", { class: "cnt medium" }, `${by.medium} medium`),
    el("span", { class: "cnt low" }, `${by.low} low`));
  const pc = document.getElementById("patient-count");
  if (pc) pc.textContent = `${board.tiles.size} patients`;
}

function boardHandlers() {
  return {
    board(data) {
      serverOffsetMs = data.server_now_ms - Date.now();
      board.staleAfterS = data.stale_after_s;
      const container = document.getElementById("board");
      if (container) container.replaceChildren();
      board.tiles.clear();
      board.alerts.clear();
      for (const t of data.tiles) placeTile(tileNode(t));
      for (const a of data.alerts) board.alerts.set(a.alert_id, a);
      renderAlertList();
      renderCounts();
      markStale();
    },
    alert(data) {
      const a = data.alert;
      if (a.state === "resolved") board.alerts.delete(a.alert_id);
      else board.alerts.set(a.alert_id, a);
      placeTile(tileNode(data.tile));
      renderAlertList();
      renderCounts();
      markStale();
    },
    tiles(list) {
      for (const t of list) placeTile(tileNode(t));
      renderCounts();
      markStale();
    },
  };
}

function initBoard() {
  const f = document.getElementById("filter");
  if (f) f.addEventListener("input", () => { for (const n of board.tiles.values()) applyFilter(n); });
  connectLive(boardHandlers());
  setInterval(() => { markStale(); renderAgesOnly(); }, 5000);
}

function renderAgesOnly() {
  for (const li of document.querySelectorAll("#alert-list li.alert")) {
    const created = Number(li.dataset.created);
    const age = li.querySelector(".age");
    if (age && created) age.textContent = fmtAge((serverNow() - created) / 1000);
  }
}

// -------------------------------------------------------------------- alerts page
async function initAlerts() {
  const open = document.querySelector("#open-alerts tbody");
  async function loadOpen() {
    const { alerts } = await api("/api/alerts");
    open.replaceChildren(...alerts.map((a) => el("tr", { class: `prio-${a.priority} state-${a.state}`, dataset: { alertId: a.alert_id } },
      el("td", {}, el("span", { class: `badge prio-${a.priority}` }, a.priority)),
      el("td", {}, el("a", { href: alertUrl(a.alert_id) }, a.type.replace(/_/g, " "))),
      el("td", {}, el("a", { href: patientUrl(a.patient_id) }, a.patient_id)),
      el("td", {}, a.state),
      el("td", {}, fmtAge((serverNow() - (a.created_wall_ms || 0)) / 1000)),
      el("td", {}, a.escalation_level || ""),
      el("td", {}, [a.acked_by ? `ack ${a.acked_by} ${fmtTime(a.acked_ms)}` : "", a.snoozed_by ? ` snoozed by ${a.snoozed_by}` : ""].join("")),
      el("td", { class: "msg" }, a.message),
      el("td", {}, actionButtons(a, loadOpen)))));
    if (!alerts.length) open.append(el("tr", {}, el("td", { colspan: 9, class: "muted" }, "No open alerts.")));
  }
  async function loadAlarms() {
    const { device_alarms: rows } = await api("/api/device-alarms?limit=200");
    document.querySelector("#device-alarms tbody").replaceChildren(...rows.map((d) => el("tr", { class: `verdict-${d.verdict}` },
      el("td", {}, fmtTime(d.t_ms)),
      el("td", {}, el("a", { href: patientUrl(d.patient_id) }, d.patient_id)),
      el("td", {}, d.label || d.alarm_type),
      el("td", {}, el("span", { class: `badge verdict-${d.verdict}` }, d.verdict)),
      el("td", { class: "msg" }, d.reason + (d.note ? `; ${d.note}` : "")),
      el("td", {}, d.alert_id ? el("a", { href: alertUrl(d.alert_id) }, d.alert_id) : "–"),
      el("td", {}, el("a", { href: alarmUrl(d.alarm_id) }, "strip")))));
  }
  async function loadAll() {
    const { alerts } = await api("/api/alerts?all=1");
    alerts.sort((a, b) => b.raised_ms - a.raised_ms);
    document.querySelector("#all-alerts tbody").replaceChildren(...alerts.slice(0, 500).map((a) => el("tr", { class: `state-${a.state}` },
      el("td", {}, fmtTime(a.raised_ms)),
      el("td", {}, el("span", { class: `badge prio-${a.priority}` }, a.priority)),
      el("td", {}, el("a", { href: alertUrl(a.alert_id) }, a.type.replace(/_/g, " "))),
      el("td", {}, el("a", { href: patientUrl(a.patient_id) }, a.patient_id)),
      el("td", {}, a.state),
      el("td", {}, a.acked_by ? `${a.acked_by} ${fmtTime(a.acked_ms)}` : ""),
      el("td", {}, a.snoozed_by || ""),
      el("td", { class: "msg" }, a.message))));
  }
  let pending = null;
  const reloadSoon = () => { clearTimeout(pending); pending = setTimeout(() => { loadOpen(); loadAll(); loadAlarms(); }, 300); };
  connectLive({
    board(data) { serverOffsetMs = data.server_now_ms - Date.now(); for (const a of data.alerts) board.alerts.set(a.alert_id, a); renderCounts(); reloadSoon(); },
    alert(data) { const a = data.alert; if (a.state === "resolved") board.alerts.delete(a.alert_id); else board.alerts.set(a.alert_id, a); renderCounts(); reloadSoon(); },
    tiles() {},
  });
}

// --------------------------------------------------------------------- strips
function drawStrip(container, strip, opts = {}) {
  container.replaceChildren();
  const lanes = strip.traces;
  const width = Math.max(600, container.clientWidth || 900);
  const laneH = (sig) => (sig === "ecg" || sig === "ecg2" ? 150 : 100);
  const top = 22;
  const height = top + lanes.reduce((s, t) => s + laneH(t.signal), 0) + 18;
  const canvas = el("canvas", { class: "strip", width, height, role: "img",
    "aria-label": `${strip.title} evidence strip, ${lanes.map((t) => TRACE_NAMES[t.signal] || t.signal).join(", ")}` });
  container.append(canvas);
  const ctx = canvas.getContext("2d");
  const spanMs = strip.end_ms - strip.start_ms;
  const left = 8, right = width - 8;
  const x = (ms) => left + (ms / spanMs) * (right - left);
  ctx.fillStyle = "#0d1117";
  ctx.fillRect(0, 0, width, height);
  // ECG paper: 0.2 s major, 0.04 s minor columns (25 mm/s paper: 5 mm = 0.2 s).
  for (let ms = 0; ms <= spanMs; ms += 40) {
    ctx.strokeStyle = ms % 200 === 0 ? "rgba(255,80,80,0.28)" : "rgba(255,80,80,0.09)";
    ctx.beginPath(); ctx.moveTo(x(ms), top); ctx.lineTo(x(ms), height - 18); ctx.stroke();
  }
  ctx.fillStyle = "#8b949e"; ctx.font = "11px sans-serif";
  for (let s = 0; s <= spanMs / 1000; s++) ctx.fillText(`${s - spanMs / 1000} s`, Math.min(x(s * 1000) + 2, right - 30), height - 5);
  let y0 = top;
  for (const t of lanes) {
    const h = laneH(t.signal);
    const vals = t.values.filter((v) => v !== null);
    let lo = Math.min(...vals), hi = Math.max(...vals);
    if (!(hi > lo)) { lo -= 1; hi += 1; }
    const pad = (hi - lo) * 0.08;
    lo -= pad; hi += pad;
    const y = (v) => y0 + h - 6 - ((v - lo) / (hi - lo)) * (h - 12);
    // Horizontal paper lines for ECG lanes.
    ctx.strokeStyle = "rgba(255,80,80,0.12)";
    for (let k = 1; k < 5; k++) { ctx.beginPath(); ctx.moveTo(left, y0 + (k * h) / 5); ctx.lineTo(right, y0 + (k * h) / 5); ctx.stroke(); }
    ctx.strokeStyle = TRACE_COLOURS[t.signal] || "#ddd";
    ctx.lineWidth = 1.4;
    ctx.beginPath();
    let pen = false;
    t.values.forEach((v, i) => {
      if (v === null) { pen = false; return; }
      const px = x(t.t0_ms + (i * 1000) / t.fs), py = y(v);
      if (pen) ctx.lineTo(px, py); else { ctx.moveTo(px, py); pen = true; }
    });
    ctx.stroke();
    ctx.lineWidth = 1;
    ctx.fillStyle = TRACE_COLOURS[t.signal] || "#ddd";
    ctx.font = "12px sans-serif";
    const scaleNote = t.signal === "abp" ? ` ${Math.round(lo)}–${Math.round(hi)} ${t.units}` : t.units ? ` (${t.units})` : "";
    const cover = t.coverage < 0.999 ? ` · data ${Math.round(100 * t.coverage)} %` : "";
    ctx.fillText(`${TRACE_NAMES[t.signal] || t.signal}${scaleNote}${t.filtered ? ` · ${t.filtered}` : ""}${cover}`, left + 4, y0 + 13);
    if (t.signal === "ecg") {
      for (const [ms, cls] of strip.beats) {
        const px = x(ms);
        ctx.fillStyle = BEAT_COLOURS[cls] || BEAT_COLOURS[""];
        ctx.fillRect(px - 0.5, y0 + 16, 1.5, 8);
        ctx.font = "bold 11px sans-serif";
        ctx.fillText(cls || "·", px - 3, y0 + 34);
      }
    }
    y0 += h;
  }
  ctx.strokeStyle = "#ffffff";
  ctx.setLineDash([4, 3]);
  ctx.beginPath(); ctx.moveTo(x(spanMs) - 1, top - 4); ctx.lineTo(x(spanMs) - 1, height - 18); ctx.stroke();
  ctx.setLineDash([]);
  ctx.fillStyle = "#fff"; ctx.font = "bold 12px sans-serif";
  const mark = opts.markLabel || (strip.kind === "device-alarm" ? "monitor alarm" : "alert raised");
  ctx.fillText(mark, right - ctx.measureText(mark).width - 4, 14);
  ctx.fillStyle = "#c9d1d9";
  ctx.fillText(`${strip.title.replace(/_/g, " ")} · ${strip.patient_id} · ${fmtTime(strip.start_ms)}–${fmtTime(strip.end_ms)}`, left + 2, 14);
  const legend = el("div", { class: "beat-legend" }, "Beat marks (first ECG lead, its classes): ",
    ...Object.entries({ N: "normal", S: "supraventricular", V: "ventricular", F: "fusion", Q: "unclassifiable", "": "not classified" })
      .map(([c, w]) => el("span", { css: { color: BEAT_COLOURS[c] } }, `${c || "·"} ${w} `)),
    el("span", { class: "muted" }, ` · stored ${strip.size_bytes} bytes`));
  container.append(legend);
}

function verdictBox(d) {
  return el("div", { class: `reason-box verdict-${d.verdict}` },
    el("div", {}, el("span", { class: `badge verdict-${d.verdict}` }, d.verdict), " ", el("b", {}, d.label || d.alarm_type)),
    el("p", {}, d.reason), d.note ? el("p", { class: "muted" }, d.note) : null,
    el("p", { class: "muted" }, `windows judged: ${d.windows_judged}` +
      (d.p_true !== undefined && d.p_true !== null && d.p_true !== "" ? ` · verifier p(true) ${Number(d.p_true).toFixed(2)}` : "") +
      (d.verifier ? ` · ${d.verifier}` : "")));
}

// --------------------------------------------------------------------- alert page
async function initAlert() {
  const root = document.getElementById("alert-detail");
  const id = root.dataset.alertId;
  async function load() {
    let data;
    try { data = await api(`/api/alerts/${encodeURIComponent(id)}`); } catch (e) {
      document.getElementById("alert-head").replaceChildren(el("p", { class: "error" }, e.message));
      return;
    }
    const a = data.alert;
    document.getElementById("alert-head").replaceChildren(
      el("h1", { class: `prio-${a.priority}` }, el("span", { class: `badge prio-${a.priority}` }, a.priority), " ", a.type.replace(/_/g, " "),
        " · ", el("a", { href: patientUrl(a.patient_id) }, a.patient_id)),
      el("p", { class: "a-msg" }, a.message),
      el("p", { id: "alert-state", "data-state": a.state }, stateWords(a)),
      el("p", { class: "muted" }, `onset ${fmtTime(a.onset_ms)} · raised ${fmtTime(a.raised_ms)} · updated ${fmtTime(a.updated_ms)}${a.resolved_ms ? ` · resolved ${fmtTime(a.resolved_ms)}` : ""} · id ${a.alert_id}`));
    document.getElementById("alert-actions").replaceChildren(actionButtons(a, load) || "");
    const tbody = document.querySelector("#alert-audit tbody");
    tbody.replaceChildren(...data.audit.map((e) => el("tr", {},
      el("td", {}, fmtTime(e.t_ms)), el("td", {}, fmtTime(e.written_ms)), el("td", {}, e.event), el("td", {}, e.state),
      el("td", {}, e.by || ""), el("td", {}, e.value === null ? "" : e.value), el("td", {}, e.escalation_level || ""),
      el("td", { class: "msg" }, e.detail))));
    const stripBox = document.getElementById("alert-strip");
    if (data.strip_ref) {
      try { drawStrip(stripBox, await api(`/api/alerts/${encodeURIComponent(id)}/strip`)); } catch (e) { stripBox.replaceChildren(el("p", { class: "muted" }, e.message)); }
    } else {
      stripBox.replaceChildren(el("p", { class: "muted" }, a.evidence_expected
        ? "No strip stored for this alert (the worker had no samples of those seconds left, or it expired)."
        : "Strips are stored for high-priority alerts and bedside alarms; this alert's trend is on the patient page."));
    }
    const panel = document.getElementById("alert-decisions-panel");
    const box = document.getElementById("alert-decisions");
    if (data.device_alarms.length) {
      panel.hidden = false;
      box.replaceChildren();
      for (const d of data.device_alarms) {
        const s = el("div", { class: "strip-box" });
        box.append(el("div", { class: "strip-with-reason" }, s, verdictBox(d)));
        if (d.has_strip) api(`/api/device-alarms/${encodeURIComponent(d.alarm_id)}`).then((r) => r.strip && drawStrip(s, r.strip));
        else s.append(el("p", { class: "muted" }, "No strip stored for this bedside alarm."));
      }
    }
  }
  await load();
  connectLive({ board() {}, tiles() {}, alert(data) { if (data.alert.alert_id === id) load(); } });
}

async function initDeviceAlarm() {
  const root = document.getElementById("device-alarm");
  const id = root.dataset.alarmId;
  try {
    const data = await api(`/api/device-alarms/${encodeURIComponent(id)}`);
    const d = data.decision;
    document.getElementById("decision-head").replaceChildren(
      el("h1", {}, "Bedside alarm ", el("b", {}, d.label || d.alarm_type), " · ", el("a", { href: patientUrl(d.patient_id) }, d.patient_id)),
      el("p", { class: "muted" }, `monitor ${d.device_id || "–"} · alarm at ${fmtTime(d.t_ms)} · decided at ${fmtTime(d.decided_ms)}`),
      d.alert_id ? el("p", {}, "Carried to the care team by ", el("a", { href: alertUrl(d.alert_id) }, d.alert_id)) : el("p", { class: "muted" }, "Not passed to the care team."));
    document.getElementById("decision-reason").replaceChildren(verdictBox(d));
    const box = document.getElementById("decision-strip");
    if (data.strip) drawStrip(box, data.strip); else box.replaceChildren(el("p", { class: "muted" }, "No strip stored for this alarm."));
  } catch (e) {
    document.getElementById("decision-head").replaceChildren(el("p", { class: "error" }, e.message));
  }
  connectLive({ board() {}, tiles() {}, alert() {} });
}

// ------------------------------------------------------------------- patient page
function drawTrend(canvas, data, series, opts = {}) {
  const width = canvas.clientWidth || 600;
  canvas.width = width;
  const height = canvas.height;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#0d1117"; ctx.fillRect(0, 0, width, height);
  const t = data.t_ms;
  const left = 40, right = width - 10, topY = 10, bottom = height - 22;
  const vals = series.flatMap((s) => data[s.key].filter((v) => v !== null && v !== undefined));
  ctx.fillStyle = "#8b949e"; ctx.font = "11px sans-serif";
  if (!t.length || !vals.length) { ctx.fillText("no measurements in this period", left, height / 2); return; }
  let lo = opts.min !== undefined ? Math.min(opts.min, ...vals) : Math.min(...vals);
  let hi = opts.max !== undefined ? Math.max(opts.max, ...vals) : Math.max(...vals);
  if (!(hi > lo)) { lo -= 5; hi += 5; }
  const pad = (hi - lo) * 0.1; lo -= pad; hi += pad;
  const t1 = t[t.length - 1], t0 = t1 - data.hours * 3600000;
  const x = (ms) => left + ((ms - t0) / (t1 - t0 || 1)) * (right - left);
  const y = (v) => bottom - ((v - lo) / (hi - lo)) * (bottom - topY);
  if (opts.bands) {
    for (const [from, to, colour] of opts.bands) {
      ctx.fillStyle = colour;
      ctx.fillRect(left, y(Math.min(to, hi)), right - left, y(Math.max(from, lo)) - y(Math.min(to, hi)));
    }
  }
  ctx.strokeStyle = "#30363d";
  ctx.fillStyle = "#8b949e";
  for (let k = 0; k <= 4; k++) {
    const v = lo + ((hi - lo) * k) / 4;
    ctx.beginPath(); ctx.moveTo(left, y(v)); ctx.lineTo(right, y(v)); ctx.stroke();
    ctx.fillText(v.toFixed(0), 4, y(v) + 4);
  }
  const stepH = data.hours <= 1 ? 600000 : data.hours <= 4 ? 1800000 : 3600000;
  for (let ms = Math.ceil(t0 / stepH) * stepH; ms <= t1; ms += stepH) {
    ctx.beginPath(); ctx.moveTo(x(ms), topY); ctx.lineTo(x(ms), bottom); ctx.stroke();
    const d = new Date(ms);
    ctx.fillText(`${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`, x(ms) - 14, height - 6);
  }
  let lx = left + 6;
  for (const s of series) {
    ctx.strokeStyle = s.colour; ctx.lineWidth = 1.8; ctx.beginPath();
    let pen = false, prevY = null;
    data[s.key].forEach((v, i) => {
      if (v === null || v === undefined) { pen = false; return; }
      const px = x(t[i]), py = y(v);
      if (!pen) { ctx.moveTo(px, py); pen = true; }
      else if (opts.step) { ctx.lineTo(px, prevY); ctx.lineTo(px, py); }
      else ctx.lineTo(px, py);
      prevY = py;
    });
    ctx.stroke(); ctx.lineWidth = 1;
    ctx.fillStyle = s.colour; ctx.fillText(s.label, lx, topY + 10); lx += ctx.measureText(s.label).width + 14;
  }
}

async function initPatient() {
  const root = document.getElementById("patient");
  const pid = root.dataset.patientId;
  const hoursSel = document.getElementById("trend-hours");
  const maxH = Number(root.dataset.maxHours);
  for (const o of [...hoursSel.options]) if (Number(o.value) > maxH) o.remove();
  async function loadTrends() {
    const data = await api(`/api/patients/${encodeURIComponent(pid)}/trends?hours=${hoursSel.value}`);
    document.getElementById("trend-note").textContent = data.t_ms.length
      ? `${data.t_ms.length} points, one per minute (means of the findings)` : "no trend points yet";
    drawTrend(document.getElementById("trend-hr"), data, [{ key: "hr", label: "HR", colour: "#4caf50" }, { key: "pulse", label: "pulse", colour: "#29b6f6" }], { min: 40, max: 140 });
    drawTrend(document.getElementById("trend-rr"), data, [{ key: "rr", label: "RR", colour: "#ffee58" }], { min: 5, max: 30 });
    drawTrend(document.getElementById("trend-bp"), data, [{ key: "sys", label: "sys", colour: "#ef5350" }, { key: "map", label: "mean", colour: "#ff8a80" }, { key: "dia", label: "dia", colour: "#b71c1c" }], { min: 40, max: 160 });
    drawTrend(document.getElementById("trend-news2"), data, [{ key: "news2", label: "NEWS2", colour: "#ffffff" }],
      { min: 0, max: 8, step: true, bands: [[-1, 4.5, "rgba(76,175,80,0.12)"], [4.5, 6.5, "rgba(255,152,0,0.18)"], [6.5, 99, "rgba(244,67,54,0.22)"]] });
  }
  async function loadPatient() {
    let data;
    try { data = await api(`/api/patients/${encodeURIComponent(pid)}`); } catch (e) {
      document.getElementById("patient-tile").replaceChildren(el("p", { class: "error" }, e.message));
      return;
    }
    board.tiles.clear();
    document.getElementById("patient-tile").replaceChildren();
    placeTile(tileNode(data.tile));
    markStale();
    document.querySelector("#patient-alerts tbody").replaceChildren(...data.alerts.map((a) => el("tr", { class: `state-${a.state}` },
      el("td", {}, fmtTime(a.raised_ms)), el("td", {}, el("span", { class: `badge prio-${a.priority}` }, a.priority)),
      el("td", {}, el("a", { href: alertUrl(a.alert_id) }, a.type.replace(/_/g, " "))), el("td", {}, a.state),
      el("td", {}, a.acked_by ? `${a.acked_by} ${fmtTime(a.acked_ms)}` : ""), el("td", {}, fmtTime(a.resolved_ms)),
      el("td", { class: "msg" }, a.message))));
    document.querySelector("#patient-device-alarms tbody").replaceChildren(...data.device_alarms.map((d) => el("tr", {},
      el("td", {}, fmtTime(d.t_ms)), el("td", {}, d.label || d.alarm_type),
      el("td", {}, el("span", { class: `badge verdict-${d.verdict}` }, d.verdict)), el("td", { class: "msg" }, d.reason),
      el("td", {}, el("a", { href: alarmUrl(d.alarm_id) }, "strip")))));
  }
  hoursSel.addEventListener("change", loadTrends);
  await Promise.all([loadPatient(), loadTrends()]);
  connectLive({
    board(data) { serverOffsetMs = data.server_now_ms - Date.now(); },
    alert(data) { if (data.alert.patient_id === pid) loadPatient(); },
    tiles(list) { for (const t of list) if (t.patient_id === pid) { placeTile(tileNode(t)); markStale(); } },
  });
  setInterval(loadTrends, 60000);
  setInterval(markStale, 5000);
}

const INIT = { board: initBoard, alerts: initAlerts, alert: initAlert, "device-alarm": initDeviceAlarm, patient: initPatient };
if (INIT[PAGE]) INIT[PAGE]();
