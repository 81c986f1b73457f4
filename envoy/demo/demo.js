// The demo page: one card per operation class of the caller's plan, each
// with a meter, the warning, the block message, the reset countdown and the
// upgrade link; a class with several limits (a team's pool and each member's
// share, or 5 hours and a week) gets one labelled meter per limit, the
// binding one marked. Every number and sentence comes from the quota filter,
// read with the quota-client package; this file only draws. A class metered
// in money shows money ("$0.45 of $1.00 used"): amounts.js writes the numbers.

import init, { fromHeaders, fromUsage } from "./quota-client/quota_client.js";
import { meterValues, numbersLine, valueText } from "./amounts.js";

const USAGE_PATH = "/v1/quota";

// What each class of the demo matrix (envoy/demo-config.json) is, as a request
// that the filter classifies into it. Classes without an entry get no button.
const OPERATIONS = {
  drafts: {
    button: "Write a draft",
    path: "/v1/chat/completions",
    body: { model: "gpt-4o", messages: [{ role: "user", content: "Draft a note to the team." }] },
  },
  summaries: {
    button: "Summarise",
    path: "/v1/chat/completions",
    body: { model: "gpt-4o-mini", messages: [{ role: "user", content: "Summarise this thread." }] },
  },
  deep_research: {
    button: "Start deep research",
    path: "/v1/research/start",
    body: { topic: "Quota design in AI products" },
  },
  batch_records: {
    button: "Submit a batch job",
    path: "/v1/batches",
    body: { input_file_id: "file-demo", endpoint: "/v1/chat/completions" },
  },
  // Metered in money: the filter reserves the prompt and max_tokens at the
  // model's price, then settles to what the upstream reported.
  premium_chat: {
    button: "Ask the premium model",
    path: "/v1/premium/chat/completions",
    body: {
      model: "gpt-4o",
      max_tokens: 1000,
      messages: [{ role: "user", content: "Plan the launch of our new product." }],
    },
  },
};

const BADGES = {
  ok: "OK",
  warning: "Warning",
  degraded: "Lighter model",
  overage: "Overage",
  queued: "Queued",
  blocked: "Blocked",
  not_included: "Not in plan",
  confirmation_required: "Confirm",
  unavailable: "Unavailable",
};

// States in which requests still go through (with a sentence past "ok").
const ADMITTED = new Set(["ok", "warning", "degraded", "overage", "queued"]);

const $ = (id) => document.getElementById(id);
const cards = new Map(); // class -> { el, state, label, upgradeText, rows }
let tierLabel = "";
let loading = null;
let readAgain = false;

function identity() {
  const headers = { "x-user-id": $("user").value.trim(), "x-plan": $("tier").value };
  const workspace = $("workspace").value.trim();
  if (workspace) headers["x-workspace-id"] = workspace;
  return headers;
}

function showProblem(text) {
  $("problem").textContent = text;
  $("problem").hidden = !text;
}

/**
 * Reads the caller's standing in every class and redraws every card. Asked
 * again while a read is under way, it reads once more after that one, so the
 * last drawing is never older than the last response.
 */
function loadUsage() {
  if (loading) {
    readAgain = true;
    return loading;
  }
  loading = (async () => {
    try {
      const res = await fetch(USAGE_PATH, { headers: { ...identity(), accept: "application/json" } });
      const text = await res.text();
      if (!res.ok) {
        showProblem(`GET ${USAGE_PATH} answered ${res.status}: ${text}`);
        return;
      }
      const report = JSON.parse(text);
      tierLabel = report.tier_label ?? report.tier ?? "";
      $("plan").textContent =
        `${report.user ?? "Anonymous"} on the ${tierLabel} plan` +
        (report.workspace ? `, workspace ${report.workspace}` : "");
      showProblem("");
      const states = fromUsage(report);
      const seen = new Set();
      for (const state of states) {
        seen.add(state.class);
        const card = cardFor(state);
        card.label = state.label ?? card.label;
        card.upgradeText = state.upgradeText;
        card.state = state;
        render(card);
      }
      for (const [name, card] of cards) {
        if (!seen.has(name)) {
          card.el.remove();
          cards.delete(name);
        }
      }
    } catch (err) {
      showProblem(`Could not read ${USAGE_PATH}: ${err}`);
    } finally {
      loading = null;
      if (readAgain) {
        readAgain = false;
        loadUsage();
      }
    }
  })();
  return loading;
}

function cardFor(state) {
  let card = cards.get(state.class);
  if (card) return card;
  const el = $("class-card").content.firstElementChild.cloneNode(true);
  const titleId = `class-${state.class}`;
  el.dataset.class = state.class;
  el.querySelector(".card-title").id = titleId;
  el.setAttribute("aria-labelledby", titleId);
  el.querySelector(".meter").setAttribute("aria-labelledby", titleId);
  const button = el.querySelector(".act");
  const op = OPERATIONS[state.class];
  if (op) {
    button.textContent = op.button;
    button.addEventListener("click", () => send(state.class));
  } else {
    button.remove();
  }
  card = { el, state, label: state.label ?? state.class, upgradeText: undefined, rows: [] };
  cards.set(state.class, card);
  $("classes").append(el);
  return card;
}

/** Sends the class's request and redraws its card from the response alone. */
async function send(name) {
  const op = OPERATIONS[name];
  const card = cards.get(name);
  const button = card.el.querySelector(".act");
  button.disabled = true;
  try {
    const res = await fetch(op.path, {
      method: "POST",
      headers: { ...identity(), "content-type": "application/json", accept: "application/json" },
      body: JSON.stringify(op.body),
    });
    const body = await res.text();
    // A refusal's body carries the sentence to show; an answer's is the model's.
    const state = fromHeaders(res.headers, res.ok ? null : body);
    showLast(`POST ${op.path}`, res, state);
    if (state) {
      card.state = state;
      render(card);
      // Several limits: the headers gave the binding one's use (and every
      // limit's quota); the usage endpoint has the others'.
      if (state.meters.some((m) => m.used === undefined)) loadUsage();
    }
  } catch (err) {
    showProblem(`The request failed: ${err}`);
  } finally {
    button.disabled = false;
  }
}

function showLast(what, res, state) {
  const lines = [`${what} -> ${res.status} ${res.statusText}`];
  for (const [name, value] of res.headers) {
    if (name.startsWith("x-quota-") || name.startsWith("ratelimit") || name === "retry-after") {
      lines.push(`${name}: ${value}`);
    }
  }
  if (state) lines.push("", `fromHeaders(...) = ${JSON.stringify(state, null, 2)}`);
  $("last-response").textContent = lines.join("\n");
}

const timeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

function render(card) {
  const { el, state } = card;
  const name = state.state;
  el.dataset.state = name;
  el.querySelector(".card-title").textContent = card.label;
  el.querySelector(".badge").textContent = BADGES[name] ?? name;

  const meter = el.querySelector(".meter");
  const numbers = el.querySelector(".numbers");
  const stacked = renderLimits(card);
  meter.hidden = stacked;
  numbers.hidden = stacked;
  const { max, value } = meterValues(state);
  meter.max = max;
  meter.value = value;
  numbers.textContent = numbersLine(state, tierLabel);
  if (state.limit !== undefined) {
    meter.setAttribute("aria-valuetext", valueText(state));
  } else {
    meter.setAttribute("aria-valuetext", numbers.textContent || "no numbers");
  }

  const warning = el.querySelector(".warning");
  warning.textContent = state.warning ?? "";
  warning.hidden = !state.warning;

  // The wall, a class outside the plan, a needed confirmation: the filter's
  // own sentence (from the refusal's body), with its reset time and upgrade.
  const refused = !ADMITTED.has(name);
  const blocked = el.querySelector(".blocked");
  el.querySelector(".blocked-message").textContent = state.message ?? "";
  blocked.hidden = !(refused && state.message);

  const upgrade = el.querySelector(".upgrade");
  const link = el.querySelector(".upgrade-link");
  const url = state.upgradeUrl;
  if (url && name !== "ok") {
    link.href = url;
    link.textContent = card.upgradeText ? `Upgrade: ${card.upgradeText.replace(/:\s*\S+$/, "")}` : "See upgrade options";
    upgrade.hidden = false;
  } else {
    upgrade.hidden = true;
  }

  const pace = el.querySelector(".pace");
  pace.textContent = state.paceMessage ?? (state.pace === "ahead" ? "You're using this faster than the window lasts." : "");
  pace.hidden = !pace.textContent;

  tick(card);
}

/**
 * A class with several limits: one labelled meter per limit, in the config's
 * order, the binding one marked. A response's headers give only the binding
 * limit's use: the other rows keep what they last showed until the usage
 * endpoint answers. Returns whether the class has several limits.
 */
function renderLimits(card) {
  const { el, state } = card;
  const list = el.querySelector(".limits");
  const meters = state.meters;
  if (meters.length < 2) {
    list.hidden = true;
    list.replaceChildren();
    card.rows = [];
    return false;
  }
  // Another plan may stack other limits: start the rows again.
  const fresh = card.rows.length !== meters.length || meters.some((m, i) => card.rows[i].window !== m.window);
  if (fresh) {
    card.rows = meters.map((m, i) => limitRow(el.dataset.class, i, m.window));
    list.replaceChildren(...card.rows.map((row) => row.el));
  }
  meters.forEach((m, i) => {
    const row = card.rows[i];
    row.el.dataset.binding = String(m.binding);
    row.el.querySelector(".limit-tag").hidden = !m.binding;
    if (m.used === undefined && row.meter) return;
    row.meter = m;
    row.el.dataset.state = m.state ?? "ok";
    row.el.querySelector(".limit-label").textContent = m.label;
    const bar = row.el.querySelector(".limit-meter");
    const { max, value } = meterValues(m);
    bar.max = max;
    bar.value = value;
    bar.setAttribute("aria-valuetext", m.used === undefined ? m.label : valueText(m));
  });
  list.hidden = false;
  return true;
}

function limitRow(className, i, window) {
  const el = $("limit-row").content.firstElementChild.cloneNode(true);
  const labelId = `limit-${className}-${i}`;
  el.querySelector(".limit-label").id = labelId;
  el.querySelector(".limit-meter").setAttribute("aria-labelledby", labelId);
  return { el, window, meter: undefined };
}

/** The countdown to the reset, on the client's clock. */
function tick(card) {
  const { el, state } = card;
  // Limits with windows of their own (5 hours and a week) each say when
  // they reset; limits that reset together leave it to the card's line.
  const resets = new Set(card.rows.map((row) => row.meter?.resetAt?.getTime()));
  for (const row of card.rows) {
    const words = resets.size > 1 ? row.meter?.resetInWords : undefined;
    const reset = row.el.querySelector(".limit-reset");
    reset.textContent = words === undefined ? "" : `Resets in ${words}`;
    reset.hidden = words === undefined;
  }
  const reset = el.querySelector(".reset");
  const words = state.resetInWords;
  if (words === undefined || state.state === "not_included") {
    reset.hidden = true;
    return;
  }
  el.querySelector(".reset-in").textContent = words;
  const at = el.querySelector(".reset-at");
  const when = state.resetAt;
  if (when) {
    at.dateTime = when.toISOString();
    at.textContent = timeFormat.format(when);
  }
  reset.hidden = false;
}

function everySecond() {
  let due = false;
  for (const card of cards.values()) {
    tick(card);
    // Used units count against a window that has now ended: read again.
    if (card.state.hasReset && (card.state.used ?? 0) > 0) due = true;
    if (card.rows.some((row) => row.meter?.hasReset && (row.meter.used ?? 0) > 0)) due = true;
  }
  if (due) loadUsage();
}

function randomUser() {
  return `visitor-${Math.random().toString(36).slice(2, 6)}`;
}

async function main() {
  const params = new URLSearchParams(location.search);
  $("user").value = params.get("user") ?? randomUser();
  if (params.get("tier")) $("tier").value = params.get("tier");
  $("identity").addEventListener("submit", (e) => {
    e.preventDefault();
    loadUsage();
  });
  $("tier").addEventListener("change", () => loadUsage());
  try {
    await init();
  } catch (err) {
    showProblem(`The quota-client package did not load (${err}). Build it with \`make client\`.`);
    return;
  }
  await loadUsage();
  setInterval(everySecond, 1000);
  document.body.dataset.ready = "true";
}

main();
