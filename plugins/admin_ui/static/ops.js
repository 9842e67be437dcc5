// Gateway-wide operations (global admin): running instances, health checks with their alert names, metrics charts.

import { get, seg } from "./api.js";
import { fill, h, put } from "./dom.js";
import { lineChart, pointBetween, sampleOf, seriesFor } from "./charts.js";
import { badge, errorBox, facts, formatValue, loading, section, table } from "./widgets.js";

export const METRICS_REFRESH_MS = 3000;
const MAX_POINTS = 60;

export async function instancesView(root) {
  const operational = h("div", {}, loading("operational health"));
  const health = h("div", {}, loading("instance health"));
  const instances = h("div", {}, loading("instances"));
  put(root, section("Operational health", operational), section("Instance health", health), section("Running instances", instances));
  const [op, hl, inst] = await Promise.allSettled([
    get("/internal/health/operational"), get("/admin/health"), get("/admin/instances")]);
  if (op.status === "fulfilled") {
    const o = op.value;
    fill(operational, h("p", { class: "overall" }, "Overall: ", badge(o.status),
      ` over the last ${o.window_s} s (${o.requests} requests)`),
    o.alerts && o.alerts.length ? h("p", { class: "warning", role: "alert" }, `Firing: ${o.alerts.map(formatValue).join(", ")}`) : null,
    table("Checks", [
      { label: "Check", key: "name" }, { label: "Status", render: (c) => badge(c.status) }, { label: "Alert", key: "alert" },
      { label: "Value", render: (c) => `${formatValue(c.value)} ${c.unit || ""}`.trim() },
      { label: "Degraded above", key: "degraded_above" }, { label: "Critical above", key: "critical_above" },
    ], Object.entries(o.checks).map(([name, check]) => ({ name, ...check })), { rowKey: "name" }));
  } else fill(operational, errorBox(op.reason));
  if (hl.status === "fulfilled") {
    fill(health, facts([["Status", badge(hl.value.status)], ["Active instances", hl.value.activeInstances],
      ["Degraded tenants", (hl.value.degradedTenants || []).join(", ") || "none"]]));
  } else fill(health, errorBox(hl.reason));
  if (inst.status === "fulfilled") {
    const v = inst.value;
    fill(instances, facts([["Active", v.activeInstances], ["Open logs", v.openLogs], ["Max instances", v.maxInstances],
      ["Idle TTL (s)", v.idleTtlSeconds], ["Evictions", v.evictions]]),
    table("Instances", [
      { label: "Tenant", render: (i) => h("a", { href: `#/t/${seg(i.tenant)}` }, i.tenant) },
      { label: "Events", key: "events" }, { label: "Started", key: "startedAt" }, { label: "Last used", key: "lastUsedAt" },
      { label: "Idle (s)", key: "idleSeconds" }, { label: "Busy", key: "busy" },
      { label: "Log", render: (i) => (i.logStatus && i.logStatus.degraded ? "degraded" : "ok") },
    ], v.instances, { rowKey: "tenant" }));
  } else fill(instances, errorBox(inst.reason));
}

// Charts refreshed while the view is open; the returned function stops the refresh when the view is left.
export async function metricsView(root, { tenant } = {}) {
  const source = tenant ? `/internal/tenants/${seg(tenant)}/metrics/json` : "/internal/metrics/json";
  const series = seriesFor(tenant);
  const charts = h("div", { class: "charts" });
  const state = h("p", { class: "hint", "aria-live": "polite" }, "Collecting the first samples…");
  put(root, section("Metrics", h("p", { class: "hint" },
    `From ${source} every ${METRICS_REFRESH_MS / 1000} s; rates are differences between samples.`),
  state, charts));
  const points = [];
  let previous = null;
  let timer = null;
  let stopped = false;
  const draw = () => fill(charts, series.map((s) => lineChart(s.title, s.unit, points.map((p) => p[s.key]))));
  const tick = async () => {
    try {
      const sample = sampleOf(await get(source));
      if (previous) {
        points.push(pointBetween(previous, sample));
        if (points.length > MAX_POINTS) points.shift();
        fill(state, `${points.length} sample${points.length === 1 ? "" : "s"}, last at ${new Date(sample.at).toISOString()}`);
      }
      previous = sample;
      draw();
    } catch (error) {
      fill(state, errorBox(error));
    }
    if (!stopped) timer = setTimeout(tick, METRICS_REFRESH_MS);
  };
  draw();
  await tick();
  return () => { stopped = true; clearTimeout(timer); };
}
