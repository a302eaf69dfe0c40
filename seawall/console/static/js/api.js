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

async function call(method, path, { body, headers = {}, text = false, dated = false } = {}) {
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
  if (dated) {
    // The server may answer from a read of the last few seconds: it says when that read was.
    const asOf = response.headers.get("X-Seawall-As-Of");
    return { data: await response.json(), asOf: asOf ? new Date(asOf) : new Date() };
  }
  return text ? response.text() : response.json();
}

export const api = {
  get: (path) => call("GET", path),
  getDated: (path) => call("GET", path, { dated: true }),
  getText: (path) => call("GET", path, { text: true }),
  post: (path, body, headers) => call("POST", path, { body, headers }),
};

export const enc = encodeURIComponent;
