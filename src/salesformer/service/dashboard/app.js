// The salesformer dashboard: search items, show history, forecast band and latest events.
"use strict";

const state = { item: null, timer: null };
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

function select(itemId, title, li) {
  state.item = itemId;
  document.querySelectorAll("#results li").forEach((el) => el.classList.remove("selected"));
  li.classList.add("selected");
  document.getElementById("item-title").textContent = `${itemId} - ${title}`;
  document.getElementById("refresh").disabled = false;
  refresh();
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
    refresh();
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
  await search();
  state.timer = setInterval(refresh, 10000);
}

start();
