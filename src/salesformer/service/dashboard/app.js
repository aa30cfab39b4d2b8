// The salesformer dashboard: an overview (category totals, movers, stock, live accuracy and
// alerts), then any item's history, forecast band, events and plan at #item=<URL-encoded id>.
"use strict";

const state = { item: null, timer: null, titles: {} };
const protectReads = document.body.dataset.protectReads === "true";

function headers() {
  const key = document.getElementById("api-key").value || localStorage.getItem("salesformerKey");
  return key ? { "X-API-Key": key } : {};
}

async function getJSON(url) {
  const response = await fetch(url, { headers: headers() });
  const body = await response.json();
  if (!response.ok) {
    throw new Error(body.detail || response.statusText);
  }
  return body;
}

function setStatus(text) {
  document.getElementById("status").textContent = text;
}

async function search() {
  const text = document.getElementById("search").value;
  const list = document.getElementById("results");
  try {
    const found = await getJSON(`/items?limit=100&search=${encodeURIComponent(text)}`);
    list.replaceChildren(
      ...found.items.map((item) => {
        const li = document.createElement("li");
        li.textContent = `${item.item_id} - ${item.title}`;
        li.dataset.itemId = item.item_id;
        li.addEventListener("click", () => select(item.item_id, item.title, li));
        return li;
      }),
    );
    document.getElementById("result-count").textContent =
      `${found.items.length} of ${found.total} items`;
  } catch (error) {
    setStatus(`search failed: ${error.message}`);
  }
}

function itemHash(itemId) {
  return `#item=${encodeURIComponent(itemId)}`;
}

function select(itemId, title, li) {
  state.titles[itemId] = title;
  document.querySelectorAll("#results li").forEach((el) => el.classList.remove("selected"));
  li.classList.add("selected");
  if (location.hash === itemHash(itemId)) {
    route();
  } else {
    location.hash = itemHash(itemId); // a link that can be shared; "hashchange" routes
  }
}

// The page's address says what it shows: "#item=<id>" an item, anything else the overview.
function route() {
  const match = location.hash.match(/^#item=(.+)$/);
  let itemId = null;
  if (match) {
    try {
      itemId = decodeURIComponent(match[1]);
    } catch (error) {
      setStatus(`the link's item id is not URL-encoded: ${match[1]}`);
    }
  }
  document.getElementById("overview").hidden = itemId !== null;
  document.getElementById("item-view").hidden = itemId === null;
  if (itemId === null) {
    state.item = null;
    loadOverview();
    return;
  }
  openItem(itemId);
}

async function openItem(itemId) {
  state.item = itemId;
  let title = state.titles[itemId];
  if (title === undefined) {
    try {
      const found = await getJSON(`/items?limit=1000&search=${encodeURIComponent(itemId)}`);
      const exact = found.items.find((item) => item.item_id === itemId);
      title = exact ? exact.title : "";
    } catch (error) {
      title = "";
    }
  }
  document.getElementById("item-title").textContent = title ? `${itemId} - ${title}` : itemId;
  const link = document.getElementById("item-link");
  link.href = itemHash(itemId);
  link.textContent = location.href;
  document.getElementById("refresh").disabled = false;
  refresh();
}

function cell(tr, value) {
  const td = document.createElement("td");
  if (value instanceof Node) td.appendChild(value);
  else td.textContent = value === null || value === undefined ? "" : String(value);
  tr.appendChild(td);
}

function itemLink(itemId, title) {
  const a = document.createElement("a");
  a.href = itemHash(itemId);
  a.textContent = title && title !== itemId ? `${itemId} - ${title}` : itemId;
  a.className = "item-link";
  return a;
}

function fixed(value, digits = 3) {
  return value === null || value === undefined ? "-" : Number(value).toFixed(digits);
}

async function loadOverview() {
  try {
    const [overview, monitoring] = await Promise.all([
      getJSON("/overview"),
      getJSON("/monitoring"),
    ]);
    drawCategories(overview);
    showMovers(overview);
    showStock(overview.stock);
    showAccuracy(monitoring);
  } catch (error) {
    setStatus(`overview failed: ${error.message}`);
  }
}

function drawCategories(overview) {
  const traces = overview.by_category.map((row) => ({
    x: overview.dates,
    y: row.totals,
    name: row.category,
    type: "bar",
  }));
  const layout = {
    barmode: "stack",
    margin: { t: 20, r: 20, b: 40, l: 50 },
    yaxis: { title: { text: "units (median forecast)" }, rangemode: "tozero" },
    legend: { orientation: "h" },
  };
  Plotly.react("category-chart", traces, layout, { displaylogo: false, responsive: true });
}

function showMovers(overview) {
  document.getElementById("movers-note").textContent =
    `(next ${overview.periods} periods' forecast against the last ${overview.periods})`;
  document.querySelector("#movers tbody").replaceChildren(
    ...overview.movers.map((row) => {
      const tr = document.createElement("tr");
      cell(tr, itemLink(row.item_id, row.title));
      cell(tr, fixed(row.last, 1));
      cell(tr, fixed(row.next, 1));
      const pct = row.change_pct === null ? "" : ` (${(row.change_pct * 100).toFixed(0)}%)`;
      cell(tr, `${row.change >= 0 ? "+" : ""}${fixed(row.change, 1)}${pct}`);
      return tr;
    }),
  );
}

function showStock(stock) {
  document.getElementById("stock-note").textContent = stock.note;
  document.querySelector("#stock tbody").replaceChildren(
    ...stock.short.map((row) => {
      const tr = document.createElement("tr");
      cell(tr, itemLink(row.item_id, row.title));
      cell(tr, fixed(row.on_hand, 0));
      cell(tr, row.lead_time);
      cell(tr, fixed(row.demand_over_lead_time, 1));
      cell(tr, fixed(row.shortfall, 1));
      return tr;
    }),
  );
}

function showAccuracy(report) {
  const alerts = document.getElementById("alerts");
  const badge = document.getElementById("alert-badge");
  const summary = document.getElementById("accuracy-summary");
  if (!report.enabled) {
    alerts.textContent = "Accuracy monitoring is off (the server runs with --no-monitor).";
    summary.textContent = "";
    badge.hidden = true;
    return;
  }
  const firing = report.alert.firing;
  alerts.className = firing ? "firing" : "muted";
  alerts.textContent = firing ? `Alert: ${report.alert.reason}` : "No alerts.";
  badge.hidden = !firing;
  badge.textContent = firing ? "accuracy alert" : "";
  const first = report.windows[0];
  const backtest = report.backtest
    ? `backtest WAPE ${fixed(report.backtest.wape)}`
    : report.backtest_note;
  summary.textContent = first.overall.cells
    ? `Live WAPE ${fixed(first.overall.wape)} over the last ${first.periods} periods ` +
      `(${first.overall.cells} forecast cells, scored through ${report.scored_through}); ` +
      `${backtest}. Model version ${report.model_version}.`
    : `No closed period has a served forecast yet; ${backtest}. ` +
      `Model version ${report.model_version}.`;
  summary.dataset.wape = first.overall.wape === null ? "" : String(first.overall.wape);
  summary.dataset.backtest = report.backtest ? String(report.backtest.wape) : "none";
  drawAccuracy(report);
  const rows = [];
  for (const window of report.windows) {
    rows.push([window.periods, "overall", window.overall]);
    for (const [name, score] of Object.entries(window.by_category)) {
      rows.push([window.periods, name, score]);
    }
  }
  document.querySelector("#accuracy-windows tbody").replaceChildren(
    ...rows.map(([periods, scope, score]) => {
      const tr = document.createElement("tr");
      for (const value of [
        `last ${periods}`,
        scope,
        score.cells,
        fixed(score.wape),
        fixed(score.bias),
        fixed(score.coverage80),
      ]) {
        cell(tr, value);
      }
      return tr;
    }),
  );
}

function drawAccuracy(report) {
  const dates = report.over_time.map((row) => row.date);
  const traces = [
    {
      x: dates,
      y: report.over_time.map((row) => row.wape),
      name: "live WAPE by forecast date",
      mode: "lines+markers",
      line: { color: "#2563eb" },
    },
    {
      x: dates,
      y: report.over_time.map((row) => row.coverage80),
      name: "80% interval coverage",
      mode: "lines+markers",
      line: { color: "#059669", dash: "dot" },
    },
  ];
  if (report.backtest && dates.length) {
    traces.push({
      x: [dates[0], dates[dates.length - 1]],
      y: [report.backtest.wape, report.backtest.wape],
      name: "backtest WAPE",
      mode: "lines",
      line: { color: "#1f2933", dash: "dash" },
    });
  }
  const layout = {
    margin: { t: 20, r: 20, b: 40, l: 50 },
    yaxis: { rangemode: "tozero" },
    legend: { orientation: "h" },
    annotations: report.backtest
      ? []
      : [{ text: "no backtest", xref: "paper", yref: "paper", x: 1, y: 1, showarrow: false }],
  };
  Plotly.react("accuracy-chart", traces, layout, { displaylogo: false, responsive: true });
}

async function refresh() {
  if (!state.item) return;
  const item = encodeURIComponent(state.item);
  try {
    const [history, forecast] = await Promise.all([
      getJSON(`/items/${item}/history?periods=52&events=15`),
      getJSON(`/items/${item}/forecast?quantiles=0.1,0.5,0.9`),
    ]);
    draw(history, forecast);
    showEvents(history);
    const total = forecast.points.reduce((sum, p) => sum + p.forecast, 0);
    const summary = document.getElementById("forecast-summary");
    summary.textContent =
      `Forecast of the next ${forecast.points.length} periods after ${forecast.origin}: ` +
      `${total.toFixed(1)} units (median), 80% band per period shown.`;
    summary.dataset.total = total.toFixed(4);
    await plan();
    setStatus(`updated ${new Date().toLocaleTimeString()}`);
  } catch (error) {
    setStatus(`update failed: ${error.message}`);
  }
}

async function plan() {
  const output = document.getElementById("plan");
  if (!state.item) return;
  const params = new URLSearchParams({
    on_hand: document.getElementById("on-hand").value || "0",
    lead_time: document.getElementById("lead-time").value || "0",
    review_period: document.getElementById("review-period").value || "1",
    service_level: document.getElementById("service-level").value || "0.95",
  });
  try {
    const line = await getJSON(`/items/${encodeURIComponent(state.item)}/plan?${params}`);
    output.textContent =
      `Order ${line.order_qty} now (reorder point ${line.reorder_point.toFixed(1)}, ` +
      `order-up-to ${line.order_up_to}, safety stock ${line.safety_stock.toFixed(1)}): ` +
      line.reason;
    output.dataset.orderQty = String(line.order_qty);
  } catch (error) {
    output.textContent = `no plan: ${error.message}`;
  }
}

function draw(history, forecast) {
  const dates = forecast.points.map((p) => p.date);
  const lower = forecast.points.map((p) => p.quantiles[0]);
  const upper = forecast.points.map((p) => p.quantiles[forecast.quantiles.length - 1]);
  const traces = [
    {
      x: history.history.map((p) => p.date),
      y: history.history.map((p) => p.sales),
      name: "sales",
      mode: "lines+markers",
      line: { color: "#1f2933" },
    },
    { x: dates, y: upper, name: `q${forecast.quantiles.at(-1)}`, line: { width: 0 }, showlegend: false },
    {
      x: dates,
      y: lower,
      name: "80% band",
      fill: "tonexty",
      fillcolor: "rgba(37, 99, 235, 0.2)",
      line: { width: 0 },
    },
    {
      x: dates,
      y: forecast.points.map((p) => p.forecast),
      name: "forecast (median)",
      mode: "lines+markers",
      line: { color: "#2563eb" },
    },
  ];
  const layout = {
    margin: { t: 20, r: 20, b: 40, l: 50 },
    yaxis: { title: { text: "units" }, rangemode: "tozero" },
    legend: { orientation: "h" },
  };
  Plotly.react("chart", traces, layout, { displaylogo: false, responsive: true });
}

function showEvents(history) {
  const body = document.querySelector("#events tbody");
  if (history.events_withheld) {
    const tr = document.createElement("tr");
    const td = document.createElement("td");
    td.colSpan = 5;
    td.id = "events-withheld";
    td.textContent = "Events carry order and customer ids: enter the API key to see them.";
    tr.appendChild(td);
    body.replaceChildren(tr);
    return;
  }
  body.replaceChildren(
    ...history.events.map((event) => {
      const tr = document.createElement("tr");
      for (const value of [
        event.timestamp,
        event.event_id,
        event.quantity,
        event.price ?? "",
        event.order_id ?? "",
      ]) {
        const td = document.createElement("td");
        td.textContent = String(value);
        tr.appendChild(td);
      }
      return tr;
    }),
  );
}

async function start() {
  // The key: needed for every read with --protect-reads, else only to see events.
  const input = document.getElementById("api-key");
  input.placeholder = protectReads ? "required" : "to see events";
  input.value = localStorage.getItem("salesformerKey") || "";
  input.addEventListener("change", () => {
    localStorage.setItem("salesformerKey", input.value);
    search();
    if (state.item) refresh();
    else loadOverview();
  });
  let typing = null;
  document.getElementById("search").addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(search, 200);
  });
  document.getElementById("refresh").addEventListener("click", refresh);
  document.getElementById("plan-form").addEventListener("submit", (event) => {
    event.preventDefault();
    plan();
  });
  try {
    const health = await getJSON("/health");
    setStatus(`${health.model} model, ${health.items} items, ${health.events} events, ` +
      `data up to ${health.clock}`);
  } catch (error) {
    setStatus(`server unreachable: ${error.message}`);
  }
  window.addEventListener("hashchange", route);
  await search();
  route();
  state.timer = setInterval(() => (state.item ? refresh() : loadOverview()), 10000);
}

start();
