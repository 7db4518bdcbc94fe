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
  if (!response.ok) {
    // A 503 (the results database cannot be read) says why in its detail: show it as it is.
    const detail = await response.json().then((body) => body.detail, () => null);
    throw new Error(`${path}: HTTP ${response.status}` + (typeof detail === "string" ? `: ${detail}` : ""));
  }
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

// A chart over time: a rate (0..1, drawn in %) as a line, and rows per bucket as stacked bars.
function overTime(timeline, width, rate, bars) {
  return {
    type: "bar",
    data: {
      labels: timeline.map((b) => bucketLabel(b.start, width)),
      datasets: [
        {
          type: "line", label: rate.label, yAxisID: "rate", borderColor: rate.color,
          backgroundColor: rate.color, pointRadius: 2, spanGaps: true, tension: 0.2,
          data: timeline.map((b) => (b[rate.key] == null ? null : +(b[rate.key] * 100).toFixed(2))),
        },
        ...bars.map((bar) => ({
          label: bar.label, yAxisID: "count", backgroundColor: bar.color, data: timeline.map((b) => b[bar.key]),
        })),
      ],
    },
    options: {
      animation: false, maintainAspectRatio: false,
      interaction: { mode: "index", intersect: false },
      scales: {
        x: { stacked: true, ticks: { maxTicksLimit: 12, autoSkip: true } },
        count: { position: "right", stacked: true, beginAtZero: true, title: { display: true, text: "rows per " + width + " min" } },
        rate: { position: "left", min: 0, max: 100, title: { display: true, text: rate.axis } },
      },
    },
  };
}

function renderCharts(summary) {
  const width = summary.range.bucket_minutes;
  chart("rate-chart", overTime(summary.timeline, width,
    { label: "Anomaly rate (%)", color: "#dc2626", key: "anomaly_rate", axis: "anomaly rate %" },
    [
      { label: "Anomalies", color: "rgba(220, 38, 38, 0.18)", key: "anomaly" },
      { label: "Normal", color: "rgba(22, 163, 74, 0.18)", key: "normal" },
    ]));
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

// --- Model checks: replay reports, shadow mode's agreement over time, latest disagreements ---

function fmtFigure(value) {
  if (value === undefined || value === null) return "–";
  if (Array.isArray(value)) return "[" + value.map(fmtFigure).join(", ") + "]";
  return typeof value === "number" ? String(+value.toFixed(4)) : String(value);
}

function mark(passed) {
  return passed === true ? "✓" : passed === false ? "✗" : "–";
}

// One threshold: ✓ / ✗ and its name, value and limit in the cell (cut), whole in the title.
function thresholdBadge(t) {
  const text = `${mark(t.passed)} ${t.name}: ${fmtFigure(t.value)} (limit ${fmtFigure(t.limit)})`;
  const span = el("span", text, "threshold " + (t.passed ? "pass" : "fail"));
  span.title = text;
  span.dataset.name = String(t.name);
  return span;
}

function renderReplays(answer) {
  const body = $("replay-table").tBodies[0];
  const rows = answer.reports.map((r) => {
    const tr = el("tr");
    tr.dataset.runId = String(r.run_id);
    const gate = el("td", null, "verdict " + (r.passed === true ? "pass" : r.passed === false ? "fail" : ""));
    gate.textContent = r.passed === true ? "✓ passed" : r.passed === false ? "✗ failed" : "–";
    const checks = el("td", null, "checks");
    const list = el("div", null, "thresholds");
    if (Array.isArray(r.thresholds) && r.thresholds.length) list.append(...r.thresholds.map(thresholdBadge));
    else list.append(el("span", Array.isArray(r.thresholds) ? "none set" : "–", "muted"));
    checks.append(list);
    const latency = `${fmtMeasure(r.latency_p95_ms)} / ${fmtMeasure(r.latency_p99_ms)}`;
    const agreement = cutCell(fmtRate(r.agreement), "num agreement");
    if (r.candidate_conn_id) agreement.title = `candidate ${r.candidate_conn_id}, ${fmtNumber(r.candidate_errors)} candidate error(s)`;
    tr.append(
      cutCell(fmtTime(r.logged_at)), cutCell(r.run_id), gate, checks,
      cutCell(fmtNumber(r.rows), "num"), cutCell(fmtNumber(r.throughput_rows_per_second), "num"),
      cutCell(latency, "num"), agreement, cutCell(fmtRate(r.accuracy), "num accuracy"),
    );
    return tr;
  });
  if (!rows.length) rows.push(emptyRow(9, "No replay reports yet: trigger painting_replay."));
  body.replaceChildren(...rows);
}

function renderShadow(shadow) {
  const c = shadow.counts;
  const any = c.compared + c.candidate_errors > 0;
  $("shadow-empty").hidden = any;
  $("shadow-panel").hidden = !any;
  document.body.dataset.shadow = String(any);
  if (!any) return;
  $("shadow-totals").textContent =
    `${fmtNumber(c.compared)} rows compared, ${fmtNumber(c.agreed)} agreed, ${fmtNumber(c.disagreed)} disagreed ` +
    `(agreement ${fmtRate(c.agreement)}); ${fmtNumber(c.candidate_errors)} candidate error(s), counted apart.`;
  const width = shadow.range.bucket_minutes;
  chart("agreement-chart", overTime(shadow.timeline, width,
    { label: "Agreement (%)", color: "#017cee", key: "agreement", axis: "agreement %" },
    [
      { label: "Agreed", color: "rgba(22, 163, 74, 0.25)", key: "agreed" },
      { label: "Disagreed", color: "rgba(220, 38, 38, 0.35)", key: "disagreed" },
      { label: "Candidate errors", color: "rgba(217, 119, 6, 0.3)", key: "candidate_errors" },
    ]));
}

function renderDisagreements(answer) {
  const body = $("disagreement-table").tBodies[0];
  const rows = answer.records.map((d) => {
    const tr = el("tr");
    const where = d.blob == null && d.row == null ? null : `${d.blob == null ? "?" : d.blob} row ${d.row == null ? "?" : d.row}`;
    tr.append(
      cutCell(fmtTime(d.timestamp)), cutCell(d.machine, "machine"), cutCell(where, "where"),
      cutCell(d.production, "issue production"), cutCell(d.candidate, "issue candidate"), cutCell(d.run_id),
    );
    return tr;
  });
  if (!rows.length) rows.push(emptyRow(6, "No disagreements recorded."));
  body.replaceChildren(...rows);
}

let loading = null;
async function refresh() {
  if (loading) return loading;
  loading = (async () => {
    try {
      const range = encodeURIComponent(state.range);
      const [summary, recent, replays, shadow, disagreements] = await Promise.all([
        getJson(`api/summary?range=${range}`),
        getJson(`api/anomalies/recent?limit=${state.pageSize}&offset=${state.offset}`),
        getJson("api/replays/recent?limit=10"),
        getJson(`api/shadow?range=${range}`),
        getJson("api/shadow/disagreements?limit=20"),
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
      renderReplays(replays);
      if (!shadow.indexing) renderShadow(shadow);
      if (!disagreements.indexing) renderDisagreements(disagreements);
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
