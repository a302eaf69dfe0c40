// Building the page without HTML parsing: every piece of data (VM, plan, gate, report text) becomes a
// text node, so a name from a config file can never become markup.

/** h("div", {class: "x", onclick: f}, "text", child, ...) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.max(0, Math.round(seconds));
  if (s < 90) return `${s}s`;
  const m = Math.round(s / 60);
  if (m < 90) return `${m}m`;
  const hours = Math.floor(m / 60);
  if (hours < 48) return `${hours}h ${m % 60}m`;
  return `${Math.floor(hours / 24)}d ${hours % 24}h`;
}

export function fmtAgo(iso) {
  if (!iso) return "—";
  return `${fmtDuration((Date.now() - new Date(iso).getTime()) / 1000)} ago`;
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${v < 10 && i ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

export function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
}

const STATE_TONE = {
  protected: "ok",
  completed: "ok",
  healthy: "ok",
  ready: "ok",
  COMPLETED: "ok",
  replicating: "info",
  seeding: "info",
  recovering: "info",
  RUNNING: "info",
  waiting: "muted",
  paused: "warn",
  "not-protected": "muted",
  skipped: "warn",
  breach: "bad",
  stalled: "bad",
  failed: "bad",
  aborted: "warn",
  FAILED: "bad",
  TERMINATED: "bad",
  CANCELED: "warn",
  TIMED_OUT: "bad",
};

/** A coloured pill; the word itself carries the meaning (colour is never the only signal). */
export function pill(word, tone) {
  const t = tone || STATE_TONE[word] || (String(word).startsWith("boot delay") ? "muted" : "info");
  return h("span", { class: `pill pill-${t}` }, String(word).replace("-", " "));
}

/** A native <dialog>; resolves with the form's values on submit, null on cancel. */
export function modal(title, body, submitLabel, { danger = false, canSubmit = () => true } = {}) {
  return new Promise((resolve) => {
    const submit = h("button", { type: "submit", class: `btn ${danger ? "btn-danger" : "btn-primary"}` }, submitLabel);
    const cancel = h("button", { type: "button", class: "btn btn-ghost" }, "Cancel");
    const form = h("form", { method: "dialog", class: "dialog-form" }, h("h2", {}, title), body,
      h("div", { class: "dialog-actions" }, cancel, submit));
    const dialog = h("dialog", { class: "dialog", "aria-label": title }, form);
    const refresh = () => { submit.disabled = !canSubmit(form); };
    form.addEventListener("input", refresh);
    refresh();
    const done = (value) => {
      dialog.close();
      dialog.remove();
      resolve(value);
    };
    cancel.addEventListener("click", () => done(null));
    dialog.addEventListener("cancel", (e) => { e.preventDefault(); done(null); });
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      if (!canSubmit(form)) return;
      done(Object.fromEntries(new FormData(form).entries()));
    });
    document.body.appendChild(dialog);
    dialog.showModal();
  });
}

/** Run ``refresh`` now and every ``seconds`` while the page is shown (and the tab visible). */
export function live(refresh, seconds, ctx) {
  let stopped = false;
  let timer = null;
  const tick = async () => {
    if (stopped) return;
    if (document.visibilityState !== "hidden") {
      try {
        await refresh();
      } catch (err) {
        if (err.status !== 401 && !stopped) ctx.toast(`Refresh failed: ${err.message}`, "bad");
      }
    }
    if (!stopped) timer = setTimeout(tick, seconds * 1000);
  };
  tick();
  return { stop: () => { stopped = true; clearTimeout(timer); } };
}

/** Rebuild ``box`` only when ``key`` changed: a live page keeps focus, selection and half-typed input
 * in the parts whose data did not change. */
export function swap(box, key, build) {
  if (box.dataset.key === key) return;
  box.dataset.key = key;
  clear(box);
  const built = build();
  if (built) box.append(...[].concat(built).filter(Boolean));
}
