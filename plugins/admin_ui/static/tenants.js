// Gateway operators' views of tenants (API.md §6): list, counts, create, edit, suspend, resume, delete; and keys.

import { call, get, patch, post, del, seg, session } from "./api.js";
import { fill, h, put } from "./dom.js";
import {
  actionButton, actionForm, badge, flashArea, checkbox, confirmButton, errorBox, facts, field, formatValue, input,
  link, loading, notice, outcomeArea, pager, section, select, table, textarea,
} from "./widgets.js";

const PAGE = 20;
const STATUSES = ["active", "suspended", "deleted"];

async function countByStatus(status) {
  const { headers } = await call("GET", "/admin/tenants", { params: { status, limit: 1 } });
  return Number(headers.get("X-Total-Count") || 0);
}

async function allTenants(includeDeleted) {
  const tenants = [];
  for (let offset = 0; ; offset += 200) {
    const { data, headers } = await call("GET", "/admin/tenants", { params: { includeDeleted, limit: 200, offset } });
    tenants.push(...data);
    if (data.length === 0 || tenants.length >= Number(headers.get("X-Total-Count") || 0)) return tenants;
  }
}

function jsonObject(text, what) {
  if (!text.trim()) return undefined;
  let value;
  try { value = JSON.parse(text); } catch (_) { throw new Error(`${what} must be a JSON object`); }
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw new Error(`${what} must be a JSON object`);
  return value;
}

function optionalInt(text) {
  return text.trim() === "" ? undefined : Number(text);
}

function quotasFrom(form, { nullable }) {
  const quotas = {};
  const rpm = optionalInt(form.elements.rateLimitRpm.value);
  if (rpm !== undefined) quotas.rateLimitRpm = rpm;
  for (const name of ["maxEvents", "maxStorageMB"]) {
    const value = optionalInt(form.elements[name].value);
    if (value !== undefined) quotas[name] = value;
    else if (nullable) quotas[name] = null;
  }
  return quotas;
}

function quotaControls(quotas = {}) {
  return [
    field("Rate limit (requests/minute, 0 = unlimited)",
      input("rateLimitRpm", { type: "number", min: 0, value: quotas.rateLimitRpm ?? "" })),
    field("Max events (empty = no limit)", input("maxEvents", { type: "number", min: 1, value: quotas.maxEvents ?? "" })),
    field("Max storage MB (empty = no limit)",
      input("maxStorageMB", { type: "number", min: 1, value: quotas.maxStorageMB ?? "" })),
  ];
}

export async function tenantsView(root) {
  const counts = h("div", { class: "counts", "aria-live": "polite" }, loading("counts"));
  const status = select("status", [["", "Active and suspended"], ...STATUSES.map((s) => [s, s]), ["all", "All, with deleted"]]);
  const search = input("search", { type: "search", placeholder: "id or name" });
  const results = h("div", {}, loading("tenants"));
  let tenants = [];
  let offset = 0;

  const showPage = () => {
    const term = search.value.trim().toLowerCase();
    const wanted = status.value;
    const rows = tenants.filter((t) => (wanted === "" ? t.status !== "deleted" : wanted === "all" || t.status === wanted)
      && (!term || t.id.includes(term) || String(t.name).toLowerCase().includes(term)));
    if (offset >= rows.length) offset = Math.max(0, Math.floor((rows.length - 1) / PAGE) * PAGE);
    fill(results, 
      table("Tenants", [
        { label: "Id", render: (t) => link(`#/t/${seg(t.id)}`, t.id) },
        { label: "Name", key: "name" },
        { label: "Status", render: (t) => badge(t.status) },
        { label: "Rate limit", render: (t) => formatValue(t.quotas && t.quotas.rateLimitRpm) },
        { label: "Created", key: "createdAt" },
        { label: "Manage", render: (t) => link(`#/t/${seg(t.id)}/tenant`, `Manage ${t.id}`) },
      ], rows.slice(offset, offset + PAGE), { rowKey: "id" }),
      rows.length > PAGE ? pager(rows.length, PAGE, offset, (o) => { offset = o; showPage(); }, "tenants") : null);
  };

  const reload = async () => {
    try {
      const [active, suspended, deleted] = await Promise.all(STATUSES.map(countByStatus));
      fill(counts, ...[["active", active], ["suspended", suspended], ["deleted", deleted]].map(
        ([name, n]) => h("div", { class: "count", dataset: { status: name } }, h("span", { class: "count-n" }, n), ` ${name}`)));
      tenants = await allTenants(true);
      showPage();
    } catch (error) {
      fill(results, errorBox(error));
    }
  };
  status.addEventListener("change", () => { offset = 0; showPage(); });
  search.addEventListener("input", () => { offset = 0; showPage(); });

  const create = actionForm("Create a tenant", [
    field("Tenant id", input("id", { required: true, pattern: "[a-z0-9][a-z0-9\\-]{1,48}[a-z0-9]" }),
      "3–50 characters: lower-case letters, digits, single hyphens"),
    field("Name", input("name", { required: true })),
    ...quotaControls(),
    field("Features (JSON object)", textarea("features", { placeholder: "{\"beta\": true}" })),
  ], "Create tenant", async (form) => {
    const body = { id: form.elements.id.value.trim(), name: form.elements.name.value };
    const quotas = quotasFrom(form, { nullable: false });
    if (Object.keys(quotas).length) body.quotas = quotas;
    const features = jsonObject(form.elements.features.value, "Features");
    if (features) body.features = features;
    const tenant = await post("/admin/tenants", body);
    form.reset();
    await reload();
    return notice(`Tenant ${tenant.id} created.`);
  });

  put(root, 
    section("Tenants by status", counts),
    section("Tenants",
      h("div", { class: "filters" }, field("Status", status), field("Search", search)),
      results),
    section("New tenant", create));
  await reload();
}

export async function tenantView(root, { tenant }) {
  const body = h("div", {}, loading("the tenant"));
  const flash = flashArea();
  put(root, flash.node, body);
  const render = async () => {
    let record;
    try { record = await get(`/admin/tenants/${seg(tenant)}`); } catch (error) { fill(body, errorBox(error)); return; }
    const parts = [section("Tenant", facts([
      ["Id", record.id], ["Name", record.name], ["Status", badge(record.status)], ["Created", record.createdAt],
      ["Updated", record.updatedAt], ["Rate limit (rpm)", record.quotas.rateLimitRpm],
      ["Max events", record.quotas.maxEvents], ["Max storage MB", record.quotas.maxStorageMB],
      ["Features", record.features], ["Metadata", record.metadata],
      ["Keys", `${record.keys.active} active, ${record.keys.revoked} revoked`],
    ]))];
    if (session.isGlobal()) {
      const out = outcomeArea();
      const after = (message) => async () => { await render(); flash.show(message); return null; };
      const lifecycle = [];
      if (record.status === "active") {
        const reason = input("reason", { placeholder: "why (optional)" });
        lifecycle.push(field("Suspension reason", reason), actionButton("Suspend tenant", async () => {
          await post(`/admin/tenants/${seg(tenant)}/suspend`, reason.value ? { reason: reason.value } : {});
          return after(`Tenant ${tenant} suspended.`)();
        }, out, "warning"));
      }
      if (record.status === "suspended") {
        lifecycle.push(actionButton("Resume tenant", async () => {
          await post(`/admin/tenants/${seg(tenant)}/resume`, {});
          return after(`Tenant ${tenant} resumed.`)();
        }, out));
      }
      if (record.status !== "deleted") {
        lifecycle.push(" ", confirmButton("Delete tenant", `Delete ${tenant}? Its data is kept, the id cannot be reused.`,
          async () => { await del(`/admin/tenants/${seg(tenant)}`); return after(`Tenant ${tenant} deleted.`)(); }, out));
      }
      parts.push(section("Lifecycle", h("div", { class: "actions" }, lifecycle), out.node));
      if (record.status !== "deleted") {
        parts.push(section("Edit", actionForm(null, [
          field("Name", input("name", { value: record.name, required: true })),
          ...quotaControls(record.quotas),
          field("Features (JSON object)", textarea("features", { value: JSON.stringify(record.features) })),
        ], "Save changes", async (form) => {
          const features = jsonObject(form.elements.features.value, "Features") || {};
          await patch(`/admin/tenants/${seg(tenant)}`,
            { name: form.elements.name.value, quotas: quotasFrom(form, { nullable: true }), features });
          await render();
          flash.show("Saved.");
          return null;
        })));
      }
    }
    fill(body, ...parts);
  };
  await render();
}

function tokenBox(created) {
  const tokenField = h("input", { type: "text", readonly: true, value: created.token, class: "token", name: "token" });
  const copied = h("span", { class: "copied", role: "status" });
  const copy = h("button", { type: "button", onclick: async () => {
    tokenField.select();
    try { await navigator.clipboard.writeText(created.token); copied.textContent = "Copied."; } catch (_) {
      copied.textContent = document.execCommand("copy") ? "Copied." : "Select the token and copy it by hand.";
    }
  } }, "Copy token");
  return h("div", { class: "token-box" },
    h("p", { class: "warning", role: "alert" }, created.warning || "Store this token now: it is shown only once."),
    facts([["Key id", created.keyId], ["Role", created.role], ["Created", created.createdAt]]),
    field("Token (shown once)", tokenField), copy, " ", copied);
}

export async function keysView(root, { tenant }) {
  const listing = h("div", {}, loading("keys"));
  const out = outcomeArea();
  let offset = 0;
  const reload = async () => {
    try {
      const { keys } = await get(`/admin/tenants/${seg(tenant)}/keys`);
      if (offset >= keys.length) offset = Math.max(0, Math.floor((keys.length - 1) / PAGE) * PAGE);
      fill(listing, table("Keys", [
        { label: "Key id", key: "keyId" }, { label: "Role", key: "role" },
        { label: "Status", render: (k) => badge(k.status) }, { label: "Created", key: "createdAt" },
        { label: "Last used", key: "lastUsedAt" }, { label: "Description", key: "description" },
        { label: "Action", render: (k) => (k.status === "active" ? confirmButton(`Revoke`, `Revoke ${k.keyId}?`, async () => {
          await post(`/admin/tenants/${seg(tenant)}/keys/${seg(k.keyId)}/revoke`, {});
          await reload();
          return notice(`Key ${k.keyId} revoked.`);
        }, out) : "—") },
      ], keys.slice(offset, offset + PAGE), { rowKey: "keyId" }),
      keys.length > PAGE ? pager(keys.length, PAGE, offset, (o) => { offset = o; reload(); }, "keys") : null);
    } catch (error) { fill(listing, errorBox(error)); }
  };
  const roles = [["public", "public (integrating systems)"], ["tenant_admin", "tenant_admin (operators)"]];
  const create = actionForm("Create a key", [
    field("Role", select("role", roles)), field("Description", input("description", { maxlength: 500 })),
  ], "Create key", async (form) => {
    const body = { role: form.elements.role.value };
    if (form.elements.description.value) body.description = form.elements.description.value;
    const created = await post(`/admin/tenants/${seg(tenant)}/keys`, body);
    form.elements.description.value = "";
    await reload();
    return tokenBox(created);
  });
  const rotate = actionForm("Rotate keys", [
    field("Role", select("role", roles)), checkbox("revokeOld", "Revoke the old keys of this role"),
  ], "Rotate", async (form) => {
    const created = await post(`/admin/tenants/${seg(tenant)}/keys/rotate`,
      { role: form.elements.role.value, revokeOld: form.elements.revokeOld.checked });
    await reload();
    return tokenBox(created);
  });
  put(root, section("Keys", listing, out.node), section("New key", create), section("Rotation", rotate));
  await reload();
}
