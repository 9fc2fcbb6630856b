// An offline reader of /openapi.json (FastAPI's own /docs loads its assets from a CDN). Text via textContent only.
"use strict";

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) e.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
  return e;
}

function typeOf(schema, doc) {
  if (!schema) return "";
  if (schema.$ref) return schema.$ref.split("/").pop();
  if (schema.anyOf) return schema.anyOf.map((s) => typeOf(s, doc)).join(" | ");
  if (schema.type === "array") return typeOf(schema.items, doc) + "[]";
  return schema.type || "object";
}

function schemaBlock(name, s, doc) {
  const rows = Object.entries(s.properties || {}).map(([k, p]) => el("tr", {},
    el("td", {}, el("code", { text: k })), el("td", { text: typeOf(p, doc) }),
    el("td", { text: (s.required || []).includes(k) ? "required" : "" }), el("td", { text: p.description || "" })));
  return el("section", { class: "panel api-schema", id: "schema-" + name }, el("h3", { text: name }),
    s.description ? el("p", { text: s.description }) : null,
    rows.length ? el("table", { class: "api-table" }, el("tbody", {}, rows)) : null);
}

async function main() {
  const box = document.getElementById("api-docs");
  const doc = await (await fetch("/openapi.json")).json();
  box.textContent = "";
  box.appendChild(el("h2", { text: `${doc.info.title} ${doc.info.version}` }));
  if (doc.info.summary) box.appendChild(el("p", { text: doc.info.summary }));
  if (doc.info.description) box.appendChild(el("p", { text: doc.info.description }));
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const params = (op.parameters || []).map((p) => el("li", {}, el("code", { text: p.name }), ` (${p.in}, ${typeOf(p.schema, doc)}${p.required ? ", required" : ""})` + (p.description ? ` — ${p.description}` : "")));
      const body = op.requestBody ? typeOf(Object.values(op.requestBody.content)[0].schema, doc) : null;
      const resps = Object.entries(op.responses || {}).map(([code, r]) => el("li", {}, el("code", { text: code }), ` ${r.description || ""}`,
        r.content && Object.values(r.content)[0].schema ? ` → ${typeOf(Object.values(r.content)[0].schema, doc)}` : ""));
      box.appendChild(el("section", { class: "panel api-op" },
        el("h3", {}, el("code", { text: method.toUpperCase() }), " ", el("code", { text: path })),
        el("p", { text: op.summary || "" }), op.description ? el("p", { class: "muted", text: op.description }) : null,
        params.length ? [el("strong", { text: "parameters" }), el("ul", {}, params)] : null,
        body ? el("p", {}, el("strong", { text: "body: " }), el("code", { text: body })) : null,
        el("strong", { text: "responses" }), el("ul", {}, resps)));
    }
  }
  box.appendChild(el("h2", { text: "Schemas" }));
  for (const [name, s] of Object.entries((doc.components || {}).schemas || {})) box.appendChild(schemaBlock(name, s, doc));
}

document.addEventListener("DOMContentLoaded", () => main().catch((e) => { document.getElementById("api-docs").textContent = "could not load /openapi.json: " + e.message; }));
