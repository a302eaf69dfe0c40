// Recovery plans: readiness per plan and the buttons that act on it. Each button calls the same /v1
// endpoint the API documents, so the server applies the same role and scope checks; a button the
// token's role may not use is not drawn at all (and the server would refuse it anyway).
import { ApiError, api, enc } from "./api.js";
import { fmtDuration, fmtTime, h, live, modal, pill, swap } from "./dom.js";

const EVERY_S = 5;

function newKey() {
  // One key per dialog: a double click or a retried request gets the same run back, not a second one.
  return crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(16).slice(2)}`;
}

export async function startDrill(ctx, plan) {
  const ttl = h("input", { id: "drill-ttl", name: "ttl_hours", type: "number", min: "0.1", max: "336", step: "0.1", placeholder: "the plan's test_ttl" });
  const values = await modal(`Start a drill of ${plan}`, h("div", {},
    h("p", {}, "A test failover: the plan's VMs are recovered on the isolated drill network from their newest verified points, then cleaned up. Replication goes on."),
    h("label", { for: "drill-ttl" }, "Time to live (hours, optional)"), ttl), "Start drill");
  if (!values) return;
  const body = { mode: "test" };
  if (values.ttl_hours) body.ttl_hours = Number(values.ttl_hours);
  await act(ctx, () => api.post(`/v1/plans/${enc(plan)}/failovers`, body, { "Idempotency-Key": newKey() }), `Drill of ${plan} started`, `#/run/${enc(plan)}`);
}

export async function startFailover(ctx, plan) {
  // A real failover powers the sources off: the admin types the plan and the mode to say they mean it.
  const mode = h("select", { id: "failover-mode", name: "mode" },
    h("option", { value: "planned" }, "planned — stop the sources, final sync, no data loss"),
    h("option", { value: "unplanned" }, "unplanned — the source site is gone: newest verified point"));
  const typed = h("input", { id: "failover-confirm", name: "confirm", type: "text", autocomplete: "off", spellcheck: "false" });
  const expected = h("code", { id: "failover-expected" });
  const sync = () => { expected.textContent = `${plan} ${mode.value}`; };
  mode.addEventListener("change", sync);
  sync();
  const values = await modal(`Real failover of ${plan}`, h("div", {},
    h("p", { class: "warning" }, "This is not a drill. The source VMs are fenced (powered off) and the application moves to the target site; DNS is changed."),
    h("label", { for: "failover-mode" }, "Mode"), mode,
    h("label", { for: "failover-confirm" }, "Type ", expected, " to confirm"), typed),
  "Fail over", { danger: true, canSubmit: (form) => form.elements.confirm.value.trim() === `${plan} ${form.elements.mode.value}` });
  if (!values || values.confirm.trim() !== `${plan} ${values.mode}`) return;
  await act(ctx, () => api.post(`/v1/plans/${enc(plan)}/failovers`, { mode: values.mode }, { "Idempotency-Key": newKey() }), `${values.mode} failover of ${plan} started`, `#/run/${enc(plan)}`);
}

export async function simpleAction(ctx, plan, action, { confirmText, body } = {}) {
  if (confirmText) {
    const ok = await modal(`${action[0].toUpperCase()}${action.slice(1)} ${plan}`, h("p", {}, confirmText), action[0].toUpperCase() + action.slice(1));
    if (!ok) return;
  }
  await act(ctx, () => api.post(`/v1/plans/${enc(plan)}/${action}`, body), `${action} of ${plan} requested`);
}

export async function act(ctx, call, done, then) {
  try {
    await call();
    ctx.toast(done, "ok");
    if (then) ctx.go(then);
  } catch (err) {
    ctx.toast(err instanceof ApiError ? `${err.title}: ${err.message}` : String(err), "bad");
  }
}

// Coarse on purpose: the cards are rebuilt only when something changes, at most once a minute for age.
function ago(seconds) {
  return seconds < 60 ? "under a minute ago" : `${fmtDuration(seconds)} ago`;
}

function fact(label, value, tone) {
  return h("div", { class: "fact" }, h("dt", {}, label), h("dd", { class: tone ? `tone-${tone}` : "" }, value));
}

function card(ctx, summary, ready, run) {
  const plan = summary.name;
  const running = run && run.status === "RUNNING";
  const progress = running ? run.progress : null;
  const buttons = [];
  if (!running && ctx.may("drill") && summary.valid) buttons.push(h("button", { class: "btn btn-primary", type: "button", onclick: () => startDrill(ctx, plan) }, "Start drill"));
  if (!running && ctx.may("failover") && summary.valid) buttons.push(h("button", { class: "btn btn-danger", type: "button", onclick: () => startFailover(ctx, plan) }, "Failover…"));
  if (running && run.mode === "test" && ctx.may("cleanup")) buttons.push(h("button", { class: "btn", type: "button", onclick: () => simpleAction(ctx, plan, "cleanup", { confirmText: "End the drill now: remove everything it made at the target." }) }, "Clean up drill"));
  if (!running && run && run.mode !== "test" && run.status === "COMPLETED") {
    if (ctx.may("commit")) buttons.push(h("button", { class: "btn", type: "button", onclick: () => simpleAction(ctx, plan, "commit", { body: { run: run.run }, confirmText: "Make the failover final: the old schedules go and older points are pruned." }) }, "Commit"));
    if (ctx.may("reprotect")) buttons.push(h("button", { class: "btn", type: "button", onclick: () => simpleAction(ctx, plan, "reprotect", { confirmText: "Replicate the failed-over copies back to the source site." }) }, "Reprotect"));
  }
  if (run) buttons.push(h("a", { class: "btn btn-ghost", href: `#/run/${enc(plan)}` }, running ? "Follow run" : "Last run"));

  const drill = ready && ready.last_drill;
  const passed = ready && ready.last_passed_drill;
  const sched = ready && ready.schedule;
  const facts = h("dl", { class: "facts" },
    fact("Plan check", summary.valid ? "passes" : `fails: ${summary.problems.join("; ")}`, summary.valid ? "ok" : "bad"),
    ready ? fact("Verified points", ready.vms_without_point.length ? `missing for ${ready.vms_without_point.join(", ")}` : `all ${ready.vms.length} VMs`, ready.vms_without_point.length ? "bad" : "ok") : null,
    ready && ready.vms_in_breach.length ? fact("RPO", `breached for ${ready.vms_in_breach.join(", ")}`, "bad") : null,
    fact("Last drill", drill ? `${drill.passed ? "passed" : drill.status === "completed" ? "missed its targets" : drill.status}, ${ago(drill.age_s)}` : "never", drill ? (drill.passed ? "ok" : "bad") : "warn"),
    fact("Drill schedule", sched ? `${sched.cron}${sched.paused ? " (paused)" : ""}${sched.next_at ? ` · next ${fmtTime(sched.next_at)}` : sched.paused === null ? " · not in Temporal yet" : ""}${sched.approve_gates ? " · approves gates" : ""}` : "none", sched ? "" : "warn"),
    fact("Time to healthy", drill && drill.time_to_healthy_s !== null ? fmtDuration(drill.time_to_healthy_s) : "—"),
    fact("RTO target", ready && ready.rto_target_s !== null ? fmtDuration(ready.rto_target_s) : "none set"),
    fact("Current run", running ? `${run.mode} · ${progress ? progress.phase : "starting"}` : run ? `${run.mode} ${run.status.toLowerCase()} ${run.closed_at ? ago((Date.now() - new Date(run.closed_at)) / 1000) : ""}` : "none"));

  const badge = ready ? pill(ready.ready ? "ready" : "not ready", ready.ready ? "ok" : "bad") : null;
  if (badge) badge.classList.add("readiness");
  // Time since the last passed drill, at a glance: amber past half the plan's max_drill_age, red past it.
  const maxAge = ready ? ready.max_drill_age_s : null;
  const drillTone = !passed ? "bad" : maxAge && passed.age_s > maxAge ? "bad" : maxAge && passed.age_s > maxAge / 2 ? "warn" : "ok";
  const drillBadge = ready ? h("span", { class: `pill pill-${drillTone} drill-age`, title: "time since the last passed drill" },
    passed ? `drill passed ${ago(passed.age_s)}` : "no passed drill") : null;
  const gate = progress && progress.pending_gate
    ? h("div", { class: "gate-note" }, "Waiting for approval: ", h("strong", {}, progress.pending_gate), " — ", h("a", { href: `#/run/${enc(plan)}` }, "open the run"))
    : null;
  return h("article", { class: "card plan-card", dataset: { plan } },
    h("header", { class: "plan-head" },
      h("div", {}, h("h2", {}, plan), h("div", { class: "muted" }, summary.description || "", " ",
        h("span", { class: "route" }, `${summary.source_site || "?"} → ${summary.target_site || "?"}`))),
      h("div", { class: "badges" }, drillBadge, badge)),
    ready && ready.reasons.length ? h("ul", { class: "reasons" }, ready.reasons.map((r) => h("li", {}, r))) : null,
    gate, facts,
    h("div", { class: "groups-line" }, summary.groups.map((g) => [
      g.gate ? h("span", { class: "group-chip gate-chip" }, `gate ${g.gate}`) : null,
      h("span", { class: "group-chip" }, `${g.name}: ${g.vms.join(", ")}`)])),
    buttons.length ? h("div", { class: "actions" }, buttons) : null);
}

export function renderPlans(root, ctx) {
  const list = h("div", { class: "plan-list" });
  root.append(h("div", { class: "page-head" }, h("h1", {}, "Recovery plans"), h("span", { class: "muted small" }, `signed in as ${ctx.session.role}`)), list);
  return live(async () => {
    const [plans, readiness] = await Promise.all([api.get("/v1/plans"), api.get("/v1/console/plans")]);
    const byName = Object.fromEntries(readiness.map((r) => [r.plan, r]));
    const runs = await Promise.all(plans.map((p) => api.get(`/v1/plans/${enc(p.name)}/failovers/current`).catch((e) => {
      if (e.status === 404) return null;
      throw e;
    })));
    const minute = (s) => (s === null || s === undefined ? s : Math.floor(s / 60));
    const key = JSON.stringify([plans, readiness.map((r) => ({ ...r, last_drill: r.last_drill && { ...r.last_drill, age_s: minute(r.last_drill.age_s) } })),
      runs.map((r) => r && [r.run_id, r.status, r.mode, r.progress && r.progress.phase, r.progress && r.progress.pending_gate, minute((Date.now() - new Date(r.closed_at || 0)) / 1000)])]);
    swap(list, key, () => (plans.length
      ? plans.map((p, i) => card(ctx, p, byName[p.name], runs[i]))
      : h("p", { class: "empty" }, "No recovery plans in your scope.")));
  }, EVERY_S, ctx);
}
