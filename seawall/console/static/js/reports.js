// Reports: every run's evidence. A report is fetched with the token and shown in a sandboxed frame
// (srcdoc): a frame's src cannot carry a bearer header, and the sandbox runs none of its content.
import { api, enc } from "./api.js";
import { clear, fmtDuration, fmtTime, h, pill } from "./dom.js";

export function renderReports(root, ctx) {
  const tbody = h("tbody");
  root.append(h("div", { class: "page-head" }, h("h1", {}, "Reports")),
    h("div", { class: "card table-card" }, h("table", { class: "grid", id: "reports" },
      h("caption", { class: "sr-only" }, "Run reports, newest first"),
      h("thead", {}, h("tr", {}, ["Plan", "Run", "Mode", "Result", "Started", "Took", "VMs", "Time to healthy", ""].map((t) => h("th", { scope: "col" }, t)))),
      tbody)));
  api.get("/v1/console/reports").then((reports) => {
    clear(tbody);
    for (const r of reports) {
      const took = (new Date(r.finished_at) - new Date(r.started_at)) / 1000;
      tbody.appendChild(h("tr", { dataset: { run: r.run } },
        h("th", { scope: "row" }, r.plan), h("td", { class: "mono" }, r.run), h("td", {}, r.mode),
        h("td", {}, pill(r.status)), h("td", {}, fmtTime(r.started_at)), h("td", {}, fmtDuration(took)),
        h("td", {}, r.failed_vms ? `${r.vms} up, ${r.failed_vms} failed` : String(r.vms)),
        h("td", {}, fmtDuration(r.time_to_healthy_s)),
        h("td", {}, h("a", { class: "btn btn-small", href: `#/reports/${enc(r.plan)}/${enc(r.run)}` }, "View"))));
    }
    if (!reports.length) tbody.appendChild(h("tr", {}, h("td", { colspan: 9, class: "empty" }, "No reports yet: a run writes one when it ends.")));
  }).catch((err) => { if (err.status !== 401) ctx.toast(`Reports: ${err.message}`, "bad"); });
}

export function renderReport(root, ctx, plan, run) {
  const frame = h("iframe", { class: "report-frame", title: `Report of ${plan} run ${run}`, sandbox: "", referrerpolicy: "no-referrer" });
  root.append(h("div", { class: "page-head" }, h("h1", {}, "Report ", h("span", { class: "mono" }, run)),
    h("a", { class: "btn btn-ghost", href: "#/reports" }, "All reports")), h("div", { class: "card report-card" }, frame));
  api.getText(`/v1/console/reports/${enc(plan)}/${enc(run)}`)
    .then((html) => { frame.srcdoc = html; })
    .catch((err) => { if (err.status !== 401) ctx.toast(`Report: ${err.message}`, "bad"); });
}
