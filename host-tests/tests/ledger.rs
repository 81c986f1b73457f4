//! The ledger record: the filter sets it as the stream's `quota_ledger`
//! property when the stream is logged (Envoy keeps it as the filter state
//! its access logs print), one per classified request.

use crate::util::{post, quota_host, quota_vm, windows_config};
use quota_core::ledger::LedgerRecord;

/// The ledger record the request's stream was given, if any.
fn ledger(r: &host_tests::Exchange) -> Option<LedgerRecord> {
    let mut set = r.record().properties_set.iter().filter(|(path, _)| path == &["quota_ledger"]);
    let (_, line) = set.next()?;
    assert!(set.next().is_none(), "one record a request: {r:?}");
    let line = std::str::from_utf8(line).unwrap();
    Some(LedgerRecord::from_line(line).unwrap_or_else(|| panic!("not a record: {line}")))
}

#[test]
fn admitted_and_refused_requests_each_leave_one_record() {
    let host = quota_host();
    host.set_time_rfc3339("2024-03-05T20:00:00Z");
    let vm = quota_vm(&host, &windows_config(1));
    let admitted = post(&vm, "/v1/daily", "pat");
    admitted.assert_allowed();
    let record = ledger(&admitted).unwrap();
    assert_eq!((record.class.as_str(), record.user.as_deref(), record.status), ("daily", Some("pat"), 200));
    assert_eq!((record.units_charged, record.state.as_str(), record.upstream_reached), (1, "warning", true));
    assert_eq!(record.time, "2024-03-05T20:00:00.000Z");

    let blocked = post(&vm, "/v1/daily", "pat");
    blocked.assert_blocked(429);
    let record = ledger(&blocked).unwrap();
    assert_eq!(
        (record.status, record.state.as_str(), record.units_requested, record.units_charged),
        (429, "blocked", 1, 0)
    );
    assert!(!record.upstream_reached);
}

#[test]
fn requests_the_filter_does_not_classify_leave_none() {
    let host = quota_host();
    let vm = quota_vm(&host, &windows_config(10));
    let r = post(&vm, "/v1/elsewhere", "pat");
    assert_eq!(r.status(), Some(200));
    assert_eq!(ledger(&r), None);
}

#[test]
fn a_ledger_turned_off_sets_nothing() {
    let host = quota_host();
    let mut config = windows_config(10);
    config["observability"] = serde_json::json!({"ledger": false});
    let vm = quota_vm(&host, &config);
    let r = post(&vm, "/v1/daily", "pat");
    r.assert_allowed();
    assert!(r.record().properties_set.is_empty(), "{:?}", r.record().properties_set);
}
