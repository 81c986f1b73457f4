// A page on another origin than the API: it reads the quota with the
// quota-client package, cross-origin. `?api=` is the API's origin (default
// http://localhost:10000, envoy/examples/cors.yaml), `?user=` and `?tier=`
// the identity this example sends (in production: a bearer token).
//
// What a response says is a QuotaReading (fromResponse): "quota" draws the
// card; "hidden_by_cors" means the API does not expose the quota headers to
// this origin (reading.message says which to list in
// Access-Control-Expose-Headers), so the page says so and redraws from the
// usage endpoint, whose body a page reads whatever the expose list;
// "not_classified" means no quota applies to the request.

import init, { fromResponse, fromUsage } from "./quota-client/quota_client.js";

const params = new URLSearchParams(location.search);
const API = params.get("api") ?? "http://localhost:10000";
const IDENTITY = { "x-user-id": params.get("user") ?? "visitor", "x-plan": params.get("tier") ?? "free" };

const OPERATIONS = {
  drafts: {
    button: "Write a draft",
    path: "/v1/chat/completions",
    body: { model: "gpt-4o", messages: [{ role: "user", content: "Draft a note to the team." }] },
  },
  summaries: {
    button: "Summarise",
    path: "/v1/summaries",
    body: { text: "A long thread to summarise." },
  },
};

const $ = (id) => document.getElementById(id);
const cards = new Map(); // class -> article
let responses = 0;

async function loadUsage() {
  const res = await fetch(`${API}/v1/quota`, { headers: IDENTITY });
  const report = await res.json();
  $("plan").textContent = `${report.user} on the ${report.tier_label ?? report.tier} plan`;
  for (const state of fromUsage(report)) draw(state);
}

function cardFor(name) {
  let el = cards.get(name);
  if (el) return el;
  el = $("class-card").content.firstElementChild.cloneNode(true);
  el.dataset.class = name;
  const title = el.querySelector(".card-title");
  title.id = `class-${name}`;
  el.querySelector(".meter").setAttribute("aria-labelledby", title.id);
  const button = el.querySelector(".act");
  const op = OPERATIONS[name];
  if (op) {
    button.textContent = op.button;
    button.addEventListener("click", () => send(name));
  } else {
    button.remove();
  }
  cards.set(name, el);
  $("classes").append(el);
  return el;
}

function draw(state) {
  const el = cardFor(state.class);
  el.dataset.state = state.state;
  if (state.label) el.querySelector(".card-title").textContent = state.label;
  const meter = el.querySelector(".meter");
  if (state.limit !== undefined) {
    meter.max = state.limit;
    meter.value = Math.min(state.used ?? 0, state.limit);
    // Amber from the soft limit on (the sentence below says when it is the wall).
    meter.optimum = 0;
    meter.low = state.softLimit ?? state.limit;
    meter.high = state.limit;
    const text = `${state.usedText ?? "0"} of ${state.limitText} used`;
    meter.setAttribute("aria-valuetext", text);
    el.querySelector(".numbers").textContent = `${text}, ${state.remainingText ?? "0"} left`;
  }
  el.querySelector(".message").textContent = state.message ?? "";
}

/** Shows what the last response said, and the CORS problem if there is one. */
function showReading(what, res, reading) {
  const line = $("reading");
  line.dataset.kind = reading.kind;
  line.dataset.seq = String(++responses);
  line.textContent = `${what} -> ${res.status}: ${reading.kind}`;
  const problem = $("cors-problem");
  if (reading.kind === "hidden_by_cors") {
    problem.textContent = reading.message;
    problem.hidden = false;
    console.warn(reading.message);
  }
}

async function send(name) {
  const op = OPERATIONS[name];
  const button = cardFor(name).querySelector(".act");
  button.disabled = true;
  try {
    const res = await fetch(`${API}${op.path}`, {
      method: "POST",
      headers: { ...IDENTITY, "content-type": "application/json" },
      body: JSON.stringify(op.body),
    });
    // A refusal's body carries the sentence to show; an answer's is the model's.
    const reading = fromResponse(res, res.ok ? undefined : await res.text());
    showReading(`POST ${op.path}`, res, reading);
    if (reading.quota) draw(reading.quota);
    else if (reading.kind === "hidden_by_cors") await loadUsage();
  } finally {
    button.disabled = false;
  }
}

async function listModels() {
  const res = await fetch(`${API}/v1/models`, { headers: IDENTITY });
  showReading("GET /v1/models", res, fromResponse(res));
}

async function main() {
  $("origins").textContent = `this page is ${location.origin}, the API ${new URL(API).origin}`;
  $("models").addEventListener("click", listModels);
  await init();
  await loadUsage();
  document.body.dataset.ready = "true";
}

main();
