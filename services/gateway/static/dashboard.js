// The dashboard: one WebSocket to /ws (task_status, calc_result, market_data, alert, system) plus
// GET /api/jobs and /api/jobs/<id>/equity. No build step; uPlot draws the charts.
"use strict";

const state = {
  socket: null,
  key: sessionStorage.getItem("gq-api-key") || "",
  jobs: new Map(),          // job_id -> row element
  symbol: null,
  ticks: { time: [], price: [], indicators: {} },
  tickChart: null,
  equityChart: null,
  equityJob: null,
};
const MAX_JOB_ROWS = 200;
const MAX_TICKS = 500;

function readKeyFromHash() {
  const match = /(?:^|[#&])key=([^&]+)/.exec(location.hash);
  if (match) {
    state.key = decodeURIComponent(match[1]);
    sessionStorage.setItem("gq-api-key", state.key);
    history.replaceState(null, "", location.pathname);  // keep the key out of the address bar
  }
}

function headers() {
  return state.key ? { "x-api-key": state.key } : {};
}

function setStatus(text) {
  const badge = document.getElementById("conn-status");
  badge.textContent = text;
  badge.dataset.state = text;
}

function send(message) {
  if (state.socket && state.socket.readyState === WebSocket.OPEN) {
    state.socket.send(JSON.stringify(message));
  }
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/ws`);
  state.socket = socket;
  setStatus("connecting");
  socket.onopen = () => {
    if (state.key) send({ type: "auth", api_key: state.key });
    send({ type: "subscribe", channel: "task_status", task_type: "*" });
    send({ type: "subscribe", channel: "calc_result", task_type: "backtest" });
    send({ type: "subscribe", channel: "alert" });
    send({ type: "subscribe", channel: "system" });
    if (state.symbol) followSymbol(state.symbol, null);
  };
  socket.onmessage = (event) => handle(JSON.parse(event.data));
  socket.onclose = () => {
    if (document.getElementById("conn-status").dataset.state !== "unauthenticated") {
      setStatus("closed");
      setTimeout(connect, 2000);
    }
  };
}

function handle(message) {
  if (message.type) {  // a reply (subscribed, pong, error...); pushes have a channel and no type
    if (message.type === "subscribed" && message.channel === "task_status") {
      setStatus("live");  // admitted (the gateway answers subscriptions only after the key check)
      loadRecentJobs();
    } else if (message.type === "error" && message.error === "unauthenticated") {
      setStatus("unauthenticated");
      document.getElementById("key-form").hidden = false;
    }
    return;
  }
  switch (message.channel) {
    case "task_status": showJob(message); break;
    case "calc_result":
      if (message.kind === "indicators") addIndicators(message);
      else if (message.kind === "job_result" && message.task_type === "backtest") loadEquity(message.job_id);
      break;
    case "market_data": addTicks(message); break;
    case "alert": showAlert(message); break;
    case "system": showSystem(message); break;
  }
}

// ------------------------------------------------------------------ jobs
function showJob(job) {
  let row = state.jobs.get(job.job_id);
  if (!row) {
    row = document.createElement("tr");
    row.dataset.jobId = job.job_id;
    for (const name of ["id", "type", "status", "progress", "time"]) {
      const cell = document.createElement("td");
      cell.className = name;
      row.appendChild(cell);
    }
    row.cells[0].textContent = job.job_id.length > 14 ? `${job.job_id.slice(0, 12)}…` : job.job_id;
    row.cells[0].title = job.job_id;
    row.cells[3].appendChild(document.createElement("progress")).max = 1;
    row.addEventListener("click", () => {
      if (row.dataset.status === "COMPLETED" && row.dataset.taskType === "backtest") loadEquity(job.job_id);
    });
    document.getElementById("jobs").prepend(row);
    state.jobs.set(job.job_id, row);
    trimJobs();
  }
  row.dataset.status = job.status;
  row.dataset.taskType = job.task_type;
  row.cells[1].textContent = job.task_type;
  row.cells[2].textContent = job.status + (job.error ? `: ${job.error}` : "");
  row.cells[2].dataset.status = job.status;
  row.cells[3].firstChild.value = job.progress || 0;
  row.cells[3].title = `${Math.round((job.progress || 0) * 100)} %`;
  row.cells[4].textContent = (job.time || "").replace("T", " ").replace("Z", "");
}

function trimJobs() {
  const body = document.getElementById("jobs");
  while (body.rows.length > MAX_JOB_ROWS) {
    const last = body.rows[body.rows.length - 1];
    state.jobs.delete(last.dataset.jobId);
    last.remove();
  }
}

async function loadRecentJobs() {
  const reply = await fetch("/api/jobs?limit=50", { headers: headers() });
  if (!reply.ok) return;
  const jobs = await reply.json();
  for (const job of jobs.reverse()) {
    if (!state.jobs.has(job.job_id)) showJob({ ...job, time: "" });
  }
  const done = jobs.filter((j) => j.task_type === "backtest" && j.status === "COMPLETED");
  if (done.length && !state.equityJob) loadEquity(done[done.length - 1].job_id);
}

// -------------------------------------------------------------- backtest
async function loadEquity(jobId) {
  const reply = await fetch(`/api/jobs/${encodeURIComponent(jobId)}/equity`, { headers: headers() });
  if (!reply.ok) return;
  const curve = await reply.json();
  state.equityJob = jobId;
  document.getElementById("equity-job").textContent = `${jobId} (${(curve.symbols || []).join(", ")})`;
  const times = curve.time.map((t) => Date.parse(t) / 1000);
  const holder = document.getElementById("equity-chart");
  if (state.equityChart) state.equityChart.destroy();
  state.equityChart = new uPlot({
    width: Math.max(holder.clientWidth, 360), height: 240,
    series: [{}, { label: "equity", stroke: "#1f6feb", width: 1.5, value: (u, v) => compact(v) }],
    axes: [{}, { size: 64, values: (u, ticks) => ticks.map(compact) }],
  }, [times, curve.equity], holder);
  holder.dataset.rendered = "true";
  holder.dataset.jobId = jobId;
  const body = document.querySelector("#metrics tbody");
  body.replaceChildren();
  for (const [name, value] of Object.entries(curve.metrics || {})) {
    const row = body.insertRow();
    row.insertCell().textContent = name;
    row.insertCell().textContent = typeof value === "number" ? value.toPrecision(6) : String(value);
  }
}

const COMPACT = new Intl.NumberFormat("en", { notation: "compact", maximumFractionDigits: 3 });
function compact(value) {
  return value == null ? "--" : COMPACT.format(value);
}

// ------------------------------------------------------------ live ticks
function followSymbol(symbol, previous) {
  if (previous) {
    send({ type: "unsubscribe", channel: "market_data", symbols: [previous] });
    send({ type: "unsubscribe", channel: "calc_result", symbols: [previous] });
  }
  send({ type: "subscribe", channel: "market_data", symbols: [symbol] });
  send({ type: "subscribe", channel: "calc_result", symbols: [symbol] });
}

function addTicks(update) {
  if (update.symbol !== state.symbol) return;
  const body = document.getElementById("ticks");
  update.timestamp.forEach((stamp, i) => {
    state.ticks.time.push(Date.parse(stamp) / 1000);
    state.ticks.price.push(update.price[i]);
    const row = body.insertRow(0);
    row.insertCell().textContent = stamp;
    row.insertCell().textContent = update.price[i];
    row.insertCell().textContent = update.volume[i];
  });
  while (body.rows.length > 20) body.deleteRow(-1);
  trimTicks();
  drawTicks();
}

function addIndicators(update) {
  if (update.symbol !== state.symbol) return;
  for (const [name, values] of Object.entries(update.indicators)) {
    const column = state.ticks.indicators[name] || (state.ticks.indicators[name] = []);
    // Align with the prices: pad a new indicator's history with gaps.
    while (column.length < state.ticks.price.length - values.length) column.push(null);
    column.push(...values);
  }
  trimTicks();
  drawTicks();
}

function trimTicks() {
  const extra = state.ticks.time.length - MAX_TICKS;
  if (extra > 0) {
    state.ticks.time.splice(0, extra);
    state.ticks.price.splice(0, extra);
  }
  for (const column of Object.values(state.ticks.indicators)) {
    const over = column.length - state.ticks.time.length;
    if (over > 0) column.splice(0, over);
  }
}

const PALETTE = ["#e67e22", "#8e44ad", "#16a085", "#c0392b", "#7f8c8d"];

function drawTicks() {
  const names = Object.keys(state.ticks.indicators).filter((n) => !/rsi|macd|volume/.test(n)).slice(0, 5);
  const length = state.ticks.time.length;
  const columns = names.map((n) => {
    const column = state.ticks.indicators[n].slice(-length);
    while (column.length < length) column.unshift(null);
    return column;
  });
  const data = [state.ticks.time, state.ticks.price, ...columns];
  const key = names.join(",");
  const holder = document.getElementById("tick-chart");
  if (!state.tickChart || state.tickChart.seriesKey !== key) {
    if (state.tickChart) state.tickChart.destroy();
    state.tickChart = new uPlot({
      width: Math.max(holder.clientWidth, 360), height: 200,
      series: [{}, { label: state.symbol, stroke: "#1d2330" },
               ...names.map((n, i) => ({ label: n, stroke: PALETTE[i % PALETTE.length] }))],
    }, data, holder);
    state.tickChart.seriesKey = key;
  } else {
    state.tickChart.setData(data);
  }
}

// ----------------------------------------------------- system and alerts
function fillTable(id, rows) {
  const body = document.getElementById(id);
  body.replaceChildren();
  for (const cells of rows) {
    const row = body.insertRow();
    for (const value of cells) row.insertCell().textContent = value;
  }
}

function showSystem(snapshot) {
  fillTable("workers", snapshot.workers.map((w) => [w.worker_id, w.device, w.alive ? "yes" : "LOST"]));
  fillTable("queues", snapshot.queues.map((q) => [q.task_type, q.waiting, q.running, q.dead_letters]));
}

function showAlert(alert) {
  const item = document.createElement("li");
  const what = alert.job_id || alert.worker_id || alert.portfolio_id || "";
  item.textContent = `${alert.time} ${alert.kind} ${what} ${alert.error || alert.message || ""}`;
  const list = document.getElementById("alerts");
  list.prepend(item);
  while (list.children.length > 50) list.lastChild.remove();
}

// ------------------------------------------------------------------ start
document.getElementById("symbol-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const symbol = document.getElementById("symbol-input").value.trim();
  if (!symbol || symbol === state.symbol) return;
  const previous = state.symbol;
  state.symbol = symbol;
  state.ticks = { time: [], price: [], indicators: {} };
  if (state.tickChart) { state.tickChart.destroy(); state.tickChart = null; }
  document.getElementById("ticks").replaceChildren();
  followSymbol(symbol, previous);
});

document.getElementById("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  state.key = document.getElementById("key-input").value.trim();
  sessionStorage.setItem("gq-api-key", state.key);
  document.getElementById("key-form").hidden = true;
  connect();
});

window.addEventListener("hashchange", () => {  // a /#key=... typed over an open page
  const before = state.key;
  readKeyFromHash();
  if (state.key === before) return;
  document.getElementById("key-form").hidden = true;
  if (state.socket) {
    state.socket.onclose = null;
    state.socket.close();
  }
  connect();
});

setInterval(() => send({ type: "ping" }), 30000);  // keeps the gateway's idle timeout away
readKeyFromHash();
connect();
