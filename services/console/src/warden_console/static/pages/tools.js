// Tools: discovery dialog (facts, subset, alias, "Register N tools", then "Grant to a
// profile" with a reason), the tool table (auto-approve, deferred, favorite toggles, cache,
// refresh), held-for-drift tools with old vs new and Re-approve.
import {
  busy, enc, errorBox, field, h, modal, newestOnly, pretty, replace, svc, toast, toggle,
} from "../lib.js";

let tableEl;
let filters = { connector: "", operation: "", q: "", held: false };
let connectorSel;

export async function render(root) {
  connectorSel = h("select", { name: "connector" }, h("option", { value: "" }, "All connectors"));
  const operation = h("select", { name: "operation" },
    h("option", { value: "" }, "Read and write"), h("option", { value: "read" }, "Read"), h("option", { value: "write" }, "Write"));
  const q = h("input", { type: "search", name: "q", placeholder: "name or description" });
  const held = h("input", { type: "checkbox", id: "held-only" });
  const discoverBtn = h("button", { type: "button" }, "Discover tools…");
  const refreshBtn = h("button.ghost", { type: "button" }, "Refresh tools");
  const out = h("div", { "aria-live": "polite" });
  tableEl = h("div");
  const apply = () => {
    filters = { connector: connectorSel.value, operation: operation.value, q: q.value.trim(), held: held.checked };
    discoverBtn.disabled = !connectorSel.value;
    refreshBtn.disabled = !connectorSel.value;
    load();
  };
  for (const c of [connectorSel, operation, held]) c.addEventListener("change", apply);
  q.addEventListener("input", apply);
  discoverBtn.addEventListener("click", () => discover(connectorSel.value));
  refreshBtn.addEventListener("click", () => busy(refreshBtn, "Refreshing…", async () => {
    const r = await svc("registry", "POST", `/connectors/${enc(connectorSel.value)}/refresh`);
    toast(`Refreshed: ${r.drifted.length} drifted, ${r.restored.length} restored, ${r.missing.length} missing`);
    await load();
  }, out));
  replace(root,
    h("div.toolbar", {},
      field("Connector", connectorSel)[0], field("Operation", operation)[0], field("Search tools", q)[0],
      h("div.field.inline", {}, held, h("label", { for: "held-only" }, "Held for drift only")),
      h("span.spacer"), refreshBtn, discoverBtn),
    out, tableEl);
  discoverBtn.disabled = true;
  refreshBtn.disabled = true;
  try {
    const cs = await svc("connectors", "GET", "/connectors?status=all");
    connectorSel.append(...cs.map((c) => h("option", { value: c.name }, c.name)));
  } catch (e) {
    replace(out, errorBox(new Error(`Could not list connectors: ${e.message}`)));
  }
  await load();
}

const loads = newestOnly();

async function load() {
  const current = loads();
  const p = new URLSearchParams();
  if (filters.connector) p.set("connector", filters.connector);
  if (filters.operation) p.set("operation", filters.operation);
  if (filters.q) p.set("q", filters.q);
  if (filters.held) p.set("held", "true");
  let tools;
  let settings = null;
  try {
    tools = await svc("registry", "GET", `/tools?${p}`);
    if (filters.connector) settings = await svc("registry", "GET", `/connectors/${enc(filters.connector)}`).catch(() => null);
  } catch (e) {
    if (current()) replace(tableEl, errorBox(new Error(`Could not list tools: ${e.message}`)));
    return;
  }
  if (!current()) return; // a newer filter's answer owns the table
  const cache = settings
    ? h("div.field.inline", {}, toggle(`Cache ${filters.connector}'s tool listing`, settings.cache_enabled, async (on) => {
        await svc("registry", "PATCH", `/connectors/${enc(filters.connector)}`, { cache_enabled: on });
        toast(`Cache ${on ? "on" : "off"} for ${filters.connector}`);
      }), h("span", {}, `Cache the listing of ${filters.connector}`))
    : null;
  if (!tools.length) {
    replace(tableEl, cache, h("p.empty", {}, "No registered tools match. Pick a connector and use Discover tools."));
    return;
  }
  const patch = (t, k) => async (v) => {
    await svc("registry", "PATCH", `/tools/${enc(t.name)}`, { [k]: v });
    toast(`${t.name}: ${k.replace("_", "-")} ${v ? "on" : "off"}`);
  };
  replace(tableEl, cache, h("table", {},
    h("caption.sr-only", {}, "Registered tools"),
    h("thead", {}, h("tr", {}, ["Tool", "Operation", "Auto-approve", "Deferred", "Favorite", "State", ""].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, tools.map((t) => h("tr", { dataset: { tool: t.name } },
      h("td", {}, h("strong", {}, t.name), h("div.hint", {}, t.description.slice(0, 140))),
      h("td", {}, t.operation),
      h("td", {}, toggle(`Auto-approve ${t.name}`, t.auto_approve, patch(t, "auto_approve"))),
      h("td", {}, toggle(`Deferred ${t.name}`, t.deferred, patch(t, "deferred"))),
      h("td", {}, toggle(`Favorite ${t.name}`, t.favorite, patch(t, "favorite"))),
      h("td", {}, t.held ? h("span.pill.warn", {}, "Held: changed upstream") : t.missing ? h("span.pill.off", {}, "Missing upstream")
        : !t.enabled ? h("span.pill.off", {}, "Disabled") : h("span.pill.ok", {}, "Live")),
      h("td", {}, h("button.ghost", { type: "button", onclick: () => detail(t) }, t.held ? "Review drift" : "Details")))))));
}

function detail(t) {
  return modal(`Tool ${t.name}`, (body, close) => {
    const parts = [h("p", {}, t.description || h("span.muted", {}, "No description.")),
      h("h3", {}, "Input schema"), h("pre", { tabindex: "0" }, pretty(t.input_schema))];
    if (t.held && t.drift) {
      const out = h("div");
      const btn = h("button", { type: "button" }, "Re-approve");
      btn.addEventListener("click", () => busy(btn, "Re-approving…", async () => {
        await svc("registry", "POST", `/tools/${enc(t.name)}/reapprove`);
        toast(`${t.name} re-approved`);
        close(true);
        load();
      }, out));
      parts.push(h("h3", {}, "What changed upstream"), h("div.grid2", {},
        h("div", {}, h("h3", {}, "Approved"), h("p", {}, t.description), h("pre", { tabindex: "0" }, pretty(t.input_schema))),
        h("div", {}, h("h3", {}, "Now"), h("p", {}, t.drift.description ?? ""), h("pre", { tabindex: "0" }, pretty(t.drift.input_schema ?? t.drift)))),
        out, h("div.actions", {}, btn));
    }
    body.append(...parts);
  }, { wide: true });
}

/** Discovery → register a subset → grant to a profile (or skip). */
export function discover(connector) {
  return modal(`Discover tools of ${connector}`, async (body, close) => {
    body.append(h("p.muted", {}, "Listing the server's tools through the proxy…"));
    let found;
    try {
      found = (await svc("registry", "POST", `/connectors/${enc(connector)}/discover`)).tools;
    } catch (e) {
      replace(body, errorBox(new Error(`Discovery failed: ${e.message}`)));
      return;
    }
    const alias = h("input", { name: "alias", value: connector });
    const rows = found.map((t) => {
      const pick = h("input", { type: "checkbox", checked: !t.registered, disabled: t.registered || !t.name_valid,
        "aria-label": `Register ${t.name}`, dataset: { pick: t.name } });
      const op = h("select", { "aria-label": `Operation of ${t.name}`, dataset: { op: t.name } },
        ["read", "write"].map((o) => h("option", { value: o }, o)));
      op.value = t.operation;
      return { t, pick, op };
    });
    const regBtn = h("button", { type: "submit" });
    const count = () => {
      const n = rows.filter((r) => r.pick.checked).length;
      regBtn.textContent = `Register ${n} tool${n === 1 ? "" : "s"}`;
      regBtn.disabled = n === 0;
    };
    rows.forEach((r) => r.pick.addEventListener("change", count));
    count();
    const out = h("div", { "aria-live": "polite" });
    const form = h("form", {
      onsubmit: async (ev) => {
        ev.preventDefault();
        const chosen = rows.filter((r) => r.pick.checked);
        const doc = { tools: chosen.map((r) => ({ name: r.t.name, operation: r.op.value })) };
        if (alias.value.trim() && alias.value.trim() !== connector) doc.alias = alias.value.trim();
        const r = await busy(regBtn, "Registering…", () => svc("registry", "POST", `/connectors/${enc(connector)}/tools`, doc), out);
        if (!r) return;
        toast(`Registered ${r.registered.length} tool(s)`);
        grantStep(body, close, r.registered);
      },
    },
    field("Alias (the tools' prefix)", alias)[0],
    h("table", {}, h("caption.sr-only", {}, "Discovered tools"),
      h("thead", {}, h("tr", {}, ["Register", "Tool", "Operation", "Registered as"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, rows.map(({ t, pick, op }) => h("tr", {},
        h("td", {}, pick),
        h("td", {}, h("strong", {}, t.name), h("div.hint", {}, t.description.slice(0, 160))),
        h("td", {}, op),
        h("td", {}, t.registered ? "already registered" : t.name_valid ? t.suggested_name : "name out of MCP's rules"))))),
    out, h("div.actions", {}, h("button.ghost", { type: "button", onclick: () => close(null) }, "Cancel"), regBtn));
    replace(body, form);
  }, { wide: true }).then(() => load());
}

async function grantStep(body, close, names) {
  let profiles = [];
  try {
    profiles = await svc("registry", "GET", "/profiles");
  } catch (e) {
    replace(body, errorBox(e));
    return;
  }
  const sel = h("select", { name: "profile" }, h("option", { value: "" }, "New profile…"),
    profiles.map((p) => h("option", { value: p.name }, p.name)));
  const fresh = h("input", { name: "new_profile", placeholder: "profile name" });
  const [freshWrap] = field("New profile name", fresh);
  sel.addEventListener("change", () => (freshWrap.hidden = !!sel.value));
  const reason = h("input", { name: "reason", required: true, placeholder: "why this profile needs them" });
  const readOnly = h("input", { type: "checkbox", id: "grant-ro" });
  const out = h("div", { "aria-live": "polite" });
  const go = h("button", { type: "submit" }, "Grant");
  replace(body, h("form", {
    onsubmit: async (ev) => {
      ev.preventDefault();
      if (!reason.value.trim()) return replace(out, errorBox(new Error("Say why: the reason goes into the audit log.")));
      const ok = await busy(go, "Granting…", async () => {
        let profile = sel.value;
        if (!profile) {
          profile = fresh.value.trim();
          if (!profile) throw new Error("Name the new profile.");
          await svc("registry", "POST", "/profiles", { name: profile, description: reason.value.trim() });
        }
        for (const n of names) {
          await svc("registry", "POST", `/profiles/${enc(profile)}/grants`, { tool: n, read_only: readOnly.checked, reason: reason.value.trim() });
        }
        return profile;
      }, out);
      if (ok) {
        toast(`Granted ${names.length} tool(s) to ${ok}`);
        close(ok);
      }
    },
  },
  h("h3", {}, "Grant to a profile"),
  h("p", {}, `Registered: ${names.join(", ") || "none"}. No profile sees them until a grant says so.`),
  field("Profile", sel)[0], freshWrap, field("Reason", reason)[0],
  h("div.field.inline", {}, readOnly, h("label", { for: "grant-ro" }, "Read-only (only tools whose operation is read)")),
  out, h("div.actions", {}, h("button.ghost", { type: "button", onclick: () => close(null) }, "Skip"), go)));
}
