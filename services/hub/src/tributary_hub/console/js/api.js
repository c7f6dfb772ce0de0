// The public hub API with the signed-in credentials (session storage: this tab only, never in a URL).

const KEY = "tributary.credential";

/** @typedef {{subject: string, kind: string, scopes: string[], topics: string[] | null, unitops: string[] | null, expires_at: string | null}} WhoAmI */
/** @typedef {{loc: string, msg: string}} ErrorDetail */

export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {string} code
   * @param {string} message
   * @param {ErrorDetail[]} details
   */
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

/** @returns {string | null} */
export function credential() {
  return sessionStorage.getItem(KEY);
}

/** @param {string | null} value */
export function setCredential(value) {
  if (value) sessionStorage.setItem(KEY, value);
  else sessionStorage.removeItem(KEY);
}

/**
 * @param {string} method
 * @param {string} path  absolute path on the hub, e.g. `/topics`
 * @param {{body?: unknown, accept?: string}} [opts]
 * @returns {Promise<Response>}
 */
export async function raw(method, path, opts = {}) {
  /** @type {Record<string, string>} */
  const headers = { Accept: opts.accept ?? "application/json" };
  const token = credential();
  if (token) headers.Authorization = `Bearer ${token}`;
  if (opts.body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, {
    method,
    headers,
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
    cache: "no-store",
  });
  if (!res.ok) {
    let err = { code: `http_${res.status}`, message: res.statusText, details: [] };
    try {
      err = { ...err, ...(await res.json()).error };
    } catch {
      // not an error body: keep the status line
    }
    throw new ApiError(res.status, err.code, err.message, err.details ?? []);
  }
  return res;
}

/**
 * @param {string} method
 * @param {string} path
 * @param {unknown} [body]
 * @returns {Promise<any>}
 */
export async function json(method, path, body) {
  const res = await raw(method, path, { body });
  return res.status === 204 ? null : res.json();
}

/**
 * @param {WhoAmI} who
 * @param {string} scope
 */
export function allows(who, scope) {
  return who.scopes.includes(scope) || who.scopes.includes("admin");
}

/** @returns {Promise<{stream_url: string | null, chart: boolean}>} */
export async function config() {
  const res = await fetch("config.json", { cache: "no-store" });
  return res.json();
}
