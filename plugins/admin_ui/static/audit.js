// A tenant's dashboard and event log (API.md §7): recent events, verification, checkpoints, export.

import { call, get, seg } from "./api.js";
import { fill, h, put } from "./dom.js";
import {
  actionButton, errorBox, facts, formatValue, loading, notice, outcomeArea, pager, section, table,
} from "./widgets.js";

const PAGE = 25;

export function eventsTable(caption, events) {
  return table(caption, [
    { label: "Seq", key: "seq" },
    { label: "Time", render: (e) => formatValue(e.ts || e.timestamp) },
    { label: "Event", key: "evento" },
    { label: "Entity", render: (e) => `${formatValue(e.entidade)} ${formatValue(e.entidade_id)}` },
    { label: "Actor", key: "actor" },
    { label: "Details", render: (e) => (e.payload === undefined ? "—" : h("details", {},
      h("summary", {}, "payload"), h("pre", { class: "payload" }, JSON.stringify(e.payload, null, 2)),
      e.request_id ? h("div", {}, "request_id: ", h("code", {}, e.request_id)) : null)) },
  ], events, { rowKey: "seq" });
}

export async function dashboardView(root, { tenant }) {
  let data;
  try { data = await get(`/admin/query/${seg(tenant)}/dashboard`); } catch (error) { put(root, errorBox(error)); return; }
  const count = (label, value, href) => h("a", { class: "count", href }, h("span", { class: "count-n" }, value), ` ${label}`);
  const base = `#/t/${seg(tenant)}`;
  put(root, 
    section("Mandates", h("div", { class: "counts" },
      ["active", "suspended", "revoked", "expired"].map((s) => count(s, data.mandates[s] ?? 0, `${base}/mandates`)))),
    section("Review cases", h("div", { class: "counts" },
      ["OPEN", "RESOLVED", "DISMISSED"].map((s) => count(s.toLowerCase(), data.reviews[s] ?? 0, `${base}/reviews`)))),
    section("Consequences and events", h("div", { class: "counts" },
      count("consequences", data.consequences.total, `${base}/consequences`),
      count("events", data.events ?? "—", `${base}/events`))),
    section("Recent events", eventsTable("Recent events", data.recentEvents || [])));
}

function explainVerify(kind, result) {
  if (result.valid) {
    const from = kind === "fast" && result.fromSeq > 1
      ? `from the newest valid checkpoint (seq ${result.fromSeq}) to the head`
      : "from the first event (genesis) to the head";
    return h("div", { class: "verify-ok", role: "status" },
      h("strong", {}, "Chain valid. "),
      `${result.totalVerified} events verified ${from}; every hash links to the previous one and each signed checkpoint `
      + "matches.", facts([["Head hash", result.headHash], ["Checkpoint", result.checkpoint]]));
  }
  return h("div", { class: "verify-bad", role: "alert" },
    h("strong", {}, "Chain broken. "),
    `Verification stopped at index ${formatValue(result.firstInvalidIndex)} (event ${formatValue(result.firstInvalidId)}): `
    + `${formatValue(result.reason)}. Events before it verified: ${result.totalVerified}. Follow runbook PROC-007.`,
    facts([["Head hash", result.headHash]]));
}

async function download(tenant, ndjson) {
  const response = await call("GET", `/admin/tenants/${seg(tenant)}/audit/export`,
    { raw: true, accept: ndjson ? "application/x-ndjson" : "application/json" });
  const blob = await response.blob();
  const url = URL.createObjectURL(blob);
  const name = `${tenant}-eventlog.${ndjson ? "ndjson" : "json"}`;
  const anchor = h("a", { href: url, download: name, hidden: true });
  document.body.append(anchor);
  anchor.click();
  anchor.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
  return notice(`Downloaded ${name} (${blob.size} bytes).`);
}

export async function eventsView(root, { tenant }) {
  const verifyOut = outcomeArea();
  const exportOut = outcomeArea();
  const checkpoints = h("div", {}, loading("checkpoints"));
  const listing = h("div", {}, loading("events"));
  let page = 0;

  const showPage = async () => {
    fill(listing, loading("events"));
    try {
      const total = (await get(`/admin/tenants/${seg(tenant)}/events`, { limit: 1, offset: 0 })).total;
      // The route pages oldest first; the console shows the newest first.
      const end = total - page * PAGE;
      const offset = Math.max(0, end - PAGE);
      const { events } = total ? await get(`/admin/tenants/${seg(tenant)}/events`, { limit: Math.max(1, end - offset), offset })
        : { events: [] };
      events.reverse();
      fill(listing, eventsTable("Events, newest first", events),
        total > PAGE ? pager(total, PAGE, page * PAGE, (o) => { page = o / PAGE; showPage(); }, "events") : null);
    } catch (error) { fill(listing, errorBox(error)); }
  };

  const verify = (kind) => actionButton(kind === "fast" ? "Verify fast (from checkpoint)" : "Verify full chain", async () => {
    const result = await get(`/admin/tenants/${seg(tenant)}/audit/${kind === "fast" ? "verify-fast" : "verify"}`);
    return explainVerify(kind, result);
  }, verifyOut);

  put(root, 
    section("Integrity",
      h("p", { class: "hint" }, "Full verification recomputes every hash from genesis. Fast verification starts "
        + "from the newest checkpoint whose signature and hash verify, so it is quicker on long logs."),
      h("div", { class: "actions" }, verify("full"), " ", verify("fast")), verifyOut.node),
    section("Checkpoints", checkpoints),
    section("Export", h("div", { class: "actions" },
      actionButton("Download JSON", () => download(tenant, false), exportOut), " ",
      actionButton("Download NDJSON", () => download(tenant, true), exportOut)), exportOut.node),
    section("Events", listing));
  try {
    const data = await get(`/admin/tenants/${seg(tenant)}/audit/checkpoints`);
    fill(checkpoints, table("Signed checkpoints", [
      { label: "Seq", key: "seq" }, { label: "Time", key: "ts" }, { label: "Hash", key: "hash" },
      { label: "Signature", render: (c) => (c.signatureValid === false ? "INVALID" : "valid") },
    ], data.checkpoints));
  } catch (error) { fill(checkpoints, errorBox(error)); }
  await showPage();
}
