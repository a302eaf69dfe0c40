// The shell: sign-in, the session (who, role, which buttons), hash routes and live refresh.
import { api, token, whenUnauthorized } from "./api.js";
import { clear, h } from "./dom.js";
import { renderPlans } from "./plans.js";
import { renderProtection } from "./protection.js";
import { renderReport, renderReports } from "./reports.js";
import { renderRun } from "./run.js";

const $ = (id) => document.getElementById(id);

// One page is live at a time; leaving it stops its refresh.
let current = { stop: () => {} };

const ctx = {
  session: null,
  may: (action) => Boolean(ctx.session && ctx.session.actions.includes(action)),
  sees: (plan) => ctx.session && (ctx.session.plans === "*" || ctx.session.plans.includes(plan)),
  go: (hash) => {
    if (location.hash === hash) route();
    else location.hash = hash;
  },
  toast: (message, tone = "info") => {
    const el = $("toast");
    el.textContent = message;
    el.className = `toast toast-${tone}`;
    el.hidden = false;
    clearTimeout(ctx._toastTimer);
    ctx._toastTimer = setTimeout(() => { el.hidden = true; }, tone === "bad" ? 9000 : 4000);
  },
};

function showLogin(message = "") {
  current.stop();
  ctx.session = null;
  $("login").hidden = false;
  $("nav").hidden = true;
  $("who").hidden = true;
  clear($("page"));
  $("login-error").textContent = message;
  $("token").focus();
}

async function signIn(value) {
  token.set(value);
  try {
    ctx.session = await api.get("/v1/console/session");
  } catch (err) {
    token.clear();
    showLogin(err.status === 401 ? "That token is not known to this Seawall." : err.message);
    return;
  }
  $("login").hidden = true;
  $("nav").hidden = false;
  $("who").hidden = false;
  $("who-name").textContent = ctx.session.name;
  $("who-role").textContent = ctx.session.role;
  $("who-role").className = `role-badge role-${ctx.session.role}`;
  route();
}

function route() {
  if (!ctx.session) return;
  current.stop();
  const [page, ...rest] = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  const name = page || "protection";
  for (const a of document.querySelectorAll("#nav a")) {
    const on = a.dataset.page === name || (name === "run" && a.dataset.page === "plans");
    a.classList.toggle("active", on);
    if (on) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const root = clear($("page"));
  const views = {
    protection: () => renderProtection(root, ctx),
    plans: () => renderPlans(root, ctx),
    run: () => renderRun(root, ctx, rest[0]),
    reports: () => (rest.length === 2 ? renderReport(root, ctx, rest[0], rest[1]) : renderReports(root, ctx)),
  };
  const view = views[name];
  current = view ? view() || { stop: () => {} } : { stop: () => {} };
  if (!view) root.appendChild(h("p", { class: "empty" }, "No such page."));
}

window.addEventListener("hashchange", route);
whenUnauthorized(() => {
  token.clear();
  showLogin("Your token was refused; sign in again.");
});

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const value = $("token").value.trim();
    $("token").value = "";
    if (value) signIn(value);
  });
  $("sign-out").addEventListener("click", () => {
    token.clear();
    showLogin();
  });
  const saved = token.get();
  if (saved) signIn(saved);
  else showLogin();
});
