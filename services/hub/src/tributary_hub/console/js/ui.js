// What every view shares: element lookup, the status line, error reporting, and small table building.

import { ApiError } from "./api.js";

/** @param {string} id */
export const $ = (id) => /** @type {any} */ (document.getElementById(id));

/** @param {string} text */
export function status(text) {
  $("status").textContent = text;
}

/** @type {(why: string) => void} */
let refused = () => {};

/** @param {(why: string) => void} fn  what to do when the hub refuses the credentials (sign out) */
export function onRefused(fn) {
  refused = fn;
}

/** @param {unknown} err */
export function failed(err) {
  status(err instanceof ApiError ? `${err.status} ${err.code}: ${err.message}` : String(err));
  if (err instanceof ApiError && err.status === 401) refused("the credentials were refused; sign in again");
}

/**
 * Replace a table body's rows; each cell is text or an element (a button).
 * @param {HTMLTableSectionElement} body
 * @param {(string | number | Node)[][]} rows
 */
export function fillRows(body, rows) {
  body.replaceChildren();
  for (const cells of rows) {
    const tr = body.insertRow();
    for (const c of cells) {
      const td = tr.insertCell();
      if (c instanceof Node) td.append(c);
      else td.textContent = String(c);
    }
  }
}

/**
 * @param {string} text
 * @param {() => void} onClick
 * @returns {HTMLButtonElement}
 */
export function button(text, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  b.addEventListener("click", onClick);
  return b;
}

/** @param {string} v  a datetime-local value, taken as UTC */
export const utc = (v) => (v ? `${v.length === 16 ? `${v}:00` : v}Z` : undefined);

/** @param {number} ms  -> the `datetime-local` value of that UTC time, to the second */
export const localValue = (ms) => new Date(ms).toISOString().slice(0, 19);
