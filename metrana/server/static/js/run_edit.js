// Changing a run from its page: its tags and notes (edited in place), its name, and deleting it,
// each through POST /api/manage/… (js/api.js: manage). Renaming and deleting ask first, in a
// dialog that names the run.

import { ApiError, manage } from "./api.js";
import { el, runHash } from "./dom.js";
import { fmtInt } from "./format.js";

/** The run's tags as chips (× removes one) and a field to add one; its notes, saved on blur. */
export function editBox(detail, id) {
  const tags = [...(detail.attributes["sys/tags"]?.value ?? [])];
  const notes = detail.attributes["sys/notes"]?.value ?? "";
  const note = el("span", { class: "muted", role: "status", id: "edit-status" });
  const say = (text, bad = false) => { note.textContent = text; note.className = bad ? "error" : "muted"; };
  const chips = el("span", { class: "tags", id: "run-tags" });
  const save = async (fields, what) => {
    say("saving…");
    try {
      await manage("edit_run", id, fields);
      say(`${what} saved`);
      return true;
    } catch (error) {
      say(`${what} not saved: ${error.message}`, true);
      return false;
    }
  };
  const draw = () => chips.replaceChildren(...tags.map((tag) => el("span", { class: "tag", dataset: { tag } }, tag,
    el("button", { class: "x", type: "button", "aria-label": `remove tag ${tag}`, onclick: async () => {
      const kept = tags.filter((t) => t !== tag);
      if (await save({ tags: kept }, "tags")) { tags.splice(0, tags.length, ...kept); draw(); }
    } }, "×"))));
  draw();
  const input = el("input", { type: "text", placeholder: "add a tag", "aria-label": "add a tag", maxlength: 200,
    onkeydown: async (e) => {
      if (e.key !== "Enter") return;
      const tag = input.value.trim();
      if (!tag || tags.includes(tag)) { input.value = ""; return; }
      if (await save({ tags: [...tags, tag] }, "tags")) { tags.push(tag); input.value = ""; draw(); }
    } });
  let saved = notes;
  const area = el("textarea", { rows: 2, "aria-label": "notes", placeholder: "notes about this run",
    onblur: async () => {
      if (area.value === saved) return;
      if (await save({ notes: area.value }, "notes")) saved = area.value;
    } });
  area.value = notes;
  return el("div", { class: "box edit", id: "edit" },
    el("div", { class: "row" }, el("b", {}, "Tags"), chips, input, note),
    el("div", { class: "row" }, el("b", {}, "Notes"), area));
}

/** A modal dialog asking to confirm; resolves true (confirmed) or false. */
function confirmDialog(title, body, action, extra = null) {
  return new Promise((resolve) => {
    const dialog = el("dialog", { class: "confirm" },
      el("form", { method: "dialog" },
        el("h2", {}, title), ...body, extra,
        el("div", { class: "actions" },
          el("button", { type: "button", class: "plain", value: "cancel", onclick: () => dialog.close("cancel") }, "Cancel"),
          el("button", { type: "submit", class: "danger", value: "ok" }, action))));
    dialog.addEventListener("close", () => { dialog.remove(); resolve(dialog.returnValue === "ok"); });
    document.body.append(dialog);
    dialog.showModal();
  });
}

/** The run's Rename and Delete buttons. */
export function dangerButtons(detail, id) {
  const label = id.join("/");
  const points = detail.series.reduce((a, s) => a + s.point_count, 0);
  const result = el("span", { class: "error", role: "alert" });
  const rename = el("button", { type: "button", class: "plain", id: "rename-run", onclick: async () => {
    const name = el("input", { type: "text", "aria-label": "new name", value: detail.run, required: true });
    if (!await confirmDialog(`Rename run ${label}`, [el("p", {}, "Its points, config and tags stay. A client still logging under the old name has its points refused.")], "Rename", name)) return;
    const wanted = name.value.trim();
    if (!wanted || wanted === detail.run) return;
    try {
      await manage("rename_run", id, { new_name: wanted });
      location.hash = runHash([id[0], id[1], wanted]);
    } catch (error) { result.textContent = `not renamed: ${error.message}`; }
  } }, "Rename…");
  const remove = el("button", { type: "button", class: "danger", id: "delete-run", onclick: async () => {
    const ok = await confirmDialog(`Delete run ${label}?`, [
      el("p", {}, "This removes ", el("b", {}, `${fmtInt(detail.series.length)} series and ${fmtInt(points)} points`),
         " for good. A client still logging to it has its points refused.")], "Delete run");
    if (!ok) return;
    try {
      const done = await manage("delete_run", id, {});
      sessionStorage.setItem("metrana.deleted", `deleted ${label}: ${fmtInt(done.points_removed)} points removed`);
      location.hash = "#/";
    } catch (error) {
      result.textContent = error instanceof ApiError && error.status === 401 ? "the API key was refused" : `not deleted: ${error.message}`;
    }
  } }, "Delete run…");
  return el("span", { class: "danger-zone" }, rename, remove, result);
}
