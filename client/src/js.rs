//! The JavaScript face of the client: `fromHeaders`, `fromResponse`,
//! `fromUsage`, `exposeHeaders` and the `QuotaState` and `QuotaReading`
//! classes. Only translation lives here: JS values in, the pure
//! readers of `quota_core::wire` and `state.rs`, JS values out. Times come
//! from the JS clock (`Date.now()`).

use crate::meter::{number, Meter};
use crate::reading::{expose_headers, origin_of, Origin, Reading, EXPOSE_HEADER};
use crate::state::QuotaState;
use js_sys::{Array, Date, Function, Object, Reflect, JSON};
use quota_core::wire::{read_headers, read_refusal, read_usage, READ_HEADERS};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
/**
 * Response headers in any usual shape: a fetch `Headers`, a `Map`, an array
 * of `[name, value]` pairs, or a plain object (Node's `IncomingHttpHeaders`,
 * axios). Names are matched case-insensitively.
 */
export type HeadersLike =
  | Headers
  | Map<string, string>
  | ReadonlyArray<readonly [string, string]>
  | Record<string, string | readonly string[] | number | null | undefined>;

/** A caller's standing in a class, as `x-quota-state` says it. */
export type QuotaStateName =
  | "ok"
  | "warning"
  | "degraded"
  | "overage"
  | "queued"
  | "blocked"
  | "confirmation_required"
  | "too_large"
  | "not_included"
  | "unavailable"
  | "workspace_required";

/**
 * An ISO 4217 currency code: the currency of a class metered in money.
 *
 * Amounts of such a class (`used`, `limit`, `softLimit`, `remaining`,
 * `cost`, `overage`, `grant`) are numbers in the currency's **major unit**
 * (`4.2` is $4.20; `0.01025` is a request that cost $0.01025), as the
 * `x-quota-*` headers write them, read exactly and handed over as the
 * nearest double. Show them with the `*Text` getters (`"$4.20"`: what was
 * used and what remains rounded down, as the filter's own sentences do),
 * not with `toFixed`. `fractionUsed` is computed before any rounding. For a
 * class counted in units, `currency` is `undefined` and every amount is a
 * whole count (the `*Text` getters give it as text: `"6"`).
 *
 * With the `x-quota-*` headers turned off, a response's IETF `RateLimit`
 * fields alone give a money class's numbers as whole minor units (cents),
 * with no `currency`.
 */
export type CurrencyCode = "USD" | "EUR" | "GBP" | "JPY" | (string & {});

/** `QuotaState.toJSON()`: every getter's value, times as RFC 3339 strings. */
export interface QuotaStateJSON {
  class: string;
  label: string | null;
  tier: string | null;
  scope: string | null;
  currency: CurrencyCode | null;
  used: number | null;
  limit: number | null;
  softLimit: number | null;
  remaining: number | null;
  usedText: string | null;
  limitText: string | null;
  softLimitText: string | null;
  remainingText: string | null;
  fractionUsed: number;
  state: QuotaStateName | (string & {});
  warning: string | null;
  message: string | null;
  resetAt: string | null;
  resetAfterSeconds: number | null;
  resetInWords: string | null;
  upgradeUrl: string | null;
  upgradeText: string | null;
  pace: "ahead" | null;
  paceMessage: string | null;
  cost: number | null;
  costText: string | null;
  degradedTo: string | null;
  overage: number | null;
  overageText: string | null;
  grant: number | null;
  grantText: string | null;
  windowSeconds: number | null;
  window: string | null;
  meters: QuotaMeterJSON[];
}

/** `QuotaMeter.toJSON()`: one limit's values, times as RFC 3339 strings. */
export interface QuotaMeterJSON {
  policy: string | null;
  scope: string | null;
  window: string | null;
  windowSeconds: number | null;
  currency: CurrencyCode | null;
  used: number | null;
  limit: number | null;
  softLimit: number | null;
  remaining: number | null;
  usedText: string | null;
  limitText: string | null;
  softLimitText: string | null;
  remainingText: string | null;
  fractionUsed: number;
  state: QuotaStateName | (string & {}) | null;
  message: string | null;
  resetAt: string | null;
  resetAfterSeconds: number | null;
  resetInWords: string | null;
  binding: boolean;
  label: string;
}

/**
 * The quota state a response reports, from its headers (the `x-quota-*`
 * family, else the IETF `RateLimit` fields) and, for a refusal (429, 403,
 * 428), its JSON body, which carries the sentence to show. `undefined` when
 * the response carries no quota headers (a route the filter does not count,
 * or, on a page on another origin, headers the browser hid: `fromResponse`
 * tells the two apart).
 *
 * ```js
 * const res = await fetch("/v1/chat/completions", { method: "POST", body });
 * const quota = fromHeaders(res.headers, res.ok ? undefined : await res.text());
 * ```
 */
export function fromHeaders(headers: HeadersLike, body?: string | object | null): QuotaState | undefined;

/**
 * One `QuotaState` per class of the caller's tier, from the usage endpoint's
 * JSON (`GET /v1/quota`), as text or parsed. Throws if it is not a report.
 */
export function fromUsage(report: string | object): QuotaState[];

/**
 * A response as `fromResponse` reads it: a fetch `Response`, or any object
 * with its `headers` and, in a browser, its `type` ("cors" for another
 * origin) and `url`.
 */
export interface ResponseLike {
  headers: HeadersLike;
  type?: ResponseType | (string & {});
  url?: string;
}

/**
 * What a response tells about the quota: `"quota"` (read `quota`),
 * `"not_classified"` (no quota applies: the filter did not classify the
 * request, or answered before classifying it, as for a missing identity),
 * or `"hidden_by_cors"` (a response from another origin whose quota headers
 * the browser hid: the API's `Access-Control-Expose-Headers` must list
 * `missingHeaders`; `message` says so).
 */
export type QuotaReadingKind = "quota" | "not_classified" | "hidden_by_cors";

/**
 * Reads a response into a `QuotaReading`: its `quota` state as `fromHeaders`
 * gives it, or why there is none. A page on another origin than the API
 * reads only the headers the API exposes: a response of type `"cors"` with
 * none of the quota headers is `"hidden_by_cors"`, not `"not_classified"`,
 * unless the API exposes `Access-Control-Expose-Headers` itself and it names
 * the quota headers (then the filter really did not classify the request).
 *
 * ```js
 * const res = await fetch(`${API}/v1/chat/completions`, { method: "POST", headers, body });
 * const reading = fromResponse(res, res.ok ? undefined : await res.text());
 * if (reading.quota) draw(reading.quota);
 * else if (reading.kind === "hidden_by_cors") console.warn(reading.message);
 * ```
 */
export function fromResponse(response: ResponseLike, body?: string | object | null): QuotaReading;

/**
 * The response headers an API in front of a page on another origin lists in
 * `Access-Control-Expose-Headers`: every header this client reads, and
 * `access-control-expose-headers` itself (so that the client tells an
 * unclassified request from hidden headers). `exposeHeaders().join(", ")`
 * is the value.
 */
export function exposeHeaders(): string[];

/** `QuotaReading.toJSON()`. */
export interface QuotaReadingJSON {
  kind: QuotaReadingKind;
  quota: QuotaStateJSON | null;
  message: string | null;
  missingHeaders: string[];
}
"#;

/// Where the caller stands in one operation class: the numbers for a meter,
/// the state, the words to show, and when it resets. A class metered in
/// money has a `currency`, and its amounts are in that currency's major
/// unit (see `CurrencyCode`).
#[wasm_bindgen(js_name = QuotaState)]
pub struct JsQuotaState {
    inner: QuotaState,
}

fn count(n: Option<u64>) -> Option<f64> {
    n.map(|n| n as f64)
}

#[wasm_bindgen(js_class = QuotaState)]
impl JsQuotaState {
    /// The operation class: "drafts", "deep_research".
    #[wasm_bindgen(getter = class)]
    pub fn class(&self) -> String {
        self.inner.class.clone()
    }

    /// The class's name for people: "Deep research" (from a refusal or the usage report).
    #[wasm_bindgen(getter)]
    pub fn label(&self) -> Option<String> {
        self.inner.label.clone()
    }

    /// The caller's plan tier: "free", "pro".
    #[wasm_bindgen(getter)]
    pub fn tier(&self) -> Option<String> {
        self.inner.tier.clone()
    }

    /// Whose counter: "user", "workspace" (pooled) or "anonymous".
    #[wasm_bindgen(getter)]
    pub fn scope(&self) -> Option<String> {
        self.inner.scope.clone()
    }

    /// The ISO 4217 code of a class metered in money ("USD"); `undefined`
    /// for a class counted in units.
    #[wasm_bindgen(getter, unchecked_return_type = "CurrencyCode | undefined")]
    pub fn currency(&self) -> Option<String> {
        self.inner.currency.map(|c| c.code().to_string())
    }

    /// Units used in the current window (in money: the amount, 4.2 for $4.20).
    #[wasm_bindgen(getter)]
    pub fn used(&self) -> Option<f64> {
        self.inner.number(self.inner.used)
    }

    /// The hard limit.
    #[wasm_bindgen(getter)]
    pub fn limit(&self) -> Option<f64> {
        self.inner.number(self.inner.limit)
    }

    /// The soft limit, where warnings start (when the plan has one).
    #[wasm_bindgen(getter = softLimit)]
    pub fn soft_limit(&self) -> Option<f64> {
        self.inner.number(self.inner.soft_limit)
    }

    /// `limit - used`, never below 0.
    #[wasm_bindgen(getter)]
    pub fn remaining(&self) -> Option<f64> {
        self.inner.number(self.inner.remaining)
    }

    /// What was used, to show: "6", or in money "$4.20" (rounded down).
    #[wasm_bindgen(getter = usedText)]
    pub fn used_text(&self) -> Option<String> {
        self.inner.used_text()
    }

    /// The hard limit, to show: "10", "$5.00".
    #[wasm_bindgen(getter = limitText)]
    pub fn limit_text(&self) -> Option<String> {
        self.inner.limit_text()
    }

    /// The soft limit, to show: "5", "$4.00".
    #[wasm_bindgen(getter = softLimitText)]
    pub fn soft_limit_text(&self) -> Option<String> {
        self.inner.soft_limit_text()
    }

    /// What remains, to show: "4", "$0.80" (rounded down).
    #[wasm_bindgen(getter = remainingText)]
    pub fn remaining_text(&self) -> Option<String> {
        self.inner.remaining_text()
    }

    /// How full the meter is, from 0 to 1.
    #[wasm_bindgen(getter = fractionUsed)]
    pub fn fraction_used(&self) -> f64 {
        self.inner.fraction_used()
    }

    /// "ok", "warning", "degraded", "overage", "queued" (requests go
    /// through), "blocked", "confirmation_required", "too_large" (the
    /// request could never fit the plan: 413), "not_included",
    /// "unavailable" or "workspace_required" (a newer filter's state is
    /// passed on as sent).
    #[wasm_bindgen(getter, unchecked_return_type = "QuotaStateName | (string & {})")]
    pub fn state(&self) -> String {
        self.inner.state.as_str().to_string()
    }

    /// The sentence for an admitted request past a level: the warning (or
    /// what degraded, overage or queued service means).
    #[wasm_bindgen(getter)]
    pub fn warning(&self) -> Option<String> {
        self.inner.warning.clone()
    }

    /// What to tell the user now: the warning, or the refusal's sentence
    /// (with the reset time and the upgrade hint).
    #[wasm_bindgen(getter)]
    pub fn message(&self) -> Option<String> {
        self.inner.message.clone()
    }

    /// When the window resets.
    #[wasm_bindgen(getter = resetAt)]
    pub fn reset_at(&self) -> Option<Date> {
        self.inner.reset_at.map(|s| Date::new(&JsValue::from_f64(s as f64 * 1000.0)))
    }

    /// Whole seconds until the reset from now (rounded up, 0 once passed),
    /// counted from when the reading was taken.
    #[wasm_bindgen(getter = resetAfterSeconds)]
    pub fn reset_after_seconds(&self) -> Option<f64> {
        self.inner.reset_after_at(now_ms()).map(|s| s as f64)
    }

    /// The time until the reset in words: "4 h 12 min", "45 s".
    #[wasm_bindgen(getter = resetInWords)]
    pub fn reset_in_words(&self) -> Option<String> {
        self.inner.reset_in_words_at(now_ms())
    }

    /// Whether the window has reset since this reading: time to read the
    /// usage endpoint again.
    #[wasm_bindgen(getter = hasReset)]
    pub fn has_reset(&self) -> bool {
        self.inner.has_reset_at(now_ms())
    }

    /// Where an upgrade happens.
    #[wasm_bindgen(getter = upgradeUrl)]
    pub fn upgrade_url(&self) -> Option<String> {
        self.inner.upgrade_url.clone()
    }

    /// What an upgrade gives: "Pro includes 100 a day: https://..." (usage report only).
    #[wasm_bindgen(getter = upgradeText)]
    pub fn upgrade_text(&self) -> Option<String> {
        self.inner.upgrade_text.clone()
    }

    /// "ahead" while the caller burns through a long window far ahead of its pace.
    #[wasm_bindgen(getter, unchecked_return_type = "\"ahead\" | undefined")]
    pub fn pace(&self) -> Option<String> {
        self.inner.pace_ahead.then(|| "ahead".to_string())
    }

    /// The pace sentence, while ahead (usage report only).
    #[wasm_bindgen(getter = paceMessage)]
    pub fn pace_message(&self) -> Option<String> {
        self.inner.pace_message.clone()
    }

    /// Units this request was charged (0 when refused; responses only). A
    /// priced request's is what was reserved for it; the upstream's
    /// reported usage settles it afterwards (read the usage endpoint).
    #[wasm_bindgen(getter)]
    pub fn cost(&self) -> Option<f64> {
        self.inner.number(self.inner.cost)
    }

    /// What this request was charged, to show: "1", "$0.01".
    #[wasm_bindgen(getter = costText)]
    pub fn cost_text(&self) -> Option<String> {
        self.inner.cost_text()
    }

    /// The cheaper model the request was served with (state "degraded").
    #[wasm_bindgen(getter = degradedTo)]
    pub fn degraded_to(&self) -> Option<String> {
        self.inner.degraded_to.clone()
    }

    /// Units past the hard limit in this window (state "overage").
    #[wasm_bindgen(getter)]
    pub fn overage(&self) -> Option<f64> {
        self.inner.number(self.inner.overage)
    }

    /// What is past the hard limit, to show: "100", "$0.63".
    #[wasm_bindgen(getter = overageText)]
    pub fn overage_text(&self) -> Option<String> {
        self.inner.overage_text()
    }

    /// Grant units left (prepaid packs, approvals), when there are any.
    #[wasm_bindgen(getter)]
    pub fn grant(&self) -> Option<f64> {
        self.inner.number(self.inner.grant)
    }

    /// The grant left, to show: "40", "$10.00".
    #[wasm_bindgen(getter = grantText)]
    pub fn grant_text(&self) -> Option<String> {
        self.inner.grant_text()
    }

    /// The window's length in seconds (from `RateLimit-Policy`).
    #[wasm_bindgen(getter = windowSeconds)]
    pub fn window_seconds(&self) -> Option<f64> {
        count(self.inner.window_seconds)
    }

    /// The window's name in the quota matrix: "day", "month", "5h".
    #[wasm_bindgen(getter)]
    pub fn window(&self) -> Option<String> {
        self.inner.window.clone()
    }

    /// One meter per limit of the class, in the config's order: one for a
    /// one-limit cell; for a stacked cell (a team's pool and each member's
    /// share, or 5 hours and a week) one each, the binding one (whose
    /// numbers the getters above give) marked `binding`. Empty when there
    /// are no numbers (a class outside the plan).
    #[wasm_bindgen(getter)]
    pub fn meters(&self) -> Vec<JsQuotaMeter> {
        self.inner.meters.iter().cloned().map(|inner| JsQuotaMeter { inner }).collect()
    }

    /// A plain object with every value (for `JSON.stringify` and logs).
    #[wasm_bindgen(js_name = toJSON, unchecked_return_type = "QuotaStateJSON")]
    pub fn to_json(&self) -> JsValue {
        json_value(self.inner.to_json(now_ms()))
    }
}

/// Where the caller stands against one limit of a class: a meter of its own.
#[wasm_bindgen(js_name = QuotaMeter)]
pub struct JsQuotaMeter {
    inner: Meter,
}

#[wasm_bindgen(js_class = QuotaMeter)]
impl JsQuotaMeter {
    /// The limit's name in the RateLimit fields: "drafts.workspace.day", or
    /// the class's name for a one-limit cell (responses only).
    #[wasm_bindgen(getter)]
    pub fn policy(&self) -> Option<String> {
        self.inner.policy.clone()
    }

    /// Whose counter: "user", "workspace", "organisation" or "anonymous".
    #[wasm_bindgen(getter)]
    pub fn scope(&self) -> Option<String> {
        self.inner.scope.clone()
    }

    /// The window's name in the quota matrix: "day", "5h", "week".
    #[wasm_bindgen(getter)]
    pub fn window(&self) -> Option<String> {
        self.inner.window.clone()
    }

    /// The window's length in seconds (from `RateLimit-Policy`; responses only).
    #[wasm_bindgen(getter = windowSeconds)]
    pub fn window_seconds(&self) -> Option<f64> {
        count(self.inner.window_seconds)
    }

    /// The ISO 4217 code of a class metered in money ("USD"); `undefined`
    /// for a class counted in units.
    #[wasm_bindgen(getter, unchecked_return_type = "CurrencyCode | undefined")]
    pub fn currency(&self) -> Option<String> {
        self.inner.currency.map(|c| c.code().to_string())
    }

    /// Units used in this limit's window (in money: the amount, 4.2 for
    /// $4.20). `undefined` when the reading did not say: an admitted
    /// response's headers give only the binding limit's use (and every
    /// limit's quota); read the usage endpoint for the others.
    #[wasm_bindgen(getter)]
    pub fn used(&self) -> Option<f64> {
        self.amount(self.inner.used)
    }

    /// The hard limit.
    #[wasm_bindgen(getter)]
    pub fn limit(&self) -> Option<f64> {
        self.amount(self.inner.limit)
    }

    /// The soft limit, where warnings start (when the reading says).
    #[wasm_bindgen(getter = softLimit)]
    pub fn soft_limit(&self) -> Option<f64> {
        self.amount(self.inner.soft_limit)
    }

    /// `limit - used`, never below 0 (when the reading says).
    #[wasm_bindgen(getter)]
    pub fn remaining(&self) -> Option<f64> {
        self.amount(self.inner.remaining)
    }

    /// What was used, to show: "30", "$0.45" (rounded down).
    #[wasm_bindgen(getter = usedText)]
    pub fn used_text(&self) -> Option<String> {
        self.inner.used_text()
    }

    /// The hard limit, to show: "50", "$1.00".
    #[wasm_bindgen(getter = limitText)]
    pub fn limit_text(&self) -> Option<String> {
        self.inner.limit_text()
    }

    /// The soft limit, to show: "40", "$0.80".
    #[wasm_bindgen(getter = softLimitText)]
    pub fn soft_limit_text(&self) -> Option<String> {
        self.inner.soft_limit_text()
    }

    /// What remains, to show: "20", "$0.55" (rounded down).
    #[wasm_bindgen(getter = remainingText)]
    pub fn remaining_text(&self) -> Option<String> {
        self.inner.remaining_text()
    }

    /// How full this meter is, from 0 to 1 (0 when its use is unknown).
    #[wasm_bindgen(getter = fractionUsed)]
    pub fn fraction_used(&self) -> f64 {
        self.inner.fraction_used()
    }

    /// This limit's own state, as `QuotaState.state` (when the reading says).
    #[wasm_bindgen(getter, unchecked_return_type = "QuotaStateName | (string & {}) | undefined")]
    pub fn state(&self) -> Option<String> {
        self.inner.state.as_ref().map(|s| s.as_str().to_string())
    }

    /// This limit's sentence: every limit's from the usage endpoint; on a
    /// response, the binding limit's warning or refusal.
    #[wasm_bindgen(getter)]
    pub fn message(&self) -> Option<String> {
        self.inner.message.clone()
    }

    /// When this limit's window resets.
    #[wasm_bindgen(getter = resetAt)]
    pub fn reset_at(&self) -> Option<Date> {
        self.inner.reset_at.map(|s| Date::new(&JsValue::from_f64(s as f64 * 1000.0)))
    }

    /// Whole seconds until this limit resets from now (rounded up, 0 once passed).
    #[wasm_bindgen(getter = resetAfterSeconds)]
    pub fn reset_after_seconds(&self) -> Option<f64> {
        self.inner.reset_after_at(now_ms()).map(|s| s as f64)
    }

    /// The time until this limit resets in words: "4 h 12 min", "45 s".
    #[wasm_bindgen(getter = resetInWords)]
    pub fn reset_in_words(&self) -> Option<String> {
        self.inner.reset_in_words_at(now_ms())
    }

    /// Whether this limit's window has reset since the reading.
    #[wasm_bindgen(getter = hasReset)]
    pub fn has_reset(&self) -> bool {
        self.inner.has_reset_at(now_ms())
    }

    /// Whether this is the binding limit: the one that refused, or changed
    /// how the request was served, else the one with the least room left.
    #[wasm_bindgen(getter)]
    pub fn binding(&self) -> bool {
        self.inner.binding
    }

    /// The meter's caption: "Team: 120 of 300 today", "You: 30 of 50
    /// today", "You: 2 of 45 in this 5-hour window", "You: $0.45 of $1.00
    /// today" ("Team: up to 300 today" while the use is unknown).
    #[wasm_bindgen(getter)]
    pub fn label(&self) -> String {
        self.inner.label()
    }

    /// A plain object with every value (for `JSON.stringify` and logs).
    #[wasm_bindgen(js_name = toJSON, unchecked_return_type = "QuotaMeterJSON")]
    pub fn to_json(&self) -> JsValue {
        json_value(self.inner.to_json(now_ms()))
    }
}

impl JsQuotaMeter {
    fn amount(&self, n: Option<u64>) -> Option<f64> {
        number(n, self.inner.currency.as_ref())
    }
}

fn json_value(value: serde_json::Value) -> JsValue {
    JSON::parse(&value.to_string()).unwrap_or(JsValue::NULL)
}

fn now_ms() -> i64 {
    Date::now() as i64
}

#[wasm_bindgen(js_name = fromHeaders, skip_typescript)]
pub fn from_headers(headers: JsValue, body: JsValue) -> Option<JsQuotaState> {
    let pairs = header_pairs(&headers);
    let reading = read_headers(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    let refusal = body_text(&body).as_deref().and_then(read_refusal);
    QuotaState::from_response(reading, refusal, now_ms()).map(|inner| JsQuotaState { inner })
}

#[wasm_bindgen(js_name = fromUsage, skip_typescript)]
pub fn from_usage(report: JsValue) -> Result<Vec<JsQuotaState>, JsError> {
    let text = body_text(&report)
        .ok_or_else(|| JsError::new("fromUsage: expected the usage endpoint's JSON, as text or an object"))?;
    let report = read_usage(&text).map_err(|e| JsError::new(&format!("fromUsage: {e}")))?;
    Ok(QuotaState::from_usage(&report, now_ms()).into_iter().map(|inner| JsQuotaState { inner }).collect())
}

/// A body as text: a string as is, an object as JSON; nothing otherwise.
fn body_text(body: &JsValue) -> Option<String> {
    if let Some(text) = body.as_string() {
        return Some(text);
    }
    if body.is_object() {
        return JSON::stringify(body).ok()?.as_string();
    }
    None
}

/// What one response tells about the quota: its state, or why there is
/// none (the filter did not classify the request, or the browser hid the
/// quota headers of a response from another origin).
#[wasm_bindgen(js_name = QuotaReading)]
pub struct JsQuotaReading {
    inner: Reading,
}

#[wasm_bindgen(js_class = QuotaReading)]
impl JsQuotaReading {
    /// "quota", "not_classified" or "hidden_by_cors".
    #[wasm_bindgen(getter, unchecked_return_type = "QuotaReadingKind")]
    pub fn kind(&self) -> String {
        self.inner.kind().to_string()
    }

    /// The state, when the response had one (kind "quota").
    #[wasm_bindgen(getter)]
    pub fn quota(&self) -> Option<JsQuotaState> {
        self.inner.quota().cloned().map(|inner| JsQuotaState { inner })
    }

    /// Why there is no state, for the developer (a console warning, a log
    /// line): for "hidden_by_cors", what the browser hid and the headers the
    /// API's `Access-Control-Expose-Headers` must list.
    #[wasm_bindgen(getter)]
    pub fn message(&self) -> Option<String> {
        self.inner.message()
    }

    /// The headers to add to the API's `Access-Control-Expose-Headers`
    /// (empty unless "hidden_by_cors").
    #[wasm_bindgen(getter = missingHeaders)]
    pub fn missing_headers(&self) -> Vec<String> {
        self.inner.missing_headers().into_iter().map(str::to_string).collect()
    }

    /// A plain object with every value (for `JSON.stringify` and logs).
    #[wasm_bindgen(js_name = toJSON, unchecked_return_type = "QuotaReadingJSON")]
    pub fn to_json(&self) -> JsValue {
        let quota = self.inner.quota().map(|s| s.to_json(now_ms()));
        json_value(serde_json::json!({
            "kind": self.inner.kind(),
            "quota": quota,
            "message": self.inner.message(),
            "missingHeaders": self.inner.missing_headers(),
        }))
    }
}

#[wasm_bindgen(js_name = fromResponse, skip_typescript)]
pub fn from_response(response: JsValue, body: JsValue) -> JsQuotaReading {
    let field = |name: &str| Reflect::get(&response, &JsValue::from_str(name)).ok().filter(|v| !v.is_undefined());
    let headers = field("headers").map(|h| header_pairs(&h)).unwrap_or_default();
    let url = field("url").and_then(|u| u.as_string());
    let api = url.as_deref().and_then(origin_of);
    let origin = match field("type").and_then(|t| t.as_string()) {
        Some(kind) => Origin::from_response_type(Some(&kind)),
        // No type (not a fetch Response): another origin than the page's
        // when its URL says so.
        None if api.is_some() && api != page_origin() => Origin::Cross,
        None => Origin::Same,
    };
    let refusal = body_text(&body).as_deref().and_then(read_refusal);
    let pairs = headers.iter().map(|(n, v)| (n.as_str(), v.as_str()));
    JsQuotaReading { inner: Reading::of_response(pairs, refusal, origin, api, now_ms()) }
}

#[wasm_bindgen(js_name = exposeHeaders, skip_typescript)]
pub fn js_expose_headers() -> Vec<String> {
    expose_headers().into_iter().map(str::to_string).collect()
}

/// The page's own origin (`location.origin`); none outside a browser.
fn page_origin() -> Option<String> {
    let location = Reflect::get(&js_sys::global(), &JsValue::from_str("location")).ok()?;
    if !location.is_object() {
        return None;
    }
    Reflect::get(&location, &JsValue::from_str("origin")).ok()?.as_string().as_deref().and_then(origin_of)
}

/// `(name, value)` pairs from any `HeadersLike`.
fn header_pairs(headers: &JsValue) -> Vec<(String, String)> {
    if !headers.is_object() {
        return Vec::new();
    }
    let pair = |entry: JsValue| -> Option<(String, String)> {
        let entry: Array = entry.dyn_into().ok()?;
        Some((entry.get(0).as_string()?, value_text(&entry.get(1))?))
    };
    if Array::is_array(headers) {
        return Array::from(headers).iter().filter_map(pair).collect();
    }
    // Headers and Map: their own entries(). Names are matched case-insensitively
    // afterwards, so a Map with "X-Quota-Used" works too.
    if let Ok(entries) = Reflect::get(headers, &JsValue::from_str("entries")) {
        if let Some(entries) = entries.dyn_ref::<Function>() {
            if let Ok(Some(iter)) = entries.call0(headers).and_then(|it| js_sys::try_iter(&it)) {
                return iter.filter_map(Result::ok).filter_map(pair).collect();
            }
        }
    }
    let object: &Object = headers.unchecked_ref();
    let pairs: Vec<(String, String)> = Object::entries(object).iter().filter_map(pair).collect();
    // Objects with getters only (some header classes): ask for each name.
    if pairs.is_empty() {
        return READ_HEADERS
            .iter()
            .chain([&EXPOSE_HEADER])
            .filter_map(|name| {
                let v = Reflect::get(headers, &JsValue::from_str(name)).ok()?;
                Some((name.to_string(), value_text(&v)?))
            })
            .collect();
    }
    pairs
}

/// A header value: a string, a number, or several values (joined as one
/// field, as HTTP does).
fn value_text(value: &JsValue) -> Option<String> {
    if let Some(text) = value.as_string() {
        return Some(text);
    }
    if let Some(n) = value.as_f64() {
        return Some(n.to_string());
    }
    if Array::is_array(value) {
        let parts: Vec<String> = Array::from(value).iter().filter_map(|v| v.as_string()).collect();
        return Some(parts.join(", "));
    }
    None
}
