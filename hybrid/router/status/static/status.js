// The router's status page: reads status.json every few seconds and redraws. Data goes into the page as text,
// never as markup, so a replica id or an error message cannot inject anything.
"use strict";

const REFRESH_MS = 2000;
const TIER_COLORS = { edge: "var(--edge)", private: "var(--private)", public: "var(--public)", none: "var(--none)" };
let lastOk = 0;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key === "style") node.style.cssText = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function fmt(value, digits = 0, unit = "") {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return Number(value).toLocaleString(undefined, { minimumFractionDigits: digits, maximumFractionDigits: digits }) + unit;
}

function money(value) {
  return value === null || value === undefined ? "–" : "$" + fmt(value, value < 1 ? 4 : 2);
}

function ago(epochSeconds) {
  const s = Math.max(0, Date.now() / 1000 - epochSeconds);
  if (s < 60) return `${s.toFixed(0)} s ago`;
  if (s < 3600) return `${(s / 60).toFixed(0)} min ago`;
  return `${(s / 3600).toFixed(1)} h ago`;
}

function fill(tableId, rows, emptyText, columns) {
  const body = document.querySelector(`#${tableId} tbody`);
  const cells = rows.map((row) => row);
  body.replaceChildren(...(cells.length ? cells : [el("tr", { class: "empty" }, el("td", { colspan: columns }, emptyText))]));
}

function td(value, cls) { return el("td", cls ? { class: cls } : {}, value); }
function tierCell(tier) { return el("td", {}, el("span", { class: `tier ${tier}` }, tier)); }

function bar(value, max) {
  const share = max > 0 ? Math.min(1, value / max) : 0;
  return el("span", { class: share >= 1 ? "bar hot" : "bar" }, el("span", { style: `width:${(share * 100).toFixed(0)}%` }));
}

function setCard(id, good) {
  const card = document.getElementById(id);
  card.classList.toggle("ok", good === true);
  card.classList.toggle("bad", good === false);
}

function drawCards(doc) {
  const success = doc.success;
  document.getElementById("success-rate").textContent = success.rate === null ? "–" : fmt(success.rate * 100, 2, " %");
  document.getElementById("success-sub").textContent =
    `target ${fmt(success.target * 100, 1)} % · ${success.failed} failed, ${success.refused} refused, ${success.retried} retried`;
  setCard("card-success", success.met);

  const ttft = doc.ttft;
  document.getElementById("ttft-class").textContent = ttft.target_class;
  document.getElementById("ttft-p99").textContent = fmt(ttft.p99_ms, 0, " ms");
  document.getElementById("ttft-sub").textContent =
    `target ${fmt(ttft.target_p99_ms, 0)} ms · all classes p99 ${fmt(ttft.all_p99_ms, 0, " ms")}`;
  setCard("card-ttft", ttft.met);

  const cost = doc.cost;
  document.getElementById("cost-all").textContent = money(cost.cost_per_million_tokens);
  document.getElementById("cost-sub").textContent =
    `${money(cost.dollars)} over ${fmt(cost.duration_s / 60, 1)} min · ${fmt(cost.completion_tokens)} tokens`;

  const calls = Object.values(doc.mix.by_class).reduce((sum, tiers) => sum + Object.values(tiers).reduce((a, b) => a + b, 0), 0);
  document.getElementById("volume").textContent = fmt(calls);
  document.getElementById("volume-sub").textContent = `${success.answered} answered · ${success.cancelled} cancelled by callers`;
}

function drawTiers(doc) {
  const costs = doc.cost.tiers;
  fill("tiers", doc.tiers.map((t) => {
    const states = ["serving", "draining", "ejected", "leaving"].filter((s) => t[s]).map((s) => `${t[s]} ${s}`).join(", ");
    const scaleNote = t.desired_replicas > t.serving ? ` ↑ (${t.scaling_driver})` : "";
    return el("tr", { "data-tier": t.tier },
      tierCell(t.tier), td(`${t.replicas}${states ? " · " + states : ""}`), td(fmt(t.queue), "num"),
      el("td", { class: "num" }, `${t.batch} / ${t.capacity}`, bar(t.batch, t.capacity)),
      td(fmt(t.arrivals_per_s, 1), "num"), td(fmt(t.forecast_per_s, 1), "num"),
      td(`${t.desired_replicas}${scaleNote}`, "num"), td(money(t.cost_per_hour), "num"),
      td(money(costs[t.tier] ? costs[t.tier].cost_per_million_tokens : null), "num"));
  }), "no tier", 9);
}

function drawReplicas(doc) {
  fill("replicas", doc.replicas.map((r) => el("tr", { "data-replica": r.id, "data-state": r.state },
    td(r.id), tierCell(r.tier),
    el("td", {}, el("span", { class: `chip ${r.state}` }, r.state), r.ejected_for_s ? ` ${fmt(r.ejected_for_s)} s` : ""),
    td(fmt(r.queue), "num"),
    el("td", { class: "num" }, `${r.batch} / ${r.capacity}`, bar(r.batch, r.capacity)),
    td(fmt(r.outstanding), "num"),
    td(fmt(r.pace_token_ms ?? r.recent_token_ms, 1), "num"), td(fmt(r.ttft_p90_ms, 0), "num"),
    td(fmt(r.rtt_ms, 1), "num"), td(r.region), td(`${r.model} (${r.precision})`))),
  "no replica listed by discovery", 11);
}

function drawMix(doc) {
  const tiers = doc.mix.tiers;
  document.getElementById("mix-window").textContent = `· last ${doc.window.minutes} min`;
  const head = document.querySelector("#mix thead tr");
  head.replaceChildren(el("th", {}, "Class"), ...tiers.map((t) => el("th", { class: "num" }, t)), el("th", { class: "num" }, "all"));
  const rows = Object.entries(doc.mix.by_class).map(([requestClass, byTier]) => {
    const total = Object.values(byTier).reduce((a, b) => a + b, 0);
    return el("tr", { "data-class": requestClass }, td(requestClass),
      ...tiers.map((t) => td(fmt(byTier[t] || 0), "num")), td(fmt(total), "num"));
  });
  fill("mix", rows, "no request yet", tiers.length + 2);

  // One column per minute of the window, the quiet ones empty, so the chart's time axis never stretches.
  const byMinute = new Map(doc.mix.per_minute.map((m) => [m.minute_start, m.by_tier]));
  const lastMinute = Math.floor(doc.generated_at / 60) * 60;
  const slots = [];
  for (let i = doc.window.minutes - 1; i >= 0; i--) slots.push(lastMinute - i * 60);
  const totalOf = (byTier) => Object.values(byTier || {}).reduce((a, b) => a + b, 0);
  const peak = Math.max(1, ...slots.map((start) => totalOf(byMinute.get(start))));
  const chart = document.getElementById("mix-chart");
  chart.replaceChildren(...slots.map((start) => {
    const byTier = byMinute.get(start) || {};
    const column = el("div", { class: "col", title: `${new Date(start * 1000).toLocaleTimeString()}: ${totalOf(byTier)} calls` });
    for (const tier of tiers) {
      const count = byTier[tier] || 0;
      if (count) column.append(el("div", { style: `height:${(count / peak * 100).toFixed(1)}%;background:${TIER_COLORS[tier]}` }));
    }
    return column;
  }));
  document.getElementById("mix-legend").replaceChildren(...tiers.map((t) =>
    el("span", {}, el("i", { style: `background:${TIER_COLORS[t]}` }), t)));
}

function drawSpillsAndTtft(doc) {
  fill("spillovers", doc.spillovers.map((s) => el("tr", {},
    tierCell(s.from_tier), tierCell(s.to_tier), td(s.reason, "detail"), td(fmt(s.count), "num"))),
  "no spillover: every call went to its class's first tier", 4);
  fill("ttft", Object.entries(doc.ttft.by_class).map(([name, q]) => el("tr", {},
    td(name), td(fmt(q.count), "num"), td(fmt(q.p50_ms), "num"), td(fmt(q.p90_ms), "num"), td(fmt(q.p99_ms), "num"))),
  "no first token yet", 5);
}

function drawFailures(doc) {
  // Under a burst the same failure repeats: one row each, with how many times and the newest time.
  const groups = [];
  for (const f of doc.last_failures) {
    const key = [f.request_class, f.tier, f.replica, f.outcome, f.detail.replace(/\d+ ms/g, "")].join("|");
    const last = groups[groups.length - 1];
    if (last && last.key === key) last.count += 1;
    else groups.push({ key, count: 1, failure: f });
  }
  fill("failures", groups.map(({ count, failure: f }) => el("tr", {},
    td(ago(f.at)), td(f.request_class), tierCell(f.tier), td(f.replica || "–"), td(f.outcome),
    td(f.detail, "detail"), td(count > 1 ? `× ${count}` : "", "num"))),
  "no failure in memory", 7);
}

function draw(doc) {
  const router = doc.router;
  document.getElementById("meta").textContent =
    `pid ${router.pid} · up ${fmt(router.uptime_s / 60, 1)} min · discovery ` +
    (router.discovery_healthy ? "healthy" : `stale for ${fmt(router.discovery_staleness_s)} s`) +
    ` · updated ${new Date(doc.generated_at * 1000).toLocaleTimeString()}`;
  const scope = document.getElementById("scope");
  scope.hidden = router.workers <= 1;
  scope.textContent = `This page shows ${router.scope}: each worker keeps the books of the calls it sent; replica states are shared.`;
  drawCards(doc);
  drawTiers(doc);
  drawReplicas(doc);
  drawMix(doc);
  drawSpillsAndTtft(doc);
  drawFailures(doc);
}

// A router that checks API keys shows its status to an admin key only. The key comes in the address's
// fragment (/status#key=...), which the browser never sends anywhere; it is kept for this tab and the
// fragment cleared, so it stays out of the history and off the screen.
function adminKey() {
  const given = new URLSearchParams(location.hash.slice(1)).get("key");
  if (given) {
    sessionStorage.setItem("hybrid-admin-key", given);
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem("hybrid-admin-key");
}

async function refresh() {
  const stale = document.getElementById("stale");
  try {
    const key = adminKey();
    const headers = key ? { authorization: `Bearer ${key}` } : {};
    const answer = await fetch("status.json", { cache: "no-store", headers });
    if (answer.status === 401 || answer.status === 403) {
      throw new Error(`this router checks API keys: open /status#key=ADMIN_KEY (HTTP ${answer.status})`);
    }
    if (!answer.ok) throw new Error(`status.json answered HTTP ${answer.status}`);
    draw(await answer.json());
    lastOk = Date.now();
    stale.hidden = true;
  } catch (error) {
    stale.hidden = false;
    stale.textContent = `Cannot read status.json (${error.message}); ` +
      (lastOk ? `figures below are from ${((Date.now() - lastOk) / 1000).toFixed(0)} s ago.` : "retrying.");
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}

document.getElementById("interval").textContent = String(REFRESH_MS / 1000);
refresh();
