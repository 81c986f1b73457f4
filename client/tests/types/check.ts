// Compiled with `tsc -p tests/types` (npm test): the package's types say what
// the runtime does. Lines marked @ts-expect-error must stay errors.

import init, { exposeHeaders, fromHeaders, fromResponse, fromUsage, initSync, QuotaMeter, QuotaReading, QuotaState, type CurrencyCode, type HeadersLike, type QuotaMeterJSON, type QuotaReadingJSON, type QuotaReadingKind, type QuotaStateJSON, type QuotaStateName, type ResponseLike } from "quota-client";

export async function usage(res: Response, report: unknown): Promise<string[]> {
  await init();
  const lines: string[] = [];
  const state: QuotaState | undefined = fromHeaders(res.headers, res.ok ? undefined : await res.text());
  if (state) {
    const name: QuotaStateName | (string & {}) = state.state;
    const fraction: number = state.fractionUsed;
    const used: number | undefined = state.used;
    const when: Date | undefined = state.resetAt;
    const words: string | undefined = state.resetInWords;
    const pace: "ahead" | undefined = state.pace;
    const json: QuotaStateJSON = state.toJSON();
    lines.push(`${state.class} ${name} ${fraction} ${used ?? "-"} ${when?.toISOString()} ${words} ${pace} ${json.softLimit}`);
    // A class metered in money: its code, and its amounts as text.
    const currency: CurrencyCode | undefined = state.currency;
    const texts: (string | undefined)[] = [state.usedText, state.limitText, state.softLimitText, state.remainingText, state.costText, state.overageText, state.grantText];
    const jsonTexts: (string | null)[] = [json.currency, json.usedText, json.limitText, json.softLimitText, json.remainingText, json.costText];
    lines.push(`${currency ?? "units"} ${texts.join(" ")} ${jsonTexts.join(" ")}`);
    // @ts-expect-error a text may be absent (a class outside the plan has no numbers)
    lines.push(state.usedText.length.toFixed(0));
    // @ts-expect-error used may be undefined (a class outside the plan has no numbers)
    lines.push(state.used.toFixed(0));
    // @ts-expect-error the state is read-only
    state.state = "ok";
    const meters: QuotaMeter[] = state.meters;
    for (const meter of meters) {
      const label: string = meter.label;
      const binding: boolean = meter.binding;
      const limitState: QuotaStateName | (string & {}) | undefined = meter.state;
      const resets: Date | undefined = meter.resetAt;
      const meterJson: QuotaMeterJSON = meter.toJSON();
      const bound: QuotaMeterJSON | undefined = json.meters.find((m) => m.binding);
      lines.push(`${label} ${binding} ${limitState} ${meter.fractionUsed} ${resets?.getTime()} ${meterJson.label} ${bound?.used}`);
      const meterCurrency: CurrencyCode | undefined = meter.currency;
      lines.push(`${meterCurrency} ${meter.usedText} ${meter.limitText} ${meter.softLimitText} ${meter.remainingText} ${meterJson.currency} ${meterJson.usedText}`);
      // @ts-expect-error a meter's use may be unknown (headers give only the binding limit's)
      lines.push(meter.used.toFixed(0));
      // @ts-expect-error meters are read-only
      meter.binding = false;
    }
  }
  const shapes: HeadersLike[] = [
    new Headers(),
    new Map([["x-quota-used", "1"]]),
    [["x-quota-used", "1"]],
    { "x-quota-used": "1", "set-cookie": ["a", "b"], "content-length": 3, absent: undefined },
  ];
  for (const h of shapes) fromHeaders(h, { error: { message: "m" } });
  // A page on another origin: the reading says why there is no state.
  const reading: QuotaReading = fromResponse(res, res.ok ? undefined : await res.text());
  const kind: QuotaReadingKind = reading.kind;
  if (kind === "hidden_by_cors") {
    const missing: string[] = reading.missingHeaders;
    const why: string | undefined = reading.message;
    lines.push(`${why} ${missing.join(", ")}`);
  }
  // @ts-expect-error not a kind the client reports
  if (kind === "hidden") lines.push("never");
  const quota: QuotaState | undefined = reading.quota;
  const readingJson: QuotaReadingJSON = reading.toJSON();
  lines.push(`${quota?.class} ${readingJson.kind} ${readingJson.quota?.state} ${readingJson.missingHeaders.length}`);
  const like: ResponseLike = { headers: { "x-quota-used": "1" }, type: "cors", url: "https://api.example.com/v1/quota" };
  fromResponse(like);
  fromResponse({ headers: new Headers() }, { error: { message: "m" } });
  // @ts-expect-error a response needs its headers
  fromResponse({ type: "cors" });
  const expose: string = exposeHeaders().join(", ");
  lines.push(expose);
  const all: QuotaState[] = fromUsage(report as object);
  fromUsage("{}");
  // @ts-expect-error fromUsage needs the report
  fromUsage();
  // @ts-expect-error headers are not a number
  fromHeaders(42);
  initSync({ module: new Uint8Array() });
  return lines.concat(all.map((s) => s.class));
}
