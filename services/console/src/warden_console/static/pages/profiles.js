// Profiles and agent keys: profiles with their grants, what a profile's agent sees, create a
// key (shown once, copy button, MCP client config), revoke.
import {
  busy, confirmAction, copyText, enc, errorBox, field, h, modal, pretty, replace, state, svc, toast, when,
} from "../lib.js";

let profilesEl;
let keysEl;

export async function render(root) {
  profilesEl = h("div");
  keysEl = h("div");
  const pname = h("input", { name: "profile_name", placeholder: "e.g. support-bot" });
  const pdesc = h("input", { name: "profile_description" });
  const pout = h("div");
  const pbtn = h("button", { type: "submit" }, "Create profile");
  replace(root,
    h("section.panel", { "aria-labelledby": "h-profiles" }, h("h2", { id: "h-profiles" }, "Profiles"),
      h("form.toolbar", { onsubmit: (ev) => (ev.preventDefault(), busy(pbtn, "Creating…", async () => {
        await svc("registry", "POST", "/profiles", { name: pname.value.trim(), description: pdesc.value.trim() });
        pname.value = "";
        toast("Profile created");
        await loadProfiles();
      }, pout)) }, field("New profile name", pname)[0], field("Description", pdesc)[0], pbtn),
      pout, profilesEl),
    h("section.panel", { "aria-labelledby": "h-keys" }, h("h2", { id: "h-keys" }, "Agent keys"), keysEl));
  await Promise.all([loadProfiles(), loadKeys()]);
}

let grantWarnings = { profile: null, lines: [] };

async function loadProfiles() {
  let profiles;
  try {
    profiles = await svc("registry", "GET", "/profiles");
  } catch (e) {
    replace(profilesEl, errorBox(new Error(`Could not list profiles: ${e.message}`)));
    return;
  }
  if (!profiles.length) return replace(profilesEl, h("p.empty", {}, "No profiles yet."));
  replace(profilesEl, profiles.map((p) => {
    const tool = h("input", { name: "grant_tool", placeholder: "notion__* or a tool name" });
    const reason = h("input", { name: "grant_reason", required: true, placeholder: "why its agents need it" });
    const ro = h("input", { type: "checkbox", "aria-label": `Read-only grant for ${p.name}` });
    const out = h("div");
    if (grantWarnings.profile === p.name) out.append(...grantWarnings.lines.map((w) => h("p.warning", { role: "status" }, w)));
    const add = h("button.ghost", { type: "submit" }, "Add grant");
    return h("article.panel", { dataset: { profile: p.name }, "aria-labelledby": `p-${p.name}` },
      h("h3", { id: `p-${p.name}` }, p.name, " ", h("span.muted", {}, p.description)),
      p.grants.length
        ? h("table", {}, h("caption.sr-only", {}, `Grants of ${p.name}`),
            h("thead", {}, h("tr", {}, ["Pattern", "Read-only", "Reason", "By", ""].map((c) => h("th", { scope: "col" }, c)))),
            h("tbody", {}, p.grants.map((g) => h("tr", {},
              h("td", {}, h("code", {}, g.tool)), h("td", {}, g.read_only ? "yes" : "no"), h("td", {}, g.reason),
              h("td", {}, g.granted_by),
              h("td", {}, h("button.ghost", { type: "button", "aria-label": `Revoke grant ${g.tool}`, onclick: async (ev) => {
                if (!(await confirmAction("Revoke grant?", `${p.name} loses ${g.tool}.`, "Revoke"))) return;
                await busy(ev.target, "Revoking…", async () => {
                  await svc("registry", "DELETE", `/profiles/${enc(p.name)}/grants/${enc(g.id)}`);
                  await loadProfiles();
                }, out);
              } }, "Revoke"))))))
        : h("p.muted", {}, "No grants: its agents see no tool."),
      h("form.toolbar", { onsubmit: (ev) => (ev.preventDefault(), busy(add, "Granting…", async () => {
        if (!reason.value.trim()) throw new Error("Say why: the reason goes into the audit log.");
        const g = await svc("registry", "POST", `/profiles/${enc(p.name)}/grants`, { tool: tool.value.trim(), read_only: ro.checked, reason: reason.value.trim() });
        grantWarnings = { profile: p.name, lines: g.warnings || [] };  // a pattern that matches no tool yet
        await loadProfiles();
      }, out)) }, field(`Grant to ${p.name}`, tool)[0], field("Reason", reason)[0],
        h("label", {}, ro, " read-only"), add),
      out,
      h("div.actions", {},
        h("button.ghost", { type: "button", onclick: () => visible(p.name) }, "What its agents see"),
        h("button", { type: "button", onclick: () => createKey(p.name) }, "Create agent key")));
  }));
}

function visible(profile) {
  return modal(`What ${profile}'s agents see`, async (body) => {
    body.append(h("p.muted", {}, "Loading…"));
    try {
      const v = await svc("registry", "GET", `/profiles/${enc(profile)}/visible`);
      replace(body, v.tools.length
        ? h("ul", {}, v.tools.map((t) => h("li", {}, h("code", {}, t.name), " — ", t.description.slice(0, 120))))
        : h("p", {}, "No tool."), v.has_deferred ? h("p.hint", {}, "Plus deferred tools, found with tool_search.") : null);
    } catch (e) {
      replace(body, errorBox(e));
    }
  });
}

async function loadKeys() {
  let keys;
  try {
    keys = await svc("proxy", "GET", "/agent-keys");
  } catch (e) {
    replace(keysEl, errorBox(new Error(`Could not list agent keys: ${e.message}`)));
    return;
  }
  const live = keys.filter((k) => !k.revoked_at);
  const out = h("div");
  replace(keysEl, out, live.length ? h("table", {}, h("caption.sr-only", {}, "Agent keys"),
    h("thead", {}, h("tr", {}, ["Prefix", "Name", "Profile", "User", "Created", ""].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, live.map((k) => h("tr", { dataset: { key: k.prefix } },
      h("td", {}, h("code", {}, k.prefix)), h("td", {}, k.name), h("td", {}, k.profile), h("td", {}, k.user || "—"),
      h("td", {}, when(k.created_at)),
      h("td", {}, h("button.danger", { type: "button", "aria-label": `Revoke key ${k.prefix}`, onclick: async (ev) => {
        if (!(await confirmAction("Revoke agent key?", `Agents using ${k.prefix} are refused at once.`, "Revoke"))) return;
        await busy(ev.target, "Revoking…", async () => {
          await svc("proxy", "DELETE", `/agent-keys/${enc(k.prefix)}`);
          toast(`Key ${k.prefix} revoked`);
          await loadKeys();
        }, out);
      } }, "Revoke"))))))
    : h("p.muted", {}, "No live agent keys."));
}

function snippets(key) {
  const mcp = state.mcp_url;
  return [
    ["Claude Desktop / Cursor (mcp.json)", pretty({ mcpServers: { warden: { url: "PROXY_URL/mcp", headers: { Authorization: `Bearer ${key}` } } } })],
    ["Python (the mcp package)", `import httpx2\nfrom mcp import Client\nfrom mcp.client.streamable_http import streamable_http_client\n\nhttp = httpx2.AsyncClient(headers={"Authorization": "Bearer ${key}"})\nasync with Client(streamable_http_client("PROXY_URL/mcp", http_client=http)) as c:\n    print([t.name for t in (await c.list_tools()).tools])`],
  ].map(([t, s]) => [t, s.replaceAll("PROXY_URL/mcp", mcp)]);
}

function createKey(profile) {
  return modal(`New agent key for ${profile}`, (body, close) => {
    const name = h("input", { name: "key_name", value: `${profile}-agent` });
    const user = h("input", { name: "key_user", placeholder: "optional: the end user it acts for" });
    const out = h("div");
    const go = h("button", { type: "submit" }, "Create key");
    body.append(h("form", { onsubmit: async (ev) => {
      ev.preventDefault();
      const doc = { name: name.value.trim(), profile };
      if (user.value.trim()) doc.user = user.value.trim();
      const made = await busy(go, "Creating…", () => svc("proxy", "POST", "/agent-keys", doc), out);
      if (!made) return;
      const keyEl = h("p.secret", { id: "new-key", tabindex: "0", "aria-label": "The new agent key" }, made.key);
      replace(body,
        h("p", {}, h("strong", {}, "Copy it now: it is shown only once."), " Warden stores only its hash."),
        keyEl,
        h("div.actions", {}, h("button", { type: "button", onclick: (e) => copyText(made.key, e.target) }, "Copy key")),
        snippets(made.key).map(([t, s]) => [h("h3", {}, t), h("pre", { tabindex: "0" }, s),
          h("div.actions", {}, h("button.ghost", { type: "button", onclick: (e) => copyText(s, e.target) }, `Copy ${t.split(" ")[0]} config`))]),
        h("div.actions", {}, h("button", { type: "button", onclick: () => close(true) }, "Done")));
      loadKeys();
    } }, field("Key name", name)[0], field("User (optional)", user, "Per-user connectors use this user's own tokens.")[0],
      out, h("div.actions", {}, h("button.ghost", { type: "button", onclick: () => close(null) }, "Cancel"), go)));
  }, { wide: true });
}
