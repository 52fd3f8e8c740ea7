// ParamLens components browser: static, no server. Data files call PL.set* when their <script> loads.
"use strict";
const PL = {
  units: null, meta: null, unitCache: {}, waiting: {}, mechanisms: null, graph: null, prompts: null,
  table: {key: 3, up: false, page: 0, size: 100},
  setUnits(d) { PL.meta = d.meta; PL.units = d.rows; PL.start(); },
  setUnit(d) { PL.unitCache[d.id] = d; (PL.waiting["unit/" + d.id] || []).forEach(f => f(d)); },
  setMechanisms(d) { PL.mechanisms = d; (PL.waiting.mechanisms || []).forEach(f => f(d)); },
  setGraph(d) { PL.graph = d; (PL.waiting.graph || []).forEach(f => f(d)); },
  setPrompts(d) { PL.prompts = d; (PL.waiting.prompts || []).forEach(f => f(d)); },
};
const COLS = [["unit", 1], ["target", 2], ["density", 3], ["mean importance", 4], ["effect", 5], ["label", 6],
              ["mechanism", 7], ["known mechanism", 8]];

function esc(s) {
  return String(s).replace(/[&<>"']/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"})[c]);
}
// A token as shown inside running text: line breaks and tabs as visible marks, so a context stays one line.
function tok(t) { return esc(t).replace(/\r?\n/g, "↵").replace(/\t/g, "⇥"); }
function fmt(x) { return x === null || x === undefined ? "–" : (Math.abs(x) >= 0.01 || x === 0 ? x.toFixed(4) : x.toExponential(2)); }
function view() { return document.getElementById("view"); }
function unitLink(id, name) { return `<a class="unit" href="#/unit/${id}">${esc(name)}</a>`; }

// Load data/<name>.js once; call back when its PL.set* ran.
function load(name, key, done) {
  const have = {mechanisms: PL.mechanisms, graph: PL.graph, prompts: PL.prompts}[key];
  if (key.startsWith("unit/") && PL.unitCache[+key.slice(5)]) return done(PL.unitCache[+key.slice(5)]);
  if (have) return done(have);
  (PL.waiting[key] = PL.waiting[key] || []).push(done);
  if (PL.waiting[key].length > 1) return;
  const s = document.createElement("script");
  s.src = "data/" + name + ".js";
  s.onerror = () => { view().innerHTML = `<p class="empty">missing data file data/${esc(name)}.js</p>`; };
  document.body.appendChild(s);
}

function heat(v) {
  if (v === null || v === undefined) return "transparent";
  const a = Math.max(0, Math.min(1, v));
  return `rgba(230, 120, 20, ${(0.08 + 0.8 * a).toFixed(3)})`;
}

function renderTable() {
  const q = document.getElementById("search").value.trim().toLowerCase();
  let rows = PL.units.filter(r => r[3] > 0 || q);
  if (q) rows = rows.filter(r => (r[1] + " " + r[6] + " " + r[7] + " " + r[8]).toLowerCase().includes(q));
  const t = PL.table, k = t.key;
  rows = rows.slice().sort((a, b) => {
    const x = a[k], y = b[k];
    const c = (typeof x === "number" || typeof y === "number") ? (x ?? -Infinity) - (y ?? -Infinity) : String(x).localeCompare(String(y));
    return t.up ? c : -c;
  });
  const pages = Math.max(1, Math.ceil(rows.length / t.size));
  t.page = Math.min(t.page, pages - 1);
  const shown = rows.slice(t.page * t.size, (t.page + 1) * t.size);
  const cols = PL.meta.has_known ? COLS : COLS.slice(0, -1);
  const head = cols.map(([n, i]) => `<th data-col="${i}" class="${i === k ? "sorted" + (t.up ? " up" : "") : ""}">${n}</th>`).join("");
  const body = shown.map(r => `<tr><td>${unitLink(r[0], r[1])}</td><td>${esc(r[2])}</td><td class="num">${fmt(r[3])}</td>` +
    `<td class="num">${fmt(r[4])}</td><td class="num">${fmt(r[5])}</td><td>${esc(r[6])}</td>` +
    `<td>${r[7] ? `<a class="unit" href="#/mechanisms">${esc(r[7])}</a>` : ""}</td>` +
    (PL.meta.has_known ? `<td>${esc(r[8])}</td>` : "") + `</tr>`).join("");
  const m = PL.meta;
  view().innerHTML = `<p>${m.method.toUpperCase()} · ${PL.units.length} units · ${m.positions} ${m.sequences ? "tokens" : "inputs"} harvested · ` +
    `firing: importance &gt; ${m.threshold}${q ? "" : " · units that never fire are hidden (search shows them)"}</p>` +
    `<div class="pager">${rows.length} units · page ${t.page + 1}/${pages} <button id="prev">◀</button><button id="next">▶</button></div>` +
    `<table id="units"><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
  view().querySelectorAll("th").forEach(th => th.onclick = () => {
    const c = +th.dataset.col;
    t.up = t.key === c ? !t.up : false; t.key = c; renderTable();
  });
  document.getElementById("prev").onclick = () => { t.page = Math.max(0, t.page - 1); renderTable(); };
  document.getElementById("next").onclick = () => { t.page = Math.min(pages - 1, t.page + 1); renderTable(); };
}

function contextHtml(c) {
  if (c.input) {
    const best = c.input.indexOf(Math.max(...c.input.map(v => v ?? -Infinity)));
    return `<div class="context">importance ${fmt(c.value)} · input [${c.input.map((v, i) =>
      `<span class="tok${i === best ? " center" : ""}">${fmt(v)}</span>`).join(", ")}]</div>`;
  }
  const mid = (c.tokens.length - 1) / 2;
  return `<div class="context">${c.tokens.map((t, i) => t === null ? "" :
    `<span class="tok${i === mid ? " center" : ""}" title="importance ${fmt(c.importance[i])}" style="background:${heat(c.importance[i])}">${tok(t)}</span>`).join("")}</div>`;
}
function list(title, rows, cell) {
  return `<div class="card"><h3>${title}</h3>${rows.length ? `<table>${rows.map(cell).join("")}</table>` : `<p class="empty">none</p>`}</div>`;
}
function renderUnit(id) {
  load("unit/" + id, "unit/" + id, u => {
    const row = PL.units[id];
    const name = r => r.unit === null || r.unit === undefined ? esc(r.name) : unitLink(r.unit, r.name || PL.units[r.unit][1]);
    view().innerHTML = `<h2 id="unit-title">${esc(u.name)}</h2><p>density ${fmt(u.density)} · effect ${fmt(u.effect)} ` +
      `${PL.meta.sequences ? "(KL, nats)" : "(mean squared output change)"} · ${esc(row[6])}${row[7] ? " · " + esc(row[7]) : ""}` +
      `${row[8] ? ` · <span id="known">known mechanism: ${esc(row[8])}</span>` : ""}</p>` +
      `<div class="card"><h3>where it fires most</h3>${u.contexts.map(contextHtml).join("")}</div><div class="cards">` +
      (PL.meta.sequences ? list("input tokens it fires on", u.top_tokens, r => `<tr><td>${tok(r.token)}</td><td class="num">${r.fires}</td><td class="num">${fmt(r.rate)}</td></tr>`) : "") +
      list("promotes (ablated: falls most)", u.promoted, r => `<tr><td>${tok(r.token)}</td><td class="num">${fmt(r.by)}</td></tr>`) +
      list("suppresses (ablated: rises most)", u.suppressed, r => `<tr><td>${tok(r.token)}</td><td class="num">${fmt(r.by)}</td></tr>`) +
      list("fires with", u.coactive, r => `<tr><td>${unitLink(r.unit, PL.units[r.unit][1])}</td><td class="num">${fmt(r.rate)}</td></tr>`) +
      list("fed by", u.fed_by, r => `<tr><td>${name(r)}</td><td class="num">${fmt(r.weight)}</td></tr>`) +
      list("inputs that feed it (graph)", u.inputs || [], r => `<tr><td>${esc(r.name)}</td><td class="num">${fmt(r.weight)}</td></tr>`) +
      list("feeds", u.feeds, r => `<tr><td>${name(r)}</td><td class="num">${fmt(r.weight)}</td></tr>`) + `</div>`;
  });
}

function renderMechanisms() {
  load("mechanisms", "mechanisms", ms => {
    view().innerHTML = ms.length ? ms.map(m => `<div class="card mechanism"><h3>${esc(m.id)} · ${m.members.length} units · ` +
      `density ${fmt(m.density)} · effect ${fmt(m.effect)}</h3><p>promotes ${m.promoted.map(esc).join(", ") || "–"}; ` +
      `suppresses ${m.suppressed.map(esc).join(", ") || "–"}</p><p>${m.members.map(([i, n]) => unitLink(i, n)).join(" ")}</p></div>`).join("")
      : `<p class="empty">no mechanism of two or more units</p>`;
  });
}

function renderPrompts() {
  load("prompts", "prompts", ps => {
    if (!ps.length) { view().innerHTML = `<p class="empty">no prompts</p>`; return; }
    view().innerHTML = ps.map((p, k) => `<div class="prompt">${p.tokens.map((t, i) => {
      const top = p.fires[i].length ? p.fires[i][0][1] : null;
      return `<span class="tok" data-p="${k}" data-i="${i}" style="background:${heat(top)}">${tok(t)}</span>`;
    }).join("")}${p.graph ? ` <a class="prompt-graph" href="#/graph/${k}">its attribution graph</a>` : ""}<div class="fires" id="fires-${k}"><p class="empty">click a token: the units firing there</p></div></div>`).join("");
    view().querySelectorAll(".prompt .tok").forEach(el => el.onclick = () => {
      const p = ps[+el.dataset.p], fires = p.fires[+el.dataset.i];
      document.getElementById("fires-" + el.dataset.p).innerHTML = fires.length ? `<table>${fires.map(([u, v]) =>
        `<tr><td>${unitLink(u, PL.units[u][1])}</td><td class="num">${fmt(v)}</td><td>${esc(PL.units[u][6])}</td></tr>`).join("")}</table>`
        : `<p class="empty">no unit fires on ${esc(p.tokens[+el.dataset.i])}</p>`;
    });
  });
}

function renderGraph() { load("graph", "graph", g => drawGraph(g, "")); }
function renderPromptGraph(k) {
  load("prompts", "prompts", ps => ps[k] && ps[k].graph ? drawGraph(ps[k].graph, `prompt ${k + 1}: ${ps[k].tokens.join("")} · `)
    : view().innerHTML = `<p class="empty">prompt ${k + 1} has no graph of its own</p>`);
}
function drawGraph(g, what) {
  if (!g.edges.length) { view().innerHTML = `<p class="empty">no attribution graph (SPD runs have one)</p>`; return; }
  const column = {}; g.targets.forEach((t, i) => column[t] = i);
  const nodes = {}, perColumn = {};
  const place = n => {
    if (nodes[n]) return nodes[n];
    const t = n.startsWith("output") ? "output" : n.startsWith("input:") ? "input" : n.slice(0, n.lastIndexOf(":"));
    const c = column[t] ?? g.targets.length - 1, k = perColumn[c] = (perColumn[c] || 0) + 1;
    return nodes[n] = {x: 60 + 220 * c, y: 30 * k, name: n};
  };
  g.edges.forEach(([a, b]) => { place(a); place(b); });
  const max = Math.max(...g.edges.map(e => e[2]));
  const lines = g.edges.map(([a, b, w]) => `<line x1="${nodes[a].x}" y1="${nodes[a].y}" x2="${nodes[b].x}" y2="${nodes[b].y}" ` +
    `stroke="#0a58ca" stroke-opacity="${(0.15 + 0.85 * w / max).toFixed(3)}" stroke-width="${(0.5 + 3 * w / max).toFixed(2)}"/>`).join("");
  const dots = Object.values(nodes).map(n => {
    const id = g.units[n.name];
    const label = `<text x="${n.x + 7}" y="${n.y + 4}" font-size="10">${tok((g.labels || {})[n.name] || n.name)}</text>`;
    return `<g class="node"${id !== undefined ? ` data-unit="${id}"` : ""}><circle cx="${n.x}" cy="${n.y}" r="5" fill="#e67814"/>${label}</g>`;
  }).join("");
  const w = 120 + 220 * g.targets.length, h = 60 + 30 * Math.max(...Object.values(perColumn));
  view().innerHTML = `<p>${esc(what)}${g.pruned} edges keep 90 % of each kind of attribution (from the input, between units, to the output); ` +
    `drawn: ${g.edges.length}, from the ${g.inputs_drawn} inputs that feed most · drag to pan, wheel to zoom, click a node</p>` +
    `<div id="graph-box"><svg id="graph" viewBox="0 0 ${w} ${h}">${lines}${dots}</svg></div>`;
  const svg = document.getElementById("graph");
  let box = [0, 0, w, h], drag = null;
  const set = () => svg.setAttribute("viewBox", box.map(v => v.toFixed(1)).join(" "));
  svg.addEventListener("wheel", e => {
    e.preventDefault();
    const f = e.deltaY > 0 ? 1.15 : 1 / 1.15, r = svg.getBoundingClientRect();
    const mx = box[0] + box[2] * (e.clientX - r.left) / r.width, my = box[1] + box[3] * (e.clientY - r.top) / r.height;
    box = [mx - (mx - box[0]) * f, my - (my - box[1]) * f, box[2] * f, box[3] * f]; set();
  }, {passive: false});
  svg.addEventListener("mousedown", e => { drag = [e.clientX, e.clientY, box[0], box[1]]; });
  window.onmouseup = () => { drag = null; };
  svg.addEventListener("mousemove", e => {
    if (!drag) return;
    const r = svg.getBoundingClientRect();
    box[0] = drag[2] - (e.clientX - drag[0]) * box[2] / r.width; box[1] = drag[3] - (e.clientY - drag[1]) * box[3] / r.height; set();
  });
  svg.querySelectorAll("g.node[data-unit]").forEach(n => n.onclick = () => { location.hash = "#/unit/" + n.dataset.unit; });
}

function route() {
  const h = location.hash.replace(/^#\/?/, "");
  if (h.startsWith("unit/")) return renderUnit(+h.slice(5));
  if (h === "mechanisms") return renderMechanisms();
  if (h === "prompts") return renderPrompts();
  if (h === "graph") return renderGraph();
  if (h.startsWith("graph/")) return renderPromptGraph(+h.slice(6));
  renderTable();
}

PL.start = function () {
  document.title = PL.meta.title;
  document.getElementById("title").textContent = PL.meta.title;
  for (const [key, has] of [["mechanisms", PL.meta.has_mechanisms], ["graph", PL.meta.has_graph], ["prompts", PL.meta.has_prompts]])
    if (!has) document.getElementById("nav-" + key).classList.add("hidden");
  document.getElementById("search").addEventListener("input", () => {
    PL.table.page = 0;
    if (location.hash && location.hash !== "#/") location.hash = "#/"; else renderTable();
  });
  window.addEventListener("hashchange", route);
  route();
};
