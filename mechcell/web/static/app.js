// mechcell web door: chat, streamed progress, the verified action graph as SVG, evidence and top genes.
// Safety rule of this file: text from the user, the KB or a model is only ever set with textContent or
// createTextNode (never parsed as HTML), and links are only followed when they are http(s).
"use strict";

const COLORS = {
  supported: "#1a7f37", contradicted: "#cf222e", inconclusive: "#bf8700", uncheckable: "#8c959f", context: "#6e7781",
};
const TINTS = {
  supported: "#e6f4ea", contradicted: "#fdecea", inconclusive: "#fff4d6", uncheckable: "#f1f3f5", context: "#f6f8fa",
};
const SVGNS = "http://www.w3.org/2000/svg";
const NODE_W = 204, NODE_H = 46, LAYER_GAP = 44, SIB_GAP = 14, PAD = 16;

const state = {
  token: sessionStorage.getItem("mechcell.token") || "",
  thread: localStorage.getItem("mechcell.thread") || "",
  view: null,
  busy: false,
  selected: null,
};

// ------------------------------------------------------------------------------------------------ DOM helpers
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) append(e, c);
  return e;
}

function append(parent, c) {
  if (c === null || c === undefined || c === false) return;
  if (Array.isArray(c)) { c.forEach((x) => append(parent, x)); return; }
  parent.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
}

function svg(tag, attrs, ...children) {
  const e = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === "text") e.textContent = v;
    else e.setAttribute(k, String(v));
  }
  for (const c of children) if (c) e.appendChild(c);
  return e;
}

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }

function safeUrl(u) {
  if (typeof u !== "string") return null;
  try {
    const url = new URL(u);
    return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
  } catch (_e) { return null; }
}

function fmt(x, digits) {
  if (x === null || x === undefined || Number.isNaN(x)) return "—";
  if (typeof x !== "number") return String(x);
  if (x !== 0 && (Math.abs(x) < 1e-3 || Math.abs(x) >= 1e5)) return x.toExponential(Math.max(0, (digits || 2) - 1));
  return Number(x.toPrecision(digits || 3)).toString();
}

function shorten(s, n) { s = String(s || ""); return s.length > n ? s.slice(0, n - 1) + "…" : s; }

// A small markdown subset (paragraphs, "- " lists, **bold**, `code`, _italic_) rendered as DOM nodes.
const INLINE = /`([^`]+)`|\*\*([^*]+)\*\*|(?<![\w])_([^_]+)_(?![\w])|(?<![\w*])\*([^*\s][^*]*)\*(?![\w*])/g;

function inline(text) {
  const out = [];
  let last = 0;
  for (const m of text.matchAll(INLINE)) {
    if (m.index > last) out.push(text.slice(last, m.index));
    if (m[1] !== undefined) out.push(el("code", { text: m[1] }));
    else if (m[2] !== undefined) out.push(el("strong", {}, inline(m[2])));
    else out.push(el("em", {}, inline(m[3] !== undefined ? m[3] : m[4])));
    last = m.index + m[0].length;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}

function renderMarkdown(text) {
  const frag = document.createDocumentFragment();
  const blocks = String(text || "").split(/\n\s*\n/);
  for (const block of blocks) {
    const lines = block.split("\n");
    if (lines.every((l) => /^\s*- /.test(l) || !l.trim())) {
      const root = el("ul");
      let current = root, lastLi = null;
      for (const l of lines) {
        if (!l.trim()) continue;
        const depth = l.match(/^\s*/)[0].length >= 2 ? 1 : 0;
        const li = el("li", {}, inline(l.replace(/^\s*- /, "")));
        if (depth === 1 && lastLi) {
          let sub = lastLi.querySelector(":scope > ul");
          if (!sub) { sub = el("ul"); lastLi.appendChild(sub); }
          sub.appendChild(li);
        } else { current.appendChild(li); lastLi = li; }
      }
      frag.appendChild(root);
    } else {
      // a paragraph, possibly followed by list lines
      const p = el("p");
      let list = null;
      lines.forEach((l, i) => {
        if (/^\s*- /.test(l)) {
          if (!list) { list = el("ul"); frag.appendChild(p); }
          list.appendChild(el("li", {}, inline(l.replace(/^\s*- /, ""))));
        } else {
          if (i > 0 && !list) p.appendChild(el("br"));
          append(p, inline(l));
        }
      });
      if (list) frag.appendChild(list); else frag.appendChild(p);
    }
  }
  return frag;
}

// ------------------------------------------------------------------------------------------------ the API
class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

function headers(extra) {
  const h = Object.assign({ Accept: "application/json" }, extra || {});
  if (state.token) h.Authorization = "Bearer " + state.token;
  return h;
}

async function api(path, opts) {
  const o = Object.assign({}, opts || {});
  o.headers = headers(o.headers);
  const r = await fetch(path, o);
  if (r.status === 401) { askToken(); throw new ApiError(401, "this server needs an API token"); }
  const type = r.headers.get("content-type") || "";
  const body = type.includes("json") ? await r.json() : await r.text();
  if (!r.ok) throw new ApiError(r.status, (body && body.error) || ("HTTP " + r.status));
  return body;
}

function askToken() {
  const d = $("token-dialog");
  if (!d.open) { $("token-input").value = state.token; d.showModal(); }
}

// ------------------------------------------------------------------------------------------------ health
async function loadHealth() {
  const h = $("health");
  try {
    const s = await api("/api/health");
    h.classList.remove("bad");
    h.textContent = `${s.conditions} conditions · ${s.traces} traces · ${s.proposer} proposer · KB ${s.kb_version}`;
    h.title = `store ${s.store} — mechcell ${s.version}`;
  } catch (e) {
    h.classList.add("bad");
    h.textContent = e.status === 401 ? "token needed" : "server unreachable";
  }
}

// ------------------------------------------------------------------------------------------------ threads
async function loadThreads() {
  const ul = clear($("threads"));
  let threads = [];
  try { threads = await api("/api/threads"); } catch (e) { ul.appendChild(el("li", { class: "muted", text: e.message })); return; }
  if (!threads.length) ul.appendChild(el("li", { class: "muted", text: "no conversation yet" }));
  for (const t of threads) {
    const when = t.updated_at ? new Date(t.updated_at).toLocaleString() : "";
    const li = el("li", { "data-thread": t.id, class: t.id === state.thread ? "active" : "", title: t.title },
      shorten(t.title, 90), el("span", { class: "when", text: `${when} · ${t.n_messages} messages` }));
    li.addEventListener("click", () => openThread(t.id));
    ul.appendChild(li);
  }
}

function setThread(id) {
  state.thread = id;
  localStorage.setItem("mechcell.thread", id);
  for (const li of document.querySelectorAll("#threads li")) li.classList.toggle("active", li.dataset.thread === id);
}

async function newThread() {
  const t = await api("/api/threads", { method: "POST" });
  setThread(t.id);
  clear($("messages"));
  clear($("events"));
  $("progress-state").textContent = "";
  return t.id;
}

async function openThread(id) {
  let t;
  try { t = await api("/api/threads/" + encodeURIComponent(id)); } catch (e) {
    if (e.status === 404 || e.status === 400) { localStorage.removeItem("mechcell.thread"); state.thread = ""; return; }
    throw e;
  }
  setThread(t.id);
  const box = clear($("messages"));
  for (const m of t.messages) addMessage(m.role, m.content, box);
  clear($("events"));
  if (t.trace_id) await showTrace(t.trace_id);
}

function addMessage(role, text, box) {
  box = box || $("messages");
  const hint = $("hint");
  if (hint) hint.remove();
  const div = el("div", { class: "msg " + role });
  if (role === "assistant") div.appendChild(renderMarkdown(text));
  else div.textContent = text;  // the user's words are plain text, whatever they contain
  box.appendChild(div);
  box.scrollTop = box.scrollHeight;
  return div;
}

// ------------------------------------------------------------------------------------------------ conditions
let condTimer = null;
async function loadConditions() {
  const q = $("cond-query").value;
  const ul = clear($("conditions"));
  let conds = [];
  try { conds = await api("/api/conditions?limit=60&query=" + encodeURIComponent(q)); } catch (e) {
    ul.appendChild(el("li", { class: "muted", text: e.message })); return;
  }
  if (!conds.length) ul.appendChild(el("li", { class: "muted", text: "no stored condition matches" }));
  for (const c of conds) {
    const dose = c.dose !== null ? `${fmt(c.dose, 3)} ${c.dose_unit || ""}` : "";
    const li = el("li", { "data-key": c.key, class: c.trace_id ? "has-trace" : "", title: c.key },
      `${c.perturbation} ${dose}`.trim(),
      el("span", { class: "sub", text: [c.context_name || c.context, c.batch].filter(Boolean).join(" · ") }));
    li.addEventListener("click", () => {
      const where = c.context_name || c.context;
      $("question").value = `why does ${c.perturbation} change expression` + (where ? ` in ${where}` : "") +
        (c.dose !== null ? ` at ${fmt(c.dose, 3)} ${c.dose_unit || "uM"}` : "") + "?";
      $("question").focus();
      if (c.trace_id) showTrace(c.trace_id);
    });
    ul.appendChild(li);
  }
}

// ------------------------------------------------------------------------------------------------ asking
function eventLine(type, d) {
  const t = typeof d.t === "number" ? el("span", { class: "t", text: d.t.toFixed(2) + "s" }) : null;
  switch (type) {
    case "start": return ["question received"];
    case "queued": return [d.message];
    case "parsed": {
      const bits = [d.intent && `intent ${d.intent}`, d.drug && `drug ${d.drug}`, d.cell_line && `cell line ${d.cell_line}`,
        d.dose !== null && d.dose !== undefined && `dose ${d.dose} ${d.dose_unit || ""}`, d.node && `step ${d.node}`];
      return ["understood: " + (bits.filter(Boolean).join(", ") || "nothing specific")];
    }
    case "reused": return [`reusing the stored trace ${d.trace_id} of ${d.condition_key}`];
    case "run_started": return [t, `explaining ${d.condition_key} (proposer ${d.proposer})`];
    case "node_started": return [t, `${d.node} …`];
    case "node_finished": return [t, `${d.node} done (${fmt(d.seconds, 2)} s)`];
    case "note": return [t, d.message ? d.message : `retrieved: ${d.kind || "?"}; targets ${(d.targets || []).join(", ") || "none"}; ${d.n_paths || 0} signed paths`];
    case "candidate": return [t, `candidate ${d.candidate}${d.ok === false ? " failed" : ""}: ${d.failure || d.note || ""}`];
    case "verdict": {
      const vs = d.verifiers ? Object.entries(d.verifiers).map(([k, v]) => `${k}: ${v}`).join(", ") : "";
      return [t, el("span", { class: "badge " + d.status, text: d.status }), ` ${d.claim_id} (${d.kind})`,
        vs ? ` — ${vs}` : "", d.replayed ? " [stored]" : ""];
    }
    case "attempt": return [t, `attempt ${d.index}: reward ${fmt(d.reward, 3)}, ${d.accepted ? "accepted" : "not accepted"} — ${d.summary || d.failure || ""}`];
    case "trace": return [t, `trace ${d.id} (${d.status}${d.reused ? ", reused" : ""})`];
    case "answer": return ["answer ready"];
    case "done": return [`answered in ${fmt(d.seconds, 3)} s`];
    case "error": return [el("span", { class: "badge contradicted", text: "error" }), " " + (d.message || "")];
    default: return [type];
  }
}

function logEvent(type, data) {
  const li = el("li", { class: "ev ev-" + type, "data-type": type, "data-status": data.status || null }, eventLine(type, data));
  $("events").appendChild(li);
  $("progress").scrollTop = $("progress").scrollHeight;
}

async function* sseEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const chunk = buf.slice(0, i);
      buf = buf.slice(i + 2);
      let event = "message", data = "";
      for (const line of chunk.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trim();
      }
      if (data) yield [event, JSON.parse(data)];
    }
  }
}

async function ask(question) {
  if (state.busy) return;
  state.busy = true;
  $("ask-button").disabled = true;
  $("progress-state").textContent = "working…";
  document.body.dataset.state = "working";
  try {
    if (!state.thread) await newThread();
    addMessage("user", question);
    clear($("events"));
    const r = await fetch(`/api/threads/${encodeURIComponent(state.thread)}/messages`, {
      method: "POST",
      headers: headers({ "Content-Type": "application/json", Accept: "text/event-stream" }),
      body: JSON.stringify({ content: question }),
    });
    if (r.status === 401) { askToken(); throw new ApiError(401, "this server needs an API token"); }
    if (r.status === 404) { await newThread(); throw new ApiError(404, "that conversation is gone: ask again in the new one"); }
    if (!r.ok) {
      let msg = "HTTP " + r.status;
      try { msg = (await r.json()).error || msg; } catch (_e) { /* not JSON */ }
      throw new ApiError(r.status, msg);
    }
    let turn = null;
    for await (const [type, data] of sseEvents(r)) {
      logEvent(type, data);
      if (type === "answer") turn = data;
      if (type === "error") addMessage("error", data.message || "the question failed");
    }
    if (turn) {
      addMessage("assistant", turn.answer);
      if (turn.trace_id) await showTrace(turn.trace_id);
    }
    $("progress-state").textContent = "";
    loadThreads();
    loadHealth();
  } catch (e) {
    addMessage("error", e.message);
    $("progress-state").textContent = "";
  } finally {
    state.busy = false;
    $("ask-button").disabled = false;
    document.body.dataset.state = "idle";
  }
}

// ------------------------------------------------------------------------------------------------ the graph
// Longest-path layering (each node one column right of its furthest predecessor), then one barycentre sweep
// down and one up to order nodes within a column; edges are cubic curves coloured by verdict.
function layout(view) {
  const ids = view.nodes.map((n) => n.id);
  const has = new Set(ids);
  const edges = view.edges.filter((e) => has.has(e.src) && has.has(e.tgt) && e.src !== e.tgt);
  const preds = new Map(ids.map((i) => [i, []])), succs = new Map(ids.map((i) => [i, []]));
  for (const e of edges) { preds.get(e.tgt).push(e.src); succs.get(e.src).push(e.tgt); }
  const indeg = new Map(ids.map((i) => [i, preds.get(i).length]));
  const order = ids.filter((i) => indeg.get(i) === 0);
  for (let k = 0; k < order.length; k++) {
    for (const w of succs.get(order[k])) { indeg.set(w, indeg.get(w) - 1); if (indeg.get(w) === 0) order.push(w); }
  }
  const inOrder = new Set(order);
  for (const i of ids) if (!inOrder.has(i)) order.push(i);  // a cycle: the rest in declaration order
  const layer = new Map();
  for (const v of order) {
    let l = 0;
    for (const u of preds.get(v)) if (layer.has(u)) l = Math.max(l, layer.get(u) + 1);
    layer.set(v, l);
  }
  const nLayers = Math.max(0, ...layer.values()) + 1;
  const cols = Array.from({ length: nLayers }, () => []);
  ids.forEach((i) => cols[layer.get(i)].push(i));
  const pos = new Map();
  const index = () => cols.forEach((c) => c.forEach((v, k) => pos.set(v, k)));
  index();
  const decl = new Map(ids.map((v, k) => [v, k]));
  const sweep = (range, nbrs) => {
    for (const c of range) {
      const bc = (v) => { const ns = nbrs.get(v).filter((u) => pos.has(u)); return ns.length ? ns.reduce((a, u) => a + pos.get(u), 0) / ns.length : pos.get(v); };
      const keyed = cols[c].map((v) => [bc(v), decl.get(v), v]);
      keyed.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
      cols[c] = keyed.map((k) => k[2]);
      index();
    }
  };
  sweep([...Array(nLayers).keys()].slice(1), preds);
  sweep([...Array(nLayers).keys()].reverse().slice(1), succs);
  // top to bottom: a layer is a row, centred
  const maxRow = Math.max(1, ...cols.map((c) => c.length));
  const width = PAD * 2 + maxRow * NODE_W + (maxRow - 1) * SIB_GAP;
  const height = PAD * 2 + nLayers * NODE_H + (nLayers - 1) * LAYER_GAP;
  const xy = new Map();
  cols.forEach((c, l) => {
    const rowW = c.length * NODE_W + (c.length - 1) * SIB_GAP;
    const x0 = PAD + (width - 2 * PAD - rowW) / 2;
    c.forEach((v, k) => xy.set(v, { x: x0 + k * (NODE_W + SIB_GAP), y: PAD + l * (NODE_H + LAYER_GAP), layer: l }));
  });
  return { xy, edges, width, height, layer };
}

const ARROW = { up: " ↑", down: " ↓" };

function nodeTitle(n) {
  const args = Object.entries(n.args || {}).map(([k, v]) => `${k}=${Array.isArray(v) ? v.join(", ") : v}`).join("; ");
  return `${n.id} ${n.primitive} — ${n.status}\n${args}`;
}

function drawGraph(view) {
  const g = clear($("graph"));
  state.selected = null;
  if (!view.nodes.length) {
    g.setAttribute("width", 360); g.setAttribute("height", 60);
    g.appendChild(svg("text", { x: 16, y: 34, "font-size": 13, fill: "#656d76", "font-family": "sans-serif", text: "no verified graph for this trace" }));
    return;
  }
  const L = layout(view);
  g.setAttribute("width", L.width); g.setAttribute("height", L.height);
  g.style.minWidth = Math.round(L.width * 0.7) + "px";  // fit the panel, but never below 70 % (legible)
  g.setAttribute("viewBox", `0 0 ${L.width} ${L.height}`);
  g.setAttribute("font-family", "system-ui, -apple-system, Segoe UI, Roboto, Arial, sans-serif");
  const defs = svg("defs");
  for (const [status, color] of Object.entries(COLORS)) {
    defs.appendChild(svg("marker", { id: "arrow-" + status, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 10, markerHeight: 10, markerUnits: "userSpaceOnUse", orient: "auto-start-reverse" },
      svg("path", { d: "M0,0 L10,5 L0,10 z", fill: color })));
  }
  g.appendChild(defs);
  g.appendChild(svg("rect", { x: 0, y: 0, width: L.width, height: L.height, fill: "#ffffff" }));
  const edgeLayer = svg("g", { class: "edges" });
  const nodeLayer = svg("g", { class: "nodes" });
  for (const e of L.edges) {
    const a = L.xy.get(e.src), b = L.xy.get(e.tgt);
    let d;
    if (b.layer > a.layer) {
      const x1 = a.x + NODE_W / 2, y1 = a.y + NODE_H, x2 = b.x + NODE_W / 2, y2 = b.y - 2;
      const dy = Math.max(18, (y2 - y1) / 2);
      d = `M${x1},${y1} C${x1},${y1 + dy} ${x2},${y2 - dy} ${x2},${y2}`;
    } else {  // a back edge (cycle) or within a row: loop out to the right
      const x1 = a.x + NODE_W, y1 = a.y + NODE_H / 2, x2 = b.x + NODE_W + 2, y2 = b.y + NODE_H / 2;
      const right = Math.max(x1, x2) + 40;
      d = `M${x1},${y1} C${right},${y1} ${right},${y2} ${x2},${y2}`;
    }
    const color = COLORS[e.status] || COLORS.uncheckable;
    const grp = svg("g", { class: "edge", "data-src": e.src, "data-tgt": e.tgt, "data-status": e.status, "data-relation": e.relation, tabindex: 0 },
      svg("title", { text: `${e.src} → ${e.tgt} (${e.relation}): ${e.status}` }),
      svg("path", { class: "edge-hit", d, fill: "none", stroke: "transparent", "stroke-width": 14, "pointer-events": "stroke" }),
      svg("path", { class: "edge-line", d, fill: "none", stroke: color, "stroke-width": 2.5, "marker-end": `url(#arrow-${e.status in COLORS ? e.status : "uncheckable"})`, "stroke-dasharray": e.relation === "correlative" ? "6 4" : null }));
    grp.addEventListener("click", () => select(grp, () => showEdgeEvidence(e)));
    grp.addEventListener("keydown", (ev) => { if (ev.key === "Enter") select(grp, () => showEdgeEvidence(e)); });
    edgeLayer.appendChild(grp);
  }
  for (const n of view.nodes) {
    const p = L.xy.get(n.id);
    const color = COLORS[n.status] || COLORS.uncheckable;
    const label = n.primitive === "set_context" ? "context" : n.primitive;
    const entity = (n.entity ? shorten(String(n.entity).split(",").slice(0, 3).join(", ") + (String(n.entity).split(",").length > 3 ? ` +${String(n.entity).split(",").length - 3}` : ""), 26) : "—") + (ARROW[n.direction] || "");
    const grp = svg("g", { class: "node", "data-id": n.id, "data-status": n.status, "data-primitive": n.primitive, transform: `translate(${p.x},${p.y})`, tabindex: 0 },
      svg("title", { text: nodeTitle(n) }),
      svg("rect", { width: NODE_W, height: NODE_H, rx: 8, fill: TINTS[n.status] || "#fff", stroke: color, "stroke-width": 2 }),
      svg("text", { x: 9, y: 17, "font-size": 10, fill: "#57606a", text: `${n.id} · ${shorten(label, 29)}` }),
      svg("text", { x: 9, y: 36, "font-size": 13.5, "font-weight": 600, fill: "#1f2328", class: "entity", text: entity }));
    grp.addEventListener("click", () => select(grp, () => showNodeEvidence(n)));
    grp.addEventListener("keydown", (ev) => { if (ev.key === "Enter") select(grp, () => showNodeEvidence(n)); });
    nodeLayer.appendChild(grp);
  }
  g.appendChild(edgeLayer);
  g.appendChild(nodeLayer);
  for (const t of g.querySelectorAll("g.node text")) fitText(t, NODE_W - 14);
}

// Shorten a label (with an ellipsis) until it fits its box; the full text stays in the node's <title>.
function fitText(t, maxWidth) {
  const m = t.textContent.match(/^(.*?)( [↑↓])?$/);
  let s = m[1];
  const tail = m[2] || "";
  while (s.length > 4 && t.getComputedTextLength() > maxWidth) {
    s = s.slice(0, -1);
    t.textContent = s.replace(/[\s,+]+$/, "") + "…" + tail;
  }
}

function select(grp, show) {
  if (state.selected) state.selected.classList.remove("selected");
  grp.classList.add("selected");
  state.selected = grp;
  show();
}

// ------------------------------------------------------------------------------------------------ evidence
function verdictBlock(v) {
  const stats = el("dl");
  const row = (k, val) => { if (val !== null && val !== undefined && val !== "") { stats.appendChild(el("dt", { text: k })); stats.appendChild(el("dd", {}, val)); } };
  row("statistic", v.statistic !== null ? fmt(v.statistic, 4) : null);
  row("p-value", v.p_value !== null ? fmt(v.p_value, 3) : null);
  row("e-value", v.e_value !== null ? fmt(v.e_value, 3) : null);
  row("q-value", v.q_value !== null ? fmt(v.q_value, 3) : null);
  row("null tested", v.null);
  row("reason", v.reason);
  if (v.robustness) {
    const r = v.robustness;
    row("robustness", `selection D* ${fmt(r.selection_breaking_point, 3)}, label-noise D* ${fmt(r.label_noise_breaking_point, 3)}` +
      (r.fragile ? ` — fragile (below ${fmt(r.threshold, 2)})` : " — robust"));
  }
  if (v.model_generated_source) row("caution", "rests only on model-generated records");
  const ev = el("ul", { class: "records" });
  for (const e of v.evidence || []) {
    const href = safeUrl(e.url);
    ev.appendChild(el("li", { class: "record" },
      el("strong", { text: e.source }), e.version ? ` (${e.version})` : "",
      e.record_id ? [" ", el("code", { text: e.record_id })] : "",
      e.detail ? ` — ${e.detail}` : "",
      href ? [" ", el("a", { href, target: "_blank", rel: "noopener noreferrer", text: "link" })] : "",
      e.model_generated ? " [model-generated]" : ""));
  }
  return el("div", { class: "verdict", "data-verifier": v.verifier },
    el("span", { class: "badge " + v.status, text: v.status }), " ", el("strong", { text: v.verifier }), stats,
    (v.evidence || []).length ? ev : null);
}

function claimBlock(c) {
  return el("div", { class: "claim", "data-claim": c.claim_id },
    el("div", {}, el("span", { class: "badge " + c.status, text: c.status }), " ", el("code", { text: c.claim_id }), " ", c.text),
    (c.verdicts || []).map(verdictBlock));
}

function claimsOf(nodeId) { return (state.view ? state.view.claims : []).filter((c) => c.node_id === nodeId); }

function argsLine(n) {
  return el("div", { class: "args mono" }, `${n.primitive}(` + Object.entries(n.args || {}).map(([k, v]) =>
    `${k}=${Array.isArray(v) ? "[" + v.join(", ") + "]" : JSON.stringify(v)}`).join(", ") + ")");
}

function showNodeEvidence(n) {
  const box = clear($("evidence"));
  box.dataset.kind = "node"; box.dataset.id = n.id;
  box.appendChild(el("h3", {}, `Step ${n.id} `, el("span", { class: "badge " + n.status, text: n.status })));
  box.appendChild(argsLine(n));
  const cs = claimsOf(n.id);
  if (n.primitive === "set_context") box.appendChild(el("p", { class: "muted", text: "Sets the cell context; it claims nothing." }));
  else if (!cs.length) box.appendChild(el("p", { class: "muted", text: "No verdict was recorded for this step." }));
  cs.forEach((c) => box.appendChild(claimBlock(c)));
}

function showEdgeEvidence(e) {
  const box = clear($("evidence"));
  box.dataset.kind = "edge"; box.dataset.id = `${e.src}->${e.tgt}`;
  box.appendChild(el("h3", {}, `Edge ${e.src} → ${e.tgt} `, el("span", { class: "badge " + e.status, text: e.status })));
  const tgt = state.view.nodes.find((n) => n.id === e.tgt);
  box.appendChild(el("p", { class: "muted", text: `A ${e.relation} link; it asserts step ${e.tgt}, whose verdicts follow.` }));
  if (tgt) box.appendChild(argsLine(tgt));
  const cs = claimsOf(e.tgt);
  if (!cs.length) box.appendChild(el("p", { class: "muted", text: "No verdict was recorded for this step." }));
  cs.forEach((c) => box.appendChild(claimBlock(c)));
}

// ------------------------------------------------------------------------------------------------ genes
function renderGenes(view) {
  const box = clear($("genes"));
  box.appendChild(el("h3", { text: "Top genes" }));
  const gs = view.genes;
  if (!gs) { box.appendChild(el("p", { class: "muted", text: "No signature stored for this condition." })); return; }
  const inGraph = new Set();
  for (const n of view.nodes) for (const gname of (n.args && n.args.gene_list) || []) inGraph.add(gname);
  box.appendChild(el("p", { class: "muted", text: `${gs.method}, ${gs.n_treated} treated vs ${gs.n_control} control cells; padj ≤ ${gs.alpha}; bold = in the graph` }));
  for (const [name, rows, cls] of [["up", gs.up, "up"], ["down", gs.down, "down"]]) {
    const tb = el("tbody");
    for (const r of rows) {
      tb.appendChild(el("tr", { class: inGraph.has(r.gene) ? "in-graph" : "" },
        el("td", { text: r.gene }), el("td", { class: "num " + cls, text: (r.log2fc > 0 ? "+" : "") + fmt(r.log2fc, 3) }),
        el("td", { class: "num", text: fmt(r.padj, 2) })));
    }
    box.appendChild(el("table", { class: "genes-" + name },
      el("thead", {}, el("tr", {}, el("th", { text: name === "up" ? "up ↑" : "down ↓" }), el("th", { class: "num", text: "log2FC" }), el("th", { class: "num", text: "padj" }))), tb));
  }
}

// ------------------------------------------------------------------------------------------------ a trace
async function showTrace(id) {
  const view = await api(`/api/traces/${encodeURIComponent(id)}/view`);
  state.view = view;
  $("result-title").textContent = view.condition_key;
  const m = view.metrics || {};
  $("result-sub").textContent = `${view.status} · trace ${view.id} · reward ${fmt(m.reward, 3)} · factual precision ${fmt(m.factual_precision, 3)} · expression precision ${fmt(m.expression_precision, 3)}`;
  $("answer-line").textContent = view.answer;
  drawGraph(view);
  renderGenes(view);
  const ev = clear($("evidence"));
  ev.appendChild(el("h3", { text: "Evidence" }));
  ev.appendChild(el("p", { class: "muted", text: "Click a node or an edge of the graph." }));
  for (const b of ["dl-json", "dl-svg", "dl-png"]) $(b).disabled = false;
  document.body.dataset.trace = view.id;
}

// ------------------------------------------------------------------------------------------------ downloads
function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = el("a", { href: url, download: name });
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 2000);
}

function svgText() {
  const clone = $("graph").cloneNode(true);
  clone.setAttribute("xmlns", SVGNS);
  for (const t of clone.querySelectorAll("[tabindex]")) t.removeAttribute("tabindex");
  return '<?xml version="1.0" encoding="UTF-8"?>\n' + new XMLSerializer().serializeToString(clone);
}

async function downloadJson() {
  const r = await fetch(`/api/traces/${encodeURIComponent(state.view.id)}`, { headers: headers() });
  if (!r.ok) { addMessage("error", "could not download the trace: HTTP " + r.status); return; }
  saveBlob(await r.blob(), `${state.view.id}.json`);
}

function downloadSvg() { saveBlob(new Blob([svgText()], { type: "image/svg+xml" }), `${state.view.id}.svg`); }

function downloadPng() {
  const g = $("graph");
  const w = Number(g.getAttribute("width")), h = Number(g.getAttribute("height"));
  const url = URL.createObjectURL(new Blob([svgText()], { type: "image/svg+xml" }));
  const img = new Image();
  img.onload = () => {
    const c = document.createElement("canvas");
    c.width = w * 2; c.height = h * 2;
    const ctx = c.getContext("2d");
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, c.width, c.height);
    ctx.scale(2, 2);
    ctx.drawImage(img, 0, 0, w, h);
    URL.revokeObjectURL(url);
    c.toBlob((b) => saveBlob(b, `${state.view.id}.png`), "image/png");
  };
  img.src = url;
}

// ------------------------------------------------------------------------------------------------ start
function start() {
  $("ask").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = $("question").value.trim();
    if (!q) return;
    $("question").value = "";
    ask(q);
  });
  $("question").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey) { ev.preventDefault(); $("ask").requestSubmit(); }
  });
  $("new-thread").addEventListener("click", () => newThread().then(loadThreads).catch((e) => addMessage("error", e.message)));
  $("cond-query").addEventListener("input", () => { clearTimeout(condTimer); condTimer = setTimeout(loadConditions, 200); });
  $("dl-json").addEventListener("click", downloadJson);
  $("dl-svg").addEventListener("click", downloadSvg);
  $("dl-png").addEventListener("click", downloadPng);
  $("token-button").addEventListener("click", askToken);
  $("token-dialog").addEventListener("close", () => {
    if ($("token-dialog").returnValue !== "save") return;
    state.token = $("token-input").value.trim();
    sessionStorage.setItem("mechcell.token", state.token);
    boot();
  });
  boot();
}

async function boot() {
  document.body.dataset.state = "loading";
  await loadHealth();
  await Promise.all([loadThreads(), loadConditions()]);
  if (state.thread) {
    try { await openThread(state.thread); } catch (_e) { /* shown elsewhere */ }
  }
  document.body.dataset.state = "idle";
}

document.addEventListener("DOMContentLoaded", start);
