// A tenant's Core, as operators act on it (API.md §7-8): mandates, review cases, consequences and the timeline of
// the episodes and contracts they belong to.

import { call, get, post, seg, session } from "./api.js";
import { fill, h, put } from "./dom.js";
import { eventsTable } from "./audit.js";
import {
  actionButton, actionForm, badge, flashArea, checkbox, errorBox, facts, field, input, link, list, loading, notice,
  outcomeArea, pager, section, select, table, textarea,
} from "./widgets.js";

const PAGE = 20;

// A status filter and a server-paged table, re-fetched on every change.
function pagedList(root, { statuses, fetchPage, render, label }) {
  const status = select("status", [["", "Any status"], ...statuses]);
  const listing = h("div", {}, loading(label));
  let offset = 0;
  const show = async () => {
    fill(listing, loading(label));
    try {
      const page = await fetchPage({ status: status.value, limit: PAGE, offset });
      fill(listing, render(page), page.total > PAGE
        ? pager(page.total, PAGE, offset, (o) => { offset = o; show(); }, label) : null);
    } catch (error) { fill(listing, errorBox(error)); }
  };
  status.addEventListener("change", () => { offset = 0; show(); });
  put(root, statuses.length ? h("div", { class: "filters" }, field("Status", status)) : null, listing);
  return show;
}

const tenantBase = (tenant) => `#/t/${seg(tenant)}`;

export async function mandatesView(root, { tenant }) {
  const listSection = section("Mandates");
  const show = pagedList(listSection, {
    label: "mandates",
    statuses: ["active", "suspended", "revoked", "expired"],
    fetchPage: (params) => get(`/admin/query/${seg(tenant)}/mandates`, params),
    render: (page) => table("Mandates", [
      { label: "Id", render: (m) => link(`${tenantBase(tenant)}/mandates/${seg(m.id)}`, m.id) },
      { label: "Agent", key: "agentId" }, { label: "Mode", key: "modo" },
      { label: "Status", render: (m) => badge(m.status) }, { label: "Uses", key: "uses" },
      { label: "Granted", key: "grantedAt" },
    ], page.mandates, { rowKey: "id" }),
  });
  const grant = actionForm("Grant a mandate", [
    field("Agent id", input("agentId", { required: true })),
    field("Mode", select("modo", ["VIVENCIA_ASSISTIDA", "VIVENCIA_AUTONOMA", "ENSINO"])),
    field("Allowed policies (comma separated)", input("politicas", { required: true })),
    field("Maximum risk profile", select("perfil", ["CONSERVADOR", "MODERADO", "AGRESSIVO"])),
    field("Needs a human when (comma separated)", input("requer")),
    field("Maximum uses (empty = unlimited)", input("maxUses", { type: "number", min: 1 })),
  ], "Grant mandate", async (form) => {
    const e = form.elements;
    const body = { agentId: e.agentId.value.trim(), modo: e.modo.value, politicas_permitidas: list(e.politicas.value),
      perfil_risco_maximo: e.perfil.value, limites: [], requer_humano_se: list(e.requer.value) };
    if (e.maxUses.value) body.maxUses = Number(e.maxUses.value);
    const mandate = await post(`/admin/tenants/${seg(tenant)}/mandates`, body);
    form.reset();
    await show();
    return h("p", { class: "notice", role: "status" }, "Mandate granted: ",
      link(`${tenantBase(tenant)}/mandates/${seg(mandate.id)}`, mandate.id));
  });
  put(root, listSection, section("New mandate", grant));
  await show();
}

function historyTable(history) {
  return table("History", [
    { label: "Seq", key: "seq" }, { label: "Time", key: "timestamp" }, { label: "Event", key: "evento" },
    { label: "Actor", key: "actor" }, { label: "Details", key: "details" },
  ], history || []);
}

export async function mandateView(root, { tenant, id }) {
  const body = h("div", {}, loading("the mandate"));
  const flash = flashArea();
  put(root, flash.node, body);
  const base = `/admin/tenants/${seg(tenant)}/mandates/${seg(id)}`;
  const render = async () => {
    let m;
    try { m = await get(`/admin/query/${seg(tenant)}/mandates/${seg(id)}`); } catch (error) {
      fill(body, errorBox(error)); return;
    }
    const out = outcomeArea();
    const reason = input("reason", { required: Boolean(m.suspendedByConsequence) });
    const act = (label, path, payload, cls) => actionButton(label, async () => {
      await post(`${base}/${path}`, payload());
      await render();
      flash.show(`${label}: done.`);
      return null;
    }, out, cls);
    const actions = [];
    if (m.status === "active") actions.push(act("Suspend", "suspend", () => (reason.value ? { reason: reason.value } : {}), "warning"));
    if (m.status === "suspended") actions.push(act("Resume", "resume", () => (reason.value ? { reason: reason.value } : {})));
    if (m.status === "active" || m.status === "suspended") {
      actions.push(" ", act("Revoke", "revoke", () => ({ motivo: reason.value || "revoked by an operator" }), "danger"));
    }
    const consequence = m.suspendedByConsequence
      ? link(`${tenantBase(tenant)}/consequences/${seg(m.suspendedByConsequence)}`, m.suspendedByConsequence) : null;
    fill(body, 
      section(`Mandate ${m.id}`, facts([
        ["Agent", m.agentId], ["Status", badge(m.status)], ["Mode", m.modo], ["Policies", m.politicas_permitidas.join(", ")],
        ["Max risk", m.perfil_risco_maximo], ["Needs a human when", m.requer_humano_se.join(", ")],
        ["Uses", `${m.uses}${m.maxUses ? ` of ${m.maxUses}` : ""}`], ["Suspension reason", m.suspensionReason],
        ["Suspended by consequence", consequence], ["End reason", m.endReason], ["Granted", m.grantedAt],
        ["Granted by", m.grantedBy], ["Updated", m.updatedAt],
      ])),
      actions.length ? section("Actions",
        field(m.suspendedByConsequence ? "Reason (required: a consequence suspended this mandate)" : "Reason", reason),
        h("div", { class: "actions" }, actions), out.node) : null,
      section("History", historyTable(m.history)));
  };
  await render();
}

export async function reviewsView(root, { tenant }) {
  const listSection = section("Review cases");
  const show = pagedList(listSection, {
    label: "review cases",
    statuses: ["OPEN", "RESOLVED", "DISMISSED"],
    fetchPage: (params) => get(`/admin/query/${seg(tenant)}/reviews`, params),
    render: (page) => table("Review cases", [
      { label: "Id", render: (r) => link(`${tenantBase(tenant)}/reviews/${seg(r.id)}`, r.id) },
      { label: "Status", render: (r) => badge(r.status) }, { label: "Rule", key: "regra" },
      { label: "Agent", key: "agentId" }, { label: "Opened", key: "opened_at" },
    ], page.reviews, { rowKey: "id" }),
  });
  put(root, listSection);
  await show();
}

function effectsReport(effects) {
  return table("Effects", [
    { label: "Effect", key: "effect" }, { label: "Outcome", render: (e) => (e.ok ? "applied" : `not applied: ${e.error}`) },
    { label: "Mandate", key: "mandateId" }, { label: "Message", key: "message" },
  ], effects);
}

export async function reviewView(root, { tenant, id }) {
  const body = h("div", {}, loading("the review case"));
  put(root, body);
  const base = `/admin/tenants/${seg(tenant)}/reviews/${seg(id)}`;
  const render = async (lastResult) => {
    let r;
    try { r = await get(`/admin/query/${seg(tenant)}/reviews/${seg(id)}`); } catch (error) {
      fill(body, errorBox(error)); return;
    }
    const parts = [section(`Review case ${r.id}`, facts([
      ["Status", badge(r.status)], ["Rule", r.regra], ["Reason", r.motivo], ["Agent", r.agentId],
      ["Mandate", r.mandateId ? link(`${tenantBase(tenant)}/mandates/${seg(r.mandateId)}`, r.mandateId) : null],
      ["Consequence", r.consequencia_id
        ? link(`${tenantBase(tenant)}/consequences/${seg(r.consequencia_id)}`, r.consequencia_id) : null],
      ["Opened", `${r.opened_at} by ${r.opened_by}`], ["Resolution", r.resolution], ["Notes", r.notes],
      ["Closed", r.closed_at ? `${r.closed_at} by ${r.closed_by}` : null],
    ]))];
    if (lastResult) parts.push(section("Result", lastResult));
    if (r.effects && r.effects.length) parts.push(section("Effects applied", effectsReport(r.effects)));
    parts.push(section("Earlier notes", table("Earlier notes", [
      { label: "Replaced at", render: (n) => n.replaced_at || "—" }, { label: "By", render: (n) => n.by || n.actor || "—" },
      { label: "Notes", render: (n) => h("span", { class: "note-text" }, typeof n === "string" ? n : (n.notes ?? n.text ?? JSON.stringify(n))) },
    ], r.notes_history || [])));
    if (r.status === "OPEN") {
      parts.push(section("Resolve", actionForm(null, [
        field("Resolution", select("resolution", ["APPROVE", "REJECT", "NEEDS_MORE_INFO", "NO_ACTION"])),
        field("Notes (required unless NO_ACTION)", textarea("notes")),
        h("fieldset", {}, h("legend", {}, "Effects"),
          ["RESUME_MANDATE", "REVOKE_MANDATE", "KEEP_SUSPENDED", "DEGRADE_MODE"].map((e) => checkbox(e, e))),
      ], "Resolve case", async (form) => {
        const effects = ["RESUME_MANDATE", "REVOKE_MANDATE", "KEEP_SUSPENDED", "DEGRADE_MODE"]
          .filter((e) => form.elements[e].checked);
        const payload = { resolution: form.elements.resolution.value, effects };
        if (form.elements.notes.value) payload.notes = form.elements.notes.value;
        const result = await post(`${base}/resolve`, payload);
        await render(h("div", {}, notice(`Resolved: ${result.resolution}.`), effectsReport(result.effects || [])));
        return null;
      })));
      parts.push(section("Dismiss", actionForm(null, [field("Notes", textarea("notes", { required: true }))],
        "Dismiss case", async (form) => {
          await post(`${base}/dismiss`, { notes: form.elements.notes.value });
          await render(notice("Dismissed."));
          return null;
        })));
    }
    parts.push(section("Add a note", actionForm(null, [field("Note", textarea("notes", { required: true }))],
      "Save note", async (form) => {
        await post(`${base}/notes`, { notes: form.elements.notes.value });
        await render(notice("Note saved."));
        return null;
      })));
    fill(body, ...parts);
  };
  await render();
}

export async function consequencesView(root, { tenant }) {
  const listSection = section("Consequences");
  const show = pagedList(listSection, {
    label: "consequences",
    statuses: [],
    fetchPage: (params) => get(`/admin/query/${seg(tenant)}/consequences`, { limit: params.limit, offset: params.offset }),
    render: (page) => table("Consequences", [
      { label: "Id", render: (c) => link(`${tenantBase(tenant)}/consequences/${seg(c.id)}`, c.id) },
      { label: "Signal", render: (c) => c.percebida && c.percebida.sinal }, { label: "Agent", key: "agentId" },
      { label: "Autonomy", render: (c) => (c.autonomy && c.autonomy.action) || "—" },
      { label: "Recorded", key: "registrada_em" },
    ], page.consequences, { rowKey: "id" }),
  });
  put(root, listSection);
  await show();
}

export async function consequenceView(root, { tenant, id }) {
  let c;
  try { c = await get(`/admin/query/${seg(tenant)}/consequences/${seg(id)}`); } catch (error) {
    put(root, errorBox(error)); return;
  }
  const base = tenantBase(tenant);
  const autonomy = c.autonomy || {};
  put(root, section(`Consequence ${c.id}`, facts([
    ["Episode", link(`${base}/timeline/${seg(c.episodio_id)}`, c.episodio_id)],
    ["Contract", link(`${base}/timeline/${seg(c.contrato_id)}`, c.contrato_id)],
    ["Observed", c.observada && c.observada.descricao], ["Limits respected", c.observada && c.observada.limites_respeitados],
    ["Perceived", c.percebida && `${c.percebida.sinal}: ${c.percebida.descricao}`],
    ["Evidence", (c.evidencias_minimas || []).join("; ")], ["Agent", c.agentId],
    ["Autonomy action", autonomy.action], ["Rule", autonomy.rule],
    ["Mandate", autonomy.mandateId ? link(`${base}/mandates/${seg(autonomy.mandateId)}`, autonomy.mandateId) : null],
    ["Review case", autonomy.reviewCaseId ? link(`${base}/reviews/${seg(autonomy.reviewCaseId)}`, autonomy.reviewCaseId) : null],
    ["Recorded", `${c.registrada_em} by ${c.registrada_por}`],
  ])));
}

// Every event that names an episode or contract, found by streaming the tenant's NDJSON export.
async function eventsNaming(tenant, id) {
  const response = await call("GET", `/admin/tenants/${seg(tenant)}/audit/export`, { raw: true, accept: "application/x-ndjson" });
  const text = await response.text();
  const found = [];
  for (const line of text.split("\n")) {
    if (!line.includes(id)) continue;
    const entry = JSON.parse(line);
    if (entry.seq !== undefined) found.push(entry);
  }
  return found;
}

export async function timelineView(root, { tenant, id }) {
  const isEpisode = id.startsWith("epi_");
  put(root, section(isEpisode ? `Episode ${id}` : `Contract ${id}`,
    h("p", { class: "hint" }, "Every event of the tenant's log that names this ", isEpisode ? "episode" : "contract",
      ", oldest first (read from the log export).")));
  if (isEpisode && !session.isGlobal()) {
    try {
      const episode = (await call("GET", `/api/v1/episodios/${seg(id)}`)).data;
      put(root, section("Episode state", facts([
        ["State", badge(episode.estado)], ["Last event", episode.ultimo_evento], ["Events", episode.total_eventos],
        ["Contract", episode.contrato_id ? link(`${tenantBase(tenant)}/timeline/${seg(episode.contrato_id)}`, episode.contrato_id) : null],
        ["Decided", episode.decidido_em], ["Observation started", episode.observacao_iniciada_em],
        ["Closed", episode.encerrado_em],
      ])));
    } catch (error) { put(root, errorBox(error)); }
  }
  const listing = h("div", {}, loading("the timeline"));
  put(root, section("Timeline", listing));
  try {
    fill(listing, eventsTable("Timeline", await eventsNaming(tenant, id)));
  } catch (error) { fill(listing, errorBox(error)); }
}
