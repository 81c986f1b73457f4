// How the demo page writes a class's numbers: counts ("3 of 10 used, 7 left")
// or, for a class metered in money, amounts as the quota filter writes them
// ("$0.45 of $1.00 used, $0.55 left"). The words come from the quota-client
// getters (`usedText`, `limitText`...), never from formatting numbers here:
// what was used and what remains are rounded down as the filter's own
// sentences round them. No DOM, so Node tests it (client/tests/demo_amounts.test.mjs).

/** The card's line under a one-limit meter; `plan` names the caller's plan. */
export function numbersLine(state, plan) {
  if (state.limit === undefined) {
    return state.state === "not_included" ? `Not part of the ${plan} plan` : "";
  }
  const soft = state.softLimitText !== undefined ? `, warnings from ${state.softLimitText}` : "";
  return `${state.usedText ?? zero(state)} of ${state.limitText} used, ${state.remainingText ?? zero(state)} left${soft}`;
}

/** A meter's accessible value: "3 of 10 used", "$0.45 of $1.00 used". */
export function valueText(meter) {
  return `${meter.usedText ?? zero(meter)} of ${meter.limitText} used`;
}

/** What the meter element draws: its max and value (amounts, or counts). */
export function meterValues(meter) {
  if (meter.limit === undefined) return { max: 1, value: 0 };
  return { max: meter.limit, value: Math.min(meter.used ?? 0, meter.limit) };
}

/** Nothing yet, in the class's terms: "0", or "$0.00" shaped as its limit. */
function zero(meter) {
  if (meter.currency === undefined || meter.limitText === undefined) return "0";
  return meter.limitText.replace(/\d+/, "0").replace(/\d/g, "0");
}
