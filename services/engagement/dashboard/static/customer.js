// The 360° view of one customer: profile's view, engagement's scores, loyalty's member.
"use strict";

function facts(container, pairs) {
  const shown = pairs.filter(([, value]) => value !== null && value !== undefined && value !== "");
  container.replaceChildren(el("dl", {}, ...shown.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v))])));
}

function money(m) {
  return m ? `${m.amount} ${m.currency}` : null;
}

function renderProfile(c) {
  document.getElementById("title").textContent = c.name ? `${c.name} (${c.customer_id})` : c.customer_id;
  const consents = Object.entries(c.preferences.consents || {}).map(([ch, s]) => `${ch}: ${s.status}`);
  facts(document.querySelector("#profile .body"), [
    ["customer", c.customer_id], ["name", c.name], ["e-mail", c.email], ["phone", c.phone],
    ["language", c.language], ["customer since", c.created_at.slice(0, 10)],
    ["orders", c.lifetime.order_count], ["total spend", money(c.lifetime.total_spend)],
    ["first purchase", c.lifetime.first_purchase_at && c.lifetime.first_purchase_at.slice(0, 10)],
    ["last purchase", c.lifetime.last_purchase_at && c.lifetime.last_purchase_at.slice(0, 10)],
    ["tier", c.tier], ["points", c.loyalty && c.loyalty.points_balance],
    ["last NPS", c.feedback.last_nps], ["open complaints", c.feedback.open_complaints],
    ["segments", c.segments.join(", ")], ["consents", consents.join(", ")],
    ["last message", c.last_outreach && `${c.last_outreach.journey} on ${c.last_outreach.at.slice(0, 10)}`],
  ]);
}

function renderScores(s) {
  facts(document.querySelector("#scores .body"), [
    ["risk", percent(s.risk)], ["band", s.band], ["why", s.reasons.join("; ")],
    ["CLV", s.clv && `${s.clv} ${s.currency || ""}`], ["P(alive)", percent(s.p_alive)],
    ["expected purchases", s.expected_purchases && s.expected_purchases.toFixed(2)],
    ["purchase days", s.purchase_days], ["usual gap (days)", s.usual_gap_days],
    ["first purchase", s.first_purchase], ["last purchase", s.last_purchase],
  ]);
}

function renderLoyalty(m) {
  const pairs = Object.entries(m).filter(([, v]) => typeof v !== "object");
  facts(document.querySelector("#loyalty .body"), pairs);
}

async function load() {
  const id = decodeURIComponent(window.location.pathname.split("/").pop());
  const data = await api("/v1/dashboard/customers/" + encodeURIComponent(id));
  const parts = { profile: renderProfile, scores: renderScores, loyalty: renderLoyalty };
  for (const [key, render] of Object.entries(parts)) {
    const body = document.querySelector(`#${key} .body`);
    if (data[key].ok) render(data[key].data);
    else showUnavailable(body, `The ${key} view is`, data[key]);
  }
  document.body.dataset.loaded = "true";
}

start(load);
