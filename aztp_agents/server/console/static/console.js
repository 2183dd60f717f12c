// aztp-agents console: the live decisions table (server-sent events). Rows are built with
// textContent only: decision fields come from agents and users and are never parsed as HTML.
"use strict";
(function () {
  const table = document.getElementById("decisions");
  if (!table || !window.EventSource) return;
  const status = document.getElementById("live-status");
  const body = table.tBodies[0];
  const setStatus = (state, text) => { status.dataset.state = state; status.textContent = text; };

  function badge(text, kind) {
    const span = document.createElement("span");
    span.className = "badge " + kind;
    span.textContent = text;
    return span;
  }

  function cell(row, content) {
    const td = row.insertCell();
    if (content instanceof Node) td.appendChild(content); else td.textContent = content == null ? "" : String(content);
    return td;
  }

  function add(ev) {
    const row = document.createElement("tr");
    row.className = "fresh";
    row.dataset.seq = ev.seq;
    row.dataset.allowed = ev.allowed ? "true" : "false";
    cell(row, ev.ts);
    cell(row, ev.allowed ? badge("allowed", "ok") : badge("denied", "bad"));
    cell(row, ev.reason);
    cell(row, ev.agentName);
    cell(row, ev.toolName);
    cell(row, ev.flowName);
    cell(row, ev.revision);
    if (ev.explain) {
      const a = document.createElement("a");
      a.href = ev.explain; // a same-origin path built by the server
      a.textContent = "why?";
      cell(row, a);
    } else cell(row, "");
    body.insertBefore(row, body.firstChild);
    while (body.rows.length > 500) body.deleteRow(body.rows.length - 1);
  }

  const source = new EventSource(table.dataset.stream);
  source.onopen = () => setStatus("live", "live");
  source.onerror = () => setStatus("down", "disconnected, retrying…");
  source.onmessage = (msg) => add(JSON.parse(msg.data));
  source.addEventListener("ended", () => { source.close(); setStatus("down", "session ended: sign in again"); });
})();
