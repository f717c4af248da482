// The page bootstrap: session (CSRF token), sign-out, the service-health banner, then the
// page's own module renders into #page.
import { api, errorBox, h, replace, state } from "./lib.js";

const PAGES = ["connectors", "tools", "try", "profiles", "approvals", "audit", "me"];

async function signIn() {
  const form = document.getElementById("login");
  const out = document.getElementById("login-error");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const kind = form.querySelector("input[name=kind]:checked").value;
    const secret = form.querySelector("#secret").value;
    const button = form.querySelector("button[type=submit]");
    out.textContent = "";
    if (!secret.trim()) {
      out.textContent = "Enter the admin token or your agent key.";
      return;
    }
    button.disabled = true;
    button.textContent = "Signing in…";
    try {
      const s = await api("POST", "/api/login", { kind, secret });
      location.assign(s.role === "admin" ? "/connectors" : "/me");
    } catch (e) {
      out.textContent = e.message;
      button.disabled = false;
      button.textContent = "Sign in";
    }
  });
}

async function health() {
  const banner = document.getElementById("health");
  try {
    const doc = await api("GET", "/api/health", undefined, { timeout: 8000 });
    const down = Object.entries(doc).filter(([, v]) => v !== "ok");
    replace(
      banner,
      down.length
        ? h("p.warnbar", { role: "alert" }, `Not answering: ${down.map(([n, v]) => `${n} (${v})`).join(", ")}. ` +
            "Pages that need it will say so.")
        : null,
    );
  } catch (e) {
    replace(banner, errorBox(e));
  }
}

async function main() {
  const page = document.body.dataset.page;
  if (page === "login") return signIn();
  if (page === "signed-in") return location.replace(document.getElementById("continue").getAttribute("href"));
  if (!PAGES.includes(page)) return undefined;
  const root = document.getElementById("page");
  const top = document.getElementById("banner");
  top.before(h("div", { id: "health" }));
  try {
    Object.assign(state, await api("GET", "/api/session"));
  } catch (e) {
    replace(root, errorBox(e), h("p", {}, h("a", { href: "/login" }, "Sign in")));
    return undefined;
  }
  document.getElementById("signout").addEventListener("click", async () => {
    try {
      await api("POST", "/api/logout");
    } finally {
      location.assign("/login");
    }
  });
  health();
  try {
    const mod = await import(`./pages/${page}.js`);
    await mod.render(root);
  } catch (e) {
    replace(root, errorBox(e));
  }
  return undefined;
}

main();
