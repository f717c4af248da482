// Try it: pick a tool a profile sees (grouped by connector, favorites first), fill a form made
// from its input schema (or raw JSON), run it as that profile (and user) through the proxy's
// SSE call. A per-user connection shows an inline connector card (Connection required →
// Verifying connection… → Connected) and the call resumes by itself; a held call says so.
import { busy, enc, errorBox, field, h, newestOnly, nextId, openPopup, pill, poll, postStream, pretty, replace, svc } from "../lib.js";

let profileSel;
let userInput;
let toolSel;
let formEl;
let resultEl;
let tools = [];
let favorites = new Set();
let getArgs = () => ({});
const toolLoads = newestOnly(); // a late answer for an earlier profile must not replace the newest

export async function render(root) {
  profileSel = h("select", { name: "profile" });
  userInput = h("input", { name: "user", placeholder: "optional: run for this end user" });
  toolSel = h("select", { name: "tool" });
  formEl = h("div");
  resultEl = h("div", { "aria-live": "polite" });
  const runBtn = h("button", { type: "submit" }, "Run");
  replace(root, h("form.panel", { onsubmit: (ev) => (ev.preventDefault(), run(runBtn)) },
    h("div.grid2", {}, field("Run as profile", profileSel)[0], field("User", userInput, "For per-user connectors")[0]),
    field("Tool", toolSel)[0], formEl, h("div.actions", {}, runBtn)), resultEl);
  let profiles;
  try {
    profiles = await svc("registry", "GET", "/profiles");
    favorites = new Set((await svc("registry", "GET", "/tools?favorite=true")).map((t) => t.name));
  } catch (e) {
    replace(formEl, errorBox(new Error(`Could not load profiles: ${e.message}`)));
    return;
  }
  if (!profiles.length) return replace(formEl, h("p.empty", {}, "No profiles yet: create one on Profiles & keys."));
  profileSel.append(...profiles.map((p) => h("option", { value: p.name }, p.name)));
  profileSel.addEventListener("change", loadTools);
  toolSel.addEventListener("change", buildForm);
  await loadTools();
}

async function loadTools() {
  const current = toolLoads();
  let answer;
  try {
    answer = (await svc("registry", "GET", `/profiles/${enc(profileSel.value)}/visible`)).tools;
  } catch (e) {
    if (current()) replace(formEl, errorBox(new Error(`Could not list the profile's tools: ${e.message}`)));
    return;
  }
  if (!current()) return; // the profile changed while this answer was on its way
  tools = answer;
  const groups = new Map();
  const sorted = [...tools].sort((a, b) => (favorites.has(b.name) - favorites.has(a.name)) || a.name.localeCompare(b.name));
  for (const t of sorted) {
    const g = t.name.includes("__") ? t.name.split("__")[0] : "other";
    if (!groups.has(g)) groups.set(g, []);
    groups.get(g).push(t);
  }
  replace(toolSel, [...groups].map(([g, ts]) => h("optgroup", { label: g },
    ts.map((t) => h("option", { value: t.name }, `${favorites.has(t.name) ? "★ " : ""}${t.name}`)))));
  buildForm();
}

/** A form for a JSON schema: strings, numbers, booleans, enums, nested objects, arrays (as JSON). */
function schemaFields(schema, path = []) {
  const props = (schema && schema.properties) || {};
  const required = new Set((schema && schema.required) || []);
  const readers = [];
  const nodes = Object.entries(props).map(([name, s]) => {
    const label = `${[...path, name].join(".")}${required.has(name) ? " (required)" : ""}`;
    const hint = s.description || undefined;
    if (s.type === "object" && s.properties) {
      const inner = schemaFields(s, [...path, name]);
      readers.push((out) => {
        const v = inner.read();
        if (Object.keys(v).length || required.has(name)) out[name] = v;
      });
      return h("fieldset", {}, h("legend", {}, label), inner.nodes);
    }
    let input;
    let read;
    if (Array.isArray(s.enum)) {
      input = h("select", { name }, required.has(name) ? null : h("option", { value: "" }, "—"),
        s.enum.map((v) => h("option", { value: JSON.stringify(v) }, String(v))));
      read = () => (input.value === "" ? undefined : JSON.parse(input.value));
    } else if (s.type === "boolean") {
      input = h("input", { type: "checkbox", name });
      read = () => input.checked;
    } else if (s.type === "integer" || s.type === "number") {
      input = h("input", { type: "number", name, step: s.type === "integer" ? "1" : "any", required: required.has(name) });
      read = () => (input.value === "" ? undefined : Number(input.value));
    } else if (s.type === "array" || s.type === "object") {
      input = h("textarea", { name, placeholder: s.type === "array" ? "[ ]" : "{ }" });
      read = () => {
        if (!input.value.trim()) return undefined;
        try {
          return JSON.parse(input.value);
        } catch {
          throw new Error(`${label}: not valid JSON`);
        }
      };
    } else {
      input = h("input", { type: "text", name, required: required.has(name) });
      read = () => (input.value === "" ? undefined : input.value);
    }
    readers.push((out) => {
      const v = read();
      if (v !== undefined) out[name] = v;
      else if (required.has(name)) throw new Error(`${label.replace(" (required)", "")} is required`);
    });
    return field(label, input, hint)[0];
  });
  return { nodes, read: () => readers.reduce((out, r) => (r(out), out), {}) };
}

function buildForm() {
  const t = tools.find((x) => x.name === toolSel.value);
  if (!t) {
    getArgs = () => ({});
    return replace(formEl, h("p.empty", {}, "This profile sees no tool. Grant some on Profiles & keys."));
  }
  const generated = schemaFields(t.input_schema || {});
  const raw = h("textarea", { name: "raw_arguments" }, "{}");
  const [rawWrap] = field("Arguments as JSON", raw);
  const useRaw = h("input", { type: "checkbox", id: nextId("raw") });
  const gen = h("div", {}, generated.nodes.length ? generated.nodes : h("p.muted", {}, "This tool takes no arguments."));
  rawWrap.hidden = true;
  useRaw.addEventListener("change", () => {
    if (useRaw.checked) {
      try {
        raw.value = pretty(generated.read());
      } catch {
        /* keep what is there */
      }
    }
    rawWrap.hidden = !useRaw.checked;
    gen.hidden = useRaw.checked;
  });
  getArgs = () => {
    if (!useRaw.checked) return generated.read();
    let v;
    try {
      v = JSON.parse(raw.value || "{}");
    } catch {
      throw new Error("Arguments: not valid JSON");
    }
    if (typeof v !== "object" || Array.isArray(v) || v === null) throw new Error("Arguments must be a JSON object");
    return v;
  };
  replace(formEl, t.description ? h("p.hint", {}, t.description) : null, gen,
    h("div.field.inline", {}, useRaw, h("label", { for: useRaw.id }, "Edit raw JSON instead")), rawWrap);
}

function renderResult(r) {
  const parts = (r.content || []).map((c) => {
    if (c.type === "text") return h("pre", { tabindex: "0" }, c.text);
    if (c.type === "image") return h("img", { src: `data:${c.mimeType || c.mime_type};base64,${c.data}`, alt: "Image the tool returned" });
    return h("pre", { tabindex: "0" }, pretty(c));
  });
  const structured = r.structuredContent || r.structured_content;
  return h(`div.panel`, { dataset: { outcome: r.isError || r.is_error ? "error" : "ok" } },
    h("h2", {}, r.isError || r.is_error ? "The tool answered with an error" : "Result"), parts,
    structured ? [h("h3", {}, "Structured content"), h("pre", { tabindex: "0" }, pretty(structured))] : null);
}

function consentCard(connector, url, user) {
  const pillBox = h("span", {}, pill("connection_required"));
  const out = h("div");
  const btn = h("button", { type: "button" }, "Connect");
  const card = h("section.connector-card", { "aria-label": `Connection to ${connector}`, dataset: { consent: connector } },
    h("h3", {}, connector), pillBox,
    h("p", {}, `This call needs ${user ? `${user}'s` : "your"} own connection to ${connector}. The call waits and resumes by itself.`),
    out, h("div.actions", {}, btn));
  btn.addEventListener("click", () => {
    const win = openPopup(url);
    replace(pillBox, pill("verifying"));
    btn.disabled = true;
    poll(async () => {
      try {
        const s = await svc("connectors", "GET", `/connectors/${enc(connector)}/connections/${enc(user || "")}`);
        return s.status === "connected" ? s : false;
      } catch {
        return false;
      }
    }, { limitMs: 10 * 60 * 1000 }).then((s) => {
      if (win && !win.closed) win.close();
      btn.disabled = false;
      if (s) {
        replace(pillBox, pill("connected"));
        if (s.scopes && s.scopes.length) out.replaceChildren(h("p.hint", {}, `Scopes: ${s.scopes.join(" ")}`));
        btn.hidden = true;
      } else {
        replace(pillBox, pill("connection_required"));
        replace(out, errorBox(new Error("No connection within 10 minutes: try Connect again.")));
      }
    });
  });
  return card;
}

async function run(btn) {
  let args;
  try {
    args = getArgs();
  } catch (e) {
    return replace(resultEl, errorBox(e));
  }
  const tool = toolSel.value;
  const profile = profileSel.value;
  const user = userInput.value.trim();
  if (!tool) return replace(resultEl, errorBox(new Error("Pick a tool.")));
  const status = h("p", { role: "status" }, "Starting…");
  const cards = h("div");
  const errors = h("div");
  replace(resultEl, status, cards);
  let done = false;
  let heldCard = null;
  const watchHeld = async () => {
    while (!done) {
      await new Promise((r) => setTimeout(r, 1500));
      if (done) break;
      try {
        const held = (await svc("proxy", "GET", "/approvals?status=pending")).filter((a) => a.tool === tool && a.profile === profile);
        if (held.length && !heldCard) {
          heldCard = h("section.connector-card", { dataset: { held: tool } }, h("h3", {}, "Held for approval"),
            h("span.pill.warn", {}, "Waiting for an admin"), h("p", {}, "An admin decides on the Approvals page; this updates when they do."));
          cards.append(heldCard);
        } else if (!held.length && heldCard) {
          replace(heldCard, h("h3", {}, "Approval decided"), h("span.pill.ok", {}, "Decided"));
        }
      } catch {
        /* the proxy's approval list is an extra; the call itself still reports */
      }
    }
  };
  await busy(btn, "Running…", async () => {
    replace(resultEl, status, cards, errors);
    watchHeld();
    try {
      await postStream(`/api/try/${enc(tool)}`, { profile, user: user || null, arguments: args }, (name, data) => {
        if (name === "started") status.textContent = `Running ${data.tool}…`;
        else if (name === "progress") status.textContent = `Progress: ${data.progress}${data.total ? ` / ${data.total}` : ""} ${data.message || ""}`;
        else if (name === "consent") {
          status.textContent = "Waiting for a connection…";
          cards.append(consentCard(data.connector, data.url, user));
        } else if (name === "result") {
          status.textContent = "Done.";
          resultEl.append(renderResult(data));
        } else if (name === "error") {
          status.textContent = "Failed.";
          resultEl.append(h("div.panel", { dataset: { outcome: "refused" } }, h("h2", {}, "The call failed"),
            h("p.error", { role: "alert" }, `${data.code}: ${data.message}`)));
        }
      });
    } finally {
      done = true;
    }
    if (status.textContent.startsWith("Running") || status.textContent.startsWith("Starting")) status.textContent = "The stream ended without a result.";
  }, errors);
}
