// The retention dashboard: one call for every report, then one plotly chart per panel.
"use strict";

const LAYOUT = {
  margin: { t: 10, r: 10, b: 40, l: 50 }, legend: { orientation: "h" },
  xaxis: { type: "category", automargin: true },
};
const CONFIG = { displaylogo: false, responsive: true };

function plot(id, traces, layout) {
  Plotly.newPlot(id, traces, { ...LAYOUT, ...(layout || {}) }, CONFIG);
}

function noData(id, text) {
  document.getElementById(id).replaceChildren(el("p", { class: "unavailable" }, text));
}

function cohortHeatmap(report) {
  const cohorts = report.cohorts.filter((c) => c.size > 0);
  if (!cohorts.length) return noData("cohorts", "No first purchases in this range yet.");
  const width = Math.max(...cohorts.map((c) => c.retention.length));
  const z = cohorts.map((c) => [...c.retention, ...Array(width - c.retention.length).fill(null)]);
  plot("cohorts", [{
    type: "heatmap", z, x: [...Array(width).keys()].map((k) => "+" + k),
    y: cohorts.map((c) => `${c.cohort} (${c.size})`), colorscale: "Blues", reversescale: true,
    zmin: 0, zmax: 1, hovertemplate: "%{y}, month %{x}: %{z:.0%}<extra></extra>",
  }], { yaxis: { autorange: "reversed", type: "category" }, margin: { t: 10, r: 10, b: 40, l: 110 } });
}

function churnLines(report) {
  const x = report.months.map((m) => m.month);
  plot("churn", [
    { type: "scatter", mode: "lines+markers", name: "churn rate", x, y: report.months.map((m) => m.churn_rate) },
    { type: "scatter", mode: "lines+markers", name: "retention rate", x, y: report.months.map((m) => m.retention_rate) },
  ], { yaxis: { tickformat: ".0%", range: [0, 1] } });
  plot("active", ["new", "returning"].map((key) => ({
    type: "bar", name: key, x, y: report.months.map((m) => m[key]),
  })), { barmode: "stack" });
}

function npsTrend(report) {
  const months = report.months.filter((m) => m.nps !== null && m.nps !== undefined);
  if (!months.length) return noData("nps", "No NPS answers in this range yet.");
  plot("nps", [{
    type: "scatter", mode: "lines+markers", name: "NPS", x: months.map((m) => m.month),
    y: months.map((m) => m.nps),
    error_y: {
      type: "data", symmetric: false,
      array: months.map((m) => m.nps_high - m.nps), arrayminus: months.map((m) => m.nps - m.nps_low),
    },
  }], { yaxis: { range: [-100, 100] } });
}

function points(report) {
  const x = report.months.map((m) => m.month);
  const traces = ["issued", "redeemed", "expired"].map((key) => ({
    type: "bar", name: key, x, y: report.months.map((m) => m[key]),
  }));
  const liability = report.liability;
  const title = `liability ${liability.points.toLocaleString()} points ≈ ${liability.value} ${liability.currency}`;
  plot("points", traces, { barmode: "group", title: { text: title, font: { size: 13 } }, margin: { t: 30, r: 10, b: 40, l: 50 } });
}

function funnel(report) {
  const journeys = {};
  for (const row of report.journeys) {
    const j = (journeys[row.journey] ||= { planned: 0, sent: 0, conversions: 0 });
    j.planned += row.sent + row.suppressed + row.failed;
    j.sent += row.sent;
    j.conversions += row.conversions;
  }
  const names = Object.keys(journeys);
  if (!names.length) return noData("funnel", "No journey messages in this range yet.");
  plot("funnel", names.map((name) => ({
    type: "funnel", name, y: ["planned", "sent", "converted"],
    x: [journeys[name].planned, journeys[name].sent, journeys[name].conversions],
  })), { funnelmode: "stack", margin: { t: 10, r: 10, b: 40, l: 80 }, xaxis: {} });
}

function clv(report) {
  const buckets = report.clv.buckets;
  if (!buckets.length) return noData("clv", "No customer has a CLV yet: refit the model.");
  plot("clv", [{
    type: "bar", name: "customers", x: buckets.map((b) => `${b.lower}–${b.upper}`),
    y: buckets.map((b) => b.customers),
  }], { xaxis: { type: "category", title: { text: `CLV over ${report.clv.horizon_days} days (${report.clv.currency || ""})` } } });
}

function atRiskTable(report) {
  const rows = report.at_risk_customers.map((c) => el("tr", {},
    el("td", {}, el("a", { href: "/dashboard/customers/" + encodeURIComponent(c.customer_id), class: "customer" }, c.customer_id)),
    el("td", {}, percent(c.risk)),
    el("td", {}, c.clv === null ? "–" : `${c.clv} ${c.currency || ""}`),
    el("td", {}, c.last_purchase_at ? c.last_purchase_at.slice(0, 10) : "–"),
    el("td", {}, c.reasons.join("; ")),
  ));
  const head = el("tr", {}, ...["customer", "risk", "CLV", "last purchase", "why"].map((h) => el("th", {}, h)));
  const container = document.getElementById("at-risk");
  if (!rows.length) return container.replaceChildren(el("p", {}, "No customer is at high risk."));
  container.replaceChildren(el("table", {}, el("thead", {}, head), el("tbody", {}, ...rows)));
}

function figures(data) {
  const items = [];
  const add = (label, value) => items.push(el("div", { class: "figure" }, el("b", {}, String(value)), label));
  if (data.retention.ok) {
    const months = data.retention.data.months;
    const last = months[months.length - 1];
    add("active this month", last.active);
    add("repeat-purchase rate", percent(data.retention.data.repeat_purchase_rate));
  }
  if (data.engagement.ok) {
    const r = data.engagement.data.at_risk;
    add("at high risk now", r.high_now);
    add("won back", `${r.won_back} / ${r.entered_high}`);
  }
  if (data.value.ok && data.value.data.clv.median) add("median CLV", `${data.value.data.clv.median} ${data.value.data.clv.currency || ""}`);
  if (data.feedback.ok && data.feedback.data.overall.nps !== null) add("NPS", Math.round(data.feedback.data.overall.nps));
  if (data.loyalty.ok) add("points liability", `${data.loyalty.data.liability.value} ${data.loyalty.data.liability.currency}`);
  document.getElementById("figures").replaceChildren(...items);
}

const RENDER = {
  cohorts: cohortHeatmap, churn: churnLines, nps: npsTrend, points, funnel, clv, "at-risk": atRiskTable,
};

async function load() {
  const form = new FormData(document.getElementById("range"));
  const query = new URLSearchParams();
  for (const key of ["from", "to"]) if (form.get(key)) query.set(key, form.get(key));
  const data = await api("/v1/dashboard/overview?" + query);
  figures(data);
  for (const [id, render] of Object.entries(RENDER)) {
    if (id === "active") continue;
    const source = document.getElementById(id).dataset.source;
    const panel = data[source];
    if (panel.ok) render(panel.data);
    else showUnavailable(document.getElementById(id), `The ${source} report is`, panel);
  }
  if (!data.retention.ok) showUnavailable(document.getElementById("active"), "The retention report is", data.retention);
  document.body.dataset.loaded = "true";
}

document.getElementById("range").addEventListener("submit", (event) => {
  event.preventDefault();
  load();
});
start(load);
