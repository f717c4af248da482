// Connectors: cards with status pills, filters and search; add (DCR / registered client /
// static / JWT passthrough, advanced overrides), "Add & authorize" in a popup, details with
// Copy as JSON, Disconnect / Reconnect / Remove with confirmations.
import {
  ApiError, busy, confirmAction, copyText, enc, errorBox, field, h, initials, modal, newestOnly, openPopup, pill, poll,
  pretty, replace, svc, statusGroup, toast, when,
} from "../lib.js";

const FILTERS = [
  ["active", "Active"],
  ["needs_attention", "Needs attention"],
  ["inactive", "Inactive"],
  ["all", "All"],
];
let filter = "all";
let query = "";
let listEl;
const watching = new Map(); // connector name -> popup window while its consent is out

export async function render(root) {
  const search = h("input", { type: "search", placeholder: "Search by name or URL", autocomplete: "off" });
  search.addEventListener("input", () => ((query = search.value.toLowerCase()), refresh()));
  const buttons = FILTERS.map(([key, label]) =>
    h("button", { type: "button", "aria-pressed": String(key === filter), dataset: { filter: key },
      onclick: (ev) => {
        filter = key;
        for (const b of ev.target.parentElement.children) b.setAttribute("aria-pressed", String(b === ev.target));
        refresh();
      } }, label),
  );
  const [searchWrap] = field("Search connectors", search);
  searchWrap.classList.add("inline");
  listEl = h("div", { "aria-live": "polite" });
  replace(
    root,
    h("div.toolbar", {},
      h("div.segmented", { role: "group", "aria-label": "Filter by status" }, buttons),
      searchWrap,
      h("span.spacer"),
      h("button", { type: "button", onclick: addDialog }, "Add connector")),
    listEl,
  );
  await refresh();
}

const refreshes = newestOnly();

async function refresh() {
  const current = refreshes();
  let items;
  let registered = null; // connector name -> its registry settings (tool count, listing cached)
  try {
    items = await svc("connectors", "GET", `/connectors?status=${filter}`);
  } catch (e) {
    if (current()) replace(listEl, errorBox(new Error(`Could not list connectors: ${e.message}`)));
    return;
  }
  try {
    registered = new Map((await svc("registry", "GET", "/connectors")).map((s) => [s.connector, s]));
  } catch {
    registered = null; // the registry is down: cards show no tool count
  }
  if (!current()) return; // a newer filter's answer owns the list
  const shown = items.filter((c) => !query || c.name.toLowerCase().includes(query) || c.url.toLowerCase().includes(query));
  if (!shown.length) {
    replace(listEl, h("p.empty", {}, items.length ? "No connector matches the search." : "No connectors here yet."));
    return;
  }
  replace(listEl, h("div.cards", {}, shown.map((c) => card(c, registered))));
}

function card(c, registered) {
  const settings = registered ? registered.get(c.name) : undefined;
  const count = registered ? (settings ? settings.tools : 0) : null;
  // the registry serves its stored listing (refreshed on a schedule or by hand), not the upstream's each time
  const cached = Boolean(settings && settings.tools > 0 && settings.cache_enabled);
  const tid = `card-${c.name}`;
  const out = h("div");
  const node = h("article.card", { "aria-labelledby": tid, dataset: { connector: c.name, status: c.status } },
    h("div.card-head", {}, h("span.avatar", { "aria-hidden": "true" }, initials(c.name)), h("h2", { id: tid }, c.name)),
    h("p.url", {}, c.url),
    h("div.meta", {},
      watching.has(c.name) && c.status !== "active" ? pill("verifying") : pill(c.status),
      h("span.badge", {}, c.scope === "per_user" ? "Per user" : "Organization"),
      h("span.badge", {}, c.auth_type),
      count === null ? h("span.muted", {}, "tools: ?") : h("span", { dataset: { tools: count } }, `${count} tool${count === 1 ? "" : "s"}`),
      cached ? h("span.badge", { dataset: { cached: "" }, title: "Its tool listing is served from the registry's cache" }, "Cached") : null),
    c.oauth && c.oauth.granted_scopes && c.status === "active"
      ? h("p.hint", {}, `Scopes: ${c.oauth.granted_scopes.join(" ") || "—"}`) : null,
    c.status_reason && c.status !== "active" ? h("p.hint", {}, c.status_reason) : null,
    // the service's warnings: a credential expiring within EXPIRY_WARNING_DAYS (7), expired, more scopes
    ...(c.warnings || []).map((w) => h("p.hint", { role: "note" }, `⚠ ${w}`)),
    out,
    h("div.actions", {},
      h("button.ghost", { type: "button", onclick: () => details(c.name) }, "Details"),
      c.auth_type === "oauth2" && c.status !== "active"
        ? h("button", { type: "button", onclick: (ev) => authorize(c.name, ev.target, "reconnect", out) }, "Reconnect") : null,
      c.status !== "disconnected"
        ? h("button.ghost", { type: "button", onclick: (ev) => disconnect(c.name, ev.target, out) }, "Disconnect") : null,
      h("button.danger", { type: "button", onclick: (ev) => remove(c.name, ev.target, out) }, "Remove")),
  );
  return node;
}

async function disconnect(name, button, out) {
  if (!(await confirmAction(`Disconnect ${name}?`,
    "Every token is purged at once (calls fail closed) and revoked at the provider.", "Disconnect"))) return;
  await busy(button, "Disconnecting…", async () => {
    await svc("connectors", "POST", `/connectors/${enc(name)}/disconnect`);
    toast(`${name} disconnected`);
    await refresh();
  }, out);
}

async function remove(name, button, out) {
  if (!(await confirmAction(`Remove ${name}?`,
    "Its tokens are revoked and the connector deleted. Its audit history stays.", "Remove", name))) return;
  await busy(button, "Removing…", async () => {
    await svc("connectors", "DELETE", `/connectors/${enc(name)}`);
    toast(`${name} removed`);
    await refresh();
  }, out);
}

/** Open the consent popup, start the consent, then watch the connector until it is active. */
async function authorize(name, button, how, out, popup) {
  const win = popup || openPopup();
  const started = await busy(button, "Starting consent…", async () => {
    const r = await svc("connectors", "POST", `/connectors/${enc(name)}/${how}`);
    return r;
  }, out);
  if (!started) {
    if (win) win.close();
    return;
  }
  if (started.connected || !started.consent_url) {
    if (win) win.close();
    await refresh();
    return;
  }
  watch(name, started.consent_url, win);
}

export function watch(name, url, win) {
  if (win) win.location.href = url;
  else toast("The popup was blocked: allow popups for this site, then use Reconnect.", "error");
  watching.set(name, win);
  refresh();
  poll(async () => {
    let c;
    try {
      c = await svc("connectors", "GET", `/connectors/${enc(name)}`);
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) return true;
      return false; // a blip: try again
    }
    if (c.status === "active" || c.status === "error") return c;
    return false;
  }, { ms: 1000, limitMs: 10 * 60 * 1000 }).then((c) => {
    watching.delete(name);
    if (win && !win.closed) win.close();
    if (!c) toast(`${name}: no answer from the consent within 10 minutes; use Reconnect to try again.`, "error");
    else if (c.status === "active") toast(`${name} is connected`);
    else if (c.status === "error") toast(`${name}: consent failed: ${c.status_reason || "refused"}`, "error");
    refresh();
  });
}

async function details(name) {
  await modal(`Connector ${name}`, async (body) => {
    body.append(h("p.muted", {}, "Loading…"));
    let c;
    let copied;
    try {
      [c, copied] = await Promise.all([
        svc("connectors", "GET", `/connectors/${enc(name)}`),
        svc("connectors", "GET", `/connectors/${enc(name)}/json`),
      ]);
    } catch (e) {
      replace(body, errorBox(e));
      return;
    }
    const o = c.oauth || {};
    const rows = [
      ["Status", pill(c.status)],
      ["URL", c.url],
      ["Scope", c.scope],
      ["Auth", c.auth_type],
      ["Secret stored", c.secret_stored ? "yes" : "no"],
      ["Issuer", o.issuer],
      ["Authorization endpoint", o.authorization_endpoint],
      ["Token endpoint", o.token_endpoint],
      ["Registration endpoint", o.registration_endpoint],
      ["Revocation endpoint", o.revocation_endpoint],
      ["Client id", o.client_id],
      ["Client", o.client_source],
      ["Client secret stored", o.client_id ? (o.client_secret_stored ? "yes" : "no") : undefined],
      ["Redirect URI", o.redirect_uri],
      ["Granted scopes", o.granted_scopes ? o.granted_scopes.join(" ") : undefined],
      ["Connected", o.connected_at ? when(o.connected_at) : undefined],
      ["Token expires", o.token_expires_at ? when(o.token_expires_at) : undefined],
      ["Per-user connections", o.user_connections ?? c.user_connections],
      ["Created", when(c.created_at)],
      ["Last used", when(c.last_used_at)],
      ["Expires", c.expires_at ? when(c.expires_at) : undefined],
    ].filter(([, v]) => v !== undefined && v !== null && v !== "");
    const text = pretty(copied);
    const copyBtn = h("button", { type: "button", onclick: (ev) => copyText(text, ev.target) }, "Copy as JSON");
    replace(body,
      h("dl.kv", {}, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
      h("h3", {}, "As JSON (the body `warden connectors json` prints; secrets left out)"),
      h("pre", { id: "connector-json", tabindex: "0", "aria-label": "Connector as JSON" }, text),
      h("div.actions", {}, copyBtn));
  }, { wide: true });
}

// -- add connector ----------------------------------------------------------------------------
function addDialog() {
  return modal("Add connector", (body, close) => {
    const name = h("input", { name: "name", required: true, pattern: "[a-z0-9][a-z0-9_-]*", autocomplete: "off" });
    const url = h("input", { name: "url", type: "url", required: true, placeholder: "https://mcp.example.com/mcp" });
    const mode = h("select", { name: "mode" },
      h("option", { value: "dcr" }, "OAuth: dynamic client registration"),
      h("option", { value: "registered" }, "OAuth: registered client"),
      h("option", { value: "static" }, "Static credential"),
      h("option", { value: "jwt" }, "JWT passthrough"));
    const perUser = h("input", { type: "checkbox", name: "per_user" });

    const clientId = h("input", { name: "client_id", autocomplete: "off" });
    const clientSecret = h("input", { name: "client_secret", type: "password", autocomplete: "new-password" });
    const authMethod = h("select", { name: "token_endpoint_auth_method" },
      ["client_secret_basic", "client_secret_post", "none"].map((m) => h("option", { value: m }, m)));
    const registered = h("fieldset", {}, h("legend", {}, "Registered client"),
      field("Client id", clientId)[0], field("Client secret", clientSecret, "Stored sealed; never shown again.")[0],
      field("Token endpoint auth method", authMethod)[0]);

    const staticType = h("select", { name: "static_type" },
      [["none", "None"], ["bearer", "Bearer token"], ["api_key", "API key"], ["custom_headers", "Custom headers"]]
        .map(([v, t]) => h("option", { value: v }, t)));
    const token = h("input", { name: "token", type: "password", autocomplete: "new-password" });
    const header = h("input", { name: "header", value: "X-API-Key" });
    const headers = h("textarea", { name: "headers", placeholder: '{"X-Team": "secret-value"}' });
    const expires = h("input", { name: "expires_at", type: "date" });
    const statics = h("fieldset", {}, h("legend", {}, "Static credential"),
      field("Type", staticType)[0], field("Token or key", token)[0], field("API key header", header)[0],
      field("Custom headers (JSON object)", headers)[0],
      field("Expiry date", expires, "You get a warning 7 days before.")[0]);

    const jwk = h("textarea", { name: "site_public_jwk", placeholder: '{"kty": "RSA", "n": "…", "e": "AQAB"}' });
    const jwtAud = h("input", { name: "jwt_audience" });
    const jwtIss = h("input", { name: "jwt_issuer" });
    const jwt = h("fieldset", {}, h("legend", {}, "JWT passthrough"),
      field("Site public key (JWK)", jwk)[0], field("Audience", jwtAud)[0], field("Issuer (optional)", jwtIss)[0]);

    const adv = {};
    const advFields = ["audience", "resource", "issuer", "authorization_endpoint", "token_endpoint",
      "registration_endpoint", "revocation_endpoint"].map((k) => {
      adv[k] = h("input", { name: k, autocomplete: "off" });
      return field(k.replaceAll("_", " "), adv[k])[0];
    });
    adv.scopes = h("input", { name: "scopes", placeholder: "space separated" });
    const advanced = h("details", {}, h("summary", {}, "Advanced overrides"), advFields, field("Scopes", adv.scopes)[0]);

    const out = h("div", { "aria-live": "polite" });
    const addBtn = h("button.ghost", { type: "button" }, "Add");
    const authBtn = h("button", { type: "submit" }, "Add & authorize");
    const sync = () => {
      const m = mode.value;
      registered.hidden = m !== "registered";
      statics.hidden = m !== "static";
      jwt.hidden = m !== "jwt";
      advanced.hidden = m === "static" || m === "jwt";
      authBtn.hidden = m === "static" || m === "jwt";
    };
    mode.addEventListener("change", sync);

    const spec = () => {
      const body = { name: name.value.trim(), url: url.value.trim() };
      if (!body.name || !body.url) throw new Error("Name and MCP server URL are required.");
      if (perUser.checked) body.scope = "per_user";
      const m = mode.value;
      if (m === "dcr" || m === "registered") {
        const auth = { type: "oauth2" };
        if (m === "registered") {
          if (!clientId.value.trim()) throw new Error("A registered client needs its client id.");
          auth.client_id = clientId.value.trim();
          auth.use_dcr = false;
          if (clientSecret.value) auth.client_secret = clientSecret.value;
          auth.token_endpoint_auth_method = authMethod.value;
        }
        for (const [k, input] of Object.entries(adv)) {
          const v = input.value.trim();
          if (!v) continue;
          auth[k] = k === "scopes" ? v.split(/\s+/) : v;
        }
        body.auth = auth;
      } else if (m === "static") {
        const t = staticType.value;
        if (t === "bearer") body.auth = { type: "bearer", token: token.value };
        else if (t === "api_key") body.auth = { type: "api_key", header: header.value.trim(), key: token.value };
        else if (t === "custom_headers") {
          let parsed;
          try {
            parsed = JSON.parse(headers.value || "{}");
          } catch {
            throw new Error("Custom headers: not a JSON object.");
          }
          body.auth = { type: "custom_headers", headers: parsed };
        } else body.auth = { type: "none" };
        if (expires.value) body.expires_at = new Date(`${expires.value}T00:00:00Z`).toISOString();
      } else {
        let key;
        try {
          key = JSON.parse(jwk.value);
        } catch {
          throw new Error("Site public key: paste the JWK as JSON.");
        }
        body.auth = { type: "jwt_passthrough", site_public_jwk: key, audience: jwtAud.value.trim() };
        if (jwtIss.value.trim()) body.auth.issuer = jwtIss.value.trim();
      }
      return body;
    };

    const submit = async (withConsent, button) => {
      let doc;
      try {
        doc = spec();
      } catch (e) {
        replace(out, errorBox(e));
        return;
      }
      const win = withConsent ? openPopup() : null; // from the click, before any await
      const made = await busy(button, withConsent ? "Adding…" : "Adding…", () =>
        svc("connectors", "POST", `/connectors${withConsent ? "?authorize=true" : ""}`, doc), out);
      if (!made) {
        if (win) win.close();
        return;
      }
      close(made);
      if (withConsent && made.consent_url) watch(made.name, made.consent_url, win);
      else {
        if (win) win.close();
        toast(`${made.name} added`);
        refresh();
      }
    };
    addBtn.addEventListener("click", () => submit(false, addBtn));
    const form = h("form", { novalidate: true, onsubmit: (ev) => (ev.preventDefault(), submit(true, authBtn)) },
      field("Name", name, "A slug (a-z, 0-9, - and _): it becomes the tools' prefix.")[0],
      field("MCP server URL", url)[0],
      field("Mode", mode)[0],
      h("div.field.inline", {}, perUser, h("label", { for: (perUser.id = "per-user") }, "Per-user connections (each end user consents)")),
      registered, statics, jwt, advanced, out,
      h("div.actions", {}, h("button.ghost", { type: "button", onclick: () => close(null) }, "Cancel"), addBtn, authBtn));
    sync();
    body.append(form);
    name.focus();
  }, { wide: true });
}
