// Signing in to a server that needs a key (metrana/server/sessions.py): the key is typed once
// per browser session and POSTed to /api/session, which answers with an HttpOnly, SameSite=Strict
// cookie; the key itself is never kept (not in a variable, not in storage, not in a URL). What
// the page keeps is who is signed in and the session's CSRF value, which requests that change
// anything send as X-Metrana-CSRF (csrfHeaders()). Sign out ends the session on the server.
//   GET    /api/session   {required, signed_in, key: "API key mk_…", role, workspaces, csrf}
//   POST   /api/session   {"key": …}   sign in (401: refused; 429: too many failures, wait)
//   DELETE /api/session                sign out

import { el } from "./dom.js";
import { CSRF_HEADER, earlySession } from "./first_read.js";

let current = null;   // the last answer of /api/session
let known = null;     // the first answer's promise: who the page is, once asked
let prompt = null;    // the sign-in dialog's promise, while it is open

/** Headers a request that changes anything sends (the session's CSRF value, when signed in). */
export function csrfHeaders() {
  return current?.csrf ? { [CSRF_HEADER]: current.csrf } : {};
}

/** The server's answer of who we are (null: none), shown (with a sign-out button) in the
 *  page's header. */
async function ask(answer) {
  const who = await answer;
  if (who) show(who);
  return current;
}

/** Who the page is, asked once (the answer js/first_read.js asked for as the page loaded): a
 *  request that changes anything waits for it, to carry the session's CSRF value when signed
 *  in. A failed ask counts as known (the request goes without, and is refused if it must). */
export function sessionKnown() {
  known ??= ask(earlySession).catch(() => current);
  return known;
}

function show(who) {
  current = who;
  const node = document.getElementById("who");
  if (!node) return;
  if (!who?.signed_in) {
    node.replaceChildren();
    delete document.body.dataset.signedIn;
    return;
  }
  document.body.dataset.signedIn = who.key;
  const scope = who.workspaces.includes("*") ? "every workspace" : who.workspaces.join(", ");
  node.replaceChildren(
    el("span", { class: "muted", title: `${who.role} key of ${scope}` }, `${who.key} · ${who.role}`),
    el("button", { type: "button", id: "sign-out", onclick: signOut }, "Sign out"));
}

async function signOut() {
  await fetch("/api/session", { method: "DELETE", cache: "no-store", body: "{}",
                                headers: { "Content-Type": "application/json", ...csrfHeaders() } });
  show(null);
  location.reload();  // every view asks again, and is refused until someone signs in
}

/** The sign-in dialog; resolves once signed in. Several refused requests share one dialog. */
export function signIn() {
  if (prompt) return prompt;
  prompt = new Promise((resolve) => {
    const input = el("input", { type: "password", autocomplete: "off", required: true,
                                "aria-label": "API key", placeholder: "mk_…" });
    const note = el("p", { class: "muted", role: "alert" });
    const submit = async (event) => {
      event.preventDefault();
      const key = input.value.trim();
      input.value = "";
      const response = await fetch("/api/session", {
        method: "POST", cache: "no-store", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ key }) });
      const body = await response.json().catch(() => null);
      if (!response.ok) {
        note.textContent = response.status === 429
          ? `Too many refused keys: try again in ${response.headers.get("Retry-After") ?? "a few"} s.`
          : "That key was refused. " + (body?.message ?? "");
        input.focus();
        return;
      }
      show(body);
      dialog.close();
      dialog.remove();
      prompt = null;
      resolve();
    };
    const dialog = el("dialog", { id: "sign-in" },
      el("form", { onsubmit: submit },
        el("h2", {}, "Sign in to this server"),
        el("p", { class: "muted" }, "It needs an API key (",
           el("code", {}, "metrana keys create"), " makes one). The key is sent once; this ",
           "browser then keeps only a session cookie, until you sign out or close it."),
        note, input, el("button", { type: "submit" }, "Sign in")));
    dialog.addEventListener("cancel", (e) => e.preventDefault());
    document.body.append(dialog);
    dialog.showModal();
    input.focus();
  });
  return prompt;
}
