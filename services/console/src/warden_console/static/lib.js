// Shared helpers for every page: requests (CSRF, timeouts, readable errors), DOM building,
// dialogs, pills, the consent popup and an SSE reader for POST streams.

export const state = { csrf: "", role: "", label: "" };

export class ApiError extends Error {
  constructor(message, status, code) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const TIMEOUT_MS = 20000;

/** A JSON request to the console's API. Throws ApiError with a sentence a person can act on. */
export async function api(method, url, body, { timeout = TIMEOUT_MS } = {}) {
  const ctrl = new AbortController();
  const timer = setTimeout(() => ctrl.abort(), timeout);
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = state.csrf;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let r;
  try {
    r = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      signal: ctrl.signal,
    });
  } catch (e) {
    throw new ApiError(
      e.name === "AbortError"
        ? `No answer within ${timeout / 1000} s: the console or a service may be down.`
        : "The console is not reachable: check that Warden is running.",
      0,
      "unavailable",
    );
  } finally {
    clearTimeout(timer);
  }
  if (r.status === 204) return null;
  let doc = null;
  const text = await r.text();
  try {
    doc = text ? JSON.parse(text) : null;
  } catch {
    doc = null;
  }
  if (!r.ok) {
    const err = doc && doc.error ? doc.error : null;
    let msg = err ? err.message : doc && doc.detail ? JSON.stringify(doc.detail) : `HTTP ${r.status}`;
    if (r.status === 401 && url.startsWith("/api/") && !url.startsWith("/api/login")) {
      msg = `${msg} — your session may have ended: sign in again.`;
    }
    throw new ApiError(msg, r.status, err ? err.code : String(r.status));
  }
  return doc;
}

/** The four services' APIs, with the admin session. */
export const svc = (service, method, path, body) => api(method, `/api/s/${service}/v1${path}`, body);

export const enc = encodeURIComponent;

/** h("button.primary", {onclick}, "text", child...) */
export function h(tag, attrs, ...children) {
  const [name, ...classes] = tag.split(".");
  const node = document.createElement(name || "div");
  if (classes.length) node.className = classes.join(" ");
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k === "value") node.value = v;
    else if (k === "checked") node.checked = !!v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

let uid = 0;
export const nextId = (p = "f") => `${p}-${++uid}`;

/** A labelled form field: returns [wrapper, control]. */
export function field(label, control, hint) {
  const id = control.id || nextId();
  control.id = id;
  const wrap = h("div.field", {}, h("label", { for: id }, label), control);
  if (hint) {
    const hid = nextId("hint");
    control.setAttribute("aria-describedby", hid);
    wrap.append(h("p.hint", { id: hid }, hint));
  }
  return [wrap, control];
}

export function errorBox(e) {
  return h("p.error", { role: "alert" }, e instanceof Error ? e.message : String(e));
}

export function replace(node, ...children) {
  node.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
}

/** Run an action with its button disabled and a working label; show the outcome in `out`. */
export async function busy(button, working, fn, out) {
  const label = button.textContent;
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  button.textContent = working;
  if (out) replace(out);
  try {
    return await fn();
  } catch (e) {
    if (out) replace(out, errorBox(e));
    else toast(e.message, "error");
    return undefined;
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
    button.textContent = label;
  }
}

export function toast(message, kind = "info") {
  const region = document.getElementById("banner");
  if (!region) return;
  const item = h(`p.toast.${kind}`, { role: kind === "error" ? "alert" : "status" }, message);
  region.append(item);
  setTimeout(() => item.remove(), 8000);
}

const STATUS = {
  active: ["Active", "ok"],
  connected: ["Connected", "ok"],
  pending: ["Pending consent", "warn"],
  verifying: ["Verifying connection…", "warn"],
  reauth_required: ["Re-authorization required", "warn"],
  expired: ["Expired", "warn"],
  error: ["Error", "bad"],
  disconnected: ["Disconnected", "off"],
  connection_required: ["Connection required", "off"],
};

export function pill(status) {
  const [text, kind] = STATUS[status] || [status, "off"];
  return h(`span.pill.${kind}`, { dataset: { status } }, text);
}

export const statusGroup = (status) =>
  status === "active" ? "active" : status === "disconnected" ? "inactive" : "needs_attention";

/** A modal <dialog>; resolves with the value passed to close(), or null when cancelled. */
export function modal(title, build, { wide = false } = {}) {
  return new Promise((resolve) => {
    const tid = nextId("dlg");
    const dlg = h(`dialog${wide ? ".wide" : ""}`, { "aria-labelledby": tid });
    let done = false;
    const close = (v) => {
      if (done) return;
      done = true;
      dlg.close();
      dlg.remove();
      resolve(v === undefined ? null : v);
    };
    dlg.addEventListener("cancel", (ev) => {
      ev.preventDefault();
      close(null);
    });
    const body = h("div.dialog-body");
    dlg.append(
      h(
        "div.dialog-head",
        {},
        h("h2", { id: tid }, title),
        h("button.ghost", { type: "button", "aria-label": "Close", onclick: () => close(null) }, "×"),
      ),
      body,
    );
    document.body.append(dlg);
    build(body, close);
    dlg.showModal();
  });
}

/** Confirm a destructive action; with `typeName`, the person types that name first. */
export function confirmAction(title, message, confirmLabel, typeName) {
  return modal(title, (body, close) => {
    const ok = h("button.danger", { type: "submit" }, confirmLabel);
    const form = h("form", { onsubmit: (e) => (e.preventDefault(), close(true)) }, h("p", {}, message));
    if (typeName) {
      const [wrap, input] = field(`Type ${typeName} to confirm`, h("input", { type: "text", autocomplete: "off" }));
      ok.disabled = true;
      input.addEventListener("input", () => (ok.disabled = input.value !== typeName));
      form.append(wrap);
    }
    form.append(
      h("div.actions", {}, h("button.ghost", { type: "button", onclick: () => close(false) }, "Cancel"), ok),
    );
    body.append(form);
  });
}

/** Open the provider's consent in a 600×700 popup. Call it from the click itself (popup blockers). */
export function openPopup(url) {
  const w = 600;
  const hgt = 700;
  const left = Math.max(0, window.screenX + (window.outerWidth - w) / 2);
  const top = Math.max(0, window.screenY + (window.outerHeight - hgt) / 2);
  return window.open(url || "about:blank", "warden-consent", `popup,width=${w},height=${hgt},left=${left},top=${top}`);
}

/** Poll `fn` every `ms` until it returns truthy or `limitMs` passes; never spins forever. */
export async function poll(fn, { ms = 1000, limitMs = 600000, stop = () => false } = {}) {
  const end = Date.now() + limitMs;
  while (Date.now() < end && !stop()) {
    const v = await fn();
    if (v) return v;
    await new Promise((r) => setTimeout(r, ms));
  }
  return null;
}

/** POST and read a text/event-stream answer: onEvent(name, data) for each event. */
export async function postStream(url, body, onEvent, signal) {
  const r = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "text/event-stream", "X-CSRF-Token": state.csrf },
    body: JSON.stringify(body),
    credentials: "same-origin",
    signal,
  });
  if (!r.ok || !(r.headers.get("content-type") || "").startsWith("text/event-stream")) {
    let msg = `HTTP ${r.status}`;
    try {
      const doc = await r.json();
      msg = doc.error ? doc.error.message : msg;
    } catch {
      /* not JSON */
    }
    throw new ApiError(msg, r.status, "stream");
  }
  await readSse(r.body, onEvent);
}

export async function readSse(stream, onEvent) {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value;
    let at;
    while ((at = buf.indexOf("\n\n")) >= 0) {
      const chunk = buf.slice(0, at);
      buf = buf.slice(at + 2);
      let name = "message";
      const data = [];
      for (const line of chunk.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      if (!data.length) continue;
      let parsed = data.join("\n");
      try {
        parsed = JSON.parse(parsed);
      } catch {
        /* plain text */
      }
      onEvent(name, parsed);
    }
  }
}

export function initials(name) {
  const parts = name.split(/[-_.\s]+/).filter(Boolean);
  return ((parts[0] || "?")[0] + (parts[1] ? parts[1][0] : (parts[0] || "").slice(1, 2))).toUpperCase();
}

export function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

export function ago(iso) {
  const s = Math.max(0, Math.round((Date.now() - new Date(iso).getTime()) / 1000));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  return `${Math.round(s / 3600)} h`;
}

export async function copyText(text, button) {
  try {
    await navigator.clipboard.writeText(text);
    if (button) {
      const t = button.textContent;
      button.textContent = "Copied";
      setTimeout(() => (button.textContent = t), 1500);
    }
  } catch {
    toast("Copy failed: select the text and copy it by hand.", "error");
  }
}

export const pretty = (v) => JSON.stringify(v, null, 2);

/** GET a text/event-stream (the audit tail); abort with `signal`. */
export async function getStream(url, onEvent, signal) {
  const r = await fetch(url, { headers: { Accept: "text/event-stream" }, credentials: "same-origin", signal });
  if (!r.ok) {
    let msg = `HTTP ${r.status}`;
    try {
      const doc = await r.json();
      msg = doc.error ? doc.error.message : msg;
    } catch {
      /* not JSON */
    }
    throw new ApiError(msg, r.status, "stream");
  }
  await readSse(r.body, onEvent);
}

/** A labelled checkbox used as a toggle in tables. */
export function toggle(label, checked, onchange) {
  const input = h("input", { type: "checkbox", checked, "aria-label": label });
  input.addEventListener("change", async () => {
    input.disabled = true;
    try {
      await onchange(input.checked);
    } catch (e) {
      input.checked = !input.checked;
      toast(e.message, "error");
    } finally {
      input.disabled = false;
    }
  });
  return input;
}

/**
 * For a loader that can be called again before its answer arrives (a filter changed, a key was
 * typed): `const loads = newestOnly();` then in the loader `const current = loads(); … if (!current()) return;` drops every answer but the newest.
 */
export function newestOnly() {
  let n = 0;
  return () => {
    const mine = ++n;
    return () => mine === n;
  };
}
