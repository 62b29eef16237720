// The nuvem dashboard: one live feed per tab (/ui/stream), pages drawn from the URL, and
// actions through the gateway's own /system API with the session cookie + CSRF token.
const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const HISTORY_S = 15 * 60;
const main = document.getElementById("main");
let snap = null; // the latest snapshot
let page = null; // the page shown: {update(snap), destroy()}
// The overview's totals since the tab opened, kept across page changes: [time, calls/s,
// errors/s, slowest p99].
const totals = [[], [], [], []];

function addTotals(s) {
  let rps = 0, errors = 0, p99 = null;
  for (const f of s.functions) {
    rps += f.rps; errors += f.errors;
    if (f.p99 !== null) p99 = Math.max(p99 ?? 0, f.p99);
  }
  [s.time, rps, errors, p99].forEach((v, i) => totals[i].push(v));
  while (totals[0][0] < s.time - HISTORY_S) totals.forEach((c) => c.shift());
}

// -- helpers ------------------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c);
  return el;
}

function set(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

const fmt = {
  num: (v, d = 1) => (v === null || v === undefined ? "–" : Number(v).toFixed(d)),
  ms: (s) => (s === null || s === undefined ? "–" : (s * 1000).toFixed(s < 0.01 ? 2 : 1) + " ms"),
  bytes: (b) => (!b ? "–" : b >= 2 ** 30 ? (b / 2 ** 30).toFixed(1) + " GiB" : (b / 2 ** 20).toFixed(0) + " MiB"),
  time: (t) => new Date(t * 1000).toLocaleTimeString(),
  ago: (t) => {
    const s = Math.max(0, Date.now() / 1000 - t);
    return s < 60 ? `${s.toFixed(0)}s ago` : s < 3600 ? `${(s / 60).toFixed(0)}m ago` : `${(s / 3600).toFixed(1)}h ago`;
  },
};

function badge(state) {
  return h("span", { class: `badge ${state}` }, state);
}

function toast(message, bad = false) {
  const box = h("div", { class: bad ? "bad" : "" }, message);
  document.getElementById("toast").append(box);
  setTimeout(() => box.remove(), 6000);
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = CSRF;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) {
    location.href = `/ui/login?next=${encodeURIComponent(location.pathname)}`;
    throw new Error("signed out");
  }
  const text = await response.text();
  const type = response.headers.get("content-type") || "";
  const data = type.startsWith("application/json") && text ? JSON.parse(text) : text;
  if (!response.ok) throw new Error((data && data.error) || `${method} ${path}: ${response.status}`);
  return data;
}

async function act(what, fn) {
  try {
    const result = await fn();
    toast(what);
    return result;
  } catch (error) {
    toast(error.message, true);
    return null;
  }
}

// -- charts (uPlot) -----------------------------------------------------------------------

function color(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

class Chart {
  // A live time series: `labels` one per line; push(time, values) appends a point.
  // unit: formats a value; floor: the least top of the y axis; whole: counts, whole ticks.
  constructor(parent, title, labels, { unit = (v) => fmt.num(v, 2), floor = 1, whole = false } = {}) {
    this.box = h("div", { class: "chart", "data-chart": title }, h("h3", {}, title));
    parent.append(this.box);
    this.data = [[], ...labels.map(() => [])];
    const colors = ["--c1", "--c2", "--c3", "--c4"].map(color);
    const axis = { stroke: color("--muted"), grid: { stroke: color("--line"), width: 1 }, ticks: { show: false } };
    this.plot = new uPlot({
      width: Math.max(300, this.box.clientWidth - 16), height: 170,
      cursor: { drag: { x: false, y: false } },
      // At least a minute wide, so the first points do not span a calendar.
      scales: { x: { time: true, range: (u, lo, hi) => [Math.min(lo, hi - 60), hi] }, y: { range: (u, lo, hi) => [0, Math.max((hi || 0) * 1.1, floor)] } },
      // Counts (replicas, calls waiting) get whole-number ticks only.
      axes: [axis, { ...axis, size: 60, values: (u, ticks) => ticks.map(unit), ...(whole ? { incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000] } : {}) }],
      series: [{}, ...labels.map((label, i) => ({ label, stroke: colors[i % 4], width: 1.5, points: { show: false }, value: (u, v) => unit(v) }))],
    }, this.data, this.box);
    this.resize = () => this.plot.setSize({ width: Math.max(300, this.box.clientWidth - 16), height: 170 });
    window.addEventListener("resize", this.resize);
  }
  load(times, columns) {
    this.data = [times.slice(), ...columns.map((c) => c.slice())];
    this.plot.setData(this.data);
  }
  push(time, values) {
    const last = this.data[0].length ? this.data[0][this.data[0].length - 1] : -Infinity;
    if (time <= last) return;
    this.data[0].push(time);
    values.forEach((v, i) => this.data[i + 1].push(v));
    while (this.data[0].length && this.data[0][0] < time - HISTORY_S) this.data.forEach((c) => c.shift());
    this.plot.setData(this.data);
    // What the canvas shows, readable from the page (the browser tests look here).
    this.box.dataset.points = String(this.data[0].length);
    this.box.dataset.last = values.map((v) => (v === null ? "" : String(v))).join(",");
  }
  get points() { return this.data[0].length; }
  destroy() { window.removeEventListener("resize", this.resize); this.plot.destroy(); }
}

// -- pages --------------------------------------------------------------------------------

function overviewPage() {
  const cards = {};
  const card = (key, label) => (cards[key] = h("div", { class: "value", id: `total-${key}` }, "–")) && h("div", { class: "card" }, h("div", { class: "label" }, label), cards[key]);
  const filter = h("input", { type: "search", placeholder: "filter functions", id: "filter", oninput: () => page.update(snap) });
  const body = h("tbody");
  const events = h("ul", { class: "events", id: "recent-events" });
  main.replaceChildren(
    h("h1", {}, "Overview"),
    h("div", { class: "cards" }, card("functions", "functions"), card("replicas", "replicas ready / desired"),
      card("rps", "calls/s"), card("errors", "errors/s"), card("queued", "queued"), card("nodes", "nodes alive")),
    h("div", { class: "charts", id: "overview-charts" }),
    h("h2", {}, "Functions"), h("div", { class: "toolbar" }, filter),
    h("table", { id: "functions" }, h("thead", {}, h("tr", {}, ...["function", "state", "replicas", "calls/s", "p50", "p99", "errors/s", "queue", "in flight", "calls"].map((t, i) => h("th", { class: i > 1 ? "num" : "" }, t)))), body),
    h("h2", {}, "Latest events"), events,
  );
  const charts = document.getElementById("overview-charts");
  const rps = new Chart(charts, "calls/s (all functions)", ["calls/s", "errors/s"]);
  const lat = new Chart(charts, "p99 latency (slowest function)", ["p99"], { unit: fmt.ms, floor: 0.001 });
  rps.load(totals[0], [totals[1], totals[2]]);
  lat.load(totals[0], [totals[3]]);
  const rows = new Map();
  function row(f) {
    const cells = {};
    const td = (key, cls = "num") => (cells[key] = h("td", { class: `${cls} ${key}` }));
    const tr = h("tr", { "data-name": f.name },
      h("td", {}, h("a", { href: `/ui/functions/${encodeURIComponent(f.name)}`, "data-link": "" }, f.name)),
      td("status", ""), td("replicas"), td("rps"), td("p50"), td("p99"), td("errors"), td("queued"), td("inflight"), td("calls"));
    return { tr, cells };
  }
  return {
    update(s) {
      const wanted = filter.value.trim().toLowerCase();
      const shown = s.functions.filter((f) => !wanted || f.name.toLowerCase().includes(wanted));
      let ready = 0, desired = 0, queued = 0;
      for (const f of s.functions) { ready += f.ready; desired += f.desired; queued += f.queued; }
      const last = totals[0].length - 1;
      const [total, errors, p99] = [totals[1][last], totals[2][last], totals[3][last]];
      set(cards.functions, String(s.functions.length));
      set(cards.replicas, `${ready} / ${desired}`);
      set(cards.rps, fmt.num(total));
      set(cards.errors, fmt.num(errors));
      set(cards.queued, String(queued));
      set(cards.nodes, s.nodes.total ? `${s.nodes.alive} / ${s.nodes.total}` : "–");
      rps.push(s.time, [total, errors]);
      lat.push(s.time, [p99]);
      const seen = new Set();
      shown.forEach((f, i) => {
        seen.add(f.name);
        let r = rows.get(f.name);
        if (!r) rows.set(f.name, (r = row(f)));
        if (body.children[i] !== r.tr) body.insertBefore(r.tr, body.children[i] || null);
        if (r.cells.status.dataset.state !== f.status) {
          r.cells.status.dataset.state = f.status;
          r.cells.status.replaceChildren(badge(f.status));
        }
        set(r.cells.replicas, `${f.ready} / ${f.desired}`);
        set(r.cells.rps, fmt.num(f.rps));
        set(r.cells.p50, fmt.ms(f.p50));
        set(r.cells.p99, fmt.ms(f.p99));
        set(r.cells.errors, fmt.num(f.errors));
        set(r.cells.queued, String(f.queued));
        set(r.cells.inflight, String(f.inflight));
        set(r.cells.calls, String(f.calls));
      });
      for (const [name, r] of rows) if (!seen.has(name)) { r.tr.remove(); if (!s.functions.some((f) => f.name === name)) rows.delete(name); }
      renderEvents(events, s.events.slice(0, 10));
    },
    destroy() { rps.destroy(); lat.destroy(); },
  };
}

function renderEvents(list, events) {
  const key = events.map((e) => e.id).join(",");
  if (list.dataset.key === key) return;
  list.dataset.key = key;
  list.replaceChildren(...events.map((e) => h("li", { "data-kind": e.kind },
    h("span", { class: "when", title: new Date(e.time * 1000).toISOString() }, fmt.time(e.time)),
    h("span", { class: "kind" }, badge(e.kind)),
    e.function ? h("a", { href: `/ui/functions/${encodeURIComponent(e.function)}`, "data-link": "" }, e.function) : h("span", { class: "muted" }, "platform"),
    h("span", { class: "wrap" }, e.message))));
  if (!events.length) list.replaceChildren(h("li", { class: "muted" }, "no events"));
}

const SCALING_KINDS = new Set(["scaled", "autoscaled", "alert"]);

function functionPage(name) {
  const title = h("span", {}, name);
  const state = h("span", { id: "fn-state" });
  const decision = h("p", { class: "muted", id: "fn-decision" });
  const count = h("input", { type: "number", id: "scale-count", min: 0, style: null });
  const scale = h("form", { class: "toolbar", id: "scale-form", onsubmit: async (e) => {
    e.preventDefault();
    const replicas = Number(count.value);
    await act(`scaling ${name} to ${replicas}`, () => api("POST", `/system/scale-function/${encodeURIComponent(name)}`, { replicas }));
  } }, h("label", {}, "Replicas "), count, h("button", { type: "submit", id: "scale-button" }, "Scale"), h("span", { class: "muted", id: "scale-bounds" }));
  const replicas = h("tbody");
  const decisions = h("ul", { class: "events", id: "fn-decisions" });
  const logs = h("pre", { class: "logs", id: "fn-logs" }, "…");
  const jobs = h("tbody");
  main.replaceChildren(
    h("h1", {}, title, " ", state), decision, scale,
    h("div", { class: "charts", id: "fn-charts" }),
    h("h2", {}, "Replicas"),
    h("table", { id: "fn-replicas" }, h("thead", {}, h("tr", {}, ...["replica", "state", "node", "pid", "in flight", "memory"].map((t) => h("th", {}, t)))), replicas),
    h("div", { class: "grid2" },
      h("div", {}, h("h2", {}, "Scaling decisions"), decisions),
      h("div", {}, h("h2", {}, "Jobs"), h("table", { id: "fn-jobs" }, h("thead", {}, h("tr", {}, ...["job", "state", "attempts", "created"].map((t) => h("th", {}, t)))), jobs))),
    h("h2", {}, "Recent log lines ", h("button", { class: "quiet", type: "button", onclick: () => loadLogs() }, "refresh")), logs,
  );
  const box = document.getElementById("fn-charts");
  const calls = new Chart(box, "calls/s", ["calls/s", "errors/s"]);
  const latency = new Chart(box, "latency", ["p50", "p99"], { unit: fmt.ms, floor: 0.001 });
  const reps = new Chart(box, "replicas", ["ready", "desired"], { unit: (v) => fmt.num(v, 0), whole: true });
  const load = new Chart(box, "queue and in flight", ["queued", "in flight"], { unit: (v) => fmt.num(v, 0), whole: true });
  const charts = [[calls, ["rps", "errors"]], [latency, ["p50", "p99"]], [reps, ["ready", "desired"]], [load, ["queued", "inflight"]]];
  let seenEvent = 0;
  let decisionList = [];
  let initialized = false;
  api("GET", `/ui/api/history/${encodeURIComponent(name)}`).then((past) => {
    for (const [chart, keys] of charts) chart.load(past.columns.time, keys.map((k) => past.columns[k] || []));
  }).catch((e) => toast(e.message, true));
  async function loadDecisions() {
    const events = await api("GET", `/system/events?function=${encodeURIComponent(name)}&limit=500`);
    decisionList = events.filter((e) => SCALING_KINDS.has(e.kind) || e.kind === "replica_died").reverse().slice(0, 15);
    renderEvents(decisions, decisionList);
  }
  async function loadLogs() {
    const text = await api("GET", `/system/logs?name=${encodeURIComponent(name)}&tail=60`);
    const lines = String(text).split("\n").filter(Boolean).map((l) => JSON.parse(l));
    logs.textContent = lines.map((l) => `${fmt.time(l.timestamp)} ${l.instance} ${l.stream}: ${l.text}`).join("\n") || "no log lines yet";
    logs.scrollTop = logs.scrollHeight;
  }
  async function loadJobs() {
    const found = await api("GET", `/system/jobs?function=${encodeURIComponent(name)}&limit=10`);
    jobs.replaceChildren(...found.map((j) => h("tr", {}, h("td", { class: "mono" }, j.id.slice(0, 8)), h("td", {}, badge(j.state)), h("td", {}, `${j.attempts}/${j.max_attempts}`), h("td", {}, fmt.ago(j.created_at)))));
    if (!found.length) jobs.replaceChildren(h("tr", {}, h("td", { class: "muted", colspan: 4 }, "no jobs")));
  }
  const refresh = () => Promise.all([loadDecisions(), loadLogs(), loadJobs()]).catch((e) => toast(e.message, true));
  refresh();
  return {
    update(s) {
      const f = s.functions.find((x) => x.name === name);
      if (!f) { state.replaceChildren(badge("removed")); return; }
      if (state.dataset.state !== f.status) { state.dataset.state = f.status; state.replaceChildren(badge(f.status)); }
      set(decision, f.error ? `error: ${f.error}` : f.decision ? `autoscaler: ${f.decision}` : `${f.ready} of ${f.desired} replicas ready`);
      count.min = f.min; count.max = f.max;
      if (!initialized) { count.value = f.desired; initialized = true; }
      set(document.getElementById("scale-bounds"), `between ${f.min} and ${f.max}`);
      for (const [chart, keys] of charts) chart.push(s.time, keys.map((k) => f[k]));
      const key = f.replicas.map((r) => `${r.id}:${r.state}:${r.inflight}:${r.memory}`).join(",");
      if (replicas.dataset.key !== key) {
        replicas.dataset.key = key;
        replicas.replaceChildren(...f.replicas.map((r) => h("tr", { "data-replica": r.id, "data-state": r.state },
          h("td", { class: "mono" }, r.id), h("td", {}, badge(r.state)), h("td", {}, r.node), h("td", {}, String(r.pid)),
          h("td", {}, String(r.inflight)), h("td", {}, fmt.bytes(r.memory)))));
        if (!f.replicas.length) replicas.replaceChildren(h("tr", {}, h("td", { class: "muted", colspan: 6 }, "no replicas")));
      }
      const mine = s.events.filter((e) => e.function === name && e.id > seenEvent);
      if (mine.length) {
        const first = seenEvent === 0;
        seenEvent = Math.max(...mine.map((e) => e.id));
        if (!first) refresh();
      }
    },
    destroy() { charts.forEach(([c]) => c.destroy()); },
  };
}

function eventsPage() {
  const PER_PAGE = 50;
  let all = [];
  let at = 0;
  const fn = h("select", { id: "events-function", onchange: () => load() }, h("option", { value: "" }, "all functions"));
  const kind = h("select", { id: "events-kind", onchange: () => { at = 0; draw(); } }, h("option", { value: "" }, "all kinds"));
  const text = h("input", { type: "search", placeholder: "search messages", id: "events-search", oninput: () => { at = 0; draw(); } });
  const list = h("ul", { class: "events", id: "events-list" });
  const where = h("span", { class: "muted", id: "events-page" });
  const older = h("button", { class: "quiet", type: "button", id: "events-older", onclick: () => { at += PER_PAGE; draw(); } }, "older");
  const newer = h("button", { class: "quiet", type: "button", id: "events-newer", onclick: () => { at = Math.max(0, at - PER_PAGE); draw(); } }, "newer");
  main.replaceChildren(h("h1", {}, "Events"), h("p", { class: "muted" }, "Deploys, scaling, replica deaths with their causes, node changes."),
    h("div", { class: "toolbar" }, fn, kind, text, newer, older, where), list);
  function filtered() {
    const k = kind.value, t = text.value.trim().toLowerCase();
    return all.filter((e) => (!k || e.kind === k) && (!t || e.message.toLowerCase().includes(t)));
  }
  function draw() {
    const shown = filtered();
    renderEvents(list, shown.slice(at, at + PER_PAGE));
    set(where, shown.length ? `${at + 1}–${Math.min(at + PER_PAGE, shown.length)} of ${shown.length}` : "");
    older.disabled = at + PER_PAGE >= shown.length;
    newer.disabled = at === 0;
    const kinds = [...new Set(all.map((e) => e.kind))].sort();
    const have = [...kind.options].map((o) => o.value).filter(Boolean);
    if (kinds.join() !== have.join()) kind.replaceChildren(h("option", { value: "" }, "all kinds"), ...kinds.map((k) => h("option", { value: k, selected: k === kind.value }, k)));
  }
  async function load() {
    const q = fn.value ? `&function=${encodeURIComponent(fn.value)}` : "";
    all = (await api("GET", `/system/events?limit=1000${q}`)).reverse();
    at = 0;
    draw();
  }
  load().catch((e) => toast(e.message, true));
  return {
    update(s) {
      const names = s.functions.map((f) => f.name);
      const have = [...fn.options].map((o) => o.value).filter(Boolean);
      if (names.join() !== have.join()) fn.replaceChildren(h("option", { value: "" }, "all functions"), ...names.map((n) => h("option", { value: n, selected: n === fn.value }, n)));
      const newest = all.length ? all[0].id : 0;
      const fresh = s.events.filter((e) => e.id > newest && (!fn.value || e.function === fn.value));
      if (fresh.length && all.length) { all = [...fresh, ...all]; draw(); }
    },
    destroy() {},
  };
}

function jobsPage() {
  const STATES = ["", "queued", "running", "failed", "dead_letter", "succeeded", "cancelled"];
  let state = "";
  const tabs = h("div", { class: "tabs", id: "job-tabs" });
  const body = h("tbody");
  main.replaceChildren(h("h1", {}, "Jobs"), h("p", { class: "muted" }, "Async calls (/async-function): queued, running, failed and dead-lettered ones can be cancelled or submitted again."),
    h("div", { class: "toolbar" }, tabs, h("button", { class: "quiet", type: "button", onclick: () => load() }, "refresh")),
    h("table", { id: "jobs" }, h("thead", {}, h("tr", {}, ...["job", "function", "state", "attempts", "status", "created", "error", ""].map((t) => h("th", {}, t)))), body));
  function drawTabs() {
    tabs.replaceChildren(...STATES.map((s) => h("button", { type: "button", class: s === state ? "active" : "", "data-state": s || "all", onclick: () => { state = s; drawTabs(); load(); } }, s || "all")));
  }
  async function load() {
    const jobs = await api("GET", `/system/jobs?limit=200${state ? `&state=${state}` : ""}`);
    body.replaceChildren(...jobs.map((j) => h("tr", { "data-job": j.id },
      h("td", { class: "mono", title: j.id }, j.id.slice(0, 8)), h("td", {}, j.function), h("td", {}, badge(j.state)),
      h("td", { class: "num" }, `${j.attempts}/${j.max_attempts}`), h("td", { class: "num" }, j.status ?? "–"),
      h("td", {}, fmt.ago(j.created_at)), h("td", { class: "wrap" }, j.error || ""),
      h("td", {}, j.state === "queued" || j.state === "running"
        ? h("button", { class: "danger", type: "button", onclick: async () => { await act(`cancelled job ${j.id.slice(0, 8)}`, () => api("POST", `/system/jobs/${j.id}/cancel`)); load(); } }, "cancel")
        : j.state === "failed" || j.state === "dead_letter"
          ? h("button", { class: "quiet", type: "button", onclick: async () => { await act(`submitted job ${j.id.slice(0, 8)} again`, () => api("POST", `/system/jobs/${j.id}/retry`)); load(); } }, "retry")
          : ""))));
    if (!jobs.length) body.replaceChildren(h("tr", {}, h("td", { colspan: 8, class: "muted" }, "no jobs")));
  }
  drawTabs();
  load().catch((e) => toast(e.message, true));
  let ticks = 0;
  return { update() { if (++ticks % 5 === 0 && !document.hidden) load().catch(() => {}); }, destroy() {} };
}

function keysPage() {
  const body = h("tbody");
  const made = h("div");
  const name = h("input", { id: "key-name", placeholder: "name", required: true });
  const functions = h("input", { id: "key-functions", placeholder: "functions (comma-separated; empty: all)", size: 36 });
  const rate = h("input", { id: "key-rate", type: "number", min: 0, step: "any", placeholder: "calls/s (default)" });
  const burst = h("input", { id: "key-burst", type: "number", min: 1, placeholder: "burst" });
  const form = h("form", { class: "toolbar", id: "key-form", onsubmit: async (e) => {
    e.preventDefault();
    const wanted = functions.value.split(",").map((s) => s.trim()).filter(Boolean);
    const body = { name: name.value, functions: wanted.length ? wanted : null };
    if (rate.value) body.rate = Number(rate.value);
    if (burst.value) body.burst = Number(burst.value);
    const key = await act(`created key ${name.value}`, () => api("POST", "/system/keys", body));
    if (key) {
      made.replaceChildren(h("div", { class: "card newkey" }, h("b", {}, "Copy the key now; it is shown once: "), h("code", { id: "new-key" }, key.key)));
      form.reset();
      load();
    }
  } }, name, functions, rate, burst, h("button", { type: "submit", id: "key-create" }, "Create key"));
  main.replaceChildren(h("h1", {}, "API keys"), h("p", { class: "muted" }, "Keys invoke functions (Bearer or X-API-Key); scopes are the functions a key may call."),
    form, made, h("table", { id: "keys" }, h("thead", {}, h("tr", {}, ...["id", "name", "functions", "rate", "burst", "created", "state", ""].map((t) => h("th", {}, t)))), body));
  async function load() {
    const keys = await api("GET", "/system/keys");
    keys.sort((a, b) => b.created_at - a.created_at);
    body.replaceChildren(...keys.map((k) => h("tr", { "data-key": k.id, "data-state": k.revoked_at ? "revoked" : "active" },
      h("td", { class: "mono" }, k.id), h("td", {}, k.name), h("td", { class: "wrap" }, k.functions ? k.functions.join(", ") : "all"),
      h("td", { class: "num" }, k.rate ?? "default"), h("td", { class: "num" }, k.burst ?? "–"), h("td", {}, fmt.ago(k.created_at)),
      h("td", {}, badge(k.revoked_at ? "revoked" : "active")),
      h("td", {}, k.revoked_at ? "" : h("button", { class: "danger", type: "button", "data-revoke": k.id, onclick: async () => {
        if (await act(`revoked key ${k.id}`, () => api("DELETE", `/system/keys/${k.id}`)) !== null) load();
      } }, "revoke")))));
    if (!keys.length) body.replaceChildren(h("tr", {}, h("td", { colspan: 8, class: "muted" }, "no keys yet")));
  }
  load().catch((e) => toast(e.message, true));
  return { update() {}, destroy() {} };
}

function nodesPage() {
  const body = h("tbody");
  main.replaceChildren(h("h1", {}, "Nodes"), h("p", { class: "muted" }, "The machines replicas run on (one, this machine, unless cluster mode is on)."),
    h("table", { id: "nodes" }, h("thead", {}, h("tr", {}, ...["node", "address", "state", "pool", "cpu used / total", "memory", "gpu", "replicas"].map((t) => h("th", {}, t)))), body));
  let ticks = 0;
  async function load() {
    const nodes = await api("GET", "/system/nodes");
    body.replaceChildren(...nodes.map((n) => h("tr", { "data-node": n.id },
      h("td", {}, n.name || n.id, n.head ? " (head)" : ""), h("td", { class: "mono" }, n.address), h("td", {}, badge(n.state), n.death ? ` ${n.death}` : ""),
      h("td", {}, n.pool ? `${n.pool} (${n.lifecycle})` : "–"),
      h("td", { class: "num" }, `${fmt.num(n.used.cpu)} / ${fmt.num(n.total.cpu)}`),
      h("td", { class: "num" }, fmt.bytes(n.total.memory)), h("td", { class: "num" }, `${fmt.num(n.used.gpu, 0)} / ${fmt.num(n.total.gpu, 0)}`),
      h("td", { class: "num" }, String(n.replicas.length)))));
  }
  load().catch((e) => toast(e.message, true));
  return { update() { if (++ticks % 5 === 0 && !document.hidden) load().catch(() => {}); }, destroy() {} };
}

// -- routing and the live feed ------------------------------------------------------------

function show() {
  if (page) page.destroy();
  const path = location.pathname.replace(/\/+$/, "");
  const fn = path.match(/^\/ui\/functions\/(.+)$/);
  const name = fn ? "function" : path.split("/")[2] || "overview";
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.page === name);
  document.title = `${fn ? decodeURIComponent(fn[1]) : name} · nuvem`;
  page = fn ? functionPage(decodeURIComponent(fn[1]))
    : { events: eventsPage, jobs: jobsPage, keys: keysPage, nodes: nodesPage }[name]?.() ?? overviewPage();
  if (snap) page.update(snap);
}

document.addEventListener("click", (e) => {
  const a = e.target.closest("a");
  if (!a || !a.getAttribute("href")?.startsWith("/ui") || e.ctrlKey || e.metaKey || e.shiftKey) return;
  e.preventDefault();
  if (a.getAttribute("href") !== location.pathname) history.pushState(null, "", a.getAttribute("href"));
  show();
});
window.addEventListener("popstate", show);
document.getElementById("logout").addEventListener("click", async () => {
  await api("POST", "/ui/logout").catch(() => {});
  location.href = "/ui/login";
});

function connect() {
  const live = document.getElementById("live");
  const source = new EventSource("/ui/stream");
  source.addEventListener("snapshot", (e) => {
    const s = JSON.parse(e.data);
    if (!s.functions) return;
    snap = s;
    addTotals(s);
    live.classList.add("on");
    set(live, `live · ${fmt.time(s.time)}`);
    try { page?.update(s); } catch (error) { console.error(error); }
  });
  source.onerror = () => {
    live.classList.remove("on");
    set(live, "reconnecting");
    // A stream refused for a stale session does not say why: ask once, sign in if so.
    api("GET", "/system/info").catch(() => {});
  };
}

show();
connect();
