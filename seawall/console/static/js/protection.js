// Protection: every protected VM, its state, RPO target vs the age of its newest verified point, the
// last cycle, its store, and a 24-hour strip of point ages. Rows refresh every few seconds; the strips
// (every point of the day, one request for the whole fleet) every minute. The table is built off the
// document and put in at once, and filters only redraw what was fetched: nothing is asked per row.
import { api, enc } from "./api.js";
import { clear, fmtBytes, fmtDuration, fmtTime, h, live, pill } from "./dom.js";

const ROWS_EVERY_S = 5;
const STRIPS_EVERY_S = 60;
const STATES = ["protected", "replicating", "throttled", "seeding", "breach", "stalled", "paused", "not-protected"];

function select(id, label, values, all) {
  const el = h("select", { id, name: id }, h("option", { value: "" }, all), values.map((v) => h("option", { value: v }, v)));
  return [h("label", { for: id }, label), el];
}

function ageCell(row) {
  if (row.age_s === null) return h("td", { class: "age" }, h("span", { class: "muted" }, "no point"));
  const ratio = Math.min(1, row.age_s / row.threshold_s);
  const tone = row.breach ? "bad" : ratio > 0.75 ? "warn" : "ok";
  return h("td", { class: "age" },
    h("div", { class: "age-text" }, h("strong", {}, fmtDuration(row.age_s)), h("span", { class: "muted" }, ` / ${fmtDuration(row.threshold_s)}`)),
    h("div", { class: "meter", role: "img", "aria-label": `point age ${Math.round(ratio * 100)}% of the allowed age` },
      h("div", { class: `meter-fill meter-${tone}`, style: `width:${Math.max(3, ratio * 100).toFixed(0)}%` })));
}

function stripCell(cell, threshold) {
  let tone = "none";
  let label = "no verified point";
  if (cell.worst_age_s !== null) {
    tone = cell.worst_age_s > threshold ? "bad" : cell.worst_age_s > threshold * 0.75 ? "warn" : "ok";
    label = `worst point age ${fmtDuration(cell.worst_age_s)}`;
  }
  return h("span", { class: `strip-cell strip-${tone}`, title: `${fmtTime(cell.start)}: ${label}` });
}

export function renderProtection(root, ctx) {
  const tiles = h("div", { class: "tiles" });
  const filters = h("div", { class: "filters", role: "search" },
    select("f-site", "Site", [], "All sites"), select("f-plan", "Plan", [], "All plans"),
    select("f-state", "State", STATES, "All states"));
  const tbody = h("tbody");
  const updated = h("span", { class: "muted small" });
  root.append(
    h("div", { class: "page-head" }, h("h1", {}, "Protection"), updated),
    tiles, filters,
    h("p", { class: "legend muted small" }, "Last 24 hours: one cell per half hour, the oldest the newest verified point got in it — ",
      h("span", { class: "strip-cell strip-ok" }), " within the RPO ", h("span", { class: "strip-cell strip-warn" }), " near it ",
      h("span", { class: "strip-cell strip-bad" }), " breached ", h("span", { class: "strip-cell strip-none" }), " no point"),
    h("div", { class: "card table-card" }, h("table", { class: "grid", id: "protection" },
      h("caption", { class: "sr-only" }, "Protected VMs"),
      h("thead", {}, h("tr", {}, ["VM", "State", "RPO target", "Newest point age", "Last cycle", "Store", "Site", "Plans", "Last 24 hours"]
        .map((t) => h("th", { scope: "col" }, t)))),
      tbody)));

  let rows = [];
  const strips = new Map();
  const pick = (id) => root.querySelector(`#${id}`).value;

  function fillSelect(id, values) {
    const el = root.querySelector(`#${id}`);
    const have = new Set([...el.options].map((o) => o.value));
    for (const v of values) if (!have.has(v)) el.appendChild(h("option", { value: v }, v));
  }

  // A strip's 48 cells are built once per strip load and moved into each redraw of its row.
  const stripNodes = new Map();
  function stripNode(r) {
    const strip = strips.get(r.vm);
    if (!strip) return h("span", { class: "muted small" }, "loading…");
    let node = stripNodes.get(r.vm);
    if (!node) {
      node = h("div", { class: "strip", role: "img", "aria-label": `point ages over the last 24 hours for ${r.vm}` },
        strip.cells.map((c) => stripCell(c, strip.threshold_s)));
      stripNodes.set(r.vm, node);
    }
    return node;
  }

  function row(r) {
    return h("tr", { class: r.breach ? "row-breach" : "", dataset: { vm: r.vm, state: r.state } },
      h("th", { scope: "row" }, h("span", { class: "vm-name" }, r.vm), h("div", { class: "muted small" }, r.policy)),
      h("td", {}, pill(r.state), r.progress !== null ? h("div", { class: "muted small" }, `${Math.round(r.progress * 100)}% shipped`) : null),
      h("td", {}, fmtDuration(r.rpo_s)),
      ageCell(r),
      h("td", {}, r.last_bytes_shipped !== null ? fmtBytes(r.last_bytes_shipped) : "—",
        h("div", { class: "muted small" }, r.last_cycle_s !== null ? `in ${fmtDuration(r.last_cycle_s)}` : "", r.last_change_path ? ` · ${r.last_change_path}` : "")),
      h("td", {}, r.store),
      h("td", {}, r.source_site),
      h("td", {}, r.plans.length ? r.plans.join(", ") : h("span", { class: "muted" }, "none")),
      h("td", { class: "strip-cellwrap" }, stripNode(r)));
  }

  function draw() {
    const [site, plan, state] = [pick("f-site"), pick("f-plan"), pick("f-state")];
    const shown = rows.filter((r) => (!site || r.source_site === site) && (!plan || r.plans.includes(plan)) && (!state || r.state === state));
    const body = document.createDocumentFragment();
    for (const r of shown) body.appendChild(row(r));
    tbody.replaceChildren(body);
    if (!shown.length) tbody.appendChild(h("tr", {}, h("td", { colspan: 9, class: "empty" }, rows.length ? "No VM matches the filters." : "No protected VMs in your scope.")));
    const count = (s) => rows.filter((r) => r.state === s).length;
    clear(tiles).append(
      tile("Protected VMs", rows.length - count("not-protected"), `of ${rows.length} in the inventory`, "ok"),
      tile("RPO breaches", count("breach") + count("stalled"), `${count("stalled")} stalled: no worker makes progress`, count("breach") + count("stalled") ? "bad" : "ok"),
      tile("Replicating now", count("replicating") + count("throttled") + count("seeding"), `${count("seeding")} seeding`, "info"),
      tile("Not protected", count("not-protected") + count("paused"), `${count("paused")} paused`, count("not-protected") ? "warn" : "muted"));
  }

  filters.addEventListener("change", draw);

  let stripsAt = 0;
  let loadingStrips = false;
  async function loadStrips() {
    loadingStrips = true;
    try {
      const found = await api.get("/v1/console/strips");
      strips.clear();
      stripNodes.clear();
      for (const s of found) strips.set(s.vm, s);
      stripsAt = Date.now();
      draw();
    } catch {
      stripsAt = Date.now() - (STRIPS_EVERY_S - ROWS_EVERY_S) * 1000; // try again at the next refresh
    } finally {
      loadingStrips = false;
    }
  }

  return live(async () => {
    const { data, asOf } = await api.getDated("/v1/console/protection");
    rows = data;
    fillSelect("f-site", [...new Set(rows.map((r) => r.source_site))].sort());
    fillSelect("f-plan", [...new Set(rows.flatMap((r) => r.plans))].sort());
    const old = Math.max(0, Math.round((Date.now() - asOf.getTime()) / 1000));
    updated.textContent = `data as of ${asOf.toLocaleTimeString()}${old >= 2 ? ` (${old}s old)` : ""}`;
    updated.title = "the server reads the fleet's status at most every few seconds and the strips every minute";
    draw();
    if (!loadingStrips && Date.now() - stripsAt > STRIPS_EVERY_S * 1000) loadStrips();
  }, ROWS_EVERY_S, ctx);
}

function tile(label, value, note, tone) {
  return h("div", { class: `tile tile-${tone}` }, h("div", { class: "tile-label" }, label), h("div", { class: "tile-value" }, String(value)), h("div", { class: "tile-note" }, note));
}
