// The mesh page: polls the JSON API once a second and redraws. Every text
// from the mesh goes in through textContent, never as markup.
"use strict";

const SVG = "http://www.w3.org/2000/svg";

function el(tag, attrs, text) {
  const e = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function short(peer) {
  return peer ? "…" + peer.slice(-8) : "-";
}

async function get(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (!r.ok) throw new Error(path + ": " + r.status);
  return r.json();
}

function drawOffice(mesh) {
  const o = document.getElementById("office");
  if (!mesh.admin) {
    o.textContent = "no admin yet" + (mesh.no_quorum ? ` (reaches ${mesh.no_quorum[0]} of ${mesh.no_quorum[1]} voters)` : "");
    return;
  }
  const me = mesh.is_admin ? " (this node)" : "";
  // A node that keeps no replica of the ledger does not know the voters.
  const voters = mesh.voters ? `, ${mesh.voters} voter${mesh.voters === 1 ? "" : "s"}` : "";
  o.textContent = `admin ${short(mesh.admin)}${me}, term ${mesh.term}${voters}`;
}

function drawPeers(mesh) {
  const body = document.querySelector("#peers tbody");
  body.replaceChildren();
  const byNode = new Map();
  for (const w of mesh.workers || []) {
    if (!byNode.has(w.node)) byNode.set(w.node, []);
    byNode.get(w.node).push(w);
  }
  for (const p of mesh.peers || []) {
    const parts = [p.is_admin ? "admin" : null, p.is_voter ? "voter" : null, p.workers.length ? "workers" : null].filter(Boolean);
    const part = parts.length ? parts.join(", ") : "peer";
    const workers = (byNode.get(p.peer) || []).map(w => `${w.name} (${w.role}, ${w.skill}, ${w.load}/${w.capacity})`);
    const names = workers.length ? workers.join(", ") : (p.workers.join(", ") || "-");
    const tr = el("tr", { "data-peer": p.peer });
    tr.append(el("td", { title: p.peer }, short(p.peer)), el("td", {}, part), el("td", { class: "workers" }, names),
      el("td", {}, (p.addrs && p.addrs[0]) || "-"));
    body.append(tr);
  }
}

function drawTasks(tasks) {
  const body = document.querySelector("#tasks tbody");
  body.replaceChildren();
  for (const t of [...tasks].reverse()) {
    const tr = el("tr", { "data-task-id": t.id, "data-status": t.status });
    const status = el("td", {});
    status.append(el("span", { class: "status s-" + t.status }, t.status));
    const name = Array.from(t.name);
    tr.append(el("td", { class: "name", title: t.name }, name.length > 120 ? name.slice(0, 119).join("") + "…" : t.name), status, el("td", {}, t.role), el("td", {}, t.difficulty),
      el("td", {}, t.worker || "-"), el("td", {}, t.attempts), el("td", { class: "why" }, t.error ? (t.status === "failed" ? "error: " + t.error : t.error) : (t.reason || "")));
    body.append(tr);
  }
}

// The latest tasks (up to 40) with their dependencies among them, drawn by
// level: a task one column right of its latest dependency; a level with
// more than 8 tasks wraps into more columns.
function drawDag(tasks) {
  const svg = document.getElementById("dag");
  svg.replaceChildren();
  const order = tasks.slice(-40);
  if (!order.length) return;
  const level = new Map();
  for (const t of order) {
    const deps = (t.dependencies || []).filter(d => level.has(d));
    level.set(t.id, deps.length ? Math.max(...deps.map(d => level.get(d))) + 1 : 0);
  }
  const levels = [];
  for (const t of order) (levels[level.get(t.id)] ||= []).push(t);
  const ROWS = 8, W = 130, H = 34, gapX = 40, gapY = 12;
  const at = new Map();
  let column = 0, rows = 0;
  for (const tasksAtLevel of levels) {
    if (!tasksAtLevel) continue;
    tasksAtLevel.forEach((t, i) => {
      const x = column + Math.floor(i / ROWS), y = i % ROWS;
      at.set(t.id, [x * (W + gapX) + 10, y * (H + gapY) + gapY]);
      rows = Math.max(rows, y + 1);
    });
    column += Math.ceil(tasksAtLevel.length / ROWS);
  }
  const width = column * (W + gapX), height = rows * (H + gapY) + gapY;
  svg.setAttribute("viewBox", `0 0 ${Math.max(width, 600)} ${Math.max(height, 60)}`);
  for (const t of order) {
    for (const d of t.dependencies || []) {
      if (!at.has(d)) continue;
      const [x1, y1] = at.get(d), [x2, y2] = at.get(t.id);
      svg.append(el("svg:path", { class: "edge", d: `M${x1 + W},${y1 + H / 2} C${x1 + W + gapX / 2},${y1 + H / 2} ${x2 - gapX / 2},${y2 + H / 2} ${x2},${y2 + H / 2}` }));
    }
  }
  for (const t of order) {
    const [x, y] = at.get(t.id);
    const g = el("svg:g", { class: "node s-" + t.status, "data-task-id": t.id, "data-status": t.status, transform: `translate(${x},${y})` });
    const title = el("svg:title", {}, `${t.name}: ${t.status}`);
    // Cut by characters, not UTF-16 units, so an emoji is never split.
    const chars = Array.from(t.name);
    const label = chars.length > 18 ? chars.slice(0, 17).join("") + "…" : t.name;
    g.append(title, el("svg:rect", { width: W, height: H }), el("svg:text", { x: W / 2, y: H / 2 }, label));
    svg.append(g);
  }
}

function drawChart(series, mesh) {
  const svg = document.getElementById("chart");
  svg.replaceChildren();
  if (series.length < 2) {
    const why = mesh.is_admin ? "a few seconds of samples first" : "samples are taken on the admin: open its page";
    svg.append(el("svg:text", { x: 300, y: 60, "text-anchor": "middle", fill: "#6b7785", "font-size": 12 }, why));
    return;
  }
  const rates = series.slice(1).map((s, i) => Math.max(0, (s.finished - series[i].finished) / Math.max(0.001, (s.at_ms - series[i].at_ms) / 1000)));
  const ready = series.slice(1).map(s => s.ready);
  const n = rates.length;
  const line = (values, cls, color) => {
    const top = Math.max(1, ...values);
    const pts = values.map((v, i) => `${(i / Math.max(1, n - 1)) * 600},${115 - (v / top) * 105}`).join(" ");
    svg.append(el("svg:polyline", { points: pts, fill: "none", stroke: color, "stroke-width": 2, class: cls }));
    document.getElementById("now-" + cls).textContent = `now ${Math.round(values[n - 1])}, peak ${Math.round(top)}`;
  };
  line(rates, "done", "#2f9e44");
  line(ready, "ready", "#1c7ed6");
}

async function refresh() {
  try {
    const [mesh, tasks, series] = await Promise.all([get("/api/mesh"), get("/api/tasks"), get("/api/series")]);
    drawOffice(mesh);
    drawPeers(mesh);
    drawTasks(tasks.tasks);
    drawDag(tasks.tasks);
    drawChart(series.samples, mesh);
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    document.getElementById("updated").textContent = "cannot reach the node: " + e.message;
  }
}

refresh();
setInterval(refresh, 1000);
