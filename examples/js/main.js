// A plain page using the JS module: no framework, no bundler. Serve the repository root
// (e.g. `python3 -m http.server --bind 127.0.0.1`) and open /examples/js/.
import init, { QuotaTracker } from "../../pkg/quota_core.js";

await init(); // fetches quota_core_bg.wasm next to quota_core.js

const tracker = new QuotaTracker({
  services: [
    { name: "search", limit: 20, period: "minute" },
    { name: "email", limit: 100, period: "day", warnThreshold: 0.6, criticalThreshold: 0.9 },
    { name: "geocode", limit: 500, period: "month" },
  ],
});

const rows = document.getElementById("services");
const status = document.getElementById("status");
const transitions = document.getElementById("transitions");

tracker.onTransition((t) => {
  const item = document.createElement("li");
  const time = new Date(t.atMs).toLocaleTimeString();
  item.textContent = `${time} ${t.service}: ${t.from} → ${t.to} (${t.used}/${t.limit})`;
  item.dataset.service = t.service;
  item.dataset.to = t.to;
  transitions.prepend(item);
});

function button(label, action) {
  const element = document.createElement("button");
  element.textContent = label;
  element.addEventListener("click", () => {
    try {
      status.textContent = action() ?? "";
    } catch (error) {
      status.textContent = error.message; // every bad input throws an Error with a message
    }
    render();
  });
  return element;
}

function render() {
  rows.replaceChildren(
    ...tracker.snapshot().services.map((usage) => {
      const row = document.createElement("tr");
      row.dataset.service = usage.name;
      row.dataset.used = usage.used;
      row.dataset.level = usage.level;
      const cells = [
        usage.name,
        `${usage.used} / ${usage.limit} (${usage.percentUsed.toFixed(0)}%)`,
        usage.level,
        new Date(usage.resetAtMs).toLocaleString(),
      ].map((text) => {
        const cell = document.createElement("td");
        cell.textContent = text;
        return cell;
      });
      cells[1].className = "number";
      const level = document.createElement("span");
      level.className = `level ${usage.level}`;
      level.textContent = usage.level;
      cells[2].replaceChildren(level);
      const actions = document.createElement("td");
      actions.append(
        button("+1", () => {
          tracker.recordCall(usage.name);
        }),
        button("+5", () => {
          tracker.recordCall(usage.name, 5);
        }),
        button("try +1", () => {
          const result = tracker.tryRecord(usage.name);
          return result.allowed ? "" : `${usage.name}: refused, nothing recorded`;
        }),
      );
      actions.dataset.actions = usage.name;
      row.append(...cells, actions);
      return row;
    }),
  );
}

render();
// Windows reset on the clock; a snapshot notices (and reports the transitions).
setInterval(render, 1000);
