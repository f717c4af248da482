// Approvals: the queue of held calls, Approve / Reject with a reason, updated live (polled
// every 2 s, so a call that arrives or another admin's decision shows without a reload).
import { ago, busy, errorBox, h, pretty, replace, svc, toast } from "../lib.js";

let listEl;
let shown = "";

export async function render(root) {
  listEl = h("div", { "aria-live": "polite" });
  replace(root, h("p.hint", {}, "Updates by itself every 2 seconds."), listEl);
  await load();
  setInterval(load, 2000);
}

async function load() {
  let items;
  try {
    items = await svc("proxy", "GET", "/approvals?status=pending");
  } catch (e) {
    shown = "";
    replace(listEl, errorBox(new Error(`Could not load the approval queue: ${e.message}`)));
    return;
  }
  const key = items.map((a) => a.id).join(",");
  if (key === shown) {
    for (const el of listEl.querySelectorAll("[data-age]")) el.textContent = ago(el.dataset.age);
    return; // unchanged: keep what the admin is typing
  }
  shown = key;
  if (!items.length) return replace(listEl, h("p.empty", {}, "No calls are waiting for approval."));
  replace(listEl, h("table", {}, h("caption.sr-only", {}, "Calls waiting for approval"),
    h("thead", {}, h("tr", {}, ["Tool", "Arguments", "Caller", "Profile", "Waiting", "Decision"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, items.map(row))));
}

function row(a) {
  const reason = h("input", { name: "reason", "aria-label": `Reason for ${a.tool} (${a.id})` });
  const out = h("div");
  const decide = (verb) => async (ev) => {
    const r = await busy(ev.target, verb === "approve" ? "Approving…" : "Rejecting…", () =>
      svc("proxy", "POST", `/approvals/${encodeURIComponent(a.id)}/${verb}`, { reason: reason.value.trim() }), out);
    if (r) {
      toast(`${a.tool}: ${r.status}`);
      shown = "";
      load();
    }
  };
  return h("tr", { dataset: { approval: a.id, tool: a.tool } },
    h("td", {}, h("strong", {}, a.tool)),
    h("td", {}, h("pre", {}, pretty(a.arguments))),
    h("td", {}, a.actor), h("td", {}, a.profile),
    h("td", { dataset: { age: a.created_at } }, ago(a.created_at)),
    h("td", {}, reason, h("div.actions", {},
      h("button", { type: "button", onclick: decide("approve") }, "Approve"),
      h("button.danger", { type: "button", onclick: decide("reject") }, "Reject")), out));
}
