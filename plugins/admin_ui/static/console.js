// The console's shell: sign-in, navigation by the URL fragment, and which views each role may open.

import { ApiError, call, onRequestId, seg, session } from "./api.js";
import { fill, h, put } from "./dom.js";
import { dashboardView, eventsView } from "./audit.js";
import { consequenceView, consequencesView, mandateView, mandatesView, reviewView, reviewsView, timelineView } from "./core.js";
import { instancesView, metricsView } from "./ops.js";
import { keysView, tenantsView, tenantView } from "./tenants.js";
import { errorBox, field, input, select } from "./widgets.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
const signOutButton = document.getElementById("sign-out");
const lastRequestId = document.getElementById("last-request-id");

onRequestId((id) => { lastRequestId.textContent = id; });

// [fragment pattern, title, view, global admin only]
const ROUTES = [
  [/^\/tenants$/, "Tenants", tenantsView, true],
  [/^\/instances$/, "Instances and health", instancesView, true],
  [/^\/metrics$/, "Metrics", metricsView, true],
  [/^\/t\/([^/]+)$/, "Dashboard", dashboardView, false],
  [/^\/t\/([^/]+)\/tenant$/, "Tenant", tenantView, false],
  [/^\/t\/([^/]+)\/keys$/, "Keys", keysView, false],
  [/^\/t\/([^/]+)\/events$/, "Event log", eventsView, false],
  [/^\/t\/([^/]+)\/mandates$/, "Mandates", mandatesView, false],
  [/^\/t\/([^/]+)\/mandates\/([^/]+)$/, "Mandate", mandateView, false],
  [/^\/t\/([^/]+)\/reviews$/, "Review cases", reviewsView, false],
  [/^\/t\/([^/]+)\/reviews\/([^/]+)$/, "Review case", reviewView, false],
  [/^\/t\/([^/]+)\/consequences$/, "Consequences", consequencesView, false],
  [/^\/t\/([^/]+)\/consequences\/([^/]+)$/, "Consequence", consequenceView, false],
  [/^\/t\/([^/]+)\/timeline\/([^/]+)$/, "Timeline", timelineView, false],
  [/^\/t\/([^/]+)\/metrics$/, "Tenant metrics", metricsView, false],
];

const TENANT_SECTIONS = [
  ["", "Dashboard"], ["/tenant", "Tenant"], ["/keys", "Keys"], ["/events", "Event log"], ["/mandates", "Mandates"],
  ["/reviews", "Review cases"], ["/consequences", "Consequences"], ["/metrics", "Tenant metrics"],
];

let stopView = null;

function homeFragment() {
  return session.isGlobal() ? "#/tenants" : `#/t/${seg(session.tenantId)}`;
}

function navLink(href, text, current) {
  return h("a", { href, "aria-current": current ? "page" : null }, text);
}

function renderNav(path, tenant) {
  const here = `#${path}`;
  const groups = [];
  if (session.isGlobal()) {
    groups.push(h("div", { class: "nav-group" }, [["#/tenants", "Tenants"], ["#/instances", "Instances and health"],
      ["#/metrics", "Metrics"]].map(([href, text]) => navLink(href, text, here === href))));
  }
  if (tenant) {
    const base = `#/t/${seg(tenant)}`;
    groups.push(h("div", { class: "nav-group", "aria-label": `Tenant ${tenant}` },
      h("span", { class: "nav-tenant" }, `Tenant ${tenant}`),
      TENANT_SECTIONS.map(([suffix, text]) => navLink(base + suffix, text, here === base + suffix))));
  }
  fill(nav, groups);
}

async function route() {
  if (stopView) { stopView(); stopView = null; }
  if (!session.signedIn()) { signInView(); return; }
  const path = decodeURI(location.hash.replace(/^#/, "")) || "";
  const match = ROUTES.map(([pattern, title, view, globalOnly]) => ({ m: pattern.exec(path), title, view, globalOnly }))
    .find((r) => r.m);
  if (!match) { location.replace(homeFragment()); return; }
  const tenant = match.m[1] ? decodeURIComponent(match.m[1]) : null;
  if ((match.globalOnly && !session.isGlobal()) || (!session.isGlobal() && tenant !== session.tenantId)) {
    location.replace(homeFragment()); return;
  }
  renderNav(path, tenant);
  const heading = h("h1", { tabindex: "-1" }, tenant ? `${match.title} · ${tenant}` : match.title);
  const body = h("div", { class: "view" });
  fill(main, heading, body);
  document.title = `${match.title} · Libervia console`;
  heading.focus();
  try {
    const stop = await match.view(body, { tenant, id: match.m[2] ? decodeURIComponent(match.m[2]) : null });
    if (typeof stop === "function") stopView = stop;
  } catch (error) {
    put(body, errorBox(error));
  }
}

function signInView() {
  fill(nav);
  who.textContent = "";
  signOutButton.hidden = true;
  const role = select("role", [["global_admin", "Gateway operator (admin token)"], ["tenant_admin", "Tenant admin (tenant key)"]]);
  const tenant = input("tenant", { autocapitalize: "none", spellcheck: "false" });
  const tenantField = field("Tenant id", tenant, "The tenant the key belongs to");
  tenantField.hidden = true;
  role.addEventListener("change", () => { tenantField.hidden = role.value !== "tenant_admin"; });
  const token = input("token", { type: "password", required: true, autocomplete: "off" });
  const out = h("div", { "aria-live": "polite" });
  const button = h("button", { type: "submit" }, "Sign in");
  const form = h("form", { class: "sign-in", "aria-labelledby": "sign-in-title" },
    h("h1", { id: "sign-in-title" }, "Sign in"),
    h("p", { class: "hint" }, "The token stays in this page's memory only: reloading or closing the page, or signing "
      + "out, forgets it."),
    field("Sign in as", role), tenantField, field("Bearer token", token), h("div", { class: "actions" }, button), out);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    button.disabled = true;
    const secret = token.value.trim();
    const tenantId = tenant.value.trim().toLowerCase();
    try {
      if (role.value === "global_admin") {
        await call("GET", "/admin/tenants", { params: { limit: 1 }, withToken: secret });
      } else {
        if (!tenantId) throw new Error("Enter the tenant id of the key.");
        await call("GET", `/admin/tenants/${seg(tenantId)}`, { withToken: secret });
      }
      token.value = "";
      session.begin(secret, role.value, role.value === "global_admin" ? null : tenantId);
      who.textContent = session.isGlobal() ? "Signed in as gateway operator" : `Signed in as tenant admin of ${tenantId}`;
      signOutButton.hidden = false;
      if (location.hash === homeFragment()) route(); else location.hash = homeFragment();
    } catch (error) {
      const explained = error instanceof ApiError && error.code === "INSUFFICIENT_ROLE"
        ? new ApiError(error.status, { code: error.code, request_id: error.requestId,
          message: "This token cannot use the console for that role (public keys never can)." }) : error;
      fill(out, errorBox(explained));
    } finally {
      button.disabled = false;
    }
  });
  fill(main, form);
  document.title = "Sign in · Libervia console";
  role.focus();
}

signOutButton.addEventListener("click", () => {
  session.end();
  if (stopView) { stopView(); stopView = null; }
  history.replaceState(null, "", location.pathname);
  signInView();
});

window.addEventListener("hashchange", route);
route();
