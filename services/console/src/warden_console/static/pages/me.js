// My connections (end users): each per-user connector with Connected / Connection required,
// Connect (consent in a popup, polled until connected) and Disconnect (with confirmation).
import { api, busy, confirmAction, errorBox, h, openPopup, pill, poll, replace, state, toast, when } from "../lib.js";

let listEl;

export async function render(root) {
  listEl = h("div", { "aria-live": "polite" });
  replace(root, h("p", {}, "Services that act for you with your own account. Connect grants access; Disconnect revokes it."), listEl);
  if (state.role !== "user") {
    replace(listEl, h("p.empty", {}, "Sign in with your agent key to see your own connections."));
    return;
  }
  await load();
}

async function load() {
  let doc;
  try {
    doc = await api("GET", "/api/me/connections");
  } catch (e) {
    replace(listEl, errorBox(new Error(`Could not load your connections: ${e.message}`)));
    return;
  }
  if (!doc.connections.length) return replace(listEl, h("p.empty", {}, "No service asks for your own connection."));
  replace(listEl, h("div.cards", {}, doc.connections.map(card)));
}

function card(c) {
  const out = h("div");
  const tid = `me-${c.connector}`;
  const connected = c.status === "connected";
  const connect = h("button", { type: "button" }, connected ? "Reconnect" : "Connect");
  const disconnect = h("button.ghost", { type: "button", hidden: !connected }, "Disconnect");
  const pillBox = h("span", {}, pill(c.status));
  connect.addEventListener("click", async () => {
    const win = openPopup();
    const started = await busy(connect, "Starting…", () => api("POST", `/api/me/connections/${encodeURIComponent(c.connector)}/consent`), out);
    if (!started || !started.consent_url) {
      if (win) win.close();
      return;
    }
    if (win) win.location.href = started.consent_url;
    replace(pillBox, pill("verifying"));
    connect.disabled = true;
    const s = await poll(async () => {
      try {
        const x = await api("GET", `/api/me/connections/${encodeURIComponent(c.connector)}`);
        return x.status === "connected" ? x : false;
      } catch {
        return false;
      }
    }, { limitMs: 10 * 60 * 1000 });
    if (win && !win.closed) win.close();
    connect.disabled = false;
    if (!s) replace(out, errorBox(new Error("No connection within 10 minutes: try again.")));
    else toast(`Connected to ${c.connector}`);
    load();
  });
  disconnect.addEventListener("click", async () => {
    if (!(await confirmAction(`Disconnect ${c.connector}?`, "Your tokens are deleted and revoked; tools that need them ask you to connect again.", "Disconnect"))) return;
    await busy(disconnect, "Disconnecting…", async () => {
      await api("DELETE", `/api/me/connections/${encodeURIComponent(c.connector)}`);
      toast(`Disconnected from ${c.connector}`);
      await load();
    }, out);
  });
  return h("article.card", { "aria-labelledby": tid, dataset: { connector: c.connector, status: c.status } },
    h("h2", { id: tid }, c.connector), h("div.meta", {}, pillBox),
    c.scopes && c.scopes.length ? h("p.hint", {}, `Scopes granted: ${c.scopes.join(" ")}`) : null,
    c.connected_at ? h("p.hint", {}, `Connected ${when(c.connected_at)}`) : null,
    c.reason ? h("p.hint", {}, c.reason) : null,
    out, h("div.actions", {}, disconnect, connect));
}
