// Approvals: the queue of held calls, Approve / Reject with a reason, updated live from the
// proxy's queue stream (GET /v1/approvals/stream: the whole queue at once and on every change,
// at any replica), so a call that arrives or another admin's decision shows without a reload.
// When the stream cannot be had (or is slow to answer) or drops, the page polls every 2 s and
// tries the stream again every 15 s.
import { ago, busy, errorBox, getStream, h, pretty, replace, svc, toast } from "../lib.js";

const POLL_MS = 2000;
const RETRY_STREAM_MS = 15000;
let listEl;
let modeEl;
let shown = null; // the ids shown, once something is
let pollTimer = null;

export async function render(root) {
  listEl = h("div", { "aria-live": "polite" });
  modeEl = h("p.hint", { role: "status" }, "Connecting to the live queue…");
  replace(root, modeEl, listEl);
  setInterval(tick, 1000); // the "waiting" ages
  live();
}

function tick() {
  for (const el of listEl.querySelectorAll("[data-age]")) el.textContent = ago(el.dataset.age);
}

/** Follow the proxy's stream; on failure poll until the stream can be had again. */
async function live() {
  let opened = false;
  const slow = setTimeout(startPolling, 5000); // no first answer yet: do not leave the page empty
  try {
    await getStream("/api/s/proxy/v1/approvals/stream", (name, data) => {
      if (name !== "approvals" || !Array.isArray(data)) return;
      if (!opened) {
        opened = true;
        clearTimeout(slow);
        stopPolling();
        listEl.dataset.mode = "live";
        modeEl.textContent = "Live: calls appear and leave as they are held and decided.";
      }
      show(data);
    });
  } catch {
    /* refused or dropped: poll below */
  }
  clearTimeout(slow);
  startPolling();
  setTimeout(live, RETRY_STREAM_MS);
}

function startPolling() {
  listEl.dataset.mode = "polling";
  modeEl.textContent = `The live queue is not available: updating every ${POLL_MS / 1000} seconds.`;
  if (pollTimer === null) {
    load();
    pollTimer = setInterval(load, POLL_MS);
  }
}

function stopPolling() {
  if (pollTimer !== null) clearInterval(pollTimer);
  pollTimer = null;
}

async function load() {
  let items;
  try {
    items = await svc("proxy", "GET", "/approvals?status=pending");
  } catch (e) {
    shown = null;
    replace(listEl, errorBox(new Error(`Could not load the approval queue: ${e.message}`)));
    return;
  }
  show(items);
}

function show(items) {
  const key = items.map((a) => a.id).join(",");
  if (key === shown) return tick(); // unchanged: keep what the admin is typing
  // keep the reasons being typed in rows that stay
  const typed = new Map([...listEl.querySelectorAll("tr[data-approval]")].map((tr) =>
    [tr.dataset.approval, tr.querySelector("input[name=reason]").value]));
  shown = key;
  if (!items.length) return replace(listEl, h("p.empty", {}, "No calls are waiting for approval."));
  replace(listEl, h("table", {}, h("caption.sr-only", {}, "Calls waiting for approval"),
    h("thead", {}, h("tr", {}, ["Tool", "Arguments", "Caller", "Profile", "Waiting", "Decision"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, items.map((a) => row(a, typed.get(a.id) || "")))));
  return undefined;
}

function row(a, typed) {
  const reason = h("input", { name: "reason", value: typed, "aria-label": `Reason for ${a.tool} (${a.id})` });
  const out = h("div");
  const decide = (verb) => async (ev) => {
    const r = await busy(ev.target, verb === "approve" ? "Approving…" : "Rejecting…", () =>
      svc("proxy", "POST", `/approvals/${encodeURIComponent(a.id)}/${verb}`, { reason: reason.value.trim() }), out);
    if (r) {
      toast(`${a.tool}: ${r.status}`);
      if (pollTimer !== null) load(); // live: the stream brings the change
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
