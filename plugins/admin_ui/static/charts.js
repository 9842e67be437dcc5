// Charts of /internal/metrics/json: each refresh is one sample; rates are differences between two samples.

import { h, svg } from "./dom.js";

const WIDTH = 320;
const HEIGHT = 120;
const PAD = 28;

function sumCounter(metric, predicate = () => true) {
  if (!metric) return 0;
  return metric.values.filter((v) => predicate(v.labels)).reduce((total, v) => total + Number(v.value || 0), 0);
}

// Cumulative bucket counts summed over every label set of a histogram: {le -> count}.
function histogramBuckets(metric) {
  const buckets = new Map();
  if (!metric) return buckets;
  for (const value of metric.values) {
    for (const bucket of (value.value && value.value.buckets) || []) {
      buckets.set(bucket.le, (buckets.get(bucket.le) || 0) + Number(bucket.count));
    }
  }
  return buckets;
}

// The 95th percentile of the requests between two samples, interpolated inside its bucket (as PromQL does).
export function p95FromBuckets(before, after) {
  const bounds = [...after.keys()].sort((a, b) => (a === "+Inf") - (b === "+Inf") || Number(a) - Number(b));
  const counts = bounds.map((le) => (after.get(le) || 0) - (before.get(le) || 0));
  const total = counts[counts.length - 1] || 0;
  if (total <= 0) return null;
  const rank = 0.95 * total;
  let lower = 0;
  let below = 0;
  for (let i = 0; i < bounds.length; i += 1) {
    if (counts[i] >= rank) {
      if (bounds[i] === "+Inf") return lower;
      const upper = Number(bounds[i]);
      const inBucket = counts[i] - below;
      return inBucket > 0 ? lower + (upper - lower) * ((rank - below) / inBucket) : upper;
    }
    lower = bounds[i] === "+Inf" ? lower : Number(bounds[i]);
    below = counts[i];
  }
  return lower;
}

// One sample of the gateway's metrics, or of one tenant's (which has its own request counter and no histogram).
export function sampleOf(document_) {
  const byName = new Map(document_.metrics.map((m) => [m.name, m]));
  const requests = byName.get("libervia_http_requests_total") || byName.get("libervia_tenant_requests_total");
  const histogram = byName.get("libervia_http_request_duration_ms");
  return {
    at: Date.now(),
    requests: sumCounter(requests),
    errors5xx: sumCounter(requests, (l) => String(l.status || "").startsWith("5")),
    authFailures: sumCounter(byName.get("libervia_auth_failures_total")),
    rateLimited: sumCounter(byName.get("libervia_rate_limited_total")),
    appends: sumCounter(byName.get("libervia_eventlog_appends_total")),
    buckets: histogram ? histogramBuckets(histogram) : null,
  };
}

const ALL_SERIES = [
  { key: "requestRate", title: "Request rate", unit: "req/s" },
  { key: "errorRate", title: "5xx rate", unit: "req/s" },
  { key: "p95", title: "p95 latency", unit: "ms", gatewayOnly: true },
  { key: "authFailureRate", title: "Auth failures", unit: "per s" },
  { key: "rateLimitedRate", title: "Rate-limited requests", unit: "per s" },
  { key: "appendRate", title: "Event-log appends", unit: "per s" },
];

// A tenant's metrics have no latency histogram, so its charts leave p95 out.
export function seriesFor(tenant) {
  return ALL_SERIES.filter((s) => !(tenant && s.gatewayOnly));
}

export function pointBetween(before, after) {
  const seconds = Math.max((after.at - before.at) / 1000, 0.001);
  const rate = (key) => Math.max(0, after[key] - before[key]) / seconds;
  return {
    requestRate: rate("requests"),
    errorRate: rate("errors5xx"),
    p95: before.buckets && after.buckets ? p95FromBuckets(before.buckets, after.buckets) : null,
    authFailureRate: rate("authFailures"),
    rateLimitedRate: rate("rateLimited"),
    appendRate: rate("appends"),
  };
}

function formatNumber(value) {
  if (value === null || value === undefined) return "no requests";
  return value >= 100 ? value.toFixed(0) : value.toFixed(2);
}

export function lineChart(title, unit, values) {
  const known = values.filter((v) => v !== null);
  const max = Math.max(1e-9, ...known) * 1.1;
  const step = values.length > 1 ? (WIDTH - PAD - 4) / (values.length - 1) : 0;
  const points = values.map((v, i) => (v === null ? null : [PAD + i * step, HEIGHT - PAD - (v / max) * (HEIGHT - 2 * PAD)]));
  const segments = [];
  let current = [];
  for (const point of points) {
    if (point === null) { if (current.length) segments.push(current); current = []; } else current.push(point);
  }
  if (current.length) segments.push(current);
  const latest = values.length ? values[values.length - 1] : null;
  const summary = `${title}: latest ${formatNumber(latest)} ${latest === null ? "" : unit}`.trim();
  return h("figure", { class: "chart", dataset: { series: title } },
    svg("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "aria-label": summary, class: "chart-svg" },
      svg("line", { x1: PAD, y1: HEIGHT - PAD, x2: WIDTH - 4, y2: HEIGHT - PAD, class: "axis" }),
      svg("line", { x1: PAD, y1: PAD / 2, x2: PAD, y2: HEIGHT - PAD, class: "axis" }),
      svg("text", { x: 2, y: PAD / 2 + 4, class: "axis-label" }, formatNumber(max)),
      svg("text", { x: 2, y: HEIGHT - PAD + 4, class: "axis-label" }, "0"),
      segments.map((segment) => (segment.length === 1
        ? svg("circle", { cx: segment[0][0], cy: segment[0][1], r: 2.5, class: "dot" })
        : svg("polyline", { points: segment.map((p) => p.join(",")).join(" "), class: "line" })))),
    h("figcaption", {}, h("span", { class: "chart-title" }, title), " ",
      h("output", { class: "chart-latest" }, `${formatNumber(latest)} ${latest === null ? "" : unit}`.trim())));
}
