// Reusable pieces of every view: tables, pagers, forms, messages. All text goes through dom.h (text nodes).

import { ApiError } from "./api.js";
import { fill, h, put, uniqueId } from "./dom.js";

export function formatValue(value) {
  if (value === null || value === undefined || value === "") return "—";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

export function loading(what) {
  return h("p", { class: "loading", role: "status" }, `Loading ${what}…`);
}

export function empty(text) {
  return h("p", { class: "empty" }, text);
}

// An API failure shown with its code and request id, so that support can find the log line.
export function errorBox(error) {
  if (error instanceof ApiError) {
    return h("div", { class: "error", role: "alert" },
      h("strong", { class: "error-code" }, error.code), " ", h("span", { class: "error-message" }, error.message),
      error.requestId ? h("div", { class: "error-request" }, "request_id: ", h("code", {}, error.requestId)) : null,
      error.details ? h("pre", { class: "error-details" }, JSON.stringify(error.details, null, 2)) : null);
  }
  return h("div", { class: "error", role: "alert" }, h("strong", {}, "CLIENT_ERROR"), " ", String(error));
}

export function notice(text) {
  return h("div", { class: "notice", role: "status" }, text);
}

// A region whose content is replaced by the outcome of an async action: the result, or the error.
export function outcomeArea() {
  const area = h("div", { class: "outcome", "aria-live": "polite" });
  return {
    node: area,
    show(...nodes) { fill(area, ...nodes); },
    async run(action) {
      fill(area, loading("the answer"));
      try {
        const result = await action();
        if (result instanceof Node) fill(area, result);
        else fill(area);
        return result;
      } catch (error) {
        fill(area, errorBox(error));
        return undefined;
      }
    },
  };
}

export function table(caption, columns, rows, { rowKey } = {}) {
  if (rows.length === 0) return empty(`No ${caption.toLowerCase()}.`);
  return h("div", { class: "table-wrap" },
    h("table", {},
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c.label)))),
      h("tbody", {}, rows.map((row) => h("tr", { dataset: rowKey ? { key: row[rowKey] } : {} },
        columns.map((c) => h("td", { "data-label": c.label }, c.render ? c.render(row) : formatValue(row[c.key]))))))));
}

// Key/value list of one record.
export function facts(entries) {
  return h("dl", { class: "facts" }, entries.flatMap(([label, value]) => [
    h("dt", {}, label), h("dd", {}, value instanceof Node ? value : formatValue(value))]));
}

export function pager(total, limit, offset, go, label = "items") {
  const pages = Math.max(1, Math.ceil(total / limit));
  const page = Math.floor(offset / limit) + 1;
  return h("nav", { class: "pager", "aria-label": `Pages of ${label}` },
    h("button", { type: "button", class: "secondary", disabled: page <= 1, onclick: () => go(offset - limit) },
      "Previous"),
    h("span", { class: "pager-state" }, `Page ${page} of ${pages} · ${total} ${label}`),
    h("button", { type: "button", class: "secondary", disabled: page >= pages, onclick: () => go(offset + limit) },
      "Next"));
}

export function link(href, text) {
  return h("a", { href }, text);
}

// Labelled form controls. ``field`` returns the wrapper; the control is reachable via form.elements[name].
export function field(label, control, hint) {
  const id = control.id || uniqueId("f");
  control.id = id;
  const hintNode = hint ? h("small", { id: `${id}-hint`, class: "hint" }, hint) : null;
  if (hintNode) control.setAttribute("aria-describedby", hintNode.id);
  return h("div", { class: "field" }, h("label", { for: id }, label), control, hintNode);
}

export function input(name, attrs = {}) {
  return h("input", { name, type: "text", autocomplete: "off", ...attrs });
}

export function select(name, options, attrs = {}) {
  return h("select", { name, ...attrs }, options.map((option) => {
    const [value, text] = Array.isArray(option) ? option : [option, option];
    return h("option", { value }, text);
  }));
}

export function textarea(name, attrs = {}) {
  const { value, ...rest } = attrs;
  return h("textarea", { name, rows: 3, ...rest }, value ?? "");
}

// Messages that outlive a re-render of the view they report on.
export function flashArea() {
  const area = h("div", { class: "flash", "aria-live": "polite" });
  return { node: area, show(text) { fill(area, notice(text)); } };
}

export function checkbox(name, label, attrs = {}) {
  const id = uniqueId("c");
  return h("div", { class: "check" }, h("input", { type: "checkbox", name, id, ...attrs }), h("label", { for: id }, label));
}

// A form whose submit runs ``action(form)`` and shows its result or error below the button.
export function actionForm(title, controls, submitLabel, action, { className } = {}) {
  const out = outcomeArea();
  const button = h("button", { type: "submit" }, submitLabel);
  const form = h("form", { class: `action-form ${className || ""}`, novalidate: false },
    title ? h("h3", {}, title) : null, controls, h("div", { class: "actions" }, button), out.node);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    button.disabled = true;
    try { await out.run(() => action(form)); } finally { button.disabled = false; }
  });
  return form;
}

// A button that asks for confirmation inline (no browser dialog) before running a destructive action.
export function confirmButton(label, confirmText, action, out) {
  const wrap = h("span", { class: "confirm" });
  const start = h("button", { type: "button", class: "danger" }, label);
  const reset = () => fill(wrap, start);
  start.addEventListener("click", () => {
    const yes = h("button", { type: "button", class: "danger", onclick: async () => {
      reset(); await out.run(action); } }, `Yes, ${label.toLowerCase()}`);
    const no = h("button", { type: "button", class: "secondary", onclick: () => { reset(); start.focus(); } }, "Cancel");
    fill(wrap, h("span", { class: "confirm-text" }, confirmText), " ", yes, " ", no);
    yes.focus();
  });
  reset();
  return wrap;
}

export function actionButton(label, action, out, className = "") {
  return h("button", { type: "button", class: className, onclick: async (event) => {
    event.currentTarget.disabled = true;
    const target = event.currentTarget;
    try { await out.run(action); } finally { target.disabled = false; }
  } }, label);
}

export function list(text) {
  return String(text || "").split(",").map((s) => s.trim()).filter(Boolean);
}

export function badge(status) {
  return h("span", { class: `badge badge-${String(status).toLowerCase()}` }, String(status));
}

export function section(title, ...children) {
  return h("section", { class: "panel", "aria-label": title }, h("h2", {}, title), children);
}
