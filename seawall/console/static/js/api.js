// The API client: the token lives in sessionStorage (this tab only) and travels as a bearer header,
// never in a URL, so it is in no history entry, referrer or access log.

const KEY = "seawall.token";

export class ApiError extends Error {
  constructor(status, title, detail) {
    super(detail || title || `HTTP ${status}`);
    this.status = status;
    this.title = title;
  }
}

export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: (value) => sessionStorage.setItem(KEY, value),
  clear: () => sessionStorage.removeItem(KEY),
};

let onUnauthorized = () => {};
export function whenUnauthorized(handler) {
  onUnauthorized = handler;
}

async function call(method, path, { body, headers = {}, text = false } = {}) {
  const t = token.get();
  const init = { method, headers: { Accept: text ? "text/html" : "application/json", ...headers }, cache: "no-store" };
  if (t) init.headers.Authorization = `Bearer ${t}`;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (!response.ok) {
    let title = response.statusText;
    let detail = "";
    try {
      const problem = await response.json();
      title = problem.title || title;
      detail = problem.detail || "";
    } catch {
      // not a problem document: keep the status text
    }
    if (response.status === 401) onUnauthorized(detail);
    throw new ApiError(response.status, title, detail);
  }
  return text ? response.text() : response.json();
}

export const api = {
  get: (path) => call("GET", path),
  getText: (path) => call("GET", path, { text: true }),
  post: (path, body, headers) => call("POST", path, { body, headers }),
};

export const enc = encodeURIComponent;
