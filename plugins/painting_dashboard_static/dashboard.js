// Painting anomalies dashboard. Data from ./api/ (same origin, the UI's session cookie).
// Every value from the ledgers reaches the page through textContent or a chart's canvas,
// never through innerHTML: a machineId such as "<script>…" is shown as text.
"use strict";

const REFRESH_MS = 15000;
const state = { range: "1h", pageSize: 20, offset: 0, charts: {}, now: null };

const $ = (id) => document.getElementById(id);

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

// A table cell for a value from the ledgers, which may be of any length (a 5,000-character
// machineId): cut with an ellipsis by the style sheet (.cut), whole on hover (title, as text).
function cutCell(value, className) {
  const text = value === undefined || value === null ? "–" : String(value);
  const td = el("td", null, className);
  const span = el("span", text, "cut");
  span.title = text;
  td.append(span);
  return td;
}

// A chart label cut to `max` characters (the axis keeps its room for the bars).
const AXIS_LABEL_CHARS = 24;
function shorten(text, max = AXIS_LABEL_CHARS) {
  const value = String(text);
  return value.length > max ? value.slice(0, max - 1) + "…" : value;
}

// A tooltip shows a long label in lines (at most 4 of 48 characters: a canvas has no scroll).
function tooltipLines(text) {
  const value = shorten(text, 4 * 48);
  const lines = [];
  for (let i = 0; i < value.length; i += 48) lines.push(value.slice(i, i + 48));
  return lines;
}

function fmtNumber(value) {
  return typeof value === "number" ? value.toLocaleString("en-US") : "–";
}

function fmtMeasure(value) {
  return typeof value === "number" ? value.toFixed(2) : value == null ? "–" : String(value);
}

function fmtRate(rate) {
  return typeof rate === "number" ? (rate * 100).toFixed(1) + " %" : "–";
}

// ISO-8601 times as the ledgers and the CSV spell them. Anything else is shown as written (a
// browser's Date would read "5" as the year 2005). A time without a zone (a reading's timeStamp
// as the machine wrote it) is shown as written too, never shifted by the browser's zone.
const ISO_TIME = /^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?$/;

function fmtTime(value) {
  if (value === undefined || value === null || value === "") return "–";
  const text = String(value);
  const match = ISO_TIME.exec(text);
  if (!match) return text;
  const date = new Date(text.replace(" ", "T") + (match[3] ? "" : "Z"));
  if (isNaN(date)) return text; // e.g. a 13th month
  return date.toISOString().replace("T", " ").slice(0, 19);
}

async function getJson(path) {
  const response = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (response.status === 401 || response.status === 403) {
    throw new Error("Your Airflow session has ended or does not allow reading painting_simulator: reload the page to log in.");
  }
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

function showError(error) {
  const box = $("error");
  box.hidden = !error;
  box.textContent = error ? String(error.message || error) : "";
}

function renderSimulator(sim) {
  const status = $("sim-status");
  status.textContent = sim.status;
  status.className = "badge " + sim.status.replace(/\s+/g, "-");
  const run = sim.last_run;
  $("sim-last-run").textContent = run ? `${run.run_id} (${fmtTime(run.end_date || run.start_date)})` : "no run yet";
  const outcome = $("sim-last-outcome");
  outcome.replaceChildren();
  if (run) {
    outcome.append(el("span", run.state || "?", "state-" + (run.state || "none")));
    const r = run.records || {};
    outcome.append(el("span", ` · ${fmtNumber(r.anomaly || 0)} anomalies, ${fmtNumber(r.normal || 0)} normal, ${fmtNumber(r.error || 0)} errors`));
  } else {
    outcome.textContent = "–";
  }
  $("sim-next-run").textContent = sim.status === "running" ? fmtTime(sim.next_run) : sim.status === "paused" ? "paused" : "–";
}

function chart(name, config) {
  if (state.charts[name]) {
    state.charts[name].data = config.data;
    state.charts[name].update("none");
  } else {
    state.charts[name] = new Chart($(name), config);
  }
}

function bucketLabel(iso, width) {
  const text = fmtTime(iso);
  return width >= 1440 ? text.slice(0, 10) : text.slice(5, 16);
}

function renderCharts(summary) {
  const width = summary.range.bucket_minutes;
  const labels = summary.timeline.map((b) => bucketLabel(b.start, width));
  chart("rate-chart", {
    type: "bar",
    data: {
      labels,
      datasets: [
        {
          type: "line", label: "Anomaly rate (%)", yAxisID: "rate", borderColor: "#dc2626",
          backgroundColor: "#dc2626", pointRadius: 2, spanGaps: true, tension: 0.2,
          data: summary.timeline.map((b) => (b.anomaly_rate == null ? null : +(b.anomaly_rate * 100).toFixed(2))),
        },
        {
          label: "Anomalies", yAxisID: "count", backgroundColor: "rgba(220, 38, 38, 0.18)",
          data: summary.timeline.map((b) => b.anomaly),
        },
        {
          label: "Normal", yAxisID: "count", backgroundColor: "rgba(22, 163, 74, 0.18)",
          data: summary.timeline.map((b) => b.normal),
        },
      ],
    },
    options: {
      animation: false, maintainAspectRatio: false,
      interaction: { mode: "index", intersect: false },
      scales: {
        x: { stacked: true, ticks: { maxTicksLimit: 12, autoSkip: true } },
        count: { position: "right", stacked: true, beginAtZero: true, title: { display: true, text: "rows per " + width + " min" } },
        rate: { position: "left", min: 0, max: 100, title: { display: true, text: "anomaly rate %" } },
      },
    },
  });
  chart("issue-chart", {
    type: "bar",
    data: {
      labels: summary.by_issue.map((i) => i.issue),
      datasets: [{ label: "Anomalies", backgroundColor: "#dc2626", data: summary.by_issue.map((i) => i.count) }],
    },
    options: {
      animation: false, maintainAspectRatio: false, indexAxis: "y",
      plugins: {
        legend: { display: false },
        tooltip: { callbacks: { title: (items) => (items.length ? tooltipLines(items[0].label) : "") } },
      },
      scales: {
        x: { beginAtZero: true, ticks: { precision: 0 } },
        y: { ticks: { callback(value) { return shorten(this.getLabelForValue(value)); } } },
      },
    },
  });
}

function renderMachines(summary) {
  const body = $("machine-table").tBodies[0];
  const total = summary.counts.anomaly || 0;
  const rows = summary.by_machine.map((m) => {
    const tr = el("tr");
    tr.append(cutCell(m.machine, "machine"), el("td", fmtNumber(m.count), "num"));
    const share = el("td");
    const bar = el("span", null, "share");
    bar.style.width = Math.round((total ? m.count / total : 0) * 160) + "px";
    share.append(bar, el("span", " " + fmtRate(total ? m.count / total : null)));
    tr.append(share);
    return tr;
  });
  if (!rows.length) rows.push(emptyRow(3, "No anomalies in this time range."));
  body.replaceChildren(...rows);
}

function emptyRow(columns, text) {
  const tr = el("tr");
  const td = el("td", text, "muted");
  td.colSpan = columns;
  tr.append(td);
  return tr;
}

function renderSummary(summary) {
  for (const kind of ["anomaly", "normal", "error"]) $("count-" + kind).textContent = fmtNumber(summary.counts[kind]);
  $("anomaly-rate").textContent = fmtRate(summary.anomaly_rate);
  $("sim-rows").textContent = fmtNumber(summary.totals.total);
  renderSimulator(summary.simulator);
  const nothingAtAll = summary.totals.total === 0;
  $("empty").hidden = summary.counts.total !== 0;
  $("empty-range").textContent = nothingAtAll ? "" : " in this time range";
  document.body.dataset.empty = String(nothingAtAll);
  renderFuture(summary.future);
  renderCharts(summary);
  renderMachines(summary);
}

// Records stamped after the api-server's now (a machine with a wrong clock, a hand-edited
// ledger): counted in "everything", never in the timeline, and said so here.
function renderFuture(future) {
  const box = $("future");
  const n = future ? future.total : 0;
  box.hidden = !n;
  box.textContent = n
    ? `${fmtNumber(n)} ${n === 1 ? "record is" : "records are"} stamped in the future (after now, by the api-server's clock): counted in "everything" and in the totals, not in the timeline.`
    : "";
}

function isFuture(iso) {
  const date = new Date(iso);
  return state.now !== null && !isNaN(date) && date > state.now;
}

function renderRecent(page) {
  const counted = typeof page.total === "number"; // null while the first pass is counting
  const body = $("recent-table").tBodies[0];
  const rows = page.records.map((record) => {
    const prediction = record.prediction || {};
    const data = record.original_data || {};
    const pick = (key) => (prediction[key] !== undefined ? prediction[key] : data[key]);
    const tr = el("tr");
    const logged = cutCell(fmtTime(record.timestamp));
    if (isFuture(record.timestamp)) {
      tr.className = "future";
      logged.append(el("span", "future", "badge future"));
    }
    tr.append(
      logged,
      cutCell(fmtTime(pick("timeStamp"))),
      cutCell(pick("machineId"), "machine"),
      cutCell(prediction.issue, "issue"),
      cutCell(fmtMeasure(pick("thick")), "num"),
      cutCell(fmtMeasure(pick("voltage")), "num"),
      cutCell(fmtMeasure(pick("current")), "num"),
      cutCell(fmtMeasure(pick("temper")), "num"),
    );
    return tr;
  });
  if (!rows.length) rows.push(emptyRow(8, "No anomalies recorded yet."));
  body.replaceChildren(...rows);
  const current = Math.floor(state.offset / state.pageSize) + 1;
  $("page-info").textContent = counted
    ? `page ${current} of ${Math.max(1, Math.ceil(page.total / state.pageSize))} · ${fmtNumber(page.total)} anomalies in the ledger`
    : `page ${current} · counting the anomalies…`;
  $("newer").disabled = state.offset === 0;
  $("older").disabled = counted ? state.offset + state.pageSize >= page.total : page.records.length < state.pageSize;
}

let loading = null;
async function refresh() {
  if (loading) return loading;
  loading = (async () => {
    try {
      const [summary, recent] = await Promise.all([
        getJson(`api/summary?range=${encodeURIComponent(state.range)}`),
        getJson(`api/anomalies/recent?limit=${state.pageSize}&offset=${state.offset}`),
      ]);
      state.now = new Date(summary.generated_at); // the api-server's clock, not the browser's
      renderRecent(recent);
      showError(null);
      if (summary.indexing) {
        // The api-server is still reading big ledgers for the first time: ask again soon.
        renderSimulator(summary.simulator);
        $("updated").textContent = `indexing the ledgers… ${Math.round(summary.indexing.progress * 100)} %`;
        setTimeout(refresh, 2000);
        return;
      }
      renderSummary(summary);
      $("updated").textContent = `updated ${new Date().toLocaleTimeString()} · refreshes every ${REFRESH_MS / 1000} s`;
      document.body.dataset.loaded = "true";
    } catch (error) {
      showError(error);
    } finally {
      loading = null;
    }
  })();
  return loading;
}

function start() {
  $("range").value = state.range;
  $("range").addEventListener("change", (e) => { state.range = e.target.value; refresh(); });
  $("page-size").addEventListener("change", (e) => { state.pageSize = +e.target.value; state.offset = 0; refresh(); });
  $("newer").addEventListener("click", () => { state.offset = Math.max(0, state.offset - state.pageSize); refresh(); });
  $("older").addEventListener("click", () => { state.offset += state.pageSize; refresh(); });
  setInterval(() => { if (!document.hidden) refresh(); }, REFRESH_MS);
  refresh();
}

document.addEventListener("DOMContentLoaded", start);
