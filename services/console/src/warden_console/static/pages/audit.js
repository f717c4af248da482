// Audit: events with the query API's filters, a live tail that can be paused, one call's whole
// history, chain verify, export as JSON lines.
import { busy, errorBox, field, getStream, h, modal, newestOnly, pretty, replace, svc, toast, when } from "../lib.js";

const FILTERS = [["type", "Event type (glob)", "call.*"], ["tool", "Tool (glob)", "notion__*"], ["connector", "Connector (glob)", ""],
  ["profile", "Profile", ""], ["status", "Status", ""], ["call_id", "Call id", ""], ["q", "Text in data", ""]];
let inputs = {};
let tableBody;
let tailCtl = null;
let tailBtn;
let tailState;

const params = () => {
  const p = new URLSearchParams();
  for (const [k, input] of Object.entries(inputs)) if (input.value.trim()) p.set(k, input.value.trim());
  return p;
};

export async function render(root) {
  inputs = {};
  const fields = FILTERS.map(([k, label, ph]) => {
    inputs[k] = h("input", { name: k, placeholder: ph });
    return field(label, inputs[k])[0];
  });
  const out = h("div", { "aria-live": "polite" });
  const searchBtn = h("button", { type: "submit" }, "Search");
  const verifyBtn = h("button.ghost", { type: "button" }, "Verify chain");
  const exportLink = h("a.button", { href: "/api/s/audit/v1/events/export?format=ndjson", download: "warden-audit.jsonl" }, "Export JSON lines");
  tailBtn = h("button.ghost", { type: "button", "aria-pressed": "false" }, "Live tail");
  tailState = h("span.muted", { role: "status" }, "");
  tableBody = h("tbody");
  const verifyOut = h("div", { "aria-live": "polite" });
  const form = h("form.panel", { onsubmit: (ev) => {
    ev.preventDefault();
    exportLink.href = `/api/s/audit/v1/events/export?format=ndjson&${params()}`;
    stopTail();
    load(out);
  } }, h("div.grid2", {}, fields), h("div.actions", {}, exportLink, verifyBtn, tailBtn, searchBtn));
  verifyBtn.addEventListener("click", () => busy(verifyBtn, "Verifying…", async () => {
    const r = await svc("audit", "POST", "/verify");
    const ok = r.ok === true;
    replace(verifyOut, h(ok ? "p.pill.ok" : "p.error", { role: "status", dataset: { verify: ok ? "ok" : "broken" } },
      ok ? `Chain intact: ${r.checked ?? ""} rows checked` : `Chain broken: ${pretty(r.first_break)}`));
  }, verifyOut));
  tailBtn.addEventListener("click", () => (tailCtl ? stopTail() : startTail(out)));
  replace(root, form, verifyOut, h("div.toolbar", {}, tailState), out,
    h("table", {}, h("caption.sr-only", {}, "Audit events, newest first"),
      h("thead", {}, h("tr", {}, ["Time", "Type", "Tool / connector", "Actor", "Status", "Call"].map((c) => h("th", { scope: "col" }, c)))),
      tableBody));
  await load(out);
}

function eventRow(ev) {
  const r = ev.refs || {};
  return h("tr", { dataset: { event: ev.id } },
    h("td", {}, when(ev.time)), h("td", {}, h("code", {}, ev.type)),
    h("td", {}, r.tool || r.connector || "—"),
    h("td", {}, ev.actor ? `${ev.actor.kind}:${ev.actor.id}` : "—"), h("td", {}, ev.status || "—"),
    h("td", {}, r.call_id ? h("button.ghost", { type: "button", onclick: () => history(r.call_id) }, r.call_id.slice(0, 12)) : "—"));
}

const loads = newestOnly();

async function load(out) {
  const current = loads();
  const p = params();
  p.set("limit", "100");
  try {
    const page = await svc("audit", "GET", `/events?${p}`);
    if (!current()) return; // a newer query's answer owns the table
    replace(out);
    replace(tableBody, page.items.length ? page.items.map(eventRow) : h("tr", {}, h("td", { colspan: "6" }, "No events match.")));
  } catch (e) {
    if (current()) replace(out, errorBox(new Error(`Could not query the audit log: ${e.message}`)));
  }
}

function startTail(out) {
  tailCtl = new AbortController();
  tailBtn.setAttribute("aria-pressed", "true");
  tailBtn.textContent = "Pause tail";
  tailState.textContent = "Live: new events appear at the top.";
  const ctl = tailCtl;
  getStream(`/api/s/audit/v1/tail?${params()}`, (name, data) => {
    if (name === "missed") toast(`The tail skipped ${data.count} events`, "error");
    else if (data && data.id) tableBody.prepend(eventRow(data));
  }, ctl.signal).catch((e) => {
    if (ctl.signal.aborted) return;
    replace(out, errorBox(new Error(`The live tail stopped: ${e.message}`)));
    stopTail();
  });
}

function stopTail() {
  if (tailCtl) tailCtl.abort();
  tailCtl = null;
  tailBtn.setAttribute("aria-pressed", "false");
  tailBtn.textContent = "Live tail";
  tailState.textContent = "Paused.";
}

function history(callId) {
  return modal(`Call ${callId}`, async (body) => {
    body.append(h("p.muted", {}, "Loading…"));
    try {
      const x = await svc("audit", "GET", `/executions/${encodeURIComponent(callId)}`);
      const events = x.events || [];
      replace(body,
        h("dl.kv", {}, [["Tool", x.tool], ["State", x.state], ["Status", x.status], ["Profile", x.profile], ["User", x.user],
          ["Approver", x.approver], ["Latency", x.latency_ms != null ? `${Math.round(x.latency_ms)} ms` : null],
          ["Started", when(x.started_at)], ["Finished", when(x.finished_at)]]
          .filter(([, v]) => v != null).map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
        h("h3", {}, "Input (as stored)"), h("pre", { tabindex: "0" }, pretty(x.arguments)),
        h("h3", {}, "Output (as stored)"), h("pre", { tabindex: "0" }, pretty(x.result ?? x.error)),
        h("h3", {}, `Events (${events.length})`),
        h("ol", {}, events.map((e) => h("li", {}, when(e.time), " ", h("code", {}, e.type), e.status ? ` — ${e.status}` : ""))));
    } catch (e) {
      replace(body, errorBox(e));
    }
  }, { wide: true });
}
