// The gateway's public HTTP API, called with the signed-in bearer token. The token lives in this module's
// memory only: never in storage, cookies or the URL, so closing or reloading the page forgets it.

let token = null;
const requestIdListeners = [];

export class ApiError extends Error {
  constructor(status, body, requestId) {
    const code = (body && body.code) || `HTTP_${status}`;
    super((body && body.message) || `The gateway answered ${status}.`);
    this.status = status;
    this.code = code;
    this.requestId = (body && body.request_id) || requestId || null;
    this.details = body ? body.details : undefined;
  }
}

export const session = {
  role: null,      // "global_admin" | "tenant_admin"
  tenantId: null,  // the tenant a tenant_admin key belongs to
  signedIn() { return token !== null; },
  begin(newToken, role, tenantId) { token = newToken; this.role = role; this.tenantId = tenantId; },
  end() { token = null; this.role = null; this.tenantId = null; },
  isGlobal() { return this.role === "global_admin"; },
};

export function onRequestId(listener) { requestIdListeners.push(listener); }

function noteRequestId(response) {
  const id = response.headers.get("X-Request-Id");
  if (id) for (const listener of requestIdListeners) listener(id);
}

function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params || {})) {
    if (value !== null && value !== undefined && value !== "") search.set(name, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

export function seg(value) { return encodeURIComponent(value); }

// One call. ``raw`` returns the Response itself (for streamed exports); otherwise the parsed JSON body and the
// response headers. Any non-2xx becomes an ApiError carrying the body's code and request_id.
export async function call(method, path, { body, params, accept, raw, withToken } = {}) {
  const headers = { Accept: accept || "application/json" };
  const bearer = withToken === undefined ? token : withToken;
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  const init = { method, headers, credentials: "omit", cache: "no-store", referrerPolicy: "no-referrer" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path + query(params), init);
  noteRequestId(response);
  if (!response.ok) {
    let parsed = null;
    try { parsed = await response.json(); } catch (_) { parsed = null; }
    throw new ApiError(response.status, parsed, response.headers.get("X-Request-Id"));
  }
  if (raw) return response;
  const data = response.status === 204 ? null : await response.json();
  return { data, headers: response.headers };
}

export async function get(path, params) { return (await call("GET", path, { params })).data; }
export async function post(path, body) { return (await call("POST", path, { body: body || {} })).data; }
export async function patch(path, body) { return (await call("PATCH", path, { body })).data; }
export async function del(path) { return (await call("DELETE", path)).data; }
