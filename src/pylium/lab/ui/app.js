// pylium Hubble UI: service map (cytoscape), live flow table with filters, detail panel with
// the deciding policy. Talks to the server of `pylium hubble ui` (/api/status, /api/flows,
// /api/map); no build step.
"use strict";

const MAX_ROWS = 500;
const MATCH_TYPES = ["none", "L3-Only", "L3-L4", "L4-Only", "all", "L3-Proto", "Proto-Only"];
const COLOURS = { forwarded: "#2e9e44", dropped: "#d03030", audit: "#d09a20", mixed: "#7a55c0" };
const state = { seq: 0, rows: [], selected: null, nodeIds: "", autoSelect: "" };
const $ = (id) => document.getElementById(id);

function filters() {
  return { namespace: $("f-namespace").value, verdict: $("f-verdict").value, pod: $("f-pod").value.trim() };
}

function query(params) {
  return Object.entries(params).filter(([, v]) => v !== "" && v !== undefined)
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join("&");
}

async function getJSON(path, params) {
  const res = await fetch(params ? `${path}?${query(params)}` : path, { cache: "no-store" });
  if (!res.ok) throw new Error(`${path}: ${res.status}`);
  return res.json();
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else if (k.startsWith("data-")) node.setAttribute(k, v); else node[k] = v;
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function side(flow, which) {
  const ep = flow[which] || {};
  const ip = (flow.IP || {})[which] || "";
  if (ep.pod_name) return `${ep.namespace}/${ep.pod_name}`;
  const reserved = (ep.labels || []).find((l) => l.startsWith("reserved:"));
  return reserved ? `${reserved} ${ip}` : ip;
}

function l4(flow) {
  const l = flow.l4 || {};
  for (const proto of ["TCP", "UDP", "SCTP"]) if (l[proto]) return `${l[proto].destination_port}/${proto}`;
  return l.ICMPv4 ? "ICMPv4" : "";
}

function policyRefs(flow) {
  const out = [];
  for (const dir of ["ingress", "egress"]) {
    for (const how of ["denied", "allowed"]) {
      for (const p of flow[`${dir}_${how}_by`] || []) {
        out.push({ how, dir, text: `${p.kind} ${p.namespace ? p.namespace + "/" : ""}${p.name}` });
      }
    }
  }
  return out;
}

function eventText(flow) {
  const type = (flow.event_type || {}).type;
  if (type === 5) {
    const match = MATCH_TYPES[flow.policy_match_type] ?? flow.policy_match_type;
    return `policy-verdict:${match} ${flow.verdict === "FORWARDED" ? "ALLOWED" : flow.verdict === "DROPPED" ? "DENIED" : flow.verdict}`;
  }
  if (flow.drop_reason_desc) return flow.drop_reason_desc;
  return (flow.trace_observation_point || "").toLowerCase().replace(/_/g, "-");
}

function timeText(ns) {
  const d = new Date(Math.floor(ns / 1e6));
  return d.toISOString().slice(11, 23);
}

function row(flow) {
  const refs = policyRefs(flow);
  const tr = el("tr", { class: "flow", "data-seq": flow.seq, "data-verdict": flow.verdict },
    el("td", {}, timeText(flow.time)),
    el("td", {}, flow.node_name || ""),
    el("td", { class: "src" }, side(flow, "source")),
    el("td", { class: "dst" }, side(flow, "destination")),
    el("td", {}, l4(flow)),
    el("td", { class: `verdict-${flow.verdict}` }, flow.verdict),
    el("td", {}, eventText(flow)),
    el("td", { class: "policy" }, refs.map((r) => `${r.how} by ${r.text}`).join("; ")));
  tr.addEventListener("click", () => select(flow));
  return tr;
}

function renderRows() {
  const body = document.querySelector("#flows tbody");
  body.replaceChildren(...state.rows.slice().reverse().map(row));
  if (state.selected) {
    const tr = body.querySelector(`tr[data-seq="${state.selected.seq}"]`);
    if (tr) tr.classList.add("selected");
  }
}

function select(flow) {
  state.selected = flow;
  const refs = policyRefs(flow);
  const decided = refs.length
    ? refs.map((r) => el("li", { class: `policy-${r.how}` }, `${r.dir} ${r.how} by ${r.text}`))
    : [el("li", {}, flow.verdict === "DROPPED" ? "no policy attribution (not a policy drop)" : "no policy involved")];
  const facts = [
    ["Verdict", flow.verdict], ["Drop reason", flow.drop_reason_desc || "-"], ["Event", eventText(flow)],
    ["Direction", flow.traffic_direction || "-"], ["Node", flow.node_name || "-"],
    ["Source", `${side(flow, "source")} (identity ${(flow.source || {}).identity ?? "?"})`],
    ["Destination", `${side(flow, "destination")} (identity ${(flow.destination || {}).identity ?? "?"})`],
    ["Port", l4(flow) || "-"], ["Summary", flow.Summary || ""],
  ];
  $("detail").replaceChildren(
    el("h2", {}, "Flow"),
    el("dl", {}, ...facts.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])),
    el("h2", {}, "Deciding policy"),
    el("ul", { id: "deciding-policy" }, ...decided),
    el("h2", {}, "JSON"),
    el("pre", {}, JSON.stringify(flow, null, 2)));
  renderRows();
}

async function pollFlows() {
  try {
    const answer = await getJSON("/api/flows", { ...filters(), after: state.seq, limit: MAX_ROWS });
    state.seq = answer.seq;
    if (answer.flows.length) {
      state.rows = state.rows.concat(answer.flows).slice(-MAX_ROWS);
      renderRows();
      if (state.autoSelect && !state.selected) {
        // The newest flow of that verdict, preferring one a policy decided.
        const wanted = state.rows.filter((f) => f.verdict === state.autoSelect.toUpperCase());
        const decided = wanted.filter((f) => policyRefs(f).length);
        const pick = decided.length ? decided : wanted;
        if (pick.length) select(pick[pick.length - 1]);
      }
    }
  } catch (err) {
    console.error(err);
  }
  setTimeout(pollFlows, 1000);
}

let cy = null;

function drawMap(map) {
  $("workloads").replaceChildren(...map.nodes.map((n) =>
    el("li", { "data-kind": n.kind, "data-id": n.id }, n.namespace ? `${n.namespace}/${n.label}` : n.label)));
  if (typeof cytoscape === "undefined") {
    $("map").textContent = "cytoscape is missing: run `make setup` (npm install into ui/)";
    return;
  }
  const elements = [
    ...map.nodes.map((n) => ({ data: { id: n.id, label: n.namespace ? `${n.label}\n${n.namespace}` : n.label, kind: n.kind } })),
    ...map.edges.map((e) => ({ data: { id: e.id, source: e.source, target: e.target, verdict: e.verdict,
      label: e.port ? `${e.port}/${e.protocol}` : e.protocol } })),
  ];
  const ids = elements.map((e) => e.data.id).sort().join("|");
  if (!cy) {
    cy = cytoscape({
      container: $("map"),
      style: [
        { selector: "node", style: { label: "data(label)", "text-wrap": "wrap", "text-valign": "bottom",
          "font-size": 10, "background-color": "#4a6fd0", width: 26, height: 26 } },
        { selector: 'node[kind = "reserved"]', style: { "background-color": "#8a94a6", shape: "round-rectangle" } },
        { selector: "edge", style: { "curve-style": "bezier", "target-arrow-shape": "triangle", width: 2,
          label: "data(label)", "font-size": 9, "line-color": (e) => COLOURS[e.data("verdict")] || "#999",
          "target-arrow-color": (e) => COLOURS[e.data("verdict")] || "#999" } },
      ],
    });
  }
  if (ids !== state.nodeIds) {
    state.nodeIds = ids;
    cy.elements().remove();
    cy.add(elements);
    cy.layout({ name: "breadthfirst", directed: true, padding: 20, spacingFactor: 1.2 }).run();
  } else {
    for (const e of map.edges) cy.getElementById(e.id).data("verdict", e.verdict);
  }
}

async function pollMap() {
  try {
    drawMap(await getJSON("/api/map", { namespace: filters().namespace }));
  } catch (err) {
    console.error(err);
  }
  setTimeout(pollMap, 2000);
}

async function loadStatus() {
  try {
    const status = await getJSON("/api/status");
    $("lab").textContent = `· lab ${status.lab}`;
    const select = $("f-namespace");
    const current = select.value;
    select.replaceChildren(el("option", { value: "" }, "all namespaces"),
      ...status.namespaces.map((ns) => el("option", { value: ns }, ns)));
    select.value = current;
    $("pods").replaceChildren(...status.pods.map((p) =>
      el("li", { class: "pod", "data-pod": `${p.namespace}/${p.name}` }, `${p.namespace}/${p.name} (${p.node}, ${p.ip})`)));
    $("nodes").textContent = Object.entries(status.nodes)
      .map(([n, s]) => `${n}: ${s.connected ? "connected" : "unavailable"}`).join(" · ");
  } catch (err) {
    console.error(err);
  }
  setTimeout(loadStatus, 5000);
}

function restart() {
  state.seq = 0;
  state.rows = [];
  state.selected = null;
  renderRows();
}

for (const id of ["f-namespace", "f-verdict", "f-pod"]) $(id).addEventListener("change", () => {
  restart();
  state.nodeIds = "";
});

const params = new URLSearchParams(location.search);
for (const key of ["namespace", "verdict", "pod"]) {
  if (params.get(key)) {
    const input = $(`f-${key}`);
    if (input.tagName === "SELECT" && ![...input.options].some((o) => o.value === params.get(key))) {
      input.append(el("option", { value: params.get(key) }, params.get(key)));
    }
    input.value = params.get(key);
  }
}
state.autoSelect = params.get("select") || "";
loadStatus();
pollFlows();
pollMap();
