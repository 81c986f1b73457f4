//! Logs, metrics and the other things a filter reports.

use crate::util::echo_host;
use host_tests::{LogLevel, LogSource, MetricType};

#[test]
fn log_lines_keep_their_level_and_stdout_stderr_are_captured() {
    let host = echo_host();
    let vm = host.vm("{}").unwrap();
    let r = vm.request().header("x-echo-action", "log").send();
    let levels: Vec<LogLevel> = r.logs().iter().filter(|l| l.message.starts_with("level ")).map(|l| l.level).collect();
    assert_eq!(
        levels,
        vec![LogLevel::Trace, LogLevel::Debug, LogLevel::Info, LogLevel::Warn, LogLevel::Error, LogLevel::Critical]
    );
    let out = r.logs().iter().find(|l| l.message == "to stdout").unwrap();
    assert_eq!((out.level, out.source), (LogLevel::Info, LogSource::Stdout));
    let err = r.logs().iter().find(|l| l.message == "to stderr").unwrap();
    assert_eq!((err.level, err.source), (LogLevel::Error, LogSource::Stderr));
}

#[test]
fn lines_below_the_host_level_are_dropped() {
    let host = echo_host();
    host.set_log_level(LogLevel::Warn);
    let vm = host.vm("{}").unwrap();
    let r = vm.request().header("x-echo-action", "log").send();
    assert!(!r.log_contains("level Info"));
    assert!(r.log_contains("level Warn"));
}

#[test]
fn metrics_with_one_name_are_one_stat_across_vms() {
    let host = echo_host();
    let a = host.vm("{}").unwrap();
    let b = host.vm("{}").unwrap();
    a.request().send();
    b.request().send();
    a.request().send();
    assert_eq!(host.counter("echo.requests"), 3);
    assert_eq!(host.metric("echo.gauge").unwrap().kind, MetricType::Gauge);
}

#[test]
fn foreign_functions_are_not_found() {
    let host = echo_host();
    let vm = host.vm("{}").unwrap();
    let r = vm.request().header("x-echo-action", "foreign").send();
    assert!(r.log_contains("foreign: Err(NotFound)"), "{r:?}");
    assert_eq!(vm.foreign_calls(), vec!["echo_fn".to_string()]);
}

#[test]
fn queued_items_reach_the_registering_root_context() {
    let host = echo_host();
    let vm = host.vm("{}").unwrap();
    vm.request().header("x-echo-action", "enqueue").header("x-user-id", "hank").send();
    assert!(!host.logs_containing("queue item: hank").is_empty());
    assert!(host.queues().is_empty("", "echo-queue"));
}
