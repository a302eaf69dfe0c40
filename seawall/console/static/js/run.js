// A run, live: its groups in order with each VM's step, the gate that waits (Approve for a role that
// may approve), Abort, Clean up for a drill, and the run's Temporal UI link.
import { api, enc } from "./api.js";
import { act, simpleAction } from "./plans.js";
import { fmtTime, h, live, modal, pill, swap } from "./dom.js";

const EVERY_S = 2;

function vmTone(state) {
  if (state === "healthy") return "ok";
  if (state === "failed") return "bad";
  if (state === "skipped") return "warn";
  if (!state || state === "waiting" || state.startsWith("boot delay")) return "muted";
  return "info";
}

const RANK = { viewer: 1, operator: 2, admin: 3 };

// The least role that may approve the gate: what the run says (pending_gate_role), else the plan's own
// say (gate_approvers); otherwise an admin. The server and the run check again.
function mayApprove(ctx, shape, gate, progress) {
  const group = shape.groups.find((g) => g.gate === gate);
  const need = progress.pending_gate_role || (group && group.gate_approvers) || "admin";
  return ctx.may("approve") && RANK[ctx.session.role] >= RANK[need];
}

function gatePanel(ctx, plan, progress, shape) {
  const gate = progress.pending_gate;
  // The phase names the gate and its message: "waiting for approval: <gate> (<message>)".
  const prefix = `waiting for approval: ${gate} (`;
  const message = progress.phase.startsWith(prefix) ? progress.phase.slice(prefix.length, -1) : "";
  const comment = h("input", { id: "approve-comment", type: "text", maxlength: "2000", placeholder: "what you checked" });
  const controls = mayApprove(ctx, shape, gate, progress)
    ? h("div", { class: "gate-actions" },
      h("label", { for: "approve-comment" }, "Comment"), comment,
      h("button", { class: "btn btn-primary", type: "button", id: "approve",
        onclick: () => act(ctx, () => api.post(`/v1/plans/${enc(plan)}/approve`, { gate, comment: comment.value }), `Gate ${gate} approved`) }, `Approve ${gate}`))
    : h("p", { class: "muted" }, ctx.may("approve") ? `Your role may not approve gate ${gate}.` : "Your role may not approve gates.");
  return h("section", { class: "card gate", "aria-label": "Waiting gate" },
    h("h2", {}, "Waiting for approval: ", h("span", { class: "gate-name" }, gate)),
    message ? h("p", {}, message) : null, controls);
}

async function abort(ctx, plan) {
  const reason = h("input", { id: "abort-reason", name: "reason", type: "text", required: true, maxlength: "2000" });
  const values = await modal(`Abort the run of ${plan}`, h("div", {},
    h("p", {}, "The run stops; a drill is cleaned up."), h("label", { for: "abort-reason" }, "Reason"), reason),
  "Abort run", { danger: true, canSubmit: (form) => form.elements.reason.value.trim().length > 0 });
  if (values) await act(ctx, () => api.post(`/v1/plans/${enc(plan)}/abort`, { reason: values.reason.trim() }), `Abort of ${plan} requested`);
}

export function renderRun(root, ctx, plan) {
  const head = h("div", { class: "page-head" }, h("h1", {}, "Run of ", h("span", {}, plan || "?")));
  // Stable boxes, each rebuilt only when its own data changes: the gate's comment box keeps what is
  // being typed (and its focus) while the VMs below it move on.
  const summaryBox = h("div");
  const gateBox = h("div");
  const groupsBox = h("div");
  const approvalsBox = h("div");
  const body = h("div", { class: "run" }, summaryBox, gateBox, groupsBox, approvalsBox);
  root.append(head, body);
  let shape = null;
  return live(async () => {
    if (!shape) {
      const plans = await api.get("/v1/plans");
      shape = plans.find((p) => p.name === plan) || { groups: [] };
    }
    let run;
    try {
      run = await api.get(`/v1/plans/${enc(plan)}/failovers/current`);
    } catch (err) {
      if (err.status !== 404) throw err;
      swap(summaryBox, "none", () => h("p", { class: "empty" }, `No run of ${plan} has been started.`));
      return;
    }
    const progress = run.progress;
    const running = run.status === "RUNNING";
    const phase = progress ? progress.phase : running ? "starting" : `ended ${fmtTime(run.closed_at)}`;
    swap(summaryBox, JSON.stringify([run.run_id, run.status, run.mode, run.run, phase, run.started_by, run.closed_at]), () => {
      const actions = [];
      if (running && ctx.may("abort")) actions.push(h("button", { class: "btn btn-danger", type: "button", id: "abort", onclick: () => abort(ctx, plan) }, "Abort"));
      if (running && run.mode === "test" && ctx.may("cleanup")) {
        actions.push(h("button", { class: "btn", type: "button", id: "cleanup", onclick: () => simpleAction(ctx, plan, "cleanup", { confirmText: "End the drill now: remove everything it made at the target." }) }, "Clean up drill"));
      }
      if (!running && run.run) actions.push(h("a", { class: "btn btn-primary", id: "open-report", href: `#/reports/${enc(plan)}/${enc(run.run)}` }, "Open report"));
      // The Temporal UI link is an address of that UI, not of this console: it carries no token.
      actions.push(h("a", { class: "btn btn-ghost", href: run.links.ui, target: "_blank", rel: "noopener noreferrer" }, "Temporal UI ↗"));
      return h("section", { class: "card run-summary" },
        h("div", { class: "run-status" }, pill(run.status), h("span", { class: "mode" }, run.mode || ""), h("span", { class: "muted" }, run.run || "")),
        h("p", { class: "phase", id: "phase" }, phase),
        h("dl", { class: "facts facts-3" },
          h("div", { class: "fact" }, h("dt", {}, "Started"), h("dd", {}, fmtTime(run.started_at))),
          h("div", { class: "fact" }, h("dt", {}, "Started by"), h("dd", {}, run.started_by || "—")),
          h("div", { class: "fact" }, h("dt", {}, "Ended"), h("dd", {}, fmtTime(run.closed_at)))),
        h("div", { class: "actions" }, actions));
    });

    const gate = running && progress ? progress.pending_gate : null;
    swap(gateBox, JSON.stringify([run.run_id, gate]), () => (gate ? gatePanel(ctx, plan, progress, shape) : null));

    const states = progress ? progress.vms : {};
    // The run's progress says "recovering"; each VM's own workflow knows which step it is in.
    const fine = running && Object.values(states).includes("recovering")
      ? (await api.get(`/v1/console/plans/${enc(plan)}/steps`).catch(() => ({ steps: {} }))).steps
      : {};
    const label = (vm) => (states[vm] === "recovering" && fine[vm] ? `recovering: ${fine[vm]}` : states[vm]);
    swap(groupsBox, JSON.stringify([running, gate, states, fine]), () => h("section", { class: "groups", "aria-label": "Groups in order" }, shape.groups.map((g, i) => h("div", { class: "card group" },
      h("h3", {}, h("span", { class: "group-index" }, String(i + 1)), g.name),
      g.gate ? h("div", { class: `gate-before ${gate === g.gate ? "gate-waiting" : ""}` }, `gate before: ${g.gate}`) : null,
      h("ul", { class: "vm-steps" }, g.vms.map((vm) => h("li", { dataset: { vm, state: states[vm] || "" } },
        h("span", { class: "vm-name" }, vm),
        h("span", { class: `step step-${vmTone(states[vm])}` }, label(vm) || (running ? "waiting" : "—")))))))));

    const approvals = progress ? progress.approvals : [];
    swap(approvalsBox, JSON.stringify(approvals), () => (approvals.length
      ? h("section", { class: "card approvals", id: "approvals" }, h("h3", {}, "Approvals"), h("ul", {}, approvals.map((a) => h("li", {}, `${a.gate}: ${a.approved ? "approved" : "rejected"} by ${a.by}${a.comment ? ` — ${a.comment}` : ""}`))))
      : null));
  }, EVERY_S, ctx);
}
