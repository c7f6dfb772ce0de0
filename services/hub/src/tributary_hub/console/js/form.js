// A publish form built from a topic's JSON Schema: one input per property of an object schema (nested objects as
// fieldsets), anything else as a JSON textarea. Each 422 detail is shown at the field its pointer names.

/** @typedef {{type?: string | string[], properties?: Record<string, Schema>, required?: string[], enum?: unknown[], description?: string, title?: string}} Schema */

let counter = 0;

/**
 * @param {HTMLElement} container
 * @param {Schema} schema
 * @param {string} pointer  JSON pointer of this value in the request body (`/data/...`)
 */
export function build(container, schema, pointer = "/data") {
  const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== "null") : schema.type;
  if (type === "object" && schema.properties) {
    for (const [name, sub] of Object.entries(schema.properties)) {
      const path = `${pointer}/${name.replaceAll("~", "~0").replaceAll("/", "~1")}`;
      const subType = Array.isArray(sub.type) ? sub.type.find((t) => t !== "null") : sub.type;
      if (subType === "object" && sub.properties) {
        const fs = document.createElement("fieldset");
        const legend = document.createElement("legend");
        legend.textContent = name;
        fs.append(legend);
        fs.dataset.pointer = path;
        build(fs, sub, path);
        appendError(fs, path);
        container.append(fs);
      } else {
        field(container, name, sub, path, (schema.required ?? []).includes(name));
      }
    }
    return;
  }
  field(container, "value (JSON)", { ...schema, type: "json" }, pointer, true);
}

/**
 * @param {HTMLElement} container
 * @param {string} name
 * @param {Schema} schema
 * @param {string} pointer
 * @param {boolean} required
 */
function field(container, name, schema, pointer, required) {
  const id = `f${++counter}`;
  const label = document.createElement("label");
  label.htmlFor = id;
  label.textContent = required ? `${name} *` : name;
  const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== "null") : schema.type;
  /** @type {HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement} */
  let input;
  if (schema.enum) {
    input = document.createElement("select");
    input.append(new Option("", ""));
    for (const v of schema.enum) input.append(new Option(String(v), JSON.stringify(v)));
    input.dataset.kind = "enum";
  } else if (type === "boolean") {
    input = document.createElement("select");
    input.append(new Option("", ""), new Option("true", "true"), new Option("false", "false"));
    input.dataset.kind = "json";
  } else if (type === "number" || type === "integer") {
    input = document.createElement("input");
    input.inputMode = type === "integer" ? "numeric" : "decimal";
    input.dataset.kind = "number";
  } else if (type === "string") {
    input = document.createElement("input");
    input.dataset.kind = "string";
  } else {
    input = document.createElement("textarea");
    input.rows = 3;
    input.dataset.kind = "json";
  }
  input.id = id;
  input.dataset.pointer = pointer;
  input.dataset.name = name;
  if (schema.description) input.title = schema.description;
  container.append(label, input);
  appendError(container, pointer, id);
}

/**
 * @param {HTMLElement} container
 * @param {string} pointer
 * @param {string} [inputId]
 */
function appendError(container, pointer, inputId) {
  const err = document.createElement("span");
  err.className = "field-error";
  err.dataset.errorFor = pointer;
  if (inputId) {
    err.id = `${inputId}-error`;
    container.querySelector(`#${inputId}`)?.setAttribute("aria-describedby", err.id);
  }
  container.append(err);
}

/**
 * The `data` value from the form. A number field with text that is not a number is sent as that text: the
 * hub's 422 then names the field, as for any other violation.
 * @param {HTMLElement} container
 * @returns {unknown}
 */
export function read(container) {
  const inputs = /** @type {NodeListOf<HTMLInputElement>} */ (container.querySelectorAll("[data-pointer][data-kind]"));
  if (inputs.length === 1 && inputs[0].dataset.pointer === "/data") return parse(inputs[0]);
  /** @type {Record<string, any>} */
  const data = {};
  for (const input of inputs) {
    if (input.value === "") continue;
    const parts = (input.dataset.pointer ?? "").split("/").slice(2).map((p) => p.replaceAll("~1", "/").replaceAll("~0", "~"));
    let target = data;
    for (const p of parts.slice(0, -1)) target = target[p] ??= {};
    target[parts[parts.length - 1]] = parse(input);
  }
  return data;
}

/** @param {HTMLInputElement} input */
function parse(input) {
  const v = input.value;
  if (input.dataset.kind === "string") return v;
  if (input.dataset.kind === "number") return v.trim() !== "" && Number.isFinite(Number(v)) ? Number(v) : v;
  try {
    return JSON.parse(v);
  } catch {
    return v;
  }
}

/** @param {HTMLElement} form */
export function clearErrors(form) {
  for (const el of form.querySelectorAll("[data-error-for]")) el.textContent = "";
  for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
}

/**
 * Each detail at the deepest field its pointer reaches (`/data/a/b` -> the field of `/data/a/b`, else `/data/a`,
 * ...); what no field holds goes to `fallback`.
 * @param {HTMLElement} form
 * @param {{loc: string, msg: string}[]} details
 * @param {HTMLElement} fallback
 */
export function showErrors(form, details, fallback) {
  const rest = [];
  for (const d of details) {
    // A missing required property is reported at its parent object: show it at the property's own field.
    const missing = /^'([^']+)' is a required property/.exec(d.msg);
    let loc = missing ? `${d.loc}/${missing[1].replaceAll("~", "~0").replaceAll("/", "~1")}` : d.loc;
    let shown = false;
    while (loc.startsWith("/data")) {
      const slot = form.querySelector(`[data-error-for="${CSS.escape(loc)}"]`);
      if (slot) {
        slot.textContent = slot.textContent ? `${slot.textContent}; ${d.msg}` : d.msg;
        form.querySelector(`[data-pointer="${CSS.escape(loc)}"][data-kind]`)?.setAttribute("aria-invalid", "true");
        shown = true;
        break;
      }
      loc = loc.slice(0, loc.lastIndexOf("/"));
    }
    if (!shown) rest.push(`${d.loc}: ${d.msg}`);
  }
  fallback.textContent = rest.join("; ");
  /** @type {HTMLElement | null} */ (form.querySelector('[aria-invalid="true"]'))?.focus();
}
