// Building the page: elements from data (text only ever as text nodes or attribute values: no
// innerHTML anywhere), the breadcrumb, the connection note, status badges, links to views.

/** An element with properties and children; strings become text nodes. */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value == null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "checked" || key === "value" || key === "disabled") node[key] = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Resolves once what the page changed is on screen: after the next frame's style, layout and
 *  paint (a task posted from requestAnimationFrame runs after the frame it was called in), so
 *  a page's ready mark counts that work too rather than stopping just before it. */
export const painted = () => new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));

/** Links to the page's views (the URL hash) and a run's key among selected runs. */
export const runKey = ([w, p, r]) => JSON.stringify([w, p, r]);
export const runHash = (run) => "#/run/" + run.map(encodeURIComponent).join("/");
export const compareHash = (runs) => "#/compare/" + runs.map((r) => r.map(encodeURIComponent).join("/")).join(",");

export function crumbs(...parts) {
  const nav = document.getElementById("crumbs");
  nav.replaceChildren(...parts.flatMap((p, i) => (i ? [" › ", p] : [p])));
}

export function setConnection(problem) {
  const node = document.getElementById("conn");
  if (node) node.textContent = problem ?? "";
}

export function statusBadge(status) {
  return el("span", { class: `status ${status}`, title: {
    running: "its client is logging (heard from within the server's heartbeat timeout)",
    finished: "closed by its client",
    crashed: "its client stopped without closing it (killed, or lost)" }[status] }, status);
}

