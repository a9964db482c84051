// The minirun dashboard. Everything from the server is JSON and goes into the page as text
// (textContent, never innerHTML): names, labels, commands and log lines show as typed.
"use strict";

const csrf = document.querySelector('meta[name="csrf-token"]').content;
const state = { containers: [], current: null, logSource: null, history: [] };
const HISTORY_SECONDS = 300;

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function bytes(n) {
  if (n === null || n === undefined) return "--";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : String(n)) + units[i];
}

function duration(s) {
  if (s === null || s === undefined) return "";
  s = Math.floor(s);
  const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60, sec = s % 60;
  if (d) return d + "d " + h + "h";
  if (h) return h + "h " + m + "m";
  if (m) return m + "m " + sec + "s";
  return sec + "s";
}

function percent(v) { return v === null || v === undefined ? "--" : v.toFixed(2) + "%"; }

function renderContainers() {
  const body = document.querySelector("#containers tbody");
  const rows = state.containers.map((c) => {
    const tr = el("tr");
    tr.dataset.id = c.id;
    const name = el("td");
    const link = el("a", c.name, "name");
    link.href = "#/container/" + encodeURIComponent(c.id);
    name.appendChild(link);
    const labels = Object.entries(c.labels || {}).map(([k, v]) => k + "=" + v).join(", ");
    if (labels) name.appendChild(el("div", labels, "labels"));
    tr.appendChild(name);
    tr.appendChild(el("td", c.image, "image"));
    tr.appendChild(el("td", c.state, "state state-" + c.state));
    tr.appendChild(el("td", duration(c.uptime), "uptime"));
    tr.appendChild(el("td", c.ports, "ports"));
    tr.appendChild(el("td", percent(c.cpu), "num cpu"));
    tr.appendChild(el("td", c.memory === null ? "--" : bytes(c.memory) + " / " + bytes(c.memory_limit), "num memory"));
    tr.appendChild(el("td", c.pids === null ? "--" : c.pids, "num pids"));
    tr.appendChild(el("td", c.rx === null ? "--" : bytes(c.rx) + " / " + bytes(c.tx), "num net"));
    return tr;
  });
  body.replaceChildren(...rows);
}

function renderImages(images) {
  const body = document.querySelector("#images tbody");
  body.replaceChildren(...images.map((i) => {
    const tr = el("tr");
    tr.appendChild(el("td", (i.RepoTags || []).join(", ") || "<none>", "tags"));
    tr.appendChild(el("td", i.Id.replace("sha256:", "").slice(0, 12), "id"));
    tr.appendChild(el("td", bytes(i.Size), "num"));
    tr.appendChild(el("td", i.Layers, "num"));
    return tr;
  }));
}

function addEvents(list) {
  const ul = document.getElementById("events");
  for (const e of list) {
    const when = new Date(e.timeNano / 1e6).toLocaleTimeString();
    const who = (e.Actor.Attributes && e.Actor.Attributes.name) || e.Actor.ID.slice(0, 12);
    ul.prepend(el("li", when + "  " + e.Type + " " + e.Action + "  " + who));
  }
  while (ul.children.length > 100) ul.lastChild.remove();
}

// -- one container ------------------------------------------------------------------------------------------
function drawChart(canvas, points, key, format, fixedMax) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 28;
  ctx.clearRect(0, 0, w, h);
  ctx.strokeStyle = "#ccd"; ctx.strokeRect(pad, 4, w - pad - 4, h - pad);
  const now = Date.now() / 1000;
  const values = points.filter((p) => p[key] !== null && p[key] !== undefined && p.t > now - HISTORY_SECONDS);
  let max = fixedMax || 0;
  for (const p of values) max = Math.max(max, p[key]);
  if (!max) max = 1;
  ctx.fillStyle = "#555"; ctx.font = "10px sans-serif";
  ctx.fillText(format(max), 2, 12);
  ctx.fillText("-5m", pad, h - 8); ctx.fillText("now", w - 26, h - 8);
  ctx.strokeStyle = "#2b6cb0"; ctx.lineWidth = 1.5; ctx.beginPath();
  values.forEach((p, i) => {
    const x = pad + (w - pad - 4) * (1 - (now - p.t) / HISTORY_SECONDS);
    const y = 4 + (h - pad) * (1 - p[key] / max);
    if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
  });
  ctx.stroke();
}

function drawCharts() {
  drawChart(document.getElementById("cpu-chart"), state.history, "cpu", (v) => v.toFixed(1) + "%");
  drawChart(document.getElementById("mem-chart"), state.history, "memory", bytes);
}

function showContainer(id) {
  state.current = id;
  document.getElementById("list-view").hidden = true;
  document.getElementById("container-view").hidden = false;
  document.getElementById("c-message").textContent = "";
  const log = document.getElementById("c-log");
  log.textContent = "";
  fetch("/api/containers/" + encodeURIComponent(id), { credentials: "same-origin" })
    .then((r) => r.json())
    .then((data) => {
      if (!data.inspect) { document.getElementById("c-message").textContent = data.message || "not found"; return; }
      document.getElementById("c-name").textContent = data.inspect.Name.replace(/^\//, "");
      document.getElementById("c-state").textContent = data.inspect.State.Status;
      document.getElementById("c-config").textContent = JSON.stringify(
        { Config: data.inspect.Config, HostConfig: data.inspect.HostConfig, Mounts: data.inspect.Mounts }, null, 2);
      state.history = data.history;
      drawCharts();
    });
  if (state.logSource) state.logSource.close();
  state.logSource = new EventSource("/api/containers/" + encodeURIComponent(id) + "/logs");
  state.logSource.addEventListener("log", (ev) => {
    for (const entry of JSON.parse(ev.data)) log.appendChild(el("span", entry.log, "log-" + entry.stream));
    log.scrollTop = log.scrollHeight;
  });
  state.logSource.addEventListener("end", () => state.logSource.close());
}

function showList() {
  state.current = null;
  if (state.logSource) { state.logSource.close(); state.logSource = null; }
  document.getElementById("list-view").hidden = false;
  document.getElementById("container-view").hidden = true;
}

function route() {
  const m = location.hash.match(/^#\/container\/([0-9a-f]{64})$/);
  if (m) showContainer(m[1]); else showList();
}

const ACTIONS = {
  stop: { method: "POST", path: "/stop", verb: "Stop" },
  start: { method: "POST", path: "/start", verb: "Start" },
  restart: { method: "POST", path: "/restart", verb: "Restart" },
  remove: { method: "DELETE", path: "?force=1", verb: "Remove" },
};

function act(action) {
  const id = state.current;
  const spec = ACTIONS[action];
  const name = document.getElementById("c-name").textContent;
  if (!id || !spec || !window.confirm(spec.verb + " container " + name + "?")) return;
  const message = document.getElementById("c-message");
  message.textContent = spec.verb + "…";
  fetch("/containers/" + id + spec.path, {
    method: spec.method, credentials: "same-origin", headers: { "X-CSRF-Token": csrf },
  }).then((r) => {
    if (r.ok || r.status === 304) {  // 304: it already was in that state
      message.textContent = "";
      if (action === "remove") location.hash = "#/"; else if (action !== "stop") showContainer(id);
      return null;
    }
    return r.json().then((body) => { message.textContent = body.message || r.statusText; });
  }).catch((err) => { message.textContent = String(err); });
}

function update(data) {
  state.containers = data.containers;
  renderContainers();
  document.body.dataset.tick = data.tick;
  if (state.current) {
    const c = state.containers.find((x) => x.id === state.current);
    if (c) {
      document.getElementById("c-state").textContent = c.state;
      state.history.push({ t: Date.now() / 1000, cpu: c.cpu, memory: c.memory });
      if (state.history.length > HISTORY_SECONDS) state.history.shift();
      drawCharts();
    }
  }
}

function connect() {
  const live = document.getElementById("live");
  const source = new EventSource("/api/stream");
  source.onopen = () => { live.textContent = "live"; live.classList.add("on"); };
  source.onerror = () => { live.textContent = "reconnecting…"; live.classList.remove("on"); };
  source.addEventListener("update", (ev) => update(JSON.parse(ev.data)));
  source.addEventListener("events", (ev) => addEvents(JSON.parse(ev.data)));
  source.addEventListener("images", (ev) => renderImages(JSON.parse(ev.data)));
}

document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("button[data-action]")) {
    button.addEventListener("click", () => act(button.dataset.action));
  }
  window.addEventListener("hashchange", route);
  fetch("/api/overview", { credentials: "same-origin" }).then((r) => r.json()).then((data) => {
    state.containers = data.containers;
    renderContainers();
    renderImages(data.images);
    addEvents(data.events);
    route();
    connect();
  });
});
