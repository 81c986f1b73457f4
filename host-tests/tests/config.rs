//! Configuration: an invalid matrix is refused at load with the JSON path and the
//! reason in the log; a valid one loads; a reload keeps the counters.

use host_tests::LogLevel;

use crate::util::{demo_config, expect_config_rejected, post, quota_host, quota_vm, start_quota_vm, windows_config};

fn rejected_because(config: &serde_json::Value) -> String {
    let host = quota_host();
    let error = expect_config_rejected(start_quota_vm(&host, config));
    let line = error
        .logs()
        .iter()
        .find(|l| l.message.contains("invalid configuration"))
        .unwrap_or_else(|| panic!("no 'invalid configuration' line in:\n{error}"));
    assert!(line.level >= LogLevel::Error, "{line}");
    line.message.clone()
}

#[test]
fn a_hard_limit_not_above_soft_is_refused_with_its_path() {
    let mut config = windows_config(5);
    config["tiers"]["free"]["limits"]["daily"]["soft"] = serde_json::json!(21);
    let message = rejected_because(&config);
    assert!(message.contains("tiers.free.limits.daily.hard"), "{message}");
    assert!(message.contains("21"), "{message}");
}

#[test]
fn an_unknown_field_is_refused_with_its_path() {
    let mut config = windows_config(5);
    config["tiers"]["free"]["limits"]["daily"]["hrad"] = serde_json::json!(5);
    let message = rejected_because(&config);
    assert!(message.contains("tiers.free.limits.daily"), "{message}");
    assert!(message.contains("hrad"), "{message}");
}

#[test]
fn a_class_missing_from_a_tier_is_refused() {
    let mut config = windows_config(5);
    config["tiers"]["free"]["limits"].as_object_mut().unwrap().remove("burst");
    let message = rejected_because(&config);
    assert!(message.contains("tiers.free.limits"), "{message}");
    assert!(message.contains("burst"), "{message}");
}

#[test]
fn a_config_that_is_not_json_is_refused() {
    let host = quota_host();
    let error = expect_config_rejected(host.vm_builder().vm_id("quota").plugin_config("{not json").start());
    assert!(error.logs_contain("invalid configuration"), "{error}");
}

#[test]
fn the_demo_config_loads() {
    let host = quota_host();
    let vm = quota_vm(&host, &demo_config());
    assert!(!vm.is_dead());
}

#[test]
fn reloading_a_valid_config_keeps_the_counters() {
    let host = quota_host();
    let vm = quota_vm(&host, &windows_config(5));
    post(&vm, "/v1/daily", "wes").assert_allowed();
    post(&vm, "/v1/daily", "wes").assert_allowed();

    // Envoy starts new VMs for a new configuration; shared data stays (same vm_id).
    let reloaded = quota_vm(&host, &windows_config(3));
    let r = post(&reloaded, "/v1/daily", "wes");
    r.assert_allowed();
    assert_eq!(r.response_header("x-quota-used"), Some("3"));
    assert_eq!(r.response_header("x-quota-limit"), Some("3"));
    post(&reloaded, "/v1/daily", "wes").assert_blocked(429);

    // Reconfiguring a running VM in place keeps them too.
    reloaded.configure(windows_config(4).to_string()).unwrap();
    post(&reloaded, "/v1/daily", "wes").assert_allowed();
    post(&reloaded, "/v1/daily", "wes").assert_blocked(429);
}

#[test]
fn a_rejected_reload_leaves_the_running_vm_as_it_was() {
    let host = quota_host();
    let vm = quota_vm(&host, &windows_config(1));
    let mut bad = windows_config(1);
    bad["tiers"]["free"]["limits"]["daily"]["window"] = serde_json::json!("fortnight");
    let error = vm.configure(bad.to_string()).unwrap_err();
    assert!(error.is_config_rejected(), "{error}");
    assert!(error.logs_contain("tiers.free.limits.daily.window"), "{error}");
    post(&vm, "/v1/daily", "xia").assert_allowed();
    post(&vm, "/v1/daily", "xia").assert_blocked(429);
}
